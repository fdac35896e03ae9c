//! The search terms a profile job writes with each row: what
//! [`super::search`] finds profiles by.

use crate::ingest::Mapping;
use crate::store::{search_term, search_term_of};

/// The searchable keys that read profile fields, and their fields.
pub(super) const FIELD_KEYS: &[(&str, &[&str])] = &[
    (
        "_email",
        &[
            "EmailAddress",
            "PersonalEmailAddress",
            "BusinessEmailAddress",
        ],
    ),
    (
        "_phone",
        &[
            "PhoneNumber",
            "MobilePhoneNumber",
            "HomePhoneNumber",
            "BusinessPhoneNumber",
        ],
    ),
    ("_account", &["AccountNumber"]),
];

/// `_fullName`: these fields, those present, joined by one space.
pub(super) const FULL_NAME: (&str, &[&str]) =
    ("_fullName", &["FirstName", "MiddleName", "LastName"]);

/// Which terms a job's rows carry: worked out once from its mapping.
#[derive(Clone, Debug)]
pub(crate) struct TermPlan {
    /// (key name, field index) for each mapped field a key reads.
    fields: Vec<(&'static str, usize)>,
    /// The full name's fields present, in name order.
    name_parts: Vec<usize>,
}

impl TermPlan {
    pub(crate) fn of(mapping: &Mapping) -> TermPlan {
        let index = |target: &str| mapping.fields().iter().position(|f| &*f.target == target);
        let mut fields = Vec::new();
        for &(key, targets) in FIELD_KEYS {
            fields.extend(targets.iter().filter_map(|t| index(t)).map(|i| (key, i)));
        }
        let name_parts = FULL_NAME.1.iter().filter_map(|t| index(t)).collect();
        TermPlan { fields, name_parts }
    }

    /// Appends the terms of a row of `values` (one per field, in the
    /// mapping's order). The unique key needs none: a search by its name
    /// reads the profile by its key.
    pub(crate) fn push(&self, values: &[&[u8]], out: &mut Vec<i64>) {
        fn text(b: &[u8]) -> Option<&str> {
            std::str::from_utf8(b).ok().filter(|s| !s.is_empty())
        }
        for &(name, i) in &self.fields {
            if let Some(v) = values.get(i).and_then(|v| text(v)) {
                out.push(search_term(name, v));
            }
        }
        if !self.name_parts.is_empty() {
            let mut parts = [""; 3];
            let mut n = 0;
            for &i in &self.name_parts {
                if let Some(v) = values.get(i).and_then(|v| text(v)) {
                    parts[n] = v;
                    n += 1;
                }
            }
            if n > 0 {
                out.push(search_term_of(FULL_NAME.0, &parts[..n]));
            }
        }
    }
}
