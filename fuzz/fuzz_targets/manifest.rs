//! Import/Export manifests from arbitrary text, as either job type: no
//! panic and no blow-up (YAML bombs are refused by budget); a refusal is
//! one of the manifest exceptions with a message; an accepted manifest
//! names only valid buckets, compiles its `ignore` patterns, and parses
//! the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::api::importexport::Exception;
use sluice::api::importexport::manifest::parse;
use sluice::job::Direction;
use sluice::objects::check_bucket_name;

fuzz_target!(|input: &[u8]| {
    let Some((&knob, rest)) = input.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let direction = if knob & 1 == 0 {
        Direction::Import
    } else {
        Direction::Export
    };
    let home = if knob & 2 == 0 { "US" } else { "DE" };
    match parse(text, direction, home) {
        Ok(m) => {
            for (field, bucket) in m.buckets() {
                assert!(check_bucket_name(&bucket).is_ok(), "{field}: {bucket:?}");
            }
            assert_eq!(m.import.is_some(), direction == Direction::Import);
            assert_eq!(m.export.is_some(), direction == Direction::Export);
            if let Some(i) = &m.import {
                for p in &i.ignore {
                    assert!(regex::Regex::new(p).is_ok(), "ignore {p:?}");
                }
            }
            assert_eq!(parse(text, direction, home).as_ref(), Ok(&m));
        }
        Err(e) => {
            assert!(
                matches!(
                    e.exception,
                    Exception::MalformedManifest
                        | Exception::InvalidManifestField
                        | Exception::MissingManifestField
                        | Exception::InvalidAddress
                        | Exception::MissingCustoms
                        | Exception::InvalidCustoms
                        | Exception::InvalidFileSystem
                        | Exception::InvalidParameter
                ),
                "{e:?}"
            );
            assert!(!e.message.is_empty());
        }
    }
});
