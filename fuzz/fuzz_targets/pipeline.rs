//! Arbitrary bytes through the whole pipeline at two piece sizes and thread
//! counts: no panic, the accounting invariant, and the same records,
//! failures and counts from both runs.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sluice::ingest::normalize::ContentType;
use sluice::ingest::{Field, IngestBuilder, Input, Mapping};

#[path = "shared/pools.rs"]
mod pools;

#[path = "../../tests/common/mod.rs"]
mod common;

fuzz_target!(|input: &[u8]| {
    let Some((size, _, threads, data)) = common::knobs(input) else {
        return;
    };

    // The pipeline: no panic, the invariant, and the same answer at other
    // piece sizes and thread counts. Map every header column as a string
    // and key on the first.
    let Some((_, _, header)) = common::sequential_records(data).0.into_iter().next() else {
        return;
    };
    let Ok(names) = header
        .iter()
        .map(|h| std::str::from_utf8(h))
        .collect::<Result<Vec<&str>, _>>()
    else {
        return;
    };
    let fields: Vec<Field> = names
        .iter()
        .enumerate()
        .map(|(i, n)| Field::new(&format!("f{i}"), n, &format!("T{i}"), ContentType::String))
        .collect();
    let Ok(mapping) = Mapping::new(fields, &["f0"]) else {
        return;
    };
    let run = |threads: usize, size: u64| {
        IngestBuilder::new(mapping.clone())
            .pool(Arc::clone(pools::pool(threads)))
            .piece_size(size)
            .build()
            .expect("valid settings")
            .run(vec![Input::bytes("fuzz.csv", data.to_vec())])
    };
    let (a, b) = (
        run(threads, size as u64),
        run(1 + threads % 2, 1 + size as u64 * 3),
    );
    match (a, b) {
        (Ok(a), Ok(b)) => {
            let s = &a.summary;
            assert_eq!(s.processed, s.unique + s.duplicates + s.failed);
            assert_eq!(s.completed_pieces, s.total_pieces);
            let rows = |o: &sluice::ingest::Outcome| -> Vec<Vec<String>> {
                o.records
                    .in_input_order()
                    .map(|r| r.values().map(str::to_owned).collect())
                    .collect()
            };
            assert_eq!(rows(&a), rows(&b));
            assert_eq!(a.summary.failures, b.summary.failures);
            assert_eq!(
                (s.processed, s.unique, s.failed, s.field_warnings),
                (
                    b.summary.processed,
                    b.summary.unique,
                    b.summary.failed,
                    b.summary.field_warnings
                )
            );
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("runs disagree: {:?} vs {:?}", a.err(), b.err()),
    }
});
