//! Slow, obvious references for the tests and the fuzz targets (which
//! include this file by path): one sequential `csv-core` pass, the same
//! input cut into pieces, and a naive ingest.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::Arc;

use csv_core::{ReadRecordResult, ReaderBuilder};
use sluice::ingest::normalize::{ContentType, Normalizer};
use sluice::ingest::parse::PieceParser;
use sluice::ingest::split::{SplitResult, Splitter};
use sluice::ingest::{
    Error, Failure, FailureReason, IngestBuilder, Input, Mapping, Outcome, Position, Records,
};

/// xorshift: deterministic test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A record: byte offset and line (from 0) of its first byte, its fields.
pub type Rec = (usize, u64, Vec<Vec<u8>>);

/// Whether `data` ends inside a quoted field, by csv-core's rules, one byte
/// at a time.
fn ends_inside_quotes(data: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum S {
        StartField,
        InField,
        Quoted,
        QuoteInQuoted,
    }
    let mut s = S::StartField;
    for &b in data {
        let term = b == b'\n' || b == b'\r';
        s = match s {
            S::StartField if b == b'"' => S::Quoted,
            S::StartField | S::InField | S::QuoteInQuoted if b == b',' || term => S::StartField,
            S::StartField | S::InField => S::InField,
            S::Quoted if b == b'"' => S::QuoteInQuoted,
            S::Quoted => S::Quoted,
            S::QuoteInQuoted if b == b'"' => S::Quoted,
            S::QuoteInQuoted => S::InField,
        };
    }
    s == S::Quoted
}

/// Every record of `data` in one `csv-core` pass (no BOM stripping), and the
/// offset of the last record if the input ends inside a quoted field.
pub fn sequential_records(data: &[u8]) -> (Vec<Rec>, Option<usize>) {
    let builder = ReaderBuilder::new();
    let mut rdr = builder.build();
    // Spend the first-call BOM check on nothing.
    let _ = rdr.read_record(b"\n", &mut [0u8; 1], &mut [0usize; 1]);
    let mut out = vec![0u8; 1 << 10];
    let mut ends = vec![0usize; 16];
    let mut recs = Vec::new();
    let mut pos = 0usize;
    loop {
        let start = pos;
        let (mut nout, mut nend) = (0usize, 0usize);
        let done = loop {
            let input = &data[pos..];
            let (res, nin, o, e) = rdr.read_record(input, &mut out[nout..], &mut ends[nend..]);
            pos += nin;
            nout += o;
            nend += e;
            match res {
                ReadRecordResult::Record => break false,
                ReadRecordResult::End => break true,
                ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
                ReadRecordResult::InputEmpty => {}
            }
        };
        if done {
            break;
        }
        let skipped = data[start..]
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        let first = start + skipped;
        let line = data[..first].iter().filter(|&&b| b == b'\n').count() as u64;
        let mut prev = 0;
        let fields = ends[..nend]
            .iter()
            .map(|&e| {
                let f = out[prev..e].to_vec();
                prev = e;
                f
            })
            .collect();
        recs.push((first, line, fields));
    }
    let unterminated = ends_inside_quotes(data).then(|| recs.last().map_or(0, |r| r.0));
    (recs, unterminated)
}

/// Records of `data` cut into pieces of `size` bytes, read `step` bytes at
/// a time, each piece parsed on its own. Also the offset of an unterminated
/// final record, if any.
pub fn piecewise(data: &[u8], size: usize, step: usize) -> (Vec<Rec>, Option<usize>) {
    let mut splitter = Splitter::new();
    let mut parser = PieceParser::new(b',', b'"');
    let mut out = Vec::new();
    let (mut start, mut have, mut line) = (0usize, 0usize, 0u64);
    let mut parse = |piece: &[u8], base: usize, last: bool, line: &mut u64| {
        let text = std::str::from_utf8(piece).ok();
        let n = parser.parse(piece, text, last, |r| {
            out.push((
                base + r.byte,
                *line + r.line,
                r.fields.iter().map(<[u8]>::to_vec).collect(),
            ));
        });
        *line += n;
    };
    loop {
        let eof = start + have >= data.len();
        match splitter.split(&data[start..start + have], size, eof) {
            SplitResult::NeedMore => have = (have + step).min(data.len() - start),
            SplitResult::Piece(n) => {
                parse(&data[start..start + n], start, false, &mut line);
                start += n;
                have -= n;
                splitter.reset();
            }
            SplitResult::End { unterminated } => {
                let end = unterminated.unwrap_or(have);
                parse(&data[start..start + end], start, true, &mut line);
                return (out, unterminated.map(|u| start + u));
            }
        }
    }
}

/// Fuzz knobs from the first three bytes of an input: piece size, read
/// step, thread count, and the rest as data.
pub fn knobs(input: &[u8]) -> Option<(usize, usize, usize, &[u8])> {
    let (head, data) = input.split_first_chunk::<3>()?;
    let [a, b, c] = *head;
    Some((
        1 + usize::from(a) * 7,
        1 + usize::from(b),
        1 + usize::from(c % 4),
        data,
    ))
}

/// What a naive ingest produced.
#[derive(Debug)]
pub struct Naive {
    pub records: Vec<Vec<String>>,
    pub processed: u64,
    pub failed: u64,
    pub warnings: u64,
    pub failures: Vec<String>,
}

/// Ingests `csv` (header first) the slow way: sequential records, the public
/// normalizers, a `HashMap` where the last row wins.
pub fn naive_ingest(csv: &[u8], mapping: &Mapping, region: &str) -> Naive {
    let bom = if csv.starts_with(b"\xef\xbb\xbf") {
        3
    } else {
        0
    };
    let (recs, unterminated) = sequential_records(&csv[bom..]);
    let norm = Normalizer::with_region(region).unwrap();
    let header: Vec<String> = recs[0]
        .2
        .iter()
        .map(|h| String::from_utf8(h.clone()).unwrap())
        .collect();
    let source: Vec<usize> = mapping
        .fields()
        .iter()
        .map(|f| header.iter().position(|h| **h == *f.column).unwrap())
        .collect();
    let input: Arc<str> = "t.csv".into();
    let mut out = Naive {
        records: Vec::new(),
        processed: 0,
        failed: 0,
        warnings: 0,
        failures: Vec::new(),
    };
    let mut kept: HashMap<Vec<String>, (usize, Vec<String>)> = HashMap::new();
    for (i, (byte, line, fields)) in recs.iter().enumerate().skip(1) {
        out.processed += 1;
        let position = Position {
            byte: (*byte + bom) as u64,
            line: line + 1,
            record: i as u64,
        };
        let mut fail = |reason| {
            out.failed += 1;
            out.failures.push(
                Failure {
                    input: Arc::clone(&input),
                    position,
                    reason,
                    input_index: 0,
                }
                .to_string(),
            );
        };
        if unterminated == Some(*byte) {
            fail(FailureReason::UnterminatedQuote);
            continue;
        }
        if fields.len() != header.len() {
            fail(FailureReason::FieldCount {
                expected: header.len(),
                found: fields.len(),
            });
            continue;
        }
        let text: Vec<Option<&str>> = fields.iter().map(|f| std::str::from_utf8(f).ok()).collect();
        if let Some(col) = text.iter().position(Option::is_none) {
            fail(FailureReason::InvalidUtf8 {
                column: col + 1,
                name: header[col].as_str().into(),
            });
            continue;
        }
        let mut key = Vec::new();
        let mut bad = None;
        for &k in mapping.key_fields() {
            let f = &mapping.fields()[k];
            let raw = text[source[k]].unwrap();
            match norm.normalize_to_string(f.content_type, raw) {
                Err(problem) => {
                    bad = Some(FailureReason::InvalidKey {
                        field: Arc::clone(&f.name),
                        column: Arc::clone(&f.column),
                        content_type: f.content_type,
                        problem,
                    });
                    break;
                }
                Ok(v)
                    if v.trim().is_empty()
                        && (v.is_empty() || f.content_type == ContentType::String) =>
                {
                    bad = Some(FailureReason::EmptyKey {
                        field: Arc::clone(&f.name),
                        column: Arc::clone(&f.column),
                    });
                    break;
                }
                Ok(v) => key.push(v),
            }
        }
        if let Some(reason) = bad {
            fail(reason);
            continue;
        }
        let values: Vec<String> = mapping
            .fields()
            .iter()
            .enumerate()
            .map(|(fi, f)| {
                let raw = text[source[fi]].unwrap();
                norm.normalize_to_string(f.content_type, raw)
                    .unwrap_or_else(|_| {
                        out.warnings += u64::from(mapping.key_position(fi).is_none());
                        raw.trim().to_owned()
                    })
            })
            .collect();
        kept.insert(key, (i, values));
    }
    let mut rows: Vec<(usize, Vec<String>)> = kept.into_values().collect();
    rows.sort();
    out.records = rows.into_iter().map(|(_, v)| v).collect();
    out
}

/// Runs `inputs` with `threads` workers and pieces of `piece_size` bytes.
pub fn run(
    mapping: &Mapping,
    threads: usize,
    piece_size: u64,
    inputs: Vec<Input>,
) -> Result<Outcome, Error> {
    IngestBuilder::new(mapping.clone())
        .threads(threads)
        .piece_size(piece_size)
        .build()
        .expect("valid settings")
        .run(inputs)
}

/// The records of a run, in input order, as strings.
pub fn records_of(records: &Records) -> Vec<Vec<String>> {
    records
        .in_input_order()
        .map(|r| r.values().map(str::to_owned).collect())
        .collect()
}
