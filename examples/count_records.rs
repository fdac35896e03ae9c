//! The baseline the benchmark targets are defined against: one thread of
//! `csv-core` that only counts the records of a file, reading it in 64 KiB
//! chunks as any streaming reader would.
//!
//! ```text
//! cargo run --release --example count_records -- FILE
//! ```

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

use csv_core::{ReadRecordResult, Reader};

fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: count_records FILE");
        return ExitCode::from(2);
    };
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("count_records: {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut rdr = Reader::new();
    let (mut buf, mut out, mut ends) = (vec![0u8; 64 << 10], vec![0u8; 1 << 16], vec![0usize; 256]);
    let (mut records, mut bytes) = (0u64, 0u64);
    loop {
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("count_records: {path}: {e}");
                return ExitCode::FAILURE;
            }
        };
        bytes += n as u64;
        let mut input = &buf[..n];
        // Empty input tells csv-core the file ended: only at the real end.
        while n == 0 || !input.is_empty() {
            let (res, nin, _, _) = rdr.read_record(input, &mut out, &mut ends);
            input = &input[nin..];
            match res {
                ReadRecordResult::Record => records += 1,
                ReadRecordResult::End => {
                    let secs = started.elapsed().as_secs_f64();
                    println!(
                        "{records} records, {bytes} bytes in {secs:.3} s ({:.0} MB/s)",
                        bytes as f64 / secs / 1e6
                    );
                    return ExitCode::SUCCESS;
                }
                // A field longer than the output buffer: its bytes are not
                // needed, only the record count, so keep going.
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
                ReadRecordResult::InputEmpty => {}
            }
        }
    }
}
