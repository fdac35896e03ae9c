/*!
Endpoint files: the import format of Amazon Pinpoint, read in pieces.

An endpoint is a place to reach someone (an address on a channel) with
what is known of them. Files of endpoints come as CSV, with a header of
dotted attribute names (`ChannelType,Address,User.UserId,Attributes.Team`),
or as newline-delimited JSON, one [`Endpoint`] object per line. Both read
into the same [`Endpoint`]; [`Endpoint::check`] applies the format's rules
and normalizes the address by channel (e-mail as e-mail, SMS and voice as
E.164 phone numbers) with the engine's normalizers.

Files go through the engine ([`crate::ingest`]) like any other input:
[`EndpointMapper`] is the row mapper that checks each row and keys it by
its [`Identity`], so that the engine's guarantees hold for endpoints too
(the same answer for any piece size or thread count, the last row of an
endpoint wins, every row accounted, failures placed by file, line and
record). [`decode`] turns a kept row back into an [`Endpoint`].

This module knows nothing of stores or HTTP; the job layer runs the engine
and writes what it keeps.
*/

mod csv;
mod map;
pub mod segment;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use csv::{Column, Columns, Layout, Scratch};
pub use map::{EndpointMapper, Format, decode, gzip_inner};

use crate::ingest::FailureReason;
use crate::ingest::normalize::{PhoneNormalizer, normalize_email};

/// The channels an endpoint can be on (the model's `ChannelType`).
pub const CHANNEL_TYPES: [&str; 13] = [
    "PUSH",
    "GCM",
    "APNS",
    "APNS_SANDBOX",
    "APNS_VOIP",
    "APNS_VOIP_SANDBOX",
    "ADM",
    "SMS",
    "VOICE",
    "EMAIL",
    "BAIDU",
    "CUSTOM",
    "IN_APP",
];

/// Longest attribute or metric name.
pub const MAX_NAME_CHARS: usize = 50;
/// Longest attribute value.
pub const MAX_VALUE_CHARS: usize = 100;
/// Most names one endpoint has in `Attributes`, `Metrics` and
/// `User.UserAttributes` together (Pinpoint's quota is 250 per app).
pub const MAX_ATTRIBUTES: usize = 250;
/// Most values of one attribute (Pinpoint's quota).
pub const MAX_VALUES: usize = 50;

/// One endpoint as a file describes it (the shape of the service's
/// `EndpointRequest`), and as it is stored once checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Endpoint {
    /// Where to reach it: an e-mail address, a phone number, a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Custom attributes, each with one or more values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, Vec<String>>>,
    /// The channel, one of [`CHANNEL_TYPES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_type: Option<String>,
    /// The device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographic: Option<Demographic>,
    /// When it was last updated (ISO 8601).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_date: Option<String>,
    /// `ACTIVE` or `INACTIVE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_status: Option<String>,
    /// Its id within the app; without one, its identity is its channel
    /// and normalized address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Custom numbers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// `ALL` (opted out of everything) or `NONE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opt_out: Option<String>,
    /// The request that last updated it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    /// What an export file says besides (`ApplicationId`, `CohortId`,
    /// `CreationDate`): read and dropped, so that an export imports as it
    /// came; the app, cohort and creation are those of the importing app.
    #[serde(flatten, skip_serializing)]
    pub exported: Exported,
}

/// The members of an exported endpoint that are not the endpoint's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(missing_docs)]
pub struct Exported {
    #[serde(default, skip_serializing)]
    pub application_id: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub cohort_id: Option<serde::de::IgnoredAny>,
    #[serde(default, skip_serializing)]
    pub creation_date: Option<serde::de::IgnoredAny>,
}

/// The device of an endpoint.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Demographic {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// Where an endpoint is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub longitude: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// The person an endpoint belongs to.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct User {
    /// Their id; one user can have several endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Custom attributes of the person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_attributes: Option<BTreeMap<String, Vec<String>>>,
}

/// What makes two rows the same endpoint.
#[derive(Clone, Debug, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub enum Identity {
    /// The row gave an `Id`.
    Id(String),
    /// No `Id`: the channel and the normalized address.
    Address {
        /// `ChannelType`.
        channel: String,
        /// The normalized `Address`.
        address: String,
    },
}

impl Identity {
    /// The identity as the engine keys rows: `I` and the id, or `A`, the
    /// channel, a newline and the normalized address. Different
    /// identities have different keys.
    pub fn key(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_key(&mut out);
        out
    }

    /// Appends [`Identity::key`] to `out`.
    pub fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            Identity::Id(id) => Identity::write_id_key(out, id),
            Identity::Address { channel, address } => {
                Identity::write_address_key(out, channel, address);
            }
        }
    }

    fn write_id_key(out: &mut Vec<u8>, id: &str) {
        out.push(b'I');
        out.extend_from_slice(id.as_bytes());
    }

    fn write_address_key(out: &mut Vec<u8>, channel: &str, address: &str) {
        out.push(b'A');
        out.extend_from_slice(channel.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(address.as_bytes());
    }

    /// The identity a key stands for.
    pub fn from_key(key: &[u8]) -> Option<Identity> {
        let text = std::str::from_utf8(key.get(1..)?).ok()?;
        match key[0] {
            b'I' => Some(Identity::Id(text.to_owned())),
            b'A' => {
                let (channel, address) = text.split_once('\n')?;
                Some(Identity::Address {
                    channel: channel.to_owned(),
                    address: address.to_owned(),
                })
            }
            _ => None,
        }
    }
}

/// A rule of the format that an endpoint breaks: the member at fault and
/// what is wrong with it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Refusal {
    /// The member (`Address`, `Attributes.Team`, `Location.Latitude`), or
    /// empty when the endpoint as a whole is at fault.
    pub member: String,
    /// What is wrong.
    pub message: String,
}

impl Refusal {
    fn new(member: impl Into<String>, message: impl Into<String>) -> Refusal {
        Refusal {
            member: member.into(),
            message: message.into(),
        }
    }

    /// A refusal of the endpoint as a whole.
    pub fn whole(message: impl Into<String>) -> Refusal {
        Refusal::new("", message)
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.member.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.member, self.message)
        }
    }
}

impl std::error::Error for Refusal {}

impl From<Refusal> for FailureReason {
    fn from(r: Refusal) -> FailureReason {
        FailureReason::Invalid {
            member: (!r.member.is_empty()).then(|| r.member.into()),
            message: r.message,
        }
    }
}

impl Endpoint {
    /// Applies the format's rules and normalizes in place: trims text,
    /// normalizes the address by channel, writes `EffectiveDate` as UTC
    /// ISO 8601 with milliseconds.
    ///
    /// # Errors
    ///
    /// The first rule broken, naming the member (`Address`,
    /// `Attributes.Team`, `Location.Latitude`, …).
    pub fn check(&mut self, phone: &PhoneNormalizer) -> Result<(), Refusal> {
        if let Some(id) = &mut self.id {
            trim_in_place(id);
            check_id(id)?;
        }
        if let Some(c) = &mut self.channel_type {
            trim_in_place(c);
            check_channel(c)?;
        }
        if let Some(a) = &mut self.address {
            trim_in_place(a);
            if a.is_empty() {
                self.address = None;
            } else {
                let mut normal = String::new();
                normalize_address(self.channel_type.as_deref(), a, phone, &mut normal)?;
                *a = normal;
            }
        }
        for (member, v, allowed) in [
            ("OptOut", &mut self.opt_out, &OPT_OUT[..]),
            (
                "EndpointStatus",
                &mut self.endpoint_status,
                &ENDPOINT_STATUS[..],
            ),
        ] {
            if let Some(x) = v {
                trim_in_place(x);
                check_choice(member, x, allowed)?;
            }
        }
        if let Some(d) = &mut self.effective_date {
            trim_in_place(d);
            let mut normal = String::new();
            normalize_date(d, &mut normal)?;
            *d = normal;
        }
        check_attributes("Attributes", self.attributes.as_mut())?;
        for (name, v) in self.metrics.iter().flatten() {
            check_name("Metrics", name)?;
            check_metric(name, *v)?;
        }
        if let Some(u) = &mut self.user {
            if let Some(id) = &mut u.user_id {
                trim_in_place(id);
                if id.is_empty() {
                    u.user_id = None;
                }
            }
            check_attributes("User.UserAttributes", u.user_attributes.as_mut())?;
        }
        if let Some(l) = &self.location {
            check_coordinates(l.latitude, l.longitude)?;
        }
        self.check_counts()
    }

    /// At most [`MAX_ATTRIBUTES`] names in `Attributes`, `Metrics` and
    /// `User.UserAttributes` together, and [`MAX_VALUES`] values an
    /// attribute: one row (or rows merged into one endpoint) cannot make an
    /// endpoint of millions of attributes.
    ///
    /// # Errors
    ///
    /// Naming the member over its limit.
    pub fn check_counts(&self) -> Result<(), Refusal> {
        let attributes = self.attributes.as_ref();
        let users = self.user.as_ref().and_then(|u| u.user_attributes.as_ref());
        for (section, map) in [("Attributes", attributes), ("User.UserAttributes", users)] {
            for (name, values) in map.into_iter().flatten() {
                if values.len() > MAX_VALUES {
                    return Err(Refusal::new(
                        format!("{section}.{name}"),
                        format!(
                            "an attribute has at most {MAX_VALUES} values, not {}",
                            values.len()
                        ),
                    ));
                }
            }
        }
        let names = attributes.map_or(0, BTreeMap::len)
            + self.metrics.as_ref().map_or(0, BTreeMap::len)
            + users.map_or(0, BTreeMap::len);
        if names > MAX_ATTRIBUTES {
            return Err(Refusal::whole(format!(
                "an endpoint has at most {MAX_ATTRIBUTES} names in Attributes, Metrics and \
                 User.UserAttributes together, not {names}"
            )));
        }
        Ok(())
    }

    /// Its identity: its `Id`, or else its channel and address; `None`
    /// when it has neither.
    pub fn identity(&self) -> Option<Identity> {
        match (&self.id, &self.channel_type, &self.address) {
            (Some(id), _, _) => Some(Identity::Id(id.clone())),
            (None, Some(c), Some(a)) => Some(Identity::Address {
                channel: c.clone(),
                address: a.clone(),
            }),
            _ => None,
        }
    }

    /// Lays `newer` over `self`: the members `newer` has replace those of
    /// `self`; attribute, metric, demographic and location members merge
    /// by name. This is how an import updates a stored endpoint.
    pub fn merge(&mut self, newer: Endpoint) {
        fn over<T>(old: &mut Option<T>, new: Option<T>) {
            if new.is_some() {
                *old = new;
            }
        }
        fn map<V>(old: &mut Option<BTreeMap<String, V>>, new: Option<BTreeMap<String, V>>) {
            if let Some(new) = new {
                old.get_or_insert_with(BTreeMap::new).extend(new);
            }
        }
        over(&mut self.address, newer.address);
        map(&mut self.attributes, newer.attributes);
        over(&mut self.channel_type, newer.channel_type);
        if let Some(d) = newer.demographic {
            let o = self.demographic.get_or_insert_with(Demographic::default);
            over(&mut o.app_version, d.app_version);
            over(&mut o.locale, d.locale);
            over(&mut o.make, d.make);
            over(&mut o.model, d.model);
            over(&mut o.model_version, d.model_version);
            over(&mut o.platform, d.platform);
            over(&mut o.platform_version, d.platform_version);
            over(&mut o.timezone, d.timezone);
        }
        over(&mut self.effective_date, newer.effective_date);
        over(&mut self.endpoint_status, newer.endpoint_status);
        over(&mut self.id, newer.id);
        if let Some(l) = newer.location {
            let o = self.location.get_or_insert_with(Location::default);
            over(&mut o.city, l.city);
            over(&mut o.country, l.country);
            over(&mut o.latitude, l.latitude);
            over(&mut o.longitude, l.longitude);
            over(&mut o.postal_code, l.postal_code);
            over(&mut o.region, l.region);
        }
        map(&mut self.metrics, newer.metrics);
        over(&mut self.opt_out, newer.opt_out);
        over(&mut self.request_id, newer.request_id);
        if let Some(u) = newer.user {
            let o = self.user.get_or_insert_with(User::default);
            over(&mut o.user_id, u.user_id);
            map(&mut o.user_attributes, u.user_attributes);
        }
    }
}

/// The values `OptOut` takes.
const OPT_OUT: [&str; 2] = ["ALL", "NONE"];
/// The values `EndpointStatus` takes.
const ENDPOINT_STATUS: [&str; 2] = ["ACTIVE", "INACTIVE"];

// The rules, one function each, shared by [`Endpoint::check`] and the CSV
// encoder (`csv.rs`), which applies them to cells without building an
// `Endpoint`. Values come trimmed.

/// An `Id`: not empty, no `/`, no control character.
fn check_id(id: &str) -> Result<(), Refusal> {
    if id.is_empty() {
        return Err(Refusal::new("Id", "is empty"));
    }
    if id.contains('/') || id.chars().any(char::is_control) {
        return Err(Refusal::new(
            "Id",
            format!("{id:?} contains '/' or a control character"),
        ));
    }
    Ok(())
}

/// A `ChannelType`: one of [`CHANNEL_TYPES`].
fn check_channel(c: &str) -> Result<(), Refusal> {
    if CHANNEL_TYPES.contains(&c) {
        Ok(())
    } else {
        Err(Refusal::new(
            "ChannelType",
            format!("{c:?} is not one of {}", CHANNEL_TYPES.join(", ")),
        ))
    }
}

fn check_choice(member: &str, v: &str, allowed: &[&str]) -> Result<(), Refusal> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(Refusal::new(
            member,
            format!("{v:?} is not one of {}", allowed.join(", ")),
        ))
    }
}

/// An `EffectiveDate`, rewritten as UTC ISO 8601 with milliseconds.
fn normalize_date(d: &str, out: &mut String) -> Result<(), Refusal> {
    let ms = crate::time::parse_iso8601(d)
        .ok_or_else(|| Refusal::new("EffectiveDate", format!("{d:?} is not an ISO 8601 date")))?;
    out.clear();
    out.push_str(&crate::time::iso8601(ms));
    Ok(())
}

/// An attribute or metric name: 1 to [`MAX_NAME_CHARS`] characters.
fn check_name(section: &str, name: &str) -> Result<(), Refusal> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS {
        return Err(Refusal::new(
            format!("{section}.{name}"),
            format!("a name has 1 to {MAX_NAME_CHARS} characters, not {n}"),
        ));
    }
    Ok(())
}

/// An attribute value: at most [`MAX_VALUE_CHARS`] characters.
fn check_value(section: &str, name: &str, v: &str) -> Result<(), Refusal> {
    // Bytes bound characters from above: most values need no count.
    if v.len() > MAX_VALUE_CHARS {
        let n = v.chars().count();
        if n > MAX_VALUE_CHARS {
            return Err(Refusal::new(
                format!("{section}.{name}"),
                format!("a value has at most {MAX_VALUE_CHARS} characters, not {n}"),
            ));
        }
    }
    Ok(())
}

fn check_metric(name: &str, v: f64) -> Result<(), Refusal> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Refusal::new(
            format!("Metrics.{name}"),
            format!("{v} is not a finite number"),
        ))
    }
}

/// `Location.Latitude` within ±90 and `Location.Longitude` within ±180.
fn check_coordinates(latitude: Option<f64>, longitude: Option<f64>) -> Result<(), Refusal> {
    for (name, v, limit) in [
        ("Latitude", latitude, 90.0),
        ("Longitude", longitude, 180.0),
    ] {
        if let Some(v) = v
            && !(-limit..=limit).contains(&v)
        {
            return Err(Refusal::new(
                format!("Location.{name}"),
                format!("{v} is not between -{limit} and {limit}"),
            ));
        }
    }
    Ok(())
}

fn check_attributes(
    section: &str,
    attrs: Option<&mut BTreeMap<String, Vec<String>>>,
) -> Result<(), Refusal> {
    for (name, values) in attrs.into_iter().flatten() {
        check_name(section, name)?;
        for v in values.iter_mut() {
            trim_in_place(v);
            check_value(section, name, v)?;
        }
    }
    Ok(())
}

/// The normal form of an address on a channel, into `out`: e-mail
/// lowercased and checked, SMS and voice numbers in E.164; others as they
/// are (trimmed).
///
/// # Errors
///
/// When the address is not valid for its channel.
pub fn normalize_address(
    channel: Option<&str>,
    address: &str,
    phone: &PhoneNormalizer,
    out: &mut String,
) -> Result<(), Refusal> {
    out.clear();
    let mut bytes = std::mem::take(out).into_bytes();
    let checked = match channel {
        Some("EMAIL") => normalize_email(address, &mut bytes).map_err(|e| e.to_string()),
        Some("SMS" | "VOICE") => phone
            .normalize(address, &mut bytes)
            .map_err(|e| e.to_string()),
        _ => {
            bytes.extend_from_slice(address.as_bytes());
            Ok(())
        }
    };
    // The normalizers write text.
    *out = String::from_utf8(bytes).unwrap_or_default();
    checked.map_err(|why| {
        Refusal::new(
            "Address",
            format!(
                "{address:?} is not a valid {} address: {why}",
                channel.unwrap_or_default()
            ),
        )
    })
}

fn trim_in_place(s: &mut String) {
    let t = s.trim();
    if t.len() != s.len() {
        *s = t.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_endpoint_reads_back_and_unknown_members_are_refused() {
        let e: Endpoint = serde_json::from_str(
            r#"{"ApplicationId":"a1","CohortId":"7","CreationDate":"2026-01-01T00:00:00.000Z","Id":"e","Address":"x@y.z"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.id.as_deref(), e.address.as_deref()),
            (Some("e"), Some("x@y.z"))
        );
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"Address":"x@y.z","Id":"e"}"#
        );
        let err = serde_json::from_str::<Endpoint>(r#"{"Address":"x","Bogus":1}"#).unwrap_err();
        assert!(err.to_string().contains("Bogus"), "{err}");
    }

    fn checked(json: &str) -> Result<Endpoint, String> {
        let mut e: Endpoint = serde_json::from_str(json).map_err(|e| e.to_string())?;
        e.check(&PhoneNormalizer::new())
            .map(|()| e)
            .map_err(|r| r.to_string())
    }

    #[test]
    fn normalizes_addresses_by_channel() {
        let e = checked(r#"{"ChannelType":"EMAIL","Address":"  Ann@Example.COM "}"#).unwrap();
        assert_eq!(e.address.as_deref(), Some("ann@example.com"));
        let e = checked(r#"{"ChannelType":"SMS","Address":"(415) 555-0132"}"#).unwrap();
        assert_eq!(e.address.as_deref(), Some("+14155550132"));
        let e = checked(r#"{"ChannelType":"GCM","Address":" Tok "}"#).unwrap();
        assert_eq!(e.address.as_deref(), Some("Tok"));
        assert_eq!(
            e.identity(),
            Some(Identity::Address {
                channel: "GCM".into(),
                address: "Tok".into()
            })
        );
    }

    #[test]
    fn refuses_what_breaks_a_rule_naming_the_member() {
        for (json, says) in [
            (
                r#"{"ChannelType":"FAX","Address":"1"}"#,
                "ChannelType: \"FAX\"",
            ),
            (
                r#"{"ChannelType":"EMAIL","Address":"nope"}"#,
                "Address: \"nope\"",
            ),
            (r#"{"OptOut":"SOME"}"#, "OptOut"),
            (r#"{"EffectiveDate":"yesterday"}"#, "EffectiveDate"),
            (r#"{"Location":{"Latitude":91}}"#, "Location.Latitude"),
            (r#"{"Location":{"Longitude":-180.5}}"#, "Location.Longitude"),
            (r#"{"Attributes":{"":["x"]}}"#, "Attributes.: a name"),
            (
                &format!(r#"{{"Attributes":{{"a":["{}"]}}}}"#, "v".repeat(101)),
                "Attributes.a: a value has at most 100",
            ),
            (
                &format!(
                    r#"{{"User":{{"UserAttributes":{{"{}":["v"]}}}}}}"#,
                    "n".repeat(51)
                ),
                "User.UserAttributes.nnn",
            ),
            (r#"{"Id":" "}"#, "Id: is empty"),
            (
                &format!(
                    r#"{{"Attributes":{{"a":[{}]}}}}"#,
                    vec![r#""v""#; 51].join(",")
                ),
                "Attributes.a: an attribute has at most 50 values, not 51",
            ),
            (
                &format!(
                    r#"{{"Attributes":{{{}}},"Metrics":{{{}}}}}"#,
                    (0..200)
                        .map(|i| format!(r#""a{i}":["v"]"#))
                        .collect::<Vec<_>>()
                        .join(","),
                    (0..51)
                        .map(|i| format!(r#""m{i}":1"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "at most 250 names in Attributes, Metrics and User.UserAttributes together, not 251",
            ),
        ] {
            let err = checked(json).unwrap_err();
            assert!(err.contains(says), "{json}: {err}");
        }
        let err = checked(r#"{"Metrics":{"m":"x"}}"#).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
        let err = checked(r#"{"Adress":"x"}"#).unwrap_err();
        assert!(err.contains("unknown field `Adress`"), "{err}");
    }

    #[test]
    fn merge_replaces_members_and_merges_maps() {
        let mut old = checked(
            r#"{"ChannelType":"EMAIL","Address":"a@b.co","Attributes":{"x":["1"],"y":["2"]},
                "Location":{"City":"Oslo","Country":"NO"},"User":{"UserId":"u1"}}"#,
        )
        .unwrap();
        let new =
            checked(r#"{"Attributes":{"y":["3"]},"Location":{"City":"Bergen"},"OptOut":"ALL"}"#)
                .unwrap();
        old.merge(new);
        let a = old.attributes.as_ref().unwrap();
        assert_eq!((a["x"][0].as_str(), a["y"][0].as_str()), ("1", "3"));
        let l = old.location.as_ref().unwrap();
        assert_eq!(
            (l.city.as_deref(), l.country.as_deref()),
            (Some("Bergen"), Some("NO"))
        );
        assert_eq!(old.opt_out.as_deref(), Some("ALL"));
        assert_eq!(old.user.unwrap().user_id.as_deref(), Some("u1"));
    }
}
