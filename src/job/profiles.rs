//! Profile jobs: CSV inputs through the engine into a domain's profiles
//! (Customer Profiles upload jobs, and `sluice ingest --data-dir`).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::context::{End, RunContext, counters_of, ended};
use super::split;
use super::write::{self, Halt, Target};
use super::{Objects, Source, UPLOADS_BUCKET};
use crate::crypto::{self, DataKey};
use crate::ingest::{Ingest, IngestBuilder, Input, Summary};
use crate::mapping::MappingFile;

const DAY_MS: i64 = 86_400_000;

/// A job that ingests files into a domain's profiles: its spec, all a
/// runner needs to run it again.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProfileJob {
    /// The domain written into.
    pub domain: String,
    /// A name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The mapping: a CreateUploadJob-shaped JSON object (its `DataExpiry`
    /// sets the profiles' expiry).
    pub mapping: serde_json::Value,
    /// The CSV inputs, read in this order.
    pub inputs: Vec<Source>,
    /// Piece size in bytes, if not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub piece_size: Option<u64>,
    /// Bytes in a range, when the job is split across processes
    /// ([`split::RANGE_SIZE`] if not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_size: Option<u64>,
    /// Default phone region, if not `US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Field delimiter, if not a comma.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<u8>,
    /// When set, every input is sealed ([`crate::crypto`]) under this data
    /// key, wrapped for this job; the runner's
    /// [`RunnerConfig::master_key`](super::RunnerConfig::master_key) opens
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_key: Option<crate::crypto::SealedKey>,
}

impl ProfileJob {
    /// The mapping, parsed and checked.
    ///
    /// # Errors
    ///
    /// The mapping's problem, naming its key.
    pub fn mapping_file(&self) -> Result<MappingFile, String> {
        let bytes = serde_json::to_vec(&self.mapping).map_err(|e| e.to_string())?;
        MappingFile::from_json(&bytes).map_err(|e| e.to_string())
    }

    /// The engine that runs it, on `pool`.
    ///
    /// # Errors
    ///
    /// A setting the engine refuses.
    pub(super) fn engine(
        &self,
        mapping: MappingFile,
        pool: &Arc<rayon::ThreadPool>,
    ) -> Result<Ingest, String> {
        let mut builder = IngestBuilder::new(mapping.mapping);
        builder.pool(Arc::clone(pool));
        if let Some(s) = self.piece_size {
            builder.piece_size(s);
        }
        if let Some(r) = &self.region {
            builder.region(r);
        }
        if let Some(d) = self.delimiter {
            builder.delimiter(d);
        }
        builder.build().map_err(|e| e.to_string())
    }

    /// What keeps the job from running, checked when it is created.
    ///
    /// # Errors
    ///
    /// A bad mapping, or no input.
    pub(super) fn check(&self) -> Result<(), String> {
        self.mapping_file().map_err(|e| format!("mapping: {e}"))?;
        if self.inputs.is_empty() {
            return Err("no input files".into());
        }
        Ok(())
    }
}

/// Runs a profile job: the inputs through the engine, then the kept
/// records into the domain.
pub(super) fn run(ctx: &RunContext<'_>, spec: &ProfileJob) -> End {
    let (invalid, fail) = (End::invalid, End::internal);
    let store = ctx.store;
    let account = &ctx.job.account;
    let mapping = match spec.mapping_file() {
        Ok(m) => m,
        Err(e) => return invalid(format!("mapping: {e}")),
    };
    let domain = match store.domain(account, &spec.domain) {
        Ok(Some(d)) => d,
        Ok(None) => return invalid(format!("domain {:?} does not exist", spec.domain)),
        Err(e) => return ctx.store_failed("reading the domain", e),
    };
    let key = match (&spec.sealed_key, &ctx.config.master_key) {
        (None, _) => None,
        (Some(sealed), Some(master)) => match master.open_key(sealed, &ctx.job.id) {
            Ok(k) => Some(k),
            Err(e) => return fail(e.to_string()),
        },
        (Some(_), None) => {
            return fail("the inputs are sealed and this runner has no master key".into());
        }
    };
    // The job's DataExpiry, else the domain's default (which a domain
    // always has; 14 days unless its creator said otherwise).
    let days = mapping
        .data_expiry
        .unwrap_or(domain.default_expiration_days)
        .max(1);
    let started = ctx.job.started_ms.unwrap_or_else(|| ctx.now());
    let expires_ms = started.saturating_add(i64::from(days) * DAY_MS);

    let uploads = ctx.config.uploads.as_ref();
    let objects = ctx.config.objects.as_ref();
    let fingerprint = match fingerprint(&spec.inputs, uploads, objects) {
        Ok(f) => f,
        Err(e) => return invalid(e),
    };
    match &ctx.job.input_fingerprint {
        Some(old) if *old != fingerprint && ctx.job.written_through.is_some() => {
            return invalid(format!(
                "an input changed since the job began ({} records were written before and stay); \
                 start a new job",
                ctx.job.counters.created + ctx.job.counters.updated
            ));
        }
        Some(old) if *old == fingerprint => {}
        _ => {
            if let Err(e) = store.set_input_fingerprint(ctx.job_ref(), &fingerprint) {
                return ctx.store_failed("recording the inputs", e);
            }
        }
    }

    let ingest = match spec.engine(mapping, ctx.pool) {
        Ok(i) => i,
        Err(e) => return invalid(e),
    };
    if let Some(ranges) = ctx.store.range_store()
        && split::splittable(&spec.inputs, spec.sealed_key.is_some())
    {
        let job = split::Job {
            inputs: &spec.inputs,
            range_size: spec.range_size.unwrap_or(split::RANGE_SIZE),
            ingest: &ingest,
            domain: &spec.domain,
            expires_ms,
            targets: mapping_targets(&ingest),
        };
        return split::run(ctx, ranges, &job);
    }
    let inputs = match open_inputs(&spec.inputs, key.as_ref(), uploads, objects) {
        Ok(i) => i,
        Err(e) => return invalid(e),
    };
    let outcome = match ctx.run_engine(&ingest, inputs) {
        Ok(o) => o,
        Err(end) => return end,
    };
    let crate::ingest::Outcome { summary, records } = outcome;
    let summary = &summary;
    if let Err(e) = store.save_progress(ctx.job_ref(), &counters_of(summary)) {
        return ctx.store_failed("saving the counts", e);
    }
    if summary.stopped {
        return ctx.stopped(format!(
            "stopped on request after {} of {} pieces, before any record was written",
            summary.completed_pieces, summary.total_pieces
        ));
    }

    // Earlier attempts' records count too: they stay as well.
    let written = ctx.job.counters.created + ctx.job.counters.updated;
    let target = Target {
        store,
        attempt: ctx.attempt(),
        domain: &spec.domain,
        expires_ms,
        batch_rows: ctx.config.batch_rows,
        written_through: ctx.job.written_through.as_deref(),
    };
    let now = || ctx.now();
    let wrote = write::write(&records, ctx.pool, &target, &now, ctx.stop_asked);
    // The records' memory back before the fold takes its own.
    drop(records);
    // What was written is folded into the search index however the
    // writing ended: searches find it either way, faster once folded.
    let settled = store.settle_search(account, &spec.domain);
    match wrote {
        Ok(_) => match settled {
            Ok(()) => finished(summary),
            Err(e) => ctx.store_failed_keeping(
                "indexing the profiles for search",
                e,
                Some("every record is written".into()),
            ),
        },
        Err((Halt::Stopped, n)) => ctx.stopped(format!(
            "stopped on request while writing; the {} records written before stay",
            written + n
        )),
        Err((Halt::Store(e), n)) => ctx.store_failed_keeping(
            "writing profiles",
            e,
            Some(format!(
                "the {} records of committed batches stay",
                written + n
            )),
        ),
    }
}

/// The end state of a run that read and wrote everything.
fn finished(s: &Summary) -> End {
    let first = s.failures.first().map(ToString::to_string);
    ended(s.processed, s.failed, s.failed_pieces, first)
}

/// The inputs as the engine reads them: plain files, or sealed ones
/// decrypted as they are read; uploads streamed from the runner's own
/// objects.
fn open_inputs(
    sources: &[Source],
    key: Option<&DataKey>,
    uploads: Option<&Objects>,
    objects: Option<&Objects>,
) -> Result<Vec<Input>, String> {
    sources
        .iter()
        .map(|source| match source {
            Source::Object { .. } => {
                let size = split::object_size(source, objects)?;
                let stream = split::read_range(source, objects, 0..size)?;
                Ok(Input::reader(&source.name(), stream, Some(size)))
            }
            Source::File(p) => match key {
                None => Ok(Input::path(p)),
                Some(k) => {
                    let (reader, len) =
                        crypto::open_file(p, k).map_err(|e| format!("{}: {e}", p.display()))?;
                    Ok(Input::reader(&p.display().to_string(), reader, Some(len)))
                }
            },
            Source::Upload { key: object } => {
                let uploads =
                    uploads.ok_or_else(|| "this runner has no store of uploads".to_owned())?;
                let k = key.ok_or_else(|| format!("{}: it has no key", source.name()))?;
                let info = uploads
                    .head(UPLOADS_BUCKET, object)
                    .map_err(|e| format!("{}: {e}", source.name()))?;
                let stream = uploads
                    .read(UPLOADS_BUCKET, object, 0..info.size)
                    .map_err(|e| format!("{}: {e}", source.name()))?;
                let (reader, len) = crypto::open_reader(stream, info.size, k)
                    .map_err(|e| format!("{}: {e}", source.name()))?;
                Ok(Input::reader(&source.name(), reader, Some(len)))
            }
        })
        .collect()
}

/// What each input looked like (size and time, or tag), so a resumed job
/// can tell whether it would read the same bytes.
fn fingerprint(
    sources: &[Source],
    uploads: Option<&Objects>,
    objects: Option<&Objects>,
) -> Result<String, String> {
    let mut parts = Vec::new();
    for source in sources {
        let part = match source {
            Source::Object { .. } => {
                let (bucket, key) = source.object().unwrap_or_default();
                let info = objects
                    .ok_or_else(|| "this runner has no buckets".to_owned())?
                    .head(bucket, key)
                    .map_err(|e| format!("{}: {e}", source.name()))?;
                serde_json::json!([source.name(), info.size, info.etag])
            }
            Source::File(p) => {
                let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                serde_json::json!([p.display().to_string(), meta.len(), modified.to_string()])
            }
            Source::Upload { key } => {
                let info = uploads
                    .ok_or_else(|| "this runner has no store of uploads".to_owned())?
                    .head(UPLOADS_BUCKET, key)
                    .map_err(|e| format!("{}: {e}", source.name()))?;
                serde_json::json!([source.name(), info.size, info.etag])
            }
        };
        parts.push(part);
    }
    Ok(serde_json::Value::Array(parts).to_string())
}

/// Where each of the engine's values goes in a profile.
fn mapping_targets(ingest: &Ingest) -> Vec<String> {
    ingest
        .mapper()
        .mapping()
        .fields()
        .iter()
        .map(|f| f.target.to_string())
        .collect()
}
