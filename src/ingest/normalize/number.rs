//! Numbers: an exact canonical decimal, computed on the digits, never through
//! floating point, so that `0.1`, `1e400` and 40-digit integers stay exact.

use std::fmt;

/// The longest canonical form accepted, in bytes. `1e5000` would otherwise
/// expand to 5,001 digits.
pub const MAX_CANONICAL_LEN: usize = 1000;

/// Why a value is not a number.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum NumberProblem {
    /// A character that has no place in a decimal number, at this byte
    /// offset of the trimmed value.
    UnexpectedChar {
        /// Byte offset in the trimmed value.
        at: usize,
    },
    /// A sign, point or exponent without digits.
    NoDigits,
    /// The canonical form would be longer than [`MAX_CANONICAL_LEN`].
    OutOfRange,
}

impl fmt::Display for NumberProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberProblem::UnexpectedChar { at } => {
                write!(f, "unexpected character at offset {at}")
            }
            NumberProblem::NoDigits => f.write_str("no digits"),
            NumberProblem::OutOfRange => write!(
                f,
                "out of range (more than {MAX_CANONICAL_LEN} characters written out)"
            ),
        }
    }
}

impl std::error::Error for NumberProblem {}

/// Appends the canonical decimal form of `value` to `out`.
///
/// Accepted: optional surrounding whitespace, an optional sign, digits with
/// an optional decimal point, an optional exponent (`e` or `E`, optional
/// sign, digits). The canonical form has no `+`, no exponent, no leading
/// zeros before the point (except a single `0`), no trailing zeros after it,
/// no point when the value is an integer, and is `0` for any zero.
/// An empty or whitespace-only value appends nothing.
///
/// # Errors
///
/// When the value is not a decimal number of that shape (thousands
/// separators, currency signs, `inf` and `NaN` are not numbers), or when
/// its canonical form would exceed [`MAX_CANONICAL_LEN`] bytes.
///
/// # Example
///
/// ```
/// use sluice::ingest::normalize::normalize_number;
///
/// let mut out = Vec::new();
/// normalize_number(" +0012.3400e1 ", &mut out).unwrap();
/// assert_eq!(out, b"123.4");
/// ```
pub fn normalize_number(value: &str, out: &mut Vec<u8>) -> Result<(), NumberProblem> {
    let s = super::trim(value).as_bytes();
    if s.is_empty() {
        return Ok(());
    }
    let mut i = 0;
    let negative = match s[0] {
        b'-' => {
            i = 1;
            true
        }
        b'+' => {
            i = 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while i < s.len() && s[i].is_ascii_digit() {
        i += 1;
    }
    let int = &s[int_start..i];
    let mut frac: &[u8] = &[];
    if i < s.len() && s[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        frac = &s[frac_start..i];
    }
    if int.is_empty() && frac.is_empty() {
        return Err(if i < s.len() && !matches!(s[i], b'e' | b'E') {
            NumberProblem::UnexpectedChar { at: i }
        } else {
            NumberProblem::NoDigits
        });
    }
    let mut exp: i64 = 0;
    if i < s.len() && matches!(s[i], b'e' | b'E') {
        i += 1;
        let exp_negative = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            // Saturate: anything this large is out of range anyway.
            exp = (exp * 10 + i64::from(s[i] - b'0')).min(1 << 40);
            i += 1;
        }
        if i == exp_start {
            return Err(NumberProblem::NoDigits);
        }
        if exp_negative {
            exp = -exp;
        }
    }
    if i < s.len() {
        return Err(NumberProblem::UnexpectedChar { at: i });
    }

    // The value is 0.DIGITS × 10^point, with DIGITS = int ++ frac.
    let lead = int.iter().chain(frac).take_while(|&&d| d == b'0').count();
    let total = int.len() + frac.len();
    if lead == total {
        out.push(b'0');
        return Ok(());
    }
    let trail = frac
        .iter()
        .rev()
        .chain(int.iter().rev())
        .take_while(|&&d| d == b'0')
        .count();
    let digit = |k: usize| {
        if k < int.len() {
            int[k]
        } else {
            frac[k - int.len()]
        }
    };
    let sig = lead..total - trail;
    let sig_len = sig.len() as i64;
    let point = int.len() as i64 - lead as i64 + exp;

    let len = i64::from(negative)
        + if point <= 0 {
            2 - point + sig_len
        } else if point >= sig_len {
            point
        } else {
            sig_len + 1
        };
    if len > MAX_CANONICAL_LEN as i64 {
        return Err(NumberProblem::OutOfRange);
    }
    out.reserve(len as usize);
    if negative {
        out.push(b'-');
    }
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-point) as usize));
        out.extend(sig.map(digit));
    } else if point >= sig_len {
        out.extend(sig.map(digit));
        out.extend(std::iter::repeat_n(b'0', (point - sig_len) as usize));
    } else {
        let split = sig.start + point as usize;
        out.extend((sig.start..split).map(digit));
        out.push(b'.');
        out.extend((split..sig.end).map(digit));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> Result<String, NumberProblem> {
        let mut out = Vec::new();
        normalize_number(s, &mut out).map(|()| String::from_utf8(out).unwrap())
    }

    #[test]
    fn table() {
        let ok = [
            ("0", "0"),
            ("-0", "0"),
            ("+0.000", "0"),
            ("0e999999999999", "0"),
            ("007", "7"),
            (" 12.50 ", "12.5"),
            ("1250.00", "1250"),
            ("-1250.50", "-1250.5"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1e3", "1000"),
            ("1.5E-3", "0.0015"),
            ("-12.34e1", "-123.4"),
            (
                "123456789012345678901234567890",
                "123456789012345678901234567890",
            ),
            ("0.1", "0.1"),
            ("100e-2", "1"),
            ("", ""),
            ("  ", ""),
        ];
        for (input, want) in ok {
            let got = norm(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got, want, "{input:?}");
            assert_eq!(norm(&got).unwrap(), got, "idempotent for {input:?}");
        }
        let bad = [
            ("$1,250.00", NumberProblem::UnexpectedChar { at: 0 }),
            ("1,250", NumberProblem::UnexpectedChar { at: 1 }),
            ("12a", NumberProblem::UnexpectedChar { at: 2 }),
            ("inf", NumberProblem::UnexpectedChar { at: 0 }),
            ("NaN", NumberProblem::UnexpectedChar { at: 0 }),
            ("-", NumberProblem::NoDigits),
            (".", NumberProblem::NoDigits),
            ("1e", NumberProblem::NoDigits),
            ("1e+", NumberProblem::NoDigits),
            ("1 2", NumberProblem::UnexpectedChar { at: 1 }),
            ("1e5000", NumberProblem::OutOfRange),
            ("1e-5000", NumberProblem::OutOfRange),
            ("1e99999999999999999999", NumberProblem::OutOfRange),
        ];
        for (input, want) in bad {
            assert_eq!(norm(input), Err(want), "{input:?}");
        }
        // The longest accepted form.
        let max = format!("1e{}", MAX_CANONICAL_LEN - 1);
        assert_eq!(norm(&max).unwrap().len(), MAX_CANONICAL_LEN);
        assert_eq!(
            norm(&format!("1e{MAX_CANONICAL_LEN}")),
            Err(NumberProblem::OutOfRange)
        );
    }
}
