//! Transfers between a device and buckets: the work of an Import/Export
//! job.
//!
//! A device is a folder: a mounted disk, a USB drive, a directory of
//! files. An import copies its files into a bucket under a prefix; an
//! export writes a bucket's objects onto it. [`run_device`] is the
//! device's arrival: it checks that the device carries the job's
//! `SIGNATURE` file (before anything is copied), claims the job, copies,
//! writes a log object (a CSV line per file) to the log bucket, and ends
//! the job `SUCCEEDED`, or `PARTIALLY_SUCCEEDED` when some file could not
//! be read or written. Such a file is logged and counted, never skipped
//! in silence.
//!
//! Copies are puts of whole objects (and writes of whole files), so a run
//! that dies can be run again with the same device: it starts over and
//! ends where an uninterrupted run would.
//!
//! No path leaves the device: an object key whose segments are not a
//! valid file name on the device's file system (`..`, a name too long,
//! NTFS's reserved characters), or whose place is blocked (a file where a
//! folder must go, a symbolic link on the way), is written into the
//! recovery folder under a numbered name instead, and logged.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use super::JobStatus;
use super::lease::{Holder, LEASE_TTL, LeaseGuard, job_lease};
use super::{Clock, JobSpec};
use crate::crypto::{same_bytes, to_hex};
use crate::objects::{
    LocalFolder, MAX_KEY_BYTES, ObjectAttributes, ObjectErrorKind, ObjectWriter, Objects,
};
use crate::store::{JobCounters, JobKind, JobRecord, JobRef, Store, StoreError, Transition};

/// A job whose device has not arrived expires this long after it was
/// created.
pub const TRANSFER_EXPIRY_MS: i64 = 30 * 24 * 3600 * 1000;

/// The file at a device's root that names its job.
pub const SIGNATURE_FILE: &str = "SIGNATURE";

/// Failures kept with the job (the log has them all).
const MAX_FAILURES: usize = 100;

/// Which way the data goes.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum Direction {
    /// Device to bucket.
    Import,
    /// Bucket to device.
    Export,
}

impl Direction {
    /// `Import` or `Export`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Import => "Import",
            Direction::Export => "Export",
        }
    }
}

/// An Import/Export job: what is stored as the job's request.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferJob {
    /// Which way.
    pub direction: Direction,
    /// The access key id that created it (its manifest's `accessKeyId`).
    pub owner: String,
    /// The signature the device's `SIGNATURE` file must carry.
    pub signature: String,
    /// The manifest as submitted.
    pub manifest: String,
    /// The manifest's `deviceId`.
    pub device_id: String,
    /// Where the log goes.
    pub log_bucket: String,
    /// Put before the log's name.
    pub log_prefix: String,
    /// What an import does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportSpec>,
    /// What an export does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportSpec>,
    /// The shipping label, once one was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_url: Option<String>,
}

impl TransferJob {
    /// The key of the job's log object in [`TransferJob::log_bucket`].
    pub fn log_key(&self, job_id: &str) -> String {
        let what = match self.direction {
            Direction::Import => "import",
            Direction::Export => "export",
        };
        format!("{}{what}-log-{job_id}", self.log_prefix)
    }
}

/// Where an import puts a device's files, and how.
#[derive(Clone, Debug, Default, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportSpec {
    /// The bucket.
    pub bucket: String,
    /// Keys are `prefix/relative-path` (the relative path alone when
    /// empty).
    pub prefix: String,
    /// Regular expressions; a file whose relative path (with `/`) matches
    /// one is not imported.
    pub ignore: Vec<String>,
    /// File extension (lowercase, without the dot) to `Content-Type`.
    pub content_types: Vec<(String, String)>,
    /// `Cache-Control` of every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Disposition` of every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Language` of every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `.gz` files get `Content-Encoding: gzip` and the content type of
    /// the name without `.gz`.
    pub gzip_content_encoding: bool,
    /// The canned ACL asked for (recorded in the log; buckets here have no
    /// ACLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<String>,
}

impl ImportSpec {
    /// The key of the file at `relative` (with `/`).
    pub fn key(&self, relative: &str) -> String {
        let prefix = self.prefix.trim_end_matches('/');
        if prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{prefix}/{relative}")
        }
    }

    /// The attributes of the object made of the file at `relative`.
    pub fn attributes(&self, relative: &str) -> ObjectAttributes {
        let name = relative.rsplit('/').next().unwrap_or(relative);
        let lower = name.to_ascii_lowercase();
        let (typed, encoding) = match lower.strip_suffix(".gz") {
            Some(inner) if self.gzip_content_encoding => (inner, Some("gzip".to_owned())),
            _ => (lower.as_str(), None),
        };
        let content_type = typed.rsplit_once('.').and_then(|(_, ext)| {
            self.content_types
                .iter()
                .find(|(e, _)| e == ext)
                .map(|(_, t)| t.clone())
        });
        ObjectAttributes {
            content_type,
            cache_control: self.cache_control.clone(),
            content_disposition: self.content_disposition.clone(),
            content_language: self.content_language.clone(),
            content_encoding: encoding,
        }
    }
}

/// The file system an export writes, which decides the valid file names.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum FileSystem {
    /// No `\ : * ? " < > |`, control characters, or names ending in a dot
    /// or a space.
    #[serde(rename = "NTFS")]
    Ntfs,
    /// Anything but `/` and NUL.
    #[serde(rename = "EXT4")]
    Ext4,
}

impl FileSystem {
    /// Why `name` (one path segment) cannot be a file name here, if it
    /// cannot.
    pub fn refuses(self, name: &str) -> Option<String> {
        if name.is_empty() {
            return Some("an empty path segment".into());
        }
        if name == "." || name == ".." {
            return Some(format!("the path segment {name:?}"));
        }
        if name.len() > 255 {
            return Some(format!("a name of {} bytes (at most 255)", name.len()));
        }
        if name.contains('\0') {
            return Some("a NUL character".into());
        }
        if self == FileSystem::Ntfs {
            if let Some(c) = name
                .chars()
                .find(|c| c.is_control() || "\\:*?\"<>|".contains(*c))
            {
                return Some(format!("{c:?}, which NTFS does not allow"));
            }
            if name.ends_with('.') || name.ends_with(' ') {
                return Some("a name ending in a dot or a space, which NTFS drops".into());
            }
        }
        None
    }
}

/// What an export writes onto a device.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportSpec {
    /// The device's file system.
    pub file_system: FileSystem,
    /// What to export, in order.
    pub operations: Vec<ExportOperation>,
    /// Where files that cannot be written at their place go (relative to
    /// the device's root).
    pub recovery_directory: String,
}

/// One bucket's objects onto the device.
#[derive(Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportOperation {
    /// The bucket.
    pub bucket: String,
    /// Only keys that start with this.
    pub prefix: String,
    /// Only keys after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub begin_marker: Option<String>,
    /// Only keys up to and including this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_marker: Option<String>,
    /// Where on the device (relative to its root; empty for the root).
    pub target_directory: String,
}

impl ExportOperation {
    /// Whether `key` is one this operation exports.
    pub fn selects(&self, key: &str) -> bool {
        key.starts_with(&self.prefix)
            && self.begin_marker.as_deref().is_none_or(|m| key > m)
            && self.end_marker.as_deref().is_none_or(|m| key <= m)
    }
}

/// Files (or objects) a transfer copied: of those it tried (`processed`),
/// the ones that did not fail.
pub fn copied(c: &JobCounters) -> u64 {
    c.processed.saturating_sub(c.failed)
}

/// The text of a device's `SIGNATURE` file.
pub fn signature_file(job_id: &str, signature: &str) -> String {
    format!("version:2.0\nsigningMethod:HmacSHA1\njobId:{job_id}\nsignature:{signature}\n")
}

/// What can stop a device run before it starts, or end it.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// No job of that id.
    #[error("no job {0}")]
    NoJob(String),
    /// The job is not an Import/Export job.
    #[error("job {0} is not an Import/Export job")]
    NotTransfer(String),
    /// The job was canceled.
    #[error("job {0} was canceled")]
    Canceled(String),
    /// The job expired before its device arrived.
    #[error("job {0} expired: its device did not arrive within 30 days of its creation")]
    Expired(String),
    /// The job has run.
    #[error("job {id} has run already ({status})")]
    Finished {
        /// The job.
        id: String,
        /// Its status.
        status: JobStatus,
    },
    /// Another process is running it.
    #[error("job {0} is being run by another process")]
    Busy(String),
    /// The device is not a readable folder.
    #[error("device {path}: {source}")]
    Device {
        /// The device.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// No `SIGNATURE` file at the device's root.
    #[error(
        "device {0}: no SIGNATURE file at its root; write the job's SignatureFileContents there; \
         nothing was copied"
    )]
    MissingSignature(PathBuf),
    /// A `SIGNATURE` file that is not the job's.
    #[error("{path}: {why}; nothing was copied")]
    InvalidSignature {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The store said no.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the `SIGNATURE` file at `device`'s root against the job.
///
/// # Errors
///
/// [`TransferError::MissingSignature`] or
/// [`TransferError::InvalidSignature`], saying which line is wrong.
pub fn check_signature(device: &Path, job_id: &str, signature: &str) -> Result<(), TransferError> {
    let path = device.join(SIGNATURE_FILE);
    let invalid = |why: String| TransferError::InvalidSignature {
        path: path.clone(),
        why,
    };
    let mut text = Vec::new();
    match LocalFolder::new(device).read(SIGNATURE_FILE, 0..64 * 1024) {
        Ok(mut r) => {
            r.read_to_end(&mut text)
                .map_err(|e| invalid(format!("cannot be read: {e}")))?;
        }
        Err(e) if e.kind == ObjectErrorKind::NoSuchKey => {
            return Err(TransferError::MissingSignature(device.to_owned()));
        }
        Err(e) => return Err(invalid(format!("cannot be read: {e}"))),
    }
    let text = String::from_utf8(text).map_err(|_| invalid("is not UTF-8 text".into()))?;
    let (mut id, mut sig, mut method) = (None, None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some((k, v)) = line.split_once(':') else {
            return Err(invalid(format!("line {}: expected `name:value`", n + 1)));
        };
        let v = v.trim();
        match k.trim() {
            "jobId" => id = Some(v),
            "signature" => sig = Some(v),
            "signingMethod" => method = Some(v),
            "version" | "manifestVersion" => {}
            other => return Err(invalid(format!("line {}: unknown field {other:?}", n + 1))),
        }
    }
    match id {
        None => return Err(invalid("has no jobId line".into())),
        Some(i) if i != job_id => {
            return Err(invalid(format!("is for job {i}, not job {job_id}")));
        }
        Some(_) => {}
    }
    if method.is_some_and(|m| m != "HmacSHA1") {
        return Err(invalid(format!(
            "signingMethod {:?} is not HmacSHA1",
            method.unwrap_or_default()
        )));
    }
    match sig {
        None => Err(invalid("has no signature line".into())),
        Some(s) if !same_bytes(s.as_bytes(), signature.as_bytes()) => Err(invalid(
            "signature does not match the job's (its manifest changed since it was written? \
             GetStatus gives the current SignatureFileContents)"
                .into(),
        )),
        Some(_) => Ok(()),
    }
}

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

/// One field of a CSV line.
fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
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

impl ExportSpec {
    /// Why the device path `relative` cannot hold a file, if it cannot.
    fn place(&self, relative: &str) -> Result<(), String> {
        if relative == SIGNATURE_FILE {
            return Err("it would replace the device's SIGNATURE file".into());
        }
        for seg in relative.split('/') {
            if let Some(why) = self.file_system.refuses(seg) {
                return Err(format!("the path has {why}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_attributes() {
        let spec = ImportSpec {
            bucket: "b".into(),
            prefix: "in/".into(),
            content_types: vec![("csv".into(), "text/csv".into())],
            gzip_content_encoding: true,
            ..ImportSpec::default()
        };
        assert_eq!(spec.key("a/b.csv"), "in/a/b.csv");
        let a = spec.attributes("a/B.CSV.gz");
        assert_eq!(a.content_type.as_deref(), Some("text/csv"));
        assert_eq!(a.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(spec.attributes("x.bin").content_type, None);
        let bare = ImportSpec::default();
        assert_eq!(bare.key("f"), "f");
    }

    #[test]
    fn file_names() {
        assert!(FileSystem::Ext4.refuses("a:b").is_none());
        assert!(FileSystem::Ntfs.refuses("a:b").is_some());
        assert!(FileSystem::Ntfs.refuses("a.").is_some());
        for fs in [FileSystem::Ext4, FileSystem::Ntfs] {
            assert!(fs.refuses("..").is_some());
            assert!(fs.refuses("").is_some());
            assert!(fs.refuses(&"x".repeat(256)).is_some());
            assert!(fs.refuses("ok.txt").is_none());
        }
    }

    #[test]
    fn markers() {
        let op = ExportOperation {
            bucket: "b".into(),
            prefix: "l".into(),
            begin_marker: Some("l1".into()),
            end_marker: Some("l3".into()),
            target_directory: String::new(),
        };
        let got: Vec<&str> = ["a", "l1", "l2", "l3", "l4"]
            .into_iter()
            .filter(|k| op.selects(k))
            .collect();
        assert_eq!(got, ["l2", "l3"]);
    }

    #[test]
    fn signatures() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(matches!(
            check_signature(d, "J1", "s"),
            Err(TransferError::MissingSignature(_))
        ));
        fs::write(d.join(SIGNATURE_FILE), signature_file("J1", "s")).unwrap();
        check_signature(d, "J1", "s").unwrap();
        let e = check_signature(d, "J2", "s").unwrap_err().to_string();
        assert!(e.contains("is for job J1, not job J2"), "{e}");
        let e = check_signature(d, "J1", "t").unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        fs::write(d.join(SIGNATURE_FILE), "jobId J1\n").unwrap();
        let e = check_signature(d, "J1", "s").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
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
