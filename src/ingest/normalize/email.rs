//! E-mail addresses: trimmed, lowercased, checked for shape.

use std::fmt;

/// Why a value is not an e-mail address.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum EmailProblem {
    /// There is no `@`.
    NoAt,
    /// There is more than one `@`.
    SeveralAt,
    /// Nothing comes before the `@`.
    EmptyLocalPart,
    /// The part after the `@` has no `.`.
    DomainWithoutDot,
    /// Whitespace inside the address.
    InnerWhitespace,
    /// A control character (NUL, DEL, …) or an invisible formatting
    /// character (a byte-order mark, a zero-width space, a direction
    /// mark) inside the address.
    Invisible,
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmailProblem::NoAt => "no '@'",
            EmailProblem::SeveralAt => "more than one '@'",
            EmailProblem::EmptyLocalPart => "nothing before the '@'",
            EmailProblem::DomainWithoutDot => "the domain has no '.'",
            EmailProblem::InnerWhitespace => "whitespace inside the address",
            EmailProblem::Invisible => {
                "a control or invisible formatting character inside the address"
            }
        })
    }
}

impl std::error::Error for EmailProblem {}

/// Appends the trimmed, lowercased form of `value` to `out`.
///
/// An empty or whitespace-only value appends nothing and is not an error.
///
/// # Errors
///
/// When the address does not have exactly one `@`, a non-empty local part,
/// a domain containing a `.`, and no inner whitespace, control or invisible
/// formatting characters.
///
/// # Example
///
/// ```
/// use sluice::ingest::normalize::normalize_email;
///
/// let mut out = Vec::new();
/// normalize_email("  Jane.Doe@Example.COM ", &mut out).unwrap();
/// assert_eq!(out, b"jane.doe@example.com");
/// ```
pub fn normalize_email(value: &str, out: &mut Vec<u8>) -> Result<(), EmailProblem> {
    let s = super::trim(value);
    if s.is_empty() {
        return Ok(());
    }
    // Copy, then 16 bytes at a time: lowercase, and note what the checks
    // need (the `@`s, whitespace, control bytes, bytes beyond ASCII).
    let start = out.len();
    out.extend_from_slice(s.as_bytes());
    let scan = lower_and_scan(&mut out[start..]);
    let (ats, at, ws, high) = (scan.ats, scan.last_at, scan.ws, scan.high);
    if high {
        out.truncate(start);
        let lower = s.to_lowercase();
        out.extend_from_slice(lower.as_bytes());
        return check_unicode(&lower);
    }
    let dot_after_at = ats > 0 && memchr::memchr(b'.', &out[start + at + 1..]).is_some();
    verdict(ats, at, dot_after_at, ws)?;
    if scan.control {
        return Err(EmailProblem::Invisible);
    }
    Ok(())
}

/// What [`lower_and_scan`] saw.
struct Scan {
    ats: usize,
    last_at: usize,
    ws: bool,
    /// A control byte that is not whitespace (NUL, DEL, …).
    control: bool,
    high: bool,
}

/// ASCII-lowercases `addr` in place, 16 bytes at a time, counting `@`s and
/// noting whitespace and non-ASCII bytes.
fn lower_and_scan(addr: &mut [u8]) -> Scan {
    use wide::u8x16;
    let (upper_a, upper_z, case) = (u8x16::splat(b'A'), u8x16::splat(b'Z'), u8x16::splat(0x20));
    let (tab, cr, space) = (u8x16::splat(b'\t'), u8x16::splat(b'\r'), u8x16::splat(b' '));
    let (at_sign, high_bit) = (u8x16::splat(b'@'), u8x16::splat(0x80));
    let mut scan = Scan {
        ats: 0,
        last_at: 0,
        ws: false,
        control: false,
        high: false,
    };
    for (k, chunk) in addr.chunks_mut(16).enumerate() {
        let mut lane = [b'a'; 16]; // padding that no check notices
        lane[..chunk.len()].copy_from_slice(chunk);
        let v = u8x16::new(lane);
        let upper = v.simd_ge(upper_a) & v.simd_le(upper_z);
        let lowered: [u8; 16] = (v | (upper & case)).into();
        chunk.copy_from_slice(&lowered[..chunk.len()]);
        let ws = (v.simd_ge(tab) & v.simd_le(cr)) | v.simd_eq(space);
        scan.ws |= ws.any();
        let control = v.simd_le(u8x16::splat(0x1f)) | v.simd_eq(u8x16::splat(0x7f));
        scan.control |= (control & !ws).any();
        scan.high |= v.simd_ge(high_bit).any();
        let ats = v.simd_eq(at_sign).to_bitmask();
        if ats != 0 {
            scan.ats += ats.count_ones() as usize;
            scan.last_at = 16 * k + (31 - ats.leading_zeros()) as usize;
        }
    }
    scan
}

fn verdict(ats: usize, at: usize, dot_after_at: bool, ws: bool) -> Result<(), EmailProblem> {
    match ats {
        0 => Err(EmailProblem::NoAt),
        1 if at == 0 => Err(EmailProblem::EmptyLocalPart),
        1 if !dot_after_at => Err(EmailProblem::DomainWithoutDot),
        1 if ws => Err(EmailProblem::InnerWhitespace),
        1 => Ok(()),
        _ => Err(EmailProblem::SeveralAt),
    }
}

/// The same checks on a lowercased address with non-ASCII characters.
fn check_unicode(addr: &str) -> Result<(), EmailProblem> {
    let ats = addr.matches('@').count();
    let at = addr.find('@').unwrap_or(0);
    let dot_after_at = addr.rfind('@').is_some_and(|a| addr[a..].contains('.'));
    verdict(ats, at, dot_after_at, addr.chars().any(char::is_whitespace))?;
    if addr.chars().any(invisible) {
        return Err(EmailProblem::Invisible);
    }
    Ok(())
}

/// Control characters, and the formatting characters that do not show:
/// the soft hyphen, zero-width and direction marks, word joiners, the
/// byte-order mark (a BOM in the middle of a file lands in a field), and
/// tags.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
            | '\u{e0000}'..='\u{e007f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, EmailProblem> {
        let mut out = Vec::new();
        normalize_email(s, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn table() {
        let cases: &[(&str, Result<&str, EmailProblem>)] = &[
            ("Jane.Doe@Example.com", Ok("jane.doe@example.com")),
            ("  JOHN@EXAMPLE.ORG\t", Ok("john@example.org")),
            ("\u{a0}Zoë@Exämple.de ", Ok("zoë@exämple.de")),
            ("", Ok("")),
            ("   ", Ok("")),
            ("not-an-email", Err(EmailProblem::NoAt)),
            ("a@b@c.com", Err(EmailProblem::SeveralAt)),
            ("@example.com", Err(EmailProblem::EmptyLocalPart)),
            ("john@localhost", Err(EmailProblem::DomainWithoutDot)),
            ("john smith@example.com", Err(EmailProblem::InnerWhitespace)),
            (
                "john@exa\u{2003}mple.com",
                Err(EmailProblem::InnerWhitespace),
            ),
            ("mailto:", Err(EmailProblem::NoAt)),
            // Found by the bad-input matrix: a NUL or a BOM in the middle
            // of a file made a key that looks like another.
            ("c\0@d.co", Err(EmailProblem::Invisible)),
            ("e@f.co\x7f", Err(EmailProblem::Invisible)),
            ("\u{feff}e@f.co", Err(EmailProblem::Invisible)),
            ("e\u{200b}@f.co", Err(EmailProblem::Invisible)),
            // The shape is judged first, in ASCII as beyond it.
            ("c\0@dco", Err(EmailProblem::DomainWithoutDot)),
            ("c\0@dcö", Err(EmailProblem::DomainWithoutDot)),
            ("user at domain dot com", Err(EmailProblem::NoAt)),
        ];
        for (input, want) in cases {
            let got = norm(input);
            assert_eq!(got.as_deref().map_err(|e| *e), *want, "{input:?}");
            if let Ok(once) = got {
                assert_eq!(norm(&once).unwrap(), once, "idempotent for {input:?}");
            }
        }
    }
}
