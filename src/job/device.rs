//! An Import/Export job's device arrives: [`run_device`] checks it, holds
//! the job's lease, copies between the device (a folder) and the buckets
//! as streams, and writes the log object.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use md5::{Digest, Md5};

use super::lease::{Holder, LEASE_TTL, LeaseGuard, job_lease};
use super::transfer::{
    Direction, ExportSpec, ImportSpec, MAX_FAILURES, SIGNATURE_FILE, TRANSFER_EXPIRY_MS,
    TransferError, TransferJob, check_signature, copied,
};
use super::{Clock, JobSpec};
use crate::crypto::to_hex;
use crate::objects::{LocalFolder, MAX_KEY_BYTES, ObjectAttributes, ObjectWriter, Objects};
use crate::store::{JobCounters, JobKind, JobRecord, JobRef, JobStatus, Store, Transition};

/// Runs an Import/Export job with its device at `device`, and returns the
/// job as it ended. `now` gives the time (Unix milliseconds).
///
/// A job left running by a process that died can be run again.
///
/// # Errors
///
/// [`TransferError`]: the job cannot run (unknown, canceled, expired,
/// finished, busy) or the device is refused (not a folder, no valid
/// `SIGNATURE`); nothing is copied then. Files that fail on the way do not
/// end the run: they are logged and counted.
pub fn run_device(
    store: &Arc<dyn Store>,
    objects: &dyn Objects,
    clock: &Clock,
    job: JobRef<'_>,
    device: &Path,
) -> Result<JobRecord, TransferError> {
    let now = &**clock;
    let job_id = job.id;
    let (job, spec) = runnable(&**store, job, now())?;
    let meta = fs::metadata(device).map_err(|source| TransferError::Device {
        path: device.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(TransferError::Device {
            path: device.to_owned(),
            source: io::Error::other("not a folder"),
        });
    }
    check_signature(device, &job.id, &spec.signature)?;
    let holder = Holder::this_process();
    let lease = LeaseGuard::acquire(
        store,
        &job.account,
        &job_lease(&job.id),
        &holder,
        clock,
        LEASE_TTL,
    )?;
    let Some(lease) = lease else {
        return Err(TransferError::Busy(job.id));
    };
    // Under the lease: the job may have been canceled or run meanwhile.
    let job_ref = JobRef {
        account: &job.account,
        id: job_id,
    };
    let (job, _) = runnable(&**store, job_ref, now())?;
    let job_ref = JobRef {
        account: &job.account,
        id: &job.id,
    };
    let steps: &[JobStatus] = match job.status {
        JobStatus::Created => &[JobStatus::Queued, JobStatus::Running],
        JobStatus::Queued => &[JobStatus::Running],
        // Left running by a process that died (this one holds the lease).
        _ => &[JobStatus::Queued, JobStatus::Running],
    };
    let reason = format!("device at {}", device.display());
    let mut from = job.status;
    let mut attempt = job.attempts;
    for &to in steps {
        let t = Transition {
            reason: Some(&reason),
            ..Transition::new(from, to, now())
        };
        let moved = store.transition(job_ref, &t)?;
        attempt = moved.attempts;
        from = to;
    }
    let mut run = Run {
        store: &**store,
        objects,
        device: LocalFolder::new(device),
        now,
        job: job_ref,
        log: String::new(),
        counters: JobCounters::default(),
        saved: Instant::now(),
    };
    run.log.push_str(match spec.direction {
        Direction::Import => "DateTime,File,Status,Key,MD5,Bytes,Content-Type,Message\n",
        Direction::Export => "DateTime,Key,Status,File,MD5,Bytes,Message\n",
    });
    let outcome = match (&spec.import, &spec.export) {
        (Some(i), _) => run.import(i),
        (None, Some(e)) => run.export(e),
        (None, None) => Err("the job has neither an import nor an export".to_owned()),
    };
    let log_key = spec.log_key(&job.id);
    let log_url = format!("s3://{}/{log_key}", spec.log_bucket);
    let log_attrs = ObjectAttributes {
        content_type: Some("text/csv".into()),
        ..ObjectAttributes::default()
    };
    let logged = crate::objects::put(
        objects,
        &spec.log_bucket,
        &log_key,
        std::mem::take(&mut run.log).as_bytes(),
        &log_attrs,
    );
    let counters = run.counters.clone();
    store.save_progress(job_ref, &counters)?;
    let (to, reason) = match (outcome, logged) {
        (Err(why), _) => (JobStatus::Failed, why),
        (Ok(()), Err(e)) => (
            JobStatus::Failed,
            format!("the log could not be written to {log_url}: {}", e.message),
        ),
        (Ok(()), Ok(_)) if counters.failed == 0 => (
            JobStatus::Succeeded,
            format!("{} files copied; log at {log_url}", copied(&counters)),
        ),
        (Ok(()), Ok(_)) => (
            JobStatus::PartiallySucceeded,
            format!(
                "{} files copied, {} could not be; log at {log_url}",
                copied(&counters),
                counters.failed
            ),
        ),
    };
    let failure = (to == JobStatus::Failed).then_some(super::FailureKind::Validation);
    if lease.lost() {
        return Err(TransferError::Busy(job.id.clone()));
    }
    let done = store.transition(
        job_ref,
        &Transition {
            reason: Some(&reason),
            failure,
            fence: Some(attempt),
            ..Transition::new(JobStatus::Running, to, now())
        },
    )?;
    drop(lease);
    Ok(done)
}

/// The job and its spec, if a device may run it now.
fn runnable(
    store: &dyn Store,
    job: JobRef<'_>,
    now_ms: i64,
) -> Result<(JobRecord, TransferJob), TransferError> {
    let job = store
        .job(job)?
        .ok_or_else(|| TransferError::NoJob(job.id.to_owned()))?;
    if job.kind != JobKind::Transfer {
        return Err(TransferError::NotTransfer(job.id));
    }
    let JobSpec::Transfer(spec) = JobSpec::of(&job)? else {
        return Err(TransferError::NotTransfer(job.id));
    };
    match job.status {
        JobStatus::Stopped => Err(TransferError::Canceled(job.id)),
        s if s.is_terminal() => Err(TransferError::Finished {
            id: job.id,
            status: s,
        }),
        JobStatus::Created if job.created_ms + TRANSFER_EXPIRY_MS <= now_ms => {
            Err(TransferError::Expired(job.id))
        }
        _ => Ok((job, spec)),
    }
}

struct Run<'a> {
    store: &'a dyn Store,
    objects: &'a dyn Objects,
    device: LocalFolder,
    now: &'a dyn Fn() -> i64,
    job: JobRef<'a>,
    log: String,
    counters: JobCounters,
    saved: Instant,
}

/// One field of a CSV line. A field a spreadsheet would run as a formula
/// (it starts with `=`, `+`, `-`, `@`, a tab or CR: a file named
/// `=HYPERLINK(…)` on a device) gets a leading `'`, which spreadsheets show
/// as text, as OWASP advises for CSV injection.
fn csv_field(out: &mut String, v: &str) {
    let formula = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let v = if formula {
        std::borrow::Cow::Owned(format!("'{v}"))
    } else {
        std::borrow::Cow::Borrowed(v)
    };
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&v);
    }
}

impl Run<'_> {
    fn line(&mut self, fields: &[&str]) {
        let _ = write!(self.log, "{}", crate::time::iso8601((self.now)()));
        for f in fields {
            self.log.push(',');
            csv_field(&mut self.log, f);
        }
        self.log.push('\n');
    }

    fn failed(&mut self, what: String) {
        self.counters.failed += 1;
        if self.counters.failures.len() < MAX_FAILURES {
            self.counters.failures.push(what);
        }
    }

    /// One item done: saves the counters now and then.
    fn done_one(&mut self) {
        self.counters.completed_pieces += 1;
        if self.saved.elapsed().as_millis() >= 500 {
            let _ = self.store.save_progress(self.job, &self.counters);
            self.saved = Instant::now();
        }
    }

    /// The path of `relative` on the device, for messages.
    fn on_device(&self, relative: &str) -> String {
        self.device.dir().join(relative).display().to_string()
    }

    fn import(&mut self, spec: &ImportSpec) -> Result<(), String> {
        let ignore = spec
            .ignore
            .iter()
            .map(|r| regex::Regex::new(r).map_err(|e| format!("ignore pattern {r:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let (files, problems) = self
            .device
            .walk()
            .map_err(|e| format!("device {}: {e}", self.device.dir().display()))?;
        self.counters.total_pieces = (files.len() + problems.len()) as u64;
        let _ = self.store.save_progress(self.job, &self.counters);
        for (rel, why) in problems {
            self.counters.processed += 1;
            self.line(&[&rel, "Error", "", "", "", "", &why]);
            self.failed(format!("{}: {why}", self.on_device(&rel)));
            self.done_one();
        }
        for file in files {
            let rel = file.key;
            if rel == SIGNATURE_FILE {
                self.line(&[&rel, "Skipped", "", "", "", "", "the job's SIGNATURE file"]);
                self.done_one();
                continue;
            }
            if let Some(r) = ignore.iter().find(|r| r.is_match(&rel)) {
                let why = format!("matches ignore pattern {:?}", r.as_str());
                self.line(&[&rel, "Ignored", "", "", "", "", &why]);
                self.done_one();
                continue;
            }
            self.counters.processed += 1;
            let key = spec.key(&rel);
            let attrs = spec.attributes(&rel);
            let ctype = attrs.content_type.clone().unwrap_or_default();
            let copied = if key.len() > MAX_KEY_BYTES {
                Err(format!(
                    "its key is {} bytes (at most {MAX_KEY_BYTES})",
                    key.len()
                ))
            } else {
                self.device
                    .read(&rel, 0..u64::MAX)
                    .map_err(|e| format!("cannot be read: {e}"))
                    .and_then(|from| {
                        let to = self
                            .objects
                            .write(&spec.bucket, &key, &attrs)
                            .map_err(|e| e.message)?;
                        copy(from, to)
                    })
            };
            match copied {
                Ok((md5, n)) => {
                    self.line(&[&rel, "Success", &key, &md5, &n.to_string(), &ctype, ""]);
                }
                Err(why) => {
                    self.line(&[&rel, "Error", &key, "", "", &ctype, &why]);
                    self.failed(format!("{}: {why}", self.on_device(&rel)));
                }
            }
            self.done_one();
        }
        Ok(())
    }

    fn export(&mut self, spec: &ExportSpec) -> Result<(), String> {
        let mut plan = Vec::new();
        for op in &spec.operations {
            let listed = self.objects.list(&op.bucket, "").map_err(|e| e.message)?;
            plan.extend(
                listed
                    .into_iter()
                    .filter(|o| op.selects(&o.key))
                    .map(|o| (op, o.key)),
            );
        }
        self.counters.total_pieces = plan.len() as u64;
        let _ = self.store.save_progress(self.job, &self.counters);
        let mut recovered = 0u64;
        for (op, key) in plan {
            self.counters.processed += 1;
            let url = format!("s3://{}/{key}", op.bucket);
            let relative = if op.target_directory.is_empty() {
                key.clone()
            } else {
                format!("{}/{key}", op.target_directory.trim_end_matches('/'))
            };
            let read = || {
                self.objects
                    .read(&op.bucket, &key, 0..u64::MAX)
                    .map_err(|e| e.message)
            };
            let placed = spec.place(&relative).and_then(|()| {
                let to = self.device.write(&relative).map_err(|e| e.message)?;
                copy(read()?, Box::new(to))
            });
            match placed {
                Ok((md5, size)) => {
                    self.line(&[&url, "Success", &relative, &md5, &size.to_string(), ""]);
                }
                Err(why) => {
                    recovered += 1;
                    let name = format!("{}/{recovered:08}", spec.recovery_directory);
                    let into_recovery = self
                        .device
                        .write(&name)
                        .map_err(|e| e.message)
                        .and_then(|to| copy(read()?, Box::new(to)));
                    let (status, message, md5, size) = match into_recovery {
                        Ok((md5, size)) => (
                            "Recovered",
                            format!("{relative}: {why}; written as {name}"),
                            md5,
                            size.to_string(),
                        ),
                        Err(e) => (
                            "Error",
                            format!("{relative}: {why}; and {name}: {e}"),
                            String::new(),
                            String::new(),
                        ),
                    };
                    self.line(&[&url, status, &name, &md5, &size, &message]);
                    self.failed(format!("{url}: {message}"));
                }
            }
            self.done_one();
        }
        Ok(())
    }
}

/// Streams `from` into `to` and completes it; returns the hex MD5 of the
/// bytes and how many there were.
fn copy(
    mut from: Box<dyn Read + Send>,
    mut to: Box<dyn ObjectWriter>,
) -> Result<(String, u64), String> {
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot be read: {e}")),
        };
        md5.update(&buf[..got]);
        to.write_all(&buf[..got])
            .map_err(|e| format!("cannot be written: {e}"))?;
        n += got as u64;
    }
    to.finish().map_err(|e| e.message)?;
    Ok((to_hex(&md5.finalize()), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_cells_that_a_spreadsheet_would_run_are_text() {
        let line = |v: &str| {
            let mut out = String::new();
            csv_field(&mut out, v);
            out
        };
        assert_eq!(line("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(line("+1"), "'+1");
        assert_eq!(line("-2,3"), "\"'-2,3\"");
        assert_eq!(line("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(line("plain.csv"), "plain.csv");
        assert_eq!(line("a,b"), "\"a,b\"");
    }

    #[test]
    fn writes_stay_on_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let device = LocalFolder::new(root);
        let put = |rel: &str, bytes: &[u8]| -> Result<(), String> {
            let w = device.write(rel).map_err(|e| e.message)?;
            copy(Box::new(io::Cursor::new(bytes.to_vec())), Box::new(w)).map(|_| ())
        };
        put("a/b/c.txt", b"x").unwrap();
        assert_eq!(fs::read(root.join("a/b/c.txt")).unwrap(), b"x");
        // A file where a folder must go.
        let e = put("a/b/c.txt/d", b"y").unwrap_err();
        assert!(e.contains("is a file"), "{e}");
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let e = put("link/x", b"z").unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
