//! Writes a deterministic, messy customer CSV (see `sluice::synth`).
//!
//! ```text
//! cargo run --release --example gen_customers -- --rows 9560000 --seed 42 --out customers.csv
//! ```
//!
//! Prints the exact statistics of what it wrote on stderr, among them
//! `distinct_email_valid`, the unique count a dedup on e-mail must report.

use std::fs::File;
use std::process::ExitCode;

use sluice::synth::{Spec, write_customers};

fn main() -> ExitCode {
    let mut spec = Spec::new(100_000, 42);
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        let ok = match a.as_str() {
            "--rows" => value().parse().map(|v| spec.rows = v).is_ok(),
            "--seed" => value().parse().map(|v| spec.seed = v).is_ok(),
            "--dup-rate" => value().parse().map(|v| spec.dup_rate = v).is_ok(),
            "--bad-rate" => value().parse().map(|v| spec.bad_rate = v).is_ok(),
            "--out" => {
                out = Some(value());
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!(
                "usage: gen_customers --rows N --seed S --out FILE [--dup-rate 0.2] [--bad-rate 0.001]"
            );
            return ExitCode::from(2);
        }
    }
    let Some(path) = out else {
        eprintln!("gen_customers: --out FILE is required");
        return ExitCode::from(2);
    };
    let file = match File::create(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("gen_customers: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match write_customers(&spec, file) {
        Ok(s) => {
            eprintln!(
                "rows={} bytes={} seed={} dup_rows={} multiline_rows={}\n\
                 bad_11_fields={} bad_9_fields={} bad_email={} bad_phone={}\n\
                 distinct_email_valid={}",
                s.rows,
                s.bytes,
                spec.seed,
                s.dup_rows,
                s.multiline_rows,
                s.bad_11_fields,
                s.bad_9_fields,
                s.bad_email,
                s.bad_phone,
                s.distinct_email_valid
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_customers: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
