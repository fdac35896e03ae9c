/*!
The AWS-shaped job APIs, as library functions over typed requests and
responses.

Member names and enums are exactly those of the service models (serde
renames them, so a request or response serializes to the JSON the service
sends). Each operation validates what the model constrains and says exactly
what is wrong, as the model's exceptions ([`ApiError`]). Nothing here knows
of HTTP: `sluice serve` puts these functions behind AWS's wire protocols,
and a program can call them directly.
*/

pub mod customer_profiles;
pub mod importexport;
pub mod pinpoint;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::job::JobError;
use crate::store::StoreError;

/// The exceptions the models share.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum ErrorCode {
    /// `BadRequestException` (400): the request is invalid as it stands.
    BadRequest,
    /// `ResourceNotFoundException` (404).
    ResourceNotFound,
    /// `AccessDeniedException` (403).
    AccessDenied,
    /// `ThrottlingException` (429): too many requests at once; retry.
    Throttling,
    /// `InternalServerException` (500): ours; the server log has the cause.
    InternalServer,
    /// The request body is over the server's limit (Pinpoint's
    /// `PayloadTooLargeException`, 413; a `BadRequestException` in
    /// Customer Profiles, which has no such exception).
    PayloadTooLarge,
}

/// The services, which name the shared exceptions differently.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum Service {
    /// Amazon Connect Customer Profiles.
    CustomerProfiles,
    /// Amazon Pinpoint.
    Pinpoint,
}

impl Service {
    /// The service a REST path belongs to: Pinpoint's all start `/v1/`.
    pub fn of_path(path: &str) -> Service {
        if path == "/v1" || path.starts_with("/v1/") {
            Service::Pinpoint
        } else {
            Service::CustomerProfiles
        }
    }

    /// The SigV4 signing name.
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::CustomerProfiles => "profile",
            Service::Pinpoint => pinpoint::SIGNING_NAME,
        }
    }
}

impl ErrorCode {
    /// The exception's name, as the `x-amzn-ErrorType` header carries it.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BadRequestException",
            ErrorCode::ResourceNotFound => "ResourceNotFoundException",
            ErrorCode::AccessDenied => "AccessDeniedException",
            ErrorCode::Throttling => "ThrottlingException",
            ErrorCode::InternalServer => "InternalServerException",
            ErrorCode::PayloadTooLarge => "BadRequestException",
        }
    }

    /// The exception's name in `service`.
    pub fn name_in(self, service: Service) -> &'static str {
        match (service, self) {
            (Service::CustomerProfiles, _) => self.name(),
            (Service::Pinpoint, ErrorCode::BadRequest) => "BadRequestException",
            (Service::Pinpoint, ErrorCode::ResourceNotFound) => "NotFoundException",
            (Service::Pinpoint, ErrorCode::AccessDenied) => "ForbiddenException",
            (Service::Pinpoint, ErrorCode::Throttling) => "TooManyRequestsException",
            (Service::Pinpoint, ErrorCode::InternalServer) => "InternalServerErrorException",
            (Service::Pinpoint, ErrorCode::PayloadTooLarge) => "PayloadTooLargeException",
        }
    }

    /// The HTTP status the model of `service` gives it.
    pub fn http_status_in(self, service: Service) -> u16 {
        match (service, self) {
            (Service::Pinpoint, ErrorCode::PayloadTooLarge) => 413,
            _ => self.http_status(),
        }
    }

    /// The HTTP status the model gives it.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::ResourceNotFound => 404,
            ErrorCode::AccessDenied => 403,
            ErrorCode::Throttling => 429,
            ErrorCode::InternalServer => 500,
            ErrorCode::PayloadTooLarge => 400,
        }
    }
}

/// An operation's error: one of the model's exceptions, with a message
/// that says what is wrong.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ApiError {
    /// Which exception.
    pub code: ErrorCode,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// A `BadRequestException`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::BadRequest,
            message: message.into(),
        }
    }

    /// A `ResourceNotFoundException`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            code: ErrorCode::ResourceNotFound,
            message: message.into(),
        }
    }

    /// An `InternalServerException`. The cause goes to the log, not to the
    /// caller.
    pub fn internal(cause: &dyn fmt::Display) -> ApiError {
        eprintln!("sluice: internal error: {cause}");
        ApiError {
            code: ErrorCode::InternalServer,
            message: "internal error; the server log has the cause".into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NoDomain(d) => ApiError::not_found(format!("domain {d:?} not found")),
            StoreError::NoJob(j) => ApiError::not_found(format!("job {j:?} not found")),
            StoreError::NoApp(a) => ApiError::not_found(format!("Application {a} not found")),
            StoreError::NoSegment { segment, .. } => {
                ApiError::not_found(format!("Segment {segment} not found"))
            }
            StoreError::DomainExists(_)
            | StoreError::DomainBusy { .. }
            | StoreError::AppBusy { .. }
            | StoreError::Transition { .. } => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(&other),
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::Store(s) => s.into(),
            JobError::Invalid(m) => ApiError::bad_request(m),
            JobError::ShutDown => ApiError {
                code: ErrorCode::Throttling,
                message: "the server is shutting down; retry against its next start".into(),
            },
        }
    }
}

/// Text made safe for XML and HTML: `& < > "` as entities, CR as `&#13;`
/// (XML parsers would turn a bare CR into LF), and what XML 1.0 has no
/// place for at all — control characters but tab and newline, U+FFFE,
/// U+FFFF, not even as references — written out visibly as `\u{1b}`, so
/// that no value (a device id, a file name, a log line) breaks a client's
/// parser.
pub(crate) fn escape_markup(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// A point in time; on the wire, epoch seconds (as AWS's JSON protocols
/// send them).
#[derive(Clone, Copy, Debug, Eq, Ord, PartialEq, PartialOrd)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Unix milliseconds.
    pub fn ms(self) -> i64 {
        self.0
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 1000.0)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(Timestamp((secs * 1000.0).round() as i64))
    }
}

/// Checks a model `name`-style string: `min..=max` characters of letters,
/// digits and `extra`.
fn check_name(member: &str, v: &str, max: usize, extra: &[u8]) -> Result<(), ApiError> {
    if v.is_empty() || v.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{member} must be 1 to {max} characters long; it is {}",
            v.chars().count()
        )));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || (c.is_ascii() && extra.contains(&(*c as u8)))))
    {
        let allowed: String = extra.iter().map(|&b| format!(" '{}'", b as char)).collect();
        return Err(ApiError::bad_request(format!(
            "{member} {v:?} has {c:?}; only letters, digits and{allowed} are allowed"
        )));
    }
    Ok(())
}

/// Checks a string's length in characters.
fn check_len(member: &str, v: &str, min: usize, max: usize) -> Result<(), ApiError> {
    let n = v.chars().count();
    if n < min || n > max {
        return Err(ApiError::bad_request(format!(
            "{member} must be {min} to {max} characters long; it is {n}"
        )));
    }
    Ok(())
}

/// Checks an integer's range.
fn check_range(member: &str, v: i64, min: i64, max: i64) -> Result<(), ApiError> {
    if v < min || v > max {
        return Err(ApiError::bad_request(format!(
            "{member} must be from {min} to {max}; it is {v}"
        )));
    }
    Ok(())
}

/// A page size: `v`, or 100 (at most `max`) when absent, checked to be
/// from 1 to `max`.
fn page_size(member: &str, v: Option<i64>, max: i64) -> Result<usize, ApiError> {
    let n = v.unwrap_or(100.min(max));
    check_range(member, n, 1, max)?;
    Ok(n as usize)
}

/// The refusal of a paging token this server did not give.
fn bad_token(member: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{member} is not one this server gave for this list"
    ))
}

/// One page of `items` (already in list order) after the page that
/// `token` ended, and the token of the page after it. Tokens are keyset
/// positions (`created_ms.id`), so items added or deleted between two
/// pages neither repeat nor shift the next page. `member` names the token
/// in the refusal of one this server did not give.
fn keyset_page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> (i64, String),
    size: usize,
    token: Option<&str>,
    member: &str,
    descending: bool,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let bad = || bad_token(member);
    let after = match token {
        None => None,
        Some(t) => {
            let (ms, id) = t.split_once('.').ok_or_else(bad)?;
            Some((ms.parse::<i64>().map_err(|_| bad())?, id.to_owned()))
        }
    };
    let mut rest = items.into_iter().filter(|item| {
        after.as_ref().is_none_or(|a| {
            let k = key(item);
            if descending { k < *a } else { k > *a }
        })
    });
    let page: Vec<T> = rest.by_ref().take(size).collect();
    let next = match (rest.next(), page.last()) {
        (Some(_), Some(last)) => {
            let (ms, id) = key(last);
            Some(format!("{ms}.{id}"))
        }
        _ => None,
    };
    Ok((page, next))
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_never_carries_what_xml_cannot() {
        let s = super::escape_markup("a\u{0}b\u{1b}c\td\ne\rf<g\u{fffe}\u{ffff}h\u{7f}");
        assert_eq!(
            s,
            "a\\u{0}b\\u{1b}c\td\ne&#13;f&lt;g\\u{fffe}\\u{ffff}h\u{7f}"
        );
        // XML 1.0's Char: tab, newline, CR and the rest from U+0020.
        assert!(
            s.chars()
                .all(|c| matches!(c, '\t' | '\n' | '\r') || (' '..'\u{fffe}').contains(&c))
        );
    }
}
