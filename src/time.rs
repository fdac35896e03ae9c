//! UTC dates from and to Unix milliseconds, without a time zone database:
//! all the wire formats sluice speaks are UTC.

/// A civil date and time of day, UTC.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Civil {
    /// The year.
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// Seconds since midnight.
    pub seconds: u32,
}

/// The civil date and time of `ms` (Howard Hinnant's `civil_from_days`).
pub fn civil(ms: i64) -> Civil {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    Civil {
        year: yoe + era * 400 + i64::from(month <= 2),
        month,
        day,
        seconds: rem as u32,
    }
}

/// Unix milliseconds of a civil date and time (`days_from_civil`); `None`
/// when a field is out of range.
pub fn from_civil(c: Civil) -> Option<i64> {
    let days_in_month = match c.month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (c.year % 4 == 0 && c.year % 100 != 0) || c.year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if c.day < 1 || c.day > days_in_month || c.seconds >= 86_400 {
        return None;
    }
    let y = c.year - i64::from(c.month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(c.month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(c.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + i64::from(c.seconds)) * 1000)
}

/// Formats `ms` with `f(year, month, day, hour, minute, second)`.
fn format_with(ms: i64, f: impl Fn(i64, u32, u32, u32, u32, u32) -> String) -> String {
    let c = civil(ms);
    f(
        c.year,
        c.month,
        c.day,
        c.seconds / 3600,
        c.seconds / 60 % 60,
        c.seconds % 60,
    )
}

/// `YYYY-MM-DD HH:MM:SS`, for people.
pub fn utc(ms: i64) -> String {
    format_with(ms, |y, mo, d, h, mi, s| {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
    })
}

/// ISO 8601 with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso8601(ms: i64) -> String {
    let milli = ms.rem_euclid(1000);
    format_with(ms, |y, mo, d, h, mi, s| {
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    })
}

/// The AWS basic format, `YYYYMMDDTHHMMSSZ`.
pub fn amz_date(ms: i64) -> String {
    format_with(ms, |y, mo, d, h, mi, s| {
        format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
    })
}

/// Parses the AWS basic format, `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    from_civil(Civil {
        year: i64::from(num(0..4)?),
        month: num(4..6)?,
        day: num(6..8)?,
        seconds: h * 3600 + mi * 60 + se,
    })
}

/// Parses ISO 8601 as the wire uses it: `YYYY-MM-DD`, optionally followed
/// by `THH:MM[:SS[.fraction]]` and `Z` or an offset `±HH:MM` (a date and
/// time without either is taken as UTC). Fractions beyond milliseconds are
/// cut off.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let mut seconds = 0u32;
    let mut milli = 0i64;
    let mut offset_s = 0i64;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 16 || b[13] != b':' {
            return None;
        }
        let (h, mi) = (digits(11..13)?, digits(14..16)?);
        let mut at = 16;
        let mut se = 0;
        if b.get(at) == Some(&b':') {
            se = digits(at + 1..at + 3)?;
            at += 3;
            if b.get(at) == Some(&b'.') {
                let start = at + 1;
                at = start;
                while b.get(at).is_some_and(u8::is_ascii_digit) {
                    at += 1;
                }
                if at == start {
                    return None;
                }
                let frac = &s[start..at.min(start + 3)];
                milli = i64::from(frac.parse::<u32>().ok()?) * 10_i64.pow(3 - frac.len() as u32);
            }
        }
        if h > 23 || mi > 59 || se > 60 {
            return None;
        }
        seconds = h * 3600 + mi * 60 + se.min(59);
        match &b[at..] {
            [] | [b'Z' | b'z'] => {}
            [sign @ (b'+' | b'-'), ..] if b.len() == at + 6 && b[at + 3] == b':' => {
                let (oh, om) = (digits(at + 1..at + 3)?, digits(at + 4..at + 6)?);
                if oh > 23 || om > 59 {
                    return None;
                }
                let off = i64::from(oh * 3600 + om * 60);
                offset_s = if *sign == b'+' { off } else { -off };
            }
            _ => return None,
        }
    }
    let base = from_civil(Civil {
        year: i64::from(year),
        month,
        day,
        seconds,
    })?;
    Some(base + milli - offset_s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(iso8601(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
        assert_eq!(amz_date(1_795_000_000_000), "20261118T110640Z");
        assert_eq!(parse_amz_date("20261118T110640Z"), Some(1_795_000_000_000));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400_000));
        for bad in [
            "20010229T000000Z",
            "20261118T240000Z",
            "2026111T8110640Z",
            "x",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
        for ms in [0, 86_399_000, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_amz_date(&amz_date(ms)), Some(ms));
            assert_eq!(parse_iso8601(&iso8601(ms + 7)), Some(ms + 7));
        }
        assert_eq!(parse_iso8601("2026-11-18"), Some(1_794_960_000_000));
        assert_eq!(
            parse_iso8601("2026-11-18T11:06:40Z"),
            Some(1_795_000_000_000)
        );
        assert_eq!(
            parse_iso8601("2026-11-18T12:06:40+01:00"),
            Some(1_795_000_000_000)
        );
        assert_eq!(parse_iso8601("2026-11-18T11:06"), Some(1_794_999_960_000));
        assert_eq!(
            parse_iso8601("2026-11-18T11:06:40.5Z"),
            Some(1_795_000_000_500)
        );
        for bad in [
            "2026-13-01",
            "2026-11-18T",
            "2026-11-18T11:06:40+0100",
            "2026-11-18T11:06:40.Z",
            "18/11/2026",
            "2026-11-18T11:06:40Zjunk",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
