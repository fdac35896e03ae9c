//! Every ContentType normalizer on arbitrary text: no panic; a value is
//! either normalized or refused with a typed reason (never refused when
//! blank); the normal form is a fixed point (normalizing it again gives
//! it back) and is valid for its type; the cached path agrees.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice::ingest::normalize::{Cache, ContentType, Invalid, Normalizer};

static NORMALIZER: LazyLock<Normalizer> = LazyLock::new(Normalizer::new);

fn valid(ct: ContentType, out: &str) {
    if out.is_empty() {
        return;
    }
    match ct {
        ContentType::EmailAddress => {
            let (local, domain) = out.split_once('@').expect("one '@'");
            assert!(!local.is_empty() && domain.contains('.') && !domain.contains('@'));
            assert!(!out.chars().any(char::is_whitespace), "{out:?}");
            assert!(
                !out.chars().any(|c| c.is_control() || c == '\u{feff}'),
                "{out:?}"
            );
            assert_eq!(out, out.to_lowercase());
        }
        ContentType::PhoneNumber => {
            let digits = out.strip_prefix('+').expect("E.164 starts with '+'");
            assert!((1..=15).contains(&digits.len()), "{out:?}");
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{out:?}");
        }
        ContentType::Number => {
            let body = out.strip_prefix('-').unwrap_or(out);
            assert!(
                body.bytes().all(|b| b.is_ascii_digit() || b == b'.'),
                "{out:?}"
            );
            assert!(body.bytes().filter(|&b| b == b'.').count() <= 1, "{out:?}");
            assert!(!body.starts_with('.') && !body.ends_with('.'), "{out:?}");
            if body.contains('.') {
                assert!(!body.ends_with('0'), "{out:?}");
            }
            assert!(
                body == "0" || !body.starts_with("0") || body.starts_with("0."),
                "{out:?}"
            );
            assert_ne!(out, "-0");
        }
        ContentType::Name => {
            assert_eq!(out, out.trim(), "{out:?}");
            assert!(!out.contains("  "), "{out:?}");
        }
        ContentType::String => {}
        _ => {}
    }
}

fuzz_target!(|input: &[u8]| {
    let Ok(value) = std::str::from_utf8(input) else {
        return;
    };
    let n = &*NORMALIZER;
    let mut cache = Cache::new();
    for ct in [
        ContentType::String,
        ContentType::Name,
        ContentType::EmailAddress,
        ContentType::PhoneNumber,
        ContentType::Number,
    ] {
        let got = n.normalize_to_string(ct, value);
        let mut cached = Vec::new();
        let c = n.normalize_cached(ct, value, &mut cached, &mut cache);
        assert_eq!(c.is_ok(), got.is_ok());
        match got {
            Ok(out) => {
                assert_eq!(cached, out.as_bytes(), "{ct}: the cached path differs");
                valid(ct, &out);
                let again = n.normalize_to_string(ct, &out);
                assert_eq!(
                    again.as_deref(),
                    Ok(out.as_str()),
                    "{ct}: not a fixed point of {value:?}"
                );
            }
            Err(e) => {
                assert!(!value.trim().is_empty(), "{ct}: a blank value refused: {e}");
                assert!(
                    matches!(
                        (ct, e),
                        (ContentType::EmailAddress, Invalid::Email(_))
                            | (ContentType::PhoneNumber, Invalid::Phone(_))
                            | (ContentType::Number, Invalid::Number(_))
                    ),
                    "{ct}: {e:?}"
                );
                assert!(!e.to_string().is_empty());
            }
        }
    }
});
