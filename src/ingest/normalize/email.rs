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
}

impl fmt::Display for EmailProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EmailProblem::NoAt => "no '@'",
            EmailProblem::SeveralAt => "more than one '@'",
            EmailProblem::EmptyLocalPart => "nothing before the '@'",
            EmailProblem::DomainWithoutDot => "the domain has no '.'",
            EmailProblem::InnerWhitespace => "whitespace inside the address",
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
/// a domain containing a `.`, and no inner whitespace.
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
    let s = value.trim();
    if s.is_empty() {
        return Ok(());
    }
    let start = out.len();
    if s.is_ascii() {
        out.extend(s.bytes().map(|b| b.to_ascii_lowercase()));
    } else {
        out.extend_from_slice(s.to_lowercase().as_bytes());
    }
    check(&out[start..])
}

fn check(addr: &[u8]) -> Result<(), EmailProblem> {
    let at = match memchr::memchr(b'@', addr) {
        Some(at) => at,
        None => return Err(EmailProblem::NoAt),
    };
    let domain = &addr[at + 1..];
    if memchr::memchr(b'@', domain).is_some() {
        return Err(EmailProblem::SeveralAt);
    }
    if at == 0 {
        return Err(EmailProblem::EmptyLocalPart);
    }
    if memchr::memchr(b'.', domain).is_none() {
        return Err(EmailProblem::DomainWithoutDot);
    }
    let has_ws = if addr.is_ascii() {
        addr.iter().any(|&b| super::is_ascii_ws(b))
    } else {
        std::str::from_utf8(addr)
            .expect("normalized from a str")
            .chars()
            .any(char::is_whitespace)
    };
    if has_ws {
        return Err(EmailProblem::InnerWhitespace);
    }
    Ok(())
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
