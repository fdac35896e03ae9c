/*!
Amazon Pinpoint's apps, import jobs, endpoints and segments.

Operations and members are those of `pinpoint.json`: CreateApp, GetApp,
GetApps, DeleteApp, CreateImportJob, GetImportJob, GetImportJobs,
GetSegmentImportJobs, GetEndpoint, GetUserEndpoints, UpdateEndpoint,
UpdateEndpointsBatch, DeleteEndpoint, DeleteUserEndpoints, CreateSegment,
UpdateSegment, DeleteSegment, GetSegment, GetSegments, CreateExportJob,
GetExportJob, GetExportJobs and GetSegmentExportJobs. Dimensional segments
are checked here and evaluated by the store
([`crate::job::segment`]). Import jobs read endpoint files from buckets
([`crate::endpoints`] describes the format) and run on the job runner, at
most two per app at once unless configured otherwise.

`JobStatus` follows the service: `PENDING_JOB` while it waits for a
slot, then the phase
the runner records (`INITIALIZING`, `PROCESSING`, `COMPLETING` or
`FAILING`), then `COMPLETED` or `FAILED`. A job is `FAILED` when a piece
could not be processed (an object that cannot be read, a CSV header that
names no endpoint attributes) or when every row failed; otherwise rows
that break a rule are counted in `TotalFailures` and listed in `Failures`
(the first 100, each with its file and line) and the job is `COMPLETED`.
What the good pieces held is imported either way.
*/

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{ApiError, check_len, keyset_page};
use crate::endpoints::segment::{
    Dimensional, SegmentDimensions, SegmentGroupList, StoredDimensional,
};
use crate::endpoints::{Endpoint, Format};
use crate::job::segment::{self, SegmentError, SegmentKind};
use crate::job::{
    Clock, EndpointDocument, EndpointRequestError, ExportJob, ImportJob, JobSpec, JobStatus,
    Runner, dimensional_import, new_job_id, nothing_to_import, objects_to_import,
    write_requested_endpoints,
};
use crate::objects::{ObjectErrorKind, ObjectUrl, resolve};
use crate::store::{
    AccountId, App, EndpointsOf, JobFilter, JobKind, JobRecord, JobRef, Segment, Store,
    StoredEndpoint,
};
use crate::time::iso8601;

/// Pinpoint's signing name.
pub const SIGNING_NAME: &str = "mobiletargeting";

/// How the service names things.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct PinpointConfig {
    /// The region in ARNs.
    pub region: String,
    /// The account in ARNs.
    pub account: AccountId,
    /// Bytes per piece of an import job (the engine's default when
    /// `None`).
    pub piece_size: Option<u64>,
    /// Endpoints per piece (per file) of an export job
    /// ([`crate::job::PIECE_ENDPOINTS`] when `None`).
    pub export_piece_endpoints: Option<usize>,
}

impl Default for PinpointConfig {
    fn default() -> PinpointConfig {
        PinpointConfig {
            region: "us-east-1".into(),
            account: AccountId::default(),
            piece_size: None,
            export_piece_endpoints: None,
        }
    }
}

/// `CreateApplicationRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateApplicationRequest {
    /// The app's name.
    pub name: String,
    /// Tags.
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

/// `ApplicationResponse`.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApplicationResponse {
    /// `arn:aws:mobiletargeting:REGION:ACCOUNT:apps/ID`.
    pub arn: String,
    /// The app's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Tags.
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// ISO 8601.
    pub creation_date: String,
}

/// `ApplicationsResponse`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApplicationsResponse {
    /// This page.
    pub item: Vec<ApplicationResponse>,
    /// The next page's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A page request (`page-size`, `token`).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct PageRequest {
    /// Items per page, as the wire sends it (a string); 1 to 1000, 100
    /// when absent.
    pub page_size: Option<String>,
    /// The token of the previous page.
    pub token: Option<String>,
}

/// `ImportJobRequest`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportJobRequest {
    /// Make a segment of the imported endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub define_segment: Option<bool>,
    /// Kept and reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// `CSV` or `JSON`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Upsert the endpoints into the app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_endpoints: Option<bool>,
    /// An IAM role ARN; checked to be an ARN, otherwise unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `s3://bucket/key` or `s3://bucket/prefix/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_url: Option<String>,
    /// Add the endpoints to this existing segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// The name of the segment `DefineSegment` makes; without
    /// `DefineSegment` kept and given back, and no segment made (as the
    /// service documents it: a name "if DefineSegment is true").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_name: Option<String>,
}

/// `ImportJobResponse` and `ExportJobResponse`: a job with its request
/// as `Definition` (the model's `ImportJobResource` or
/// `ExportJobResource`).
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct JobResponse<D> {
    pub application_id: String,
    pub completed_pieces: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_date: Option<String>,
    pub creation_date: String,
    /// The request as it came, with what the job settled (the id of the
    /// segment an import defined or filled, the version an export read).
    pub definition: D,
    pub failed_pieces: u64,
    pub failures: Vec<String>,
    pub id: String,
    pub job_status: String,
    pub total_failures: u64,
    pub total_pieces: u64,
    pub total_processed: u64,
    /// `IMPORT` or `EXPORT`.
    #[serde(rename = "Type")]
    pub job_type: String,
}

/// `ImportJobResponse`.
pub type ImportJobResponse = JobResponse<ImportJobRequest>;
/// `ExportJobResponse`.
pub type ExportJobResponse = JobResponse<ExportJobRequest>;

/// `ImportJobsResponse` and `ExportJobsResponse`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobsResponse<D> {
    /// This page, newest first.
    pub item: Vec<JobResponse<D>>,
    /// The next page's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// `ImportJobsResponse`.
pub type ImportJobsResponse = JobsResponse<ImportJobRequest>;
/// `ExportJobsResponse`.
pub type ExportJobsResponse = JobsResponse<ExportJobRequest>;

/// `EndpointResponse`: the stored endpoint with what the service adds
/// (also each line of an export job's files).
pub type EndpointResponse = EndpointDocument;

/// `MessageBody`: what UpdateEndpoint and UpdateEndpointsBatch answer.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
pub struct MessageBody {
    /// `Accepted`.
    #[serde(rename = "Message")]
    pub message: String,
    /// A fresh id of the request.
    #[serde(rename = "RequestID")]
    pub request_id: String,
}

/// `EndpointBatchRequest`: the endpoints of UpdateEndpointsBatch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct EndpointBatchRequest {
    /// `EndpointBatchItem`s: an endpoint with its `Id`.
    #[serde(default)]
    pub item: Vec<Endpoint>,
}

/// Most endpoints one UpdateEndpointsBatch writes (the service's quota).
pub const MAX_BATCH_ENDPOINTS: usize = 100;

/// `ExportJobRequest` (and, given back, `ExportJobResource`).
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExportJobRequest {
    /// An IAM role ARN; checked to be an ARN, otherwise unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// `s3://bucket/prefix/`: the files go under `prefix/JOB-ID/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_url_prefix: Option<String>,
    /// Only this segment's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// The segment's version: its current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_version: Option<i64>,
}

/// `EndpointsResponse`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointsResponse {
    /// The endpoints.
    pub item: Vec<EndpointResponse>,
}

/// `SegmentImportResource`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct SegmentImportResource {
    pub channel_counts: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub format: String,
    pub role_arn: String,
    pub s3_url: String,
    pub size: u64,
}

/// `SegmentResponse`: an imported segment has its `ImportDefinition`, a
/// dimensional one its `Dimensions` or `SegmentGroups`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct SegmentResponse {
    pub application_id: String,
    pub arn: String,
    pub creation_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<SegmentDimensions>,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import_definition: Option<SegmentImportResource>,
    pub last_modified_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroupList>,
    pub segment_type: String,
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    pub version: u32,
}

/// `WriteSegmentRequest`: CreateSegment's and UpdateSegment's body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct WriteSegmentRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<SegmentDimensions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroupList>,
    #[serde(rename = "tags", default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

impl WriteSegmentRequest {
    fn dimensional(&self) -> Dimensional {
        Dimensional {
            dimensions: self.dimensions.clone(),
            segment_groups: self.segment_groups.clone(),
        }
    }

    fn defines(&self) -> bool {
        self.dimensions.is_some() || self.segment_groups.is_some()
    }
}

/// `SegmentsResponse`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SegmentsResponse {
    /// This page.
    pub item: Vec<SegmentResponse>,
    /// The next page's token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// The service.
#[derive(Clone)]
pub struct Pinpoint {
    runner: Arc<Runner>,
    config: PinpointConfig,
    clock: Clock,
}

impl std::fmt::Debug for Pinpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinpoint")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn not_found(what: &str, id: &str) -> ApiError {
    ApiError::not_found(format!("{what} {id} not found"))
}

fn segment_error(e: SegmentError) -> ApiError {
    match e {
        SegmentError::NoSegment(id) => not_found("Segment", &id),
        SegmentError::Invalid(why) => ApiError::bad_request(why),
        SegmentError::Store(e) => e.into(),
    }
}

impl Pinpoint {
    /// The service over `runner`, whose config must have `objects` (the
    /// buckets import jobs read).
    pub fn new(runner: Arc<Runner>, config: PinpointConfig, clock: Clock) -> Pinpoint {
        Pinpoint {
            runner,
            config,
            clock,
        }
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.runner.store()
    }

    fn account(&self) -> &AccountId {
        &self.config.account
    }

    fn app(&self, id: &str) -> Result<App, ApiError> {
        self.store()
            .app(self.account(), id)?
            .ok_or_else(|| not_found("Application", id))
    }

    fn app_response(&self, a: App) -> ApplicationResponse {
        let tags: BTreeMap<String, String> = serde_json::from_str(&a.tags).unwrap_or_default();
        ApplicationResponse {
            arn: format!(
                "arn:aws:mobiletargeting:{}:{}:apps/{}",
                self.config.region, self.config.account, a.id
            ),
            id: a.id,
            name: a.name,
            tags: (!tags.is_empty()).then_some(tags),
            creation_date: iso8601(a.created_ms),
        }
    }

    /// CreateApp.
    ///
    /// # Errors
    ///
    /// `BadRequestException` for an empty or overlong name or bad tags.
    pub fn create_app(
        &self,
        r: &CreateApplicationRequest,
    ) -> Result<ApplicationResponse, ApiError> {
        check_len("Name", &r.name, 1, 256)?;
        for (k, v) in r.tags.iter().flatten() {
            check_len("tags key", k, 1, 128)?;
            check_len("tags value", v, 0, 256)?;
        }
        let app = App {
            id: crate::job::new_job_id(),
            name: r.name.clone(),
            tags: serde_json::to_string(&r.tags.clone().unwrap_or_default())
                .map_err(|e| ApiError::internal(&e))?,
            created_ms: (self.clock)(),
        };
        self.store().create_app(self.account(), &app)?;
        Ok(self.app_response(app))
    }

    /// GetApp.
    ///
    /// # Errors
    ///
    /// `NotFoundException`.
    pub fn get_app(&self, id: &str) -> Result<ApplicationResponse, ApiError> {
        let app = self.app(id)?;
        Ok(self.app_response(app))
    }

    /// GetApps, oldest first.
    ///
    /// # Errors
    ///
    /// `BadRequestException` for a bad page size or token.
    pub fn get_apps(&self, page: &PageRequest) -> Result<ApplicationsResponse, ApiError> {
        let apps = self.store().apps(self.account())?;
        let (items, next_token) = keyset_page(
            apps,
            |a| (a.created_ms, a.id.clone()),
            page_size(page)?,
            page.token.as_deref(),
            "Token",
            false,
        )?;
        Ok(ApplicationsResponse {
            item: items.into_iter().map(|a| self.app_response(a)).collect(),
            next_token,
        })
    }

    /// DeleteApp: the app with its endpoints, segments and jobs.
    ///
    /// # Errors
    ///
    /// `NotFoundException`; `BadRequestException` while one of its import
    /// jobs is queued or running.
    pub fn delete_app(&self, id: &str) -> Result<ApplicationResponse, ApiError> {
        let app = self.store().delete_app(self.account(), id)?;
        Ok(self.app_response(app))
    }

    /// CreateImportJob: checks the request, the app, the segment and the
    /// objects, then queues the job.
    ///
    /// # Errors
    ///
    /// `BadRequestException` for a missing or malformed member (naming
    /// it) or a URL that is not `s3://`; `NotFoundException` for an
    /// unknown app or segment, a missing bucket, or no object of the
    /// format at the URL.
    pub fn create_import_job(
        &self,
        app_id: &str,
        r: &ImportJobRequest,
    ) -> Result<ImportJobResponse, ApiError> {
        let format = match r.format.as_deref() {
            None => return Err(ApiError::bad_request("Format is required (CSV or JSON)")),
            Some("CSV") => Format::Csv,
            Some("JSON") => Format::Json,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "Format {other:?} is not CSV or JSON"
                )));
            }
        };
        let s3_url = r
            .s3_url
            .clone()
            .ok_or_else(|| ApiError::bad_request("S3Url is required"))?;
        let role_arn = r
            .role_arn
            .clone()
            .ok_or_else(|| ApiError::bad_request("RoleArn is required"))?;
        check_arn(&role_arn)?;
        if !s3_url.starts_with("s3://") {
            return Err(ApiError::bad_request(format!(
                "S3Url {s3_url:?} is not an s3:// URL"
            )));
        }
        let define = r.define_segment.unwrap_or(false);
        if define && r.segment_id.is_some() {
            return Err(ApiError::bad_request(
                "DefineSegment makes a new segment and SegmentId names an existing one; give one",
            ));
        }
        if let Some(n) = &r.segment_name {
            check_len("SegmentName", n, 1, 256)?;
        }
        match &r.segment_id {
            // The app with the segment.
            Some(seg) => {
                if let (_, SegmentKind::Dimensional(_)) = self.segment_of(app_id, seg)? {
                    return Err(ApiError::bad_request(dimensional_import(seg)));
                }
            }
            None => {
                self.app(app_id)?;
            }
        }
        let (url, objects) = self.own_bucket("S3Url", &s3_url)?;
        let listed = resolve(&**objects, &url).map_err(|e| match e.kind {
            ObjectErrorKind::BadName => ApiError::bad_request(format!("S3Url: {}", e.message)),
            ObjectErrorKind::NoSuchBucket | ObjectErrorKind::NoSuchKey => {
                ApiError::not_found(format!("S3Url: {}", e.message))
            }
            _ => ApiError::internal(&e.message),
        })?;
        if objects_to_import(format, &url, listed).is_empty() {
            return Err(ApiError::not_found(format!(
                "S3Url: {}",
                nothing_to_import(format, &s3_url)
            )));
        }
        let spec = ImportJob {
            app: app_id.to_owned(),
            format,
            s3_url,
            role_arn,
            external_id: r.external_id.clone(),
            register_endpoints: r.register_endpoints.unwrap_or(false),
            define_segment: define,
            segment_name: r.segment_name.clone(),
            segment_id: r.segment_id.clone(),
            piece_size: self.config.piece_size,
            region: None,
        };
        let id = new_job_id();
        let account = self.account();
        self.runner
            .create(account, &id, &JobSpec::Import(spec.clone()), None)?;
        let job = self.runner.start(JobRef { account, id: &id })?;
        Ok(job_response(&job, &spec))
    }

    /// The bucket of `url` (the request's `member`), with the runner's
    /// buckets, when the URL parses and the bucket is not another
    /// account's (which this account cannot see).
    fn own_bucket(
        &self,
        member: &str,
        url: &str,
    ) -> Result<(ObjectUrl, &crate::job::Objects), ApiError> {
        let objects = self
            .runner
            .config()
            .objects
            .as_ref()
            .ok_or_else(|| ApiError::internal(&"the runner has no buckets"))?;
        let url = ObjectUrl::parse(url)
            .map_err(|e| ApiError::bad_request(format!("{member}: {}", e.message)))?;
        let owner = crate::store::bucket_owner(self.store().as_ref(), &url.bucket)?;
        if owner != *self.account() {
            return Err(no_bucket(member, &url.bucket));
        }
        Ok((url, objects))
    }

    /// GetImportJob.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or job.
    pub fn get_import_job(
        &self,
        app_id: &str,
        job_id: &str,
    ) -> Result<ImportJobResponse, ApiError> {
        self.app_job(&IMPORTS, app_id, job_id)
    }

    /// One job of the app, of the kind `of` names.
    fn app_job<T, D>(
        &self,
        of: &AppJobs<T, D>,
        app_id: &str,
        job_id: &str,
    ) -> Result<JobResponse<D>, ApiError> {
        self.app(app_id)?;
        let job = self
            .store()
            .job(JobRef {
                account: self.account(),
                id: job_id,
            })?
            .filter(|j| j.kind == of.kind && j.app.as_deref() == Some(app_id))
            .ok_or_else(|| not_found(of.what, job_id))?;
        Ok((of.respond)(&job, &(of.spec)(&job)?))
    }

    /// A page of the app's jobs of the kind `of` names, newest first; with
    /// `segment`, those of the segment.
    fn jobs_page<T, D>(
        &self,
        of: &AppJobs<T, D>,
        app_id: &str,
        segment: Option<&str>,
        page: &PageRequest,
    ) -> Result<JobsResponse<D>, ApiError> {
        self.app(app_id)?;
        if let Some(seg) = segment
            && self.store().segment(self.account(), app_id, seg)?.is_none()
        {
            return Err(not_found("Segment", seg));
        }
        let jobs = self.store().jobs(&JobFilter {
            account: Some(self.account().clone()),
            app: Some(app_id.to_owned()),
            kind: Some(of.kind),
            ..JobFilter::default()
        })?;
        let mut with_specs = Vec::with_capacity(jobs.len());
        for j in jobs {
            let spec = (of.spec)(&j)?;
            if segment.is_none_or(|s| (of.segment)(&j, &spec).as_deref() == Some(s)) {
                with_specs.push((j, spec));
            }
        }
        let (items, next_token) = keyset_page(
            with_specs,
            |(j, _)| (j.created_ms, j.id.clone()),
            page_size(page)?,
            page.token.as_deref(),
            "Token",
            true,
        )?;
        Ok(JobsResponse {
            item: items.iter().map(|(j, s)| (of.respond)(j, s)).collect(),
            next_token,
        })
    }

    /// GetImportJobs, newest first.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app; `BadRequestException` for a
    /// bad page size or token.
    pub fn get_import_jobs(
        &self,
        app_id: &str,
        page: &PageRequest,
    ) -> Result<ImportJobsResponse, ApiError> {
        self.jobs_page(&IMPORTS, app_id, None, page)
    }

    /// GetSegmentImportJobs: the import jobs that defined or filled a
    /// segment, newest first.
    ///
    /// # Errors
    ///
    /// As [`Pinpoint::get_import_jobs`], and `NotFoundException` for an
    /// unknown segment.
    pub fn get_segment_import_jobs(
        &self,
        app_id: &str,
        segment_id: &str,
        page: &PageRequest,
    ) -> Result<ImportJobsResponse, ApiError> {
        self.jobs_page(&IMPORTS, app_id, Some(segment_id), page)
    }

    /// CreateExportJob: the app's endpoints, or a segment's, out to
    /// `S3UrlPrefix` as gzip newline-delimited JSON files (see
    /// [`crate::job::ExportJob`]).
    ///
    /// # Errors
    ///
    /// `BadRequestException` for a missing or malformed member (naming
    /// it), a URL that is not `s3://`, a `SegmentVersion` without
    /// `SegmentId` or other than the segment's current one;
    /// `NotFoundException` for an unknown app or segment, or a bucket
    /// that does not exist.
    pub fn create_export_job(
        &self,
        app_id: &str,
        r: &ExportJobRequest,
    ) -> Result<ExportJobResponse, ApiError> {
        let prefix = r
            .s3_url_prefix
            .clone()
            .ok_or_else(|| ApiError::bad_request("S3UrlPrefix is required"))?;
        let role_arn = r
            .role_arn
            .clone()
            .ok_or_else(|| ApiError::bad_request("RoleArn is required"))?;
        check_arn(&role_arn)?;
        self.app(app_id)?;
        let segment_version = match (&r.segment_id, r.segment_version) {
            (None, Some(_)) => {
                return Err(ApiError::bad_request(
                    "SegmentVersion names a version of the segment SegmentId names; give both",
                ));
            }
            (None, None) => None,
            (Some(seg), version) => {
                let found = self
                    .store()
                    .segment(self.account(), app_id, seg)?
                    .ok_or_else(|| not_found("Segment", seg))?;
                if version.is_some_and(|v| v != i64::from(found.version)) {
                    return Err(ApiError::bad_request(format!(
                        "SegmentVersion {}: segment {seg} is at version {}, the only one kept",
                        version.unwrap_or_default(),
                        found.version
                    )));
                }
                Some(found.version)
            }
        };
        let (url, objects) = self.own_bucket("S3UrlPrefix", &prefix)?;
        if !objects
            .bucket_exists(&url.bucket)
            .map_err(|e| ApiError::internal(&e.message))?
        {
            return Err(no_bucket("S3UrlPrefix", &url.bucket));
        }
        let spec = ExportJob {
            app: app_id.to_owned(),
            s3_url_prefix: prefix,
            role_arn,
            segment_id: r.segment_id.clone(),
            segment_version,
            piece_endpoints: self.config.export_piece_endpoints,
        };
        let id = new_job_id();
        let account = self.account();
        self.runner
            .create(account, &id, &JobSpec::Export(spec.clone()), None)?;
        let job = self.runner.start(JobRef { account, id: &id })?;
        Ok(export_response(&job, &spec))
    }

    /// GetExportJob.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or job.
    pub fn get_export_job(
        &self,
        app_id: &str,
        job_id: &str,
    ) -> Result<ExportJobResponse, ApiError> {
        self.app_job(&EXPORTS, app_id, job_id)
    }

    /// GetExportJobs, newest first.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app; `BadRequestException` for a
    /// bad page size or token.
    pub fn get_export_jobs(
        &self,
        app_id: &str,
        page: &PageRequest,
    ) -> Result<ExportJobsResponse, ApiError> {
        self.jobs_page(&EXPORTS, app_id, None, page)
    }

    /// GetSegmentExportJobs: the export jobs of a segment, newest first.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or segment;
    /// `BadRequestException` for a bad page size or token.
    pub fn get_segment_export_jobs(
        &self,
        app_id: &str,
        segment_id: &str,
        page: &PageRequest,
    ) -> Result<ExportJobsResponse, ApiError> {
        self.jobs_page(&EXPORTS, app_id, Some(segment_id), page)
    }

    /// GetEndpoint.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or endpoint.
    pub fn get_endpoint(&self, app_id: &str, id: &str) -> Result<EndpointResponse, ApiError> {
        self.app(app_id)?;
        let e = self
            .store()
            .endpoint(self.account(), app_id, id)?
            .ok_or_else(|| not_found("Endpoint", id))?;
        endpoint_response(app_id, e)
    }

    /// GetUserEndpoints.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app, or a user with no
    /// endpoints.
    pub fn get_user_endpoints(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<EndpointsResponse, ApiError> {
        self.app(app_id)?;
        let found = self
            .store()
            .user_endpoints(self.account(), app_id, user_id)?;
        if found.is_empty() {
            return Err(ApiError::not_found(format!(
                "User {user_id} has no endpoints in application {app_id}"
            )));
        }
        Ok(EndpointsResponse {
            item: found
                .into_iter()
                .map(|e| endpoint_response(app_id, e))
                .collect::<Result<_, _>>()?,
        })
    }

    /// UpdateEndpoint: creates the endpoint `id` or lays `request` over
    /// it (attributes, metrics, demographic and location by name), with
    /// the checks of an imported row.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app; `BadRequestException`
    /// naming the member that breaks a rule, an `Id` in the body that is
    /// not the one in the path, or a new endpoint without `ChannelType`
    /// and `Address`.
    pub fn update_endpoint(
        &self,
        app_id: &str,
        id: &str,
        mut request: Endpoint,
    ) -> Result<MessageBody, ApiError> {
        if request.id.as_deref().is_some_and(|given| given != id) {
            return Err(ApiError::bad_request(format!(
                "the body's Id {:?} is not the endpoint {id:?} of the path",
                request.id.unwrap_or_default()
            )));
        }
        request.id = Some(id.to_owned());
        self.write_endpoints(app_id, vec![request], &[format!("endpoint {id}")])
    }

    /// UpdateEndpointsBatch: up to [`MAX_BATCH_ENDPOINTS`] endpoints in
    /// one transaction, each as UpdateEndpoint writes one; a later item of
    /// the same endpoint is laid over an earlier one.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app; `BadRequestException` for
    /// no items or too many, or naming the item (`Item[3]`) and member
    /// that break a rule; then nothing is written.
    pub fn update_endpoints_batch(
        &self,
        app_id: &str,
        request: EndpointBatchRequest,
    ) -> Result<MessageBody, ApiError> {
        let n = request.item.len();
        if n == 0 || n > MAX_BATCH_ENDPOINTS {
            return Err(ApiError::bad_request(format!(
                "Item must hold 1 to {MAX_BATCH_ENDPOINTS} endpoints; it holds {n}"
            )));
        }
        let names: Vec<String> = (0..n).map(|i| format!("Item[{i}]")).collect();
        self.write_endpoints(app_id, request.item, &names)
    }

    fn write_endpoints(
        &self,
        app_id: &str,
        endpoints: Vec<Endpoint>,
        names: &[String],
    ) -> Result<MessageBody, ApiError> {
        self.app(app_id)?;
        let now = (self.clock)();
        write_requested_endpoints(
            self.store().as_ref(),
            self.account(),
            app_id,
            endpoints,
            names,
            now,
        )
        .map_err(|e| match e {
            EndpointRequestError::Invalid(why) => ApiError::bad_request(why),
            EndpointRequestError::Store(e) => e.into(),
        })?;
        Ok(MessageBody {
            message: "Accepted".into(),
            request_id: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// DeleteEndpoint: the endpoint as it was.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or endpoint.
    pub fn delete_endpoint(&self, app_id: &str, id: &str) -> Result<EndpointResponse, ApiError> {
        self.app(app_id)?;
        let gone = self
            .store()
            .delete_endpoints(self.account(), app_id, EndpointsOf::Id(id))?;
        let e = gone
            .into_iter()
            .next()
            .ok_or_else(|| not_found("Endpoint", id))?;
        endpoint_response(app_id, e)
    }

    /// DeleteUserEndpoints: every endpoint of the user, as they were.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app, or a user with no
    /// endpoints (as GetUserEndpoints).
    pub fn delete_user_endpoints(
        &self,
        app_id: &str,
        user_id: &str,
    ) -> Result<EndpointsResponse, ApiError> {
        self.app(app_id)?;
        let gone =
            self.store()
                .delete_endpoints(self.account(), app_id, EndpointsOf::User(user_id))?;
        if gone.is_empty() {
            return Err(ApiError::not_found(format!(
                "User {user_id} has no endpoints in application {app_id}"
            )));
        }
        Ok(EndpointsResponse {
            item: gone
                .into_iter()
                .map(|e| endpoint_response(app_id, e))
                .collect::<Result<_, _>>()?,
        })
    }

    fn segment_response(&self, s: Segment) -> Result<SegmentResponse, ApiError> {
        let arn = format!(
            "arn:aws:mobiletargeting:{}:{}:apps/{}/segments/{}",
            self.config.region, self.config.account, s.app, s.id
        );
        let mut answer = SegmentResponse {
            arn,
            application_id: s.app.clone(),
            creation_date: iso8601(s.created_ms),
            id: s.id.clone(),
            last_modified_date: iso8601(s.updated_ms),
            name: s.name.clone(),
            version: s.version,
            ..SegmentResponse::default()
        };
        if let SegmentKind::Dimensional(d) = SegmentKind::of(&s).map_err(segment_error)? {
            answer.segment_type = "DIMENSIONAL".into();
            answer.dimensions = d.dimensional.dimensions;
            answer.segment_groups = d.dimensional.segment_groups;
            answer.tags = d.tags;
            return Ok(answer);
        }
        let def: serde_json::Value =
            serde_json::from_str(&s.definition).map_err(|e| ApiError::internal(&e))?;
        let field = |k: &str| def.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let channel_counts: BTreeMap<String, u64> = self
            .store()
            .segment_channel_counts(self.account(), &s.app, &s.id)?
            .into_iter()
            .collect();
        answer.segment_type = "IMPORT".into();
        answer.import_definition = Some(SegmentImportResource {
            size: channel_counts.values().sum(),
            channel_counts,
            external_id: field("ExternalId"),
            format: field("Format").unwrap_or_default(),
            role_arn: field("RoleArn").unwrap_or_default(),
            s3_url: field("S3Url").unwrap_or_default(),
        });
        Ok(answer)
    }

    /// A segment of the app, with its kind.
    fn segment_of(&self, app_id: &str, id: &str) -> Result<(Segment, SegmentKind), ApiError> {
        self.app(app_id)?;
        let s = self
            .store()
            .segment(self.account(), app_id, id)?
            .ok_or_else(|| not_found("Segment", id))?;
        let kind = SegmentKind::of(&s).map_err(segment_error)?;
        Ok((s, kind))
    }

    /// CreateSegment: a dimensional segment, of the endpoints that pass
    /// its `Dimensions`, or its `SegmentGroups` (base segments filtered by
    /// dimensions), or every endpoint of the app with neither. The store
    /// evaluates it when it is read (an export job of it).
    ///
    /// # Errors
    ///
    /// `BadRequestException` for a definition that breaks a rule (naming
    /// the member), a missing or overlong name, or bad tags;
    /// `NotFoundException` for an unknown app or base segment.
    pub fn create_segment(
        &self,
        app_id: &str,
        r: &WriteSegmentRequest,
    ) -> Result<SegmentResponse, ApiError> {
        let name = r
            .name
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("Name is required"))?;
        check_len("Name", name, 1, 256)?;
        for (k, v) in r.tags.iter().flatten() {
            check_len("tags key", k, 1, 128)?;
            check_len("tags value", v, 0, 256)?;
        }
        self.app(app_id)?;
        let dimensional = r.dimensional();
        segment::check(&**self.store(), self.account(), app_id, None, &dimensional)
            .map_err(segment_error)?;
        let now = (self.clock)();
        let seg = Segment {
            app: app_id.to_owned(),
            id: new_job_id(),
            name: Some(name.to_owned()),
            definition: StoredDimensional {
                dimensional,
                tags: r.tags.clone().filter(|t| !t.is_empty()),
            }
            .to_definition(),
            created_ms: now,
            updated_ms: now,
            version: 1,
        };
        self.store().create_segment(self.account(), &seg)?;
        self.segment_response(seg)
    }

    /// UpdateSegment: a new version of the segment. A dimensional segment
    /// takes the definition given (and keeps its own when the request has
    /// neither `Dimensions` nor `SegmentGroups`); an imported one takes a
    /// new name only. Tags are not changed (the service no longer
    /// processes them on update).
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app, segment or base segment;
    /// `BadRequestException` for a definition that breaks a rule, one
    /// built on the segment itself, or a definition for an imported
    /// segment.
    pub fn update_segment(
        &self,
        app_id: &str,
        id: &str,
        r: &WriteSegmentRequest,
    ) -> Result<SegmentResponse, ApiError> {
        if let Some(n) = &r.name {
            check_len("Name", n, 1, 256)?;
        }
        let (seg, kind) = self.segment_of(app_id, id)?;
        let definition = match kind {
            SegmentKind::Import if r.defines() => {
                return Err(ApiError::bad_request(format!(
                    "segment {id} is an imported segment: its endpoints come from its import \
                     jobs, not from Dimensions or SegmentGroups (make a dimensional segment \
                     with it as a base segment instead)"
                )));
            }
            SegmentKind::Import => seg.definition,
            SegmentKind::Dimensional(mut d) => {
                if r.defines() {
                    d.dimensional = r.dimensional();
                    segment::check(
                        &**self.store(),
                        self.account(),
                        app_id,
                        Some(id),
                        &d.dimensional,
                    )
                    .map_err(segment_error)?;
                }
                d.to_definition()
            }
        };
        let seg = self.store().update_segment(
            self.account(),
            app_id,
            id,
            r.name.as_deref(),
            &definition,
            (self.clock)(),
        )?;
        self.segment_response(seg)
    }

    /// DeleteSegment: the segment and its memberships (not the
    /// endpoints); answers it as it was.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or segment;
    /// `BadRequestException` while another segment is built on it or one
    /// of its import or export jobs is queued or running.
    pub fn delete_segment(&self, app_id: &str, id: &str) -> Result<SegmentResponse, ApiError> {
        let (seg, _) = self.segment_of(app_id, id)?;
        for other in self.store().segments(self.account(), app_id)? {
            if let SegmentKind::Dimensional(d) = SegmentKind::of(&other).map_err(segment_error)?
                && d.dimensional.sources().any(|r| r.id == id)
            {
                return Err(ApiError::bad_request(format!(
                    "segment {} is built on segment {id}; update or delete it first",
                    other.id
                )));
            }
        }
        if let Some(job) = self.segment_job_in_progress(app_id, id)? {
            return Err(ApiError::bad_request(format!(
                "segment {id} has job {job} in progress; wait for it to finish"
            )));
        }
        let answer = self.segment_response(seg)?;
        self.store().delete_segment(self.account(), app_id, id)?;
        Ok(answer)
    }

    /// An import or export job of the segment that is queued or running.
    fn segment_job_in_progress(&self, app_id: &str, id: &str) -> Result<Option<String>, ApiError> {
        let jobs = self.store().jobs(&JobFilter {
            account: Some(self.account().clone()),
            app: Some(app_id.to_owned()),
            statuses: vec![JobStatus::Queued, JobStatus::Running],
            ..JobFilter::default()
        })?;
        for j in jobs {
            let segment = match j.kind {
                JobKind::Import => (IMPORTS.segment)(&j, &(IMPORTS.spec)(&j)?),
                JobKind::Export => (EXPORTS.segment)(&j, &(EXPORTS.spec)(&j)?),
                _ => None,
            };
            if segment.as_deref() == Some(id) {
                return Ok(Some(j.id));
            }
        }
        Ok(None)
    }

    /// GetSegment.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app or segment.
    pub fn get_segment(&self, app_id: &str, id: &str) -> Result<SegmentResponse, ApiError> {
        let (s, _) = self.segment_of(app_id, id)?;
        self.segment_response(s)
    }

    /// GetSegments, oldest first.
    ///
    /// # Errors
    ///
    /// `NotFoundException` for an unknown app; `BadRequestException` for a
    /// bad page size or token.
    pub fn get_segments(
        &self,
        app_id: &str,
        page: &PageRequest,
    ) -> Result<SegmentsResponse, ApiError> {
        self.app(app_id)?;
        let segs = self.store().segments(self.account(), app_id)?;
        let (items, next_token) = keyset_page(
            segs,
            |s| (s.created_ms, s.id.clone()),
            page_size(page)?,
            page.token.as_deref(),
            "Token",
            false,
        )?;
        Ok(SegmentsResponse {
            item: items
                .into_iter()
                .map(|s| self.segment_response(s))
                .collect::<Result<_, _>>()?,
            next_token,
        })
    }
}

/// An ARN: `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`, with a
/// partition, a service and a resource.
fn check_arn(arn: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && !parts[1].is_empty()
        && !parts[2].is_empty()
        && !parts[5].is_empty()
        && parts[4].bytes().all(|b| b.is_ascii_digit());
    if !ok {
        return Err(ApiError::bad_request(format!(
            "RoleArn {arn:?} is not an ARN (arn:aws:iam::123456789012:role/NAME)"
        )));
    }
    Ok(())
}

/// `page-size`: 1 to 1000, 100 when absent. The wire sends a string.
fn page_size(page: &PageRequest) -> Result<usize, ApiError> {
    let n = page
        .page_size
        .as_deref()
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("PageSize must be a number; it is {raw:?}"))
            })
        })
        .transpose()?;
    super::page_size("PageSize", n, 1000)
}

fn spec_of(job: &JobRecord) -> Result<ImportJob, ApiError> {
    match JobSpec::of(job)? {
        JobSpec::Import(i) => Ok(i),
        _ => Err(ApiError::internal(&format!(
            "job {} is not an import job",
            job.id
        ))),
    }
}

/// The NotFoundException for a bucket that does not exist (or is another
/// account's), named by the request's `member`.
fn no_bucket(member: &str, bucket: &str) -> ApiError {
    ApiError::not_found(format!("{member}: bucket {bucket:?} does not exist"))
}

/// How the API reads and answers one kind of an app's jobs.
struct AppJobs<T, D> {
    kind: JobKind,
    /// What NotFoundException calls one (`Import job`).
    what: &'static str,
    /// Its spec.
    spec: fn(&JobRecord) -> Result<T, ApiError>,
    /// The segment it is listed under, if any.
    segment: fn(&JobRecord, &T) -> Option<String>,
    /// Its answer.
    respond: fn(&JobRecord, &T) -> JobResponse<D>,
}

const IMPORTS: AppJobs<ImportJob, ImportJobRequest> = AppJobs {
    kind: JobKind::Import,
    what: "Import job",
    spec: spec_of,
    segment: |job, spec| spec.segment(&job.id),
    respond: job_response,
};

const EXPORTS: AppJobs<ExportJob, ExportJobRequest> = AppJobs {
    kind: JobKind::Export,
    what: "Export job",
    spec: export_spec_of,
    segment: |_, spec| spec.segment_id.clone(),
    respond: export_response,
};

fn export_spec_of(job: &JobRecord) -> Result<ExportJob, ApiError> {
    match JobSpec::of(job)? {
        JobSpec::Export(e) => Ok(e),
        _ => Err(ApiError::internal(&format!(
            "job {} is not an export job",
            job.id
        ))),
    }
}

fn export_response(job: &JobRecord, spec: &ExportJob) -> ExportJobResponse {
    let definition = ExportJobRequest {
        role_arn: Some(spec.role_arn.clone()),
        s3_url_prefix: Some(spec.s3_url_prefix.clone()),
        segment_id: spec.segment_id.clone(),
        segment_version: spec.segment_version.map(i64::from),
    };
    response_of(job, &spec.app, definition, "EXPORT")
}

/// A job's answer, of `kind` (`IMPORT`, `EXPORT`), with its definition.
fn response_of<D>(job: &JobRecord, app: &str, definition: D, kind: &str) -> JobResponse<D> {
    let c = &job.counters;
    JobResponse {
        application_id: app.to_owned(),
        completed_pieces: c.completed_pieces,
        completion_date: job.completed_ms.map(iso8601),
        creation_date: iso8601(job.created_ms),
        definition,
        failed_pieces: c.failed_pieces,
        failures: failures_of(job),
        id: job.id.clone(),
        job_status: job_status(job),
        total_failures: c.failed,
        total_pieces: c.total_pieces,
        total_processed: c.processed,
        job_type: kind.to_owned(),
    }
}

/// A job's `Failures`: its rows', or why it failed as a whole.
fn failures_of(job: &JobRecord) -> Vec<String> {
    let mut failures = job.counters.failures.clone();
    if job.status == JobStatus::Failed
        && failures.is_empty()
        && let Some(reason) = &job.status_reason
    {
        failures.push(reason.clone());
    }
    failures
}

/// The service's `JobStatus` of a job.
fn job_status(job: &JobRecord) -> String {
    match job.status {
        JobStatus::Created => "CREATED".into(),
        // Waiting for one of the app's job slots.
        JobStatus::Queued => "PENDING_JOB".into(),
        JobStatus::Running => job.phase.clone().unwrap_or_else(|| "INITIALIZING".into()),
        JobStatus::Succeeded | JobStatus::PartiallySucceeded => "COMPLETED".into(),
        JobStatus::Failed | JobStatus::Stopped => "FAILED".into(),
    }
}

fn job_response(job: &JobRecord, spec: &ImportJob) -> ImportJobResponse {
    let definition = ImportJobRequest {
        define_segment: Some(spec.define_segment),
        external_id: spec.external_id.clone(),
        format: Some(spec.format.as_str().into()),
        register_endpoints: Some(spec.register_endpoints),
        role_arn: Some(spec.role_arn.clone()),
        s3_url: Some(spec.s3_url.clone()),
        segment_id: spec.segment(&job.id),
        segment_name: spec.segment_name.clone(),
    };
    response_of(job, &spec.app, definition, "IMPORT")
}

fn endpoint_response(app_id: &str, e: StoredEndpoint) -> Result<EndpointResponse, ApiError> {
    EndpointDocument::of(app_id, &e).map_err(|why| ApiError::internal(&why))
}
