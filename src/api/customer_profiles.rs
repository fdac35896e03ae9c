/*!
Amazon Connect Customer Profiles: domains and upload jobs
(`customer-profiles-2020-08-15`).

# The upload flow

1. [`CustomerProfiles::create_domain`], then
   [`CustomerProfiles::create_upload_job`] with `Fields` and `UniqueKey`:
   the job is `CREATED`.
2. [`CustomerProfiles::get_upload_job_path`] gives a signed `Url` that
   allows one PUT of this job's file until `ValidUntil`, and a
   `ClientToken`: a fresh 256-bit data key, base64. The uploader sends it
   back with the PUT as SSE-C headers. Each call gives a new key and URL;
   a file uploaded under an older key is dropped.
3. The PUT ([`CustomerProfiles::authorize_upload`], then the server streams
   the body into [`UploadSlot::push`], which seals it and streams it into
   the store of uploads, then [`UploadSlot::commit`]).
4. [`CustomerProfiles::start_upload_job`] queues the job; the runner
   decrypts the file as it ingests it. [`CustomerProfiles::get_upload_job`]
   shows `IN_PROGRESS`, then `SUCCEEDED`, `PARTIALLY_SUCCEEDED` (some rows
   failed), `FAILED` (with `StatusReason`) or `STOPPED`, and
   `ResultsSummary`.

The server never keeps a data key in the clear: see [`crate::crypto`].
*/

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    ApiError, Timestamp, bad_token, check_len, check_name, check_range, keyset_page, page_size,
};
use crate::crypto::{self, DataKey, MasterKey, SealedKey, Sealer};
use crate::job::search;
use crate::job::{
    Clock, FailureKind, JobSpec, JobStatus, Objects, ProfileJob, Runner, Source, UPLOADS_BUCKET,
    new_job_id,
};
use crate::mapping::MappingFile;
use crate::objects::{ObjectAttributes, ObjectError, ObjectWriter, ensure_bucket};
use crate::store::{AccountId, Domain, JobFilter, JobKind, JobRecord, JobRef, Store, StoreError};

/// The longest DataExpiry and DefaultExpirationDays the model allows.
pub const MAX_EXPIRATION_DAYS: i64 = 1098;

/// How long an upload URL is valid unless configured.
pub const DEFAULT_URL_TTL: Duration = Duration::from_secs(3600);

/// The largest upload unless configured: 1 GB, as the service documents.
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 1_000_000_000;

/// The path prefix of upload URLs.
pub const UPLOAD_PATH_PREFIX: &str = "/uploads/";

/// Days an upload job's profiles live when it gives no DataExpiry.
pub const UPLOAD_DATA_EXPIRY_DAYS: i64 = 14;

/// The query parameter of an upload URL that says when it expires (Unix
/// seconds).
pub const URL_EXPIRES: &str = "X-Sluice-Expires";

/// The query parameter of an upload URL that carries its signature (hex).
pub const URL_SIGNATURE: &str = "X-Sluice-Signature";

// ---------------------------------------------------------------------------
// Shapes

/// `ObjectTypeField`: where a field comes from and goes to.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ObjectTypeField {
    /// `_source.<column>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `_profile.<path>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `STRING`, `NUMBER`, `PHONE_NUMBER`, `EMAIL_ADDRESS` or `NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// `CreateDomainRequest`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateDomainRequest {
    /// The domain's name (in the URI).
    #[serde(default)]
    pub domain_name: String,
    /// Days a profile lives unless its job says otherwise, 1 to 1098.
    #[serde(default)]
    pub default_expiration_days: Option<i64>,
    /// The rest, kept and given back as it came.
    #[serde(flatten)]
    pub settings: DomainSettings,
}

/// What a domain's creator may set besides its name and expiry: kept and
/// given back by CreateDomain and GetDomain as it came (sluice matches no
/// profiles and uses no KMS key or queue).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainSettings {
    /// Kept and given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_encryption_key: Option<String>,
    /// Kept and given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue_url: Option<String>,
    /// Kept and given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matching: Option<Value>,
    /// Kept and given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_based_matching: Option<Value>,
    /// Kept and given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_store: Option<Value>,
    /// Tags, 1 to 50.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `UpdateDomainRequest`: the members of CreateDomain's; those not given
/// stay as they are.
pub type UpdateDomainRequest = CreateDomainRequest;

/// A domain as `CreateDomain` and `GetDomain` return it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainResponse {
    /// The domain's name.
    pub domain_name: String,
    /// Days a profile lives unless its job says otherwise.
    pub default_expiration_days: u32,
    /// As given at creation.
    #[serde(flatten)]
    pub settings: DomainSettings,
    /// Live profiles (`GetDomain` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<DomainStats>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub last_updated_at: Timestamp,
}

/// `CreateDomainResponse`.
pub type CreateDomainResponse = DomainResponse;
/// `GetDomainResponse`.
pub type GetDomainResponse = DomainResponse;
/// `UpdateDomainResponse`.
pub type UpdateDomainResponse = DomainResponse;

/// `DomainStats`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainStats {
    /// Live (unexpired) profiles.
    pub profile_count: i64,
    /// The same: every profile is metered.
    pub metering_profile_count: i64,
    /// The same: one object per profile.
    pub object_count: i64,
}

/// A request that names a domain.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DomainRequest {
    /// The domain (in the URI).
    #[serde(default)]
    pub domain_name: String,
}

/// `GetDomainRequest`.
pub type GetDomainRequest = DomainRequest;
/// `DeleteDomainRequest`.
pub type DeleteDomainRequest = DomainRequest;

/// `DeleteDomainResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteDomainResponse {
    /// What was deleted.
    pub message: String,
}

/// `SearchProfilesRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchProfilesRequest {
    /// The domain (in the URI).
    #[serde(default)]
    pub domain_name: String,
    /// From the `NextToken` of the page before (query `next-token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// 1 to 100; 20 when not given (query `max-results`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// The first key.
    #[serde(default)]
    pub key_name: String,
    /// Its values.
    #[serde(default)]
    pub values: Vec<String>,
    /// Up to four more keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_search_keys: Option<Vec<SearchKeyValues>>,
    /// `AND` or `OR` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logical_operator: Option<String>,
}

/// `AdditionalSearchKey` and `FoundByKeyValue`: a key and values.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchKeyValues {
    /// The key.
    #[serde(default)]
    pub key_name: String,
    /// Its values.
    #[serde(default)]
    pub values: Vec<String>,
}

/// `SearchProfilesResponse`: `Items` are the service's `Profile` shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchProfilesResponse {
    /// The profiles found.
    pub items: Vec<Value>,
    /// Where the next page starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `DeleteProfileRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteProfileRequest {
    /// The domain (in the URI).
    #[serde(default)]
    pub domain_name: String,
    /// The profile.
    #[serde(default)]
    pub profile_id: String,
}

/// `DeleteProfileResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteProfileResponse {
    /// What was deleted.
    pub message: String,
}

/// The members of the service's `Profile` that hold text, and those that
/// hold an `Address`; `Attributes` is a map of text.
const PROFILE_TEXT: &[&str] = &[
    "AccountNumber",
    "AdditionalInformation",
    "BusinessName",
    "FirstName",
    "MiddleName",
    "LastName",
    "BirthDate",
    "PhoneNumber",
    "MobilePhoneNumber",
    "HomePhoneNumber",
    "BusinessPhoneNumber",
    "EmailAddress",
    "PersonalEmailAddress",
    "BusinessEmailAddress",
    "PartyTypeString",
    "GenderString",
];
const PROFILE_ADDRESSES: &[&str] = &[
    "Address",
    "ShippingAddress",
    "MailingAddress",
    "BillingAddress",
];
const ADDRESS_MEMBERS: &[&str] = &[
    "Address1",
    "Address2",
    "Address3",
    "Address4",
    "City",
    "County",
    "State",
    "Province",
    "Country",
    "PostalCode",
];

/// A stored profile in the service's `Profile` shape: its mapped fields
/// where the shape has them (`Gender` and `PartyType` when they are one of
/// their enum's values, otherwise as `GenderString` and `PartyTypeString`),
/// its `ProfileId`, and the keys that found it.
fn profile_shape(found: &search::Found) -> Value {
    let fields: Value = serde_json::from_str(&found.profile.fields).unwrap_or(Value::Null);
    let mut out = Map::new();
    out.insert(
        "ProfileId".into(),
        Value::String(crate::store::profile_id(found.profile.no)),
    );
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    for &m in PROFILE_TEXT {
        if let Some(v) = fields.get(m).and_then(text) {
            out.insert(m.into(), Value::String(v));
        }
    }
    for (m, allowed, alt) in [
        (
            "Gender",
            &["MALE", "FEMALE", "UNSPECIFIED"][..],
            "GenderString",
        ),
        (
            "PartyType",
            &["INDIVIDUAL", "BUSINESS", "OTHER"][..],
            "PartyTypeString",
        ),
    ] {
        if let Some(v) = fields.get(m).and_then(text) {
            let member = if allowed.contains(&v.as_str()) {
                m
            } else {
                alt
            };
            out.entry(member).or_insert(Value::String(v));
        }
    }
    for &m in PROFILE_ADDRESSES {
        let address: Map<String, Value> = ADDRESS_MEMBERS
            .iter()
            .filter_map(|&a| {
                let v = fields.get(m)?.get(a).and_then(text)?;
                Some((a.to_owned(), Value::String(v)))
            })
            .collect();
        if !address.is_empty() {
            out.insert(m.into(), Value::Object(address));
        }
    }
    if let Some(attrs) = fields.get("Attributes").and_then(Value::as_object) {
        let attrs: Map<String, Value> = attrs
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), Value::String(text(v)?))))
            .collect();
        if !attrs.is_empty() {
            out.insert("Attributes".into(), Value::Object(attrs));
        }
    }
    let found_by: Vec<Value> = found
        .found_by
        .iter()
        .map(|k| json!({"KeyName": k.name, "Values": k.values}))
        .collect();
    out.insert("FoundByItems".into(), Value::Array(found_by));
    Value::Object(out)
}

/// `ListDomainsRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDomainsRequest {
    /// From the `NextToken` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// 1 to 100; 100 when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
}

/// `ListDomainItem`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDomainItem {
    /// The domain's name.
    pub domain_name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub last_updated_at: Timestamp,
    /// Its tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `ListDomainsResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListDomainsResponse {
    /// The page, by name.
    pub items: Vec<ListDomainItem>,
    /// Present when there are more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `CreateUploadJobRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateUploadJobRequest {
    /// The domain (in the URI).
    #[serde(default)]
    pub domain_name: String,
    /// A name for people, 1 to 255 characters.
    #[serde(default)]
    pub display_name: String,
    /// Field name -> where it comes from, where it goes, how it normalizes.
    #[serde(default)]
    pub fields: BTreeMap<String, ObjectTypeField>,
    /// The field(s) that identify a profile (comma-separated for several).
    #[serde(default)]
    pub unique_key: String,
    /// Days the profiles live, 1 to 1098; the domain's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_expiry: Option<i64>,
}

/// `CreateUploadJobResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateUploadJobResponse {
    /// The job's id: 32 hex digits.
    pub job_id: String,
}

/// A request that names a job of a domain.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobRequest {
    /// The domain (in the URI).
    #[serde(default)]
    pub domain_name: String,
    /// The job (in the URI).
    #[serde(default)]
    pub job_id: String,
}

/// `GetUploadJobRequest`.
pub type GetUploadJobRequest = JobRequest;
/// `GetUploadJobPathRequest`.
pub type GetUploadJobPathRequest = JobRequest;
/// `StartUploadJobRequest`.
pub type StartUploadJobRequest = JobRequest;
/// `StopUploadJobRequest`.
pub type StopUploadJobRequest = JobRequest;

/// `ResultsSummary`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultsSummary {
    /// Profiles updated (their key was in the domain).
    pub updated_records: i64,
    /// Profiles created.
    pub created_records: i64,
    /// Rows that failed.
    pub failed_records: i64,
}

/// `GetUploadJobResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetUploadJobResponse {
    /// The job's id.
    pub job_id: String,
    /// Its name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// `CREATED`, `IN_PROGRESS`, `PARTIALLY_SUCCEEDED`, `SUCCEEDED`,
    /// `FAILED` or `STOPPED`.
    pub status: String,
    /// `VALIDATION_FAILURE` or `INTERNAL_FAILURE`, when `FAILED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Its fields.
    pub fields: BTreeMap<String, ObjectTypeField>,
    /// Its unique key.
    pub unique_key: String,
    /// What it did.
    pub results_summary: ResultsSummary,
    /// Days its profiles live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_expiry: Option<i64>,
}

/// `GetUploadJobPathResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetUploadJobPathResponse {
    /// Where to PUT the file, signed.
    pub url: String,
    /// The data key to send with the PUT (SSE-C), base64 of 32 bytes.
    pub client_token: String,
    /// When the URL expires.
    pub valid_until: Timestamp,
}

/// `StartUploadJobResponse` and `StopUploadJobResponse`: empty.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
pub struct Empty {}

/// `ListUploadJobsRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUploadJobsRequest {
    /// The domain (in the URI).
    #[serde(default)]
    pub domain_name: String,
    /// 1 to 500; 100 when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<i64>,
    /// From the `NextToken` of the page before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `UploadJobItem`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadJobItem {
    /// The job's id.
    pub job_id: String,
    /// Its name for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// As in [`GetUploadJobResponse`].
    pub status: String,
    /// As in [`GetUploadJobResponse`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Days its profiles live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_expiry: Option<i64>,
}

/// `ListUploadJobsResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUploadJobsResponse {
    /// The page, newest first.
    pub items: Vec<UploadJobItem>,
    /// Present when there are more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

// ---------------------------------------------------------------------------
// Uploads

/// What an upload PUT presents: its URL's parts and its SSE-C headers, as
/// sent (`None` when absent).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct UploadRequest {
    /// The domain, from the URL path.
    pub domain_name: String,
    /// The job, from the URL path.
    pub job_id: String,
    /// [`URL_EXPIRES`].
    pub expires: Option<String>,
    /// [`URL_SIGNATURE`].
    pub signature: Option<String>,
    /// `x-amz-server-side-encryption-customer-algorithm`.
    pub sse_algorithm: Option<String>,
    /// `x-amz-server-side-encryption-customer-key`.
    pub sse_key: Option<String>,
    /// `x-amz-server-side-encryption-customer-key-MD5`.
    pub sse_key_md5: Option<String>,
    /// `Content-Length`, when sent.
    pub content_length: Option<u64>,
    /// The `Host` it was sent to (the URL is good only there).
    pub host: Option<String>,
}

/// An upload refused, as S3 would refuse it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct UploadError {
    /// The HTTP status.
    pub status: u16,
    /// S3's error code (`AccessDenied`, `InvalidArgument`, …).
    pub code: &'static str,
    /// S3's message, or one as plain.
    pub message: String,
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for UploadError {}

fn upload_err(status: u16, code: &'static str, message: impl Into<String>) -> UploadError {
    UploadError {
        status,
        code,
        message: message.into(),
    }
}

/// An authorized upload: [`UploadSlot::push`] the body as it arrives (it
/// is sealed under the job's key and streamed into the store of uploads),
/// then [`UploadSlot::commit`]. Dropped without a commit, it leaves no
/// upload behind.
pub struct UploadSlot {
    api: Arc<Inner>,
    job: String,
    key: DataKey,
    sealer: Option<Sealer>,
    writer: Option<Box<dyn ObjectWriter>>,
    sealed: Vec<u8>,
    received: u64,
    max_bytes: u64,
}

impl std::fmt::Debug for UploadSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSlot")
            .field("job", &self.job)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

/// Sealed bytes are handed to the store in pieces of about this size.
const UPLOAD_CHUNK: usize = 256 * 1024;

impl UploadSlot {
    /// The key the body is sealed with.
    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// The most plaintext bytes the body may have.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Plaintext bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    fn store_failed(&self, e: &dyn std::fmt::Display) -> UploadError {
        eprintln!("sluice: upload of job {}: {e}", self.job);
        upload_err(500, "InternalError", "the upload could not be stored")
    }

    /// Takes the next bytes of the body.
    ///
    /// # Errors
    ///
    /// `EntityTooLarge` past [`UploadSlot::max_bytes`]; `InternalError`
    /// when the store of uploads fails.
    pub fn push(&mut self, data: &[u8]) -> Result<(), UploadError> {
        self.received += data.len() as u64;
        if self.received > self.max_bytes {
            return Err(upload_too_large(self.max_bytes));
        }
        if let Some(sealer) = &mut self.sealer {
            sealer.push(data, &mut self.sealed);
        }
        if self.sealed.len() >= UPLOAD_CHUNK {
            self.flush_sealed()?;
        }
        Ok(())
    }

    fn flush_sealed(&mut self) -> Result<(), UploadError> {
        let written = match &mut self.writer {
            Some(w) => w.write_all(&self.sealed),
            None => Ok(()),
        };
        written.map_err(|e| self.store_failed(&e))?;
        self.sealed.clear();
        Ok(())
    }

    /// Makes the body the job's upload, replacing any before it.
    ///
    /// # Errors
    ///
    /// `AccessDenied` when the job started or got a new key meanwhile;
    /// `InternalError` when the upload cannot be stored.
    pub fn commit(mut self) -> Result<(), UploadError> {
        if let Some(sealer) = self.sealer.take() {
            sealer.finish(&mut self.sealed);
        }
        self.flush_sealed()?;
        let api = Arc::clone(&self.api);
        let _guard = api.uploads_lock.lock().unwrap_or_else(|e| e.into_inner());
        let job = api.store().job(api.job_ref(&self.job)).ok().flatten();
        let still_ours = job.as_ref().is_some_and(|j| {
            j.status == JobStatus::Created
                && spec_of(j).is_ok_and(|s| {
                    s.sealed_key
                        .is_some_and(|k| api.master.key_matches(&k, self.key.as_bytes()))
                })
        });
        if !still_ours {
            return Err(upload_err(
                403,
                "AccessDenied",
                "the job started, or was given a new upload key, while this upload was sent",
            ));
        }
        let writer = self
            .writer
            .take()
            .ok_or_else(|| self.store_failed(&"no writer"))?;
        writer.finish().map_err(|e| self.store_failed(&e))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The service

/// How the service is set up.
#[derive(Clone, Debug)]
pub struct ProfilesConfig {
    /// Where upload URLs point: scheme, host and port of the server, no
    /// trailing slash (`http://127.0.0.1:4566`).
    pub base_url: String,
    /// How long an upload URL is valid.
    pub url_ttl: Duration,
    /// The largest upload, in bytes of the file as sent.
    pub max_upload_bytes: u64,
    /// The account whose domains and jobs these are.
    pub account: AccountId,
}

impl Default for ProfilesConfig {
    fn default() -> ProfilesConfig {
        ProfilesConfig {
            base_url: "http://127.0.0.1:4566".into(),
            url_ttl: DEFAULT_URL_TTL,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            account: AccountId::default(),
        }
    }
}

/// Customer Profiles over a job runner and its store.
#[derive(Clone)]
pub struct CustomerProfiles {
    inner: Arc<Inner>,
}

struct Inner {
    runner: Arc<Runner>,
    master: Arc<MasterKey>,
    /// The store of uploads: bucket [`UPLOADS_BUCKET`].
    uploads: Objects,
    config: ProfilesConfig,
    clock: Clock,
    /// Serializes what changes an upload file: a new key, a commit, a start.
    uploads_lock: Mutex<()>,
}

impl std::fmt::Debug for CustomerProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerProfiles")
            .field("uploads", &self.inner.uploads.describe())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn store(&self) -> &dyn Store {
        &**self.runner.store()
    }

    fn account(&self) -> &AccountId {
        &self.config.account
    }

    fn job_ref<'a>(&'a self, id: &'a str) -> JobRef<'a> {
        JobRef {
            account: &self.config.account,
            id,
        }
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The key of a job's upload.
    fn upload_key(job: &str) -> String {
        format!("{job}.sealed")
    }

    /// Removes a job's upload, if it has one.
    fn drop_upload(&self, job: &str) {
        if let Err(e) = self.uploads.delete(UPLOADS_BUCKET, &Inner::upload_key(job)) {
            eprintln!("sluice: removing the upload of job {job}: {e}");
        }
    }
}

/// The spec of a profile job.
fn spec_of(job: &JobRecord) -> Result<ProfileJob, ApiError> {
    match JobSpec::of(job)? {
        JobSpec::Profiles(p) => Ok(p),
        _ => Err(ApiError::internal(&format!(
            "job {} is not a profile job",
            job.id
        ))),
    }
}

fn domain_response(d: &Domain, stats: Option<DomainStats>) -> DomainResponse {
    DomainResponse {
        domain_name: d.name.clone(),
        default_expiration_days: d.default_expiration_days,
        // Written by `create_domain` from the same type.
        settings: serde_json::from_str(&d.settings).unwrap_or_default(),
        stats,
        created_at: Timestamp(d.created_ms),
        last_updated_at: Timestamp(d.updated_ms),
    }
}

/// Checks what CreateDomain and UpdateDomain may set besides the expiry.
fn check_settings(st: &DomainSettings) -> Result<(), ApiError> {
    for (member, v) in [
        ("DefaultEncryptionKey", &st.default_encryption_key),
        ("DeadLetterQueueUrl", &st.dead_letter_queue_url),
    ] {
        if let Some(v) = v {
            check_len(member, v, 0, 255)?;
        }
    }
    if let Some(tags) = &st.tags {
        if tags.is_empty() || tags.len() > 50 {
            return Err(ApiError::bad_request(format!(
                "Tags must have 1 to 50 entries; it has {}",
                tags.len()
            )));
        }
        for (k, v) in tags {
            check_len("a tag key", k, 1, 128)?;
            if k.starts_with("aws:") {
                return Err(ApiError::bad_request(format!(
                    "tag key {k:?}: the aws: prefix is reserved"
                )));
            }
            check_len(&format!("the value of tag {k:?}"), v, 0, 256)?;
        }
    }
    Ok(())
}

/// `UploadJobStatus` of a job.
fn wire_status(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Queued | JobStatus::Running => "IN_PROGRESS",
        other => other.as_str(),
    }
}

fn status_reason(j: &JobRecord) -> Option<String> {
    (j.status == JobStatus::Failed).then(|| {
        j.failure
            .unwrap_or(FailureKind::Internal)
            .as_str()
            .to_owned()
    })
}

impl CustomerProfiles {
    /// The service over `runner`, whose config must carry `master` as its
    /// `master_key` and `uploads` as its `uploads` (so that jobs can open
    /// their uploads). Uploads are kept, sealed, in bucket
    /// [`UPLOADS_BUCKET`] of `uploads` (made if missing).
    ///
    /// # Errors
    ///
    /// When the bucket of uploads cannot be made.
    pub fn new(
        runner: Arc<Runner>,
        master: Arc<MasterKey>,
        uploads: Objects,
        config: ProfilesConfig,
        clock: Clock,
    ) -> Result<CustomerProfiles, ObjectError> {
        ensure_bucket(&*uploads, UPLOADS_BUCKET)?;
        Ok(CustomerProfiles {
            inner: Arc::new(Inner {
                runner,
                master,
                uploads,
                config,
                clock,
                uploads_lock: Mutex::new(()),
            }),
        })
    }

    /// The runner the jobs run on.
    pub fn runner(&self) -> &Arc<Runner> {
        &self.inner.runner
    }

    fn store(&self) -> &dyn Store {
        self.inner.store()
    }

    fn domain(&self, name: &str) -> Result<Domain, ApiError> {
        check_name("DomainName", name, 64, b"_-")?;
        self.store()
            .domain(self.inner.account(), name)?
            .ok_or_else(|| ApiError::not_found(format!("domain {name:?} not found")))
    }

    /// A profile job of the domain, with the domain.
    fn job(&self, domain: &str, id: &str) -> Result<(Domain, JobRecord, ProfileJob), ApiError> {
        let d = self.domain(domain)?;
        let missing = || ApiError::not_found(format!("no upload job {id:?} in domain {domain:?}"));
        if id.is_empty() || id.len() > 64 {
            return Err(missing());
        }
        let job = self
            .store()
            .job(self.inner.job_ref(id))?
            .ok_or_else(missing)?;
        if job.kind != JobKind::Profiles || job.domain.as_deref() != Some(domain) {
            return Err(missing());
        }
        let spec = spec_of(&job)?;
        Ok((d, job, spec))
    }

    /// `CreateDomain`.
    ///
    /// # Errors
    ///
    /// `BadRequestException` for a bad name, expiry or tags, or a name in
    /// use.
    pub fn create_domain(&self, r: &CreateDomainRequest) -> Result<DomainResponse, ApiError> {
        check_name("DomainName", &r.domain_name, 64, b"_-")?;
        let days = r.default_expiration_days.ok_or_else(|| {
            ApiError::bad_request("DefaultExpirationDays is required (1 to 1098)")
        })?;
        check_range("DefaultExpirationDays", days, 1, MAX_EXPIRATION_DAYS)?;
        let st = &r.settings;
        check_settings(st)?;
        let mut d = Domain::new(&r.domain_name, days as u32, self.inner.now());
        d.settings = serde_json::to_string(st).map_err(|e| ApiError::internal(&e))?;
        self.store().create_domain(self.inner.account(), &d)?;
        Ok(domain_response(&d, None))
    }

    /// `UpdateDomain`: the members given replace the domain's (an empty
    /// `DefaultEncryptionKey` or `DeadLetterQueueUrl` clears it, `Tags`
    /// replace its tags); those not given stay. A new
    /// `DefaultExpirationDays` holds for profiles written afterwards by
    /// jobs that name no `DataExpiry` of their own; profiles already
    /// written keep the expiry they were written with.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException` for an unknown domain;
    /// `BadRequestException` for a bad expiry or tags, naming them.
    pub fn update_domain(&self, r: &UpdateDomainRequest) -> Result<DomainResponse, ApiError> {
        if let Some(days) = r.default_expiration_days {
            check_range("DefaultExpirationDays", days, 1, MAX_EXPIRATION_DAYS)?;
        }
        check_settings(&r.settings)?;
        let now = self.inner.now();
        let given = &r.settings;
        let location = self.store().location();
        let d = self
            .store()
            .update_domain(self.inner.account(), &r.domain_name, &|d| {
                let mut st: DomainSettings =
                    serde_json::from_str(&d.settings).map_err(|e| StoreError::Corrupt {
                        location: location.clone(),
                        what: format!("domain {:?}", d.name),
                        problem: format!("its settings: {e}"),
                    })?;
                let cleared = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
                if given.default_encryption_key.is_some() {
                    st.default_encryption_key = cleared(&given.default_encryption_key);
                }
                if given.dead_letter_queue_url.is_some() {
                    st.dead_letter_queue_url = cleared(&given.dead_letter_queue_url);
                }
                for (to, from) in [
                    (&mut st.matching, &given.matching),
                    (&mut st.rule_based_matching, &given.rule_based_matching),
                    (&mut st.data_store, &given.data_store),
                ] {
                    if from.is_some() {
                        to.clone_from(from);
                    }
                }
                if given.tags.is_some() {
                    st.tags.clone_from(&given.tags);
                }
                if let Some(days) = r.default_expiration_days {
                    d.default_expiration_days = days as u32;
                }
                // A domain's settings are written from this type.
                d.settings = serde_json::to_string(&st).unwrap_or_else(|_| d.settings.clone());
                d.updated_ms = now;
                Ok(())
            })?;
        Ok(domain_response(&d, None))
    }

    /// `SearchProfiles`: live profiles by up to five keys (`KeyName` and
    /// `AdditionalSearchKeys`), `AND` or `OR`, in the order they were first
    /// written, `MaxResults` (1 to 100, 20 when not given) at a time.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException` for an unknown domain;
    /// `BadRequestException` naming the member that is wrong: a key that
    /// is neither predefined nor a UniqueKey of the domain's jobs, a value
    /// out of length, too many keys, a bad operator or token.
    pub fn search_profiles(
        &self,
        r: &SearchProfilesRequest,
    ) -> Result<SearchProfilesResponse, ApiError> {
        let limit = match r.max_results {
            None => 20,
            Some(n) => {
                check_range("MaxResults", n, 1, 100)?;
                n as usize
            }
        };
        let all = match r.logical_operator.as_deref() {
            None | Some("OR") => false,
            Some("AND") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "LogicalOperator must be AND or OR; it is {other:?}"
                )));
            }
        };
        let extra = r.additional_search_keys.as_deref().unwrap_or_default();
        if r.additional_search_keys.is_some() && !(1..=4).contains(&extra.len()) {
            return Err(ApiError::bad_request(format!(
                "AdditionalSearchKeys must hold 1 to 4 keys; it holds {}",
                extra.len()
            )));
        }
        let mut keys = Vec::with_capacity(1 + extra.len());
        let given = std::iter::once(("", &r.key_name, &r.values)).chain(
            extra
                .iter()
                .map(|k| ("AdditionalSearchKeys.", &k.key_name, &k.values)),
        );
        for (at, name, values) in given {
            check_name(&format!("{at}KeyName"), name, 64, b"_-")?;
            if values.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "{at}Values of {name:?} must hold at least one value"
                )));
            }
            for v in values {
                check_len(&format!("{at}Values of {name:?}"), v, 1, 255)?;
            }
            keys.push(search::SearchKey {
                name: name.clone(),
                values: values.clone(),
            });
        }
        let after = match &r.next_token {
            None => 0,
            Some(t) => crate::store::profile_no(t).ok_or_else(|| bad_token("NextToken"))?,
        };
        let query = search::SearchQuery {
            keys,
            all,
            after,
            limit,
        };
        let page = search::search(
            self.store(),
            self.inner.account(),
            &r.domain_name,
            &query,
            self.inner.now(),
        )
        .map_err(|e| match e {
            search::SearchError::Store(e) => ApiError::from(e),
            e @ search::SearchError::UnknownKey(_) => ApiError::bad_request(e.to_string()),
        })?;
        Ok(SearchProfilesResponse {
            items: page.found.iter().map(profile_shape).collect(),
            next_token: page.next.map(crate::store::profile_id),
        })
    }

    /// `DeleteProfile`: the profile and its values, at once.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException` for an unknown domain or a profile it
    /// does not have; `BadRequestException` for an id that is not one.
    pub fn delete_profile(
        &self,
        r: &DeleteProfileRequest,
    ) -> Result<DeleteProfileResponse, ApiError> {
        let d = self.domain(&r.domain_name)?;
        let missing = || {
            ApiError::not_found(format!(
                "profile {:?} not found in domain {:?}",
                r.profile_id, d.name
            ))
        };
        if r.profile_id.is_empty() {
            return Err(ApiError::bad_request("ProfileId is required"));
        }
        if !crate::store::is_profile_id(&r.profile_id) {
            return Err(ApiError::bad_request(format!(
                "ProfileId must be 32 lowercase hexadecimal digits; it is {:?}",
                r.profile_id
            )));
        }
        let no = crate::store::profile_no(&r.profile_id).ok_or_else(missing)?;
        let (account, now) = (self.inner.account(), self.inner.now());
        let profile = self
            .store()
            .profile_by_no(account, &d.name, no, now)?
            .ok_or_else(missing)?;
        if !self
            .store()
            .delete_profile(account, &d.name, &profile.key, now)?
        {
            return Err(missing());
        }
        Ok(DeleteProfileResponse {
            message: format!("profile {} deleted", r.profile_id),
        })
    }

    /// `GetDomain`, with `Stats` counting live profiles.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException` for an unknown domain.
    pub fn get_domain(&self, r: &DomainRequest) -> Result<DomainResponse, ApiError> {
        let d = self.domain(&r.domain_name)?;
        let n = self
            .store()
            .count_profiles(self.inner.account(), &d.name, self.inner.now())?
            as i64;
        let stats = DomainStats {
            profile_count: n,
            metering_profile_count: n,
            object_count: n,
        };
        Ok(domain_response(&d, Some(stats)))
    }

    /// `ListDomains`, by name, `MaxResults` (1 to 100) at a time.
    ///
    /// # Errors
    ///
    /// `BadRequestException` for a bad `MaxResults` or `NextToken`.
    pub fn list_domains(&self, r: &ListDomainsRequest) -> Result<ListDomainsResponse, ApiError> {
        let size = page_size("MaxResults", r.max_results, 100)?;
        if let Some(t) = &r.next_token {
            check_name("NextToken", t, 64, b"_-").map_err(|_| bad_token("NextToken"))?;
        }
        let all = self.store().domains(self.inner.account())?;
        let mut rest = all.iter().filter(|d| {
            r.next_token
                .as_ref()
                .is_none_or(|t| d.name.as_str() > t.as_str())
        });
        let items: Vec<ListDomainItem> = rest
            .by_ref()
            .take(size)
            .map(|d| {
                let full = domain_response(d, None);
                ListDomainItem {
                    domain_name: full.domain_name,
                    created_at: full.created_at,
                    last_updated_at: full.last_updated_at,
                    tags: full.settings.tags,
                }
            })
            .collect();
        let next_token = match (rest.next(), items.last()) {
            (Some(_), Some(last)) => Some(last.domain_name.clone()),
            _ => None,
        };
        Ok(ListDomainsResponse { items, next_token })
    }

    /// `DeleteDomain`: the domain, its profiles, its jobs and their uploads.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException` for an unknown domain,
    /// `BadRequestException` while one of its jobs is in progress.
    pub fn delete_domain(&self, r: &DomainRequest) -> Result<DeleteDomainResponse, ApiError> {
        let d = self.domain(&r.domain_name)?;
        let jobs = self.store().jobs(&JobFilter {
            account: Some(self.inner.account().clone()),
            domain: Some(d.name.clone()),
            ..JobFilter::default()
        })?;
        let profiles = self.store().delete_domain(self.inner.account(), &d.name)?;
        for j in jobs {
            self.inner.drop_upload(&j.id);
        }
        Ok(DeleteDomainResponse {
            message: format!("domain {:?} deleted with its {profiles} profiles", d.name),
        })
    }

    /// `CreateUploadJob`.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException` for an unknown domain;
    /// `BadRequestException` naming the member that is wrong: DisplayName,
    /// a field's name, Source, Target or ContentType, a UniqueKey that names
    /// no field, a DataExpiry out of range.
    pub fn create_upload_job(
        &self,
        r: &CreateUploadJobRequest,
    ) -> Result<CreateUploadJobResponse, ApiError> {
        self.domain(&r.domain_name)?;
        check_len("DisplayName", &r.display_name, 1, 255)?;
        check_len("UniqueKey", &r.unique_key, 1, 1000)?;
        if r.fields.is_empty() {
            return Err(ApiError::bad_request("Fields must map at least one field"));
        }
        if let Some(days) = r.data_expiry {
            check_range("DataExpiry", days, 1, MAX_EXPIRATION_DAYS)?;
        }
        let mut mapping = Map::new();
        mapping.insert("DisplayName".into(), json!(r.display_name));
        mapping.insert("Fields".into(), json!(r.fields));
        mapping.insert("UniqueKey".into(), json!(r.unique_key));
        // "If not provided, the system default of 2 weeks is used": the
        // job's, not the domain's DefaultExpirationDays.
        let days = r.data_expiry.unwrap_or(UPLOAD_DATA_EXPIRY_DAYS);
        mapping.insert("DataExpiry".into(), json!(days));
        let mapping = Value::Object(mapping);
        MappingFile::from_json(mapping.to_string().as_bytes())
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let id = new_job_id();
        let job = ProfileJob {
            domain: r.domain_name.clone(),
            display_name: Some(r.display_name.clone()),
            mapping,
            inputs: vec![Source::Upload {
                key: Inner::upload_key(&id),
            }],
            piece_size: None,
            range_size: None,
            region: None,
            delimiter: None,
            sealed_key: None,
        };
        self.inner.runner.create(
            self.inner.account(),
            &id,
            &JobSpec::Profiles(job),
            Some(r.display_name.clone()),
        )?;
        Ok(CreateUploadJobResponse { job_id: id })
    }

    /// `GetUploadJobPath`: a signed URL for one PUT of the job's file, and
    /// a fresh data key to send with it. A file uploaded before under an
    /// older key is dropped.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException`; `BadRequestException` once the job has
    /// started.
    pub fn get_upload_job_path(
        &self,
        r: &JobRequest,
    ) -> Result<GetUploadJobPathResponse, ApiError> {
        let (_, job, mut spec) = self.job(&r.domain_name, &r.job_id)?;
        if job.status != JobStatus::Created {
            return Err(not_created(&job));
        }
        let key = DataKey::generate();
        spec.sealed_key = Some(self.inner.master.seal_key(&key, &job.id));
        let stored = JobSpec::Profiles(spec).to_stored();
        {
            let _guard = self
                .inner
                .uploads_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.store()
                .update_spec(self.inner.job_ref(&job.id), &stored)
                .map_err(|e| match e {
                    StoreError::Transition { actual, .. } => ApiError::bad_request(format!(
                        "job {} is {}; only a CREATED job takes a file",
                        job.id,
                        wire_status(actual)
                    )),
                    e => e.into(),
                })?;
            self.inner.drop_upload(&job.id);
        }
        let ttl = i64::try_from(self.inner.config.url_ttl.as_millis()).unwrap_or(i64::MAX);
        let until_ms = self.inner.now().saturating_add(ttl);
        // Whole seconds, rounded up: the URL lives at least url_ttl (rounded
        // down, a 1-second URL could be dead on arrival).
        let expires = until_ms.saturating_add(999).div_euclid(1000);
        // The account in the path, and the host in what is signed: a URL
        // is good for one account's job, at the host it was issued for.
        let path = format!(
            "{UPLOAD_PATH_PREFIX}{}/{}/{}",
            self.inner.config.account, r.domain_name, job.id
        );
        let host = host_of(&self.inner.config.base_url);
        let sig = url_signature(&self.inner.master, &format!("{host}{path}"), expires);
        Ok(GetUploadJobPathResponse {
            url: format!(
                "{}{path}?{URL_EXPIRES}={expires}&{URL_SIGNATURE}={sig}",
                self.inner.config.base_url
            ),
            client_token: key.to_base64(),
            valid_until: Timestamp(expires * 1000),
        })
    }

    /// Checks an upload PUT as S3 would: the URL's signature and expiry,
    /// then the SSE-C headers, then that the key is the job's.
    ///
    /// # Errors
    ///
    /// S3's answers: `SignatureDoesNotMatch` (403) for a tampered URL,
    /// `AccessDenied` (403) "Request has expired" or for a key that is not
    /// the job's, `InvalidArgument` (400) for missing or malformed SSE-C
    /// headers, `InvalidEncryptionAlgorithmError` (400),
    /// `EntityTooLarge` (400), `NoSuchUpload` (404) when the job is gone.
    pub fn authorize_upload(&self, r: &UploadRequest) -> Result<UploadSlot, UploadError> {
        let path = format!(
            "{UPLOAD_PATH_PREFIX}{}/{}/{}",
            self.inner.config.account, r.domain_name, r.job_id
        );
        let host = r.host.as_deref().unwrap_or_default();
        verify_upload_url(
            &self.inner.master,
            &format!("{host}{path}"),
            r.expires.as_deref(),
            r.signature.as_deref(),
            self.inner.now(),
        )?;
        let presented = check_sse(r)?;
        let max = self.inner.config.max_upload_bytes;
        if r.content_length.is_some_and(|n| n > max) {
            return Err(upload_too_large(max));
        }
        let job = self
            .inner
            .store()
            .job(self.inner.job_ref(&r.job_id))
            .ok()
            .flatten();
        let Some(job) = job.filter(|j| j.domain.as_deref() == Some(r.domain_name.as_str())) else {
            return Err(upload_err(
                404,
                "NoSuchUpload",
                format!("no upload job {} in domain {}", r.job_id, r.domain_name),
            ));
        };
        if job.status != JobStatus::Created {
            return Err(upload_err(
                403,
                "AccessDenied",
                format!(
                    "job {} is {}; its file can no longer change",
                    job.id,
                    wire_status(job.status)
                ),
            ));
        }
        let sealed: Option<SealedKey> = spec_of(&job).ok().and_then(|s| s.sealed_key);
        let Some(sealed) = sealed else {
            return Err(upload_err(
                403,
                "AccessDenied",
                "the job has no upload key; call GetUploadJobPath",
            ));
        };
        if !self.inner.master.key_matches(&sealed, presented.as_bytes()) {
            return Err(upload_err(
                403,
                "AccessDenied",
                "The provided encryption key is not this job's upload key (the ClientToken of \
                 its latest GetUploadJobPath).",
            ));
        }
        let writer = self
            .inner
            .uploads
            .write(
                UPLOADS_BUCKET,
                &Inner::upload_key(&job.id),
                &ObjectAttributes::default(),
            )
            .map_err(|e| {
                eprintln!("sluice: upload of job {}: {e}", job.id);
                upload_err(500, "InternalError", "the upload could not be stored")
            })?;
        Ok(UploadSlot {
            api: Arc::clone(&self.inner),
            job: job.id,
            sealer: Some(Sealer::new(&presented)),
            key: presented,
            writer: Some(writer),
            sealed: Vec::with_capacity(2 * UPLOAD_CHUNK),
            received: 0,
            max_bytes: max,
        })
    }

    /// `StartUploadJob`: queues a `CREATED` job whose file was uploaded.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException`; `BadRequestException` when no file was
    /// uploaded or the job is not `CREATED`.
    pub fn start_upload_job(&self, r: &JobRequest) -> Result<Empty, ApiError> {
        let (_, job, spec) = self.job(&r.domain_name, &r.job_id)?;
        if job.status != JobStatus::Created {
            return Err(not_created(&job));
        }
        let _guard = self
            .inner
            .uploads_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let uploaded = self
            .inner
            .uploads
            .head(UPLOADS_BUCKET, &Inner::upload_key(&job.id))
            .is_ok();
        if spec.sealed_key.is_none() || !uploaded {
            return Err(ApiError::bad_request(format!(
                "job {} has no uploaded file: call GetUploadJobPath and PUT the file to its Url \
                 first",
                job.id
            )));
        }
        self.inner.runner.start(self.inner.job_ref(&job.id))?;
        Ok(Empty {})
    }

    /// `StopUploadJob`: a job not yet running stops at once; a running one
    /// between pieces or write batches (what it wrote stays).
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException`; `BadRequestException` when it has
    /// already finished.
    pub fn stop_upload_job(&self, r: &JobRequest) -> Result<Empty, ApiError> {
        let (_, job, _) = self.job(&r.domain_name, &r.job_id)?;
        if job.status.is_terminal() {
            return Err(ApiError::bad_request(format!(
                "job {} is {}; it cannot be stopped",
                job.id,
                wire_status(job.status)
            )));
        }
        self.inner.runner.stop(self.inner.job_ref(&job.id))?;
        Ok(Empty {})
    }

    /// `GetUploadJob`.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException`.
    pub fn get_upload_job(&self, r: &JobRequest) -> Result<GetUploadJobResponse, ApiError> {
        let (domain, job, spec) = self.job(&r.domain_name, &r.job_id)?;
        let m = spec.mapping.as_object().cloned().unwrap_or_default();
        let fields = m
            .get("Fields")
            .cloned()
            .and_then(|f| serde_json::from_value(f).ok())
            .unwrap_or_default();
        let c = &job.counters;
        Ok(GetUploadJobResponse {
            job_id: job.id.clone(),
            display_name: job.display_name.clone(),
            status: wire_status(job.status).to_owned(),
            status_reason: status_reason(&job),
            created_at: Timestamp(job.created_ms),
            completed_at: job.completed_ms.map(Timestamp),
            fields,
            unique_key: m
                .get("UniqueKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            results_summary: ResultsSummary {
                updated_records: c.updated as i64,
                created_records: c.created as i64,
                failed_records: c.failed as i64,
            },
            data_expiry: Some(data_expiry(&spec, &domain)),
        })
    }

    /// `ListUploadJobs`, newest first, `MaxResults` (1 to 500) at a time.
    ///
    /// # Errors
    ///
    /// `ResourceNotFoundException`; `BadRequestException` for a bad
    /// `MaxResults` or `NextToken`.
    pub fn list_upload_jobs(
        &self,
        r: &ListUploadJobsRequest,
    ) -> Result<ListUploadJobsResponse, ApiError> {
        let domain = self.domain(&r.domain_name)?;
        let size = page_size("MaxResults", r.max_results, 500)?;
        let jobs = self.store().jobs(&JobFilter {
            account: Some(self.inner.account().clone()),
            domain: Some(domain.name.clone()),
            kind: Some(JobKind::Profiles),
            ..JobFilter::default()
        })?;
        // Newest first.
        let (page, next_token) = keyset_page(
            jobs,
            |j| (j.created_ms, j.id.clone()),
            size,
            r.next_token.as_deref(),
            "NextToken",
            true,
        )?;
        let items = page
            .iter()
            .map(|j| UploadJobItem {
                job_id: j.id.clone(),
                display_name: j.display_name.clone(),
                status: wire_status(j.status).to_owned(),
                status_reason: status_reason(j),
                created_at: Timestamp(j.created_ms),
                completed_at: j.completed_ms.map(Timestamp),
                data_expiry: spec_of(j).ok().map(|s| data_expiry(&s, &domain)),
            })
            .collect();
        Ok(ListUploadJobsResponse { items, next_token })
    }
}

fn data_expiry(spec: &ProfileJob, domain: &Domain) -> i64 {
    spec.mapping
        .get("DataExpiry")
        .and_then(Value::as_i64)
        .unwrap_or(i64::from(domain.default_expiration_days))
}

fn not_created(job: &JobRecord) -> ApiError {
    ApiError::bad_request(format!(
        "job {} is {}; this needs a CREATED job",
        job.id,
        wire_status(job.status)
    ))
}

/// The host (and port) of a base URL: what a request to it has as `Host`.
fn host_of(base_url: &str) -> &str {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// The signature of an upload URL for `path` until `expires` (seconds since
/// the epoch): hex HMAC-SHA256 of `PUT\n{path}\n{expires}` under the master
/// key's URL subkey.
pub fn url_signature(master: &MasterKey, path: &str, expires: i64) -> String {
    crypto::to_hex(&master.sign_url(&format!("PUT\n{path}\n{expires}")))
}

/// Checks an upload URL's [`URL_EXPIRES`] and [`URL_SIGNATURE`] for `path`
/// at `now_ms`: the signature first (in constant time), then the expiry.
///
/// # Errors
///
/// S3's answers: `AccessDenied` (403) when either is missing, the expiry is
/// not a number or is past; `SignatureDoesNotMatch` (403) for any other
/// signature.
pub fn verify_upload_url(
    master: &MasterKey,
    path: &str,
    expires: Option<&str>,
    signature: Option<&str>,
    now_ms: i64,
) -> Result<(), UploadError> {
    let (Some(expires), Some(sig)) = (expires, signature) else {
        return Err(upload_err(
            403,
            "AccessDenied",
            format!("an upload needs the {URL_EXPIRES} and {URL_SIGNATURE} of its signed URL"),
        ));
    };
    let expires_at: i64 = expires.parse().map_err(|_| {
        upload_err(
            403,
            "AccessDenied",
            format!("{URL_EXPIRES} is not a number"),
        )
    })?;
    let want = url_signature(master, path, expires_at);
    if !crypto::same_bytes(want.as_bytes(), sig.to_ascii_lowercase().as_bytes()) {
        return Err(upload_err(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    if now_ms > expires_at.saturating_mul(1000) {
        return Err(upload_err(403, "AccessDenied", "Request has expired"));
    }
    Ok(())
}

/// The error for a body over `max` bytes (declared, or found while it
/// streams past [`UploadSlot::max_bytes`]).
pub fn upload_too_large(max: u64) -> UploadError {
    upload_err(
        400,
        "EntityTooLarge",
        format!("Your proposed upload exceeds the maximum allowed size ({max} bytes)."),
    )
}

/// S3's checks of the SSE-C headers; the presented key when they pass.
fn check_sse(r: &UploadRequest) -> Result<DataKey, UploadError> {
    let invalid = |m: &str| upload_err(400, "InvalidArgument", m);
    let (alg, key) = match (&r.sse_algorithm, &r.sse_key) {
        (None, None) => {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 provide a valid encryption algorithm. This upload requires the \
                 x-amz-server-side-encryption-customer-algorithm, -key and -key-MD5 headers.",
            ));
        }
        (None, Some(_)) => {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 provide a valid encryption algorithm.",
            ));
        }
        (Some(_), None) => {
            return Err(invalid(
                "Requests specifying Server Side Encryption with Customer provided keys must \
                 provide an appropriate secret key.",
            ));
        }
        (Some(a), Some(k)) => (a, k),
    };
    if alg != "AES256" {
        return Err(upload_err(
            400,
            "InvalidEncryptionAlgorithmError",
            "The encryption request you specified is not valid. The valid value is AES256.",
        ));
    }
    let bytes = crypto::from_base64(key).unwrap_or_default();
    let Some(data_key) = DataKey::from_bytes(&bytes) else {
        return Err(invalid(
            "The secret key was invalid for the specified algorithm.",
        ));
    };
    let Some(md5) = &r.sse_key_md5 else {
        return Err(invalid(
            "Requests specifying Server Side Encryption with Customer provided keys must \
             provide the client calculated MD5 of the secret key.",
        ));
    };
    if !crypto::same_bytes(crypto::md5_base64(&bytes).as_bytes(), md5.trim().as_bytes()) {
        return Err(invalid(
            "The calculated MD5 hash of the key did not match the hash that was provided.",
        ));
    }
    Ok(data_key)
}
