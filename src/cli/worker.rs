//! `sluice worker`: a process that runs the jobs queued in a shared store.

use std::time::Duration;

use sluice::job::{Runner, RunnerConfig};

use super::CliError;
use super::bucket::BucketArgs;

/// `sluice worker`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store (--store, a PostgreSQL URL other processes share), the
    /// data directory (its master key opens the uploads of servers that
    /// share it) and where buckets are (import jobs read them).
    #[command(flatten)]
    at: BucketArgs,
    /// Jobs run at once.
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_jobs: usize,
    /// Import jobs of one app run at once (across this worker).
    #[arg(long, value_name = "N", default_value_t = 2)]
    max_jobs_per_app: usize,
    /// Parsing threads [default: one per core].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Seconds between looks at the store for queued jobs, and for jobs
    /// whose runner stopped renewing its lease.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    poll: f64,
    /// Seconds a job's lease lasts without a heartbeat (renewed three times
    /// as often): how long a job whose worker died waits before another
    /// worker takes it over.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    lease_ttl: f64,
}

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    let seconds = |name: &str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 86_400.0 {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(CliError(format!(
                "--{name} {v}: must be a number of seconds above 0 and at most a day"
            )))
        }
    };
    let (poll, lease_ttl) = (
        seconds("poll", args.poll)?,
        seconds("lease-ttl", args.lease_ttl)?,
    );
    if args.max_jobs == 0 {
        return Err(CliError(
            "--max-jobs 0: a worker runs at least one job".into(),
        ));
    }
    let store = args.at.open_store()?;
    let master_key = args.at.master_key()?;
    let location = store.location();
    let runner = Runner::new(
        store,
        RunnerConfig {
            max_jobs: args.max_jobs,
            max_jobs_per_app: args.max_jobs_per_app,
            threads: args.threads,
            master_key,
            objects: Some(args.at.objects()?),
            uploads: Some(args.at.own_objects()),
            lease_ttl,
            recover_every: Some(poll),
            ..RunnerConfig::default()
        },
    )?;
    // The line scripts wait for.
    println!(
        "sluice: worker {} running the jobs queued in {location}",
        std::process::id()
    );
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    signals.block_on(super::serve::shutdown_signal());
    // Jobs running now go back to the queue, for this or another worker.
    drop(runner);
    eprintln!("sluice: worker stopped");
    Ok(())
}
