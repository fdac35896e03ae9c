//! A whole job inside a program: the engine, the in-memory store and
//! buckets, a runner, and the job's status and Failures, with no SQLite,
//! HTTP or async runtime (`--no-default-features --features jobs`).
//!
//! ```text
//! cargo run --example embed_job --no-default-features --features jobs
//! ```
//!
//! Two jobs: the bundled customers file into a domain's profiles, and a
//! Pinpoint endpoint file, put into an in-memory bucket, into an app.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sluice::objects::{MemoryObjects, ObjectAttributes, put};
use sluice::store::{App, Domain};
use sluice::{
    AccountId, ImportJob, JobRef, JobSpec, MemoryStore, Objects, ProfileJob, Runner, RunnerConfig,
    Source, Store,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let buckets = MemoryObjects::new();
    let objects: Arc<dyn Objects> = Arc::new(buckets.clone());
    let runner = Runner::new(
        Arc::clone(&store),
        RunnerConfig {
            objects: Some(objects),
            ..RunnerConfig::default()
        },
    )?;
    let account = AccountId::default();

    // 1. Profiles: a CSV file into a domain, keyed and normalized by the
    //    mapping (the shape of a Customer Profiles CreateUploadJob).
    store.create_domain(&account, &Domain::new("customers", 14, 0))?;
    let mapping: serde_json::Value = serde_json::from_slice(&std::fs::read(
        root.join("testdata/customers.mapping.json"),
    )?)?;
    let spec = JobSpec::Profiles(ProfileJob {
        domain: "customers".into(),
        display_name: None,
        mapping,
        inputs: vec![Source::File(root.join("testdata/customers.csv"))],
        piece_size: Some(64 * 1024),
        range_size: None,
        region: None,
        delimiter: None,
        sealed_key: None,
    });
    let job = runner.submit(&account, &spec, Some("customers.csv".into()))?;
    let done = runner.wait(
        JobRef {
            account: &account,
            id: &job.id,
        },
        Some(Duration::from_secs(120)),
    )?;
    let c = &done.counters;
    println!("profiles job {}: {}", done.id, done.status);
    println!(
        "  {} rows: {} created, {} updated, {} duplicates, {} failed; {} of {} pieces",
        c.processed,
        c.created,
        c.updated,
        c.duplicates,
        c.failed,
        c.completed_pieces,
        c.total_pieces
    );
    assert_eq!(c.processed, c.created + c.updated + c.duplicates + c.failed);
    for f in c.failures.iter().take(3) {
        println!("  failure: {f}");
    }
    let n = store.count_profiles(&account, "customers", 0)?;
    println!("  the domain holds {n} profiles");

    // 2. Endpoints: a file in a bucket into an app; a row the store refuses
    //    at write time (a new endpoint without an address) is a failure at
    //    its place too.
    buckets.create_bucket("inbox")?;
    let csv = "ChannelType,Address,Id,User.UserId\n\
               EMAIL,Ann@Example.com,,u1\n\
               FAX,123,,u2\n\
               ,,ghost,u3\n\
               EMAIL,ann@example.COM,,u1b\n";
    put(
        &buckets,
        "inbox",
        "in/endpoints.csv",
        csv.as_bytes(),
        &ObjectAttributes::default(),
    )?;
    let app_id = "embedapp0000000000000000000000aa";
    store.create_app(
        &account,
        &App {
            id: app_id.into(),
            name: "embedded".into(),
            tags: "{}".into(),
            created_ms: 0,
        },
    )?;
    let spec = JobSpec::Import(ImportJob {
        app: app_id.into(),
        format: sluice::endpoints::Format::Csv,
        s3_url: "s3://inbox/in/".into(),
        role_arn: "arn:aws:iam::123456789012:role/Import".into(),
        external_id: None,
        register_endpoints: true,
        define_segment: false,
        segment_name: None,
        segment_id: None,
        piece_size: None,
        region: None,
    });
    let job = runner.submit(&account, &spec, None)?;
    let done = runner.wait(
        JobRef {
            account: &account,
            id: &job.id,
        },
        Some(Duration::from_secs(60)),
    )?;
    let c = &done.counters;
    println!("import job {}: {}", done.id, done.status);
    println!(
        "  {} rows: {} created, {} duplicates, {} failed",
        c.processed, c.created, c.duplicates, c.failed
    );
    for f in &c.failures {
        println!("  failure: {f}");
    }
    assert_eq!(c.created, 1);
    assert_eq!(c.failures.len(), 2);
    assert!(c.failures[1].contains("record 3: a new endpoint needs"));
    Ok(())
}
