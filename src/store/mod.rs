/*!
The store ports: one small trait per aggregate, one error, and the types
they share.

| port | aggregate |
|---|---|
| [`JobStore`] | jobs: their specs, state machine ([`JobStatus`]) and counters |
| [`PieceStore`] | the pieces of a job's inputs, each completed once |
| [`LeaseStore`] | work claims: a holder, a deadline, an attempt |
| [`ProfileStore`] | Customer Profiles domains and their profiles |
| [`AppStore`] | Pinpoint apps, their endpoints and segments |
| [`BucketStore`] | what sluice records of buckets beyond their objects |

[`Store`] is all of them at once, which is what a backend implements and
what the job layer is handed as a value (`Arc<dyn Store>`); each part of
the job layer uses the ports it needs. Two backends ship: [`MemoryStore`]
(always; tests and embedders) and `SqliteStore` (feature `sqlite`: one file
a user opens with `sqlite3`). Both pass one conformance suite
([`conformance`]), which is what a new backend must pass too.

# The rules every backend keeps

* **Accounts.** Every domain, app, job, lease and bucket record belongs to
  an account ([`AccountId`]); its id is part of every key, so an account
  never sees another's. Profiles, endpoints and segments belong to their
  domain or app, which belongs to one account.
* **Compare-and-set.** A job moves only along [`JobStatus::can_become`], and
  only from the state the caller saw ([`Transition::from`]); its spec
  changes only while it is `CREATED`. A lost race is
  [`StoreError::Transition`], never a silent overwrite.
* **Fencing.** Writes on behalf of a running job (profiles, endpoints,
  pieces) name the attempt they belong to; the store refuses them
  ([`StoreError::Fenced`]) once the job was taken over by a later attempt.
* **Leases, not locks.** A claim on work is a row with a holder and a
  deadline, renewed by heartbeats; once the deadline passes anyone may take
  it, and each take counts an attempt. Processes on other machines can hold
  them.
* **Idempotent pieces.** Completing a piece twice counts it once.
* **Atomic batches.** A batch of profiles or endpoints is written whole,
  with the job's counters, or not at all.

Times are Unix milliseconds (`i64`), passed in by the caller so that tests
can move the clock.
*/

pub mod conformance;
mod filter;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod status;

use std::fmt;

pub use filter::{
    Comparison, EndpointFilter, MemberLookup, PageRead, ValueTest, distance_km, filtered_page,
};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
#[doc(hidden)]
pub use postgres::TestServer as PgTestServer;
#[cfg(feature = "postgres")]
pub use postgres::{PG_SCHEMA_VERSION, PgStore, redact};
#[cfg(feature = "sqlite")]
pub use sqlite::{DB_FILE, PAGE_SIZE, SCHEMA_VERSION, SqliteStore};
pub use status::{FailureKind, JobStatus, UnknownStatus};

/// Whose a resource is. Until access keys map to accounts, everything
/// belongs to [`AccountId::default`].
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct AccountId(String);

/// The account of a server that does not tell accounts apart.
pub const DEFAULT_ACCOUNT: &str = "000000000000";

impl AccountId {
    /// An account id.
    pub fn new(id: impl Into<String>) -> AccountId {
        AccountId(id.into())
    }

    /// An account id as AWS writes them, 12 digits; `None` for anything
    /// else.
    pub fn parse(id: &str) -> Option<AccountId> {
        (id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())).then(|| AccountId::new(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for AccountId {
    fn default() -> AccountId {
        AccountId(DEFAULT_ACCOUNT.to_owned())
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What can go wrong in a store: what a caller can act on, never a
/// backend's own types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The backend failed: I/O, a full disk, a lost connection, corruption.
    #[error("store {location}: {message}")]
    Backend {
        /// Where the store is (a file, a server).
        location: String,
        /// What the backend said.
        message: String,
        /// Whether trying again later may work (a busy or lost
        /// connection), as opposed to a fault that stays.
        transient: bool,
    },
    /// The store was written by a newer sluice.
    #[error("store {location} has schema version {found}; this sluice knows up to {known}")]
    TooNew {
        /// Where the store is.
        location: String,
        /// Its version.
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
    /// An app with that id exists.
    #[error("app {0} already exists")]
    AppExists(String),
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
    /// A write on behalf of an attempt of a job that is not the job's
    /// current running attempt (it was taken over, or it ended).
    #[error(
        "job {id}: attempt {attempt} is no longer the running one ({status}, attempt {current})"
    )]
    Fenced {
        /// The job.
        id: String,
        /// The attempt that wrote.
        attempt: u32,
        /// The job's current attempt.
        current: u32,
        /// The job's state.
        status: JobStatus,
    },
    /// A batch whose keys were not strictly ascending.
    #[error("profile batch: key {key:?} is not after the key before it")]
    Unordered {
        /// The first key out of order.
        key: String,
    },
    /// A batch row whose values are not a JSON array of one string for
    /// each of the batch's targets.
    #[error("profile batch: the values of key {key:?} are not {targets} JSON strings in an array")]
    BadValues {
        /// The row's key.
        key: String,
        /// How many values the batch's targets call for.
        targets: usize,
    },
    /// A stored value that this build cannot read.
    #[error("store {location}: {what}: {problem}")]
    Corrupt {
        /// Where the store is.
        location: String,
        /// What holds it (`job 1234`).
        what: String,
        /// What is wrong.
        problem: String,
    },
}

impl StoreError {
    /// Whether the backend may do better on a later try (the store was
    /// busy or unreachable), as opposed to a refusal or a fault that stays.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                transient: true,
                ..
            }
        )
    }
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

    /// This domain after `change`, with what a store keeps of its own (the
    /// name and the creation time) as they were: what
    /// [`ProfileStore::update_domain`] writes.
    ///
    /// # Errors
    ///
    /// What `change` returns.
    pub fn changed(&self, change: &DomainChange<'_>) -> Result<Domain, StoreError> {
        let mut d = self.clone();
        change(&mut d)?;
        d.name.clone_from(&self.name);
        d.created_ms = self.created_ms;
        Ok(d)
    }
}

/// A change to a domain ([`ProfileStore::update_domain`]); an error leaves
/// the domain as it was.
pub type DomainChange<'a> = dyn Fn(&mut Domain) -> Result<(), StoreError> + Sync + 'a;

/// What kind of job a job is.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum JobKind {
    /// Files into a domain's profiles (Customer Profiles upload jobs, and
    /// `sluice ingest --data-dir`).
    Profiles,
    /// Endpoint files into a Pinpoint app.
    Import,
    /// An Import/Export device run.
    Transfer,
    /// A Pinpoint app's endpoints out to a bucket.
    Export,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 4] = [
        JobKind::Profiles,
        JobKind::Import,
        JobKind::Transfer,
        JobKind::Export,
    ];

    /// The name used in stores.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Profiles => "profiles",
            JobKind::Import => "import",
            JobKind::Transfer => "importexport",
            JobKind::Export => "export",
        }
    }

    /// The kind a stored name stands for.
    pub fn from_name(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A new job, as the job layer records it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct NewJob {
    /// Whose it is.
    pub account: AccountId,
    /// Its id.
    pub id: String,
    /// What kind of job.
    pub kind: JobKind,
    /// The domain it writes into, if any (it must exist).
    pub domain: Option<String>,
    /// The app it writes into, if any (it must exist).
    pub app: Option<String>,
    /// A name for people.
    pub display_name: Option<String>,
    /// Its typed spec, serialized by the job layer: all a runner needs to
    /// run (or rerun) it.
    pub spec: String,
    /// When it was created.
    pub created_ms: i64,
}

/// The counters a job reports.
///
/// For a finished profile job that was not stopped,
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
    /// Whose it is.
    pub account: AccountId,
    /// Its id.
    pub id: String,
    /// What kind of job.
    pub kind: JobKind,
    /// The domain it writes into, if any.
    pub domain: Option<String>,
    /// The app it writes into, if any.
    pub app: Option<String>,
    /// A name for people.
    pub display_name: Option<String>,
    /// Its spec, as the job layer serialized it.
    pub spec: String,
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
    /// How many times it has gone to `RUNNING`: the current attempt, which
    /// fences writes ([`StoreError::Fenced`]).
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
    /// Only this account's jobs (every account's when `None`: for
    /// runners, never for callers on behalf of an account).
    pub account: Option<AccountId>,
    /// Only jobs of this domain.
    pub domain: Option<String>,
    /// Only jobs of this app.
    pub app: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<JobKind>,
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
    /// Only if the job is in this attempt ([`JobRecord::attempts`]): a
    /// runner ending its run says which run it ends, so that one whose job
    /// was taken over cannot end the new run ([`StoreError::Fenced`]).
    pub fence: Option<u32>,
}

impl<'a> Transition<'a> {
    /// From `from` to `to` at `at_ms`, keeping the reason, with no fault
    /// and no fence.
    pub fn new(from: JobStatus, to: JobStatus, at_ms: i64) -> Transition<'a> {
        Transition {
            from,
            to,
            at_ms,
            reason: None,
            failure: None,
            fence: None,
        }
    }

    /// `job` as this change leaves it, or why it may not be made: the job
    /// is in another attempt than the fence ([`StoreError::Fenced`]), or
    /// in another state than `from`, or `from` cannot become `to`
    /// ([`StoreError::Transition`]). A backend calls it on the job as it
    /// stands, in the same transaction as the write, and stores the result.
    ///
    /// # Errors
    ///
    /// As above.
    pub fn apply(&self, job: &JobRecord) -> Result<JobRecord, StoreError> {
        if let Some(attempt) = self.fence
            && job.attempts != attempt
        {
            return Err(StoreError::Fenced {
                id: job.id.clone(),
                attempt,
                current: job.attempts,
                status: job.status,
            });
        }
        if job.status != self.from || !self.from.can_become(self.to) {
            return Err(StoreError::Transition {
                id: job.id.clone(),
                from: self.from,
                to: self.to,
                actual: job.status,
            });
        }
        let mut next = job.clone();
        next.status = self.to;
        if let Some(r) = self.reason {
            next.status_reason = Some(r.to_owned());
        }
        next.failure = self.failure;
        if self.to == JobStatus::Running {
            next.attempts += 1;
            next.started_ms.get_or_insert(self.at_ms);
        }
        if self.to.is_terminal() {
            next.completed_ms = Some(self.at_ms);
        }
        Ok(next)
    }
}

/// A job's place: its account and id.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct JobRef<'a> {
    /// Whose.
    pub account: &'a AccountId,
    /// Which.
    pub id: &'a str,
}

/// The attempt of a running job that a write belongs to.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Attempt<'a> {
    /// The job.
    pub job: JobRef<'a>,
    /// Its attempt ([`JobRecord::attempts`] when it went to `RUNNING`).
    pub attempt: u32,
}

impl Attempt<'_> {
    /// Whether a job in `status` at attempt `current` is running this
    /// attempt, as every write on its behalf requires.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when it is not.
    pub fn check(&self, status: JobStatus, current: u32) -> Result<(), StoreError> {
        if status == JobStatus::Running && current == self.attempt {
            return Ok(());
        }
        Err(StoreError::Fenced {
            id: self.job.id.to_owned(),
            attempt: self.attempt,
            current,
            status,
        })
    }
}

/// The jobs: records, state machine, counters.
pub trait JobStore: Send + Sync {
    /// Records a new job in state `CREATED`.
    ///
    /// # Errors
    ///
    /// [`StoreError::JobExists`], [`StoreError::NoDomain`] or
    /// [`StoreError::NoApp`] when it names one the account does not have,
    /// or a backend error.
    fn insert_job(&self, job: &NewJob) -> Result<(), StoreError>;

    /// A job by id.
    ///
    /// # Errors
    ///
    /// A backend error, or a stored value this build cannot read.
    fn job(&self, job: JobRef<'_>) -> Result<Option<JobRecord>, StoreError>;

    /// Jobs, newest first (by creation, then id, descending).
    ///
    /// # Errors
    ///
    /// A backend error, or a stored value this build cannot read.
    fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError>;

    /// Replaces the spec of a job that is still `CREATED` (an upload job's
    /// key changes each time its upload path is asked for).
    ///
    /// # Errors
    ///
    /// [`StoreError::Transition`] (from `CREATED` to `CREATED`) when the
    /// job has moved on, [`StoreError::NoJob`], or a backend error.
    fn update_spec(&self, job: JobRef<'_>, spec: &str) -> Result<JobRecord, StoreError>;

    /// Moves a job from one state to another, atomically: it fails if the
    /// state machine forbids the step or the job is not in `from`. Going to
    /// `RUNNING` counts an attempt and sets `started_ms` the first time;
    /// going to a terminal state sets `completed_ms`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transition`], [`StoreError::NoJob`], or a backend
    /// error.
    fn transition(&self, job: JobRef<'_>, t: &Transition<'_>) -> Result<JobRecord, StoreError>;

    /// Saves a job's counters (everything but `created` and `updated`,
    /// which move with the writes).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a backend error.
    fn save_progress(&self, job: JobRef<'_>, counters: &JobCounters) -> Result<(), StoreError>;

    /// Remembers what a job's inputs looked like when it first ran.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a backend error.
    fn set_input_fingerprint(&self, job: JobRef<'_>, fingerprint: &str) -> Result<(), StoreError>;

    /// Records where a running job is within its run.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a backend error.
    fn set_phase(&self, job: JobRef<'_>, phase: &str) -> Result<(), StoreError>;

    /// Sets a running job's `created` and `updated` back to 0, for an
    /// attempt that writes everything again (an import's upserts): what it
    /// writes then counts as an uninterrupted run's would.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the attempt is not the job's running
    /// one, [`StoreError::NoJob`], or a backend error.
    fn clear_written(&self, attempt: Attempt<'_>) -> Result<(), StoreError>;

    /// Asks a job to stop; whichever runner has it sees this between
    /// pieces or batches. Returns the job.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a backend error.
    fn request_stop(&self, job: JobRef<'_>) -> Result<JobRecord, StoreError>;
}

/// What one completed piece (or run of pieces) of a job's inputs did.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PieceCounts {
    /// The first piece's index.
    pub index: u64,
    /// How many consecutive pieces this covers (at least 1).
    pub count: u64,
    /// Rows read.
    pub processed: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Field warnings.
    pub warnings: u64,
    /// Whether the pieces failed as a whole (could not be read or parsed
    /// completely).
    pub failed_piece: bool,
}

/// The pieces of a job's inputs: planned once, each completed once.
pub trait PieceStore: Send + Sync {
    /// Records how many pieces a job's inputs have (its `total_pieces`),
    /// for its current attempt.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the attempt is not the job's running
    /// one, [`StoreError::NoJob`], or a backend error.
    fn plan_pieces(&self, attempt: Attempt<'_>, total: u64) -> Result<(), StoreError>;

    /// Records a completed piece and adds its counts to the job's
    /// (`completed_pieces`, `failed_pieces`, `processed`, `failed`,
    /// `field_warnings`), in one step. A piece recorded before (by this
    /// attempt or an earlier one) changes nothing: returns whether it was
    /// new.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the attempt is not the job's running
    /// one, [`StoreError::NoJob`], or a backend error.
    fn complete_piece(&self, attempt: Attempt<'_>, piece: &PieceCounts)
    -> Result<bool, StoreError>;

    /// The pieces of a job recorded so far, by index.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn pieces(&self, job: JobRef<'_>) -> Result<Vec<PieceCounts>, StoreError>;
}

/// A claim on work, held until its deadline unless renewed.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Lease {
    /// Whose resources it is about.
    pub account: AccountId,
    /// What it claims (`job/ID`).
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// How many times it was taken; each take is a new attempt, which tells
    /// a holder whose lease was taken over that it no longer holds it.
    pub attempt: u64,
    /// When it lapses unless renewed.
    pub deadline_ms: i64,
}

/// The rules of leases, the same for every backend: each takes the lease
/// as it stands (`current`, read in the transaction that will write the
/// result) and says what to store, or `None` to leave it.
impl Lease {
    /// Whether `self` is still exactly `seen` (same holder, same attempt).
    pub fn is(&self, seen: &Lease) -> bool {
        self.holder == seen.holder && self.attempt == seen.attempt
    }

    /// Whether it was let go (see [`Lease::released`]).
    pub fn is_released(&self) -> bool {
        self.deadline_ms == i64::MIN
    }

    /// `name` taken by `holder` until `now_ms + ttl_ms`: if no one ever
    /// held it (attempt 1) or its deadline has passed (the next attempt);
    /// `None` while it is held.
    pub fn acquired(
        current: Option<&Lease>,
        account: &AccountId,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Option<Lease> {
        let attempt = match current {
            Some(l) if l.deadline_ms > now_ms => return None,
            Some(l) => l.attempt + 1,
            None => 1,
        };
        Some(Lease {
            account: account.clone(),
            name: name.to_owned(),
            holder: holder.to_owned(),
            attempt,
            deadline_ms: now_ms.saturating_add(ttl_ms),
        })
    }

    /// `seen` with its deadline moved to `now_ms + ttl_ms`, if it is still
    /// held as `seen` (not taken over, not released).
    pub fn renewed(
        current: Option<&Lease>,
        seen: &Lease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Option<Lease> {
        let l = current.filter(|l| l.is(seen) && !l.is_released())?;
        Some(Lease {
            deadline_ms: now_ms.saturating_add(ttl_ms),
            ..l.clone()
        })
    }

    /// The lease taken from a holder known to be gone, before its
    /// deadline, by `holder` as the next attempt: only if it is still
    /// exactly `seen`.
    pub fn taken_over(
        current: Option<&Lease>,
        seen: &Lease,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Option<Lease> {
        let l = current.filter(|l| l.is(seen))?;
        Some(Lease {
            holder: holder.to_owned(),
            attempt: l.attempt + 1,
            deadline_ms: now_ms.saturating_add(ttl_ms),
            ..l.clone()
        })
    }

    /// `seen` let go, if it is still `seen`: kept and lapsed, so that the
    /// attempt count goes on from it.
    pub fn released(current: Option<&Lease>, seen: &Lease) -> Option<Lease> {
        let l = current.filter(|l| l.is(seen))?;
        Some(Lease {
            deadline_ms: i64::MIN,
            ..l.clone()
        })
    }
}

/// What a lease becomes, given the lease as it stands (none if it was never
/// taken): `None` leaves it as it is. [`Lease::acquired`] and its siblings.
pub type LeaseChange<'a> = dyn Fn(Option<&Lease>) -> Option<Lease> + Sync + 'a;

/// Work claims that outlive the process holding them, on any machine.
///
/// A backend implements [`LeaseStore::change_lease`] and
/// [`LeaseStore::lease`]; the rules of taking, renewing, taking over and
/// letting go are written once, in [`Lease`], and the methods that apply
/// them are provided.
pub trait LeaseStore: Send + Sync {
    /// Stores what `change` makes of the lease `name` as it stands, in one
    /// transaction (or under one lock), and returns it; stores nothing when
    /// it makes nothing.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn change_lease(
        &self,
        account: &AccountId,
        name: &str,
        change: &LeaseChange<'_>,
    ) -> Result<Option<Lease>, StoreError>;

    /// Takes the lease `name` for `holder` until `now_ms + ttl_ms`, if it
    /// is free or its deadline has passed (then counting a new attempt);
    /// `None` when someone holds it.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn acquire_lease(
        &self,
        account: &AccountId,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.change_lease(account, name, &|l| {
            Lease::acquired(l, account, name, holder, now_ms, ttl_ms)
        })
    }

    /// Moves a held lease's deadline to `now_ms + ttl_ms` (a heartbeat);
    /// `None` when it is no longer `lease` (taken over, or released).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn renew_lease(
        &self,
        lease: &Lease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.change_lease(&lease.account, &lease.name, &|l| {
            Lease::renewed(l, lease, now_ms, ttl_ms)
        })
    }

    /// Takes a lease whose holder is known to be gone before its deadline:
    /// only if it is still exactly `seen` (same holder and attempt).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn take_over_lease(
        &self,
        seen: &Lease,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.change_lease(&seen.account, &seen.name, &|l| {
            Lease::taken_over(l, seen, holder, now_ms, ttl_ms)
        })
    }

    /// Lets a lease go, if it is still `lease`.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.change_lease(&lease.account, &lease.name, &|l| Lease::released(l, lease))
            .map(drop)
    }

    /// The lease `name` as it stands (held or lapsed), if it was ever
    /// taken.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn lease(&self, account: &AccountId, name: &str) -> Result<Option<Lease>, StoreError>;
}

/// One profile to write: its key and its values.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ProfileRow<'a> {
    /// The normalized unique key.
    pub key: &'a str,
    /// The mapped values, a JSON array of strings with nothing between
    /// them but commas (`["a","b"]`), one for each of the batch's
    /// [`targets`](ProfileBatch::targets) in order: the profile's
    /// fields without their names, which a store may keep once rather than
    /// on every row (see [`fields_object`]).
    pub values: &'a str,
    /// The profile's search terms ([`search_term`]), which
    /// [`ProfileStore::search_profiles`] finds it by.
    pub terms: &'a [i64],
}

/// Rows to write in one transaction, in ascending key order.
#[derive(Clone, Copy, Debug)]
pub struct ProfileBatch<'a> {
    /// The attempt writing; its job's `created`, `updated` and
    /// `written_through` move in the same transaction.
    pub attempt: Attempt<'a>,
    /// The domain written into.
    pub domain: &'a str,
    /// When (`updated`, and `created` for new keys).
    pub now_ms: i64,
    /// When these profiles expire; an existing later expiry is kept.
    pub expires_ms: i64,
    /// Where each value goes in a profile's fields: dotted paths
    /// (`Address.City`), none a prefix of another.
    pub targets: &'a [&'a str],
    /// The rows, keys strictly ascending by bytes.
    pub rows: &'a [ProfileRow<'a>],
}

impl ProfileBatch<'_> {
    /// The batch's first problem, checked the same way by every backend
    /// before anything is written: keys not strictly ascending
    /// ([`StoreError::Unordered`]), or values that are not one JSON string
    /// for each target ([`StoreError::BadValues`]).
    ///
    /// # Errors
    ///
    /// That problem.
    pub fn check(&self) -> Result<(), StoreError> {
        if let Some(at) = self.rows.windows(2).position(|w| w[0].key >= w[1].key) {
            return Err(StoreError::Unordered {
                key: self.rows[at + 1].key.to_owned(),
            });
        }
        match self
            .rows
            .iter()
            .find(|r| !is_string_array(r.values.as_bytes(), self.targets.len()))
        {
            Some(r) => Err(StoreError::BadValues {
                key: r.key.to_owned(),
                targets: self.targets.len(),
            }),
            None => Ok(()),
        }
    }
}

/// Whether `b` is a JSON array of exactly `n` strings (no whitespace, as
/// the job layer writes it): a scan, not a parse, since every row of every
/// batch goes through it, on the writer's thread. Control bytes are ruled
/// out in one pass the compiler vectorizes (a fold: `any` stops early and
/// does not); quotes and escapes are found eight bytes at a time
/// ([`next_quote_or_escape`]). Values are mostly a few bytes long, so
/// `memchr`'s setup cost more than the search (the canonical job: 706 of
/// the writer's samples in the check with `memchr2`, 590 byte by byte);
/// on 2.9 M rows of the canonical file's values, byte by byte took
/// 330 ms, `memchr2_iter` over the whole row 330-410 ms, eight bytes at a
/// time 215-250 ms.
fn is_string_array(b: &[u8], n: usize) -> bool {
    if b.iter().fold(false, |bad, &c| bad | (c < 0x20)) {
        return false;
    }
    let (Some(b'['), Some(b']')) = (b.first(), b.last()) else {
        return false;
    };
    let body = &b[1..b.len() - 1];
    if n == 0 {
        return body.is_empty();
    }
    let mut i = 0;
    for k in 0..n {
        if k > 0 {
            if body.get(i) != Some(&b',') {
                return false;
            }
            i += 1;
        }
        if body.get(i) != Some(&b'"') {
            return false;
        }
        i += 1;
        loop {
            let Some(at) = next_quote_or_escape(&body[i..]) else {
                return false;
            };
            i += at;
            if body[i] == b'"' {
                break;
            }
            match body.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u') => {
                    let hex = body.get(i + 2..i + 6);
                    if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                        return false;
                    }
                    i += 6;
                }
                _ => return false,
            }
        }
        i += 1;
    }
    i == body.len()
}

/// Where the first `"` or `\\` in `s` is: a word of eight bytes at a time
/// (a byte equal to either becomes zero in one of two XORs, and a zero
/// byte sets its high bit in `(x - 0x01…) & !x`; the lowest set bit is the
/// first match, carries only running upwards), then byte by byte.
fn next_quote_or_escape(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let mut words = s.chunks_exact(8);
    for (n, w) in words.by_ref().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let w = u64::from_le_bytes(word);
        let hits =
            zero_bytes(w ^ (ONES * u64::from(b'"'))) | zero_bytes(w ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            return Some(n * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    let tail = words.remainder();
    let done = s.len() - tail.len();
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|at| done + at)
}

/// A profile's fields as a JSON object: each of `values` (a JSON array of
/// strings) at its target's path, objects made for the dotted parts, in
/// the targets' order. This is the one place that names values, for every
/// backend.
///
/// # Errors
///
/// `values` is not a JSON array of as many strings as there are targets.
pub fn fields_object<T: AsRef<str>>(targets: &[T], values: &str) -> Result<String, String> {
    use serde_json::{Map, Value};
    let values: Vec<String> =
        serde_json::from_str(values).map_err(|e| format!("stored values: {e}"))?;
    if values.len() != targets.len() {
        return Err(format!(
            "stored values: {} values for {} fields",
            values.len(),
            targets.len()
        ));
    }
    let mut root = Map::new();
    for (target, value) in targets.iter().zip(values) {
        let mut path = target.as_ref().split('.').peekable();
        let mut at = &mut root;
        while let Some(label) = path.next() {
            if path.peek().is_none() {
                at.insert(label.to_owned(), Value::String(value));
                break;
            }
            at = match at
                .entry(label.to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
            {
                Value::Object(next) => next,
                _ => {
                    return Err(format!(
                        "stored values: the field {:?} lies inside another",
                        target.as_ref()
                    ));
                }
            };
        }
    }
    Ok(Value::Object(root).to_string())
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
    /// Its number in its domain, given when it is created and kept while
    /// it lives: its `ProfileId` is [`profile_id`] of it.
    pub no: u64,
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

/// A search key's value as stores index it: SipHash-1-3 under fixed keys
/// (specified, so the same in every version and on every machine) of the
/// key's name and the value in lower case. Two values that differ only in
/// case are one term; a store may answer a term with a profile that no
/// longer has it, or (once in 2^64) has another with the same term, so
/// callers check what they find against the profile's values.
pub fn search_term(key: &str, value: &str) -> i64 {
    search_term_of(key, &[value])
}

/// [`search_term`] of `parts` joined by single spaces, without joining
/// them (a full name from its parts, for every row of a job).
pub fn search_term_of(key: &str, parts: &[&str]) -> i64 {
    use std::hash::Hasher;
    let mut h =
        siphasher::sip::SipHasher13::new_with_keys(0x736c_7569_6365_2d73, 0x6561_7263_682d_7631);
    h.write(key.as_bytes());
    h.write_u8(0xff);
    let mut lower = [0u8; 64];
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.write_u8(b' ');
        }
        if part.is_ascii() {
            // SipHash takes bytes as a stream: chunks hash as the whole.
            for chunk in part.as_bytes().chunks(lower.len()) {
                for (to, from) in lower.iter_mut().zip(chunk) {
                    *to = from.to_ascii_lowercase();
                }
                h.write(&lower[..chunk.len()]);
            }
        } else {
            h.write(part.to_lowercase().as_bytes());
        }
    }
    // The bits as they are: a term is a number to compare, not to count.
    h.finish().cast_signed()
}

/// An odd multiplier and its inverse modulo 2^128: a profile's number is
/// spread over its id's 128 bits, and the id read back exactly.
const ID_MUL: u128 = 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835;
const ID_INV: u128 = {
    // Newton's iteration doubles the bits of an inverse each step.
    let mut x = ID_MUL;
    let mut i = 0;
    while i < 7 {
        x = x.wrapping_mul(2u128.wrapping_sub(ID_MUL.wrapping_mul(x)));
        i += 1;
    }
    x
};

/// A profile's `ProfileId`: its number, mixed (a bijection) into 32
/// lowercase hex digits, the service's `[a-f0-9]{32}`.
pub fn profile_id(no: u64) -> String {
    let x = u128::from(no).wrapping_mul(ID_MUL);
    format!("{:032x}", x ^ (x >> 64))
}

/// Whether `id` has a `ProfileId`'s shape: 32 lowercase hex digits
/// (whether it names a number is [`profile_no`]'s to say).
pub fn is_profile_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The number a `ProfileId` names, if it names one ([`profile_id`] read
/// back); `None` for anything else.
pub fn profile_no(id: &str) -> Option<u64> {
    if !is_profile_id(id) {
        return None;
    }
    let y = u128::from_str_radix(id, 16).ok()?;
    u64::try_from((y ^ (y >> 64)).wrapping_mul(ID_INV)).ok()
}

/// Which profiles a search wants.
#[derive(Clone, Copy, Debug)]
pub struct ProfileSearch<'a> {
    /// Groups of terms: a profile matches a group when it has one of its
    /// terms.
    pub groups: &'a [Vec<i64>],
    /// Whether a profile must match every group (AND), or one (OR).
    pub all: bool,
    /// Only profiles numbered above this one (the previous page's last).
    pub after: u64,
    /// At most this many.
    pub limit: usize,
    /// Live at this time.
    pub now_ms: i64,
}

/// Customer Profiles: domains and their profiles.
pub trait ProfileStore: Send + Sync {
    /// Records a new domain.
    ///
    /// # Errors
    ///
    /// [`StoreError::DomainExists`], or a backend error.
    fn create_domain(&self, account: &AccountId, domain: &Domain) -> Result<(), StoreError>;

    /// A domain by name.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn domain(&self, account: &AccountId, name: &str) -> Result<Option<Domain>, StoreError>;

    /// Every domain of the account, by name.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn domains(&self, account: &AccountId) -> Result<Vec<Domain>, StoreError>;

    /// Changes a domain in one transaction: `change` is given the domain
    /// as stored and its changes are written (name and creation time
    /// kept), so that two updates of different members both land. Returns
    /// the domain as written.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], what `change` returns (then nothing is
    /// written), or a backend error.
    fn update_domain(
        &self,
        account: &AccountId,
        name: &str,
        change: &DomainChange<'_>,
    ) -> Result<Domain, StoreError>;

    /// Deletes a domain with its profiles and its finished jobs; returns
    /// how many profiles went.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], [`StoreError::DomainBusy`] while one of its
    /// jobs is queued or running, or a backend error.
    fn delete_domain(&self, account: &AccountId, name: &str) -> Result<u64, StoreError>;

    /// Upserts a batch of profiles in one transaction, with the job's
    /// `created`, `updated` and `written_through`. Expired profiles of the
    /// domain are purged first, so a key that had only expired counts as
    /// created.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], [`StoreError::Fenced`] when the attempt is
    /// not the job's running one, [`StoreError::Unordered`] when the keys
    /// are not strictly ascending, or a backend error; then nothing of the
    /// batch is written.
    fn write_profiles(&self, batch: &ProfileBatch<'_>) -> Result<WriteCounts, StoreError>;

    /// A live (unexpired) profile.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a backend error.
    fn profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError>;

    /// A live profile by its number.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a backend error.
    fn profile_by_no(
        &self,
        account: &AccountId,
        domain: &str,
        no: u64,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError>;

    /// Live profiles with the search's terms, by ascending number. A
    /// store may also answer profiles that had the terms when written and
    /// have other values now: callers check.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a backend error.
    fn search_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        search: &ProfileSearch<'_>,
    ) -> Result<Vec<Profile>, StoreError>;

    /// Folds the terms of profiles written since the last call into the
    /// domain's search index, for stores that index in bulk (jobs call it
    /// when they have written); searches find every profile either way,
    /// only faster after. Does nothing elsewhere.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a backend error.
    fn settle_search(&self, account: &AccountId, domain: &str) -> Result<(), StoreError> {
        let _ = (account, domain);
        Ok(())
    }

    /// Deletes a profile by its key; whether there was one (live).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a backend error.
    fn delete_profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// How many live profiles a domain has.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], or a backend error.
    fn count_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Deletes every expired profile of every account; returns how many.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError>;
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
    /// The job that first wrote it (set by the store; what a writer puts
    /// here is ignored).
    pub created_by: Option<String>,
}

/// How an incoming endpoint finds the stored one it updates.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum EndpointKey<'a> {
    /// By id.
    Id(&'a str),
    /// By channel and normalized address.
    Address(&'a str, &'a str),
}

/// Which endpoints of an app.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum EndpointsOf<'a> {
    /// The one with this id.
    Id(&'a str),
    /// Every one of this user.
    User(&'a str),
}

/// Who writes a batch of endpoints.
#[derive(Clone, Copy, Debug)]
pub enum EndpointWriter<'a> {
    /// A job's attempt: fenced by it, and its job's `created` and `updated`
    /// move in the same transaction.
    Job(Attempt<'a>),
    /// A request of the account (UpdateEndpoint and the like).
    Request(&'a AccountId),
}

impl<'a> EndpointWriter<'a> {
    /// The account written to.
    pub fn account(&self) -> &'a AccountId {
        match *self {
            EndpointWriter::Job(a) => a.job.account,
            EndpointWriter::Request(account) => account,
        }
    }

    /// The attempt, when a job writes.
    pub fn attempt(&self) -> Option<Attempt<'a>> {
        match *self {
            EndpointWriter::Job(a) => Some(a),
            EndpointWriter::Request(_) => None,
        }
    }

    /// The job, when a job writes: what an endpoint it creates records as
    /// `created_by`.
    pub fn job(&self) -> Option<&'a str> {
        self.attempt().map(|a| a.job.id)
    }

    /// Whether `found`, the stored endpoint a key found, counts as one
    /// that existed: for a job, unless the job itself created it (in an
    /// earlier attempt).
    pub fn existed(&self, found: Option<&StoredEndpoint>) -> bool {
        found.is_some_and(|f| self.job().is_none() || f.created_by.as_deref() != self.job())
    }
}

/// Endpoints to write in one transaction.
#[derive(Clone, Copy, Debug)]
pub struct EndpointBatch<'a> {
    /// Who writes.
    pub by: EndpointWriter<'a>,
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
    dyn FnMut(usize, Option<StoredEndpoint>) -> Result<StoredEndpoint, String> + Send + 'a;

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

/// Pinpoint: apps, their endpoints and their segments.
pub trait AppStore: Send + Sync {
    /// Records a new app.
    ///
    /// # Errors
    ///
    /// [`StoreError::AppExists`], or a backend error.
    fn create_app(&self, account: &AccountId, app: &App) -> Result<(), StoreError>;

    /// An app by id.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn app(&self, account: &AccountId, id: &str) -> Result<Option<App>, StoreError>;

    /// Every app of the account, oldest first (by creation, then id).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn apps(&self, account: &AccountId) -> Result<Vec<App>, StoreError>;

    /// Deletes an app with its endpoints, segments and finished jobs;
    /// returns it.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], [`StoreError::AppBusy`] while one of its
    /// jobs is queued or running, or a backend error.
    fn delete_app(&self, account: &AccountId, id: &str) -> Result<App, StoreError>;

    /// Upserts endpoints in one transaction: for each key, finds the
    /// stored endpoint (by id, or by channel and address: the oldest of
    /// that address), asks `merge` for what to store, writes it, adds it to
    /// the batch's segment, and moves the job's `created` and `updated`.
    /// An endpoint counts as created when it was new, or when the batch's
    /// own job created it (in an earlier attempt: a run written again
    /// counts as it did the first time).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], [`StoreError::NoSegment`],
    /// [`StoreError::Fenced`] when the attempt is not the job's running
    /// one, or a backend error; then nothing of the batch is written.
    fn write_endpoints(
        &self,
        batch: &EndpointBatch<'_>,
        merge: &mut EndpointMerge<'_>,
    ) -> Result<Vec<EndpointWrite>, StoreError>;

    /// An endpoint by id.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn endpoint(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<StoredEndpoint>, StoreError>;

    /// The endpoints of a user, by id.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn user_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        user_id: &str,
    ) -> Result<Vec<StoredEndpoint>, StoreError>;

    /// The endpoints of an app, or those `filter` passes, in id order:
    /// those after `after` (from the first when `None`), at most `limit`.
    /// A page shorter than `limit` is the last. A filter with a
    /// [driving segment](EndpointFilter::driving_segment) reads that
    /// segment's members only.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], or a backend error.
    fn endpoints_after(
        &self,
        account: &AccountId,
        app: &str,
        filter: Option<&EndpointFilter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEndpoint>, StoreError>;

    /// Deletes the endpoints `which` names, with their segment
    /// memberships; returns them as they were, by id (none when none
    /// matched).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], or a backend error.
    fn delete_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        which: EndpointsOf<'_>,
    ) -> Result<Vec<StoredEndpoint>, StoreError>;

    /// Records a segment; one that exists with the same id is left as it
    /// is (so a resumed job that defines a segment defines it once).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoApp`], or a backend error.
    fn create_segment(&self, account: &AccountId, segment: &Segment) -> Result<(), StoreError>;

    /// A segment by id.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<Segment>, StoreError>;

    /// The segments of an app, oldest first (by creation, then id).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn segments(&self, account: &AccountId, app: &str) -> Result<Vec<Segment>, StoreError>;

    /// Replaces a segment's definition (and its name, when `name` is
    /// given) and adds one to its version.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSegment`], or a backend error.
    fn update_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
        name: Option<&str>,
        definition: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError>;

    /// Deletes a segment with its members (not the endpoints); returns it
    /// as it was.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoSegment`], or a backend error.
    fn delete_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Segment, StoreError>;

    /// How many endpoints of a segment are on each channel, by channel.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn segment_channel_counts(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Vec<(String, u64)>, StoreError>;
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

/// What sluice records of buckets.
pub trait BucketStore: Send + Sync {
    /// Records a bucket's region and owner (replacing what was recorded).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn set_bucket_settings(
        &self,
        account: &AccountId,
        settings: &BucketSettings,
    ) -> Result<(), StoreError>;

    /// What is recorded of a bucket, if anything.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn bucket_settings(
        &self,
        account: &AccountId,
        bucket: &str,
    ) -> Result<Option<BucketSettings>, StoreError>;

    /// The accounts that have a record of a bucket, by id: bucket names
    /// are one namespace for all accounts, so this says whose a bucket is.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn bucket_accounts(&self, bucket: &str) -> Result<Vec<AccountId>, StoreError>;

    /// Forgets what an account recorded of a bucket (it was deleted).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn forget_bucket(&self, account: &AccountId, bucket: &str) -> Result<(), StoreError>;
}

/// Whose a bucket is: bucket names are one namespace for all accounts, and
/// a bucket belongs to the account that recorded it (an S3 CreateBucket),
/// or — with no record but the default account's, or none — to the
/// default account (buckets made by `sluice bucket mb`, or before
/// accounts), for every service alike.
///
/// # Errors
///
/// A backend error.
pub fn bucket_owner(store: &dyn BucketStore, bucket: &str) -> Result<AccountId, StoreError> {
    let default = AccountId::default();
    let accounts = store.bucket_accounts(bucket)?;
    Ok(accounts
        .into_iter()
        .find(|a| *a != default)
        .unwrap_or(default))
}

/// One byte range of one of a job's inputs, as planned.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct PlannedRange {
    /// Which input, from 0 in the job's order.
    pub input: u64,
    /// Where that input's body starts (bytes before it are its header).
    pub body_start: u64,
    /// The range's first byte.
    pub start: u64,
    /// Just past its last byte.
    pub end: u64,
    /// Newlines of the input's body before `start`.
    pub newlines_before: u64,
}

/// Where a planned range stands.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum RangeState {
    /// Not done yet: free, or leased until its deadline.
    Open,
    /// Done: its rows are staged and its counts added to the job's.
    Done,
    /// Given up after its attempts: it counts as a failed piece.
    Failed,
}

/// A range as the store keeps it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RangeRecord {
    /// Its index among the job's ranges (its piece number).
    pub piece: u64,
    /// Where it is.
    pub range: PlannedRange,
    /// Where it stands.
    pub state: RangeState,
    /// Times it was leased.
    pub attempt: u64,
    /// What its run did (zero until done).
    pub result: RangeResult,
}

/// What running one range did.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct RangeResult {
    /// Rows read.
    pub processed: u64,
    /// Rows that failed.
    pub failed: u64,
    /// Field warnings, per mapped field in mapping order.
    pub warnings: Vec<u64>,
    /// Its first failures, as the job layer encodes them (kept as given).
    pub failures: String,
    /// It could not be read or parsed completely.
    pub failed_piece: bool,
    /// Why, when it failed or its last attempt did.
    pub reason: Option<String>,
}

/// A claim on one range of a running job.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RangeLease {
    /// The job's account.
    pub account: AccountId,
    /// The job.
    pub job_id: String,
    /// The range's piece number.
    pub piece: u64,
    /// Where it is.
    pub range: PlannedRange,
    /// This lease's attempt: a holder whose lease was taken over (a later
    /// attempt) writes nothing more for it.
    pub attempt: u64,
    /// Who holds it.
    pub holder: String,
    /// Into how many parts the job's staged rows are split.
    pub parts: u32,
}

impl RangeLease {
    /// Its job.
    pub fn job(&self) -> JobRef<'_> {
        JobRef {
            account: &self.account,
            id: &self.job_id,
        }
    }
}

/// One row a range keeps, staged for the merge.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct StagedRow<'a> {
    /// Which part of the merge takes it (a hash of the key, below the
    /// plan's `parts`).
    pub part: u32,
    /// Its place within its range: greater is later in the input.
    pub ordinal: u64,
    /// The stored key.
    pub key: &'a str,
    /// The values, as [`ProfileRow::values`].
    pub values: &'a str,
    /// The search terms, as [`ProfileRow::terms`].
    pub terms: &'a [i64],
}

/// One part of a job's merge.
#[derive(Clone, Copy, Debug)]
pub struct MergePart<'a> {
    /// The attempt merging.
    pub attempt: Attempt<'a>,
    /// The domain written into.
    pub domain: &'a str,
    /// Which part.
    pub part: u32,
    /// When.
    pub now_ms: i64,
    /// When the profiles expire; an existing later expiry is kept.
    pub expires_ms: i64,
    /// Where each value goes (as [`ProfileBatch::targets`]).
    pub targets: &'a [&'a str],
}

/// Jobs cut into byte ranges that workers on any machine lease one at a
/// time, with the rows they keep staged in the store and merged there:
/// last row wins by (piece, ordinal), decided by the store. Implemented by
/// stores that several machines share.
pub trait RangeStore: Send + Sync {
    /// Records the job's ranges and the number of merge parts, and its
    /// `total_pieces`, unless an earlier attempt planned it: then the
    /// earlier plan stands. Returns the plan's parts.
    ///
    /// # Errors
    ///
    /// [`StoreError::Fenced`] when the attempt is not the job's running
    /// one, or a backend error.
    fn plan_ranges(
        &self,
        attempt: Attempt<'_>,
        ranges: &[PlannedRange],
        parts: u32,
    ) -> Result<u32, StoreError>;

    /// The job's ranges, by piece (none before it is planned).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn ranges(&self, job: JobRef<'_>) -> Result<Vec<RangeRecord>, StoreError>;

    /// Leases an open range of a running job (of `job` only, when given)
    /// that no one holds or whose lease lapsed before `now_ms`, skipping
    /// ranges others are leasing at this moment, until `now_ms + ttl_ms`.
    /// A lapsed range that was already leased `max_attempts` times fails
    /// (a failed piece, with its last reason) instead.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn lease_range(
        &self,
        job: Option<JobRef<'_>>,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
        max_attempts: u64,
    ) -> Result<Option<RangeLease>, StoreError>;

    /// Moves the lease's deadline; false when it is no longer held (taken
    /// over, or done).
    ///
    /// # Errors
    ///
    /// A backend error.
    fn renew_range(&self, lease: &RangeLease, deadline_ms: i64) -> Result<bool, StoreError>;

    /// Stages `rows` and records the range done with `result` (its counts
    /// added to the job's), in one step; false, with nothing written, when
    /// the lease is no longer held.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn complete_range(
        &self,
        lease: &RangeLease,
        result: &RangeResult,
        rows: &[StagedRow<'_>],
    ) -> Result<bool, StoreError>;

    /// Gives the range back after a failed attempt, to be leased again no
    /// sooner than `retry_ms`; when it was leased `max_attempts` times it
    /// fails instead, with `reason`. False when it was no longer held.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn give_back_range(
        &self,
        lease: &RangeLease,
        reason: &str,
        retry_ms: i64,
        max_attempts: u64,
    ) -> Result<bool, StoreError>;

    /// Before the merge: purges the domain's expired profiles, so that a
    /// key that had only expired counts as created, and records what the
    /// values are (`targets`, as [`ProfileBatch::targets`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], [`StoreError::Fenced`], or a backend error.
    fn prepare_merge(
        &self,
        attempt: Attempt<'_>,
        domain: &str,
        now_ms: i64,
        expires_ms: i64,
        targets: &[&str],
    ) -> Result<(), StoreError>;

    /// Merges one part of the staged rows into the domain: per key the row
    /// of the greatest (piece, ordinal), created or updated, the counts
    /// added to the job's in the same step. A part merged before (by any
    /// attempt) is not merged again: returns `None`.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoDomain`], [`StoreError::Fenced`], or a backend error;
    /// then nothing of the part is written.
    fn merge_part(&self, merge: &MergePart<'_>) -> Result<Option<WriteCounts>, StoreError>;

    /// Lets go of a finished job's plan and staged rows.
    ///
    /// # Errors
    ///
    /// A backend error.
    fn drop_ranges(&self, job: JobRef<'_>) -> Result<(), StoreError>;
}

/// Every port: what a backend implements, and what the job layer is
/// handed.
pub trait Store:
    JobStore + PieceStore + LeaseStore + ProfileStore + AppStore + BucketStore + fmt::Debug
{
    /// Where the store is, for people (`/data/sluice.db`, `memory`).
    fn location(&self) -> String;

    /// Its ranges, when jobs can be split across processes on it
    /// (PostgreSQL); `None` runs every job in the process that leased it.
    fn range_store(&self) -> Option<&dyn RangeStore> {
        None
    }

    /// Whether the store answers: one read that goes all the way to it
    /// (a health check).
    ///
    /// # Errors
    ///
    /// The backend's, when it cannot be read.
    fn check(&self) -> Result<(), StoreError> {
        let account = AccountId::default();
        self.job(JobRef {
            account: &account,
            id: "",
        })
        .map(|_| ())
    }
}

/// Opens the store that `location` names: `memory:` (an empty store that
/// lives as long as the value), `postgresql://USER@HOST:PORT/DB` (also
/// `postgres://`; feature `postgres`), `sqlite:DIR`, or a directory `DIR`
/// (the SQLite file `sluice.db` in it, made if missing; feature `sqlite`).
///
/// # Errors
///
/// When the store cannot be opened, or this build has no backend for the
/// location.
pub fn open(location: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if location == "memory:" {
        return Ok(std::sync::Arc::new(MemoryStore::new()));
    }
    if location.starts_with("postgresql://") || location.starts_with("postgres://") {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(PgStore::open(location)?));
    }
    let dir = location.strip_prefix("sqlite:").unwrap_or(location);
    if let Some((scheme, _)) = dir.split_once("://") {
        return Err(StoreError::Backend {
            location: scheme.to_owned() + "://…",
            message: "no store backend of this build takes this URL (memory:, sqlite:DIR, a \
                      directory, or postgresql://… with feature `postgres`)"
                .into(),
            transient: false,
        });
    }
    #[cfg(feature = "sqlite")]
    {
        Ok(std::sync::Arc::new(SqliteStore::open(dir)?))
    }
    #[cfg(not(feature = "sqlite"))]
    {
        Err(StoreError::Backend {
            location: dir.to_owned(),
            message: "this build of sluice has no SQLite store (feature `sqlite`)".into(),
            transient: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{is_string_array, next_quote_or_escape, profile_id, profile_no, search_term};

    #[test]
    fn profile_ids_read_back_to_their_numbers_and_nothing_else_does() {
        for no in [0, 1, 2, 7, 1 << 20, u64::MAX - 1, u64::MAX] {
            let id = profile_id(no);
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_eq!(profile_no(&id), Some(no), "{id}");
        }
        assert_ne!(profile_id(1), profile_id(2));
        for bad in [
            "",
            "xyz",
            &"0".repeat(31),
            &"G".repeat(32),
            &profile_id(3).to_uppercase(),
        ] {
            assert_eq!(profile_no(bad), None, "{bad}");
        }
        // Most of the 2^128 ids name no number.
        assert_eq!(profile_no(&"f".repeat(32)), None);
    }

    #[test]
    fn search_terms_ignore_case_and_tell_keys_apart() {
        assert_eq!(
            search_term("_email", "A@B.com"),
            search_term("_email", "a@b.COM")
        );
        assert_eq!(
            search_term("_fullName", "ÉLodie Ünal"),
            search_term("_fullName", "élodie ünal")
        );
        assert_ne!(
            search_term("_email", "a@b.com"),
            search_term("_phone", "a@b.com")
        );
        assert_ne!(search_term("_email", "ab"), search_term("_emaila", "b"));
        // Stored: the value may never change.
        assert_eq!(search_term("_account", "C1"), search_term("_account", "c1"));
        let long = "A".repeat(200);
        assert_eq!(
            search_term("_x", &long),
            search_term("_x", &long.to_lowercase())
        );
        assert_eq!(
            super::search_term_of("_fullName", &["Ann", "Lee"]),
            search_term("_fullName", "ann lee")
        );
        assert_eq!(
            super::search_term_of("_fullName", &["Zoë", "Ünal"]),
            search_term("_fullName", "ZOË ÜNAL")
        );
    }

    #[test]
    fn quotes_and_escapes_are_found_where_a_byte_by_byte_search_finds_them() {
        // Every string of up to 20 bytes with at most one quote or
        // backslash, anywhere, among plain, high and multi-byte bytes.
        let fill = "aé\u{7f}\u{80}x".as_bytes();
        for len in 0..=20 {
            let base: Vec<u8> = fill.iter().copied().cycle().take(len).collect();
            let naive = |s: &[u8]| s.iter().position(|&c| c == b'"' || c == b'\\');
            assert_eq!(next_quote_or_escape(&base), naive(&base), "{base:?}");
            for at in 0..len {
                for special in [b'"', b'\\'] {
                    let mut s = base.clone();
                    s[at] = special;
                    assert_eq!(next_quote_or_escape(&s), Some(at), "{s:?}");
                    // A second one further on does not move the first.
                    if at + 9 < len {
                        s[at + 9] = b'"';
                        assert_eq!(next_quote_or_escape(&s), Some(at), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn string_arrays_are_told_from_the_rest() {
        for ok in [
            r#"["a","b"]"#,
            r#"["","long value past eight bytes"]"#,
            r#"["a\"b\\c","\u00e9\n"]"#,
            r#"["Ørsted, Wei","x"]"#,
        ] {
            assert!(is_string_array(ok.as_bytes(), 2), "{ok}");
        }
        for bad in [
            r#"["a"]"#,
            r#"["a","b","c"]"#,
            r#"["a""b"]"#,
            r#"["a", "b"]"#,
            r#"["a\q","b"]"#,
            r#"["a\u12g4","b"]"#,
            r#"["a\","b"]"#,
            r#"["a","b""#,
            "[\"a\",\"b\n\"]",
            r#"[1,"b"]"#,
        ] {
            assert!(!is_string_array(bad.as_bytes(), 2), "{bad}");
        }
        assert!(is_string_array(b"[]", 0));
        assert!(!is_string_array(b"[\"\"]", 0));
    }
}
