//! Profile jobs split across processes, on a store that several machines
//! share ([`RangeStore`]).
//!
//! 1. The runner that holds the job's lease plans it once: every input is
//!    read through once and cut into ranges of about [`RANGE_SIZE`] bytes
//!    that end exactly where records end (the engine's own quote-aware
//!    cutting, [`Ingest::plan_ranges`]). An attempt that resumes the job
//!    keeps the plan it finds.
//! 2. Any runner of any process leases a range (its job's runner too),
//!    reads only its bytes (and the input's header), runs them through the
//!    engine, which dedups within the range, and hands the store the rows
//!    it kept with their place, `(piece, ordinal)`, and its counts, in one
//!    step that a later attempt's lease fences. A range whose reading fails
//!    is given back and tried again later, up to [`RANGE_ATTEMPTS`] times;
//!    then it fails as a piece, with its reason.
//! 3. When no range is open, the job's runner has the store merge the
//!    staged rows, part by part (split by a hash of the key, several parts
//!    at once): per key the row of the greatest place wins, as the last row
//!    wins in one process; created and updated are counted by the store.
//! 4. The job's counts and first failures are put together from the
//!    ranges' own, in input order, and equal a single process's run.

use std::io::{Cursor, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use super::context::{End, RunContext, ended, failure_kind};
use super::terms::TermPlan;
use super::write::{write_key_array, write_values};
use super::{Clock, Objects, Source};
use crate::ingest::{Failure, Ingest, Input, RowMapper};
use crate::store::{
    JobCounters, JobStatus, MergePart, PlannedRange, RangeLease, RangeRecord, RangeResult,
    RangeState, RangeStore, StagedRow, StoreError,
};

/// Bytes in a range unless the job says otherwise: large enough that a
/// range keeps a worker's cores busy and its staging is one bulk write,
/// small enough that a 1 GiB input spreads over many workers.
pub const RANGE_SIZE: u64 = 64 << 20;

/// Times a range is leased before it fails as a piece.
pub const RANGE_ATTEMPTS: u64 = 4;

/// Parts the merge is split into (by a hash of the key).
const MERGE_PARTS: u32 = 4;

/// Failures kept per job, as the engine keeps them.
const MAX_FAILURES: usize = crate::ingest::MAX_FAILURES;

/// What the job thread knows of the job it splits.
pub(super) struct Job<'a> {
    /// Its inputs, in order.
    pub(super) inputs: &'a [Source],
    /// Bytes in a range.
    pub(super) range_size: u64,
    pub(super) ingest: &'a Ingest,
    pub(super) domain: &'a str,
    pub(super) expires_ms: i64,
    pub(super) targets: Vec<String>,
}

/// Whether every input can be read by range: files and objects, not
/// sealed (uploads are read whole, by the job's runner).
pub(super) fn splittable(inputs: &[Source], sealed: bool) -> bool {
    !sealed
        && inputs
            .iter()
            .all(|s| matches!(s, Source::File(_) | Source::Object { .. }))
}

/// An object's size.
pub(super) fn object_size(source: &Source, objects: Option<&Objects>) -> Result<u64, String> {
    let (bucket, key) = source
        .object()
        .ok_or_else(|| format!("{}: not an s3://BUCKET/KEY URL", source.name()))?;
    let objects = objects.ok_or_else(|| "this runner has no buckets".to_owned())?;
    objects
        .head(bucket, key)
        .map(|i| i.size)
        .map_err(|e| format!("{}: {e}", source.name()))
}

/// Bytes `range` of a file or an object (a ranged GET).
pub(super) fn read_range(
    source: &Source,
    objects: Option<&Objects>,
    range: Range<u64>,
) -> Result<Box<dyn Read + Send>, String> {
    let name = source.name();
    match source {
        Source::File(p) => {
            let mut f = std::fs::File::open(p).map_err(|e| format!("{name}: {e}"))?;
            f.seek(SeekFrom::Start(range.start))
                .map_err(|e| format!("{name}: {e}"))?;
            Ok(Box::new(f.take(range.end.saturating_sub(range.start))))
        }
        Source::Object { .. } => {
            let (bucket, key) = source
                .object()
                .ok_or_else(|| format!("{name}: not an s3://BUCKET/KEY URL"))?;
            let objects = objects.ok_or_else(|| "this runner has no buckets".to_owned())?;
            objects
                .read(bucket, key, range)
                .map_err(|e| format!("{name}: {e}"))
        }
        Source::Upload { .. } => Err(format!("{name}: an upload is read whole")),
    }
}

/// Runs a split job on the runner that leased it: plan, work, merge, end.
pub(super) fn run(ctx: &RunContext<'_>, store: &dyn RangeStore, job: &Job<'_>) -> End {
    let objects = ctx.config.objects.as_ref();
    let mut planned = match store.ranges(ctx.job_ref()) {
        Ok(r) => r,
        Err(e) => return ctx.store_failed("reading the job's ranges", e),
    };
    if planned.is_empty() {
        let mut ranges = Vec::new();
        let size = job.range_size.max(1);
        for (i, source) in job.inputs.iter().enumerate() {
            let input = match whole(source, objects) {
                Ok(input) => input,
                Err(e) => return End::invalid(e),
            };
            let plan = match ctx.watched(|| job.ingest.plan_ranges(input, size)) {
                Ok(p) => p,
                Err(e) => {
                    return End::Done(
                        JobStatus::Failed,
                        Some(e.to_string()),
                        Some(failure_kind(&e)),
                    );
                }
            };
            ranges.extend(plan.ranges.iter().map(|r| PlannedRange {
                input: i as u64,
                body_start: plan.body_start,
                start: r.start,
                end: r.end,
                newlines_before: r.newlines_before,
            }));
        }
        if (ctx.stop_asked)() {
            return ctx
                .stopped("stopped on request while planning, before any record was read".into());
        }
        if let Err(e) = store.plan_ranges(ctx.attempt(), &ranges, MERGE_PARTS) {
            return ctx.store_failed("recording the job's ranges", e);
        }
    }

    // Work on the job's ranges with everyone else, until none is open.
    let worker = RangeWorker {
        store,
        objects,
        clock: &ctx.config.clock,
        ttl: ctx.config.lease_ttl,
    };
    let wait = ctx.config.progress_interval.max(Duration::from_millis(50));
    loop {
        if (ctx.stop_asked)() {
            return stopped(ctx, store);
        }
        let now = ctx.now();
        let ttl = ms(ctx.config.lease_ttl);
        match store.lease_range(Some(ctx.job_ref()), ctx.holder, now, ttl, RANGE_ATTEMPTS) {
            Ok(Some(lease)) => {
                if let Err(e) = worker.work(&lease, job.inputs, job.ingest) {
                    return ctx.store_failed("staging a range", e);
                }
            }
            Ok(None) => {
                planned = match store.ranges(ctx.job_ref()) {
                    Ok(r) => r,
                    Err(e) => return ctx.store_failed("reading the job's ranges", e),
                };
                if planned.iter().all(|r| r.state != RangeState::Open) {
                    break;
                }
                std::thread::sleep(wait);
            }
            Err(e) => return ctx.store_failed("leasing a range", e),
        }
    }

    // Merge, several parts at once.
    let now = ctx.now();
    let targets: Vec<&str> = job.targets.iter().map(String::as_str).collect();
    if let Err(e) = store.prepare_merge(ctx.attempt(), job.domain, now, job.expires_ms, &targets) {
        return ctx.store_failed("preparing the merge", e);
    }
    let parts: u32 = MERGE_PARTS;
    let at_once = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let next = std::sync::atomic::AtomicU32::new(0);
    let merged: Result<(), StoreError> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..at_once.min(parts as usize))
            .map(|_| {
                s.spawn(|| -> Result<(), StoreError> {
                    loop {
                        let part = next.fetch_add(1, Ordering::Relaxed);
                        if part >= parts || (ctx.stop_asked)() {
                            return Ok(());
                        }
                        store.merge_part(&MergePart {
                            attempt: ctx.attempt(),
                            domain: job.domain,
                            part,
                            now_ms: now,
                            expires_ms: job.expires_ms,
                            targets: &targets,
                        })?;
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    if let Err(e) = merged {
        return ctx.store_failed("merging the staged rows", e);
    }
    if (ctx.stop_asked)() {
        return stopped(ctx, store);
    }
    let record = match ctx.store.job(ctx.job_ref()) {
        Ok(Some(j)) => j,
        Ok(None) => return End::internal("the job went while it ran".into()),
        Err(e) => return ctx.store_failed("reading the job", e),
    };
    let written = record.counters.created + record.counters.updated;
    let counters = counters(&planned, job, written);
    if let Err(e) = ctx.store.save_progress(ctx.job_ref(), &counters) {
        return ctx.store_failed("saving the counts", e);
    }
    let _ = store.drop_ranges(ctx.job_ref());
    ended(
        counters.processed,
        counters.failed,
        counters.failed_pieces,
        counters.failures.first().cloned(),
    )
}

/// A split job stopped on request: what its ranges staged goes (nothing
/// of it was merged, or the merge's parts stay as written).
fn stopped(ctx: &RunContext<'_>, store: &dyn RangeStore) -> End {
    let end = ctx.stopped("stopped on request; the profiles merged before stay".into());
    if matches!(end, End::Done(..)) {
        let _ = store.drop_ranges(ctx.job_ref());
    }
    end
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An input read whole, to plan it.
fn whole(source: &Source, objects: Option<&Objects>) -> Result<Input, String> {
    match source {
        Source::File(p) => Ok(Input::path(p)),
        Source::Object { .. } => {
            let size = object_size(source, objects)?;
            Ok(Input::reader(
                &source.name(),
                read_range(source, objects, 0..size)?,
                Some(size),
            ))
        }
        Source::Upload { .. } => Err(format!("{}: an upload is read whole", source.name())),
    }
}

/// The job's counts from its ranges' (and the rows the merge wrote), its
/// failures in input order.
fn counters(ranges: &[RangeRecord], job: &Job<'_>, written: u64) -> JobCounters {
    let mut c = JobCounters {
        total_pieces: ranges.len() as u64,
        ..JobCounters::default()
    };
    let fields = job.ingest.mapper().warning_fields();
    let mut warnings = vec![0u64; fields.len()];
    // Records of the input's ranges before this one.
    let mut records_before = 0;
    let mut input = None;
    for r in ranges {
        if input != Some(r.range.input) {
            input = Some(r.range.input);
            records_before = 0;
        }
        let res = &r.result;
        c.completed_pieces += u64::from(r.state != RangeState::Open);
        c.failed_pieces += u64::from(res.failed_piece);
        c.processed += res.processed;
        c.failed += res.failed;
        for (w, n) in warnings.iter_mut().zip(&res.warnings) {
            *w += n;
        }
        if c.failures.len() < MAX_FAILURES {
            let name = job
                .inputs
                .get(usize::try_from(r.range.input).unwrap_or(usize::MAX))
                .map(Source::name)
                .unwrap_or_default();
            if r.state == RangeState::Failed {
                c.failures.push(format!(
                    "{name}: bytes {}..{}: {}",
                    r.range.start,
                    r.range.end,
                    res.reason.as_deref().unwrap_or("failed")
                ));
            }
            let kept: Vec<(u64, u64, String)> =
                serde_json::from_str(&res.failures).unwrap_or_default();
            for (line, record, reason) in kept {
                c.failures.push(Failure::describe(
                    &name,
                    line,
                    record + records_before,
                    &reason,
                ));
            }
            c.failures.truncate(MAX_FAILURES);
        }
        records_before += res.processed;
    }
    c.field_warnings = warnings.iter().sum();
    c.field_warnings_by_field = fields
        .iter()
        .zip(warnings)
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| (f.to_string(), n))
        .collect();
    c.duplicates = (c.processed - c.failed).saturating_sub(written);
    c
}

/// Works on leased ranges: the job's runner, or a helper of any process.
pub(super) struct RangeWorker<'a> {
    pub(super) store: &'a dyn RangeStore,
    pub(super) objects: Option<&'a Objects>,
    pub(super) clock: &'a Clock,
    pub(super) ttl: Duration,
}

impl RangeWorker<'_> {
    /// Runs one leased range and stages what it kept; a range that cannot
    /// be read or run is given back with the reason (and a later retry).
    /// Heartbeats renew the lease meanwhile; a lease taken over writes
    /// nothing.
    ///
    /// # Errors
    ///
    /// The store's, staging or giving back.
    pub(super) fn work(
        &self,
        lease: &RangeLease,
        inputs: &[Source],
        ingest: &Ingest,
    ) -> Result<bool, StoreError> {
        let lost = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        let ran = std::thread::scope(|s| {
            s.spawn(|| self.heartbeat(lease, &done, &lost));
            let ran = self.run(lease, inputs, ingest);
            done.store(true, Ordering::Relaxed);
            ran
        });
        if lost.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match ran {
            Ok((result, rows)) => {
                let views: Vec<StagedRow<'_>> = rows.views(lease.parts);
                self.store.complete_range(lease, &result, &views)
            }
            Err(reason) => {
                // Backoff: a second, then 4, 16, … before the next try.
                let wait =
                    1000i64.saturating_mul(4i64.saturating_pow(
                        u32::try_from(lease.attempt.saturating_sub(1)).unwrap_or(8),
                    ));
                let retry = (self.clock)().saturating_add(wait.min(60_000));
                self.store
                    .give_back_range(lease, &reason, retry, RANGE_ATTEMPTS)
            }
        }
    }

    fn heartbeat(&self, lease: &RangeLease, done: &AtomicBool, lost: &AtomicBool) {
        let every = (self.ttl / 3).max(Duration::from_millis(10));
        let step = Duration::from_millis(20).min(every);
        let mut waited = Duration::ZERO;
        while !done.load(Ordering::Relaxed) {
            std::thread::sleep(step);
            waited += step;
            if waited < every {
                continue;
            }
            waited = Duration::ZERO;
            let deadline = (self.clock)().saturating_add(ms(self.ttl));
            // A store out of reach may come back before the deadline; a
            // lease taken over does not.
            if let Ok(false) = self.store.renew_range(lease, deadline) {
                lost.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    /// The range through the engine: its result and kept rows, or why it
    /// could not be read.
    fn run(
        &self,
        lease: &RangeLease,
        inputs: &[Source],
        ingest: &Ingest,
    ) -> Result<(RangeResult, Staged), String> {
        let r = lease.range;
        let source = inputs
            .get(usize::try_from(r.input).unwrap_or(usize::MAX))
            .ok_or_else(|| format!("the job has no input {}", r.input))?;
        let mut header = Vec::new();
        read_range(source, self.objects, 0..r.body_start)?
            .read_to_end(&mut header)
            .map_err(|e| format!("{}: {e}", source.name()))?;
        if header.len() as u64 != r.body_start {
            return Err(format!(
                "{}: it is shorter than when it was planned",
                source.name()
            ));
        }
        let body = read_range(source, self.objects, r.start..r.end)?;
        let len = r.body_start + (r.end - r.start);
        let input = Input::reader(&source.name(), Cursor::new(header).chain(body), Some(len));
        let outcome = ingest.run(vec![input]).map_err(|e| e.to_string())?;
        let s = &outcome.summary;
        if s.bytes != r.end - r.start {
            return Err(format!(
                "{}: read {} bytes of bytes {}..{} (it changed since it was planned)",
                source.name(),
                s.bytes,
                r.start,
                r.end
            ));
        }
        let failures: Vec<_> = s
            .failures
            .iter()
            .map(|f| {
                json!([
                    f.position.line + r.newlines_before,
                    f.position.record,
                    f.reason.to_string()
                ])
            })
            .collect();
        let result = RangeResult {
            processed: s.processed,
            failed: s.failed,
            warnings: s.field_warnings_by_field.iter().map(|(_, n)| *n).collect(),
            failures: serde_json::Value::Array(failures).to_string(),
            failed_piece: s.failed_pieces > 0,
            reason: None,
        };
        let records = &outcome.records;
        let multi = records.mapping().key_fields().len() > 1;
        let plan = TermPlan::of(records.mapping());
        let mut staged = Staged::default();
        let mut values = Vec::new();
        for rec in records.iter() {
            let start = staged.text.len();
            if multi {
                write_key_array(&mut staged.text, &rec);
            } else {
                staged.text.extend_from_slice(rec.key_bytes());
            }
            let key_end = staged.text.len();
            write_values(&mut staged.text, rec.value_bytes());
            values.clear();
            values.extend(rec.value_bytes());
            plan.push(&values, &mut staged.terms);
            staged.rows.push((
                start,
                key_end,
                staged.text.len(),
                rec.ordinal(),
                staged.terms.len(),
            ));
        }
        if std::str::from_utf8(&staged.text).is_err() {
            return Err(format!("{}: kept values that are not text", source.name()));
        }
        Ok((result, staged))
    }
}

/// Rows kept by one range: keys and values in one buffer.
#[derive(Default)]
struct Staged {
    text: Vec<u8>,
    /// (key start, key end = values start, values end, ordinal, terms end).
    rows: Vec<(usize, usize, usize, u64, usize)>,
    /// Every row's search terms, one row's after another's.
    terms: Vec<i64>,
}

impl Staged {
    fn views(&self, parts: u32) -> Vec<StagedRow<'_>> {
        let text = std::str::from_utf8(&self.text).unwrap_or_default();
        let mut term_at = 0;
        self.rows
            .iter()
            .map(|&(start, key_end, end, ordinal, terms_end)| {
                let key = text.get(start..key_end).unwrap_or_default();
                let terms = self.terms.get(term_at..terms_end).unwrap_or_default();
                term_at = terms_end;
                StagedRow {
                    part: part_of(key.as_bytes(), parts),
                    ordinal,
                    key,
                    values: text.get(key_end..end).unwrap_or_default(),
                    terms,
                }
            })
            .collect()
    }
}

/// The merge part of a key: FNV-1a, the same in every process and build.
fn part_of(key: &[u8], parts: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    u32::try_from(h % u64::from(parts.max(1))).unwrap_or(0)
}
