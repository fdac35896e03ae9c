//! Import/Export jobs: what one is ([`TransferJob`]), the rules of the
//! device it moves data to or from, and its `SIGNATURE` file.
//!
//! A device is a folder: a mounted disk, a USB drive, a directory of
//! files. An import copies its files into a bucket under a prefix; an
//! export writes a bucket's objects onto it. [`run_device`](super::run_device)
//! is the device's arrival: it checks that the device carries the job's
//! `SIGNATURE` file (before anything is copied), holds the job's lease,
//! copies, writes a log object (a CSV line per file) to the log bucket,
//! and ends the job `SUCCEEDED`, or `PARTIALLY_SUCCEEDED` when some file
//! could not be read or written. Such a file is logged and counted, never
//! skipped in silence.
//!
//! Copies stream whole objects (and whole files), each visible only once
//! complete, so a run that dies can be run again with the same device: it
//! starts over and ends where an uninterrupted run would.
//!
//! No path leaves the device: an object key whose segments are not a
//! valid file name on the device's file system (`..`, a name too long,
//! NTFS's reserved characters), or whose place is blocked (a file where a
//! folder must go, a symbolic link on the way), is written into the
//! recovery folder under a numbered name instead, and logged.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::crypto::same_bytes;
use crate::objects::{LocalFolder, ObjectAttributes, ObjectErrorKind};
use crate::store::{JobCounters, JobStatus, StoreError};

/// A job whose device has not arrived expires this long after it was
/// created.
pub const TRANSFER_EXPIRY_MS: i64 = 30 * 24 * 3600 * 1000;

/// The file at a device's root that names its job.
pub const SIGNATURE_FILE: &str = "SIGNATURE";

/// Failures kept with the job (the log has them all).
pub(super) const MAX_FAILURES: usize = 100;

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

impl ExportSpec {
    /// Why the device path `relative` cannot hold a file, if it cannot.
    pub(super) fn place(&self, relative: &str) -> Result<(), String> {
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
        std::fs::write(d.join(SIGNATURE_FILE), signature_file("J1", "s")).unwrap();
        check_signature(d, "J1", "s").unwrap();
        let e = check_signature(d, "J2", "s").unwrap_err().to_string();
        assert!(e.contains("is for job J1, not job J2"), "{e}");
        let e = check_signature(d, "J1", "t").unwrap_err().to_string();
        assert!(e.contains("does not match"), "{e}");
        std::fs::write(d.join(SIGNATURE_FILE), "jobId J1\n").unwrap();
        let e = check_signature(d, "J1", "s").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }
}
