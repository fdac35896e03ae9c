//! Pinpoint export jobs: the endpoints of an app, or of one of its
//! segments, written under `s3://bucket/prefix/` as gzip-compressed
//! newline-delimited JSON, one file per piece of [`PIECE_ENDPOINTS`]
//! endpoints, each line an endpoint as GetEndpoint answers it
//! ([`EndpointDocument`]).
//!
//! The endpoints are read a page at a time in id order (one page is one
//! piece) while the pieces before it are encoded and written on the
//! runner's threads, at most a few pages in memory at once: memory does
//! not grow with the number of endpoints. A piece is written whole or not
//! at all (an object appears when it is finished); a job that cannot write
//! one fails saying which files it wrote. An import job of `Format` JSON
//! reads the files back (`.gz` is decompressed, `ApplicationId`,
//! `CohortId` and `CreationDate` are dropped).

use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::sync::mpsc::sync_channel;

use serde::{Deserialize, Serialize};

use super::context::{End, RunContext};
use super::import::app_and_segment;
use super::segment::{SegmentError, filter_of};
use crate::endpoints::Endpoint;
use crate::objects::{ObjectAttributes, ObjectUrl, Objects};
use crate::store::{EndpointFilter, JobCounters, JobStatus, Segment, StoredEndpoint};
use crate::time::iso8601;

/// Endpoints in one piece (one file, ~4 MB of gzip): a page held in
/// memory while it is written, ~30 MB of stored endpoints.
pub const PIECE_ENDPOINTS: usize = 50_000;

/// An export job: what is stored as the job's request, and all a runner
/// needs to run it again.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
pub struct ExportJob {
    /// The app whose endpoints go out.
    pub app: String,
    /// `s3://bucket/prefix/`: the files go under `prefix/JOB-ID/`.
    pub s3_url_prefix: String,
    /// The IAM role ARN the request named (checked, otherwise unused).
    pub role_arn: String,
    /// Only this segment's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// The segment's version the request named (the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_version: Option<u32>,
    /// Endpoints per piece, if not [`PIECE_ENDPOINTS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece_endpoints: Option<usize>,
}

/// An endpoint as GetEndpoint answers it and export files hold it: the
/// stored endpoint with the members the service sets on every endpoint
/// that does not say (`EndpointStatus` `ACTIVE`, `OptOut` `NONE`,
/// `EffectiveDate` its last write), its app, cohort and creation date.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointDocument {
    /// The app.
    pub application_id: String,
    /// 0 to 99, from the id: a stable random split of endpoints.
    pub cohort_id: String,
    /// When it was first written (ISO 8601).
    pub creation_date: String,
    /// Everything known of it.
    #[serde(flatten)]
    pub endpoint: Endpoint,
}

impl EndpointDocument {
    /// The document of a stored endpoint of `app`.
    ///
    /// # Errors
    ///
    /// When the stored endpoint does not read.
    pub fn of(app: &str, e: &StoredEndpoint) -> Result<EndpointDocument, String> {
        let mut endpoint: Endpoint = serde_json::from_str(&e.fields)
            .map_err(|err| format!("the stored endpoint {} cannot be read: {err}", e.id))?;
        endpoint
            .endpoint_status
            .get_or_insert_with(|| "ACTIVE".into());
        endpoint.opt_out.get_or_insert_with(|| "NONE".into());
        endpoint
            .effective_date
            .get_or_insert_with(|| iso8601(e.updated_ms));
        let cohort =
            e.id.bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
                % 100;
        Ok(EndpointDocument {
            application_id: app.to_owned(),
            cohort_id: cohort.to_string(),
            creation_date: iso8601(e.created_ms),
            endpoint,
        })
    }
}

impl ExportJob {
    /// The key of piece `n`'s file, under the prefix's key `prefix`.
    pub fn piece_key(prefix: &str, job_id: &str, n: u64) -> String {
        let prefix = prefix.trim_end_matches('/');
        let sep = if prefix.is_empty() { "" } else { "/" };
        format!("{prefix}{sep}{job_id}/part-{n:05}.ndjson.gz")
    }
}

/// What the writers have done so far.
#[derive(Default)]
struct Written {
    pieces: u64,
    endpoints: u64,
    files: Vec<String>,
    failed: Option<String>,
}

/// The test that passes the endpoints of `seg`, its recency measured from
/// now.
fn segment_filter(ctx: &RunContext<'_>, seg: &Segment) -> Result<EndpointFilter, End> {
    let id = &seg.id;
    filter_of(ctx.store, &ctx.job.account, seg, ctx.now()).map_err(|e| match e {
        SegmentError::Store(e) => ctx.store_failed("reading the base segments", e),
        SegmentError::NoSegment(base) => End::invalid(format!(
            "segment {id} is built on segment {base}, which no longer exists"
        )),
        SegmentError::Invalid(why) => End::invalid(format!("segment {id}: {why}")),
    })
}

/// Runs an export job.
pub(super) fn run(ctx: &RunContext<'_>, spec: &ExportJob) -> End {
    let store = ctx.store;
    let account = &ctx.job.account;
    let Some(objects) = ctx.config.objects.as_ref() else {
        return End::internal("this runner has no buckets to export to".into());
    };
    // A dimensional segment holds the endpoints that pass its dimensions
    // when the job starts (recency is measured from then).
    let filter = match app_and_segment(ctx, &spec.app, spec.segment_id.as_deref()) {
        Err(end) => return end,
        Ok(None) => None,
        Ok(Some(seg)) => match segment_filter(ctx, &seg) {
            Ok(f) => Some(f),
            Err(end) => return end,
        },
    };
    let url = match ObjectUrl::parse(&spec.s3_url_prefix) {
        Ok(u) => u,
        Err(e) => return End::invalid(e.message),
    };
    match objects.bucket_exists(&url.bucket) {
        Ok(true) => {}
        Ok(false) => {
            return End::invalid(format!(
                "S3UrlPrefix: bucket {:?} does not exist",
                url.bucket
            ));
        }
        Err(e) => return End::internal(e.message),
    }
    if let Err(e) = store.set_phase(ctx.job_ref(), "PROCESSING") {
        return ctx.store_failed("recording the phase", e);
    }
    let per_piece = spec.piece_endpoints.unwrap_or(PIECE_ENDPOINTS).max(1);
    let writers = ctx.pool.current_num_threads().max(1);
    let written = Mutex::new(Written::default());
    let lock = || written.lock().unwrap_or_else(|p| p.into_inner());
    let mut queued = 0u64;
    let mut read_error = None;
    let mut ended = false;
    // One page waits while each writer writes one and the next is read:
    // memory is bounded by pages, never by the endpoints of the app.
    let (send, receive) = sync_channel::<(u64, Vec<StoredEndpoint>)>(1);
    let receive = Mutex::new(receive);
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                loop {
                    let next = receive.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((n, page)) = next else { return };
                    if lock().failed.is_some() {
                        continue;
                    }
                    let key = ExportJob::piece_key(&url.key, &ctx.job.id, n);
                    let done = write_piece(objects.as_ref(), &url.bucket, &key, &spec.app, &page);
                    let mut w = lock();
                    match done {
                        Ok(()) => {
                            w.pieces += 1;
                            w.endpoints += page.len() as u64;
                            w.files.push(format!("s3://{}/{key}", url.bucket));
                        }
                        Err(why) => {
                            w.failed
                                .get_or_insert(format!("s3://{}/{key}: {why}", url.bucket));
                        }
                    }
                }
            });
        }
        let mut after: Option<String> = None;
        loop {
            if (ctx.stop_asked)() || lock().failed.is_some() {
                break;
            }
            let page = match store.endpoints_after(
                account,
                &spec.app,
                filter.as_ref(),
                after.as_deref(),
                per_piece,
            ) {
                Ok(p) => p,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            let last = page.len() < per_piece;
            if page.is_empty() {
                ended = true;
                break;
            }
            after = page.last().map(|e| e.id.clone());
            if send.send((queued, page)).is_err() {
                break;
            }
            queued += 1;
            let w = lock();
            let progress = JobCounters {
                total_pieces: queued,
                completed_pieces: w.pieces,
                processed: w.endpoints,
                ..JobCounters::default()
            };
            drop(w);
            // Progress is for people watching; the end is saved below.
            let _ = store.save_progress(ctx.job_ref(), &progress);
            if last {
                ended = true;
                break;
            }
        }
        drop(send);
    });
    let mut w = written.into_inner().unwrap_or_else(|p| p.into_inner());
    w.files.sort();
    let failed = u64::from(w.failed.is_some());
    let counters = JobCounters {
        total_pieces: queued,
        completed_pieces: w.pieces + failed,
        failed_pieces: failed,
        processed: w.endpoints,
        ..JobCounters::default()
    };
    let wrote = || match w.files.len() {
        0 => "it wrote no file".to_owned(),
        n => format!("it wrote {n} files, which stay: {}", w.files.join(", ")),
    };
    if let Some(e) = read_error {
        let kept = Some(wrote());
        return ctx.store_failed_keeping("reading the endpoints", e, kept);
    }
    if let Err(e) = store.save_progress(ctx.job_ref(), &counters) {
        return ctx.store_failed("saving the counts", e);
    }
    if let Some(why) = &w.failed {
        return End::internal(format!("writing {why}; {}", wrote()));
    }
    if !ended {
        return ctx.stopped(format!("stopped on request; {}", wrote()));
    }
    End::Done(JobStatus::Succeeded, None, None)
}

/// Writes one piece's file: each endpoint's document on a line, gzip
/// (the fastest level: the files are for moving, and the level decides
/// the job's speed).
fn write_piece(
    objects: &dyn Objects,
    bucket: &str,
    key: &str,
    app: &str,
    page: &[StoredEndpoint],
) -> Result<(), String> {
    let attributes = ObjectAttributes {
        content_type: Some("application/gzip".into()),
        ..ObjectAttributes::default()
    };
    let object = objects
        .write(bucket, key, &attributes)
        .map_err(|e| e.message)?;
    let mut gz = flate2::write::GzEncoder::new(
        BufWriter::with_capacity(1 << 20, object),
        flate2::Compression::fast(),
    );
    let mut line = Vec::with_capacity(1024);
    for e in page {
        line.clear();
        let doc = EndpointDocument::of(app, e)?;
        serde_json::to_writer(&mut line, &doc).map_err(|err| err.to_string())?;
        line.push(b'\n');
        gz.write_all(&line).map_err(|err| err.to_string())?;
    }
    let object = gz
        .finish()
        .and_then(|b| b.into_inner().map_err(std::io::IntoInnerError::into_error))
        .map_err(|err| err.to_string())?;
    object.finish().map_err(|e| e.message)?;
    Ok(())
}
