//! Searching a domain's profiles by the service's search keys: the terms a
//! job writes with each profile, and the search that finds profiles by
//! them and checks what it finds against their values.
//!
//! A profile is found by `_email`, `_phone`, `_account` and `_fullName`
//! when its job mapped the fields they read, by `_profileId`, and by the
//! name of its job's `UniqueKey` field (a key of one field). The other
//! predefined keys (`_orderId`, `_salesforceAccountId`, …) name objects
//! that upload jobs do not write: they are known and find nothing.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::ingest::normalize::{ContentType, Normalizer};
use crate::store::{
    AccountId, JobFilter, JobKind, Profile, ProfileSearch, Store, StoreError, profile_id,
    profile_no, search_term,
};

use super::spec::JobSpec;
use super::terms::{FIELD_KEYS, FULL_NAME};

/// The profile's id.
const PROFILE_ID: &str = "_profileId";

/// Every predefined search key of the service.
pub const PREDEFINED_KEYS: &[&str] = &[
    "_account",
    "_profileId",
    "_assetId",
    "_caseId",
    "_orderId",
    "_fullName",
    "_phone",
    "_email",
    "_ctrContactId",
    "_marketoLeadId",
    "_salesforceAccountId",
    "_salesforceContactId",
    "_salesforceAssetId",
    "_zendeskUserId",
    "_zendeskExternalId",
    "_zendeskTicketId",
    "_serviceNowSystemId",
    "_serviceNowIncidentId",
    "_segmentUserId",
    "_shopifyCustomerId",
    "_shopifyOrderId",
];

/// One key and its values, asked for or found by.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SearchKey {
    /// The key's name.
    pub name: String,
    /// Its values.
    pub values: Vec<String>,
}

/// A search of a domain's profiles.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    /// The keys, at least one.
    pub keys: Vec<SearchKey>,
    /// Whether a profile must match every key (AND) or one (OR).
    pub all: bool,
    /// Only profiles after this one (a page's `next`).
    pub after: u64,
    /// At most this many.
    pub limit: usize,
}

/// A profile found, and which keys and values found it.
#[derive(Clone, Debug)]
pub struct Found {
    /// The profile.
    pub profile: Profile,
    /// The keys it matched, each with the values it matched.
    pub found_by: Vec<SearchKey>,
}

/// A page of a search.
#[derive(Clone, Debug)]
pub struct SearchPage {
    /// The profiles, in the order they were first written.
    pub found: Vec<Found>,
    /// Where the next page starts, if there may be one.
    pub next: Option<u64>,
}

/// Why a search was refused.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A key that is neither predefined nor a unique key of the domain.
    #[error(
        "KeyName {0:?} is not a search key of this domain: use a predefined key (_email, \
         _phone, _fullName, _account, _profileId, …) or the UniqueKey of one of its upload jobs"
    )]
    UnknownKey(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a key's values are compared: the content type its values were
/// normalized with, if any.
fn content_type_of(key: &str, unique: &BTreeMap<String, ContentType>) -> Option<ContentType> {
    match key {
        "_email" => Some(ContentType::EmailAddress),
        "_phone" => Some(ContentType::PhoneNumber),
        "_fullName" => Some(ContentType::Name),
        _ => unique.get(key).copied(),
    }
}

/// The UniqueKey field names of the domain's upload jobs, with their
/// content types.
fn unique_keys(
    store: &dyn Store,
    account: &AccountId,
    domain: &str,
) -> Result<BTreeMap<String, ContentType>, StoreError> {
    let jobs = store.jobs(&JobFilter {
        account: Some(account.clone()),
        domain: Some(domain.to_owned()),
        kind: Some(JobKind::Profiles),
        ..JobFilter::default()
    })?;
    let mut keys = BTreeMap::new();
    for job in jobs {
        let Ok(JobSpec::Profiles(spec)) = JobSpec::of(&job) else {
            continue;
        };
        let Ok(m) = spec.mapping_file() else { continue };
        if let [one] = m.mapping.key_fields() {
            let f = &m.mapping.fields()[*one];
            keys.insert(f.name.to_string(), f.content_type);
        }
    }
    Ok(keys)
}

/// The values a profile has for a key, as stored.
fn values_of(profile: &Profile, fields: &Value, key: &str, unique: bool) -> Vec<String> {
    let text = |t: &str| fields.get(t).and_then(Value::as_str).map(str::to_owned);
    if key == PROFILE_ID {
        return vec![profile_id(profile.no)];
    }
    if key == FULL_NAME.0 {
        let parts: Vec<String> = FULL_NAME.1.iter().filter_map(|t| text(t)).collect();
        return if parts.is_empty() {
            Vec::new()
        } else {
            vec![parts.join(" ")]
        };
    }
    if let Some((_, targets)) = FIELD_KEYS.iter().find(|(k, _)| *k == key) {
        return targets.iter().filter_map(|t| text(t)).collect();
    }
    if unique {
        return vec![profile.key.clone()];
    }
    Vec::new()
}

/// Searches a domain's live profiles at `now_ms`.
///
/// # Errors
///
/// [`SearchError::UnknownKey`], or the store's error
/// ([`StoreError::NoDomain`] for a domain that does not exist).
pub fn search(
    store: &dyn Store,
    account: &AccountId,
    domain: &str,
    q: &SearchQuery,
    now_ms: i64,
) -> Result<SearchPage, SearchError> {
    if store.domain(account, domain)?.is_none() {
        return Err(StoreError::NoDomain(domain.to_owned()).into());
    }
    let unique = if q
        .keys
        .iter()
        .any(|k| !PREDEFINED_KEYS.contains(&k.name.as_str()))
    {
        unique_keys(store, account, domain)?
    } else {
        BTreeMap::new()
    };
    if let Some(k) = q
        .keys
        .iter()
        .find(|k| !PREDEFINED_KEYS.contains(&k.name.as_str()) && !unique.contains_key(&k.name))
    {
        return Err(SearchError::UnknownKey(k.name.clone()));
    }
    // Each value as it was stored: normalized as the key's values were
    // (an unnormalizable value is looked for as it is).
    let normalizer = Normalizer::new();
    let keys: Vec<SearchKey> = q
        .keys
        .iter()
        .map(|k| SearchKey {
            name: k.name.clone(),
            values: k
                .values
                .iter()
                .map(|v| {
                    content_type_of(&k.name, &unique)
                        .and_then(|ct| normalizer.normalize_to_string(ct, v).ok())
                        .unwrap_or_else(|| v.clone())
                })
                .collect(),
        })
        .collect();
    // Profiles named by id or by unique key are read directly; the other
    // keys are found through their terms.
    let direct_key = |k: &SearchKey| k.name == PROFILE_ID || unique.contains_key(&k.name);
    let direct: Vec<Profile> = {
        let mut found = Vec::new();
        for k in keys.iter().filter(|k| direct_key(k)) {
            for v in &k.values {
                let p = if k.name == PROFILE_ID {
                    match profile_no(&v.to_lowercase()) {
                        Some(no) => store.profile_by_no(account, domain, no, now_ms)?,
                        None => None,
                    }
                } else {
                    store.profile(account, domain, v, now_ms)?
                };
                found.extend(p.filter(|p| p.no > q.after));
            }
        }
        found.sort_by_key(|p| p.no);
        found.dedup_by_key(|p| p.no);
        found
    };
    let groups: Vec<Vec<i64>> = keys
        .iter()
        .filter(|k| !direct_key(k))
        .map(|k| k.values.iter().map(|v| search_term(&k.name, v)).collect())
        .collect();
    let limit = q.limit.max(1);
    let mut after = q.after;
    let mut found: Vec<Found> = Vec::new();
    loop {
        // Candidates: with AND and a direct key, its profiles are all there
        // can be; otherwise a page of term matches (and, with OR, the
        // direct keys' profiles).
        let by_direct = groups.is_empty() || (q.all && keys.iter().any(direct_key));
        let (mut candidates, more) = if by_direct {
            (direct.clone(), false)
        } else {
            let page = store.search_profiles(
                account,
                domain,
                &ProfileSearch {
                    groups: &groups,
                    all: q.all,
                    after,
                    limit,
                    now_ms,
                },
            )?;
            let full = page.len() >= limit;
            let last = page.last().map(|p| p.no);
            let mut c = page;
            if !q.all {
                // Ids beyond this page's last are for a later page.
                c.extend(
                    direct
                        .iter()
                        .filter(|p| p.no > after && (!full || last.is_some_and(|l| p.no <= l)))
                        .cloned(),
                );
            }
            (c, full)
        };
        candidates.sort_by_key(|p| p.no);
        candidates.dedup_by_key(|p| p.no);
        let Some(last_seen) = candidates.last().map(|p| p.no) else {
            return Ok(SearchPage { found, next: None });
        };
        for p in candidates.into_iter().filter(|p| p.no > after) {
            if let Some(f) = check(p, &keys, q.all, &unique) {
                found.push(f);
                if found.len() == limit {
                    let no = found[limit - 1].profile.no;
                    let next = (more || no < last_seen).then_some(no);
                    return Ok(SearchPage { found, next });
                }
            }
        }
        if !more {
            return Ok(SearchPage { found, next: None });
        }
        after = last_seen;
    }
}

/// The profile with the keys and values it matches, if it matches as the
/// query asks.
fn check(
    profile: Profile,
    keys: &[SearchKey],
    all: bool,
    unique: &BTreeMap<String, ContentType>,
) -> Option<Found> {
    let fields: Value = serde_json::from_str(&profile.fields).unwrap_or(Value::Null);
    let mut found_by = Vec::new();
    for k in keys {
        let have: Vec<String> = values_of(&profile, &fields, &k.name, unique.contains_key(&k.name))
            .iter()
            .map(|h| h.to_lowercase())
            .collect();
        let matched: Vec<String> = k
            .values
            .iter()
            .filter(|v| have.contains(&v.to_lowercase()))
            .cloned()
            .collect();
        if matched.is_empty() {
            if all {
                return None;
            }
        } else {
            found_by.push(SearchKey {
                name: k.name.clone(),
                values: matched,
            });
        }
    }
    (!found_by.is_empty()).then_some(Found { profile, found_by })
}
