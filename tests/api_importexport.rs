//! Import/Export jobs through the library surface, on local buckets: the
//! 30-day expiry on a moved clock, files that cannot be copied (logged and
//! counted, the rest copied), a run left behind by a dead process run
//! again, a job held by another run, and a refused device that copies
//! nothing.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use sluice::api::importexport::*;
use sluice::job::{
    Clock, Holder, JobStatus, Objects, SIGNATURE_FILE, TRANSFER_EXPIRY_MS, TransferError,
    job_lease, run_device,
};
use sluice::objects::{LocalObjects, Objects as _};
use sluice::store::{AccountId, JobRef, SqliteStore, Store, Transition};

const MANIFEST: &str = "manifestVersion: 2.0
accessKeyId: AKID1
deviceId: disk-1
eraseDevice: no
bucket: inbox
logBucket: logs
returnAddress:
    name: Jane Roe
    street1: 123 Any Street
    city: Anytown
    stateOrProvince: WA
    postalCode: 91011
    phoneNumber: +1 206 555 1111
    country: US
";

struct Env {
    api: ImportExport,
    store: Arc<dyn Store>,
    buckets: Arc<LocalObjects>,
    now: Arc<AtomicI64>,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let buckets = Arc::new(LocalObjects::new(dir.path().join("buckets")));
        buckets.create_bucket("inbox").unwrap();
        buckets.create_bucket("logs").unwrap();
        let now = Arc::new(AtomicI64::new(1_800_000_000_000));
        let n = Arc::clone(&now);
        let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
        let objects: Objects = Arc::clone(&buckets) as Objects;
        let api = ImportExport::new(
            Arc::clone(&store),
            objects,
            Arc::new(LocalObjects::new(dir.path())),
            ImportExportConfig::default(),
            clock,
        )
        .unwrap();
        Env {
            api,
            store,
            buckets,
            now,
            dir,
        }
    }

    fn caller() -> Caller {
        Caller {
            access_key_id: "AKID1".into(),
            secret_access_key: "s3cret".into(),
        }
    }

    fn create(&self) -> CreateJobOutput {
        self.api
            .create_job(
                &Env::caller(),
                &CreateJobInput {
                    job_type: Some("Import".into()),
                    manifest: Some(MANIFEST.into()),
                    validate_only: Some(false),
                    ..CreateJobInput::default()
                },
            )
            .unwrap()
    }

    fn status(&self, id: &str) -> Result<GetStatusOutput, ImportExportError> {
        self.api.get_status(
            &Env::caller(),
            &JobInput {
                job_id: Some(id.into()),
                api_version: None,
            },
        )
    }

    fn run(&self, id: &str, device: &Path) -> Result<sluice::store::JobRecord, TransferError> {
        let now = Arc::clone(&self.now);
        let clock: Clock = Arc::new(move || now.load(Ordering::SeqCst));
        let account = AccountId::default();
        run_device(
            &self.store,
            &*self.buckets,
            &clock,
            JobRef {
                account: &account,
                id,
            },
            device,
        )
    }

    /// A device with `files` and the job's SIGNATURE.
    fn device(&self, job: &CreateJobOutput, files: &[(&str, &[u8])]) -> std::path::PathBuf {
        let d = self
            .dir
            .path()
            .join(format!("device-{}", job.job_id.as_deref().unwrap()));
        for (rel, data) in files {
            let p = d.join(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        fs::write(
            d.join(SIGNATURE_FILE),
            job.signature_file_contents.as_deref().unwrap(),
        )
        .unwrap();
        d
    }

    fn inbox(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .buckets
            .list("inbox", "")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }
}

#[test]
fn a_pending_job_expires_after_30_days() {
    let env = Env::new();
    let job = env.create();
    let id = job.job_id.clone().unwrap();
    let dev = env.device(&job, &[("a.txt", b"a")]);
    env.now.fetch_add(TRANSFER_EXPIRY_MS - 1, Ordering::SeqCst);
    assert_eq!(env.status(&id).unwrap().progress_code, "Pending");
    env.now.fetch_add(1, Ordering::SeqCst);
    let e = env.status(&id).unwrap_err();
    assert_eq!(e.exception, Exception::ExpiredJobId, "{e}");
    assert!(matches!(env.run(&id, &dev), Err(TransferError::Expired(_))));
    assert!(env.inbox().is_empty());
}

#[test]
fn files_that_cannot_be_copied_are_logged_and_counted() {
    let env = Env::new();
    let job = env.create();
    let id = job.job_id.clone().unwrap();
    let dev = env.device(&job, &[("a.txt", b"a"), ("sub/b.txt", b"bb")]);
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        std::os::unix::fs::symlink("/etc/hostname", dev.join("link")).unwrap();
        let bad = std::ffi::OsStr::from_bytes(b"bad-\xff.txt");
        fs::write(dev.join(bad), b"x").unwrap();
    }
    let done = env.run(&id, &dev).unwrap();
    assert_eq!(env.inbox(), ["a.txt", "sub/b.txt"]);
    let status = env.status(&id).unwrap();
    #[cfg(unix)]
    {
        assert_eq!(done.status, JobStatus::PartiallySucceeded);
        assert_eq!(status.progress_code, "SuccessWithErrors");
        assert_eq!(status.error_count, Some(2));
        let f = &done.counters.failures;
        assert!(
            f.iter().any(|m| m.contains("link: a symbolic link")),
            "{f:?}"
        );
        assert!(f.iter().any(|m| m.contains("not UTF-8")), "{f:?}");
        let log = sluice::objects::get(&*env.buckets, "logs", &format!("import-log-{id}")).unwrap();
        let log = String::from_utf8(log).unwrap();
        assert_eq!(
            log.lines().filter(|l| l.contains(",Error,")).count(),
            2,
            "{log}"
        );
        assert_eq!(
            log.lines().filter(|l| l.contains(",Success,")).count(),
            2,
            "{log}"
        );
    }
    #[cfg(not(unix))]
    assert_eq!(status.progress_code, "Complete");
}

#[test]
fn a_run_left_by_a_dead_process_runs_again_and_a_held_one_does_not() {
    let env = Env::new();
    let job = env.create();
    let id = job.job_id.clone().unwrap();
    let dev = env.device(&job, &[("a.txt", b"a")]);
    // Another process, alive, holds the job: refused.
    let account = AccountId::default();
    let now = env.now.load(Ordering::SeqCst);
    let alive = Holder::this_process();
    let lease = env
        .store
        .acquire_lease(&account, &job_lease(&id), alive.as_str(), now, 60_000)
        .unwrap()
        .unwrap();
    assert!(matches!(env.run(&id, &dev), Err(TransferError::Busy(_))));
    env.store.release_lease(&lease).unwrap();
    // A process of this machine that died mid-run: the job is RUNNING and
    // its lease is held by a process that no longer exists.
    for (from, to) in [
        (JobStatus::Created, JobStatus::Queued),
        (JobStatus::Queued, JobStatus::Running),
    ] {
        let job = JobRef {
            account: &account,
            id: &id,
        };
        env.store
            .transition(job, &Transition::new(from, to, 0))
            .unwrap();
    }
    let mut dead: Vec<&str> = alive.as_str().splitn(4, '/').collect();
    dead[2] = "4194305"; // above any Linux process id
    let dead = dead.join("/");
    env.store
        .acquire_lease(&account, &job_lease(&id), &dead, now, 60_000)
        .unwrap()
        .unwrap();
    assert_eq!(env.status(&id).unwrap().progress_code, "InProgress");
    let done = env.run(&id, &dev).unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(env.inbox(), ["a.txt"]);
    assert!(matches!(
        env.run(&id, &dev),
        Err(TransferError::Finished { .. })
    ));
}

#[test]
fn a_device_with_a_wrong_signature_copies_nothing() {
    let env = Env::new();
    let job = env.create();
    let id = job.job_id.clone().unwrap();
    let dev = env.device(&job, &[("a.txt", b"a")]);
    let other = env.create();
    fs::write(
        dev.join(SIGNATURE_FILE),
        other.signature_file_contents.unwrap(),
    )
    .unwrap();
    let e = env.run(&id, &dev).unwrap_err().to_string();
    assert!(e.contains("nothing was copied"), "{e}");
    assert!(env.inbox().is_empty());
    assert_eq!(env.status(&id).unwrap().progress_code, "Pending");
    // Not a folder at all.
    let e = env.run(&id, &dev.join("a.txt")).unwrap_err().to_string();
    assert!(e.contains("not a folder"), "{e}");
}

#[test]
fn a_label_for_many_jobs_is_one_label() {
    let env = Env::new();
    let ids: Vec<String> = (0..40).map(|_| env.create().job_id.unwrap()).collect();
    let out = env
        .api
        .get_shipping_label(
            &Env::caller(),
            &GetShippingLabelInput {
                job_ids: ids.clone(),
                ..GetShippingLabelInput::default()
            },
        )
        .unwrap();
    let url = out.shipping_label_url;
    assert!(url.starts_with("file://"), "{url}");
    let path = url.strip_prefix("file://").unwrap();
    let html = fs::read_to_string(path).unwrap();
    for id in &ids {
        assert!(html.contains(id.as_str()), "{id} is not on the label");
    }
}
