/*!
One run: inputs → reader → workers → dedup, with counters and a summary.

# Design

```text
 calling thread ──bounded queue──▶ N workers (rayon pool) ──▶ sharded dedup
   reads and cuts pieces             parse, map (RowMapper),   (last row wins)
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
* The pipeline is generic over what a row becomes ([`RowMapper`]); with
  static dispatch, the mapper's code is inlined into the worker loop.
* Positions are piece-relative while parsing; the collector turns them into
  absolute lines and record numbers with prefix sums over the pieces of each
  input, once all are in. With [`IngestBuilder::places`], every kept row
  also carries its place, so that a row that fails later (when it is
  written) can be reported where it was.
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
use super::map::{FieldMapper, InputFormat, Record, RowMapper, RowOut};
use super::mapping::Mapping;
use super::parse::{PieceParser, count_newlines, parse_lines};
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
/// Bytes of place a kept row carries with [`IngestBuilder::places`]: its
/// line and byte within its piece, as two little-endian `u32`s.
const PLACE_LEN: usize = 8;

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

/// What one completed piece did, as [`Ingest::run_observed`] reports it.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PieceDone {
    /// The piece's index in the run.
    pub index: u64,
    /// How many consecutive pieces this report covers (more than one for
    /// cells that hold no record start, or an input that failed as a
    /// whole).
    pub count: u64,
    /// Body bytes in it.
    pub bytes: u64,
    /// Rows read.
    pub processed: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Field warnings.
    pub warnings: u64,
    /// Whether the piece could not be read or parsed completely.
    pub failed_piece: bool,
}

/// The result of a run: its summary and its unique records.
#[derive(Debug)]
pub struct Outcome<M: RowMapper = FieldMapper> {
    /// Counts and failures.
    pub summary: Summary,
    /// The surviving records.
    pub records: Records<M>,
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
pub struct IngestBuilder<M: RowMapper = FieldMapper> {
    mapper: M,
    pool: Option<Arc<rayon::ThreadPool>>,
    threads: usize,
    piece_size: u64,
    region: Option<String>,
    delimiter: u8,
    quote: u8,
    places: bool,
    tolerate_bad_inputs: bool,
}

impl IngestBuilder<FieldMapper> {
    /// A run of `mapping` ([`FieldMapper`]). Defaults: as many threads as
    /// cores, 4 MiB pieces, region `US`, comma-delimited, `"`-quoted.
    pub fn new(mapping: Mapping) -> IngestBuilder<FieldMapper> {
        IngestBuilder::with_mapper(FieldMapper::new(mapping))
    }
}

impl<M: RowMapper + Clone> IngestBuilder<M> {
    /// A run whose rows become what `mapper` makes of them, with the
    /// defaults of [`IngestBuilder::new`].
    pub fn with_mapper(mapper: M) -> IngestBuilder<M> {
        IngestBuilder {
            mapper,
            pool: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            piece_size: DEFAULT_PIECE_SIZE,
            region: None,
            delimiter: b',',
            quote: b'"',
            places: false,
            tolerate_bad_inputs: false,
        }
    }

    /// Worker threads (at least 1). Each run starts its own pool of that
    /// many threads, unless [`IngestBuilder::pool`] gives one.
    pub fn threads(&mut self, n: usize) -> &mut IngestBuilder<M> {
        self.threads = n;
        self
    }

    /// Runs on `pool` instead of starting threads for each run, with one
    /// worker per thread of the pool (this overrides
    /// [`IngestBuilder::threads`]). Sharing one pool among many runs saves
    /// starting threads each time, and bounds the threads of concurrent runs
    /// (they take turns on it).
    pub fn pool(&mut self, pool: Arc<rayon::ThreadPool>) -> &mut IngestBuilder<M> {
        self.threads = pool.current_num_threads();
        self.pool = Some(pool);
        self
    }

    /// Target piece size in bytes (1 to 1 GiB).
    pub fn piece_size(&mut self, bytes: u64) -> &mut IngestBuilder<M> {
        self.piece_size = bytes;
        self
    }

    /// Default region for phone numbers without a country code.
    pub fn region(&mut self, region: &str) -> &mut IngestBuilder<M> {
        self.region = Some(region.to_owned());
        self
    }

    /// The field delimiter (CSV).
    pub fn delimiter(&mut self, delimiter: u8) -> &mut IngestBuilder<M> {
        self.delimiter = delimiter;
        self
    }

    /// The quote character (CSV).
    pub fn quote(&mut self, quote: u8) -> &mut IngestBuilder<M> {
        self.quote = quote;
        self
    }

    /// Whether every kept row remembers where it was
    /// ([`UniqueRecord::place`]), for callers that may refuse a row after
    /// the run and must say where it was. Costs 8 bytes a kept row.
    pub fn places(&mut self, yes: bool) -> &mut IngestBuilder<M> {
        self.places = yes;
        self
    }

    /// Whether an input that cannot be used (it cannot be opened, or its
    /// header is refused) fails on its own, as a failure at its line 1 and
    /// its pieces failed, while the others are read. Without it, such an
    /// input stops the run before any row is read.
    pub fn tolerate_bad_inputs(&mut self, yes: bool) -> &mut IngestBuilder<M> {
        self.tolerate_bad_inputs = yes;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// When threads is 0, the piece size is out of range, the region is
    /// unknown, or delimiter and quote are equal or a line terminator.
    pub fn build(&self) -> Result<Ingest<M>, Error> {
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
        let mut mapper = self.mapper.clone();
        if let Some(r) = &self.region {
            mapper.set_region(r)?;
        }
        Ok(Ingest {
            mapper: Arc::new(mapper),
            pool: self.pool.clone(),
            threads: self.threads,
            piece_size: self.piece_size,
            delimiter: self.delimiter,
            quote: self.quote,
            places: self.places,
            tolerate_bad_inputs: self.tolerate_bad_inputs,
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
pub struct Ingest<M: RowMapper = FieldMapper> {
    mapper: Arc<M>,
    pool: Option<Arc<rayon::ThreadPool>>,
    threads: usize,
    piece_size: u64,
    delimiter: u8,
    quote: u8,
    places: bool,
    tolerate_bad_inputs: bool,
}

/// What the worker pool needs about one input.
struct InputPlan<P> {
    name: Arc<str>,
    /// The header (a CSV row has as many fields); empty for JSON lines.
    header: Vec<Arc<str>>,
    first_line: u64,
    /// The mapper's plan; `None` for an input that failed as a whole.
    plan: Option<P>,
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
        index: u64,
        count: u64,
    },
    Failed {
        index: u64,
        input: usize,
        count: u64,
        byte: u64,
        reason: FailureReason,
    },
    InputDone {
        pieces: u64,
    },
}

struct Shared<'a, M: RowMapper> {
    mapper: &'a M,
    inputs: &'a [InputPlan<M::Plan>],
    dedup: &'a Dedup,
    progress: &'a Progress,
    fatal: Mutex<Option<Error>>,
    format: InputFormat,
    delimiter: u8,
    quote: u8,
    places: bool,
    warning_fields: usize,
}

impl<M: RowMapper> Ingest<M> {
    /// The mapper rows go through.
    pub fn mapper(&self) -> &M {
        &self.mapper
    }

    /// Runs on `inputs` with fresh counters.
    ///
    /// # Errors
    ///
    /// As [`Ingest::run_with`].
    pub fn run(&self, inputs: Vec<Input>) -> Result<Outcome<M>, Error> {
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
    /// Before any work: an input cannot be opened, has no header, or its
    /// header is refused by the mapper (unless
    /// [`IngestBuilder::tolerate_bad_inputs`]). During the run: the unique
    /// records exceed what one run holds.
    pub fn run_with(&self, inputs: Vec<Input>, progress: &Progress) -> Result<Outcome<M>, Error> {
        self.run_observed(inputs, progress, &mut |_| {})
    }

    /// As [`Ingest::run_with`], calling `on_piece` on the calling thread as
    /// each piece completes (in no particular order).
    ///
    /// # Errors
    ///
    /// As [`Ingest::run_with`].
    pub fn run_observed(
        &self,
        inputs: Vec<Input>,
        progress: &Progress,
        on_piece: &mut dyn FnMut(&PieceDone),
    ) -> Result<Outcome<M>, Error> {
        let format = self.mapper.input_format();
        let mut opened = Vec::with_capacity(inputs.len());
        let mut plans = Vec::with_capacity(inputs.len());
        for input in inputs {
            let name: Arc<str> = input.name().into();
            let planned = input
                .open(format, self.delimiter, self.quote)
                .and_then(|o| {
                    let plan = self
                        .mapper
                        .plan(&o.header)
                        .map_err(|e| header_error(&name, e))?;
                    Ok((o, plan))
                });
            match planned {
                Ok((o, plan)) => {
                    plans.push(InputPlan {
                        name: Arc::clone(&o.name),
                        header: o.header.clone(),
                        first_line: o.first_line,
                        plan: Some(plan),
                    });
                    opened.push(Ok(o));
                }
                Err(e) if self.tolerate_bad_inputs => {
                    plans.push(InputPlan {
                        name: Arc::clone(&name),
                        header: Vec::new(),
                        first_line: 1,
                        plan: None,
                    });
                    opened.push(Err(e));
                }
                Err(e) => return Err(e),
            }
        }
        let mut known_pieces = 0u64;
        for o in &opened {
            known_pieces += match o {
                Ok(o) => o.pieces(self.piece_size).unwrap_or(0),
                Err(_) => 1,
            };
            if let Ok(o) = o {
                Progress::add(&progress.total_bytes, o.body_len.unwrap_or(0));
            }
        }
        if known_pieces > MAX_PIECES {
            return Err(too_many_pieces());
        }
        Progress::add(&progress.total_pieces, known_pieces);

        let dedup = Dedup::new();
        let warning_names = self.mapper.warning_fields();
        let shared = Shared {
            mapper: &*self.mapper,
            inputs: &plans,
            dedup: &dedup,
            progress,
            fatal: Mutex::new(None),
            format,
            delimiter: self.delimiter,
            quote: self.quote,
            places: self.places,
            warning_fields: warning_names.len(),
        };
        let pool = match &self.pool {
            Some(p) => Arc::clone(p),
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
        let mut collector = Collector::new(&shared, warning_names, on_piece);

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
        let (summary, places) = collector.finish();
        if let Some(e) = shared.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        Ok(Outcome {
            summary,
            records: Records {
                stored: dedup.finish(),
                mapper: Arc::clone(&self.mapper),
                places: self.places.then_some(places),
            },
        })
    }
}

/// One byte range of an input, ending on a record boundary.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ByteRange {
    /// Offset of its first byte in the input.
    pub start: u64,
    /// Offset just past its last byte.
    pub end: u64,
    /// Newlines in the input's body before `start` (header excluded), so
    /// that a run of this range alone can name lines as a run of the whole
    /// input would.
    pub newlines_before: u64,
}

/// An input cut into ranges by [`Ingest::plan_ranges`].
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct RangePlan {
    /// Where the body starts: bytes before it are the header (CSV) or a
    /// byte-order mark. A range is run as these bytes followed by its own.
    pub body_start: u64,
    /// The body's ranges, in order; together they cover it exactly. None
    /// when the body is empty.
    pub ranges: Vec<ByteRange>,
}

impl<M: RowMapper> Ingest<M> {
    /// Cuts `input` into ranges of about `target` bytes that end exactly
    /// where records end, for runs elsewhere (other processes, other
    /// machines) of one range each: reads the whole input once, with the
    /// same quote-aware cutting as [`Ingest::run`], but parses nothing
    /// and keeps no more than one range in memory.
    ///
    /// Running the header bytes (`..body_start`) followed by one range
    /// gives that range's rows exactly as a run of the whole input gives
    /// them; a run's lines are the whole input's once `newlines_before` is
    /// added, and its records once the records of the ranges before are.
    ///
    /// # Errors
    ///
    /// The input cannot be opened or read, has no header, or its header is
    /// refused by the mapper.
    pub fn plan_ranges(&self, input: Input, target: u64) -> Result<RangePlan, Error> {
        let format = self.mapper.input_format();
        let name: Arc<str> = input.name().into();
        let opened = input.open(format, self.delimiter, self.quote)?;
        self.mapper
            .plan(&opened.header)
            .map_err(|e| header_error(&name, e))?;
        let body_start = opened.body_start;
        let mut splitter = match format {
            InputFormat::Csv => Splitter::with_dialect(self.delimiter, self.quote),
            InputFormat::Ndjson => Splitter::lines(),
        };
        let mut sink = PlanSink {
            ranges: Vec::new(),
            newlines: 0,
            spare: None,
            failed: None,
        };
        cut_pieces(opened, 0, 0, target.max(1), &mut splitter, &mut sink);
        if let Some(error) = sink.failed {
            return Err(Error::io(&name, error));
        }
        Ok(RangePlan {
            body_start,
            ranges: sink.ranges,
        })
    }
}

/// Keeps where each cut piece lies, and lets its bytes go.
struct PlanSink {
    ranges: Vec<ByteRange>,
    newlines: u64,
    spare: Option<Vec<u8>>,
    failed: Option<std::io::Error>,
}

impl PieceSink for PlanSink {
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.take().unwrap_or_default()
    }

    fn piece(&mut self, mut piece: Piece) -> bool {
        let start = piece.byte_start;
        self.ranges.push(ByteRange {
            start,
            end: start + piece.data.len() as u64,
            newlines_before: self.newlines,
        });
        self.newlines += count_newlines(&piece.data);
        piece.data.clear();
        self.spare = Some(piece.data);
        true
    }

    fn event(&mut self, event: ReadEvent) {
        if let ReadEvent::Failed { error, .. } = event {
            self.failed.get_or_insert(error);
        }
    }

    fn stopped(&self) -> bool {
        self.failed.is_some()
    }
}

/// A mapper's refusal of a header, as the run's error.
fn header_error(input: &str, e: super::map::HeaderError) -> Error {
    use super::map::HeaderError as H;
    let input = input.to_owned();
    match e {
        H::Duplicate {
            name,
            first,
            second,
        } => ErrorKind::DuplicateColumn {
            input,
            name,
            first,
            second,
        },
        H::MissingColumn { column, field } => ErrorKind::MissingColumn {
            input,
            column,
            field,
        },
        H::Invalid(problem) => ErrorKind::Header { input, problem },
    }
    .into()
}

/// The reader (on the calling thread): cuts every input into pieces, in
/// order, and folds the workers' reports into `collector` as it goes.
fn read_inputs<M: RowMapper>(
    opened: Vec<Result<Opened, Error>>,
    piece_size: u64,
    shared: &Shared<'_, M>,
    work_tx: Sender<Piece>,
    pool_rx: Receiver<Vec<u8>>,
    reports: &Receiver<Report>,
    collector: &mut Collector<'_, '_, M>,
) {
    let progress = shared.progress;
    let mut splitter = match shared.format {
        InputFormat::Csv => Splitter::with_dialect(shared.delimiter, shared.quote),
        InputFormat::Ndjson => Splitter::lines(),
    };
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
        let o = match o {
            Ok(o) => o,
            Err(e) => {
                // An input that cannot be used fails as one piece, at its
                // first line.
                Progress::add(&progress.completed_pieces, 1);
                Progress::add(&progress.failed_pieces, 1);
                collector.apply(Report::Failed {
                    index: base,
                    input,
                    count: 1,
                    byte: 0,
                    reason: FailureReason::Unusable {
                        problem: e.detail(),
                    },
                });
                collector.apply(Report::InputDone { pieces: 1 });
                base += 1;
                continue;
            }
        };
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
struct ReaderSink<'a, 'c, 'o, M: RowMapper> {
    input: usize,
    capacity: usize,
    progress: &'a Progress,
    work_tx: &'a Sender<Piece>,
    pool_rx: &'a Receiver<Vec<u8>>,
    reports: &'a Receiver<Report>,
    collector: &'a mut Collector<'c, 'o, M>,
}

impl<M: RowMapper> PieceSink for ReaderSink<'_, '_, '_, M> {
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
            ReadEvent::Empty { index, count } => {
                Progress::add(&progress.completed_pieces, count);
                self.collector.apply(Report::Empty { index, count });
            }
            ReadEvent::Failed {
                index,
                count,
                byte,
                error,
            } => {
                Progress::add(&progress.completed_pieces, count);
                Progress::add(&progress.failed_pieces, count);
                self.collector.apply(Report::Failed {
                    index,
                    input: self.input,
                    count,
                    byte,
                    reason: FailureReason::Read {
                        message: error.to_string(),
                        byte,
                    },
                });
            }
        }
    }

    fn stopped(&self) -> bool {
        self.progress.stop_requested()
    }
}

/// One worker: parses pieces until the queue closes.
fn work<M: RowMapper>(
    shared: &Shared<'_, M>,
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

struct Worker<'a, M: RowMapper> {
    shared: &'a Shared<'a, M>,
    parser: PieceParser,
    arena: Vec<u8>,
    rows: Vec<PieceRow>,
    sorted: Vec<PieceRow>,
    scratch: M::Scratch,
}

/// Counts and failures of the piece being parsed.
struct Tally<'r> {
    report: &'r mut PieceReport,
    row: u32,
}

impl Tally<'_> {
    /// The current row fails; on to the next.
    #[inline]
    fn fail(&mut self, byte: usize, line: u64, reason: FailureReason) {
        let report = &mut *self.report;
        report.failed += 1;
        if report.failures.len() < MAX_FAILURES {
            report.failures.push(PieceFailure {
                row: self.row,
                byte: byte as u64,
                line,
                reason,
            });
        }
        self.row += 1;
    }
}

impl<'a, M: RowMapper> Worker<'a, M> {
    fn new(shared: &'a Shared<'a, M>) -> Worker<'a, M> {
        Worker {
            shared,
            parser: PieceParser::new(shared.delimiter, shared.quote),
            arena: Vec::new(),
            rows: Vec::new(),
            sorted: Vec::new(),
            scratch: shared.mapper.scratch(),
        }
    }

    fn process(&mut self, piece: &Piece) -> PieceReport {
        let shared = self.shared;
        let input = &shared.inputs[piece.input];
        let mut report = PieceReport {
            index: piece.index,
            input: piece.input,
            byte_start: piece.byte_start,
            bytes: piece.data.len() as u64,
            records: 0,
            newlines: 0,
            processed: 0,
            failed: 0,
            warnings: vec![0; shared.warning_fields],
            failures: Vec::new(),
            piece_failed: false,
        };
        let Some(plan) = input.plan.as_ref() else {
            // Inputs that failed as a whole are never cut.
            return report;
        };
        let data = &piece.data[..piece.unterminated.unwrap_or(piece.data.len())];
        let text = simdutf8::basic::from_utf8(data).ok();
        self.arena.clear();
        self.rows.clear();
        let Worker {
            parser,
            arena,
            rows,
            scratch,
            ..
        } = self;
        let mut warnings = std::mem::take(&mut report.warnings);
        let mut tally = Tally {
            report: &mut report,
            row: 0,
        };
        let mut keep = |tally: &mut Tally<'_>, record: Record<'_>, byte: usize, line: u64| {
            let place = shared.places.then_some((line, byte));
            match map_row(shared, plan, record, place, arena, scratch, &mut warnings) {
                Ok(mut r) => {
                    r.hash = shared.dedup.hash(&arena[r.key_start..r.key_end]);
                    r.row = tally.row;
                    rows.push(r);
                    tally.row += 1;
                }
                Err(reason) => tally.fail(byte, line, reason),
            }
        };
        let last = piece.last || piece.unterminated.is_some();
        let newlines = match shared.format {
            InputFormat::Csv => parser.parse(data, text, last, |rec| {
                let fields = rec.fields;
                if fields.len() != input.header.len() {
                    tally.fail(
                        rec.byte,
                        rec.line,
                        FailureReason::FieldCount {
                            expected: input.header.len(),
                            found: fields.len(),
                        },
                    );
                } else if !fields.is_text()
                    && let Some(col) = (0..fields.len()).find(|&i| fields.str(i).is_none())
                {
                    tally.fail(
                        rec.byte,
                        rec.line,
                        FailureReason::InvalidUtf8 {
                            column: col + 1,
                            name: Arc::clone(&input.header[col]),
                        },
                    );
                } else {
                    keep(&mut tally, Record::Csv(fields), rec.byte, rec.line);
                }
            }),
            InputFormat::Ndjson => parse_lines(data, |line| match text {
                Some(t) => {
                    let s = &t[line.byte..line.byte + line.bytes.len()];
                    keep(&mut tally, Record::Json(s), line.byte, line.line);
                }
                None => match std::str::from_utf8(line.bytes) {
                    Ok(s) => keep(&mut tally, Record::Json(s), line.byte, line.line),
                    Err(e) => tally.fail(
                        line.byte,
                        line.line,
                        FailureReason::NotText {
                            at: e.valid_up_to(),
                        },
                    ),
                },
            }),
        };
        if let Some(at) = piece.unterminated {
            tally.report.piece_failed = true;
            tally.fail(at, newlines, FailureReason::UnterminatedQuote);
        }
        let row = tally.row;
        report.warnings = warnings;
        report.newlines = newlines
            + piece
                .unterminated
                .map_or(0, |at| count_newlines(&piece.data[at..]));
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

/// Maps one record onto the end of `arena`, encoded as the dedup table
/// stores it (`[varint key len][varint rest len][key][rest]`), or says why
/// it fails (leaving `arena` as it was).
#[inline]
fn map_row<M: RowMapper>(
    shared: &Shared<'_, M>,
    plan: &M::Plan,
    record: Record<'_>,
    place: Option<(u64, usize)>,
    arena: &mut Vec<u8>,
    scratch: &mut M::Scratch,
    warnings: &mut [u64],
) -> Result<PieceRow, FailureReason> {
    let start = arena.len();
    arena.extend_from_slice(&[0, 0]);
    let mut out = RowOut::new(arena);
    let mapped = shared.mapper.map(plan, record, &mut out, scratch, warnings);
    let lengths = out.lengths();
    let (key_len, rest_len) = match (mapped, lengths) {
        (Ok(()), Some(l)) => l,
        (Err(reason), _) => {
            arena.truncate(start);
            return Err(reason);
        }
        (Ok(()), None) => {
            arena.truncate(start.min(arena.len()));
            return Err(FailureReason::Invalid {
                member: None,
                message: "the row's mapper wrote outside its row".into(),
            });
        }
    };
    let rest_len = match place {
        Some((line, byte)) => {
            let le = |v: u64| u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes();
            arena.extend_from_slice(&le(line));
            arena.extend_from_slice(&le(byte as u64));
            rest_len + PLACE_LEN
        }
        None => rest_len,
    };
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
    let key_start = start + header;
    Ok(PieceRow {
        hash: 0,
        row: 0,
        start,
        end: arena.len(),
        key_start,
        key_end: key_start + key_len,
    })
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
#[derive(Clone, Copy, Default)]
struct PieceStat {
    byte_start: u64,
    records: u64,
    newlines: u64,
}

/// Gathers reports into a summary, on the calling thread.
struct Collector<'a, 'o, M: RowMapper> {
    shared: &'a Shared<'a, M>,
    summary: Summary,
    /// Per input, per piece index: records and newlines, for prefix sums.
    stats: Vec<BTreeMap<u64, PieceStat>>,
    /// The first failures by (piece, row), at most [`MAX_FAILURES`].
    pending: BTreeMap<(u64, u64), Pending>,
    on_piece: &'o mut dyn FnMut(&PieceDone),
}

impl<'a, 'o, M: RowMapper> Collector<'a, 'o, M> {
    fn new(
        shared: &'a Shared<'a, M>,
        warning_names: Vec<Arc<str>>,
        on_piece: &'o mut dyn FnMut(&PieceDone),
    ) -> Collector<'a, 'o, M> {
        Collector {
            shared,
            summary: Summary {
                field_warnings_by_field: warning_names.into_iter().map(|f| (f, 0)).collect(),
                ..Summary::default()
            },
            stats: vec![BTreeMap::new(); shared.inputs.len()],
            pending: BTreeMap::new(),
            on_piece,
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
                (self.on_piece)(&PieceDone {
                    index: r.index,
                    count: 1,
                    bytes: r.bytes,
                    processed: r.processed,
                    failed: r.failed,
                    warnings: r.warnings.iter().sum(),
                    failed_piece: r.piece_failed,
                });
                self.stats[r.input].insert(
                    r.index,
                    PieceStat {
                        byte_start: r.byte_start,
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
            Report::Empty { index, count } => {
                summary.completed_pieces += count;
                (self.on_piece)(&PieceDone {
                    index,
                    count,
                    ..PieceDone::default()
                });
            }
            Report::Failed {
                index,
                input,
                count,
                byte,
                reason,
            } => {
                summary.completed_pieces += count;
                summary.failed_pieces += count;
                (self.on_piece)(&PieceDone {
                    index,
                    count,
                    failed_piece: true,
                    ..PieceDone::default()
                });
                let p = Pending {
                    input,
                    byte,
                    line: 0,
                    reason,
                    row: 0,
                };
                self.keep((index, 0), p);
            }
            Report::InputDone { pieces } => summary.total_pieces += pieces,
        }
    }

    /// The summary, with failures at absolute positions, and where every
    /// piece's rows are.
    fn finish(self) -> (Summary, Places) {
        let Collector {
            shared,
            mut summary,
            stats,
            pending,
            ..
        } = self;
        summary.stopped = shared.progress.stop_requested();
        summary.field_warnings = summary.field_warnings_by_field.iter().map(|(_, w)| w).sum();
        summary.unique = shared.progress.unique.load(Ordering::Relaxed);
        let valid = summary.processed - summary.failed;
        summary.duplicates = valid.saturating_sub(summary.unique);

        // Absolute positions: records and newlines before each piece.
        let mut places = Places {
            inputs: shared
                .inputs
                .iter()
                .map(|i| (Arc::clone(&i.name), i.first_line))
                .collect(),
            pieces: BTreeMap::new(),
        };
        for (input, pieces) in stats.iter().enumerate() {
            let (mut records, mut newlines) = (0, 0);
            for (&index, s) in pieces {
                places.pieces.insert(
                    index,
                    PiecePlace {
                        input,
                        byte_start: s.byte_start,
                        records_before: records,
                        newlines_before: newlines,
                    },
                );
                records += s.records;
                newlines += s.newlines;
            }
        }
        summary.failures = pending
            .into_iter()
            .map(|((index, _), p)| {
                let (name, first_line) = &places.inputs[p.input];
                let (records, newlines) = places
                    .pieces
                    .get(&index)
                    .map_or((0, 0), |pp| (pp.records_before, pp.newlines_before));
                // An input that failed as a whole fails at its header.
                let whole = p.row == 0 && matches!(p.reason, FailureReason::Unusable { .. });
                let position = if whole {
                    Position {
                        byte: 0,
                        line: 1,
                        record: 0,
                    }
                } else {
                    Position {
                        byte: p.byte,
                        line: first_line + newlines + p.line,
                        record: 1 + records + p.row,
                    }
                };
                Failure {
                    input: Arc::clone(name),
                    position,
                    reason: p.reason,
                    input_index: p.input,
                }
            })
            .collect();
        (summary, places)
    }
}

/// Where one piece's rows are.
#[derive(Clone, Copy, Debug)]
struct PiecePlace {
    input: usize,
    byte_start: u64,
    records_before: u64,
    newlines_before: u64,
}

/// Where every piece of a run was, to place kept rows.
#[derive(Clone, Debug, Default)]
struct Places {
    /// Each input's name and first body line.
    inputs: Vec<(Arc<str>, u64)>,
    pieces: BTreeMap<u64, PiecePlace>,
}

/// The unique records of a run.
pub struct Records<M: RowMapper = FieldMapper> {
    stored: Stored,
    mapper: Arc<M>,
    places: Option<Places>,
}

/// Where a kept row was.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Place {
    /// Its input's name.
    pub input: Arc<str>,
    /// Which input, from 0 (as [`Failure::input_index`]).
    pub input_index: usize,
    /// Where in it.
    pub position: Position,
}

impl Place {
    /// Where it is in input order, as [`Failure::order`].
    pub fn order(&self) -> (usize, u64) {
        (self.input_index, self.position.record)
    }
}

/// Where one of a run's unique records is, from [`Records::handles`].
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd, Hash)]
pub struct RecordHandle(u64);

/// One unique record.
pub struct UniqueRecord<'a, M: RowMapper = FieldMapper> {
    records: &'a Records<M>,
    ordinal: u64,
    key: &'a [u8],
    rest: &'a [u8],
}

impl<M: RowMapper> Clone for UniqueRecord<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: RowMapper> Copy for UniqueRecord<'_, M> {}

impl<M: RowMapper> std::fmt::Debug for Records<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl<M: RowMapper> std::fmt::Debug for UniqueRecord<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniqueRecord")
            .field("ordinal", &self.ordinal)
            .field("key", &String::from_utf8_lossy(self.key))
            .field("rest", &String::from_utf8_lossy(self.rest_bytes()))
            .finish()
    }
}

impl<M: RowMapper> Records<M> {
    /// How many there are.
    pub fn len(&self) -> u64 {
        self.stored.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The mapper that made them.
    pub fn mapper(&self) -> &M {
        &self.mapper
    }

    fn record<'a>(&'a self, ordinal: u64, key: &'a [u8], rest: &'a [u8]) -> UniqueRecord<'a, M> {
        UniqueRecord {
            records: self,
            ordinal,
            key,
            rest,
        }
    }

    /// The records in the input order of the rows that were kept.
    ///
    /// Sorting takes a moment and 16 bytes a record; the order is the same
    /// whatever the piece size or number of threads.
    pub fn in_input_order(&self) -> impl Iterator<Item = UniqueRecord<'_, M>> + '_ {
        use rayon::slice::ParallelSliceMut;
        let mut locs = self.stored.locations();
        locs.par_sort_unstable_by_key(|&(ordinal, _)| ordinal);
        locs.into_iter().map(move |(ordinal, loc)| {
            let (key, rest) = self.stored.get(loc);
            self.record(ordinal, key, rest)
        })
    }

    /// A handle on every record, in ascending order of handles (no order
    /// of the records'): eight bytes each, for ordering many records
    /// without holding their slices ([`Records::get`] gives the record
    /// back).
    pub fn handles(&self) -> impl Iterator<Item = RecordHandle> + '_ {
        self.stored.slots().map(RecordHandle)
    }

    /// [`Records::handles`] in parts, to be walked on several threads at
    /// once: each part's number of handles, and its handles. The parts,
    /// one after another, hold the same handles in the same order.
    pub fn handle_parts(
        &self,
    ) -> Vec<(u64, impl Iterator<Item = RecordHandle> + Clone + Send + '_)> {
        self.stored
            .slot_parts()
            .into_iter()
            .map(|(len, part)| (len, part.map(RecordHandle)))
            .collect()
    }

    /// The record behind a handle from this run's [`Records::handles`].
    pub fn get(&self, handle: RecordHandle) -> UniqueRecord<'_, M> {
        let r = self.stored.at_slot(handle.0);
        self.record(r.ordinal, r.key, r.rest)
    }

    /// The records behind these handles, in their order: the same as
    /// [`Records::get`] on each, but read a group at a time so that the
    /// memory reads of a group overlap (several times faster when the
    /// handles jump about a large run, as in key order).
    pub fn get_each<'s, I>(&'s self, handles: I) -> impl Iterator<Item = UniqueRecord<'s, M>> + 's
    where
        I: IntoIterator<Item = RecordHandle>,
        I::IntoIter: 's,
    {
        const AT_ONCE: usize = 32;
        let mut handles = handles.into_iter();
        let mut slots = Vec::with_capacity(AT_ONCE);
        let mut group = Vec::with_capacity(AT_ONCE);
        let mut next = 0;
        std::iter::from_fn(move || {
            if next == group.len() {
                slots.clear();
                slots.extend(handles.by_ref().take(AT_ONCE).map(|h| h.0));
                group.clear();
                self.stored.at_slots(&slots, &mut group);
                next = 0;
            }
            let r = group.get(next)?;
            next += 1;
            Some(self.record(r.ordinal, r.key, r.rest))
        })
    }

    /// The records in no particular order (cheapest).
    pub fn iter(&self) -> impl Iterator<Item = UniqueRecord<'_, M>> + '_ {
        self.stored
            .iter()
            .map(move |r| self.record(r.ordinal, r.key, r.rest))
    }
}

impl Records<FieldMapper> {
    /// The mapping that shaped them.
    pub fn mapping(&self) -> &Mapping {
        self.mapper.mapping()
    }
}

impl<'a, M: RowMapper> UniqueRecord<'a, M> {
    /// The encoded unique key, as the mapper wrote it. Equal keys have
    /// equal bytes.
    pub fn key_bytes(&self) -> &'a [u8] {
        self.key
    }

    /// The rest of the row, as the mapper wrote it.
    pub fn rest_bytes(&self) -> &'a [u8] {
        match self.records.places {
            Some(_) => &self.rest[..self.rest.len().saturating_sub(PLACE_LEN)],
            None => self.rest,
        }
    }

    /// Where the kept row was: greater means later in the input.
    pub fn ordinal(&self) -> u64 {
        self.ordinal
    }

    /// Where the kept row was in its input, when the run kept places
    /// ([`IngestBuilder::places`]).
    pub fn place(&self) -> Option<Place> {
        let places = self.records.places.as_ref()?;
        let tail = self.rest.get(self.rest.len().checked_sub(PLACE_LEN)?..)?;
        let le = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().unwrap_or_default()));
        let (line, byte) = (le(&tail[..4]), le(&tail[4..]));
        let p = places.pieces.get(&(self.ordinal >> 32))?;
        let (name, first_line) = places.inputs.get(p.input)?;
        Some(Place {
            input: Arc::clone(name),
            input_index: p.input,
            position: Position {
                byte: p.byte_start + byte,
                line: first_line + p.newlines_before + line,
                record: 1 + p.records_before + (self.ordinal & u64::from(u32::MAX)),
            },
        })
    }
}

impl<'a> UniqueRecord<'a, FieldMapper> {
    /// The normalized values of the key fields, in key order.
    pub fn key_values(&self) -> impl Iterator<Item = &'a str> + 'a {
        let single = self.records.mapping().key_fields().len() == 1;
        let whole = single.then_some(self.key);
        let segments = (!single).then_some(Segments(self.key));
        // Values are written from `str`s by this crate.
        whole
            .into_iter()
            .chain(segments.into_iter().flatten())
            .map(|v| std::str::from_utf8(v).unwrap_or_default())
    }

    /// Every field's value, in mapping order.
    pub fn values(&self) -> impl Iterator<Item = &'a str> + 'a {
        // Values are written from `str`s by this crate.
        self.value_bytes()
            .map(|v| std::str::from_utf8(v).unwrap_or_default())
    }

    /// Every field's value as its UTF-8 bytes, in mapping order: the same
    /// as [`UniqueRecord::values`] without checking each value again
    /// (a caller that copies them all checks the copy once, which is far
    /// cheaper than a check for each of many short values).
    pub fn value_bytes(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mapping = self.records.mapping();
        let single = mapping.key_fields().len() == 1;
        let key = self.key;
        let mut keys: Vec<&'a [u8]> = if single {
            Vec::new()
        } else {
            Segments(key).collect()
        };
        let mut rest = Segments(self.rest_bytes());
        (0..mapping.fields().len()).map(move |i| match mapping.key_position(i) {
            Some(_) if single => key,
            Some(k) => keys.get_mut(k).map(std::mem::take).unwrap_or_default(),
            None => rest.next().unwrap_or_default(),
        })
    }
}

/// Length-prefixed values.
struct Segments<'a>(&'a [u8]);

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let (len, n) = get_varint(self.0);
        let end = (n + len as usize).min(self.0.len());
        let v = &self.0[n..end];
        self.0 = &self.0[end..];
        Some(v)
    }
}
