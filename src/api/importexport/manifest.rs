//! Import/Export manifests: YAML, parsed with `serde-saphyr` and checked
//! field by field.
//!
//! Every scalar is read as text (`manifestVersion: 2.0` is `"2.0"`,
//! `eraseDevice: yes` is `"yes"`), duplicate keys are refused, and alias
//! expansion and size are bounded, so a YAML bomb is a
//! `MalformedManifestException`, not a hung server. Each refusal is the
//! model's exception for it and names the field, dotted from the top
//! (`returnAddress.phoneNumber`, `operations[1].exportBucket`).

use serde_json::{Map, Value};
use serde_saphyr::options::DuplicateKeyPolicy;

use super::{Exception, ImportExportError};
use crate::ingest::normalize::PhoneNormalizer;
use crate::ingest::normalize::normalize_email;
use crate::job::{Direction, ExportOperation, ExportSpec, FileSystem, ImportSpec};

/// The largest manifest, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// Fields every manifest may have.
const COMMON: &[&str] = &[
    "manifestVersion",
    "accessKeyId",
    "deviceId",
    "eraseDevice",
    "logBucket",
    "logPrefix",
    "notificationEmail",
    "serviceLevel",
    "returnAddress",
    "customs",
    "generator",
];

/// Fields of Import manifests only.
const IMPORT: &[&str] = &[
    "bucket",
    "prefix",
    "acl",
    "cacheControl",
    "contentDisposition",
    "contentLanguage",
    "contentTypes",
    "ignore",
    "setContentEncodingForGzFiles",
];

/// Fields of Export manifests only.
const EXPORT: &[&str] = &["fileSystem", "operations", "recoveryDirectory"];

const ADDRESS: &[&str] = &[
    "name",
    "company",
    "street1",
    "street2",
    "street3",
    "city",
    "stateOrProvince",
    "postalCode",
    "country",
    "phoneNumber",
];

const CUSTOMS: &[&str] = &[
    "dataDescription",
    "encryptionClassification",
    "exportCertifierName",
    "requiresExportLicense",
    "deviceValue",
    "deviceCountryOfOrigin",
    "deviceType",
    "typeOfExport",
];

const OPERATION: &[&str] = &[
    "exportBucket",
    "prefix",
    "beginMarker",
    "endMarker",
    "targetDirectory",
];

const ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// A return (or shipping) address.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Address {
    /// `name`.
    pub name: String,
    /// `company`.
    pub company: Option<String>,
    /// `street1`.
    pub street1: String,
    /// `street2`.
    pub street2: Option<String>,
    /// `street3`.
    pub street3: Option<String>,
    /// `city`.
    pub city: String,
    /// `stateOrProvince`.
    pub state_or_province: Option<String>,
    /// `postalCode`.
    pub postal_code: String,
    /// `country`.
    pub country: String,
    /// `phoneNumber`, as given.
    pub phone_number: String,
}

impl Address {
    /// Checks the address: the required lines are there and not too long,
    /// a state or province for the US and Canada, and a phone number that
    /// is one (`member` names the address in messages).
    ///
    /// # Errors
    ///
    /// `InvalidAddressException`, naming the field.
    pub fn check(&self, member: &str) -> Result<(), ImportExportError> {
        let bad = |m: String| ImportExportError::new(Exception::InvalidAddress, m);
        for (field, v) in [
            ("name", &self.name),
            ("street1", &self.street1),
            ("city", &self.city),
            ("postalCode", &self.postal_code),
            ("country", &self.country),
            ("phoneNumber", &self.phone_number),
        ] {
            if v.trim().is_empty() {
                return Err(bad(format!("{member}.{field} is required")));
            }
        }
        for (field, v) in [
            ("name", Some(&self.name)),
            ("company", self.company.as_ref()),
            ("street1", Some(&self.street1)),
            ("street2", self.street2.as_ref()),
            ("street3", self.street3.as_ref()),
            ("city", Some(&self.city)),
            ("stateOrProvince", self.state_or_province.as_ref()),
            ("postalCode", Some(&self.postal_code)),
            ("country", Some(&self.country)),
        ] {
            if let Some(v) = v
                && v.chars().count() > 100
            {
                return Err(bad(format!(
                    "{member}.{field} is {} characters long; at most 100",
                    v.chars().count()
                )));
            }
        }
        let region = country_code(&self.country);
        if matches!(region.as_deref(), Some("US" | "CA"))
            && self
                .state_or_province
                .as_deref()
                .is_none_or(|s| s.trim().is_empty())
        {
            return Err(bad(format!(
                "{member}.stateOrProvince is required for an address in {}",
                self.country
            )));
        }
        let phone = region
            .as_deref()
            .and_then(|r| PhoneNormalizer::with_region(r).ok())
            .unwrap_or_default();
        let mut out = Vec::new();
        phone.normalize(&self.phone_number, &mut out).map_err(|e| {
            bad(format!(
                "{member}.phoneNumber {:?} is not a phone number: {e}",
                self.phone_number
            ))
        })?;
        Ok(())
    }

    /// The address as lines, for a label.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![self.name.clone()];
        out.extend(self.company.clone());
        out.push(self.street1.clone());
        out.extend(self.street2.clone());
        out.extend(self.street3.clone());
        let state = self.state_or_province.as_deref().unwrap_or("");
        out.push(
            format!("{} {} {}", self.city, state, self.postal_code)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
        out.push(self.country.clone());
        out.push(self.phone_number.clone());
        out
    }
}

/// The ISO 3166 code of a country as people write it, when it is a
/// two-letter code or one of the usual names of the US.
pub fn country_code(country: &str) -> Option<String> {
    let c = country.trim().to_ascii_uppercase();
    match c.as_str() {
        "US" | "USA" | "U.S." | "U.S.A." | "UNITED STATES" | "UNITED STATES OF AMERICA" => {
            Some("US".into())
        }
        _ if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => Some(c),
        _ => None,
    }
}

/// Whether two countries are the same, as [`country_code`] reads them
/// (or, failing that, by name).
pub fn same_country(a: &str, b: &str) -> bool {
    match (country_code(a), country_code(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

/// A checked manifest.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Manifest {
    /// `accessKeyId`.
    pub access_key_id: String,
    /// `deviceId`.
    pub device_id: String,
    /// `eraseDevice`.
    pub erase_device: bool,
    /// `notificationEmail`, split at `;` and normalized.
    pub notification_email: Vec<String>,
    /// `serviceLevel`.
    pub service_level: Option<String>,
    /// `returnAddress`.
    pub return_address: Address,
    /// `customs`, as given (checked).
    pub customs: Option<Vec<(String, String)>>,
    /// `logBucket`, or the (first) bucket of the job.
    pub log_bucket: String,
    /// `logPrefix`.
    pub log_prefix: String,
    /// What an Import does.
    pub import: Option<ImportSpec>,
    /// What an Export does.
    pub export: Option<ExportSpec>,
}

impl Manifest {
    /// The buckets it names, each with the field that names it.
    pub fn buckets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(i) = &self.import {
            out.push(("bucket".to_owned(), i.bucket.clone()));
        }
        if let Some(e) = &self.export {
            for (n, op) in e.operations.iter().enumerate() {
                out.push((format!("operations[{n}].exportBucket"), op.bucket.clone()));
            }
        }
        out.push(("logBucket".to_owned(), self.log_bucket.clone()));
        out
    }
}

fn malformed(m: impl Into<String>) -> ImportExportError {
    ImportExportError::new(Exception::MalformedManifest, m)
}

fn invalid(m: impl Into<String>) -> ImportExportError {
    ImportExportError::new(Exception::InvalidManifestField, m)
}

fn missing(field: &str, direction: Direction) -> ImportExportError {
    ImportExportError::new(
        Exception::MissingManifestField,
        format!(
            "the manifest has no {field}, which {} manifests require",
            direction.as_str()
        ),
    )
}

/// Parses the YAML text into a tree of text scalars.
///
/// # Errors
///
/// `MalformedManifestException`, with the line and column.
pub fn parse_yaml(text: &str) -> Result<Value, ImportExportError> {
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(malformed(format!(
            "the manifest is {} bytes; at most {MAX_MANIFEST_BYTES}",
            text.len()
        )));
    }
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    options.no_schema = true;
    options.alias_limits.max_total_replayed_events = 10_000;
    options.alias_limits.max_replay_stack_depth = 16;
    options.alias_limits.max_alias_expansions_per_anchor = 100;
    let v: Value = serde_saphyr::from_str_with_options(text, options)
        .map_err(|e| malformed(format!("the manifest is not valid YAML: {e}")))?;
    Ok(v)
}

/// A mapping's fields, read one by one; what is left at the end is
/// unknown.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    /// `returnAddress.` and the like.
    path: String,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, path: &str, exception: Exception) -> Result<Self, ImportExportError> {
        match v {
            Value::Object(map) => Ok(Fields {
                map,
                path: path.to_owned(),
            }),
            _ => Err(ImportExportError::new(
                exception,
                if path.is_empty() {
                    "the manifest is not a mapping of fields (`name: value` lines)".to_owned()
                } else {
                    format!("{} must be a mapping of fields", path.trim_end_matches('.'))
                },
            )),
        }
    }

    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.path)
    }

    /// The text of a scalar field, if present (an empty value is absent).
    fn text(&self, field: &str, exception: Exception) -> Result<Option<String>, ImportExportError> {
        match self.map.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ImportExportError::new(
                exception,
                format!("{} must be a single value", self.name(field)),
            )),
        }
    }

    /// Refuses fields not in `known`.
    fn only(&self, known: &[&[&str]], exception: Exception) -> Result<(), ImportExportError> {
        if let Some(k) = self
            .map
            .keys()
            .find(|k| !known.iter().any(|set| set.contains(&k.as_str())))
        {
            let all: Vec<&str> = known.iter().flat_map(|s| s.iter().copied()).collect();
            return Err(ImportExportError::new(
                exception,
                format!(
                    "unknown field {}; the fields here are {}",
                    self.name(k),
                    all.join(", ")
                ),
            ));
        }
        Ok(())
    }
}

fn yes_no(field: &str, v: &str) -> Result<bool, ImportExportError> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(invalid(format!("{field} must be yes or no; it is {v:?}"))),
    }
}

/// A relative folder on the device: no `..`, no leading `/` or `\`.
fn device_folder(field: &str, v: &str) -> Result<String, ImportExportError> {
    let t = v.trim_matches('/');
    if v.starts_with('\\')
        || v.contains(':')
        || t.split('/')
            .any(|s| s == ".." || s == "." || s.contains('\\'))
        || t.contains("//")
    {
        return Err(invalid(format!(
            "{field} {v:?} must be a folder below the device's root (no `..`, `.`, `\\` or `:`)"
        )));
    }
    Ok(t.to_owned())
}

/// A prefix of object keys (empty when absent): at most 900 bytes, so that
/// the keys under it fit S3's 1024, and no `.` or `..` segments.
fn key_prefix(field: &str, v: Option<String>) -> Result<String, ImportExportError> {
    let v = v.unwrap_or_default();
    if v.len() > 900 || v.split('/').any(|s| s == ".." || s == ".") {
        return Err(invalid(format!(
            "{field} must be at most 900 bytes, without `.` or `..` segments"
        )));
    }
    Ok(v)
}

fn bucket_name(field: &str, v: String) -> Result<String, ImportExportError> {
    crate::objects::check_bucket_name(&v).map_err(|why| invalid(format!("{field}: {why}")))?;
    Ok(v)
}

/// Parses and checks a manifest for a job of `direction`, with shipping
/// from `home_country` needing no customs.
///
/// # Errors
///
/// The model's exception for the first problem, naming its field:
/// `MalformedManifestException` (not YAML, not a mapping, too large),
/// `MissingManifestFieldException`, `InvalidManifestFieldException`
/// (including unknown fields and fields of the other job type),
/// `InvalidAddressException`, `MissingCustomsException`,
/// `InvalidCustomsException`, `InvalidFileSystemException`.
pub fn parse(
    text: &str,
    direction: Direction,
    home_country: &str,
) -> Result<Manifest, ImportExportError> {
    let tree = parse_yaml(text)?;
    let top = Fields::new(&tree, "", Exception::MalformedManifest)?;
    let (own, other, other_name) = match direction {
        Direction::Import => (IMPORT, EXPORT, "Export"),
        Direction::Export => (EXPORT, IMPORT, "Import"),
    };
    if let Some(k) = top.map.keys().find(|k| other.contains(&k.as_str())) {
        return Err(invalid(format!(
            "{k} is a field of {other_name} manifests; this is an {} job",
            direction.as_str()
        )));
    }
    top.only(&[COMMON, own], Exception::InvalidManifestField)?;
    let text_of = |f: &str| top.text(f, Exception::InvalidManifestField);
    let required = |f: &str| text_of(f)?.ok_or_else(|| missing(f, direction));

    let version = required("manifestVersion")?;
    if version != "2.0" {
        return Err(invalid(format!(
            "manifestVersion must be 2.0; it is {version}"
        )));
    }
    let access_key_id = required("accessKeyId")?;
    let device_id = required("deviceId")?;
    if device_id.chars().count() > 255 {
        return Err(invalid("deviceId is longer than 255 characters"));
    }
    let erase_device = match (text_of("eraseDevice")?, direction) {
        (Some(v), _) => yes_no("eraseDevice", &v)?,
        (None, Direction::Import) => return Err(missing("eraseDevice", direction)),
        (None, Direction::Export) => false,
    };
    let mut notification_email = Vec::new();
    if let Some(list) = text_of("notificationEmail")? {
        for addr in list.split(';').map(str::trim).filter(|a| !a.is_empty()) {
            let mut out = Vec::new();
            normalize_email(addr, &mut out).map_err(|e| {
                invalid(format!(
                    "notificationEmail: {addr:?} is not an e-mail address: {e}"
                ))
            })?;
            notification_email.push(String::from_utf8_lossy(&out).into_owned());
        }
    }
    let service_level = text_of("serviceLevel")?;
    if let Some(s) = &service_level
        && s != "standard"
        && s != "expeditedShipping"
    {
        return Err(invalid(format!(
            "serviceLevel must be standard or expeditedShipping; it is {s:?}"
        )));
    }
    let return_address = match top.map.get("returnAddress") {
        None | Some(Value::Null) => return Err(missing("returnAddress", direction)),
        Some(v) => address(v)?,
    };
    return_address.check("returnAddress")?;
    let customs = match top.map.get("customs") {
        None | Some(Value::Null) => None,
        Some(v) => Some(customs(v)?),
    };
    if customs.is_none() && !same_country(&return_address.country, home_country) {
        return Err(ImportExportError::new(
            Exception::MissingCustoms,
            format!(
                "returnAddress.country is {}, outside {home_country}: the manifest needs \
                 customs ({})",
                return_address.country,
                CUSTOMS[..7].join(", ")
            ),
        ));
    }

    let (import, export) = match direction {
        Direction::Import => (Some(import_spec(&top)?), None),
        Direction::Export => (None, Some(export_spec(&top)?)),
    };
    let first_bucket = import
        .as_ref()
        .map(|i| i.bucket.clone())
        .or_else(|| {
            export
                .as_ref()
                .and_then(|e| e.operations.first().map(|o| o.bucket.clone()))
        })
        .unwrap_or_default();
    let log_bucket = match text_of("logBucket")? {
        Some(b) => bucket_name("logBucket", b)?,
        None => first_bucket,
    };
    let log_prefix = key_prefix("logPrefix", text_of("logPrefix")?)?;
    Ok(Manifest {
        access_key_id,
        device_id,
        erase_device,
        notification_email,
        service_level,
        return_address,
        customs,
        log_bucket,
        log_prefix,
        import,
        export,
    })
}

fn address(v: &Value) -> Result<Address, ImportExportError> {
    let f = Fields::new(v, "returnAddress.", Exception::InvalidAddress)?;
    f.only(&[ADDRESS], Exception::InvalidAddress)?;
    let t = |n: &str| f.text(n, Exception::InvalidAddress);
    Ok(Address {
        name: t("name")?.unwrap_or_default(),
        company: t("company")?,
        street1: t("street1")?.unwrap_or_default(),
        street2: t("street2")?,
        street3: t("street3")?,
        city: t("city")?.unwrap_or_default(),
        state_or_province: t("stateOrProvince")?,
        postal_code: t("postalCode")?.unwrap_or_default(),
        country: t("country")?.unwrap_or_default(),
        phone_number: t("phoneNumber")?.unwrap_or_default(),
    })
}

fn customs(v: &Value) -> Result<Vec<(String, String)>, ImportExportError> {
    let bad = |m: String| ImportExportError::new(Exception::InvalidCustoms, m);
    let f = Fields::new(v, "customs.", Exception::InvalidCustoms)?;
    f.only(&[CUSTOMS], Exception::InvalidCustoms)?;
    let mut out = Vec::new();
    for &field in CUSTOMS {
        let v = f.text(field, Exception::InvalidCustoms)?;
        let Some(v) = v else {
            if field == "typeOfExport" {
                continue;
            }
            return Err(bad(format!("customs.{field} is required")));
        };
        match field {
            "encryptionClassification" => {
                let b = v.as_bytes();
                let eccn = b.len() == 5
                    && b[0].is_ascii_digit()
                    && (b'A'..=b'E').contains(&b[1])
                    && b[2..].iter().all(u8::is_ascii_digit);
                if !eccn {
                    return Err(bad(format!(
                        "customs.encryptionClassification must be an ECCN such as 5D992; it is \
                         {v:?}"
                    )));
                }
            }
            "requiresExportLicense" => {
                yes_no("customs.requiresExportLicense", &v).map_err(|e| bad(e.message.clone()))?;
            }
            "deviceValue" => {
                let ok = v.parse::<f64>().is_ok_and(|x| x.is_finite() && x > 0.0);
                if !ok {
                    return Err(bad(format!(
                        "customs.deviceValue must be a positive number; it is {v:?}"
                    )));
                }
            }
            "typeOfExport" if !matches!(v.as_str(), "return" | "permanent" | "temporary") => {
                return Err(bad(format!(
                    "customs.typeOfExport must be return, permanent or temporary; it is {v:?}"
                )));
            }
            _ => {}
        }
        out.push((field.to_owned(), v));
    }
    Ok(out)
}

fn import_spec(top: &Fields<'_>) -> Result<ImportSpec, ImportExportError> {
    let text_of = |f: &str| top.text(f, Exception::InvalidManifestField);
    let bucket = text_of("bucket")?.ok_or_else(|| missing("bucket", Direction::Import))?;
    let bucket = bucket_name("bucket", bucket)?;
    let prefix = key_prefix("prefix", text_of("prefix")?)?;
    let acl = text_of("acl")?;
    if let Some(a) = &acl
        && !ACLS.contains(&a.as_str())
    {
        return Err(invalid(format!(
            "acl must be one of {}; it is {a:?}",
            ACLS.join(", ")
        )));
    }
    let mut content_types = Vec::new();
    match top.map.get("contentTypes") {
        None | Some(Value::Null) => {}
        Some(v) => {
            let f = Fields::new(v, "contentTypes.", Exception::InvalidManifestField)?;
            for k in f.map.keys() {
                let t = f
                    .text(k, Exception::InvalidManifestField)?
                    .unwrap_or_default();
                let ext = k.trim_start_matches('.').to_ascii_lowercase();
                let mime_ok = t.split_once('/').is_some_and(|(a, b)| {
                    !a.is_empty() && !b.is_empty() && !t.contains(char::is_whitespace)
                });
                if ext.is_empty() || ext.contains('/') || !mime_ok {
                    return Err(invalid(format!(
                        "contentTypes.{k}: a file extension to a media type such as text/csv; \
                         it is {t:?}"
                    )));
                }
                content_types.push((ext, t));
            }
        }
    }
    let mut ignore = Vec::new();
    match top.map.get("ignore") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (n, item) in items.iter().enumerate() {
                let Some(r) = item.as_str().map(str::to_owned).or_else(|| {
                    matches!(item, Value::Number(_) | Value::Bool(_)).then(|| item.to_string())
                }) else {
                    return Err(invalid(format!("ignore[{n}] must be a regular expression")));
                };
                regex::RegexBuilder::new(&r)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        invalid(format!(
                            "ignore[{n}] {r:?} is not a regular expression: {e}"
                        ))
                    })?;
                ignore.push(r);
            }
        }
        Some(_) => {
            return Err(invalid(
                "ignore must be a list of regular expressions (`- pattern` lines)",
            ));
        }
    }
    let gzip = match text_of("setContentEncodingForGzFiles")? {
        Some(v) => yes_no("setContentEncodingForGzFiles", &v)?,
        None => false,
    };
    Ok(ImportSpec {
        bucket,
        prefix,
        ignore,
        content_types,
        cache_control: text_of("cacheControl")?,
        content_disposition: text_of("contentDisposition")?,
        content_language: text_of("contentLanguage")?,
        gzip_content_encoding: gzip,
        acl,
    })
}

fn export_spec(top: &Fields<'_>) -> Result<ExportSpec, ImportExportError> {
    let text_of = |f: &str| top.text(f, Exception::InvalidManifestField);
    let fs = text_of("fileSystem")?.ok_or_else(|| missing("fileSystem", Direction::Export))?;
    let file_system = match fs.to_ascii_uppercase().as_str() {
        "NTFS" => FileSystem::Ntfs,
        "EXT4" => FileSystem::Ext4,
        _ => {
            return Err(ImportExportError::new(
                Exception::InvalidFileSystem,
                format!("fileSystem must be NTFS or EXT4; it is {fs:?}"),
            ));
        }
    };
    let ops = match top.map.get("operations") {
        None | Some(Value::Null) => return Err(missing("operations", Direction::Export)),
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(_) => {
            return Err(invalid(
                "operations must be a list of at least one operation (`- exportBucket: ...`)",
            ));
        }
    };
    let mut operations = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        let path = format!("operations[{n}].");
        let f = Fields::new(op, &path, Exception::InvalidManifestField)?;
        f.only(&[OPERATION], Exception::InvalidManifestField)?;
        let t = |x: &str| f.text(x, Exception::InvalidManifestField);
        let bucket = t("exportBucket")?.ok_or_else(|| {
            ImportExportError::new(
                Exception::MissingManifestField,
                format!("{path}exportBucket is required"),
            )
        })?;
        let bucket = bucket_name(&format!("{path}exportBucket"), bucket)?;
        let target = match t("targetDirectory")? {
            Some(d) => device_folder(&format!("{path}targetDirectory"), &d)?,
            None => bucket.clone(),
        };
        let op = ExportOperation {
            prefix: t("prefix")?.unwrap_or_default(),
            begin_marker: t("beginMarker")?,
            end_marker: t("endMarker")?,
            target_directory: target,
            bucket,
        };
        if let (Some(b), Some(e)) = (&op.begin_marker, &op.end_marker)
            && b >= e
        {
            return Err(invalid(format!(
                "{path}beginMarker {b:?} is not before endMarker {e:?}"
            )));
        }
        operations.push(op);
    }
    let recovery = match text_of("recoveryDirectory")? {
        Some(d) => device_folder("recoveryDirectory", &d)?,
        None => "EXPORT-RECOVERY".to_owned(),
    };
    if recovery.is_empty() {
        return Err(invalid(
            "recoveryDirectory must be a folder below the device's root",
        ));
    }
    Ok(ExportSpec {
        file_system,
        operations,
        recovery_directory: recovery,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS_YAML: &str = "returnAddress:
    name: Jane Roe
    company: Example Corp.
    street1: 123 Any Street
    city: Anytown
    stateOrProvince: WA
    postalCode: 91011-1111
    phoneNumber: 206-555-1111
    country: USA
";

    fn import(extra: &str) -> String {
        format!(
            "manifestVersion: 2.0\naccessKeyId: AKID\ndeviceId: 49382\neraseDevice: yes\n\
             bucket: my-bucket\n{extra}{ADDRESS_YAML}"
        )
    }

    /// The manifest with a return address in France.
    fn abroad(text: String) -> String {
        text.replace("country: USA", "country: FR")
            .replace("    stateOrProvince: WA\n", "")
            .replace("206-555-1111", "+33 1 23 45 67 89")
    }

    fn code(r: Result<Manifest, ImportExportError>) -> (Exception, String) {
        let e = r.unwrap_err();
        (e.exception, e.message)
    }

    #[test]
    fn a_full_import_manifest() {
        let m = parse(
            &import(
                "prefix: photos/\nacl: private\ncontentTypes:\n    csv: text/csv\n    \
                 JPG: image/jpeg\nignore:\n    - ^tmp/\n    - \\.bak$\n\
                 setContentEncodingForGzFiles: yes\nlogPrefix: logs/\n\
                 notificationEmail: john.doe@example.com; JANE@example.com\n",
            ),
            Direction::Import,
            "US",
        )
        .unwrap();
        let i = m.import.unwrap();
        assert_eq!(i.bucket, "my-bucket");
        assert_eq!(i.prefix, "photos/");
        assert_eq!(i.ignore, ["^tmp/", "\\.bak$"]);
        assert_eq!(
            i.content_types,
            [
                ("csv".to_owned(), "text/csv".to_owned()),
                ("jpg".to_owned(), "image/jpeg".to_owned())
            ]
        );
        assert!(i.gzip_content_encoding);
        assert_eq!(m.device_id, "49382");
        assert!(m.erase_device);
        assert_eq!(m.log_bucket, "my-bucket");
        assert_eq!(m.notification_email.len(), 2);
    }

    #[test]
    fn each_refusal_names_its_field() {
        let cases: Vec<(String, Direction, Exception, &str)> =
            vec![
            ("a: [".into(), Direction::Import, Exception::MalformedManifest, "not valid YAML"),
            ("- a\n- b\n".into(), Direction::Import, Exception::MalformedManifest, "mapping"),
            (
                import("bucket: other-bucket\n"),
                Direction::Import,
                Exception::MalformedManifest,
                "bucket",
            ),
            (import("colour: red\n"), Direction::Import, Exception::InvalidManifestField, "colour"),
            (
                import("fileSystem: NTFS\n"),
                Direction::Import,
                Exception::InvalidManifestField,
                "fileSystem is a field of Export",
            ),
            (
                import("").replace("manifestVersion: 2.0\n", "manifestVersion: 1.0\n"),
                Direction::Import,
                Exception::InvalidManifestField,
                "manifestVersion",
            ),
            (
                import("").replace("deviceId: 49382\n", ""),
                Direction::Import,
                Exception::MissingManifestField,
                "deviceId",
            ),
            (
                import("").replace("bucket: my-bucket\n", ""),
                Direction::Import,
                Exception::MissingManifestField,
                "bucket",
            ),
            (
                import("").replace("bucket: my-bucket\n", "bucket: My_Bucket\n"),
                Direction::Import,
                Exception::InvalidManifestField,
                "bucket",
            ),
            (
                import("ignore:\n    - '('\n"),
                Direction::Import,
                Exception::InvalidManifestField,
                "ignore[0]",
            ),
            (import("acl: everyone\n"), Direction::Import, Exception::InvalidManifestField, "acl"),
            (
                import("eraseDevice2: x\n"),
                Direction::Import,
                Exception::InvalidManifestField,
                "eraseDevice2",
            ),
            (
                import("").replace("phoneNumber: 206-555-1111", "phoneNumber: call me"),
                Direction::Import,
                Exception::InvalidAddress,
                "returnAddress.phoneNumber",
            ),
            (
                import("").replace("    stateOrProvince: WA\n", ""),
                Direction::Import,
                Exception::InvalidAddress,
                "returnAddress.stateOrProvince",
            ),
            (
                abroad(import("")),
                Direction::Import,
                Exception::MissingCustoms,
                "customs",
            ),
            (
                abroad(import(
                    "customs:\n    dataDescription: photos\n    encryptionClassification: 5D992\n",
                )),
                Direction::Import,
                Exception::InvalidCustoms,
                "customs.exportCertifierName",
            ),
            (
                "manifestVersion: 2.0\naccessKeyId: A\ndeviceId: 1\nfileSystem: FAT32\n\
                 operations:\n    - exportBucket: my-bucket\n"
                    .to_owned()
                    + ADDRESS_YAML,
                Direction::Export,
                Exception::InvalidFileSystem,
                "FAT32",
            ),
            (
                "manifestVersion: 2.0\naccessKeyId: A\ndeviceId: 1\nfileSystem: NTFS\n\
                 operations:\n    - exportBucket: my-bucket\n      targetDirectory: ../up\n"
                    .to_owned()
                    + ADDRESS_YAML,
                Direction::Export,
                Exception::InvalidManifestField,
                "operations[0].targetDirectory",
            ),
            (
                "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n\
                 c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c]\n\
                 e: &e [*d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e]\n"
                    .into(),
                Direction::Import,
                Exception::MalformedManifest,
                "YAML",
            ),
        ];
        for (text, dir, want, names) in cases {
            let (got, message) = code(parse(&text, dir, "US"));
            assert_eq!(got, want, "{text}\n{message}");
            assert!(message.contains(names), "{message:?} should name {names:?}");
        }
    }

    #[test]
    fn customs_abroad() {
        let text = abroad(import(
            "customs:\n    dataDescription: photos\n    encryptionClassification: 5D992\n    \
             exportCertifierName: Jane Roe\n    requiresExportLicense: no\n    \
             deviceValue: 250\n    deviceCountryOfOrigin: China\n    \
             deviceType: externalStorageDevice\n",
        ));
        let m = parse(&text, Direction::Import, "US").unwrap();
        assert_eq!(m.customs.unwrap().len(), 7);
    }

    #[test]
    fn an_export_manifest() {
        let text = "manifestVersion: 2.0\naccessKeyId: A\ndeviceId: 1\nfileSystem: ext4\n\
                    operations:\n    - exportBucket: my-bucket\n      prefix: logs\n      \
                    beginMarker: logs/a\n      endMarker: logs/z\n      targetDirectory: /out/\n"
            .to_owned()
            + ADDRESS_YAML;
        let m = parse(&text, Direction::Export, "US").unwrap();
        let e = m.export.unwrap();
        assert_eq!(e.file_system, FileSystem::Ext4);
        assert_eq!(e.recovery_directory, "EXPORT-RECOVERY");
        assert_eq!(e.operations[0].target_directory, "out");
        assert_eq!(e.operations[0].begin_marker.as_deref(), Some("logs/a"));
        assert_eq!(m.log_bucket, "my-bucket");
        assert!(!m.erase_device);
    }
}
