//! Store errors in the middle of a job, through the library: a store that
//! fails a chosen call (the wrapper below, over the in-memory backend).
//!
//! * A transient error (a busy or lost connection) sends the job back to
//!   the queue; the runner resumes it, and its counts and what it wrote are
//!   exactly those of a run that met no error.
//! * An error that stays fails the job with a reason that names the store
//!   and the step, and keeps what was written.
//! * A transient error that keeps coming fails the job after its attempts
//!   run out, rather than looping.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice::objects::{MemoryObjects, ObjectAttributes, put};
use sluice::store::{
    AccountId, App, AppStore, Attempt, BucketSettings, BucketStore, Domain, DomainChange,
    EndpointBatch, EndpointFilter, EndpointMerge, EndpointWrite, EndpointsOf, JobCounters,
    JobFilter, JobRecord, JobRef, JobStatus, JobStore, Lease, LeaseChange, LeaseStore, MemoryStore,
    NewJob, PieceCounts, PieceStore, Profile, ProfileBatch, ProfileSearch, ProfileStore, Segment,
    Store, StoreError, StoredEndpoint, Transition, WriteCounts,
};
use sluice::synth::{EndpointSpec, Spec, write_customers, write_endpoints};
use sluice::{ImportJob, JobSpec, Objects, ProfileJob, Runner, RunnerConfig, Source};

/// How a call fails: after how many calls that succeed, how many times,
/// and whether trying again may work.
#[derive(Clone, Copy, Debug)]
struct Fault {
    after: u32,
    times: u32,
    transient: bool,
}

/// The in-memory store, with faults injected by operation name.
#[derive(Debug, Default)]
struct Faulty {
    inner: MemoryStore,
    faults: Mutex<HashMap<&'static str, Fault>>,
    calls: Mutex<HashMap<&'static str, u32>>,
}

impl Faulty {
    fn inject(&self, op: &'static str, fault: Fault) {
        self.faults.lock().unwrap().insert(op, fault);
    }

    fn calls(&self, op: &'static str) -> u32 {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    fn check(&self, op: &'static str) -> Result<(), StoreError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(op).or_default();
            *n += 1;
            *n
        };
        let mut faults = self.faults.lock().unwrap();
        match faults.get_mut(op) {
            Some(f) if n > f.after && f.times > 0 => {
                f.times -= 1;
                Err(StoreError::Backend {
                    location: "faulty".into(),
                    message: format!("{op} call {n}: injected"),
                    transient: f.transient,
                })
            }
            _ => Ok(()),
        }
    }
}

impl Store for Faulty {
    fn location(&self) -> String {
        "faulty".into()
    }
}

impl JobStore for Faulty {
    fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        self.check("insert_job")?;
        self.inner.insert_job(job)
    }
    fn job(&self, job: JobRef<'_>) -> Result<Option<JobRecord>, StoreError> {
        self.check("job")?;
        self.inner.job(job)
    }
    fn jobs(&self, filter: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        self.check("jobs")?;
        self.inner.jobs(filter)
    }
    fn update_spec(&self, job: JobRef<'_>, spec: &str) -> Result<JobRecord, StoreError> {
        self.check("update_spec")?;
        self.inner.update_spec(job, spec)
    }
    fn transition(&self, job: JobRef<'_>, t: &Transition<'_>) -> Result<JobRecord, StoreError> {
        self.check("transition")?;
        self.inner.transition(job, t)
    }
    fn save_progress(&self, job: JobRef<'_>, counters: &JobCounters) -> Result<(), StoreError> {
        self.check("save_progress")?;
        self.inner.save_progress(job, counters)
    }
    fn set_input_fingerprint(&self, job: JobRef<'_>, fingerprint: &str) -> Result<(), StoreError> {
        self.check("set_input_fingerprint")?;
        self.inner.set_input_fingerprint(job, fingerprint)
    }
    fn set_phase(&self, job: JobRef<'_>, phase: &str) -> Result<(), StoreError> {
        self.check("set_phase")?;
        self.inner.set_phase(job, phase)
    }
    fn clear_written(&self, attempt: Attempt<'_>) -> Result<(), StoreError> {
        self.check("clear_written")?;
        self.inner.clear_written(attempt)
    }
    fn request_stop(&self, job: JobRef<'_>) -> Result<JobRecord, StoreError> {
        self.check("request_stop")?;
        self.inner.request_stop(job)
    }
}

impl PieceStore for Faulty {
    fn plan_pieces(&self, attempt: Attempt<'_>, total: u64) -> Result<(), StoreError> {
        self.check("plan_pieces")?;
        self.inner.plan_pieces(attempt, total)
    }
    fn complete_piece(
        &self,
        attempt: Attempt<'_>,
        piece: &PieceCounts,
    ) -> Result<bool, StoreError> {
        self.check("complete_piece")?;
        self.inner.complete_piece(attempt, piece)
    }
    fn pieces(&self, job: JobRef<'_>) -> Result<Vec<PieceCounts>, StoreError> {
        self.check("pieces")?;
        self.inner.pieces(job)
    }
}

impl LeaseStore for Faulty {
    fn change_lease(
        &self,
        account: &AccountId,
        name: &str,
        change: &LeaseChange<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        self.check("change_lease")?;
        self.inner.change_lease(account, name, change)
    }
    fn acquire_lease(
        &self,
        account: &AccountId,
        name: &str,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.check("acquire_lease")?;
        self.inner
            .acquire_lease(account, name, holder, now_ms, ttl_ms)
    }
    fn renew_lease(
        &self,
        lease: &Lease,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.check("renew_lease")?;
        self.inner.renew_lease(lease, now_ms, ttl_ms)
    }
    fn take_over_lease(
        &self,
        seen: &Lease,
        holder: &str,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Option<Lease>, StoreError> {
        self.check("take_over_lease")?;
        self.inner.take_over_lease(seen, holder, now_ms, ttl_ms)
    }
    fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.check("release_lease")?;
        self.inner.release_lease(lease)
    }
    fn lease(&self, account: &AccountId, name: &str) -> Result<Option<Lease>, StoreError> {
        self.check("lease")?;
        self.inner.lease(account, name)
    }
}

impl ProfileStore for Faulty {
    fn create_domain(&self, account: &AccountId, domain: &Domain) -> Result<(), StoreError> {
        self.check("create_domain")?;
        self.inner.create_domain(account, domain)
    }
    fn domain(&self, account: &AccountId, name: &str) -> Result<Option<Domain>, StoreError> {
        self.check("domain")?;
        self.inner.domain(account, name)
    }
    fn domains(&self, account: &AccountId) -> Result<Vec<Domain>, StoreError> {
        self.check("domains")?;
        self.inner.domains(account)
    }
    fn update_domain(
        &self,
        account: &AccountId,
        name: &str,
        change: &DomainChange<'_>,
    ) -> Result<Domain, StoreError> {
        self.check("update_domain")?;
        self.inner.update_domain(account, name, change)
    }
    fn delete_domain(&self, account: &AccountId, name: &str) -> Result<u64, StoreError> {
        self.check("delete_domain")?;
        self.inner.delete_domain(account, name)
    }
    fn write_profiles(&self, batch: &ProfileBatch<'_>) -> Result<WriteCounts, StoreError> {
        self.check("write_profiles")?;
        self.inner.write_profiles(batch)
    }
    fn profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError> {
        self.check("profile")?;
        self.inner.profile(account, domain, key, now_ms)
    }
    fn profile_by_no(
        &self,
        account: &AccountId,
        domain: &str,
        no: u64,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError> {
        self.check("profile_by_no")?;
        self.inner.profile_by_no(account, domain, no, now_ms)
    }
    fn search_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        search: &ProfileSearch<'_>,
    ) -> Result<Vec<Profile>, StoreError> {
        self.check("search_profiles")?;
        self.inner.search_profiles(account, domain, search)
    }
    fn settle_search(&self, account: &AccountId, domain: &str) -> Result<(), StoreError> {
        self.check("settle_search")?;
        self.inner.settle_search(account, domain)
    }
    fn delete_profile(
        &self,
        account: &AccountId,
        domain: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.check("delete_profile")?;
        self.inner.delete_profile(account, domain, key, now_ms)
    }
    fn count_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        self.check("count_profiles")?;
        self.inner.count_profiles(account, domain, now_ms)
    }
    fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.check("purge_expired")?;
        self.inner.purge_expired(now_ms)
    }
}

impl AppStore for Faulty {
    fn endpoints_after(
        &self,
        account: &AccountId,
        app: &str,
        filter: Option<&EndpointFilter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.check("endpoints_after")?;
        self.inner
            .endpoints_after(account, app, filter, after, limit)
    }
    fn delete_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        which: EndpointsOf<'_>,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.check("delete_endpoints")?;
        self.inner.delete_endpoints(account, app, which)
    }
    fn create_app(&self, account: &AccountId, app: &App) -> Result<(), StoreError> {
        self.check("create_app")?;
        self.inner.create_app(account, app)
    }
    fn app(&self, account: &AccountId, id: &str) -> Result<Option<App>, StoreError> {
        self.check("app")?;
        self.inner.app(account, id)
    }
    fn apps(&self, account: &AccountId) -> Result<Vec<App>, StoreError> {
        self.check("apps")?;
        self.inner.apps(account)
    }
    fn delete_app(&self, account: &AccountId, id: &str) -> Result<App, StoreError> {
        self.check("delete_app")?;
        self.inner.delete_app(account, id)
    }
    fn write_endpoints(
        &self,
        batch: &EndpointBatch<'_>,
        merge: &mut EndpointMerge<'_>,
    ) -> Result<Vec<EndpointWrite>, StoreError> {
        self.check("write_endpoints")?;
        self.inner.write_endpoints(batch, merge)
    }
    fn endpoint(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<StoredEndpoint>, StoreError> {
        self.check("endpoint")?;
        self.inner.endpoint(account, app, id)
    }
    fn user_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        user_id: &str,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        self.check("user_endpoints")?;
        self.inner.user_endpoints(account, app, user_id)
    }
    fn create_segment(&self, account: &AccountId, segment: &Segment) -> Result<(), StoreError> {
        self.check("create_segment")?;
        self.inner.create_segment(account, segment)
    }
    fn segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<Segment>, StoreError> {
        self.check("segment")?;
        self.inner.segment(account, app, id)
    }
    fn segments(&self, account: &AccountId, app: &str) -> Result<Vec<Segment>, StoreError> {
        self.check("segments")?;
        self.inner.segments(account, app)
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
        self.check("update_segment")?;
        self.inner
            .update_segment(account, app, id, name, definition, now_ms)
    }
    fn delete_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Segment, StoreError> {
        self.check("delete_segment")?;
        self.inner.delete_segment(account, app, id)
    }
    fn segment_channel_counts(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.check("segment_channel_counts")?;
        self.inner.segment_channel_counts(account, app, id)
    }
}

impl BucketStore for Faulty {
    fn set_bucket_settings(
        &self,
        account: &AccountId,
        settings: &BucketSettings,
    ) -> Result<(), StoreError> {
        self.check("set_bucket_settings")?;
        self.inner.set_bucket_settings(account, settings)
    }
    fn bucket_settings(
        &self,
        account: &AccountId,
        bucket: &str,
    ) -> Result<Option<BucketSettings>, StoreError> {
        self.check("bucket_settings")?;
        self.inner.bucket_settings(account, bucket)
    }
    fn forget_bucket(&self, account: &AccountId, bucket: &str) -> Result<(), StoreError> {
        self.check("forget_bucket")?;
        self.inner.forget_bucket(account, bucket)
    }
    fn bucket_accounts(&self, bucket: &str) -> Result<Vec<AccountId>, StoreError> {
        self.check("bucket_accounts")?;
        self.inner.bucket_accounts(bucket)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} after {} calls, {} times",
            if self.transient {
                "transient"
            } else {
                "lasting"
            },
            self.after,
            self.times
        )
    }
}

const APP: &str = "faultyapp000000000000000000000aa";

/// The inputs of both kinds of job: a customer CSV (duplicates, bad rows)
/// as a file, and two endpoint CSVs in a bucket.
struct Inputs {
    dir: tempfile::TempDir,
    buckets: MemoryObjects,
}

fn inputs() -> Inputs {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec {
        bad_rate: 0.01,
        ..Spec::new(16_000, 21)
    };
    write_customers(
        &spec,
        std::fs::File::create(dir.path().join("c.csv")).unwrap(),
    )
    .unwrap();
    let buckets = MemoryObjects::new();
    buckets.create_bucket("inbox").unwrap();
    for seed in [1, 2] {
        let mut csv = Vec::new();
        let spec = EndpointSpec {
            rows: 15_000,
            endpoints: 30_000,
            attributes: 2,
            seed,
        };
        write_endpoints(&spec, &mut csv).unwrap();
        let key = format!("in/e{seed}.csv");
        put(
            &buckets,
            "inbox",
            &key,
            &csv[..],
            &ObjectAttributes::default(),
        )
        .unwrap();
    }
    Inputs { dir, buckets }
}

fn profiles_spec(inputs: &Inputs) -> JobSpec {
    let mapping: serde_json::Value = serde_json::from_str(sluice::synth::MAPPING_JSON).unwrap();
    JobSpec::Profiles(ProfileJob {
        domain: "d".into(),
        display_name: None,
        mapping,
        inputs: vec![Source::File(inputs.dir.path().join("c.csv"))],
        piece_size: Some(64 << 10),
        range_size: None,
        region: None,
        delimiter: None,
        sealed_key: None,
    })
}

fn import_spec() -> JobSpec {
    JobSpec::Import(ImportJob {
        app: APP.into(),
        format: sluice::endpoints::Format::Csv,
        s3_url: "s3://inbox/in/".into(),
        role_arn: "arn:aws:iam::123456789012:role/Import".into(),
        external_id: None,
        register_endpoints: true,
        define_segment: true,
        segment_name: Some("all".into()),
        segment_id: None,
        piece_size: Some(64 << 10),
        region: None,
    })
}

/// What the store holds after a job: profiles in the domain, endpoints of
/// user u1, and the job's segment by channel.
type Held = (u64, usize, Vec<(String, u64)>);

/// Runs `spec` to its end on a fresh store with `fault` injected into
/// `op`; returns the job, the store and what it holds.
fn run(
    inputs: &Inputs,
    spec: &JobSpec,
    fault: Option<(&'static str, Fault)>,
) -> (JobRecord, Arc<Faulty>, Held) {
    let account = AccountId::default();
    let store = Arc::new(Faulty::default());
    store
        .create_domain(&account, &Domain::new("d", 14, 0))
        .unwrap();
    let app = App {
        id: APP.into(),
        name: "a".into(),
        tags: "{}".into(),
        created_ms: 0,
    };
    store.create_app(&account, &app).unwrap();
    let objects: Arc<dyn Objects> = Arc::new(inputs.buckets.clone());
    let runner = Runner::new(
        Arc::clone(&store) as Arc<dyn Store>,
        RunnerConfig {
            objects: Some(objects),
            batch_rows: 1_000,
            threads: Some(2),
            recover_every: Some(Duration::from_millis(20)),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    if let Some((op, f)) = fault {
        store.inject(op, f);
    }
    let job = runner.submit(&account, spec, None).unwrap();
    let job_ref = JobRef {
        account: &account,
        id: &job.id,
    };
    let done = runner
        .wait(job_ref, Some(Duration::from_secs(120)))
        .unwrap();
    drop(runner);
    store.faults.lock().unwrap().clear();
    let held = (
        store.count_profiles(&account, "d", 0).unwrap(),
        store.user_endpoints(&account, APP, "u1").unwrap().len(),
        match spec {
            JobSpec::Import(_) => store
                .segment_channel_counts(&account, APP, &done.id)
                .unwrap(),
            _ => Vec::new(),
        },
    );
    (done, store, held)
}

#[test]
fn a_transient_store_error_mid_job_resumes_to_the_exact_counts() {
    let inputs = inputs();
    for (kind, spec, ops) in [
        (
            "profiles",
            profiles_spec(&inputs),
            &[
                ("write_profiles", 2),
                ("complete_piece", 5),
                ("save_progress", 0),
                ("plan_pieces", 0),
            ][..],
        ),
        (
            "import",
            import_spec(),
            &[
                ("write_endpoints", 1),
                ("complete_piece", 5),
                ("clear_written", 0),
                ("create_segment", 0),
            ][..],
        ),
    ] {
        let (clean, _, want) = run(&inputs, &spec, None);
        assert_ne!(clean.status, JobStatus::Failed, "{kind}: {clean:?}");
        assert_eq!(clean.attempts, 1);
        assert!(
            clean.counters.failed > 0 && clean.counters.duplicates > 0,
            "{kind}"
        );
        assert!(
            clean.counters.created > 10_000,
            "{kind}: several write batches"
        );
        for &(op, after) in ops {
            let fault = Fault {
                after,
                times: 1,
                transient: true,
            };
            let ctx = format!("{kind}: {op} {fault}");
            let (got, store, held) = run(&inputs, &spec, Some((op, fault)));
            assert!(store.calls(op) > 1, "{ctx}: the fault was met");
            assert_eq!(got.status, clean.status, "{ctx}: {got:?}");
            assert_eq!(got.attempts, 2, "{ctx}: resumed once");
            // Every counter (pieces, rows, created vs updated, the Failures)
            // as if nothing had happened.
            assert_eq!(got.counters, clean.counters, "{ctx}");
            assert_eq!(held, want, "{ctx}: what the store holds");
        }
    }
}

#[test]
fn a_lasting_store_error_fails_the_job_and_says_where() {
    let inputs = inputs();
    for (spec, op, step) in [
        (profiles_spec(&inputs), "write_profiles", "writing profiles"),
        (import_spec(), "write_endpoints", "writing endpoints"),
    ] {
        let fault = Fault {
            after: 1,
            times: u32::MAX,
            transient: false,
        };
        let (got, _, held) = run(&inputs, &spec, Some((op, fault)));
        assert_eq!(got.status, JobStatus::Failed, "{op}: {got:?}");
        assert_eq!(got.attempts, 1, "{op}: not tried again");
        let reason = got.status_reason.clone().unwrap_or_default();
        assert!(
            reason.contains(step) && reason.contains("faulty") && reason.contains("injected"),
            "{op}: {reason}"
        );
        // The first batch was written and stays.
        let written = got.counters.created + got.counters.updated;
        assert!(written > 0, "{op}: {got:?}");
        if op == "write_profiles" {
            assert_eq!(held.0, written, "{op}");
        }
    }
}

#[test]
fn a_transient_error_that_keeps_coming_fails_after_the_last_attempt() {
    let inputs = inputs();
    let fault = Fault {
        after: 0,
        times: u32::MAX,
        transient: true,
    };
    let (got, store, _) = run(
        &inputs,
        &profiles_spec(&inputs),
        Some(("write_profiles", fault)),
    );
    assert_eq!(got.status, JobStatus::Failed, "{got:?}");
    assert!(got.attempts > 1, "{got:?}");
    assert_eq!(store.calls("write_profiles"), got.attempts);
    let reason = got.status_reason.unwrap_or_default();
    assert!(reason.contains("injected"), "{reason}");
}

/// `GET /_sluice/health`: 200 while the store answers, 503 (saying why,
/// unsigned) when it does not, and 200 again when it is back.
#[cfg(feature = "server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_check_says_when_the_store_cannot_be_read() {
    use sluice::server::{HEALTH_PATH, Server, ServerConfig};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Faulty::default());
    let server = Server::bind(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        store: Arc::clone(&store) as Arc<dyn Store>,
        max_jobs: 0,
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.run(std::future::pending()));
    let get = || async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {HEALTH_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let ok = get().await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains(r#""status":"ok""#), "{ok}");
    assert!(ok.contains(env!("CARGO_PKG_VERSION")), "{ok}");
    assert!(ok.to_ascii_lowercase().contains("x-amz-request-id"), "{ok}");
    store.inject(
        "job",
        Fault {
            after: 0,
            times: 1,
            transient: false,
        },
    );
    let down = get().await;
    assert!(down.starts_with("HTTP/1.1 503"), "{down}");
    assert!(
        down.contains("unavailable") && down.contains("injected"),
        "{down}"
    );
    let back = get().await;
    assert!(back.starts_with("HTTP/1.1 200"), "{back}");
}
