/*!
Jobs: typed work with a lifecycle, run in the background through the
engine, written into a [`Store`](crate::store::Store).

# The flow of one job

1. The API layer (or the CLI) records a typed job ([`JobSpec`]), `CREATED`,
   with [`Runner::create`], and queues it with [`Runner::start`].
2. A job thread of a [`Runner`] takes it: it holds the job's **lease** in
   the store (renewed by heartbeats, so that runners on other machines can
   tell a live holder from a dead one), moves it to `RUNNING` (an attempt),
   and matches on the spec: profiles ([`ProfileJob`]) or endpoints
   ([`ImportJob`]) go through the engine, reading their inputs as streams
   through the object port.
3. As each piece of the inputs completes, its counts are recorded in the
   store ([`PieceStore`](crate::store::PieceStore)); the job's status shows
   them at once, and a piece counts once however often it is run.
4. The kept rows are written in large transactions, each one moving the
   job's created and updated counts with it, fenced by the attempt.
5. The job ends `SUCCEEDED`, `PARTIALLY_SUCCEEDED`, `FAILED` or `STOPPED`;
   [`JobStatus`] checks every step, and the store applies each as a
   compare-and-set.

Import/Export jobs ([`TransferJob`]) are typed jobs too, run when their
device arrives ([`run_device`]) rather than by a runner.

# Crash safety: jobs resume

If the process running a job dies (kill -9, power cut aside), the store is
intact, and the job's lease lapses (at once, when the holder was a process
of this machine that is gone; at its deadline otherwise).
[`Runner::recover`] (run by `sluice jobs resume`, and by a server at start
and then periodically) queues such jobs again and resumes them: the inputs
are read again (parsing is deterministic, so the same records survive),
pieces already counted count nothing more, keys up to the job's
`written_through` are skipped, and writing carries on after them. The final
counts are exactly those of an uninterrupted run. If an input changed in
between (size or modification time), the job fails instead, saying so;
what it wrote stays. A runner whose job was taken over (its lease lapsed
while it was alive) can no longer write: its attempt is fenced.
*/

mod context;
mod device;
mod export;
mod import;
mod lease;
mod profiles;
mod runner;
pub mod search;
pub mod segment;
mod spec;
mod split;
mod terms;
mod transfer;
mod write;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rayon::ThreadPool;
use serde::{Deserialize, Serialize};

pub use device::run_device;
pub use export::{EndpointDocument, ExportJob, PIECE_ENDPOINTS};
pub use import::{
    EndpointRequestError, ImportJob, derived_endpoint_id, dimensional_import, nothing_to_import,
    objects_to_import, write_requested_endpoints,
};
pub use lease::{Holder, LEASE_TTL, job_lease};
pub use profiles::ProfileJob;
pub use runner::Runner;
pub use spec::JobSpec;
pub use split::{RANGE_ATTEMPTS, RANGE_SIZE};
pub use transfer::{
    Direction, ExportOperation, ExportSpec, FileSystem, ImportSpec, SIGNATURE_FILE,
    TRANSFER_EXPIRY_MS, TransferError, TransferJob, check_signature, copied, signature_file,
};

use crate::crypto::MasterKey;
use crate::store::StoreError;
pub use crate::store::{FailureKind, JobStatus, UnknownStatus};

/// Rows per write transaction unless configured.
pub const DEFAULT_BATCH_ROWS: usize = 100_000;

/// The bucket of a runner's own objects ([`RunnerConfig::uploads`]) that
/// holds uploaded files.
pub const UPLOADS_BUCKET: &str = "uploads";

/// Times a job is started before a store that keeps failing fails it.
pub const MAX_ATTEMPTS: u32 = 5;

/// Unix milliseconds now; swapped in tests to move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How the job layer holds buckets: any backend of the object port.
pub type Objects = Arc<dyn crate::objects::Objects>;

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
    /// An object of the runner's buckets ([`RunnerConfig::objects`]),
    /// stored as `{"Object": "s3://BUCKET/KEY"}`; read by ranges, so that
    /// workers on any machine read their own part of it.
    Object {
        /// Its URL.
        #[serde(rename = "Object")]
        url: String,
    },
}

impl Source {
    /// How messages name it.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Upload { key } => format!("upload {key}"),
            Source::Object { url } => url.clone(),
        }
    }

    /// An object's bucket and key.
    pub fn object(&self) -> Option<(&str, &str)> {
        match self {
            Source::Object { url } => url.strip_prefix("s3://")?.split_once('/'),
            _ => None,
        }
    }
}

/// How a [`Runner`] works.
#[derive(Clone)]
pub struct RunnerConfig {
    /// Jobs run at once; more wait in the queue. With 0 this runner runs
    /// none: the jobs it queues wait in the store for runners of other
    /// processes (`sluice worker`) sharing it.
    pub max_jobs: usize,
    /// The worker pool all jobs share; built with [`RunnerConfig::threads`]
    /// threads when `None`.
    pub pool: Option<Arc<ThreadPool>>,
    /// Worker threads of the pool built when `pool` is `None` (one per
    /// core when `None`).
    pub threads: Option<usize>,
    /// Profiles, or endpoints, per write transaction (endpoints also stop
    /// at 8 MiB of them).
    pub batch_rows: usize,
    /// How often a running job's stop flag is read.
    pub progress_interval: Duration,
    /// How long a job's lease lasts without a heartbeat (heartbeats come
    /// three times as often).
    pub lease_ttl: Duration,
    /// Looks for jobs whose runner is gone this often ([`Runner::recover`]);
    /// never when `None` (call it yourself).
    pub recover_every: Option<Duration>,
    /// The time.
    pub clock: Clock,
    /// Opens the data keys of jobs whose inputs are sealed (uploads).
    pub master_key: Option<Arc<MasterKey>>,
    /// Where import jobs read their objects (buckets).
    pub objects: Option<Objects>,
    /// The runner's own objects: uploaded files ([`UPLOADS_BUCKET`]).
    pub uploads: Option<Objects>,
    /// Import jobs of one app run at once; more wait in the queue (the
    /// service documents 2). At least 1.
    pub max_jobs_per_app: usize,
}

impl Default for RunnerConfig {
    fn default() -> RunnerConfig {
        RunnerConfig {
            max_jobs: 2,
            pool: None,
            threads: None,
            batch_rows: DEFAULT_BATCH_ROWS,
            progress_interval: Duration::from_millis(100),
            lease_ttl: LEASE_TTL,
            recover_every: None,
            clock: system_clock(),
            master_key: None,
            objects: None,
            uploads: None,
            max_jobs_per_app: 2,
        }
    }
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("max_jobs", &self.max_jobs)
            .field("max_jobs_per_app", &self.max_jobs_per_app)
            .field("threads", &self.threads)
            .field("batch_rows", &self.batch_rows)
            .field("progress_interval", &self.progress_interval)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
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
