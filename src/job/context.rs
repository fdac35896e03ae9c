//! What one run of a job has to hand (`RunContext`), how a run ends
//! (`End`), and running the engine with every completed piece recorded in
//! the store. Shared by the kinds of jobs, below the runner.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use rayon::ThreadPool;

use super::{MAX_ATTEMPTS, RunnerConfig};
use crate::ingest::{
    Error, ErrorKind, Ingest, Input, Outcome, PieceDone, Progress, RowMapper, Summary,
};
use crate::store::{
    Attempt, FailureKind, JobCounters, JobRecord, JobRef, JobStatus, PieceCounts, Store, StoreError,
};

/// How a run ended.
#[derive(Debug)]
pub(super) enum End {
    /// In this state, for this reason and fault.
    Done(JobStatus, Option<String>, Option<FailureKind>),
    /// Back to the queue (the runner is shutting down, or the store failed
    /// for a while): it resumes when a runner recovers it.
    Requeue(String),
    /// Another runner took the job over: leave it alone.
    Lost,
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

/// Everything one run of one job needs.
pub(super) struct RunContext<'a> {
    pub(super) store: &'a dyn Store,
    pub(super) pool: &'a Arc<ThreadPool>,
    pub(super) config: &'a RunnerConfig,
    /// Who runs it, in leases.
    pub(super) holder: &'a str,
    /// The job as it went to `RUNNING`.
    pub(super) job: &'a JobRecord,
    /// The engine's counters and stop flag for this run.
    pub(super) progress: &'a Progress,
    /// Whether the run should stop now: asked to, shutting down, or the
    /// job's lease was lost.
    pub(super) stop_asked: &'a (dyn Fn() -> bool + Sync),
    /// Whether the runner is shutting down (a stop then requeues).
    pub(super) shutting_down: &'a (dyn Fn() -> bool + Sync),
}

impl RunContext<'_> {
    pub(super) fn now(&self) -> i64 {
        (self.config.clock)()
    }

    pub(super) fn job_ref(&self) -> JobRef<'_> {
        JobRef {
            account: &self.job.account,
            id: &self.job.id,
        }
    }

    pub(super) fn attempt(&self) -> Attempt<'_> {
        Attempt {
            job: self.job_ref(),
            attempt: self.job.attempts,
        }
    }

    /// How a store error ends the run: a lost attempt leaves the job to
    /// its new runner; a store that is busy or out of reach requeues it
    /// (until it has been tried [`MAX_ATTEMPTS`] times); anything else
    /// fails it, saying `what` was being done.
    pub(super) fn store_failed(&self, what: &str, e: StoreError) -> End {
        self.store_failed_keeping(what, e, None)
    }

    /// As [`RunContext::store_failed`], saying what was written before
    /// and stays (`the 12 records … stay`) when the job fails.
    pub(super) fn store_failed_keeping(
        &self,
        what: &str,
        e: StoreError,
        kept: Option<String>,
    ) -> End {
        match e {
            StoreError::Fenced { .. } => End::Lost,
            e if e.is_transient() && self.job.attempts < MAX_ATTEMPTS => {
                End::Requeue(format!("{what}: {e}; it resumes when the store answers"))
            }
            e => End::internal(match kept {
                Some(kept) => format!("{what}: {e}; {kept}"),
                None => format!("{what}: {e}"),
            }),
        }
    }

    /// How a run that stopped early ends: back to the queue when the
    /// runner is shutting down, `STOPPED` with `reason` otherwise.
    pub(super) fn stopped(&self, reason: String) -> End {
        if (self.shutting_down)() {
            End::Requeue("its runner shut down; it resumes when a runner recovers it".into())
        } else {
            End::Done(JobStatus::Stopped, Some(reason), None)
        }
    }

    /// Runs `work` while a watcher thread reads the stop flags every
    /// progress interval and stops the engine when one is up.
    pub(super) fn watched<T>(&self, work: impl FnOnce() -> T) -> T {
        let done = AtomicBool::new(false);
        thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    thread::sleep(self.config.progress_interval);
                    if (self.stop_asked)() {
                        self.progress.stop();
                    }
                }
            });
            let out = work();
            done.store(true, Ordering::Relaxed);
            out
        })
    }

    /// Runs the engine on `inputs`, recording each completed piece in the
    /// store as it comes (a piece counts once, however often it runs), and
    /// stopping when asked.
    pub(super) fn run_engine<M: RowMapper>(
        &self,
        ingest: &Ingest<M>,
        inputs: Vec<Input>,
    ) -> Result<Outcome<M>, End> {
        // Pieces are reported on this thread: the first store error is
        // kept for after the run, which it stops.
        let mut store_error: Option<StoreError> = None;
        let mut planned = None;
        let mut record = |p: &PieceDone| {
            let attempt = self.attempt();
            let total = self.progress.snapshot().total_pieces;
            let recorded = (planned != Some(total))
                .then(|| self.store.plan_pieces(attempt, total))
                .transpose()
                .and_then(|_| self.store.complete_piece(attempt, &piece_counts(p)));
            planned = Some(total);
            if let Err(e) = recorded {
                store_error.get_or_insert(e);
                self.progress.stop();
            }
        };
        let outcome = self.watched(|| ingest.run_observed(inputs, self.progress, &mut record));
        if let Some(e) = store_error {
            return Err(self.store_failed("recording the progress of a piece", e));
        }
        let outcome = outcome.map_err(|e| {
            End::Done(
                JobStatus::Failed,
                Some(e.to_string()),
                Some(failure_kind(&e)),
            )
        })?;
        // The last pieces may have completed without a report (the run
        // stopped): the plan is what the engine saw.
        let total = outcome.summary.total_pieces;
        if planned != Some(total)
            && let Err(e) = self.store.plan_pieces(self.attempt(), total)
        {
            return Err(self.store_failed("recording the pieces", e));
        }
        Ok(outcome)
    }
}

fn piece_counts(p: &PieceDone) -> PieceCounts {
    PieceCounts {
        index: p.index,
        count: p.count.max(1),
        processed: p.processed,
        failed: p.failed,
        warnings: p.warnings,
        failed_piece: p.failed_piece,
    }
}

/// Whose fault an engine error that stopped a run was.
pub(super) fn failure_kind(e: &Error) -> FailureKind {
    match e.kind() {
        ErrorKind::Io { source, .. } if source.kind() != std::io::ErrorKind::InvalidData => {
            FailureKind::Internal
        }
        ErrorKind::Capacity => FailureKind::Internal,
        _ => FailureKind::Validation,
    }
}

/// A job's counters from the summary of its run (`created` and `updated`
/// move with the writes).
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

/// The end state of a job that read and wrote everything: its rows read,
/// failed, its pieces failed and its first failure.
pub(super) fn ended(processed: u64, failed: u64, failed_pieces: u64, first: Option<String>) -> End {
    if processed > 0 && failed == processed {
        End::Done(
            JobStatus::Failed,
            Some(format!(
                "every row failed; the first: {}",
                first.unwrap_or_default()
            )),
            Some(FailureKind::Validation),
        )
    } else if failed > 0 || failed_pieces > 0 {
        End::Done(
            JobStatus::PartiallySucceeded,
            Some(format!(
                "{} rows and {} pieces failed; the first: {}",
                failed,
                failed_pieces,
                first.unwrap_or_default()
            )),
            None,
        )
    } else {
        End::Done(JobStatus::Succeeded, None, None)
    }
}
