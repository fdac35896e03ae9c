//! `sluice jobs`: list, show, resume and stop the jobs of a data directory.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use sluice::job::{JobStatus, Runner, RunnerConfig};
use sluice::store::{JobFilter, JobRecord, JobRef, Store};

use super::bucket::BucketArgs;
use sluice::time::utc;

use super::{CliError, DEFAULT_DATA_DIR, account, group, open, write_failures};

/// `sluice jobs …`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// List jobs, newest first.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Only jobs of this domain.
        #[arg(long, value_name = "NAME")]
        domain: Option<String>,
        /// Only jobs in this status (CREATED, QUEUED, RUNNING, SUCCEEDED,
        /// PARTIALLY_SUCCEEDED, FAILED, STOPPED); repeatable.
        #[arg(long, value_name = "STATUS", value_parser = parse_status)]
        status: Vec<JobStatus>,
        /// At most this many.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one job: status, counters and first failures.
    Show {
        /// The job id.
        id: String,
        #[command(flatten)]
        dir: DataDir,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Resume jobs whose process died (or that were queued) and wait for
    /// them to finish.
    Resume {
        /// The data directory, and where its buckets are (import jobs
        /// read them).
        #[command(flatten)]
        at: BucketArgs,
        /// Worker threads [default: one per core].
        #[arg(long, value_name = "N")]
        threads: Option<usize>,
        /// Print one JSON object per resumed job.
        #[arg(long)]
        json: bool,
    },
    /// Ask a job to stop (it stops between pieces or write batches).
    Stop {
        /// The job id.
        id: String,
        #[command(flatten)]
        dir: DataDir,
    },
}

/// The `--data-dir` and `--store` options.
#[derive(Debug, clap::Args)]
pub(crate) struct DataDir {
    /// The data directory holding the store.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// The store, if not the SQLite file in --data-dir: a PostgreSQL
    /// database that several sluice processes share,
    /// postgresql://USER[:PASSWORD]@HOST:PORT/DB.
    #[arg(long, env = "SLUICE_STORE", hide_env_values = true, value_name = "URL")]
    store: Option<String>,
}

fn parse_status(s: &str) -> Result<JobStatus, String> {
    s.to_ascii_uppercase().parse().map_err(|e| format!("{e}"))
}

/// Opens an existing store, so that reading commands do not create one (a
/// PostgreSQL store is made by whoever connects first).
fn open_existing(store: Option<&str>, dir: &Path) -> Result<Arc<dyn Store>, CliError> {
    if store.is_none() && !dir.join(sluice::store::DB_FILE).is_file() {
        return Err(CliError(format!(
            "{}: no store here (write one with `sluice ingest --data-dir {}`)",
            dir.display(),
            dir.display()
        )));
    }
    open(store, dir)
}

pub(crate) fn run(cmd: Command) -> Result<(), CliError> {
    let stdout = io::stdout();
    let mut w = stdout.lock();
    match cmd {
        Command::List {
            dir,
            domain,
            status,
            limit,
            json,
        } => {
            let store = open_existing(dir.store.as_deref(), &dir.data_dir)?;
            let jobs = store.jobs(&JobFilter {
                account: Some(account()),
                domain,
                statuses: status,
                limit,
                ..JobFilter::default()
            })?;
            if json {
                let all: Vec<Value> = jobs.iter().map(job_json).collect();
                serde_json::to_writer(&mut w, &all)?;
                writeln!(w)?;
            } else {
                write_table(&mut w, &jobs)?;
            }
        }
        Command::Show { id, dir, json } => {
            let store = open_existing(dir.store.as_deref(), &dir.data_dir)?;
            let job = store
                .job(JobRef {
                    account: &account(),
                    id: &id,
                })?
                .ok_or_else(|| CliError(format!("no job {id} in {}", store.location())))?;
            if json {
                serde_json::to_writer(&mut w, &job_json(&job))?;
                writeln!(w)?;
            } else {
                write_job(&mut w, &job)?;
            }
        }
        Command::Resume { at, threads, json } => {
            let store = open_existing(at.store.as_deref(), &at.data_dir)?;
            // Upload jobs read sealed files; import jobs read buckets.
            let master_key = at.master_key()?;
            let runner = Runner::new(
                store,
                RunnerConfig {
                    threads,
                    master_key,
                    objects: Some(at.objects()?),
                    uploads: Some(at.own_objects()),
                    ..RunnerConfig::default()
                },
            )?;
            let resumed = runner.recover()?;
            if resumed.is_empty() && !json {
                writeln!(w, "no job to resume")?;
            }
            let mut failed = 0;
            for j in &resumed {
                let job = runner.wait(
                    JobRef {
                        account: &j.account,
                        id: &j.id,
                    },
                    None,
                )?;
                if !matches!(
                    job.status,
                    JobStatus::Succeeded | JobStatus::PartiallySucceeded
                ) {
                    failed += 1;
                }
                if json {
                    serde_json::to_writer(&mut w, &job_json(&job))?;
                    writeln!(w)?;
                } else {
                    write_job(&mut w, &job)?;
                }
            }
            if failed > 0 {
                return Err(CliError(format!("{failed} resumed job(s) did not succeed")));
            }
        }
        Command::Stop { id, dir } => {
            let store = open_existing(dir.store.as_deref(), &dir.data_dir)?;
            let runner = Runner::new(
                store,
                RunnerConfig {
                    max_jobs: 1,
                    threads: Some(1),
                    ..RunnerConfig::default()
                },
            )?;
            let job = runner.stop(JobRef {
                account: &account(),
                id: &id,
            })?;
            writeln!(w, "job {id}: {} (stop requested)", job.status)?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Waits for a job, drawing progress on stderr if it is a terminal.
pub(super) fn follow(runner: &Runner, job: JobRef<'_>) -> Result<JobRecord, CliError> {
    let bar = io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar
    });
    loop {
        let record = runner.wait(job, Some(Duration::from_millis(100)))?;
        if record.status.is_terminal() {
            if let Some(b) = &bar {
                b.finish_and_clear();
            }
            return Ok(record);
        }
        if let (Some(b), Some(p)) = (&bar, runner.progress(job)) {
            b.set_length(p.total_bytes);
            b.set_position(p.bytes_done);
            let written = record.counters.created + record.counters.updated;
            if p.completed_pieces < p.total_pieces || p.total_pieces == 0 {
                b.set_message(format!("pieces {}/{}", p.completed_pieces, p.total_pieces));
            } else {
                b.set_message(format!(
                    "writing {}/{} records",
                    group(written),
                    group(p.unique)
                ));
            }
        }
    }
}

fn secs(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A job as JSON: the ingest summary's member names, plus the job's.
pub(super) fn job_json(j: &JobRecord) -> Value {
    let c = &j.counters;
    let by_field: Map<String, Value> = c
        .field_warnings_by_field
        .iter()
        .map(|(f, n)| (f.clone(), json!(n)))
        .collect();
    json!({
        "JobId": j.id,
        "Kind": j.kind.as_str(),
        "DomainName": j.domain,
        "DisplayName": j.display_name,
        "Status": j.status.as_str(),
        "StatusReason": j.status_reason,
        "Attempts": j.attempts,
        "CreatedAt": secs(j.created_ms),
        "StartedAt": j.started_ms.map(secs),
        "CompletedAt": j.completed_ms.map(secs),
        "TotalProcessed": c.processed,
        "UniqueRecords": c.created + c.updated,
        "CreatedRecords": c.created,
        "UpdatedRecords": c.updated,
        "DuplicateRecords": c.duplicates,
        "FailedRecords": c.failed,
        "FieldWarnings": c.field_warnings,
        "FieldWarningsByField": by_field,
        "TotalPieces": c.total_pieces,
        "CompletedPieces": c.completed_pieces,
        "FailedPieces": c.failed_pieces,
        "Failures": c.failures,
        "Stopped": j.status == JobStatus::Stopped,
    })
}

fn write_table(w: &mut impl Write, jobs: &[JobRecord]) -> io::Result<()> {
    writeln!(
        w,
        "{:<36}  {:<19}  {:<16}  {:>11}  {:>11}  {:>11}  {:>9}  {:>9}  CREATED (UTC)",
        "JOB ID", "STATUS", "DOMAIN", "PROCESSED", "CREATED", "UPDATED", "FAILED", "PIECES"
    )?;
    for j in jobs {
        let c = &j.counters;
        writeln!(
            w,
            "{:<36}  {:<19}  {:<16}  {:>11}  {:>11}  {:>11}  {:>9}  {:>9}  {}",
            j.id,
            j.status.as_str(),
            j.domain.as_deref().unwrap_or("-"),
            group(c.processed),
            group(c.created),
            group(c.updated),
            group(c.failed),
            format!("{}/{}", c.completed_pieces, c.total_pieces),
            utc(j.created_ms)
        )?;
    }
    Ok(())
}

pub(super) fn write_job(w: &mut impl Write, j: &JobRecord) -> io::Result<()> {
    let c = &j.counters;
    writeln!(w, "job {}  {}", j.id, j.status)?;
    if let Some(r) = &j.status_reason {
        writeln!(w, "  reason           {r}")?;
    }
    writeln!(
        w,
        "  domain           {}",
        j.domain.as_deref().unwrap_or("-")
    )?;
    if let Some(n) = &j.display_name {
        writeln!(w, "  name             {n}")?;
    }
    writeln!(w, "  created          {}", utc(j.created_ms))?;
    if let Some(t) = j.started_ms {
        writeln!(
            w,
            "  started          {}  (attempts: {})",
            utc(t),
            j.attempts
        )?;
    }
    if let Some(t) = j.completed_ms {
        writeln!(w, "  completed        {}", utc(t))?;
    }
    writeln!(w, "  rows processed   {:>13}", group(c.processed))?;
    writeln!(w, "  created          {:>13}", group(c.created))?;
    writeln!(w, "  updated          {:>13}", group(c.updated))?;
    writeln!(w, "  duplicates       {:>13}", group(c.duplicates))?;
    writeln!(w, "  failed rows      {:>13}", group(c.failed))?;
    writeln!(w, "  field warnings   {:>13}", group(c.field_warnings))?;
    writeln!(
        w,
        "  pieces           {:>13}  ({} completed, {} failed)",
        group(c.total_pieces),
        group(c.completed_pieces),
        group(c.failed_pieces)
    )?;
    write_failures(w, &c.failures, c.failed)
}
