//! The CSV form: a header of dotted attribute names, one endpoint per row.
//!
//! Two ways from a row to an endpoint, which tests and the fuzz target hold
//! to the same answer: [`Columns::endpoint`] builds an [`Endpoint`] (then
//! [`Endpoint::check`]), the plain reference; [`Layout`] applies the same
//! rules to the cells and writes the checked endpoint's JSON straight into
//! the engine's row, with no allocation per row, which is how imports run.

use std::collections::BTreeMap;

use super::{
    Demographic, ENDPOINT_STATUS, Endpoint, Location, OPT_OUT, Refusal, User, check_channel,
    check_choice, check_coordinates, check_id, check_name, check_value, normalize_address,
    normalize_date,
};
use crate::ingest::RowOut;
use crate::ingest::normalize::PhoneNormalizer;
use crate::ingest::output::write_json_str;
use crate::ingest::parse::Fields;

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

    /// The columns.
    pub fn columns(&self) -> &[Column] {
        &self.0
    }

    /// One row as an endpoint (not yet checked): the plain reference of
    /// what [`Layout::encode`] does. Empty cells are absent members.
    ///
    /// # Errors
    ///
    /// A wrong number of fields, or a number that is not a number, naming
    /// the column.
    pub fn endpoint(&self, fields: &[&str]) -> Result<Endpoint, Refusal> {
        if fields.len() != self.0.len() {
            return Err(Refusal::whole(format!(
                "has {} fields; the header has {}",
                fields.len(),
                self.0.len()
            )));
        }
        let mut e = Endpoint::default();
        for (col, value) in self.0.iter().zip(fields) {
            let v = value.trim();
            if v.is_empty() {
                continue;
            }
            let number = || parse_number(col, v);
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

/// Columns that share one multi-valued member (`Attributes.Team` twice).
#[derive(Clone, Debug)]
struct Group {
    name: String,
    cols: Vec<usize>,
}

/// Where each member of an endpoint is in a header's columns, grouped and
/// ordered as the endpoint's JSON has them: the plan of one CSV input.
#[derive(Clone, Debug)]
pub struct Layout {
    columns: Columns,
    /// Columns of [`TOP`]'s members, in its order.
    top: [Option<usize>; 7],
    /// By name.
    attributes: Vec<Group>,
    /// By name (each at most once).
    metrics: Vec<(String, usize)>,
    user_id: Option<usize>,
    /// By name.
    user_attributes: Vec<Group>,
    /// Columns of [`DEMOGRAPHIC`]'s members.
    demographic: [Option<usize>; 8],
    /// Columns of [`LOCATION`]'s members.
    location: [Option<usize>; 6],
    /// Columns that hold numbers, in column order.
    numeric: Vec<usize>,
}

/// Per-worker space for [`Layout::encode`].
#[derive(Debug, Default)]
pub struct Scratch {
    numbers: Vec<Option<f64>>,
    address: String,
    date: String,
}

const CHANNEL_TYPE: usize = 0;
const ADDRESS: usize = 1;
const ID: usize = 2;
const REQUEST_ID: usize = 3;
const OPT_OUT_AT: usize = 4;
const EFFECTIVE_DATE: usize = 5;
const ENDPOINT_STATUS_AT: usize = 6;
const LATITUDE: usize = 2;
const LONGITUDE: usize = 3;

fn groups(named: impl Iterator<Item = (String, usize)>) -> Vec<Group> {
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (name, col) in named {
        by_name.entry(name).or_default().push(col);
    }
    by_name
        .into_iter()
        .map(|(name, cols)| Group { name, cols })
        .collect()
}

impl Layout {
    /// The layout of a header's columns.
    pub fn new(columns: Columns) -> Layout {
        let mut top = [None; 7];
        let mut demographic = [None; 8];
        let mut location = [None; 6];
        let (mut attributes, mut user_attributes, mut metrics) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut user_id = None;
        let mut numeric = Vec::new();
        for (i, col) in columns.0.iter().enumerate() {
            let at = |names: &[&str], n: &str| names.iter().position(|m| *m == n);
            match col {
                Column::Top(n) => top[at(&TOP, n).unwrap_or(0)] = Some(i),
                Column::Attribute(n) => attributes.push((n.clone(), i)),
                Column::Metric(n) => {
                    metrics.push((n.clone(), i));
                    numeric.push(i);
                }
                Column::UserId => user_id = Some(i),
                Column::UserAttribute(n) => user_attributes.push((n.clone(), i)),
                Column::Demographic(n) => demographic[at(&DEMOGRAPHIC, n).unwrap_or(0)] = Some(i),
                Column::Location(n) => {
                    let k = at(&LOCATION, n).unwrap_or(0);
                    location[k] = Some(i);
                    if k == LATITUDE || k == LONGITUDE {
                        numeric.push(i);
                    }
                }
            }
        }
        metrics.sort();
        Layout {
            columns,
            top,
            attributes: groups(attributes.into_iter()),
            metrics,
            user_id,
            user_attributes: groups(user_attributes.into_iter()),
            demographic,
            location,
            numeric,
        }
    }

    /// The columns it was made of.
    pub fn columns(&self) -> &Columns {
        &self.columns
    }

    /// Applies the format's rules to one row (as many fields as the
    /// header, all text) and writes the engine's row: the endpoint's
    /// identity as its key ([`super::Identity::key`]), then the checked
    /// endpoint's JSON, exactly as `serde_json` writes the [`Endpoint`] that
    /// [`Columns::endpoint`] then [`Endpoint::check`] make of the row.
    /// Nothing is allocated unless the row is refused.
    ///
    /// # Errors
    ///
    /// The first rule broken, as [`Columns::endpoint`] and
    /// [`Endpoint::check`] would say it, or a row with no identity.
    pub fn encode(
        &self,
        fields: &Fields<'_>,
        phone: &PhoneNormalizer,
        scratch: &mut Scratch,
        row: &mut RowOut<'_>,
    ) -> Result<(), Refusal> {
        let cell = |c: usize| fields.str(c).unwrap_or_default().trim();
        let some = |c: Option<usize>| c.map(cell).filter(|v| !v.is_empty());
        // Numbers first, in column order, as `Columns::endpoint` reads them.
        scratch.numbers.clear();
        scratch.numbers.resize(self.columns.0.len(), None);
        for &c in &self.numeric {
            let v = cell(c);
            if !v.is_empty() {
                scratch.numbers[c] = Some(parse_number(&self.columns.0[c], v)?);
            }
        }
        // Then the rules, in the order of `Endpoint::check`.
        let id = some(self.top[ID]);
        if let Some(id) = id {
            check_id(id)?;
        }
        let channel = some(self.top[CHANNEL_TYPE]);
        if let Some(c) = channel {
            check_channel(c)?;
        }
        let address = match some(self.top[ADDRESS]) {
            Some(a) => {
                normalize_address(channel, a, phone, &mut scratch.address)?;
                Some(scratch.address.as_str())
            }
            None => None,
        };
        let opt_out = some(self.top[OPT_OUT_AT]);
        if let Some(v) = opt_out {
            check_choice("OptOut", v, &OPT_OUT)?;
        }
        let status = some(self.top[ENDPOINT_STATUS_AT]);
        if let Some(v) = status {
            check_choice("EndpointStatus", v, &ENDPOINT_STATUS)?;
        }
        let date = match some(self.top[EFFECTIVE_DATE]) {
            Some(d) => {
                normalize_date(d, &mut scratch.date)?;
                Some(scratch.date.as_str())
            }
            None => None,
        };
        let check_groups = |section: &str, groups: &[Group]| -> Result<(), Refusal> {
            for g in groups {
                let mut named = false;
                for v in g.cols.iter().map(|&c| cell(c)).filter(|v| !v.is_empty()) {
                    if !named {
                        check_name(section, &g.name)?;
                        named = true;
                    }
                    check_value(section, &g.name, v)?;
                }
            }
            Ok(())
        };
        check_groups("Attributes", &self.attributes)?;
        for (name, c) in &self.metrics {
            if scratch.numbers[*c].is_some() {
                check_name("Metrics", name)?;
            }
        }
        let user_id = some(self.user_id);
        check_groups("User.UserAttributes", &self.user_attributes)?;
        let number = |c: Option<usize>| c.and_then(|c| scratch.numbers[c]);
        check_coordinates(
            number(self.location[LATITUDE]),
            number(self.location[LONGITUDE]),
        )?;

        let out = row.buf();
        match (id, channel, address) {
            (Some(id), _, _) => super::Identity::write_id_key(out, id),
            (None, Some(c), Some(a)) => super::Identity::write_address_key(out, c, a),
            _ => {
                return Err(Refusal::whole(
                    "an endpoint needs an Id, or a ChannelType and an Address",
                ));
            }
        }

        row.end_key();
        let out = row.buf();
        // The JSON, members in the order serde writes `Endpoint`'s.
        let mut obj = Json::open(out);
        if let Some(a) = address {
            obj.string(out, "Address", a);
        }
        self.write_groups(out, &mut obj, "Attributes", &self.attributes, &cell);
        if let Some(c) = channel {
            obj.string(out, "ChannelType", c);
        }
        if self.demographic.iter().any(|&c| some(c).is_some()) {
            obj.key(out, "Demographic");
            let mut d = Json::open(out);
            for (name, &c) in DEMOGRAPHIC.iter().zip(&self.demographic) {
                if let Some(v) = some(c) {
                    d.string(out, name, v);
                }
            }
            d.close(out);
        }
        if let Some(d) = date {
            obj.string(out, "EffectiveDate", d);
        }
        if let Some(v) = status {
            obj.string(out, "EndpointStatus", v);
        }
        if let Some(v) = id {
            obj.string(out, "Id", v);
        }
        if self.location.iter().any(|&c| some(c).is_some()) {
            obj.key(out, "Location");
            let mut l = Json::open(out);
            for (k, (name, &c)) in LOCATION.iter().zip(&self.location).enumerate() {
                if k == LATITUDE || k == LONGITUDE {
                    if let Some(v) = number(c) {
                        l.number(out, name, v);
                    }
                } else if let Some(v) = some(c) {
                    l.string(out, name, v);
                }
            }
            l.close(out);
        }
        if self
            .metrics
            .iter()
            .any(|(_, c)| scratch.numbers[*c].is_some())
        {
            obj.key(out, "Metrics");
            let mut m = Json::open(out);
            for (name, c) in &self.metrics {
                if let Some(v) = scratch.numbers[*c] {
                    m.number(out, name, v);
                }
            }
            m.close(out);
        }
        if let Some(v) = opt_out {
            obj.string(out, "OptOut", v);
        }
        if let Some(v) = some(self.top[REQUEST_ID]) {
            obj.string(out, "RequestId", v);
        }
        let user_attrs = self
            .user_attributes
            .iter()
            .any(|g| g.cols.iter().any(|&c| !cell(c).is_empty()));
        if user_id.is_some() || user_attrs {
            obj.key(out, "User");
            let mut u = Json::open(out);
            if let Some(v) = user_id {
                u.string(out, "UserId", v);
            }
            self.write_groups(out, &mut u, "UserAttributes", &self.user_attributes, &cell);
            u.close(out);
        }
        obj.close(out);
        Ok(())
    }

    /// `"member":{"name":["v",…],…}` for the groups that have values.
    fn write_groups<'c>(
        &self,
        out: &mut Vec<u8>,
        obj: &mut Json,
        member: &str,
        groups: &[Group],
        cell: &dyn Fn(usize) -> &'c str,
    ) {
        let mut map: Option<Json> = None;
        for g in groups {
            let mut values = g.cols.iter().map(|&c| cell(c)).filter(|v| !v.is_empty());
            let Some(first) = values.next() else {
                continue;
            };
            let m = map.get_or_insert_with(|| {
                obj.key(out, member);
                Json::open(out)
            });
            m.key(out, &g.name);
            out.push(b'[');
            write_json_str(out, first);
            for v in values {
                out.push(b',');
                write_json_str(out, v);
            }
            out.push(b']');
        }
        if let Some(m) = map {
            m.close(out);
        }
    }
}

/// A JSON object being written: commas between members.
struct Json {
    first: bool,
}

impl Json {
    fn open(out: &mut Vec<u8>) -> Json {
        out.push(b'{');
        Json { first: true }
    }

    fn key(&mut self, out: &mut Vec<u8>, name: &str) {
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        write_json_str(out, name);
        out.push(b':');
    }

    fn string(&mut self, out: &mut Vec<u8>, name: &str, v: &str) {
        self.key(out, name);
        write_json_str(out, v);
    }

    fn number(&mut self, out: &mut Vec<u8>, name: &str, v: f64) {
        self.key(out, name);
        // Writing into a Vec cannot fail; serde_json's own float format, so
        // that the bytes are those of `serde_json::to_vec(&endpoint)`.
        let _ = serde_json::to_writer(&mut *out, &v);
    }

    fn close(self, out: &mut Vec<u8>) {
        out.push(b'}');
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

/// A numeric cell: a finite number.
fn parse_number(col: &Column, v: &str) -> Result<f64, Refusal> {
    v.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| Refusal::new(col.to_string(), format!("{v:?} is not a number")))
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
        ];
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

    /// The fast path ([`Layout::encode`]) and the reference
    /// ([`Columns::endpoint`], [`Endpoint::check`], `serde_json`) agree on
    /// every row: the same refusal, or the same key and the same bytes.
    #[test]
    fn the_encoder_agrees_with_the_reference() {
        use crate::ingest::parse::PieceParser;
        let header = [
            "Id",
            "ChannelType",
            "Address",
            "Attributes.Team",
            "Attributes.Team",
            "Attributes.",
            "Metrics.score",
            "Metrics.nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn",
            "User.UserId",
            "User.UserAttributes.Plan",
            "Demographic.Platform",
            "Location.Latitude",
            "Location.Longitude",
            "Location.City",
            "OptOut",
            "EndpointStatus",
            "EffectiveDate",
            "RequestId",
        ];
        // "Attributes." is no attribute: keep it out of the header.
        let header: Vec<&str> = header.into_iter().filter(|h| *h != "Attributes.").collect();
        let columns = Columns::from_header(header.iter().copied()).unwrap();
        let layout = Layout::new(columns.clone());
        let phone = PhoneNormalizer::new();
        // Per column: values that pass, then values that break a rule.
        let long = "v".repeat(101);
        let pool: &[(&[&str], &[&str])] = &[
            (&["", "ep-1", " ep-2 "], &["a/b", "x\u{1}y"]),
            (&["", "EMAIL", "SMS", "VOICE", "GCM", " EMAIL "], &["FAX"]),
            (
                &[
                    "",
                    "Ann@Example.com",
                    "(415) 555-0132",
                    "+44 20 7739 5315",
                    "tok",
                    " b@c.co ",
                ],
                &["no-at"],
            ),
            (&["", "red", " blue ", "a\"q", "x\ny"], &[&long]),
            (&["", "gold", "é"], &[]),
            (
                &["", "1", "2.5", "-0", "1e3", "1e300"],
                &["lots", "inf", "NaN", "1e400"],
            ),
            (&["", "", "", "7"], &[]),
            (&["", "u1", " u2 "], &[]),
            (&["", "pro"], &[]),
            (&["", "ios"], &[]),
            (&["", "59.9", "-90"], &["91", "x"]),
            (&["", "10.5", "180"], &["-181"]),
            (&["", "Oslo", "Bergen"], &[]),
            (&["", "ALL", "NONE"], &["SOME"]),
            (&["", "ACTIVE", "INACTIVE"], &["GONE"]),
            (
                &["", "2026-11-01T09:00:00Z", "2026-11-01T10:00:00+01:00"],
                &["yesterday"],
            ),
            (&["", "req"], &[]),
        ];
        assert_eq!(pool.len(), header.len());
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut parser = PieceParser::new(b',', b'"');
        let mut scratch = Scratch::default();
        let (mut kept, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let row: Vec<&str> = pool
                .iter()
                .map(|(good, bad)| {
                    let choices = if next() % 12 == 0 && !bad.is_empty() {
                        bad
                    } else {
                        good
                    };
                    choices[(next() % choices.len() as u64) as usize]
                })
                .collect();
            let mut line = Vec::new();
            for (i, v) in row.iter().enumerate() {
                if i > 0 {
                    line.push(b',');
                }
                line.push(b'"');
                line.extend_from_slice(v.replace('"', "\"\"").as_bytes());
                line.push(b'"');
            }
            line.push(b'\n');
            let want = columns.endpoint(&row).and_then(|mut e| {
                e.check(&phone)?;
                let id = e.identity().ok_or_else(|| {
                    Refusal::whole("an endpoint needs an Id, or a ChannelType and an Address")
                })?;
                Ok((id.key(), serde_json::to_vec(&e).unwrap()))
            });
            if want.is_ok() {
                kept += 1;
            } else {
                refused += 1;
            }
            let mut seen = 0;
            parser.parse(&line, None, true, |rec| {
                seen += 1;
                let mut buf = Vec::new();
                let mut out = RowOut::new(&mut buf);
                let got = layout
                    .encode(&rec.fields, &phone, &mut scratch, &mut out)
                    .map(|()| {
                        let (k, r) = out.row();
                        (k.to_vec(), r.to_vec())
                    });
                assert_eq!(
                    got.as_ref()
                        .map(|(k, r)| (String::from_utf8_lossy(k), String::from_utf8_lossy(r))),
                    want.as_ref()
                        .map(|(k, r)| (String::from_utf8_lossy(k), String::from_utf8_lossy(r))),
                    "{row:?}"
                );
            });
            assert_eq!(seen, 1);
        }
        // Both ways were taken often.
        assert!(
            kept > 500 && refused > 500,
            "{kept} kept, {refused} refused"
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
        let err = cols.endpoint(&["x", "lots"]).unwrap_err();
        assert_eq!(err.to_string(), "Metrics.m: \"lots\" is not a number");
        let err = cols.endpoint(&["x"]).unwrap_err();
        assert_eq!(err.to_string(), "has 1 fields; the header has 2");
    }
}
