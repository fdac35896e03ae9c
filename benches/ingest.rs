//! Criterion benches, in bytes per second: split, parse (with plain
//! `csv-core` beside it for reference), each normalizer, and the whole
//! pipeline at 1 and 2 threads; and, in rows per second, Pinpoint endpoint
//! files through the engine (split, parse, check, normalize, encode, dedup;
//! no store) at 1 and 2 threads, plain and with a dozen attributes a row.
//!
//! Data comes from `sluice::synth` (seeded, the shape of the canonical
//! benchmark file); `SLUICE_BENCH_ROWS` sets its size (default 200,000 rows,
//! about 22 MB). The canonical 1 GiB job is `benches/canonical.sh`.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use csv_core::{ReadRecordResult, Reader};
use sluice::endpoints::{EndpointMapper, Format};
use sluice::ingest::normalize::{
    ContentType, Normalizer, normalize_email, normalize_name, normalize_number,
};
use sluice::ingest::parse::PieceParser;
use sluice::ingest::split::{SplitResult, Splitter};
use sluice::ingest::{Ingest, IngestBuilder, Input, RowMapper};
use sluice::mapping::MappingFile;
use sluice::synth::{EndpointSpec, MAPPING_JSON, Spec, write_customers, write_endpoints};

fn data() -> Vec<u8> {
    let rows = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    let mut csv = Vec::new();
    write_customers(&Spec::new(rows, 42), &mut csv).expect("writes to memory");
    csv
}

/// One column's values, as the parser would hand them over.
fn column(csv: &[u8], index: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut parser = PieceParser::new(b',', b'"');
    parser.parse(csv, std::str::from_utf8(csv).ok(), true, |r| {
        if r.fields.len() == 10 {
            out.push(r.fields.str(index).unwrap_or_default().to_owned());
        }
    });
    out.remove(0); // the header
    out
}

fn split(c: &mut Criterion) {
    let csv = data();
    let mut g = c.benchmark_group("split");
    g.throughput(Throughput::Bytes(csv.len() as u64));
    g.bench_function("4MiB pieces", |b| {
        b.iter(|| {
            let mut s = Splitter::new();
            let (mut start, mut pieces) = (0, 0);
            loop {
                match s.split(&csv[start..], 4 << 20, true) {
                    SplitResult::Piece(n) => {
                        start += n;
                        pieces += 1;
                        s.reset();
                    }
                    _ => break black_box(pieces),
                }
            }
        })
    });
    g.finish();
}

fn parse(c: &mut Criterion) {
    let csv = data();
    let text = std::str::from_utf8(&csv).ok();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(csv.len() as u64));
    g.bench_function("sluice", |b| {
        let mut p = PieceParser::new(b',', b'"');
        b.iter(|| {
            let mut fields = 0usize;
            p.parse(&csv, text, true, |r| fields += r.fields.len());
            black_box(fields)
        })
    });
    g.bench_function("csv-core read_record (reference)", |b| {
        b.iter(|| {
            let mut r = Reader::new();
            let (mut out, mut ends) = (vec![0u8; 1 << 16], vec![0usize; 64]);
            let (mut input, mut n) = (&csv[..], 0u64);
            loop {
                let (res, nin, _, _) = r.read_record(input, &mut out, &mut ends);
                input = &input[nin..];
                match res {
                    ReadRecordResult::Record => n += 1,
                    ReadRecordResult::End => break black_box(n),
                    _ => {}
                }
            }
        })
    });
    g.finish();
}

fn normalize(c: &mut Criterion) {
    let csv = data();
    let normalizer = Normalizer::new();
    let cases: [(&str, usize, ContentType); 5] = [
        ("email", 3, ContentType::EmailAddress),
        ("phone", 4, ContentType::PhoneNumber),
        ("name (first_name)", 1, ContentType::Name),
        ("number (lifetime_value)", 7, ContentType::Number),
        ("string (notes)", 9, ContentType::String),
    ];
    let mut g = c.benchmark_group("normalize");
    for (label, col, ct) in cases {
        let values = column(&csv, col);
        g.throughput(Throughput::Bytes(
            values.iter().map(|v| v.len() as u64).sum(),
        ));
        g.bench_function(label, |b| {
            let mut out = Vec::with_capacity(256);
            b.iter(|| {
                let mut ok = 0usize;
                for v in &values {
                    out.clear();
                    ok += usize::from(match ct {
                        ContentType::EmailAddress => normalize_email(v, &mut out).is_ok(),
                        ContentType::Name => {
                            normalize_name(v, &mut out);
                            true
                        }
                        ContentType::Number => normalize_number(v, &mut out).is_ok(),
                        _ => normalizer.normalize(ct, v, &mut out).is_ok(),
                    });
                }
                black_box(ok)
            })
        });
    }
    g.finish();
}

fn pipeline(c: &mut Criterion) {
    let csv: std::sync::Arc<[u8]> = data().into();
    let mapping = MappingFile::from_json(MAPPING_JSON.as_bytes())
        .expect("the bundled mapping")
        .mapping;
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(csv.len() as u64));
    for threads in [1, 2] {
        let ingest = IngestBuilder::new(mapping.clone())
            .threads(threads)
            .build()
            .expect("valid settings");
        whole_runs(
            &mut g,
            format!("full mapping, {threads} thread(s)"),
            &ingest,
            &csv,
        );
    }
    g.finish();
}

/// Times whole runs of `ingest` over `csv`.
fn whole_runs<M: RowMapper>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: String,
    ingest: &Ingest<M>,
    csv: &std::sync::Arc<[u8]>,
) {
    g.bench_function(name, |b| {
        b.iter(|| {
            let o = ingest
                .run(vec![Input::bytes("bench.csv", std::sync::Arc::clone(csv))])
                .expect("runs");
            black_box(o.summary.unique)
        })
    });
}

fn endpoints(c: &mut Criterion) {
    let rows = std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    let mut g = c.benchmark_group("endpoints");
    g.sample_size(10);
    g.throughput(Throughput::Elements(rows));
    for (label, attributes) in [("plain", 0), ("12 attributes", 12)] {
        let mut csv = Vec::new();
        let spec = EndpointSpec {
            rows,
            endpoints: rows * 4 / 5,
            attributes,
            seed: 42,
        };
        write_endpoints(&spec, &mut csv).expect("writes to memory");
        let csv: std::sync::Arc<[u8]> = csv.into();
        for threads in [1, 2] {
            let ingest = IngestBuilder::with_mapper(EndpointMapper::new(Format::Csv))
                .threads(threads)
                .places(true)
                .build()
                .expect("valid settings");
            whole_runs(
                &mut g,
                format!("{label}, {threads} thread(s)"),
                &ingest,
                &csv,
            );
        }
    }
    g.finish();
}

criterion_group!(benches, split, parse, normalize, pipeline, endpoints);
criterion_main!(benches);
