//! Segments as the store evaluates them: an imported segment is its
//! recorded members; a dimensional one ([`Dimensional`]) becomes an
//! [`EndpointFilter`] over the members of the stored endpoints, its base
//! segments resolved from the store (an imported base segment by its
//! members, a dimensional one by its own definition, to any depth up to
//! [`MAX_DEPTH`], never through itself).

use crate::endpoints::segment::{
    AttributeDimension, AttributeType, Combine, DimensionType, Dimensional, RecencyType,
    SegmentDimensions, SegmentGroup, SetDimension, StoredDimensional,
};
use crate::store::{AccountId, Comparison, EndpointFilter, Segment, Store, StoreError, ValueTest};

/// How deep base segments may nest (a segment on a segment on …).
pub const MAX_DEPTH: usize = 8;

/// Why a segment cannot be evaluated or defined so.
#[derive(Debug)]
pub enum SegmentError {
    /// A base segment it names does not exist.
    NoSegment(String),
    /// It breaks a rule (the message names the member).
    Invalid(String),
    /// The store failed.
    Store(StoreError),
}

impl From<StoreError> for SegmentError {
    fn from(e: StoreError) -> SegmentError {
        SegmentError::Store(e)
    }
}

impl std::fmt::Display for SegmentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SegmentError::NoSegment(id) => write!(f, "segment {id} does not exist"),
            SegmentError::Invalid(why) => f.write_str(why),
            SegmentError::Store(e) => write!(f, "{e}"),
        }
    }
}

/// What a stored segment is.
#[derive(Clone, Debug, PartialEq)]
pub enum SegmentKind {
    /// Filled by import jobs: its members are recorded.
    Import,
    /// Chosen by what endpoints carry.
    Dimensional(Box<StoredDimensional>),
}

impl SegmentKind {
    /// The kind of a stored segment.
    ///
    /// # Errors
    ///
    /// [`SegmentError::Invalid`] for a definition that does not read.
    pub fn of(seg: &Segment) -> Result<SegmentKind, SegmentError> {
        match StoredDimensional::read(&seg.definition) {
            Ok(Some(d)) => Ok(SegmentKind::Dimensional(Box::new(d))),
            Ok(None) => Ok(SegmentKind::Import),
            Err(e) => Err(SegmentError::Invalid(format!(
                "the stored definition of segment {} does not read: {e}",
                seg.id
            ))),
        }
    }
}

/// Where base segments are looked up.
struct Resolve<'a> {
    store: &'a dyn Store,
    account: &'a AccountId,
    app: &'a str,
    now_ms: i64,
    /// Whether versions named must be the current ones (when a definition
    /// is checked; evaluation reads the current version of each).
    strict: bool,
}

/// Checks a dimensional definition for segment `own` (`None` for a new
/// one) of `app`: the service's rules, and that its base segments exist
/// at the versions named, an imported one alone in its group, none built
/// on `own`, nested at most [`MAX_DEPTH`] deep.
///
/// # Errors
///
/// [`SegmentError::NoSegment`] for a base segment that does not exist,
/// [`SegmentError::Invalid`] for a rule broken, or a store error.
pub fn check(
    store: &dyn Store,
    account: &AccountId,
    app: &str,
    own: Option<&str>,
    def: &Dimensional,
) -> Result<(), SegmentError> {
    def.check().map_err(SegmentError::Invalid)?;
    let r = Resolve {
        store,
        account,
        app,
        now_ms: 0,
        strict: true,
    };
    let mut visiting: Vec<String> = own.map(str::to_owned).into_iter().collect();
    r.definition(def, &mut visiting).map(drop)
}

/// The test that passes a segment's endpoints, `now_ms` being the time
/// recency is measured from.
///
/// # Errors
///
/// [`SegmentError::NoSegment`] for a base segment deleted since,
/// [`SegmentError::Invalid`] for a definition that does not read, or a
/// store error.
pub fn filter_of(
    store: &dyn Store,
    account: &AccountId,
    seg: &Segment,
    now_ms: i64,
) -> Result<EndpointFilter, SegmentError> {
    let r = Resolve {
        store,
        account,
        app: &seg.app,
        now_ms,
        strict: false,
    };
    let mut visiting = Vec::new();
    r.segment(seg, &mut visiting)
}

impl Resolve<'_> {
    fn segment(
        &self,
        seg: &Segment,
        visiting: &mut Vec<String>,
    ) -> Result<EndpointFilter, SegmentError> {
        self.segment_of_kind(seg, SegmentKind::of(seg)?, visiting)
    }

    fn segment_of_kind(
        &self,
        seg: &Segment,
        kind: SegmentKind,
        visiting: &mut Vec<String>,
    ) -> Result<EndpointFilter, SegmentError> {
        match kind {
            SegmentKind::Import => Ok(EndpointFilter::MemberOf(seg.id.clone())),
            SegmentKind::Dimensional(d) => {
                if let Some(at) = visiting.iter().position(|v| *v == seg.id) {
                    let mut path = visiting[at..].to_vec();
                    path.push(seg.id.clone());
                    return Err(SegmentError::Invalid(format!(
                        "SourceSegments: segment {} is built on itself ({})",
                        seg.id,
                        path.join(" -> ")
                    )));
                }
                if visiting.len() >= MAX_DEPTH {
                    return Err(SegmentError::Invalid(format!(
                        "SourceSegments: base segments nest more than {MAX_DEPTH} deep \
                         ({} -> {})",
                        visiting.join(" -> "),
                        seg.id
                    )));
                }
                visiting.push(seg.id.clone());
                let f = self.definition(&d.dimensional, visiting);
                visiting.pop();
                f
            }
        }
    }

    fn definition(
        &self,
        def: &Dimensional,
        visiting: &mut Vec<String>,
    ) -> Result<EndpointFilter, SegmentError> {
        if let Some(d) = &def.dimensions {
            return Ok(self.dimensions(d));
        }
        let Some(list) = &def.segment_groups else {
            return Ok(EndpointFilter::Every);
        };
        let groups = list
            .groups
            .iter()
            .flatten()
            .map(|g| self.group(g, visiting))
            .collect::<Result<Vec<_>, _>>()?;
        if groups.is_empty() {
            return Ok(EndpointFilter::Every);
        }
        Ok(combine(list.include.unwrap_or(Combine::All), groups))
    }

    fn group(
        &self,
        g: &SegmentGroup,
        visiting: &mut Vec<String>,
    ) -> Result<EndpointFilter, SegmentError> {
        let refs = g.source_segments.as_deref().unwrap_or_default();
        let mut sources = Vec::with_capacity(refs.len());
        for r in refs {
            let seg = self
                .store
                .segment(self.account, self.app, &r.id)?
                .ok_or_else(|| SegmentError::NoSegment(r.id.clone()))?;
            if self.strict
                && let Some(v) = r.version
                && v != i64::from(seg.version)
            {
                return Err(SegmentError::Invalid(format!(
                    "SourceSegments: segment {} is at version {}, the only one kept, not {v}",
                    r.id, seg.version
                )));
            }
            let kind = SegmentKind::of(&seg)?;
            if kind == SegmentKind::Import && refs.len() > 1 {
                return Err(SegmentError::Invalid(format!(
                    "SourceSegments: {} is an imported segment, and an imported segment is \
                     the only base segment of its group (several dimensional ones may be)",
                    r.id
                )));
            }
            sources.push(self.segment_of_kind(&seg, kind, visiting)?);
        }
        let base = if sources.is_empty() {
            EndpointFilter::Every
        } else {
            combine(g.source_type.unwrap_or(Combine::Any), sources)
        };
        let dims: Vec<EndpointFilter> = g
            .dimensions
            .iter()
            .flatten()
            .map(|d| self.dimensions(d))
            .collect();
        if dims.is_empty() {
            return Ok(base);
        }
        Ok(EndpointFilter::All(vec![
            base,
            combine(g.r#type.unwrap_or(Combine::All), dims),
        ]))
    }

    /// Every criterion of `d` (checked before).
    fn dimensions(&self, d: &SegmentDimensions) -> EndpointFilter {
        let mut all = Vec::new();
        if let Some(demo) = &d.demographic {
            let sets = [
                (&demo.app_version, &["Demographic", "AppVersion"][..], false),
                (&demo.channel, &["ChannelType"][..], false),
                (&demo.make, &["Demographic", "Make"][..], true),
                (&demo.model, &["Demographic", "Model"][..], true),
                (&demo.platform, &["Demographic", "Platform"][..], true),
            ];
            for (set, p, fold) in sets {
                if let Some(set) = set {
                    all.push(set_filter(path(p), set, fold));
                }
            }
        }
        if let Some(loc) = &d.location {
            if let Some(c) = &loc.country {
                all.push(set_filter(path(&["Location", "Country"]), c, true));
            }
            if let Some(g) = &loc.gps_point {
                all.push(EndpointFilter::Near {
                    latitude: path(&["Location", "Latitude"]),
                    longitude: path(&["Location", "Longitude"]),
                    lat: g.coordinates.latitude,
                    lon: g.coordinates.longitude,
                    km: g.range_in_kilometers.unwrap_or(0.0),
                });
            }
        }
        for (name, a) in d.attributes.iter().flatten() {
            all.push(attribute_filter(path(&["Attributes", name]), a));
        }
        for (name, a) in d.user_attributes.iter().flatten() {
            all.push(attribute_filter(path(&["User", "UserAttributes", name]), a));
        }
        for (name, m) in d.metrics.iter().flatten() {
            let op = match m.comparison_operator.as_str() {
                "GREATER_THAN" => Comparison::Greater,
                "LESS_THAN" => Comparison::Less,
                "GREATER_THAN_OR_EQUAL" => Comparison::GreaterOrEqual,
                "LESS_THAN_OR_EQUAL" => Comparison::LessOrEqual,
                _ => Comparison::Equal,
            };
            all.push(EndpointFilter::Values {
                path: path(&["Metrics", name]),
                test: ValueTest::Compare(op, m.value),
            });
        }
        if let Some(r) = d.behavior.as_ref().and_then(|b| b.recency.as_ref()) {
            let since = self.now_ms - r.duration.ms();
            let effective = path(&["EffectiveDate"]);
            let active = EndpointFilter::Any(vec![
                EndpointFilter::Values {
                    path: effective.clone(),
                    test: ValueTest::After(since - 1),
                },
                EndpointFilter::All(vec![
                    EndpointFilter::Missing(effective),
                    EndpointFilter::WrittenSince(since),
                ]),
            ]);
            all.push(match r.recency_type {
                RecencyType::Active => active,
                RecencyType::Inactive => EndpointFilter::Not(Box::new(active)),
            });
        }
        EndpointFilter::All(all)
    }
}

fn path(p: &[&str]) -> Vec<String> {
    p.iter().map(|s| (*s).to_owned()).collect()
}

/// `parts` combined; one part alone is itself under `All` and `Any`, so
/// that a group of one imported segment reads its members
/// ([`EndpointFilter::driving_segment`]) rather than every endpoint.
fn combine(how: Combine, mut parts: Vec<EndpointFilter>) -> EndpointFilter {
    let alone = if parts.len() == 1 { parts.pop() } else { None };
    match (how, alone) {
        (Combine::All | Combine::Any, Some(f)) => f,
        (Combine::None, Some(f)) => EndpointFilter::Not(Box::new(f)),
        (Combine::All, None) => EndpointFilter::All(parts),
        (Combine::Any, None) => EndpointFilter::Any(parts),
        (Combine::None, None) => EndpointFilter::Not(Box::new(EndpointFilter::Any(parts))),
    }
}

fn set_filter(path: Vec<String>, set: &SetDimension, fold_case: bool) -> EndpointFilter {
    let f = EndpointFilter::Values {
        path,
        test: ValueTest::Equals {
            values: set.values.clone(),
            fold_case,
        },
    };
    match set.dimension_type.unwrap_or_default() {
        DimensionType::Inclusive => f,
        DimensionType::Exclusive => EndpointFilter::Not(Box::new(f)),
    }
}

fn attribute_filter(path: Vec<String>, a: &AttributeDimension) -> EndpointFilter {
    // Checked before: the dates of a date type read, as many as it takes.
    let at = |i: usize| {
        a.instants()
            .ok()
            .and_then(|t| t.get(i).copied())
            .unwrap_or_default()
    };
    let test = match a.attribute_type.unwrap_or_default() {
        AttributeType::Inclusive | AttributeType::Exclusive => ValueTest::Equals {
            values: a.values.clone(),
            fold_case: false,
        },
        AttributeType::Contains => ValueTest::Contains(a.values.clone()),
        AttributeType::Before => ValueTest::Before(at(0)),
        AttributeType::After => ValueTest::After(at(0)),
        AttributeType::On => ValueTest::SameDay(at(0)),
        AttributeType::Between => ValueTest::Between(at(0), at(1)),
    };
    let f = EndpointFilter::Values { path, test };
    if a.attribute_type == Some(AttributeType::Exclusive) {
        EndpointFilter::Not(Box::new(f))
    } else {
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{App, AppStore, MemoryStore};

    #[test]
    fn a_group_on_an_imported_segment_reads_its_members() {
        let store = MemoryStore::new();
        let a = AccountId::default();
        let app = App {
            id: "app".into(),
            name: "app".into(),
            tags: "{}".into(),
            created_ms: 0,
        };
        store.create_app(&a, &app).unwrap();
        let seg = |id: &str, definition: String| Segment {
            app: "app".into(),
            id: id.into(),
            name: None,
            definition,
            created_ms: 0,
            updated_ms: 0,
            version: 1,
        };
        store
            .create_segment(&a, &seg("imp", r#"{"Format":"CSV"}"#.into()))
            .unwrap();
        for (groups, driver) in [
            (
                r#"{"Groups":[{"SourceSegments":[{"Id":"imp"}]}]}"#,
                Some("imp"),
            ),
            (
                r#"{"Groups":[{"SourceSegments":[{"Id":"imp"}],"Dimensions":[
                {"Metrics":{"m":{"ComparisonOperator":"EQUAL","Value":1}}}]}]}"#,
                Some("imp"),
            ),
            (
                r#"{"Include":"NONE","Groups":[{"SourceSegments":[{"Id":"imp"}]}]}"#,
                None,
            ),
        ] {
            let stored = StoredDimensional {
                dimensional: Dimensional {
                    dimensions: None,
                    segment_groups: Some(serde_json::from_str(groups).unwrap()),
                },
                tags: None,
            };
            let dim = seg("dim", stored.to_definition());
            let f = filter_of(&store, &a, &dim, 0).unwrap();
            assert_eq!(f.driving_segment(), driver, "{groups}: {f:?}");
        }
    }
}
