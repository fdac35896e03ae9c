//! Every store port on one SQLite file (`SqliteStore`, feature `sqlite`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};

use super::{
    AccountId, App, AppStore, Attempt, BucketSettings, BucketStore, Domain, DomainChange,
    EndpointBatch, EndpointFilter, EndpointKey, EndpointMerge, EndpointWrite, EndpointsOf,
    FailureKind, JobCounters, JobFilter, JobKind, JobRecord, JobRef, JobStatus, JobStore, Lease,
    LeaseChange, LeaseStore, NewJob, PieceCounts, PieceStore, Profile, ProfileBatch, ProfileSearch,
    ProfileStore, Segment, Store, StoreError, StoredEndpoint, Transition, WriteCounts,
    fields_object, filtered_page,
};

mod pending;
use pending::{Pending, each_entry, each_keys_chunk, key_records, put_key};

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "sluice.db";

/// The page size of a new database. Measured on the canonical job (see
/// `benches/store.sh`): 16 KiB and 64 KiB pages write equally fast, 4 KiB
/// pages a third slower; 16 KiB keeps point reads cheap.
pub const PAGE_SIZE: u32 = 16384;

/// When the writer's commits hand the WAL to the checkpointer thread.
#[derive(Clone, Copy, Debug)]
struct WalPages {
    /// WAL pages after which a commit asks for a checkpoint.
    ask: u32,
    /// WAL pages after which a commit also waits for it, so that the next
    /// transaction starts the WAL over: SQLite rewinds the WAL only when a
    /// write transaction begins with every frame copied. The WAL then stays
    /// about this size and its pages stay in the page cache; one that grew
    /// without end would be as costly to write as the database itself.
    restart: u32,
}

/// 16 MiB (every bulk batch, few small commits) and 512 MiB. Measured on
/// the canonical job and `benches/import.sh`: a writer that waits past
/// 128 MiB waits every five profile batches and every endpoint batch
/// (16.4-17.9 s and 27 s); past 512 MiB, 14.2-16.3 s and 20-25 s; past
/// 1 GiB the WAL's fresh pages cost more than the waits (16.2-17.3 s).
const WAL_PAGES: WalPages = WalPages {
    ask: 1024,
    restart: 32768,
};

/// The writer's page cache (KiB) while it writes profiles: they go in key
/// order, each page written once, so a bigger cache only holds memory
/// (256 MiB cost the canonical job 190 MiB of peak and no time).
const PROFILE_CACHE_KIB: i64 = 32 * 1024;

/// The writer's page cache (KiB) while it writes endpoints: their address
/// and user indexes take inserts at random, and every page missing from
/// the cache is read back from the file.
const ENDPOINT_CACHE_KIB: i64 = 256 * 1024;

/// Migrations, in order; `PRAGMA user_version` says how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    "
    CREATE TABLE domains(
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        default_expiration_days INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        -- no live profile of the domain expires before this (NULL: none
        -- expires); purges run only once it has passed
        next_expiry_ms INTEGER
    );
    CREATE TABLE apps(
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE jobs(
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        domain TEXT,
        display_name TEXT,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        status_reason TEXT,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        total_pieces INTEGER NOT NULL DEFAULT 0,
        completed_pieces INTEGER NOT NULL DEFAULT 0,
        failed_pieces INTEGER NOT NULL DEFAULT 0,
        processed INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        field_warnings INTEGER NOT NULL DEFAULT 0,
        field_warnings_by_field TEXT NOT NULL DEFAULT '{}',
        failures TEXT NOT NULL DEFAULT '[]',
        written_through BLOB,
        input_fingerprint TEXT,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        completed_ms INTEGER
    );
    CREATE INDEX jobs_by_created ON jobs(created_ms);
    CREATE TABLE profiles(
        domain_id INTEGER NOT NULL,
        profile_key TEXT NOT NULL,
        fields TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY(domain_id, profile_key)
    ) WITHOUT ROWID;
    CREATE VIEW live_profiles AS
        SELECT d.name AS domain, p.profile_key, p.fields,
               p.created_ms, p.updated_ms, p.expires_ms
        FROM profiles p JOIN domains d ON d.id = p.domain_id
        WHERE p.expires_ms > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
    CREATE TABLE endpoints(
        app_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        channel_type TEXT,
        address TEXT,
        user_id TEXT,
        fields TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY(app_id, endpoint_id)
    ) WITHOUT ROWID;
    CREATE TABLE segments(
        app_id TEXT NOT NULL,
        segment_id TEXT NOT NULL,
        name TEXT,
        definition TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        PRIMARY KEY(app_id, segment_id)
    ) WITHOUT ROWID;
    CREATE TABLE segment_members(
        app_id TEXT NOT NULL,
        segment_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        PRIMARY KEY(app_id, segment_id, endpoint_id)
    ) WITHOUT ROWID;
    ",
    // 2: what the API layer keeps of domains; whose fault a failure was.
    "
    ALTER TABLE domains ADD COLUMN updated_ms INTEGER;
    ALTER TABLE domains ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    UPDATE domains SET updated_ms = created_ms;
    ALTER TABLE jobs ADD COLUMN failure TEXT;
    ",
    // 3: Pinpoint-style apps, their endpoints, segments and import jobs.
    "
    ALTER TABLE apps ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE jobs ADD COLUMN app_id TEXT;
    ALTER TABLE jobs ADD COLUMN phase TEXT;
    CREATE INDEX jobs_by_app ON jobs(app_id, created_ms);
    ALTER TABLE endpoints ADD COLUMN created_ms INTEGER;
    CREATE INDEX endpoints_by_address ON endpoints(app_id, channel_type, address);
    CREATE INDEX endpoints_by_user ON endpoints(app_id, user_id);
    ALTER TABLE segments ADD COLUMN updated_ms INTEGER;
    ALTER TABLE segments ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX members_by_endpoint ON segment_members(app_id, endpoint_id);
    ",
    // 4: what sluice knows of buckets beyond the objects: region and owner
    // (Import/Export checks both).
    "
    CREATE TABLE bucket_settings(
        bucket TEXT PRIMARY KEY,
        region TEXT,
        owner TEXT
    ) WITHOUT ROWID;
    ",
    // 5: accounts in every aggregate's key; typed job kinds with a spec;
    // leases and pieces kept in the store (replacing lock files).
    "
    CREATE TABLE domains_v5(
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        default_expiration_days INTEGER NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        settings TEXT NOT NULL DEFAULT '{}',
        next_expiry_ms INTEGER,
        UNIQUE(account, name)
    );
    INSERT INTO domains_v5(id, account, name, default_expiration_days, created_ms, updated_ms,
                           settings, next_expiry_ms)
        SELECT id, '000000000000', name, default_expiration_days, created_ms,
               coalesce(updated_ms, created_ms), settings, next_expiry_ms FROM domains;
    DROP VIEW live_profiles;
    DROP TABLE domains;
    ALTER TABLE domains_v5 RENAME TO domains;
    CREATE VIEW live_profiles AS
        SELECT d.account, d.name AS domain, p.profile_key, p.fields,
               p.created_ms, p.updated_ms, p.expires_ms
        FROM profiles p JOIN domains d ON d.id = p.domain_id
        WHERE p.expires_ms > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);

    CREATE TABLE apps_v5(
        account TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '{}',
        created_ms INTEGER NOT NULL,
        PRIMARY KEY(account, id)
    ) WITHOUT ROWID;
    INSERT INTO apps_v5 SELECT '000000000000', id, name, tags, created_ms FROM apps;
    DROP TABLE apps;
    ALTER TABLE apps_v5 RENAME TO apps;

    CREATE TABLE jobs_v5(
        account TEXT NOT NULL,
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        domain TEXT,
        app_id TEXT,
        display_name TEXT,
        spec TEXT NOT NULL,
        status TEXT NOT NULL,
        phase TEXT,
        status_reason TEXT,
        failure TEXT,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        total_pieces INTEGER NOT NULL DEFAULT 0,
        completed_pieces INTEGER NOT NULL DEFAULT 0,
        failed_pieces INTEGER NOT NULL DEFAULT 0,
        processed INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        field_warnings INTEGER NOT NULL DEFAULT 0,
        field_warnings_by_field TEXT NOT NULL DEFAULT '{}',
        failures TEXT NOT NULL DEFAULT '[]',
        written_through BLOB,
        input_fingerprint TEXT,
        created_ms INTEGER NOT NULL,
        started_ms INTEGER,
        completed_ms INTEGER,
        PRIMARY KEY(account, id)
    ) WITHOUT ROWID;
    INSERT INTO jobs_v5(account, id, kind, domain, app_id, display_name, spec, status, phase,
        status_reason, failure, stop_requested, attempts, total_pieces, completed_pieces,
        failed_pieces, processed, created, updated, duplicates, failed, field_warnings,
        field_warnings_by_field, failures, written_through, input_fingerprint, created_ms,
        started_ms, completed_ms)
        SELECT '000000000000', id, kind, domain, app_id, display_name, request, status, phase,
        status_reason, failure, stop_requested, attempts, total_pieces, completed_pieces,
        failed_pieces, processed, created, updated, duplicates, failed, field_warnings,
        field_warnings_by_field, failures, written_through, input_fingerprint, created_ms,
        started_ms, completed_ms FROM jobs;
    DROP TABLE jobs;
    ALTER TABLE jobs_v5 RENAME TO jobs;
    CREATE INDEX jobs_by_created ON jobs(account, created_ms, id);
    CREATE INDEX jobs_by_app ON jobs(account, app_id, created_ms);
    CREATE INDEX jobs_by_domain ON jobs(account, domain, created_ms);
    CREATE INDEX jobs_by_status ON jobs(status);

    CREATE TABLE bucket_settings_v5(
        account TEXT NOT NULL,
        bucket TEXT NOT NULL,
        region TEXT,
        owner TEXT,
        PRIMARY KEY(account, bucket)
    ) WITHOUT ROWID;
    INSERT INTO bucket_settings_v5 SELECT '000000000000', bucket, region, owner
        FROM bucket_settings;
    DROP TABLE bucket_settings;
    ALTER TABLE bucket_settings_v5 RENAME TO bucket_settings;

    CREATE TABLE leases(
        account TEXT NOT NULL,
        name TEXT NOT NULL,
        holder TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        deadline_ms INTEGER NOT NULL,
        PRIMARY KEY(account, name)
    ) WITHOUT ROWID;
    CREATE TABLE pieces(
        account TEXT NOT NULL,
        job_id TEXT NOT NULL,
        piece INTEGER NOT NULL,
        count INTEGER NOT NULL,
        processed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        warnings INTEGER NOT NULL,
        failed_piece INTEGER NOT NULL,
        attempt INTEGER NOT NULL,
        PRIMARY KEY(account, job_id, piece)
    ) WITHOUT ROWID;
    ALTER TABLE endpoints ADD COLUMN created_by TEXT;
    ",
    // 6: a profile keeps its values and the id of their shape (the field
    // names, kept once), not a JSON object naming every field on every
    // row: rows less than half the size, and bulk loads twice as fast.
    // `profile_fields` and `live_profiles` show the objects as before.
    r#"
    CREATE TABLE profile_shapes(
        id INTEGER PRIMARY KEY,
        targets TEXT NOT NULL UNIQUE,
        paths TEXT NOT NULL
    );
    CREATE TABLE profiles_v6(
        domain_id INTEGER NOT NULL,
        profile_key TEXT NOT NULL,
        shape_id INTEGER NOT NULL,
        field_values TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY(domain_id, profile_key)
    ) WITHOUT ROWID;
    INSERT INTO profiles_v6
        SELECT domain_id, profile_key, 0, fields, created_ms, updated_ms, expires_ms
        FROM profiles;
    DROP VIEW live_profiles;
    DROP TABLE profiles;
    ALTER TABLE profiles_v6 RENAME TO profiles;
    CREATE VIEW profile_fields AS
        SELECT p.domain_id, p.profile_key,
            CASE WHEN p.shape_id = 0 THEN p.field_values ELSE (
                WITH RECURSIVE b(i, doc) AS (
                    SELECT 0, json_object()
                    UNION ALL
                    SELECT i + 1, json_set(doc, s.paths ->> i, p.field_values ->> i)
                    FROM b WHERE i < json_array_length(s.paths)
                )
                SELECT doc FROM b ORDER BY i DESC LIMIT 1
            ) END AS fields,
            p.created_ms, p.updated_ms, p.expires_ms
        FROM profiles p LEFT JOIN profile_shapes s ON s.id = p.shape_id;
    CREATE VIEW live_profiles AS
        SELECT d.account, d.name AS domain, f.profile_key, f.fields,
               f.created_ms, f.updated_ms, f.expires_ms
        FROM profile_fields f JOIN domains d ON d.id = f.domain_id
        WHERE f.expires_ms > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER);
    "#,
    // 7: endpoints and segment members are keyed by the app's number, not
    // its 32-character id: every key of their three B-trees and indexes
    // began with the same 32 bytes, compared at every step of every
    // lookup and insert (a Pinpoint import of 1 M endpoints took 16 s with
    // them, 12 s without). `app_endpoints` shows them with the app's id.
    "
    CREATE TABLE apps_v7(
        app_no INTEGER PRIMARY KEY AUTOINCREMENT,
        account TEXT NOT NULL,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        tags TEXT NOT NULL DEFAULT '{}',
        created_ms INTEGER NOT NULL,
        UNIQUE(account, id)
    );
    INSERT INTO apps_v7(account, id, name, tags, created_ms)
        SELECT account, id, name, tags, created_ms FROM apps ORDER BY created_ms, id;
    DROP TABLE apps;
    ALTER TABLE apps_v7 RENAME TO apps;

    CREATE TABLE endpoints_v7(
        app_no INTEGER NOT NULL,
        endpoint_id TEXT NOT NULL,
        channel_type TEXT,
        address TEXT,
        user_id TEXT,
        fields TEXT NOT NULL,
        created_ms INTEGER,
        updated_ms INTEGER NOT NULL,
        created_by TEXT,
        PRIMARY KEY(app_no, endpoint_id)
    ) WITHOUT ROWID;
    INSERT INTO endpoints_v7
        SELECT a.app_no, e.endpoint_id, e.channel_type, e.address, e.user_id, e.fields,
               e.created_ms, e.updated_ms, e.created_by
        FROM endpoints e JOIN apps a ON a.id = e.app_id;
    DROP TABLE endpoints;
    ALTER TABLE endpoints_v7 RENAME TO endpoints;
    CREATE INDEX endpoints_by_address ON endpoints(app_no, channel_type, address);
    CREATE INDEX endpoints_by_user ON endpoints(app_no, user_id);

    CREATE TABLE segment_members_v7(
        app_no INTEGER NOT NULL,
        segment_id TEXT NOT NULL,
        endpoint_id TEXT NOT NULL,
        PRIMARY KEY(app_no, segment_id, endpoint_id)
    ) WITHOUT ROWID;
    INSERT INTO segment_members_v7
        SELECT a.app_no, m.segment_id, m.endpoint_id
        FROM segment_members m JOIN apps a ON a.id = m.app_id;
    DROP TABLE segment_members;
    ALTER TABLE segment_members_v7 RENAME TO segment_members;
    CREATE INDEX members_by_endpoint ON segment_members(app_no, endpoint_id);

    CREATE VIEW app_endpoints AS
        SELECT a.account, a.id AS app_id, e.endpoint_id, e.channel_type, e.address,
               e.user_id, e.fields, e.created_ms, e.updated_ms, e.created_by
        FROM endpoints e JOIN apps a ON a.app_no = e.app_no;
    ",
    // 8: profiles are numbered in their domain (their ProfileId), and
    // searched by term. A term index kept row by row in a B-tree cost
    // more than the whole job (every batch dirtied most of its pages):
    // a batch's terms go to a file (`pending`), and are folded
    // into `search_index`, a blob of sorted (term, number) pairs per
    // bucket of terms, once a job has written (`settle_search`).
    "
    ALTER TABLE profiles ADD COLUMN profile_no INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE domains ADD COLUMN next_profile_no INTEGER NOT NULL DEFAULT 1;
    UPDATE profiles SET profile_no = n.no FROM (
        SELECT domain_id, profile_key,
            row_number() OVER (PARTITION BY domain_id ORDER BY profile_key) AS no
        FROM profiles) n
    WHERE n.domain_id = profiles.domain_id AND n.profile_key = profiles.profile_key;
    UPDATE domains SET next_profile_no = 1 + coalesce(
        (SELECT max(profile_no) FROM profiles p WHERE p.domain_id = domains.id), 0);
    CREATE TABLE profile_keys(
        domain_id INTEGER NOT NULL,
        block INTEGER NOT NULL,
        entries BLOB NOT NULL,
        PRIMARY KEY(domain_id, block)
    ) WITHOUT ROWID;
    CREATE TABLE search_index(
        domain_id INTEGER NOT NULL,
        bucket INTEGER NOT NULL,
        entries BLOB NOT NULL,
        PRIMARY KEY(domain_id, bucket)
    ) WITHOUT ROWID;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const JOB_COLUMNS: &str = "account, id, kind, domain, app_id, display_name, spec, status, phase, \
    status_reason, failure, stop_requested, attempts, total_pieces, completed_pieces, \
    failed_pieces, processed, created, updated, duplicates, failed, field_warnings, \
    field_warnings_by_field, failures, written_through, input_fingerprint, created_ms, \
    started_ms, completed_ms";

const DOMAIN_COLUMNS: &str = "name, default_expiration_days, created_ms, updated_ms, settings";

fn domain_from_row(r: &Row<'_>) -> rusqlite::Result<Domain> {
    Ok(Domain {
        name: r.get(0)?,
        default_expiration_days: r.get(1)?,
        created_ms: r.get(2)?,
        updated_ms: r.get(3)?,
        settings: r.get(4)?,
    })
}

/// Every port on one SQLite file, `DB_FILE` in a data directory.
///
/// One connection writes (behind a mutex; SQLite has one writer at a
/// time) and others read. Several processes may open the same directory:
/// SQLite serializes their writes, and leases keep two runners off one
/// job.
pub struct SqliteStore {
    path: PathBuf,
    location: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Stopped before the writer's last checkpoint.
    checkpointer: Option<Checkpointer>,
    /// Search entries not folded yet.
    pending: Pending,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, running any
    /// migrations it lacks.
    ///
    /// # Errors
    ///
    /// When the directory or database cannot be created or opened, or the
    /// database is from a newer sluice.
    pub fn open(dir: impl AsRef<Path>) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_with(dir.as_ref(), WAL_PAGES)
    }

    fn open_with(dir: &Path, wal: WalPages) -> Result<SqliteStore, StoreError> {
        let location = dir.join(DB_FILE).display().to_string();
        crate::crypto::create_private_dir_all(dir).map_err(|e| StoreError::Backend {
            location: dir.display().to_string(),
            message: format!("the data directory cannot be made: {e}"),
            transient: false,
        })?;
        let path = dir.join(DB_FILE);
        // Made here, readable only by its owner (SQLite gives its WAL and
        // shared-memory files the same mode): every profile is in it.
        match crate::crypto::create_private(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(StoreError::Backend {
                    location: location.clone(),
                    message: format!("the store file cannot be made: {e}"),
                    transient: false,
                });
            }
        }
        let mut writer = connect(&path).map_err(db_err(&location))?;
        // Two processes creating the same new database at once can get
        // SQLITE_BUSY without the busy handler being asked (SQLite's
        // deadlock avoidance while the file turns into WAL mode): try again.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match set_up(&mut writer, &location) {
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other?,
            }
        }
        let checkpointer = Checkpointer::start(&path, &location)?;
        writer
            .wal_hook(Some(checkpointer.commit_hook(wal)))
            .map_err(db_err(&location))?;
        Ok(SqliteStore {
            pending: Pending::beside(&path),
            path,
            location,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            checkpointer: Some(checkpointer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        db_err(&self.location)
    }

    /// A pending search file that could not be written or read.
    fn io_error(&self, e: &std::io::Error) -> StoreError {
        StoreError::Backend {
            location: self.location.clone(),
            message: format!("search entries beside the database: {e}"),
            transient: false,
        }
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction open:
        // rusqlite rolls back when the transaction is dropped.
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` in an immediate transaction of the writer, committing what
    /// it did when it returns `Ok`.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.writer();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let out = f(&tx)?;
        tx.commit().map_err(self.db())?;
        Ok(out)
    }

    /// Runs `f` on a reading connection.
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => connect(&self.path).map_err(self.db())?,
        };
        let out = f(&conn);
        self.readers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
        out
    }

    /// A domain's row id, or [`StoreError::NoDomain`].
    fn domain_id(
        &self,
        c: &Connection,
        account: &AccountId,
        name: &str,
    ) -> Result<i64, StoreError> {
        c.prepare_cached("SELECT id FROM domains WHERE account = ?1 AND name = ?2")
            .and_then(|mut s| {
                s.query_row([account.as_str(), name], |r| r.get(0))
                    .optional()
            })
            .map_err(self.db())?
            .ok_or_else(|| StoreError::NoDomain(name.to_owned()))
    }

    /// The live profile of domain `?1` at `?3` whose key is `?2`, its
    /// fields made an object.
    fn profile_where(
        &self,
        c: &Connection,
        domain: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<Profile>, StoreError> {
        let found = c
            .prepare_cached(
                "SELECT p.profile_no, p.profile_key, p.field_values, p.created_ms, \
                 p.updated_ms, p.expires_ms, p.shape_id, s.targets \
                 FROM profiles p LEFT JOIN profile_shapes s ON s.id = p.shape_id \
                 WHERE p.domain_id = ?1 AND p.profile_key = ?2 AND p.expires_ms > ?3",
            )
            .and_then(|mut s| {
                s.query_row(params, |r| {
                    let profile = Profile {
                        no: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                        key: r.get(1)?,
                        fields: r.get(2)?,
                        created_ms: r.get(3)?,
                        updated_ms: r.get(4)?,
                        expires_ms: r.get(5)?,
                    };
                    Ok((profile, r.get::<_, i64>(6)?, r.get::<_, Option<String>>(7)?))
                })
                .optional()
            })
            .map_err(self.db())?;
        let Some((mut profile, shape, targets)) = found else {
            return Ok(None);
        };
        // Shape 0: rows from before shapes, whose values are the object.
        if shape != 0 {
            let corrupt = |problem: String| StoreError::Corrupt {
                location: self.location.clone(),
                what: format!("profile {:?} of domain {domain:?}", profile.key),
                problem,
            };
            let targets: Vec<String> = targets
                .ok_or_else(|| corrupt(format!("its shape {shape} is missing")))
                .and_then(|t| {
                    serde_json::from_str(&t).map_err(|e| corrupt(format!("shape {shape}: {e}")))
                })?;
            profile.fields = fields_object(&targets, &profile.fields).map_err(corrupt)?;
        }
        Ok(Some(profile))
    }

    /// The keys of profiles by number: from their blocks of
    /// `profile_keys`, and those not folded yet from the pending keys
    /// files. Numbers with no key (none, or deleted since) are left out.
    fn keys_of(
        &self,
        c: &Connection,
        domain_id: i64,
        nos: &[i64],
    ) -> Result<std::collections::HashMap<i64, String>, StoreError> {
        let mut found = std::collections::HashMap::new();
        let mut block = c
            .prepare_cached("SELECT entries FROM profile_keys WHERE domain_id = ?1 AND block = ?2")
            .map_err(self.db())?;
        let mut blocks: Vec<i64> = nos.iter().map(|&n| block_of(n)).collect();
        blocks.sort_unstable();
        blocks.dedup();
        for b in blocks {
            let blob: Option<Vec<u8>> = block
                .query_row(params![domain_id, b], |r| r.get(0))
                .optional()
                .map_err(self.db())?;
            for (no, key) in blob.as_deref().map(key_records).into_iter().flatten() {
                if nos.contains(&no) {
                    found.insert(no, String::from_utf8_lossy(key).into_owned());
                }
            }
        }
        if found.len() < nos.len() {
            let files = self
                .pending
                .files(domain_id)
                .map_err(|e| self.io_error(&e))?;
            for f in files.iter().filter(|f| is_keys_file(f)) {
                each_keys_chunk(f, |chunk| {
                    for (no, key) in key_records(chunk) {
                        if nos.contains(&no) {
                            found.insert(no, String::from_utf8_lossy(key).into_owned());
                        }
                    }
                })
                .map_err(|e| self.io_error(&e))?;
            }
        }
        Ok(found)
    }

    /// The profile numbers each of `terms` (sorted) points at in a domain:
    /// from the folded index, a bucket's blob searched by halves, and from
    /// the entries not folded yet, read through.
    fn postings(
        &self,
        c: &Connection,
        domain_id: i64,
        terms: &[i64],
    ) -> Result<std::collections::HashMap<i64, Vec<i64>>, StoreError> {
        let mut found: std::collections::HashMap<i64, Vec<i64>> = std::collections::HashMap::new();
        let mut bucket = c
            .prepare_cached("SELECT entries FROM search_index WHERE domain_id = ?1 AND bucket = ?2")
            .map_err(self.db())?;
        for &term in terms {
            let blob: Option<Vec<u8>> = bucket
                .query_row(params![domain_id, bucket_of(term)], |r| r.get(0))
                .optional()
                .map_err(self.db())?;
            let Some(blob) = blob else { continue };
            let entries = SearchEntries(&blob);
            let mut at = entries.first_at_least(term);
            while let Some((t, no)) = entries.get(at).filter(|(t, _)| *t == term) {
                found.entry(t).or_default().push(no);
                at += 1;
            }
        }
        let files = self
            .pending
            .files(domain_id)
            .map_err(|e| self.io_error(&e))?;
        for f in files.iter().filter(|f| !is_keys_file(f)) {
            each_entry(f, |e| {
                let (t, no) = entry(e);
                if terms.binary_search(&t).is_ok() {
                    found.entry(t).or_default().push(no);
                }
            })
            .map_err(|e| self.io_error(&e))?;
        }
        Ok(found)
    }

    /// Refuses unless the job is running in this attempt: writes belong to
    /// the running attempt of a job.
    fn require_running(&self, conn: &Connection, a: Attempt<'_>) -> Result<(), StoreError> {
        let row: Option<(String, u32)> = conn
            .prepare_cached("SELECT status, attempts FROM jobs WHERE account = ?1 AND id = ?2")
            .and_then(|mut s| {
                s.query_row([a.job.account.as_str(), a.job.id], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(self.db())?;
        let Some((status, attempts)) = row else {
            return Err(StoreError::NoJob(a.job.id.to_owned()));
        };
        a.check(status.parse().unwrap_or(JobStatus::Failed), attempts)
    }

    fn job_in(&self, conn: &Connection, job: JobRef<'_>) -> Result<Option<JobRecord>, StoreError> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE account = ?1 AND id = ?2");
        let raw = conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row([job.account.as_str(), job.id], RawJob::from_row)
                    .optional()
            })
            .map_err(self.db())?;
        raw.map(|r| r.into_record(&self.location)).transpose()
    }

    fn job_or_missing(&self, conn: &Connection, job: JobRef<'_>) -> Result<JobRecord, StoreError> {
        self.job_in(conn, job)?
            .ok_or_else(|| StoreError::NoJob(job.id.to_owned()))
    }

    /// Runs SQLite's `PRAGMA integrity_check`; `Ok(())` when it says `ok`.
    ///
    /// # Errors
    ///
    /// The problems it lists, one per line, or a database error.
    pub fn integrity_check(&self) -> Result<(), String> {
        self.read(|c| {
            let lines: Vec<String> =
                all(c, "PRAGMA integrity_check", [], |r| r.get(0)).map_err(self.db())?;
            Ok(lines)
        })
        .map_err(|e| e.to_string())
        .and_then(|lines| {
            if lines == ["ok"] {
                Ok(())
            } else {
                Err(lines.join("\n"))
            }
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        drop(self.checkpointer.take());
        // Leave a small WAL behind; failing here loses nothing.
        let _ = self
            .writer()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // NORMAL in WAL mode: a commit survives the process dying at once; an
    // OS crash or power cut may lose the last commits, never corrupt.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Copies the WAL into the database on a thread and connection of its own,
/// in place of SQLite's automatic checkpoints, which run on the writer
/// after its commits: on the canonical job they were 38% of the writer's
/// time (mostly the kernel taking in the database's new pages), and the
/// writer is what the job waits for.
///
/// The writer's commit hook asks for a checkpoint once the WAL holds
/// [`WalPages::ask`], and waits for it past [`WalPages::restart`], which
/// keeps the WAL from growing without end. Checkpoints are passive:
/// they never wait on readers or the writer, and what one cannot copy yet
/// the next one does. Durability is SQLite's either way.
struct Checkpointer {
    shared: Arc<(Mutex<Checkpoints>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Checkpoints asked for and done, counted.
#[derive(Default)]
struct Checkpoints {
    asked: u64,
    done: u64,
    closing: bool,
}

impl Checkpointer {
    fn start(path: &Path, location: &str) -> Result<Checkpointer, StoreError> {
        let conn = connect(path).map_err(db_err(location))?;
        let shared = Arc::new((Mutex::new(Checkpoints::default()), Condvar::new()));
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("sluice-checkpoint".into())
            .spawn(move || checkpoint_when_asked(&conn, &theirs))
            .map_err(|e| StoreError::Backend {
                location: location.to_owned(),
                message: format!("the checkpoint thread cannot start: {e}"),
                transient: true,
            })?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// The writer's hook, called after each commit with the WAL's size in
    /// pages.
    fn commit_hook(
        &self,
        wal: WalPages,
    ) -> impl FnMut(&mut rusqlite::hooks::Wal, std::ffi::c_int) -> rusqlite::Result<()> + Send + 'static
    {
        let shared = Arc::clone(&self.shared);
        move |_, pages| {
            let pages = u32::try_from(pages).unwrap_or(0);
            if pages < wal.ask {
                return Ok(());
            }
            let (lock, cv) = &*shared;
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            s.asked += 1;
            let asked = s.asked;
            cv.notify_all();
            if pages >= wal.restart {
                let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
                while s.done < asked && !s.closing {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s = cv
                        .wait_timeout(s, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            Ok(())
        }
    }
}

fn checkpoint_when_asked(conn: &Connection, shared: &(Mutex<Checkpoints>, Condvar)) {
    let (lock, cv) = shared;
    loop {
        let asked = {
            let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
            while s.done == s.asked && !s.closing {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.closing {
                return;
            }
            s.asked
        };
        // Busy or failed, it is tried again on the next ask; the writer's
        // last checkpoint when the store closes copies what is left.
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        let mut s = lock.lock().unwrap_or_else(|e| e.into_inner());
        s.done = asked;
        cv.notify_all();
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).closing = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Turns SQLite's errors into the store's, naming the file.
fn db_err(location: &str) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |e| StoreError::Backend {
        location: location.to_owned(),
        transient: is_busy(&e),
        message: e.to_string(),
    }
}

const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// WAL mode, the writer's settings and the migrations.
fn set_up(writer: &mut Connection, location: &str) -> Result<(), StoreError> {
    let db = db_err(location);
    writer
        .pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(db)?;
    let mode: String = writer
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(db)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend {
            location: location.to_owned(),
            message: format!("journal_mode is {mode}, WAL could not be set"),
            transient: false,
        });
    }
    writer
        .pragma_update(None, "cache_size", -PROFILE_CACHE_KIB)
        .map_err(db)?;
    migrate(writer, location)
}

fn migrate(conn: &mut Connection, location: &str) -> Result<(), StoreError> {
    let db = db_err(location);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            location: location.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        });
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql).map_err(db)?;
    }
    if version < 8 {
        // Profiles numbered by migration 8: their numbers' keys.
        backfill_profile_keys(&tx).map_err(db)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(db)?;
    tx.commit().map_err(db)
}

/// A job row as SQLite has it, before its kind, status and failures are
/// parsed.
struct RawJob {
    record: JobRecord,
    kind: String,
    status: String,
    failures: String,
    by_field: String,
    failure: Option<String>,
}

impl RawJob {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawJob> {
        let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
        Ok(RawJob {
            kind: r.get(2)?,
            status: r.get(7)?,
            failure: r.get(10)?,
            by_field: r.get(22)?,
            failures: r.get(23)?,
            record: JobRecord {
                account: AccountId::new(r.get::<_, String>(0)?),
                id: r.get(1)?,
                kind: JobKind::Profiles,
                domain: r.get(3)?,
                app: r.get(4)?,
                display_name: r.get(5)?,
                spec: r.get(6)?,
                status: JobStatus::Created,
                phase: r.get(8)?,
                status_reason: r.get(9)?,
                failure: None,
                stop_requested: r.get(11)?,
                attempts: r.get(12)?,
                counters: JobCounters {
                    total_pieces: n(13)?,
                    completed_pieces: n(14)?,
                    failed_pieces: n(15)?,
                    processed: n(16)?,
                    created: n(17)?,
                    updated: n(18)?,
                    duplicates: n(19)?,
                    failed: n(20)?,
                    field_warnings: n(21)?,
                    field_warnings_by_field: Vec::new(),
                    failures: Vec::new(),
                },
                written_through: r.get(24)?,
                input_fingerprint: r.get(25)?,
                created_ms: r.get(26)?,
                started_ms: r.get(27)?,
                completed_ms: r.get(28)?,
            },
        })
    }

    fn into_record(self, location: &str) -> Result<JobRecord, StoreError> {
        let corrupt = |problem: String| StoreError::Corrupt {
            location: location.to_owned(),
            what: format!("job {}", self.record.id),
            problem,
        };
        let kind = JobKind::from_name(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown kind {:?}", self.kind)))?;
        let status = self.status.parse().map_err(|e| corrupt(format!("{e}")))?;
        let failures =
            serde_json::from_str(&self.failures).map_err(|e| corrupt(format!("failures: {e}")))?;
        let by_field: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.by_field)
                .map_err(|e| corrupt(format!("field_warnings_by_field: {e}")))?;
        let failure = self
            .failure
            .as_deref()
            .map(|f| {
                FailureKind::from_name(f).ok_or_else(|| corrupt(format!("failure kind {f:?}")))
            })
            .transpose()?;
        let mut record = self.record;
        record.kind = kind;
        record.status = status;
        record.failure = failure;
        record.counters.failures = failures;
        record.counters.field_warnings_by_field = by_field
            .into_iter()
            .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
            .collect();
        Ok(record)
    }
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Deletes a domain's expired profiles and finds its next expiry.
fn purge_domain(conn: &Connection, domain_id: i64, now_ms: i64) -> rusqlite::Result<u64> {
    let n = conn.execute(
        "DELETE FROM profiles WHERE domain_id = ?1 AND expires_ms <= ?2",
        params![domain_id, now_ms],
    )?;
    conn.execute(
        "UPDATE domains SET next_expiry_ms = \
         (SELECT min(expires_ms) FROM profiles WHERE domain_id = ?1) WHERE id = ?1",
        [domain_id],
    )?;
    Ok(n as u64)
}

/// Buckets of the search index: a term's top 16 bits. The canonical
/// domain's ~30 M entries make ~7 KiB a bucket: one read a term.
fn bucket_of(term: i64) -> i64 {
    term >> 48
}

/// (term, profile number) pairs, [`ENTRY`] bytes each, little-endian:
/// a batch's terms in a pending file, a bucket's sorted in `search_index`.
#[derive(Clone, Copy)]
struct SearchEntries<'a>(&'a [u8]);

/// A term's 8 bytes and a number's low 5 (numbers stay below 2^40,
/// [`MAX_PROFILE_NO`]): the index is a fifth smaller than with 8.
const ENTRY: usize = 13;

/// The greatest profile number SQLite's index can hold.
const MAX_PROFILE_NO: i64 = (1 << 40) - 1;

impl SearchEntries<'_> {
    fn len(self) -> usize {
        self.0.len() / ENTRY
    }

    fn get(self, i: usize) -> Option<(i64, i64)> {
        self.0.get(i * ENTRY..(i + 1) * ENTRY).map(entry)
    }

    fn iter(self) -> impl Iterator<Item = (i64, i64)> {
        (0..self.len()).filter_map(move |i| self.get(i))
    }

    /// Where the first entry of `term` or above is, in sorted entries.
    fn first_at_least(self, term: i64) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).is_some_and(|(t, _)| t < term) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// One entry's (term, number), from its [`ENTRY`] bytes.
fn entry(e: &[u8]) -> (i64, i64) {
    let mut t = [0u8; 8];
    let mut no = [0u8; 8];
    t.copy_from_slice(&e[..8]);
    no[..5].copy_from_slice(&e[8..ENTRY]);
    (i64::from_le_bytes(t), i64::from_le_bytes(no))
}

fn put_entries(out: &mut Vec<u8>, entries: impl Iterator<Item = (i64, i64)>) {
    for (t, no) in entries {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&no.to_le_bytes()[..5]);
    }
}

/// Profile numbers a block of `profile_keys` holds: 256, ~9 KiB of keys
/// on the canonical domain.
fn block_of(no: i64) -> i64 {
    no >> 8
}

/// Writes (number, key) records into their blocks of `profile_keys`,
/// merged with what the blocks hold. `records` sorted by number.
fn put_keys(tx: &Connection, domain_id: i64, records: &[(i64, &[u8])]) -> rusqlite::Result<()> {
    let mut old =
        tx.prepare_cached("SELECT entries FROM profile_keys WHERE domain_id = ?1 AND block = ?2")?;
    let mut put = tx.prepare_cached(
        "INSERT OR REPLACE INTO profile_keys(domain_id, block, entries) VALUES (?1, ?2, ?3)",
    )?;
    let mut blob = Vec::new();
    for group in records.chunk_by(|a, b| block_of(a.0) == block_of(b.0)) {
        let block = block_of(group[0].0);
        let before: Option<Vec<u8>> = old
            .query_row(params![domain_id, block], |r| r.get(0))
            .optional()?;
        blob.clear();
        match before {
            None => {
                for &(no, key) in group {
                    put_key(&mut blob, no, key);
                }
            }
            Some(before) => {
                let mut all: Vec<(i64, &[u8])> = key_records(&before).collect();
                all.extend_from_slice(group);
                // The later record of a number wins (none should repeat).
                all.sort_by_key(|r| r.0);
                all.dedup_by_key(|r| r.0);
                for (no, key) in all {
                    put_key(&mut blob, no, key);
                }
            }
        }
        put.execute(params![domain_id, block, blob])?;
    }
    Ok(())
}

/// The keys of profiles numbered by migration 8, into `profile_keys`.
fn backfill_profile_keys(tx: &Connection) -> rusqlite::Result<()> {
    let mut rows = tx.prepare(
        "SELECT domain_id, profile_no, profile_key FROM profiles ORDER BY domain_id, profile_no",
    )?;
    let all: Vec<(i64, i64, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for domain in all.chunk_by(|a, b| a.0 == b.0) {
        let records: Vec<(i64, &[u8])> = domain
            .iter()
            .map(|(_, no, k)| (*no, k.as_bytes()))
            .collect();
        put_keys(tx, domain[0].0, &records)?;
    }
    Ok(())
}

/// Whether a pending file holds keys (not terms).
fn is_keys_file(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(".keys"))
}

/// Entries folded at once: ~256 MiB of them in memory (the job's
/// records are gone by then).
const SETTLE_ENTRIES: usize = 16 << 20;

/// Folds a domain's pending search entries into its index, a range of
/// buckets at a time (each pass reads the pending files again and keeps
/// its range's entries), each bucket's blob merged with them in order.
/// Returns the files folded, to remove once the transaction commits.
fn settle(tx: &Connection, domain_id: i64, pending: &Pending) -> Result<Vec<PathBuf>, String> {
    let files = pending
        .take(domain_id)
        .map_err(|e| format!("search entries: {e}"))?;
    let db = |e: rusqlite::Error| e.to_string();
    // New profiles' numbers and keys into their blocks.
    let mut keys: Vec<u8> = Vec::new();
    let mut spans: Vec<(i64, usize, usize)> = Vec::new();
    for f in files.iter().filter(|f| is_keys_file(f)) {
        each_keys_chunk(f, |chunk| {
            for (no, key) in key_records(chunk) {
                spans.push((no, keys.len(), keys.len() + key.len()));
                keys.extend_from_slice(key);
            }
        })
        .map_err(|e| format!("profile keys {}: {e}", f.display()))?;
    }
    spans.sort_by_key(|s| s.0);
    let records: Vec<(i64, &[u8])> = spans.iter().map(|&(no, a, b)| (no, &keys[a..b])).collect();
    put_keys(tx, domain_id, &records).map_err(db)?;
    drop(records);
    drop(keys);
    let files_terms: Vec<&PathBuf> = files.iter().filter(|f| !is_keys_file(f)).collect();
    let bytes: u64 = files_terms
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let total = usize::try_from(bytes).unwrap_or(usize::MAX) / ENTRY;
    if total == 0 {
        return Ok(files);
    }
    let passes = (total / SETTLE_ENTRIES + 1) as i64;
    let buckets: i64 = 1 << 16;
    let mut old = tx
        .prepare_cached(
            "SELECT bucket, entries FROM search_index \
             WHERE domain_id = ?1 AND bucket >= ?2 AND bucket < ?3 ORDER BY bucket",
        )
        .map_err(db)?;
    let mut put = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO search_index(domain_id, bucket, entries) VALUES (?1, ?2, ?3)",
        )
        .map_err(db)?;
    for pass in 0..passes {
        // Buckets from -2^15 (terms are signed) in `passes` ranges.
        let lo = -(buckets / 2) + buckets * pass / passes;
        let hi = -(buckets / 2) + buckets * (pass + 1) / passes;
        let mut fresh: Vec<(i64, i64)> = Vec::with_capacity(total / passes as usize + 1);
        for f in &files_terms {
            each_entry(f, |e| {
                let (t, no) = entry(e);
                if (lo..hi).contains(&bucket_of(t)) {
                    fresh.push((t, no));
                }
            })
            .map_err(|e| format!("search entries {}: {e}", f.display()))?;
        }
        // On the global pool: its threads are idle once the job has written.
        rayon::slice::ParallelSliceMut::par_sort_unstable(&mut fresh[..]);
        fresh.dedup();
        let mut stored: std::collections::HashMap<i64, Vec<u8>> = old
            .query_map(params![domain_id, lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(db)?;
        let mut blob = Vec::new();
        for group in fresh.chunk_by(|a, b| bucket_of(a.0) == bucket_of(b.0)) {
            let bucket = bucket_of(group[0].0);
            blob.clear();
            match stored.remove(&bucket) {
                // A new bucket: the group is sorted already.
                None => put_entries(&mut blob, group.iter().copied()),
                Some(before) => {
                    let mut merged: Vec<(i64, i64)> = SearchEntries(&before).iter().collect();
                    merged.extend_from_slice(group);
                    merged.sort_unstable();
                    merged.dedup();
                    put_entries(&mut blob, merged.into_iter());
                }
            }
            put.execute(params![domain_id, bucket, blob]).map_err(db)?;
        }
    }
    Ok(files)
}

/// Profiles a statement upserts at once: one statement of many rows costs
/// SQLite a third less per row than a row a statement
/// (examples/store_writer).
const PROFILES_PER_STATEMENT: usize = 64;

/// The upsert of `rows` profiles: `?1` the domain, `?2` the shape, `?3`
/// the time, `?4` the expiry, `?5` the number of the first row if it is
/// new (each next row's one more), then each row's key and values.
fn upsert_profiles_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO profiles (domain_id, profile_key, shape_id, field_values, created_ms, \
         updated_ms, expires_ms, profile_no) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        let (k, v) = (6 + 2 * i, 7 + 2 * i);
        sql.push_str(&format!("(?1, ?{k}, ?2, ?{v}, ?3, ?3, ?4, ?5 + {i})"));
    }
    sql.push_str(
        " ON CONFLICT(domain_id, profile_key) DO UPDATE SET \
         shape_id = excluded.shape_id, field_values = excluded.field_values, \
         updated_ms = excluded.updated_ms, expires_ms = max(expires_ms, excluded.expires_ms)",
    );
    sql
}

/// Upserts a batch's rows, [`PROFILES_PER_STATEMENT`] at a time; a new
/// row numbered `first_no` plus its place in the batch.
fn upsert_profiles(
    tx: &Connection,
    domain_id: i64,
    shape: i64,
    first_no: i64,
    b: &ProfileBatch<'_>,
) -> rusqlite::Result<()> {
    let full = upsert_profiles_sql(PROFILES_PER_STATEMENT);
    for (n, chunk) in b.rows.chunks(PROFILES_PER_STATEMENT).enumerate() {
        let tail;
        let sql = if chunk.len() == PROFILES_PER_STATEMENT {
            &full
        } else {
            tail = upsert_profiles_sql(chunk.len());
            &tail
        };
        let mut st = tx.prepare_cached(sql)?;
        st.raw_bind_parameter(1, domain_id)?;
        st.raw_bind_parameter(2, shape)?;
        st.raw_bind_parameter(3, b.now_ms)?;
        st.raw_bind_parameter(4, b.expires_ms)?;
        st.raw_bind_parameter(5, first_no + (n * PROFILES_PER_STATEMENT) as i64)?;
        for (i, row) in chunk.iter().enumerate() {
            st.raw_bind_parameter(6 + 2 * i, row.key)?;
            st.raw_bind_parameter(7 + 2 * i, row.values)?;
        }
        st.raw_execute()?;
    }
    Ok(())
}

/// The id of the shape of `targets`, made if it is new.
fn shape_id(tx: &Connection, targets: &[&str]) -> rusqlite::Result<i64> {
    let text = serde_json::Value::from(targets.to_vec()).to_string();
    // The same targets as SQLite JSON paths, every label quoted, for the
    // views: `Address.City` is `$."Address"."City"`.
    let paths: Vec<String> = targets
        .iter()
        .map(|t| {
            let mut p = String::from("$");
            for label in t.split('.') {
                p.push_str(".\"");
                p.push_str(label);
                p.push('"');
            }
            p
        })
        .collect();
    tx.prepare_cached("INSERT OR IGNORE INTO profile_shapes(targets, paths) VALUES (?1, ?2)")?
        .execute(params![text, serde_json::Value::from(paths).to_string()])?;
    tx.prepare_cached("SELECT id FROM profile_shapes WHERE targets = ?1")?
        .query_row([text], |r| r.get(0))
}

/// Every row `sql` selects, each made by `from_row`, through the
/// connection's statement cache.
fn all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from_row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    c.prepare_cached(sql)?
        .query_map(params, from_row)?
        .collect()
}

fn app_exists(c: &Connection, account: &AccountId, id: &str) -> rusqlite::Result<bool> {
    app_no(c, account, id).map(|o| o.is_some())
}

/// The number an app's endpoints and segment members are keyed by, if the
/// account has the app.
fn app_no(c: &Connection, account: &AccountId, id: &str) -> rusqlite::Result<Option<i64>> {
    c.prepare_cached("SELECT app_no FROM apps WHERE account = ?1 AND id = ?2")?
        .query_row([account.as_str(), id], |r| r.get(0))
        .optional()
}

const APP_COLUMNS: &str = "id, name, tags, created_ms";

fn app_from_row(r: &Row<'_>) -> rusqlite::Result<App> {
    Ok(App {
        id: r.get(0)?,
        name: r.get(1)?,
        tags: r.get(2)?,
        created_ms: r.get(3)?,
    })
}

const ENDPOINT_COLUMNS: &str = "endpoint_id, channel_type, address, user_id, fields, \
    coalesce(created_ms, updated_ms), updated_ms, created_by";

fn endpoint_from_row(r: &Row<'_>) -> rusqlite::Result<StoredEndpoint> {
    Ok(StoredEndpoint {
        id: r.get(0)?,
        channel_type: r.get(1)?,
        address: r.get(2)?,
        user_id: r.get(3)?,
        fields: r.get(4)?,
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
        created_by: r.get(7)?,
    })
}

/// The first created of the endpoints found (by creation time, then id),
/// if any.
fn first_created<F>(
    found: rusqlite::Result<rusqlite::MappedRows<'_, F>>,
) -> rusqlite::Result<Option<StoredEndpoint>>
where
    F: FnMut(&Row<'_>) -> rusqlite::Result<StoredEndpoint>,
{
    let mut first: Option<StoredEndpoint> = None;
    for e in found? {
        let e = e?;
        if first
            .as_ref()
            .is_none_or(|f| (e.created_ms, &e.id) < (f.created_ms, &f.id))
        {
            first = Some(e);
        }
    }
    Ok(first)
}

const SEGMENT_COLUMNS: &str =
    "app_id, segment_id, name, definition, created_ms, coalesce(updated_ms, created_ms), version";

fn segment_from_row(r: &Row<'_>) -> rusqlite::Result<Segment> {
    Ok(Segment {
        app: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        definition: r.get(3)?,
        created_ms: r.get(4)?,
        updated_ms: r.get(5)?,
        version: r.get(6)?,
    })
}

const LEASE_COLUMNS: &str = "account, name, holder, attempt, deadline_ms";

fn lease_from_row(r: &Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        account: AccountId::new(r.get::<_, String>(0)?),
        name: r.get(1)?,
        holder: r.get(2)?,
        attempt: r.get::<_, i64>(3)?.max(0) as u64,
        deadline_ms: r.get(4)?,
    })
}

impl Store for SqliteStore {
    fn location(&self) -> String {
        self.location.clone()
    }
}

impl JobStore for SqliteStore {
    fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.write(|tx| {
            if let Some(d) = &job.domain {
                self.domain_id(tx, &job.account, d)?;
            }
            if let Some(a) = &job.app
                && !app_exists(tx, &job.account, a).map_err(self.db())?
            {
                return Err(StoreError::NoApp(a.clone()));
            }
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO jobs(account, id, kind, domain, app_id, display_name, \
                     spec, status, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        job.account.as_str(),
                        job.id,
                        job.kind.as_str(),
                        job.domain,
                        job.app,
                        job.display_name,
                        job.spec,
                        JobStatus::Created.as_str(),
                        job.created_ms,
                    ],
                )
                .map_err(self.db())?;
            if n == 0 {
                return Err(StoreError::JobExists(job.id.clone()));
            }
            Ok(())
        })
    }

    fn job(&self, job: JobRef<'_>) -> Result<Option<JobRecord>, StoreError> {
        self.read(|c| self.job_in(c, job))
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let statuses: Vec<&str> = f.statuses.iter().map(|s| s.as_str()).collect();
        let statuses = serde_json::to_string(&statuses).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs \
             WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR domain = ?2) \
             AND (?3 IS NULL OR kind = ?3) \
             AND (?4 = '[]' OR status IN (SELECT value FROM json_each(?4))) \
             AND (?5 IS NULL OR app_id = ?5) \
             ORDER BY created_ms DESC, id DESC LIMIT ?6 OFFSET ?7"
        );
        let limit = f.limit.map_or(-1, |l| i(l as u64));
        let raws: Vec<RawJob> = self.read(|c| {
            all(
                c,
                &sql,
                params![
                    f.account.as_ref().map(AccountId::as_str),
                    f.domain,
                    f.kind.map(JobKind::as_str),
                    statuses,
                    f.app,
                    limit,
                    i(f.offset as u64)
                ],
                RawJob::from_row,
            )
            .map_err(self.db())
        })?;
        raws.into_iter()
            .map(|r| r.into_record(&self.location))
            .collect()
    }

    fn update_spec(&self, job: JobRef<'_>, spec: &str) -> Result<JobRecord, StoreError> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE jobs SET spec = ?3 WHERE account = ?1 AND id = ?2 AND status = 'CREATED'",
                    params![job.account.as_str(), job.id, spec],
                )
                .map_err(self.db())?;
            let record = self.job_or_missing(tx, job)?;
            if n == 0 {
                return Err(StoreError::Transition {
                    id: job.id.to_owned(),
                    from: JobStatus::Created,
                    to: JobStatus::Created,
                    actual: record.status,
                });
            }
            Ok(record)
        })
    }

    fn transition(&self, job: JobRef<'_>, t: &Transition<'_>) -> Result<JobRecord, StoreError> {
        self.write(|tx| {
            let next = t.apply(&self.job_or_missing(tx, job)?)?;
            tx.execute(
                "UPDATE jobs SET status = ?3, status_reason = ?4, failure = ?5, attempts = ?6, \
                 started_ms = ?7, completed_ms = ?8 WHERE account = ?1 AND id = ?2",
                params![
                    job.account.as_str(),
                    job.id,
                    next.status.as_str(),
                    next.status_reason,
                    next.failure.map(FailureKind::as_str),
                    next.attempts,
                    next.started_ms,
                    next.completed_ms
                ],
            )
            .map_err(self.db())?;
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
        let n = self
            .writer()
            .prepare_cached(
                "UPDATE jobs SET total_pieces = ?3, completed_pieces = ?4, failed_pieces = ?5, \
                 processed = ?6, duplicates = ?7, failed = ?8, field_warnings = ?9, \
                 failures = ?10, field_warnings_by_field = ?11 WHERE account = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    job.account.as_str(),
                    job.id,
                    i(c.total_pieces),
                    i(c.completed_pieces),
                    i(c.failed_pieces),
                    i(c.processed),
                    i(c.duplicates),
                    i(c.failed),
                    i(c.field_warnings),
                    failures,
                    by_field
                ])
            })
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoJob(job.id.to_owned()));
        }
        Ok(())
    }

    fn set_input_fingerprint(&self, job: JobRef<'_>, fingerprint: &str) -> Result<(), StoreError> {
        self.set_column(job, "input_fingerprint", fingerprint)
    }

    fn set_phase(&self, job: JobRef<'_>, phase: &str) -> Result<(), StoreError> {
        self.set_column(job, "phase", phase)
    }

    fn clear_written(&self, a: Attempt<'_>) -> Result<(), StoreError> {
        self.write(|tx| {
            self.require_running(tx, a)?;
            tx.execute(
                "UPDATE jobs SET created = 0, updated = 0 WHERE account = ?1 AND id = ?2",
                [a.job.account.as_str(), a.job.id],
            )
            .map_err(self.db())?;
            Ok(())
        })
    }

    fn request_stop(&self, job: JobRef<'_>) -> Result<JobRecord, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE jobs SET stop_requested = 1 WHERE account = ?1 AND id = ?2",
                [job.account.as_str(), job.id],
            )
            .map_err(self.db())?;
            self.job_or_missing(tx, job)
        })
    }
}

impl SqliteStore {
    /// Sets one text column of a job.
    fn set_column(&self, job: JobRef<'_>, column: &str, value: &str) -> Result<(), StoreError> {
        let n = self
            .writer()
            .execute(
                &format!("UPDATE jobs SET {column} = ?3 WHERE account = ?1 AND id = ?2"),
                params![job.account.as_str(), job.id, value],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::NoJob(job.id.to_owned()));
        }
        Ok(())
    }
}

impl PieceStore for SqliteStore {
    fn plan_pieces(&self, a: Attempt<'_>, total: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            self.require_running(tx, a)?;
            tx.execute(
                "UPDATE jobs SET total_pieces = ?3 WHERE account = ?1 AND id = ?2",
                params![a.job.account.as_str(), a.job.id, i(total)],
            )
            .map_err(self.db())?;
            Ok(())
        })
    }

    fn complete_piece(&self, a: Attempt<'_>, p: &PieceCounts) -> Result<bool, StoreError> {
        self.write(|tx| {
            self.require_running(tx, a)?;
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO pieces(account, job_id, piece, count, processed, \
                     failed, warnings, failed_piece, attempt) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        a.job.account.as_str(),
                        a.job.id,
                        i(p.index),
                        i(p.count),
                        i(p.processed),
                        i(p.failed),
                        i(p.warnings),
                        p.failed_piece,
                        a.attempt
                    ])
                })
                .map_err(self.db())?;
            if n == 0 {
                return Ok(false);
            }
            tx.prepare_cached(
                "UPDATE jobs SET completed_pieces = completed_pieces + ?3, \
                 failed_pieces = failed_pieces + ?4, processed = processed + ?5, \
                 failed = failed + ?6, field_warnings = field_warnings + ?7 \
                 WHERE account = ?1 AND id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![
                    a.job.account.as_str(),
                    a.job.id,
                    i(p.count),
                    if p.failed_piece { i(p.count) } else { 0 },
                    i(p.processed),
                    i(p.failed),
                    i(p.warnings)
                ])
            })
            .map_err(self.db())?;
            Ok(true)
        })
    }

    fn pieces(&self, job: JobRef<'_>) -> Result<Vec<PieceCounts>, StoreError> {
        self.read(|c| {
            let sql = "SELECT piece, count, processed, failed, warnings, failed_piece FROM pieces \
                       WHERE account = ?1 AND job_id = ?2 ORDER BY piece";
            all(c, sql, [job.account.as_str(), job.id], |r| {
                let n =
                    |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
                Ok(PieceCounts {
                    index: n(0)?,
                    count: n(1)?,
                    processed: n(2)?,
                    failed: n(3)?,
                    warnings: n(4)?,
                    failed_piece: r.get(5)?,
                })
            })
            .map_err(self.db())
        })
    }
}

impl SqliteStore {
    fn lease_in(
        &self,
        c: &Connection,
        account: &AccountId,
        name: &str,
    ) -> Result<Option<Lease>, StoreError> {
        c.prepare_cached(&format!(
            "SELECT {LEASE_COLUMNS} FROM leases WHERE account = ?1 AND name = ?2"
        ))
        .and_then(|mut s| {
            s.query_row([account.as_str(), name], lease_from_row)
                .optional()
        })
        .map_err(self.db())
    }

    fn put_lease(&self, c: &Connection, l: &Lease) -> Result<(), StoreError> {
        c.prepare_cached(
            "INSERT INTO leases(account, name, holder, attempt, deadline_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(account, name) DO UPDATE SET \
             holder = excluded.holder, attempt = excluded.attempt, \
             deadline_ms = excluded.deadline_ms",
        )
        .and_then(|mut s| {
            s.execute(params![
                l.account.as_str(),
                l.name,
                l.holder,
                i(l.attempt),
                l.deadline_ms
            ])
        })
        .map_err(self.db())?;
        Ok(())
    }
}

impl LeaseStore for SqliteStore {
    fn change_lease(
        &self,
        account: &AccountId,
        name: &str,
        change: &LeaseChange<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        self.write(|tx| {
            let current = self.lease_in(tx, account, name)?;
            let next = change(current.as_ref());
            if let Some(l) = &next {
                self.put_lease(tx, l)?;
            }
            Ok(next)
        })
    }

    fn lease(&self, account: &AccountId, name: &str) -> Result<Option<Lease>, StoreError> {
        self.read(|c| self.lease_in(c, account, name))
    }
}

impl ProfileStore for SqliteStore {
    fn create_domain(&self, account: &AccountId, d: &Domain) -> Result<(), StoreError> {
        let n = self
            .writer()
            .execute(
                "INSERT OR IGNORE INTO domains(account, name, default_expiration_days, \
                 created_ms, updated_ms, settings) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    account.as_str(),
                    d.name,
                    d.default_expiration_days,
                    d.created_ms,
                    d.updated_ms,
                    d.settings
                ],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::DomainExists(d.name.clone()));
        }
        Ok(())
    }

    fn domain(&self, account: &AccountId, name: &str) -> Result<Option<Domain>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {DOMAIN_COLUMNS} FROM domains WHERE account = ?1 AND name = ?2"
            ))
            .and_then(|mut s| {
                s.query_row([account.as_str(), name], domain_from_row)
                    .optional()
            })
            .map_err(self.db())
        })
    }

    fn domains(&self, account: &AccountId) -> Result<Vec<Domain>, StoreError> {
        self.read(|c| {
            all(
                c,
                &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE account = ?1 ORDER BY name"),
                [account.as_str()],
                domain_from_row,
            )
            .map_err(self.db())
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
                .query_row(
                    &format!(
                        "SELECT {DOMAIN_COLUMNS} FROM domains WHERE account = ?1 AND name = ?2"
                    ),
                    [account.as_str(), name],
                    domain_from_row,
                )
                .optional()
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoDomain(name.to_owned()))?;
            let d = old.changed(change)?;
            tx.execute(
                "UPDATE domains SET default_expiration_days = ?3, updated_ms = ?4, \
                 settings = ?5 WHERE account = ?1 AND name = ?2",
                params![
                    account.as_str(),
                    name,
                    d.default_expiration_days,
                    d.updated_ms,
                    d.settings
                ],
            )
            .map_err(self.db())?;
            Ok(d)
        })
    }

    fn delete_domain(&self, account: &AccountId, name: &str) -> Result<u64, StoreError> {
        self.write(|tx| {
            let id = self.domain_id(tx, account, name)?;
            let busy: Option<String> = tx
                .query_row(
                    "SELECT id FROM jobs WHERE account = ?1 AND domain = ?2 \
                     AND status IN ('QUEUED', 'RUNNING') LIMIT 1",
                    [account.as_str(), name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.db())?;
            if let Some(job) = busy {
                return Err(StoreError::DomainBusy {
                    domain: name.to_owned(),
                    job,
                });
            }
            let profiles = tx
                .execute("DELETE FROM profiles WHERE domain_id = ?1", [id])
                .map_err(self.db())?;
            for sql in [
                "DELETE FROM search_index WHERE domain_id = ?1",
                "DELETE FROM profile_keys WHERE domain_id = ?1",
            ] {
                tx.execute(sql, [id]).map_err(self.db())?;
            }
            for sql in [
                "DELETE FROM pieces WHERE account = ?1 AND job_id IN \
                 (SELECT id FROM jobs WHERE account = ?1 AND domain = ?2)",
                "DELETE FROM jobs WHERE account = ?1 AND domain = ?2",
                "DELETE FROM domains WHERE account = ?1 AND name = ?2",
            ] {
                tx.execute(sql, [account.as_str(), name])
                    .map_err(self.db())?;
            }
            Ok((profiles as u64, id))
        })
        .and_then(|(profiles, id)| {
            // After the commit: the domain's pending entries are nobody's.
            let files = self.pending.files(id).map_err(|e| self.io_error(&e))?;
            self.pending.remove(&files).map_err(|e| self.io_error(&e))?;
            Ok(profiles)
        })
    }

    fn write_profiles(&self, b: &ProfileBatch<'_>) -> Result<WriteCounts, StoreError> {
        b.check()?;
        let account = b.attempt.job.account;
        self.write(|tx| {
            tx.pragma_update(None, "cache_size", -PROFILE_CACHE_KIB)
                .map_err(self.db())?;
            let (domain_id, next_expiry, first_no): (i64, Option<i64>, i64) = tx
                .prepare_cached(
                    "SELECT id, next_expiry_ms, next_profile_no FROM domains \
                     WHERE account = ?1 AND name = ?2",
                )
                .and_then(|mut s| {
                    s.query_row([account.as_str(), b.domain], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()
                })
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoDomain(b.domain.to_owned()))?;
            self.require_running(tx, b.attempt)?;
            if next_expiry.is_some_and(|t| t <= b.now_ms) {
                purge_domain(tx, domain_id, b.now_ms).map_err(self.db())?;
            }
            let (first, last) = match (b.rows.first(), b.rows.last()) {
                (Some(f), Some(l)) => (f.key, l.key),
                _ => return Ok(WriteCounts::default()),
            };
            // The keys the domain has in the batch's range, with their
            // numbers (kept; new rows get `first_no` on): which rows are
            // new, and what each row's terms point at. Expired rows were
            // purged above. A range of a first upload holds none.
            let existing: Vec<(String, i64)> = tx
                .prepare_cached(
                    "SELECT profile_key, profile_no FROM profiles \
                     WHERE domain_id = ?1 AND profile_key >= ?2 AND profile_key <= ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![domain_id, first, last], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect()
                })
                .map_err(self.db())?;
            if first_no.saturating_add(b.rows.len() as i64) > MAX_PROFILE_NO {
                return Err(StoreError::Backend {
                    location: self.location.clone(),
                    message: format!(
                        "domain {:?} has used every profile number this store can give",
                        b.domain
                    ),
                    transient: false,
                });
            }
            let shape = shape_id(tx, b.targets).map_err(self.db())?;
            upsert_profiles(tx, domain_id, shape, first_no, b).map_err(self.db())?;
            let mut entries =
                Vec::with_capacity(b.rows.iter().map(|r| r.terms.len() * ENTRY).sum());
            let mut new_keys = Vec::new();
            let mut old = existing.iter().peekable();
            let mut updated = 0;
            for (i, row) in b.rows.iter().enumerate() {
                while old.next_if(|(k, _)| k.as_str() < row.key).is_some() {}
                let no = match old.next_if(|(k, _)| k == row.key) {
                    Some(&(_, no)) => {
                        updated += 1;
                        no
                    }
                    None => {
                        put_key(&mut new_keys, first_no + i as i64, row.key.as_bytes());
                        first_no + i as i64
                    }
                };
                put_entries(&mut entries, row.terms.iter().map(|&t| (t, no)));
            }
            if !entries.is_empty() {
                self.pending
                    .append(domain_id, &entries)
                    .map_err(|e| self.io_error(&e))?;
            }
            if !new_keys.is_empty() {
                self.pending
                    .append_keys(domain_id, &new_keys)
                    .map_err(|e| self.io_error(&e))?;
            }
            let counts = WriteCounts {
                created: b.rows.len() as u64 - updated,
                updated,
            };
            tx.execute(
                "UPDATE domains SET next_profile_no = ?2 WHERE id = ?1",
                params![domain_id, first_no + b.rows.len() as i64],
            )
            .map_err(self.db())?;
            tx.execute(
                "UPDATE domains SET next_expiry_ms = min(coalesce(next_expiry_ms, ?2), ?2) \
                 WHERE id = ?1",
                params![domain_id, b.expires_ms],
            )
            .map_err(self.db())?;
            tx.execute(
                "UPDATE jobs SET created = created + ?3, updated = updated + ?4, \
                 written_through = ?5 WHERE account = ?1 AND id = ?2",
                params![
                    account.as_str(),
                    b.attempt.job.id,
                    i(counts.created),
                    i(counts.updated),
                    last.as_bytes()
                ],
            )
            .map_err(self.db())?;
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
        self.read(|c| {
            let id = self.domain_id(c, account, domain)?;
            self.profile_where(c, domain, params![id, key, now_ms])
        })
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
        self.read(|c| {
            let id = self.domain_id(c, account, domain)?;
            let Some(key) = self.keys_of(c, id, &[no])?.remove(&no) else {
                return Ok(None);
            };
            // The key's profile, if it is still the one numbered so.
            Ok(self
                .profile_where(c, domain, params![id, key, now_ms])?
                .filter(|p| i64::try_from(p.no) == Ok(no)))
        })
    }

    fn search_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        q: &ProfileSearch<'_>,
    ) -> Result<Vec<Profile>, StoreError> {
        self.read(|c| {
            let id = self.domain_id(c, account, domain)?;
            let mut terms: Vec<i64> = q.groups.iter().flatten().copied().collect();
            terms.sort_unstable();
            terms.dedup();
            let postings = self.postings(c, id, &terms)?;
            let of_group = |g: &Vec<i64>| -> Vec<i64> {
                let mut nos: Vec<i64> = g
                    .iter()
                    .filter_map(|t| postings.get(t))
                    .flatten()
                    .copied()
                    .filter(|&no| u64::try_from(no).is_ok_and(|no| no > q.after))
                    .collect();
                nos.sort_unstable();
                nos.dedup();
                nos
            };
            let mut groups = q.groups.iter().map(of_group);
            let mut nos = groups.next().unwrap_or_default();
            for g in groups {
                if q.all {
                    nos.retain(|no| g.binary_search(no).is_ok());
                } else {
                    nos.extend(g);
                    nos.sort_unstable();
                    nos.dedup();
                }
            }
            let mut found = Vec::new();
            // Numbers to keys a page's worth at a time.
            for page in nos.chunks(q.limit.max(1)) {
                let keys = self.keys_of(c, id, page)?;
                for no in page {
                    if found.len() >= q.limit {
                        return Ok(found);
                    }
                    let Some(key) = keys.get(no) else { continue };
                    let p = self.profile_where(c, domain, params![id, key, q.now_ms])?;
                    found.extend(p.filter(|p| i64::try_from(p.no) == Ok(*no)));
                }
            }
            Ok(found)
        })
    }

    fn settle_search(&self, account: &AccountId, domain: &str) -> Result<(), StoreError> {
        let folded = self.write(|tx| {
            let id = self.domain_id(tx, account, domain)?;
            settle(tx, id, &self.pending).map_err(|message| StoreError::Backend {
                location: self.location.clone(),
                message: format!("folding search entries: {message}"),
                transient: false,
            })
        })?;
        self.pending.remove(&folded).map_err(|e| self.io_error(&e))
    }

    fn delete_profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let id = self.domain_id(tx, account, domain)?;
            // Its terms stay in the index until folded again, pointing at
            // nothing: searches find no profile there.
            let live: Option<bool> = tx
                .query_row(
                    "DELETE FROM profiles WHERE domain_id = ?1 AND profile_key = ?2 \
                     RETURNING expires_ms > ?3",
                    params![id, key, now_ms],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.db())?;
            Ok(live == Some(true))
        })
    }

    fn count_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.read(|c| {
            let id = self.domain_id(c, account, domain)?;
            c.query_row(
                "SELECT count(*) FROM profiles WHERE domain_id = ?1 AND expires_ms > ?2",
                params![id, now_ms],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.db())
        })
    }

    fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.write(|tx| {
            let due: Vec<i64> = tx
                .prepare("SELECT id FROM domains WHERE next_expiry_ms <= ?1")
                .and_then(|mut s| s.query_map([now_ms], |r| r.get(0))?.collect())
                .map_err(self.db())?;
            let mut n = 0;
            for id in due {
                n += purge_domain(tx, id, now_ms).map_err(self.db())?;
            }
            Ok(n)
        })
    }
}

impl AppStore for SqliteStore {
    fn create_app(&self, account: &AccountId, a: &App) -> Result<(), StoreError> {
        let n = self
            .writer()
            .execute(
                "INSERT OR IGNORE INTO apps(account, id, name, tags, created_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account.as_str(), a.id, a.name, a.tags, a.created_ms],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(StoreError::AppExists(a.id.clone()));
        }
        Ok(())
    }

    fn app(&self, account: &AccountId, id: &str) -> Result<Option<App>, StoreError> {
        self.read(|c| {
            c.query_row(
                &format!("SELECT {APP_COLUMNS} FROM apps WHERE account = ?1 AND id = ?2"),
                [account.as_str(), id],
                app_from_row,
            )
            .optional()
            .map_err(self.db())
        })
    }

    fn apps(&self, account: &AccountId) -> Result<Vec<App>, StoreError> {
        self.read(|c| {
            all(
                c,
                &format!(
                    "SELECT {APP_COLUMNS} FROM apps WHERE account = ?1 ORDER BY created_ms, id"
                ),
                [account.as_str()],
                app_from_row,
            )
            .map_err(self.db())
        })
    }

    fn delete_app(&self, account: &AccountId, id: &str) -> Result<App, StoreError> {
        self.write(|tx| {
            let app = tx
                .query_row(
                    &format!("SELECT {APP_COLUMNS} FROM apps WHERE account = ?1 AND id = ?2"),
                    [account.as_str(), id],
                    app_from_row,
                )
                .optional()
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoApp(id.to_owned()))?;
            let busy: Option<String> = tx
                .query_row(
                    "SELECT id FROM jobs WHERE account = ?1 AND app_id = ?2 \
                     AND status IN ('QUEUED', 'RUNNING') LIMIT 1",
                    [account.as_str(), id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(self.db())?;
            if let Some(job) = busy {
                return Err(StoreError::AppBusy {
                    app: id.to_owned(),
                    job,
                });
            }
            let no = app_no(tx, account, id).map_err(self.db())?;
            for table in ["segment_members", "endpoints"] {
                tx.execute(&format!("DELETE FROM {table} WHERE app_no = ?1"), [no])
                    .map_err(self.db())?;
            }
            tx.execute("DELETE FROM segments WHERE app_id = ?1", [id])
                .map_err(self.db())?;
            for sql in [
                "DELETE FROM pieces WHERE account = ?1 AND job_id IN \
                 (SELECT id FROM jobs WHERE account = ?1 AND app_id = ?2)",
                "DELETE FROM jobs WHERE account = ?1 AND app_id = ?2",
                "DELETE FROM apps WHERE account = ?1 AND id = ?2",
            ] {
                tx.execute(sql, [account.as_str(), id]).map_err(self.db())?;
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
        self.write(|tx| {
            tx.pragma_update(None, "cache_size", -ENDPOINT_CACHE_KIB)
                .map_err(self.db())?;
            let no = app_no(tx, account, b.app)
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoApp(b.app.to_owned()))?;
            if let Some(attempt) = b.by.attempt() {
                self.require_running(tx, attempt)?;
            }
            if let Some(seg) = b.segment {
                tx.query_row(
                    "SELECT 1 FROM segments WHERE app_id = ?1 AND segment_id = ?2",
                    [b.app, seg],
                    |_| Ok(()),
                )
                .optional()
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoSegment {
                    app: b.app.to_owned(),
                    segment: seg.to_owned(),
                })?;
            }
            let mut out = Vec::with_capacity(b.keys.len());
            let (mut created, mut updated) = (0i64, 0i64);
            // The lookups name their index: without statistics SQLite takes
            // the primary key's `app_no` prefix for as good, and scans the
            // app's endpoints for every row (measured: 110 rows/s at
            // 100,000).
            {
                let by_id = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_no = ?1 AND endpoint_id = ?2"
                );
                // Every endpoint at the address, the first created picked
                // here: an ORDER BY would build a temporary B-tree for each
                // lookup, and there is seldom more than one.
                let by_address = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints INDEXED BY endpoints_by_address \
                     WHERE app_no = ?1 AND channel_type = ?2 AND address = ?3"
                );
                let mut by_id = tx.prepare_cached(&by_id).map_err(self.db())?;
                let mut by_address = tx.prepare_cached(&by_address).map_err(self.db())?;
                let mut upsert = tx
                    .prepare_cached(
                        "INSERT INTO endpoints(app_no, endpoint_id, channel_type, address, \
                         user_id, fields, created_ms, updated_ms, created_by) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8) \
                         ON CONFLICT(app_no, endpoint_id) DO UPDATE SET channel_type = ?3, \
                         address = ?4, user_id = ?5, fields = ?6, updated_ms = ?7",
                    )
                    .map_err(self.db())?;
                let mut member = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO segment_members(app_no, segment_id, endpoint_id) \
                         VALUES (?1, ?2, ?3)",
                    )
                    .map_err(self.db())?;
                for (n, key) in b.keys.iter().enumerate() {
                    let found = match *key {
                        EndpointKey::Id(id) => {
                            by_id.query_row(params![no, id], endpoint_from_row).optional()
                        }
                        EndpointKey::Address(ch, addr) => {
                            first_created(by_address.query_map(params![no, ch, addr], endpoint_from_row))
                        }
                    }
                    .map_err(self.db())?;
                    let existed = b.by.existed(found.as_ref());
                    let e = match merge(n, found) {
                        Ok(e) => e,
                        Err(why) => {
                            out.push(EndpointWrite::Refused(why));
                            continue;
                        }
                    };
                    upsert
                        .execute(params![
                            no,
                            e.id,
                            e.channel_type,
                            e.address,
                            e.user_id,
                            e.fields,
                            b.now_ms,
                            b.by.job()
                        ])
                        .map_err(self.db())?;
                    if let Some(seg) = b.segment {
                        member.execute(params![no, seg, &e.id]).map_err(self.db())?;
                    }
                    if existed {
                        updated += 1;
                        out.push(EndpointWrite::Updated(e.id));
                    } else {
                        created += 1;
                        out.push(EndpointWrite::Created(e.id));
                    }
                }
            }
            if let Some(job) = b.by.job() {
                tx.execute(
                    "UPDATE jobs SET created = created + ?3, updated = updated + ?4 \
                     WHERE account = ?1 AND id = ?2",
                    params![account.as_str(), job, created, updated],
                )
                .map_err(self.db())?;
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
            let Some(no) = app_no(c, account, app).map_err(self.db())? else {
                return Ok(None);
            };
            c.query_row(
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE app_no = ?1 AND endpoint_id = ?2"
                ),
                params![no, id],
                endpoint_from_row,
            )
            .optional()
            .map_err(self.db())
        })
    }

    fn user_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        user_id: &str,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.read(|c| {
            let Some(no) = app_no(c, account, app).map_err(self.db())? else {
                return Ok(Vec::new());
            };
            all(
                c,
                &format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM endpoints INDEXED BY endpoints_by_user \
                     WHERE app_no = ?1 AND user_id = ?2 ORDER BY endpoint_id"
                ),
                params![no, user_id],
                endpoint_from_row,
            )
            .map_err(self.db())
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
            let no = app_no(c, account, app)
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoApp(app.to_owned()))?;
            let driver = filter.and_then(EndpointFilter::driving_segment);
            let mut page = |after: &str, n: usize| {
                let n = i64::try_from(n).unwrap_or(i64::MAX);
                match driver {
                    None => all(
                        c,
                        &format!(
                            "SELECT {ENDPOINT_COLUMNS} FROM endpoints \
                             WHERE app_no = ?1 AND endpoint_id > ?2 ORDER BY endpoint_id LIMIT ?3"
                        ),
                        params![no, after, n],
                        endpoint_from_row,
                    ),
                    Some(seg) => all(
                        c,
                        &format!(
                            "SELECT {ENDPOINT_COLUMNS} FROM segment_members \
                             JOIN endpoints USING (app_no, endpoint_id) \
                             WHERE app_no = ?1 AND segment_id = ?2 AND endpoint_id > ?3 \
                             ORDER BY endpoint_id LIMIT ?4"
                        ),
                        params![no, seg, after, n],
                        endpoint_from_row,
                    ),
                }
                .map_err(self.db())
            };
            let Some(filter) = filter else {
                return page(after.unwrap_or(""), limit);
            };
            let mut members = |seg: &str, ids: &[&str]| {
                let mut q = c
                    .prepare_cached(
                        "SELECT 1 FROM segment_members \
                         WHERE app_no = ?1 AND segment_id = ?2 AND endpoint_id = ?3",
                    )
                    .map_err(self.db())?;
                let mut found = Vec::new();
                for id in ids {
                    if q.exists(params![no, seg, id]).map_err(self.db())? {
                        found.push((*id).to_owned());
                    }
                }
                Ok(found)
            };
            filtered_page(
                &self.location(),
                filter,
                after,
                limit,
                &mut page,
                &mut members,
            )
        })
    }

    fn delete_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        which: EndpointsOf<'_>,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.write(|tx| {
            let no = app_no(tx, account, app)
                .map_err(self.db())?
                .ok_or_else(|| StoreError::NoApp(app.to_owned()))?;
            let gone = match which {
                EndpointsOf::Id(id) => all(
                    tx,
                    &format!(
                        "SELECT {ENDPOINT_COLUMNS} FROM endpoints \
                         WHERE app_no = ?1 AND endpoint_id = ?2"
                    ),
                    params![no, id],
                    endpoint_from_row,
                ),
                EndpointsOf::User(user) => all(
                    tx,
                    &format!(
                        "SELECT {ENDPOINT_COLUMNS} FROM endpoints INDEXED BY endpoints_by_user \
                         WHERE app_no = ?1 AND user_id = ?2 ORDER BY endpoint_id"
                    ),
                    params![no, user],
                    endpoint_from_row,
                ),
            }
            .map_err(self.db())?;
            for e in &gone {
                for sql in [
                    "DELETE FROM segment_members WHERE app_no = ?1 AND endpoint_id = ?2",
                    "DELETE FROM endpoints WHERE app_no = ?1 AND endpoint_id = ?2",
                ] {
                    tx.execute(sql, params![no, e.id]).map_err(self.db())?;
                }
            }
            Ok(gone)
        })
    }

    fn create_segment(&self, account: &AccountId, seg: &Segment) -> Result<(), StoreError> {
        self.write(|tx| {
            if !app_exists(tx, account, &seg.app).map_err(self.db())? {
                return Err(StoreError::NoApp(seg.app.clone()));
            }
            tx.execute(
                "INSERT OR IGNORE INTO segments(app_id, segment_id, name, definition, \
                 created_ms, updated_ms, version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    seg.app,
                    seg.id,
                    seg.name,
                    seg.definition,
                    seg.created_ms,
                    seg.updated_ms,
                    seg.version
                ],
            )
            .map_err(self.db())?;
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
            if !app_exists(c, account, app).map_err(self.db())? {
                return Ok(None);
            }
            c.query_row(
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE app_id = ?1 AND segment_id = ?2"
                ),
                [app, id],
                segment_from_row,
            )
            .optional()
            .map_err(self.db())
        })
    }

    fn segments(&self, account: &AccountId, app: &str) -> Result<Vec<Segment>, StoreError> {
        self.read(|c| {
            if !app_exists(c, account, app).map_err(self.db())? {
                return Ok(Vec::new());
            }
            all(
                c,
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE app_id = ?1 \
                     ORDER BY created_ms, segment_id"
                ),
                [app],
                segment_from_row,
            )
            .map_err(self.db())
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
            if !app_exists(tx, account, app).map_err(self.db())? {
                return Err(missing());
            }
            let n = tx
                .execute(
                    "UPDATE segments SET definition = ?3, updated_ms = ?4, version = version + 1, \
                     name = coalesce(?5, name) WHERE app_id = ?1 AND segment_id = ?2",
                    params![app, id, definition, now_ms, name],
                )
                .map_err(self.db())?;
            if n == 0 {
                return Err(missing());
            }
            tx.query_row(
                &format!(
                    "SELECT {SEGMENT_COLUMNS} FROM segments WHERE app_id = ?1 AND segment_id = ?2"
                ),
                [app, id],
                segment_from_row,
            )
            .map_err(self.db())
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
            let Some(no) = app_no(tx, account, app).map_err(self.db())? else {
                return Err(missing());
            };
            let seg = tx
                .query_row(
                    &format!(
                        "SELECT {SEGMENT_COLUMNS} FROM segments \
                         WHERE app_id = ?1 AND segment_id = ?2"
                    ),
                    [app, id],
                    segment_from_row,
                )
                .optional()
                .map_err(self.db())?
                .ok_or_else(missing)?;
            tx.execute(
                "DELETE FROM segment_members WHERE app_no = ?1 AND segment_id = ?2",
                params![no, id],
            )
            .map_err(self.db())?;
            tx.execute(
                "DELETE FROM segments WHERE app_id = ?1 AND segment_id = ?2",
                [app, id],
            )
            .map_err(self.db())?;
            Ok(seg)
        })
    }

    fn segment_channel_counts(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.read(|c| {
            let Some(no) = app_no(c, account, app).map_err(self.db())? else {
                return Ok(Vec::new());
            };
            all(
                c,
                "SELECT coalesce(e.channel_type, ''), count(*) FROM segment_members m \
                 JOIN endpoints e ON e.app_no = m.app_no AND e.endpoint_id = m.endpoint_id \
                 WHERE m.app_no = ?1 AND m.segment_id = ?2 \
                 GROUP BY e.channel_type ORDER BY e.channel_type",
                params![no, id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
            )
            .map_err(self.db())
        })
    }
}

impl BucketStore for SqliteStore {
    fn set_bucket_settings(
        &self,
        account: &AccountId,
        b: &BucketSettings,
    ) -> Result<(), StoreError> {
        self.writer()
            .execute(
                "INSERT INTO bucket_settings(account, bucket, region, owner) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(account, bucket) DO UPDATE SET region = ?3, owner = ?4",
                params![account.as_str(), b.bucket, b.region, b.owner],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn bucket_settings(
        &self,
        account: &AccountId,
        bucket: &str,
    ) -> Result<Option<BucketSettings>, StoreError> {
        self.read(|c| {
            c.query_row(
                "SELECT bucket, region, owner FROM bucket_settings \
                 WHERE account = ?1 AND bucket = ?2",
                [account.as_str(), bucket],
                |r| {
                    Ok(BucketSettings {
                        bucket: r.get(0)?,
                        region: r.get(1)?,
                        owner: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.db())
        })
    }
    fn forget_bucket(&self, account: &AccountId, bucket: &str) -> Result<(), StoreError> {
        self.writer()
            .execute(
                "DELETE FROM bucket_settings WHERE account = ?1 AND bucket = ?2",
                [account.as_str(), bucket],
            )
            .map_err(self.db())?;
        Ok(())
    }

    fn bucket_accounts(&self, bucket: &str) -> Result<Vec<AccountId>, StoreError> {
        self.read(|c| {
            let mut q = c
                .prepare_cached(
                    "SELECT account FROM bucket_settings WHERE bucket = ?1 ORDER BY account",
                )
                .map_err(self.db())?;
            let rows = q
                .query_map([bucket], |r| r.get::<_, String>(0))
                .map_err(self.db())?;
            rows.map(|r| r.map(AccountId::new).map_err(self.db()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicUsize::new(0);
        super::super::conformance::all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(SqliteStore::open(dir.path().join(format!("s{i}"))).unwrap())
        });
    }

    #[test]
    fn a_new_store_is_its_owners_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = SqliteStore::open(&data).unwrap();
        // A write, so that the WAL files are there too.
        store
            .create_domain(&AccountId::default(), &Domain::new("d", 1, 0))
            .unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        for f in fs::read_dir(&data).unwrap() {
            let f = f.unwrap().path();
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn endpoints_written_before_app_numbers_read_the_same_after() {
        let dir = tempfile::tempdir().unwrap();
        let account = AccountId::default();
        {
            // A store as version 6 left it: two apps, endpoints and a
            // segment member in the one after the other.
            let mut c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            let tx = c.transaction().unwrap();
            for sql in &MIGRATIONS[..6] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 6).unwrap();
            tx.execute_batch(
                "INSERT INTO apps VALUES ('000000000000', 'app-b', 'b', '{}', 2), \
                 ('000000000000', 'app-a', 'a', '{}', 1); \
                 INSERT INTO endpoints(app_id, endpoint_id, channel_type, address, user_id, \
                 fields, updated_ms, created_ms, created_by) VALUES \
                 ('app-b', 'e1', 'EMAIL', 'x@example.com', 'u1', '{}', 5, 4, 'job-1'), \
                 ('app-b', 'e2', 'SMS', '+15555550100', 'u1', '{}', 5, 4, 'job-1'), \
                 ('app-a', 'e1', 'EMAIL', 'y@example.com', NULL, '{}', 5, 4, NULL); \
                 INSERT INTO segments(app_id, segment_id, name, definition, created_ms) \
                 VALUES ('app-b', 's', 'S', '{}', 1); \
                 INSERT INTO segment_members VALUES ('app-b', 's', 'e2');",
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let e = store.endpoint(&account, "app-b", "e1").unwrap().unwrap();
        assert_eq!(
            (e.address.as_deref(), e.created_ms, e.created_by.as_deref()),
            (Some("x@example.com"), 4, Some("job-1"))
        );
        let ids = |app: &str, user: &str| -> Vec<String> {
            let found = store.user_endpoints(&account, app, user).unwrap();
            found.into_iter().map(|e| e.id).collect()
        };
        assert_eq!(ids("app-b", "u1"), ["e1", "e2"]);
        assert!(ids("app-a", "u1").is_empty());
        assert_eq!(
            store
                .segment_channel_counts(&account, "app-b", "s")
                .unwrap(),
            [("SMS".to_owned(), 1)]
        );
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let seen: Vec<(String, String, String)> = c
            .prepare("SELECT app_id, endpoint_id, address FROM app_endpoints ORDER BY 1, 2")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let row = |a: &str, e: &str, x: &str| (a.to_owned(), e.to_owned(), x.to_owned());
        assert_eq!(
            seen,
            [
                row("app-a", "e1", "y@example.com"),
                row("app-b", "e1", "x@example.com"),
                row("app-b", "e2", "+15555550100"),
            ]
        );
        // Deleting an app takes its endpoints and members, and no other's.
        store.delete_app(&account, "app-b").unwrap();
        let left: i64 = c
            .query_row("SELECT count(*) FROM endpoints", [], |r| r.get(0))
            .unwrap();
        let members: i64 = c
            .query_row("SELECT count(*) FROM segment_members", [], |r| r.get(0))
            .unwrap();
        assert_eq!((left, members), (1, 0));
    }

    #[test]
    fn profiles_written_before_shapes_read_the_same_after() {
        let dir = tempfile::tempdir().unwrap();
        let fields = r#"{"FirstName":"Ann","Address":{"City":"Köln"}}"#;
        {
            // A store as version 5 left it, with one profile.
            let mut c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            let tx = c.transaction().unwrap();
            for sql in &MIGRATIONS[..5] {
                tx.execute_batch(sql).unwrap();
            }
            tx.pragma_update(None, "user_version", 5).unwrap();
            tx.execute(
                "INSERT INTO domains(id, account, name, default_expiration_days, created_ms, \
                 updated_ms) VALUES (1, '000000000000', 'd', 14, 0, 0)",
                [],
            )
            .unwrap();
            tx.execute(
                "INSERT INTO profiles VALUES (1, 'k', ?1, 1, 2, 9000000000000)",
                [fields],
            )
            .unwrap();
            tx.commit().unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let p = store
            .profile(&AccountId::default(), "d", "k", 3)
            .unwrap()
            .unwrap();
        assert_eq!(
            (p.fields.as_str(), p.created_ms, p.updated_ms),
            (fields, 1, 2)
        );
        // Numbered by the migration, and found by its number (its
        // ProfileId).
        assert_eq!(p.no, 1);
        let by_no = store
            .profile_by_no(&AccountId::default(), "d", 1, 3)
            .unwrap();
        assert_eq!(by_no.map(|p| p.key).as_deref(), Some("k"));
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let seen: String = c
            .query_row(
                "SELECT fields FROM live_profiles WHERE profile_key = 'k'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(seen, fields);
    }

    /// Job `j` running in domain `d`: the attempt that writes for it.
    fn running_job<'a>(store: &SqliteStore, a: &'a AccountId) -> Attempt<'a> {
        store.create_domain(a, &Domain::new("d", 14, 0)).unwrap();
        store
            .insert_job(&crate::store::NewJob {
                account: a.clone(),
                id: "j".into(),
                kind: JobKind::Profiles,
                domain: Some("d".into()),
                app: None,
                display_name: None,
                spec: "{}".into(),
                created_ms: 0,
            })
            .unwrap();
        let job = JobRef {
            account: a,
            id: "j",
        };
        let mut attempt = 0;
        for (from, to) in [
            (JobStatus::Created, JobStatus::Queued),
            (JobStatus::Queued, JobStatus::Running),
        ] {
            attempt = store
                .transition(job, &Transition::new(from, to, 0))
                .unwrap()
                .attempts;
        }
        Attempt { job, attempt }
    }

    #[test]
    fn torn_pending_files_lose_nothing_already_written() {
        // A process killed while appending leaves half an entry and half a
        // chunk at the ends of the pending files: the next batch's
        // entries and keys still read whole, and the fold finds all.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let a = AccountId::default();
        let attempt = running_job(&store, &a);
        let write = |key: &'static str, terms: &'static [i64]| {
            let rows = [crate::store::ProfileRow {
                key,
                values: r#"["x"]"#,
                terms,
            }];
            store
                .write_profiles(&ProfileBatch {
                    attempt,
                    domain: "d",
                    now_ms: 1,
                    expires_ms: i64::MAX,
                    targets: &["v"],
                    rows: &rows,
                })
                .unwrap();
        };
        let found = |term: i64| -> Vec<String> {
            store
                .search_profiles(
                    &a,
                    "d",
                    &ProfileSearch {
                        groups: &[vec![term]],
                        all: false,
                        after: 0,
                        limit: 10,
                        now_ms: 2,
                    },
                )
                .unwrap()
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        write("a", &[7]);
        let pending = dir.path().join("search-pending");
        for (name, torn) in [
            ("1.terms", &[1u8, 2, 3][..]),
            ("1.keys", &[200, 0, 0, 0, 0, 0, 0, 0, 9][..]),
        ] {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(pending.join(name))
                .unwrap();
            std::io::Write::write_all(&mut f, torn).unwrap();
        }
        write("b", &[7, 8]);
        assert_eq!(found(7), ["a", "b"]);
        assert_eq!(found(8), ["b"]);
        let b = store.profile(&a, "d", "b", 2).unwrap().unwrap();
        assert_eq!(
            store.profile_by_no(&a, "d", b.no, 2).unwrap().unwrap().key,
            "b"
        );
        store.settle_search(&a, "d").unwrap();
        assert_eq!(fs::read_dir(&pending).unwrap().count(), 0);
        assert_eq!(found(7), ["a", "b"]);
        assert_eq!(
            store.profile_by_no(&a, "d", b.no, 2).unwrap().unwrap().key,
            "b"
        );
        // A fold file a crash left behind is folded again, harmlessly.
        write("c", &[7]);
        let c = store.profile(&a, "d", "c", 2).unwrap().unwrap();
        fs::rename(pending.join("1.terms"), pending.join("1.5.terms.fold")).unwrap();
        fs::rename(pending.join("1.keys"), pending.join("1.5.keys.fold")).unwrap();
        assert_eq!(found(7), ["a", "b", "c"]);
        store.settle_search(&a, "d").unwrap();
        assert_eq!(found(7), ["a", "b", "c"]);
        assert_eq!(
            store.profile_by_no(&a, "d", c.no, 2).unwrap().unwrap().key,
            "c"
        );
    }

    #[test]
    fn the_views_show_shaped_profiles_as_the_library_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let a = AccountId::default();
        let attempt = running_job(&store, &a);
        let now = crate::job::system_clock()();
        let rows = [
            crate::store::ProfileRow {
                key: "a",
                values: r#"["1","x y","","q\"t"]"#,
                terms: &[],
            },
            crate::store::ProfileRow {
                key: "b",
                values: r#"["2","Köln","tab\there","\\"]"#,
                terms: &[],
            },
        ];
        store
            .write_profiles(&ProfileBatch {
                attempt,
                domain: "d",
                now_ms: now,
                expires_ms: now + 86_400_000,
                targets: &[
                    "Id",
                    "Address.City",
                    "Attributes.Notes",
                    "Address.Street Name",
                ],
                rows: &rows,
            })
            .unwrap();
        let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for r in rows {
            let library = store.profile(&a, "d", r.key, now).unwrap().unwrap().fields;
            let view: String = c
                .query_row(
                    "SELECT fields FROM live_profiles WHERE profile_key = ?1",
                    [r.key],
                    |row| row.get(0),
                )
                .unwrap();
            let (library, view): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(&library).unwrap(),
                serde_json::from_str(&view).unwrap(),
            );
            assert_eq!(library, view, "{}", r.key);
        }
    }

    #[test]
    fn the_checkpointer_keeps_the_wal_small_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // Small thresholds: a checkpoint asked for every 4 pages, waited
        // for past 16; each batch below is about 13 pages.
        let wal = WalPages {
            ask: 4,
            restart: 16,
        };
        let store = SqliteStore::open_with(dir.path(), wal).unwrap();
        let a = AccountId::default();
        let attempt = running_job(&store, &a);
        let now = crate::job::system_clock()();
        let value = format!(r#"["{}"]"#, "v".repeat(1000));
        let page = u64::from(PAGE_SIZE) + 24;
        let mut largest_wal = 0;
        for batch in 0..40 {
            let keys: Vec<String> = (0..200).map(|i| format!("{batch:03}-{i:04}")).collect();
            let rows: Vec<_> = keys
                .iter()
                .map(|k| crate::store::ProfileRow {
                    key: k,
                    values: &value,
                    terms: &[],
                })
                .collect();
            store
                .write_profiles(&ProfileBatch {
                    attempt,
                    domain: "d",
                    now_ms: now,
                    expires_ms: now + 86_400_000,
                    targets: &["Notes"],
                    rows: &rows,
                })
                .unwrap();
            let wal_len = fs::metadata(dir.path().join(format!("{DB_FILE}-wal")))
                .map(|m| m.len())
                .unwrap_or(0);
            largest_wal = largest_wal.max(wal_len);
        }
        // 40 batches wrote some 500 pages; the WAL never held more than
        // the restart threshold and the batch that crossed it, with slack.
        assert!(
            largest_wal <= 64 * page,
            "the WAL reached {largest_wal} bytes"
        );
        // The checkpointer copied pages into the database while the store
        // was open: the writer never checkpoints on its own.
        let db_len = fs::metadata(dir.path().join(DB_FILE)).unwrap().len();
        assert!(db_len > 300 * page, "the database holds {db_len} bytes");
        let counted: i64 = Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .query_row("SELECT count(*) FROM profiles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(counted, 40 * 200);
        drop(store);
        let counted: i64 = Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .query_row("SELECT count(*) FROM profiles", [], |r| r.get(0))
            .unwrap();
        assert_eq!(counted, 40 * 200);
    }
}
