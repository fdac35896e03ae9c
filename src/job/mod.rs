/*!
Jobs: an ingest with a lifecycle, run in the background, written into a
[`Store`](crate::store::Store).

A job is recorded `CREATED`, queued, run by a [`Runner`] (parse in
parallel, then write the surviving records in key order in large
transactions), and ends `SUCCEEDED`, `PARTIALLY_SUCCEEDED`, `FAILED` or
`STOPPED`; [`JobStatus`] checks every step.

# Crash safety: jobs resume

If the process running a job dies (kill -9, power cut aside), the store is
intact: SQLite's WAL keeps every committed transaction and none half-done.
Each transaction of profiles also moves the job's `created`, `updated`
and `written_through` (the last key it wrote), so they always agree with
the profiles table. [`Runner::recover`] (run by `sluice jobs resume` and by
a server at start) finds jobs left `RUNNING` with no live runner, queues
them again and resumes them: the inputs are read again (parsing is
deterministic, so the same records survive), keys up to `written_through`
are skipped, and writing carries on after them. The final counts are
exactly those of an uninterrupted run. If an input changed in between
(size or modification time), the job fails instead, saying so; what it
wrote stays.
*/

mod import;
mod runner;
mod status;
mod transfer;
mod write;

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use import::{IMPORT_KIND, ImportJob, Objects, derived_endpoint_id};
pub use runner::{Runner, RunnerConfig};
pub use status::{FailureKind, JobStatus, UnknownStatus};
pub use transfer::{
    Direction, ExportOperation, ExportSpec, FileSystem, ImportSpec, SIGNATURE_FILE,
    TRANSFER_EXPIRY_MS, TRANSFER_KIND, TransferError, TransferJob, check_signature, copied,
    run_device, signature_file,
};

use crate::mapping::MappingFile;
use crate::store::StoreError;

/// The kind of a job that ingests files into a domain's profiles.
pub const PROFILES_KIND: &str = "profiles";

/// Rows per write transaction unless configured.
pub const DEFAULT_BATCH_ROWS: usize = 250_000;

/// Unix milliseconds now; swapped in tests to move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    })
}

/// A fresh job id: 32 lowercase hex digits (the Customer Profiles `uuid`
/// shape).
pub fn new_job_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The bucket of a runner's own objects ([`RunnerConfig::uploads`]) that
/// holds uploaded files.
pub const UPLOADS_BUCKET: &str = "uploads";

/// Where one input of a profile job is.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    /// A file on the runner's machine (stored as its path).
    File(PathBuf),
    /// An uploaded file: an object of [`UPLOADS_BUCKET`] in the runner's
    /// own objects (stored as `{"Upload": KEY}`).
    Upload {
        /// Its key.
        #[serde(rename = "Upload")]
        key: String,
    },
}

impl Source {
    /// How messages name it.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Upload { key } => format!("upload {key}"),
        }
    }
}

/// A job that ingests files into a domain's profiles: what is stored as
/// the job's request, and all a runner needs to run it again.
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
    /// Default phone region, if not `US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Field delimiter, if not a comma.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<u8>,
    /// When set, every input is a sealed file ([`crate::crypto`]) under
    /// this data key, wrapped for this job; the runner's
    /// [`RunnerConfig::master_key`] opens it.
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
}

/// What can go wrong asking for a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The store said no.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request cannot run.
    #[error("invalid job request: {0}")]
    Invalid(String),
    /// The runner is shutting down.
    #[error("the job runner is shut down")]
    ShutDown,
}
