//! Kill -9 of a real `sluice ingest --data-dir` process, then reopen and
//! resume: the store is intact and the final counts are exact.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::ingest::{IngestBuilder, Input};
use sluice::job::JobStatus;
use sluice::mapping::MappingFile;
use sluice::store::{AccountId, DB_FILE, JobRecord, JobRef, JobStore, ProfileStore, SqliteStore};
use sluice::synth::{Spec, write_customers};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const FAR: i64 = 0; // profiles live 14 days from now; any time before is fine

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Pieces done, nothing written yet.
    Parsing,
    /// Some write transactions committed.
    Writing,
}

fn kill_and_resume(phase: Phase, rows: u64) {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("customers.csv");
    write_customers(
        &Spec::new(rows, 11),
        std::io::BufWriter::new(std::fs::File::create(&csv).unwrap()),
    )
    .unwrap();
    let mapping = Path::new(ROOT).join("testdata/customers.mapping.json");
    let data = dir.path().join("data");

    // What an uninterrupted run keeps.
    let m = MappingFile::from_json(&std::fs::read(&mapping).unwrap()).unwrap();
    let clean = IngestBuilder::new(m.mapping)
        .threads(2)
        .build()
        .unwrap()
        .run(vec![Input::path(&csv)])
        .unwrap();
    let keys: Vec<String> = clean
        .records
        .iter()
        .map(|r| r.key_values().next().unwrap().to_owned())
        .collect();

    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["ingest", "--data-dir"])
        .arg(&data)
        .arg("--mapping")
        .arg(&mapping)
        .args([
            "--batch-rows",
            "40",
            "--piece-size",
            "32KiB",
            "--threads",
            "2",
        ])
        .arg(&csv)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !data.join(DB_FILE).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no store appeared"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let store = SqliteStore::open(&data).unwrap();
    let killed: JobRecord = loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job finished before it could be killed ({phase:?}): {}",
            std::fs::read_to_string(dir.path().join("stderr")).unwrap()
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the job did not get going"
        );
        if let Some(j) = store.jobs(&Default::default()).unwrap().into_iter().next() {
            let c = &j.counters;
            let ready = match phase {
                Phase::Parsing => c.completed_pieces > 0 && c.created == 0,
                Phase::Writing => c.created > 0,
            };
            if ready {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                break j;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    drop(store);

    // Reopen: intact, and what was committed agrees with the job.
    let store = SqliteStore::open(&data).unwrap();
    assert_eq!(store.integrity_check(), Ok(()));
    let after = store
        .job(JobRef {
            account: &AccountId::default(),
            id: &killed.id,
        })
        .unwrap()
        .unwrap();
    assert_eq!(after.status, JobStatus::Running, "{after:#?}");
    let committed = after.counters.created + after.counters.updated;
    assert_eq!(
        store
            .count_profiles(&AccountId::default(), "customers", FAR)
            .unwrap(),
        committed
    );
    if let Phase::Writing = phase {
        assert!(committed > 0 && committed < keys.len() as u64, "{after:#?}");
    }

    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["jobs", "resume", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let j = &lines[0];
    let s = &clean.summary;
    assert_eq!(j["JobId"], killed.id.as_str());
    assert_eq!(j["Status"], "PARTIALLY_SUCCEEDED", "{j}");
    assert_eq!(j["Attempts"], 2);
    assert_eq!(j["CreatedRecords"], s.unique, "{j}");
    assert_eq!(j["UpdatedRecords"], 0, "{j}");
    assert_eq!(j["TotalProcessed"], s.processed);
    assert_eq!(j["DuplicateRecords"], s.duplicates);
    assert_eq!(j["FailedRecords"], s.failed);
    assert_eq!(j["CompletedPieces"], j["TotalPieces"]);
    assert!(
        j["StatusReason"]
            .as_str()
            .unwrap()
            .contains("rows and 0 pieces failed")
    );

    assert_eq!(store.integrity_check(), Ok(()));
    assert_eq!(
        store
            .count_profiles(&AccountId::default(), "customers", FAR)
            .unwrap(),
        s.unique
    );
    for k in &keys {
        assert!(
            store
                .profile(&AccountId::default(), "customers", k, FAR)
                .unwrap()
                .is_some(),
            "{k}"
        );
    }
    // Nothing is left to resume.
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["jobs", "resume", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no job to resume\n");
}

#[test]
fn killed_while_writing_resumes_after_its_last_commit() {
    kill_and_resume(Phase::Writing, 60_000);
}

#[test]
fn killed_while_parsing_resumes_from_the_start() {
    kill_and_resume(Phase::Parsing, 60_000);
}
