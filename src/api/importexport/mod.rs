/*!
AWS Import/Export jobs: a YAML manifest describes moving data between a
device and buckets.

Operations and members are those of `importexport.json`: CreateJob,
GetStatus, ListJobs, UpdateJob, CancelJob and GetShippingLabel, each a
library call taking the [`Caller`] (the access key that signed the
request: manifests name it, and jobs belong to it). Errors are the
model's exceptions ([`Exception`]), each with a message naming the
parameter or manifest field.

A job is recorded `Pending` with a signature, base64(HMAC-SHA1(secret
key, JobId + "\n" + manifest with CRLF as LF)), and the text of the
`SIGNATURE` file its device must carry. The device's arrival is
[`crate::job::run_device`] (`sluice importexport run JOBID --device
PATH`), which moves GetStatus's `ProgressCode` through `InProgress` to
`Complete` or `SuccessWithErrors` and writes the log object. A job whose
device has not arrived 30 days after its creation has expired.

What sluice keeps of buckets beyond their objects
([`crate::store::BucketSettings`]) decides `BucketPermissionException`
(a bucket owned by another access key) and `MultipleRegionsException`
(buckets of one manifest in different regions; a bucket with no recorded
region is in [`ImportExportConfig::region`]).
*/

pub mod manifest;

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::escape_markup;
use crate::crypto::to_base64;
use crate::job::{
    Clock, Direction, JobSpec, JobStatus, Objects, TRANSFER_EXPIRY_MS, TransferJob, signature_file,
};
use crate::store::{
    AccountId, JobFilter, JobKind, JobRecord, JobRef, Store, StoreError, Transition,
};
use crate::time::iso8601;
use manifest::{Address, Manifest};

/// The signing name botocore uses.
pub const SIGNING_NAME: &str = "IngestionService";

/// The API version (`Version=` of every request).
pub const API_VERSION: &str = "2010-06-01";

/// The XML namespace of responses.
pub const XML_NAMESPACE: &str = "http://importexport.amazonaws.com/doc/2010-06-01/";

/// The bucket of the service's own objects that shipping labels go to.
pub const LABELS_BUCKET: &str = "labels";

/// The client tool version (`APIVersion`) accepted when given.
pub const CLIENT_VERSION: &str = "2.0";

/// The model's exceptions.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
#[allow(missing_docs)]
pub enum Exception {
    MissingParameter,
    InvalidParameter,
    InvalidAccessKeyId,
    InvalidAddress,
    InvalidManifestField,
    MissingManifestField,
    NoSuchBucket,
    MissingCustoms,
    InvalidCustoms,
    InvalidFileSystem,
    MultipleRegions,
    BucketPermission,
    MalformedManifest,
    CreateJobQuotaExceeded,
    InvalidJobId,
    InvalidVersion,
    ExpiredJobId,
    CanceledJobId,
    UnableToCancelJobId,
    UnableToUpdateJobId,
    /// Ours (`InternalFailure`, 500): the server log has the cause.
    Internal,
}

impl Exception {
    /// Every exception.
    pub const ALL: [Exception; 21] = [
        Exception::MissingParameter,
        Exception::InvalidParameter,
        Exception::InvalidAccessKeyId,
        Exception::InvalidAddress,
        Exception::InvalidManifestField,
        Exception::MissingManifestField,
        Exception::NoSuchBucket,
        Exception::MissingCustoms,
        Exception::InvalidCustoms,
        Exception::InvalidFileSystem,
        Exception::MultipleRegions,
        Exception::BucketPermission,
        Exception::MalformedManifest,
        Exception::CreateJobQuotaExceeded,
        Exception::InvalidJobId,
        Exception::InvalidVersion,
        Exception::ExpiredJobId,
        Exception::CanceledJobId,
        Exception::UnableToCancelJobId,
        Exception::UnableToUpdateJobId,
        Exception::Internal,
    ];

    /// The error code on the wire: the model's shape name.
    pub fn code(self) -> &'static str {
        use Exception::*;
        match self {
            MissingParameter => "MissingParameterException",
            InvalidParameter => "InvalidParameterException",
            InvalidAccessKeyId => "InvalidAccessKeyIdException",
            InvalidAddress => "InvalidAddressException",
            InvalidManifestField => "InvalidManifestFieldException",
            MissingManifestField => "MissingManifestFieldException",
            NoSuchBucket => "NoSuchBucketException",
            MissingCustoms => "MissingCustomsException",
            InvalidCustoms => "InvalidCustomsException",
            InvalidFileSystem => "InvalidFileSystemException",
            MultipleRegions => "MultipleRegionsException",
            BucketPermission => "BucketPermissionException",
            MalformedManifest => "MalformedManifestException",
            CreateJobQuotaExceeded => "CreateJobQuotaExceededException",
            InvalidJobId => "InvalidJobIdException",
            InvalidVersion => "InvalidVersionException",
            ExpiredJobId => "ExpiredJobIdException",
            CanceledJobId => "CanceledJobIdException",
            UnableToCancelJobId => "UnableToCancelJobIdException",
            UnableToUpdateJobId => "UnableToUpdateJobIdException",
            Internal => "InternalFailure",
        }
    }

    /// The HTTP status: 400 for all the model's, 500 for ours.
    pub fn http_status(self) -> u16 {
        if self == Exception::Internal {
            500
        } else {
            400
        }
    }
}

/// An operation's error.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ImportExportError {
    /// Which exception.
    pub exception: Exception,
    /// What is wrong, naming the parameter or field.
    pub message: String,
}

impl ImportExportError {
    /// An error.
    pub fn new(exception: Exception, message: impl Into<String>) -> ImportExportError {
        ImportExportError {
            exception,
            message: message.into(),
        }
    }

    /// `InternalFailure`. The cause goes to the log, not to the caller.
    pub fn internal(cause: &dyn fmt::Display) -> ImportExportError {
        eprintln!("sluice: internal error: {cause}");
        ImportExportError::new(
            Exception::Internal,
            "internal error; the server log has the cause",
        )
    }
}

impl fmt::Display for ImportExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.exception.code(), self.message)
    }
}

impl std::error::Error for ImportExportError {}

impl From<StoreError> for ImportExportError {
    fn from(e: StoreError) -> ImportExportError {
        ImportExportError::internal(&e)
    }
}

type Result<T> = std::result::Result<T, ImportExportError>;

/// Who is asking: the access key that signed the request, with its secret
/// (which signs the job; it is not stored).
#[derive(Clone)]
pub struct Caller {
    /// The access key id.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How the service is set up.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ImportExportConfig {
    /// The region of buckets with no recorded region.
    pub region: String,
    /// Return addresses outside this country need customs.
    pub home_country: String,
    /// Jobs one access key may create in 24 hours
    /// (`CreateJobQuotaExceededException` past it).
    pub max_jobs_per_day: usize,
    /// The account whose jobs and buckets these are.
    pub account: AccountId,
}

impl Default for ImportExportConfig {
    fn default() -> ImportExportConfig {
        ImportExportConfig {
            region: "us-east-1".into(),
            home_country: "US".into(),
            max_jobs_per_day: 100,
            account: AccountId::default(),
        }
    }
}

/// `CreateJobInput`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct CreateJobInput {
    /// `Import` or `Export`.
    pub job_type: Option<String>,
    /// The manifest's text.
    pub manifest: Option<String>,
    /// For internal use (accepted and not used).
    pub manifest_addendum: Option<String>,
    /// Check, and create nothing.
    pub validate_only: Option<bool>,
    /// The client tool version.
    pub api_version: Option<String>,
}

/// `UpdateJobInput`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct UpdateJobInput {
    /// The job.
    pub job_id: Option<String>,
    /// The new manifest.
    pub manifest: Option<String>,
    /// The job's type.
    pub job_type: Option<String>,
    /// Check, and change nothing.
    pub validate_only: Option<bool>,
    /// The client tool version.
    pub api_version: Option<String>,
}

/// `GetStatusInput` and `CancelJobInput`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct JobInput {
    /// The job.
    pub job_id: Option<String>,
    /// The client tool version.
    pub api_version: Option<String>,
}

/// `ListJobsInput`.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ListJobsInput {
    /// At most this many (1 to 1000; 1000 when absent).
    pub max_jobs: Option<i64>,
    /// The job id to list after.
    pub marker: Option<String>,
    /// The client tool version.
    pub api_version: Option<String>,
}

/// `GetShippingLabelInput`: the jobs, and address lines that replace the
/// first job's return address line by line.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
#[allow(missing_docs)]
pub struct GetShippingLabelInput {
    pub job_ids: Vec<String>,
    pub name: Option<String>,
    pub company: Option<String>,
    pub phone_number: Option<String>,
    pub country: Option<String>,
    pub state_or_province: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub street1: Option<String>,
    pub street2: Option<String>,
    pub street3: Option<String>,
    pub api_version: Option<String>,
}

/// `Artifact`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Artifact {
    /// What it is.
    pub description: String,
    /// Where.
    #[serde(rename = "URL")]
    pub url: String,
}

/// `CreateJobOutput`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateJobOutput {
    /// The job (absent when only validating).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// `Import` or `Export`.
    pub job_type: String,
    /// The device's signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The text of the device's `SIGNATURE` file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_file_contents: Option<String>,
    /// What is worth knowing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_message: Option<String>,
    /// Documents of the job.
    pub artifact_list: Vec<Artifact>,
}

/// `GetStatusOutput`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct GetStatusOutput {
    pub job_id: String,
    pub job_type: String,
    pub location_code: String,
    pub location_message: String,
    pub progress_code: String,
    pub progress_message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_count: Option<u64>,
    pub signature: String,
    pub signature_file_contents: String,
    pub current_manifest: String,
    /// ISO 8601.
    pub creation_date: String,
    pub artifact_list: Vec<Artifact>,
}

/// `Job` of a `ListJobsOutput`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct JobSummary {
    pub job_id: String,
    /// ISO 8601.
    pub creation_date: String,
    pub is_canceled: bool,
    pub job_type: String,
}

/// `ListJobsOutput`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListJobsOutput {
    /// Newest first.
    pub jobs: Vec<JobSummary>,
    /// More after the last; call again with it as `Marker`.
    pub is_truncated: bool,
}

/// `CancelJobOutput` and `UpdateJobOutput`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SuccessOutput {
    /// Whether it was done.
    pub success: bool,
    /// What is worth knowing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning_message: Option<String>,
    /// Documents of the job (UpdateJob).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_list: Option<Vec<Artifact>>,
}

/// `GetShippingLabelOutput`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetShippingLabelOutput {
    /// Where the label is (a `file://` URL).
    #[serde(rename = "ShippingLabelURL")]
    pub shipping_label_url: String,
    /// What is worth knowing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// A stored Import/Export job with its request read.
struct Job {
    record: JobRecord,
    spec: TransferJob,
}

impl Job {
    fn canceled(&self) -> bool {
        self.record.status == JobStatus::Stopped
    }

    fn expired(&self, now_ms: i64) -> bool {
        self.record.status == JobStatus::Created
            && self.record.created_ms + TRANSFER_EXPIRY_MS <= now_ms
    }
}

/// The Import/Export service over a store and buckets.
#[derive(Clone)]
pub struct ImportExport {
    store: Arc<dyn Store>,
    objects: Objects,
    /// Where shipping labels go: the service's own objects, bucket
    /// [`LABELS_BUCKET`].
    labels: Objects,
    config: ImportExportConfig,
    clock: Clock,
}

impl fmt::Debug for ImportExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportExport")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn required<'a>(member: &str, v: &'a Option<String>) -> Result<&'a str> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or_else(|| {
        ImportExportError::new(Exception::MissingParameter, format!("{member} is required"))
    })
}

fn check_version(v: &Option<String>) -> Result<()> {
    match v.as_deref() {
        Some(x) if x != CLIENT_VERSION => Err(ImportExportError::new(
            Exception::InvalidVersion,
            format!(
                "APIVersion {x:?} is not a client tool version this service takes ({CLIENT_VERSION})"
            ),
        )),
        _ => Ok(()),
    }
}

fn direction(member: &str, v: &str) -> Result<Direction> {
    match v {
        "Import" => Ok(Direction::Import),
        "Export" => Ok(Direction::Export),
        _ => Err(ImportExportError::new(
            Exception::InvalidParameter,
            format!("{member} must be Import or Export; it is {v:?}"),
        )),
    }
}

/// base64(HMAC-SHA1(secret, job id + "\n" + manifest with CRLF as LF)).
pub fn job_signature(secret_access_key: &str, job_id: &str, manifest: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret_access_key.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(job_id.as_bytes());
    mac.update(b"\n");
    mac.update(manifest.replace("\r\n", "\n").as_bytes());
    to_base64(&mac.finalize().into_bytes())
}

/// A fresh job id: six uppercase letters and digits, as the service's.
fn new_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uuid::Uuid::new_v4().as_bytes()[..6]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

impl ImportExport {
    /// The service over `store` and the buckets of `objects`, writing
    /// shipping labels into bucket [`LABELS_BUCKET`] of `labels` (made if
    /// missing).
    ///
    /// # Errors
    ///
    /// When the labels' bucket cannot be made.
    pub fn new(
        store: Arc<dyn Store>,
        objects: Objects,
        labels: Objects,
        config: ImportExportConfig,
        clock: Clock,
    ) -> std::result::Result<ImportExport, crate::objects::ObjectError> {
        crate::objects::ensure_bucket(&*labels, LABELS_BUCKET)?;
        Ok(ImportExport {
            store,
            objects,
            labels,
            config,
            clock,
        })
    }

    fn now(&self) -> i64 {
        (self.clock)()
    }

    fn job_ref<'a>(&'a self, id: &'a str) -> JobRef<'a> {
        JobRef {
            account: &self.config.account,
            id,
        }
    }

    /// Parses and checks a manifest as `caller` submits it: the fields,
    /// the access key, the buckets (they exist, the caller may use them,
    /// they are in one region).
    fn check_manifest(&self, caller: &Caller, text: &str, dir: Direction) -> Result<Manifest> {
        let m = manifest::parse(text, dir, &self.config.home_country)?;
        if m.access_key_id != caller.access_key_id {
            return Err(ImportExportError::new(
                Exception::InvalidAccessKeyId,
                format!(
                    "the manifest's accessKeyId is {}, but the request is signed with {}; they \
                     must be the same",
                    m.access_key_id, caller.access_key_id
                ),
            ));
        }
        let mut regions: Vec<(String, String)> = Vec::new();
        for (field, bucket) in m.buckets() {
            let exists = self
                .objects
                .bucket_exists(&bucket)
                .map_err(|e| ImportExportError::internal(&e.message))?;
            if !exists {
                return Err(ImportExportError::new(
                    Exception::NoSuchBucket,
                    format!("{field}: the bucket {bucket} does not exist"),
                ));
            }
            let owner = crate::store::bucket_owner(self.store.as_ref(), &bucket)?;
            if owner != self.config.account {
                return Err(ImportExportError::new(
                    Exception::BucketPermission,
                    format!("{field}: the bucket {bucket} belongs to another account"),
                ));
            }
            let settings = self.store.bucket_settings(&self.config.account, &bucket)?;
            if let Some(owner) = settings.as_ref().and_then(|s| s.owner.as_deref())
                && owner != caller.access_key_id
            {
                return Err(ImportExportError::new(
                    Exception::BucketPermission,
                    format!(
                        "{field}: the bucket {bucket} belongs to another access key; {} may not \
                         use it",
                        caller.access_key_id
                    ),
                ));
            }
            let region = settings
                .and_then(|s| s.region)
                .unwrap_or_else(|| self.config.region.clone());
            if !regions.iter().any(|(b, _)| *b == bucket) {
                regions.push((bucket, region));
            }
        }
        if regions.iter().any(|(_, r)| *r != regions[0].1) {
            let list: Vec<String> = regions.iter().map(|(b, r)| format!("{b} in {r}")).collect();
            return Err(ImportExportError::new(
                Exception::MultipleRegions,
                format!(
                    "the manifest's buckets are in different regions ({}); a job's buckets \
                     must be in one",
                    list.join(", ")
                ),
            ));
        }
        Ok(m)
    }

    /// The caller's Import/Export jobs, newest first.
    fn jobs_of(&self, caller: &Caller) -> Result<Vec<Job>> {
        let all = self.store.jobs(&JobFilter {
            account: Some(self.config.account.clone()),
            kind: Some(JobKind::Transfer),
            ..JobFilter::default()
        })?;
        Ok(all
            .into_iter()
            .filter_map(|record| {
                let JobSpec::Transfer(spec) = JobSpec::of(&record).ok()? else {
                    return None;
                };
                (spec.owner == caller.access_key_id).then_some(Job { record, spec })
            })
            .collect())
    }

    /// The job, if it is one of the caller's.
    fn job(&self, caller: &Caller, id: Option<&str>) -> Result<Job> {
        let Some(id) = id.filter(|i| !i.is_empty()) else {
            return Err(ImportExportError::new(
                Exception::InvalidJobId,
                "JobId is missing",
            ));
        };
        let unknown = || {
            ImportExportError::new(
                Exception::InvalidJobId,
                format!("JobId {id} is not a job of this service"),
            )
        };
        // Job ids are letters and digits; anything else is no job.
        if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(unknown());
        }
        let record = self.store.job(self.job_ref(id))?.ok_or_else(unknown)?;
        if record.kind != JobKind::Transfer {
            return Err(unknown());
        }
        let JobSpec::Transfer(spec) = JobSpec::of(&record)? else {
            return Err(unknown());
        };
        if spec.owner != caller.access_key_id {
            return Err(ImportExportError::new(
                Exception::InvalidAccessKeyId,
                format!(
                    "job {id}'s manifest names another access key; this request is signed with {}",
                    caller.access_key_id
                ),
            ));
        }
        Ok(Job { record, spec })
    }

    /// The job, if it is the caller's and neither canceled nor expired.
    fn live_job(&self, caller: &Caller, id: Option<&str>) -> Result<Job> {
        let job = self.job(caller, id)?;
        let id = &job.record.id;
        if job.canceled() {
            return Err(ImportExportError::new(
                Exception::CanceledJobId,
                format!("job {id} was canceled"),
            ));
        }
        if job.expired(self.now()) {
            return Err(ImportExportError::new(
                Exception::ExpiredJobId,
                format!(
                    "job {id} expired on {}: its device did not arrive within 30 days",
                    iso8601(job.record.created_ms + TRANSFER_EXPIRY_MS)
                ),
            ));
        }
        Ok(job)
    }

    fn transfer(&self, caller: &Caller, id: &str, text: &str, m: Manifest) -> TransferJob {
        TransferJob {
            direction: if m.import.is_some() {
                Direction::Import
            } else {
                Direction::Export
            },
            owner: caller.access_key_id.clone(),
            signature: job_signature(&caller.secret_access_key, id, text),
            manifest: text.to_owned(),
            device_id: m.device_id,
            log_bucket: m.log_bucket,
            log_prefix: m.log_prefix,
            import: m.import,
            export: m.export,
            label_url: None,
        }
    }

    /// CreateJob.
    ///
    /// # Errors
    ///
    /// `MissingParameter`, `InvalidParameter`, `InvalidVersion`; the
    /// manifest's exceptions ([`manifest::parse`]); `InvalidAccessKeyId`,
    /// `NoSuchBucket`, `BucketPermission`, `MultipleRegions`;
    /// `CreateJobQuotaExceeded`.
    pub fn create_job(&self, caller: &Caller, r: &CreateJobInput) -> Result<CreateJobOutput> {
        check_version(&r.api_version)?;
        let dir = direction("JobType", required("JobType", &r.job_type)?)?;
        let text = required("Manifest", &r.manifest)?;
        let validate_only = r.validate_only.ok_or_else(|| {
            ImportExportError::new(Exception::MissingParameter, "ValidateOnly is required")
        })?;
        let m = self.check_manifest(caller, text, dir)?;
        let now = self.now();
        let today = self
            .jobs_of(caller)?
            .iter()
            .filter(|j| j.record.created_ms > now - 24 * 3600 * 1000)
            .count();
        if today >= self.config.max_jobs_per_day {
            return Err(ImportExportError::new(
                Exception::CreateJobQuotaExceeded,
                format!(
                    "access key {} created {today} jobs in the last 24 hours; the quota is {}",
                    caller.access_key_id, self.config.max_jobs_per_day
                ),
            ));
        }
        if validate_only {
            return Ok(CreateJobOutput {
                job_id: None,
                job_type: dir.as_str().into(),
                signature: None,
                signature_file_contents: None,
                warning_message: Some(
                    "ValidateOnly: the manifest and parameters are valid; no job was created"
                        .into(),
                ),
                artifact_list: Vec::new(),
            });
        }
        loop {
            let id = new_id();
            let spec = self.transfer(caller, &id, text, m.clone());
            let display_name = Some(format!("{} of device {}", dir.as_str(), spec.device_id));
            let job = JobSpec::Transfer(spec.clone()).new_job(
                &self.config.account,
                &id,
                display_name,
                now,
            );
            match self.store.insert_job(&job) {
                Ok(()) => {
                    return Ok(CreateJobOutput {
                        signature_file_contents: Some(signature_file(&id, &spec.signature)),
                        signature: Some(spec.signature),
                        job_id: Some(id),
                        job_type: dir.as_str().into(),
                        warning_message: None,
                        artifact_list: Vec::new(),
                    });
                }
                Err(StoreError::JobExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// GetStatus.
    ///
    /// # Errors
    ///
    /// `InvalidJobId`, `InvalidAccessKeyId`, `CanceledJobId`,
    /// `ExpiredJobId`, `InvalidVersion`.
    pub fn get_status(&self, caller: &Caller, r: &JobInput) -> Result<GetStatusOutput> {
        check_version(&r.api_version)?;
        let Job { record, spec } = self.live_job(caller, r.job_id.as_deref())?;
        let c = &record.counters;
        let log_key = spec.log_key(&record.id);
        let message = match record.status {
            JobStatus::Created => "The specified job has not started.".to_owned(),
            JobStatus::Queued | JobStatus::Running => format!(
                "The data on your device is being transferred: {} of {} files done.",
                c.completed_pieces, c.total_pieces
            ),
            JobStatus::Succeeded => format!(
                "The data transferred successfully. The log was saved to {log_key} in the \
                 bucket {}.",
                spec.log_bucket
            ),
            JobStatus::PartiallySucceeded => format!(
                "The data transfer completed with {} errors. See {log_key} in the bucket {} \
                 for more details.",
                c.failed, spec.log_bucket
            ),
            _ => format!(
                "The job was aborted: {}",
                record
                    .status_reason
                    .as_deref()
                    .unwrap_or("no reason recorded")
            ),
        };
        let arrived = record.status != JobStatus::Created;
        let finished = matches!(
            record.status,
            JobStatus::Succeeded | JobStatus::PartiallySucceeded
        );
        Ok(GetStatusOutput {
            job_type: spec.direction.as_str().into(),
            location_code: if arrived { "AtAWS" } else { "NotReceived" }.into(),
            location_message: if arrived {
                "Your device has arrived."
            } else {
                "AWS has not received your device."
            }
            .into(),
            progress_code: progress_of(record.status).into(),
            progress_message: message,
            log_bucket: arrived.then(|| spec.log_bucket.clone()),
            log_key: arrived.then_some(log_key),
            error_count: finished.then_some(c.failed),
            signature_file_contents: signature_file(&record.id, &spec.signature),
            signature: spec.signature.clone(),
            current_manifest: spec.manifest.clone(),
            creation_date: iso8601(record.created_ms),
            artifact_list: artifacts(&spec),
            job_id: record.id,
        })
    }

    /// ListJobs: the caller's jobs, newest first.
    ///
    /// # Errors
    ///
    /// `InvalidParameter` (`MaxJobs` out of range, a `Marker` that is not
    /// one of the caller's jobs), `InvalidVersion`.
    pub fn list_jobs(&self, caller: &Caller, r: &ListJobsInput) -> Result<ListJobsOutput> {
        check_version(&r.api_version)?;
        let max = r.max_jobs.unwrap_or(1000);
        if !(1..=1000).contains(&max) {
            return Err(ImportExportError::new(
                Exception::InvalidParameter,
                format!("MaxJobs must be from 1 to 1000; it is {max}"),
            ));
        }
        let jobs = self.jobs_of(caller)?;
        let start = match r.marker.as_deref().filter(|m| !m.is_empty()) {
            None => 0,
            Some(m) => {
                jobs.iter().position(|j| j.record.id == m).ok_or_else(|| {
                    ImportExportError::new(
                        Exception::InvalidParameter,
                        format!("Marker {m} is not one of your jobs"),
                    )
                })? + 1
            }
        };
        let rest = &jobs[start.min(jobs.len())..];
        let page: Vec<JobSummary> = rest
            .iter()
            .take(max as usize)
            .map(|j| JobSummary {
                job_id: j.record.id.clone(),
                creation_date: iso8601(j.record.created_ms),
                is_canceled: j.canceled(),
                job_type: j.spec.direction.as_str().into(),
            })
            .collect();
        Ok(ListJobsOutput {
            is_truncated: rest.len() > page.len(),
            jobs: page,
        })
    }

    /// CancelJob: only before the device arrives.
    ///
    /// # Errors
    ///
    /// `InvalidJobId`, `InvalidAccessKeyId`, `CanceledJobId`,
    /// `ExpiredJobId`, `UnableToCancelJobId`, `InvalidVersion`.
    pub fn cancel_job(&self, caller: &Caller, r: &JobInput) -> Result<SuccessOutput> {
        check_version(&r.api_version)?;
        let job = self.live_job(caller, r.job_id.as_deref())?;
        let unable = |status: JobStatus| {
            ImportExportError::new(
                Exception::UnableToCancelJobId,
                format!(
                    "job {} cannot be canceled: its device has arrived ({})",
                    job.record.id,
                    progress_of(status)
                ),
            )
        };
        if job.record.status != JobStatus::Created {
            return Err(unable(job.record.status));
        }
        let t = Transition {
            reason: Some("canceled by CancelJob"),
            ..Transition::new(JobStatus::Created, JobStatus::Stopped, self.now())
        };
        match self.store.transition(self.job_ref(&job.record.id), &t) {
            Ok(_) => Ok(SuccessOutput {
                success: true,
                warning_message: None,
                artifact_list: None,
            }),
            Err(StoreError::Transition { actual, .. }) => Err(unable(actual)),
            Err(e) => Err(e.into()),
        }
    }

    /// UpdateJob: a new manifest, before the device arrives. The signature
    /// changes with the manifest: the device must carry the new
    /// `SIGNATURE` file (GetStatus gives it).
    ///
    /// # Errors
    ///
    /// As CreateJob's, and `InvalidJobId`, `CanceledJobId`,
    /// `ExpiredJobId`, `UnableToUpdateJobId`.
    pub fn update_job(&self, caller: &Caller, r: &UpdateJobInput) -> Result<SuccessOutput> {
        check_version(&r.api_version)?;
        let id = required("JobId", &r.job_id)?;
        let text = required("Manifest", &r.manifest)?;
        let dir = direction("JobType", required("JobType", &r.job_type)?)?;
        let validate_only = r.validate_only.ok_or_else(|| {
            ImportExportError::new(Exception::MissingParameter, "ValidateOnly is required")
        })?;
        let job = self.live_job(caller, Some(id))?;
        if dir != job.spec.direction {
            return Err(ImportExportError::new(
                Exception::InvalidParameter,
                format!(
                    "JobType is {}, but job {id} is an {} job",
                    dir.as_str(),
                    job.spec.direction.as_str()
                ),
            ));
        }
        let unable = |status: JobStatus| {
            ImportExportError::new(
                Exception::UnableToUpdateJobId,
                format!(
                    "job {id} cannot be updated: its device has arrived ({})",
                    progress_of(status)
                ),
            )
        };
        if job.record.status != JobStatus::Created {
            return Err(unable(job.record.status));
        }
        let m = self.check_manifest(caller, text, dir)?;
        if validate_only {
            return Ok(SuccessOutput {
                success: true,
                warning_message: Some(
                    "ValidateOnly: the manifest is valid; the job was not changed".into(),
                ),
                artifact_list: Some(artifacts(&job.spec)),
            });
        }
        let mut spec = self.transfer(caller, id, text, m);
        spec.label_url = job.spec.label_url.clone();
        let stored = JobSpec::Transfer(spec.clone()).to_stored();
        match self.store.update_spec(self.job_ref(id), &stored) {
            Ok(_) => Ok(SuccessOutput {
                success: true,
                warning_message: (spec.signature != job.spec.signature).then(|| {
                    "the job's signature changed with its manifest: write the new \
                     SignatureFileContents (GetStatus) to the device's SIGNATURE file"
                        .to_owned()
                }),
                artifact_list: Some(artifacts(&spec)),
            }),
            Err(StoreError::Transition { actual, .. }) => Err(unable(actual)),
            Err(e) => Err(e.into()),
        }
    }

    /// GetShippingLabel: writes a label (HTML) for the jobs' devices,
    /// shipped in one package, as an object of bucket [`LABELS_BUCKET`] of
    /// the service's own objects, and gives where it is.
    ///
    /// # Errors
    ///
    /// `InvalidJobId` (none given, or unknown), `InvalidAccessKeyId`,
    /// `CanceledJobId`, `ExpiredJobId`, `InvalidParameter` (a device that
    /// has arrived), `InvalidAddress`, `InvalidVersion`.
    pub fn get_shipping_label(
        &self,
        caller: &Caller,
        r: &GetShippingLabelInput,
    ) -> Result<GetShippingLabelOutput> {
        check_version(&r.api_version)?;
        if r.job_ids.is_empty() {
            return Err(ImportExportError::new(
                Exception::InvalidJobId,
                "jobIds is missing: name at least one job",
            ));
        }
        let mut jobs = Vec::new();
        for id in &r.job_ids {
            let job = self.live_job(caller, Some(id))?;
            if job.record.status != JobStatus::Created {
                return Err(ImportExportError::new(
                    Exception::InvalidParameter,
                    format!("jobIds: the device of job {id} has arrived already"),
                ));
            }
            if !jobs.iter().any(|j: &Job| j.record.id == job.record.id) {
                jobs.push(job);
            }
        }
        let first = manifest::parse(
            &jobs[0].spec.manifest,
            jobs[0].spec.direction,
            &self.config.home_country,
        )?;
        let mut a: Address = first.return_address;
        for (slot, given) in [
            (&mut a.name, &r.name),
            (&mut a.street1, &r.street1),
            (&mut a.city, &r.city),
            (&mut a.postal_code, &r.postal_code),
            (&mut a.country, &r.country),
            (&mut a.phone_number, &r.phone_number),
        ] {
            if let Some(v) = given {
                *slot = v.clone();
            }
        }
        for (slot, given) in [
            (&mut a.company, &r.company),
            (&mut a.street2, &r.street2),
            (&mut a.street3, &r.street3),
            (&mut a.state_or_province, &r.state_or_province),
        ] {
            if given.is_some() {
                slot.clone_from(given);
            }
        }
        a.check("address")?;
        let ids: Vec<&str> = jobs.iter().map(|j| j.record.id.as_str()).collect();
        let html = label_html(&a, &jobs, &iso8601(self.now()));
        // Named by a digest of the jobs, not their ids end to end: a label
        // for 36 jobs would be a name longer than a file's may be.
        let digest = Sha256::digest(ids.join("\n").as_bytes());
        let key = format!(
            "label-{}-{}.html",
            ids[0],
            crate::crypto::to_hex(&digest[..12])
        );
        let attrs = crate::objects::ObjectAttributes {
            content_type: Some("text/html; charset=utf-8".into()),
            ..crate::objects::ObjectAttributes::default()
        };
        crate::objects::put(&*self.labels, LABELS_BUCKET, &key, html.as_bytes(), &attrs)
            .map_err(|e| ImportExportError::internal(&e))?;
        let url = self.labels.locate(LABELS_BUCKET, &key);
        for job in &jobs {
            let mut spec = job.spec.clone();
            spec.label_url = Some(url.clone());
            let stored = JobSpec::Transfer(spec).to_stored();
            // A device that arrived meanwhile keeps its job as it was.
            let _ = self
                .store
                .update_spec(self.job_ref(&job.record.id), &stored);
        }
        Ok(GetShippingLabelOutput {
            shipping_label_url: url,
            warning: None,
        })
    }
}

fn progress_of(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Created => "Pending",
        JobStatus::Queued | JobStatus::Running => "InProgress",
        JobStatus::Succeeded => "Complete",
        JobStatus::PartiallySucceeded => "SuccessWithErrors",
        JobStatus::Stopped => "Canceled",
        JobStatus::Failed => "DeviceError",
    }
}

fn artifacts(spec: &TransferJob) -> Vec<Artifact> {
    spec.label_url
        .iter()
        .map(|u| Artifact {
            description: "Shipping label".into(),
            url: u.clone(),
        })
        .collect()
}

fn label_html(from: &Address, jobs: &[Job], at: &str) -> String {
    let lines = |l: Vec<String>| -> String {
        l.iter()
            .map(|x| escape_markup(x))
            .collect::<Vec<_>>()
            .join("<br>\n")
    };
    let mut devices = String::new();
    for j in jobs {
        devices.push_str(&format!(
            "<li>Job {} ({}): device {}. On arrival: <code>sluice importexport run {} \
             --device PATH</code></li>\n",
            escape_markup(&j.record.id),
            j.spec.direction.as_str(),
            escape_markup(&j.spec.device_id),
            escape_markup(&j.record.id),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Shipping label</title>\
         </head>\n<body>\n<h1>Shipping label</h1>\n<p>Printed {at}</p>\n<h2>From</h2>\n<p>{}</p>\n\
         <h2>To</h2>\n<p>AWS Import/Export (sluice)<br>\nthe machine that runs sluice</p>\n\
         <h2>Devices</h2>\n<ul>\n{devices}</ul>\n</body></html>\n",
        lines(from.lines())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_over_the_manifest_with_lf() {
        let a = job_signature("secret", "ABC123", "a: 1\r\nb: 2\r\n");
        let b = job_signature("secret", "ABC123", "a: 1\nb: 2\n");
        assert_eq!(a, b);
        assert_ne!(a, job_signature("other", "ABC123", "a: 1\nb: 2\n"));
        assert_ne!(a, job_signature("secret", "ABC124", "a: 1\nb: 2\n"));
        // HMAC-SHA1 is 20 bytes: 28 characters of base64.
        assert_eq!(a.len(), 28);
    }

    #[test]
    fn ids_are_six_letters_and_digits() {
        let id = new_id();
        assert_eq!(id.len(), 6);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
    }
}
