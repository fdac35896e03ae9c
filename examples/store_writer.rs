//! The store's writer on its own: N profiles in key order, in batches,
//! through `ProfileStore::write_profiles`, twice (all creates, then all
//! updates).
//!
//! ```text
//! cargo run --release --example store_writer -- DIR [ROWS] [BATCH_ROWS]
//! ```
//!
//! Rows look like the canonical job's: an e-mail key and the values of
//! its ten fields, a JSON array of ~115 bytes.

use std::time::Instant;

use sluice::job::{JobStatus, system_clock};
use sluice::store::{
    AccountId, Attempt, Domain, JobKind, JobRef, JobStore, NewJob, ProfileBatch, ProfileRow,
    ProfileStore, SqliteStore, Transition,
};

/// The canonical mapping's targets.
const TARGETS: [&str; 10] = [
    "AccountNumber",
    "FirstName",
    "LastName",
    "EmailAddress",
    "PhoneNumber",
    "Address.City",
    "Address.PostalCode",
    "Attributes.LifetimeValue",
    "Attributes.SignupDate",
    "Attributes.Notes",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args
        .get(1)
        .ok_or("usage: store_writer DIR [ROWS] [BATCH_ROWS]")?;
    let rows: usize = args.get(2).map_or(Ok(1_000_000), |s| s.parse())?;
    let batch: usize = args.get(3).map_or(Ok(250_000), |s| s.parse())?;
    std::fs::remove_dir_all(dir).ok();
    let store = SqliteStore::open(dir)?;
    let now = system_clock()();
    let account = AccountId::default();
    store.create_domain(&account, &Domain::new("bench", 14, now))?;

    let mut keys: Vec<String> = (0..rows as u64)
        .map(|i| {
            let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            format!("user.{:x}{}@example{}.com", h >> 40, i, i % 89)
        })
        .collect();
    keys.sort_unstable();
    let fields: Vec<String> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            format!(
                r#"["C{i:08}","Anne Marie","Anderson","{k}","+17735556551","Washington, D.C.","66366","43350.5","2024-01-09",""]"#
            )
        })
        .collect();
    let bytes: usize =
        keys.iter().map(String::len).sum::<usize>() + fields.iter().map(String::len).sum::<usize>();
    println!(
        "{rows} rows, {:.0} bytes of key and fields each, {batch} per transaction",
        bytes as f64 / rows as f64
    );

    for round in ["create", "update"] {
        let id = format!("bench-{round}");
        store.insert_job(&NewJob {
            account: account.clone(),
            id: id.clone(),
            kind: JobKind::Profiles,
            domain: Some("bench".into()),
            app: None,
            display_name: None,
            spec: "{}".into(),
            created_ms: now,
        })?;
        let job = JobRef {
            account: &account,
            id: &id,
        };
        let mut attempt = 0;
        for (from, to) in [
            (JobStatus::Created, JobStatus::Queued),
            (JobStatus::Queued, JobStatus::Running),
        ] {
            attempt = store
                .transition(job, &Transition::new(from, to, now))?
                .attempts;
        }
        let start = Instant::now();
        let (mut created, mut updated) = (0, 0);
        for (ks, fs) in keys.chunks(batch).zip(fields.chunks(batch)) {
            let rows: Vec<ProfileRow<'_>> = ks
                .iter()
                .zip(fs)
                .map(|(key, values)| ProfileRow {
                    key,
                    values,
                    terms: &[],
                })
                .collect();
            let c = store.write_profiles(&ProfileBatch {
                attempt: Attempt { job, attempt },
                domain: "bench",
                now_ms: now,
                expires_ms: now + 14 * 86_400_000,
                targets: &TARGETS,
                rows: &rows,
            })?;
            created += c.created;
            updated += c.updated;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{round}: {created} created, {updated} updated in {secs:.2} s = {:.0} rows/s",
            rows as f64 / secs
        );
    }
    // Closing checkpoints the WAL into the file.
    let path = store.path().to_owned();
    drop(store);
    let size = std::fs::metadata(path)?.len();
    println!(
        "database {:.2} GiB, {:.0} bytes a row",
        size as f64 / (1u64 << 30) as f64,
        size as f64 / rows as f64
    );
    Ok(())
}
