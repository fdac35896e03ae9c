//! `sluice ingest` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .current_dir(ROOT)
        // The store is what each test names, not the caller's.
        .env_remove("SLUICE_STORE")
        .output()
        .expect("the binary runs")
}

fn ok(args: &[&str]) -> Output {
    let out = sluice(args);
    assert!(
        out.status.success(),
        "sluice {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs and expects failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = sluice(args);
    assert!(!out.status.success(), "sluice {args:?} succeeded");
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout when the run fails"
    );
    String::from_utf8(out.stderr).unwrap()
}

const SAMPLE: [&str; 4] = [
    "ingest",
    "testdata/customers.csv",
    "--mapping",
    "testdata/customers.mapping.json",
];

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn the_readme_sample_job() {
    let out = ok(&with(&SAMPLE, &["--json"]));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["TotalProcessed"], 2000);
    assert_eq!(v["UniqueRecords"], 1566);
    assert_eq!(v["DuplicateRecords"], 413);
    assert_eq!(v["FailedRecords"], 21);
    assert_eq!(v["FieldWarnings"], 109);
    assert_eq!(v["FieldWarningsByField"]["Phone"], 5);
    assert_eq!(v["TotalPieces"], 1);
    assert_eq!(v["CompletedPieces"], 1);
    assert_eq!(v["FailedPieces"], 0);
    let failures = v["Failures"].as_array().unwrap();
    assert_eq!(failures.len(), 21);
    assert_eq!(
        failures[0],
        "testdata/customers.csv:5: record 4: expected 10 fields, found 11"
    );
    // The readable summary says the same.
    let out = ok(&SAMPLE);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("unique records           1,566"), "{text}");
    assert!(
        text.contains("testdata/customers.csv:5: record 4"),
        "{text}"
    );
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn out_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn threads_and_piece_sizes_do_not_change_any_output() {
    let dir = tmp();
    let mut seen: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = None;
    for (threads, piece) in [
        ("1", "4MiB"),
        ("2", "4MiB"),
        ("8", "4MiB"),
        ("2", "300"),
        ("8", "1"),
    ] {
        let csv = out_path(dir.path(), &format!("out-{threads}-{piece}.csv"));
        let nd = out_path(dir.path(), &format!("out-{threads}-{piece}.ndjson"));
        let summary = ok(&with(
            &SAMPLE,
            &[
                "--threads",
                threads,
                "--piece-size",
                piece,
                "--json",
                "--out",
                csv.to_str().unwrap(),
            ],
        ))
        .stdout;
        ok(&with(
            &SAMPLE,
            &[
                "--threads",
                threads,
                "--piece-size",
                piece,
                "--out",
                nd.to_str().unwrap(),
            ],
        ));
        let mut summary: Value = serde_json::from_slice(&summary).unwrap();
        if piece != "4MiB" {
            // Piece counts follow the piece size; compare everything else.
            for k in ["TotalPieces", "CompletedPieces"] {
                summary[k] = Value::Null;
            }
        } else {
            for k in ["TotalPieces", "CompletedPieces"] {
                assert_eq!(summary[k], 1);
                summary[k] = Value::Null;
            }
        }
        let got = (
            serde_json::to_vec(&summary).unwrap(),
            std::fs::read(&csv).unwrap(),
            std::fs::read(&nd).unwrap(),
        );
        match &seen {
            None => seen = Some(got),
            Some(first) => {
                assert!(
                    first.0 == got.0,
                    "summary differs at threads {threads} piece {piece}"
                );
                assert!(
                    first.1 == got.1,
                    "CSV differs at threads {threads} piece {piece}"
                );
                assert!(
                    first.2 == got.2,
                    "NDJSON differs at threads {threads} piece {piece}"
                );
            }
        }
    }
}

#[test]
fn out_writes_csv_and_nested_ndjson_in_input_order() {
    let dir = tmp();
    let csv = out_path(dir.path(), "o.csv");
    let nd = out_path(dir.path(), "o.ndjson");
    ok(&with(&SAMPLE, &["--out", csv.to_str().unwrap()]));
    ok(&with(&SAMPLE, &["--out", nd.to_str().unwrap()]));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "AccountNumber,FirstName,LastName,EmailAddress,PhoneNumber,Address.City,\
         Address.PostalCode,Attributes.LifetimeValue,Attributes.SignupDate,Attributes.Notes"
    );
    let nd_lines: Vec<Value> = std::fs::read_to_string(&nd)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(nd_lines.len(), 1566);
    let first = &nd_lines[0];
    assert!(first["EmailAddress"].as_str().unwrap().contains('@'));
    assert!(first["Address"]["City"].is_string());
    assert!(first["Attributes"]["LifetimeValue"].is_string());
    // The CSV reads back whole (notes with quotes and newlines included),
    // with a mapping of its own header.
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let fields: Vec<String> = header
        .iter()
        .map(|h| format!(r#""{h}": {{"Source": "_source.{h}", "Target": "_profile.{h}"}}"#))
        .collect();
    let mapping = out_path(dir.path(), "back.json");
    std::fs::write(
        &mapping,
        format!(
            r#"{{"Fields": {{{}}}, "UniqueKey": "EmailAddress"}}"#,
            fields.join(",")
        ),
    )
    .unwrap();
    let out = ok(&[
        "ingest",
        csv.to_str().unwrap(),
        "--mapping",
        mapping.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["UniqueRecords"].clone(), v["FailedRecords"].clone()),
        (1566.into(), 0.into())
    );
    let lines_in_input_order: Vec<&str> = nd_lines
        .iter()
        .map(|v| v["AccountNumber"].as_str().unwrap())
        .collect();
    let mut sorted = lines_in_input_order.clone();
    sorted.sort();
    assert_eq!(
        lines_in_input_order, sorted,
        "customer ids grow with input order"
    );
}

#[test]
fn errors_name_the_place_and_leave_no_output() {
    let dir = tmp();
    let out = out_path(dir.path(), "never.csv");
    let o = out.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "ingest",
                "testdata/nope.csv",
                "--mapping",
                "testdata/customers.mapping.json",
                "--out",
                o,
            ],
            "testdata/nope.csv",
        ),
        (
            vec![
                "ingest",
                "testdata/customers.csv",
                "--mapping",
                "testdata/nope.json",
            ],
            "testdata/nope.json",
        ),
        (
            vec![
                "ingest",
                "testdata/customers.csv",
                "--mapping",
                "testdata/edge/ragged.csv",
            ],
            "invalid JSON at line 1",
        ),
        (
            vec![
                "ingest",
                "testdata/edge/missing_column.csv",
                "--mapping",
                "testdata/edge/mapping.json",
                "--out",
                o,
            ],
            "no column \"email\"",
        ),
        (
            vec![
                "ingest",
                "testdata/edge/empty.csv",
                "--mapping",
                "testdata/edge/mapping.json",
            ],
            "empty.csv: no header row",
        ),
        (
            vec![
                "ingest",
                "testdata/edge/duplicate_header.csv",
                "--mapping",
                "testdata/edge/mapping.json",
            ],
            "duplicate header name \"email\" in columns 2 and 4",
        ),
        (with(&SAMPLE, &["--out", "x.parquet"]), "--out x.parquet"),
        (
            with(&SAMPLE, &["--region", "XX"]),
            "unknown phone region \"XX\"",
        ),
        (with(&SAMPLE, &["--threads", "0"]), "threads must be"),
        (with(&SAMPLE, &["--piece-size", "lots"]), "not a size"),
        (with(&SAMPLE, &["--delimiter", "ab"]), "--delimiter"),
    ];
    for (args, want) in cases {
        let err = fails(&args);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!out.exists(), "{args:?} left an output file");
    }
    // Nothing half-written remains next to the destination either.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn failed_rows_still_exit_zero() {
    let out = ok(&[
        "ingest",
        "testdata/edge/unterminated.csv",
        "--mapping",
        "testdata/edge/mapping.json",
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["FailedPieces"], 1);
    assert_eq!(v["FailedRecords"], 1);
}

#[test]
fn data_dir_makes_the_run_a_job_and_jobs_lists_and_shows_it() {
    let dir = tmp();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let run = || {
        let out = ok(&with(&SAMPLE, &["--json", "--data-dir", data]));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["Status"], "PARTIALLY_SUCCEEDED");
    assert_eq!(first["DomainName"], "customers");
    assert_eq!(first["CreatedRecords"], 1566);
    assert_eq!(first["UpdatedRecords"], 0);
    assert_eq!(first["UniqueRecords"], 1566);
    assert_eq!(first["TotalProcessed"], 2000);
    assert_eq!(first["DuplicateRecords"], 413);
    assert_eq!(first["FailedRecords"], 21);
    assert_eq!(first["FieldWarningsByField"]["Phone"], 5);
    let second = run();
    assert_eq!(second["CreatedRecords"], 0);
    assert_eq!(second["UpdatedRecords"], 1566);
    let (a, b) = (
        first["JobId"].as_str().unwrap(),
        second["JobId"].as_str().unwrap(),
    );
    assert_ne!(a, b);
    assert!(
        a.len() == 32 && a.bytes().all(|c| c.is_ascii_hexdigit()),
        "32 hex digits, the model's uuid shape: {a}"
    );

    let list = ok(&["jobs", "list", "--data-dir", data]);
    let text = String::from_utf8(list.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("JOB ID"), "{text}");
    assert!(
        lines[1].starts_with(b) && lines[2].starts_with(a),
        "newest first: {text}"
    );
    assert!(lines[1].contains("PARTIALLY_SUCCEEDED") && lines[1].contains("1,566"));

    let list = ok(&["jobs", "list", "--json", "--limit", "1", "--data-dir", data]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["JobId"], b);
    let list = ok(&[
        "jobs",
        "list",
        "--json",
        "--status",
        "succeeded",
        "--data-dir",
        data,
    ]);
    assert_eq!(String::from_utf8(list.stdout).unwrap(), "[]\n");

    let show = ok(&["jobs", "show", a, "--json", "--data-dir", data]);
    let v: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["CreatedRecords"], 1566);
    assert_eq!(v["Failures"].as_array().unwrap().len(), 21);
    let show = ok(&["jobs", "show", a, "--data-dir", data]);
    let text = String::from_utf8(show.stdout).unwrap();
    assert!(text.contains("created                  1,566"), "{text}");
    assert!(text.contains("customers.csv:5: record 4"), "{text}");
}

#[test]
fn a_postgresql_store_holds_what_the_sqlite_store_holds() {
    use sluice::store::{AccountId, PgTestServer};
    let Some(server) = PgTestServer::from_env("cli::a_postgresql_store_holds_what_sqlite_holds")
    else {
        return;
    };
    let url = server.fresh();
    let dir = tmp();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let run = |store: &[&str]| {
        let out = ok(&with(&with(&SAMPLE, &["--json"]), store));
        let mut v = serde_json::from_slice::<Value>(&out.stdout).unwrap();
        for k in [
            "JobId",
            "CreatedAt",
            "CompletedAt",
            "StartedAt",
            "ElapsedSeconds",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        v
    };
    // Created, then updated: the same counts, failures and warnings.
    for _ in 0..2 {
        let pg = run(&["--store", &url]);
        assert_eq!(pg, run(&["--data-dir", data]));
    }
    let pg = sluice::store::open(&url).unwrap();
    let lite = sluice::store::open(data).unwrap();
    let account = AccountId::default();
    let now = sluice::job::system_clock()();
    assert_eq!(pg.count_profiles(&account, "customers", now).unwrap(), 1566);
    let db =
        rusqlite::Connection::open(dir.path().join("data").join(sluice::store::DB_FILE)).unwrap();
    let keys: Vec<String> = db
        .prepare("SELECT profile_key FROM profiles")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(keys.len(), 1566);
    for key in &keys {
        let (a, b) = (
            pg.profile(&account, "customers", key, now)
                .unwrap()
                .unwrap(),
            lite.profile(&account, "customers", key, now)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(a.fields, b.fields, "{key}");
    }
    // The job commands read it as they read SQLite.
    let list = ok(&["jobs", "list", "--json", "--store", &url]);
    let v: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["UpdatedRecords"], 1566);
    assert_eq!(v[1]["CreatedRecords"], 1566);
    // An unreachable server: a clear error, without the password.
    let err = fails(&with(
        &SAMPLE,
        &[
            "--store",
            "postgresql://ann:hunter2@127.0.0.1:9/db?connect_timeout=2",
        ],
    ));
    assert!(err.contains("postgresql://ann@127.0.0.1:9/db"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn a_postgresql_job_survives_its_connections_being_cut() {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(server) = sluice::store::PgTestServer::from_env("cli::connections_cut") else {
        return;
    };
    let url = server.fresh();
    let dir = tmp();
    // 300,000 rows of 200,000 keys: long enough to be cut while it writes.
    let input = dir.path().join("big.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    writeln!(f, "customer_id,first_name,last_name,email,phone,city,postal_code,lifetime_value,signup_date,notes").unwrap();
    for i in 0..300_000u32 {
        writeln!(
            f,
            "C{i},Ann,Lee,user{}@example.com,(718) 555-{:04},Paris,75001,{}.5,2024-01-01,",
            i % 200_000,
            i % 10_000,
            i % 1000
        )
        .unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let input = input.to_str().unwrap();
    let args = |store: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "ingest",
            input,
            "--mapping",
            "testdata/customers.mapping.json",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(store.iter().map(|s| s.to_string()));
        a
    };
    let counts = |out: &Output| {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        [
            "Status",
            "CreatedRecords",
            "UpdatedRecords",
            "DuplicateRecords",
            "FailedRecords",
            "TotalProcessed",
        ]
        .map(|k| v[k].to_string())
    };
    let data = dir.path().join("data");
    let want = {
        let a = args(&["--data-dir", data.to_str().unwrap()]);
        counts(&ok(&a.iter().map(String::as_str).collect::<Vec<_>>()))
    };
    assert_eq!(want[1], "200000");
    // Every connection of the job's database ended by the server, six
    // times while the job runs (each cut aborts what was being written).
    let done = AtomicBool::new(false);
    let got = std::thread::scope(|s| {
        s.spawn(|| {
            let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            let mut cuts = 0;
            while cuts < 6 && !done.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(300));
                let n: i64 = admin
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()",
                        &[],
                    )
                    .unwrap()
                    .get(0);
                cuts += n;
            }
            assert!(cuts > 0, "no connection was cut");
        });
        let a = args(&["--store", &url]);
        let out = ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
        done.store(true, Ordering::Relaxed);
        counts(&out)
    });
    assert_eq!(got, want);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let stored: i64 = c
        .query_one("SELECT count(*) FROM profiles", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 200_000);
}

#[test]
fn job_commands_fail_clearly() {
    let dir = tmp();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let err = fails(&["jobs", "list", "--data-dir", data]);
    assert!(err.contains("no store here"), "{err}");
    assert!(!dir.path().join("data").exists(), "reading creates nothing");

    ok(&with(&SAMPLE, &["--data-dir", data]));
    let err = fails(&["jobs", "show", "nope", "--data-dir", data]);
    assert!(err.contains("no job nope in"), "{err}");
    let err = fails(&["jobs", "list", "--status", "DONE", "--data-dir", data]);
    assert!(err.contains("unknown job status \"DONE\""), "{err}");

    let mapping = dir.path().join("m.json");
    std::fs::write(
        &mapping,
        r#"{"Fields":{"E":{"Source":"_source.email","Target":"_profile.EmailAddress"}},"UniqueKey":"E"}"#,
    )
    .unwrap();
    let err = fails(&[
        "ingest",
        "testdata/customers.csv",
        "--mapping",
        mapping.to_str().unwrap(),
        "--data-dir",
        data,
    ]);
    assert!(
        err.contains("writing into a store needs DomainName"),
        "{err}"
    );
    let out = dir.path().join("o.csv");
    let err = fails(&with(
        &SAMPLE,
        &["--data-dir", data, "--out", out.to_str().unwrap()],
    ));
    assert!(err.contains("cannot be used with"), "{err}");
}
