//! The bad-input matrix: one table of malformed CSV files, each fed to
//! every entry point that ingests one (the library, `sluice ingest
//! --data-dir`, and a Customer Profiles upload job over HTTP), with the
//! exact outcome each must give: the same counts, failures that name
//! their line, record and column, no panic, and the profiles already
//! stored untouched. Malformed JSON, manifests and request bodies follow
//! in their own tables.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sluice::endpoints::{EndpointMapper, Format};
use sluice::ingest::{IngestBuilder, Input};
use sluice::mapping::MappingFile;
use sluice::store::{AccountId, ProfileStore, SqliteStore};

/// The mapping every CSV case uses (key: `email`).
const MAPPING: &str = r#"{
  "DomainName": "bad-input",
  "Fields": {
    "Id": {"Source": "_source.id", "Target": "_profile.AccountNumber", "ContentType": "STRING"},
    "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress", "ContentType": "EMAIL_ADDRESS"},
    "Name": {"Source": "_source.name", "Target": "_profile.FirstName", "ContentType": "NAME"},
    "Phone": {"Source": "_source.phone", "Target": "_profile.PhoneNumber", "ContentType": "PHONE_NUMBER"},
    "Score": {"Source": "_source.score", "Target": "_profile.Attributes.score", "ContentType": "NUMBER"}
  },
  "UniqueKey": "Email"
}"#;

const HEADER: &str = "id,email,name,phone,score\n";

/// A profile every store holds before the cases run; no case may touch it.
const SEED: &str = "id,email,name,phone,score\nS1,seed@keep.me,Seed,+1 415 555 0100,7\n";
const SEED_KEY: &str = "seed@keep.me";

/// What a run of a case must give.
#[derive(Debug)]
enum Want {
    /// The run completes with these counts and first failures (each
    /// without the leading file name).
    Rows {
        processed: u64,
        unique: u64,
        failed: u64,
        warnings: u64,
        failures: &'static [&'static str],
    },
    /// Refused before any row is read, with this message (after the file
    /// name).
    Refused(&'static str),
}

struct Case {
    name: &'static str,
    data: fn() -> Vec<u8>,
    want: Want,
}

fn csv(rows: &str) -> Vec<u8> {
    format!("{HEADER}{rows}").into_bytes()
}

/// A file of `n` rows `,u{i % m}@x.co,,,`: `m` keys, each many times.
fn many_rows(n: usize, m: usize) -> Vec<u8> {
    use std::io::Write;
    let mut out = HEADER.as_bytes().to_vec();
    out.reserve(n * 16);
    for i in 0..n {
        let _ = writeln!(out, ",u{}@x.co,,,", i % m);
    }
    out
}

fn cases() -> Vec<Case> {
    use Want::*;
    vec![
        Case {
            name: "truncated inside a quoted field",
            data: || csv("1,a@b.co,Ann,,1\n2,\"c@d.co,Bo"),
            want: Rows {
                processed: 2,
                unique: 1,
                failed: 1,
                warnings: 0,
                failures: &[
                    ":3: record 2: a quoted field opens in this record and never closes; the input ends inside it",
                ],
            },
        },
        Case {
            name: "truncated mid-row",
            data: || csv("1,a@b.co,Ann,,1\n2,c@d.co"),
            want: Rows {
                processed: 2,
                unique: 1,
                failed: 1,
                warnings: 0,
                failures: &[":3: record 2: expected 5 fields, found 2"],
            },
        },
        Case {
            name: "invalid UTF-8 in every column",
            data: || {
                let mut v = csv("");
                for col in 0..5 {
                    let mut row: Vec<Vec<u8>> = ["i", "a@b.co", "n", "", "1"]
                        .iter()
                        .map(|s| s.as_bytes().to_vec())
                        .collect();
                    row[col].extend_from_slice(b"\xff\xfe");
                    v.extend(row.join(&b","[..]));
                    v.push(b'\n');
                }
                v
            },
            want: Rows {
                processed: 5,
                unique: 0,
                failed: 5,
                warnings: 0,
                failures: &[
                    ":2: record 1: invalid UTF-8 in column 1 (\"id\")",
                    ":3: record 2: invalid UTF-8 in column 2 (\"email\")",
                    ":4: record 3: invalid UTF-8 in column 3 (\"name\")",
                    ":5: record 4: invalid UTF-8 in column 4 (\"phone\")",
                    ":6: record 5: invalid UTF-8 in column 5 (\"score\")",
                ],
            },
        },
        Case {
            name: "NUL bytes",
            data: || csv("1\0,a@b.co,A\0nn,,1\n2,c\0@d.co,,,\n3,e@f.co,,,\0\n"),
            want: Rows {
                processed: 3,
                unique: 2,
                failed: 1,
                warnings: 1,
                failures: &[
                    ":3: record 2: unique key field \"Email\" (column \"email\") is not a valid EMAIL_ADDRESS: not an e-mail address: a control or invisible formatting character inside the address",
                ],
            },
        },
        Case {
            name: "header only",
            data: || HEADER.as_bytes().to_vec(),
            want: Rows {
                processed: 0,
                unique: 0,
                failed: 0,
                warnings: 0,
                failures: &[],
            },
        },
        Case {
            name: "empty file",
            data: Vec::new,
            want: Refused(": no header row (the input is empty)"),
        },
        Case {
            name: "duplicate header names",
            data: || b"id,email,name,email,phone,score\n1,a@b.co,A,x,,1\n".to_vec(),
            want: Refused(": line 1: duplicate header name \"email\" in columns 2 and 4"),
        },
        Case {
            name: "an empty header name where a mapped column should be",
            data: || b"id,,name,phone,score\n1,a@b.co,A,,1\n".to_vec(),
            want: Refused(
                ": line 1: no column \"email\" in the header (mapped by field \"Email\")",
            ),
        },
        Case {
            name: "empty header names of columns nothing maps",
            data: || b"id,email,,name,phone,score,\n1,a@b.co,x,A,,1,y\n2,c@d.co,,,,,\n".to_vec(),
            want: Rows {
                processed: 2,
                unique: 2,
                failed: 0,
                warnings: 0,
                failures: &[],
            },
        },
        Case {
            name: "mixed line endings",
            data: || csv("1,a@b.co,,,1\r\n2,c@d.co,,,2\r3,e@f.co,,,3\n4,g@h.co,,,4"),
            want: Rows {
                processed: 4,
                unique: 4,
                failed: 0,
                warnings: 0,
                failures: &[],
            },
        },
        Case {
            name: "a quote that opens and never closes, mid-file",
            data: || csv("1,a@b.co,,,1\n2,\"c@d.co,,,2\n3,e@f.co,,,3\n"),
            want: Rows {
                processed: 2,
                unique: 1,
                failed: 1,
                warnings: 0,
                failures: &[
                    ":3: record 2: a quoted field opens in this record and never closes; the input ends inside it",
                ],
            },
        },
        Case {
            name: "a BOM in the middle",
            data: || csv("1,a@b.co,,,1\n\u{feff}2,c@d.co,,,2\n3,\u{feff}e@f.co,,,3\n"),
            want: Rows {
                processed: 3,
                unique: 2,
                failed: 1,
                warnings: 0,
                failures: &[
                    ":4: record 3: unique key field \"Email\" (column \"email\") is not a valid EMAIL_ADDRESS: not an e-mail address: a control or invisible formatting character inside the address",
                ],
            },
        },
        Case {
            name: "huge numbers",
            data: || {
                csv(&format!(
                    "1,a@b.co,,,1e400\n2,c@d.co,,,1e999999999999\n3,e@f.co,,,{}\n",
                    "9".repeat(5000)
                ))
            },
            want: Rows {
                processed: 3,
                unique: 3,
                failed: 0,
                warnings: 2,
                failures: &[],
            },
        },
        Case {
            name: "a 100 MB field",
            data: || {
                let mut v = csv("1,a@b.co,\"");
                v.extend(std::iter::repeat_n(b'x', 100 << 20));
                v.extend_from_slice(b"\",,1\n2,c@d.co,,,2\n");
                v
            },
            want: Rows {
                processed: 2,
                unique: 2,
                failed: 0,
                warnings: 0,
                failures: &[],
            },
        },
        Case {
            name: "100,000 columns",
            data: || {
                let mut v = HEADER.trim_end().as_bytes().to_vec();
                for i in 0..100_000 {
                    v.extend_from_slice(format!(",c{i}").as_bytes());
                }
                v.push(b'\n');
                for row in ["1,a@b.co,A,,1", "2,c@d.co,B,,2"] {
                    v.extend_from_slice(row.as_bytes());
                    v.extend(std::iter::repeat_n(&b",x"[..], 100_000).flatten());
                    v.push(b'\n');
                }
                v
            },
            want: Rows {
                processed: 2,
                unique: 2,
                failed: 0,
                warnings: 0,
                failures: &[],
            },
        },
        Case {
            name: "10 million tiny rows",
            data: || many_rows(10_000_000, 1000),
            want: Rows {
                processed: 10_000_000,
                unique: 1000,
                failed: 0,
                warnings: 0,
                failures: &[],
            },
        },
    ]
}

fn mapping() -> sluice::ingest::Mapping {
    MappingFile::from_json(MAPPING.as_bytes()).unwrap().mapping
}

/// The counts and failures a run gave, or its refusal, with the file name
/// `name` taken off the front of each message.
type Got = Result<(u64, u64, u64, u64, Vec<String>), String>;

fn check(case: &Case, via: &str, got: Got, name: &str) {
    // The file name, or a path ending in it, comes first.
    let strip = |m: &str| m.find(name).map_or(m, |i| &m[i + name.len()..]).to_owned();
    match (&case.want, got) {
        (
            Want::Rows {
                processed,
                unique,
                failed,
                warnings,
                failures,
            },
            Ok((p, u, f, w, fs)),
        ) => {
            assert_eq!(
                (p, u, f, w),
                (*processed, *unique, *failed, *warnings),
                "{}: {via}: counts (processed, unique, failed, field warnings); failures {fs:?}",
                case.name
            );
            let fs: Vec<String> = fs.iter().map(|m| strip(m)).collect();
            assert_eq!(fs.len(), failures.len(), "{}: {via}: {fs:?}", case.name);
            for (got, want) in fs.iter().zip(failures.iter()) {
                assert!(
                    got.starts_with(want),
                    "{}: {via}: {got:?} does not start {want:?}",
                    case.name
                );
            }
        }
        // A job (not the library) whose every row fails is a failed job,
        // naming the first failure.
        (
            Want::Rows {
                unique: 0,
                failures,
                ..
            },
            Err(m),
        ) if via != "library" && !failures.is_empty() => {
            assert!(
                m.contains("every row failed; the first: ") && strip(&m).starts_with(failures[0]),
                "{}: {via}: {m}",
                case.name
            );
        }
        (Want::Refused(want), Err(m)) => {
            assert_eq!(strip(m.trim()), *want, "{}: {via}", case.name);
        }
        (want, got) => panic!("{}: {via}: wanted {want:?}, got {got:?}", case.name),
    }
}

#[test]
fn every_bad_csv_through_the_library() {
    let mapping = mapping();
    for case in cases() {
        let data = (case.data)();
        for (threads, piece) in [(1, 1 << 20), (2, 4096)] {
            if data.len() > 30 << 20 && piece < 1 << 20 {
                continue; // the big ones once
            }
            let got = IngestBuilder::new(mapping.clone())
                .threads(threads)
                .piece_size(piece)
                .build()
                .unwrap()
                .run(vec![Input::bytes("in.csv", data.clone())])
                .map(|o| {
                    let s = o.summary;
                    (
                        s.processed,
                        s.unique,
                        s.failed,
                        s.field_warnings,
                        s.failures.iter().map(ToString::to_string).collect(),
                    )
                })
                .map_err(|e| e.to_string());
            check(&case, "library", got, "in.csv");
        }
    }
}

fn sluice(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the binary runs")
}

fn seed_profile(data: &Path) -> String {
    let store = SqliteStore::open(data).unwrap();
    let p = store
        .profile(&AccountId::default(), "bad-input", SEED_KEY, 0)
        .unwrap()
        .expect("the seed profile is there");
    format!("{p:?}")
}

#[test]
fn every_bad_csv_through_the_cli_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("mapping.json"), MAPPING).unwrap();
    std::fs::write(d.join("seed.csv"), SEED).unwrap();
    let out = sluice(
        d,
        &[
            "ingest",
            "seed.csv",
            "--mapping",
            "mapping.json",
            "--data-dir",
            "data",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seeded = seed_profile(&d.join("data"));
    for case in cases() {
        std::fs::write(d.join("in.csv"), (case.data)()).unwrap();
        let out = sluice(
            d,
            &[
                "ingest",
                "in.csv",
                "--mapping",
                "mapping.json",
                "--data-dir",
                "data",
                "--json",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
        let got = if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            let n = |k: &str| v[k].as_u64().unwrap();
            Ok((
                n("TotalProcessed"),
                n("UniqueRecords"),
                n("FailedRecords"),
                n("FieldWarnings"),
                v["Failures"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_owned())
                    .collect(),
            ))
        } else {
            Err(stderr.trim().lines().last().unwrap_or("").to_owned())
        };
        check(&case, "cli", got, "in.csv");
        assert_eq!(
            seed_profile(&d.join("data")),
            seeded,
            "{}: the store changed",
            case.name
        );
    }
    let _ = std::fs::remove_file(d.join("in.csv"));
}

/// Malformed Pinpoint endpoint files, CSV and newline-delimited JSON,
/// through the engine with the endpoint mapper as import jobs run it
/// (a bad input fails on its own): the same counts and failures at two
/// piece sizes and thread counts, each failure at its line and record.
fn endpoint_cases() -> Vec<(Format, Case)> {
    use Want::*;
    vec![
        (
            Format::Csv,
            Case {
                name: "endpoints: truncated inside a quoted field",
                data: || b"ChannelType,Address\nEMAIL,a@b.co\nEMAIL,\"c@d".to_vec(),
                want: Rows {
                    processed: 2,
                    unique: 1,
                    failed: 1,
                    warnings: 0,
                    failures: &[
                        ":3: record 2: a quoted field opens in this record and never closes",
                    ],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: wrong field counts",
                data: || b"ChannelType,Address\nEMAIL,a@b.co,x\nEMAIL\nSMS,4155550132\n".to_vec(),
                want: Rows {
                    processed: 3,
                    unique: 1,
                    failed: 2,
                    warnings: 0,
                    failures: &[
                        ":2: record 1: expected 2 fields, found 3",
                        ":3: record 2: expected 2 fields, found 1",
                    ],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: invalid UTF-8, a NUL and a byte-order mark in addresses",
                data: || {
                    b"ChannelType,Address\nEMAIL,a\xff@b.co\nEMAIL,c\0@d.co\nEMAIL,\xef\xbb\xbfe@f.co\n"
                        .to_vec()
                },
                want: Rows {
                    processed: 3,
                    unique: 0,
                    failed: 3,
                    warnings: 0,
                    failures: &[
                        ":2: record 1: invalid UTF-8 in column 2 (\"Address\")",
                        ":3: record 2: Address: \"c\\0@d.co\" is not a valid EMAIL address",
                        ":4: record 3: Address: \"\\u{feff}e@f.co\" is not a valid EMAIL address",
                    ],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: a header that names no attribute",
                data: || b"Nick,Address\nx,y\n".to_vec(),
                want: Rows {
                    processed: 0,
                    unique: 0,
                    failed: 0,
                    warnings: 0,
                    failures: &[":1: the header: column 1 \"Nick\" is not an endpoint attribute"],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: a single-valued column twice",
                data: || b"Address,Address\nx,y\n".to_vec(),
                want: Rows {
                    processed: 0,
                    unique: 0,
                    failed: 0,
                    warnings: 0,
                    failures: &[
                        ":1: the header: column 2 \"Address\" repeats a column that has one value",
                    ],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: an empty file",
                data: Vec::new,
                want: Rows {
                    processed: 0,
                    unique: 0,
                    failed: 0,
                    warnings: 0,
                    failures: &[":1: no header row (the input is empty)"],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: numbers out of range and not numbers",
                data: || {
                    b"Id,Metrics.m,Location.Latitude\ne1,1e400,1\ne2,2,91\ne3,x,1\ne4,4.5,-90\n"
                        .to_vec()
                },
                want: Rows {
                    processed: 4,
                    unique: 1,
                    failed: 3,
                    warnings: 0,
                    failures: &[
                        ":2: record 1: Metrics.m: \"1e400\" is not a number",
                        ":3: record 2: Location.Latitude: 91 is not between -90 and 90",
                        ":4: record 3: Metrics.m: \"x\" is not a number",
                    ],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: a 10 MB attribute value",
                data: || {
                    let mut v = b"Id,Attributes.a\ne1,\"".to_vec();
                    v.extend(std::iter::repeat_n(b'x', 10 << 20));
                    v.extend_from_slice(b"\"\ne2,ok\n");
                    v
                },
                want: Rows {
                    processed: 2,
                    unique: 1,
                    failed: 1,
                    warnings: 0,
                    failures: &[
                        ":2: record 1: Attributes.a: a value has at most 100 characters, not 10485760",
                    ],
                },
            },
        ),
        (
            Format::Csv,
            Case {
                name: "endpoints: CR, LF and CRLF line ends",
                data: || {
                    b"ChannelType,Address\r\nEMAIL,a@b.co\rEMAIL,c@d.co\nEMAIL,e@f.co\r\n".to_vec()
                },
                want: Rows {
                    processed: 3,
                    unique: 3,
                    failed: 0,
                    warnings: 0,
                    failures: &[],
                },
            },
        ),
        (
            Format::Json,
            Case {
                name: "endpoints: JSON with trailing garbage, unknown members and deep nesting",
                data: || {
                    let mut v = b"{\"ChannelType\":\"EMAIL\",\"Address\":\"a@b.co\"} x\n{\"Adress\":\"x\"}\n"
                        .to_vec();
                    v.extend(std::iter::repeat_n(b'[', 10_000));
                    v.extend(std::iter::repeat_n(b']', 10_000));
                    v.extend_from_slice(b"\n{\"Id\":\"e1\"}\n");
                    v
                },
                want: Rows {
                    processed: 4,
                    unique: 1,
                    failed: 3,
                    warnings: 0,
                    failures: &[
                        ":1: record 1: not an endpoint: trailing characters",
                        ":2: record 2: not an endpoint: unknown field `Adress`",
                        ":3: record 3: not an endpoint: invalid type: sequence",
                    ],
                },
            },
        ),
        (
            Format::Json,
            Case {
                name: "endpoints: JSON with 1e400, binary, blank lines and no last newline",
                data: || {
                    b"{\"Id\":\"e1\",\"Metrics\":{\"m\":1e400}}\n\xff\xfe\x00\n\r\n\n  \n{\"Id\":\"e2\"}"
                        .to_vec()
                },
                want: Rows {
                    processed: 3,
                    unique: 1,
                    failed: 2,
                    warnings: 0,
                    failures: &[
                        ":1: record 1: not an endpoint: number out of range",
                        ":2: record 2: is not valid UTF-8",
                    ],
                },
            },
        ),
    ]
}

#[test]
fn every_bad_endpoint_file_through_the_library() {
    for (format, case) in endpoint_cases() {
        let data = (case.data)();
        let name = match format {
            Format::Csv => "in.csv",
            Format::Json => "in.ndjson",
        };
        for (threads, piece) in [(1, 1 << 20), (2, 7)] {
            let got = IngestBuilder::with_mapper(EndpointMapper::new(format))
                .threads(threads)
                .piece_size(piece)
                .places(true)
                .tolerate_bad_inputs(true)
                .build()
                .unwrap()
                .run(vec![Input::bytes(name, data.clone())])
                .map(|o| {
                    let s = o.summary;
                    assert_eq!(
                        s.processed,
                        s.unique + s.duplicates + s.failed,
                        "{}",
                        case.name
                    );
                    (
                        s.processed,
                        s.unique,
                        s.failed,
                        s.field_warnings,
                        s.failures.iter().map(ToString::to_string).collect(),
                    )
                })
                .map_err(|e| e.to_string());
            check(&case, &format!("library ({threads}, {piece})"), got, name);
        }
    }
}
