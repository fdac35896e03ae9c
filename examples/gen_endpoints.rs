//! Writes a deterministic Pinpoint endpoint CSV (see `sluice::synth::write_endpoints`).
//!
//! ```text
//! cargo run --release --example gen_endpoints -- --mib 768 --endpoints 50000 --attributes 12 --seed 1 --out a.csv
//! cargo run --release --example gen_endpoints -- --rows 1000000 --out b.csv
//! ```
//!
//! `--mib N` writes as many rows as make about N MiB; `--rows N` writes N.

use std::fs::File;
use std::io;
use std::process::ExitCode;

use sluice::synth::{EndpointSpec, write_endpoints};

const USAGE: &str = "usage: gen_endpoints (--rows N | --mib N) --out FILE \
                     [--endpoints 50000] [--attributes 0] [--seed 1]";

fn main() -> ExitCode {
    let mut spec = EndpointSpec {
        rows: 100_000,
        endpoints: 50_000,
        attributes: 0,
        seed: 1,
    };
    let (mut mib, mut out) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_default();
        let ok = match a.as_str() {
            "--rows" => value().parse().map(|v| spec.rows = v).is_ok(),
            "--mib" => value().parse().map(|v: u64| mib = Some(v)).is_ok(),
            "--endpoints" => value().parse().map(|v| spec.endpoints = v).is_ok(),
            "--attributes" => value().parse().map(|v| spec.attributes = v).is_ok(),
            "--seed" => value().parse().map(|v| spec.seed = v).is_ok(),
            "--out" => {
                out = Some(value());
                true
            }
            _ => false,
        };
        if !ok {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(path) = out else {
        eprintln!("gen_endpoints: --out FILE is required\n{USAGE}");
        return ExitCode::from(2);
    };
    if let Some(mib) = mib {
        // Rows are about the same length: measure some, then scale.
        let sample = EndpointSpec {
            rows: 20_000,
            ..spec
        };
        let bytes = write_endpoints(&sample, io::sink()).unwrap_or(1).max(1);
        spec.rows = ((mib << 20) as f64 / bytes as f64 * sample.rows as f64) as u64;
    }
    let written = File::create(&path).and_then(|f| write_endpoints(&spec, f));
    match written {
        Ok(bytes) => {
            eprintln!(
                "rows={} bytes={bytes} endpoints={} attributes={} seed={}",
                spec.rows, spec.endpoints, spec.attributes, spec.seed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_endpoints: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
