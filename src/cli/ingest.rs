//! `sluice ingest`: files through the engine, printed or written to a file, or (with `--data-dir`) run as a job into the store.

use std::fs;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use sluice::ingest::output::{Format, write_records};
use sluice::ingest::{DEFAULT_PIECE_SIZE, IngestBuilder, Input, Progress, Summary};
use sluice::job::{DEFAULT_BATCH_ROWS, JobSpec, JobStatus, ProfileJob, Runner, RunnerConfig};
use sluice::job::{Source, system_clock};
use sluice::mapping::{DEFAULT_DATA_EXPIRY_DAYS, MappingFile};
use sluice::objects::{ObjectUrl, resolve};
use sluice::store::{Domain, JobRef};

use super::bucket::S3Args;
use super::jobs::{follow, job_json, write_job};
use super::{CliError, account, group, open, parse_size, write_failures};

/// Arguments of `sluice ingest`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// CSV files with a header row, read in this order. With --store or
    /// --data-dir also s3://BUCKET/KEY objects, or s3://BUCKET/PREFIX/
    /// for every object under the prefix, by key (see --s3-endpoint).
    #[arg(required = true, value_name = "FILE")]
    pub(super) files: Vec<PathBuf>,
    /// Mapping in the shape of a Customer Profiles CreateUploadJob request.
    #[arg(long, value_name = "MAPPING.json")]
    pub(super) mapping: PathBuf,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub(super) threads: Option<usize>,
    /// Target piece size, e.g. 4MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_PIECE_SIZE)]
    pub(super) piece_size: u64,
    /// Default region (ISO 3166-1 alpha-2) of phone numbers without a
    /// country code.
    #[arg(long, value_name = "REGION", default_value = "US")]
    pub(super) region: String,
    /// Field delimiter: one ASCII character, or \t for tabs.
    #[arg(long, value_name = "CHAR", default_value = ",")]
    delimiter: String,
    /// Write the surviving records (CSV or NDJSON by extension) in input
    /// order.
    #[arg(long, value_name = "FILE.csv|FILE.ndjson")]
    out: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub(super) json: bool,
    /// Write the result into the store in DIR as a job, in the domain the
    /// mapping's DomainName names (created with 14-day expiry if new).
    #[arg(long, value_name = "DIR", conflicts_with = "out")]
    data_dir: Option<PathBuf>,
    /// Write the result as a job into this store instead: a PostgreSQL
    /// database that several sluice processes share,
    /// postgresql://USER[:PASSWORD]@HOST:PORT/DB.
    #[arg(
        long,
        env = "SLUICE_STORE",
        hide_env_values = true,
        value_name = "URL",
        conflicts_with = "out"
    )]
    store: Option<String>,
    /// On a store that several processes share (PostgreSQL): the job is
    /// cut into ranges of about this many bytes, which this process and
    /// any `sluice worker` run, e.g. 64MiB [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    range_size: Option<u64>,
    /// Queue the job in the store and print its id, without running it:
    /// `sluice worker` processes sharing the store run it.
    #[arg(long)]
    detach: bool,
    /// Where s3:// inputs are.
    #[command(flatten)]
    s3: S3Args,
    /// Profiles per write transaction (with --data-dir).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BATCH_ROWS, hide = true)]
    pub(super) batch_rows: usize,
}

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    let mapping_bytes = fs::read(&args.mapping)
        .map_err(|e| CliError(format!("{}: {e}", args.mapping.display())))?;
    let mapping = MappingFile::from_json(&mapping_bytes)
        .map_err(|e| CliError(format!("{}: {e}", args.mapping.display())))?;
    let delimiter = match args.delimiter.as_str() {
        "\\t" | "\t" => b'\t',
        d if d.len() == 1 && d.is_ascii() => d.as_bytes()[0],
        d => {
            return Err(CliError(format!(
                "--delimiter {d:?}: must be one ASCII character"
            )));
        }
    };
    let out = match &args.out {
        None => None,
        Some(p) => {
            let format = Format::from_path(p).ok_or_else(|| {
                CliError(format!(
                    "--out {}: name the file .csv, .ndjson or .jsonl",
                    p.display()
                ))
            })?;
            Some((p.clone(), format, Staged::create(p)?))
        }
    };

    if args.data_dir.is_some() || args.store.is_some() {
        let dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATA_DIR));
        return into_store(&args, &dir, &mapping_bytes, mapping, delimiter);
    }

    let mut builder = IngestBuilder::new(mapping.mapping);
    builder
        .piece_size(args.piece_size)
        .region(&args.region)
        .delimiter(delimiter);
    if let Some(n) = args.threads {
        builder.threads(n);
    }
    let ingest = builder.build()?;
    let inputs: Vec<Input> = args.files.iter().map(Input::path).collect();

    let progress = Progress::new();
    let started = Instant::now();
    let outcome = std::thread::scope(|s| {
        let handle = s.spawn(|| ingest.run_with(inputs, &progress));
        show_progress(&progress, &handle);
        handle.join().expect("the ingest thread does not panic")
    })?;
    let elapsed = started.elapsed();

    if let Some((path, format, staged)) = out {
        let file = staged.file()?;
        write_records(&outcome.records, format, file)
            .map_err(|e| CliError(format!("{}: {e}", path.display())))?;
        staged.commit()?;
    }

    let summary = &outcome.summary;
    let stdout = io::stdout();
    let mut w = stdout.lock();
    if args.json {
        serde_json::to_writer(&mut w, &summary_json(summary))?;
        writeln!(w)?;
    } else {
        write_human(&mut w, summary, args.files.len())?;
    }
    w.flush()?;
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "sluice: {} in {:.2} s ({:.0} MB/s)",
        human_bytes(summary.bytes),
        secs,
        summary.bytes as f64 / secs.max(1e-9) / 1e6
    );
    Ok(())
}

/// Draws a progress bar on stderr while the run goes, if it is a terminal.
pub(super) fn show_progress<T>(progress: &Progress, handle: &std::thread::ScopedJoinHandle<'_, T>) {
    if !io::stderr().is_terminal() {
        return;
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    while !handle.is_finished() {
        let p = progress.snapshot();
        bar.set_length(p.total_bytes);
        bar.set_position(p.bytes_done);
        bar.set_message(format!("pieces {}/{}", p.completed_pieces, p.total_pieces));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}

/// The `--json` summary, with the member names of the job APIs.
fn summary_json(s: &Summary) -> Value {
    let by_field: Map<String, Value> = s
        .field_warnings_by_field
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| (f.to_string(), json!(n)))
        .collect();
    json!({
        "TotalProcessed": s.processed,
        "UniqueRecords": s.unique,
        "DuplicateRecords": s.duplicates,
        "FailedRecords": s.failed,
        "FieldWarnings": s.field_warnings,
        "FieldWarningsByField": by_field,
        "TotalPieces": s.total_pieces,
        "CompletedPieces": s.completed_pieces,
        "FailedPieces": s.failed_pieces,
        "Failures": s.failures.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "Stopped": s.stopped,
    })
}

pub(super) fn write_human(w: &mut impl Write, s: &Summary, files: usize) -> io::Result<()> {
    let files = if files == 1 {
        "1 file".to_owned()
    } else {
        format!("{files} files")
    };
    writeln!(w, "ingested {files}, {}", human_bytes(s.bytes))?;
    writeln!(w, "  rows processed   {:>13}", group(s.processed))?;
    writeln!(w, "  unique records   {:>13}", group(s.unique))?;
    writeln!(w, "  duplicates       {:>13}", group(s.duplicates))?;
    writeln!(w, "  failed rows      {:>13}", group(s.failed))?;
    write!(w, "  field warnings   {:>13}", group(s.field_warnings))?;
    let by: Vec<String> = s
        .field_warnings_by_field
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, n)| format!("{f} {}", group(*n)))
        .collect();
    if by.is_empty() {
        writeln!(w)?;
    } else {
        writeln!(w, "  ({})", by.join(", "))?;
    }
    writeln!(
        w,
        "  pieces           {:>13}  ({} completed, {} failed)",
        group(s.total_pieces),
        group(s.completed_pieces),
        group(s.failed_pieces)
    )?;
    if s.stopped {
        writeln!(w, "  stopped before the end of the input")?;
    }
    write_failures(w, &s.failures, s.failed)
}

/// The first ten of `failures` (the first of `failed` in all).
pub(super) fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// An output file written under a temporary name and renamed into place
/// only when complete, so a failed run leaves no half-written output.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the temporary file now, so an unwritable destination is an
    /// error before the run rather than after it.
    fn create(dest: &Path) -> Result<Staged, CliError> {
        let name = dest
            .file_name()
            .ok_or_else(|| CliError(format!("--out {}: not a file name", dest.display())))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(".sluice-partial");
        let tmp = dest.with_file_name(tmp_name);
        fs::File::create(&tmp).map_err(|e| CliError(format!("--out {}: {e}", dest.display())))?;
        Ok(Staged {
            tmp,
            dest: dest.to_owned(),
            committed: false,
        })
    }

    fn file(&self) -> Result<fs::File, CliError> {
        fs::File::create(&self.tmp).map_err(|e| CliError(format!("{}: {e}", self.tmp.display())))
    }

    fn commit(mut self) -> Result<(), CliError> {
        fs::rename(&self.tmp, &self.dest)
            .map_err(|e| CliError(format!("--out {}: {e}", self.dest.display())))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// `sluice ingest --data-dir DIR`: the run becomes a job in the store.
fn into_store(
    args: &Args,
    dir: &Path,
    mapping_bytes: &[u8],
    mapping: MappingFile,
    delimiter: u8,
) -> Result<(), CliError> {
    let domain = mapping.domain_name.clone().ok_or_else(|| {
        CliError(format!(
            "{}: writing into a store needs DomainName in the mapping, to say which domain the profiles go into",
            args.mapping.display()
        ))
    })?;
    let objects = args.s3.objects(&dir.join(sluice::server::BUCKETS_DIR))?;
    let mut inputs = Vec::new();
    for f in &args.files {
        if let Some(url) = f.to_str().filter(|u| u.starts_with("s3://")) {
            let url = ObjectUrl::parse(url).map_err(|e| CliError(format!("{url}: {e}")))?;
            let listed =
                resolve(&*objects, &url).map_err(|e| CliError(format!("{}: {e}", f.display())))?;
            inputs.extend(listed.into_iter().map(|o| Source::Object {
                url: format!("s3://{}/{}", url.bucket, o.key),
            }));
            continue;
        }
        // Absolute, so that `sluice jobs resume` finds them from anywhere.
        let p = std::fs::canonicalize(f).map_err(|e| CliError(format!("{}: {e}", f.display())))?;
        inputs.push(Source::File(p));
    }
    let store = open(args.store.as_deref(), dir)?;
    let account = account();
    if store.domain(&account, &domain)?.is_none() {
        store.create_domain(
            &account,
            &Domain::new(&domain, DEFAULT_DATA_EXPIRY_DAYS, system_clock()()),
        )?;
        eprintln!(
            "sluice: created domain {domain:?} (DefaultExpirationDays {DEFAULT_DATA_EXPIRY_DAYS})"
        );
    }
    let runner = Runner::new(
        store,
        RunnerConfig {
            max_jobs: usize::from(!args.detach),
            threads: args.threads,
            batch_rows: args.batch_rows,
            objects: Some(objects),
            ..RunnerConfig::default()
        },
    )?;
    let display_name = mapping.display_name.clone().or_else(|| {
        args.files
            .first()
            .and_then(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
    });
    let spec = JobSpec::Profiles(ProfileJob {
        domain,
        display_name: display_name.clone(),
        mapping: serde_json::from_slice(mapping_bytes)?,
        inputs,
        piece_size: Some(args.piece_size),
        range_size: args.range_size,
        region: Some(args.region.clone()),
        delimiter: (delimiter != b',').then_some(delimiter),
        sealed_key: None,
    });
    let job = runner.submit(&account, &spec, display_name)?;
    if args.detach {
        println!("{}", job.id);
        eprintln!(
            "sluice: job {} queued in {}; sluice worker processes sharing the store run it",
            job.id,
            runner.store().location()
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    let job = follow(
        &runner,
        JobRef {
            account: &account,
            id: &job.id,
        },
    )?;
    let secs = started.elapsed().as_secs_f64();

    let stdout = io::stdout();
    let mut w = stdout.lock();
    if args.json {
        serde_json::to_writer(&mut w, &job_json(&job))?;
        writeln!(w)?;
    } else {
        write_job(&mut w, &job)?;
    }
    w.flush()?;
    let c = &job.counters;
    eprintln!(
        "sluice: job {} {} in {secs:.2} s ({} rows, {} records written)",
        job.id,
        job.status,
        group(c.processed),
        group(c.created + c.updated)
    );
    match job.status {
        JobStatus::Succeeded | JobStatus::PartiallySucceeded => Ok(()),
        s => Err(CliError(format!(
            "job {} {s}: {}",
            job.id,
            job.status_reason.as_deref().unwrap_or("no reason recorded")
        ))),
    }
}
