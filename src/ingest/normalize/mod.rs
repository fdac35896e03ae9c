/*!
Field normalization by content type.

Each normalizer appends the normalized form of a value to an output buffer
and reports a value it cannot normalize as a typed [`Invalid`]. All of them
are idempotent: normalizing a normalized value changes nothing. An empty or
whitespace-only value normalizes to the empty string (for
[`ContentType::String`], to itself); whether that is acceptable is the
caller's decision, since only key fields must not be empty.

| content type | normal form |
|---|---|
| `EmailAddress` | trimmed, lowercased; exactly one `@`, a non-empty local part, a domain with a `.`, no inner whitespace |
| `PhoneNumber` | E.164: `+`, country code, national number; numbers without a country code use the default region |
| `Name` | Unicode NFKC, trimmed, inner whitespace runs collapsed to one space; case kept |
| `Number` | an exact canonical decimal: no exponent, no leading or trailing zeros, `0` for zero |
| `String` | unchanged |
*/

mod email;
mod name;
mod number;
mod phone;

use std::fmt;
use std::str::FromStr;

pub use email::{EmailProblem, normalize_email};
pub use name::normalize_name;
pub use number::{MAX_CANONICAL_LEN, NumberProblem, normalize_number};
pub use phone::{PhoneNormalizer, PhoneProblem, UnknownRegion};

/// How a field's value is compared and normalized.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// Any text, kept as it is.
    String,
    /// A decimal number.
    Number,
    /// A telephone number, normalized to E.164.
    PhoneNumber,
    /// An e-mail address.
    EmailAddress,
    /// A person's or a place's name.
    Name,
}

impl ContentType {
    /// Every content type, in declaration order.
    pub const ALL: [ContentType; 5] = [
        ContentType::String,
        ContentType::Number,
        ContentType::PhoneNumber,
        ContentType::EmailAddress,
        ContentType::Name,
    ];

    /// The upper-case name used in mappings: `STRING`, `NUMBER`,
    /// `PHONE_NUMBER`, `EMAIL_ADDRESS` or `NAME`.
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::String => "STRING",
            ContentType::Number => "NUMBER",
            ContentType::PhoneNumber => "PHONE_NUMBER",
            ContentType::EmailAddress => "EMAIL_ADDRESS",
            ContentType::Name => "NAME",
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the content types.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("unknown content type {0:?}: expected STRING, NUMBER, PHONE_NUMBER, EMAIL_ADDRESS or NAME")]
pub struct UnknownContentType(pub String);

impl FromStr for ContentType {
    type Err = UnknownContentType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ContentType::ALL
            .into_iter()
            .find(|ct| ct.as_str() == s)
            .ok_or_else(|| UnknownContentType(s.to_owned()))
    }
}

/// Why a value could not be normalized.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Invalid {
    /// Not an e-mail address.
    #[error("not an e-mail address: {0}")]
    Email(#[from] EmailProblem),
    /// Not a telephone number.
    #[error("not a phone number: {0}")]
    Phone(#[from] PhoneProblem),
    /// Not a decimal number.
    #[error("not a number: {0}")]
    Number(#[from] NumberProblem),
}

/// Normalizes values of every content type.
///
/// # Example
///
/// ```
/// use sluice::ingest::normalize::{ContentType, Normalizer};
///
/// let n = Normalizer::new();
/// let mut out = Vec::new();
/// n.normalize(ContentType::PhoneNumber, "(415) 555-0132", &mut out).unwrap();
/// assert_eq!(out, b"+14155550132");
/// ```
#[derive(Clone, Debug)]
pub struct Normalizer {
    phone: PhoneNormalizer,
}

impl Default for Normalizer {
    fn default() -> Self {
        Normalizer::new()
    }
}

impl Normalizer {
    /// A normalizer whose phone numbers default to the United States.
    pub fn new() -> Normalizer {
        Normalizer {
            phone: PhoneNormalizer::new(),
        }
    }

    /// A normalizer whose phone numbers without a country code belong to
    /// `region`, an ISO 3166-1 alpha-2 code such as `US` or `GB`.
    ///
    /// # Errors
    ///
    /// When `region` is not a region of the numbering-plan data.
    pub fn with_region(region: &str) -> Result<Normalizer, UnknownRegion> {
        Ok(Normalizer {
            phone: PhoneNormalizer::with_region(region)?,
        })
    }

    /// The default phone region.
    pub fn region(&self) -> &str {
        self.phone.region()
    }

    /// Appends the normal form of `value` to `out`.
    ///
    /// # Errors
    ///
    /// When `value` is not empty and not a valid value of `content_type`;
    /// `out` may then hold part of a value, so callers that keep going
    /// truncate it back.
    #[inline]
    pub fn normalize(
        &self,
        content_type: ContentType,
        value: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), Invalid> {
        match content_type {
            ContentType::String => {
                out.extend_from_slice(value.as_bytes());
                Ok(())
            }
            ContentType::Name => {
                normalize_name(value, out);
                Ok(())
            }
            ContentType::EmailAddress => Ok(normalize_email(value, out)?),
            ContentType::PhoneNumber => Ok(self.phone.normalize(value, out)?),
            ContentType::Number => Ok(normalize_number(value, out)?),
        }
    }

    /// As [`Normalizer::normalize`], remembering costly results in `cache`.
    ///
    /// # Errors
    ///
    /// As [`Normalizer::normalize`].
    #[inline]
    pub fn normalize_cached(
        &self,
        content_type: ContentType,
        value: &str,
        out: &mut Vec<u8>,
        cache: &mut Cache,
    ) -> Result<(), Invalid> {
        if content_type == ContentType::Name {
            cache.name(value, out);
            return Ok(());
        }
        self.normalize(content_type, value, out)
    }

    /// The normal form of `value` as a new string.
    ///
    /// # Errors
    ///
    /// As [`Normalizer::normalize`].
    pub fn normalize_to_string(
        &self,
        content_type: ContentType,
        value: &str,
    ) -> Result<String, Invalid> {
        let mut out = Vec::with_capacity(value.len());
        self.normalize(content_type, value, &mut out)?;
        Ok(String::from_utf8(out).expect("normalizers write UTF-8"))
    }
}

/// Whether `c` is whitespace, as `char::is_whitespace`, for one byte of
/// ASCII.
#[inline]
pub(crate) fn is_ascii_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t'..=b'\r')
}

/// `str::trim`, without looking at every character when both ends are
/// plain ASCII (the common case).
#[inline]
pub(crate) fn trim(s: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii() && !is_ascii_ws(b));
    let b = s.as_bytes();
    if plain(b.first()) && plain(b.last()) {
        s
    } else {
        s.trim()
    }
}

/// Normal forms of values that are costly to normalize and tend to repeat
/// (names with accents, in practice), remembered by one thread.
///
/// Normalization is a pure function, so a cached answer is the answer. The
/// cache holds at most 16,384 values and starts over when full.
#[derive(Debug)]
pub struct Cache {
    names: hashbrown::HashMap<Box<str>, Box<str>, ahash::RandomState>,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache {
            names: hashbrown::HashMap::with_hasher(ahash::RandomState::with_seeds(1, 2, 3, 4)),
        }
    }
}

const CACHE_ENTRIES: usize = 16_384;

impl Cache {
    /// An empty cache.
    pub fn new() -> Cache {
        Cache::default()
    }

    fn name(&mut self, value: &str, out: &mut Vec<u8>) {
        if value.is_ascii() {
            // ASCII is in NFKC already: only whitespace to collapse.
            return name::collapse_ascii(value.as_bytes(), out);
        }
        if let Some(n) = self.names.get(value) {
            out.extend_from_slice(n.as_bytes());
            return;
        }
        let start = out.len();
        normalize_name(value, out);
        if self.names.len() >= CACHE_ENTRIES {
            self.names.clear();
        }
        let normal = std::str::from_utf8(&out[start..]).expect("names are written as UTF-8");
        self.names.insert(value.into(), normal.into());
    }
}
