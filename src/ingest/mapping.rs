//! Which columns become which fields, how each is normalized, and which
//! fields form the unique key.

use std::sync::Arc;

use super::error::{MappingError, MappingProblem};
use super::normalize::ContentType;

/// One mapped field: a source column, a target path and a content type.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Field {
    /// The field's name, which a unique key refers to.
    pub name: Arc<str>,
    /// The header name of the column it reads.
    pub column: Arc<str>,
    /// Where it goes: a dotted path such as `Address.PostalCode`.
    pub target: Arc<str>,
    /// How its values are normalized.
    pub content_type: ContentType,
}

impl Field {
    /// A field named `name` reading `column` into `target`.
    pub fn new(name: &str, column: &str, target: &str, content_type: ContentType) -> Field {
        Field {
            name: name.into(),
            column: column.into(),
            target: target.into(),
            content_type,
        }
    }
}

/// A checked set of fields and a unique key.
///
/// # Example
///
/// ```
/// use sluice::ingest::normalize::ContentType;
/// use sluice::ingest::{Field, Mapping};
///
/// let mapping = Mapping::new(
///     vec![
///         Field::new("Email", "email", "EmailAddress", ContentType::EmailAddress),
///         Field::new("Phone", "phone", "PhoneNumber", ContentType::PhoneNumber),
///     ],
///     &["Email"],
/// )
/// .unwrap();
/// assert_eq!(mapping.key_fields(), &[0]);
/// ```
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Mapping {
    fields: Vec<Field>,
    key: Vec<usize>,
}

impl Mapping {
    /// Checks and builds a mapping.
    ///
    /// # Errors
    ///
    /// When there are no fields, a field name repeats or is empty, a column
    /// or target is empty, a target has an empty path segment, two targets
    /// are the same or one lies inside the other (`Address` and
    /// `Address.City`), or the key is empty, repeats a field or names one
    /// that does not exist. The error names the offending key.
    pub fn new(fields: Vec<Field>, key: &[&str]) -> Result<Mapping, MappingError> {
        if fields.is_empty() {
            return Err(err("Fields", MappingProblem::NoFields));
        }
        for (i, f) in fields.iter().enumerate() {
            if f.name.is_empty() {
                return Err(err(
                    "Fields",
                    MappingProblem::Pattern("a non-empty field name"),
                ));
            }
            if fields[..i].iter().any(|p| p.name == f.name) {
                return Err(err(
                    &format!("Fields.{}", f.name),
                    MappingProblem::Pattern("the name of one field only"),
                ));
            }
            if f.column.is_empty() {
                return Err(err(
                    &format!("Fields.{}.Source", f.name),
                    MappingProblem::Pattern("a column name"),
                ));
            }
            if f.target.is_empty() || f.target.split('.').any(str::is_empty) {
                return Err(err(
                    &format!("Fields.{}.Target", f.name),
                    MappingProblem::Pattern("a dotted path without empty segments"),
                ));
            }
            for prev in &fields[..i] {
                if paths_clash(&prev.target, &f.target) {
                    return Err(err(
                        &format!("Fields.{}.Target", f.name),
                        MappingProblem::TargetClash {
                            other: prev.name.to_string(),
                        },
                    ));
                }
            }
        }
        if key.is_empty() {
            return Err(err("UniqueKey", MappingProblem::Missing));
        }
        let mut key_idx = Vec::with_capacity(key.len());
        for name in key {
            let name = name.trim();
            let idx = fields
                .iter()
                .position(|f| &*f.name == name)
                .ok_or_else(|| {
                    err(
                        "UniqueKey",
                        MappingProblem::UnknownKeyField(name.to_owned()),
                    )
                })?;
            if key_idx.contains(&idx) {
                return Err(err(
                    "UniqueKey",
                    MappingProblem::RepeatedKeyField(name.to_owned()),
                ));
            }
            key_idx.push(idx);
        }
        Ok(Mapping {
            fields,
            key: key_idx,
        })
    }

    /// The fields, in mapping order (the order of output columns).
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Indexes into [`Mapping::fields`] of the unique key's fields, in key
    /// order.
    pub fn key_fields(&self) -> &[usize] {
        &self.key
    }

    /// Where field `i` sits in the key, if it is a key field.
    pub fn key_position(&self, i: usize) -> Option<usize> {
        self.key.iter().position(|&k| k == i)
    }
}

fn err(key: &str, problem: MappingProblem) -> MappingError {
    MappingError {
        key: key.to_owned(),
        problem,
    }
}

/// `a` and `b` are the same path, or one is a prefix of the other at a
/// segment boundary.
fn paths_clash(a: &str, b: &str) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    long.starts_with(short) && (long.len() == short.len() || long.as_bytes()[short.len()] == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, col: &str, target: &str) -> Field {
        Field::new(name, col, target, ContentType::String)
    }

    #[test]
    fn checks() {
        assert!(Mapping::new(vec![f("a", "x", "A")], &["a"]).is_ok());
        let e = Mapping::new(vec![], &["a"]).unwrap_err();
        assert_eq!(e.problem, MappingProblem::NoFields);
        let e = Mapping::new(vec![f("a", "x", "A")], &["b"]).unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.problem),
            ("UniqueKey", MappingProblem::UnknownKeyField("b".into()))
        );
        let e = Mapping::new(vec![f("a", "x", "A"), f("b", "y", "A.B")], &["a"]).unwrap_err();
        assert_eq!(e.key, "Fields.b.Target");
        let e = Mapping::new(vec![f("a", "x", "A"), f("b", "y", "A")], &["a"]).unwrap_err();
        assert_eq!(e.key, "Fields.b.Target");
        assert!(Mapping::new(vec![f("a", "x", "AB"), f("b", "y", "A.B")], &["a"]).is_ok());
        let e = Mapping::new(vec![f("a", "x", "A..B")], &["a"]).unwrap_err();
        assert_eq!(e.key, "Fields.a.Target");
        let e = Mapping::new(vec![f("a", "x", "A"), f("b", "x", "B")], &["a", "a"]).unwrap_err();
        assert_eq!(e.problem, MappingProblem::RepeatedKeyField("a".into()));
        let m = Mapping::new(vec![f("a", "x", "A"), f("b", "x", "B")], &["b", " a"]).unwrap();
        assert_eq!(m.key_fields(), &[1, 0]);
        assert_eq!(m.key_position(0), Some(1));
    }
}
