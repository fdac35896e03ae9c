//! `sluice importexport run JOBID --device PATH`: an Import/Export job's
//! device arrives.

use std::path::PathBuf;

use sluice::job::{JobStatus, run_device, system_clock};
use sluice::store::JobRef;

use super::CliError;
use super::bucket::BucketArgs;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run a job with its device: check the device's SIGNATURE file, copy
    /// its files into the bucket (Import) or the bucket's objects onto it
    /// (Export), and write the log object.
    Run {
        /// The job id CreateJob gave.
        job_id: String,
        /// The device: a folder (a mounted disk, a USB drive, a directory).
        #[arg(long, value_name = "PATH")]
        device: PathBuf,
        #[command(flatten)]
        at: BucketArgs,
    },
}

pub(crate) fn run(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Run { job_id, device, at } => {
            let store = at.open_store()?;
            let objects = at.objects()?;
            let clock = system_clock();
            let account = super::account();
            let job = run_device(
                &store,
                &*objects,
                &clock,
                JobRef {
                    account: &account,
                    id: &job_id,
                },
                &device,
            )?;
            let reason = job.status_reason.as_deref().unwrap_or("");
            match job.status {
                JobStatus::Succeeded => {
                    println!("job {}: {reason}", job.id);
                    Ok(())
                }
                JobStatus::PartiallySucceeded => {
                    for f in &job.counters.failures {
                        eprintln!("sluice: {f}");
                    }
                    Err(CliError(format!("job {}: {reason}", job.id)))
                }
                other => Err(CliError(format!("job {}: {other}: {reason}", job.id))),
            }
        }
    }
}
