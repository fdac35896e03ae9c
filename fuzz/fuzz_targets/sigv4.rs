//! SigV4 verification. A request signed here, by a signer written from the
//! SigV4 documentation (not the server's code), with fuzzed method, path,
//! query, header and body, is accepted with the right secret, and refused
//! with another secret, another body, another method or an old date. An
//! arbitrary request, whatever its Authorization header says, is never
//! accepted: the secret is not in the input.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use sluice::server::credentials::Credentials;
use sluice::server::sigv4::{Scope, SignedRequest, verify};

/// What a signature must be scoped to here: `service` in us-east-1.
fn scope(service: &str) -> Scope<'_> {
    Scope {
        service,
        region: "us-east-1",
    }
}
use sluice::time::amz_date;

const KEY: &str = "AKIDFUZZ";
const SECRET: &str = "fuzz/secret+never+in+the+input";
const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn creds(secret: &str) -> Credentials {
    Credentials::parse(&format!(
        "[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {secret}\n"
    ))
    .unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn mac(key: &[u8], data: &str) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data.as_bytes());
    m.finalize().into_bytes().to_vec()
}

/// RFC 3986 encoding of everything but the unreserved characters (and
/// `/` when `slash`).
fn enc(s: &[u8], slash: bool) -> String {
    let mut out = String::new();
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Req {
    method: &'static str,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn signed(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: self.method,
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
            body: &self.body,
        }
    }
}

/// Signs as the documentation says: path encoded once more, query pairs
/// sorted, header values trimmed with inner runs of spaces made one.
fn sign(
    method: &'static str,
    segs: &[&[u8]],
    pairs: &[(&[u8], &[u8])],
    custom: &str,
    body: &[u8],
    at: i64,
    secret: &str,
) -> Req {
    let path: String = segs.iter().map(|s| format!("/{}", enc(s, false))).collect();
    let path = if path.is_empty() {
        "/".to_owned()
    } else {
        path
    };
    let mut q: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (enc(k, false), enc(v, false)))
        .collect();
    let query = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    q.sort();
    let cq = q
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let date = amz_date(at);
    let custom_c = custom
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let ch = format!("host:localhost:4566\nx-amz-date:{date}\nx-fuzz:{custom_c}\n");
    let signed_headers = "host;x-amz-date;x-fuzz";
    let creq = format!(
        "{method}\n{}\n{cq}\n{ch}\n{signed_headers}\n{}",
        enc(path.as_bytes(), true),
        hex(&Sha256::digest(body))
    );
    let scope = format!("{}/us-east-1/profile/aws4_request", &date[..8]);
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let mut k = mac(format!("AWS4{secret}").as_bytes(), &date[..8]);
    for part in ["us-east-1", "profile", "aws4_request"] {
        k = mac(&k, part);
    }
    let sig = hex(&mac(&k, &sts));
    Req {
        method,
        path,
        query,
        headers: vec![
            ("host".into(), "localhost:4566".into()),
            ("x-amz-date".into(), date),
            ("x-fuzz".into(), custom.into()),
            (
                "authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={signed_headers}, Signature={sig}"
                ),
            ),
        ],
        body: body.to_vec(),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&[m, skew], rest)) = input.split_first_chunk::<2>() else {
        return;
    };
    let good = creds(SECRET);

    // Arbitrary requests: never accepted.
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.split('\n');
    let mut next = || lines.next().unwrap_or("").to_owned();
    let (path, query, auth, date, sha) = (next(), next(), next(), next(), next());
    let mut headers = vec![
        ("host".to_owned(), "localhost".to_owned()),
        ("authorization".to_owned(), auth),
        ("x-amz-date".to_owned(), date),
    ];
    if !sha.is_empty() {
        headers.push(("x-amz-content-sha256".to_owned(), sha));
    }
    let body = lines.collect::<Vec<_>>().join("\n");
    let arbitrary = SignedRequest {
        method: "POST",
        path: &path,
        query: &query,
        headers: &headers,
        body: body.as_bytes(),
    };
    assert!(verify(&arbitrary, scope("profile"), &good, NOW).is_err());

    // Signed requests: accepted exactly when they are what was signed.
    let method = ["GET", "POST", "PUT", "DELETE"][usize::from(m) % 4];
    let parts: Vec<&[u8]> = rest.split(|&b| b == 0).collect();
    let segs: Vec<&[u8]> = parts
        .first()
        .map(|p| p.split(|&b| b == b'/').collect())
        .unwrap_or_default();
    let pairs: Vec<(&[u8], &[u8])> = parts
        .get(1)
        .map(|p| {
            p.split(|&b| b == b'&')
                .map(|kv| {
                    let i = kv.iter().position(|&b| b == b'=').unwrap_or(kv.len());
                    (&kv[..i], kv.get(i + 1..).unwrap_or(b""))
                })
                .collect()
        })
        .unwrap_or_default();
    let custom: String = parts
        .get(2)
        .map(|p| {
            p.iter()
                .map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' })
                .collect()
        })
        .unwrap_or_default();
    let body = parts.get(3).copied().unwrap_or(b"");
    let at = NOW + (i64::from(skew as i8) * 2_000);
    let req = sign(method, &segs, &pairs, &custom, body, at, SECRET);
    assert_eq!(
        verify(&req.signed(), scope("profile"), &good, NOW).as_deref(),
        Ok(KEY),
        "{:?} {:?}",
        req.path,
        req.query
    );
    assert!(
        verify(
            &req.signed(),
            scope("profile"),
            &creds("another secret"),
            NOW
        )
        .is_err()
    );
    assert!(verify(&req.signed(), scope("mobiletargeting"), &good, NOW).is_err());
    let mut longer = req.body.clone();
    longer.push(b'x');
    assert!(
        verify(
            &SignedRequest {
                body: &longer,
                ..req.signed()
            },
            scope("profile"),
            &good,
            NOW
        )
        .is_err()
    );
    let other = if method == "GET" { "POST" } else { "GET" };
    assert!(
        verify(
            &SignedRequest {
                method: other,
                ..req.signed()
            },
            scope("profile"),
            &good,
            NOW
        )
        .is_err()
    );
    let old = sign(
        method,
        &segs,
        &pairs,
        &custom,
        body,
        NOW - 6 * 60_000,
        SECRET,
    );
    assert!(verify(&old.signed(), scope("profile"), &good, NOW).is_err());
});
