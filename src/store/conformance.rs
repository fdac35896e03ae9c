/*!
What every store backend must do: one suite, run once per backend.

Each check takes a fresh, empty store and panics (with what went wrong)
when the backend breaks a rule of the ports; [`all`] runs them all. The
in-memory backend's tests and the SQLite backend's tests call it; a new
backend is done when it passes.

```
use sluice::store::{MemoryStore, conformance};

conformance::all(&|| Box::new(MemoryStore::new()));
```
*/

use std::sync::{Arc, Barrier};

use super::{
    AccountId, App, Attempt, BucketSettings, Comparison, Domain, EndpointBatch, EndpointFilter,
    EndpointKey, EndpointMerge, EndpointWrite, EndpointWriter, EndpointsOf, JobCounters, JobFilter,
    JobKind, JobRef, JobStatus, Lease, NewJob, PieceCounts, ProfileBatch, ProfileRow,
    ProfileSearch, Segment, Store, StoreError, StoredEndpoint, Transition, ValueTest,
};

/// Makes a fresh, empty store.
pub type Fresh<'a> = &'a (dyn Fn() -> Box<dyn Store> + Sync);

/// One named check.
type Check = (&'static str, fn(&dyn Store));

/// Runs every check, each on a fresh store.
pub fn all(fresh: Fresh<'_>) {
    let checks: [Check; 18] = [
        (
            "transitions follow the state machine",
            transitions_follow_the_state_machine,
        ),
        ("racing transitions: one wins", racing_transitions_one_wins),
        (
            "specs change only while created",
            specs_change_only_while_created,
        ),
        (
            "jobs list newest first, and page",
            jobs_list_newest_first_and_page,
        ),
        ("accounts are kept apart", accounts_are_kept_apart),
        (
            "leases expire and are taken over",
            leases_expire_and_are_taken_over,
        ),
        ("racing leases: one wins", racing_leases_one_wins),
        (
            "pieces complete once, and are fenced",
            pieces_complete_once_and_are_fenced,
        ),
        (
            "profiles: created, then updated",
            profiles_created_then_updated,
        ),
        (
            "expiry: the longest wins, and purges",
            expiry_the_longest_wins_and_purges,
        ),
        (
            "profiles: numbered, searched by term, deleted",
            profiles_numbered_searched_deleted,
        ),
        ("endpoints, segments and apps", endpoints_segments_and_apps),
        (
            "segments: filtered by the store, deleted",
            segments_filtered_by_the_store_deleted,
        ),
        (
            "endpoints: written by requests, deleted by id and user",
            endpoints_written_by_requests_deleted_by_id_and_user,
        ),
        ("domains: busy, then deleted", domains_busy_then_deleted),
        (
            "domains change in place, by account",
            domains_change_in_place_by_account,
        ),
        ("concurrent writers", concurrent_writers),
        ("lists come in their order", lists_come_in_their_order),
    ];
    for (name, check) in checks {
        let store = fresh();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*store)));
        if let Err(e) = outcome {
            eprintln!("store conformance: {name}: failed on {}", store.location());
            std::panic::resume_unwind(e);
        }
    }
    let store = fresh();
    bucket_settings_round_trip(&*store);
    let store = fresh();
    if store.range_store().is_some() {
        ranges_lease_once_fence_and_merge_by_place(&*store);
        let store = fresh();
        merges_tell_new_keys_from_keys_there_or_written_meanwhile(&*store);
    }
}

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 86_400_000;

fn acct() -> AccountId {
    AccountId::default()
}

fn job_ref<'a>(account: &'a AccountId, id: &'a str) -> JobRef<'a> {
    JobRef { account, id }
}

fn new_job(account: &AccountId, id: &str, domain: Option<&str>, created_ms: i64) -> NewJob {
    NewJob {
        account: account.clone(),
        id: id.to_owned(),
        kind: JobKind::Profiles,
        domain: domain.map(str::to_owned),
        app: None,
        display_name: Some(format!("job {id}")),
        spec: format!("{{\"job\":\"{id}\"}}"),
        created_ms,
    }
}

fn go(s: &dyn Store, account: &AccountId, id: &str, from: JobStatus, to: JobStatus) -> u32 {
    s.transition(job_ref(account, id), &Transition::new(from, to, T0))
        .unwrap_or_else(|e| panic!("{id}: {from} -> {to}: {e}"))
        .attempts
}

/// A job of `domain` (or of none) that is running; returns its attempt.
fn running(s: &dyn Store, account: &AccountId, id: &str, domain: Option<&str>) -> u32 {
    s.insert_job(&new_job(account, id, domain, T0)).unwrap();
    go(s, account, id, JobStatus::Created, JobStatus::Queued);
    go(s, account, id, JobStatus::Queued, JobStatus::Running)
}

fn transitions_follow_the_state_machine(s: &dyn Store) {
    let a = acct();
    let mut n = 0;
    for from in JobStatus::ALL {
        for to in JobStatus::ALL {
            n += 1;
            let id = format!("j{n}");
            s.insert_job(&new_job(&a, &id, None, T0)).unwrap();
            // Walk the job to `from` along allowed steps.
            let path: &[JobStatus] = match from {
                JobStatus::Created => &[],
                JobStatus::Queued => &[JobStatus::Queued],
                JobStatus::Running => &[JobStatus::Queued, JobStatus::Running],
                terminal => &[JobStatus::Queued, JobStatus::Running, terminal],
            };
            let mut at = JobStatus::Created;
            for &step in path {
                go(s, &a, &id, at, step);
                at = step;
            }
            let t = Transition {
                reason: Some("because"),
                ..Transition::new(from, to, T0 + 5)
            };
            match s.transition(job_ref(&a, &id), &t) {
                Ok(j) => {
                    assert!(from.can_become(to), "{from} -> {to} was allowed");
                    assert_eq!(j.status, to);
                    assert_eq!(j.status_reason.as_deref(), Some("because"));
                    if to.is_terminal() {
                        assert_eq!(j.completed_ms, Some(T0 + 5));
                    }
                }
                Err(StoreError::Transition { actual, .. }) => {
                    assert!(!from.can_become(to), "{from} -> {to} was refused");
                    assert_eq!(actual, from);
                }
                Err(e) => panic!("{from} -> {to}: {e}"),
            }
        }
    }
    // A stale `from` is refused, naming the state the job is in.
    s.insert_job(&new_job(&a, "stale", None, T0)).unwrap();
    go(s, &a, "stale", JobStatus::Created, JobStatus::Queued);
    let e = s
        .transition(
            job_ref(&a, "stale"),
            &Transition::new(JobStatus::Created, JobStatus::Queued, T0),
        )
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Transition {
                actual: JobStatus::Queued,
                ..
            }
        ),
        "{e}"
    );
    // Running counts attempts; the start time is the first one's.
    assert_eq!(go(s, &a, "stale", JobStatus::Queued, JobStatus::Running), 1);
    go(s, &a, "stale", JobStatus::Running, JobStatus::Queued);
    assert_eq!(go(s, &a, "stale", JobStatus::Queued, JobStatus::Running), 2);
    let j = s.job(job_ref(&a, "stale")).unwrap().unwrap();
    assert_eq!((j.attempts, j.started_ms), (2, Some(T0)));
    assert!(matches!(
        s.transition(
            job_ref(&a, "missing"),
            &Transition::new(JobStatus::Created, JobStatus::Queued, T0)
        ),
        Err(StoreError::NoJob(_))
    ));
    assert!(matches!(
        s.insert_job(&new_job(&a, "stale", None, T0)),
        Err(StoreError::JobExists(_))
    ));
}

fn racing_transitions_one_wins(s: &dyn Store) {
    let a = acct();
    for round in 0..5 {
        let id = format!("race{round}");
        s.insert_job(&new_job(&a, &id, None, T0)).unwrap();
        let threads = 6;
        let barrier = Barrier::new(threads);
        let wins: usize = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        barrier.wait();
                        s.transition(
                            job_ref(&a, &id),
                            &Transition::new(JobStatus::Created, JobStatus::Queued, T0),
                        )
                        .is_ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().unwrap()))
                .sum()
        });
        assert_eq!(wins, 1, "{id}");
    }
}

fn specs_change_only_while_created(s: &dyn Store) {
    let a = acct();
    s.insert_job(&new_job(&a, "j", None, T0)).unwrap();
    let j = s.update_spec(job_ref(&a, "j"), "{\"v\":2}").unwrap();
    assert_eq!(j.spec, "{\"v\":2}");
    go(s, &a, "j", JobStatus::Created, JobStatus::Queued);
    let e = s.update_spec(job_ref(&a, "j"), "{\"v\":3}").unwrap_err();
    assert!(matches!(e, StoreError::Transition { .. }), "{e}");
    let j = s.job(job_ref(&a, "j")).unwrap().unwrap();
    assert_eq!(j.spec, "{\"v\":2}");
    assert!(!j.stop_requested);
    assert!(s.request_stop(job_ref(&a, "j")).unwrap().stop_requested);
    s.set_phase(job_ref(&a, "j"), "PROCESSING").unwrap();
    s.set_input_fingerprint(job_ref(&a, "j"), "fp").unwrap();
    let c = JobCounters {
        total_pieces: 3,
        processed: 9,
        failures: vec!["f.csv:2: record 1: bad".into()],
        field_warnings_by_field: vec![("Phone".into(), 2)],
        ..JobCounters::default()
    };
    s.save_progress(job_ref(&a, "j"), &c).unwrap();
    let j = s.job(job_ref(&a, "j")).unwrap().unwrap();
    assert_eq!(j.phase.as_deref(), Some("PROCESSING"));
    assert_eq!(j.input_fingerprint.as_deref(), Some("fp"));
    assert_eq!(j.counters, c);
    assert_eq!(j.kind, JobKind::Profiles);
    assert_eq!(j.display_name.as_deref(), Some("job j"));
    assert!(matches!(
        s.save_progress(job_ref(&a, "nope"), &c),
        Err(StoreError::NoJob(_))
    ));
}

fn jobs_list_newest_first_and_page(s: &dyn Store) {
    let a = acct();
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    for (id, at) in [("b", 2), ("a", 2), ("c", 1), ("d", 3)] {
        s.insert_job(&new_job(&a, id, Some("d"), T0 + at)).unwrap();
    }
    let ids =
        |f: &JobFilter| -> Vec<String> { s.jobs(f).unwrap().into_iter().map(|j| j.id).collect() };
    let all = JobFilter {
        account: Some(a.clone()),
        ..JobFilter::default()
    };
    assert_eq!(ids(&all), ["d", "b", "a", "c"]);
    let page = JobFilter {
        limit: Some(2),
        offset: 1,
        ..all.clone()
    };
    assert_eq!(ids(&page), ["b", "a"]);
    go(s, &a, "a", JobStatus::Created, JobStatus::Queued);
    let queued = JobFilter {
        statuses: vec![JobStatus::Queued, JobStatus::Running],
        ..all.clone()
    };
    assert_eq!(ids(&queued), ["a"]);
    let by_kind = JobFilter {
        kind: Some(JobKind::Import),
        ..all.clone()
    };
    assert!(ids(&by_kind).is_empty());
    let by_domain = JobFilter {
        domain: Some("other".into()),
        ..all
    };
    assert!(ids(&by_domain).is_empty());
}

fn accounts_are_kept_apart(s: &dyn Store) {
    let (a, b) = (
        AccountId::new("111111111111"),
        AccountId::new("222222222222"),
    );
    s.create_domain(&a, &Domain::new("shared", 14, T0)).unwrap();
    s.create_domain(&b, &Domain::new("shared", 30, T0)).unwrap();
    assert_eq!(
        s.domain(&a, "shared")
            .unwrap()
            .unwrap()
            .default_expiration_days,
        14
    );
    assert_eq!(
        s.domain(&b, "shared")
            .unwrap()
            .unwrap()
            .default_expiration_days,
        30
    );
    s.insert_job(&new_job(&a, "j", Some("shared"), T0)).unwrap();
    assert!(s.job(job_ref(&b, "j")).unwrap().is_none());
    assert!(matches!(
        s.transition(
            job_ref(&b, "j"),
            &Transition::new(JobStatus::Created, JobStatus::Queued, T0)
        ),
        Err(StoreError::NoJob(_))
    ));
    let listed = s
        .jobs(&JobFilter {
            account: Some(b.clone()),
            ..JobFilter::default()
        })
        .unwrap();
    assert!(listed.is_empty());
    // A job may not name a domain of another account.
    s.create_domain(&a, &Domain::new("only-a", 14, T0)).unwrap();
    assert!(matches!(
        s.insert_job(&new_job(&b, "k", Some("only-a"), T0)),
        Err(StoreError::NoDomain(_))
    ));
    s.create_app(&a, &app("app1", T0)).unwrap();
    assert!(s.app(&b, "app1").unwrap().is_none());
    assert!(s.apps(&b).unwrap().is_empty());
    assert!(matches!(
        s.delete_app(&b, "app1"),
        Err(StoreError::NoApp(_))
    ));
    assert!(matches!(
        s.create_app(&b, &app("app1", T0)),
        Err(StoreError::AppExists(_))
    ));
    assert_eq!(s.domains(&b).unwrap().len(), 1);
    s.set_bucket_settings(
        &a,
        &BucketSettings {
            bucket: "bkt".into(),
            region: Some("eu-west-1".into()),
            owner: None,
        },
    )
    .unwrap();
    assert!(s.bucket_settings(&b, "bkt").unwrap().is_none());
    // Leases of the same name in two accounts are two leases.
    assert!(
        s.acquire_lease(&a, "job/j", "h1", T0, 1000)
            .unwrap()
            .is_some()
    );
    assert!(
        s.acquire_lease(&b, "job/j", "h2", T0, 1000)
            .unwrap()
            .is_some()
    );
}

fn leases_expire_and_are_taken_over(s: &dyn Store) {
    let a = acct();
    let first = s
        .acquire_lease(&a, "job/x", "host-1", T0, 1000)
        .unwrap()
        .expect("a free lease is taken");
    assert_eq!((first.attempt, first.deadline_ms), (1, T0 + 1000));
    assert!(
        s.acquire_lease(&a, "job/x", "host-2", T0 + 999, 1000)
            .unwrap()
            .is_none()
    );
    // A heartbeat moves the deadline.
    let renewed = s.renew_lease(&first, T0 + 900, 1000).unwrap().unwrap();
    assert_eq!(renewed.deadline_ms, T0 + 1900);
    assert!(
        s.acquire_lease(&a, "job/x", "host-2", T0 + 1500, 1000)
            .unwrap()
            .is_none()
    );
    // Past the deadline anyone may take it: a new attempt.
    let second = s
        .acquire_lease(&a, "job/x", "host-2", T0 + 1900, 1000)
        .unwrap()
        .expect("a lapsed lease is taken");
    assert_eq!((second.holder.as_str(), second.attempt), ("host-2", 2));
    // The first holder's heartbeat and release no longer touch it.
    assert!(s.renew_lease(&renewed, T0 + 1950, 1000).unwrap().is_none());
    s.release_lease(&renewed).unwrap();
    assert_eq!(s.lease(&a, "job/x").unwrap().unwrap(), second);
    // Taking over a holder known to be gone: only from what was seen.
    let stale = Lease {
        attempt: 1,
        ..second.clone()
    };
    assert!(
        s.take_over_lease(&stale, "host-3", T0 + 2000, 1000)
            .unwrap()
            .is_none()
    );
    let third = s
        .take_over_lease(&second, "host-3", T0 + 2000, 1000)
        .unwrap()
        .unwrap();
    assert_eq!((third.holder.as_str(), third.attempt), ("host-3", 3));
    // Released, it is free at once, and the attempts go on.
    s.release_lease(&third).unwrap();
    let fourth = s
        .acquire_lease(&a, "job/x", "host-1", T0 + 2001, 1000)
        .unwrap()
        .unwrap();
    assert_eq!(fourth.attempt, 4);
    assert!(s.lease(&a, "job/none").unwrap().is_none());
}

fn racing_leases_one_wins(s: &dyn Store) {
    let a = acct();
    for round in 0..5 {
        let name = format!("job/r{round}");
        let threads = 6;
        let barrier = Barrier::new(threads);
        let wins: usize = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (barrier, name, a) = (&barrier, &name, &a);
                    sc.spawn(move || {
                        barrier.wait();
                        let holder = format!("h{t}");
                        usize::from(
                            s.acquire_lease(a, name, &holder, T0, 1000)
                                .unwrap()
                                .is_some(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(wins, 1, "{name}");
    }
}

fn pieces_complete_once_and_are_fenced(s: &dyn Store) {
    let a = acct();
    let attempt = running(s, &a, "p", None);
    let at = Attempt {
        job: job_ref(&a, "p"),
        attempt,
    };
    s.plan_pieces(at, 4).unwrap();
    let piece = |index, processed, failed_piece| PieceCounts {
        index,
        count: 1,
        processed,
        failed: 1,
        warnings: 2,
        failed_piece,
    };
    assert!(s.complete_piece(at, &piece(0, 10, false)).unwrap());
    assert!(!s.complete_piece(at, &piece(0, 10, false)).unwrap());
    assert!(s.complete_piece(at, &piece(2, 5, true)).unwrap());
    let c = s.job(job_ref(&a, "p")).unwrap().unwrap().counters;
    assert_eq!(
        (
            c.total_pieces,
            c.completed_pieces,
            c.failed_pieces,
            c.processed,
            c.failed,
            c.field_warnings
        ),
        (4, 2, 1, 15, 2, 4)
    );
    // Taken over: the old attempt's pieces are refused, the new one's
    // repeats of recorded pieces count nothing.
    go(s, &a, "p", JobStatus::Running, JobStatus::Queued);
    let next = go(s, &a, "p", JobStatus::Queued, JobStatus::Running);
    assert_eq!(next, attempt + 1);
    let e = s.complete_piece(at, &piece(1, 3, false)).unwrap_err();
    assert!(
        matches!(e, StoreError::Fenced { current, .. } if current == next),
        "{e}"
    );
    // Nor can the old attempt end the new one's run.
    let end = Transition {
        fence: Some(attempt),
        ..Transition::new(JobStatus::Running, JobStatus::Succeeded, T0)
    };
    assert!(matches!(
        s.transition(job_ref(&a, "p"), &end),
        Err(StoreError::Fenced { .. })
    ));
    let at2 = Attempt {
        job: job_ref(&a, "p"),
        attempt: next,
    };
    assert!(!s.complete_piece(at2, &piece(0, 10, false)).unwrap());
    assert!(s.complete_piece(at2, &piece(1, 3, false)).unwrap());
    let runs = PieceCounts {
        index: 3,
        count: 5,
        ..PieceCounts::default()
    };
    assert!(s.complete_piece(at2, &runs).unwrap());
    let c = s.job(job_ref(&a, "p")).unwrap().unwrap().counters;
    assert_eq!((c.completed_pieces, c.processed), (8, 18));
    let pieces: Vec<u64> = s
        .pieces(job_ref(&a, "p"))
        .unwrap()
        .iter()
        .map(|p| p.index)
        .collect();
    assert_eq!(pieces, [0, 1, 2, 3]);
    // A finished job takes no more pieces.
    go(s, &a, "p", JobStatus::Running, JobStatus::Succeeded);
    assert!(matches!(
        s.complete_piece(at2, &piece(9, 1, false)),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        s.plan_pieces(at2, 9),
        Err(StoreError::Fenced { .. })
    ));
}

fn rows<'a>(keys: &'a [String], values: &'a str) -> Vec<ProfileRow<'a>> {
    keys.iter()
        .map(|k| ProfileRow {
            key: k.as_str(),
            values,
            terms: &[],
        })
        .collect()
}

fn profiles_numbered_searched_deleted(s: &dyn Store) {
    let a = acct();
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    s.create_domain(&a, &Domain::new("other", 14, T0)).unwrap();
    let attempt = running(s, &a, "w", Some("d"));
    let at = Attempt {
        job: job_ref(&a, "w"),
        attempt,
    };
    // Terms 1..: k0 has {1, 10}, k1 {2, 10}, k2 {3, 11}, k3 {4}.
    let terms: [&[i64]; 4] = [&[1, 10], &[2, 10], &[3, 11], &[4]];
    let keys = ["k0", "k1", "k2", "k3"];
    let write = |at: Attempt<'_>, domain: &str, which: &[usize], now: i64| {
        let rows: Vec<ProfileRow<'_>> = which
            .iter()
            .map(|&i| ProfileRow {
                key: keys[i],
                values: "[\"x\"]",
                terms: terms[i],
            })
            .collect();
        s.write_profiles(&ProfileBatch {
            attempt: at,
            domain,
            now_ms: now,
            expires_ms: now + DAY,
            targets: &["v"],
            rows: &rows,
        })
        .unwrap()
    };
    write(at, "d", &[0, 2], T0);
    // Searches find what is written before and after it is folded.
    let search = |groups: &[Vec<i64>], all: bool, after: u64, limit: usize| -> Vec<String> {
        s.search_profiles(
            &a,
            "d",
            &ProfileSearch {
                groups,
                all,
                after,
                limit,
                now_ms: T0 + 1,
            },
        )
        .unwrap()
        .into_iter()
        .map(|p| p.key)
        .collect()
    };
    assert_eq!(search(&[vec![10]], false, 0, 10), ["k0"]);
    // By number before the fold, too.
    let k0 = s.profile(&a, "d", "k0", T0 + 1).unwrap().unwrap();
    let by_no = s.profile_by_no(&a, "d", k0.no, T0 + 1).unwrap();
    assert_eq!(by_no.map(|p| p.key).as_deref(), Some("k0"));
    s.settle_search(&a, "d").unwrap();
    write(at, "d", &[1, 3], T0);
    assert_eq!(search(&[vec![10]], false, 0, 10), ["k0", "k1"]);
    s.settle_search(&a, "d").unwrap();
    s.settle_search(&a, "d").unwrap();
    // Numbers: unique, in the order the profiles were made, kept on update.
    let no = |k: &str| s.profile(&a, "d", k, T0 + 1).unwrap().unwrap().no;
    let nos: Vec<u64> = keys.iter().map(|k| no(k)).collect();
    assert!(
        nos[0] < nos[2] && nos[2] < nos[1] && nos[1] < nos[3],
        "{nos:?}"
    );
    write(at, "d", &[0], T0);
    assert_eq!(no("k0"), nos[0]);
    let by_no = s.profile_by_no(&a, "d", nos[2], T0 + 1).unwrap().unwrap();
    assert_eq!((by_no.key.as_str(), by_no.no), ("k2", nos[2]));
    assert_eq!(s.profile_by_no(&a, "d", u64::MAX, T0 + 1).unwrap(), None);
    // OR, AND, pages in number order.
    assert_eq!(
        search(&[vec![10], vec![11]], false, 0, 10),
        ["k0", "k2", "k1"]
    );
    assert_eq!(search(&[vec![10, 11]], false, 0, 2), ["k0", "k2"]);
    assert_eq!(search(&[vec![10, 11]], false, nos[2], 2), ["k1"]);
    assert_eq!(search(&[vec![10], vec![2]], true, 0, 10), ["k1"]);
    assert_eq!(
        search(&[vec![10], vec![3]], true, 0, 10),
        Vec::<String>::new()
    );
    assert_eq!(search(&[vec![99]], false, 0, 10), Vec::<String>::new());
    // Another domain's profiles are not found; its numbers are its own.
    let other = running(s, &a, "o", Some("other"));
    let ot = Attempt {
        job: job_ref(&a, "o"),
        attempt: other,
    };
    write(ot, "other", &[3], T0);
    assert_eq!(search(&[vec![4]], false, 0, 10), ["k3"]);
    // Deleted: gone from reads and searches; a second delete finds none.
    assert!(s.delete_profile(&a, "d", "k0", T0 + 1).unwrap());
    assert!(!s.delete_profile(&a, "d", "k0", T0 + 1).unwrap());
    assert_eq!(s.profile(&a, "d", "k0", T0 + 1).unwrap(), None);
    assert_eq!(s.profile_by_no(&a, "d", nos[0], T0 + 1).unwrap(), None);
    assert_eq!(search(&[vec![10]], false, 0, 10), ["k1"]);
    assert_eq!(s.count_profiles(&a, "d", T0 + 1).unwrap(), 3);
    // Expired profiles are not found.
    let late = s
        .search_profiles(
            &a,
            "d",
            &ProfileSearch {
                groups: &[vec![10]],
                all: false,
                after: 0,
                limit: 10,
                now_ms: T0 + 2 * DAY,
            },
        )
        .unwrap();
    assert!(late.is_empty());
    assert!(matches!(
        s.search_profiles(
            &a,
            "nope",
            &ProfileSearch {
                groups: &[vec![1]],
                all: false,
                after: 0,
                limit: 1,
                now_ms: T0
            }
        ),
        Err(StoreError::NoDomain(_))
    ));
}

fn profiles_created_then_updated(s: &dyn Store) {
    let a = acct();
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    let attempt = running(s, &a, "w", Some("d"));
    let at = Attempt {
        job: job_ref(&a, "w"),
        attempt,
    };
    let keys: Vec<String> = (0..10).map(|i| format!("k{i:02}")).collect();
    fn batch<'a>(at: Attempt<'a>, rows: &'a [ProfileRow<'a>], now_ms: i64) -> ProfileBatch<'a> {
        ProfileBatch {
            attempt: at,
            domain: "d",
            now_ms,
            expires_ms: now_ms + DAY,
            targets: &["v"],
            rows,
        }
    }
    let first = rows(&keys[..6], "[\"1\"]");
    let c = s.write_profiles(&batch(at, &first, T0)).unwrap();
    assert_eq!((c.created, c.updated), (6, 0));
    let second = rows(&keys[4..], "[\"2\"]");
    let c = s.write_profiles(&batch(at, &second, T0 + 10)).unwrap();
    assert_eq!((c.created, c.updated), (4, 2));
    let j = s.job(job_ref(&a, "w")).unwrap().unwrap();
    assert_eq!((j.counters.created, j.counters.updated), (10, 2));
    assert_eq!(j.written_through.as_deref(), Some(&b"k09"[..]));
    let p = s.profile(&a, "d", "k05", T0 + 10).unwrap().unwrap();
    assert_eq!(p.fields, "{\"v\":\"2\"}");
    assert_eq!((p.created_ms, p.updated_ms), (T0, T0 + 10));
    assert_eq!(s.count_profiles(&a, "d", T0 + 10).unwrap(), 10);
    // Keys out of order, an unknown domain, a stale attempt: nothing of
    // the batch is written.
    let unordered = [
        ProfileRow {
            key: "z",
            values: "[\"\"]",
            terms: &[],
        },
        ProfileRow {
            key: "y",
            values: "[\"\"]",
            terms: &[],
        },
    ];
    assert!(matches!(
        s.write_profiles(&batch(at, &unordered, T0 + 20)),
        Err(StoreError::Unordered { .. })
    ));
    let dup = [
        ProfileRow {
            key: "x",
            values: "[\"\"]",
            terms: &[],
        },
        ProfileRow {
            key: "x",
            values: "[\"\"]",
            terms: &[],
        },
    ];
    assert!(matches!(
        s.write_profiles(&batch(at, &dup, T0 + 20)),
        Err(StoreError::Unordered { .. })
    ));
    // Values that are not one JSON string for each target.
    for bad in [
        "[]",
        "[\"a\",\"b\"]",
        "[1]",
        "{\"v\":\"a\"}",
        "[\"a]",
        "[\"\\q\"]",
        "[\"a\"] ",
    ] {
        let row = [ProfileRow {
            key: "w",
            values: bad,
            terms: &[],
        }];
        assert!(
            matches!(
                s.write_profiles(&batch(at, &row, T0 + 20)),
                Err(StoreError::BadValues { .. })
            ),
            "{bad}"
        );
    }
    // Dotted targets make objects, in the targets' order, and values keep
    // their escapes.
    let nested = [ProfileRow {
        key: "n",
        values: r#"["C1","Köln","tab\there","\"q\""]"#,
        terms: &[],
    }];
    s.write_profiles(&ProfileBatch {
        targets: &[
            "AccountNumber",
            "Address.City",
            "Attributes.Notes",
            "Address.PostalCode",
        ],
        ..batch(at, &nested, T0 + 20)
    })
    .unwrap();
    assert_eq!(
        s.profile(&a, "d", "n", T0 + 20).unwrap().unwrap().fields,
        r#"{"AccountNumber":"C1","Address":{"City":"Köln","PostalCode":"\"q\""},"Attributes":{"Notes":"tab\there"}}"#
    );
    let other = ProfileBatch {
        domain: "nope",
        ..batch(at, &first, T0)
    };
    assert!(matches!(
        s.write_profiles(&other),
        Err(StoreError::NoDomain(_))
    ));
    let stale = ProfileBatch {
        attempt: Attempt {
            attempt: attempt + 1,
            ..at
        },
        ..batch(at, &unordered[..1], T0)
    };
    assert!(matches!(
        s.write_profiles(&stale),
        Err(StoreError::Fenced { .. })
    ));
    assert!(s.profile(&a, "d", "z", T0).unwrap().is_none());
    assert_eq!(s.count_profiles(&a, "d", T0 + 20).unwrap(), 11);
    assert!(matches!(
        s.count_profiles(&a, "nope", T0),
        Err(StoreError::NoDomain(_))
    ));
}

fn expiry_the_longest_wins_and_purges(s: &dyn Store) {
    let a = acct();
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    let attempt = running(s, &a, "e", Some("d"));
    let at = Attempt {
        job: job_ref(&a, "e"),
        attempt,
    };
    let keys: Vec<String> = vec!["a".into(), "b".into()];
    let write = |keys: &[String], now_ms, expires_ms| {
        s.write_profiles(&ProfileBatch {
            attempt: at,
            domain: "d",
            now_ms,
            expires_ms,
            targets: &[],
            rows: &rows(keys, "[]"),
        })
        .unwrap()
    };
    write(&keys, T0, T0 + 10 * DAY);
    // A shorter expiry does not shorten a longer one.
    write(&keys[..1], T0 + 1, T0 + 2 * DAY);
    assert_eq!(
        s.profile(&a, "d", "a", T0).unwrap().unwrap().expires_ms,
        T0 + 10 * DAY
    );
    write(&keys[..1], T0 + 2, T0 + 20 * DAY);
    assert_eq!(
        s.profile(&a, "d", "a", T0).unwrap().unwrap().expires_ms,
        T0 + 20 * DAY
    );
    // Past its expiry a profile is gone, and a write counts it created.
    let later = T0 + 11 * DAY;
    assert!(s.profile(&a, "d", "b", later).unwrap().is_none());
    assert_eq!(s.count_profiles(&a, "d", later).unwrap(), 1);
    let c = write(&keys[1..], later, later + DAY);
    assert_eq!((c.created, c.updated), (1, 0));
    // Purging removes what expired, everywhere.
    assert_eq!(s.purge_expired(T0 + 30 * DAY).unwrap(), 2);
    assert_eq!(s.count_profiles(&a, "d", T0).unwrap(), 0);
    assert_eq!(s.purge_expired(T0 + 30 * DAY).unwrap(), 0);
}

fn app(id: &str, created_ms: i64) -> App {
    App {
        id: id.to_owned(),
        name: format!("app {id}"),
        tags: "{}".into(),
        created_ms,
    }
}

fn endpoint(id: &str, channel: &str, address: &str, user: &str) -> StoredEndpoint {
    StoredEndpoint {
        id: id.to_owned(),
        channel_type: Some(channel.to_owned()),
        address: Some(address.to_owned()),
        user_id: Some(user.to_owned()),
        fields: format!("{{\"Address\":\"{address}\"}}"),
        created_ms: 0,
        updated_ms: 0,
        created_by: None,
    }
}

fn endpoints_written_by_requests_deleted_by_id_and_user(s: &dyn Store) {
    let (a, b) = (acct(), AccountId::new("222222222222"));
    s.create_app(&a, &app("app1", T0)).unwrap();
    s.create_segment(
        &a,
        &Segment {
            app: "app1".into(),
            id: "seg".into(),
            name: None,
            definition: "{}".into(),
            created_ms: T0,
            updated_ms: T0,
            version: 1,
        },
    )
    .unwrap();
    let keys = [
        EndpointKey::Id("e1"),
        EndpointKey::Id("e2"),
        EndpointKey::Id("e3"),
    ];
    let made = [
        endpoint("e1", "EMAIL", "a@x.co", "u1"),
        endpoint("e2", "SMS", "+14155550100", "u1"),
        endpoint("e3", "EMAIL", "c@x.co", "u3"),
    ];
    let batch = EndpointBatch {
        by: EndpointWriter::Request(&a),
        app: "app1",
        now_ms: T0 + 1,
        keys: &keys,
        segment: Some("seg"),
    };
    let w = s
        .write_endpoints(&batch, &mut |n, old| {
            assert!(old.is_none());
            Ok(made[n].clone())
        })
        .unwrap();
    assert_eq!(w[0], EndpointWrite::Created("e1".into()));
    // A request's write of an endpoint that is there is an update, and no
    // job is needed for either.
    let again = EndpointBatch {
        keys: &keys[..1],
        now_ms: T0 + 2,
        ..batch
    };
    let w = s
        .write_endpoints(&again, &mut |_, old| Ok(old.expect("e1 is there")))
        .unwrap();
    assert_eq!(w, [EndpointWrite::Updated("e1".into())]);
    let e1 = s.endpoint(&a, "app1", "e1").unwrap().unwrap();
    assert_eq!(
        (e1.created_ms, e1.updated_ms, e1.created_by),
        (T0 + 1, T0 + 2, None)
    );
    // Pages in id order, of the app or of a segment.
    let ids = |v: Vec<StoredEndpoint>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let page = |seg: Option<&str>, after, limit| {
        let f = seg.map(|s| EndpointFilter::MemberOf(s.into()));
        ids(s
            .endpoints_after(&a, "app1", f.as_ref(), after, limit)
            .unwrap())
    };
    assert_eq!(page(None, None, 2), ["e1", "e2"]);
    assert_eq!(page(None, Some("e2"), 2), ["e3"]);
    assert!(page(None, Some("e3"), 2).is_empty());
    assert_eq!(page(Some("seg"), Some("e1"), 1), ["e2"]);
    assert!(page(Some("nope"), None, 5).is_empty());
    assert!(matches!(
        s.endpoints_after(&b, "app1", None, None, 5),
        Err(StoreError::NoApp(_))
    ));
    // Another account deletes nothing of this one's.
    assert!(matches!(
        s.delete_endpoints(&b, "app1", EndpointsOf::Id("e1")),
        Err(StoreError::NoApp(_))
    ));
    let gone = s
        .delete_endpoints(&a, "app1", EndpointsOf::Id("e3"))
        .unwrap();
    assert_eq!(
        gone.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e3"]
    );
    assert!(s.endpoint(&a, "app1", "e3").unwrap().is_none());
    assert!(
        s.delete_endpoints(&a, "app1", EndpointsOf::Id("e3"))
            .unwrap()
            .is_empty()
    );
    let gone = s
        .delete_endpoints(&a, "app1", EndpointsOf::User("u1"))
        .unwrap();
    assert_eq!(
        gone.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["e1", "e2"]
    );
    assert_eq!(gone[0].fields, made[0].fields);
    assert!(s.user_endpoints(&a, "app1", "u1").unwrap().is_empty());
    // Their segment memberships went with them.
    assert!(page(Some("seg"), None, 5).is_empty());
    assert!(
        s.segment_channel_counts(&a, "app1", "seg")
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.delete_endpoints(&a, "nope", EndpointsOf::User("u1")),
        Err(StoreError::NoApp(_))
    ));
}

/// Filters pass the same endpoints on every backend, a page at a time
/// (pages read on past endpoints that fail), from a segment's members
/// when one drives; a deleted segment takes its members with it.
fn segments_filtered_by_the_store_deleted(s: &dyn Store) {
    let a = acct();
    s.create_app(&a, &app("app1", T0)).unwrap();
    let seg = |id: &str| Segment {
        app: "app1".into(),
        id: id.into(),
        name: None,
        definition: "{}".into(),
        created_ms: T0,
        updated_ms: T0,
        version: 1,
    };
    s.create_segment(&a, &seg("imp")).unwrap();
    // 30 endpoints: e00..e29, team Red for even, Blue for odd; spend i;
    // e00..e09 in segment imp.
    let ids: Vec<String> = (0..30).map(|i| format!("e{i:02}")).collect();
    let keys: Vec<EndpointKey<'_>> = ids.iter().map(|id| EndpointKey::Id(id)).collect();
    let write = |range: std::ops::Range<usize>, segment| {
        let batch = EndpointBatch {
            by: EndpointWriter::Request(&a),
            app: "app1",
            now_ms: T0 + range.start as i64,
            keys: &keys[range.clone()],
            segment,
        };
        s.write_endpoints(&batch, &mut |n, _| {
            let i = range.start + n;
            let team = if i.is_multiple_of(2) { "Red" } else { "Blue" };
            Ok(StoredEndpoint {
                fields: format!(
                    "{{\"Attributes\":{{\"Team\":[\"{team}\"]}},\"Metrics\":{{\"spend\":{i}}}}}"
                ),
                ..endpoint(&ids[i], "EMAIL", &format!("{i}@x.co"), "u")
            })
        })
        .unwrap();
    };
    write(0..10, Some("imp"));
    write(10..30, None);
    let team = |t: &str| EndpointFilter::Values {
        path: vec!["Attributes".into(), "Team".into()],
        test: ValueTest::Equals {
            values: vec![t.into()],
            fold_case: false,
        },
    };
    let spend = |op, x| EndpointFilter::Values {
        path: vec!["Metrics".into(), "spend".into()],
        test: ValueTest::Compare(op, x),
    };
    let page = |f: &EndpointFilter, after: Option<&str>, limit| {
        s.endpoints_after(&a, "app1", Some(f), after, limit)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let blue_big = EndpointFilter::All(vec![team("Blue"), spend(Comparison::Greater, 20.0)]);
    assert_eq!(page(&blue_big, None, 2), ["e21", "e23"]);
    assert_eq!(page(&blue_big, Some("e23"), 10), ["e25", "e27", "e29"]);
    let red_members =
        EndpointFilter::All(vec![EndpointFilter::MemberOf("imp".into()), team("Red")]);
    assert_eq!(page(&red_members, Some("e02"), 10), ["e04", "e06", "e08"]);
    let outside = EndpointFilter::All(vec![
        EndpointFilter::Not(Box::new(EndpointFilter::MemberOf("imp".into()))),
        spend(Comparison::LessOrEqual, 11.0),
    ]);
    assert_eq!(page(&outside, None, 10), ["e10", "e11"]);
    let either = EndpointFilter::Any(vec![
        EndpointFilter::MemberOf("imp".into()),
        EndpointFilter::WrittenSince(T0 + 10),
    ]);
    assert_eq!(page(&either, Some("e08"), 3), ["e09", "e10", "e11"]);
    assert!(page(&EndpointFilter::Any(vec![]), None, 10).is_empty());
    assert_eq!(
        page(&EndpointFilter::Every, Some("e27"), 10),
        ["e28", "e29"]
    );
    // Deleted, with its members: the endpoints stay.
    s.create_segment(&a, &seg("other")).unwrap();
    let gone = s.delete_segment(&a, "app1", "imp").unwrap();
    assert_eq!(gone.id, "imp");
    assert!(s.segment(&a, "app1", "imp").unwrap().is_none());
    assert!(page(&EndpointFilter::MemberOf("imp".into()), None, 10).is_empty());
    assert!(
        s.segment_channel_counts(&a, "app1", "imp")
            .unwrap()
            .is_empty()
    );
    assert_eq!(page(&EndpointFilter::Every, None, 100).len(), 30);
    assert!(s.segment(&a, "app1", "other").unwrap().is_some());
    assert!(matches!(
        s.delete_segment(&a, "app1", "imp"),
        Err(StoreError::NoSegment { .. })
    ));
    assert!(matches!(
        s.delete_segment(&AccountId::new("222222222222"), "app1", "other"),
        Err(StoreError::NoSegment { .. })
    ));
}

fn endpoints_segments_and_apps(s: &dyn Store) {
    let a = acct();
    s.create_app(&a, &app("app1", T0)).unwrap();
    s.create_segment(
        &a,
        &Segment {
            app: "app1".into(),
            id: "seg".into(),
            name: Some("S".into()),
            definition: "{}".into(),
            created_ms: T0,
            updated_ms: T0,
            version: 1,
        },
    )
    .unwrap();
    let mut job = new_job(&a, "imp", None, T0);
    job.kind = JobKind::Import;
    job.app = Some("app1".into());
    s.insert_job(&job).unwrap();
    go(s, &a, "imp", JobStatus::Created, JobStatus::Queued);
    let attempt = go(s, &a, "imp", JobStatus::Queued, JobStatus::Running);
    let at = Attempt {
        job: job_ref(&a, "imp"),
        attempt,
    };
    let keys = [
        EndpointKey::Id("e1"),
        EndpointKey::Address("EMAIL", "b@x.co"),
        EndpointKey::Id("e3"),
    ];
    let mut merge = |n: usize, old: Option<StoredEndpoint>| match n {
        0 => Ok(endpoint("e1", "SMS", "+14155550100", "u1")),
        1 => Ok(old.unwrap_or_else(|| endpoint("e2", "EMAIL", "b@x.co", "u1"))),
        _ => Err("a new endpoint needs a ChannelType and an Address".to_owned()),
    };
    let batch = EndpointBatch {
        by: EndpointWriter::Job(at),
        app: "app1",
        now_ms: T0 + 1,
        keys: &keys,
        segment: Some("seg"),
    };
    let w = s.write_endpoints(&batch, &mut merge).unwrap();
    assert_eq!(
        w,
        [
            EndpointWrite::Created("e1".into()),
            EndpointWrite::Created("e2".into()),
            EndpointWrite::Refused("a new endpoint needs a ChannelType and an Address".into()),
        ]
    );
    // Written again by the same job (a resumed run writes everything
    // again): what it created still counts as created.
    s.clear_written(at).unwrap();
    let mut again = |n: usize, old: Option<StoredEndpoint>| match n {
        2 => Err("refused".to_owned()),
        _ => old.ok_or_else(|| "gone".to_owned()),
    };
    let w = s.write_endpoints(&batch, &mut again).unwrap();
    assert_eq!(w[0], EndpointWrite::Created("e1".into()));
    let j = s.job(job_ref(&a, "imp")).unwrap().unwrap();
    assert_eq!((j.counters.created, j.counters.updated), (2, 0));
    assert_eq!(
        s.endpoint(&a, "app1", "e1")
            .unwrap()
            .unwrap()
            .created_by
            .as_deref(),
        Some("imp")
    );
    // Another job's write of them is an update.
    let mut other = new_job(&a, "imp2", None, T0);
    other.kind = JobKind::Import;
    other.app = Some("app1".into());
    s.insert_job(&other).unwrap();
    go(s, &a, "imp2", JobStatus::Created, JobStatus::Queued);
    let a2 = go(s, &a, "imp2", JobStatus::Queued, JobStatus::Running);
    // The address finds e2, the id finds e1.
    let later = EndpointBatch {
        by: EndpointWriter::Job(Attempt {
            job: job_ref(&a, "imp2"),
            attempt: a2,
        }),
        now_ms: T0 + 2,
        ..batch
    };
    let mut seen = Vec::new();
    let mut merge = |_: usize, old: Option<StoredEndpoint>| {
        seen.push(old.as_ref().map(|e| e.id.clone()));
        old.ok_or_else(|| "gone".to_owned())
    };
    let w = s.write_endpoints(&later, &mut merge).unwrap();
    assert_eq!(seen, [Some("e1".into()), Some("e2".into()), None]);
    assert_eq!(w[0], EndpointWrite::Updated("e1".into()));
    let j = s.job(job_ref(&a, "imp2")).unwrap().unwrap();
    assert_eq!((j.counters.created, j.counters.updated), (0, 2));
    let e1 = s.endpoint(&a, "app1", "e1").unwrap().unwrap();
    assert_eq!((e1.created_ms, e1.updated_ms), (T0 + 1, T0 + 2));
    let users: Vec<String> = s
        .user_endpoints(&a, "app1", "u1")
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(users, ["e1", "e2"]);
    assert_eq!(
        s.segment_channel_counts(&a, "app1", "seg").unwrap(),
        [("EMAIL".to_owned(), 1), ("SMS".to_owned(), 1)]
    );
    // An address finds the oldest endpoint at it, and follows an
    // endpoint whose address changes.
    let find = |keys: &[EndpointKey<'_>], now_ms: i64, f: &mut EndpointMerge<'_>| {
        let b = EndpointBatch {
            keys,
            now_ms,
            ..later
        };
        s.write_endpoints(&b, f).unwrap()
    };
    find(&[EndpointKey::Id("e4")], T0 + 3, &mut |_, old| {
        assert!(old.is_none());
        Ok(endpoint("e4", "EMAIL", "b@x.co", "u4"))
    });
    let at_b = |now_ms| {
        let mut found = None;
        find(
            &[EndpointKey::Address("EMAIL", "b@x.co")],
            now_ms,
            &mut |_, old| {
                found = old.as_ref().map(|e| e.id.clone());
                old.ok_or_else(|| "gone".to_owned())
            },
        );
        found
    };
    assert_eq!(at_b(T0 + 4).as_deref(), Some("e2"));
    find(&[EndpointKey::Id("e2")], T0 + 5, &mut |_, old| {
        Ok(StoredEndpoint {
            address: Some("c@x.co".into()),
            ..old.expect("e2")
        })
    });
    assert_eq!(at_b(T0 + 6).as_deref(), Some("e4"));
    let mut found = None;
    find(
        &[EndpointKey::Address("EMAIL", "c@x.co")],
        T0 + 7,
        &mut |_, old| {
            found = old.as_ref().map(|e| (e.id.clone(), e.created_ms));
            old.ok_or_else(|| "gone".to_owned())
        },
    );
    assert_eq!(found, Some(("e2".to_owned(), T0 + 1)));
    // Within one batch a key finds what the rows before it wrote: an
    // endpoint put at an address, and not one moved away from it.
    let mut seen = Vec::new();
    find(
        &[
            EndpointKey::Id("e5"),
            EndpointKey::Address("EMAIL", "z@x.co"),
            EndpointKey::Id("e2"),
            EndpointKey::Address("EMAIL", "c@x.co"),
        ],
        T0 + 8,
        &mut |n, old| {
            seen.push(old.as_ref().map(|e| e.id.clone()));
            match n {
                0 => Ok(endpoint("e5", "EMAIL", "z@x.co", "u5")),
                2 => Ok(StoredEndpoint {
                    address: Some("y@x.co".into()),
                    ..old.expect("e2")
                }),
                _ => old.ok_or_else(|| "gone".to_owned()),
            }
        },
    );
    let seen: Vec<Option<&str>> = seen.iter().map(Option::as_deref).collect();
    assert_eq!(seen, [None, Some("e5"), Some("e2"), None]);
    // Segments: made once, versions move with updates.
    s.create_segment(
        &a,
        &Segment {
            app: "app1".into(),
            id: "seg".into(),
            name: Some("other".into()),
            definition: "{\"x\":1}".into(),
            created_ms: T0 + 5,
            updated_ms: T0 + 5,
            version: 1,
        },
    )
    .unwrap();
    assert_eq!(
        s.segment(&a, "app1", "seg")
            .unwrap()
            .unwrap()
            .name
            .as_deref(),
        Some("S")
    );
    let seg = s
        .update_segment(&a, "app1", "seg", None, "{\"y\":2}", T0 + 9)
        .unwrap();
    assert_eq!(
        (seg.version, seg.updated_ms, seg.definition.as_str()),
        (2, T0 + 9, "{\"y\":2}")
    );
    let seg = s
        .update_segment(&a, "app1", "seg", Some("renamed"), "{\"y\":3}", T0 + 10)
        .unwrap();
    assert_eq!((seg.version, seg.name.as_deref()), (3, Some("renamed")));
    assert!(matches!(
        s.update_segment(&a, "app1", "nope", None, "{}", T0),
        Err(StoreError::NoSegment { .. })
    ));
    let no_seg = EndpointBatch {
        segment: Some("nope"),
        ..batch
    };
    assert!(matches!(
        s.write_endpoints(&no_seg, &mut |_, _| Err(String::new())),
        Err(StoreError::NoSegment { .. })
    ));
    // An app is not deleted while its job runs; then it goes whole.
    assert!(matches!(
        s.delete_app(&a, "app1"),
        Err(StoreError::AppBusy { .. })
    ));
    go(s, &a, "imp", JobStatus::Running, JobStatus::Succeeded);
    assert!(matches!(
        s.write_endpoints(&batch, &mut |_, old| old.ok_or_else(String::new)),
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        s.clear_written(at),
        Err(StoreError::Fenced { .. })
    ));
    go(s, &a, "imp2", JobStatus::Running, JobStatus::Succeeded);
    assert_eq!(s.delete_app(&a, "app1").unwrap().id, "app1");
    assert!(s.app(&a, "app1").unwrap().is_none());
    assert!(s.endpoint(&a, "app1", "e1").unwrap().is_none());
    assert!(s.segments(&a, "app1").unwrap().is_empty());
    assert!(s.job(job_ref(&a, "imp")).unwrap().is_none());
    assert!(matches!(
        s.create_segment(
            &a,
            &Segment {
                app: "app1".into(),
                id: "x".into(),
                name: None,
                definition: "{}".into(),
                created_ms: T0,
                updated_ms: T0,
                version: 1
            }
        ),
        Err(StoreError::NoApp(_))
    ));
}

fn domains_change_in_place_by_account(s: &dyn Store) {
    let (a, b) = (acct(), AccountId::new("222222222222"));
    let mut d = Domain::new("d", 14, T0);
    d.settings = r#"{"Tags":{"k":"v"}}"#.into();
    s.create_domain(&a, &d).unwrap();
    s.create_domain(&b, &Domain::new("d", 5, T0)).unwrap();
    let changed = s
        .update_domain(&a, "d", &|d| {
            d.default_expiration_days = 30;
            d.updated_ms = T0 + 7;
            // What a store keeps of itself is not the caller's to change.
            d.name = "renamed".into();
            d.created_ms = 1;
            Ok(())
        })
        .unwrap();
    let want = Domain {
        default_expiration_days: 30,
        updated_ms: T0 + 7,
        ..d.clone()
    };
    assert_eq!(changed, want);
    assert_eq!(s.domain(&a, "d").unwrap(), Some(want.clone()));
    assert!(s.domain(&a, "renamed").unwrap().is_none());
    // Each change starts from what the one before wrote.
    let again = s
        .update_domain(&a, "d", &|d| {
            d.settings = "{}".into();
            Ok(())
        })
        .unwrap();
    assert_eq!(
        (again.default_expiration_days, again.settings.as_str()),
        (30, "{}")
    );
    // The other account's domain of that name is untouched.
    assert_eq!(
        s.domain(&b, "d").unwrap().unwrap().default_expiration_days,
        5
    );
    // A change that fails writes nothing.
    let refused = s.update_domain(&a, "d", &|d| {
        d.default_expiration_days = 99;
        Err(StoreError::NoDomain("refused".into()))
    });
    assert!(matches!(refused, Err(StoreError::NoDomain(n)) if n == "refused"));
    assert_eq!(s.domain(&a, "d").unwrap(), Some(again));
    assert!(matches!(
        s.update_domain(&a, "nope", &|_| Ok(())),
        Err(StoreError::NoDomain(_))
    ));
}

fn domains_busy_then_deleted(s: &dyn Store) {
    let a = acct();
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    assert!(matches!(
        s.create_domain(&a, &Domain::new("d", 3, T0)),
        Err(StoreError::DomainExists(_))
    ));
    let attempt = running(s, &a, "w", Some("d"));
    let keys: Vec<String> = (0..3).map(|i| format!("k{i}")).collect();
    s.write_profiles(&ProfileBatch {
        attempt: Attempt {
            job: job_ref(&a, "w"),
            attempt,
        },
        domain: "d",
        now_ms: T0,
        expires_ms: T0 + DAY,
        targets: &[],
        rows: &rows(&keys, "[]"),
    })
    .unwrap();
    assert!(matches!(
        s.delete_domain(&a, "d"),
        Err(StoreError::DomainBusy { .. })
    ));
    go(s, &a, "w", JobStatus::Running, JobStatus::Succeeded);
    assert_eq!(s.delete_domain(&a, "d").unwrap(), 3);
    assert!(s.domain(&a, "d").unwrap().is_none());
    assert!(s.job(job_ref(&a, "w")).unwrap().is_none());
    assert!(matches!(
        s.delete_domain(&a, "d"),
        Err(StoreError::NoDomain(_))
    ));
    // A new domain of the same name starts empty.
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    assert_eq!(s.count_profiles(&a, "d", T0).unwrap(), 0);
}

fn concurrent_writers(s: &dyn Store) {
    let a = acct();
    let writers = 4;
    let batches = 20;
    let per_batch = 50;
    for w in 0..writers {
        s.create_domain(&a, &Domain::new(&format!("d{w}"), 14, T0))
            .unwrap();
    }
    let attempts: Vec<u32> = (0..writers)
        .map(|w| running(s, &a, &format!("w{w}"), Some(&format!("d{w}"))))
        .collect();
    let barrier = Arc::new(Barrier::new(writers + 1));
    std::thread::scope(|sc| {
        for (w, &attempt) in attempts.iter().enumerate() {
            let (a, barrier) = (&a, Arc::clone(&barrier));
            sc.spawn(move || {
                barrier.wait();
                let (job, domain) = (format!("w{w}"), format!("d{w}"));
                for b in 0..batches {
                    // Every other batch repeats the one before: updates.
                    let base = (b / 2) * per_batch;
                    let keys: Vec<String> = (base..base + per_batch)
                        .map(|i| format!("key{i:06}"))
                        .collect();
                    s.write_profiles(&ProfileBatch {
                        attempt: Attempt {
                            job: job_ref(a, &job),
                            attempt,
                        },
                        domain: &domain,
                        now_ms: T0,
                        expires_ms: T0 + DAY,
                        targets: &[],
                        rows: &rows(&keys, "[]"),
                    })
                    .unwrap();
                }
            });
        }
        // A reader meanwhile.
        let (a, barrier) = (&a, Arc::clone(&barrier));
        sc.spawn(move || {
            barrier.wait();
            for _ in 0..50 {
                let j = s.job(job_ref(a, "w0")).unwrap().unwrap();
                assert!(j.counters.created + j.counters.updated <= (batches * per_batch) as u64);
            }
        });
    });
    for w in 0..writers {
        let j = s.job(job_ref(&a, &format!("w{w}"))).unwrap().unwrap();
        let half = (batches / 2 * per_batch) as u64;
        assert_eq!((j.counters.created, j.counters.updated), (half, half));
        assert_eq!(s.count_profiles(&a, &format!("d{w}"), T0).unwrap(), half);
    }
}

fn lists_come_in_their_order(s: &dyn Store) {
    let a = acct();
    for name in ["b", "c", "a"] {
        s.create_domain(&a, &Domain::new(name, 14, T0)).unwrap();
    }
    let names: Vec<String> = s.domains(&a).unwrap().into_iter().map(|d| d.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
    for (id, at) in [("y", 2), ("x", 2), ("z", 1)] {
        s.create_app(&a, &app(id, T0 + at)).unwrap();
    }
    let ids: Vec<String> = s.apps(&a).unwrap().into_iter().map(|a| a.id).collect();
    assert_eq!(ids, ["z", "x", "y"]);
    for (id, at) in [("s2", 5), ("s1", 5), ("s0", 9)] {
        s.create_segment(
            &a,
            &Segment {
                app: "x".into(),
                id: id.into(),
                name: None,
                definition: "{}".into(),
                created_ms: T0 + at,
                updated_ms: T0 + at,
                version: 1,
            },
        )
        .unwrap();
    }
    let ids: Vec<String> = s
        .segments(&a, "x")
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["s1", "s2", "s0"]);
}

fn bucket_settings_round_trip(s: &dyn Store) {
    let a = acct();
    assert!(s.bucket_settings(&a, "bkt").unwrap().is_none());
    let mut b = BucketSettings {
        bucket: "bkt".into(),
        region: Some("eu-west-1".into()),
        owner: Some("AKID".into()),
    };
    s.set_bucket_settings(&a, &b).unwrap();
    assert_eq!(s.bucket_settings(&a, "bkt").unwrap().as_ref(), Some(&b));
    b.region = None;
    s.set_bucket_settings(&a, &b).unwrap();
    assert_eq!(s.bucket_settings(&a, "bkt").unwrap(), Some(b.clone()));
    // Whose a bucket is: the accounts with a record of it.
    assert_eq!(s.bucket_accounts("bkt").unwrap(), vec![a.clone()]);
    assert!(s.bucket_accounts("other").unwrap().is_empty());
    let z = AccountId::new("999999999999");
    s.set_bucket_settings(&z, &b).unwrap();
    assert_eq!(
        s.bucket_accounts("bkt").unwrap(),
        vec![a.clone(), z.clone()]
    );
    s.forget_bucket(&z, "bkt").unwrap();
    assert_eq!(s.bucket_accounts("bkt").unwrap(), vec![a]);
    assert!(s.bucket_settings(&z, "bkt").unwrap().is_none());
}

/// Split jobs ([`RangeStore`](super::RangeStore)), on stores that have
/// them: planned once, each range leased by one holder at a time, a taken
/// over holder fenced, failures after their attempts, and the merge keeps
/// per key the row of the greatest (piece, ordinal), once per part.
fn ranges_lease_once_fence_and_merge_by_place(s: &dyn Store) {
    use super::{MergePart, PlannedRange, RangeResult, RangeState, StagedRow};
    let r = s.range_store().expect("a store with ranges");
    let a = acct();
    s.create_domain(&a, &Domain::new("d", 14, T0)).unwrap();
    let attempt = running(s, &a, "j", Some("d"));
    let at = Attempt {
        job: job_ref(&a, "j"),
        attempt,
    };
    let plan: Vec<PlannedRange> = (0..3)
        .map(|i| PlannedRange {
            input: 0,
            body_start: 10,
            start: 10 + 100 * i,
            end: 110 + 100 * i,
            newlines_before: 5 * i,
        })
        .collect();
    assert_eq!(r.plan_ranges(at, &plan, 2).unwrap(), 2);
    // A second plan (a resumed attempt's) leaves the first.
    assert_eq!(r.plan_ranges(at, &plan[..1], 5).unwrap(), 2);
    let listed = r.ranges(at.job).unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2].range, plan[2]);
    assert!(listed.iter().all(|x| x.state == RangeState::Open));
    assert_eq!(s.job(at.job).unwrap().unwrap().counters.total_pieces, 3);

    // One holder each; none left for a fourth.
    let one = r
        .lease_range(Some(at.job), "a", T0, 10, 3)
        .unwrap()
        .unwrap();
    let two = r.lease_range(None, "b", T0, 1000, 3).unwrap().unwrap();
    let three = r.lease_range(None, "c", T0, 1000, 3).unwrap().unwrap();
    let mut pieces = vec![one.piece, two.piece, three.piece];
    pieces.sort_unstable();
    assert_eq!(pieces, [0, 1, 2]);
    assert_eq!((one.piece, one.attempt, one.parts), (0, 1, 2));
    assert!(r.lease_range(None, "d", T0 + 5, 1000, 3).unwrap().is_none());
    assert!(r.renew_range(&one, T0 + 20).unwrap());

    // Taken over after its deadline: the first holder writes nothing more.
    let again = r.lease_range(None, "e", T0 + 21, 1000, 3).unwrap().unwrap();
    assert_eq!((again.piece, again.attempt), (0, 2));
    let result = |processed| RangeResult {
        processed,
        failed: 1,
        warnings: vec![2, 0],
        failures: "[[7,1,\"bad\"]]".into(),
        ..RangeResult::default()
    };
    let row = |part, ordinal, key, values| StagedRow {
        part,
        ordinal,
        key,
        values,
        terms: &[],
    };
    let stale = [row(0, 9, "k1", "[\"stale\"]")];
    assert!(!r.complete_range(&one, &result(4), &stale).unwrap());
    assert!(!r.renew_range(&one, T0 + 2000).unwrap());
    let piece = |n| {
        [&again, &two, &three][[again.piece, two.piece, three.piece]
            .iter()
            .position(|&p| p == n)
            .unwrap()]
    };
    let first = [row(0, 5, "k1", "[\"early\"]"), row(1, 6, "k2", "[\"two\"]")];
    assert!(r.complete_range(piece(0), &result(4), &first).unwrap());
    // Piece 1 comes after piece 0 whatever the ordinals: its k1 wins.
    let later = [
        row(0, 0, "k1", "[\"late\"]"),
        row(0, 1, "k3", "[\"three\"]"),
    ];
    assert!(r.complete_range(piece(1), &result(3), &later).unwrap());
    // Done once.
    assert!(!r.complete_range(piece(1), &result(3), &later).unwrap());
    // Given back on its last attempt: it fails with the reason.
    assert!(
        r.give_back_range(piece(2), "cannot read it", T0, 1)
            .unwrap()
    );
    let listed = r.ranges(at.job).unwrap();
    let states: Vec<RangeState> = listed.iter().map(|x| x.state).collect();
    assert_eq!(
        states,
        [RangeState::Done, RangeState::Done, RangeState::Failed]
    );
    assert_eq!(listed[0].result, result(4));
    assert!(listed[2].result.failed_piece);
    assert!(
        listed[2]
            .result
            .reason
            .as_deref()
            .is_some_and(|why| why.contains("cannot read it")),
        "{:?}",
        listed[2].result.reason
    );
    let c = s.job(at.job).unwrap().unwrap().counters;
    assert_eq!(
        (
            c.completed_pieces,
            c.failed_pieces,
            c.processed,
            c.failed,
            c.field_warnings
        ),
        (3, 1, 7, 2, 4)
    );

    // The merge: once per part, fenced by the job's attempt.
    let targets = ["FirstName"];
    r.prepare_merge(at, "d", T0, T0 + 1000, &targets).unwrap();
    let merge = |attempt, part| MergePart {
        attempt,
        domain: "d",
        part,
        now_ms: T0,
        expires_ms: T0 + 1000,
        targets: &targets,
    };
    let stale_attempt = Attempt {
        attempt: attempt + 1,
        ..at
    };
    assert!(matches!(
        r.merge_part(&merge(stale_attempt, 0)),
        Err(StoreError::Fenced { .. })
    ));
    let p0 = r.merge_part(&merge(at, 0)).unwrap().unwrap();
    let p1 = r.merge_part(&merge(at, 1)).unwrap().unwrap();
    assert_eq!((p0.created, p0.updated, p1.created), (2, 0, 1));
    assert_eq!(r.merge_part(&merge(at, 0)).unwrap(), None);
    let c = s.job(at.job).unwrap().unwrap().counters;
    assert_eq!((c.created, c.updated), (3, 0));
    let fields = |key| s.profile(&a, "d", key, T0).unwrap().unwrap().fields;
    assert_eq!(fields("k1"), r#"{"FirstName":"late"}"#);
    assert_eq!(fields("k2"), r#"{"FirstName":"two"}"#);

    // A range of a job that is not running is not leased; a lapsed range
    // leased as often as allowed fails instead.
    let other = running(s, &a, "k", Some("d"));
    let kat = Attempt {
        job: job_ref(&a, "k"),
        attempt: other,
    };
    r.plan_ranges(kat, &plan[..1], 1).unwrap();
    let l = r
        .lease_range(Some(kat.job), "x", T0, 10, 1)
        .unwrap()
        .unwrap();
    assert!(
        r.lease_range(Some(kat.job), "y", T0 + 100, 10, 1)
            .unwrap()
            .is_none()
    );
    assert!(!r.renew_range(&l, T0 + 200).unwrap());
    assert_eq!(r.ranges(kat.job).unwrap()[0].state, RangeState::Failed);

    r.drop_ranges(at.job).unwrap();
    assert!(r.ranges(at.job).unwrap().is_empty());
    go(s, &a, "k", JobStatus::Running, JobStatus::Stopped);
    r.plan_ranges(kat, &plan, 1).unwrap_err();
}

/// A merge counts a key as created or updated by what the domain holds
/// when it writes, whatever it saw when the job started: two jobs into an
/// empty domain, the second finding a key the first merged meanwhile; then
/// jobs into the domain as it is.
fn merges_tell_new_keys_from_keys_there_or_written_meanwhile(s: &dyn Store) {
    use super::{MergePart, PlannedRange, RangeResult, StagedRow};
    let r = s.range_store().expect("a store with ranges");
    let a = acct();
    s.create_domain(&a, &Domain::new("e", 14, T0)).unwrap();
    let targets = ["FirstName"];
    let plan = [PlannedRange {
        input: 0,
        body_start: 0,
        start: 0,
        end: 100,
        newlines_before: 0,
    }];
    // A running job `id` with `rows` staged in its one range, its merge
    // prepared.
    let staged = |id: &'static str, rows: &[(&str, &str)]| {
        let attempt = running(s, &a, id, Some("e"));
        let at = Attempt {
            job: job_ref(&a, id),
            attempt,
        };
        r.plan_ranges(at, &plan, 1).unwrap();
        let l = r
            .lease_range(Some(at.job), "w", T0, 1000, 3)
            .unwrap()
            .unwrap();
        let rows: Vec<StagedRow> = rows
            .iter()
            .enumerate()
            .map(|(i, (key, values))| StagedRow {
                part: 0,
                ordinal: i as u64,
                key,
                values,
                terms: &[],
            })
            .collect();
        let result = RangeResult {
            processed: rows.len() as u64,
            ..RangeResult::default()
        };
        assert!(r.complete_range(&l, &result, &rows).unwrap());
        r.prepare_merge(at, "e", T0, T0 + 1000, &targets).unwrap();
        at
    };
    let merged = |at| {
        let c = r
            .merge_part(&MergePart {
                attempt: at,
                domain: "e",
                part: 0,
                now_ms: T0,
                expires_ms: T0 + 1000,
                targets: &targets,
            })
            .unwrap()
            .unwrap();
        (c.created, c.updated)
    };
    let fields = |key| s.profile(&a, "e", key, T0).unwrap().unwrap().fields;
    // Both prepared while the domain was empty.
    let x = staged("x", &[("k1", "[\"x1\"]"), ("k2", "[\"x2\"]")]);
    let y = staged("y", &[("k2", "[\"y2\"]"), ("k3", "[\"y3\"]")]);
    assert_eq!(merged(x), (2, 0));
    assert_eq!(merged(y), (1, 1));
    assert_eq!(fields("k2"), r#"{"FirstName":"y2"}"#);
    // Into the domain as it is: some keys there, then all.
    let z = staged("z", &[("k1", "[\"z1\"]"), ("k4", "[\"z4\"]")]);
    assert_eq!(merged(z), (1, 1));
    let w = staged("w", &[("k3", "[\"w3\"]"), ("k4", "[\"w4\"]")]);
    assert_eq!(merged(w), (0, 2));
    assert_eq!(fields("k1"), r#"{"FirstName":"z1"}"#);
    assert_eq!(fields("k4"), r#"{"FirstName":"w4"}"#);
    assert_eq!(s.count_profiles(&a, "e", T0).unwrap(), 4);
}
