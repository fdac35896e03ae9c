//! Names: Unicode NFKC, trimmed, whitespace runs collapsed, case kept.

use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfkc_quick};

/// Appends the normal form of a name to `out`: NFKC, then trimmed, with
/// every inner run of whitespace replaced by one space.
///
/// ASCII is already in NFKC and text that the quick check proves to be in
/// NFKC is not copied through the normalizer, so common names cost one pass.
///
/// # Example
///
/// ```
/// use sluice::ingest::normalize::normalize_name;
///
/// let mut out = Vec::new();
/// // "Zoë" with a combining diaeresis (NFD) and doubled spaces.
/// normalize_name("  Zoe\u{308}   Dvořák ", &mut out);
/// assert_eq!(String::from_utf8(out).unwrap(), "Zoë Dvořák");
/// ```
pub fn normalize_name(value: &str, out: &mut Vec<u8>) {
    if value.is_ascii() {
        collapse_ascii(value.as_bytes(), out);
    } else if is_nfkc_quick(value.chars()) == IsNormalized::Yes {
        collapse(value, out);
    } else {
        let nfkc: String = value.nfkc().collect();
        collapse(&nfkc, out);
    }
}

pub(super) fn collapse_ascii(bytes: &[u8], out: &mut Vec<u8>) {
    // Most names need nothing: no whitespace at either end, and only single
    // spaces inside. Copy those in one go.
    // Most have no byte at or below a space at all (a fold that vectorizes);
    // the rest are clean when single spaces sit between other bytes.
    let clean = !bytes.is_empty()
        && (bytes.iter().fold(true, |ok, &b| ok & (b > b' '))
            || (bytes[0] != b' '
                && bytes[bytes.len() - 1] != b' '
                && bytes.iter().all(|&b| b == b' ' || !super::is_ascii_ws(b))
                && !bytes.windows(2).any(|w| w == b"  ")));
    if clean {
        out.extend_from_slice(bytes);
        return;
    }
    let mut pending_space = false;
    let mut wrote = false;
    for &b in bytes {
        if super::is_ascii_ws(b) {
            pending_space = wrote;
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
            wrote = true;
        }
    }
}

fn collapse(s: &str, out: &mut Vec<u8>) {
    for (i, word) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(word.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut out = Vec::new();
        normalize_name(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table() {
        let cases = [
            ("Mary Ann", "Mary Ann"),
            ("  Mary   Ann  ", "Mary Ann"),
            ("Mary\t\nAnn", "Mary Ann"),
            ("", ""),
            (" \t ", ""),
            ("van der Berg", "van der Berg"),
            ("O'Brien", "O'Brien"),
            // NFD in, NFC/NFKC out.
            ("Jose\u{301}", "José"),
            ("Jürgen", "Jürgen"),
            ("Ju\u{308}rgen", "Jürgen"),
            // Compatibility forms fold.
            ("\u{FB01}lip", "filip"),
            ("Ｊｏｈｎ", "John"),
            // Unicode whitespace, including one NFKC turns into a space.
            ("Anne\u{a0}\u{a0}Marie", "Anne Marie"),
            ("Anne\u{2003}Marie\u{3000}", "Anne Marie"),
            // Case is kept.
            ("MÜLLER", "MÜLLER"),
        ];
        for (input, want) in cases {
            let got = norm(input);
            assert_eq!(got, want, "{input:?}");
            assert_eq!(norm(&got), got, "idempotent for {input:?}");
        }
    }
}
