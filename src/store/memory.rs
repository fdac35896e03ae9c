//! Every store port in memory: for tests, and for embedders that need no
//! file (`MemoryStore`). One lock makes every call atomic.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use super::{
    AccountId, App, AppStore, Attempt, BucketSettings, BucketStore, Domain, DomainChange,
    EndpointBatch, EndpointFilter, EndpointKey, EndpointMerge, EndpointWrite, EndpointsOf,
    JobCounters, JobFilter, JobRecord, JobRef, JobStatus, JobStore, Lease, LeaseChange, LeaseStore,
    NewJob, PieceCounts, PieceStore, Profile, ProfileBatch, ProfileSearch, ProfileStore, Segment,
    Store, StoreError, StoredEndpoint, Transition, WriteCounts, fields_object, filtered_page,
};

type Key = (AccountId, String);

fn key(account: &AccountId, name: &str) -> Key {
    (account.clone(), name.to_owned())
}

#[derive(Debug)]
struct DomainRow {
    domain: Domain,
    /// Keys the domain's profiles.
    id: u64,
    /// No live profile expires before this (`None`: there are none).
    next_expiry: Option<i64>,
    /// The number the next new profile gets.
    next_profile_no: u64,
}

#[derive(Debug, Default)]
struct State {
    domains: BTreeMap<Key, DomainRow>,
    next_domain_id: u64,
    profiles: BTreeMap<u64, BTreeMap<String, Profile>>,
    /// Each profile's search terms, by (domain id, key).
    terms: HashMap<(u64, String), Vec<i64>>,
    jobs: BTreeMap<Key, JobRecord>,
    pieces: BTreeMap<Key, BTreeMap<u64, PieceCounts>>,
    leases: BTreeMap<Key, Lease>,
    apps: BTreeMap<Key, App>,
    /// By (account, app id).
    endpoints: BTreeMap<Key, AppEndpoints>,
    segments: BTreeMap<Key, BTreeMap<String, Segment>>,
    /// By (account, app id), then segment id.
    members: BTreeMap<Key, BTreeMap<String, BTreeSet<String>>>,
    buckets: BTreeMap<Key, BucketSettings>,
}

/// An app's endpoints by id, and an index of them by channel and address
/// (so an import finds an endpoint by its address without a scan).
#[derive(Debug, Default)]
struct AppEndpoints {
    by_id: BTreeMap<String, StoredEndpoint>,
    /// (channel, address) to (created_ms, id) of each endpoint with them.
    by_address: HashMap<(String, String), BTreeSet<(i64, String)>>,
}

impl AppEndpoints {
    fn get(&self, id: &str) -> Option<&StoredEndpoint> {
        self.by_id.get(id)
    }

    /// The oldest endpoint on `channel` at `address` (ties by id).
    fn by_address(&self, channel: &str, address: &str) -> Option<&StoredEndpoint> {
        let (_, id) = self
            .by_address
            .get(&(channel.to_owned(), address.to_owned()))?
            .first()?;
        self.by_id.get(id)
    }

    fn address_of(e: &StoredEndpoint) -> Option<(String, String)> {
        Some((e.channel_type.clone()?, e.address.clone()?))
    }

    fn remove(&mut self, id: &str) -> Option<StoredEndpoint> {
        let old = self.by_id.remove(id)?;
        if let Some(at) = Self::address_of(&old)
            && let Some(ids) = self.by_address.get_mut(&at)
        {
            ids.remove(&(old.created_ms, old.id.clone()));
            if ids.is_empty() {
                self.by_address.remove(&at);
            }
        }
        Some(old)
    }

    fn insert(&mut self, e: StoredEndpoint) {
        self.remove(&e.id);
        if let Some(at) = Self::address_of(&e) {
            self.by_address
                .entry(at)
                .or_default()
                .insert((e.created_ms, e.id.clone()));
        }
        self.by_id.insert(e.id.clone(), e);
    }
}

/// Every port in memory. Nothing survives the value; cloning is not
/// offered, share it in an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn job_mut(&mut self, job: JobRef<'_>) -> Result<&mut JobRecord, StoreError> {
        self.jobs
            .get_mut(&key(job.account, job.id))
            .ok_or_else(|| StoreError::NoJob(job.id.to_owned()))
    }

    /// The job of a running attempt, or why its write is refused.
    fn running(&mut self, a: Attempt<'_>) -> Result<&mut JobRecord, StoreError> {
        let job = self.job_mut(a.job)?;
        a.check(job.status, job.attempts)?;
        Ok(job)
    }

    fn domain_row(
        &mut self,
        account: &AccountId,
        name: &str,
    ) -> Result<&mut DomainRow, StoreError> {
        self.domains
            .get_mut(&key(account, name))
            .ok_or_else(|| StoreError::NoDomain(name.to_owned()))
    }

    fn purge_domain(&mut self, account: &AccountId, name: &str, now_ms: i64) -> u64 {
        let Some(row) = self.domains.get_mut(&key(account, name)) else {
            return 0;
        };
        let profiles = self.profiles.entry(row.id).or_default();
        let before = profiles.len();
        profiles.retain(|_, p| p.expires_ms > now_ms);
        row.next_expiry = profiles.values().map(|p| p.expires_ms).min();
        (before - profiles.len()) as u64
    }

    fn busy_job(&self, account: &AccountId, of: impl Fn(&JobRecord) -> bool) -> Option<String> {
        self.jobs
            .values()
            .find(|j| {
                j.account == *account
                    && of(j)
                    && matches!(j.status, JobStatus::Queued | JobStatus::Running)
            })
            .map(|j| j.id.clone())
    }

    fn app_exists(&self, account: &AccountId, app: &str) -> Result<(), StoreError> {
        if self.apps.contains_key(&key(account, app)) {
            Ok(())
        } else {
            Err(StoreError::NoApp(app.to_owned()))
        }
    }
}

impl Store for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }
}

impl JobStore for MemoryStore {
    fn insert_job(&self, job: &NewJob) -> Result<(), StoreError> {
        let mut st = self.state();
        if let Some(d) = &job.domain {
            st.domain_row(&job.account, d)?;
        }
        if let Some(a) = &job.app {
            st.app_exists(&job.account, a)?;
        }
        let k = key(&job.account, &job.id);
        if st.jobs.contains_key(&k) {
            return Err(StoreError::JobExists(job.id.clone()));
        }
        st.jobs.insert(
            k,
            JobRecord {
                account: job.account.clone(),
                id: job.id.clone(),
                kind: job.kind,
                domain: job.domain.clone(),
                app: job.app.clone(),
                display_name: job.display_name.clone(),
                spec: job.spec.clone(),
                status: JobStatus::Created,
                phase: None,
                status_reason: None,
                failure: None,
                stop_requested: false,
                attempts: 0,
                counters: JobCounters::default(),
                written_through: None,
                input_fingerprint: None,
                created_ms: job.created_ms,
                started_ms: None,
                completed_ms: None,
            },
        );
        Ok(())
    }

    fn job(&self, job: JobRef<'_>) -> Result<Option<JobRecord>, StoreError> {
        Ok(self.state().jobs.get(&key(job.account, job.id)).cloned())
    }

    fn jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>, StoreError> {
        let st = self.state();
        let mut out: Vec<JobRecord> = st
            .jobs
            .values()
            .filter(|j| {
                f.account.as_ref().is_none_or(|a| j.account == *a)
                    && f.domain
                        .as_ref()
                        .is_none_or(|d| j.domain.as_ref() == Some(d))
                    && f.app.as_ref().is_none_or(|a| j.app.as_ref() == Some(a))
                    && f.kind.is_none_or(|k| j.kind == k)
                    && (f.statuses.is_empty() || f.statuses.contains(&j.status))
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
        Ok(out
            .into_iter()
            .skip(f.offset)
            .take(f.limit.unwrap_or(usize::MAX))
            .collect())
    }

    fn update_spec(&self, job: JobRef<'_>, spec: &str) -> Result<JobRecord, StoreError> {
        let mut st = self.state();
        let j = st.job_mut(job)?;
        if j.status != JobStatus::Created {
            return Err(StoreError::Transition {
                id: j.id.clone(),
                from: JobStatus::Created,
                to: JobStatus::Created,
                actual: j.status,
            });
        }
        j.spec = spec.to_owned();
        Ok(j.clone())
    }

    fn transition(&self, job: JobRef<'_>, t: &Transition<'_>) -> Result<JobRecord, StoreError> {
        let mut st = self.state();
        let j = st.job_mut(job)?;
        *j = t.apply(j)?;
        Ok(j.clone())
    }

    fn save_progress(&self, job: JobRef<'_>, c: &JobCounters) -> Result<(), StoreError> {
        let mut st = self.state();
        let j = st.job_mut(job)?;
        let (created, updated) = (j.counters.created, j.counters.updated);
        j.counters = c.clone();
        j.counters.created = created;
        j.counters.updated = updated;
        Ok(())
    }

    fn set_input_fingerprint(&self, job: JobRef<'_>, fingerprint: &str) -> Result<(), StoreError> {
        self.state().job_mut(job)?.input_fingerprint = Some(fingerprint.to_owned());
        Ok(())
    }

    fn set_phase(&self, job: JobRef<'_>, phase: &str) -> Result<(), StoreError> {
        self.state().job_mut(job)?.phase = Some(phase.to_owned());
        Ok(())
    }

    fn clear_written(&self, attempt: Attempt<'_>) -> Result<(), StoreError> {
        let mut st = self.state();
        let job = st.running(attempt)?;
        job.counters.created = 0;
        job.counters.updated = 0;
        Ok(())
    }

    fn request_stop(&self, job: JobRef<'_>) -> Result<JobRecord, StoreError> {
        let mut st = self.state();
        let j = st.job_mut(job)?;
        j.stop_requested = true;
        Ok(j.clone())
    }
}

impl PieceStore for MemoryStore {
    fn plan_pieces(&self, attempt: Attempt<'_>, total: u64) -> Result<(), StoreError> {
        self.state().running(attempt)?.counters.total_pieces = total;
        Ok(())
    }

    fn complete_piece(&self, attempt: Attempt<'_>, p: &PieceCounts) -> Result<bool, StoreError> {
        let mut st = self.state();
        st.running(attempt)?;
        let pieces = st
            .pieces
            .entry(key(attempt.job.account, attempt.job.id))
            .or_default();
        if pieces.contains_key(&p.index) {
            return Ok(false);
        }
        pieces.insert(p.index, *p);
        let c = &mut st.running(attempt)?.counters;
        c.completed_pieces += p.count;
        c.failed_pieces += if p.failed_piece { p.count } else { 0 };
        c.processed += p.processed;
        c.failed += p.failed;
        c.field_warnings += p.warnings;
        Ok(true)
    }

    fn pieces(&self, job: JobRef<'_>) -> Result<Vec<PieceCounts>, StoreError> {
        Ok(self
            .state()
            .pieces
            .get(&key(job.account, job.id))
            .map(|p| p.values().copied().collect())
            .unwrap_or_default())
    }
}

impl LeaseStore for MemoryStore {
    fn change_lease(
        &self,
        account: &AccountId,
        name: &str,
        change: &LeaseChange<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        let mut st = self.state();
        let k = key(account, name);
        let Some(next) = change(st.leases.get(&k)) else {
            return Ok(None);
        };
        st.leases.insert(k, next.clone());
        Ok(Some(next))
    }

    fn lease(&self, account: &AccountId, name: &str) -> Result<Option<Lease>, StoreError> {
        Ok(self.state().leases.get(&key(account, name)).cloned())
    }
}

impl ProfileStore for MemoryStore {
    fn create_domain(&self, account: &AccountId, d: &Domain) -> Result<(), StoreError> {
        let mut st = self.state();
        let k = key(account, &d.name);
        if st.domains.contains_key(&k) {
            return Err(StoreError::DomainExists(d.name.clone()));
        }
        st.next_domain_id += 1;
        let id = st.next_domain_id;
        st.domains.insert(
            k,
            DomainRow {
                domain: d.clone(),
                id,
                next_expiry: None,
                next_profile_no: 1,
            },
        );
        Ok(())
    }

    fn domain(&self, account: &AccountId, name: &str) -> Result<Option<Domain>, StoreError> {
        Ok(self
            .state()
            .domains
            .get(&key(account, name))
            .map(|r| r.domain.clone()))
    }

    fn domains(&self, account: &AccountId) -> Result<Vec<Domain>, StoreError> {
        Ok(self
            .state()
            .domains
            .iter()
            .filter(|((a, _), _)| a == account)
            .map(|(_, r)| r.domain.clone())
            .collect())
    }

    fn update_domain(
        &self,
        account: &AccountId,
        name: &str,
        change: &DomainChange<'_>,
    ) -> Result<Domain, StoreError> {
        let mut st = self.state();
        let row = st
            .domains
            .get_mut(&key(account, name))
            .ok_or_else(|| StoreError::NoDomain(name.to_owned()))?;
        let d = row.domain.changed(change)?;
        row.domain = d.clone();
        Ok(d)
    }

    fn delete_domain(&self, account: &AccountId, name: &str) -> Result<u64, StoreError> {
        let mut st = self.state();
        let id = st.domain_row(account, name)?.id;
        if let Some(job) = st.busy_job(account, |j| j.domain.as_deref() == Some(name)) {
            return Err(StoreError::DomainBusy {
                domain: name.to_owned(),
                job,
            });
        }
        let n = st.profiles.remove(&id).map_or(0, |p| p.len() as u64);
        st.terms.retain(|(d, _), _| *d != id);
        let gone: Vec<Key> = st
            .jobs
            .iter()
            .filter(|(_, j)| j.account == *account && j.domain.as_deref() == Some(name))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            st.jobs.remove(&k);
            st.pieces.remove(&k);
        }
        st.domains.remove(&key(account, name));
        Ok(n)
    }

    fn write_profiles(&self, b: &ProfileBatch<'_>) -> Result<WriteCounts, StoreError> {
        b.check()?;
        let fields = b
            .rows
            .iter()
            .map(|r| {
                fields_object(b.targets, r.values).map_err(|_| StoreError::BadValues {
                    key: r.key.to_owned(),
                    targets: b.targets.len(),
                })
            })
            .collect::<Result<Vec<String>, StoreError>>()?;
        let mut st = self.state();
        let account = b.attempt.job.account;
        let row = st.domain_row(account, b.domain)?;
        let (id, due) = (row.id, row.next_expiry.is_some_and(|t| t <= b.now_ms));
        st.running(b.attempt)?;
        if due {
            st.purge_domain(account, b.domain, b.now_ms);
        }
        let (Some(last), false) = (b.rows.last(), b.rows.is_empty()) else {
            return Ok(WriteCounts::default());
        };
        let mut next_no = st.domain_row(account, b.domain)?.next_profile_no;
        for r in b.rows {
            st.terms.insert((id, r.key.to_owned()), r.terms.to_vec());
        }
        let profiles = st.profiles.entry(id).or_default();
        let mut counts = WriteCounts::default();
        for (r, fields) in b.rows.iter().zip(fields) {
            match profiles.get_mut(r.key) {
                Some(p) => {
                    p.fields = fields;
                    p.updated_ms = b.now_ms;
                    p.expires_ms = p.expires_ms.max(b.expires_ms);
                    counts.updated += 1;
                }
                None => {
                    profiles.insert(
                        r.key.to_owned(),
                        Profile {
                            no: next_no,
                            key: r.key.to_owned(),
                            fields,
                            created_ms: b.now_ms,
                            updated_ms: b.now_ms,
                            expires_ms: b.expires_ms,
                        },
                    );
                    counts.created += 1;
                    next_no += 1;
                }
            }
        }
        let row = st.domain_row(account, b.domain)?;
        row.next_profile_no = next_no;
        row.next_expiry = Some(
            row.next_expiry
                .map_or(b.expires_ms, |t| t.min(b.expires_ms)),
        );
        let job = st.running(b.attempt)?;
        job.counters.created += counts.created;
        job.counters.updated += counts.updated;
        job.written_through = Some(last.key.as_bytes().to_vec());
        Ok(counts)
    }

    fn profile(
        &self,
        account: &AccountId,
        domain: &str,
        k: &str,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError> {
        let mut st = self.state();
        let id = st.domain_row(account, domain)?.id;
        Ok(st
            .profiles
            .get(&id)
            .and_then(|p| p.get(k))
            .filter(|p| p.expires_ms > now_ms)
            .cloned())
    }

    fn profile_by_no(
        &self,
        account: &AccountId,
        domain: &str,
        no: u64,
        now_ms: i64,
    ) -> Result<Option<Profile>, StoreError> {
        let mut st = self.state();
        let id = st.domain_row(account, domain)?.id;
        Ok(st
            .profiles
            .get(&id)
            .and_then(|p| p.values().find(|p| p.no == no))
            .filter(|p| p.expires_ms > now_ms)
            .cloned())
    }

    fn search_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        q: &ProfileSearch<'_>,
    ) -> Result<Vec<Profile>, StoreError> {
        let mut st = self.state();
        let id = st.domain_row(account, domain)?.id;
        let Some(profiles) = st.profiles.get(&id) else {
            return Ok(Vec::new());
        };
        let matches = |p: &Profile| {
            let terms = st.terms.get(&(id, p.key.clone()));
            let has = |g: &Vec<i64>| terms.is_some_and(|t| t.iter().any(|x| g.contains(x)));
            if q.all {
                q.groups.iter().all(has)
            } else {
                q.groups.iter().any(has)
            }
        };
        let mut found: Vec<Profile> = profiles
            .values()
            .filter(|p| p.no > q.after && p.expires_ms > q.now_ms && matches(p))
            .cloned()
            .collect();
        found.sort_by_key(|p| p.no);
        found.truncate(q.limit);
        Ok(found)
    }

    fn delete_profile(
        &self,
        account: &AccountId,
        domain: &str,
        k: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut st = self.state();
        let id = st.domain_row(account, domain)?.id;
        st.terms.remove(&(id, k.to_owned()));
        let gone = st.profiles.get_mut(&id).and_then(|p| p.remove(k));
        Ok(gone.is_some_and(|p| p.expires_ms > now_ms))
    }

    fn count_profiles(
        &self,
        account: &AccountId,
        domain: &str,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut st = self.state();
        let id = st.domain_row(account, domain)?.id;
        Ok(st
            .profiles
            .get(&id)
            .map_or(0, |p| p.values().filter(|p| p.expires_ms > now_ms).count()) as u64)
    }

    fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut st = self.state();
        let due: Vec<Key> = st
            .domains
            .iter()
            .filter(|(_, r)| r.next_expiry.is_some_and(|t| t <= now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        Ok(due
            .into_iter()
            .map(|(account, name)| st.purge_domain(&account, &name, now_ms))
            .sum())
    }
}

impl AppStore for MemoryStore {
    fn create_app(&self, account: &AccountId, a: &App) -> Result<(), StoreError> {
        let mut st = self.state();
        // App ids are unique across accounts: children are keyed by them.
        if st.apps.keys().any(|(_, id)| *id == a.id) {
            return Err(StoreError::AppExists(a.id.clone()));
        }
        st.apps.insert(key(account, &a.id), a.clone());
        Ok(())
    }

    fn app(&self, account: &AccountId, id: &str) -> Result<Option<App>, StoreError> {
        Ok(self.state().apps.get(&key(account, id)).cloned())
    }

    fn apps(&self, account: &AccountId) -> Result<Vec<App>, StoreError> {
        let mut out: Vec<App> = self
            .state()
            .apps
            .iter()
            .filter(|((a, _), _)| a == account)
            .map(|(_, app)| app.clone())
            .collect();
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    fn delete_app(&self, account: &AccountId, id: &str) -> Result<App, StoreError> {
        let mut st = self.state();
        let k = key(account, id);
        let app = st
            .apps
            .get(&k)
            .cloned()
            .ok_or_else(|| StoreError::NoApp(id.to_owned()))?;
        if let Some(job) = st.busy_job(account, |j| j.app.as_deref() == Some(id)) {
            return Err(StoreError::AppBusy {
                app: id.to_owned(),
                job,
            });
        }
        st.members.remove(&k);
        st.segments.remove(&k);
        st.endpoints.remove(&k);
        let gone: Vec<Key> = st
            .jobs
            .iter()
            .filter(|(_, j)| j.account == *account && j.app.as_deref() == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        for g in gone {
            st.jobs.remove(&g);
            st.pieces.remove(&g);
        }
        st.apps.remove(&k);
        Ok(app)
    }

    fn write_endpoints(
        &self,
        b: &EndpointBatch<'_>,
        merge: &mut EndpointMerge<'_>,
    ) -> Result<Vec<EndpointWrite>, StoreError> {
        let mut st = self.state();
        let account = b.by.account();
        st.app_exists(account, b.app)?;
        if let Some(attempt) = b.by.attempt() {
            st.running(attempt)?;
        }
        let k = key(account, b.app);
        if let Some(seg) = b.segment
            && !st.segments.get(&k).is_some_and(|s| s.contains_key(seg))
        {
            return Err(StoreError::NoSegment {
                app: b.app.to_owned(),
                segment: seg.to_owned(),
            });
        }
        let mut out = Vec::with_capacity(b.keys.len());
        let (mut created, mut updated) = (0, 0);
        for (n, ek) in b.keys.iter().enumerate() {
            let endpoints = st.endpoints.entry(k.clone()).or_default();
            let found = match *ek {
                EndpointKey::Id(id) => endpoints.get(id).cloned(),
                EndpointKey::Address(ch, addr) => endpoints.by_address(ch, addr).cloned(),
            };
            let existed = b.by.existed(found.as_ref());
            let e = match merge(n, found) {
                Ok(e) => e,
                Err(why) => {
                    out.push(EndpointWrite::Refused(why));
                    continue;
                }
            };
            let (created_ms, created_by) = endpoints.get(&e.id).map_or_else(
                || (b.now_ms, b.by.job().map(str::to_owned)),
                |old| (old.created_ms, old.created_by.clone()),
            );
            endpoints.insert(StoredEndpoint {
                created_ms,
                updated_ms: b.now_ms,
                created_by,
                ..e.clone()
            });
            if let Some(seg) = b.segment {
                st.members
                    .entry(k.clone())
                    .or_default()
                    .entry(seg.to_owned())
                    .or_default()
                    .insert(e.id.clone());
            }
            if existed {
                updated += 1;
                out.push(EndpointWrite::Updated(e.id));
            } else {
                created += 1;
                out.push(EndpointWrite::Created(e.id));
            }
        }
        if let Some(attempt) = b.by.attempt() {
            let job = st.running(attempt)?;
            job.counters.created += created;
            job.counters.updated += updated;
        }
        Ok(out)
    }

    fn endpoint(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<StoredEndpoint>, StoreError> {
        Ok(self
            .state()
            .endpoints
            .get(&key(account, app))
            .and_then(|e| e.get(id))
            .cloned())
    }

    fn user_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        user_id: &str,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        Ok(self
            .state()
            .endpoints
            .get(&key(account, app))
            .map(|e| {
                e.by_id
                    .values()
                    .filter(|e| e.user_id.as_deref() == Some(user_id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    fn endpoints_after(
        &self,
        account: &AccountId,
        app: &str,
        filter: Option<&EndpointFilter>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        let st = self.state();
        st.app_exists(account, app)?;
        let k = key(account, app);
        let Some(endpoints) = st.endpoints.get(&k) else {
            return Ok(Vec::new());
        };
        let members = st.members.get(&k);
        let of = |seg: &str| members.and_then(|m| m.get(seg));
        let from = |after: &str| {
            (
                std::ops::Bound::Excluded(after.to_owned()),
                std::ops::Bound::Unbounded,
            )
        };
        let Some(filter) = filter else {
            return Ok(endpoints
                .by_id
                .range::<String, _>(from(after.unwrap_or("")))
                .take(limit)
                .map(|(_, e)| e.clone())
                .collect());
        };
        let driver = filter.driving_segment();
        let mut page = |after: &str, n: usize| -> Result<Vec<StoredEndpoint>, StoreError> {
            Ok(match driver {
                None => endpoints
                    .by_id
                    .range::<String, _>(from(after))
                    .take(n)
                    .map(|(_, e)| e.clone())
                    .collect(),
                Some(seg) => of(seg)
                    .map(|m| {
                        m.range::<String, _>(from(after))
                            .take(n)
                            .filter_map(|id| endpoints.get(id).cloned())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        };
        let mut members = |seg: &str, ids: &[&str]| {
            Ok(ids
                .iter()
                .filter(|id| of(seg).is_some_and(|m| m.contains(**id)))
                .map(|id| (*id).to_owned())
                .collect())
        };
        filtered_page(
            &self.location(),
            filter,
            after,
            limit,
            &mut page,
            &mut members,
        )
    }

    fn delete_endpoints(
        &self,
        account: &AccountId,
        app: &str,
        which: EndpointsOf<'_>,
    ) -> Result<Vec<StoredEndpoint>, StoreError> {
        let mut st = self.state();
        st.app_exists(account, app)?;
        let k = key(account, app);
        let Some(endpoints) = st.endpoints.get_mut(&k) else {
            return Ok(Vec::new());
        };
        let ids: Vec<String> = match which {
            EndpointsOf::Id(id) => vec![id.to_owned()],
            EndpointsOf::User(user) => endpoints
                .by_id
                .values()
                .filter(|e| e.user_id.as_deref() == Some(user))
                .map(|e| e.id.clone())
                .collect(),
        };
        let gone: Vec<StoredEndpoint> = ids.iter().filter_map(|id| endpoints.remove(id)).collect();
        if let Some(segments) = st.members.get_mut(&k) {
            for members in segments.values_mut() {
                for e in &gone {
                    members.remove(&e.id);
                }
            }
        }
        Ok(gone)
    }

    fn create_segment(&self, account: &AccountId, seg: &Segment) -> Result<(), StoreError> {
        let mut st = self.state();
        st.app_exists(account, &seg.app)?;
        st.segments
            .entry(key(account, &seg.app))
            .or_default()
            .entry(seg.id.clone())
            .or_insert_with(|| seg.clone());
        Ok(())
    }

    fn segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Option<Segment>, StoreError> {
        Ok(self
            .state()
            .segments
            .get(&key(account, app))
            .and_then(|s| s.get(id))
            .cloned())
    }

    fn segments(&self, account: &AccountId, app: &str) -> Result<Vec<Segment>, StoreError> {
        let mut out: Vec<Segment> = self
            .state()
            .segments
            .get(&key(account, app))
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        out.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
        Ok(out)
    }

    fn update_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
        name: Option<&str>,
        definition: &str,
        now_ms: i64,
    ) -> Result<Segment, StoreError> {
        let mut st = self.state();
        let seg = st
            .segments
            .get_mut(&key(account, app))
            .and_then(|s| s.get_mut(id))
            .ok_or_else(|| StoreError::NoSegment {
                app: app.to_owned(),
                segment: id.to_owned(),
            })?;
        if let Some(name) = name {
            seg.name = Some(name.to_owned());
        }
        seg.definition = definition.to_owned();
        seg.updated_ms = now_ms;
        seg.version += 1;
        Ok(seg.clone())
    }

    fn delete_segment(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Segment, StoreError> {
        let mut st = self.state();
        let k = key(account, app);
        let seg = st
            .segments
            .get_mut(&k)
            .and_then(|s| s.remove(id))
            .ok_or_else(|| StoreError::NoSegment {
                app: app.to_owned(),
                segment: id.to_owned(),
            })?;
        if let Some(m) = st.members.get_mut(&k) {
            m.remove(id);
        }
        Ok(seg)
    }

    fn segment_channel_counts(
        &self,
        account: &AccountId,
        app: &str,
        id: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let st = self.state();
        let k = key(account, app);
        let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
        if let (Some(members), Some(endpoints)) = (
            st.members.get(&k).and_then(|m| m.get(id)),
            st.endpoints.get(&k),
        ) {
            for e in members.iter().filter_map(|m| endpoints.get(m)) {
                *counts.entry(e.channel_type.clone()).or_default() += 1;
            }
        }
        Ok(counts
            .into_iter()
            .map(|(c, n)| (c.unwrap_or_default(), n))
            .collect())
    }
}

impl BucketStore for MemoryStore {
    fn set_bucket_settings(
        &self,
        account: &AccountId,
        settings: &BucketSettings,
    ) -> Result<(), StoreError> {
        self.state()
            .buckets
            .insert(key(account, &settings.bucket), settings.clone());
        Ok(())
    }

    fn bucket_settings(
        &self,
        account: &AccountId,
        bucket: &str,
    ) -> Result<Option<BucketSettings>, StoreError> {
        Ok(self.state().buckets.get(&key(account, bucket)).cloned())
    }

    fn forget_bucket(&self, account: &AccountId, bucket: &str) -> Result<(), StoreError> {
        self.state().buckets.remove(&key(account, bucket));
        Ok(())
    }

    fn bucket_accounts(&self, bucket: &str) -> Result<Vec<AccountId>, StoreError> {
        Ok(self
            .state()
            .buckets
            .keys()
            .filter(|(_, b)| b == bucket)
            .map(|(a, _)| a.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::all(&|| Box::new(super::MemoryStore::new()));
    }
}
