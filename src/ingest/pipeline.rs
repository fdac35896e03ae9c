/*!
One run: inputs → reader → workers → dedup, with counters and a summary.

# Design

```text
 calling thread ──bounded queue──▶ N workers (rayon pool) ──▶ sharded dedup
   reads and cuts pieces             parse, map, normalize,     (last row wins)
   (split.rs, source.rs),            encode, insert
   folds reports into the   ◀── per-piece reports ──┘
   summary between pieces
```

* Memory is bounded by the unique records: the queue holds at most
  `2 × threads` pieces, buffers are recycled, each worker keeps one piece's
  arena, and reports are folded in as pieces go out.
* Workers insert into the dedup shards themselves. A separate dedup thread
  would serialize the step with the most cache misses and, on two cores,
  take a core from parsing; sharding lets every worker insert its own rows.
* A run starts no thread of its own: the calling thread reads, the workers
  are tasks of a rayon pool (the run's own, or one shared with
  [`IngestBuilder::pool`]), and `in_place_scope` returns when every worker
  is done.
* Positions are piece-relative while parsing; the collector turns them into
  absolute lines and record numbers with prefix sums over the pieces of each
  input, once all are in.
* Counters in [`Progress`] are atomics updated as each piece completes, so
  another thread can show progress or ask the run to stop between pieces.
*/

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use super::dedup::{Dedup, PieceRow, Stored, get_varint, put_varint};
use super::error::{Error, ErrorKind, Failure, FailureReason, Position};
use super::mapping::Mapping;
use super::normalize::{Cache, ContentType, Normalizer};
use super::parse::{PieceParser, count_newlines};
use super::source::{Input, Opened, Piece, PieceSink, ReadEvent, SLACK, cut_pieces};
use super::split::Splitter;

/// The default piece size: 4 MiB.
pub const DEFAULT_PIECE_SIZE: u64 = 4 << 20;
/// The largest piece size accepted: 1 GiB.
pub const MAX_PIECE_SIZE: u64 = 1 << 30;
/// How many failures a summary keeps (all are counted).
pub const MAX_FAILURES: usize = 100;
/// Pieces in one run: the piece index is the high half of a row's ordinal.
const MAX_PIECES: u64 = u32::MAX as u64;

/// Live counters of a run, safe to read from any thread while it runs.
#[derive(Debug, Default)]
pub struct Progress {
    total_pieces: AtomicU64,
    completed_pieces: AtomicU64,
    failed_pieces: AtomicU64,
    total_bytes: AtomicU64,
    bytes_done: AtomicU64,
    processed: AtomicU64,
    failed: AtomicU64,
    warnings: AtomicU64,
    unique: AtomicU64,
    stop: AtomicBool,
}

/// The counters of a [`Progress`] at one moment.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ProgressSnapshot {
    /// Pieces in all inputs (grows while inputs of unknown size are read).
    pub total_pieces: u64,
    /// Pieces done, failed ones included.
    pub completed_pieces: u64,
    /// Pieces that could not be read or parsed completely.
    pub failed_pieces: u64,
    /// Body bytes of all inputs of known size.
    pub total_bytes: u64,
    /// Body bytes in completed pieces.
    pub bytes_done: u64,
    /// Rows read.
    pub processed: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Fields kept as they were because they did not normalize.
    pub warnings: u64,
    /// Distinct keys so far.
    pub unique: u64,
}

impl Progress {
    /// Fresh counters.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// Reads all counters.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ProgressSnapshot {
            total_pieces: get(&self.total_pieces),
            completed_pieces: get(&self.completed_pieces),
            failed_pieces: get(&self.failed_pieces),
            total_bytes: get(&self.total_bytes),
            bytes_done: get(&self.bytes_done),
            processed: get(&self.processed),
            failed: get(&self.failed),
            warnings: get(&self.warnings),
            unique: get(&self.unique),
        }
    }

    /// Asks the run to stop: no new piece starts; pieces being parsed
    /// finish. The outcome then says [`Summary::stopped`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether [`Progress::stop`] was called.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }
}

/// The counts of a finished run.
///
/// Invariant: `processed = unique + duplicates + failed`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Summary {
    /// Rows read (header rows excluded).
    pub processed: u64,
    /// Distinct keys kept.
    pub unique: u64,
    /// Rows dropped because a later row had the same key.
    pub duplicates: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Fields kept as they were because they did not normalize.
    pub field_warnings: u64,
    /// Field warnings per mapped field, in mapping order.
    pub field_warnings_by_field: Vec<(Arc<str>, u64)>,
    /// Pieces in all inputs.
    pub total_pieces: u64,
    /// Pieces done, failed ones included.
    pub completed_pieces: u64,
    /// Pieces that could not be read or parsed completely.
    pub failed_pieces: u64,
    /// Body bytes read.
    pub bytes: u64,
    /// The first failures in input order, at most [`MAX_FAILURES`].
    pub failures: Vec<Failure>,
    /// The run was stopped before it read everything.
    pub stopped: bool,
}

/// The result of a run: its summary and its unique records.
#[derive(Debug)]
pub struct Outcome {
    /// Counts and failures.
    pub summary: Summary,
    /// The surviving records.
    pub records: Records,
}

/// Settings for an [`Ingest`].
///
/// # Example
///
/// ```
/// use sluice::ingest::normalize::ContentType;
/// use sluice::ingest::{Field, Input, IngestBuilder, Mapping};
///
/// let mapping = Mapping::new(
///     vec![
///         Field::new("Email", "email", "EmailAddress", ContentType::EmailAddress),
///         Field::new("Name", "name", "FirstName", ContentType::Name),
///     ],
///     &["Email"],
/// )
/// .unwrap();
/// let ingest = IngestBuilder::new(mapping).threads(2).build().unwrap();
/// let csv = "email,name\nA@x.com,Ann\nb@x.com,Bob\na@X.COM,  Anna \n";
/// let outcome = ingest.run(vec![Input::bytes("people.csv", csv.as_bytes())]).unwrap();
/// assert_eq!(outcome.summary.unique, 2);
/// assert_eq!(outcome.summary.duplicates, 1);
/// let rows: Vec<Vec<String>> = outcome
///     .records
///     .in_input_order()
///     .map(|r| r.values().map(String::from).collect())
///     .collect();
/// assert_eq!(rows, [["b@x.com", "Bob"], ["a@x.com", "Anna"]]);
/// ```
#[derive(Clone, Debug)]
pub struct IngestBuilder {
    mapping: Mapping,
    pool: Option<Arc<rayon::ThreadPool>>,
    threads: usize,
    piece_size: u64,
    region: String,
    delimiter: u8,
    quote: u8,
}

impl IngestBuilder {
    /// Defaults: as many threads as cores, 4 MiB pieces, region `US`,
    /// comma-delimited, `"`-quoted.
    pub fn new(mapping: Mapping) -> IngestBuilder {
        IngestBuilder {
            mapping,
            pool: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            piece_size: DEFAULT_PIECE_SIZE,
            region: "US".to_owned(),
            delimiter: b',',
            quote: b'"',
        }
    }

    /// Worker threads (at least 1). Each run starts its own pool of that
    /// many threads, unless [`IngestBuilder::pool`] gives one.
    pub fn threads(&mut self, n: usize) -> &mut IngestBuilder {
        self.threads = n;
        self
    }

    /// Runs on `pool` instead of starting threads for each run, with one
    /// worker per thread of the pool (this overrides
    /// [`IngestBuilder::threads`]). Sharing one pool among many runs saves
    /// starting threads each time, and bounds the threads of concurrent runs
    /// (they take turns on it).
    pub fn pool(&mut self, pool: Arc<rayon::ThreadPool>) -> &mut IngestBuilder {
        self.threads = pool.current_num_threads();
        self.pool = Some(pool);
        self
    }

    /// Target piece size in bytes (1 to 1 GiB).
    pub fn piece_size(&mut self, bytes: u64) -> &mut IngestBuilder {
        self.piece_size = bytes;
        self
    }

    /// Default region for phone numbers without a country code.
    pub fn region(&mut self, region: &str) -> &mut IngestBuilder {
        self.region = region.to_owned();
        self
    }

    /// The field delimiter.
    pub fn delimiter(&mut self, delimiter: u8) -> &mut IngestBuilder {
        self.delimiter = delimiter;
        self
    }

    /// The quote character.
    pub fn quote(&mut self, quote: u8) -> &mut IngestBuilder {
        self.quote = quote;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// When threads is 0, the piece size is out of range, the region is
    /// unknown, or delimiter and quote are equal or a line terminator.
    pub fn build(&self) -> Result<Ingest, Error> {
        if self.threads == 0 || self.threads > 1024 {
            return Err(config("threads", "between 1 and 1024"));
        }
        if self.piece_size == 0 || self.piece_size > MAX_PIECE_SIZE {
            return Err(config("piece size", "between 1 byte and 1 GiB"));
        }
        let bad = |b: u8| b == b'\n' || b == b'\r';
        if self.delimiter == self.quote || bad(self.delimiter) || bad(self.quote) {
            return Err(config(
                "delimiter and quote",
                "two different bytes, neither \\n nor \\r",
            ));
        }
        Ok(Ingest {
            mapping: Arc::new(self.mapping.clone()),
            normalizer: Normalizer::with_region(&self.region)?,
            pool: self.pool.clone(),
            threads: self.threads,
            piece_size: self.piece_size,
            delimiter: self.delimiter,
            quote: self.quote,
        })
    }
}

fn config(setting: &'static str, expected: &'static str) -> Error {
    ErrorKind::Config { setting, expected }.into()
}

/// More pieces than the high half of a row's ordinal can number.
fn too_many_pieces() -> Error {
    config(
        "piece size",
        "large enough for fewer than 2^32 pieces in one run",
    )
}

/// A configured ingest; [`Ingest::run`] it on inputs.
#[derive(Clone, Debug)]
pub struct Ingest {
    mapping: Arc<Mapping>,
    normalizer: Normalizer,
    pool: Option<Arc<rayon::ThreadPool>>,
    threads: usize,
    piece_size: u64,
    delimiter: u8,
    quote: u8,
}

/// What the worker pool needs about one input.
struct InputPlan {
    name: Arc<str>,
    header: Vec<Arc<str>>,
    /// Column index of each mapped field.
    sources: Vec<usize>,
    first_line: u64,
}

/// A failure as a worker sees it: relative to its piece.
struct PieceFailure {
    row: u32,
    byte: u64,
    line: u64,
    reason: FailureReason,
}

struct PieceReport {
    index: u64,
    input: usize,
    byte_start: u64,
    bytes: u64,
    records: u64,
    newlines: u64,
    processed: u64,
    failed: u64,
    warnings: Vec<u64>,
    failures: Vec<PieceFailure>,
    piece_failed: bool,
}

enum Report {
    Piece(PieceReport),
    Empty {
        count: u64,
    },
    ReadFailed {
        index: u64,
        input: usize,
        count: u64,
        byte: u64,
        message: String,
    },
    InputDone {
        pieces: u64,
    },
}

struct Shared<'a> {
    mapping: &'a Mapping,
    normalizer: &'a Normalizer,
    inputs: &'a [InputPlan],
    dedup: &'a Dedup,
    progress: &'a Progress,
    /// The non-key fields, in mapping order.
    rest_fields: Vec<usize>,
    fatal: Mutex<Option<Error>>,
    delimiter: u8,
    quote: u8,
}

impl Ingest {
    /// Runs on `inputs` with fresh counters.
    ///
    /// # Errors
    ///
    /// As [`Ingest::run_with`].
    pub fn run(&self, inputs: Vec<Input>) -> Result<Outcome, Error> {
        self.run_with(inputs, &Progress::new())
    }

    /// Runs on `inputs`, in order, keeping `progress` up to date.
    ///
    /// Every input is opened and its header checked before any row is
    /// read. Rows that fail are counted and the first 100 kept; they do not
    /// end the run.
    ///
    /// # Errors
    ///
    /// Before any work: an input cannot be opened, has no header, repeats a
    /// header name, or lacks a mapped column. During the run: the unique
    /// records exceed what one run holds.
    pub fn run_with(&self, inputs: Vec<Input>, progress: &Progress) -> Result<Outcome, Error> {
        let mut opened = Vec::with_capacity(inputs.len());
        let mut plans = Vec::with_capacity(inputs.len());
        for input in inputs {
            let o = input.open(self.delimiter, self.quote)?;
            plans.push(self.plan(&o)?);
            opened.push(o);
        }
        let mut known_pieces = 0u64;
        for o in &opened {
            known_pieces += o.pieces(self.piece_size).unwrap_or(0);
            Progress::add(&progress.total_bytes, o.body_len.unwrap_or(0));
        }
        if known_pieces > MAX_PIECES {
            return Err(too_many_pieces());
        }
        Progress::add(&progress.total_pieces, known_pieces);

        let dedup = Dedup::new();
        let mapping = &*self.mapping;
        let shared = Shared {
            mapping,
            normalizer: &self.normalizer,
            inputs: &plans,
            dedup: &dedup,
            progress,
            rest_fields: (0..mapping.fields().len())
                .filter(|&i| mapping.key_position(i).is_none())
                .collect(),
            fatal: Mutex::new(None),
            delimiter: self.delimiter,
            quote: self.quote,
        };
        let pool = match &self.pool {
            Some(pool) => Arc::clone(pool),
            None => Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(self.threads)
                    .thread_name(|i| format!("sluice-worker-{i}"))
                    .build()
                    .map_err(|_| config("threads", "a number of threads the system can start"))?,
            ),
        };
        if pool.current_thread_index().is_some() {
            // The reader would take one of the pool's own threads, and the
            // workers could wait for it forever.
            return Err(config(
                "the calling thread",
                "outside the thread pool the run uses",
            ));
        }

        let queue = 2 * self.threads;
        let (work_tx, work_rx) = bounded::<Piece>(queue);
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(queue + self.threads + 2);
        let (report_tx, report_rx) = unbounded::<Report>();
        let mut collector = Collector::new(&shared);

        // The calling thread reads; the workers run on the pool. A run
        // starts no thread of its own (none is left winding down after it
        // returns), and the scope ends when every worker is done.
        let shared_ref = &shared;
        pool.in_place_scope(|ps| {
            for _ in 0..self.threads {
                let (rx, buffers, reports) = (work_rx.clone(), pool_tx.clone(), report_tx.clone());
                ps.spawn(move |_| work(shared_ref, rx, buffers, reports));
            }
            // Only the workers hold these now: if they all stopped, sending
            // would fail instead of waiting forever.
            drop((work_rx, pool_tx, report_tx));
            read_inputs(
                opened,
                self.piece_size,
                shared_ref,
                work_tx,
                pool_rx,
                &report_rx,
                &mut collector,
            );
        });
        for report in report_rx.try_iter() {
            collector.apply(report);
        }
        let summary = collector.finish();
        if let Some(e) = shared.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(Outcome {
            summary,
            records: Records {
                stored: dedup.finish(),
                mapping: Arc::clone(&self.mapping),
            },
        })
    }

    /// Resolves the mapped columns of one input.
    fn plan(&self, o: &Opened) -> Result<InputPlan, Error> {
        let mut sources = Vec::with_capacity(self.mapping.fields().len());
        for f in self.mapping.fields() {
            let col = o
                .header
                .iter()
                .position(|h| **h == *f.column)
                .ok_or_else(|| ErrorKind::MissingColumn {
                    input: o.name.to_string(),
                    column: f.column.to_string(),
                    field: f.name.to_string(),
                })?;
            sources.push(col);
        }
        Ok(InputPlan {
            name: Arc::clone(&o.name),
            header: o.header.clone(),
            sources,
            first_line: o.first_line,
        })
    }
}

/// The reader (on the calling thread): cuts every input into pieces, in
/// order, and folds the workers' reports into `collector` as it goes.
fn read_inputs(
    opened: Vec<Opened>,
    piece_size: u64,
    shared: &Shared<'_>,
    work_tx: Sender<Piece>,
    pool_rx: Receiver<Vec<u8>>,
    reports: &Receiver<Report>,
    collector: &mut Collector<'_>,
) {
    let progress = shared.progress;
    let mut splitter = Splitter::with_dialect(shared.delimiter, shared.quote);
    // Room for a piece, the tail of the read that found its end, and one
    // more read step, so that buffers are not reallocated (and copied).
    let capacity = usize::try_from(piece_size)
        .unwrap_or(usize::MAX)
        .saturating_add(SLACK);
    let mut base = 0u64;
    for (input, o) in opened.into_iter().enumerate() {
        if progress.stop_requested() {
            break;
        }
        let expected = o.pieces(piece_size);
        let mut sink = ReaderSink {
            input,
            capacity,
            progress,
            work_tx: &work_tx,
            pool_rx: &pool_rx,
            reports,
            collector: &mut *collector,
        };
        let used = cut_pieces(o, input, base, piece_size, &mut splitter, &mut sink);
        // Inputs of unknown size (or that changed size) adjust the total.
        let expected = expected.unwrap_or(0);
        if used > expected {
            Progress::add(&progress.total_pieces, used - expected);
        }
        collector.apply(Report::InputDone { pieces: used });
        base += used;
    }
}

/// Where the reader's pieces and events go.
struct ReaderSink<'a, 'c> {
    input: usize,
    capacity: usize,
    progress: &'a Progress,
    work_tx: &'a Sender<Piece>,
    pool_rx: &'a Receiver<Vec<u8>>,
    reports: &'a Receiver<Report>,
    collector: &'a mut Collector<'c>,
}

impl PieceSink for ReaderSink<'_, '_> {
    fn buffer(&mut self) -> Vec<u8> {
        self.pool_rx
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.capacity.min(64 << 20)))
    }

    fn piece(&mut self, piece: Piece) -> bool {
        let sent = self.work_tx.send(piece).is_ok();
        // Reports wait only as long as the pieces in flight.
        for report in self.reports.try_iter() {
            self.collector.apply(report);
        }
        sent
    }

    fn event(&mut self, event: ReadEvent) {
        let progress = self.progress;
        match event {
            ReadEvent::Empty { count } => {
                Progress::add(&progress.completed_pieces, count);
                self.collector.apply(Report::Empty { count });
            }
            ReadEvent::Failed {
                index,
                count,
                byte,
                error,
            } => {
                Progress::add(&progress.completed_pieces, count);
                Progress::add(&progress.failed_pieces, count);
                self.collector.apply(Report::ReadFailed {
                    index,
                    input: self.input,
                    count,
                    byte,
                    message: error.to_string(),
                });
            }
        }
    }

    fn stopped(&self) -> bool {
        self.progress.stop_requested()
    }
}

/// One worker: parses pieces until the queue closes.
fn work(
    shared: &Shared<'_>,
    work_rx: Receiver<Piece>,
    pool_tx: Sender<Vec<u8>>,
    reports: Sender<Report>,
) {
    let mut w = Worker::new(shared);
    for mut piece in work_rx.iter() {
        if !shared.progress.stop_requested() {
            let report = w.process(&piece);
            if reports.send(Report::Piece(report)).is_err() {
                break;
            }
        }
        piece.data.clear();
        let _ = pool_tx.try_send(piece.data);
    }
}

struct Worker<'a> {
    shared: &'a Shared<'a>,
    parser: PieceParser,
    arena: Vec<u8>,
    rows: Vec<PieceRow>,
    sorted: Vec<PieceRow>,
    cache: Cache,
}

impl<'a> Worker<'a> {
    fn new(shared: &'a Shared<'a>) -> Worker<'a> {
        Worker {
            shared,
            parser: PieceParser::new(shared.delimiter, shared.quote),
            arena: Vec::new(),
            rows: Vec::new(),
            sorted: Vec::new(),
            cache: Cache::new(),
        }
    }

    fn process(&mut self, piece: &Piece) -> PieceReport {
        let shared = self.shared;
        let plan = &shared.inputs[piece.input];
        let nfields = shared.mapping.fields().len();
        let mut report = PieceReport {
            index: piece.index,
            input: piece.input,
            byte_start: piece.byte_start,
            bytes: piece.data.len() as u64,
            records: 0,
            newlines: 0,
            processed: 0,
            failed: 0,
            warnings: vec![0; nfields],
            failures: Vec::new(),
            piece_failed: false,
        };
        let data = &piece.data[..piece.unterminated.unwrap_or(piece.data.len())];
        let text = simdutf8::basic::from_utf8(data).ok();
        self.arena.clear();
        self.rows.clear();
        let Worker {
            parser,
            arena,
            rows,
            cache,
            ..
        } = self;
        let last = piece.last || piece.unterminated.is_some();
        let mut row: u32 = 0;
        let newlines = parser.parse(data, text, last, |rec| {
            match map_row(shared, plan, rec.fields, arena, cache, &mut report.warnings) {
                Ok(mut r) => {
                    r.hash = shared.dedup.hash(&arena[r.key_start..r.key_end]);
                    r.row = row;
                    rows.push(r);
                }
                Err(reason) => {
                    report.failed += 1;
                    if report.failures.len() < MAX_FAILURES {
                        report.failures.push(PieceFailure {
                            row,
                            byte: rec.byte as u64,
                            line: rec.line,
                            reason,
                        });
                    }
                }
            }
            row += 1;
        });
        report.newlines = newlines;
        if let Some(at) = piece.unterminated {
            report.failed += 1;
            report.piece_failed = true;
            if report.failures.len() < MAX_FAILURES {
                report.failures.push(PieceFailure {
                    row,
                    byte: at as u64,
                    line: newlines,
                    reason: FailureReason::UnterminatedQuote,
                });
            }
            report.newlines += count_newlines(&piece.data[at..]);
            row += 1;
        }
        report.records = u64::from(row);
        report.processed = u64::from(row);

        let inserted = match u32::try_from(piece.index) {
            Ok(piece_no) if piece.index < MAX_PIECES => shared
                .dedup
                .insert_piece(piece_no, &self.rows, &self.arena, &mut self.sorted)
                .map_err(|_| Error::from(ErrorKind::Capacity)),
            // Inputs of unknown size can only be checked as they are cut.
            _ => Err(too_many_pieces()),
        };
        match inserted {
            Ok(new) => Progress::add(&shared.progress.unique, new),
            Err(e) => {
                let mut fatal = shared.fatal.lock().unwrap_or_else(|p| p.into_inner());
                fatal.get_or_insert(e);
                shared.progress.stop();
            }
        }
        let p = shared.progress;
        Progress::add(&p.processed, report.processed);
        Progress::add(&p.failed, report.failed);
        Progress::add(&p.warnings, report.warnings.iter().sum());
        Progress::add(&p.bytes_done, report.bytes);
        if report.piece_failed {
            Progress::add(&p.failed_pieces, 1);
        }
        Progress::add(&p.completed_pieces, 1);
        report
    }
}

/// Maps and normalizes one record onto the end of `arena`, encoded as the
/// dedup table stores it (`[varint key len][varint rest len][key][rest]`),
/// or says why it fails (leaving `arena` as it was).
///
/// Values are normalized straight into the arena behind one-byte length
/// placeholders, which are widened in place in the rare case that a length
/// needs more than one byte: no value is copied twice.
#[inline]
fn map_row(
    shared: &Shared<'_>,
    plan: &InputPlan,
    fields: super::parse::Fields<'_>,
    arena: &mut Vec<u8>,
    cache: &mut Cache,
    warnings: &mut [u64],
) -> Result<PieceRow, FailureReason> {
    if fields.len() != plan.header.len() {
        return Err(FailureReason::FieldCount {
            expected: plan.header.len(),
            found: fields.len(),
        });
    }
    if !fields.is_text()
        && let Some(col) = (0..fields.len()).find(|&i| fields.str(i).is_none())
    {
        return Err(FailureReason::InvalidUtf8 {
            column: col + 1,
            name: Arc::clone(&plan.header[col]),
        });
    }
    let mapping = shared.mapping;
    let normalizer = shared.normalizer;
    let start = arena.len();
    arena.extend_from_slice(&[0, 0]);
    let key_start = arena.len();
    let single_key = mapping.key_fields().len() == 1;
    for &fi in mapping.key_fields() {
        let f = &mapping.fields()[fi];
        let raw = fields.str(plan.sources[fi]).unwrap_or_default();
        let len_at = if single_key {
            None
        } else {
            Some(open_len(arena))
        };
        let value_start = arena.len();
        if let Err(problem) = normalizer.normalize_cached(f.content_type, raw, arena, cache) {
            arena.truncate(start);
            return Err(FailureReason::InvalidKey {
                field: Arc::clone(&f.name),
                column: Arc::clone(&f.column),
                content_type: f.content_type,
                problem,
            });
        }
        let value = &arena[value_start..];
        let blank = value.is_empty()
            || (f.content_type == ContentType::String
                && std::str::from_utf8(value).is_ok_and(|s| s.trim().is_empty()));
        if blank {
            arena.truncate(start);
            return Err(FailureReason::EmptyKey {
                field: Arc::clone(&f.name),
                column: Arc::clone(&f.column),
            });
        }
        if let Some(at) = len_at {
            close_len(arena, at);
        }
    }
    let key_len = arena.len() - key_start;
    for &fi in &shared.rest_fields {
        let f = &mapping.fields()[fi];
        let raw = fields.str(plan.sources[fi]).unwrap_or_default();
        let at = open_len(arena);
        if normalizer
            .normalize_cached(f.content_type, raw, arena, cache)
            .is_err()
        {
            arena.truncate(at + 1);
            arena.extend_from_slice(super::normalize::trim(raw).as_bytes());
            warnings[fi] += 1;
        }
        close_len(arena, at);
    }
    let rest_len = arena.len() - key_start - key_len;
    let header = if key_len < 0x80 && rest_len < 0x80 {
        arena[start] = key_len as u8;
        arena[start + 1] = rest_len as u8;
        2
    } else {
        let mut h = Vec::with_capacity(20);
        put_varint(&mut h, key_len as u64);
        put_varint(&mut h, rest_len as u64);
        let n = h.len();
        arena.splice(start..start + 2, h);
        n
    };
    Ok(PieceRow {
        hash: 0,
        row: 0,
        start,
        end: arena.len(),
        key_start: start + header,
        key_end: start + header + key_len,
    })
}

/// Appends a one-byte length placeholder and returns its offset.
#[inline(always)]
fn open_len(buf: &mut Vec<u8>) -> usize {
    buf.push(0);
    buf.len() - 1
}

/// Sets the placeholder at `at` to the length of everything after it,
/// widening it into a longer varint if need be.
#[inline(always)]
fn close_len(buf: &mut Vec<u8>, at: usize) {
    let len = buf.len() - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
    } else {
        widen_len(buf, at, len);
    }
}

#[cold]
#[inline(never)]
fn widen_len(buf: &mut Vec<u8>, at: usize, len: usize) {
    let mut v = Vec::with_capacity(10);
    put_varint(&mut v, len as u64);
    buf.splice(at..at + 1, v);
}

/// A failure waiting for its absolute position.
struct Pending {
    input: usize,
    byte: u64,
    line: u64,
    reason: FailureReason,
    /// The failure's row is this many records into its piece.
    row: u64,
}

/// Per-piece counts for prefix sums.
#[derive(Clone, Copy)]
struct PieceStat {
    records: u64,
    newlines: u64,
}

/// Gathers reports into a summary, on the calling thread.
struct Collector<'a> {
    shared: &'a Shared<'a>,
    summary: Summary,
    /// Per input, per piece index: records and newlines, for prefix sums.
    stats: Vec<BTreeMap<u64, PieceStat>>,
    /// The first failures by (piece, row), at most [`MAX_FAILURES`].
    pending: BTreeMap<(u64, u64), Pending>,
}

impl<'a> Collector<'a> {
    fn new(shared: &'a Shared<'a>) -> Collector<'a> {
        Collector {
            shared,
            summary: Summary {
                field_warnings_by_field: shared
                    .mapping
                    .fields()
                    .iter()
                    .map(|f| (Arc::clone(&f.name), 0))
                    .collect(),
                ..Summary::default()
            },
            stats: vec![BTreeMap::new(); shared.inputs.len()],
            pending: BTreeMap::new(),
        }
    }

    fn keep(&mut self, key: (u64, u64), p: Pending) {
        let pending = &mut self.pending;
        if pending.len() < MAX_FAILURES || pending.last_key_value().is_some_and(|(k, _)| key < *k) {
            pending.insert(key, p);
            if pending.len() > MAX_FAILURES {
                pending.pop_last();
            }
        }
    }

    fn apply(&mut self, report: Report) {
        let summary = &mut self.summary;
        match report {
            Report::Piece(r) => {
                summary.processed += r.processed;
                summary.failed += r.failed;
                summary.bytes += r.bytes;
                summary.completed_pieces += 1;
                summary.failed_pieces += u64::from(r.piece_failed);
                for (slot, w) in summary.field_warnings_by_field.iter_mut().zip(&r.warnings) {
                    slot.1 += w;
                }
                self.stats[r.input].insert(
                    r.index,
                    PieceStat {
                        records: r.records,
                        newlines: r.newlines,
                    },
                );
                for f in r.failures {
                    let p = Pending {
                        input: r.input,
                        byte: r.byte_start + f.byte,
                        line: f.line,
                        reason: f.reason,
                        row: u64::from(f.row),
                    };
                    self.keep((r.index, u64::from(f.row)), p);
                }
            }
            Report::Empty { count } => summary.completed_pieces += count,
            Report::ReadFailed {
                index,
                input,
                count,
                byte,
                message,
            } => {
                summary.completed_pieces += count;
                summary.failed_pieces += count;
                let p = Pending {
                    input,
                    byte,
                    line: 0,
                    reason: FailureReason::Read { message, byte },
                    row: 0,
                };
                self.keep((index, 0), p);
            }
            Report::InputDone { pieces } => summary.total_pieces += pieces,
        }
    }

    /// The summary, with failures at absolute positions.
    fn finish(self) -> Summary {
        let Collector {
            shared,
            mut summary,
            stats,
            pending,
        } = self;
        summary.stopped = shared.progress.stop_requested();
        summary.field_warnings = summary.field_warnings_by_field.iter().map(|(_, w)| w).sum();
        summary.unique = shared.progress.unique.load(Ordering::Relaxed);
        let valid = summary.processed - summary.failed;
        summary.duplicates = valid.saturating_sub(summary.unique);

        // Absolute positions: records and newlines before each piece.
        let before = |input: usize, index: u64| -> PieceStat {
            stats[input].range(..index).fold(
                PieceStat {
                    records: 0,
                    newlines: 0,
                },
                |acc, (_, s)| PieceStat {
                    records: acc.records + s.records,
                    newlines: acc.newlines + s.newlines,
                },
            )
        };
        summary.failures = pending
            .into_iter()
            .map(|((index, _), p)| {
                let plan = &shared.inputs[p.input];
                let b = before(p.input, index);
                Failure {
                    input: Arc::clone(&plan.name),
                    position: Position {
                        byte: p.byte,
                        line: plan.first_line + b.newlines + p.line,
                        record: 1 + b.records + p.row,
                    },
                    reason: p.reason,
                }
            })
            .collect();
        summary
    }
}

/// The unique records of a run.
pub struct Records {
    stored: Stored,
    mapping: Arc<Mapping>,
}

/// One unique record.
#[derive(Clone, Copy)]
pub struct UniqueRecord<'a> {
    mapping: &'a Mapping,
    ordinal: u64,
    key: &'a [u8],
    rest: &'a [u8],
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for UniqueRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniqueRecord")
            .field("ordinal", &self.ordinal)
            .field("values", &self.values().collect::<Vec<_>>())
            .finish()
    }
}

impl Records {
    /// How many there are.
    pub fn len(&self) -> u64 {
        self.stored.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mapping that shaped them.
    pub fn mapping(&self) -> &Mapping {
        &self.mapping
    }

    /// The records in the input order of the rows that were kept.
    ///
    /// Sorting takes a moment and 16 bytes a record; the order is the same
    /// whatever the piece size or number of threads.
    pub fn in_input_order(&self) -> impl Iterator<Item = UniqueRecord<'_>> + '_ {
        use rayon::slice::ParallelSliceMut;
        let mut locs = self.stored.locations();
        locs.par_sort_unstable_by_key(|&(ordinal, _)| ordinal);
        locs.into_iter().map(move |(ordinal, loc)| {
            let (key, rest) = self.stored.get(loc);
            UniqueRecord {
                mapping: &self.mapping,
                ordinal,
                key,
                rest,
            }
        })
    }

    /// The records in no particular order (cheapest).
    pub fn iter(&self) -> impl Iterator<Item = UniqueRecord<'_>> + '_ {
        self.stored.iter().map(move |r| UniqueRecord {
            mapping: &self.mapping,
            ordinal: r.ordinal,
            key: r.key,
            rest: r.rest,
        })
    }
}

impl<'a> UniqueRecord<'a> {
    /// The encoded unique key: the key field's normalized value when the key
    /// has one field; otherwise each key field's normalized value, prefixed
    /// by its length as a LEB128 varint, in key order. Equal keys have equal
    /// bytes.
    pub fn key_bytes(&self) -> &'a [u8] {
        self.key
    }

    /// Where the kept row was: greater means later in the input.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// The normalized values of the key fields, in key order.
    pub fn key_values(&self) -> impl Iterator<Item = &'a str> + 'a {
        let single = self.mapping.key_fields().len() == 1;
        let whole = single.then(|| std::str::from_utf8(self.key).unwrap_or_default());
        let segments = (!single).then_some(Segments(self.key));
        whole.into_iter().chain(segments.into_iter().flatten())
    }

    /// Every field's value, in mapping order.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut keys: Vec<&'a str> = self.key_values().collect();
        let mut rest = Segments(self.rest);
        let mapping = self.mapping;
        (0..mapping.fields().len()).map(move |i| match mapping.key_position(i) {
            Some(k) => std::mem::take(&mut keys[k]),
            None => rest.next().unwrap_or_default(),
        })
    }
}

/// Length-prefixed values.
struct Segments<'a>(&'a [u8]);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.0.is_empty() {
            return None;
        }
        let (len, n) = get_varint(self.0);
        let end = (n + len as usize).min(self.0.len());
        let v = &self.0[n..end];
        self.0 = &self.0[end..];
        // Values are written from `str`s by this crate.
        Some(std::str::from_utf8(v).unwrap_or_default())
    }
}
