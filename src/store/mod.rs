/*!
The embedded store: domains, apps, jobs and profiles that outlive a run.

The job layer sees only the [`Store`] trait, so that another backend (say
PostgreSQL, for several machines sharing work) is a new implementation,
not a rewrite. [`SqliteStore`] is the one that ships: one SQLite file in a
data directory, in WAL mode, its schema versioned by migrations that run
when it is opened.

Times are Unix milliseconds (`i64`), passed in by the caller so that tests
can move the clock.
*/

mod sqlite;

use std::path::PathBuf;

pub use sqlite::{DB_FILE, PAGE_SIZE, SCHEMA_VERSION, SqliteStore};

use crate::job::{FailureKind, JobStatus};

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database said no (I/O, disk full, corruption, …).
    #[error("store {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The data directory could not be created or used.
    #[error("data directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file was written by a newer sluice.
    #[error("store {path} has schema version {found}; this sluice knows up to {known}")]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// A domain still has a job queued or running.
    #[error("domain {domain:?} has job {job} in progress; stop it first")]
    DomainBusy {
        /// The domain.
        domain: String,
        /// A job in progress.
        job: String,
    },
    /// An app still has an import job queued or running.
    #[error("app {app} has job {job} in progress; wait for it to finish")]
    AppBusy {
        /// The app.
        app: String,
        /// A job in progress.
        job: String,
    },
    /// No app with that id.
    #[error("no app {0}")]
    NoApp(String),
    /// No segment with that id in the app.
    #[error("app {app} has no segment {segment}")]
    NoSegment {
        /// The app.
        app: String,
        /// The segment.
        segment: String,
    },
    /// A domain of that name exists.
    #[error("domain {0:?} already exists")]
    DomainExists(String),
    /// No domain of that name.
    #[error("no domain {0:?}")]
    NoDomain(String),
    /// No job with that id.
    #[error("no job {0}")]
    NoJob(String),
    /// A job id used twice.
    #[error("job {0} already exists")]
    JobExists(String),
    /// A transition the state machine does not allow, or one whose starting
    /// state no longer holds.
    #[error("job {id} is {actual}; it cannot go from {from} to {to}")]
    Transition {
        /// The job.
        id: String,
        /// The state the caller expected.
        from: JobStatus,
        /// The state asked for.
        to: JobStatus,
        /// The state the job is in.
        actual: JobStatus,
    },
    /// A batch whose keys were not strictly ascending.
    #[error("profile batch: key {key:?} is not after the key before it")]
    Unordered {
        /// The first key out of order.
        key: String,
    },
    /// A stored value that this build cannot read.
    #[error("store {path}: job {id}: {problem}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The job.
        id: String,
        /// What is wrong.
        problem: String,
    },
}

/// A Customer Profiles domain.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Domain {
    /// `DomainName`.
    pub name: String,
    /// `DefaultExpirationDays`: how long profiles live when a job does not
    /// say.
    pub default_expiration_days: u32,
    /// When it was created.
    pub created_ms: i64,
    /// When it last changed (its creation, unless changed since).
    pub updated_ms: i64,
    /// What else its creator set, kept and given back as it came: a JSON
    /// object (`{}` when nothing).
    pub settings: String,
}

impl Domain {
    /// A domain created at `now_ms` with nothing else set.
    pub fn new(name: &str, default_expiration_days: u32, now_ms: i64) -> Domain {
        Domain {
            name: name.to_owned(),
            default_expiration_days,
            created_ms: now_ms,
            updated_ms: now_ms,
            settings: "{}".to_owned(),
        }
    }
}

/// A new job, as the API layer records it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NewJob {
    /// Its id (a UUID).
    pub id: String,
    /// What kind of job, e.g. `profiles`.
    pub kind: String,
    /// The domain it writes into, if any.
    pub domain: Option<String>,
    /// The app it writes into, if any.
    pub app: Option<String>,
    /// A name for people.
    pub display_name: Option<String>,
    /// The request, as JSON, enough to run (or rerun) the job.
    pub request: String,
    /// When it was created.
    pub created_ms: i64,
}

/// The counters a job reports.
///
/// For a finished job that was not stopped,
/// `processed = created + updated + duplicates + failed`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct JobCounters {
    /// Pieces in all inputs.
    pub total_pieces: u64,
    /// Pieces done, failed ones included.
    pub completed_pieces: u64,
    /// Pieces that could not be read or parsed completely.
    pub failed_pieces: u64,
    /// Rows read.
    pub processed: u64,
    /// Records whose key was not in the store before.
    pub created: u64,
    /// Records whose key was in the store.
    pub updated: u64,
    /// Rows dropped because a later row had the same key.
    pub duplicates: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Fields kept as they were because they did not normalize.
    pub field_warnings: u64,
    /// Field warnings per mapped field (only fields that had some).
    pub field_warnings_by_field: Vec<(String, u64)>,
    /// The first failures, at most 100, each naming its place.
    pub failures: Vec<String>,
}

/// A job as stored.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct JobRecord {
    /// Its id.
    pub id: String,
    /// What kind of job.
    pub kind: String,
    /// The domain it writes into, if any.
    pub domain: Option<String>,
    /// The app it writes into, if any.
    pub app: Option<String>,
    /// A name for people.
    pub display_name: Option<String>,
    /// The request, as JSON.
    pub request: String,
    /// Where it is.
    pub status: JobStatus,
    /// Where a running job is within its run, as its kind names it
    /// (an import job's `INITIALIZING`, `PROCESSING`, …).
    pub phase: Option<String>,
    /// Why it failed or stopped, or how it was recovered.
    pub status_reason: Option<String>,
    /// Whose fault a failure was.
    pub failure: Option<FailureKind>,
    /// Whether someone asked it to stop.
    pub stop_requested: bool,
    /// How many times a runner has started it.
    pub attempts: u32,
    /// Its counters.
    pub counters: JobCounters,
    /// The last profile key committed, so a resumed job skips what it
    /// wrote before.
    pub written_through: Option<Vec<u8>>,
    /// What the inputs looked like when it first ran (sizes and times).
    pub input_fingerprint: Option<String>,
    /// When it was created.
    pub created_ms: i64,
    /// When it first started running.
    pub started_ms: Option<i64>,
    /// When it reached a terminal state.
    pub completed_ms: Option<i64>,
}

/// Which jobs to list.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct JobFilter {
    /// Only jobs of this domain.
    pub domain: Option<String>,
    /// Only jobs of this app.
    pub app: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs in these states (all when empty).
    pub statuses: Vec<JobStatus>,
    /// At most this many (newest first); all when `None`.
    pub limit: Option<usize>,
    /// Skip this many of the newest first.
    pub offset: usize,
}

/// A status change, checked against the state machine and against the
/// state the job is in.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Transition<'a> {
    /// The state the caller believes the job is in.
    pub from: JobStatus,
    /// The state to go to.
    pub to: JobStatus,
    /// When.
    pub at_ms: i64,
    /// Why (kept in `status_reason`; `None` keeps the current reason).
    pub reason: Option<&'a str>,
    /// Whose fault, when going to `FAILED`.
    pub failure: Option<FailureKind>,
}

/// One profile to write: its key and its fields as a JSON object.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ProfileRow<'a> {
    /// The normalized unique key.
    pub key: &'a str,
    /// The mapped fields, a JSON object.
    pub fields: &'a str,
}

/// Rows to write in one transaction, in ascending key order.
#[derive(Clone, Copy, Debug)]
pub struct ProfileBatch<'a> {
    /// The job writing; its `created`, `updated` and `written_through` move
    /// in the same transaction. It must be running.
    pub job: &'a str,
    /// The domain written into.
    pub domain: &'a str,
    /// When (`updated`, and `created` for new keys).
    pub now_ms: i64,
    /// When these profiles expire; an existing later expiry is kept.
    pub expires_ms: i64,
    /// The rows, keys strictly ascending by bytes.
    pub rows: &'a [ProfileRow<'a>],
}

/// What a batch did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct WriteCounts {
    /// Keys that were not in the domain (or only expired there).
    pub created: u64,
    /// Keys that were.
    pub updated: u64,
}

/// A stored profile.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Profile {
    /// The normalized unique key.
    pub key: String,
    /// The mapped fields, a JSON object.
    pub fields: String,
    /// When the key was first written.
    pub created_ms: i64,
    /// When it was last written.
    pub updated_ms: i64,
    /// When it expires.
    pub expires_ms: i64,
}

/// A Pinpoint-style app: a home for endpoints and segments.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct App {
    /// Its id (32 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its tags, a JSON object.
    pub tags: String,
    /// When it was created.
    pub created_ms: i64,
}

/// A stored endpoint.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct StoredEndpoint {
    /// Its id within the app.
    pub id: String,
    /// Its channel, if known.
    pub channel_type: Option<String>,
    /// Its normalized address, if known.
    pub address: Option<String>,
    /// Its user's id, if any.
    pub user_id: Option<String>,
    /// Everything about it, a JSON object.
    pub fields: String,
    /// When it was first written.
    pub created_ms: i64,
    /// When it was last written.
    pub updated_ms: i64,
}

/// How an incoming endpoint finds the stored one it updates.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum EndpointKey<'a> {
    /// By id.
    Id(&'a str),
    /// By channel and normalized address.
    Address(&'a str, &'a str),
}

/// Endpoints to write in one transaction.
#[derive(Clone, Copy, Debug)]
pub struct EndpointBatch<'a> {
    /// The job writing; its `created` and `updated` move in the same
    /// transaction. It must be running.
    pub job: &'a str,
    /// The app.
    pub app: &'a str,
    /// When.
    pub now_ms: i64,
    /// One key per endpoint to write.
    pub keys: &'a [EndpointKey<'a>],
    /// A segment every written endpoint joins.
    pub segment: Option<&'a str>,
}

/// What became of one endpoint of a batch.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum EndpointWrite {
    /// A new endpoint, with its id.
    Created(String),
    /// An existing endpoint, updated.
    Updated(String),
    /// Not written, and why.
    Refused(String),
}

/// Builds the endpoint to store from the stored one it updates, if any:
/// called once per key of an [`EndpointBatch`], with the key's index.
pub type EndpointMerge<'a> =
    dyn FnMut(usize, Option<StoredEndpoint>) -> Result<StoredEndpoint, String> + 'a;

/// A segment of an app's endpoints.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Segment {
    /// The app.
    pub app: String,
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// How it was defined, a JSON object.
    pub definition: String,
    /// When it was created.
    pub created_ms: i64,
    /// When its definition or members last changed.
    pub updated_ms: i64,
    /// Starts at 1; each import into it adds one.
    pub version: u32,
}

/// What sluice records of a bucket beyond its objects. A bucket with no
/// record is in the server's own region and open to every accepted key.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BucketSettings {
    /// The bucket's name.
    pub bucket: String,
    /// Its region, when not the server's.
    pub region: Option<String>,
    /// The access key id that owns it; any accepted key may use it when
    /// `None`.
    pub owner: Option<String>,
}

/// Held while a runner owns a job; dropping it lets another runner (in
/// this process or another) take the job over.
pub trait Claim: Send {}

/// The store as the job layer sees it.
pub trait Store: Send + Sync {
    /// Records a new domain.
    ///
    /// # Errors
    ///
    /// [`StoreError::DomainExists`], or a database error.
    fn create_domain(&self, domain: &Domain) -> Result<(), StoreError>;

    /// A domain by name.
    ///
    /// # Errors
    ///
    /// A database error.
    fn domain(&self, name: &str) -> Result<Option<Domain>, StoreError>;

    /// Records a new job in state `CREATED`.
    ///
    /// # Errors
    ///
    /// [`StoreError::JobExists`], [`StoreError::NoDomain`] when it names a
    /// domain that does not exist, or a database error.
    fn insert_job(&self, job: &NewJob) -> Result<(), StoreError>;

    /// A job by id.
    ///
    /// # Errors
    ///
    /// A database error, or a stored value this build cannot read.
    fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError>;

    /// Replaces the request of a job that is still `CREATED` (an upload
    /// job's key changes each time its upload path is asked for).
    ///
    /// # Errors
    ///
    /// [`StoreError::Transition`] (from `CREATED` to `CREATED`) when the
    /// job has moved on, [`StoreError::NoJob`], or a database error.
    fn update_request(&self, id: &str, request: &str) -> Result<JobRecord, StoreError>;

    /// Jobs, newest first.
    ///
    /// # Errors
    ///
    /// A database error, or a stored value this build cannot read.
    fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// Moves a job from one state to another, atomically: it fails if the
    /// state machine forbids the step or the job is not in `from`. Going to
    /// `RUNNING` counts an attempt and sets `started_ms` the first time;
    /// going to a terminal state sets `completed_ms`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transition`], [`StoreError::NoJob`], or a database
    /// error.
    fn transition(&self, id: &str, t: &Transition<'_>) -> Result<JobRecord, StoreError>;

    /// Saves the reading counters of a running job (everything but
    /// `created` and `updated`, which move with the writes).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a database error.
    fn save_progress(&self, id: &str, counters: &JobCounters) -> Result<(), StoreError>;

    /// Remembers what a job's inputs looked like when it first ran.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a database error.
    fn set_input_fingerprint(&self, id: &str, fingerprint: &str) -> Result<(), StoreError>;

    /// Asks a job to stop; whichever runner has it sees this between
    /// pieces or batches. Returns the job.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a database error.
    fn request_stop(&self, id: &str) -> Result<JobRecord, StoreError>;

    /// Takes a job for this runner, or `None` when another runner (maybe
    /// in another process) holds it.
    ///
    /// # Errors
    ///
    /// When the claim cannot be made for another reason (I/O).
    fn claim(&self, id: &str) -> Result<Option<Box<dyn Claim>>, StoreError>;

    /// Upserts a batch of profiles in one transaction, with the job's
    /// `created`, `updated` and `written_through`. Expired profiles of the
    /// domain are purged first, so a key that had only expired counts as
    /// created.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], [`StoreError::Transition`] when the job is
    /// not running, [`StoreError::Unordered`] when the keys are not
    /// strictly ascending, or a database error; then nothing of the batch
    /// is written.
    fn write_profiles(&self, batch: &ProfileBatch<'_>) -> Result<WriteCounts, StoreError>;

    /// Every domain, by name.
    ///
    /// # Errors
    ///
    /// A database error.
    fn domains(&self) -> Result<Vec<Domain>, StoreError>;

    /// Deletes a domain with its profiles and its finished jobs; returns
    /// how many profiles went.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], [`StoreError::DomainBusy`] while one of its
    /// jobs is queued or running, or a database error.
    fn delete_domain(&self, name: &str) -> Result<u64, StoreError>;

    /// A live (unexpired) profile.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a database error.
    fn profile(&self, domain: &str, key: &str, now_ms: i64) -> Result<Option<Profile>, StoreError>;

    /// How many live profiles a domain has.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a database error.
    fn count_profiles(&self, domain: &str, now_ms: i64) -> Result<u64, StoreError>;

    /// Deletes every expired profile; returns how many.
    ///
    /// # Errors
    ///
    /// A database error.
    fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Records where a running job is within its run.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a database error.
    fn set_phase(&self, id: &str, phase: &str) -> Result<(), StoreError>;

    /// Records a new app.
    ///
    /// # Errors
    ///
    /// A database error (a duplicate id among them).
    fn create_app(&self, app: &App) -> Result<(), StoreError>;

    /// An app by id.
    ///
    /// # Errors
    ///
    /// A database error.
    fn app(&self, id: &str) -> Result<Option<App>, StoreError>;

    /// Every app, oldest first.
    ///
    /// # Errors
    ///
    /// A database error.
    fn apps(&self) -> Result<Vec<App>, StoreError>;

    /// Deletes an app with its endpoints, segments and finished jobs;
    /// returns it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], [`StoreError::AppBusy`] while one of its
    /// jobs is queued or running, or a database error.
    fn delete_app(&self, id: &str) -> Result<App, StoreError>;

    /// Upserts endpoints in one transaction: for each key, finds the
    /// stored endpoint (by id, or by channel and address), asks `merge`
    /// for what to store, writes it, adds it to the batch's segment, and
    /// moves the job's `created` and `updated`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], [`StoreError::NoSegment`],
    /// [`StoreError::Transition`] when the job is not running, or a
    /// database error; then nothing of the batch is written.
    fn write_endpoints(
        &self,
        batch: &EndpointBatch<'_>,
        merge: &mut EndpointMerge<'_>,
    ) -> Result<Vec<EndpointWrite>, StoreError>;

    /// An endpoint by id.
    ///
    /// # Errors
    ///
    /// A database error.
    fn endpoint(&self, app: &str, id: &str) -> Result<Option<StoredEndpoint>, StoreError>;

    /// The endpoints of a user, by id.
    ///
    /// # Errors
    ///
    /// A database error.
    fn user_endpoints(&self, app: &str, user_id: &str) -> Result<Vec<StoredEndpoint>, StoreError>;

    /// Records a segment; one that exists with the same id is left as it
    /// is (so a resumed job that defines a segment defines it once).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], or a database error.
    fn create_segment(&self, segment: &Segment) -> Result<(), StoreError>;

    /// A segment by id.
    ///
    /// # Errors
    ///
    /// A database error.
    fn segment(&self, app: &str, id: &str) -> Result<Option<Segment>, StoreError>;

    /// The segments of an app, oldest first.
    ///
    /// # Errors
    ///
    /// A database error.
    fn segments(&self, app: &str) -> Result<Vec<Segment>, StoreError>;

    /// Replaces a segment's definition and adds one to its version.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSegment`], or a database error.
    fn update_segment(
        &self,
        app: &str,
        id: &str,
        definition: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError>;

    /// How many endpoints of a segment are on each channel.
    ///
    /// # Errors
    ///
    /// A database error.
    fn segment_channel_counts(&self, app: &str, id: &str)
    -> Result<Vec<(String, u64)>, StoreError>;

    /// Records a bucket's region and owner (replacing what was recorded).
    ///
    /// # Errors
    ///
    /// A database error.
    fn set_bucket_settings(&self, settings: &BucketSettings) -> Result<(), StoreError>;

    /// What is recorded of a bucket, if anything.
    ///
    /// # Errors
    ///
    /// A database error.
    fn bucket_settings(&self, bucket: &str) -> Result<Option<BucketSettings>, StoreError>;
}
