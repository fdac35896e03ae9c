//! The CSV form: a header of dotted attribute names, one endpoint per row.

use std::collections::BTreeMap;

use super::{Demographic, Endpoint, Location, User};

/// What one CSV column holds.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum Column {
    /// `ChannelType`, `Address`, `Id`, `RequestId`, `OptOut`,
    /// `EffectiveDate` or `EndpointStatus`.
    Top(&'static str),
    /// `Attributes.<name>`; repeated columns give several values.
    Attribute(String),
    /// `Metrics.<name>`.
    Metric(String),
    /// `User.UserId`.
    UserId,
    /// `User.UserAttributes.<name>`; repeated columns give several values.
    UserAttribute(String),
    /// `Demographic.<member>`.
    Demographic(&'static str),
    /// `Location.<member>`.
    Location(&'static str),
}

const TOP: [&str; 7] = [
    "ChannelType",
    "Address",
    "Id",
    "RequestId",
    "OptOut",
    "EffectiveDate",
    "EndpointStatus",
];
const DEMOGRAPHIC: [&str; 8] = [
    "AppVersion",
    "Locale",
    "Make",
    "Model",
    "ModelVersion",
    "Platform",
    "PlatformVersion",
    "Timezone",
];
const LOCATION: [&str; 6] = [
    "City",
    "Country",
    "Latitude",
    "Longitude",
    "PostalCode",
    "Region",
];

/// The columns of a CSV endpoint file, from its header.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Columns(Vec<Column>);

impl Columns {
    /// Reads a header.
    ///
    /// # Errors
    ///
    /// The first column that names no endpoint attribute, or names a
    /// single-valued one twice, with its 1-based number.
    pub fn from_header<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Columns, String> {
        let mut cols: Vec<Column> = Vec::new();
        for (i, raw) in names.into_iter().enumerate() {
            let name = raw.trim().trim_start_matches('\u{feff}');
            let col = column(name).ok_or_else(|| {
                format!(
                    "column {} {name:?} is not an endpoint attribute (ChannelType, Address, Id, \
                     RequestId, OptOut, EffectiveDate, EndpointStatus, Attributes.<name>, \
                     Metrics.<name>, User.UserId, User.UserAttributes.<name>, Demographic.*, \
                     Location.*)",
                    i + 1
                )
            })?;
            let multi = matches!(col, Column::Attribute(_) | Column::UserAttribute(_));
            if !multi && cols.contains(&col) {
                return Err(format!(
                    "column {} {name:?} repeats a column that has one value",
                    i + 1
                ));
            }
            cols.push(col);
        }
        if cols.is_empty() {
            return Err("the header is empty".into());
        }
        Ok(Columns(cols))
    }

    /// How many columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never, for a header that was read).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One row as an endpoint (not yet checked). Empty cells are absent
    /// members.
    ///
    /// # Errors
    ///
    /// A wrong number of fields, a field that is not UTF-8 or a number
    /// that is not a number, naming the column.
    pub fn endpoint(&self, fields: &[Option<&str>]) -> Result<Endpoint, String> {
        if fields.len() != self.0.len() {
            return Err(format!(
                "has {} fields; the header has {}",
                fields.len(),
                self.0.len()
            ));
        }
        let mut e = Endpoint::default();
        for (i, (col, value)) in self.0.iter().zip(fields).enumerate() {
            let Some(value) = value else {
                return Err(format!("column {} ({}) is not valid UTF-8", i + 1, col));
            };
            let v = value.trim();
            if v.is_empty() {
                continue;
            }
            let number = || -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| format!("{col}: {v:?} is not a number"))
            };
            let s = || Some(v.to_owned());
            match col {
                Column::Top(name) => {
                    let slot = match *name {
                        "ChannelType" => &mut e.channel_type,
                        "Address" => &mut e.address,
                        "Id" => &mut e.id,
                        "RequestId" => &mut e.request_id,
                        "OptOut" => &mut e.opt_out,
                        "EffectiveDate" => &mut e.effective_date,
                        _ => &mut e.endpoint_status,
                    };
                    *slot = s();
                }
                Column::Attribute(n) => push(&mut e.attributes, n, v),
                Column::Metric(n) => {
                    e.metrics
                        .get_or_insert_with(BTreeMap::new)
                        .insert(n.clone(), number()?);
                }
                Column::UserId => e.user.get_or_insert_with(User::default).user_id = s(),
                Column::UserAttribute(n) => {
                    push(
                        &mut e.user.get_or_insert_with(User::default).user_attributes,
                        n,
                        v,
                    );
                }
                Column::Demographic(m) => {
                    let d = e.demographic.get_or_insert_with(Demographic::default);
                    let slot = match *m {
                        "AppVersion" => &mut d.app_version,
                        "Locale" => &mut d.locale,
                        "Make" => &mut d.make,
                        "Model" => &mut d.model,
                        "ModelVersion" => &mut d.model_version,
                        "Platform" => &mut d.platform,
                        "PlatformVersion" => &mut d.platform_version,
                        _ => &mut d.timezone,
                    };
                    *slot = s();
                }
                Column::Location(m) => {
                    let l = e.location.get_or_insert_with(Location::default);
                    match *m {
                        "Latitude" => l.latitude = Some(number()?),
                        "Longitude" => l.longitude = Some(number()?),
                        "City" => l.city = s(),
                        "Country" => l.country = s(),
                        "PostalCode" => l.postal_code = s(),
                        _ => l.region = s(),
                    }
                }
            }
        }
        Ok(e)
    }
}

impl std::fmt::Display for Column {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Column::Top(n) => f.write_str(n),
            Column::Attribute(n) => write!(f, "Attributes.{n}"),
            Column::Metric(n) => write!(f, "Metrics.{n}"),
            Column::UserId => f.write_str("User.UserId"),
            Column::UserAttribute(n) => write!(f, "User.UserAttributes.{n}"),
            Column::Demographic(n) => write!(f, "Demographic.{n}"),
            Column::Location(n) => write!(f, "Location.{n}"),
        }
    }
}

fn push(map: &mut Option<BTreeMap<String, Vec<String>>>, name: &str, value: &str) {
    map.get_or_insert_with(BTreeMap::new)
        .entry(name.to_owned())
        .or_default()
        .push(value.to_owned());
}

fn column(name: &str) -> Option<Column> {
    let named = |rest: &str| (!rest.is_empty()).then(|| rest.to_owned());
    if let Some(t) = TOP.iter().find(|t| **t == name) {
        return Some(Column::Top(t));
    }
    if let Some(rest) = name.strip_prefix("Attributes.") {
        return named(rest).map(Column::Attribute);
    }
    if let Some(rest) = name.strip_prefix("Metrics.") {
        return named(rest).map(Column::Metric);
    }
    if name == "User.UserId" {
        return Some(Column::UserId);
    }
    if let Some(rest) = name.strip_prefix("User.UserAttributes.") {
        return named(rest).map(Column::UserAttribute);
    }
    if let Some(rest) = name.strip_prefix("Demographic.") {
        return DEMOGRAPHIC
            .iter()
            .find(|m| **m == rest)
            .map(|m| Column::Demographic(m));
    }
    if let Some(rest) = name.strip_prefix("Location.") {
        return LOCATION
            .iter()
            .find(|m| **m == rest)
            .map(|m| Column::Location(m));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_map_to_the_nested_object() {
        let cols = Columns::from_header([
            "ChannelType",
            "Address",
            "Attributes.Team",
            "Attributes.Team",
            "Metrics.score",
            "User.UserId",
            "User.UserAttributes.Plan",
            "Demographic.Platform",
            "Location.Latitude",
        ])
        .unwrap();
        let row = [
            "EMAIL", "a@b.co", "red", "blue", "4.5", "u1", "gold", "ios", "59.9",
        ]
        .map(Some);
        let e = cols.endpoint(&row).unwrap();
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "Address": "a@b.co",
                "Attributes": {"Team": ["red", "blue"]},
                "ChannelType": "EMAIL",
                "Demographic": {"Platform": "ios"},
                "Location": {"Latitude": 59.9},
                "Metrics": {"score": 4.5},
                "User": {"UserAttributes": {"Plan": ["gold"]}, "UserId": "u1"}
            })
        );
    }

    #[test]
    fn bad_headers_and_rows_name_the_column() {
        let err = Columns::from_header(["Address", "Nickname"]).unwrap_err();
        assert!(err.starts_with("column 2 \"Nickname\" is not"), "{err}");
        let err = Columns::from_header(["Address", "Address"]).unwrap_err();
        assert!(err.contains("column 2 \"Address\" repeats"), "{err}");
        assert!(Columns::from_header(["Attributes."]).is_err());
        let cols = Columns::from_header(["Address", "Metrics.m"]).unwrap();
        let err = cols.endpoint(&[Some("x"), Some("lots")]).unwrap_err();
        assert_eq!(err, "Metrics.m: \"lots\" is not a number");
        let err = cols.endpoint(&[Some("x")]).unwrap_err();
        assert_eq!(err, "has 1 fields; the header has 2");
        let err = cols.endpoint(&[None, Some("1")]).unwrap_err();
        assert_eq!(err, "column 1 (Address) is not valid UTF-8");
    }
}
