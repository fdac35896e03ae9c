//! Import jobs: endpoint files from buckets into an app's endpoints and
//! segments.
//!
//! A run goes through phases, saved with the job so that clients can
//! watch: `INITIALIZING` (list and fetch the objects, cut the pieces; the
//! number of pieces is saved before any is read), `PROCESSING` (pieces
//! in parallel; counters move as each finishes), then `COMPLETING`, or
//! `FAILING` when a piece could not be processed, while the endpoints are
//! written. Rows that break a rule are failures of their own and do not
//! fail the job, unless every row failed; a piece fails when its object
//! cannot be read or its CSV header names no endpoint attributes, and then
//! the job fails. What the good pieces held is written either way.
//!
//! Writes are upserts keyed by endpoint id, so a run that is interrupted
//! and resumed from the start ends where an uninterrupted one would.

use std::io::Read;
use std::sync::{Arc, LazyLock};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Objects;
use super::context::{End, RunContext, counters_of};
use super::segment::SegmentKind;
use super::write::prefix;
use crate::crypto::HmacKey;
use crate::endpoints::{Endpoint, EndpointMapper, Format, Identity, decode, gzip_inner};
use crate::ingest::normalize::PhoneNormalizer;
use crate::ingest::{
    Failure, FailureReason, IngestBuilder, Input, MAX_FAILURES, MAX_PIECE_SIZE, RecordHandle,
    Records, UniqueRecord,
};
use crate::objects::{ObjectErrorKind, ObjectInfo, ObjectUrl, resolve};
use crate::store::{
    AccountId, EndpointBatch, EndpointKey, EndpointWrite, EndpointWriter, JobCounters, JobStatus,
    Segment, Store, StoreError, StoredEndpoint,
};

/// Stored bytes of the endpoints (as the engine keeps them) in one write
/// transaction, at most: a batch in flight takes several times this once
/// decoded and merged, and endpoints with many attributes are large
/// (`benches/memory.sh` keeps the job's peak within 400 MiB).
const BATCH_BYTES: usize = 8 << 20;

/// The objects an import job of `format` reads at `url`, of those
/// `listed` there: the one object the URL names, whatever its name (the
/// format is the job's `Format`, not the file's extension), else those of
/// the folder that [`Format::takes`].
pub fn objects_to_import(
    format: Format,
    url: &ObjectUrl,
    listed: Vec<ObjectInfo>,
) -> Vec<ObjectInfo> {
    if let [one] = listed.as_slice()
        && one.key == url.key
    {
        return listed;
    }
    listed
        .into_iter()
        .filter(|o| format.takes(&o.key))
        .collect()
}

/// Why there is nothing to import at `url`, for a job of `format`.
pub fn nothing_to_import(format: Format, url: &str) -> String {
    let named = match format {
        Format::Csv => ".csv",
        Format::Json => ".json, .ndjson or .jsonl",
    };
    format!(
        "no {} object at {url} (in a folder, objects named {named} or with no extension)",
        format.as_str()
    )
}

/// An import job: what is stored as the job's request, and all a runner
/// needs to run it again.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ImportJob {
    /// The app written into.
    pub app: String,
    /// The file format.
    pub format: Format,
    /// `s3://bucket/key` or `s3://bucket/prefix/`.
    pub s3_url: String,
    /// The role the caller named; kept and reported, not assumed.
    pub role_arn: String,
    /// Kept and reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Upsert the endpoints into the app.
    #[serde(default)]
    pub register_endpoints: bool,
    /// Make a segment of the imported endpoints (its id is the job's).
    #[serde(default)]
    pub define_segment: bool,
    /// The defined segment's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name: Option<String>,
    /// Add the imported endpoints to this existing segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// Piece size in bytes, if not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece_size: Option<u64>,
    /// Default phone region for SMS and voice addresses, if not `US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl ImportJob {
    /// The segment the imported endpoints join, if any: the job's own
    /// (named after it) when it defines one.
    pub fn segment(&self, job_id: &str) -> Option<String> {
        if self.define_segment {
            Some(job_id.to_owned())
        } else {
            self.segment_id.clone()
        }
    }

    /// Whether the run writes endpoints (registering them, or filling a
    /// segment, whose members must be endpoints).
    pub fn writes(&self) -> bool {
        self.register_endpoints || self.define_segment || self.segment_id.is_some()
    }

    /// What a segment records of the import that filled it (the model's
    /// `SegmentImportResource`, without the counts, which are read from
    /// the members).
    pub fn import_definition(&self) -> String {
        let mut d = serde_json::json!({
            "Format": self.format.as_str(),
            "S3Url": self.s3_url,
            "RoleArn": self.role_arn,
        });
        if let Some(x) = &self.external_id {
            d["ExternalId"] = x.clone().into();
        }
        d.to_string()
    }
}

/// The id an endpoint without one gets: the same for the same channel and
/// address, so importing a file again updates rather than duplicates.
pub fn derived_endpoint_id(channel: &str, address: &str) -> String {
    static KEY: LazyLock<HmacKey> = LazyLock::new(|| HmacKey::new(b"sluice endpoint id"));
    let mac = KEY.mac(&[channel.as_bytes(), b"\n", address.as_bytes()]);
    crate::crypto::to_hex(&mac[..16])
}

/// Why a request's endpoints were not written.
#[derive(Debug)]
pub enum EndpointRequestError {
    /// An endpoint breaks a rule (the message names it and the member).
    Invalid(String),
    /// The store failed; nothing was written.
    Store(StoreError),
}

impl From<StoreError> for EndpointRequestError {
    fn from(e: StoreError) -> EndpointRequestError {
        EndpointRequestError::Store(e)
    }
}

/// Writes the endpoints of a request (UpdateEndpoint, UpdateEndpointsBatch)
/// into `app`, in one transaction, with the rules an imported row meets:
/// each is checked and normalized, found by its `Id` (or else its channel
/// and address), laid over the stored endpoint, and a new one needs a
/// `ChannelType` and an `Address`. `names[n]` says how an error names
/// endpoint n (`Item[3]`, or the endpoint's id). A request with an
/// endpoint that breaks a rule writes nothing; should the store still
/// refuse one (a stored endpoint deleted meanwhile), the others are
/// written and the error says so.
///
/// # Errors
///
/// [`EndpointRequestError::Invalid`] naming the endpoint and member;
/// [`EndpointRequestError::Store`] (`NoApp` among them).
pub fn write_requested_endpoints(
    store: &dyn Store,
    account: &AccountId,
    app: &str,
    mut endpoints: Vec<Endpoint>,
    names: &[String],
    now_ms: i64,
) -> Result<Vec<EndpointWrite>, EndpointRequestError> {
    let invalid = |n: usize, why: &dyn std::fmt::Display| {
        EndpointRequestError::Invalid(format!("{}: {why}", names[n]))
    };
    let phone = PhoneNormalizer::new();
    let mut identities = Vec::with_capacity(endpoints.len());
    let mut ids = Vec::with_capacity(endpoints.len());
    // Ids an earlier item of the request makes (it has what a new one needs).
    let mut made = std::collections::HashSet::new();
    for (n, e) in endpoints.iter_mut().enumerate() {
        e.check(&phone).map_err(|r| invalid(n, &r))?;
        let Some(identity) = e.identity() else {
            return Err(invalid(
                n,
                &"it needs an Id, or a ChannelType and an Address",
            ));
        };
        let id = id_of(&identity);
        // Refused before anything is written: a new endpoint without what
        // a new one needs (the store refuses it too, should one be deleted
        // in between).
        if e.channel_type.is_none() || e.address.is_none() {
            if !made.contains(&id) && store.endpoint(account, app, &id)?.is_none() {
                return Err(invalid(
                    n,
                    &"a new endpoint needs a ChannelType and an Address",
                ));
            }
        } else {
            made.insert(id.clone());
        }
        ids.push(id);
        identities.push(identity);
    }
    let keys: Vec<EndpointKey<'_>> = identities.iter().map(key_of).collect();
    let batch = EndpointBatch {
        by: EndpointWriter::Request(account),
        app,
        now_ms,
        keys: &keys,
        segment: None,
    };
    let written = store.write_endpoints(&batch, &mut |n, old| {
        merged(endpoints[n].clone(), &ids[n], old)
    })?;
    if let Some((n, EndpointWrite::Refused(why))) = written
        .iter()
        .enumerate()
        .find(|(_, w)| matches!(w, EndpointWrite::Refused(_)))
    {
        let others = written.len() - 1;
        return Err(invalid(
            n,
            &format!("{why} (the request's {others} other endpoints were written)"),
        ));
    }
    Ok(written)
}

/// Checks that a job's app, and its segment if it names one, are there;
/// returns the segment.
pub(super) fn app_and_segment(
    ctx: &RunContext<'_>,
    app: &str,
    segment: Option<&str>,
) -> Result<Option<Segment>, End> {
    let account = &ctx.job.account;
    match ctx.store.app(account, app) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(End::invalid(format!("app {app} does not exist"))),
        Err(e) => return Err(ctx.store_failed("reading the app", e)),
    }
    let Some(seg) = segment else {
        return Ok(None);
    };
    match ctx.store.segment(account, app, seg) {
        Ok(Some(s)) => Ok(Some(s)),
        Ok(None) => Err(End::invalid(format!("app {app} has no segment {seg}"))),
        Err(e) => Err(ctx.store_failed("reading the segment", e)),
    }
}

/// Why an import cannot fill dimensional segment `id`.
pub fn dimensional_import(id: &str) -> String {
    format!(
        "SegmentId {id} names a dimensional segment, whose endpoints are chosen by its \
         dimensions; an import fills an imported segment (DefineSegment makes one)"
    )
}

/// Runs an import job: the objects through the engine, then the kept
/// endpoints into the app (and its segment).
pub(super) fn run(ctx: &RunContext<'_>, spec: &ImportJob) -> End {
    let store = ctx.store;
    let (invalid, fail) = (End::invalid, End::internal);
    let phase = |p: &str| {
        store
            .set_phase(ctx.job_ref(), p)
            .map_err(|e| ctx.store_failed("recording the phase", e))
    };
    if let Err(end) = phase("INITIALIZING") {
        return end;
    }
    let Some(objects) = ctx.config.objects.as_ref() else {
        return fail("this runner has no buckets to read from".into());
    };
    // An import fills an imported segment: a dimensional segment's
    // endpoints are chosen by its dimensions.
    let segment = match app_and_segment(ctx, &spec.app, spec.segment_id.as_deref()) {
        Ok(s) => s,
        Err(end) => return end,
    };
    if let Some(seg) = &segment {
        match SegmentKind::of(seg) {
            Ok(SegmentKind::Import) => {}
            Ok(SegmentKind::Dimensional(_)) => return invalid(dimensional_import(&seg.id)),
            Err(e) => return invalid(e.to_string()),
        }
    }
    let url = match ObjectUrl::parse(&spec.s3_url) {
        Ok(u) => u,
        Err(e) => return invalid(e.message),
    };
    let listed = match resolve(&**objects, &url) {
        Ok(l) => l,
        Err(e) if e.kind != ObjectErrorKind::Backend => return invalid(e.message),
        Err(e) => return fail(e.message),
    };
    let matching = objects_to_import(spec.format, &url, listed);
    if matching.is_empty() {
        return invalid(nothing_to_import(spec.format, &spec.s3_url));
    }
    let mut builder = IngestBuilder::with_mapper(EndpointMapper::new(spec.format));
    builder
        .pool(Arc::clone(ctx.pool))
        .places(true)
        .tolerate_bad_inputs(true);
    if let Some(s) = spec.piece_size {
        builder.piece_size(s.clamp(1, MAX_PIECE_SIZE));
    }
    if let Some(r) = &spec.region {
        builder.region(r);
    }
    let ingest = match builder.build() {
        Ok(i) => i,
        Err(e) => return invalid(e.to_string()),
    };
    let inputs = matching
        .into_iter()
        .map(|o| object_input(objects, &url.bucket, o))
        .collect();
    if let Err(end) = phase("PROCESSING") {
        return end;
    }
    let outcome = match ctx.run_engine(&ingest, inputs) {
        Ok(o) => o,
        Err(end) => return end,
    };
    let summary = &outcome.summary;
    if summary.stopped {
        return ctx.stopped("stopped on request before any endpoint was written".into());
    }
    let every_row_failed = summary.processed > 0 && summary.failed == summary.processed;
    let failing = summary.failed_pieces > 0 || every_row_failed;
    if let Err(end) = phase(if failing { "FAILING" } else { "COMPLETING" }) {
        return end;
    }
    let mut counters = counters_of(summary);
    let mut failures = summary.failures.clone();
    if spec.writes()
        && let Err(end) = write(ctx, spec, &outcome.records, &mut counters, &mut failures)
    {
        return end;
    }
    failures.sort_by_key(Failure::order);
    failures.truncate(MAX_FAILURES);
    counters.failures = failures.iter().map(ToString::to_string).collect();
    if let Err(e) = store.save_progress(ctx.job_ref(), &counters) {
        return ctx.store_failed("saving the counts", e);
    }
    let first = counters.failures.first().cloned().unwrap_or_default();
    if every_row_failed && counters.failed_pieces == 0 {
        invalid(format!("every row failed; the first: {first}"))
    } else if failing {
        invalid(format!(
            "{} of {} pieces could not be processed; what the others held was imported. \
             The first failure: {first}",
            counters.failed_pieces, counters.total_pieces
        ))
    } else if counters.failed > 0 {
        End::Done(
            JobStatus::PartiallySucceeded,
            Some(format!(
                "{} rows failed; the first: {first}",
                counters.failed
            )),
            None,
        )
    } else {
        End::Done(JobStatus::Succeeded, None, None)
    }
}

/// An object as the engine reads it: streamed, opened when its turn comes;
/// a `.gz` object (what export jobs write) decompressed as it is read.
pub(super) fn object_input(objects: &Objects, bucket: &str, o: ObjectInfo) -> Input {
    let objects = Arc::clone(objects);
    let name = format!("s3://{bucket}/{}", o.key);
    let (bucket, key, size) = (bucket.to_owned(), o.key, o.size);
    if gzip_inner(&key).is_some() {
        let open = move || -> std::io::Result<Box<dyn Read + Send>> {
            let raw = objects
                .read(&bucket, &key, 0..size)
                .map_err(std::io::Error::from)?;
            Ok(Box::new(flate2::read::MultiGzDecoder::new(raw)))
        };
        return Input::reader(&name, OpenedLate::new(open), None);
    }
    Input::reopenable(&name, size, move |offset| {
        objects
            .read(&bucket, &key, offset..size)
            .map_err(std::io::Error::from)
    })
}

/// A reader opened at its first read, so that the inputs of a job do not
/// all hold a stream open from the start.
struct OpenedLate<F> {
    open: Option<F>,
    inner: Option<Box<dyn Read + Send>>,
}

impl<F> OpenedLate<F> {
    fn new(open: F) -> OpenedLate<F> {
        OpenedLate {
            open: Some(open),
            inner: None,
        }
    }
}

impl<F: FnOnce() -> std::io::Result<Box<dyn Read + Send>>> Read for OpenedLate<F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.inner.is_none()
            && let Some(open) = self.open.take()
        {
            self.inner = Some(open()?);
        }
        match &mut self.inner {
            Some(r) => r.read(buf),
            None => Err(std::io::Error::other("the object could not be opened")),
        }
    }
}

/// Writes the surviving endpoints, in batches, into the app (and its
/// segment); endpoints the store refuses become failures at their place.
fn write(
    ctx: &RunContext<'_>,
    spec: &ImportJob,
    records: &Records<EndpointMapper>,
    counters: &mut JobCounters,
    failures: &mut Vec<Failure>,
) -> Result<(), End> {
    let store = ctx.store;
    let account = &ctx.job.account;
    let job = ctx.job;
    let fail = End::internal;
    let segment = spec.segment(&job.id);
    let now = ctx.now();
    // Every run writes every endpoint again (upserts by id), so the counts
    // of an earlier, interrupted attempt start over: an endpoint this job
    // created counts as created again.
    store
        .clear_written(ctx.attempt())
        .map_err(|e| ctx.store_failed("starting the writes", e))?;
    if spec.define_segment {
        let seg = Segment {
            app: spec.app.clone(),
            id: job.id.clone(),
            name: Some(
                spec.segment_name
                    .clone()
                    .unwrap_or_else(|| format!("Import {}", job.id)),
            ),
            definition: spec.import_definition(),
            created_ms: now,
            updated_ms: now,
            version: 1,
        };
        store
            .create_segment(account, &seg)
            .map_err(|e| ctx.store_failed("making the segment", e))?;
    } else if let Some(seg) = &segment {
        store
            .update_segment(
                account,
                &spec.app,
                seg,
                None,
                &spec.import_definition(),
                now,
            )
            .map_err(|e| ctx.store_failed("updating the segment", e))?;
    }
    // The endpoints in the order of the id each gets if it is new (its own,
    // or one derived from its address: a keyed hash, worked out on the
    // pool), so the store's B-trees are written front to back rather than
    // at random (derived ids are hashes); equal ids (an own id that is
    // another's derived one) in row order. 32 bytes an endpoint: the id's
    // first 24 bytes and the record's handle; the whole id is made again
    // where prefixes tie, and when the endpoint is written.
    let id_of = |h: RecordHandle| {
        let r = records.get(h);
        (new_id(&r), r.ordinal())
    };
    let rows: Vec<([u64; 3], RecordHandle)> = ctx.pool.install(|| {
        let mut rows: Vec<_> = records
            .handle_parts()
            .into_par_iter()
            .flat_map_iter(|(_, part)| {
                part.clone()
                    .zip(records.get_each(part))
                    .map(|(h, r)| (prefix(new_id(&r).as_bytes()), h))
            })
            .collect();
        rows.par_sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| id_of(a.1).cmp(&id_of(b.1))));
        rows
    });
    // The pool makes each batch's endpoints, as they are stored when new,
    // while the store writes the batch before: the writer only merges the
    // endpoints it finds stored. One batch waits at most.
    let rows = &rows[..];
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(0);
        s.spawn(move || {
            let mut rest = rows;
            while !rest.is_empty() {
                let (chunk, after) = rest.split_at(next_batch(ctx, records, rest));
                rest = after;
                let ready: Result<Vec<Ready<'_>>, String> = ctx.pool.install(|| {
                    chunk
                        .par_chunks(READ_AT_ONCE)
                        .flat_map_iter(|c| records.get_each(c.iter().map(|&(_, h)| h)))
                        .map(Ready::new)
                        .collect()
                });
                if tx.send(ready).is_err() {
                    return; // the writer stopped
                }
            }
        });
        for ready in rx {
            let ready = ready.map_err(fail)?;
            write_batch(ctx, spec, segment.as_deref(), ready, counters, failures)?;
        }
        Ok(())
    })
}

/// Rows read from the engine's tables together on one worker: their reads
/// overlap ([`Records::get_each`]), where one by one they wait on memory.
const READ_AT_ONCE: usize = 1024;

/// How many of these rows (in write order) the next transaction takes: the
/// runner's rows a transaction (100,000 by default), fewer if their stored
/// bytes pass [`BATCH_BYTES`]. Each transaction rewrites the index pages it
/// touches, so fewer, larger ones write less: 1 M endpoints took 35 s in
/// batches of 10,000 and 22 s in batches of 100,000 (`benches/import.sh`);
/// 500,000 a transaction gained under a tenth on 100,000, for five times
/// the endpoints held at once. The sizes are read on the pool: read one by
/// one on this thread they took 2 s of a 1 M import.
fn next_batch(
    ctx: &RunContext<'_>,
    records: &Records<EndpointMapper>,
    rows: &[([u64; 3], RecordHandle)],
) -> usize {
    let max_rows = ctx.config.batch_rows.max(1);
    let window = &rows[..rows.len().min(max_rows)];
    let sizes: Vec<usize> = ctx.pool.install(|| {
        window
            .par_chunks(READ_AT_ONCE)
            .flat_map_iter(|c| {
                records
                    .get_each(c.iter().map(|&(_, h)| h))
                    .map(|r| r.rest_bytes().len())
            })
            .collect()
    });
    batch_len(sizes.into_iter(), max_rows, BATCH_BYTES)
}

/// The id a kept row's endpoint gets if it is new.
fn new_id(r: &UniqueRecord<'_, EndpointMapper>) -> String {
    Identity::from_key(r.key_bytes()).map_or_else(String::new, |i| id_of(&i))
}

/// The id of an endpoint of this identity: its own, or the one derived
/// from its channel and address.
fn id_of(identity: &Identity) -> String {
    match identity {
        Identity::Id(id) => id.clone(),
        Identity::Address { channel, address } => derived_endpoint_id(channel, address),
    }
}

/// How the store finds the stored endpoint of an identity.
fn key_of(identity: &Identity) -> EndpointKey<'_> {
    match identity {
        Identity::Id(id) => EndpointKey::Id(id),
        Identity::Address { channel, address } => EndpointKey::Address(channel, address),
    }
}

/// A kept row made ready to write: its identity, the id it gets if it is
/// new, and its endpoint as it is stored if no endpoint is found for it
/// (taken when used).
struct Ready<'r> {
    record: UniqueRecord<'r, EndpointMapper>,
    identity: Identity,
    id: String,
    fresh: Option<Result<StoredEndpoint, String>>,
}

impl<'r> Ready<'r> {
    fn new(record: UniqueRecord<'r, EndpointMapper>) -> Result<Ready<'r>, String> {
        let (identity, endpoint) = decode(&record)?;
        let id = new_id(&record);
        let fresh = Some(merged(endpoint, &id, None));
        Ok(Ready {
            record,
            identity,
            id,
            fresh,
        })
    }
}

/// Writes one batch of rows in one transaction, counting what became of
/// each; endpoints the store refuses become failures at their place.
fn write_batch(
    ctx: &RunContext<'_>,
    spec: &ImportJob,
    segment: Option<&str>,
    mut ready: Vec<Ready<'_>>,
    counters: &mut JobCounters,
    failures: &mut Vec<Failure>,
) -> Result<(), End> {
    let mut fresh: Vec<_> = ready.iter_mut().map(|r| r.fresh.take()).collect();
    let keys: Vec<EndpointKey<'_>> = ready.iter().map(|r| key_of(&r.identity)).collect();
    let mut merge = |n: usize, old: Option<StoredEndpoint>| {
        let r = &ready[n];
        match (old, fresh[n].take()) {
            (None, Some(fresh)) => fresh,
            (old, _) => merged(decode(&r.record)?.1, &r.id, old),
        }
    };
    let batch = EndpointBatch {
        by: EndpointWriter::Job(ctx.attempt()),
        app: &spec.app,
        now_ms: ctx.now(),
        keys: &keys,
        segment,
    };
    let written = ctx.store.write_endpoints(&batch, &mut merge).map_err(|e| {
        let kept = format!(
            "the {} written before stay",
            counters.created + counters.updated
        );
        ctx.store_failed_keeping("writing endpoints", e, Some(kept))
    })?;
    for (w, Ready { record, .. }) in written.iter().zip(&ready) {
        match w {
            EndpointWrite::Created(_) => counters.created += 1,
            EndpointWrite::Updated(_) => counters.updated += 1,
            EndpointWrite::Refused(why) => {
                counters.failed += 1;
                if let Some(place) = record.place() {
                    failures.push(Failure {
                        input: place.input,
                        position: place.position,
                        reason: FailureReason::Invalid {
                            member: None,
                            message: why.clone(),
                        },
                        input_index: place.input_index,
                    });
                }
            }
        }
    }
    Ok(())
}

/// How many of the next rows, of these stored sizes, make one batch: at
/// most `max_rows`, and no more than `max_bytes` unless the first alone is
/// larger; none only when there are no rows.
fn batch_len(sizes: impl Iterator<Item = usize>, max_rows: usize, max_bytes: usize) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for size in sizes.take(max_rows) {
        bytes += size;
        if n > 0 && bytes > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// The endpoint to store: `new` laid over the stored one, or `new` alone,
/// as `new_id`, when it has what a new endpoint needs.
fn merged(
    new: Endpoint,
    new_id: &str,
    old: Option<StoredEndpoint>,
) -> Result<StoredEndpoint, String> {
    let (mut e, id, created_ms) = match old {
        Some(old) => {
            let mut e: Endpoint = serde_json::from_str(&old.fields)
                .map_err(|err| format!("the stored endpoint {} cannot be read: {err}", old.id))?;
            e.merge(new);
            // Rows merged into one stored endpoint are bounded as one row.
            e.check_counts().map_err(|r| r.to_string())?;
            (e, old.id, old.created_ms)
        }
        None => {
            if new.channel_type.is_none() || new.address.is_none() {
                return Err("a new endpoint needs a ChannelType and an Address".to_owned());
            }
            (new, new_id.to_owned(), 0)
        }
    };
    e.id = Some(id.clone());
    Ok(StoredEndpoint {
        id,
        channel_type: e.channel_type.clone(),
        address: e.address.clone(),
        user_id: e.user.as_ref().and_then(|u| u.user_id.clone()),
        fields: serde_json::to_string(&e).map_err(|err| err.to_string())?,
        created_ms,
        updated_ms: 0,
        created_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::{batch_len, merged};
    use crate::endpoints::Endpoint;
    use crate::store::StoredEndpoint;

    fn with_attributes(prefix: &str, n: usize) -> Endpoint {
        let attrs = (0..n)
            .map(|i| format!(r#""{prefix}{i}":["v"]"#))
            .collect::<Vec<_>>()
            .join(",");
        serde_json::from_str(&format!(
            r#"{{"ChannelType":"EMAIL","Address":"a@b.co","Attributes":{{{attrs}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn rows_merged_into_one_endpoint_stay_within_its_limits() {
        let old = StoredEndpoint {
            id: "e1".into(),
            channel_type: Some("EMAIL".into()),
            address: Some("a@b.co".into()),
            user_id: None,
            fields: serde_json::to_string(&with_attributes("a", 200)).unwrap(),
            created_ms: 1,
            updated_ms: 1,
            created_by: None,
        };
        let fits = merged(with_attributes("b", 50), "x", Some(old.clone())).unwrap();
        assert!(fits.fields.contains("b49"));
        let err = merged(with_attributes("c", 51), "x", Some(old)).unwrap_err();
        assert!(err.contains("at most 250 names"), "{err}");
    }

    #[test]
    fn batches_stop_at_their_rows_or_their_bytes() {
        assert_eq!(batch_len([0usize; 0].into_iter(), 10, 100), 0);
        assert_eq!(batch_len([1; 20].into_iter(), 10, 100), 10);
        assert_eq!(batch_len([40, 40, 40, 40].into_iter(), 10, 100), 2);
        assert_eq!(batch_len([40, 60, 1].into_iter(), 10, 100), 2);
        // A row larger than a batch goes alone.
        assert_eq!(batch_len([500, 1].into_iter(), 10, 100), 1);
        assert_eq!(batch_len([1, 500].into_iter(), 10, 100), 1);
    }
}
