//! The runner: queued jobs on background threads, a bounded number at once.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rayon::ThreadPool;

use super::import::{IMPORT_KIND, ImportJob, Objects, run_import};
use super::write::{self, Halt, Target};
use super::{
    Clock, DEFAULT_BATCH_ROWS, FailureKind, JobError, JobStatus, PROFILES_KIND, ProfileJob, Source,
    UPLOADS_BUCKET, new_job_id, system_clock,
};
use crate::crypto::{self, DataKey, MasterKey};
use crate::ingest::ErrorKind;
use crate::ingest::{IngestBuilder, Input, Progress, ProgressSnapshot, Summary};
use crate::store::{
    JobCounters, JobFilter, JobRecord, NewJob, Store, StoreError, Transition, WriteCounts,
};

const DAY_MS: i64 = 86_400_000;

/// How a [`Runner`] works.
#[derive(Clone)]
pub struct RunnerConfig {
    /// Jobs run at once; more wait in the queue. At least 1.
    pub max_jobs: usize,
    /// The worker pool all jobs share; built with [`RunnerConfig::threads`]
    /// threads when `None`.
    pub pool: Option<Arc<ThreadPool>>,
    /// Worker threads of the pool built when `pool` is `None` (one per
    /// core when `None`).
    pub threads: Option<usize>,
    /// Profiles per write transaction.
    pub batch_rows: usize,
    /// How often a running job's counters are saved and its stop flag read.
    pub progress_interval: Duration,
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
            .finish_non_exhaustive()
    }
}

/// Runs jobs in the background.
///
/// Jobs are queued by [`Runner::start`] (or [`Runner::submit`]) and run on
/// `max_jobs` threads, all parsing on one shared worker pool. Dropping the
/// runner stops its running jobs between pieces and puts them back in the
/// queue, where [`Runner::recover`] finds them.
pub struct Runner {
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

pub(super) struct Shared {
    pub(super) store: Arc<dyn Store>,
    pub(super) pool: Arc<ThreadPool>,
    pub(super) config: RunnerConfig,
    state: Mutex<State>,
    /// Workers wait here for work.
    wake: Condvar,
    /// Signalled when a job of this runner ends.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Job ids with the app they belong to, if any.
    queue: VecDeque<(String, Option<String>)>,
    running: HashMap<String, Arc<Progress>>,
    /// Jobs running per app.
    per_app: HashMap<String, usize>,
    shutdown: bool,
}

impl State {
    /// The first queued job whose app has a free slot.
    fn next(&mut self, per_app: usize) -> Option<(String, Option<String>)> {
        let at = self.queue.iter().position(|(_, app)| {
            app.as_ref()
                .is_none_or(|a| self.per_app.get(a).copied().unwrap_or(0) < per_app)
        })?;
        let (id, app) = self.queue.remove(at)?;
        if let Some(a) = &app {
            *self.per_app.entry(a.clone()).or_default() += 1;
        }
        Some((id, app))
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn now(&self) -> i64 {
        (self.config.clock)()
    }

    pub(super) fn shutting_down(&self) -> bool {
        self.state().shutdown
    }

    /// Runs `work` (a job's reading) while a watcher thread saves the
    /// job's `counters` every progress interval when they changed, and
    /// calls `halt` when `stop_asked` says so.
    pub(super) fn watched<T>(
        &self,
        job: &str,
        stop_asked: &(dyn Fn() -> bool + Sync),
        counters: impl Fn() -> JobCounters + Sync,
        halt: impl Fn() + Sync,
        work: impl FnOnce() -> T,
    ) -> T {
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            s.spawn(|| {
                let mut saved = JobCounters::default();
                while !done.load(Ordering::Relaxed) {
                    thread::sleep(self.config.progress_interval);
                    let now = counters();
                    if now != saved {
                        let _ = self.store.save_progress(job, &now);
                        saved = now;
                    }
                    if stop_asked() {
                        halt();
                    }
                }
            });
            let out = work();
            done.store(true, Ordering::Relaxed);
            out
        })
    }

    fn enqueue(&self, id: &str, app: Option<&str>) {
        let mut st = self.state();
        if !st.queue.iter().any(|(q, _)| q == id) && !st.running.contains_key(id) {
            st.queue.push_back((id.to_owned(), app.map(str::to_owned)));
        }
        self.wake.notify_all();
    }
}

impl Runner {
    /// Starts `config.max_jobs` job threads over `store`.
    ///
    /// # Errors
    ///
    /// When the worker pool or the threads cannot be started.
    pub fn new(store: Arc<dyn Store>, mut config: RunnerConfig) -> Result<Runner, JobError> {
        config.max_jobs = config.max_jobs.max(1);
        config.max_jobs_per_app = config.max_jobs_per_app.max(1);
        let pool = match config.pool.take() {
            Some(p) => p,
            None => {
                let mut b =
                    rayon::ThreadPoolBuilder::new().thread_name(|i| format!("sluice-worker-{i}"));
                if let Some(n) = config.threads {
                    b = b.num_threads(n.max(1));
                }
                Arc::new(b.build().map_err(|e| JobError::Invalid(e.to_string()))?)
            }
        };
        let shared = Arc::new(Shared {
            store,
            pool,
            config,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            changed: Condvar::new(),
        });
        let mut workers = Vec::new();
        for i in 0..shared.config.max_jobs {
            let s = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("sluice-job-{i}"))
                .spawn(move || work(&s))
                .map_err(|e| JobError::Invalid(format!("starting a job thread: {e}")))?;
            workers.push(handle);
        }
        Ok(Runner { shared, workers })
    }

    /// The store jobs are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Where import jobs read objects, if anywhere.
    pub fn objects(&self) -> Option<&Objects> {
        self.shared.config.objects.as_ref()
    }

    /// Records a profile job, `CREATED`; [`Runner::start`] queues it.
    ///
    /// # Errors
    ///
    /// [`JobError::Invalid`] when the mapping is invalid or no input is
    /// given, the store's error when the domain does not exist.
    pub fn create(&self, job: &ProfileJob) -> Result<JobRecord, JobError> {
        self.create_as(&new_job_id(), job)
    }

    /// As [`Runner::create`], with an id the caller chose (from
    /// [`new_job_id`]), for a job whose inputs are named after it.
    ///
    /// # Errors
    ///
    /// As [`Runner::create`], and [`StoreError::JobExists`].
    pub fn create_as(&self, id: &str, job: &ProfileJob) -> Result<JobRecord, JobError> {
        job.mapping_file()
            .map_err(|e| JobError::Invalid(format!("mapping: {e}")))?;
        if job.inputs.is_empty() {
            return Err(JobError::Invalid("no input files".into()));
        }
        let request = serde_json::to_string(job).map_err(|e| JobError::Invalid(e.to_string()))?;
        let store = &self.shared.store;
        store.insert_job(&NewJob {
            id: id.to_owned(),
            kind: PROFILES_KIND.into(),
            domain: Some(job.domain.clone()),
            app: None,
            display_name: job.display_name.clone(),
            request,
            created_ms: self.shared.now(),
        })?;
        Ok(store
            .job(id)?
            .ok_or_else(|| StoreError::NoJob(id.to_owned()))?)
    }

    /// Records an import job, `CREATED`, under a fresh id;
    /// [`Runner::start`] queues it.
    ///
    /// # Errors
    ///
    /// [`JobError::Invalid`] when the runner has no buckets to read from;
    /// the store's error when the app does not exist.
    pub fn create_import(&self, job: &ImportJob) -> Result<JobRecord, JobError> {
        if self.shared.config.objects.is_none() {
            return Err(JobError::Invalid(
                "this runner has no buckets to import from".into(),
            ));
        }
        let id = new_job_id();
        let request = serde_json::to_string(job).map_err(|e| JobError::Invalid(e.to_string()))?;
        let store = &self.shared.store;
        store.insert_job(&NewJob {
            id: id.clone(),
            kind: IMPORT_KIND.into(),
            domain: None,
            app: Some(job.app.clone()),
            display_name: None,
            request,
            created_ms: self.shared.now(),
        })?;
        Ok(store
            .job(&id)?
            .ok_or_else(|| StoreError::NoJob(id.clone()))?)
    }

    /// Queues a `CREATED` job.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transition`] when the job is not `CREATED`,
    /// [`JobError::ShutDown`] when the runner is stopping.
    pub fn start(&self, id: &str) -> Result<JobRecord, JobError> {
        if self.shared.shutting_down() {
            return Err(JobError::ShutDown);
        }
        let job = self.shared.store.transition(
            id,
            &Transition {
                from: JobStatus::Created,
                to: JobStatus::Queued,
                at_ms: self.shared.now(),
                reason: None,
                failure: None,
            },
        )?;
        self.shared.enqueue(id, job.app.as_deref());
        Ok(job)
    }

    /// Records and queues a profile job.
    ///
    /// # Errors
    ///
    /// As [`Runner::create`] and [`Runner::start`].
    pub fn submit(&self, job: &ProfileJob) -> Result<JobRecord, JobError> {
        let created = self.create(job)?;
        self.start(&created.id)
    }

    /// Stops a job: one not yet running becomes `STOPPED` at once; a
    /// running one (here or in another process) stops between pieces or
    /// write batches. Stopping a finished job changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a store error.
    pub fn stop(&self, id: &str) -> Result<JobRecord, JobError> {
        let store = &self.shared.store;
        let job = store.request_stop(id)?;
        if matches!(job.status, JobStatus::Created | JobStatus::Queued) {
            let t = Transition {
                from: job.status,
                to: JobStatus::Stopped,
                at_ms: self.shared.now(),
                reason: Some("stopped before it ran"),
                failure: None,
            };
            match store.transition(id, &t) {
                // A runner took it meanwhile; it sees the stop flag.
                Ok(_) | Err(StoreError::Transition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(p) = self.shared.state().running.get(id) {
            p.stop();
        }
        Ok(store
            .job(id)?
            .ok_or_else(|| StoreError::NoJob(id.to_owned()))?)
    }

    /// Blocks until a job is in a terminal state, or `timeout` passes;
    /// returns it as it then is.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a store error.
    pub fn wait(&self, id: &str, timeout: Option<Duration>) -> Result<JobRecord, JobError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let job = self
                .shared
                .store
                .job(id)?
                .ok_or_else(|| StoreError::NoJob(id.to_owned()))?;
            let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if job.status.is_terminal() || late {
                return Ok(job);
            }
            let st = self.shared.state();
            // Jobs of other processes finish without telling this one.
            let _ = self
                .shared
                .changed
                .wait_timeout(st, Duration::from_millis(100));
        }
    }

    /// The live counters of a job running here.
    pub fn progress(&self, id: &str) -> Option<ProgressSnapshot> {
        self.shared.state().running.get(id).map(|p| p.snapshot())
    }

    /// Finds jobs left `RUNNING` or `QUEUED` that no live runner holds
    /// (their process died or shut down), queues them again and returns
    /// their ids. See the [module documentation](super) for what resuming
    /// means.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn recover(&self) -> Result<Vec<String>, JobError> {
        let store = &self.shared.store;
        let stale = store.jobs(&JobFilter {
            statuses: vec![JobStatus::Running, JobStatus::Queued],
            ..JobFilter::default()
        })?;
        let mut queued = Vec::new();
        for job in stale.into_iter().rev() {
            // Import/Export jobs run when their device arrives
            // (`run_device`), not in a runner.
            if job.kind == super::TRANSFER_KIND {
                continue;
            }
            if self.shared.state().running.contains_key(&job.id) {
                continue;
            }
            let Some(claim) = store.claim(&job.id)? else {
                continue; // a live runner has it
            };
            if job.status == JobStatus::Running {
                let reason = format!(
                    "resumed after its runner stopped during attempt {}",
                    job.attempts
                );
                let t = Transition {
                    from: JobStatus::Running,
                    to: JobStatus::Queued,
                    at_ms: self.shared.now(),
                    reason: Some(&reason),
                    failure: None,
                };
                match store.transition(&job.id, &t) {
                    Ok(_) => {}
                    Err(StoreError::Transition { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            drop(claim);
            self.shared.enqueue(&job.id, job.app.as_deref());
            queued.push(job.id);
        }
        Ok(queued)
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        {
            let mut st = self.shared.state();
            st.shutdown = true;
            for p in st.running.values() {
                p.stop();
            }
        }
        self.shared.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn work(shared: &Shared) {
    loop {
        let (id, app) = {
            let mut st = shared.state();
            loop {
                if st.shutdown {
                    return;
                }
                if let Some(next) = st.next(shared.config.max_jobs_per_app) {
                    break next;
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        run_one(shared, &id);
        if let Some(a) = app {
            let mut st = shared.state();
            if let Some(n) = st.per_app.get_mut(&a) {
                *n = n.saturating_sub(1);
            }
            // A job of this app may be waiting for the slot.
            shared.wake.notify_all();
        }
        shared.changed.notify_all();
    }
}

impl End {
    /// Failed: the input's fault.
    pub(super) fn invalid(reason: String) -> End {
        End::Done(
            JobStatus::Failed,
            Some(reason),
            Some(FailureKind::Validation),
        )
    }

    /// Failed: ours (the store, the disk, the network).
    pub(super) fn internal(reason: String) -> End {
        End::Done(JobStatus::Failed, Some(reason), Some(FailureKind::Internal))
    }
}

/// How a run ended.
pub(super) enum End {
    Done(JobStatus, Option<String>, Option<FailureKind>),
    /// The runner is shutting down: back to the queue.
    Requeue,
}

fn run_one(shared: &Shared, id: &str) {
    let store = &shared.store;
    let Ok(Some(claim)) = store.claim(id) else {
        return; // another runner has it, or the id is not a job
    };
    // Refused unless the job is still QUEUED (stopped meanwhile, or run by
    // another runner that has let go of it).
    let t = Transition {
        from: JobStatus::Queued,
        to: JobStatus::Running,
        at_ms: shared.now(),
        reason: None,
        failure: None,
    };
    let Ok(job) = store.transition(id, &t) else {
        return;
    };
    let progress = Arc::new(Progress::new());
    {
        let mut st = shared.state();
        if st.shutdown {
            progress.stop();
        }
        st.running.insert(id.to_owned(), Arc::clone(&progress));
    }
    // Stop when asked, here or through the store by another process.
    let stop = || {
        progress.stop_requested()
            || shared.shutting_down()
            || matches!(store.job(id), Ok(Some(j)) if j.stop_requested)
    };
    let end = if job.kind == IMPORT_KIND {
        run_import(shared, &job, &stop)
    } else {
        run_profiles(shared, &job, &progress, &stop)
    };
    shared.state().running.remove(id);
    let (to, reason, failure) = match end {
        End::Done(to, reason, failure) => (to, reason, failure),
        End::Requeue => (
            JobStatus::Queued,
            Some("its runner shut down; it resumes when a runner recovers it".to_owned()),
            None,
        ),
    };
    // If even this fails (the disk is gone), the job stays RUNNING with no
    // claim, and `recover` resumes it later.
    let _ = store.transition(
        id,
        &Transition {
            from: JobStatus::Running,
            to,
            at_ms: shared.now(),
            reason: reason.as_deref(),
            failure,
        },
    );
    drop(claim);
}

fn run_profiles(
    shared: &Shared,
    job: &JobRecord,
    progress: &Progress,
    stop_asked: &(dyn Fn() -> bool + Sync),
) -> End {
    let invalid = End::invalid;
    let fail = End::internal;
    let store = &*shared.store;
    let spec: ProfileJob = match serde_json::from_str(&job.request) {
        Ok(s) => s,
        Err(e) => return fail(format!("the stored request cannot be read: {e}")),
    };
    let mapping = match spec.mapping_file() {
        Ok(m) => m,
        Err(e) => return invalid(format!("mapping: {e}")),
    };
    let domain = match store.domain(&spec.domain) {
        Ok(Some(d)) => d,
        Ok(None) => return invalid(format!("domain {:?} does not exist", spec.domain)),
        Err(e) => return fail(e.to_string()),
    };
    let key = match (&spec.sealed_key, &shared.config.master_key) {
        (None, _) => None,
        (Some(sealed), Some(master)) => match master.open_key(sealed, &job.id) {
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
    let started = job.started_ms.unwrap_or_else(|| shared.now());
    let expires_ms = started.saturating_add(i64::from(days) * DAY_MS);

    let uploads = shared.config.uploads.as_ref();
    let fingerprint = match fingerprint(&spec.inputs, uploads) {
        Ok(f) => f,
        Err(e) => return invalid(e),
    };
    match &job.input_fingerprint {
        Some(old) if *old != fingerprint && job.written_through.is_some() => {
            return invalid(format!(
                "an input changed since the job began ({} records were written before and stay); \
                 start a new job",
                job.counters.created + job.counters.updated
            ));
        }
        Some(old) if *old == fingerprint => {}
        _ => {
            if let Err(e) = store.set_input_fingerprint(&job.id, &fingerprint) {
                return fail(e.to_string());
            }
        }
    }

    let mut builder = IngestBuilder::new(mapping.mapping);
    builder.pool(Arc::clone(&shared.pool));
    if let Some(s) = spec.piece_size {
        builder.piece_size(s);
    }
    if let Some(r) = &spec.region {
        builder.region(r);
    }
    if let Some(d) = spec.delimiter {
        builder.delimiter(d);
    }
    let ingest = match builder.build() {
        Ok(i) => i,
        Err(e) => return invalid(e.to_string()),
    };
    let inputs = match open_inputs(&spec.inputs, key.as_ref(), uploads) {
        Ok(i) => i,
        Err(e) => return invalid(e),
    };

    let outcome = shared.watched(
        &job.id,
        stop_asked,
        || counters_so_far(&progress.snapshot()),
        || progress.stop(),
        || ingest.run_with(inputs, progress),
    );
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            return End::Done(
                JobStatus::Failed,
                Some(e.to_string()),
                Some(failure_kind(&e)),
            );
        }
    };
    let summary = &outcome.summary;
    if let Err(e) = store.save_progress(&job.id, &counters_of(summary)) {
        return fail(e.to_string());
    }
    if summary.stopped {
        if shared.shutting_down() {
            return End::Requeue;
        }
        return End::Done(
            JobStatus::Stopped,
            Some(format!(
                "stopped on request after {} of {} pieces, before any record was written",
                summary.completed_pieces, summary.total_pieces
            )),
            None,
        );
    }

    // Earlier attempts' records count too: they stay as well.
    let written = AtomicU64::new(job.counters.created + job.counters.updated);
    let target = Target {
        store,
        job: &job.id,
        domain: &spec.domain,
        expires_ms,
        batch_rows: shared.config.batch_rows,
        written_through: job.written_through.as_deref(),
    };
    let on_batch = |c: WriteCounts| {
        written.fetch_add(c.created + c.updated, Ordering::Relaxed);
    };
    let now = || shared.now();
    match write::write(
        &outcome.records,
        &shared.pool,
        &target,
        &now,
        stop_asked,
        &on_batch,
    ) {
        Ok(()) => {}
        Err(Halt::Stopped) if shared.shutting_down() => return End::Requeue,
        Err(Halt::Stopped) => {
            return End::Done(
                JobStatus::Stopped,
                Some(format!(
                    "stopped on request while writing; the {} records written before stay",
                    written.load(Ordering::Relaxed)
                )),
                None,
            );
        }
        Err(Halt::Store(e)) => {
            return fail(format!(
                "writing profiles: {e}; the {} records of committed batches stay",
                written.load(Ordering::Relaxed)
            ));
        }
    }
    finished(summary)
}

/// The end state of a run that read and wrote everything.
fn finished(s: &Summary) -> End {
    let first = s.failures.first().map(ToString::to_string);
    if s.processed > 0 && s.failed == s.processed {
        End::Done(
            JobStatus::Failed,
            Some(format!(
                "every row failed; the first: {}",
                first.unwrap_or_default()
            )),
            Some(FailureKind::Validation),
        )
    } else if s.failed > 0 || s.failed_pieces > 0 {
        End::Done(
            JobStatus::PartiallySucceeded,
            Some(format!(
                "{} rows and {} pieces failed; the first: {}",
                s.failed,
                s.failed_pieces,
                first.unwrap_or_default()
            )),
            None,
        )
    } else {
        End::Done(JobStatus::Succeeded, None, None)
    }
}

/// Whose fault an engine error that stopped a run was.
pub(super) fn failure_kind(e: &crate::ingest::Error) -> FailureKind {
    match e.kind() {
        ErrorKind::Io { source, .. } if source.kind() != io::ErrorKind::InvalidData => {
            FailureKind::Internal
        }
        ErrorKind::Capacity => FailureKind::Internal,
        _ => FailureKind::Validation,
    }
}

pub(super) fn counters_so_far(p: &ProgressSnapshot) -> JobCounters {
    JobCounters {
        total_pieces: p.total_pieces,
        completed_pieces: p.completed_pieces,
        failed_pieces: p.failed_pieces,
        processed: p.processed,
        created: 0,
        updated: 0,
        duplicates: p.processed.saturating_sub(p.failed + p.unique),
        failed: p.failed,
        field_warnings: p.warnings,
        field_warnings_by_field: Vec::new(),
        failures: Vec::new(),
    }
}

pub(super) fn counters_of(s: &Summary) -> JobCounters {
    JobCounters {
        total_pieces: s.total_pieces,
        completed_pieces: s.completed_pieces,
        failed_pieces: s.failed_pieces,
        processed: s.processed,
        created: 0,
        updated: 0,
        duplicates: s.duplicates,
        failed: s.failed,
        field_warnings: s.field_warnings,
        field_warnings_by_field: s
            .field_warnings_by_field
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(f, n)| (f.to_string(), *n))
            .collect(),
        failures: s.failures.iter().map(ToString::to_string).collect(),
    }
}

/// The inputs as the engine reads them: plain files, or sealed ones
/// decrypted as they are read; uploads streamed from the runner's own
/// objects.
fn open_inputs(
    sources: &[Source],
    key: Option<&DataKey>,
    uploads: Option<&Objects>,
) -> Result<Vec<Input>, String> {
    sources
        .iter()
        .map(|source| match source {
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
                let (reader, len) = crypto::open_reader(
                    std::io::BufReader::with_capacity(crypto::SEGMENT + 64, stream),
                    info.size,
                    k,
                )
                .map_err(|e| format!("{}: {e}", source.name()))?;
                Ok(Input::reader(&source.name(), reader, Some(len)))
            }
        })
        .collect()
}

/// What each input looked like (size and time, or tag), so a resumed job
/// can tell whether it would read the same bytes.
fn fingerprint(sources: &[Source], uploads: Option<&Objects>) -> Result<String, String> {
    let mut parts = Vec::new();
    for source in sources {
        let part = match source {
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
