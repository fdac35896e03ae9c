//! Claims on jobs as leases in the store: who holds one ([`Holder`]), and a
//! guard that keeps it alive with heartbeats while work goes on.
//!
//! A lease lapses at its deadline unless renewed; then anyone may take it.
//! A holder on this machine that is gone (its process ended, as after a
//! kill -9) need not be waited for: its name says which process it was, and
//! a process that no longer exists holds nothing. A process that exists
//! may be another one that reused the id, so it is waited for: the check
//! only ever shortens the wait for the dead, never for the living.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use super::Clock;
use crate::store::{AccountId, Lease, Store, StoreError};

/// How long a lease lasts without a heartbeat, unless configured.
pub const LEASE_TTL: Duration = Duration::from_secs(30);

/// Who holds leases: this process, as `host/pid-namespace/pid/nonce`, so
/// that a runner on this machine can tell that a holder's process is gone.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Holder(String);

impl Holder {
    /// A holder for this process (each call a new one: two runners of one
    /// process are two holders).
    pub fn this_process() -> Holder {
        let nonce = crate::crypto::to_hex(&crate::crypto::random::<6>());
        Holder(format!(
            "{}/{}/{}/{nonce}",
            host(),
            pid_namespace(),
            std::process::id()
        ))
    }

    /// The holder's name, as leases record it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the process that held leases under `name` is known to be
    /// gone: it ran on this machine, in this process namespace, and no
    /// process of its id exists.
    pub fn is_gone(name: &str) -> bool {
        let mut parts = name.splitn(4, '/');
        let (Some(h), Some(ns), Some(pid), Some(_)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        h == host()
            && ns == pid_namespace()
            && ns != "unknown"
            && pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace('/', "_"))
        .unwrap_or_else(|_| "unknown".into())
}

fn pid_namespace() -> String {
    std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string().replace('/', "_"))
        .unwrap_or_else(|_| "unknown".into())
}

/// The name of the lease a runner holds while it runs job `id`.
pub fn job_lease(id: &str) -> String {
    format!("job/{id}")
}

struct Beat {
    done: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
    lease: Mutex<Lease>,
}

/// A held lease, renewed by a heartbeat thread until dropped (which
/// releases it).
pub(super) struct LeaseGuard {
    store: Arc<dyn Store>,
    beat: Arc<Beat>,
    heart: Option<thread::JoinHandle<()>>,
}

impl LeaseGuard {
    /// Takes the lease `name` for `holder`: a free or lapsed one, or one
    /// whose holder is gone. `None` when another holder has it.
    ///
    /// # Errors
    ///
    /// A store error.
    pub(super) fn acquire(
        store: &Arc<dyn Store>,
        account: &AccountId,
        name: &str,
        holder: &Holder,
        clock: &Clock,
        ttl: Duration,
    ) -> Result<Option<LeaseGuard>, StoreError> {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let now = clock();
        let lease = match store.acquire_lease(account, name, holder.as_str(), now, ttl_ms)? {
            Some(l) => l,
            None => match store.lease(account, name)? {
                Some(seen) if Holder::is_gone(&seen.holder) => {
                    match store.take_over_lease(&seen, holder.as_str(), now, ttl_ms)? {
                        Some(l) => l,
                        None => return Ok(None),
                    }
                }
                _ => return Ok(None),
            },
        };
        let beat = Arc::new(Beat {
            done: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
            lease: Mutex::new(lease),
        });
        let heart = {
            let (store, beat, clock) = (Arc::clone(store), Arc::clone(&beat), Arc::clone(clock));
            thread::Builder::new()
                .name("sluice-lease".into())
                .spawn(move || heartbeat(&*store, &beat, &clock, ttl, ttl_ms))
                .ok()
        };
        Ok(Some(LeaseGuard {
            store: Arc::clone(store),
            beat,
            heart,
        }))
    }

    /// Whether the lease was lost: taken over after its deadline passed
    /// without a heartbeat. Whatever held it must stop.
    pub(super) fn lost(&self) -> bool {
        self.beat.lost.load(Ordering::Relaxed)
    }
}

/// Renews the lease every third of its time to live, until told to stop
/// or the lease is lost.
fn heartbeat(store: &dyn Store, beat: &Beat, clock: &Clock, ttl: Duration, ttl_ms: i64) {
    let every = ttl / 3;
    let mut done = beat.done.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (guard, _) = beat
            .wake
            .wait_timeout(done, every)
            .unwrap_or_else(|e| e.into_inner());
        done = guard;
        if *done {
            return;
        }
        let current = beat.lease.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match store.renew_lease(&current, clock(), ttl_ms) {
            Ok(Some(renewed)) => {
                *beat.lease.lock().unwrap_or_else(|e| e.into_inner()) = renewed;
            }
            Ok(None) => {
                beat.lost.store(true, Ordering::Relaxed);
                return;
            }
            // The store is out of reach for now: try again at the next
            // beat; the deadline tells others when to stop waiting.
            Err(_) => {}
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        *self.beat.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.beat.wake.notify_all();
        if let Some(h) = self.heart.take() {
            let _ = h.join();
        }
        if !self.lost() {
            let lease = self
                .beat
                .lease
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let _ = self.store.release_lease(&lease);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::atomic::AtomicI64;

    #[test]
    fn a_holder_of_this_machine_whose_process_is_gone_is_gone() {
        let me = Holder::this_process();
        assert!(!Holder::is_gone(me.as_str()), "this process is alive");
        // A process id that cannot be running (above the kernel's limit).
        let mut parts: Vec<&str> = me.as_str().splitn(4, '/').collect();
        parts[2] = "4194305";
        assert!(Holder::is_gone(&parts.join("/")));
        parts[0] = "another-host";
        assert!(
            !Holder::is_gone(&parts.join("/")),
            "other machines are asked"
        );
        assert!(!Holder::is_gone("nonsense"));
    }

    #[test]
    fn the_guard_beats_releases_and_notices_a_takeover() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let now = Arc::new(AtomicI64::new(1000));
        let n = Arc::clone(&now);
        let clock: Clock = Arc::new(move || n.load(Ordering::SeqCst));
        let a = AccountId::default();
        let (h1, h2) = (Holder::this_process(), Holder::this_process());
        let ttl = Duration::from_millis(90);
        let g = LeaseGuard::acquire(&store, &a, "job/j", &h1, &clock, ttl)
            .unwrap()
            .unwrap();
        assert!(
            LeaseGuard::acquire(&store, &a, "job/j", &h2, &clock, ttl)
                .unwrap()
                .is_none(),
            "a live holder keeps it"
        );
        // Beats move the deadline with the clock.
        now.store(5000, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(200));
        assert!(store.lease(&a, "job/j").unwrap().unwrap().deadline_ms > 5000);
        drop(g);
        // Released: free at once.
        let g2 = LeaseGuard::acquire(&store, &a, "job/j", &h2, &clock, ttl)
            .unwrap()
            .unwrap();
        // Taken over behind its back (as by a runner elsewhere after the
        // deadline): the guard notices at its next beat.
        let seen = store.lease(&a, "job/j").unwrap().unwrap();
        store
            .take_over_lease(&seen, "elsewhere", 5000, 100_000)
            .unwrap();
        thread::sleep(Duration::from_millis(200));
        assert!(g2.lost());
        drop(g2);
        assert_eq!(
            store.lease(&a, "job/j").unwrap().unwrap().holder,
            "elsewhere"
        );
    }
}
