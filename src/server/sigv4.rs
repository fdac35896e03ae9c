/*!
AWS Signature Version 4, checked on the server side.

The signature is recomputed from the request as it arrived (its method,
path, query, the headers it says it signed, and the SHA-256 of its body)
with the secret of the access key it names, and compared in constant time.
The steps and their names follow the SigV4 documentation ("Create a
canonical request", "Create a string to sign", "Calculate the signature").

Errors carry AWS's codes and messages, so clients show what they would
show against AWS.
*/

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::credentials::Credentials;
use crate::crypto::{hmac, same_bytes, to_hex};
use crate::time::{amz_date, parse_amz_date};

/// How far a request's date may be from the server's clock.
pub const MAX_SKEW_MS: i64 = 5 * 60 * 1000;

/// Everything but the unreserved characters (RFC 3986) is encoded.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// As [`STRICT`], keeping `/` (for paths).
const PATH: &AsciiSet = &STRICT.remove(b'/');

/// A refused request: AWS's error code, HTTP status and message.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct AuthError {
    /// The HTTP status.
    pub status: u16,
    /// AWS's code (`InvalidSignatureException`, …).
    pub code: &'static str,
    /// AWS's message.
    pub message: String,
}

fn refuse(status: u16, code: &'static str, message: impl Into<String>) -> AuthError {
    AuthError {
        status,
        code,
        message: message.into(),
    }
}

/// The parts of a request that its signature covers.
#[derive(Debug)]
pub struct SignedRequest<'a> {
    /// The method.
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The query as sent, without `?`.
    pub query: &'a str,
    /// Every header: lowercase name, value.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

impl SignedRequest<'_> {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).first().copied()
    }
}

struct Authorization<'a> {
    key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(v: &str) -> Result<Authorization<'_>, AuthError> {
    let incomplete = |m: &str| refuse(400, "IncompleteSignatureException", m);
    let rest = v.strip_prefix("AWS4-HMAC-SHA256 ").ok_or_else(|| {
        incomplete("Authorization header requires the AWS4-HMAC-SHA256 algorithm")
    })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(incomplete(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' \
             parameters",
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(incomplete(&format!(
            "Credential should be scoped to a valid region, like ACCESS_KEY/YYYYMMDD/REGION/\
             SERVICE/aws4_request; it is '{credential}'"
        )));
    };
    Ok(Authorization {
        key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// The canonical query string: each name and value decoded, encoded again
/// strictly, sorted by name then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| {
                let raw = percent_decode_str(s).collect::<Vec<u8>>();
                percent_encoding::percent_encode(&raw, STRICT).to_string()
            };
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The canonical URI of a non-S3 service: the path as sent, each byte
/// outside the unreserved set and `/` encoded once more (so `%` becomes
/// `%25`), as botocore and the AWS SDKs sign it.
fn canonical_path(path: &str) -> String {
    let path = if path.is_empty() { "/" } else { path };
    utf8_percent_encode(path, PATH).to_string()
}

fn canonical_header_value(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(",")
}

/// What can be checked from the headers alone, before the body is read:
/// one Authorization header, well formed, by a known key, for `service`,
/// dated within the allowed skew, signing `host`.
///
/// # Errors
///
/// As [`verify`], except a signature that does not match.
pub fn precheck(
    headers: &[(String, String)],
    scope: Scope<'_>,
    credentials: &Credentials,
    now_ms: i64,
) -> Result<(), AuthError> {
    let req = SignedRequest {
        method: "",
        path: "",
        query: "",
        headers,
        body: &[],
    };
    checked_headers(&req, scope, credentials, now_ms).map(|_| ())
}

/// What a signature must be scoped to: the service's signing name and the
/// server's region.
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    /// The signing name (`profile`, `mobiletargeting`, …).
    pub service: &'a str,
    /// The region the server answers for.
    pub region: &'a str,
}

fn checked_headers<'a>(
    req: &'a SignedRequest<'a>,
    scope: Scope<'_>,
    credentials: &'a Credentials,
    now_ms: i64,
) -> Result<(Authorization<'a>, &'a str, &'a str), AuthError> {
    let service = scope.service;
    if req.header_values("authorization").len() > 1 {
        return Err(refuse(
            400,
            "IncompleteSignatureException",
            "The request carries more than one Authorization header.",
        ));
    }
    let Some(auth) = req.header("authorization") else {
        return Err(refuse(
            403,
            "MissingAuthenticationTokenException",
            "Missing Authentication Token",
        ));
    };
    let auth = parse_authorization(auth)?;
    let Some(secret) = credentials.secret(auth.key_id) else {
        return Err(refuse(
            403,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    let invalid = |m: String| refuse(403, "InvalidSignatureException", m);
    if auth.service != service {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: '{service}'. "
        )));
    }
    if auth.region != scope.region {
        return Err(invalid(format!(
            "Credential should be scoped to a valid region, not '{}'. This server is {}.",
            auth.region, scope.region
        )));
    }
    let Some(amz) = req.header("x-amz-date") else {
        return Err(refuse(
            400,
            "IncompleteSignatureException",
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' \
             header.",
        ));
    };
    let Some(at) = parse_amz_date(amz) else {
        return Err(refuse(
            400,
            "IncompleteSignatureException",
            format!("X-Amz-Date '{amz}' is not of the form YYYYMMDD'T'HHMMSS'Z'"),
        ));
    };
    if at < now_ms - MAX_SKEW_MS {
        return Err(invalid(format!(
            "Signature expired: {amz} is now earlier than {} ({} - 5 min.)",
            amz_date(now_ms - MAX_SKEW_MS),
            amz_date(now_ms)
        )));
    }
    if at > now_ms + MAX_SKEW_MS {
        return Err(invalid(format!(
            "Signature not yet current: {amz} is still later than {} ({} + 5 min.)",
            amz_date(now_ms + MAX_SKEW_MS),
            amz_date(now_ms)
        )));
    }
    if !amz.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date \
             from HTTP: '{}' != '{}', from '{amz}'.",
            auth.date,
            &amz[..8]
        )));
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(invalid(
            "'Host' must be a 'SignedHeader' in the AWS Authorization.".into(),
        ));
    }

    Ok((auth, secret, amz))
}

/// Checks a request's SigV4 `Authorization` header for `service`;
/// returns the access key id that signed it.
///
/// # Errors
///
/// AWS's refusals: `MissingAuthenticationTokenException` with no
/// signature, `IncompleteSignatureException` for a malformed one,
/// `UnrecognizedClientException` for an unknown access key,
/// `InvalidSignatureException` for a wrong service, a date outside the
/// allowed skew ("Signature expired"), two Authorization headers, or a
/// signature that does not match.
pub fn verify(
    req: &SignedRequest<'_>,
    scope: Scope<'_>,
    credentials: &Credentials,
    now_ms: i64,
) -> Result<String, AuthError> {
    let (auth, secret, amz) = checked_headers(req, scope, credentials, now_ms)?;
    let invalid = |m: String| refuse(403, "InvalidSignatureException", m);
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values = req.header_values(name);
        canonical_headers.push_str(&format!("{name}:{}\n", canonical_header_value(&values)));
    }
    // The body is always signed: a client's own hash of it must be the
    // body's, or a signed request could carry any other body.
    let payload_hash = to_hex(&Sha256::digest(req.body));
    if let Some(claimed) = req.header("x-amz-content-sha256")
        && !claimed.eq_ignore_ascii_case(&payload_hash)
    {
        return Err(refuse(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_path(req.path),
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload_hash
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz}\n{scope}\n{}",
        to_hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), &[auth.date.as_bytes()]);
    for part in [auth.region, auth.service, "aws4_request"] {
        key = hmac(&key, &[part.as_bytes()]);
    }
    let expected = to_hex(&hmac(&key, &[string_to_sign.as_bytes()]));
    if !same_bytes(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method. Consult the service \
             documentation for details."
                .into(),
        ));
    }
    Ok(auth.key_id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials::parse(
            "[default]\naws_access_key_id = AKIDEXAMPLE\n\
             aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n",
        )
        .unwrap()
    }

    fn headers(auth: &str) -> Vec<(String, String)> {
        vec![
            ("host".into(), "example.amazonaws.com".into()),
            ("x-amz-date".into(), "20150830T123600Z".into()),
            ("authorization".into(), auth.into()),
        ]
    }

    const NOW: i64 = 1_440_938_160_000; // 2015-08-30T12:36:00Z
    const REGION: &str = "us-east-1";
    /// The scope the AWS test suite signs for.
    const SUITE: Scope<'static> = Scope {
        service: "service",
        region: REGION,
    };

    fn get(headers: &[(String, String)]) -> SignedRequest<'_> {
        SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers,
            body: b"",
        }
    }

    /// `get-vanilla` from the AWS SigV4 test suite.
    #[test]
    fn the_aws_test_suite_vanilla_get() {
        let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/\
            aws4_request, SignedHeaders=host;x-amz-date, \
            Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let h = headers(auth);
        let req = get(&h);
        assert_eq!(verify(&req, SUITE, &creds(), NOW).unwrap(), "AKIDEXAMPLE");
        let e = verify(
            &req,
            Scope {
                service: "profile",
                region: REGION,
            },
            &creds(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        // Signed for another region than the server's.
        let e = verify(
            &req,
            Scope {
                service: "service",
                region: "eu-west-1",
            },
            &creds(),
            NOW,
        )
        .unwrap_err();
        assert_eq!(e.code, "InvalidSignatureException");
        assert!(e.message.contains("not 'us-east-1'"), "{}", e.message);
        let e = verify(&req, SUITE, &creds(), NOW + 6 * 60 * 1000).unwrap_err();
        assert!(e.message.starts_with("Signature expired"), "{}", e.message);
        let post = SignedRequest {
            method: "POST",
            ..req
        };
        let e = verify(&post, SUITE, &creds(), NOW).unwrap_err();
        assert!(e.message.contains("does not match"));
        // A body other than the one signed is refused, even when the
        // client's hash header is the signed one.
        let mut h = headers(auth);
        h.push(("x-amz-content-sha256".into(), to_hex(&Sha256::digest(b""))));
        let swapped = SignedRequest {
            body: b"{}",
            ..get(&h)
        };
        let e = verify(&swapped, SUITE, &creds(), NOW).unwrap_err();
        assert_eq!(e.code, "XAmzContentSHA256Mismatch");
        let h = headers(&auth.replace("AKIDEXAMPLE", "AKIDOTHER"));
        let req = get(&h);
        let e = verify(&req, SUITE, &creds(), NOW).unwrap_err();
        assert_eq!(e.code, "UnrecognizedClientException");
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(canonical_query("b=2&a=%2F x&a=1"), "a=%2F%20x&a=1&b=2");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_path("/domains/a%20b"), "/domains/a%2520b");
        assert_eq!(canonical_header_value(&["  a   b ", "c"]), "a b,c");
    }
}
