/*!
Telephone numbers to E.164.

# Design

Parsing with the `phonenumber` crate (a port of libphonenumber) is exact
but costs 10–30 µs a number, and its regular expressions sit behind one
global lock. Tens of millions of rows cannot pay that, so this module has
two paths that agree by construction and by test:

* The **fast path** reads the shapes most files use: an optional leading
  `+` followed by digits and the separators ` -.()`. With a `+`, the
  country code is the prefix of the digits that is a known calling code
  (calling codes are prefix-free). Without a `+`, a default region in the
  North American Numbering Plan takes ten digits, or eleven starting with
  its national prefix `1`.
* Everything else (letters, extensions, trunk prefixes such as
  `+44 (0)20…`, non-NANP national formats, numbers the fast path is unsure
  of) goes to the **slow path**: `phonenumber::parse` with the default
  region.

Both paths then apply the same rule of validity: the national number must
match the general number pattern of the numbering plan of its country code
(any region sharing that code), from the crate's metadata. That accepts
every number with a well-formed length and leading digits for its plan,
including ranges the plan reserves (such as 555 numbers) which a stricter
"assigned type" check would reject. For NANP numbers that rule is exactly
`[2-9]` followed by nine digits (the test `nanp_rule_matches_metadata`
proves it on the metadata), so the fast path needs no pattern at all there.

The patterns are compiled lazily, once per country code, with the `regex`
crate; no lock is taken on the way.
*/

use std::fmt;
use std::str::FromStr;
use std::sync::{LazyLock, OnceLock};

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use regex::Regex;

/// Longer inputs are not telephone numbers; the slow path never sees them.
const MAX_INPUT_LEN: usize = 64;
/// E.164 allows at most 15 digits.
const MAX_DIGITS: usize = 15;

/// Why a value is not a telephone number.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum PhoneProblem {
    /// No digits at all.
    NoDigits,
    /// More than 64 characters.
    TooLong,
    /// The numbering-plan parser could not read a number.
    Unparseable,
    /// A number was read with more than 15 digits, E.164's limit.
    TooManyDigits,
    /// A number was read, but its national number does not fit the numbering
    /// plan of its country code.
    NotInNumberingPlan {
        /// The country calling code.
        country_code: u16,
    },
}

impl fmt::Display for PhoneProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneProblem::NoDigits => f.write_str("no digits"),
            PhoneProblem::TooLong => write!(f, "longer than {MAX_INPUT_LEN} characters"),
            PhoneProblem::Unparseable => f.write_str("not a recognizable telephone number"),
            PhoneProblem::TooManyDigits => write!(f, "more than {MAX_DIGITS} digits"),
            PhoneProblem::NotInNumberingPlan { country_code } => {
                write!(f, "does not fit the numbering plan of +{country_code}")
            }
        }
    }
}

impl std::error::Error for PhoneProblem {}

/// A region code that the numbering-plan data does not know.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown phone region {0:?}: expected an ISO 3166-1 alpha-2 code such as US or GB")]
pub struct UnknownRegion(pub String);

/// Per calling code: is it known, and its plan (compiled on first use).
struct Plans {
    known: Vec<bool>,
    plans: Vec<OnceLock<Option<Plan>>>,
}

/// What the normalizer needs of one calling code's numbering plan.
struct Plan {
    /// `^(?:p1|p2|…)$` over the general descriptors of every region of the
    /// code.
    general: Regex,
    /// `^(?:…)` over every region's national prefix and national-prefix
    /// parsing pattern. The crate strips a prefix only where one of these
    /// matches at the start of the national number; where none does, the
    /// number is read as written and the fast path may take it.
    strip: Option<Regex>,
}

static PLANS: LazyLock<Plans> = LazyLock::new(|| {
    let mut known = vec![false; 1000];
    for meta in DATABASE.iter() {
        if let Some(k) = known.get_mut(usize::from(meta.country_code())) {
            *k = true;
        }
    }
    Plans {
        known,
        plans: (0..1000).map(|_| OnceLock::new()).collect(),
    }
});

impl Plans {
    fn is_known(&self, cc: u16) -> bool {
        self.known.get(usize::from(cc)).copied().unwrap_or(false)
    }

    fn plan(&self, cc: u16) -> Option<&Plan> {
        self.plans
            .get(usize::from(cc))?
            .get_or_init(|| Plan::load(cc))
            .as_ref()
    }

    /// Whether `national` (ASCII digits) fits the general pattern of some
    /// region with calling code `cc`.
    fn fits(&self, cc: u16, national: &[u8]) -> bool {
        match (self.plan(cc), std::str::from_utf8(national)) {
            (Some(plan), Ok(s)) => plan.general.is_match(s),
            _ => false,
        }
    }
}

impl Plan {
    fn load(cc: u16) -> Option<Plan> {
        let regions = DATABASE.by_code(&cc)?;
        let squeeze = |p: &str| p.split_whitespace().collect::<String>();
        let alternatives: Vec<String> = regions
            .iter()
            .map(|m| {
                format!(
                    "(?:{})",
                    squeeze(m.descriptors().general().national_number().as_str())
                )
            })
            .collect();
        let general = Regex::new(&format!("^(?:{})$", alternatives.join("|"))).ok()?;
        let prefixes: Vec<String> = regions
            .iter()
            .flat_map(|m| {
                let literal = m.national_prefix().map(regex::escape);
                let parsing = m
                    .national_prefix_for_parsing()
                    .map(|re| squeeze(re.as_str()));
                literal.into_iter().chain(parsing)
            })
            .map(|p| format!("(?:{p})"))
            .collect();
        let strip = if prefixes.is_empty() {
            None
        } else {
            // A pattern that does not compile makes the fast path unsafe for
            // the whole code: match everything.
            Some(
                Regex::new(&format!("^(?:{})", prefixes.join("|")))
                    .unwrap_or_else(|_| Regex::new("^").expect("a valid pattern")),
            )
        };
        Some(Plan { general, strip })
    }

    /// The crate would read `national` as written, and it fits the plan.
    fn takes_as_written(&self, national: &str) -> bool {
        self.strip.as_ref().is_none_or(|re| !re.is_match(national))
            && self.general.is_match(national)
    }
}

/// Normalizes telephone numbers to E.164 with a default region.
#[derive(Clone, Debug)]
pub struct PhoneNormalizer {
    region: Id,
    region_code: String,
    /// The default region is in the North American Numbering Plan (+1).
    nanp: bool,
}

impl Default for PhoneNormalizer {
    fn default() -> Self {
        PhoneNormalizer::new()
    }
}

enum Fast {
    /// Valid; the digits of the E.164 form, without the `+`.
    Valid,
    /// Certainly not a number.
    Invalid(PhoneProblem),
    /// Ask the slow path.
    Unsure,
}

impl PhoneNormalizer {
    /// Numbers without a country code belong to the United States.
    pub fn new() -> PhoneNormalizer {
        PhoneNormalizer::with_region("US").expect("US is a region")
    }

    /// Numbers without a country code belong to `region` (ISO 3166-1
    /// alpha-2, case-insensitive).
    ///
    /// # Errors
    ///
    /// When the numbering-plan data has no such region.
    pub fn with_region(region: &str) -> Result<PhoneNormalizer, UnknownRegion> {
        let upper = region.trim().to_ascii_uppercase();
        let id = Id::from_str(&upper).map_err(|_| UnknownRegion(region.to_owned()))?;
        let meta = DATABASE
            .by_id(id.as_ref())
            .ok_or_else(|| UnknownRegion(region.to_owned()))?;
        Ok(PhoneNormalizer {
            region: id,
            region_code: upper,
            nanp: meta.country_code() == 1,
        })
    }

    /// The default region, upper case.
    pub fn region(&self) -> &str {
        &self.region_code
    }

    /// Appends the E.164 form of `value` to `out`.
    ///
    /// An empty or whitespace-only value appends nothing.
    ///
    /// # Errors
    ///
    /// When `value` has no digits, is longer than 64 characters, cannot be
    /// read as a telephone number, or does not fit the numbering plan of its
    /// country code.
    ///
    /// # Example
    ///
    /// ```
    /// use sluice::ingest::normalize::PhoneNormalizer;
    ///
    /// let p = PhoneNormalizer::new();
    /// let mut out = Vec::new();
    /// p.normalize("+44 20 7739 5315", &mut out).unwrap();
    /// assert_eq!(out, b"+442077395315");
    /// ```
    pub fn normalize(&self, value: &str, out: &mut Vec<u8>) -> Result<(), PhoneProblem> {
        let s = super::trim(value);
        if s.is_empty() {
            return Ok(());
        }
        if s.len() > MAX_INPUT_LEN {
            return Err(PhoneProblem::TooLong);
        }
        let mut digits = [0u8; MAX_DIGITS + 1];
        match self.fast(s.as_bytes(), &mut digits) {
            (Fast::Valid, n) => {
                out.push(b'+');
                out.extend_from_slice(&digits[..n]);
                Ok(())
            }
            (Fast::Invalid(p), _) => Err(p),
            (Fast::Unsure, _) => self.slow(s, out),
        }
    }

    /// The fast path: writes the E.164 digits into `digits` and returns how
    /// many there are.
    #[inline]
    fn fast(&self, s: &[u8], digits: &mut [u8; MAX_DIGITS + 1]) -> (Fast, usize) {
        let mut n = 0;
        let plus = s[0] == b'+';
        // With a `+` the digits are the E.164 digits; without, the NANP
        // prefix `1` may have to go first, so leave room for it.
        let offset = usize::from(!plus);
        for &c in &s[usize::from(plus)..] {
            match c {
                b'0'..=b'9' => {
                    if offset + n == digits.len() {
                        return (Fast::Unsure, 0);
                    }
                    digits[offset + n] = c;
                    n += 1;
                }
                b' ' | b'-' | b'.' | b'(' | b')' => {}
                // Letters, extensions, other scripts' digits: the slow path.
                _ => return (Fast::Unsure, 0),
            }
        }
        if n == 0 {
            return (Fast::Invalid(PhoneProblem::NoDigits), 0);
        }
        if plus {
            if n > MAX_DIGITS {
                return (Fast::Unsure, 0);
            }
            let plans = &*PLANS;
            let Some(cc_len) = (1..=3.min(n)).find(|&k| plans.is_known(parse_cc(&digits[..k])))
            else {
                return (Fast::Unsure, 0);
            };
            let cc = parse_cc(&digits[..cc_len]);
            let national = &digits[cc_len..n];
            let valid = if cc == 1 {
                is_nanp(national)
            } else {
                plans.plan(cc).is_some_and(|plan| {
                    std::str::from_utf8(national).is_ok_and(|s| plan.takes_as_written(s))
                })
            };
            return (if valid { Fast::Valid } else { Fast::Unsure }, n);
        }
        if !self.nanp {
            return (Fast::Unsure, 0);
        }
        let national = &digits[1..1 + n];
        if n == 10 && is_nanp(national) {
            digits[0] = b'1';
            (Fast::Valid, 11)
        } else if n == 11 && national[0] == b'1' && is_nanp(&national[1..]) {
            digits.copy_within(1..12, 0);
            (Fast::Valid, 11)
        } else {
            (Fast::Unsure, 0)
        }
    }

    /// The region to parse `s` with. The crate strips national prefixes
    /// with the metadata of the region it is given even when the number
    /// carries its own country code (so with `US`, `+91 1…` would lose its
    /// `1`); numbers written with `+` are therefore parsed without one, which
    /// makes the crate use their own country's plan.
    fn region_for(&self, s: &str) -> Option<Id> {
        if s.starts_with('+') {
            None
        } else {
            Some(self.region)
        }
    }

    /// The slow path: the numbering-plan parser, then the same validity
    /// rule, and the rule that a normal form is read back as itself.
    #[cold]
    fn slow(&self, s: &str, out: &mut Vec<u8>) -> Result<(), PhoneProblem> {
        if no_numeric(s.as_bytes()) {
            return Err(PhoneProblem::NoDigits);
        }
        let (cc, digits) = read(self.region_for(s), s)?;
        let e164 = format!("+{cc}{digits}");
        if e164.len() > 1 + MAX_DIGITS {
            return Err(PhoneProblem::TooManyDigits);
        }
        // A national number can fit its plan's general pattern and still be
        // read differently once written with its country code: `FO34)5-0132`
        // is read as the seven digits 345 0132 of +1, but `+13450132` as
        // Cayman's +1 345 345 0132. Such a number is not whole.
        if s != e164 && read(None, &e164)? != (cc, digits) {
            return Err(PhoneProblem::NotInNumberingPlan { country_code: cc });
        }
        out.extend_from_slice(e164.as_bytes());
        Ok(())
    }
}

/// The crate's reading of `s`: the calling code and the national number's
/// digits, which must fit the code's plan.
fn read(region: Option<Id>, s: &str) -> Result<(u16, String), PhoneProblem> {
    let number = phonenumber::parse(region, s).map_err(|_| PhoneProblem::Unparseable)?;
    let cc = number.code().value();
    let national = number.national();
    let mut digits = "0".repeat(usize::from(national.zeros()));
    digits.push_str(&national.value().to_string());
    if !PLANS.fits(cc, digits.as_bytes()) {
        return Err(PhoneProblem::NotInNumberingPlan { country_code: cc });
    }
    Ok((cc, digits))
}

/// Ten digits, the first from 2 to 9: the general NANP pattern.
#[inline]
fn is_nanp(national: &[u8]) -> bool {
    national.len() == 10 && (b'2'..=b'9').contains(&national[0])
}

fn parse_cc(d: &[u8]) -> u16 {
    d.iter()
        .fold(0u16, |acc, &c| acc * 10 + u16::from(c - b'0'))
}

/// No character that any script writes as a digit.
fn no_numeric(s: &[u8]) -> bool {
    match std::str::from_utf8(s) {
        Ok(s) => !s.chars().any(char::is_numeric),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &PhoneNormalizer, s: &str) -> Result<String, PhoneProblem> {
        let mut out = Vec::new();
        p.normalize(s, &mut out)
            .map(|()| String::from_utf8(out).unwrap())
    }

    /// The reference: parse with the crate, the same validity rule, and the
    /// crate's own E.164 formatter.
    fn oracle(p: &PhoneNormalizer, s: &str) -> Option<String> {
        let n = phonenumber::parse(p.region_for(s.trim()), s.trim()).ok()?;
        let national = format!(
            "{}{}",
            "0".repeat(usize::from(n.national().zeros())),
            n.national().value()
        );
        let e164 = PLANS
            .fits(n.code().value(), national.as_bytes())
            .then(|| n.format().mode(phonenumber::Mode::E164).to_string())
            .filter(|e| e.len() <= 1 + MAX_DIGITS)?;
        // A normal form reads back as itself (see `slow`).
        let back = phonenumber::parse(None, &e164).ok()?;
        (back.format().mode(phonenumber::Mode::E164).to_string() == e164).then_some(e164)
    }

    /// Found by the `normalize` fuzz target: a number the crate reads as
    /// seven digits of +1 became `+13450132`, which reads back as
    /// `+13453450132`. A normal form must normalize to itself.
    #[test]
    fn normal_forms_read_back_as_themselves() {
        let us = PhoneNormalizer::new();
        assert_eq!(
            norm(&us, "FO34)5-0132"),
            Err(PhoneProblem::NotInNumberingPlan { country_code: 1 })
        );
        // Nor with its own country code: these zeros are read as written
        // here, but as a national prefix once the letters are digits.
        assert_eq!(
            norm(&us, "+62 0000000A0A001"),
            Err(PhoneProblem::NotInNumberingPlan { country_code: 62 })
        );
        // Letters read as digits can make more than E.164 allows.
        assert_eq!(
            norm(&us, "+490t15656010156NR"),
            Err(PhoneProblem::TooManyDigits)
        );
        for s in [
            "(415) 555-0132",
            "+44 20 7946 0958",
            "+1 345 345 0132",
            "0049 30 1234567",
        ] {
            if let Ok(n) = norm(&us, s) {
                assert_eq!(norm(&us, &n), Ok(n.clone()), "{s}");
            }
        }
    }

    #[test]
    fn shapes_from_the_issue() {
        let us = PhoneNormalizer::new();
        for s in [
            "(415) 555-0132",
            "415.555.0132",
            "1-415-555-0132",
            "+1 415 555 0132",
            "4155550132",
            "415-555-0132",
            "+1 (415) 555-0132",
            " +1-415-555-0132 ",
        ] {
            assert_eq!(norm(&us, s).as_deref(), Ok("+14155550132"), "{s}");
        }
        assert_eq!(
            norm(&us, "+44 20 7739 5315").as_deref(),
            Ok("+442077395315")
        );
        assert_eq!(
            norm(&us, "+44 (0)20 7739 5315").as_deref(),
            Ok("+442077395315")
        );
        assert_eq!(norm(&us, "+49 30 12345678").as_deref(), Ok("+493012345678"));
        assert_eq!(norm(&us, "").as_deref(), Ok(""));
        assert_eq!(norm(&us, "  ").as_deref(), Ok(""));
    }

    #[test]
    fn invalid_values() {
        let us = PhoneNormalizer::new();
        for s in [
            "N/A",
            "unknown",
            "-",
            "tbd",
            "call me",
            "none",
            "ask office",
            "()",
        ] {
            assert_eq!(norm(&us, s), Err(PhoneProblem::NoDigits), "{s}");
        }
        assert!(norm(&us, "12").is_err());
        assert!(norm(&us, "(015) 555-0132").is_err());
        assert_eq!(norm(&us, &"1".repeat(65)), Err(PhoneProblem::TooLong));
    }

    #[test]
    fn default_region_applies_without_country_code() {
        let gb = PhoneNormalizer::with_region("gb").unwrap();
        assert_eq!(gb.region(), "GB");
        assert_eq!(norm(&gb, "020 7739 5315").as_deref(), Ok("+442077395315"));
        assert_eq!(norm(&gb, "+1 415 555 0132").as_deref(), Ok("+14155550132"));
        let ca = PhoneNormalizer::with_region("CA").unwrap();
        assert_eq!(norm(&ca, "416 555 0132").as_deref(), Ok("+14165550132"));
        assert!(PhoneNormalizer::with_region("XX").is_err());
        assert!(PhoneNormalizer::with_region("").is_err());
    }

    #[test]
    fn idempotent() {
        let us = PhoneNormalizer::new();
        for s in [
            "(415) 555-0132",
            "+44 20 7739 5315",
            "+49 30 12345678",
            "+33 1 42 68 53 00",
        ] {
            let once = norm(&us, s).unwrap();
            assert_eq!(norm(&us, &once).unwrap(), once);
        }
    }

    #[test]
    fn nanp_rule_matches_metadata() {
        // The fast path's NANP rule, `[2-9]\d{9}`, must be the union of the
        // general patterns of every +1 region, for ten-digit numbers.
        for prefix in 0..1000u32 {
            for suffix in [0u32, 1_234_567, 5_550_132, 9_999_999] {
                let national = format!("{prefix:03}{suffix:07}");
                assert_eq!(
                    PLANS.fits(1, national.as_bytes()),
                    is_nanp(national.as_bytes()),
                    "{national}"
                );
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_the_crate() {
        // Shapes the fast path takes, over many numbers, countries and
        // regions; every answer must equal the crate's.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let regions = ["US", "CA", "GB", "DE"];
        let ccs = [
            "1", "44", "49", "33", "61", "81", "91", "353", "852", "7", "20", "999",
        ];
        let mut checked = 0;
        for _ in 0..3000 {
            let r = next();
            let len = 6 + (r % 9) as usize;
            let digits: String = (0..len)
                .map(|i| char::from(b'0' + ((next() >> (i % 8)) % 10) as u8))
                .collect();
            let cc = ccs[(r >> 8) as usize % ccs.len()];
            let shapes = [
                digits.clone(),
                format!("+{cc}{digits}"),
                format!("+{cc} {digits}"),
                format!("+{cc}-{}", digits.replace("", "-").trim_matches('-')),
                format!("({}) {}", &digits[..3], &digits[3..]),
                format!("1-{}-{}", &digits[..3], &digits[3..]),
                format!("{}.{}", &digits[..3], &digits[3..]),
                format!("+{cc} ({}) {}", &digits[..2], &digits[2..]),
            ];
            for region in regions {
                let p = PhoneNormalizer::with_region(region).unwrap();
                for s in &shapes {
                    let got = norm(&p, s).ok();
                    assert_eq!(got, oracle(&p, s), "{s:?} in {region}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 90_000);
    }
}
