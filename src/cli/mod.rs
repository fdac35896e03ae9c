//! Command-line parsing and dispatch.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use sluice::store::{AccountId, Store};

use clap::{Parser, Subcommand};

mod bucket;
mod importexport;
mod ingest;
mod jobs;
mod serve;
mod worker;

/// Fast, exact CSV ingest with AWS-shaped import jobs.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Split, parse, normalize and deduplicate CSV files with a mapping.
    Ingest(ingest::Args),
    /// List, show, resume and stop jobs in a data directory.
    #[command(subcommand)]
    Jobs(jobs::Command),
    /// Serve the AWS-shaped job APIs over HTTP (boto3, the aws CLI).
    Serve(serve::Args),
    /// Make buckets, put files in them and list them (s3:// URLs).
    #[command(subcommand)]
    Bucket(bucket::Command),
    /// Import/Export jobs: run a job when its device arrives.
    #[command(subcommand)]
    Importexport(importexport::Command),
    /// Run the jobs queued in a store that several processes share
    /// (--store postgresql://…), until stopped.
    Worker(worker::Args),
}

/// Runs the command line; errors are printed on stderr.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ingest(args) => ingest::run(args),
        Command::Jobs(cmd) => jobs::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Bucket(cmd) => bucket::run(cmd),
        Command::Importexport(cmd) => importexport::run(cmd),
        Command::Worker(args) => worker::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where the store and buckets live unless `--data-dir` says otherwise.
const DEFAULT_DATA_DIR: &str = "sluice-data";

/// An error for the user: one line, already saying where.
#[derive(Debug)]
pub(crate) struct CliError(String);

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> CliError {
        CliError(e.to_string())
    }
}

/// The store `--store` names (a PostgreSQL URL, shared by processes on
/// any machines), or else the SQLite file of the data directory.
pub(crate) fn open(store: Option<&str>, dir: &Path) -> Result<Arc<dyn Store>, CliError> {
    match store {
        Some(url) => Ok(sluice::store::open(url)?),
        None => Ok(sluice::store::open(&dir.display().to_string())?),
    }
}

/// The account the command acts for.
pub(crate) fn account() -> AccountId {
    AccountId::default()
}

pub(crate) fn write_failures(
    w: &mut impl Write,
    failures: &[impl std::fmt::Display],
    failed: u64,
) -> io::Result<()> {
    const SHOWN: usize = 10;
    if failures.is_empty() {
        return Ok(());
    }
    writeln!(w, "first failures:")?;
    for f in failures.iter().take(SHOWN) {
        writeln!(w, "  {f}")?;
    }
    if failed > SHOWN as u64 {
        writeln!(
            w,
            "  … and {} more (--json lists the first {})",
            group(failed - SHOWN as u64),
            failures.len()
        )?;
    }
    Ok(())
}

pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses sizes such as `4096`, `64KiB`, `8M`, `1GB` (K, M, G and KiB,
/// MiB, GiB are powers of 1024; KB, MB, GB powers of 1000).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (try 4096, 64KiB, 8MiB or 1GB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size("1GB"), Ok(1_000_000_000));
        assert!(parse_size("x").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }
}
