//! Pinpoint endpoint files (CSV or NDJSON) from arbitrary bytes: the same
//! endpoints, failures and counts at two piece sizes and thread counts;
//! every row is counted once (an endpoint, a duplicate or a failure); and
//! every surviving endpoint is already in normal form (checking it again,
//! or after a JSON round trip, changes nothing).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sluice::endpoints::{Counters, Endpoint, Format, Source, plan, read};
use sluice::ingest::normalize::PhoneNormalizer;

#[path = "shared/pools.rs"]
mod pools;
static PHONE: LazyLock<PhoneNormalizer> = LazyLock::new(PhoneNormalizer::new);

fuzz_target!(|input: &[u8]| {
    let Some((&[knob, size], data)) = input.split_first_chunk::<2>() else {
        return;
    };
    let format = if knob & 1 == 0 {
        Format::Csv
    } else {
        Format::Json
    };
    let run = |threads: usize, piece: usize| {
        let p = plan(
            vec![Source {
                name: "f".into(),
                data: Ok(data.to_vec()),
            }],
            format,
            piece,
        );
        read(&p, pools::pool(threads), &PHONE, &Counters::default())
    };
    let a = run(1 + usize::from(knob >> 1) % 3, 1 + usize::from(size) * 3);
    let b = run(1, data.len().max(1));
    assert_eq!(a.endpoints, b.endpoints);
    assert_eq!(a.failures, b.failures);
    assert_eq!(
        (a.processed, a.failed, a.duplicates),
        (b.processed, b.failed, b.duplicates)
    );
    assert_eq!(a.completed_pieces, a.total_pieces);
    assert_eq!(
        a.processed,
        a.failed + a.duplicates + a.endpoints.len() as u64
    );
    for (id, e, _) in &a.endpoints {
        assert_eq!(e.identity().as_ref(), Some(id));
        let mut again = e.clone();
        again
            .check(&PHONE)
            .expect("a checked endpoint checks again");
        assert_eq!(&again, e, "check is not idempotent");
        let json = serde_json::to_string(e).unwrap();
        let mut back: Endpoint = serde_json::from_str(&json).unwrap();
        back.check(&PHONE).expect("its JSON checks");
        assert_eq!(&back, e, "JSON round trip");
    }
});
