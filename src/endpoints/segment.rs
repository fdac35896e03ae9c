//! Dimensional segments: which endpoints a segment holds, described by
//! what endpoints carry (the service's `SegmentDimensions`), or by segment
//! groups that filter base segments (`SegmentGroupList`). These are the
//! wire shapes, checked here by the service's rules; the job layer turns a
//! checked definition into a test the store evaluates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CHANNEL_TYPES;
use crate::time::parse_iso8601;

/// How a dimensional segment is defined: dimensions, or segment groups,
/// or neither (every endpoint of the app).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Dimensional {
    /// What an endpoint must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<SegmentDimensions>,
    /// Base segments and the dimensions applied to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_groups: Option<SegmentGroupList>,
}

/// What a stored dimensional segment's definition holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StoredDimensional {
    /// The definition.
    pub dimensional: Dimensional,
    /// The tags it was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
}

impl StoredDimensional {
    /// Reads a stored segment definition: `None` for one that is not
    /// dimensional (an imported segment's).
    ///
    /// # Errors
    ///
    /// A definition that says it is dimensional and does not read.
    pub fn read(definition: &str) -> Result<Option<StoredDimensional>, String> {
        let v: serde_json::Value = serde_json::from_str(definition).map_err(|e| e.to_string())?;
        if v.get("Dimensional").is_none() {
            return Ok(None);
        }
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// As it is stored.
    pub fn to_definition(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `SegmentDimensions`: every criterion given must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentDimensions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<BTreeMap<String, AttributeDimension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<SegmentBehaviors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub demographic: Option<SegmentDemographics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<SegmentLocation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, MetricDimension>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_attributes: Option<BTreeMap<String, AttributeDimension>>,
}

/// `AttributeDimension`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct AttributeDimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_type: Option<AttributeType>,
    pub values: Vec<String>,
}

/// `AttributeType`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum AttributeType {
    #[default]
    Inclusive,
    Exclusive,
    Contains,
    Before,
    After,
    On,
    Between,
}

/// `SegmentBehaviors`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentBehaviors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recency: Option<RecencyDimension>,
}

/// `RecencyDimension`: active (or not) within a duration, by the
/// endpoint's `EffectiveDate` (or, without one, its last write).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct RecencyDimension {
    pub duration: RecencyDuration,
    pub recency_type: RecencyType,
}

/// `Duration`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum RecencyDuration {
    #[serde(rename = "HR_24")]
    Hr24,
    #[serde(rename = "DAY_7")]
    Day7,
    #[serde(rename = "DAY_14")]
    Day14,
    #[serde(rename = "DAY_30")]
    Day30,
}

impl RecencyDuration {
    /// In milliseconds.
    pub fn ms(self) -> i64 {
        const HOUR: i64 = 3_600_000;
        match self {
            RecencyDuration::Hr24 => 24 * HOUR,
            RecencyDuration::Day7 => 7 * 24 * HOUR,
            RecencyDuration::Day14 => 14 * 24 * HOUR,
            RecencyDuration::Day30 => 30 * 24 * HOUR,
        }
    }
}

/// `RecencyType`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum RecencyType {
    Active,
    Inactive,
}

/// `SegmentDemographics`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentDemographics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<SetDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<SetDimension>,
}

/// `SetDimension`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SetDimension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimension_type: Option<DimensionType>,
    pub values: Vec<String>,
}

/// `DimensionType`.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum DimensionType {
    #[default]
    Inclusive,
    Exclusive,
}

/// `SegmentLocation`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentLocation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<SetDimension>,
    #[serde(default, rename = "GPSPoint", skip_serializing_if = "Option::is_none")]
    pub gps_point: Option<GpsPointDimension>,
}

/// `GPSPointDimension`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GpsPointDimension {
    pub coordinates: GpsCoordinates,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range_in_kilometers: Option<f64>,
}

/// `GPSCoordinates`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct GpsCoordinates {
    pub latitude: f64,
    pub longitude: f64,
}

/// `MetricDimension`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct MetricDimension {
    pub comparison_operator: String,
    pub value: f64,
}

/// The comparison operators of `MetricDimension`.
pub const COMPARISON_OPERATORS: [&str; 5] = [
    "GREATER_THAN",
    "LESS_THAN",
    "GREATER_THAN_OR_EQUAL",
    "LESS_THAN_OR_EQUAL",
    "EQUAL",
];

/// `SegmentGroupList`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentGroupList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<SegmentGroup>>,
    /// How the groups combine (`ALL` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Combine>,
}

/// `SegmentGroup`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentGroup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Vec<SegmentDimensions>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_segments: Option<Vec<SegmentReference>>,
    /// How the base segments combine (`ANY` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_type: Option<Combine>,
    /// How the dimensions combine (`ALL` when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Combine>,
}

/// `SegmentReference`.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
#[allow(missing_docs)]
pub struct SegmentReference {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
}

/// `Include`, `SourceType`, `Type`: how several things combine.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Combine {
    All,
    Any,
    None,
}

impl Dimensional {
    /// Checks the definition by the service's rules (the base segments
    /// are checked against the store by the job layer).
    ///
    /// # Errors
    ///
    /// What is wrong, naming the member.
    pub fn check(&self) -> Result<(), String> {
        if self.dimensions.is_some() && self.segment_groups.is_some() {
            return Err("a segment is defined by Dimensions or by SegmentGroups, not both".into());
        }
        if let Some(d) = &self.dimensions {
            d.check("Dimensions")?;
        }
        let Some(groups) = &self.segment_groups else {
            return Ok(());
        };
        let list = groups.groups.as_deref().unwrap_or_default();
        if list.len() > 1 {
            return Err(format!(
                "SegmentGroups.Groups: a segment has at most one segment group, not {}",
                list.len()
            ));
        }
        for (g, group) in list.iter().enumerate() {
            for (i, d) in group.dimensions.iter().flatten().enumerate() {
                d.check(&format!("SegmentGroups.Groups[{g}].Dimensions[{i}]"))?;
            }
            for (i, s) in group.source_segments.iter().flatten().enumerate() {
                if s.id.is_empty() {
                    return Err(format!(
                        "SegmentGroups.Groups[{g}].SourceSegments[{i}].Id is empty"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The ids of the base segments it names.
    pub fn sources(&self) -> impl Iterator<Item = &SegmentReference> {
        self.segment_groups
            .iter()
            .flat_map(|g| g.groups.iter().flatten())
            .flat_map(|g| g.source_segments.iter().flatten())
    }
}

impl SegmentDimensions {
    fn check(&self, at: &str) -> Result<(), String> {
        if let Some(d) = &self.demographic {
            let sets = [
                ("AppVersion", &d.app_version),
                ("Channel", &d.channel),
                ("Make", &d.make),
                ("Model", &d.model),
                ("Platform", &d.platform),
            ];
            for (name, set) in sets {
                if let Some(set) = set {
                    set.check(&format!("{at}.Demographic.{name}"))?;
                }
            }
            if let Some(ch) = &d.channel
                && let Some(bad) = ch
                    .values
                    .iter()
                    .find(|v| !CHANNEL_TYPES.contains(&v.as_str()))
            {
                return Err(format!(
                    "{at}.Demographic.Channel: {bad:?} is not a channel type (one of {})",
                    CHANNEL_TYPES.join(", ")
                ));
            }
            if d.device_type.is_some() {
                return Err(format!(
                    "{at}.Demographic.DeviceType: endpoints carry no device type (an \
                     endpoint's Demographic has AppVersion, Locale, Make, Model, \
                     ModelVersion, Platform, PlatformVersion and Timezone); segment on \
                     Demographic.Platform, Make or Model instead"
                ));
            }
        }
        if let Some(l) = &self.location {
            if let Some(c) = &l.country {
                c.check(&format!("{at}.Location.Country"))?;
            }
            if let Some(p) = &l.gps_point {
                let GpsCoordinates {
                    latitude,
                    longitude,
                } = p.coordinates;
                if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
                    return Err(format!(
                        "{at}.Location.GPSPoint.Coordinates: ({latitude}, {longitude}) is not \
                         a latitude in [-90, 90] and a longitude in [-180, 180]"
                    ));
                }
                match p.range_in_kilometers {
                    Some(r) if r.is_finite() && r > 0.0 => {}
                    Some(r) => {
                        return Err(format!(
                            "{at}.Location.GPSPoint.RangeInKilometers: {r} is not a \
                             positive number of kilometres"
                        ));
                    }
                    None => {
                        return Err(format!(
                            "{at}.Location.GPSPoint.RangeInKilometers: give the range \
                             around the coordinates"
                        ));
                    }
                }
            }
        }
        for (member, attrs) in [
            ("Attributes", &self.attributes),
            ("UserAttributes", &self.user_attributes),
        ] {
            for (name, a) in attrs.iter().flatten() {
                if name.is_empty() {
                    return Err(format!("{at}.{member}: an attribute name is empty"));
                }
                a.check(&format!("{at}.{member}.{name}"))?;
            }
        }
        for (name, m) in self.metrics.iter().flatten() {
            let here = format!("{at}.Metrics.{name}");
            if name.is_empty() {
                return Err(format!("{at}.Metrics: a metric name is empty"));
            }
            if !COMPARISON_OPERATORS.contains(&m.comparison_operator.as_str()) {
                return Err(format!(
                    "{here}.ComparisonOperator: {:?} is not one of {}",
                    m.comparison_operator,
                    COMPARISON_OPERATORS.join(", ")
                ));
            }
            if !m.value.is_finite() {
                return Err(format!("{here}.Value: {} is not a number", m.value));
            }
        }
        Ok(())
    }
}

impl SetDimension {
    fn check(&self, at: &str) -> Result<(), String> {
        if self.values.is_empty() {
            return Err(format!("{at}.Values: give at least one value"));
        }
        Ok(())
    }
}

impl AttributeDimension {
    /// The instants of a `BEFORE`, `AFTER`, `ON` or `BETWEEN` dimension.
    ///
    /// # Errors
    ///
    /// A value that is not an ISO 8601 instant.
    pub fn instants(&self) -> Result<Vec<i64>, String> {
        self.values
            .iter()
            .map(|v| {
                parse_iso8601(v).ok_or_else(|| format!("{v:?} is not an ISO 8601 date and time"))
            })
            .collect()
    }

    fn check(&self, at: &str) -> Result<(), String> {
        let kind = self.attribute_type.unwrap_or_default();
        let wanted = match kind {
            AttributeType::Before | AttributeType::After | AttributeType::On => Some(1),
            AttributeType::Between => Some(2),
            _ => None,
        };
        let Some(n) = wanted else {
            if self.values.is_empty() {
                return Err(format!("{at}.Values: give at least one value"));
            }
            return Ok(());
        };
        if self.values.len() != n {
            return Err(format!(
                "{at}.Values: {kind:?} takes {n} date{}, not {}",
                if n == 1 { "" } else { "s" },
                self.values.len()
            ));
        }
        let instants = self.instants().map_err(|e| format!("{at}.Values: {e}"))?;
        if let [from, to] = instants[..]
            && from > to
        {
            return Err(format!(
                "{at}.Values: BETWEEN {:?} and {:?}: the first is after the second",
                self.values[0], self.values[1]
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<(), String> {
        let d: Dimensional = serde_json::from_str(json).map_err(|e| e.to_string())?;
        d.check()
    }

    #[test]
    fn the_service_rules_hold() {
        assert!(check(r#"{}"#).is_ok());
        // The name is the map's key, dots and all.
        assert!(check(r#"{"Dimensions":{"Attributes":{"v1.":{"Values":["x"]}}}}"#).is_ok());
        assert!(
            check(
                r#"{"Dimensions":{"Demographic":{"Platform":{"Values":["ios"]}},
                "Attributes":{"Joined":{"AttributeType":"BETWEEN",
                "Values":["2026-01-01T00:00:00Z","2026-02-01T00:00:00Z"]}},
                "Metrics":{"spend":{"ComparisonOperator":"GREATER_THAN","Value":1}},
                "Location":{"GPSPoint":{"Coordinates":{"Latitude":1,"Longitude":2},
                "RangeInKilometers":10}}}}"#
            )
            .is_ok()
        );
        let refused = [
            (r#"{"Dimensions":{},"SegmentGroups":{}}"#, "not both"),
            (
                r#"{"SegmentGroups":{"Groups":[{},{}]}}"#,
                "at most one segment group",
            ),
            (
                r#"{"Dimensions":{"Demographic":{"Channel":{"Values":["FAX"]}}}}"#,
                "Dimensions.Demographic.Channel: \"FAX\"",
            ),
            (
                r#"{"Dimensions":{"Demographic":{"DeviceType":{"Values":["PHONE"]}}}}"#,
                "no device type",
            ),
            (
                r#"{"Dimensions":{"Attributes":{"a":{"AttributeType":"BEFORE","Values":["x"]}}}}"#,
                "Dimensions.Attributes.a.Values: \"x\" is not an ISO 8601",
            ),
            (
                r#"{"Dimensions":{"Attributes":{"a":{"AttributeType":"BETWEEN","Values":["2026-02-01","2026-01-01"]}}}}"#,
                "the first is after the second",
            ),
            (
                r#"{"Dimensions":{"Attributes":{"a":{"AttributeType":"ON","Values":[]}}}}"#,
                "takes 1 date, not 0",
            ),
            (
                r#"{"Dimensions":{"Attributes":{"":{"Values":["x"]}}}}"#,
                "Dimensions.Attributes: an attribute name is empty",
            ),
            (
                r#"{"Dimensions":{"UserAttributes":{"a":{"Values":[]}}}}"#,
                "UserAttributes.a.Values: give at least one",
            ),
            (
                r#"{"Dimensions":{"Metrics":{"m":{"ComparisonOperator":"ABOUT","Value":1}}}}"#,
                "Metrics.m.ComparisonOperator",
            ),
            (
                r#"{"Dimensions":{"Location":{"GPSPoint":{"Coordinates":{"Latitude":91,"Longitude":0},"RangeInKilometers":1}}}}"#,
                "not a latitude",
            ),
            (
                r#"{"Dimensions":{"Location":{"GPSPoint":{"Coordinates":{"Latitude":1,"Longitude":0}}}}}"#,
                "give the range",
            ),
            (
                r#"{"SegmentGroups":{"Groups":[{"Dimensions":[{"Location":{"Country":{"Values":[]}}}]}]}}"#,
                "SegmentGroups.Groups[0].Dimensions[0].Location.Country.Values",
            ),
            (
                r#"{"Dimensions":{"Attributes":{"a":{"AttributeType":"SOMETIMES","Values":["x"]}}}}"#,
                "unknown variant `SOMETIMES`",
            ),
        ];
        for (json, says) in refused {
            let e = check(json).unwrap_err();
            assert!(e.contains(says), "{json}: {e}");
        }
    }

    #[test]
    fn a_stored_definition_reads_back() {
        let d: Dimensional = serde_json::from_str(
            r#"{"SegmentGroups":{"Groups":[{"SourceSegments":[{"Id":"s1","Version":2}],
            "Type":"ANY"}],"Include":"ALL"}}"#,
        )
        .unwrap();
        let stored = StoredDimensional {
            dimensional: d.clone(),
            tags: None,
        };
        let back = StoredDimensional::read(&stored.to_definition())
            .unwrap()
            .unwrap();
        assert_eq!(back.dimensional, d);
        assert_eq!(back.dimensional.sources().count(), 1);
        assert!(
            StoredDimensional::read(r#"{"Format":"CSV","S3Url":"s3://b/k"}"#)
                .unwrap()
                .is_none()
        );
    }
}
