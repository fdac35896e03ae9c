//! Faults under a real `sluice ingest --data-dir` process: the disk fills
//! while the job writes, or the data directory cannot be written. The job
//! fails with a reason that names the store, and the store is intact with
//! everything committed before (a seed profile) unchanged. (Kill -9 is
//! tests/crash.rs for the CLI and tests/boto3/test_faults.py for serve.)

#![cfg(unix)]

use std::path::Path;
use std::process::{Command, Output};

use sluice::store::{AccountId, ProfileStore, SqliteStore};

const MAPPING: &str = r#"{"DomainName": "d", "Fields": {
  "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress", "ContentType": "EMAIL_ADDRESS"},
  "Name": {"Source": "_source.name", "Target": "_profile.FirstName", "ContentType": "NAME"}},
  "UniqueKey": "Email"}"#;

fn setup(d: &Path, rows: usize) {
    use std::io::Write;
    std::fs::write(d.join("m.json"), MAPPING).unwrap();
    std::fs::write(d.join("seed.csv"), "email,name\nseed@keep.me,Seed\n").unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(d.join("big.csv")).unwrap());
    writeln!(f, "email,name").unwrap();
    for i in 0..rows {
        writeln!(f, "u{i}@x.co,Name {i}").unwrap();
    }
    f.flush().unwrap();
    let out = ingest(d, "seed.csv", "exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `sluice ingest FILE --data-dir data`, through `sh` after `prefix`
/// (which ends in `exec` or a command that runs it: limits, another user).
fn ingest(d: &Path, file: &str, prefix: &str) -> Output {
    let bin = env!("CARGO_BIN_EXE_sluice");
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{prefix} '{bin}' ingest {file} --mapping m.json --data-dir data"
        ))
        .current_dir(d)
        .output()
        .unwrap()
}

/// The store opens, passes SQLite's integrity check, and holds the seed
/// profile and `count` profiles in all.
fn intact(d: &Path, count: u64) {
    let db = rusqlite::Connection::open(d.join("data/sluice.db")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let store = SqliteStore::open(d.join("data")).unwrap();
    let seed = store
        .profile(&AccountId::default(), "d", "seed@keep.me", 0)
        .unwrap();
    assert!(seed.is_some(), "the seed profile is gone");
    assert_eq!(
        store.count_profiles(&AccountId::default(), "d", 0).unwrap(),
        count
    );
}

#[test]
fn a_full_disk_fails_the_job_and_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, 200_000);
    // Files may grow to 8 MB, then writes fail (EFBIG, as ENOSPC would):
    // the store's file can not take 200,000 profiles.
    let out = ingest(d, "big.csv", "trap '' XFSZ; ulimit -f 8000; exec");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or("");
    assert!(
        last.contains("FAILED: writing profiles: store data/sluice.db: ")
            && last.contains("of committed batches stay"),
        "{stderr}"
    );
    let committed: u64 = last
        .split("; the ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .expect("the count of committed records");
    intact(d, 1 + committed);
    // With room again, the same file goes in whole.
    let out = ingest(d, "big.csv", "exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    intact(d, 200_001);
}

#[test]
fn an_unwritable_data_directory_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d, 1000);
    let data = d.join("data");
    let before = std::fs::read(data.join("sluice.db")).unwrap();
    // Root writes anywhere: run as nobody when we are root.
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let prefix = if root {
        "exec setpriv --reuid=65534 --regid=65534 --clear-groups"
    } else {
        "exec"
    };
    let mode = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    mode(d, 0o755);
    for f in std::fs::read_dir(&data).unwrap() {
        let p = f.unwrap().path();
        mode(&p, if p.is_dir() { 0o555 } else { 0o444 });
    }
    mode(&data, 0o555);
    let out = ingest(d, "big.csv", prefix);
    mode(&data, 0o755);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("sluice.db") && stderr.contains("readonly"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(data.join("sluice.db")).unwrap(), before);
    mode(&data.join("sluice.db"), 0o644);
    intact(d, 1);
}
