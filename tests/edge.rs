//! Edge files through the library, each at several piece sizes and thread
//! counts: exact counts, exact records, failures with their positions.

mod common;

use common::run;
use sluice::ingest::normalize::ContentType;
use sluice::ingest::{ErrorKind, Field, IngestBuilder, Input, Mapping, Outcome, Progress, Summary};
use sluice::mapping::MappingFile;

const EDGE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/edge");

fn edge_mapping() -> Mapping {
    let json = std::fs::read(format!("{EDGE}/mapping.json")).unwrap();
    MappingFile::from_json(&json).unwrap().mapping
}

/// Runs `file` at piece sizes 1, 7 and 1 MiB with 1 and 2 threads, checks
/// that every run agrees, and returns one outcome.
fn run_all(mapping: &Mapping, file: &str) -> Outcome {
    let mut first: Option<(Vec<Vec<String>>, Summary)> = None;
    let mut kept = None;
    for threads in [1, 2] {
        for size in [1, 7, 1 << 20] {
            let outcome = run(mapping, threads, size, vec![Input::path(file)])
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let rows = rows(&outcome);
            let mut s = outcome.summary.clone();
            assert_eq!(s.completed_pieces, s.total_pieces, "{file} size {size}");
            assert_eq!(s.processed, s.unique + s.duplicates + s.failed, "{file}");
            // Piece counts depend on the piece size; nothing else may.
            (s.total_pieces, s.completed_pieces) = (0, 0);
            s.failed_pieces = s.failed_pieces.min(1);
            match &first {
                None => first = Some((rows, s)),
                Some((r0, s0)) => {
                    assert_eq!(&rows, r0, "{file}: threads {threads} size {size}");
                    assert_eq!(&s, s0, "{file}: threads {threads} size {size}");
                }
            }
            kept = Some(outcome);
        }
    }
    kept.unwrap()
}

fn rows(o: &Outcome) -> Vec<Vec<String>> {
    o.records
        .in_input_order()
        .map(|r| r.values().map(str::to_owned).collect())
        .collect()
}

fn failures(s: &Summary) -> Vec<String> {
    s.failures.iter().map(ToString::to_string).collect()
}

fn path(name: &str) -> String {
    format!("{EDGE}/{name}")
}

#[test]
fn empty_file_is_an_error_naming_it() {
    let e = IngestBuilder::new(edge_mapping())
        .build()
        .unwrap()
        .run(vec![Input::path(path("empty.csv"))])
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::NoHeader { .. }), "{e}");
    assert!(e.to_string().contains("empty.csv"), "{e}");
}

#[test]
fn header_only_files_have_no_rows() {
    for f in ["header_only.csv", "header_only_no_newline.csv"] {
        let o = run_all(&edge_mapping(), &path(f));
        assert_eq!(o.summary.processed, 0, "{f}");
        assert_eq!(o.summary.total_pieces, 0, "{f}");
        assert!(o.records.is_empty());
    }
}

#[test]
fn bom_and_crlf() {
    let o = run_all(&edge_mapping(), &path("bom_crlf.csv"));
    assert_eq!(
        (o.summary.processed, o.summary.unique, o.summary.duplicates),
        (3, 2, 1)
    );
    assert_eq!(
        rows(&o),
        [
            ["2", "bo@example.com", "Bo", "+442077395315"],
            ["3", "ann@example.com", "Ann Lee-Smith", "+14155550199"],
        ]
    );
}

#[test]
fn quoted_newlines_commas_and_escaped_quotes() {
    let o = run_all(&edge_mapping(), &path("quoted.csv"));
    assert_eq!(o.summary.failed, 0);
    assert_eq!(
        rows(&o),
        [
            ["1", "a@x.com", "Lee, Ann", "+14155550132"],
            ["2", "b@x.com", "Said \"hi\" then left", ""],
            ["3", "c@x.com", "multi line name", "+14155550100"],
            ["4", "d@x.com", "", ""],
        ]
    );
}

#[test]
fn ragged_rows_fail_with_their_place() {
    let o = run_all(&edge_mapping(), &path("ragged.csv"));
    let f = path("ragged.csv");
    assert_eq!(
        failures(&o.summary),
        [
            format!("{f}:3: record 2: expected 4 fields, found 3"),
            format!("{f}:4: record 3: expected 4 fields, found 5"),
        ]
    );
    assert_eq!(o.summary.failures[0].position.byte, 45);
    assert_eq!(o.summary.unique, 2);
}

#[test]
fn invalid_utf8_fails_the_row_and_names_the_column() {
    let o = run_all(&edge_mapping(), &path("invalid_utf8.csv"));
    let f = path("invalid_utf8.csv");
    assert_eq!(
        failures(&o.summary),
        [format!(
            "{f}:3: record 2: invalid UTF-8 in column 3 (\"name\")"
        )]
    );
    assert_eq!(o.summary.unique, 2);
}

#[test]
fn unterminated_quote_at_the_end_fails_its_piece_and_keeps_the_rest() {
    let o = run_all(&edge_mapping(), &path("unterminated.csv"));
    let f = path("unterminated.csv");
    let s = &o.summary;
    assert_eq!((s.processed, s.unique, s.failed), (2, 1, 1));
    assert_eq!(s.failed_pieces, 1);
    assert_eq!(
        failures(s),
        [format!(
            "{f}:3: record 2: a quoted field opens in this record and never closes; the input ends inside it"
        )]
    );
    assert_eq!(rows(&o), [["1", "a@x.com", "Ann", "+14155550132"]]);
}

#[test]
fn missing_final_newline_and_mixed_line_endings() {
    let o = run_all(&edge_mapping(), &path("no_final_newline.csv"));
    assert_eq!(rows(&o).len(), 2);
    assert_eq!(rows(&o)[1], ["2", "b@x.com", "Bo", "+14155550133"]);
    let o = run_all(&edge_mapping(), &path("mixed_endings.csv"));
    assert_eq!(o.summary.failed, 0);
    assert_eq!(
        rows(&o).iter().map(|r| r[1].clone()).collect::<Vec<_>>(),
        ["a@x.com", "b@x.com", "c@x.com"]
    );
}

#[test]
fn header_problems_stop_the_run_before_it_starts() {
    let ingest = IngestBuilder::new(edge_mapping()).build().unwrap();
    let e = ingest
        .run(vec![Input::path(path("duplicate_header.csv"))])
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::DuplicateColumn { name, first: 2, second: 4, .. } if name == "email"),
        "{e}"
    );
    let e = ingest
        .run(vec![
            Input::path(path("ragged.csv")),
            Input::path(path("missing_column.csv")),
        ])
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::MissingColumn { column, field, .. } if column == "email" && field == "Email"),
        "{e}"
    );
    assert!(e.to_string().contains("missing_column.csv"), "{e}");
    let e = ingest
        .run(vec![Input::path(path("no_such_file.csv"))])
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Io { .. }), "{e}");
    assert!(e.to_string().contains("no_such_file.csv"), "{e}");
}

#[test]
fn several_files_count_lines_per_file() {
    let o = IngestBuilder::new(edge_mapping())
        .piece_size(5)
        .build()
        .unwrap()
        .run(vec![
            Input::path(path("ragged.csv")),
            Input::path(path("quoted.csv")),
            Input::path(path("invalid_utf8.csv")),
        ])
        .unwrap();
    let f: Vec<String> = failures(&o.summary);
    assert_eq!(f.len(), 3);
    assert!(f[0].contains("ragged.csv:3: record 2"), "{f:?}");
    assert!(f[1].contains("ragged.csv:4: record 3"), "{f:?}");
    assert!(f[2].contains("invalid_utf8.csv:3: record 2"), "{f:?}");
    // Every e-mail appears in more than one file: the last valid row wins
    // (b@x.com and d@x.com in quoted.csv, a@x.com and c@x.com in
    // invalid_utf8.csv), in the order of those rows.
    assert_eq!(o.summary.processed, 4 + 4 + 3);
    let names: Vec<String> = rows(&o).iter().map(|r| r[2].clone()).collect();
    assert_eq!(names, ["Said \"hi\" then left", "", "Ann", "Cy"]);
}

#[test]
fn a_ten_megabyte_field() {
    let big: String = (0..10 << 20)
        .map(|i| match i % 97 {
            0 => '\n',
            1 => ',',
            _ => char::from(b'a' + (i % 26) as u8),
        })
        .collect();
    let csv = format!("id,email,notes\n1,a@x.com,\"{big}\"\n2,b@x.com,short\n");
    let mapping = Mapping::new(
        vec![
            Field::new("Id", "id", "Id", ContentType::String),
            Field::new("Email", "email", "Email", ContentType::EmailAddress),
            Field::new("Notes", "notes", "Notes", ContentType::String),
        ],
        &["Email"],
    )
    .unwrap();
    for size in [1, 64 << 10, 4 << 20] {
        let o = run(
            &mapping,
            2,
            size,
            vec![Input::bytes("big.csv", csv.as_bytes())],
        )
        .unwrap();
        let s = &o.summary;
        assert_eq!((s.processed, s.unique, s.failed), (2, 2, 0));
        assert_eq!(s.completed_pieces, s.total_pieces);
        let r = rows(&o);
        assert!(r[0][2] == big, "the 10 MB field comes back whole");
        // Line numbers after the field still count its newlines.
        assert_eq!(r[1], ["2", "b@x.com", "short"]);
    }
}

#[test]
fn a_thousand_columns() {
    let header: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
    let mut csv = header.join(",") + "\n";
    for r in 0..200 {
        let row: Vec<String> = (0..1000)
            .map(|c| match c {
                0 => format!("key{}", r % 150),
                500 => format!("  Name   {r} "),
                999 => format!("{r}.50"),
                _ => format!("v{c}"),
            })
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    let mapping = Mapping::new(
        vec![
            Field::new("Key", "c0", "Key", ContentType::String),
            Field::new("Name", "c500", "Name", ContentType::Name),
            Field::new("Amount", "c999", "Amount", ContentType::Number),
        ],
        &["Key"],
    )
    .unwrap();
    let o = IngestBuilder::new(mapping)
        .piece_size(10_000)
        .build()
        .unwrap()
        .run(vec![Input::bytes("wide.csv", csv.as_bytes())])
        .unwrap();
    assert_eq!((o.summary.processed, o.summary.unique), (200, 150));
    let r = rows(&o);
    assert_eq!(r[0], ["key50", "Name 50", "50.5"]);
    // key49 last appears in row 199.
    assert_eq!(r[149], ["key49", "Name 199", "199.5"]);
}

#[test]
fn progress_counts_and_stop() {
    let progress = Progress::new();
    let ingest = IngestBuilder::new(edge_mapping())
        .piece_size(8)
        .build()
        .unwrap();
    let o = ingest
        .run_with(vec![Input::path(path("ragged.csv"))], &progress)
        .unwrap();
    let p = progress.snapshot();
    assert_eq!(p.processed, o.summary.processed);
    assert_eq!(p.failed, 2);
    assert_eq!(p.unique, 2);
    assert_eq!(p.completed_pieces, p.total_pieces);
    assert_eq!(p.bytes_done, p.total_bytes);
    assert!(!o.summary.stopped);

    let stopped = Progress::new();
    stopped.stop();
    let o = ingest
        .run_with(vec![Input::path(path("ragged.csv"))], &stopped)
        .unwrap();
    assert!(o.summary.stopped);
    assert_eq!(o.summary.processed, 0);
}

#[test]
fn settings_out_of_range_are_errors() {
    let m = edge_mapping();
    for (b, what) in [
        (IngestBuilder::new(m.clone()).threads(0).clone(), "threads"),
        (
            IngestBuilder::new(m.clone()).piece_size(0).clone(),
            "piece size",
        ),
        (
            IngestBuilder::new(m.clone()).region("Atlantis").clone(),
            "phone region",
        ),
        (
            IngestBuilder::new(m.clone()).delimiter(b'"').clone(),
            "delimiter",
        ),
    ] {
        let e = b.build().unwrap_err();
        assert!(e.to_string().contains(what), "{e}");
    }
    // More pieces than row ordinals can number: refused before reading.
    let header = std::io::Cursor::new(b"id,email,name,phone\n".to_vec());
    let e = IngestBuilder::new(m)
        .piece_size(1)
        .build()
        .unwrap()
        .run(vec![Input::reader("huge.csv", header, Some(1 << 40))])
        .unwrap_err();
    assert!(
        e.to_string().contains("piece size must be large enough"),
        "{e}"
    );
}

#[test]
fn runs_share_a_pool_even_concurrently() {
    let pool = std::sync::Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    let mut builder = IngestBuilder::new(edge_mapping());
    builder.pool(std::sync::Arc::clone(&pool)).piece_size(16);
    let ingest = builder.build().unwrap();
    // From inside its own pool a run could wait on itself: refused.
    let e = pool
        .install(|| ingest.run(vec![Input::path(path("quoted.csv"))]))
        .unwrap_err();
    assert!(e.to_string().contains("outside the thread pool"), "{e}");
    let alone = run_all(&edge_mapping(), &path("quoted.csv"));
    std::thread::scope(|s| {
        let runs: Vec<_> = (0..4)
            .map(|_| s.spawn(|| ingest.run(vec![Input::path(path("quoted.csv"))]).unwrap()))
            .collect();
        for r in runs {
            let o = r.join().unwrap();
            assert_eq!(rows(&o), rows(&alone));
            assert_eq!(o.summary.processed, 4);
        }
    });
}

#[test]
fn records_read_a_group_at_a_time_are_the_records_read_one_by_one() {
    let file = format!("{}/testdata/customers.csv", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read(format!(
        "{}/testdata/customers.mapping.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mapping = MappingFile::from_json(&json).unwrap().mapping;
    let o = run(&mapping, 2, 4096, vec![Input::path(&file)]).unwrap();
    assert!(o.records.len() > 1000, "enough records for many groups");
    let mut handles: Vec<_> = o.records.handles().collect();
    // Jump about, as key order does, and read some twice.
    handles.reverse();
    let third = handles.len() / 3;
    handles.rotate_left(third);
    let again: Vec<_> = handles[..77].to_vec();
    handles.extend(again);
    let seen = |r: sluice::ingest::UniqueRecord<'_>| {
        (
            r.key_bytes().to_vec(),
            r.values().map(str::to_owned).collect::<Vec<_>>(),
        )
    };
    for n in [0, 1, 31, 32, 33, handles.len()] {
        let one_by_one: Vec<_> = handles[..n]
            .iter()
            .map(|&h| seen(o.records.get(h)))
            .collect();
        let grouped: Vec<_> = o
            .records
            .get_each(handles[..n].iter().copied())
            .map(seen)
            .collect();
        assert_eq!(grouped, one_by_one, "{n} handles");
    }
}
