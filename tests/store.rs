//! Jobs written into the store, through the public surface: the runner,
//! the `Store` trait and the SQLite file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sluice::ingest::{IngestBuilder, Input};
use sluice::job::{
    Clock, Holder, JobError, JobSpec, JobStatus, ProfileJob, Runner, RunnerConfig, Source,
    job_lease, new_job_id,
};
use sluice::mapping::MappingFile;
use sluice::store::{
    AccountId, Domain, JobRecord, JobRef, JobStore, LeaseStore, ProfileStore, SqliteStore,
    StoreError, Transition,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DAY: i64 = 86_400_000;
const T0: i64 = 1_800_000_000_000;

fn sample() -> PathBuf {
    Path::new(ROOT).join("testdata/customers.csv")
}

fn mapping(expiry: Option<u32>) -> Value {
    let text = std::fs::read(Path::new(ROOT).join("testdata/customers.mapping.json")).unwrap();
    let mut m: Value = serde_json::from_slice(&text).unwrap();
    let obj = m.as_object_mut().unwrap();
    obj.remove("DataExpiry");
    if let Some(d) = expiry {
        obj.insert("DataExpiry".into(), json!(d));
    }
    m
}

/// A clock the test moves.
fn fake_clock() -> (Arc<AtomicI64>, Clock) {
    let now = Arc::new(AtomicI64::new(T0));
    let n = Arc::clone(&now);
    (now, Arc::new(move || n.load(Ordering::SeqCst)))
}

struct Env {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    runner: Runner,
    now: Arc<AtomicI64>,
    acct: AccountId,
}

fn env(max_jobs: usize, batch_rows: usize) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let (now, clock) = fake_clock();
    let runner = Runner::new(
        store.clone(),
        RunnerConfig {
            max_jobs,
            threads: Some(2),
            batch_rows,
            clock,
            progress_interval: Duration::from_millis(5),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    Env {
        _dir: dir,
        store,
        runner,
        now,
        acct: AccountId::default(),
    }
}

impl Env {
    fn domain(&self, name: &str, days: u32) {
        self.store
            .create_domain(&self.acct, &Domain::new(name, days, T0))
            .unwrap();
    }

    fn job_ref<'a>(&'a self, id: &'a str) -> JobRef<'a> {
        JobRef {
            account: &self.acct,
            id,
        }
    }

    fn submit(&self, job: ProfileJob) -> Result<JobRecord, JobError> {
        self.runner
            .submit(&self.acct, &JobSpec::Profiles(job), None)
    }

    fn job(&self, domain: &str, inputs: &[PathBuf], expiry: Option<u32>) -> ProfileJob {
        ProfileJob {
            domain: domain.into(),
            display_name: None,
            mapping: mapping(expiry),
            inputs: inputs.iter().cloned().map(Source::File).collect(),
            piece_size: Some(16 * 1024),
            range_size: None,
            region: None,
            delimiter: None,
            sealed_key: None,
        }
    }

    fn run(&self, job: &ProfileJob) -> JobRecord {
        let id = self.submit(job.clone()).unwrap().id;
        self.runner.wait(self.job_ref(&id), None).unwrap()
    }

    fn rows_in_table(&self) -> i64 {
        let c = rusqlite::Connection::open(self.store.path()).unwrap();
        c.query_row("SELECT count(*) FROM profiles", [], |r| r.get(0))
            .unwrap()
    }
}

fn assert_accounts(j: &JobRecord) {
    let c = &j.counters;
    assert_eq!(
        c.processed,
        c.created + c.updated + c.duplicates + c.failed,
        "{j:#?}"
    );
}

/// The unique keys and JSON of a plain in-memory run.
fn expected(inputs: &[PathBuf]) -> Vec<(String, Value)> {
    let m = MappingFile::from_json(&serde_json::to_vec(&mapping(None)).unwrap()).unwrap();
    let outcome = IngestBuilder::new(m.mapping)
        .threads(1)
        .build()
        .unwrap()
        .run(inputs.iter().map(Input::path).collect())
        .unwrap();
    let mut out: Vec<(String, Value)> = outcome
        .records
        .iter()
        .map(|r| {
            let key = r.key_values().next().unwrap().to_owned();
            let mut obj = serde_json::Map::new();
            for (f, v) in outcome.records.mapping().fields().iter().zip(r.values()) {
                let mut at = &mut obj;
                let parts: Vec<&str> = f.target.split('.').collect();
                for p in &parts[..parts.len() - 1] {
                    at = at
                        .entry(p.to_string())
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                        .unwrap();
                }
                at.insert(parts[parts.len() - 1].to_owned(), json!(v));
            }
            (key, Value::Object(obj))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn a_job_writes_every_unique_record_and_accounts_for_every_row() {
    let e = env(1, 97);
    e.domain("customers", 14);
    let job = e.run(&e.job("customers", &[sample()], None));
    assert_eq!(job.status, JobStatus::PartiallySucceeded, "{job:#?}");
    assert_accounts(&job);
    let want = expected(&[sample()]);
    assert_eq!(job.counters.created, want.len() as u64);
    assert_eq!(job.counters.updated, 0);
    assert_eq!(job.counters.processed, 2000);
    assert!(job.counters.failures.len() as u64 == job.counters.failed.min(100));
    assert_eq!(job.counters.completed_pieces, job.counters.total_pieces);
    assert_eq!(job.attempts, 1);
    assert!(job.started_ms.is_some() && job.completed_ms.is_some());
    for (key, fields) in &want {
        let p = e
            .store
            .profile(&e.acct, "customers", key, T0)
            .unwrap()
            .unwrap();
        let got: Value = serde_json::from_str(&p.fields).unwrap();
        assert_eq!(&got, fields, "{key}");
        assert_eq!(p.expires_ms, job.started_ms.unwrap() + 14 * DAY);
    }
    assert_eq!(
        e.store.count_profiles(&e.acct, "customers", T0).unwrap(),
        want.len() as u64
    );
}

#[test]
fn a_second_run_updates_every_record_and_creates_none() {
    let e = env(1, 300);
    e.domain("customers", 14);
    let first = e.run(&e.job("customers", &[sample()], None));
    e.now.fetch_add(1000, Ordering::SeqCst);
    let second = e.run(&e.job("customers", &[sample()], None));
    assert_accounts(&first);
    assert_accounts(&second);
    let unique = first.counters.created;
    assert_eq!(
        (second.counters.created, second.counters.updated),
        (0, unique)
    );
    assert_eq!(e.rows_in_table(), unique as i64);
    // The key's first writing time stays; the last one moves.
    let (key, _) = &expected(&[sample()])[0];
    let p = e
        .store
        .profile(&e.acct, "customers", key, T0 + 2000)
        .unwrap()
        .unwrap();
    assert!(p.updated_ms > p.created_ms, "{p:?}");
}

#[test]
fn expired_profiles_are_not_returned_the_longest_expiry_wins_and_purges_delete() {
    let e = env(1, 500);
    e.domain("customers", 3);
    let (key, _) = expected(&[sample()]).swap_remove(7);
    // Domain default: 3 days.
    let a = e.run(&e.job("customers", &[sample()], None));
    let p = e
        .store
        .profile(&e.acct, "customers", &key, T0)
        .unwrap()
        .unwrap();
    assert_eq!(p.expires_ms, a.started_ms.unwrap() + 3 * DAY);
    // A 30-day job, then a 1-day job: 30 days wins.
    e.run(&e.job("customers", &[sample()], Some(30)));
    e.run(&e.job("customers", &[sample()], Some(1)));
    let p = e
        .store
        .profile(&e.acct, "customers", &key, T0)
        .unwrap()
        .unwrap();
    assert_eq!(p.expires_ms, T0 + 30 * DAY);
    let unique = a.counters.created;

    e.now.store(T0 + 29 * DAY, Ordering::SeqCst);
    assert!(
        e.store
            .profile(&e.acct, "customers", &key, T0 + 29 * DAY)
            .unwrap()
            .is_some()
    );
    assert_eq!(e.store.purge_expired(T0 + 29 * DAY).unwrap(), 0);

    let later = T0 + 30 * DAY;
    assert_eq!(
        e.store.profile(&e.acct, "customers", &key, later).unwrap(),
        None
    );
    assert_eq!(
        e.store.count_profiles(&e.acct, "customers", later).unwrap(),
        0
    );
    assert_eq!(e.store.purge_expired(later).unwrap(), unique);
    assert_eq!(e.rows_in_table(), 0);

    // After expiry, the same keys count as created again.
    e.now.store(later, Ordering::SeqCst);
    let again = e.run(&e.job("customers", &[sample()], None));
    assert_eq!(
        (again.counters.created, again.counters.updated),
        (unique, 0)
    );
}

#[test]
fn a_job_purges_expired_profiles_of_its_domain_before_writing() {
    let e = env(1, 400);
    e.domain("customers", 1);
    let a = e.run(&e.job("customers", &[sample()], None));
    e.now.store(T0 + 2 * DAY, Ordering::SeqCst);
    let b = e.run(&e.job("customers", &[sample()], None));
    assert_eq!(b.counters.created, a.counters.created, "{b:#?}");
    assert_eq!(b.counters.updated, 0);
    assert_eq!(e.rows_in_table(), a.counters.created as i64);
}

/// Writes `rows` customers with keys `user{first..}` to a CSV.
fn write_csv(dir: &Path, name: &str, keys: std::ops::Range<u32>, tag: &str) -> PathBuf {
    let mut s = String::from(sluice::synth::HEADER);
    s.push('\n');
    for k in keys {
        s.push_str(&format!(
            "C{k},Ann,Lee,user{k}@example.com,(415) 555-{:04},{tag},94110,1.5,2024-01-01,\n",
            k % 10_000
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, s).unwrap();
    p
}

#[test]
fn concurrent_jobs_into_different_and_the_same_domain_stay_consistent() {
    let e = env(3, 50);
    let files = tempfile::tempdir().unwrap();
    e.domain("east", 14);
    e.domain("west", 14);
    let a = write_csv(files.path(), "a.csv", 0..3000, "A");
    let b = write_csv(files.path(), "b.csv", 2000..5000, "B");
    let c = write_csv(files.path(), "c.csv", 4000..4500, "C");
    let plan = [
        ("east", a.clone()),
        ("east", b.clone()),
        ("west", c.clone()),
        ("west", a.clone()),
        ("east", c.clone()),
    ];
    let ids: Vec<String> = plan
        .iter()
        .map(|(d, f)| {
            e.submit(e.job(d, std::slice::from_ref(f), None))
                .unwrap()
                .id
        })
        .collect();
    let jobs: Vec<JobRecord> = ids
        .iter()
        .map(|id| e.runner.wait(e.job_ref(id), None).unwrap())
        .collect();
    for (d, want) in [("east", 5000u64), ("west", 3500)] {
        let of_domain: Vec<&JobRecord> = jobs
            .iter()
            .filter(|j| j.domain.as_deref() == Some(d))
            .collect();
        for j in &of_domain {
            assert_eq!(j.status, JobStatus::Succeeded, "{j:#?}");
            assert_accounts(j);
        }
        let created: u64 = of_domain.iter().map(|j| j.counters.created).sum();
        let written: u64 = of_domain
            .iter()
            .map(|j| j.counters.created + j.counters.updated)
            .sum();
        let rows: u64 = of_domain.iter().map(|j| j.counters.processed).sum();
        assert_eq!(created, want, "{d}");
        assert_eq!(written, rows, "{d}");
        assert_eq!(e.store.count_profiles(&e.acct, d, T0).unwrap(), want, "{d}");
    }
    // A key only in one domain's files is not in the other.
    assert!(
        e.store
            .profile(&e.acct, "west", "user100@example.com", T0)
            .unwrap()
            .is_some()
    );
    assert!(
        e.store
            .profile(&e.acct, "west", "user2500@example.com", T0)
            .unwrap()
            .is_some()
    );
    assert!(
        e.store
            .profile(&e.acct, "west", "user4900@example.com", T0)
            .unwrap()
            .is_none()
    );
    let listed = e.store.jobs(&Default::default()).unwrap();
    assert_eq!(listed.len(), 5);
}

#[test]
fn illegal_transitions_are_errors_and_stops_are_checked() {
    let e = env(1, 100);
    e.domain("customers", 14);
    let created = e
        .runner
        .create(
            &e.acct,
            &new_job_id(),
            &JobSpec::Profiles(e.job("customers", &[sample()], None)),
            None,
        )
        .unwrap();
    assert_eq!(created.status, JobStatus::Created);
    // CREATED cannot finish.
    let err = e
        .store
        .transition(
            e.job_ref(&created.id),
            &Transition::new(JobStatus::Created, JobStatus::Succeeded, T0),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Transition { .. }), "{err}");
    // A stale `from` is refused, even for a legal step.
    let err = e
        .store
        .transition(
            e.job_ref(&created.id),
            &Transition::new(JobStatus::Queued, JobStatus::Running, T0),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "job {} is CREATED; it cannot go from QUEUED to RUNNING",
            created.id
        )
    );
    let stopped = e.runner.stop(e.job_ref(&created.id)).unwrap();
    assert_eq!(stopped.status, JobStatus::Stopped);
    assert!(stopped.completed_ms.is_some());
    // A stopped job cannot start.
    let err = e.runner.start(e.job_ref(&created.id)).unwrap_err();
    assert!(err.to_string().contains("is STOPPED"), "{err}");
    assert_eq!(e.store.count_profiles(&e.acct, "customers", T0).unwrap(), 0);
}

#[test]
fn a_job_whose_runner_died_can_be_stopped() {
    // This runner runs nothing: the job's runner was another process.
    let e = env(0, 100);
    e.domain("customers", 14);
    let spec = JobSpec::Profiles(e.job("customers", &[sample()], None));
    let job = |id: &str| e.runner.create(&e.acct, id, &spec, None).unwrap().id;
    let running = |id: &str| {
        for (from, to) in [
            (JobStatus::Created, JobStatus::Queued),
            (JobStatus::Queued, JobStatus::Running),
        ] {
            e.store
                .transition(e.job_ref(id), &Transition::new(from, to, T0))
                .unwrap();
        }
    };
    // Held by a live runner: it stops between pieces, not here.
    let held = job(&new_job_id());
    running(&held);
    let lease = e
        .store
        .acquire_lease(
            &e.acct,
            &job_lease(&held),
            Holder::this_process().as_str(),
            T0,
            60_000,
        )
        .unwrap()
        .unwrap();
    let j = e.runner.stop(e.job_ref(&held)).unwrap();
    assert_eq!(j.status, JobStatus::Running);
    assert!(j.stop_requested, "{j:#?}");
    // Its runner died: no lease is held (or the holder is gone).
    e.store.release_lease(&lease).unwrap();
    let j = e.runner.stop(e.job_ref(&held)).unwrap();
    assert_eq!(j.status, JobStatus::Stopped, "{j:#?}");
    assert!(
        j.status_reason
            .as_deref()
            .unwrap()
            .contains("after its runner stopped"),
        "{j:#?}"
    );
    // A stopped job stays stopped; stopping again changes nothing.
    assert_eq!(
        e.runner.stop(e.job_ref(&held)).unwrap().status,
        JobStatus::Stopped
    );
}

#[test]
fn bad_requests_and_unknown_domains_are_refused_before_a_job_exists() {
    let e = env(1, 100);
    let err = e.submit(e.job("nowhere", &[sample()], None)).unwrap_err();
    assert_eq!(err.to_string(), "no domain \"nowhere\"");
    e.domain("customers", 14);
    let mut bad = e.job("customers", &[sample()], None);
    bad.mapping["UniqueKey"] = json!("Nope");
    let err = e.submit(bad).unwrap_err();
    assert!(
        err.to_string().starts_with("invalid job request: mapping"),
        "{err}"
    );
    assert!(e.store.jobs(&Default::default()).unwrap().is_empty());

    // An input that vanished before the job ran fails it, naming the file.
    let job = e.run(&e.job("customers", &[PathBuf::from("/nonexistent/x.csv")], None));
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.status_reason
            .as_deref()
            .unwrap()
            .contains("/nonexistent/x.csv"),
        "{job:#?}"
    );
}

#[test]
fn a_job_stopped_while_it_runs_ends_stopped_and_keeps_what_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let big = write_csv(dir.path(), "big.csv", 0..60_000, "X");
    let e = env(1, 10);
    e.domain("customers", 14);
    let id = e.submit(e.job("customers", &[big], None)).unwrap().id;
    // Stop it once it is writing.
    loop {
        let j = e.store.job(e.job_ref(&id)).unwrap().unwrap();
        if j.counters.created > 0 || j.status.is_terminal() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    e.runner.stop(e.job_ref(&id)).unwrap();
    let j = e.runner.wait(e.job_ref(&id), None).unwrap();
    if j.status == JobStatus::Stopped {
        let written = j.counters.created;
        assert!(written > 0 && written < 60_000, "{j:#?}");
        assert_eq!(
            e.store.count_profiles(&e.acct, "customers", T0).unwrap(),
            written
        );
        assert!(j.status_reason.unwrap().contains("stopped on request"));
    } else {
        // It finished before the stop arrived: all of it is there.
        assert_eq!(j.status, JobStatus::Succeeded);
        assert_eq!(
            e.store.count_profiles(&e.acct, "customers", T0).unwrap(),
            60_000
        );
    }
}

#[test]
fn the_schema_is_readable_with_plain_sql_and_checks_clean() {
    let e = env(1, 1000);
    e.domain("customers", 14);
    e.run(&e.job("customers", &[sample()], None));
    assert_eq!(e.store.integrity_check(), Ok(()));
    let c = rusqlite::Connection::open(e.store.path()).unwrap();
    let (email, city): (String, String) = c
        .query_row(
            "SELECT fields->>'$.EmailAddress', fields->>'$.Address.City' FROM live_profiles \
             WHERE domain = 'customers' ORDER BY profile_key LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(email.contains('@'));
    assert!(!city.is_empty());
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, sluice::store::SCHEMA_VERSION);
    let keys: BTreeSet<String> = c
        .prepare("SELECT profile_key FROM profiles")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        keys.len() as u64,
        e.store.count_profiles(&e.acct, "customers", T0).unwrap()
    );
}

#[test]
fn a_store_from_a_newer_sluice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let c = rusqlite::Connection::open(dir.path().join(sluice::store::DB_FILE)).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("has schema version 99"), "{err}");
}

#[test]
fn a_key_of_several_fields_is_stored_as_a_json_array_in_its_text_order() {
    // City and customer id: JSON array text orders differently from the
    // engine's own encoding of the pair (lengths first), and small batches
    // make the store check that order across many of them.
    let e = env(1, 7);
    e.domain("customers", 14);
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from(sluice::synth::HEADER);
    csv.push('\n');
    let cities = ["Oslo", "Rome", "A", "Zürich", "Bath \"Spa\"", "Köln"];
    for i in 0..60u32 {
        let city = cities[i as usize % cities.len()];
        csv.push_str(&format!(
            "C{},Ann,Lee,u{i}@example.com,,\"{}\",1,1,2024-01-01,\n",
            i % 9,
            city.replace('"', "\"\"")
        ));
    }
    let input = dir.path().join("multi.csv");
    std::fs::write(&input, csv).unwrap();
    let mut job = e.job("customers", std::slice::from_ref(&input), None);
    job.mapping["UniqueKey"] = json!("City,CustomerId");
    let done = e.run(&job);
    assert_eq!(done.status, JobStatus::Succeeded, "{done:#?}");
    // 6 cities x 9 ids share 18 pairs (i mod 18): 18 unique keys.
    assert_eq!(done.counters.created, 18);
    assert_eq!(done.counters.duplicates, 60 - 18);
    let p = e
        .store
        .profile(&e.acct, "customers", r#"["Bath \"Spa\"","C4"]"#, T0)
        .unwrap()
        .expect("stored under its JSON array key");
    let fields: Value = serde_json::from_str(&p.fields).unwrap();
    // The last row of the pair wins: i = 58 (58 mod 18 = 4).
    assert_eq!(fields["EmailAddress"], "u58@example.com");
    assert_eq!(fields["Address"]["City"], "Bath \"Spa\"");
    assert_eq!(e.rows_in_table(), 18);
}
