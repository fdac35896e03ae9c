//! The runner: queued jobs on background threads, a bounded number at once,
//! each held by a lease in the store while it runs.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use rayon::ThreadPool;

use super::context::{End, RunContext};
use super::lease::{Holder, LeaseGuard, job_lease};
use super::split::RangeWorker;
use super::{
    JobError, JobSpec, ProfileJob, RANGE_ATTEMPTS, RunnerConfig, export, import, new_job_id,
    profiles,
};
use crate::ingest::{Ingest, Progress, ProgressSnapshot};
use crate::store::{
    AccountId, JobFilter, JobKind, JobRecord, JobRef, JobStatus, RangeLease, Store, StoreError,
    Transition,
};

/// A job's account and id, owned.
type Key = (AccountId, String);

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
            .field("holder", &self.shared.holder)
            .finish_non_exhaustive()
    }
}

struct Shared {
    store: Arc<dyn Store>,
    pool: Arc<ThreadPool>,
    config: RunnerConfig,
    /// Who this runner is, in leases.
    holder: Holder,
    state: Mutex<State>,
    /// Workers wait here for work.
    wake: Condvar,
    /// Signalled when a job of this runner ends.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// Jobs with the app they belong to, if any.
    queue: VecDeque<(Key, Option<String>)>,
    running: HashMap<Key, Arc<Progress>>,
    /// Jobs running per app.
    per_app: HashMap<String, usize>,
    shutdown: bool,
}

impl State {
    /// The first queued job whose app has a free slot.
    fn next(&mut self, per_app: usize) -> Option<(Key, Option<String>)> {
        let at = self.queue.iter().position(|(_, app)| {
            app.as_ref()
                .is_none_or(|a| self.per_app.get(a).copied().unwrap_or(0) < per_app)
        })?;
        let (key, app) = self.queue.remove(at)?;
        if let Some(a) = &app {
            *self.per_app.entry(a.clone()).or_default() += 1;
        }
        Some((key, app))
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        (self.config.clock)()
    }

    fn shutting_down(&self) -> bool {
        self.state().shutdown
    }

    fn enqueue(&self, key: Key, app: Option<&str>) {
        if self.config.max_jobs == 0 {
            return; // the store's queue is the only one: other processes run it
        }
        let mut st = self.state();
        if !st.queue.iter().any(|(q, _)| *q == key) && !st.running.contains_key(&key) {
            st.queue.push_back((key, app.map(str::to_owned)));
        }
        self.wake.notify_all();
    }

    /// Whether a live runner holds a job: its lease has not lapsed and
    /// its holder's process is not known to be gone.
    fn held(&self, job: JobRef<'_>) -> Result<bool, JobError> {
        let lease = self.store.lease(job.account, &job_lease(job.id))?;
        Ok(lease.is_some_and(|l| l.deadline_ms > self.now() && !Holder::is_gone(&l.holder)))
    }

    /// Queues again the jobs left `RUNNING` or `QUEUED` that no live runner
    /// holds; returns them.
    fn recover(&self) -> Result<Vec<JobRecord>, JobError> {
        let store = &*self.store;
        let stale = store.jobs(&JobFilter {
            statuses: vec![JobStatus::Running, JobStatus::Queued],
            ..JobFilter::default()
        })?;
        let mut queued = Vec::new();
        // Oldest first.
        for job in stale.into_iter().rev() {
            // Import/Export jobs run when their device arrives.
            if job.kind == JobKind::Transfer {
                continue;
            }
            let key = (job.account.clone(), job.id.clone());
            if self.state().running.contains_key(&key) {
                continue;
            }
            let job_ref = JobRef {
                account: &job.account,
                id: &job.id,
            };
            if job.status == JobStatus::Running {
                if self.held(job_ref)? {
                    continue;
                }
                let reason = format!(
                    "resumed after its runner stopped during attempt {}",
                    job.attempts
                );
                let t = Transition {
                    reason: Some(&reason),
                    fence: Some(job.attempts),
                    ..Transition::new(JobStatus::Running, JobStatus::Queued, self.now())
                };
                match store.transition(job_ref, &t) {
                    Ok(_) => {}
                    Err(StoreError::Transition { .. } | StoreError::Fenced { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            self.enqueue(key, job.app.as_deref());
            queued.push(job);
        }
        Ok(queued)
    }
}

impl Runner {
    /// Starts `config.max_jobs` job threads over `store`.
    ///
    /// # Errors
    ///
    /// When the worker pool or the threads cannot be started.
    pub fn new(store: Arc<dyn Store>, mut config: RunnerConfig) -> Result<Runner, JobError> {
        if config.max_jobs == 0 {
            // Runs nothing: jobs wait in the store for other processes.
            config.recover_every = None;
        }
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
            holder: Holder::this_process(),
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            changed: Condvar::new(),
        });
        let mut workers = Vec::new();
        let start = |name: String, body: Box<dyn FnOnce() + Send>| {
            thread::Builder::new()
                .name(name)
                .spawn(body)
                .map_err(|e| JobError::Invalid(format!("starting a job thread: {e}")))
        };
        for i in 0..shared.config.max_jobs {
            let s = Arc::clone(&shared);
            workers.push(start(
                format!("sluice-job-{i}"),
                Box::new(move || work(&s)),
            )?);
        }
        if shared.config.max_jobs > 0 && shared.store.range_store().is_some() {
            let s = Arc::clone(&shared);
            workers.push(start(
                "sluice-ranges".into(),
                Box::new(move || help_with_ranges(&s)),
            )?);
        }
        if let Some(every) = shared.config.recover_every {
            let s = Arc::clone(&shared);
            workers.push(start(
                "sluice-recover".into(),
                Box::new(move || recover_now_and_then(&s, every)),
            )?);
        }
        Ok(Runner { shared, workers })
    }

    /// The store jobs are kept in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// How this runner is set up.
    pub fn config(&self) -> &RunnerConfig {
        &self.shared.config
    }

    /// Records a job, `CREATED`, under the id `id` (from [`new_job_id`],
    /// or of the caller's own making); [`Runner::start`] queues it.
    ///
    /// # Errors
    ///
    /// [`JobError::Invalid`] when the spec cannot run here (a bad mapping,
    /// no input, no buckets to import from, a kind that runners do not
    /// run); the store's error when the domain or app does not exist, or
    /// the id is taken.
    pub fn create(
        &self,
        account: &AccountId,
        id: &str,
        spec: &JobSpec,
        display_name: Option<String>,
    ) -> Result<JobRecord, JobError> {
        match spec {
            JobSpec::Profiles(p) => p.check().map_err(JobError::Invalid)?,
            JobSpec::Import(_) | JobSpec::Export(_) if self.shared.config.objects.is_none() => {
                return Err(JobError::Invalid(
                    "this runner has no buckets to import from or export to".into(),
                ));
            }
            JobSpec::Import(_) | JobSpec::Export(_) => {}
            JobSpec::Transfer(_) => {
                return Err(JobError::Invalid(
                    "Import/Export jobs run when their device arrives, not in a runner".into(),
                ));
            }
        }
        let store = &self.shared.store;
        store.insert_job(&spec.new_job(account, id, display_name, self.shared.now()))?;
        let job = JobRef { account, id };
        Ok(store
            .job(job)?
            .ok_or_else(|| StoreError::NoJob(id.to_owned()))?)
    }

    /// Queues a `CREATED` job.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transition`] when the job is not `CREATED`,
    /// [`JobError::ShutDown`] when the runner is stopping.
    pub fn start(&self, job: JobRef<'_>) -> Result<JobRecord, JobError> {
        if self.shared.shutting_down() {
            return Err(JobError::ShutDown);
        }
        let record = self.shared.store.transition(
            job,
            &Transition::new(JobStatus::Created, JobStatus::Queued, self.shared.now()),
        )?;
        self.shared.enqueue(
            (job.account.clone(), job.id.to_owned()),
            record.app.as_deref(),
        );
        Ok(record)
    }

    /// Records and queues a job under a fresh id.
    ///
    /// # Errors
    ///
    /// As [`Runner::create`] and [`Runner::start`].
    pub fn submit(
        &self,
        account: &AccountId,
        spec: &JobSpec,
        display_name: Option<String>,
    ) -> Result<JobRecord, JobError> {
        let id = new_job_id();
        self.create(account, &id, spec, display_name)?;
        self.start(JobRef { account, id: &id })
    }

    /// Stops a job: one not yet running becomes `STOPPED` at once; a
    /// running one (here or in another process) stops between pieces or
    /// write batches. Stopping a finished job changes nothing.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a store error.
    pub fn stop(&self, job: JobRef<'_>) -> Result<JobRecord, JobError> {
        let store = &self.shared.store;
        let record = store.request_stop(job)?;
        if matches!(record.status, JobStatus::Created | JobStatus::Queued) {
            let t = Transition {
                reason: Some("stopped before it ran"),
                ..Transition::new(record.status, JobStatus::Stopped, self.shared.now())
            };
            match store.transition(job, &t) {
                // A runner took it meanwhile; it sees the stop flag.
                Ok(_) | Err(StoreError::Transition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let key = (job.account.clone(), job.id.to_owned());
        let here = self.shared.state().running.get(&key).map(|p| {
            p.stop();
        });
        if here.is_none() && record.status == JobStatus::Running {
            self.stop_orphan(job, &record)?;
        }
        Ok(store
            .job(job)?
            .ok_or_else(|| StoreError::NoJob(job.id.to_owned()))?)
    }

    /// Stops a `RUNNING` job that no live runner holds (its process died):
    /// nothing would see its stop flag until a runner took it up again,
    /// which on a store whose workers are all gone is never. What it wrote
    /// stays; what a split job staged and did not merge goes.
    fn stop_orphan(&self, job: JobRef<'_>, record: &JobRecord) -> Result<(), JobError> {
        let store = &*self.shared.store;
        let now = self.shared.now();
        if self.shared.held(job)? {
            // Held: its runner sees the flag between pieces.
            return Ok(());
        }
        let reason = format!(
            "stopped on request after its runner stopped during attempt {}; \
             what it wrote before stays",
            record.attempts
        );
        let t = Transition {
            reason: Some(&reason),
            fence: Some(record.attempts),
            ..Transition::new(JobStatus::Running, JobStatus::Stopped, now)
        };
        match store.transition(job, &t) {
            Ok(_) => {
                if let Some(ranges) = store.range_store() {
                    ranges.drop_ranges(job)?;
                }
                Ok(())
            }
            // A runner took it up meanwhile: it sees the flag.
            Err(StoreError::Transition { .. } | StoreError::Fenced { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Blocks until a job is in a terminal state, or `timeout` passes;
    /// returns it as it then is.
    ///
    /// # Errors
    ///
    /// [`StoreError::NoJob`], or a store error.
    pub fn wait(&self, job: JobRef<'_>, timeout: Option<Duration>) -> Result<JobRecord, JobError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let record = self
                .shared
                .store
                .job(job)?
                .ok_or_else(|| StoreError::NoJob(job.id.to_owned()))?;
            let late = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if record.status.is_terminal() || late {
                return Ok(record);
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
    pub fn progress(&self, job: JobRef<'_>) -> Option<ProgressSnapshot> {
        let key = (job.account.clone(), job.id.to_owned());
        self.shared.state().running.get(&key).map(|p| p.snapshot())
    }

    /// Finds jobs left `RUNNING` or `QUEUED` that no live runner holds
    /// (their process died or shut down, here or on another machine),
    /// queues them again and returns them. See the
    /// [module documentation](super) for what resuming means.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn recover(&self) -> Result<Vec<JobRecord>, JobError> {
        self.shared.recover()
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

fn recover_now_and_then(shared: &Shared, every: Duration) {
    loop {
        {
            let st = shared.state();
            let (st, _) = shared
                .wake
                .wait_timeout_while(st, every, |st| !st.shutdown)
                .unwrap_or_else(|e| e.into_inner());
            if st.shutdown {
                return;
            }
        }
        if let Err(e) = shared.recover() {
            eprintln!("sluice: looking for jobs to resume: {e}");
        }
    }
}

/// Works on the ranges of split jobs, whichever runner holds them: this
/// process's jobs or other machines'. Looks for one every poll interval
/// (`recover_every`, else a second) while none is open.
fn help_with_ranges(shared: &Shared) {
    let Some(store) = shared.store.range_store() else {
        return;
    };
    let poll = shared
        .config
        .recover_every
        .unwrap_or(Duration::from_secs(1))
        .min(Duration::from_secs(1));
    let worker = RangeWorker {
        store,
        objects: shared.config.objects.as_ref(),
        clock: &shared.config.clock,
        ttl: shared.config.lease_ttl,
    };
    let ttl = i64::try_from(shared.config.lease_ttl.as_millis()).unwrap_or(i64::MAX);
    // The engine of the last job helped, kept while its ranges come.
    let mut engine: Option<(Key, ProfileJob, Ingest)> = None;
    let mut idle = false;
    loop {
        if idle {
            let st = shared.state();
            let (st, _) = shared
                .wake
                .wait_timeout_while(st, poll, |st| !st.shutdown)
                .unwrap_or_else(|e| e.into_inner());
            if st.shutdown {
                return;
            }
        } else if shared.shutting_down() {
            return;
        }
        let lease = match store.lease_range(
            None,
            shared.holder.as_str(),
            shared.now(),
            ttl,
            RANGE_ATTEMPTS,
        ) {
            Ok(Some(lease)) => lease,
            Ok(None) => {
                idle = true;
                continue;
            }
            Err(e) => {
                eprintln!("sluice: looking for ranges to work on: {e}");
                idle = true;
                continue;
            }
        };
        idle = false;
        let key = (lease.account.clone(), lease.job_id.clone());
        if engine.as_ref().is_none_or(|(k, _, _)| *k != key) {
            engine = match range_engine(shared, &lease) {
                Ok((spec, ingest)) => Some((key, spec, ingest)),
                Err(reason) => {
                    let retry = shared.now().saturating_add(1000);
                    let _ = store.give_back_range(&lease, &reason, retry, RANGE_ATTEMPTS);
                    None
                }
            };
        }
        if let Some((_, spec, ingest)) = &engine
            && let Err(e) = worker.work(&lease, &spec.inputs, ingest)
        {
            eprintln!("sluice: job {}: range {}: {e}", lease.job_id, lease.piece);
        }
    }
}

/// The spec and engine of a leased range's job.
fn range_engine(shared: &Shared, lease: &RangeLease) -> Result<(ProfileJob, Ingest), String> {
    let job = shared
        .store
        .job(lease.job())
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("job {} is gone", lease.job_id))?;
    let JobSpec::Profiles(spec) = JobSpec::of(&job).map_err(|e| e.to_string())? else {
        return Err(format!("job {} is not split into ranges", lease.job_id));
    };
    let mapping = spec.mapping_file()?;
    let ingest = spec.engine(mapping, &shared.pool)?;
    Ok((spec, ingest))
}

fn work(shared: &Shared) {
    loop {
        let (key, app) = {
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
        run_one(shared, &key);
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

fn run_one(shared: &Shared, key: &Key) {
    let store = &shared.store;
    let (account, id) = (&key.0, key.1.as_str());
    let job_ref = JobRef { account, id };
    let lease = LeaseGuard::acquire(
        store,
        account,
        &job_lease(id),
        &shared.holder,
        &shared.config.clock,
        shared.config.lease_ttl,
    );
    let Ok(Some(lease)) = lease else {
        return; // another runner has it, or the store is out of reach
    };
    // Refused unless the job is still QUEUED (stopped meanwhile, or run by
    // another runner that has let go of it).
    let Ok(job) = store.transition(
        job_ref,
        &Transition::new(JobStatus::Queued, JobStatus::Running, shared.now()),
    ) else {
        return;
    };
    let progress = Arc::new(Progress::new());
    {
        let mut st = shared.state();
        if st.shutdown {
            progress.stop();
        }
        st.running.insert(key.clone(), Arc::clone(&progress));
    }
    let stop_flag = AtomicBool::new(false);
    // Stop when asked, here or through the store by another process, or
    // when the lease was lost.
    let stop_asked = || {
        if stop_flag.load(Ordering::Relaxed) {
            return true;
        }
        let asked = progress.stop_requested()
            || shared.shutting_down()
            || lease.lost()
            || matches!(store.job(job_ref), Ok(Some(j)) if j.stop_requested);
        stop_flag.store(asked, Ordering::Relaxed);
        asked
    };
    let shutting_down = || shared.shutting_down();
    let ctx = RunContext {
        store: &**store,
        pool: &shared.pool,
        config: &shared.config,
        holder: shared.holder.as_str(),
        job: &job,
        progress: &progress,
        stop_asked: &stop_asked,
        shutting_down: &shutting_down,
    };
    let end = match JobSpec::of(&job) {
        Ok(JobSpec::Profiles(spec)) => profiles::run(&ctx, &spec),
        Ok(JobSpec::Import(spec)) => import::run(&ctx, &spec),
        Ok(JobSpec::Export(spec)) => export::run(&ctx, &spec),
        Ok(JobSpec::Transfer(_)) => {
            End::internal("an Import/Export job runs when its device arrives".into())
        }
        Err(e) => End::internal(e.to_string()),
    };
    shared.state().running.remove(key);
    let end = if lease.lost() { End::Lost } else { end };
    let (to, reason, failure) = match end {
        End::Done(to, reason, failure) => (to, reason, failure),
        End::Requeue(reason) => (JobStatus::Queued, Some(reason), None),
        End::Lost => return,
    };
    // Fenced by the attempt: a runner whose job was taken over meanwhile
    // ends nothing. If even this fails (the disk is gone), the job stays
    // RUNNING; its lease lapses and `recover` resumes it later.
    let _ = store.transition(
        job_ref,
        &Transition {
            reason: reason.as_deref(),
            failure,
            fence: Some(job.attempts),
            ..Transition::new(JobStatus::Running, to, shared.now())
        },
    );
    drop(lease);
}
