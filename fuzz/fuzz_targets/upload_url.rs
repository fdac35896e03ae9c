//! Upload URLs (GetUploadJobPath's): a URL signed for a path and expiry,
//! computed here from the documented HMAC (not the server's code), is
//! accepted until it expires; another path, expiry, signature or master
//! key is refused; and arbitrary query values are never accepted.
#![no_main]

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use sluice::api::customer_profiles::verify_upload_url;
use sluice::crypto::MasterKey;

const MASTER: [u8; 32] = [7; 32];

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn signature(master: &[u8; 32], path: &str, expires: i64) -> String {
    let url_key = hmac(master, b"sluice/v1/url");
    hmac(&url_key, format!("PUT\n{path}\n{expires}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fuzz_target!(|input: &[u8]| {
    let Some((head, rest)) = input.split_first_chunk::<8>() else {
        return;
    };
    let master = MasterKey::from_bytes(&MASTER);
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(3, '\n');
    let (path, expires, sig) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let now = i64::from_le_bytes(*head) / 2;

    // Arbitrary values: accepted only with the true signature.
    if verify_upload_url(&master, path, Some(expires), Some(sig), now).is_ok() {
        let at: i64 = expires.parse().unwrap();
        assert_eq!(sig.to_ascii_lowercase(), signature(&MASTER, path, at));
    }

    // A signed URL: good until it expires, for its own path only.
    let expires_at = now
        .div_euclid(1000)
        .saturating_add(i64::from(head[0]) - 128);
    let good = signature(&MASTER, path, expires_at);
    let e = expires_at.to_string();
    let ok = verify_upload_url(&master, path, Some(&e), Some(&good), now);
    assert_eq!(ok.is_ok(), now <= expires_at.saturating_mul(1000), "{ok:?}");
    if let Err(err) = ok {
        assert_eq!(
            (err.code, err.message.as_str()),
            ("AccessDenied", "Request has expired")
        );
    }
    assert!(
        verify_upload_url(&master, path, Some(&e), Some(&good.to_uppercase()), now).is_ok()
            == (now <= expires_at.saturating_mul(1000))
    );
    let other = MasterKey::from_bytes(&[8; 32]);
    assert_eq!(
        verify_upload_url(&other, path, Some(&e), Some(&good), now)
            .unwrap_err()
            .code,
        "SignatureDoesNotMatch"
    );
    let longer = format!("{path}x");
    assert_eq!(
        verify_upload_url(&master, &longer, Some(&e), Some(&good), now)
            .unwrap_err()
            .code,
        "SignatureDoesNotMatch"
    );
    let later = expires_at.saturating_add(1).to_string();
    if later != e {
        assert!(verify_upload_url(&master, path, Some(&later), Some(&good), now).is_err());
    }
    assert!(verify_upload_url(&master, path, None, Some(&good), now).is_err());
    assert!(verify_upload_url(&master, path, Some(&e), None, now).is_err());
    assert!(verify_upload_url(&master, path, Some(&e), Some(&good[1..]), now).is_err());
});
