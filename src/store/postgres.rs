//! Every store port on a PostgreSQL database (`PgStore`, feature
//! `postgres`): the store that several processes on several machines share.
//!
//! Every write is one `SERIALIZABLE` transaction, retried when PostgreSQL
//! reports a serialization failure or a deadlock: the same all-or-nothing
//! batches and compare-and-set as SQLite's one writer gives, with any
//! number of writers. Connections are kept in a small pool and dropped when
//! they break; a lost connection is a transient error, which the runner
//! retries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, IsolationLevel, NoTls, Row, Transaction};

mod ranges;
mod tls;

use super::{
    AccountId, App, AppStore, Attempt, BucketSettings, BucketStore, Domain, DomainChange,
    EndpointBatch, EndpointFilter, EndpointKey, EndpointMerge, EndpointWrite, EndpointsOf,
    FailureKind, JobCounters, JobFilter, JobKind, JobRecord, JobRef, JobStatus, JobStore, Lease,
    LeaseChange, LeaseStore, NewJob, PieceCounts, PieceStore, Profile, ProfileBatch, ProfileSearch,
    ProfileStore, Segment, Store, StoreError, StoredEndpoint, Transition, WriteCounts,
    fields_object, filtered_page,
};

/// Migrations, in order; the table `sluice_schema` says how many have run.
/// Text that is compared or ordered is `COLLATE "C"`: byte order, as in
/// SQLite, whatever the database's locale.
const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's version 7, in PostgreSQL's types.
    r#"
    CREATE TABLE domains(
        id BIGSERIAL PRIMARY KEY,
        account TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        default_expiration_days BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        settings TEXT NOT NULL,
        -- no live profile of the domain expires before this (NULL: none
        -- expires); purges run only once it has passed
        next_expiry_ms BIGINT,
        UNIQUE(account, name)
    );
    CREATE TABLE apps(
        app_no BIGSERIAL PRIMARY KEY,
        account TEXT COLLATE "C" NOT NULL,
        -- unique across accounts: segments and jobs name apps by id
        id TEXT COLLATE "C" NOT NULL UNIQUE,
        name TEXT NOT NULL,
        tags TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE INDEX apps_by_account ON apps(account, created_ms, id);
    CREATE TABLE jobs(
        account TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        kind TEXT NOT NULL,
        domain TEXT COLLATE "C",
        app_id TEXT COLLATE "C",
        display_name TEXT,
        spec TEXT NOT NULL,
        status TEXT NOT NULL,
        phase TEXT,
        status_reason TEXT,
        failure TEXT,
        stop_requested BOOLEAN NOT NULL DEFAULT false,
        attempts BIGINT NOT NULL DEFAULT 0,
        total_pieces BIGINT NOT NULL DEFAULT 0,
        completed_pieces BIGINT NOT NULL DEFAULT 0,
        failed_pieces BIGINT NOT NULL DEFAULT 0,
        processed BIGINT NOT NULL DEFAULT 0,
        created BIGINT NOT NULL DEFAULT 0,
        updated BIGINT NOT NULL DEFAULT 0,
        duplicates BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        field_warnings BIGINT NOT NULL DEFAULT 0,
        field_warnings_by_field TEXT NOT NULL DEFAULT '{}',
        failures TEXT NOT NULL DEFAULT '[]',
        written_through BYTEA,
        input_fingerprint TEXT,
        created_ms BIGINT NOT NULL,
        started_ms BIGINT,
        completed_ms BIGINT,
        PRIMARY KEY(account, id)
    );
    CREATE INDEX jobs_by_created ON jobs(account, created_ms, id);
    CREATE INDEX jobs_by_app ON jobs(account, app_id, created_ms);
    CREATE INDEX jobs_by_domain ON jobs(account, domain, created_ms);
    CREATE INDEX jobs_by_status ON jobs(status);
    CREATE TABLE pieces(
        account TEXT COLLATE "C" NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        piece BIGINT NOT NULL,
        count BIGINT NOT NULL,
        processed BIGINT NOT NULL,
        failed BIGINT NOT NULL,
        warnings BIGINT NOT NULL,
        failed_piece BOOLEAN NOT NULL,
        attempt BIGINT NOT NULL,
        PRIMARY KEY(account, job_id, piece)
    );
    CREATE TABLE leases(
        account TEXT COLLATE "C" NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        holder TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        deadline_ms BIGINT NOT NULL,
        PRIMARY KEY(account, name)
    );
    CREATE TABLE profile_shapes(
        id BIGSERIAL PRIMARY KEY,
        targets TEXT NOT NULL UNIQUE
    );
    CREATE TABLE profiles(
        domain_id BIGINT NOT NULL,
        profile_key TEXT COLLATE "C" NOT NULL,
        shape_id BIGINT NOT NULL,
        field_values TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        PRIMARY KEY(domain_id, profile_key)
    );
    CREATE TABLE endpoints(
        app_no BIGINT NOT NULL,
        endpoint_id TEXT COLLATE "C" NOT NULL,
        channel_type TEXT COLLATE "C",
        address TEXT COLLATE "C",
        user_id TEXT COLLATE "C",
        fields TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        created_by TEXT,
        PRIMARY KEY(app_no, endpoint_id)
    );
    CREATE INDEX endpoints_by_address ON endpoints(app_no, channel_type, address);
    CREATE INDEX endpoints_by_user ON endpoints(app_no, user_id);
    CREATE TABLE segments(
        app_id TEXT COLLATE "C" NOT NULL,
        segment_id TEXT COLLATE "C" NOT NULL,
        name TEXT,
        definition TEXT NOT NULL,
        created_ms BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY(app_id, segment_id)
    );
    CREATE TABLE segment_members(
        app_no BIGINT NOT NULL,
        segment_id TEXT COLLATE "C" NOT NULL,
        endpoint_id TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY(app_no, segment_id, endpoint_id)
    );
    CREATE INDEX members_by_endpoint ON segment_members(app_no, endpoint_id);
    CREATE TABLE bucket_settings(
        account TEXT COLLATE "C" NOT NULL,
        bucket TEXT COLLATE "C" NOT NULL,
        region TEXT,
        owner TEXT,
        PRIMARY KEY(account, bucket)
    );
    "#,
    // 2: jobs split into byte ranges that workers lease; their rows are
    // staged in tables of the schema sluice_stage, one per job and part,
    // made at planning and dropped when the job ends.
    r#"
    CREATE SCHEMA IF NOT EXISTS sluice_stage;
    CREATE TABLE job_plans(
        account TEXT COLLATE "C" NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        stage_no BIGSERIAL NOT NULL UNIQUE,
        parts INT NOT NULL,
        PRIMARY KEY(account, job_id)
    );
    CREATE TABLE job_ranges(
        account TEXT COLLATE "C" NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        piece BIGINT NOT NULL,
        input BIGINT NOT NULL,
        body_start BIGINT NOT NULL,
        byte_start BIGINT NOT NULL,
        byte_end BIGINT NOT NULL,
        newlines_before BIGINT NOT NULL,
        -- open, done or failed
        state TEXT NOT NULL DEFAULT 'open',
        holder TEXT,
        attempt BIGINT NOT NULL DEFAULT 0,
        deadline_ms BIGINT NOT NULL DEFAULT 0,
        processed BIGINT NOT NULL DEFAULT 0,
        failed BIGINT NOT NULL DEFAULT 0,
        warnings TEXT NOT NULL DEFAULT '[]',
        failures TEXT NOT NULL DEFAULT '',
        failed_piece BOOLEAN NOT NULL DEFAULT false,
        reason TEXT,
        PRIMARY KEY(account, job_id, piece)
    );
    CREATE INDEX job_ranges_open ON job_ranges(deadline_ms) WHERE state = 'open';
    CREATE TABLE job_merges(
        account TEXT COLLATE "C" NOT NULL,
        job_id TEXT COLLATE "C" NOT NULL,
        part INT NOT NULL,
        created BIGINT NOT NULL,
        updated BIGINT NOT NULL,
        PRIMARY KEY(account, job_id, part)
    );
    "#,
    // 2: profiles leave half of each page free, so that a job updating a
    // profile writes its new version beside the old one (a HOT update: no
    // new primary-key entry, the old version pruned by a later visit).
    // Measured on 3 M profiles of ~130-byte values: an UPDATE of all of
    // them 11.6 s against 22.5–25.6 s, again and again; the table the same
    // size once updated, its key index half. The 1 GiB job on 2 workers
    // (benches/distributed.sh, one after the other): updated 113.3 s ->
    // 77.8 s, created 67.1 s -> 70.5 s (twice the pages to write first).
    r#"
    ALTER TABLE profiles SET (fillfactor = 50);
    "#,
    // 3: profiles are numbered (their ProfileId) and carry their search
    // terms, found through a GIN index: its pending list takes a merge's
    // terms in bulk, and an update that keeps the terms stays HOT.
    r#"
    CREATE SEQUENCE profile_nos CACHE 1000;
    ALTER TABLE profiles ADD COLUMN profile_no BIGINT;
    UPDATE profiles SET profile_no = nextval('profile_nos');
    ALTER TABLE profiles ALTER COLUMN profile_no SET DEFAULT nextval('profile_nos'),
        ALTER COLUMN profile_no SET NOT NULL;
    ALTER TABLE profiles ADD COLUMN search_terms BIGINT[] NOT NULL DEFAULT '{}';
    CREATE INDEX profiles_by_no ON profiles(domain_id, profile_no);
    CREATE INDEX profiles_by_term ON profiles USING gin (search_terms);
    "#,
];

/// The schema version this build writes.
pub const PG_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock that migrations hold, so that processes starting at
/// once migrate one after the other (the first does the work).
const MIGRATION_LOCK: i64 = 0x736c_7569_6365; // "sluice"

/// Tries of a write transaction that PostgreSQL aborts for a serialization
/// failure or a deadlock before the error reaches the caller.
const WRITE_TRIES: u32 = 50;

/// Connections kept open for reuse.
const POOL_SIZE: usize = 8;

/// Every port on one PostgreSQL database.
pub struct PgStore {
    /// The URL as the client takes it, and the TLS it connects with.
    connection: tls::Connection,
    location: String,
    pool: Mutex<Vec<Client>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // A client closes its connection on its own runtime when dropped:
        // not on a thread of an async runtime either.
        let pool = std::mem::take(self.pool.get_mut().unwrap_or_else(|e| e.into_inner()));
        let _ = blocking(move || {
            drop(pool);
            Ok(())
        });
    }
}

/// `url` without its password, to show people.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let mut out = format!("{scheme}://");
    if let Some(a) = auth {
        out.push_str(a.split_once(':').map_or(a, |(user, _)| user));
        out.push('@');
    }
    // A password given as a query parameter goes too.
    match host.split_once('?') {
        Some((h, query)) => {
            out.push_str(h);
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.to_ascii_lowercase().starts_with("password="))
                .collect();
            if !kept.is_empty() {
                out.push('?');
                out.push_str(&kept.join("&"));
            }
        }
        None => out.push_str(host),
    }
    out
}

/// A failure inside a transaction: PostgreSQL's (which may be retried) or
/// the store's own.
enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Fail {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Fail {
        Fail::Store(e)
    }
}

type TxResult<T> = Result<T, Fail>;

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

fn n(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

impl PgStore {
    /// Connects to the database at `url` (`postgresql://USER@HOST:PORT/DB`)
    /// and runs any migrations it lacks.
    ///
    /// # Errors
    ///
    /// When the server cannot be reached or refuses the login (the error
    /// names the URL without its password), or the schema is newer than
    /// this build's.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let location = redact(url);
        let connection = tls::prepare(url).map_err(|message| StoreError::Backend {
            location: location.clone(),
            message,
            transient: false,
        })?;
        let store = PgStore {
            connection,
            location,
            pool: Mutex::new(Vec::new()),
        };
        blocking(|| {
            let mut client = store.connect()?;
            store.migrate(&mut client)?;
            store.put_back(client);
            Ok(())
        })?;
        Ok(store)
    }

    fn connect(&self) -> Result<Client, StoreError> {
        Client::connect(&self.connection.url, self.connection.tls.clone()).map_err(|e| {
            StoreError::Backend {
                location: self.location.clone(),
                message: format!("cannot connect: {}", full(&e)),
                transient: true,
            }
        })
    }

    fn err(&self, e: &postgres::Error) -> StoreError {
        StoreError::Backend {
            location: self.location.clone(),
            message: full(e),
            transient: broken(e) || retryable(e),
        }
    }

    fn fail(&self, f: Fail) -> StoreError {
        match f {
            Fail::Pg(e) => self.err(&e),
            Fail::Store(e) => e,
        }
    }

    fn take(&self) -> Result<Client, StoreError> {
        let pooled = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match pooled {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    fn put_back(&self, c: Client) {
        if c.is_closed() {
            return;
        }
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_SIZE {
            pool.push(c);
        }
    }

    fn migrate(&self, client: &mut Client) -> Result<(), StoreError> {
        let run = |client: &mut Client| -> TxResult<()> {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS sluice_schema(version BIGINT NOT NULL)")?;
            let found: Option<i64> = tx
                .query_opt("SELECT version FROM sluice_schema", &[])?
                .map(|r| r.get(0));
            let found = match found {
                Some(v) => v,
                None => {
                    tx.execute("INSERT INTO sluice_schema(version) VALUES (0)", &[])?;
                    0
                }
            };
            if found > PG_SCHEMA_VERSION {
                return Err(Fail::Store(StoreError::TooNew {
                    location: self.location.clone(),
                    found,
                    known: PG_SCHEMA_VERSION,
                }));
            }
            for sql in &MIGRATIONS[found as usize..] {
                tx.batch_execute(sql)?;
            }
            tx.execute(
                "UPDATE sluice_schema SET version = $1",
                &[&PG_SCHEMA_VERSION],
            )?;
            tx.commit()?;
            Ok(())
        };
        run(client).map_err(|f| self.fail(f))
    }

    /// Runs `f` in a serializable transaction, again while PostgreSQL aborts
    /// it for a conflict with another; commits what it returns `Ok` for.
    fn write<T: Send>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> TxResult<T> + Send,
    ) -> Result<T, StoreError> {
        blocking(|| self.write_here(f))
    }

    fn write_here<T>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        self.write_at(IsolationLevel::Serializable, f)
    }

    /// As [`PgStore::write`] at another isolation level: `READ COMMITTED`
    /// for the bulk steps of split jobs, whose rows no other transaction
    /// writes and whose checks are row locks, so that several run at once
    /// without failing each other's serialization.
    fn write_at<T>(
        &self,
        isolation: IsolationLevel,
        mut f: impl FnMut(&mut Transaction<'_>) -> TxResult<T>,
    ) -> Result<T, StoreError> {
        let mut client = self.take()?;
        let mut tries = 0;
        let out = loop {
            tries += 1;
            let mut committing = false;
            let attempt = (|| -> TxResult<T> {
                let mut tx = client
                    .build_transaction()
                    .isolation_level(isolation)
                    .start()?;
                let out = f(&mut tx)?;
                committing = true;
                tx.commit()?;
                Ok(out)
            })();
            match attempt {
                Err(Fail::Pg(e)) if retryable(&e) && tries < WRITE_TRIES => {
                    std::thread::sleep(Duration::from_millis(u64::from(tries.min(20))));
                }
                // The connection broke before the commit was sent: nothing
                // was written, so a new connection may do it all again. At
                // the commit no one can tell whether it took: the error
                // goes to the caller (transient), whose job resumes from
                // what the store says it wrote.
                Err(Fail::Pg(e)) if broken(&e) && !committing && tries < WRITE_TRIES => {
                    client = self.connect()?;
                }
                other => break other,
            }
        };
        self.put_back(client);
        out.map_err(|f| self.fail(f))
    }

    /// Runs `f` on a connection of the pool, outside a transaction; again
    /// on a new connection if the one it had broke.
    fn read<T: Send>(
        &self,
        mut f: impl FnMut(&mut Client) -> TxResult<T> + Send,
    ) -> Result<T, StoreError> {
        blocking(|| {
            let mut client = self.take()?;
            let mut out = f(&mut client);
            if matches!(&out, Err(Fail::Pg(e)) if broken(e)) {
                client = self.connect()?;
                out = f(&mut client);
            }
            self.put_back(client);
            out.map_err(|f| self.fail(f))
        })
    }
}

/// Whether the connection is gone (the server went away, restarted, or
/// ended this session), as opposed to an error of the statement.
fn broken(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code()
            .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57"))
        || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Runs `f`, which blocks on PostgreSQL, where blocking is allowed. The
/// client runs a runtime of its own, which cannot be entered from a thread
/// of an async runtime (the server calls the store from its handlers
/// too): there `f` runs on a thread of its own.
fn blocking<T: Send>(f: impl FnOnce() -> Result<T, StoreError> + Send) -> Result<T, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// A PostgreSQL error with what the server said, in full.
fn full(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(inner) = source {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                source = inner.source();
            }
            s
        }
    }
}

const JOB_COLUMNS: &str = "account, id, kind, domain, app_id, display_name, spec, status, phase, \
    status_reason, failure, stop_requested, attempts, total_pieces, completed_pieces, \
    failed_pieces, processed, created, updated, duplicates, failed, field_warnings, \
    field_warnings_by_field, failures, written_through, input_fingerprint, created_ms, \
    started_ms, completed_ms";

impl PgStore {
    fn job_from_row(&self, r: &Row) -> Result<JobRecord, StoreError> {
        let id: String = r.get(1);
        let corrupt = |problem: String| StoreError::Corrupt {
            location: self.location.clone(),
            what: format!("job {id}"),
            problem,
        };
        let kind: String = r.get(2);
        let kind =
            JobKind::from_name(&kind).ok_or_else(|| corrupt(format!("unknown kind {kind:?}")))?;
        let status: String = r.get(7);
        let status = status.parse().map_err(|e| corrupt(format!("{e}")))?;
        let failure: Option<String> = r.get(10);
        let failure = failure
            .as_deref()
            .map(|f| {
                FailureKind::from_name(f).ok_or_else(|| corrupt(format!("failure kind {f:?}")))
            })
            .transpose()?;
        let failures: Vec<String> = serde_json::from_str(r.get::<_, &str>(23))
            .map_err(|e| corrupt(format!("failures: {e}")))?;
        let by_field: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(r.get::<_, &str>(22))
                .map_err(|e| corrupt(format!("field_warnings_by_field: {e}")))?;
        let c = |i: usize| u(r.get::<_, i64>(i));
        Ok(JobRecord {
            account: AccountId::new(r.get::<_, String>(0)),
            kind,
            domain: r.get(3),
            app: r.get(4),
            display_name: r.get(5),
            spec: r.get(6),
            status,
            phase: r.get(8),
            status_reason: r.get(9),
            failure,
            stop_requested: r.get(11),
            attempts: u32::try_from(r.get::<_, i64>(12)).unwrap_or(u32::MAX),
            counters: JobCounters {
                total_pieces: c(13),
                completed_pieces: c(14),
                failed_pieces: c(15),
                processed: c(16),
                created: c(17),
                updated: c(18),
                duplicates: c(19),
                failed: c(20),
                field_warnings: c(21),
                field_warnings_by_field: by_field
                    .into_iter()
                    .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
                    .collect(),
                failures,
            },
            written_through: r.get(24),
            input_fingerprint: r.get(25),
            created_ms: r.get(26),
            started_ms: r.get(27),
            completed_ms: r.get(28),
            id,
        })
    }

    fn job_in(
        &self,
        c: &mut impl postgres::GenericClient,
        job: JobRef<'_>,
    ) -> TxResult<Option<JobRecord>> {
        let row = c.query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE account = $1 AND id = $2"),
            &[&job.account.as_str(), &job.id],
        )?;
        Ok(row.map(|r| self.job_from_row(&r)).transpose()?)
    }

    fn job_or_missing(
        &self,
        c: &mut impl postgres::GenericClient,
        job: JobRef<'_>,
    ) -> TxResult<JobRecord> {
        Ok(self
            .job_in(c, job)?
            .ok_or_else(|| StoreError::NoJob(job.id.to_owned()))?)
    }

    /// Refuses unless the job is running in this attempt (the row locked
    /// until the transaction ends, so that a takeover waits for the write).
    fn require_running(tx: &mut Transaction<'_>, a: Attempt<'_>) -> TxResult<()> {
        let row = tx.query_opt(
            "SELECT status, attempts FROM jobs WHERE account = $1 AND id = $2 FOR UPDATE",
            &[&a.job.account.as_str(), &a.job.id],
        )?;
        let Some(row) = row else {
            return Err(StoreError::NoJob(a.job.id.to_owned()).into());
        };
        let status: String = row.get(0);
        let attempts = u32::try_from(row.get::<_, i64>(1)).unwrap_or(u32::MAX);
        Ok(a.check(status.parse().unwrap_or(JobStatus::Failed), attempts)?)
    }

    /// Profiles from rows of [`PROFILE_SELECT`], their fields made objects.
    fn profiles_of(&self, domain: &str, rows: &[Row]) -> Result<Vec<Profile>, StoreError> {
        let mut shapes: HashMap<String, Vec<String>> = HashMap::new();
        rows.iter()
            .map(|r| {
                let key: String = r.get(1);
                let corrupt = |problem: String| StoreError::Corrupt {
                    location: self.location.clone(),
                    what: format!("profile {key:?} of domain {domain:?}"),
                    problem,
                };
                let shape: String = r
                    .get::<_, Option<String>>(6)
                    .ok_or_else(|| corrupt("its shape is missing".into()))?;
                if !shapes.contains_key(&shape) {
                    let targets =
                        serde_json::from_str(&shape).map_err(|e| corrupt(format!("shape: {e}")))?;
                    shapes.insert(shape.clone(), targets);
                }
                let fields = fields_object(&shapes[&shape], r.get(2)).map_err(corrupt)?;
                Ok(Profile {
                    no: u(r.get(0)),
                    key,
                    fields,
                    created_ms: r.get(3),
                    updated_ms: r.get(4),
                    expires_ms: r.get(5),
                })
            })
            .collect()
    }

    fn domain_id(
        c: &mut impl postgres::GenericClient,
        account: &AccountId,
        name: &str,
    ) -> TxResult<i64> {
        c.query_opt(
            "SELECT id FROM domains WHERE account = $1 AND name = $2",
            &[&account.as_str(), &name],
        )?
        .map(|r| r.get(0))
        .ok_or_else(|| StoreError::NoDomain(name.to_owned()).into())
    }

    fn app_no(
        c: &mut impl postgres::GenericClient,
        account: &AccountId,
        id: &str,
    ) -> TxResult<Option<i64>> {
        Ok(c.query_opt(
            "SELECT app_no FROM apps WHERE account = $1 AND id = $2",
            &[&account.as_str(), &id],
        )?
        .map(|r| r.get(0)))
    }

    /// Sets one text column of a job.
    fn set_column(&self, job: JobRef<'_>, column: &str, value: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                &format!("UPDATE jobs SET {column} = $3 WHERE account = $1 AND id = $2"),
                &[&job.account.as_str(), &job.id, &value],
            )?;
            if n == 0 {
                return Err(StoreError::NoJob(job.id.to_owned()).into());
            }
            Ok(())
        })
    }
}

impl Store for PgStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    fn range_store(&self) -> Option<&dyn super::RangeStore> {
        Some(self)
    }
}

impl JobStore for PgStore {
    fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.write(|tx| {
            if let Some(d) = &job.domain {
                Self::domain_id(tx, &job.account, d)?;
            }
            if let Some(a) = &job.app
                && Self::app_no(tx, &job.account, a)?.is_none()
            {
                return Err(StoreError::NoApp(a.clone()).into());
            }
            let n = tx.execute(
                "INSERT INTO jobs(account, id, kind, domain, app_id, display_name, spec, status, \
                 created_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
                &[
                    &job.account.as_str(),
                    &job.id,
                    &job.kind.as_str(),
                    &job.domain,
                    &job.app,
                    &job.display_name,
                    &job.spec,
                    &JobStatus::Created.as_str(),
                    &job.created_ms,
                ],
            )?;
            if n == 0 {
                return Err(StoreError::JobExists(job.id.clone()).into());
            }
            Ok(())
        })
    }

    fn job(&self, job: JobRef<'_>) -> Result<Option<JobRecord>, StoreError> {
        self.read(|c| self.job_in(c, job))
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let limit = f.limit.map(|l| n(l as u64));
        let offset = n(f.offset as u64);
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
             WHERE ($1::text IS NULL OR account = $1) AND ($2::text IS NULL OR domain = $2) \
             AND ($3::text IS NULL OR kind = $3) \
             AND (cardinality($4::text[]) = 0 OR status = ANY($4)) \
             AND ($5::text IS NULL OR app_id = $5) \
             ORDER BY created_ms DESC, id DESC LIMIT $6 OFFSET $7"
        );
        self.read(|c| {
            let rows = c.query(
                &sql,
                &[
                    &f.account.as_ref().map(AccountId::as_str),
                    &f.domain,
                    &f.kind.map(JobKind::as_str),
                    &statuses,
                    &f.app,
                    &limit,
                    &offset,
                ],
            )?;
            Ok(rows
                .iter()
                .map(|r| self.job_from_row(r))
                .collect::<Result<_, _>>()?)
        })
    }

    fn update_spec(&self, job: JobRef<'_>, spec: &str) -> Result<JobRecord, StoreError> {
        self.write(|tx| {
            let n = tx.execute(
                "UPDATE jobs SET spec = $3 WHERE account = $1 AND id = $2 AND status = 'CREATED'",
                &[&job.account.as_str(), &job.id, &spec],
            )?;
            let record = self.job_or_missing(tx, job)?;
            if n == 0 {
                return Err(StoreError::Transition {
                    id: job.id.to_owned(),
                    from: JobStatus::Created,
                    to: JobStatus::Created,
                    actual: record.status,
                }
                .into());
            }
            Ok(record)
        })
    }

    fn transition(&self, job: JobRef<'_>, t: &Transition<'_>) -> Result<JobRecord, StoreError> {
        self.write(|tx| {
            let next = t.apply(&self.job_or_missing(tx, job)?)?;
            tx.execute(
                "UPDATE jobs SET status = $3, status_reason = $4, failure = $5, attempts = $6, \
                 started_ms = $7, completed_ms = $8 WHERE account = $1 AND id = $2",
                &[
                    &job.account.as_str(),
                    &job.id,
                    &next.status.as_str(),
                    &next.status_reason,
                    &next.failure.map(FailureKind::as_str),
                    &i64::from(next.attempts),
                    &next.started_ms,
                    &next.completed_ms,
                ],
            )?;
            Ok(next)
        })
    }

    fn save_progress(&self, job: JobRef<'_>, c: &JobCounters) -> Result<(), StoreError> {
        let failures = serde_json::to_string(&c.failures).unwrap_or_else(|_| "[]".into());
        let by_field: serde_json::Map<String, serde_json::Value> = c
            .field_warnings_by_field
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        let by_field = serde_json::Value::Object(by_field).to_string();
        self.write(|tx| {
            let count = tx.execute(
                "UPDATE jobs SET total_pieces = $3, completed_pieces = $4, failed_pieces = $5, \
                 processed = $6, duplicates = $7, failed = $8, field_warnings = $9, \
                 failures = $10, field_warnings_by_field = $11 WHERE account = $1 AND id = $2",
                &[
                    &job.account.as_str(),
                    &job.id,
                    &n(c.total_pieces),
                    &n(c.completed_pieces),
                    &n(c.failed_pieces),
                    &n(c.processed),
                    &n(c.duplicates),
                    &n(c.failed),
                    &n(c.field_warnings),
                    &failures,
                    &by_field,
                ],
            )?;
            if count == 0 {
                return Err(StoreError::NoJob(job.id.to_owned()).into());
            }
            Ok(())
        })
    }

    fn set_input_fingerprint(&self, job: JobRef<'_>, fingerprint: &str) -> Result<(), StoreError> {
        self.set_column(job, "input_fingerprint", fingerprint)
    }

    fn set_phase(&self, job: JobRef<'_>, phase: &str) -> Result<(), StoreError> {
        self.set_column(job, "phase", phase)
    }

    fn clear_written(&self, a: Attempt<'_>) -> Result<(), StoreError> {
        self.write(|tx| {
            Self::require_running(tx, a)?;
            tx.execute(
                "UPDATE jobs SET created = 0, updated = 0 WHERE account = $1 AND id = $2",
                &[&a.job.account.as_str(), &a.job.id],
            )?;
            Ok(())
        })
    }

    fn request_stop(&self, job: JobRef<'_>) -> Result<JobRecord, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET stop_requested = true WHERE account = $1 AND id = $2",
                &[&job.account.as_str(), &job.id],
            )?;
            self.job_or_missing(tx, job)
        })
    }
}

impl PieceStore for PgStore {
    fn plan_pieces(&self, a: Attempt<'_>, total: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            Self::require_running(tx, a)?;
            tx.execute(
                "UPDATE jobs SET total_pieces = $3 WHERE account = $1 AND id = $2",
                &[&a.job.account.as_str(), &a.job.id, &n(total)],
            )?;
            Ok(())
        })
    }

    fn complete_piece(&self, a: Attempt<'_>, p: &PieceCounts) -> Result<bool, StoreError> {
        self.write(|tx| {
            Self::require_running(tx, a)?;
            let inserted = tx.execute(
                "INSERT INTO pieces(account, job_id, piece, count, processed, failed, warnings, \
                 failed_piece, attempt) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT DO NOTHING",
                &[
                    &a.job.account.as_str(),
                    &a.job.id,
                    &n(p.index),
                    &n(p.count),
                    &n(p.processed),
                    &n(p.failed),
                    &n(p.warnings),
                    &p.failed_piece,
                    &i64::from(a.attempt),
                ],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            tx.execute(
                "UPDATE jobs SET completed_pieces = completed_pieces + $3, \
                 failed_pieces = failed_pieces + $4, processed = processed + $5, \
                 failed = failed + $6, field_warnings = field_warnings + $7 \
                 WHERE account = $1 AND id = $2",
                &[
                    &a.job.account.as_str(),
                    &a.job.id,
                    &n(p.count),
                    &if p.failed_piece { n(p.count) } else { 0 },
                    &n(p.processed),
                    &n(p.failed),
                    &n(p.warnings),
                ],
            )?;
            Ok(true)
        })
    }

    fn pieces(&self, job: JobRef<'_>) -> Result<Vec<PieceCounts>, StoreError> {
        self.read(|c| {
            let rows = c.query(
                "SELECT piece, count, processed, failed, warnings, failed_piece FROM pieces \
                 WHERE account = $1 AND job_id = $2 ORDER BY piece",
                &[&job.account.as_str(), &job.id],
            )?;
            Ok(rows
                .iter()
                .map(|r| PieceCounts {
                    index: u(r.get(0)),
                    count: u(r.get(1)),
                    processed: u(r.get(2)),
                    failed: u(r.get(3)),
                    warnings: u(r.get(4)),
                    failed_piece: r.get(5),
                })
                .collect())
        })
    }
}

const LEASE_COLUMNS: &str = "account, name, holder, attempt, deadline_ms";

fn lease_from_row(r: &Row) -> Lease {
    Lease {
        account: AccountId::new(r.get::<_, String>(0)),
        name: r.get(1),
        holder: r.get(2),
        attempt: u(r.get(3)),
        deadline_ms: r.get(4),
    }
}

impl LeaseStore for PgStore {
    fn change_lease(
        &self,
        account: &AccountId,
        name: &str,
        change: &LeaseChange<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        self.write(|tx| {
            let current = tx
                .query_opt(
                    &format!(
                        "SELECT {LEASE_COLUMNS} FROM leases WHERE account = $1 AND name = $2 \
                         FOR UPDATE"
                    ),
                    &[&account.as_str(), &name],
                )?
                .map(|r| lease_from_row(&r));
            let next = change(current.as_ref());
            if let Some(l) = &next {
                tx.execute(
                    "INSERT INTO leases(account, name, holder, attempt, deadline_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT(account, name) DO UPDATE SET \
                     holder = excluded.holder, attempt = excluded.attempt, \
                     deadline_ms = excluded.deadline_ms",
                    &[
                        &l.account.as_str(),
                        &l.name,
                        &l.holder,
                        &n(l.attempt),
                        &l.deadline_ms,
                    ],
                )?;
            }
            Ok(next)
        })
    }

    fn lease(&self, account: &AccountId, name: &str) -> Result<Option<Lease>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!("SELECT {LEASE_COLUMNS} FROM leases WHERE account = $1 AND name = $2"),
                &[&account.as_str(), &name],
            )?
            .map(|r| lease_from_row(&r)))
        })
    }
}

const DOMAIN_COLUMNS: &str = "name, default_expiration_days, created_ms, updated_ms, settings";

fn domain_from_row(r: &Row) -> Domain {
    Domain {
        name: r.get(0),
        default_expiration_days: u32::try_from(r.get::<_, i64>(1)).unwrap_or(u32::MAX),
        created_ms: r.get(2),
        updated_ms: r.get(3),
        settings: r.get(4),
    }
}

/// Deletes a domain's expired profiles and finds its next expiry.
/// Live profiles of domain `$1` at `$2`, as [`PgStore::profiles_of`]
/// reads them; callers add their conditions.
const PROFILE_SELECT: &str = "SELECT p.profile_no, p.profile_key, p.field_values, \
    p.created_ms, p.updated_ms, p.expires_ms, s.targets \
    FROM profiles p LEFT JOIN profile_shapes s ON s.id = p.shape_id \
    WHERE p.domain_id = $1 AND p.expires_ms > $2";

/// Terms as an array literal, `{1,-2}`.
fn array_literal(terms: &[i64]) -> String {
    let mut s = String::from("{");
    for (i, t) in terms.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&t.to_string());
    }
    s.push('}');
    s
}

fn purge_domain(tx: &mut Transaction<'_>, domain_id: i64, now_ms: i64) -> TxResult<u64> {
    let purged = tx.execute(
        "DELETE FROM profiles WHERE domain_id = $1 AND expires_ms <= $2",
        &[&domain_id, &now_ms],
    )?;
    tx.execute(
        "UPDATE domains SET next_expiry_ms = \
         (SELECT min(expires_ms) FROM profiles WHERE domain_id = $1) WHERE id = $1",
        &[&domain_id],
    )?;
    Ok(purged)
}

/// The id of the shape of `targets`, made if it is new.
fn shape_id(tx: &mut Transaction<'_>, targets: &[&str]) -> TxResult<i64> {
    let text = serde_json::Value::from(targets.to_vec()).to_string();
    tx.execute(
        "INSERT INTO profile_shapes(targets) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&text],
    )?;
    Ok(tx
        .query_one("SELECT id FROM profile_shapes WHERE targets = $1", &[&text])?
        .get(0))
}

impl ProfileStore for PgStore {
    fn create_domain(&self, account: &AccountId, d: &Domain) -> Result<(), StoreError> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO domains(account, name, default_expiration_days, created_ms, \
                 updated_ms, settings) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                &[
                    &account.as_str(),
                    &d.name,
                    &i64::from(d.default_expiration_days),
                    &d.created_ms,
                    &d.updated_ms,
                    &d.settings,
                ],
            )?;
            if inserted == 0 {
                return Err(StoreError::DomainExists(d.name.clone()).into());
            }
            Ok(())
        })
    }

    fn update_domain(
        &self,
        account: &AccountId,
        name: &str,
        change: &DomainChange<'_>,
    ) -> Result<Domain, StoreError> {
        self.write(|tx| {
            let old = tx
                .query_opt(
                    &format!(
                        "SELECT {DOMAIN_COLUMNS} FROM domains WHERE account = $1 AND name = $2 \
                         FOR UPDATE"
                    ),
                    &[&account.as_str(), &name],
                )?
                .map(|r| domain_from_row(&r))
                .ok_or_else(|| StoreError::NoDomain(name.to_owned()))?;
            let d = old.changed(change)?;
            tx.execute(
                "UPDATE domains SET default_expiration_days = $3, updated_ms = $4, \
                 settings = $5 WHERE account = $1 AND name = $2",
                &[
                    &account.as_str(),
                    &name,
                    &i64::from(d.default_expiration_days),
                    &d.updated_ms,
                    &d.settings,
                ],
            )?;
            Ok(d)
        })
    }

    fn domain(&self, account: &AccountId, name: &str) -> Result<Option<Domain>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE account = $1 AND name = $2"),
                &[&account.as_str(), &name],
            )?
            .map(|r| domain_from_row(&r)))
        })
    }

    fn domains(&self, account: &AccountId) -> Result<Vec<Domain>, StoreError> {
        self.read(|c| {
            Ok(c.query(
                &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE account = $1 ORDER BY name"),
                &[&account.as_str()],
            )?
            .iter()
            .map(domain_from_row)
            .collect())
        })
    }

    fn delete_domain(&self, account: &AccountId, name: &str) -> Result<u64, StoreError> {
        self.write(|tx| {
            let id = Self::domain_id(tx, account, name)?;
            let busy: Option<String> = tx
                .query_opt(
                    "SELECT id FROM jobs WHERE account = $1 AND domain = $2 \
                     AND status IN ('QUEUED', 'RUNNING') LIMIT 1",
                    &[&account.as_str(), &name],
                )?
                .map(|r| r.get(0));
            if let Some(job) = busy {
                return Err(StoreError::DomainBusy {
                    domain: name.to_owned(),
                    job,
                }
                .into());
            }
            let profiles = tx.execute("DELETE FROM profiles WHERE domain_id = $1", &[&id])?;
            for sql in [
                "DELETE FROM pieces WHERE account = $1 AND job_id IN \
                 (SELECT id FROM jobs WHERE account = $1 AND domain = $2)",
                "DELETE FROM jobs WHERE account = $1 AND domain = $2",
                "DELETE FROM domains WHERE account = $1 AND name = $2",
            ] {
                tx.execute(sql, &[&account.as_str(), &name])?;
            }
            Ok(profiles)
        })
    }

    fn write_profiles(&self, b: &ProfileBatch<'_>) -> Result<WriteCounts, StoreError> {
        b.check()?;
        let account = b.attempt.job.account;
        let keys: Vec<&str> = b.rows.iter().map(|r| r.key).collect();
        let values: Vec<&str> = b.rows.iter().map(|r| r.values).collect();
        // Each row's terms as an array literal: unnest takes no array of
        // arrays of different lengths.
        let terms: Vec<String> = b.rows.iter().map(|r| array_literal(r.terms)).collect();
        self.write(|tx| {
            let (domain_id, next_expiry): (i64, Option<i64>) = tx
                .query_opt(
                    "SELECT id, next_expiry_ms FROM domains WHERE account = $1 AND name = $2 \
                     FOR UPDATE",
                    &[&account.as_str(), &b.domain],
                )?
                .map(|r| (r.get(0), r.get(1)))
                .ok_or_else(|| StoreError::NoDomain(b.domain.to_owned()))?;
            Self::require_running(tx, b.attempt)?;
            if next_expiry.is_some_and(|t| t <= b.now_ms) {
                purge_domain(tx, domain_id, b.now_ms)?;
            }
            let Some(last) = b.rows.last() else {
                return Ok(WriteCounts::default());
            };
            let shape = shape_id(tx, b.targets)?;
            // A row inserted has no earlier version: xmax is 0 (PostgreSQL's
            // usual way to tell an upsert's inserts from its updates).
            let created: i64 = tx
                .query_one(
                    "WITH w AS (INSERT INTO profiles(domain_id, profile_key, shape_id, \
                     field_values, created_ms, updated_ms, expires_ms, search_terms) \
                     SELECT $1, k, $2, v, $3, $3, $4, tm::bigint[] \
                     FROM unnest($5::text[], $6::text[], $7::text[]) AS t(k, v, tm) \
                     ON CONFLICT(domain_id, profile_key) DO UPDATE SET \
                     shape_id = excluded.shape_id, field_values = excluded.field_values, \
                     updated_ms = excluded.updated_ms, \
                     expires_ms = greatest(profiles.expires_ms, excluded.expires_ms), \
                     search_terms = excluded.search_terms \
                     RETURNING xmax = 0 AS inserted) \
                     SELECT count(*) FILTER (WHERE inserted) FROM w",
                    &[
                        &domain_id,
                        &shape,
                        &b.now_ms,
                        &b.expires_ms,
                        &keys,
                        &values,
                        &terms,
                    ],
                )?
                .get(0);
            let counts = WriteCounts {
                created: u(created),
                updated: b.rows.len() as u64 - u(created),
            };
            tx.execute(
                "UPDATE domains SET next_expiry_ms = least(coalesce(next_expiry_ms, $2), $2) \
                 WHERE id = $1",
                &[&domain_id, &b.expires_ms],
            )?;
            tx.execute(
                "UPDATE jobs SET created = created + $3, updated = updated + $4, \
                 written_through = $5 WHERE account = $1 AND id = $2",
                &[
                    &account.as_str(),
                    &b.attempt.job.id,
                    &n(counts.created),
                    &n(counts.updated),
                    &last.key.as_bytes(),
                ],
            )?;
            Ok(counts)
        })
    }

    fn profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError> {
        let rows = self.read(|c| {
            let id = Self::domain_id(c, account, domain)?;
            Ok(c.query(
                &format!("{PROFILE_SELECT} AND p.profile_key = $3"),
                &[&id, &now_ms, &key],
            )?)
        })?;
        Ok(self.profiles_of(domain, &rows)?.pop())
    }

    fn profile_by_no(
        &self,
        account: &AccountId,
        domain: &str,
        no: u64,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError> {
        let Ok(no) = i64::try_from(no) else {
            return Ok(None);
        };
        let rows = self.read(|c| {
            let id = Self::domain_id(c, account, domain)?;
            Ok(c.query(
                &format!("{PROFILE_SELECT} AND p.profile_no = $3"),
                &[&id, &now_ms, &no],
            )?)
        })?;
        Ok(self.profiles_of(domain, &rows)?.pop())
    }

    fn search_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        q: &ProfileSearch<'_>,
    ) -> Result<Vec<Profile>, StoreError> {
        let after = i64::try_from(q.after).unwrap_or(i64::MAX);
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        // OR: one overlap with every term; AND: one per group.
        let groups: Vec<Vec<i64>> = if q.all {
            q.groups.to_vec()
        } else {
            vec![q.groups.iter().flatten().copied().collect()]
        };
        let mut sql = format!("{PROFILE_SELECT} AND p.profile_no > $3");
        for k in 0..groups.len() {
            sql.push_str(&format!(" AND p.search_terms && ${}::bigint[]", 5 + k));
        }
        sql.push_str(" ORDER BY p.profile_no LIMIT $4");
        let rows = self.read(|c| {
            let id = Self::domain_id(c, account, domain)?;
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                vec![&id, &q.now_ms, &after, &limit];
            params.extend(
                groups
                    .iter()
                    .map(|g| g as &(dyn postgres::types::ToSql + Sync)),
            );
            Ok(c.query(&sql, &params)?)
        })?;
        self.profiles_of(domain, &rows)
    }

    fn delete_profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let id = Self::domain_id(tx, account, domain)?;
            let live = tx.query_opt(
                "DELETE FROM profiles WHERE domain_id = $1 AND profile_key = $2 \
                 RETURNING expires_ms > $3",
                &[&id, &key, &now_ms],
            )?;
            Ok(live.is_some_and(|r| r.get::<_, bool>(0)))
        })
    }

    fn count_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.read(|c| {
            let id = Self::domain_id(c, account, domain)?;
            let count: i64 = c
                .query_one(
                    "SELECT count(*) FROM profiles WHERE domain_id = $1 AND expires_ms > $2",
                    &[&id, &now_ms],
                )?
                .get(0);
            Ok(u(count))
        })
    }

    fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.write(|tx| {
            let due: Vec<i64> = tx
                .query(
                    "SELECT id FROM domains WHERE next_expiry_ms <= $1 ORDER BY id FOR UPDATE",
                    &[&now_ms],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let mut purged = 0;
            for id in due {
                purged += purge_domain(tx, id, now_ms)?;
            }
            Ok(purged)
        })
    }
}

const APP_COLUMNS: &str = "id, name, tags, created_ms";

fn app_from_row(r: &Row) -> App {
    App {
        id: r.get(0),
        name: r.get(1),
        tags: r.get(2),
        created_ms: r.get(3),
    }
}

const ENDPOINT_COLUMNS: &str = "endpoint_id, channel_type, address, user_id, fields, \
    created_ms, updated_ms, created_by";

fn endpoint_from_row(r: &Row) -> StoredEndpoint {
    StoredEndpoint {
        id: r.get(0),
        channel_type: r.get(1),
        address: r.get(2),
        user_id: r.get(3),
        fields: r.get(4),
        created_ms: r.get(5),
        updated_ms: r.get(6),
        created_by: r.get(7),
    }
}

const SEGMENT_COLUMNS: &str =
    "app_id, segment_id, name, definition, created_ms, updated_ms, version";

fn segment_from_row(r: &Row) -> Segment {
    Segment {
        app: r.get(0),
        id: r.get(1),
        name: r.get(2),
        definition: r.get(3),
        created_ms: r.get(4),
        updated_ms: r.get(5),
        version: u32::try_from(r.get::<_, i64>(6)).unwrap_or(u32::MAX),
    }
}

/// A batch of endpoints as it stands while it is made: the stored ones
/// its keys find, read in two queries, then each endpoint the batch writes,
/// kept here and written in one statement at the end. Finding by key sees
/// the batch's own earlier writes, as a lookup before each write would.
struct EndpointState {
    /// Every endpoint read or written, as it now stands.
    by_id: HashMap<String, StoredEndpoint>,
    /// The ids at each sought address: those read, and those the batch put
    /// there since (kept only while they are still there).
    at: HashMap<(String, String), Vec<String>>,
    /// The ids written, in the order first written.
    written: Vec<String>,
}

impl EndpointState {
    fn read(
        tx: &mut Transaction<'_>,
        no: i64,
        keys: &[EndpointKey<'_>],
    ) -> TxResult<EndpointState> {
        let mut ids: Vec<&str> = Vec::new();
        let (mut channels, mut addresses): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
        for k in keys {
            match *k {
                EndpointKey::Id(id) => ids.push(id),
                EndpointKey::Address(ch, addr) => {
                    channels.push(ch);
                    addresses.push(addr);
                }
            }
        }
        let mut state = EndpointState {
            by_id: HashMap::new(),
            at: HashMap::new(),
            written: Vec::new(),
        };
        for (ch, addr) in channels.iter().zip(&addresses) {
            state
                .at
                .entry(((*ch).to_owned(), (*addr).to_owned()))
                .or_default();
        }
        let found = tx.query(
            &format!(
                "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_no = $1 AND endpoint_id = ANY($2) \
                 UNION \
                 SELECT {ENDPOINT_COLUMNS} FROM endpoints \
                 WHERE app_no = $1 AND (channel_type, address) IN \
                 (SELECT * FROM unnest($3::text[], $4::text[]))"
            ),
            &[&no, &ids, &channels, &addresses],
        )?;
        for row in &found {
            let e = endpoint_from_row(row);
            if let (Some(ch), Some(addr)) = (&e.channel_type, &e.address)
                && let Some(here) = state.at.get_mut(&(ch.clone(), addr.clone()))
            {
                here.push(e.id.clone());
            }
            state.by_id.insert(e.id.clone(), e);
        }
        Ok(state)
    }

    /// What `key` finds now: the endpoint of the id, or the first created
    /// (then lowest id) of those at the address.
    fn find(&self, key: EndpointKey<'_>) -> Option<StoredEndpoint> {
        match key {
            EndpointKey::Id(id) => self.by_id.get(id).cloned(),
            EndpointKey::Address(ch, addr) => self
                .at
                .get(&(ch.to_owned(), addr.to_owned()))?
                .iter()
                .filter_map(|id| self.by_id.get(id))
                .filter(|e| {
                    e.channel_type.as_deref() == Some(ch) && e.address.as_deref() == Some(addr)
                })
                .min_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)))
                .cloned(),
        }
    }

    /// Records `e` as written at `now_ms` by job `ours`, if a job (its creation kept
    /// if it was stored or written before).
    fn put(&mut self, mut e: StoredEndpoint, now_ms: i64, ours: Option<&str>) {
        match self.by_id.get(&e.id) {
            Some(old) => {
                e.created_ms = old.created_ms;
                e.created_by.clone_from(&old.created_by);
            }
            None => {
                e.created_ms = now_ms;
                e.created_by = ours.map(str::to_owned);
            }
        }
        e.updated_ms = now_ms;
        if let (Some(ch), Some(addr)) = (&e.channel_type, &e.address)
            && let Some(here) = self.at.get_mut(&(ch.clone(), addr.clone()))
            && !here.contains(&e.id)
        {
            here.push(e.id.clone());
        }
        self.written.push(e.id.clone());
        self.by_id.insert(e.id.clone(), e);
    }

    /// Writes every endpoint the batch wrote, as it stands at the end, and
    /// their segment memberships.
    fn write(
        mut self,
        tx: &mut Transaction<'_>,
        no: i64,
        now_ms: i64,
        ours: Option<&str>,
        segment: Option<&str>,
    ) -> TxResult<()> {
        let mut seen = std::collections::HashSet::new();
        self.written.retain(|id| seen.insert(id.clone()));
        let rows: Vec<&StoredEndpoint> = self.written.iter().map(|id| &self.by_id[id]).collect();
        let col = |f: fn(&StoredEndpoint) -> Option<&str>| -> Vec<Option<&str>> {
            rows.iter().map(|e| f(e)).collect()
        };
        let ids: Vec<&str> = rows.iter().map(|e| e.id.as_str()).collect();
        let fields: Vec<&str> = rows.iter().map(|e| e.fields.as_str()).collect();
        let created: Vec<i64> = rows.iter().map(|e| e.created_ms).collect();
        tx.execute(
            "INSERT INTO endpoints(app_no, endpoint_id, channel_type, address, user_id, fields, \
             created_ms, updated_ms, created_by) \
             SELECT $1, id, ch, addr, u, f, c, $8, $9 \
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[]) \
             AS t(id, ch, addr, u, f, c) \
             ON CONFLICT(app_no, endpoint_id) DO UPDATE SET channel_type = excluded.channel_type, \
             address = excluded.address, user_id = excluded.user_id, fields = excluded.fields, \
             updated_ms = excluded.updated_ms",
            &[
                &no,
                &ids,
                &col(|e| e.channel_type.as_deref()),
                &col(|e| e.address.as_deref()),
                &col(|e| e.user_id.as_deref()),
                &fields,
                &created,
                &now_ms,
                &ours,
            ],
        )?;
        if let Some(seg) = segment {
            tx.execute(
                "INSERT INTO segment_members(app_no, segment_id, endpoint_id) \
                 SELECT $1, $2, id FROM unnest($3::text[]) AS t(id) ON CONFLICT DO NOTHING",
                &[&no, &seg, &ids],
            )?;
        }
        Ok(())
    }
}

impl AppStore for PgStore {
    fn create_app(&self, account: &AccountId, a: &App) -> Result<(), StoreError> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO apps(account, id, name, tags, created_ms) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[&account.as_str(), &a.id, &a.name, &a.tags, &a.created_ms],
            )?;
            if inserted == 0 {
                return Err(StoreError::AppExists(a.id.clone()).into());
            }
            Ok(())
        })
    }

    fn app(&self, account: &AccountId, id: &str) -> Result<Option<App>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                &format!("SELECT {APP_COLUMNS} FROM apps WHERE account = $1 AND id = $2"),
                &[&account.as_str(), &id],
            )?
            .map(|r| app_from_row(&r)))
        })
    }

    fn apps(&self, account: &AccountId) -> Result<Vec<App>, StoreError> {
        self.read(|c| {
            Ok(c.query(
                &format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE account = $1 ORDER BY created_ms, id"
                ),
                &[&account.as_str()],
            )?
            .iter()
            .map(app_from_row)
            .collect())
        })
    }

    fn delete_app(&self, account: &AccountId, id: &str) -> Result<App, StoreError> {
        self.write(|tx| {
            let row = tx
                .query_opt(
                    &format!(
                        "SELECT {APP_COLUMNS}, app_no FROM apps WHERE account = $1 AND id = $2 \
                         FOR UPDATE"
                    ),
                    &[&account.as_str(), &id],
                )?
                .ok_or_else(|| StoreError::NoApp(id.to_owned()))?;
            let (app, no): (App, i64) = (app_from_row(&row), row.get(4));
            let busy: Option<String> = tx
                .query_opt(
                    "SELECT id FROM jobs WHERE account = $1 AND app_id = $2 \
                     AND status IN ('QUEUED', 'RUNNING') LIMIT 1",
                    &[&account.as_str(), &id],
                )?
                .map(|r| r.get(0));
            if let Some(job) = busy {
                return Err(StoreError::AppBusy {
                    app: id.to_owned(),
                    job,
                }
                .into());
            }
            for table in ["segment_members", "endpoints"] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_no = $1"), &[&no])?;
            }
            tx.execute("DELETE FROM segments WHERE app_id = $1", &[&id])?;
            for sql in [
                "DELETE FROM pieces WHERE account = $1 AND job_id IN \
                 (SELECT id FROM jobs WHERE account = $1 AND app_id = $2)",
                "DELETE FROM jobs WHERE account = $1 AND app_id = $2",
                "DELETE FROM apps WHERE account = $1 AND id = $2",
            ] {
                tx.execute(sql, &[&account.as_str(), &id])?;
            }
            Ok(app)
        })
    }

    fn write_endpoints(
        &self,
        b: &EndpointBatch<'_>,
        merge: &mut EndpointMerge<'_>,
    ) -> Result<Vec<EndpointWrite>, StoreError> {
        let account = b.by.account();
        let ours = b.by.job();
        self.write(|tx| {
            let no = Self::app_no(tx, account, b.app)?
                .ok_or_else(|| StoreError::NoApp(b.app.to_owned()))?;
            if let Some(attempt) = b.by.attempt() {
                Self::require_running(tx, attempt)?;
            }
            if let Some(seg) = b.segment
                && tx
                    .query_opt(
                        "SELECT 1 FROM segments WHERE app_id = $1 AND segment_id = $2",
                        &[&b.app, &seg],
                    )?
                    .is_none()
            {
                return Err(StoreError::NoSegment {
                    app: b.app.to_owned(),
                    segment: seg.to_owned(),
                }
                .into());
            }
            let mut batch = EndpointState::read(tx, no, b.keys)?;
            let mut out = Vec::with_capacity(b.keys.len());
            let (mut created, mut updated) = (0i64, 0i64);
            for (i, key) in b.keys.iter().enumerate() {
                let found = batch.find(*key);
                let existed = b.by.existed(found.as_ref());
                let e = match merge(i, found) {
                    Ok(e) => e,
                    Err(why) => {
                        out.push(EndpointWrite::Refused(why));
                        continue;
                    }
                };
                let id = e.id.clone();
                batch.put(e, b.now_ms, ours);
                if existed {
                    updated += 1;
                    out.push(EndpointWrite::Updated(id));
                } else {
                    created += 1;
                    out.push(EndpointWrite::Created(id));
                }
            }
            batch.write(tx, no, b.now_ms, ours, b.segment)?;
            if let Some(job) = ours {
                tx.execute(
                    "UPDATE jobs SET created = created + $3, updated = updated + $4 \
                     WHERE account = $1 AND id = $2",
                    &[&account.as_str(), &job, &created, &updated],
                )?;
            }
            Ok(out)
        })
    }

    fn endpoint(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<StoredEndpoint>, StoreError> {
        self.read(|c| {
            let Some(no) = Self::app_no(c, account, app)? else {
                return Ok(None);
            };
            Ok(c.query_opt(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_no = $1 AND endpoint_id = $2"
                ),
                &[&no, &id],
            )?
            .map(|r| endpoint_from_row(&r)))
        })
    }

    fn user_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        user_id: &str,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.read(|c| {
            let Some(no) = Self::app_no(c, account, app)? else {
                return Ok(Vec::new());
            };
            Ok(c.query(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_no = $1 AND user_id = $2 \
                     ORDER BY endpoint_id"
                ),
                &[&no, &user_id],
            )?
            .iter()
            .map(endpoint_from_row)
            .collect())
        })
    }

    fn endpoints_after(
        &self,
        account: &AccountId,
        app: &str,
        filter: Option<&EndpointFilter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.read(|c| {
            let no =
                Self::app_no(c, account, app)?.ok_or_else(|| StoreError::NoApp(app.to_owned()))?;
            let driver = filter.and_then(EndpointFilter::driving_segment);
            // Both closures below query: they share the client, and keep a
            // failed query's own error, so a lost connection is retried as
            // any read is.
            let c = std::cell::RefCell::new(c);
            let failed = std::cell::RefCell::new(None);
            let keep = |r: Result<_, postgres::Error>| {
                r.map_err(|e| {
                    let shown = StoreError::Backend {
                        location: self.location(),
                        message: e.to_string(),
                        transient: false,
                    };
                    *failed.borrow_mut() = Some(e);
                    shown
                })
            };
            let mut page = |after: &str, n: usize| {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                let rows = match driver {
                    None => c.borrow_mut().query(
                        &format!(
                            "SELECT {ENDPOINT_COLUMNS} FROM endpoints \
                             WHERE app_no = $1 AND endpoint_id > $2 ORDER BY endpoint_id LIMIT $3"
                        ),
                        &[&no, &after, &n],
                    ),
                    Some(seg) => c.borrow_mut().query(
                        &format!(
                            "SELECT {ENDPOINT_COLUMNS} FROM segment_members \
                             JOIN endpoints USING (app_no, endpoint_id) \
                             WHERE app_no = $1 AND segment_id = $2 AND endpoint_id > $3 \
                             ORDER BY endpoint_id LIMIT $4"
                        ),
                        &[&no, &seg, &after, &n],
                    ),
                };
                keep(rows).map(|rows| rows.iter().map(endpoint_from_row).collect())
            };
            let out = match filter {
                None => page(after.unwrap_or(""), limit),
                Some(filter) => {
                    let mut members = |seg: &str, ids: &[&str]| {
                        keep(c.borrow_mut().query(
                            "SELECT endpoint_id FROM segment_members \
                             WHERE app_no = $1 AND segment_id = $2 AND endpoint_id = ANY($3)",
                            &[&no, &seg, &ids],
                        ))
                        .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                    };
                    filtered_page(
                        &self.location(),
                        filter,
                        after,
                        limit,
                        &mut page,
                        &mut members,
                    )
                }
            };
            if let Some(e) = failed.into_inner() {
                return Err(e.into());
            }
            Ok(out?)
        })
    }

    fn delete_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        which: EndpointsOf<'_>,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.write(|tx| {
            let no =
                Self::app_no(tx, account, app)?.ok_or_else(|| StoreError::NoApp(app.to_owned()))?;
            let (column, value) = match which {
                EndpointsOf::Id(id) => ("endpoint_id", id),
                EndpointsOf::User(user) => ("user_id", user),
            };
            let mut gone: Vec<StoredEndpoint> = tx
                .query(
                    &format!(
                        "DELETE FROM endpoints WHERE app_no = $1 AND {column} = $2 \
                         RETURNING {ENDPOINT_COLUMNS}"
                    ),
                    &[&no, &value],
                )?
                .iter()
                .map(endpoint_from_row)
                .collect();
            gone.sort_by(|a, b| a.id.cmp(&b.id));
            let ids: Vec<&str> = gone.iter().map(|e| e.id.as_str()).collect();
            tx.execute(
                "DELETE FROM segment_members WHERE app_no = $1 AND endpoint_id = ANY($2)",
                &[&no, &ids],
            )?;
            Ok(gone)
        })
    }

    fn create_segment(&self, account: &AccountId, seg: &Segment) -> Result<(), StoreError> {
        self.write(|tx| {
            if Self::app_no(tx, account, &seg.app)?.is_none() {
                return Err(StoreError::NoApp(seg.app.clone()).into());
            }
            tx.execute(
                "INSERT INTO segments(app_id, segment_id, name, definition, created_ms, \
                 updated_ms, version) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &seg.app,
                    &seg.id,
                    &seg.name,
                    &seg.definition,
                    &seg.created_ms,
                    &seg.updated_ms,
                    &i64::from(seg.version),
                ],
            )?;
            Ok(())
        })
    }

    fn segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<Segment>, StoreError> {
        self.read(|c| {
            if Self::app_no(c, account, app)?.is_none() {
                return Ok(None);
            }
            Ok(c.query_opt(
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE app_id = $1 AND segment_id = $2"
                ),
                &[&app, &id],
            )?
            .map(|r| segment_from_row(&r)))
        })
    }

    fn segments(&self, account: &AccountId, app: &str) -> Result<Vec<Segment>, StoreError> {
        self.read(|c| {
            if Self::app_no(c, account, app)?.is_none() {
                return Ok(Vec::new());
            }
            Ok(c.query(
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE app_id = $1 \
                     ORDER BY created_ms, segment_id"
                ),
                &[&app],
            )?
            .iter()
            .map(segment_from_row)
            .collect())
        })
    }

    fn update_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
        name: Option<&str>,
        definition: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError> {
        self.write(|tx| {
            let missing = || StoreError::NoSegment {
                app: app.to_owned(),
                segment: id.to_owned(),
            };
            if Self::app_no(tx, account, app)?.is_none() {
                return Err(missing().into());
            }
            let row = tx
                .query_opt(
                    &format!(
                        "UPDATE segments SET definition = $3, updated_ms = $4, \
                         version = version + 1, name = coalesce($5, name) \
                         WHERE app_id = $1 AND segment_id = $2 \
                         RETURNING {SEGMENT_COLUMNS}"
                    ),
                    &[&app, &id, &definition, &now_ms, &name],
                )?
                .ok_or_else(missing)?;
            Ok(segment_from_row(&row))
        })
    }

    fn delete_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Segment, StoreError> {
        self.write(|tx| {
            let missing = || StoreError::NoSegment {
                app: app.to_owned(),
                segment: id.to_owned(),
            };
            let Some(no) = Self::app_no(tx, account, app)? else {
                return Err(missing().into());
            };
            let row = tx
                .query_opt(
                    &format!(
                        "DELETE FROM segments WHERE app_id = $1 AND segment_id = $2 \
                         RETURNING {SEGMENT_COLUMNS}"
                    ),
                    &[&app, &id],
                )?
                .ok_or_else(missing)?;
            tx.execute(
                "DELETE FROM segment_members WHERE app_no = $1 AND segment_id = $2",
                &[&no, &id],
            )?;
            Ok(segment_from_row(&row))
        })
    }

    fn segment_channel_counts(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            let Some(no) = Self::app_no(c, account, app)? else {
                return Ok(Vec::new());
            };
            Ok(c.query(
                "SELECT coalesce(e.channel_type, ''), count(*) FROM segment_members m \
                 JOIN endpoints e ON e.app_no = m.app_no AND e.endpoint_id = m.endpoint_id \
                 WHERE m.app_no = $1 AND m.segment_id = $2 \
                 GROUP BY e.channel_type ORDER BY e.channel_type",
                &[&no, &id],
            )?
            .iter()
            .map(|r| (r.get::<_, String>(0), u(r.get(1))))
            .collect())
        })
    }
}

impl BucketStore for PgStore {
    fn set_bucket_settings(
        &self,
        account: &AccountId,
        b: &BucketSettings,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO bucket_settings(account, bucket, region, owner) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT(account, bucket) DO UPDATE SET region = $3, owner = $4",
                &[&account.as_str(), &b.bucket, &b.region, &b.owner],
            )?;
            Ok(())
        })
    }

    fn bucket_settings(
        &self,
        account: &AccountId,
        bucket: &str,
    ) -> Result<Option<BucketSettings>, StoreError> {
        self.read(|c| {
            Ok(c.query_opt(
                "SELECT bucket, region, owner FROM bucket_settings \
                 WHERE account = $1 AND bucket = $2",
                &[&account.as_str(), &bucket],
            )?
            .map(|r| BucketSettings {
                bucket: r.get(0),
                region: r.get(1),
                owner: r.get(2),
            }))
        })
    }

    fn forget_bucket(&self, account: &AccountId, bucket: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM bucket_settings WHERE account = $1 AND bucket = $2",
                &[&account.as_str(), &bucket],
            )?;
            Ok(())
        })
    }

    fn bucket_accounts(&self, bucket: &str) -> Result<Vec<AccountId>, StoreError> {
        self.read(|c| {
            Ok(c.query(
                "SELECT account FROM bucket_settings WHERE bucket = $1 ORDER BY account",
                &[&bucket],
            )?
            .iter()
            .map(|r| AccountId::new(r.get::<_, String>(0)))
            .collect())
        })
    }
}

/// Databases of a PostgreSQL server for tests: `SLUICE_TEST_PG` names a
/// server and a user that may create databases
/// (`postgresql://postgres@127.0.0.1:5432/postgres`); each [`TestServer::fresh`]
/// is a new, empty database, dropped with the `TestServer`.
#[doc(hidden)]
pub struct TestServer {
    admin: String,
    made: Mutex<Vec<String>>,
}

#[doc(hidden)]
impl TestServer {
    /// The server `SLUICE_TEST_PG` names, or `None` (after saying how to
    /// name one) when it is not set; with `SLUICE_REQUIRE_PG=1` (CI) a
    /// missing server fails the test instead.
    pub fn from_env(test: &str) -> Option<TestServer> {
        match std::env::var("SLUICE_TEST_PG") {
            Ok(admin) if !admin.is_empty() => Some(TestServer {
                admin,
                made: Mutex::new(Vec::new()),
            }),
            _ => {
                assert!(
                    std::env::var("SLUICE_REQUIRE_PG").as_deref() != Ok("1"),
                    "{test}: SLUICE_REQUIRE_PG=1 but SLUICE_TEST_PG names no server"
                );
                eprintln!(
                    "{test}: skipped: set SLUICE_TEST_PG to a PostgreSQL URL whose user may \
                     create databases (postgresql://postgres@127.0.0.1:5432/postgres); .ci/run \
                     starts one"
                );
                None
            }
        }
    }

    /// The URL of a new, empty database.
    pub fn fresh(&self) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let name = format!(
            "sluice_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut admin = Client::connect(&self.admin, NoTls).expect("SLUICE_TEST_PG connects");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).expect("a test database is made");
        }
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(name.clone());
        let (base, query) = match self.admin.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (self.admin.as_str(), String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        format!("{server}/{name}{query}")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let made = std::mem::take(self.made.get_mut().unwrap_or_else(|e| e.into_inner()));
        if let Ok(mut admin) = Client::connect(&self.admin, NoTls) {
            for name in made {
                let _ =
                    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PgStore, TestServer, redact};
    use crate::store::{Store, StoreError};

    #[test]
    fn conformance() {
        let Some(server) = TestServer::from_env("store::postgres::conformance") else {
            return;
        };
        crate::store::conformance::all(&|| {
            Box::new(PgStore::open(&server.fresh()).unwrap()) as Box<dyn Store>
        });
    }

    #[test]
    fn processes_starting_at_once_migrate_once() {
        let Some(server) = TestServer::from_env("store::postgres::migrate") else {
            return;
        };
        let url = server.fresh();
        let opened: Vec<_> = std::thread::scope(|s| {
            let all: Vec<_> = (0..4).map(|_| s.spawn(|| PgStore::open(&url))).collect();
            all.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for store in opened {
            store.unwrap();
        }
        let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        let v: i64 = c
            .query_one("SELECT version FROM sluice_schema", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, super::PG_SCHEMA_VERSION);
        // A newer schema is refused, not written over.
        c.execute("UPDATE sluice_schema SET version = version + 1", &[])
            .unwrap();
        assert!(matches!(
            PgStore::open(&url),
            Err(StoreError::TooNew { .. })
        ));
    }

    #[test]
    fn an_unreachable_server_is_named_without_its_password() {
        // A port nothing listens on (the discard port, closed here).
        let err = PgStore::open("postgresql://ann:secret@127.0.0.1:9/sluice?connect_timeout=2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("postgresql://ann@127.0.0.1:9/sluice"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("cannot connect"), "{err}");
    }

    #[test]
    fn connections_are_encrypted_and_checked_as_sslmode_says() {
        let Some(server) = TestServer::from_env("store::postgres::tls") else {
            return;
        };
        let Ok(ca) = std::env::var("SLUICE_TEST_PG_CA") else {
            assert!(
                std::env::var("SLUICE_REQUIRE_PG").as_deref() != Ok("1"),
                "SLUICE_TEST_PG_CA: the CA of a cluster with TLS (tests/pg/cluster.sh)"
            );
            eprintln!("store::postgres::tls skipped: SLUICE_TEST_PG_CA is not set");
            return;
        };
        let url = server.fresh();
        let with = |url: &str, extra: &str| {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}{extra}")
        };
        let encrypted = |url: &str| -> Result<bool, String> {
            let store = PgStore::open(url).map_err(|e| e.to_string())?;
            let mut c = store.connect().map_err(|e| e.to_string())?;
            let row = c
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .map_err(|e| e.to_string())?;
            Ok(row.get(0))
        };
        let full = format!("sslmode=verify-full&sslrootcert={ca}");
        assert_eq!(encrypted(&url), Ok(true), "prefer, the default");
        assert_eq!(encrypted(&with(&url, &full)), Ok(true));
        assert_eq!(encrypted(&with(&url, "sslmode=require")), Ok(true));
        assert_eq!(encrypted(&with(&url, "sslmode=disable")), Ok(false));
        // Not signed by the system's roots: refused, saying why.
        let err = encrypted(&with(&url, "sslmode=verify-full&sslrootcert=system")).unwrap_err();
        assert!(
            err.contains("cannot connect") && err.contains("certificate"),
            "{err}"
        );
        // A host name the certificate does not carry (the address is
        // right): verify-ca takes it, verify-full does not.
        let renamed = with(
            &url.replacen("@127.0.0.1:", "@db.invalid:", 1),
            "hostaddr=127.0.0.1",
        );
        let ca_only = format!("sslmode=verify-ca&sslrootcert={ca}");
        assert_eq!(encrypted(&with(&renamed, &ca_only)), Ok(true));
        let err = encrypted(&with(&renamed, &full)).unwrap_err();
        assert!(err.contains("certificate"), "{err}");
    }

    #[test]
    fn passwords_are_left_out_of_locations() {
        assert_eq!(
            redact("postgresql://ann:secret@db.example:5432/sluice"),
            "postgresql://ann@db.example:5432/sluice"
        );
        assert_eq!(
            redact("postgresql://db.example/sluice?user=ann&password=secret&sslmode=disable"),
            "postgresql://db.example/sluice?user=ann&sslmode=disable"
        );
        assert_eq!(redact("postgresql://ann@h/db"), "postgresql://ann@h/db");
    }
}
