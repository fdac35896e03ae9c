//! The REST-JSON decoder of every Customer Profiles and Pinpoint
//! operation on arbitrary method, path, query and body: no panic; a
//! request is decoded, matched to no operation (naming its method and
//! path), or refused with a bad-request message; a body an operation
//! accepted is JSON; decoding is a function of the request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::api::ErrorCode;
use sluice::server::rest::{RestError, decode};

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];
const PATHS: [&str; 8] = [
    "/domains",
    "/domains/d",
    "/domains/d/upload-jobs",
    "/domains/d/upload-jobs/j",
    "/v1/apps",
    "/v1/apps/a/jobs/import",
    "/v1/apps/a/segments/s/jobs/import",
    "/v1/apps/a/endpoints/e",
];

fuzz_target!(|input: &[u8]| {
    let Some((&[m, p, cut], rest)) = input.split_first_chunk::<3>() else {
        return;
    };
    let method = METHODS[usize::from(m) % METHODS.len()];
    // Half the inputs take a known route so the bodies get decoded; the
    // others make their own path and query.
    let text = String::from_utf8_lossy(rest);
    let cut = usize::from(cut).min(text.len());
    let cut = (0..=cut)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (head, body) = text.split_at(cut);
    let (path, query) = if p & 1 == 0 {
        (
            PATHS[usize::from(p >> 1) % PATHS.len()].to_owned(),
            head.to_owned(),
        )
    } else {
        match head.split_once('?') {
            Some((a, b)) => (a.to_owned(), b.to_owned()),
            None => (head.to_owned(), String::new()),
        }
    };
    let got = decode(method, &path, &query, body.as_bytes());
    assert_eq!(got, decode(method, &path, &query, body.as_bytes()));
    match got {
        Ok(_) => {
            // A body the operation read is JSON (numbers of members it
            // ignores are skipped, not converted, as IgnoredAny does).
            let blank = body.bytes().all(|b| b.is_ascii_whitespace());
            let json = serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok();
            assert!(
                blank || json || matches!(method, "GET" | "DELETE" | "PUT"),
                "{body:?}"
            );
        }
        Err(RestError::NoOperation(m)) => assert!(m.contains(method) && m.contains(path.as_str())),
        Err(RestError::Api(e)) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(!e.message.is_empty());
        }
    }
});
