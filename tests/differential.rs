//! Parallel pieces against one sequential pass.
//!
//! * Split + parse at every piece size equals one `csv-core` pass, for
//!   adversarial bytes.
//! * The whole pipeline, at many piece sizes and thread counts, equals a
//!   naive sequential ingest: `csv-core`, the public normalizers and a
//!   `HashMap` where the last row wins.

mod common;

use std::collections::HashMap;

use common::{Rng, naive_ingest, piecewise, records_of, run, sequential_records};
use sluice::ingest::normalize::ContentType;
use sluice::ingest::{Field, Input, Mapping};
use sluice::synth::{Spec, write_customers};

/// Bytes that stress quoting, terminators, BOMs and UTF-8.
fn adversarial(rng: &mut Rng, len: usize) -> Vec<u8> {
    const ALPHABET: &[&[u8]] = &[
        b"a",
        b"b",
        b",",
        b",",
        b"\"",
        b"\"",
        b"\"\"",
        b"\n",
        b"\n",
        b"\r",
        b"\r\n",
        b" ",
        b"\xef\xbb\xbf",
        "é".as_bytes(),
        b"\xff",
        b"x,y\n",
        b"\"q,\n\"",
    ];
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]);
    }
    v
}

#[test]
fn split_and_parse_equal_one_csv_core_pass() {
    let mut rng = Rng::new(7);
    let mut cases = 0;
    for round in 0..400 {
        let len = 1 + (round % 120);
        let data = adversarial(&mut rng, len);
        let (want, ends_quoted) = sequential_records(&data);
        for size in 1..=data.len() + 1 {
            for step in [1, 5, 64] {
                let (got, unterminated) = piecewise(&data, size, step);
                match ends_quoted {
                    // The record that never closes is reported, not parsed.
                    Some(at) => {
                        assert_eq!(unterminated, Some(at), "{data:?} size {size} step {step}");
                        assert_eq!(got, want[..want.len() - 1], "{data:?} size {size}");
                    }
                    None => {
                        assert_eq!(unterminated, None, "{data:?} size {size} step {step}");
                        assert_eq!(got, want, "{data:?} size {size} step {step}");
                    }
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 30_000);
}

#[test]
fn long_generated_input_at_many_piece_sizes() {
    let mut csv = Vec::new();
    write_customers(&Spec::new(3_000, 11), &mut csv).unwrap();
    let (want, ends_quoted) = sequential_records(&csv);
    assert_eq!(ends_quoted, None);
    for size in [1, 2, 3, 17, 64, 100, 1000, 4096, 65_536, csv.len()] {
        for step in [7, 4096, 1 << 20] {
            let (got, _) = piecewise(&csv, size, step);
            assert_eq!(got.len(), want.len(), "size {size} step {step}");
            assert!(got == want, "size {size} step {step}");
        }
    }
}

fn all_columns_mapping(key: &[&str]) -> Mapping {
    let ct = |c: &str| match c {
        "email" => ContentType::EmailAddress,
        "phone" => ContentType::PhoneNumber,
        "first_name" | "last_name" | "city" => ContentType::Name,
        "lifetime_value" => ContentType::Number,
        _ => ContentType::String,
    };
    let cols = sluice::synth::HEADER.trim_end().split(',');
    Mapping::new(
        cols.map(|c| Field::new(c, c, &format!("T.{c}"), ct(c)))
            .collect(),
        key,
    )
    .unwrap()
}

#[test]
fn pipeline_equals_naive_ingest() {
    let mut csv = Vec::new();
    let spec = Spec {
        bad_rate: 0.02,
        ..Spec::new(4_000, 3)
    };
    let stats = write_customers(&spec, &mut csv).unwrap();
    // Append adversarial rows: invalid UTF-8, ragged rows, blank lines,
    // quotes, CRLF, a BOM, a bare CR, and an unterminated quote at the end.
    csv.extend_from_slice(
        b"C1,Ann,Lee,ann@x.com,\xff\xfe,Paris,1,2,3,x\r\n\n\nC2,Bo,Li,bo@x.com,1,2\nC3,\"Cy\",\"O\"\"B\",CY@X.COM,(415) 555-0132,\"a\nb\",9,1e3,d,\"n\"\r\n\xef\xbb\xbfC4,D,E,d@x.com,+44 20 7739 5315,F,G,H,I,J\rC5,E,F,e@x.com, ,,,,,\nC6,F,G,\"f@x.com\",,,,,,\"open\nnever closed",
    );
    for key in [
        &["email"][..],
        &["customer_id"],
        &["last_name", "first_name"],
    ] {
        let mapping = all_columns_mapping(key);
        let want = naive_ingest(&csv, &mapping, "US");
        for threads in [1, 3] {
            for size in [1, 13, 100, 4096, 1 << 20] {
                let outcome = run(
                    &mapping,
                    threads,
                    size,
                    vec![Input::bytes("t.csv", csv.clone())],
                )
                .unwrap();
                let s = &outcome.summary;
                let ctx = format!("key {key:?} threads {threads} size {size}");
                assert_eq!(records_of(&outcome.records), want.records, "{ctx}");
                assert_eq!(s.processed, want.processed, "{ctx}");
                assert_eq!(s.failed, want.failed, "{ctx}");
                assert_eq!(s.unique, want.records.len() as u64, "{ctx}");
                assert_eq!(s.processed, s.unique + s.duplicates + s.failed, "{ctx}");
                assert_eq!(s.field_warnings, want.warnings, "{ctx}");
                assert_eq!(
                    s.failed_pieces, 1,
                    "{ctx}: the unterminated quote fails its piece"
                );
                let got: Vec<String> = s.failures.iter().map(ToString::to_string).collect();
                assert_eq!(got, want.failures[..got.len()], "{ctx}");
                assert_eq!(got.len(), want.failures.len().min(100), "{ctx}");
            }
        }
        if key == ["email"] {
            // Every generated row with a valid e-mail is one of these, plus the
            // adversarial rows C3, C4 and C5 (C1 has invalid UTF-8, C2 is
            // ragged, C6 never ends).
            assert_eq!(want.records.len() as u64, stats.distinct_email_valid + 3);
        }
    }
}

#[test]
fn last_row_wins_by_input_order() {
    // The same key in many rows spread over pieces: the last one is kept.
    let mut csv = String::from("id,v\n");
    let mut last = HashMap::new();
    let mut rng = Rng::new(99);
    for i in 0..5_000 {
        let id = rng.below(50);
        csv.push_str(&format!("k{id},{i}\n"));
        last.insert(format!("k{id}"), i.to_string());
    }
    let mapping = Mapping::new(
        vec![
            Field::new("id", "id", "Id", ContentType::String),
            Field::new("v", "v", "V", ContentType::String),
        ],
        &["id"],
    )
    .unwrap();
    for threads in [1, 2, 8] {
        for size in [1, 10, 333, 1 << 20] {
            let outcome = run(
                &mapping,
                threads,
                size,
                vec![Input::bytes("k.csv", csv.as_bytes())],
            )
            .unwrap();
            let got: HashMap<String, String> = outcome
                .records
                .iter()
                .map(|r| {
                    let v: Vec<&str> = r.values().collect();
                    (v[0].to_owned(), v[1].to_owned())
                })
                .collect();
            assert_eq!(got, last, "threads {threads} size {size}");
        }
    }
}
