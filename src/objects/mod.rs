/*!
The object port: buckets of objects, read and written as streams.

Jobs read their inputs and write their outputs through [`Objects`], never
through paths: a folder of folders on this machine ([`LocalObjects`]), memory
([`MemoryObjects`], for tests and embedders), or any S3-compatible store
(`S3Objects`, feature `s3`). Every backend streams:

* [`Objects::read`] gives a reader over a byte range of an object, so that a
  job holds a bounded window of it whatever its size (S3 reads are ranged
  GETs with a bounded read-ahead, resumed from where they broke);
* [`Objects::write`] gives a writer that sends the object as it comes
  (multipart on S3, a temporary file renamed into place locally) and makes
  it visible only when [`ObjectWriter::finish`] succeeds: an object is whole
  or absent, and one dropped half-written leaves nothing.

Bucket names follow S3's rules ([`check_bucket_name`]) and keys S3's, less
control characters ([`check_key`]), in every backend, so a URL means the
same thing wherever its objects live. The local backend keeps segments a
folder cannot hold as names (empty, `.`, `..`) escaped, so no key reaches
outside its bucket, and never follows a symbolic link.
*/

mod direct;
mod local;
mod memory;
#[cfg(feature = "s3")]
mod s3;

use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::path::Path;

pub use direct::copy;
pub use local::{LocalFolder, LocalObjects, LocalWriter, SpanWriter, Walked};
pub use memory::MemoryObjects;
#[cfg(feature = "s3")]
pub use s3::{PARTS_IN_FLIGHT, READ_AHEAD, S3Config, S3Objects};

/// The longest key S3 takes, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The size of the parts of a multipart upload, for backends that write
/// in parts (S3 takes at least 5 MiB).
pub const PART_BYTES: usize = 8 << 20;

/// An object in a listing.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (Unix milliseconds), when the backend says.
    pub modified_ms: Option<i64>,
    /// Its entity tag, when the backend gives one.
    pub etag: Option<String>,
}

/// A bucket in a listing.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BucketInfo {
    /// Its name.
    pub name: String,
    /// When it was made (Unix milliseconds), when the backend says.
    pub created_ms: Option<i64>,
}

/// The HTTP attributes an object is put with (S3 keeps them; local folders
/// have nowhere to and drop them).
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct ObjectAttributes {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
}

/// What a caller can do about a failed object call.
#[derive(Clone, Copy, Debug, Eq, Hash, PartialEq)]
pub enum ObjectErrorKind {
    /// The bucket name, key or URL is not one (a bad name, `..`, not
    /// `s3://`).
    BadName,
    /// No such bucket.
    NoSuchBucket,
    /// No such object.
    NoSuchKey,
    /// A bucket of that name exists.
    BucketExists,
    /// The bucket still holds objects (it cannot be deleted).
    BucketNotEmpty,
    /// The place cannot hold the object (a file where a folder must be, a
    /// symbolic link on the way).
    Refused,
    /// The store failed (I/O, network, the server said no).
    Backend,
}

/// A failed object call: what a caller can act on, and a message that says
/// what and where.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ObjectError {
    /// What kind of failure.
    pub kind: ObjectErrorKind,
    /// What went wrong, naming the bucket or object.
    pub message: String,
}

impl ObjectError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ObjectErrorKind, message: impl Into<String>) -> ObjectError {
        ObjectError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn no_bucket(bucket: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::NoSuchBucket,
            format!("bucket {bucket:?} does not exist"),
        )
    }

    pub(crate) fn bucket_exists(bucket: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::BucketExists,
            format!("bucket {bucket:?} already exists"),
        )
    }

    pub(crate) fn not_empty(bucket: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::BucketNotEmpty,
            format!("bucket {bucket:?} is not empty: delete its objects first"),
        )
    }

    pub(crate) fn no_key(bucket: &str, key: &str) -> ObjectError {
        ObjectError::new(
            ObjectErrorKind::NoSuchKey,
            format!("s3://{bucket}/{key} does not exist"),
        )
    }

    pub(crate) fn backend(what: impl fmt::Display, e: impl fmt::Display) -> ObjectError {
        ObjectError::new(ObjectErrorKind::Backend, format!("{what}: {e}"))
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ObjectError {}

impl From<ObjectError> for io::Error {
    fn from(e: ObjectError) -> io::Error {
        let kind = match e.kind {
            ObjectErrorKind::NoSuchBucket | ObjectErrorKind::NoSuchKey => io::ErrorKind::NotFound,
            ObjectErrorKind::BadName => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// An object being written: bytes go in with [`Write`]; [`finish`] makes
/// the object visible whole. Dropped before that, it leaves nothing.
///
/// [`finish`]: ObjectWriter::finish
pub trait ObjectWriter: Write + Send {
    /// Completes the object.
    ///
    /// # Errors
    ///
    /// When the last bytes cannot be sent or the object cannot be made
    /// visible; then nothing is.
    fn finish(self: Box<Self>) -> Result<ObjectInfo, ObjectError>;
}

/// Buckets of objects, local or remote. See the [module documentation](self).
pub trait Objects: Send + Sync + fmt::Debug {
    /// Where the buckets live, for people (`folders in /data/buckets`).
    fn describe(&self) -> String;

    /// Makes a bucket.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::BucketExists`], a bad name, or the store's error.
    fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError>;

    /// Every bucket, by name.
    ///
    /// # Errors
    ///
    /// The store's error.
    fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError>;

    /// Deletes an empty bucket.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchBucket`], [`ObjectErrorKind::BucketNotEmpty`],
    /// or the store's error.
    fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError>;

    /// Whether a bucket exists (a bad name is a bucket that does not).
    ///
    /// # Errors
    ///
    /// The store's error.
    fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectError>;

    /// The objects of a bucket whose keys start with `prefix`, by key.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchBucket`], or the store's error.
    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError>;

    /// One object's size and times.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchBucket`], [`ObjectErrorKind::NoSuchKey`],
    /// or the store's error.
    fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError>;

    /// A reader over bytes `range` of an object (clamped to its size).
    ///
    /// # Errors
    ///
    /// As [`Objects::head`]. Errors while reading come from the reader.
    fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
    ) -> Result<Box<dyn Read + Send>, ObjectError>;

    /// A writer of a new version of an object, with `attributes`.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchBucket`], a bad key, a place that cannot
    /// hold it, or the store's error.
    fn write(
        &self,
        bucket: &str,
        key: &str,
        attributes: &ObjectAttributes,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError>;

    /// Makes the file `from` on this machine (whole and synced) the
    /// object `key` by moving it, when the backend keeps objects as files
    /// on the same file system; `None` when it cannot (the file is left,
    /// and the caller writes the object instead).
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchBucket`], what [`Objects::write`] would
    /// refuse, or the store's error.
    fn adopt(
        &self,
        bucket: &str,
        key: &str,
        from: &Path,
        attributes: &ObjectAttributes,
    ) -> Result<Option<ObjectInfo>, ObjectError> {
        let _ = (bucket, key, from, attributes);
        Ok(None)
    }

    /// Deletes an object (deleting one that is not there is no error).
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::NoSuchBucket`], or the store's error.
    fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError>;

    /// Where a person finds an object: a `file://` URL for a local one, the
    /// endpoint's URL for an S3 one.
    fn locate(&self, bucket: &str, key: &str) -> String;
}

/// Puts `bytes` as an object.
///
/// # Errors
///
/// As [`Objects::write`] and [`ObjectWriter::finish`].
pub fn put(
    objects: &dyn Objects,
    bucket: &str,
    key: &str,
    bytes: &[u8],
    attributes: &ObjectAttributes,
) -> Result<ObjectInfo, ObjectError> {
    let mut w = objects.write(bucket, key, attributes)?;
    w.write_all(bytes)
        .map_err(|e| ObjectError::backend(format!("writing s3://{bucket}/{key}"), e))?;
    w.finish()
}

/// Makes a bucket unless it exists.
///
/// # Errors
///
/// A bad name, or the store's error.
pub fn ensure_bucket(objects: &dyn Objects, bucket: &str) -> Result<(), ObjectError> {
    match objects.create_bucket(bucket) {
        Err(e) if e.kind != ObjectErrorKind::BucketExists => Err(e),
        _ => Ok(()),
    }
}

/// A whole object's bytes (for small objects: logs, labels).
///
/// # Errors
///
/// As [`Objects::read`], or a read that fails.
pub fn get(objects: &dyn Objects, bucket: &str, key: &str) -> Result<Vec<u8>, ObjectError> {
    let mut out = Vec::new();
    objects
        .read(bucket, key, 0..u64::MAX)?
        .read_to_end(&mut out)
        .map_err(|e| ObjectError::backend(format!("reading s3://{bucket}/{key}"), e))?;
    Ok(out)
}

/// The objects a URL names: the one object of that key, or else every
/// object below it as a folder (`s3://b/in` and `s3://b/in/` both list
/// `in/…`), by key.
///
/// # Errors
///
/// [`ObjectErrorKind::NoSuchBucket`], or the store's error.
pub fn resolve(objects: &dyn Objects, url: &ObjectUrl) -> Result<Vec<ObjectInfo>, ObjectError> {
    if !url.key.is_empty() && !url.key.ends_with('/') {
        match objects.head(&url.bucket, &url.key) {
            Ok(info) => return Ok(vec![info]),
            Err(e) if e.kind == ObjectErrorKind::NoSuchKey => {}
            Err(e) => return Err(e),
        }
    }
    let mut prefix = url.key.trim_end_matches('/').to_owned();
    if !prefix.is_empty() {
        prefix.push('/');
    }
    objects.list(&url.bucket, &prefix)
}

/// `s3://bucket/key`, checked.
#[derive(Clone, Debug, Eq, Hash, PartialEq)]
pub struct ObjectUrl {
    /// The bucket.
    pub bucket: String,
    /// The key or prefix (may be empty: the whole bucket).
    pub key: String,
}

impl ObjectUrl {
    /// Parses and checks an `s3://` URL.
    ///
    /// # Errors
    ///
    /// [`ObjectErrorKind::BadName`], saying what is wrong.
    pub fn parse(url: &str) -> Result<ObjectUrl, ObjectError> {
        let bad = |why: &str| {
            ObjectError::new(
                ObjectErrorKind::BadName,
                format!("{url:?} is not an S3 URL: {why}"),
            )
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket).map_err(|why| bad(&why))?;
        if !key.is_empty() {
            check_key(key.trim_end_matches('/')).map_err(|why| bad(&why))?;
        }
        Ok(ObjectUrl {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// S3's bucket naming rules.
///
/// # Errors
///
/// What is wrong with the name.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&name.len())
        || !ok_chars
        || !ends_ok(name.bytes().next())
        || !ends_ok(name.bytes().last())
        || name.contains("..")
    {
        return Err(format!(
            "bucket name {name:?}: 3 to 63 lowercase letters, digits, dots and hyphens, \
             starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

/// The keys every backend takes: what S3 takes (at most
/// [`MAX_KEY_BYTES`] bytes; `a//b`, `/x.csv`, `dir/` and `../x` are keys
/// like any other), without control characters. A backend that cannot
/// hold some of them says so ([`ObjectErrorKind::BadName`]): the S3 one
/// refuses empty, `.` and `..` segments, which its client cannot send.
/// The local one keeps every key, never outside its bucket.
///
/// # Errors
///
/// What is wrong with the key.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a key is not empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a key has at most {MAX_KEY_BYTES} bytes, not {}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err("a key has no control characters".into());
    }
    Ok(())
}

/// Checks a bucket name as every backend must.
fn checked_bucket(bucket: &str) -> Result<(), ObjectError> {
    check_bucket_name(bucket).map_err(|why| ObjectError::new(ObjectErrorKind::BadName, why))
}

/// Checks a bucket and key as every backend must.
fn checked(bucket: &str, key: &str) -> Result<(), ObjectError> {
    checked_bucket(bucket)?;
    check_key(key).map_err(|why| {
        ObjectError::new(
            ObjectErrorKind::BadName,
            format!("s3://{bucket}/{key}: {why}"),
        )
    })
}

/// The part of `0..size` that `range` asks for.
fn clamp(range: &Range<u64>, size: u64) -> Range<u64> {
    let start = range.start.min(size);
    start..range.end.clamp(start, size)
}

pub mod conformance;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let u = ObjectUrl::parse("s3://my-bucket/a/b.csv").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("my-bucket", "a/b.csv")
        );
        assert_eq!(ObjectUrl::parse("s3://bkt").unwrap().key, "");
        assert_eq!(ObjectUrl::parse("s3://bkt/in/").unwrap().key, "in/");
        // S3's keys, as S3 keeps them.
        assert_eq!(ObjectUrl::parse("s3://inbox//x.csv").unwrap().key, "/x.csv");
        assert_eq!(ObjectUrl::parse("s3://bkt/a/../x").unwrap().key, "a/../x");
        for (bad, says) in [
            ("http://b/k", "does not start with s3://"),
            ("s3://B/k", "bucket name"),
            ("s3://ab/k", "bucket name"),
            ("s3://bkt/a\u{7}", "control characters"),
            ("s3://../etc", "bucket name"),
        ] {
            let err = ObjectUrl::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn ranges_clamp_to_the_object() {
        assert_eq!(clamp(&(0..u64::MAX), 10), 0..10);
        assert_eq!(clamp(&(4..6), 10), 4..6);
        assert_eq!(clamp(&(12..20), 10), 10..10);
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 8..3;
        assert_eq!(clamp(&backwards, 10), 8..8);
    }
}
