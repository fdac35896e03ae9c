//! Pinpoint endpoint files (CSV or NDJSON) from arbitrary bytes, through the
//! engine with the endpoint mapper: the same endpoints, failures and counts
//! at two piece sizes and thread counts; every row counted once (an
//! endpoint, a duplicate or a failure); every kept endpoint already in
//! normal form (checking it again, or after a JSON round trip, changes
//! nothing) and keyed by its own identity; and, for CSV, every kept
//! endpoint is what the plain reference (`Columns::endpoint`, then
//! `Endpoint::check`) makes of its row.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sluice::endpoints::{Columns, Endpoint, EndpointMapper, Format, decode};
use sluice::ingest::normalize::PhoneNormalizer;
use sluice::ingest::{IngestBuilder, Input, Outcome};

#[path = "shared/pools.rs"]
mod pools;

#[path = "../../tests/common/mod.rs"]
mod common;

static PHONE: LazyLock<PhoneNormalizer> = LazyLock::new(PhoneNormalizer::new);

type Kept = Vec<(Vec<u8>, Vec<u8>, Option<(u64, u64)>)>;

fn kept(o: &Outcome<EndpointMapper>) -> Kept {
    o.records
        .in_input_order()
        .map(|r| {
            let p = r.place().map(|p| (p.position.line, p.position.record));
            (r.key_bytes().to_vec(), r.rest_bytes().to_vec(), p)
        })
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let Some((&[knob, size], data)) = input.split_first_chunk::<2>() else {
        return;
    };
    let format = if knob & 1 == 0 {
        Format::Csv
    } else {
        Format::Json
    };
    let run = |threads: usize, piece: u64| {
        IngestBuilder::with_mapper(EndpointMapper::new(format))
            .pool(Arc::clone(pools::pool(threads)))
            .piece_size(piece)
            .places(true)
            .tolerate_bad_inputs(true)
            .build()
            .expect("valid settings")
            .run(vec![Input::bytes("f", data.to_vec())])
            .expect("a tolerant run of bytes always runs")
    };
    let a = run(1 + usize::from(knob >> 1) % 3, 1 + u64::from(size) * 3);
    let b = run(1, data.len().max(1) as u64);
    assert_eq!(kept(&a), kept(&b));
    assert_eq!(a.summary.failures, b.summary.failures);
    let (s, t) = (&a.summary, &b.summary);
    assert_eq!(
        (s.processed, s.failed, s.duplicates, s.unique),
        (t.processed, t.failed, t.duplicates, t.unique)
    );
    assert_eq!(s.completed_pieces, s.total_pieces);
    assert_eq!(s.processed, s.failed + s.duplicates + s.unique);

    // The CSV reference, row by row, for the rows that were kept.
    let reference = (format == Format::Csv).then(|| {
        let (recs, _) = common::sequential_records(data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data));
        recs
    });
    let columns = reference.as_ref().and_then(|recs| {
        let header: Vec<String> = recs
            .first()?
            .2
            .iter()
            .map(|h| String::from_utf8(h.clone()).ok())
            .collect::<Option<_>>()?;
        Columns::from_header(header.iter().map(String::as_str)).ok()
    });

    for r in a.records.iter() {
        let (id, e) = decode(&r).expect("a kept row decodes");
        assert_eq!(e.identity().as_ref(), Some(&id));
        assert_eq!(id.key(), r.key_bytes());
        let mut again = e.clone();
        again.check(&PHONE).expect("a checked endpoint checks again");
        assert_eq!(again, e, "check is not idempotent");
        let json = serde_json::to_string(&e).unwrap();
        let mut back: Endpoint = serde_json::from_str(&json).unwrap();
        back.check(&PHONE).expect("its JSON checks");
        assert_eq!(back, e, "JSON round trip");
        if let (Some(recs), Some(columns)) = (&reference, &columns) {
            let record = r.place().expect("places are kept").position.record as usize;
            let fields: Vec<&str> = recs[record]
                .2
                .iter()
                .map(|f| std::str::from_utf8(f).expect("a kept row is text"))
                .collect();
            let mut want = columns.endpoint(&fields).expect("the reference reads the row");
            want.check(&PHONE).expect("the reference checks the row");
            assert_eq!(want, e, "the encoder and the reference disagree");
        }
    }
});
