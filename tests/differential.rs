//! Parallel pieces against one sequential pass.
//!
//! * Split + parse at every piece size equals one `csv-core` pass, for
//!   adversarial bytes.
//! * The whole pipeline, at many piece sizes and thread counts, equals a
//!   naive sequential ingest: `csv-core`, the public normalizers and a
//!   `HashMap` where the last row wins.
//! * Endpoint imports (CSV and NDJSON, two inputs) equal a naive import:
//!   the same pass, each row through serde and the endpoint's checks, the
//!   last row for an identity winning in input order.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{Rng, naive_ingest, piecewise, records_of, run, sequential_records};
use sluice::endpoints::{Columns, Endpoint, EndpointMapper, Format, decode};
use sluice::ingest::normalize::{ContentType, PhoneNormalizer};
use sluice::ingest::{Field, IngestBuilder, Input, MAX_FAILURES, Mapping};
use sluice::synth::{EndpointSpec, Spec, write_customers, write_endpoints};

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

/// What a naive endpoint import keeps and refuses: endpoints by identity
/// (the last row wins, inputs in order) and `(input, line, record)` of
/// every failed row.
#[derive(Debug, Default)]
struct NaiveEndpoints {
    kept: BTreeMap<Vec<u8>, Endpoint>,
    processed: u64,
    failed: Vec<(usize, u64, u64)>,
}

impl NaiveEndpoints {
    fn keep(&mut self, input: usize, line: u64, record: u64, e: Result<Endpoint, ()>) {
        self.processed += 1;
        let phone = PhoneNormalizer::new();
        let checked = e.and_then(|mut e| {
            e.check(&phone).map_err(drop)?;
            let id = e.identity().ok_or(())?;
            Ok((id.key(), e))
        });
        match checked {
            Ok((key, e)) => {
                self.kept.insert(key, e);
            }
            Err(()) => self.failed.push((input, line, record)),
        }
    }

    /// CSV the slow way: one `csv-core` pass, the header's columns, and the
    /// serde path (`Columns::endpoint`) the encoder is held to.
    fn csv(&mut self, input: usize, data: &[u8]) {
        let (recs, unterminated) = sequential_records(data);
        let Some(((_, _, header), rows)) = recs.split_first() else {
            return;
        };
        let names: Vec<&str> = header
            .iter()
            .map(|h| std::str::from_utf8(h).unwrap())
            .collect();
        let columns = Columns::from_header(names.iter().copied()).unwrap();
        for (i, (at, line, fields)) in rows.iter().enumerate() {
            let record = i as u64 + 1;
            let endpoint = if unterminated == Some(*at) || fields.len() != columns.len() {
                Err(())
            } else {
                fields
                    .iter()
                    .map(|f| std::str::from_utf8(f).map_err(drop))
                    .collect::<Result<Vec<&str>, ()>>()
                    .and_then(|f| columns.endpoint(&f).map_err(drop))
            };
            self.keep(input, line + 1, record, endpoint);
        }
    }

    /// Newline-delimited JSON the slow way: lines, blank ones skipped,
    /// each through serde.
    fn ndjson(&mut self, input: usize, data: &[u8]) {
        let mut record = 0;
        for (i, line) in data.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            record += 1;
            let endpoint = std::str::from_utf8(line)
                .map_err(drop)
                .and_then(|l| serde_json::from_str(l).map_err(drop));
            self.keep(input, i as u64 + 1, record, endpoint);
        }
    }
}

/// Endpoint rows with what breaks them: a duplicate by id and by a
/// differently written address, quoted commas and newlines, ragged rows,
/// invalid UTF-8, numbers out of range, CRLF and a bare CR.
const ENDPOINT_TAIL: &[u8] =
    b"EMAIL,Ann@Example.com,u1,\"Ann, Jr\",\"Lee\nSr\",Paris,75001,1.5\r\n\
EMAIL,ann@example.com,u1,Ann,Lee,Lyon,69001,2\n\
EMAIL,b\xff@x.co,u2,B,C,D,1,1\n\
EMAIL,c@x.co,u3\n\
SMS,(415) 555-0132,u4,D,E,F,2,1e400\rSMS,+1 415 555 0132,u4,D,E,G,3,4\n\
FAX,1,u5,E,F,G,4,5\n\
EMAIL,\"q@x.co\",u6,\"\"\"quoted\"\"\",F,G,5,6\n";

fn endpoint_json(data: &[u8], rng: &mut Rng) -> Vec<u8> {
    let (recs, _) = sequential_records(data);
    let names: Vec<&str> = recs[0]
        .2
        .iter()
        .map(|h| std::str::from_utf8(h).unwrap())
        .collect();
    let columns = Columns::from_header(names.iter().copied()).unwrap();
    let mut out = Vec::new();
    for (_, _, fields) in &recs[1..] {
        let line = fields
            .iter()
            .map(|f| std::str::from_utf8(f).ok())
            .collect::<Option<Vec<&str>>>()
            .filter(|f| f.len() == columns.len())
            .and_then(|f| columns.endpoint(&f).ok())
            .map(|e| serde_json::to_vec(&e).unwrap());
        match (line, rng.below(40)) {
            (Some(_), 0) => out.extend_from_slice(b"{\"Adress\":\"x@y.co\"}"),
            (Some(_), 1) => out.extend_from_slice(b"{\"Id\":\"j\"} trailing"),
            (Some(_), 2) => out.extend_from_slice(b"\r\n   "),
            (Some(line), _) => out.extend_from_slice(&line),
            (None, _) => out.extend_from_slice(b"\xff{}"),
        }
        out.extend_from_slice(if rng.below(10) == 0 { b"\r\n" } else { b"\n" });
    }
    out
}

#[test]
fn endpoint_imports_equal_naive_ones() {
    let mut rng = Rng::new(5);
    let mut first = Vec::new();
    let spec = EndpointSpec {
        rows: 2_000,
        endpoints: 700,
        attributes: 0,
        seed: 4,
    };
    write_endpoints(&spec, &mut first).unwrap();
    first.extend_from_slice(ENDPOINT_TAIL);
    let mut second = Vec::new();
    write_endpoints(&EndpointSpec { seed: 9, ..spec }, &mut second).unwrap();
    second.extend_from_slice(b"EMAIL,open@x.co,u9,\"never closed\n");
    let csv = vec![first, second];
    let json = csv
        .iter()
        .map(|c| endpoint_json(c, &mut rng))
        .collect::<Vec<_>>();
    for (format, files) in [(Format::Csv, &csv), (Format::Json, &json)] {
        let mut want = NaiveEndpoints::default();
        for (i, f) in files.iter().enumerate() {
            match format {
                Format::Csv => want.csv(i, f),
                Format::Json => want.ndjson(i, f),
            }
        }
        assert!(want.failed.len() > 20 && want.kept.len() > 500, "{want:?}");
        for threads in [1, 3] {
            for size in [1, 64, 4096, 1 << 20] {
                let ctx = format!("{format:?} threads {threads} size {size}");
                let inputs = files
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Input::bytes(&format!("{i}"), f.clone()))
                    .collect();
                let outcome = IngestBuilder::with_mapper(EndpointMapper::new(format))
                    .threads(threads)
                    .piece_size(size)
                    .places(true)
                    .tolerate_bad_inputs(true)
                    .build()
                    .unwrap()
                    .run(inputs)
                    .unwrap();
                let kept: BTreeMap<Vec<u8>, Endpoint> = outcome
                    .records
                    .iter()
                    .map(|r| {
                        let (id, e) = decode(&r).unwrap();
                        (id.key(), e)
                    })
                    .collect();
                assert!(kept == want.kept, "{ctx}");
                let s = &outcome.summary;
                assert_eq!(s.processed, want.processed, "{ctx}");
                assert_eq!(s.failed, want.failed.len() as u64, "{ctx}");
                assert_eq!(s.unique, want.kept.len() as u64, "{ctx}");
                let at: Vec<(usize, u64, u64)> = s
                    .failures
                    .iter()
                    .map(|f| (f.input_index, f.position.line, f.position.record))
                    .collect();
                assert_eq!(at, want.failed[..at.len()], "{ctx}");
                assert_eq!(at.len(), want.failed.len().min(MAX_FAILURES), "{ctx}");
            }
        }
    }
}
