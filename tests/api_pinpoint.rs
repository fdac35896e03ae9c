//! Pinpoint import jobs through the library surface, over an object source
//! of the test's own (the bucket paths have their tests in `bucket` and the
//! boto3 suite): the same answer at every piece size, the per-app limit on
//! jobs at once, the phases, and each refusal of CreateImportJob.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::api::ErrorCode;
use sluice::api::pinpoint::*;
use sluice::job::{Runner, RunnerConfig, system_clock};
use sluice::objects::{
    MemoryObjects, ObjectAttributes, ObjectError, ObjectInfo, ObjectWriter, Objects as ObjectPort,
};
use sluice::store::{AccountId, JobRef, SqliteStore, Store};

/// Objects in memory (bucket `bkt`); reads can be made slow, to hold jobs
/// running.
#[derive(Debug)]
struct Objects {
    inner: MemoryObjects,
    delay: Option<Duration>,
    /// Writes that may still begin; the others fail (a bucket that cannot
    /// be written).
    writes_left: std::sync::atomic::AtomicUsize,
}

impl Default for Objects {
    fn default() -> Objects {
        let inner = MemoryObjects::new();
        inner.create_bucket("bkt").unwrap();
        Objects {
            inner,
            delay: None,
            writes_left: usize::MAX.into(),
        }
    }
}

impl Objects {
    fn put(&self, url: &str, text: &str) {
        let key = url.strip_prefix("s3://bkt/").unwrap();
        sluice::objects::put(
            &self.inner,
            "bkt",
            key,
            text.as_bytes(),
            &Default::default(),
        )
        .unwrap();
    }
}

impl ObjectPort for Objects {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        self.inner.create_bucket(bucket)
    }
    fn list_buckets(&self) -> Result<Vec<sluice::objects::BucketInfo>, ObjectError> {
        self.inner.list_buckets()
    }
    fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        self.inner.delete_bucket(bucket)
    }
    fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectError> {
        self.inner.bucket_exists(bucket)
    }
    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        self.inner.list(bucket, prefix)
    }
    fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        self.inner.head(bucket, key)
    }
    fn read(
        &self,
        bucket: &str,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Box<dyn std::io::Read + Send>, ObjectError> {
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
        self.inner.read(bucket, key, range)
    }
    fn write(
        &self,
        bucket: &str,
        key: &str,
        attributes: &ObjectAttributes,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        use std::sync::atomic::Ordering;
        let left = self
            .writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if left.is_err() {
            return Err(ObjectError::new(
                sluice::objects::ObjectErrorKind::Backend,
                format!("s3://{bucket}/{key}: the disk is full"),
            ));
        }
        self.inner.write(bucket, key, attributes)
    }
    fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        self.inner.delete(bucket, key)
    }
    fn locate(&self, bucket: &str, key: &str) -> String {
        self.inner.locate(bucket, key)
    }
}

struct Env {
    api: Pinpoint,
    runner: Arc<Runner>,
    _dir: tempfile::TempDir,
}

fn env(objects: Arc<Objects>, max_jobs: usize, per_app: usize, piece: Option<u64>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let runner = Arc::new(
        Runner::new(
            store,
            RunnerConfig {
                threads: Some(2),
                max_jobs,
                max_jobs_per_app: per_app,
                objects: Some(objects),
                progress_interval: Duration::from_millis(10),
                ..RunnerConfig::default()
            },
        )
        .unwrap(),
    );
    let api = Pinpoint::new(
        Arc::clone(&runner),
        PinpointConfig {
            piece_size: piece,
            // Several files from a few endpoints.
            export_piece_endpoints: Some(7),
            ..PinpointConfig::default()
        },
        system_clock(),
    );
    Env {
        api,
        runner,
        _dir: dir,
    }
}

fn app(api: &Pinpoint) -> String {
    api.create_app(&CreateApplicationRequest {
        name: "test".into(),
        tags: None,
    })
    .unwrap()
    .id
}

fn request(url: &str) -> ImportJobRequest {
    ImportJobRequest {
        format: Some("CSV".into()),
        s3_url: Some(url.into()),
        role_arn: Some("arn:aws:iam::123456789012:role/Import".into()),
        register_endpoints: Some(true),
        ..ImportJobRequest::default()
    }
}

fn wait(api: &Pinpoint, app: &str, job: &str) -> ImportJobResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.get_import_job(app, job).unwrap();
        if r.job_status == "COMPLETED" || r.job_status == "FAILED" {
            return r;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A CSV of `n` endpoints over `pool` addresses, with a bad row every 7th.
fn csv(n: usize, pool: usize) -> String {
    let mut s = String::from("ChannelType,Address,User.UserId,Attributes.Row\n");
    for i in 0..n {
        if i % 7 == 3 {
            s.push_str(&format!("EMAIL,bad-{i},u{i},{i}\n"));
        } else {
            s.push_str(&format!(
                "EMAIL,\"Person{}@Example.com\",u{},\"row\n{i}\"\n",
                i % pool,
                i % pool
            ));
        }
    }
    s
}

#[test]
fn the_same_answer_at_every_piece_size() {
    let objects = Arc::new(Objects::default());
    objects.put("s3://bkt/in/a.csv", &csv(300, 40));
    objects.put("s3://bkt/in/deeper/b.csv", &csv(120, 55));
    let mut answers = Vec::new();
    for piece in [None, Some(1), Some(100), Some(1000)] {
        let e = env(Arc::clone(&objects), 2, 2, piece);
        let a = app(&e.api);
        let job = e
            .api
            .create_import_job(&a, &request("s3://bkt/in/"))
            .unwrap();
        assert_eq!(job.job_status, "PENDING_JOB");
        let done = wait(&e.api, &a, &job.id);
        assert_eq!(done.job_status, "COMPLETED", "{done:?}");
        assert_eq!(done.completed_pieces, done.total_pieces);
        if piece.is_some() {
            assert!(done.total_pieces > 2, "{piece:?}: {}", done.total_pieces);
        }
        // The survivors: u0..u54 (b.csv's pool is the larger), each the
        // last row of its address.
        let mut users = Vec::new();
        for u in 0..55 {
            let eps = e.api.get_user_endpoints(&a, &format!("u{u}")).unwrap().item;
            assert_eq!(eps.len(), 1, "u{u}");
            let ep = &eps[0].endpoint;
            users.push((
                ep.address.clone().unwrap(),
                ep.attributes.as_ref().unwrap()["Row"].clone(),
            ));
        }
        answers.push((
            done.total_processed,
            done.total_failures,
            done.failures.clone(),
            users,
        ));
    }
    assert_eq!(answers[0].0, 420);
    assert_eq!(answers[0].1, 60);
    assert!(
        answers[0].2[0].starts_with("s3://bkt/in/a.csv:8: record 4: Address: \"bad-3\""),
        "{:?}",
        answers[0].2
    );
    for a in &answers[1..] {
        assert_eq!(a, &answers[0]);
    }
}

#[test]
fn at_most_n_jobs_of_an_app_run_at_once() {
    let objects = Arc::new(Objects {
        delay: Some(Duration::from_millis(150)),
        ..Objects::default()
    });
    objects.put("s3://bkt/x.csv", &csv(10, 5));
    // Four job threads, but one job per app at once.
    let e = env(objects, 4, 1, None);
    let (a, b) = (app(&e.api), app(&e.api));
    let jobs: Vec<(String, String)> = [&a, &a, &a, &b]
        .iter()
        .map(|app| {
            let j = e
                .api
                .create_import_job(app, &request("s3://bkt/x.csv"))
                .unwrap();
            ((*app).clone(), j.id)
        })
        .collect();
    // The third of app a waits for its slot: the service's PENDING_JOB.
    let third = e.api.get_import_job(&a, &jobs[2].1).unwrap();
    assert_eq!(third.job_status, "PENDING_JOB", "{third:?}");
    for (app, id) in &jobs {
        assert_eq!(wait(&e.api, app, id).job_status, "COMPLETED");
    }
    let spans: Vec<(i64, i64)> = jobs
        .iter()
        .map(|(_, id)| {
            let job = JobRef {
                account: &AccountId::default(),
                id,
            };
            let j = e.runner.store().job(job).unwrap().unwrap();
            (j.started_ms.unwrap(), j.completed_ms.unwrap())
        })
        .collect();
    // App a's three jobs ran one after another...
    let mut a_spans = spans[..3].to_vec();
    a_spans.sort();
    for w in a_spans.windows(2) {
        assert!(w[0].1 <= w[1].0, "overlapping runs of one app: {a_spans:?}");
    }
    // ...while app b's ran beside them, not after them all.
    assert!(spans[3].0 < a_spans[2].0, "{spans:?}");
}

#[test]
fn create_import_job_refusals() {
    let objects = Arc::new(Objects::default());
    objects.put("s3://bkt/data.json", "{}\n");
    let e = env(objects, 1, 1, None);
    let a = app(&e.api);
    let refused = |r: ImportJobRequest, app: &str| e.api.create_import_job(app, &r).unwrap_err();
    let cases: Vec<(ImportJobRequest, ErrorCode, &str)> = vec![
        (
            ImportJobRequest {
                format: None,
                ..request("s3://bkt/")
            },
            ErrorCode::BadRequest,
            "Format is required",
        ),
        (
            ImportJobRequest {
                role_arn: None,
                ..request("s3://bkt/")
            },
            ErrorCode::BadRequest,
            "RoleArn is required",
        ),
        (
            ImportJobRequest {
                role_arn: Some("arn:aws:iam::acct:role/x".into()),
                ..request("s3://bkt/")
            },
            ErrorCode::BadRequest,
            "is not an ARN",
        ),
        (
            request("file:///etc/passwd"),
            ErrorCode::BadRequest,
            "is not an s3:// URL",
        ),
        (
            request("s3://other/x.csv"),
            ErrorCode::ResourceNotFound,
            "bucket \"other\" does not exist",
        ),
        (
            request("s3://bkt/"),
            ErrorCode::ResourceNotFound,
            "no CSV object at s3://bkt/ (in a folder, objects named .csv or with no extension)",
        ),
        (
            ImportJobRequest {
                define_segment: Some(true),
                segment_id: Some("s".into()),
                ..request("s3://bkt/")
            },
            ErrorCode::BadRequest,
            "give one",
        ),
        (
            ImportJobRequest {
                segment_id: Some("nope".into()),
                ..request("s3://bkt/")
            },
            ErrorCode::ResourceNotFound,
            "Segment nope not found",
        ),
    ];
    for (r, code, says) in cases {
        let err = refused(r.clone(), &a);
        assert_eq!(err.code, code, "{r:?}: {err}");
        assert!(err.message.contains(says), "{r:?}: {err}");
    }
    let err = refused(request("s3://bkt/"), "nope");
    assert_eq!(err.code, ErrorCode::ResourceNotFound);
    // Nothing was recorded by any refusal.
    assert!(
        e.api
            .get_import_jobs(&a, &PageRequest::default())
            .unwrap()
            .item
            .is_empty()
    );
}

#[test]
fn the_format_is_the_jobs_not_the_files_name() {
    let objects = Arc::new(Objects::default());
    objects.put("s3://bkt/one/endpoints.txt", &csv(20, 5));
    objects.put("s3://bkt/spark/part-00000", &csv(14, 3));
    objects.put("s3://bkt/spark/part-00001.csv", &csv(7, 3));
    objects.put("s3://bkt/spark/_SUCCESS.json", "{}\n");
    objects.put("s3://bkt/spark/notes.txt", "not endpoints\n");
    let e = env(objects, 2, 2, None);
    let a = app(&e.api);
    // A URL naming one object: that object, read as the Format says.
    let one = e
        .api
        .create_import_job(&a, &request("s3://bkt/one/endpoints.txt"))
        .unwrap();
    let done = wait(&e.api, &a, &one.id);
    assert_eq!(done.job_status, "COMPLETED", "{done:?}");
    assert_eq!(done.total_processed, 20);
    // A folder: the files named for the format and those named for none.
    let folder = e
        .api
        .create_import_job(&a, &request("s3://bkt/spark/"))
        .unwrap();
    let done = wait(&e.api, &a, &folder.id);
    assert_eq!(done.job_status, "COMPLETED", "{done:?}");
    assert_eq!((done.total_pieces, done.total_processed), (2, 21));
    // The same folder as JSON holds only the marker file, read as JSON.
    let json = ImportJobRequest {
        format: Some("JSON".into()),
        ..request("s3://bkt/spark/_SUCCESS.json")
    };
    let j = e.api.create_import_job(&a, &json).unwrap();
    assert_eq!(wait(&e.api, &a, &j.id).total_pieces, 1);
}

#[test]
fn a_segment_name_without_define_segment_makes_no_segment() {
    let objects = Arc::new(Objects::default());
    objects.put("s3://bkt/x.csv", &csv(10, 5));
    let e = env(objects, 2, 2, None);
    let a = app(&e.api);
    let r = ImportJobRequest {
        segment_name: Some("named".into()),
        ..request("s3://bkt/x.csv")
    };
    let job = e.api.create_import_job(&a, &r).unwrap();
    assert_eq!(job.definition.segment_name.as_deref(), Some("named"));
    let done = wait(&e.api, &a, &job.id);
    assert_eq!(done.job_status, "COMPLETED", "{done:?}");
    assert!(done.definition.segment_id.is_none(), "{done:?}");
    assert!(
        e.api
            .get_segments(&a, &PageRequest::default())
            .unwrap()
            .item
            .is_empty()
    );
}

fn wait_export(api: &Pinpoint, app: &str, job: &str) -> ExportJobResponse {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.get_export_job(app, job).unwrap();
        if r.job_status == "COMPLETED" || r.job_status == "FAILED" {
            return r;
        }
        assert!(Instant::now() < deadline, "{r:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn export_request(url: &str, segment: Option<&str>) -> ExportJobRequest {
    ExportJobRequest {
        role_arn: Some("arn:aws:iam::123456789012:role/Export".into()),
        s3_url_prefix: Some(url.into()),
        segment_id: segment.map(str::to_owned),
        segment_version: None,
    }
}

/// Every line of every file of an export, by endpoint id.
fn exported(objects: &Objects, prefix: &str) -> BTreeMap<String, EndpointResponse> {
    use std::io::Read;
    let mut out = BTreeMap::new();
    for o in objects.list("bkt", prefix).unwrap() {
        assert!(o.key.ends_with(".ndjson.gz"), "{}", o.key);
        let gz = sluice::objects::get(objects, "bkt", &o.key).unwrap();
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            let doc: EndpointResponse = serde_json::from_str(line).unwrap();
            let id = doc.endpoint.id.clone().unwrap();
            assert!(out.insert(id, doc).is_none(), "an endpoint exported twice");
        }
    }
    out
}

#[test]
fn an_export_imported_into_another_app_gives_the_same_endpoints() {
    let objects = Arc::new(Objects::default());
    objects.put("s3://bkt/in/a.csv", &csv(300, 40));
    let e = env(Arc::clone(&objects), 2, 2, None);
    let a = app(&e.api);
    let import = ImportJobRequest {
        define_segment: Some(true),
        ..request("s3://bkt/in/")
    };
    let job = e.api.create_import_job(&a, &import).unwrap();
    let done = wait(&e.api, &a, &job.id);
    assert_eq!(done.job_status, "COMPLETED", "{done:?}");
    let segment = done.definition.segment_id.clone().unwrap();
    e.api
        .update_endpoint(
            &a,
            "by-request",
            sluice::endpoints::Endpoint {
                channel_type: Some("SMS".into()),
                address: Some("+14155550111".into()),
                ..Default::default()
            },
        )
        .unwrap();

    let out = e
        .api
        .create_export_job(&a, &export_request("s3://bkt/out/", None))
        .unwrap();
    assert_eq!(
        (out.job_type.as_str(), out.job_status.as_str()),
        ("EXPORT", "PENDING_JOB")
    );
    let out = wait_export(&e.api, &a, &out.id);
    assert_eq!(out.job_status, "COMPLETED", "{out:?}");
    let first = exported(&objects, &format!("out/{}/", out.id));
    // 40 addresses from the file, one endpoint by request.
    assert_eq!(first.len(), 41);
    assert_eq!(out.total_processed, 41);
    assert_eq!((out.total_pieces, out.completed_pieces), (6, 6));
    for doc in first.values() {
        assert_eq!(doc.application_id, a);
        assert_eq!(doc.endpoint.endpoint_status.as_deref(), Some("ACTIVE"));
        let got = e
            .api
            .get_endpoint(&a, doc.endpoint.id.as_deref().unwrap())
            .unwrap();
        assert_eq!(&got, doc);
    }

    // Read back by an import job into another app, then exported again.
    let b = app(&e.api);
    let back = ImportJobRequest {
        format: Some("JSON".into()),
        ..request(&format!("s3://bkt/out/{}/", out.id))
    };
    let job = e.api.create_import_job(&b, &back).unwrap();
    let done = wait(&e.api, &b, &job.id);
    assert_eq!(
        (done.job_status.as_str(), done.total_processed),
        ("COMPLETED", 41),
        "{done:?}"
    );
    let again = e
        .api
        .create_export_job(&b, &export_request("s3://bkt/again", None))
        .unwrap();
    let again = wait_export(&e.api, &b, &again.id);
    let second = exported(&objects, &format!("again/{}/", again.id));
    let endpoints = |m: &BTreeMap<String, EndpointResponse>| {
        m.iter()
            .map(|(id, d)| (id.clone(), d.endpoint.clone(), d.cohort_id.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(endpoints(&second), endpoints(&first));

    // A segment's endpoints alone, listed under the segment.
    let seg = e
        .api
        .create_export_job(&a, &export_request("s3://bkt/seg/", Some(&segment)))
        .unwrap();
    let seg = wait_export(&e.api, &a, &seg.id);
    assert_eq!(seg.definition.segment_version, Some(1));
    let of_segment = exported(&objects, &format!("seg/{}/", seg.id));
    assert_eq!(of_segment.len(), 40);
    assert!(!of_segment.contains_key("by-request"));
    // Only the segment's current version is kept, so only it is exported.
    let err = e
        .api
        .create_export_job(
            &a,
            &ExportJobRequest {
                segment_version: Some(2),
                ..export_request("s3://bkt/seg/", Some(&segment))
            },
        )
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("is at version 1"), "{err}");
    let listed = e
        .api
        .get_segment_export_jobs(&a, &segment, &PageRequest::default())
        .unwrap();
    assert_eq!(
        listed.item.iter().map(|j| &j.id).collect::<Vec<_>>(),
        [&seg.id]
    );
    let all = e.api.get_export_jobs(&a, &PageRequest::default()).unwrap();
    assert_eq!(all.item.len(), 2);
    // Import jobs and export jobs are listed apart.
    assert_eq!(
        e.api
            .get_import_jobs(&a, &PageRequest::default())
            .unwrap()
            .item
            .len(),
        1
    );
}

#[test]
fn create_export_job_refusals() {
    let objects = Arc::new(Objects::default());
    let e = env(objects, 1, 1, None);
    let a = app(&e.api);
    let refused = |r: ExportJobRequest, app: &str| e.api.create_export_job(app, &r).unwrap_err();
    let cases: Vec<(ExportJobRequest, ErrorCode, &str)> = vec![
        (
            ExportJobRequest {
                s3_url_prefix: None,
                ..export_request("s3://bkt/", None)
            },
            ErrorCode::BadRequest,
            "S3UrlPrefix is required",
        ),
        (
            ExportJobRequest {
                role_arn: Some("nope".into()),
                ..export_request("s3://bkt/", None)
            },
            ErrorCode::BadRequest,
            "is not an ARN",
        ),
        (
            export_request("http://bkt/", None),
            ErrorCode::BadRequest,
            "S3UrlPrefix",
        ),
        (
            export_request("s3://missing/out/", None),
            ErrorCode::ResourceNotFound,
            "bucket \"missing\" does not exist",
        ),
        (
            export_request("s3://bkt/", Some("nope")),
            ErrorCode::ResourceNotFound,
            "Segment nope not found",
        ),
        (
            ExportJobRequest {
                segment_version: Some(1),
                ..export_request("s3://bkt/", None)
            },
            ErrorCode::BadRequest,
            "give both",
        ),
    ];
    for (r, code, says) in cases {
        let err = refused(r.clone(), &a);
        assert_eq!(err.code, code, "{r:?}: {err}");
        assert!(err.message.contains(says), "{r:?}: {err}");
    }
    assert_eq!(
        refused(export_request("s3://bkt/", None), "nope").code,
        ErrorCode::ResourceNotFound
    );
    assert_eq!(
        e.api.get_export_job(&a, "nope").unwrap_err().code,
        ErrorCode::ResourceNotFound
    );
    assert!(
        e.api
            .get_export_jobs(&a, &PageRequest::default())
            .unwrap()
            .item
            .is_empty()
    );
}

#[test]
fn an_export_that_cannot_write_fails_and_names_the_files_it_wrote() {
    let objects = Arc::new(Objects::default());
    objects.put("s3://bkt/in/a.csv", &csv(300, 40));
    let e = env(Arc::clone(&objects), 2, 2, None);
    let a = app(&e.api);
    let job = e
        .api
        .create_import_job(&a, &request("s3://bkt/in/"))
        .unwrap();
    assert_eq!(wait(&e.api, &a, &job.id).job_status, "COMPLETED");
    // Two more files can be written; the export needs six.
    objects
        .writes_left
        .store(2, std::sync::atomic::Ordering::SeqCst);
    let out = e
        .api
        .create_export_job(&a, &export_request("s3://bkt/out/", None))
        .unwrap();
    let out = wait_export(&e.api, &a, &out.id);
    assert_eq!(out.job_status, "FAILED", "{out:?}");
    assert_eq!(out.failed_pieces, 1, "{out:?}");
    let why = &out.failures[0];
    assert!(why.contains("the disk is full"), "{why}");
    let written: Vec<String> = objects
        .list("bkt", &format!("out/{}/", out.id))
        .unwrap()
        .into_iter()
        .map(|o| format!("s3://bkt/{}", o.key))
        .collect();
    assert_eq!(written.len(), 2);
    assert!(
        why.contains(&format!(
            "it wrote 2 files, which stay: {}",
            written.join(", ")
        )),
        "{why}"
    );
}
