//! AWS's query protocol, as Import/Export speaks it: form-encoded
//! `POST /` requests (`Action=CreateJob&Version=2010-06-01&...`) and XML
//! answers.
//!
//! Decoding is strict: a parameter the operation does not have, or one
//! given twice, is an `InvalidParameterException` naming it, rather than
//! ignored.

use serde_json::Value;

use crate::api::escape_markup;

use crate::api::importexport::{
    API_VERSION, CreateJobInput, Exception, GetShippingLabelInput, ImportExportError, JobInput,
    ListJobsInput, UpdateJobInput, XML_NAMESPACE,
};

/// A decoded request.
#[derive(Clone, Debug, Eq, PartialEq)]
#[allow(missing_docs)]
pub enum QueryRequest {
    CreateJob(CreateJobInput),
    GetStatus(JobInput),
    ListJobs(ListJobsInput),
    UpdateJob(UpdateJobInput),
    CancelJob(JobInput),
    GetShippingLabel(GetShippingLabelInput),
}

impl QueryRequest {
    /// The `Action`.
    pub fn action(&self) -> &'static str {
        match self {
            QueryRequest::CreateJob(_) => "CreateJob",
            QueryRequest::GetStatus(_) => "GetStatus",
            QueryRequest::ListJobs(_) => "ListJobs",
            QueryRequest::UpdateJob(_) => "UpdateJob",
            QueryRequest::CancelJob(_) => "CancelJob",
            QueryRequest::GetShippingLabel(_) => "GetShippingLabel",
        }
    }
}

/// Why a query request could not be decoded: an exception of the model,
/// or one of the query protocol's own (`MissingAction`, `InvalidAction`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum DecodeError {
    /// The model's.
    Api(ImportExportError),
    /// The protocol's: code and message.
    Protocol(&'static str, String),
}

impl From<ImportExportError> for DecodeError {
    fn from(e: ImportExportError) -> DecodeError {
        DecodeError::Api(e)
    }
}

fn invalid(m: String) -> DecodeError {
    DecodeError::Api(ImportExportError::new(Exception::InvalidParameter, m))
}

/// The parameters, taken one by one; what is left is unknown.
struct Params(Vec<(String, String)>);

impl Params {
    fn take(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.remove(at).1)
    }

    fn flag(&mut self, name: &str) -> Result<Option<bool>, DecodeError> {
        match self.take(name).as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(invalid(format!(
                "{name} must be true or false; it is {v:?}"
            ))),
        }
    }

    /// `name.member.1`, `name.member.2`, … in order, with no gaps.
    fn list(&mut self, name: &str) -> Result<Vec<String>, DecodeError> {
        let prefix = format!("{name}.member.");
        let mut items: Vec<(usize, String)> = Vec::new();
        let mut rest = Vec::new();
        for (k, v) in std::mem::take(&mut self.0) {
            if k == name && v.is_empty() {
                continue; // an empty list: `name=`
            }
            match k.strip_prefix(&prefix) {
                Some(n) => {
                    let i = n
                        .parse::<usize>()
                        .ok()
                        .filter(|&i| i >= 1)
                        .ok_or_else(|| invalid(format!("{k}: a list index is 1, 2, 3, …")))?;
                    items.push((i, v));
                }
                None => rest.push((k, v)),
            }
        }
        self.0 = rest;
        items.sort_by_key(|(i, _)| *i);
        if items.iter().enumerate().any(|(n, (i, _))| *i != n + 1) {
            return Err(invalid(format!(
                "{name}: list members must be numbered 1, 2, 3, … without gaps"
            )));
        }
        Ok(items.into_iter().map(|(_, v)| v).collect())
    }

    fn done(self) -> Result<(), DecodeError> {
        match self.0.first() {
            None => Ok(()),
            Some((k, _)) => Err(invalid(format!("{k} is not a parameter of this operation"))),
        }
    }
}

/// Decodes a form-encoded request body.
///
/// # Errors
///
/// `MissingAction` / `InvalidAction` (unknown operation),
/// `MissingParameterException` (no `Version`), `InvalidParameterException`
/// (another `Version`, a parameter given twice or not of the operation, a
/// value of the wrong type).
pub fn decode(body: &[u8]) -> Result<QueryRequest, DecodeError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(pairs.len());
    if let Some((k, _)) = pairs.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(invalid(format!("{k} is given more than once")));
    }
    let mut p = Params(pairs);
    let Some(action) = p.take("Action") else {
        return Err(DecodeError::Protocol(
            "MissingAction",
            "the request has no Action".into(),
        ));
    };
    match p.take("Version") {
        None => {
            return Err(ImportExportError::new(
                Exception::MissingParameter,
                format!("Version is required ({API_VERSION})"),
            )
            .into());
        }
        Some(v) if v != API_VERSION => {
            return Err(invalid(format!(
                "Version {v:?} is not this service's API version ({API_VERSION})"
            )));
        }
        Some(_) => {}
    }
    let api_version = p.take("APIVersion");
    let req = match action.as_str() {
        "CreateJob" => QueryRequest::CreateJob(CreateJobInput {
            job_type: p.take("JobType"),
            manifest: p.take("Manifest"),
            manifest_addendum: p.take("ManifestAddendum"),
            validate_only: p.flag("ValidateOnly")?,
            api_version,
        }),
        "UpdateJob" => QueryRequest::UpdateJob(UpdateJobInput {
            job_id: p.take("JobId"),
            manifest: p.take("Manifest"),
            job_type: p.take("JobType"),
            validate_only: p.flag("ValidateOnly")?,
            api_version,
        }),
        "GetStatus" | "CancelJob" => {
            let input = JobInput {
                job_id: p.take("JobId"),
                api_version,
            };
            if action == "GetStatus" {
                QueryRequest::GetStatus(input)
            } else {
                QueryRequest::CancelJob(input)
            }
        }
        "ListJobs" => QueryRequest::ListJobs(ListJobsInput {
            max_jobs: p
                .take("MaxJobs")
                .map(|v| {
                    v.parse::<i64>()
                        .map_err(|_| invalid(format!("MaxJobs must be an integer; it is {v:?}")))
                })
                .transpose()?,
            marker: p.take("Marker"),
            api_version,
        }),
        "GetShippingLabel" => QueryRequest::GetShippingLabel(GetShippingLabelInput {
            job_ids: p.list("jobIds")?,
            name: p.take("name"),
            company: p.take("company"),
            phone_number: p.take("phoneNumber"),
            country: p.take("country"),
            state_or_province: p.take("stateOrProvince"),
            city: p.take("city"),
            postal_code: p.take("postalCode"),
            street1: p.take("street1"),
            street2: p.take("street2"),
            street3: p.take("street3"),
            api_version,
        }),
        other => {
            return Err(DecodeError::Protocol(
                "InvalidAction",
                format!("{other:?} is not an operation of this service"),
            ));
        }
    };
    p.done()?;
    Ok(req)
}

fn element(name: &str, v: &Value, out: &mut String) {
    if v.is_null() {
        return;
    }
    out.push('<');
    out.push_str(name);
    out.push('>');
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                element(k, v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                element("member", item, out);
            }
        }
        Value::String(s) => out.push_str(&escape_markup(s)),
        other => out.push_str(&other.to_string()),
    }
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The XML answer of `action` with result `result` (a JSON object of the
/// output's members).
pub fn response(action: &str, result: &Value, request_id: &str) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{XML_NAMESPACE}\">"
    );
    element(&format!("{action}Result"), result, &mut out);
    out.push_str("<ResponseMetadata><RequestId>");
    out.push_str(&escape_markup(request_id));
    out.push_str(&format!(
        "</RequestId></ResponseMetadata></{action}Response>\n"
    ));
    out
}

/// The XML of an error, as botocore's query parser reads it.
pub fn error(code: &str, message: &str, request_id: &str) -> String {
    let sender = if code == Exception::Internal.code() {
        "Receiver"
    } else {
        "Sender"
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{XML_NAMESPACE}\">\
         <Error><Type>{sender}</Type><Code>"
    );
    out.push_str(&escape_markup(code));
    out.push_str("</Code><Message>");
    out.push_str(&escape_markup(message));
    out.push_str("</Message></Error><RequestId>");
    out.push_str(&escape_markup(request_id));
    out.push_str("</RequestId></ErrorResponse>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: &str) -> Result<QueryRequest, DecodeError> {
        decode(body.as_bytes())
    }

    fn code_of(r: Result<QueryRequest, DecodeError>) -> String {
        match r.unwrap_err() {
            DecodeError::Api(e) => e.exception.code().to_owned(),
            DecodeError::Protocol(c, _) => c.to_owned(),
        }
    }

    #[test]
    fn requests() {
        let r = decoded(
            "Action=CreateJob&Version=2010-06-01&JobType=Import&ValidateOnly=false&\
             Manifest=a%3A+1%0Ab%3A+2",
        )
        .unwrap();
        let QueryRequest::CreateJob(c) = r else {
            panic!("{r:?}")
        };
        assert_eq!(c.manifest.as_deref(), Some("a: 1\nb: 2"));
        assert_eq!(c.validate_only, Some(false));
        let r = decoded(
            "Action=GetShippingLabel&Version=2010-06-01&jobIds.member.2=B&jobIds.member.1=A",
        )
        .unwrap();
        let QueryRequest::GetShippingLabel(g) = r else {
            panic!("{r:?}")
        };
        assert_eq!(g.job_ids, ["A", "B"]);
        let r = decoded("Action=GetShippingLabel&Version=2010-06-01&jobIds=").unwrap();
        assert_eq!(
            r,
            QueryRequest::GetShippingLabel(GetShippingLabelInput::default())
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(code_of(decoded("Version=2010-06-01")), "MissingAction");
        assert_eq!(
            code_of(decoded("Action=Nope&Version=2010-06-01")),
            "InvalidAction"
        );
        assert_eq!(
            code_of(decoded("Action=GetStatus")),
            "MissingParameterException"
        );
        for bad in [
            "Action=GetStatus&Version=2009-01-01",
            "Action=GetStatus&Version=2010-06-01&JobId=A&JobId=B",
            "Action=GetStatus&Version=2010-06-01&Colour=red",
            "Action=CreateJob&Version=2010-06-01&ValidateOnly=maybe",
            "Action=ListJobs&Version=2010-06-01&MaxJobs=ten",
            "Action=GetShippingLabel&Version=2010-06-01&jobIds.member.2=B",
            "Action=GetShippingLabel&Version=2010-06-01&jobIds.member.x=B",
        ] {
            assert_eq!(code_of(decoded(bad)), "InvalidParameterException", "{bad}");
        }
    }

    #[test]
    fn xml() {
        let v = serde_json::json!({
            "Jobs": [{"JobId": "A<1>", "IsCanceled": false}],
            "IsTruncated": true,
            "Missing": null,
        });
        let x = response("ListJobs", &v, "rid");
        assert!(x.contains(
            "<ListJobsResult><Jobs><member><JobId>A&lt;1&gt;</JobId><IsCanceled>false\
             </IsCanceled></member></Jobs><IsTruncated>true</IsTruncated></ListJobsResult>"
        ));
        assert!(!x.contains("Missing"));
        let e = error("InvalidJobIdException", "no \"x\" & y", "rid");
        assert!(e.contains("<Code>InvalidJobIdException</Code>"));
        assert!(e.contains("<Message>no &quot;x&quot; &amp; y</Message>"));
    }
}
