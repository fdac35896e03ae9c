//! Which endpoints of an app a segment holds: a test the store evaluates
//! on each endpoint, built of tests on the values at a path of its fields
//! (the JSON object the store keeps), membership of segments whose
//! members the store records, and `All`, `Any` and `Not` of those.
//!
//! The store knows nothing of what the paths mean: whoever builds a
//! filter (the job layer, from a segment's dimensions) names them. Every
//! backend evaluates a filter with [`EndpointFilter::matches`], so a
//! segment holds the same endpoints on any backend.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{StoreError, StoredEndpoint};
use crate::time::parse_iso8601;

/// A test on the endpoints of an app.
#[derive(Clone, Debug, PartialEq)]
pub enum EndpointFilter {
    /// Every endpoint.
    Every,
    /// The members the store records for this segment.
    MemberOf(String),
    /// Some value at `path` passes `test`. The values at a path are the
    /// string or number there, or the strings and numbers of the array
    /// there; none when the path leads nowhere.
    Values {
        /// Member names from the top of the fields.
        path: Vec<String>,
        /// The test.
        test: ValueTest,
    },
    /// Nothing (or `null`) is at the path.
    Missing(Vec<String>),
    /// Last written at or after this time (Unix milliseconds).
    WrittenSince(i64),
    /// The numbers at two paths, a latitude and a longitude in degrees,
    /// are within `km` kilometres (great-circle) of a point.
    Near {
        /// Where the latitude is.
        latitude: Vec<String>,
        /// Where the longitude is.
        longitude: Vec<String>,
        /// The point's latitude.
        lat: f64,
        /// The point's longitude.
        lon: f64,
        /// The range.
        km: f64,
    },
    /// Every one of these (every endpoint when there are none).
    All(Vec<EndpointFilter>),
    /// Some one of these (none when there are none).
    Any(Vec<EndpointFilter>),
    /// Not this.
    Not(Box<EndpointFilter>),
}

/// A test on one value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueTest {
    /// A string equal to one of these (ignoring ASCII case when
    /// `fold_case`).
    Equals {
        /// The strings.
        values: Vec<String>,
        /// Whether case is ignored.
        fold_case: bool,
    },
    /// A string holding one of these.
    Contains(Vec<String>),
    /// A string read as an ISO 8601 instant before this time.
    Before(i64),
    /// A string read as an ISO 8601 instant after this time.
    After(i64),
    /// A string read as an ISO 8601 instant in `[from, to]`.
    Between(i64, i64),
    /// A string read as an ISO 8601 instant on the same UTC day as this
    /// time.
    SameDay(i64),
    /// A number that compares so with this one.
    Compare(Comparison, f64),
}

/// How a number compares with another.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `==`
    Equal,
    /// `>=`
    GreaterOrEqual,
    /// `>`
    Greater,
}

/// Answers which of some endpoints (by id) are members of a segment: one
/// question a page, however many endpoints it holds.
pub type MemberLookup<'a> = dyn FnMut(&str, &[&str]) -> Result<Vec<String>, StoreError> + 'a;

/// Reads the endpoints after an id (in id order), at most so many.
pub type PageRead<'a> = dyn FnMut(&str, usize) -> Result<Vec<StoredEndpoint>, StoreError> + 'a;

const DAY_MS: i64 = 86_400_000;

impl EndpointFilter {
    /// The segment every endpoint the filter passes is a member of, if
    /// there is one: a backend reads that segment's members rather than
    /// every endpoint of the app.
    pub fn driving_segment(&self) -> Option<&str> {
        match self {
            EndpointFilter::MemberOf(s) => Some(s),
            EndpointFilter::All(all) => all.iter().find_map(EndpointFilter::driving_segment),
            _ => None,
        }
    }

    /// The segments whose members the filter asks about.
    pub fn segments(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.each_segment(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn each_segment<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            EndpointFilter::MemberOf(s) => out.push(s),
            EndpointFilter::All(v) | EndpointFilter::Any(v) => {
                v.iter().for_each(|f| f.each_segment(out));
            }
            EndpointFilter::Not(f) => f.each_segment(out),
            _ => {}
        }
    }

    /// Whether the endpoint passes. `fields` is its fields read as JSON;
    /// `member(segment, id)` answers membership.
    pub fn matches(
        &self,
        endpoint: &StoredEndpoint,
        fields: &Value,
        member: &dyn Fn(&str, &str) -> bool,
    ) -> bool {
        match self {
            EndpointFilter::Every => true,
            EndpointFilter::MemberOf(s) => member(s, &endpoint.id),
            EndpointFilter::Values { path, test } => {
                let mut hit = false;
                each_value(at(fields, path), &mut |v| hit = hit || test.passes(v));
                hit
            }
            EndpointFilter::Missing(path) => at(fields, path).is_none_or(Value::is_null),
            EndpointFilter::WrittenSince(ms) => endpoint.updated_ms >= *ms,
            EndpointFilter::Near {
                latitude,
                longitude,
                lat,
                lon,
                km,
            } => {
                let num = |p: &[String]| at(fields, p).and_then(Value::as_f64);
                match (num(latitude), num(longitude)) {
                    (Some(a), Some(b)) => distance_km(a, b, *lat, *lon) <= *km,
                    _ => false,
                }
            }
            EndpointFilter::All(all) => all.iter().all(|f| f.matches(endpoint, fields, member)),
            EndpointFilter::Any(any) => any.iter().any(|f| f.matches(endpoint, fields, member)),
            EndpointFilter::Not(f) => !f.matches(endpoint, fields, member),
        }
    }

    /// The endpoints of `page` that pass, in order, at most `limit`; the
    /// fields of each are read as JSON here, and membership is asked once
    /// per segment for the whole page (every endpoint of the page is a
    /// member of `driver`, the segment it was read from, if any).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] (of the store at `location`) for fields
    /// that are not JSON, or what `members` returns.
    pub fn keep(
        &self,
        location: &str,
        page: Vec<StoredEndpoint>,
        limit: usize,
        out: &mut Vec<StoredEndpoint>,
        driver: Option<&str>,
        members: &mut MemberLookup<'_>,
    ) -> Result<(), StoreError> {
        let mut known: HashMap<&str, HashSet<String>> = HashMap::new();
        let ids: Vec<&str> = page.iter().map(|e| e.id.as_str()).collect();
        for seg in self.segments() {
            if Some(seg) != driver {
                known.insert(seg, members(seg, &ids)?.into_iter().collect());
            }
        }
        let member = |seg: &str, id: &str| {
            Some(seg) == driver || known.get(seg).is_some_and(|m| m.contains(id))
        };
        for e in page {
            if out.len() >= limit {
                break;
            }
            let fields: Value =
                serde_json::from_str(&e.fields).map_err(|err| StoreError::Corrupt {
                    location: location.to_owned(),
                    what: format!("endpoint {}", e.id),
                    problem: err.to_string(),
                })?;
            if self.matches(&e, &fields, &member) {
                out.push(e);
            }
        }
        Ok(())
    }
}

/// Reads endpoints with `page(after, n)` (endpoints in id order after
/// `after`, at most `n`; fewer means the last: every endpoint of the app,
/// or the members of the filter's [driving
/// segment](EndpointFilter::driving_segment)) and keeps those `filter`
/// passes until `limit` are kept or the endpoints end: how every backend
/// answers a filtered page.
///
/// # Errors
///
/// What `page` or the filter returns.
pub fn filtered_page(
    location: &str,
    filter: &EndpointFilter,
    after: Option<&str>,
    limit: usize,
    page: &mut PageRead<'_>,
    members: &mut MemberLookup<'_>,
) -> Result<Vec<StoredEndpoint>, StoreError> {
    let driver = filter.driving_segment();
    let n = limit.clamp(1, 10_000);
    let mut cursor = after.unwrap_or("").to_owned();
    let mut out = Vec::new();
    while out.len() < limit {
        let read = page(&cursor, n)?;
        let last = read.len() < n;
        let Some(end) = read.last().map(|e| e.id.clone()) else {
            break;
        };
        filter.keep(location, read, limit, &mut out, driver, members)?;
        if last {
            break;
        }
        cursor = end;
    }
    Ok(out)
}

impl ValueTest {
    fn passes(&self, v: &Value) -> bool {
        let instant = || v.as_str().and_then(parse_iso8601);
        match self {
            ValueTest::Equals { values, fold_case } => v.as_str().is_some_and(|s| {
                values.iter().any(|x| {
                    if *fold_case {
                        x.eq_ignore_ascii_case(s)
                    } else {
                        x == s
                    }
                })
            }),
            ValueTest::Contains(parts) => v
                .as_str()
                .is_some_and(|s| parts.iter().any(|p| s.contains(p.as_str()))),
            ValueTest::Before(t) => instant().is_some_and(|i| i < *t),
            ValueTest::After(t) => instant().is_some_and(|i| i > *t),
            ValueTest::Between(a, b) => instant().is_some_and(|i| *a <= i && i <= *b),
            ValueTest::SameDay(t) => {
                instant().is_some_and(|i| i.div_euclid(DAY_MS) == t.div_euclid(DAY_MS))
            }
            ValueTest::Compare(op, x) => v.as_f64().is_some_and(|n| match op {
                Comparison::Less => n < *x,
                Comparison::LessOrEqual => n <= *x,
                Comparison::Equal => n == *x,
                Comparison::GreaterOrEqual => n >= *x,
                Comparison::Greater => n > *x,
            }),
        }
    }
}

fn at<'v>(fields: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(fields, |v, name| v.get(name))
}

fn each_value(v: Option<&Value>, f: &mut dyn FnMut(&Value)) {
    match v {
        Some(Value::Array(items)) => items.iter().for_each(f),
        Some(v @ (Value::String(_) | Value::Number(_))) => f(v),
        _ => {}
    }
}

/// The great-circle distance between two points (haversine, on a sphere
/// of the Earth's mean radius).
pub fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_KM: f64 = 6371.0088;
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(id: &str, fields: &str, updated_ms: i64) -> StoredEndpoint {
        StoredEndpoint {
            id: id.into(),
            channel_type: None,
            address: None,
            user_id: None,
            fields: fields.into(),
            created_ms: 0,
            updated_ms,
            created_by: None,
        }
    }

    fn path(p: &str) -> Vec<String> {
        p.split('.').map(str::to_owned).collect()
    }

    fn passes(f: &EndpointFilter, fields: &str) -> bool {
        let e = endpoint("e", fields, 5_000);
        let v: Value = serde_json::from_str(fields).unwrap();
        f.matches(&e, &v, &|s, id| s == "seg" && id == "e")
    }

    #[test]
    fn values_at_a_path_pass_when_one_does() {
        let team = |test| EndpointFilter::Values {
            path: path("Attributes.Team"),
            test,
        };
        let f = team(ValueTest::Equals {
            values: vec!["Blue".into()],
            fold_case: false,
        });
        assert!(passes(&f, r#"{"Attributes":{"Team":["Red","Blue"]}}"#));
        assert!(!passes(&f, r#"{"Attributes":{"Team":["blue"]}}"#));
        assert!(!passes(&f, r#"{"Attributes":{}}"#));
        let folded = team(ValueTest::Equals {
            values: vec!["Blue".into()],
            fold_case: true,
        });
        assert!(passes(&folded, r#"{"Attributes":{"Team":["BLUE"]}}"#));
        let contains = team(ValueTest::Contains(vec!["lu".into()]));
        assert!(passes(&contains, r#"{"Attributes":{"Team":["Blue"]}}"#));
        assert!(!passes(&contains, r#"{"Attributes":{"Team":["Red"]}}"#));
        let not = EndpointFilter::Not(Box::new(f));
        assert!(passes(&not, r#"{"Attributes":{}}"#));
    }

    #[test]
    fn instants_numbers_and_places() {
        let t = parse_iso8601("2026-05-01T12:00:00Z").unwrap();
        let date = |test| EndpointFilter::Values {
            path: path("Attributes.Joined"),
            test,
        };
        let on = |s: &str| format!(r#"{{"Attributes":{{"Joined":["{s}"]}}}}"#);
        assert!(passes(
            &date(ValueTest::Before(t)),
            &on("2026-04-30T00:00:00Z")
        ));
        assert!(!passes(&date(ValueTest::Before(t)), &on("2026-05-02")));
        assert!(passes(&date(ValueTest::After(t)), &on("2026-05-02")));
        assert!(passes(
            &date(ValueTest::SameDay(t)),
            &on("2026-05-01T23:59:59Z")
        ));
        assert!(!passes(
            &date(ValueTest::SameDay(t)),
            &on("2026-05-02T00:00:00Z")
        ));
        assert!(passes(
            &date(ValueTest::Between(t, t + DAY_MS)),
            &on("2026-05-02")
        ));
        assert!(!passes(&date(ValueTest::After(t)), &on("not a date")));
        let spend = |op, x| EndpointFilter::Values {
            path: path("Metrics.spend"),
            test: ValueTest::Compare(op, x),
        };
        let m = r#"{"Metrics":{"spend":10.5}}"#;
        assert!(passes(&spend(Comparison::Greater, 10.0), m));
        assert!(passes(&spend(Comparison::LessOrEqual, 10.5), m));
        assert!(!passes(&spend(Comparison::Equal, 10.0), m));
        assert!(!passes(&spend(Comparison::Less, 1.0), r#"{}"#));
        // Seattle to Portland is ~234 km.
        let near = |km| EndpointFilter::Near {
            latitude: path("Location.Latitude"),
            longitude: path("Location.Longitude"),
            lat: 47.6062,
            lon: -122.3321,
            km,
        };
        let portland = r#"{"Location":{"Latitude":45.5152,"Longitude":-122.6784}}"#;
        assert!(passes(&near(250.0), portland));
        assert!(!passes(&near(200.0), portland));
        assert!(!passes(&near(1e6), r#"{"Location":{}}"#));
    }

    #[test]
    fn members_writes_and_combinations() {
        let member = EndpointFilter::MemberOf("seg".into());
        assert!(passes(&member, "{}"));
        assert!(!passes(&EndpointFilter::MemberOf("other".into()), "{}"));
        assert!(passes(&EndpointFilter::WrittenSince(5_000), "{}"));
        assert!(!passes(&EndpointFilter::WrittenSince(5_001), "{}"));
        assert!(passes(
            &EndpointFilter::Missing(path("EffectiveDate")),
            "{}"
        ));
        assert!(passes(&EndpointFilter::All(vec![]), "{}"));
        assert!(!passes(&EndpointFilter::Any(vec![]), "{}"));
        let both = EndpointFilter::All(vec![EndpointFilter::Every, member.clone()]);
        assert_eq!(both.driving_segment(), Some("seg"));
        assert_eq!(EndpointFilter::Any(vec![member]).driving_segment(), None);
    }

    #[test]
    fn a_filtered_page_reads_on_until_it_is_full() {
        let all: Vec<StoredEndpoint> = (0..25)
            .map(|i| endpoint(&format!("e{i:02}"), &format!(r#"{{"n":{i}}}"#), 0))
            .collect();
        let odd = EndpointFilter::Values {
            path: path("n"),
            test: ValueTest::Compare(Comparison::GreaterOrEqual, 20.0),
        };
        let mut reads = 0;
        let mut page = |after: &str, n: usize| {
            reads += 1;
            Ok(all
                .iter()
                .filter(|e| e.id.as_str() > after)
                .take(n)
                .cloned()
                .collect())
        };
        let got = filtered_page("here", &odd, Some("e03"), 3, &mut page, &mut |_, _| {
            Ok(Vec::new())
        })
        .unwrap();
        let ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e20", "e21", "e22"]);
        assert!(reads > 1);
    }

    #[test]
    fn membership_is_asked_once_a_page_and_never_of_the_driver() {
        let page: Vec<StoredEndpoint> = (0..6)
            .map(|i| endpoint(&format!("e{i}"), "{}", 0))
            .collect();
        let f = EndpointFilter::All(vec![
            EndpointFilter::MemberOf("drv".into()),
            EndpointFilter::Not(Box::new(EndpointFilter::Any(vec![
                EndpointFilter::MemberOf("a".into()),
                EndpointFilter::MemberOf("a".into()),
            ]))),
        ]);
        assert_eq!(f.segments(), ["a", "drv"]);
        let mut asked = Vec::new();
        let mut out = Vec::new();
        f.keep("here", page, 10, &mut out, Some("drv"), &mut |seg, ids| {
            asked.push((seg.to_owned(), ids.len()));
            Ok(vec!["e1".into(), "e4".into()])
        })
        .unwrap();
        assert_eq!(asked, [("a".to_owned(), 6)]);
        let ids: Vec<&str> = out.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["e0", "e2", "e3", "e5"]);
    }
}
