//! The Import/Export query-protocol decoder on arbitrary bodies: no
//! panic; refusals are typed with a message; and whatever it accepts,
//! encoded again as a form, decodes to the same request (nothing is lost
//! or invented). The XML answer and error writers take any text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice::server::query::{DecodeError, QueryRequest, decode, error, response};

fn encode(r: &QueryRequest) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    f.append_pair("Action", r.action());
    f.append_pair("Version", "2010-06-01");
    let mut opt = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            f.append_pair(k, v);
        }
    };
    let flag = |v: Option<bool>| v.map(|b| b.to_string());
    match r {
        QueryRequest::CreateJob(c) => {
            opt("JobType", &c.job_type);
            opt("Manifest", &c.manifest);
            opt("ManifestAddendum", &c.manifest_addendum);
            opt("ValidateOnly", &flag(c.validate_only));
            opt("APIVersion", &c.api_version);
        }
        QueryRequest::UpdateJob(c) => {
            opt("JobId", &c.job_id);
            opt("Manifest", &c.manifest);
            opt("JobType", &c.job_type);
            opt("ValidateOnly", &flag(c.validate_only));
            opt("APIVersion", &c.api_version);
        }
        QueryRequest::GetStatus(c) | QueryRequest::CancelJob(c) => {
            opt("JobId", &c.job_id);
            opt("APIVersion", &c.api_version);
        }
        QueryRequest::ListJobs(c) => {
            opt("MaxJobs", &c.max_jobs.map(|n| n.to_string()));
            opt("Marker", &c.marker);
            opt("APIVersion", &c.api_version);
        }
        QueryRequest::GetShippingLabel(c) => {
            for (k, v) in [
                ("name", &c.name),
                ("company", &c.company),
                ("phoneNumber", &c.phone_number),
                ("country", &c.country),
                ("stateOrProvince", &c.state_or_province),
                ("city", &c.city),
                ("postalCode", &c.postal_code),
                ("street1", &c.street1),
                ("street2", &c.street2),
                ("street3", &c.street3),
                ("APIVersion", &c.api_version),
            ] {
                opt(k, v);
            }
            for (i, id) in c.job_ids.iter().enumerate() {
                f.append_pair(&format!("jobIds.member.{}", i + 1), id);
            }
        }
    }
    f.finish()
}

fuzz_target!(|body: &[u8]| {
    match decode(body) {
        Ok(r) => {
            let again = encode(&r);
            assert_eq!(decode(again.as_bytes()), Ok(r.clone()), "{again}");
            let text = String::from_utf8_lossy(body);
            let xml = response(r.action(), &serde_json::json!({ "Message": text }), "id");
            assert!(
                xml.trim_end().ends_with('>') && !xml.contains("]]>"),
                "{xml}"
            );
        }
        Err(DecodeError::Api(e)) => assert!(!e.message.is_empty()),
        Err(DecodeError::Protocol(code, m)) => {
            assert!(matches!(code, "MissingAction" | "InvalidAction"));
            let xml = error(code, &m, "id");
            // Markup in the message never escapes into the document.
            assert_eq!(xml.matches("<Message>").count(), 1, "{xml}");
        }
    }
});
