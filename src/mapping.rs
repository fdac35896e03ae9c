//! Mapping files in the shape of a Customer Profiles `CreateUploadJob`
//! request.
//!
//! ```json
//! {
//!   "DomainName": "customers",
//!   "DisplayName": "customers.csv",
//!   "DataExpiry": 14,
//!   "Fields": {
//!     "Email": {"Source": "_source.email", "Target": "_profile.EmailAddress",
//!               "ContentType": "EMAIL_ADDRESS"}
//!   },
//!   "UniqueKey": "Email"
//! }
//! ```
//!
//! `Fields` and `UniqueKey` are required; the others are optional. Each
//! field's `Source` is `_source.<column>` and its `Target` is
//! `_profile.<path>`; `ContentType` defaults to `STRING`. `UniqueKey` names
//! one field, or several separated by commas. Values are checked against
//! the service model's constraints and a wrong one is reported with its key.

use crate::ingest::normalize::ContentType;
use crate::ingest::{Field, Mapping, MappingError, MappingProblem};
use serde_json::{Map, Value};

/// Days a profile lives when neither the job nor the domain says: 14.
pub const DEFAULT_DATA_EXPIRY_DAYS: u32 = 14;

/// A parsed mapping file.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct MappingFile {
    /// `DomainName`, if given.
    pub domain_name: Option<String>,
    /// `DisplayName`, if given.
    pub display_name: Option<String>,
    /// `DataExpiry` in days, if given.
    pub data_expiry: Option<u32>,
    /// The fields and unique key, for the engine.
    pub mapping: Mapping,
}

fn err(key: &str, problem: MappingProblem) -> MappingError {
    MappingError {
        key: key.to_owned(),
        problem,
    }
}

fn text<'a>(v: &'a Value, key: &str, min: usize, max: usize) -> Result<&'a str, MappingError> {
    let s = v
        .as_str()
        .ok_or_else(|| err(key, MappingProblem::Type("a string")))?;
    let n = s.chars().count();
    if n < min || n > max {
        return Err(err(key, MappingProblem::OutOfRange(length_range(min, max))));
    }
    Ok(s)
}

fn length_range(min: usize, max: usize) -> &'static str {
    match (min, max) {
        (1, 64) => "1 to 64 characters long",
        (1, 255) => "1 to 255 characters long",
        _ => "1 to 1000 characters long",
    }
}

fn matches(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

impl MappingFile {
    /// Parses and checks a mapping file.
    ///
    /// # Errors
    ///
    /// When the JSON is invalid (with its line and column), a member is
    /// unknown, missing, of the wrong type or out of its range, a `Source`
    /// or `Target` lacks its prefix, or the fields and key do not make a
    /// [`Mapping`]. The error names the key, such as `Fields.Email.Target`.
    ///
    /// # Example
    ///
    /// ```
    /// use sluice::mapping::MappingFile;
    ///
    /// let m = MappingFile::from_json(br#"{
    ///     "Fields": {"Email": {"Source": "_source.email",
    ///                          "Target": "_profile.EmailAddress",
    ///                          "ContentType": "EMAIL_ADDRESS"}},
    ///     "UniqueKey": "Email"}"#).unwrap();
    /// assert_eq!(&*m.mapping.fields()[0].column, "email");
    /// assert_eq!(&*m.mapping.fields()[0].target, "EmailAddress");
    /// ```
    pub fn from_json(json: &[u8]) -> Result<MappingFile, MappingError> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| {
            err(
                "",
                MappingProblem::Json {
                    line: e.line(),
                    column: e.column(),
                    message: e.to_string(),
                },
            )
        })?;
        let obj = doc
            .as_object()
            .ok_or_else(|| err("", MappingProblem::Type("a JSON object")))?;
        for k in obj.keys() {
            if ![
                "DomainName",
                "DisplayName",
                "DataExpiry",
                "Fields",
                "UniqueKey",
            ]
            .contains(&k.as_str())
            {
                return Err(err(k, MappingProblem::UnknownMember));
            }
        }
        let domain_name = match obj.get("DomainName") {
            None => None,
            Some(v) => {
                let s = text(v, "DomainName", 1, 64)?;
                if !matches(s, b"_-") {
                    return Err(err(
                        "DomainName",
                        MappingProblem::Pattern("letters, digits, '_' and '-' only"),
                    ));
                }
                Some(s.to_owned())
            }
        };
        let display_name = obj
            .get("DisplayName")
            .map(|v| text(v, "DisplayName", 1, 255).map(str::to_owned))
            .transpose()?;
        let data_expiry = match obj.get("DataExpiry") {
            None => None,
            Some(v) => {
                let days = v
                    .as_u64()
                    .ok_or_else(|| err("DataExpiry", MappingProblem::Type("a whole number")))?;
                if !(1..=1098).contains(&days) {
                    return Err(err(
                        "DataExpiry",
                        MappingProblem::OutOfRange("1 to 1098 days"),
                    ));
                }
                Some(days as u32)
            }
        };
        let fields = obj
            .get("Fields")
            .ok_or_else(|| err("Fields", MappingProblem::Missing))?
            .as_object()
            .ok_or_else(|| err("Fields", MappingProblem::Type("an object of fields")))?;
        let fields = fields
            .iter()
            .map(|(name, v)| field(name, v))
            .collect::<Result<Vec<_>, _>>()?;
        let unique = text(
            obj.get("UniqueKey")
                .ok_or_else(|| err("UniqueKey", MappingProblem::Missing))?,
            "UniqueKey",
            1,
            1000,
        )?;
        let key: Vec<&str> = unique.split(',').map(str::trim).collect();
        let mapping = Mapping::new(fields, &key)?;
        Ok(MappingFile {
            domain_name,
            display_name,
            data_expiry,
            mapping,
        })
    }
}

fn field(name: &str, v: &Value) -> Result<Field, MappingError> {
    let at = format!("Fields.{name}");
    if name.is_empty() || name.len() > 64 || !matches(name, b"_.-") {
        return Err(err(
            &at,
            MappingProblem::Pattern("a field name of 1 to 64 letters, digits, '_', '.' or '-'"),
        ));
    }
    let obj: &Map<String, Value> = v.as_object().ok_or_else(|| {
        err(
            &at,
            MappingProblem::Type("an object with Source and Target"),
        )
    })?;
    for k in obj.keys() {
        if !["Source", "Target", "ContentType"].contains(&k.as_str()) {
            return Err(err(&format!("{at}.{k}"), MappingProblem::UnknownMember));
        }
    }
    let member = |k: &str| -> Result<&str, MappingError> {
        let key = format!("{at}.{k}");
        text(
            obj.get(k)
                .ok_or_else(|| err(&key, MappingProblem::Missing))?,
            &key,
            1,
            1000,
        )
    };
    let source = member("Source")?;
    let column = source.strip_prefix("_source.").ok_or_else(|| {
        err(
            &format!("{at}.Source"),
            MappingProblem::Pattern("\"_source.\" followed by a column name"),
        )
    })?;
    let target = member("Target")?;
    let path = target.strip_prefix("_profile.").ok_or_else(|| {
        err(
            &format!("{at}.Target"),
            MappingProblem::Pattern("\"_profile.\" followed by a field path"),
        )
    })?;
    let content_type = match obj.get("ContentType") {
        None => ContentType::String,
        Some(v) => {
            let key = format!("{at}.ContentType");
            let s = v
                .as_str()
                .ok_or_else(|| err(&key, MappingProblem::Type("a string")))?;
            s.parse()
                .map_err(|_| err(&key, MappingProblem::ContentType(s.to_owned())))?
        }
    };
    Ok(Field::new(name, column, path, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<MappingFile, MappingError> {
        MappingFile::from_json(s.as_bytes())
    }

    const GOOD: &str = r#"{"DomainName":"d-1","DataExpiry":30,"Fields":{
        "Email":{"Source":"_source.email","Target":"_profile.EmailAddress","ContentType":"EMAIL_ADDRESS"},
        "City":{"Source":"_source.city","Target":"_profile.Address.City"}},
        "UniqueKey":"Email"}"#;

    #[test]
    fn good_file() {
        let m = parse(GOOD).unwrap();
        assert_eq!(m.domain_name.as_deref(), Some("d-1"));
        assert_eq!(m.data_expiry, Some(30));
        let f = &m.mapping.fields()[1];
        assert_eq!(
            (&*f.name, &*f.column, &*f.target),
            ("City", "city", "Address.City")
        );
        assert_eq!(f.content_type, ContentType::String);
    }

    #[test]
    fn errors_name_their_key() {
        let cases = [
            ("{", ""),
            ("[]", ""),
            (r#"{"Fields":{},"UniqueKey":"x","Extra":1}"#, "Extra"),
            (r#"{"UniqueKey":"x"}"#, "Fields"),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A"}}}"#,
                "UniqueKey",
            ),
            (
                r#"{"Fields":{"a":{"Source":"a","Target":"_profile.A"}},"UniqueKey":"a"}"#,
                "Fields.a.Source",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"A"}},"UniqueKey":"a"}"#,
                "Fields.a.Target",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A","ContentType":"EMAIL"}},"UniqueKey":"a"}"#,
                "Fields.a.ContentType",
            ),
            (
                r#"{"Fields":{"a b":{"Source":"_source.a","Target":"_profile.A"}},"UniqueKey":"a b"}"#,
                "Fields.a b",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A","Typo":1}},"UniqueKey":"a"}"#,
                "Fields.a.Typo",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A"}},"UniqueKey":"b"}"#,
                "UniqueKey",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A"}},"UniqueKey":"a","DataExpiry":0}"#,
                "DataExpiry",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A"}},"UniqueKey":"a","DomainName":"no spaces"}"#,
                "DomainName",
            ),
            (
                r#"{"Fields":{"a":{"Source":"_source.","Target":"_profile.A"}},"UniqueKey":"a"}"#,
                "Fields.a.Source",
            ),
        ];
        for (json, key) in cases {
            let e = parse(json).unwrap_err();
            assert_eq!(e.key, key, "{json}: {e}");
            assert!(e.to_string().contains(key), "{e}");
        }
        let e = parse("{\n  \"Fields\": }").unwrap_err();
        assert!(
            matches!(e.problem, MappingProblem::Json { line: 2, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn composite_key() {
        let m = parse(
            r#"{"Fields":{"a":{"Source":"_source.a","Target":"_profile.A"},
            "b":{"Source":"_source.b","Target":"_profile.B"}},"UniqueKey":"b, a"}"#,
        )
        .unwrap();
        assert_eq!(m.mapping.key_fields(), &[1, 0]);
    }
}
