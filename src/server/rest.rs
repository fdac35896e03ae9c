//! The REST-JSON protocol of Customer Profiles and Pinpoint: a request's
//! method, path, query and body decoded into one typed operation call, by
//! the model's `http` entries, before anything runs.
//!
//! Decoding is all there is to a request here, so it can be tested and
//! fuzzed without a server or a store: [`decode`] is pure, and
//! `RestCall::call` runs the decoded operation.

use axum::http::StatusCode;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::customer_profiles as cp;
use crate::api::pinpoint as pp;
use crate::api::{ApiError, Service};

use super::Apis;

/// A decoded REST-JSON request: the operation and its input.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum RestCall {
    ListDomains(cp::ListDomainsRequest),
    CreateDomain(cp::CreateDomainRequest),
    GetDomain(cp::DomainRequest),
    DeleteDomain(cp::DomainRequest),
    UpdateDomain(cp::UpdateDomainRequest),
    SearchProfiles(cp::SearchProfilesRequest),
    DeleteProfile(cp::DeleteProfileRequest),
    CreateUploadJob(cp::CreateUploadJobRequest),
    ListUploadJobs(cp::ListUploadJobsRequest),
    GetUploadJob(cp::JobRequest),
    StartUploadJob(cp::JobRequest),
    GetUploadJobPath(cp::JobRequest),
    StopUploadJob(cp::JobRequest),
    CreateApp(pp::CreateApplicationRequest),
    GetApps(pp::PageRequest),
    GetApp {
        app: String,
    },
    DeleteApp {
        app: String,
    },
    CreateImportJob {
        app: String,
        request: pp::ImportJobRequest,
    },
    GetImportJobs {
        app: String,
        page: pp::PageRequest,
    },
    GetImportJob {
        app: String,
        job: String,
    },
    GetSegments {
        app: String,
        page: pp::PageRequest,
    },
    GetSegment {
        app: String,
        segment: String,
    },
    CreateSegment {
        app: String,
        request: pp::WriteSegmentRequest,
    },
    UpdateSegment {
        app: String,
        segment: String,
        request: pp::WriteSegmentRequest,
    },
    DeleteSegment {
        app: String,
        segment: String,
    },
    GetSegmentImportJobs {
        app: String,
        segment: String,
        page: pp::PageRequest,
    },
    GetEndpoint {
        app: String,
        endpoint: String,
    },
    GetUserEndpoints {
        app: String,
        user: String,
    },
    UpdateEndpoint {
        app: String,
        endpoint: String,
        request: Box<crate::endpoints::Endpoint>,
    },
    UpdateEndpointsBatch {
        app: String,
        request: pp::EndpointBatchRequest,
    },
    DeleteEndpoint {
        app: String,
        endpoint: String,
    },
    DeleteUserEndpoints {
        app: String,
        user: String,
    },
    CreateExportJob {
        app: String,
        request: pp::ExportJobRequest,
    },
    GetExportJob {
        app: String,
        job: String,
    },
    GetExportJobs {
        app: String,
        page: pp::PageRequest,
    },
    GetSegmentExportJobs {
        app: String,
        segment: String,
        page: pp::PageRequest,
    },
}

/// Why a request was not decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum RestError {
    /// No operation has this method and path (`UnknownOperationException`,
    /// 404); the message names them.
    NoOperation(String),
    /// The operation's input is not valid (`BadRequestException`), naming
    /// the member or the place in the body.
    Api(ApiError),
}

impl From<ApiError> for RestError {
    fn from(e: ApiError) -> RestError {
        RestError::Api(e)
    }
}

/// The path's segments, percent-decoded (empty segments dropped).
pub(crate) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// The first value of a query parameter.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn int_param(query: &str, name: &str) -> Result<Option<i64>, ApiError> {
    query_param(query, name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::bad_request(format!("{name} must be an integer; it is {v:?}"))
            })
        })
        .transpose()
}

/// The request body as `T`; an empty (or all-blank) body is
/// `T::default()`.
fn body_as<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid: {e}")))
}

/// Decodes a request by the models' `http` entries, for the service its
/// path names ([`Service::of_path`]: Pinpoint's paths start `/v1/`), the
/// same service whose signing name the request was checked for.
///
/// # Errors
///
/// [`RestError::NoOperation`] for a method and path of no operation;
/// [`RestError::Api`] for a body that is not the operation's JSON input
/// or a query parameter that is not an integer where one must be.
pub fn decode(method: &str, path: &str, query: &str, body: &[u8]) -> Result<RestCall, RestError> {
    let seg = segments(path);
    let s: Vec<&str> = seg.iter().map(String::as_str).collect();
    let call = match Service::of_path(path) {
        Service::Pinpoint => pinpoint(method, s.get(1..).unwrap_or_default(), query, body)?,
        Service::CustomerProfiles => profiles(method, &s, query, body)?,
    };
    call.ok_or_else(|| RestError::NoOperation(format!("no operation at {method} {path}")))
}

fn profiles(method: &str, s: &[&str], q: &str, body: &[u8]) -> Result<Option<RestCall>, ApiError> {
    use RestCall as C;
    let domain = |d: &str| cp::DomainRequest {
        domain_name: d.to_owned(),
    };
    Ok(Some(match (method, s) {
        ("GET", ["domains"]) => C::ListDomains(cp::ListDomainsRequest {
            next_token: query_param(q, "next-token"),
            max_results: int_param(q, "max-results")?,
        }),
        ("POST", ["domains", d]) => C::CreateDomain(cp::CreateDomainRequest {
            domain_name: (*d).to_owned(),
            ..body_as(body)?
        }),
        ("GET", ["domains", d]) => C::GetDomain(domain(d)),
        ("DELETE", ["domains", d]) => C::DeleteDomain(domain(d)),
        ("PUT", ["domains", d]) => C::UpdateDomain(cp::UpdateDomainRequest {
            domain_name: (*d).to_owned(),
            ..body_as(body)?
        }),
        ("POST", ["domains", d, "profiles", "search"]) => {
            C::SearchProfiles(cp::SearchProfilesRequest {
                domain_name: (*d).to_owned(),
                next_token: query_param(q, "next-token"),
                max_results: int_param(q, "max-results")?,
                ..body_as(body)?
            })
        }
        ("POST", ["domains", d, "profiles", "delete"]) => {
            C::DeleteProfile(cp::DeleteProfileRequest {
                domain_name: (*d).to_owned(),
                ..body_as(body)?
            })
        }
        ("POST", ["domains", d, "upload-jobs"]) => C::CreateUploadJob(cp::CreateUploadJobRequest {
            domain_name: (*d).to_owned(),
            ..body_as(body)?
        }),
        ("GET", ["domains", d, "upload-jobs"]) => C::ListUploadJobs(cp::ListUploadJobsRequest {
            domain_name: (*d).to_owned(),
            max_results: int_param(q, "max-results")?,
            next_token: query_param(q, "next-token"),
        }),
        (m, ["domains", d, "upload-jobs", j, rest @ ..]) => {
            let r = cp::JobRequest {
                domain_name: (*d).to_owned(),
                job_id: (*j).to_owned(),
            };
            match (m, rest) {
                ("GET", []) => C::GetUploadJob(r),
                ("PUT", []) => C::StartUploadJob(r),
                ("GET", ["path"]) => C::GetUploadJobPath(r),
                ("PUT", ["stop"]) => C::StopUploadJob(r),
                _ => return Ok(None),
            }
        }
        _ => return Ok(None),
    }))
}

fn pinpoint(method: &str, s: &[&str], q: &str, body: &[u8]) -> Result<Option<RestCall>, ApiError> {
    use RestCall as C;
    let page = || pp::PageRequest {
        page_size: query_param(q, "page-size"),
        token: query_param(q, "token"),
    };
    let own = |x: &str| x.to_owned();
    Ok(Some(match (method, s) {
        ("POST", ["apps"]) => C::CreateApp(body_as(body)?),
        ("GET", ["apps"]) => C::GetApps(page()),
        ("GET", ["apps", a]) => C::GetApp { app: own(a) },
        ("DELETE", ["apps", a]) => C::DeleteApp { app: own(a) },
        ("POST", ["apps", a, "jobs", "import"]) => C::CreateImportJob {
            app: own(a),
            request: body_as(body)?,
        },
        ("GET", ["apps", a, "jobs", "import"]) => C::GetImportJobs {
            app: own(a),
            page: page(),
        },
        ("GET", ["apps", a, "jobs", "import", j]) => C::GetImportJob {
            app: own(a),
            job: own(j),
        },
        ("GET", ["apps", a, "segments"]) => C::GetSegments {
            app: own(a),
            page: page(),
        },
        ("GET", ["apps", a, "segments", g]) => C::GetSegment {
            app: own(a),
            segment: own(g),
        },
        ("POST", ["apps", a, "segments"]) => C::CreateSegment {
            app: own(a),
            request: body_as(body)?,
        },
        ("PUT", ["apps", a, "segments", g]) => C::UpdateSegment {
            app: own(a),
            segment: own(g),
            request: body_as(body)?,
        },
        ("DELETE", ["apps", a, "segments", g]) => C::DeleteSegment {
            app: own(a),
            segment: own(g),
        },
        ("GET", ["apps", a, "segments", g, "jobs", "import"]) => C::GetSegmentImportJobs {
            app: own(a),
            segment: own(g),
            page: page(),
        },
        ("GET", ["apps", a, "endpoints", e]) => C::GetEndpoint {
            app: own(a),
            endpoint: own(e),
        },
        ("GET", ["apps", a, "users", u]) => C::GetUserEndpoints {
            app: own(a),
            user: own(u),
        },
        ("PUT", ["apps", a, "endpoints", e]) => C::UpdateEndpoint {
            app: own(a),
            endpoint: own(e),
            request: Box::new(body_as(body)?),
        },
        ("PUT", ["apps", a, "endpoints"]) => C::UpdateEndpointsBatch {
            app: own(a),
            request: body_as(body)?,
        },
        ("DELETE", ["apps", a, "endpoints", e]) => C::DeleteEndpoint {
            app: own(a),
            endpoint: own(e),
        },
        ("DELETE", ["apps", a, "users", u]) => C::DeleteUserEndpoints {
            app: own(a),
            user: own(u),
        },
        ("POST", ["apps", a, "jobs", "export"]) => C::CreateExportJob {
            app: own(a),
            request: body_as(body)?,
        },
        ("GET", ["apps", a, "jobs", "export"]) => C::GetExportJobs {
            app: own(a),
            page: page(),
        },
        ("GET", ["apps", a, "jobs", "export", j]) => C::GetExportJob {
            app: own(a),
            job: own(j),
        },
        ("GET", ["apps", a, "segments", g, "jobs", "export"]) => C::GetSegmentExportJobs {
            app: own(a),
            segment: own(g),
            page: page(),
        },
        _ => return Ok(None),
    }))
}

fn reply<T: Serialize>(r: Result<T, ApiError>) -> Result<(StatusCode, Value), ApiError> {
    reply_with(StatusCode::OK, r)
}

fn reply_with<T: Serialize>(
    status: StatusCode,
    r: Result<T, ApiError>,
) -> Result<(StatusCode, Value), ApiError> {
    r.and_then(|v| serde_json::to_value(v).map_err(|e| ApiError::internal(&e)))
        .map(|v| (status, v))
}

impl RestCall {
    /// The operation's name, as the model has it (for logs).
    pub fn name(&self) -> &'static str {
        use RestCall as C;
        match self {
            C::ListDomains(_) => "ListDomains",
            C::CreateDomain(_) => "CreateDomain",
            C::GetDomain(_) => "GetDomain",
            C::DeleteDomain(_) => "DeleteDomain",
            C::UpdateDomain(_) => "UpdateDomain",
            C::SearchProfiles(_) => "SearchProfiles",
            C::DeleteProfile(_) => "DeleteProfile",
            C::CreateUploadJob(_) => "CreateUploadJob",
            C::ListUploadJobs(_) => "ListUploadJobs",
            C::GetUploadJob(_) => "GetUploadJob",
            C::StartUploadJob(_) => "StartUploadJob",
            C::GetUploadJobPath(_) => "GetUploadJobPath",
            C::StopUploadJob(_) => "StopUploadJob",
            C::CreateApp(_) => "CreateApp",
            C::GetApps(_) => "GetApps",
            C::GetApp { .. } => "GetApp",
            C::DeleteApp { .. } => "DeleteApp",
            C::CreateImportJob { .. } => "CreateImportJob",
            C::GetImportJobs { .. } => "GetImportJobs",
            C::GetImportJob { .. } => "GetImportJob",
            C::GetSegments { .. } => "GetSegments",
            C::GetSegment { .. } => "GetSegment",
            C::CreateSegment { .. } => "CreateSegment",
            C::UpdateSegment { .. } => "UpdateSegment",
            C::DeleteSegment { .. } => "DeleteSegment",
            C::GetSegmentImportJobs { .. } => "GetSegmentImportJobs",
            C::GetEndpoint { .. } => "GetEndpoint",
            C::GetUserEndpoints { .. } => "GetUserEndpoints",
            C::UpdateEndpoint { .. } => "UpdateEndpoint",
            C::UpdateEndpointsBatch { .. } => "UpdateEndpointsBatch",
            C::DeleteEndpoint { .. } => "DeleteEndpoint",
            C::DeleteUserEndpoints { .. } => "DeleteUserEndpoints",
            C::CreateExportJob { .. } => "CreateExportJob",
            C::GetExportJob { .. } => "GetExportJob",
            C::GetExportJobs { .. } => "GetExportJobs",
            C::GetSegmentExportJobs { .. } => "GetSegmentExportJobs",
        }
    }

    /// Runs the operation (it may block: the store is SQLite) and returns
    /// the model's success status with the output's JSON.
    pub(crate) fn call(self, apis: &Apis) -> Result<(StatusCode, Value), ApiError> {
        use RestCall as C;
        let (p, pp) = (&apis.profiles, &apis.pinpoint);
        match self {
            C::ListDomains(r) => reply(p.list_domains(&r)),
            C::CreateDomain(r) => reply(p.create_domain(&r)),
            C::GetDomain(r) => reply(p.get_domain(&r)),
            C::DeleteDomain(r) => reply(p.delete_domain(&r)),
            C::UpdateDomain(r) => reply(p.update_domain(&r)),
            C::SearchProfiles(r) => reply(p.search_profiles(&r)),
            C::DeleteProfile(r) => reply(p.delete_profile(&r)),
            C::CreateUploadJob(r) => reply(p.create_upload_job(&r)),
            C::ListUploadJobs(r) => reply(p.list_upload_jobs(&r)),
            C::GetUploadJob(r) => reply(p.get_upload_job(&r)),
            C::StartUploadJob(r) => reply(p.start_upload_job(&r)),
            C::GetUploadJobPath(r) => reply(p.get_upload_job_path(&r)),
            C::StopUploadJob(r) => reply(p.stop_upload_job(&r)),
            C::CreateApp(r) => reply_with(StatusCode::CREATED, pp.create_app(&r)),
            C::GetApps(page) => reply(pp.get_apps(&page)),
            C::GetApp { app } => reply(pp.get_app(&app)),
            C::DeleteApp { app } => reply(pp.delete_app(&app)),
            C::CreateImportJob { app, request } => {
                reply_with(StatusCode::CREATED, pp.create_import_job(&app, &request))
            }
            C::GetImportJobs { app, page } => reply(pp.get_import_jobs(&app, &page)),
            C::GetImportJob { app, job } => reply(pp.get_import_job(&app, &job)),
            C::GetSegments { app, page } => reply(pp.get_segments(&app, &page)),
            C::GetSegment { app, segment } => reply(pp.get_segment(&app, &segment)),
            C::CreateSegment { app, request } => {
                reply_with(StatusCode::CREATED, pp.create_segment(&app, &request))
            }
            C::UpdateSegment {
                app,
                segment,
                request,
            } => reply(pp.update_segment(&app, &segment, &request)),
            C::DeleteSegment { app, segment } => reply(pp.delete_segment(&app, &segment)),
            C::GetSegmentImportJobs { app, segment, page } => {
                reply(pp.get_segment_import_jobs(&app, &segment, &page))
            }
            C::GetEndpoint { app, endpoint } => reply(pp.get_endpoint(&app, &endpoint)),
            C::GetUserEndpoints { app, user } => reply(pp.get_user_endpoints(&app, &user)),
            C::UpdateEndpoint {
                app,
                endpoint,
                request,
            } => reply_with(
                StatusCode::ACCEPTED,
                pp.update_endpoint(&app, &endpoint, *request),
            ),
            C::UpdateEndpointsBatch { app, request } => reply_with(
                StatusCode::ACCEPTED,
                pp.update_endpoints_batch(&app, request),
            ),
            C::DeleteEndpoint { app, endpoint } => {
                reply_with(StatusCode::ACCEPTED, pp.delete_endpoint(&app, &endpoint))
            }
            C::DeleteUserEndpoints { app, user } => {
                reply_with(StatusCode::ACCEPTED, pp.delete_user_endpoints(&app, &user))
            }
            C::CreateExportJob { app, request } => {
                reply_with(StatusCode::ACCEPTED, pp.create_export_job(&app, &request))
            }
            C::GetExportJob { app, job } => reply(pp.get_export_job(&app, &job)),
            C::GetExportJobs { app, page } => reply(pp.get_export_jobs(&app, &page)),
            C::GetSegmentExportJobs { app, segment, page } => {
                reply(pp.get_segment_export_jobs(&app, &segment, &page))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_method_and_path() {
        let c = decode(
            "POST",
            "/domains/a%20b",
            "",
            br#"{"DefaultExpirationDays": 3}"#,
        )
        .unwrap();
        let RestCall::CreateDomain(r) = c else {
            panic!("{c:?}")
        };
        assert_eq!(r.domain_name, "a b");
        assert_eq!(
            decode(
                "GET",
                "/v1/apps/x/segments/y/jobs/import",
                "page-size=5",
                b""
            )
            .unwrap(),
            RestCall::GetSegmentImportJobs {
                app: "x".into(),
                segment: "y".into(),
                page: pp::PageRequest {
                    page_size: Some("5".into()),
                    token: None
                }
            }
        );
        // The service is the one the request was signed for: a path that
        // Service::of_path gives to Customer Profiles is not a Pinpoint call.
        assert_eq!(
            decode("GET", "//v1/apps", "", b""),
            Err(RestError::NoOperation(
                "no operation at GET //v1/apps".into()
            ))
        );
        assert_eq!(
            decode("PATCH", "/domains/d", "", b""),
            Err(RestError::NoOperation(
                "no operation at PATCH /domains/d".into()
            ))
        );
    }

    #[test]
    fn bad_bodies_and_parameters_name_the_place() {
        let Err(RestError::Api(e)) = decode("POST", "/v1/apps", "", b"{\"Name\": \"a\"} x") else {
            panic!()
        };
        assert!(
            e.message
                .contains("trailing characters at line 1 column 15"),
            "{}",
            e.message
        );
        let Err(RestError::Api(e)) = decode("GET", "/domains", "max-results=x", b"") else {
            panic!()
        };
        assert_eq!(e.message, "max-results must be an integer; it is \"x\"");
    }
}
