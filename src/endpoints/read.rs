//! Reading endpoint files in pieces, in parallel, last row winning.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Columns, Endpoint, Identity};
use crate::ingest::normalize::PhoneNormalizer;
use crate::ingest::parse::{PieceParser, count_newlines};
use crate::ingest::split::{SplitResult, Splitter};

/// Bytes per piece unless the caller says otherwise.
pub const DEFAULT_PIECE_SIZE: usize = 4 << 20;

/// Failure messages kept (the service's `Failures` holds the first 100).
pub const MAX_FAILURES: usize = 100;

/// The two file formats.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum Format {
    /// A header of dotted attribute names, one endpoint per row.
    #[serde(rename = "CSV")]
    Csv,
    /// One endpoint object per line.
    #[serde(rename = "JSON")]
    Json,
}

impl Format {
    /// `CSV` or `JSON`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "CSV",
            Format::Json => "JSON",
        }
    }

    /// Whether an object of this name is a file of this format, by its
    /// extension: `.csv`, or `.json`, `.ndjson` and `.jsonl`.
    pub fn matches(self, name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        match self {
            Format::Csv => lower.ends_with(".csv"),
            Format::Json => [".json", ".ndjson", ".jsonl"]
                .iter()
                .any(|e| lower.ends_with(e)),
        }
    }
}

/// One file to read: its name (for messages) and its bytes, or why it
/// could not be read.
#[derive(Debug)]
pub struct Source {
    /// How messages name it, e.g. `s3://bucket/key`.
    pub name: String,
    /// Its bytes, or what went wrong fetching them.
    pub data: Result<Vec<u8>, String>,
}

/// A byte range of one source that starts and ends on record boundaries.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Piece {
    /// Index of its source in the plan.
    pub source: usize,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

struct SourcePlan {
    /// CSV only: the columns, or what is wrong with the header.
    columns: Option<Result<Columns, String>>,
    /// Lines the header takes.
    header_lines: u64,
    /// Where a quoted field that never closes begins its record.
    unterminated: Option<usize>,
}

/// The pieces of a set of sources, cut before anything is parsed, so the
/// number of pieces is known up front.
pub struct Plan {
    format: Format,
    sources: Vec<Source>,
    per_source: Vec<SourcePlan>,
    pieces: Vec<Piece>,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("format", &self.format)
            .field("sources", &self.sources.len())
            .field("pieces", &self.pieces)
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// The pieces, in source order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// How many pieces.
    pub fn total_pieces(&self) -> u64 {
        self.pieces.len() as u64
    }

    /// Whether piece `n` is the first of its source.
    fn starts_source(&self, n: usize) -> bool {
        n == 0 || self.pieces[n - 1].source != self.pieces[n].source
    }
}

/// Cuts every source into pieces of about `piece_size` bytes on record
/// boundaries (quote-aware for CSV; lines for JSON). A source that could
/// not be read is one piece, which fails.
pub fn plan(sources: Vec<Source>, format: Format, piece_size: usize) -> Plan {
    let piece_size = piece_size.max(1);
    let mut pieces = Vec::new();
    let mut per_source = Vec::with_capacity(sources.len());
    for (i, src) in sources.iter().enumerate() {
        let mut sp = SourcePlan {
            columns: None,
            header_lines: 0,
            unterminated: None,
        };
        let bytes = match &src.data {
            Ok(b) => b.as_slice(),
            Err(_) => {
                pieces.push(Piece {
                    source: i,
                    start: 0,
                    end: 0,
                });
                per_source.push(sp);
                continue;
            }
        };
        let mut at = 0;
        match format {
            Format::Csv => {
                let mut splitter = Splitter::new();
                // The header is the first record.
                let header_end = match splitter.split(bytes, 1, true) {
                    SplitResult::Piece(n) => n,
                    SplitResult::End { .. } | SplitResult::NeedMore => bytes.len(),
                };
                sp.columns = Some(read_header(&bytes[..header_end]));
                sp.header_lines = count_newlines(&bytes[..header_end]);
                at = header_end;
                while at < bytes.len() {
                    splitter.reset();
                    match splitter.split(&bytes[at..], piece_size, true) {
                        SplitResult::Piece(n) => {
                            pieces.push(Piece {
                                source: i,
                                start: at,
                                end: at + n,
                            });
                            at += n;
                        }
                        end @ (SplitResult::End { .. } | SplitResult::NeedMore) => {
                            if let SplitResult::End { unterminated } = end {
                                sp.unterminated = unterminated.map(|u| at + u);
                            }
                            pieces.push(Piece {
                                source: i,
                                start: at,
                                end: bytes.len(),
                            });
                            at = bytes.len();
                        }
                    }
                }
            }
            Format::Json => {
                while at < bytes.len() {
                    let from = (at + piece_size).min(bytes.len());
                    let end =
                        memchr::memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |n| from + n + 1);
                    pieces.push(Piece {
                        source: i,
                        start: at,
                        end,
                    });
                    at = end;
                }
            }
        }
        per_source.push(sp);
    }
    Plan {
        format,
        sources,
        per_source,
        pieces,
    }
}

fn read_header(bytes: &[u8]) -> Result<Columns, String> {
    let mut parser = PieceParser::new(b',', b'"');
    let mut names: Option<Result<Vec<String>, String>> = None;
    parser.parse(bytes, None, true, |rec| {
        if names.is_none() {
            names = Some(
                (0..rec.fields.len())
                    .map(|i| {
                        rec.fields
                            .str(i)
                            .map(str::to_owned)
                            .ok_or_else(|| format!("column {} is not valid UTF-8", i + 1))
                    })
                    .collect(),
            );
        }
    });
    let names = names.ok_or_else(|| "there is no header".to_owned())??;
    Columns::from_header(names.iter().map(String::as_str))
}

/// Live counts, read by whoever reports progress while [`read`] runs; it
/// also stops early when asked.
#[derive(Debug, Default)]
pub struct Counters {
    /// Pieces done, failed ones included.
    pub completed_pieces: AtomicU64,
    /// Pieces that could not be processed.
    pub failed_pieces: AtomicU64,
    /// Rows read.
    pub processed: AtomicU64,
    /// Rows that failed.
    pub failed: AtomicU64,
    stop: AtomicBool,
}

impl Counters {
    /// Asks [`read`] to stop after the pieces it is working on.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was asked for.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Where a row was.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Place {
    /// The source's name.
    pub source: String,
    /// 1-based line of the row's first byte.
    pub line: u64,
    /// 1-based number of the row among the source's data rows.
    pub record: u64,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: record {}", self.source, self.line, self.record)
    }
}

/// What reading found.
#[derive(Debug, Default)]
pub struct Imported {
    /// The surviving endpoints, checked and normalized, each with its
    /// identity and the place of the row that won, in order of first
    /// appearance.
    pub endpoints: Vec<(Identity, Endpoint, Place)>,
    /// Pieces in all sources.
    pub total_pieces: u64,
    /// Pieces done.
    pub completed_pieces: u64,
    /// Pieces that could not be processed: their source could not be
    /// read, or its CSV header names no endpoint attributes. (Rows that
    /// fail are counted in `failed`, never as pieces, so that the answer
    /// does not depend on the piece size.)
    pub failed_pieces: u64,
    /// Rows read.
    pub processed: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Rows replaced by a later row of the same identity.
    pub duplicates: u64,
    /// The first [`MAX_FAILURES`] failures, in file order, each naming its
    /// place.
    pub failures: Vec<String>,
    /// Whether it stopped on request before reading everything.
    pub stopped: bool,
}

#[derive(Default)]
struct PieceOut {
    rows: Vec<(Identity, Endpoint, u64, u64)>,
    failures: Vec<(u64, u64, String)>,
    /// Failures beyond those kept.
    more_failures: u64,
    /// A failure of the piece as a whole (already placed).
    piece_failure: Option<String>,
    failed_piece: bool,
    newlines: u64,
    records: u64,
    failed_rows: u64,
    done: bool,
}

impl PieceOut {
    fn fail_row(&mut self, line: u64, record: u64, why: String) {
        self.failed_rows += 1;
        if self.failures.len() < MAX_FAILURES {
            self.failures.push((line, record, why));
        } else {
            self.more_failures += 1;
        }
    }
}

/// Reads every piece of `plan` on `pool`, checks every row, and keeps the
/// last row of every identity.
pub fn read(
    plan: &Plan,
    pool: &rayon::ThreadPool,
    phone: &PhoneNormalizer,
    counters: &Counters,
) -> Imported {
    let outs: Vec<PieceOut> = pool.install(|| {
        plan.pieces
            .par_iter()
            .enumerate()
            .map(|(n, piece)| {
                if counters.stop_requested() {
                    return PieceOut::default();
                }
                let out = read_piece(plan, piece, plan.starts_source(n), phone);
                counters.processed.fetch_add(out.records, Ordering::Relaxed);
                counters
                    .failed
                    .fetch_add(out.failed_rows, Ordering::Relaxed);
                if out.failed_piece {
                    counters.failed_pieces.fetch_add(1, Ordering::Relaxed);
                }
                counters.completed_pieces.fetch_add(1, Ordering::Relaxed);
                out
            })
            .collect()
    });

    let mut imported = Imported {
        total_pieces: plan.total_pieces(),
        ..Imported::default()
    };
    let mut index: ahash::AHashMap<Identity, usize> = ahash::AHashMap::new();
    let mut line_base = 0;
    let mut record_base = 0;
    for (n, (piece, out)) in plan.pieces.iter().zip(outs).enumerate() {
        if plan.starts_source(n) {
            line_base = plan.per_source[piece.source].header_lines;
            record_base = 0;
        }
        if !out.done {
            imported.stopped = true;
            continue;
        }
        let name = &plan.sources[piece.source].name;
        imported.completed_pieces += 1;
        imported.failed_pieces += u64::from(out.failed_piece);
        imported.processed += out.records;
        imported.failed += out.failed_rows;
        let place = |line: u64, record: u64| Place {
            source: name.clone(),
            line: line_base + line + 1,
            record: record_base + record + 1,
        };
        if let Some(f) = out.piece_failure
            && imported.failures.len() < MAX_FAILURES
        {
            imported.failures.push(f);
        }
        for (line, record, why) in out.failures {
            if imported.failures.len() < MAX_FAILURES {
                imported
                    .failures
                    .push(format!("{}: {why}", place(line, record)));
            }
        }
        for (id, endpoint, line, record) in out.rows {
            let at = place(line, record);
            match index.get(&id) {
                Some(&i) => {
                    imported.endpoints[i] = (id, endpoint, at);
                    imported.duplicates += 1;
                }
                None => {
                    index.insert(id.clone(), imported.endpoints.len());
                    imported.endpoints.push((id, endpoint, at));
                }
            }
        }
        line_base += out.newlines;
        record_base += out.records;
    }
    imported
}

fn read_piece(
    plan: &Plan,
    piece: &Piece,
    first_of_source: bool,
    phone: &PhoneNormalizer,
) -> PieceOut {
    let src = &plan.sources[piece.source];
    let sp = &plan.per_source[piece.source];
    let mut out = PieceOut {
        done: true,
        ..PieceOut::default()
    };
    let bytes = match &src.data {
        Ok(b) => &b[piece.start..piece.end],
        Err(e) => {
            out.failed_piece = true;
            out.piece_failure = Some(format!("{}: could not be read: {e}", src.name));
            return out;
        }
    };
    out.newlines = count_newlines(bytes);
    let accept = |out: &mut PieceOut, mut e: Endpoint, line: u64, record: u64| match e
        .check(phone)
        .map(|()| e.identity())
    {
        Ok(Some(id)) => out.rows.push((id, e, line, record)),
        Ok(None) => out.fail_row(
            line,
            record,
            "an endpoint needs an Id, or a ChannelType and an Address".into(),
        ),
        Err(why) => out.fail_row(line, record, why),
    };
    match plan.format {
        Format::Csv => {
            let columns = match sp.columns.as_ref() {
                Some(Ok(c)) => c,
                bad => {
                    out.failed_piece = true;
                    if first_of_source {
                        let why = bad.and_then(|b| b.as_ref().err());
                        out.piece_failure = Some(format!(
                            "{}:1: the header: {}",
                            src.name,
                            why.map_or("missing", String::as_str)
                        ));
                    }
                    return out;
                }
            };
            let cut = sp
                .unterminated
                .filter(|u| (piece.start..piece.end).contains(u))
                .map(|u| u - piece.start);
            let parsed = &bytes[..cut.unwrap_or(bytes.len())];
            let mut parser = PieceParser::new(b',', b'"');
            parser.parse(parsed, None, true, |rec| {
                let record = out.records;
                out.records += 1;
                let values: Vec<Option<&str>> =
                    (0..rec.fields.len()).map(|i| rec.fields.str(i)).collect();
                match columns.endpoint(&values) {
                    Ok(e) => accept(&mut out, e, rec.line, record),
                    Err(why) => out.fail_row(rec.line, record, why),
                }
            });
            if let Some(c) = cut {
                let record = out.records;
                out.records += 1;
                out.fail_row(
                    count_newlines(&bytes[..c]),
                    record,
                    "a quoted field opens here and never closes".into(),
                );
            }
        }
        Format::Json => {
            for (this, raw) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
                let this = this as u64;
                let text = raw.strip_suffix(b"\n").unwrap_or(raw);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if text.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let record = out.records;
                out.records += 1;
                match std::str::from_utf8(text) {
                    Err(e) => out.fail_row(this, record, format!("is not valid UTF-8: {e}")),
                    Ok(t) => match serde_json::from_str::<Endpoint>(t) {
                        Ok(e) => accept(&mut out, e, this, record),
                        Err(e) => out.fail_row(this, record, format!("not an endpoint: {e}")),
                    },
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(format: Format, files: &[(&str, &str)], piece: usize, threads: usize) -> Imported {
        let sources = files
            .iter()
            .map(|(n, t)| Source {
                name: (*n).to_owned(),
                data: Ok(t.as_bytes().to_vec()),
            })
            .collect();
        let p = plan(sources, format, piece);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        read(&p, &pool, &PhoneNormalizer::new(), &Counters::default())
    }

    const CSV: &str = "ChannelType,Address,User.UserId,Attributes.Team\n\
        EMAIL,Ann@Example.com,u1,red\n\
        SMS,(415) 555-0132,u2,\"blue\nteam\"\n\
        FAX,1,u3,x\n\
        EMAIL,ann@example.COM,u1b,green\n\
        EMAIL,no-at,u4,y\n\
        SMS,415 555 0199,u5,\n";

    #[test]
    fn the_same_answer_whatever_the_piece_size_or_threads() {
        let want = run(Format::Csv, &[("a.csv", CSV)], 1 << 20, 1);
        assert_eq!(want.processed, 6);
        assert_eq!(want.failed, 2);
        assert_eq!(want.duplicates, 1);
        assert_eq!(want.endpoints.len(), 3);
        assert_eq!(
            want.failures,
            [
                "a.csv:5: record 3: ChannelType: \"FAX\" is not one of PUSH, GCM, APNS, \
                 APNS_SANDBOX, APNS_VOIP, APNS_VOIP_SANDBOX, ADM, SMS, VOICE, EMAIL, BAIDU, \
                 CUSTOM, IN_APP",
                "a.csv:7: record 5: Address: \"no-at\" is not a valid EMAIL address: no '@'"
            ]
        );
        let (_, first, at) = &want.endpoints[0];
        assert_eq!(first.address.as_deref(), Some("ann@example.com"));
        assert_eq!(first.user.as_ref().unwrap().user_id.as_deref(), Some("u1b"));
        assert_eq!(at.to_string(), "a.csv:6: record 4");
        for piece in [1, 7, 30, 64] {
            for threads in [1, 3] {
                let got = run(Format::Csv, &[("a.csv", CSV)], piece, threads);
                assert_eq!(got.endpoints, want.endpoints, "piece {piece}");
                assert_eq!(got.failures, want.failures, "piece {piece}");
                assert!(got.total_pieces >= 1);
                assert_eq!(got.completed_pieces, got.total_pieces);
            }
        }
    }

    #[test]
    fn json_lines_and_their_failures() {
        let text = "{\"ChannelType\":\"EMAIL\",\"Address\":\"a@b.co\",\"Metrics\":{\"m\":2}}\n\
                    \n\
                    {\"ChannelType\":\"EMAIL\",\"Address\":\"c@d.co\"} trailing\n\
                    {\"Id\":\"x1\",\"Attributes\":{\"k\":[\"v\"]}}\r\n";
        let got = run(Format::Json, &[("e.ndjson", text)], 10, 2);
        assert_eq!((got.processed, got.failed, got.endpoints.len()), (3, 1, 2));
        assert!(
            got.failures[0].starts_with("e.ndjson:3: record 2: not an endpoint: trailing"),
            "{:?}",
            got.failures
        );
        assert_eq!(got.endpoints[1].2.to_string(), "e.ndjson:4: record 3");
    }

    #[test]
    fn whole_pieces_fail_on_a_bad_header_or_an_unreadable_source() {
        let sources = vec![
            Source {
                name: "bad.csv".into(),
                data: Ok(b"Address,Nick\nx,y\nz,w\n".to_vec()),
            },
            Source {
                name: "gone.csv".into(),
                data: Err("connection reset".into()),
            },
            Source {
                name: "open.csv".into(),
                data: Ok(b"ChannelType,Address\nEMAIL,a@b.co\nEMAIL,\"c@d.co\n".to_vec()),
            },
        ];
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let p = plan(sources, Format::Csv, 4);
        let got = read(&p, &pool, &PhoneNormalizer::new(), &Counters::default());
        // bad.csv and gone.csv fail as pieces; open.csv's two do
        // not (a failed row is a row's failure, whatever the piece size).
        assert_eq!(
            (got.failed_pieces, got.total_pieces),
            (2, 4),
            "{:?}",
            got.failures
        );
        assert_eq!(
            got.failures,
            [
                "bad.csv:1: the header: column 2 \"Nick\" is not an endpoint attribute \
                 (ChannelType, Address, Id, RequestId, OptOut, EffectiveDate, EndpointStatus, \
                 Attributes.<name>, Metrics.<name>, User.UserId, User.UserAttributes.<name>, \
                 Demographic.*, Location.*)",
                "gone.csv: could not be read: connection reset",
                "open.csv:3: record 2: a quoted field opens here and never closes",
            ]
        );
        assert_eq!(got.endpoints.len(), 1);
    }

    #[test]
    fn formats_match_by_extension() {
        assert!(Format::Csv.matches("a/b/C.CSV"));
        assert!(!Format::Csv.matches("a.json"));
        for n in ["x.json", "x.ndjson", "x.JSONL"] {
            assert!(Format::Json.matches(n));
        }
    }
}
