//! Customer Profiles upload jobs through the library surface: the whole
//! flow, each validation, each refusal of an upload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sluice::api::ErrorCode;
use sluice::api::customer_profiles::*;
use sluice::crypto::{self, MasterKey};
use sluice::job::{Clock, Objects, Runner, RunnerConfig};
use sluice::objects::LocalObjects;
use sluice::store::{AccountId, JobRef, SqliteStore, Store};

const T0: i64 = 1_795_000_000_000;

struct Env {
    api: CustomerProfiles,
    now: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let n = Arc::clone(&now);
    let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let master = Arc::new(MasterKey::load_or_create(dir.path()).unwrap());
    let own: Objects = Arc::new(LocalObjects::new(dir.path()));
    let runner = Runner::new(
        store,
        RunnerConfig {
            threads: Some(2),
            clock: Arc::clone(&clock),
            master_key: Some(Arc::clone(&master)),
            uploads: Some(Arc::clone(&own)),
            ..RunnerConfig::default()
        },
    )
    .unwrap();
    let api = CustomerProfiles::new(
        Arc::new(runner),
        master,
        own,
        ProfilesConfig::default(),
        clock,
    )
    .unwrap();
    Env {
        api,
        now,
        _dir: dir,
    }
}

fn field(col: &str, target: &str, ct: &str) -> ObjectTypeField {
    ObjectTypeField {
        source: Some(format!("_source.{col}")),
        target: Some(format!("_profile.{target}")),
        content_type: Some(ct.into()),
    }
}

fn fields() -> BTreeMap<String, ObjectTypeField> {
    BTreeMap::from([
        (
            "Email".into(),
            field("email", "EmailAddress", "EMAIL_ADDRESS"),
        ),
        ("Name".into(), field("name", "FirstName", "NAME")),
        ("Notes".into(), field("notes", "Attributes.Notes", "STRING")),
    ])
}

fn domain(e: &Env, name: &str) {
    e.api
        .create_domain(&CreateDomainRequest {
            domain_name: name.into(),
            default_expiration_days: Some(30),
            ..CreateDomainRequest::default()
        })
        .unwrap();
}

fn job(e: &Env, domain: &str) -> String {
    job_expiring(e, domain, Some(7))
}

fn job_expiring(e: &Env, domain: &str, data_expiry: Option<i64>) -> String {
    e.api
        .create_upload_job(&CreateUploadJobRequest {
            domain_name: domain.into(),
            display_name: "people".into(),
            fields: fields(),
            unique_key: "Email".into(),
            data_expiry,
        })
        .unwrap()
        .job_id
}

fn jr(domain: &str, job: &str) -> JobRequest {
    JobRequest {
        domain_name: domain.into(),
        job_id: job.into(),
    }
}

/// The upload request a client would make from a GetUploadJobPath answer.
fn put_request(path: &GetUploadJobPathResponse) -> UploadRequest {
    let (base, url) = path.url.split_once("/uploads/").unwrap();
    let (p, q) = url.split_once('?').unwrap();
    // /uploads/ACCOUNT/DOMAIN/JOB
    let (_account, rest) = p.split_once('/').unwrap();
    let (domain, job) = rest.split_once('/').unwrap();
    let mut req = UploadRequest {
        domain_name: domain.into(),
        job_id: job.into(),
        host: Some(base.split_once("://").unwrap().1.into()),
        sse_algorithm: Some("AES256".into()),
        sse_key: Some(path.client_token.clone()),
        sse_key_md5: Some(crypto::md5_base64(
            &crypto::from_base64(&path.client_token).unwrap(),
        )),
        ..UploadRequest::default()
    };
    for kv in q.split('&') {
        let (k, v) = kv.split_once('=').unwrap();
        match k {
            URL_EXPIRES => req.expires = Some(v.into()),
            URL_SIGNATURE => req.signature = Some(v.into()),
            _ => panic!("unexpected query parameter {k}"),
        }
    }
    req
}

fn upload(e: &Env, path: &GetUploadJobPathResponse, body: &[u8]) {
    let mut slot = e.api.authorize_upload(&put_request(path)).unwrap();
    for chunk in body.chunks(7) {
        slot.push(chunk).unwrap();
    }
    slot.commit().unwrap();
}

fn run(e: &Env, domain: &str, body: &[u8]) -> GetUploadJobResponse {
    run_expiring(e, domain, body, Some(7))
}

fn run_expiring(
    e: &Env,
    domain: &str,
    body: &[u8],
    data_expiry: Option<i64>,
) -> GetUploadJobResponse {
    e.now.fetch_add(1000, Ordering::SeqCst);
    let id = job_expiring(e, domain, data_expiry);
    let path = e.api.get_upload_job_path(&jr(domain, &id)).unwrap();
    upload(e, &path, body);
    e.api.start_upload_job(&jr(domain, &id)).unwrap();
    let account = AccountId::default();
    e.api
        .runner()
        .wait(
            JobRef {
                account: &account,
                id: &id,
            },
            Some(Duration::from_secs(60)),
        )
        .unwrap();
    e.api.get_upload_job(&jr(domain, &id)).unwrap()
}

const CSV: &[u8] = b"email,name,notes\n\
a@x.com,Ann,\"two\nlines\"\n\
b@x.com,Bob,\n\
A@X.COM,Annie,dup of the first\n\
,NoKey,empty key fails\n\
c@x.com,Cy,\"quoted, comma\"\n";

#[test]
fn the_whole_flow_then_a_second_upload_updates() {
    let e = env();
    domain(&e, "shop");
    let first = run(&e, "shop", CSV);
    assert_eq!(first.status, "PARTIALLY_SUCCEEDED");
    assert_eq!(first.status_reason, None);
    assert_eq!(
        first.results_summary,
        ResultsSummary {
            created_records: 3,
            updated_records: 0,
            failed_records: 1,
        }
    );
    assert_eq!(first.data_expiry, Some(7));
    assert_eq!(first.unique_key, "Email");
    assert_eq!(first.fields, fields());
    assert!(first.completed_at.is_some());

    let second = run(
        &e,
        "shop",
        b"email,name,notes\nb@x.com,Bobby,\nd@x.com,Di,\n",
    );
    assert_eq!(second.status, "SUCCEEDED");
    assert_eq!(second.results_summary.created_records, 1);
    assert_eq!(second.results_summary.updated_records, 1);

    let d = e
        .api
        .get_domain(&DomainRequest {
            domain_name: "shop".into(),
        })
        .unwrap();
    assert_eq!(d.stats.unwrap().profile_count, 4);
    let listed = e
        .api
        .list_upload_jobs(&ListUploadJobsRequest {
            domain_name: "shop".into(),
            max_results: Some(1),
            next_token: None,
        })
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].job_id, second.job_id, "newest first");
    let rest = e
        .api
        .list_upload_jobs(&ListUploadJobsRequest {
            domain_name: "shop".into(),
            max_results: Some(1),
            next_token: listed.next_token,
        })
        .unwrap();
    assert_eq!(rest.items[0].job_id, first.job_id);
    assert_eq!(rest.next_token, None);
}

#[test]
fn the_stored_upload_is_sealed_and_the_key_is_not_kept() {
    let e = env();
    domain(&e, "shop");
    let id = job(&e, "shop");
    let path = e.api.get_upload_job_path(&jr("shop", &id)).unwrap();
    upload(&e, &path, CSV);
    let dir = e._dir.path();
    let sealed = std::fs::read(dir.join("uploads").join(format!("{id}.sealed"))).unwrap();
    assert!(!sealed.windows(7).any(|w| w == b"a@x.com"));
    let key = crypto::from_base64(&path.client_token).unwrap();
    for f in walk(dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == key.as_slice())
                && !bytes
                    .windows(path.client_token.len())
                    .any(|w| w == path.client_token.as_bytes()),
            "{} holds the data key",
            f.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_missing_column_fails_the_job_as_a_validation_failure() {
    let e = env();
    domain(&e, "shop");
    let done = run(&e, "shop", b"email,name\na@x.com,Ann\n");
    assert_eq!(done.status, "FAILED");
    assert_eq!(done.status_reason.as_deref(), Some("VALIDATION_FAILURE"));
}

#[test]
fn uploads_are_refused_as_s3_refuses_them() {
    let e = env();
    domain(&e, "shop");
    let id = job(&e, "shop");
    let path = e.api.get_upload_job_path(&jr("shop", &id)).unwrap();
    let good = put_request(&path);
    let refused = |r: &UploadRequest| e.api.authorize_upload(r).unwrap_err();

    let mut r = good.clone();
    r.expires = Some((path.valid_until.ms() / 1000 + 60).to_string());
    assert_eq!(refused(&r).code, "SignatureDoesNotMatch");
    let mut r = good.clone();
    r.job_id = job(&e, "shop");
    assert_eq!(refused(&r).code, "SignatureDoesNotMatch");
    let mut r = good.clone();
    r.signature = None;
    assert_eq!(refused(&r).code, "AccessDenied");

    let mut r = good.clone();
    r.sse_algorithm = None;
    r.sse_key = None;
    r.sse_key_md5 = None;
    assert_eq!(refused(&r).code, "InvalidArgument");
    let mut r = good.clone();
    r.sse_algorithm = None;
    assert!(refused(&r).message.contains("valid encryption algorithm"));
    let mut r = good.clone();
    r.sse_key = None;
    assert!(refused(&r).message.contains("appropriate secret key"));
    let mut r = good.clone();
    r.sse_algorithm = Some("aws:kms".into());
    assert_eq!(refused(&r).code, "InvalidEncryptionAlgorithmError");
    let mut r = good.clone();
    r.sse_key = Some(crypto::DataKey::generate().to_base64()[..20].into());
    assert!(refused(&r).message.contains("secret key was invalid"));
    let mut r = good.clone();
    r.sse_key_md5 = Some(crypto::md5_base64(b"something else"));
    assert!(
        refused(&r)
            .message
            .contains("MD5 hash of the key did not match")
    );
    let mut r = good.clone();
    r.sse_key_md5 = None;
    assert!(refused(&r).message.contains("MD5"));
    let other = crypto::DataKey::generate();
    let mut r = good.clone();
    r.sse_key = Some(other.to_base64());
    r.sse_key_md5 = Some(other.md5_base64());
    let err = refused(&r);
    assert_eq!((err.status, err.code), (403, "AccessDenied"));
    let mut r = good.clone();
    r.content_length = Some(DEFAULT_MAX_UPLOAD_BYTES + 1);
    assert_eq!(refused(&r).code, "EntityTooLarge");

    // A new path gives a new key: the old one no longer opens the door.
    let newer = e.api.get_upload_job_path(&jr("shop", &id)).unwrap();
    assert_ne!(newer.client_token, path.client_token);
    assert_eq!(refused(&good).code, "AccessDenied");
    e.api.authorize_upload(&put_request(&newer)).unwrap();

    e.now.fetch_add(3_600_001, Ordering::SeqCst);
    let err = refused(&put_request(&newer));
    assert_eq!(
        (err.code, err.message.as_str()),
        ("AccessDenied", "Request has expired")
    );
}

#[test]
fn requests_are_checked_against_the_model() {
    let e = env();
    let bad = |r: Result<_, sluice::api::ApiError>| {
        let err = r.map(|_: DomainResponse| ()).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{err}");
        err.message
    };
    let mk = |name: &str, days: Option<i64>| CreateDomainRequest {
        domain_name: name.into(),
        default_expiration_days: days,
        ..CreateDomainRequest::default()
    };
    assert!(bad(e.api.create_domain(&mk("no spaces", Some(1)))).contains("DomainName"));
    assert!(bad(e.api.create_domain(&mk(&"x".repeat(65), Some(1)))).contains("1 to 64"));
    assert!(bad(e.api.create_domain(&mk("d", Some(1099)))).contains("DefaultExpirationDays"));
    assert!(bad(e.api.create_domain(&mk("d", None))).contains("required"));
    domain(&e, "d");
    assert!(bad(e.api.create_domain(&mk("d", Some(3)))).contains("already exists"));

    let cj = |f: BTreeMap<String, ObjectTypeField>, key: &str, exp: Option<i64>| {
        e.api
            .create_upload_job(&CreateUploadJobRequest {
                domain_name: "d".into(),
                display_name: "x".into(),
                fields: f,
                unique_key: key.into(),
                data_expiry: exp,
            })
            .unwrap_err()
    };
    let err = cj(fields(), "Phone", None);
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("UniqueKey"), "{}", err.message);
    let mut f = fields();
    f.insert("Bad".into(), field("x", "X", "DATE"));
    assert!(
        cj(f, "Email", None)
            .message
            .contains("Fields.Bad.ContentType")
    );
    let mut f = fields();
    f.insert("bad name".into(), field("x", "X", "STRING"));
    assert!(cj(f, "Email", None).message.contains("Fields.bad name"));
    assert!(
        cj(fields(), "Email", Some(0))
            .message
            .contains("DataExpiry")
    );
    assert!(
        cj(BTreeMap::new(), "Email", None)
            .message
            .contains("Fields")
    );

    let nf = e
        .api
        .get_domain(&DomainRequest {
            domain_name: "nope".into(),
        })
        .unwrap_err();
    assert_eq!(nf.code, ErrorCode::ResourceNotFound);
    let nf = e
        .api
        .get_upload_job(&jr("d", "0123456789abcdef0123456789abcdef"));
    assert_eq!(nf.unwrap_err().code, ErrorCode::ResourceNotFound);

    // Starting with no file is a clear BadRequest; a stopped job cannot
    // start or stop again.
    let id = job(&e, "d");
    let err = e.api.start_upload_job(&jr("d", &id)).unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(err.message.contains("no uploaded file"), "{}", err.message);
    e.api.stop_upload_job(&jr("d", &id)).unwrap();
    let got = e.api.get_upload_job(&jr("d", &id)).unwrap();
    assert_eq!(got.status, "STOPPED");
    assert_eq!(
        e.api.stop_upload_job(&jr("d", &id)).unwrap_err().code,
        ErrorCode::BadRequest
    );
    assert_eq!(
        e.api.get_upload_job_path(&jr("d", &id)).unwrap_err().code,
        ErrorCode::BadRequest
    );
    let err = e
        .api
        .list_upload_jobs(&ListUploadJobsRequest {
            domain_name: "d".into(),
            max_results: Some(501),
            next_token: None,
        })
        .unwrap_err();
    assert!(err.message.contains("MaxResults"));
}

#[test]
fn domains_list_by_name_in_pages_and_delete_with_their_profiles() {
    let e = env();
    for n in ["c", "a", "b"] {
        domain(&e, n);
    }
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = e
            .api
            .list_domains(&ListDomainsRequest {
                next_token: token,
                max_results: Some(2),
            })
            .unwrap();
        names.extend(page.items.into_iter().map(|i| i.domain_name));
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    assert_eq!(names, ["a", "b", "c"]);
    run(&e, "b", CSV);
    let gone = e
        .api
        .delete_domain(&DomainRequest {
            domain_name: "b".into(),
        })
        .unwrap();
    assert!(gone.message.contains("3 profiles"), "{}", gone.message);
    assert_eq!(
        e.api
            .get_domain(&DomainRequest {
                domain_name: "b".into()
            })
            .unwrap_err()
            .code,
        ErrorCode::ResourceNotFound
    );
    let tags = BTreeMap::from([("team".to_owned(), "growth".to_owned())]);
    let made = e
        .api
        .create_domain(&CreateDomainRequest {
            domain_name: "tagged".into(),
            default_expiration_days: Some(5),
            settings: DomainSettings {
                tags: Some(tags.clone()),
                ..DomainSettings::default()
            },
        })
        .unwrap();
    assert_eq!(made.settings.tags, Some(tags.clone()));
    let got = e
        .api
        .get_domain(&DomainRequest {
            domain_name: "tagged".into(),
        })
        .unwrap();
    assert_eq!(
        (got.settings.tags, got.default_expiration_days),
        (Some(tags), 5)
    );
}

#[test]
fn without_data_expiry_profiles_live_14_days_and_update_domain_changes_what_it_is_given() {
    const DAY: i64 = 86_400_000;
    let e = env();
    let account = AccountId::default();
    e.api
        .create_domain(&CreateDomainRequest {
            domain_name: "d".into(),
            default_expiration_days: Some(30),
            settings: DomainSettings {
                dead_letter_queue_url: Some("https://sqs.us-east-1.amazonaws.com/1/q".into()),
                tags: Some(BTreeMap::from([("a".into(), "1".into())])),
                ..DomainSettings::default()
            },
        })
        .unwrap();
    // The service's default, not the domain's 30 days.
    let done = run_expiring(&e, "d", CSV, None);
    assert_eq!(done.data_expiry, Some(14));
    let store = e.api.runner().store();
    let started = store
        .job(JobRef {
            account: &account,
            id: &done.job_id,
        })
        .unwrap()
        .unwrap()
        .started_ms
        .unwrap();
    let now = e.now.load(Ordering::SeqCst);
    let expires = |key: &str| {
        store
            .profile(&account, "d", key, now)
            .unwrap()
            .unwrap()
            .expires_ms
    };
    assert_eq!(expires("a@x.com"), started + 14 * DAY);

    e.now.store(T0 + 5000, Ordering::SeqCst);
    let created = e
        .api
        .get_domain(&DomainRequest {
            domain_name: "d".into(),
        })
        .unwrap();
    let updated = e
        .api
        .update_domain(&UpdateDomainRequest {
            domain_name: "d".into(),
            default_expiration_days: Some(60),
            settings: DomainSettings {
                dead_letter_queue_url: Some(String::new()),
                tags: Some(BTreeMap::from([("b".into(), "2".into())])),
                ..DomainSettings::default()
            },
        })
        .unwrap();
    assert_eq!(updated.default_expiration_days, 60);
    assert_eq!(
        updated.settings.dead_letter_queue_url, None,
        "an empty URL clears it"
    );
    assert_eq!(
        updated.settings.tags,
        Some(BTreeMap::from([("b".into(), "2".into())]))
    );
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(updated.last_updated_at.0, T0 + 5000);
    let got = e
        .api
        .get_domain(&DomainRequest {
            domain_name: "d".into(),
        })
        .unwrap();
    assert_eq!(
        (got.default_expiration_days, &got.settings),
        (60, &updated.settings)
    );
    // What it was not given stays; profiles written before keep their expiry.
    let again = e
        .api
        .update_domain(&UpdateDomainRequest {
            domain_name: "d".into(),
            ..UpdateDomainRequest::default()
        })
        .unwrap();
    assert_eq!(
        (again.default_expiration_days, &again.settings),
        (60, &updated.settings)
    );
    assert_eq!(expires("a@x.com"), started + 14 * DAY);

    let refused = |r: UpdateDomainRequest| e.api.update_domain(&r).unwrap_err();
    let nf = refused(UpdateDomainRequest {
        domain_name: "nope".into(),
        ..UpdateDomainRequest::default()
    });
    assert_eq!(nf.code, ErrorCode::ResourceNotFound);
    for (days, tags) in [
        (Some(0), None),
        (Some(1099), None),
        (None, Some(BTreeMap::new())),
    ] {
        let err = refused(UpdateDomainRequest {
            domain_name: "d".into(),
            default_expiration_days: days,
            settings: DomainSettings {
                tags,
                ..DomainSettings::default()
            },
        });
        assert_eq!(err.code, ErrorCode::BadRequest);
        let member = if days.is_some() {
            "DefaultExpirationDays"
        } else {
            "Tags"
        };
        assert!(err.message.contains(member), "{err}");
    }
    // Refusals changed nothing.
    let last = e
        .api
        .get_domain(&DomainRequest {
            domain_name: "d".into(),
        })
        .unwrap();
    assert_eq!(
        (last.default_expiration_days, last.settings),
        (60, updated.settings)
    );
}
