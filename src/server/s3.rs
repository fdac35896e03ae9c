/*!
S3 on the server's port: requests signed for the service `s3` (path-style
or virtual-host style) are S3 calls on the same buckets that Pinpoint
import jobs and Import/Export jobs read and write ([`crate::objects`]).

The protocol — routing, SigV4 (headers, presigned URLs, `aws-chunked`
bodies with their trailing checksums), XML in and out, S3's errors — is
[`s3s`]'s; this module is the operations, over the object port:

* bodies stream both ways through a bounded channel to a blocking thread
  that holds the port's reader or writer, so an object of any size moves
  in a few chunks of memory, and an object is visible only when its whole
  body arrived and matched the checksums the client sent (`Content-MD5`,
  `x-amz-checksum-*` in headers or trailers);
* multipart uploads keep their parts in the data directory
  (`s3-multipart/<upload id>/`): part N in one spool file from (N - 1) ×
  the slot size (the size of the first part that can be one), or in a
  file of its own when it cannot (no slot size yet, a bigger part, its
  slot taken by an earlier upload of the same number). An upload numbered
  1, 2, … whose parts but the last are the slot size — what the aws CLI
  and the SDKs send — is then the object already: CompleteMultipartUpload
  cuts the spool to length and moves it into the bucket (the port's
  `adopt`) instead of writing the object a second time, which halved the
  server's CPU per GiB. Anything else is copied into a new object through
  the port. The ETag is in S3's shape: the MD5 of the parts' tags, `-N`; a
  part's tag is its CRC64-NVME and size, which costs a tenth of an MD5's
  CPU.
*/

use std::io::{Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};
use s3s::dto::{
    AbortMultipartUploadInput, AbortMultipartUploadOutput, Bucket, Checksum, CommonPrefix,
    CompleteMultipartUploadInput, CompleteMultipartUploadOutput, CopyObjectInput, CopyObjectOutput,
    CopyObjectResult, CopySource, CreateBucketInput, CreateBucketOutput,
    CreateMultipartUploadInput, CreateMultipartUploadOutput, DeleteBucketInput, DeleteBucketOutput,
    DeleteObjectInput, DeleteObjectOutput, DeleteObjectsInput, DeleteObjectsOutput, DeletedObject,
    ETag, GetBucketLocationInput, GetBucketLocationOutput, GetObjectInput, GetObjectOutput,
    HeadBucketInput, HeadBucketOutput, HeadObjectInput, HeadObjectOutput, ListBucketsInput,
    ListBucketsOutput, ListObjectsInput, ListObjectsOutput, ListObjectsV2Input,
    ListObjectsV2Output, ListPartsInput, ListPartsOutput, Object, Part, PutObjectInput,
    PutObjectOutput, StreamingBlob, Timestamp, UploadPartInput, UploadPartOutput,
};
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::objects::{
    LocalFolder, ObjectAttributes, ObjectError, ObjectErrorKind, ObjectInfo, ObjectWriter, Objects,
    copy,
};

use super::credentials::Credentials;
use crate::crypto::to_hex;
use crate::store::{AccountId, Store};

/// The most keys a listing gives at once (S3's limit too).
const MAX_KEYS: usize = 1000;

/// Chunks of a body in flight between the connection and the blocking
/// thread that reads or writes the object.
const CHUNKS_IN_FLIGHT: usize = 4;

/// Bytes per chunk of a GET body.
const READ_CHUNK: usize = 256 * 1024;

/// S3's smallest part, but the last.
const MIN_PART_BYTES: u64 = 5 << 20;

/// S3's greatest part number.
const MAX_PART_NUMBER: i32 = 10_000;

/// Whose buckets are: bucket names are one namespace, and a bucket belongs
/// to the account that made it through S3 (recorded in the store); one
/// with no such record (made by `sluice bucket mb`, or before accounts) to
/// the default account ([`crate::store::bucket_owner`]), as for the other
/// services. Another account gets S3's `AccessDenied`. Keys without an
/// account act for `default_account`.
#[derive(Clone)]
pub(crate) struct Owners {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) objects: Arc<dyn Objects>,
    pub(crate) credentials: Credentials,
    pub(crate) default_account: AccountId,
}

impl Owners {
    /// The account of an access key.
    fn account_of(&self, key: Option<&str>) -> AccountId {
        key.and_then(|k| self.credentials.account(k))
            .unwrap_or(&self.default_account)
            .clone()
    }

    /// The account of the key that signed a request.
    fn caller<T>(&self, req: &S3Request<T>) -> AccountId {
        self.account_of(req.credentials.as_ref().map(|c| c.access_key.as_str()))
    }

    /// Whose a bucket is ([`crate::store::bucket_owner`]).
    fn owner(store: &dyn Store, bucket: &str) -> Result<AccountId, S3Error> {
        crate::store::bucket_owner(store, bucket).map_err(|e| s3_error!(InternalError, "{e}"))
    }

    /// Ok when `account` may use `bucket`; `NoSuchBucket` when there is no
    /// such bucket, `AccessDenied` when it is another account's.
    async fn check(&self, account: &AccountId, bucket: &str) -> S3Result<()> {
        let (me, bucket) = (self.clone(), bucket.to_owned());
        let account = account.clone();
        blocking(move || {
            if Owners::owner(me.store.as_ref(), &bucket)? == account {
                return Ok(());
            }
            if !me.objects.bucket_exists(&bucket).map_err(s3_err)? {
                return Err(s3_error!(
                    NoSuchBucket,
                    "The specified bucket does not exist"
                ));
            }
            Err(s3_error!(AccessDenied, "Access Denied"))
        })
        .await
    }
}

/// The S3 operations over the object port. See the [module documentation](self).
pub(crate) struct S3Front {
    owners: Owners,
    /// Where multipart uploads keep their parts.
    multipart: PathBuf,
    /// The largest object or part a request may put.
    max_object_bytes: u64,
}

impl S3Front {
    pub(crate) fn new(owners: Owners, multipart: PathBuf, max_object_bytes: u64) -> S3Front {
        S3Front {
            owners,
            multipart,
            max_object_bytes,
        }
    }

    /// Runs a call on the object port on a blocking thread.
    async fn port<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Objects) -> Result<T, ObjectError> + Send + 'static,
    ) -> S3Result<T> {
        let objects = Arc::clone(&self.owners.objects);
        blocking(move || f(objects.as_ref()).map_err(s3_err)).await
    }

    /// `NoSuchBucket` unless the bucket exists.
    async fn existing(&self, bucket: String) -> S3Result<()> {
        if self.port(move |o| o.bucket_exists(&bucket)).await? {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }

    /// One page of a bucket's listing, as both ListObjects answer it.
    async fn listing(
        &self,
        bucket: &str,
        prefix: Option<String>,
        delimiter: Option<&str>,
        after: Option<&str>,
        max_keys: Option<i32>,
        encoding: Option<&s3s::dto::EncodingType>,
    ) -> S3Result<Listing> {
        let prefix = prefix.unwrap_or_default();
        let all = {
            let (bucket, prefix) = (bucket.to_owned(), prefix.clone());
            self.port(move |o| o.list(&bucket, &prefix)).await?
        };
        let max = max_keys_of(max_keys);
        let p = page(all, &prefix, delimiter, after, max);
        let url = encoding.is_some_and(|e| e.as_str() == "url");
        let key_count = p.objects.len() + p.prefixes.len();
        Ok(Listing {
            prefix: encode(prefix, url),
            url,
            max_keys: i32::try_from(max).unwrap_or(1000),
            key_count: i32::try_from(key_count).unwrap_or(i32::MAX),
            next: p.next,
            contents: p
                .objects
                .into_iter()
                .map(|o| Object {
                    e_tag: etag(&o),
                    last_modified: timestamp(o.modified_ms),
                    size: Some(length(o.size)),
                    key: Some(encode(o.key, url)),
                    ..Object::default()
                })
                .collect(),
            common_prefixes: p
                .prefixes
                .into_iter()
                .map(|p| CommonPrefix {
                    prefix: Some(encode(p, url)),
                })
                .collect(),
        })
    }

    /// The folder of an upload's parts, when the upload exists and is for
    /// this bucket and key.
    async fn upload(&self, bucket: &str, key: &str, id: &str) -> S3Result<LocalFolder> {
        let no_upload = || {
            s3_error!(
                NoSuchUpload,
                "The specified multipart upload does not exist: {id}"
            )
        };
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(no_upload());
        }
        let folder = LocalFolder::new(self.multipart.join(id));
        let meta = {
            let folder = folder.clone();
            blocking(move || Ok(read_small(&folder, UPLOAD_META).ok())).await?
        };
        let meta: UploadMeta = meta
            .and_then(|m| serde_json::from_slice(&m).ok())
            .ok_or_else(no_upload)?;
        if meta.bucket != bucket || meta.key != key {
            return Err(no_upload());
        }
        Ok(folder)
    }
}

/// What an upload was started for (`s3-multipart/<id>/upload.json`).
#[derive(serde::Serialize, serde::Deserialize)]
struct UploadMeta {
    bucket: String,
    key: String,
    content_type: Option<String>,
    initiated_ms: i64,
}

const UPLOAD_META: &str = "upload.json";

fn part_key(n: i32) -> String {
    format!("part-{n:05}")
}

fn read_small(folder: &LocalFolder, key: &str) -> Result<Vec<u8>, ObjectError> {
    let mut out = Vec::new();
    folder
        .read(key, 0..u64::MAX)?
        .read_to_end(&mut out)
        .map_err(|e| ObjectError::backend(format!("reading {key}"), e))?;
    Ok(out)
}

fn write_small(folder: &LocalFolder, key: &str, bytes: &[u8]) -> Result<(), ObjectError> {
    let mut w = folder.write(key)?;
    w.write_all(bytes)
        .map_err(|e| ObjectError::backend(format!("writing {key}"), e))?;
    Box::new(w).finish().map(|_| ())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> S3Result<T> + Send + 'static,
) -> S3Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| s3_error!(InternalError, "{e}"))?
}

/// S3's error for an object port's.
fn s3_err(e: ObjectError) -> S3Error {
    let code = match e.kind {
        ObjectErrorKind::NoSuchBucket => S3ErrorCode::NoSuchBucket,
        ObjectErrorKind::NoSuchKey => S3ErrorCode::NoSuchKey,
        ObjectErrorKind::BucketExists => S3ErrorCode::BucketAlreadyOwnedByYou,
        ObjectErrorKind::BucketNotEmpty => S3ErrorCode::BucketNotEmpty,
        ObjectErrorKind::BadName | ObjectErrorKind::Refused => S3ErrorCode::InvalidArgument,
        ObjectErrorKind::Backend => S3ErrorCode::InternalError,
    };
    S3Error::with_message(code, e.message)
}

fn timestamp(ms: Option<i64>) -> Option<Timestamp> {
    let ms = u64::try_from(ms?).ok()?;
    Some(Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms)))
}

fn etag(info: &ObjectInfo) -> Option<ETag> {
    info.etag.clone().map(ETag::Strong)
}

fn length(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The checksums a body must match: the ones the client sent (headers
/// now, trailers when the body has ended) and `Content-MD5`.
struct Checks {
    hasher: s3s::checksum::ChecksumHasher,
    expected: Checksum,
    md5: Option<(Md5, String)>,
}

impl Checks {
    /// From a request's CRC32, CRC32C, SHA1, SHA256 and CRC64NVME members.
    fn new(
        given: [Option<String>; 5],
        algorithm: Option<&str>,
        content_md5: Option<String>,
    ) -> Checks {
        let [crc32, crc32c, sha1, sha256, crc64nvme] = given;
        let expected = Checksum {
            checksum_crc32: crc32,
            checksum_crc32c: crc32c,
            checksum_sha1: sha1,
            checksum_sha256: sha256,
            checksum_crc64nvme: crc64nvme,
            ..Checksum::default()
        };
        let mut hasher = s3s::checksum::ChecksumHasher::default();
        let wants = |given: bool, name: &str| given || algorithm == Some(name);
        if wants(expected.checksum_crc32.is_some(), "CRC32") {
            hasher.crc32 = Some(Default::default());
        }
        if wants(expected.checksum_crc32c.is_some(), "CRC32C") {
            hasher.crc32c = Some(Default::default());
        }
        if wants(expected.checksum_sha1.is_some(), "SHA1") {
            hasher.sha1 = Some(Default::default());
        }
        if wants(expected.checksum_sha256.is_some(), "SHA256") {
            hasher.sha256 = Some(Default::default());
        }
        if wants(expected.checksum_crc64nvme.is_some(), "CRC64NVME") {
            hasher.crc64nvme = Some(Default::default());
        }
        Checks {
            hasher,
            expected,
            md5: content_md5.map(|m| (Md5::new(), m)),
        }
    }

    fn update(&mut self, b: &[u8]) {
        self.hasher.update(b);
        if let Some((h, _)) = &mut self.md5 {
            h.update(b);
        }
    }

    /// Compares; trailers (sent after an `aws-chunked` body) fill what
    /// the headers did not say.
    fn verify(self, trailers: Option<&s3s::TrailingHeaders>) -> S3Result<()> {
        let mut expected = self.expected;
        if let Some(t) = trailers {
            let _ = t.read(|h| {
                let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
                expected.checksum_crc32 = expected
                    .checksum_crc32
                    .take()
                    .or(get("x-amz-checksum-crc32"));
                expected.checksum_crc32c = expected
                    .checksum_crc32c
                    .take()
                    .or(get("x-amz-checksum-crc32c"));
                expected.checksum_sha1 =
                    expected.checksum_sha1.take().or(get("x-amz-checksum-sha1"));
                expected.checksum_sha256 = expected
                    .checksum_sha256
                    .take()
                    .or(get("x-amz-checksum-sha256"));
                expected.checksum_crc64nvme = expected
                    .checksum_crc64nvme
                    .take()
                    .or(get("x-amz-checksum-crc64nvme"));
            });
        }
        let got = self.hasher.finalize();
        let pairs = [
            ("CRC32", &expected.checksum_crc32, &got.checksum_crc32),
            ("CRC32C", &expected.checksum_crc32c, &got.checksum_crc32c),
            ("SHA1", &expected.checksum_sha1, &got.checksum_sha1),
            ("SHA256", &expected.checksum_sha256, &got.checksum_sha256),
            (
                "CRC64NVME",
                &expected.checksum_crc64nvme,
                &got.checksum_crc64nvme,
            ),
        ];
        for (name, want, got) in pairs {
            if let (Some(want), Some(got)) = (want, got)
                && want != got
            {
                return Err(s3_error!(
                    BadDigest,
                    "The {name} you specified did not match the calculated checksum."
                ));
            }
        }
        if let Some((h, want)) = self.md5 {
            let got = crate::crypto::to_base64(&h.finalize());
            if got != want {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        Ok(())
    }
}

enum Chunk {
    /// Network frames as they came, about [`WRITE_CHUNK`] of them.
    Data(Vec<Bytes>),
    Finish,
}

/// What a body became.
struct Received {
    info: ObjectInfo,
    size: u64,
    /// CRC64-NVME and size in hex: a part's ETag (an MD5 would cost more
    /// CPU than everything else a part takes; clients only compare it).
    tag: String,
}

/// Bytes gathered (not copied) before they go to the writer: one wake-up
/// per MiB, not per network frame.
const WRITE_CHUNK: usize = 1 << 20;

/// Streams a request body into `writer` (on a blocking thread), checking
/// it against `checks`; the object is finished only when all of it came
/// and matched. Anything else drops the writer, which leaves nothing.
async fn receive(
    body: Option<StreamingBlob>,
    writer: Box<dyn ObjectWriter>,
    mut checks: Checks,
    trailers: Option<s3s::TrailingHeaders>,
    limit: u64,
) -> S3Result<Received> {
    use s3s::crypto::Checksum as _;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let task = tokio::task::spawn_blocking(move || -> Result<ObjectInfo, ObjectError> {
        let mut w = writer;
        while let Some(c) = rx.blocking_recv() {
            match c {
                Chunk::Data(frames) => {
                    for b in frames {
                        w.write_all(&b)
                            .map_err(|e| ObjectError::backend("writing the object", e))?;
                    }
                }
                Chunk::Finish => return w.finish(),
            }
        }
        Err(ObjectError::backend(
            "receiving the object",
            "the body was not whole",
        ))
    });
    let mut crc = s3s::crypto::Crc64Nvme::default();
    let mut size = 0u64;
    let sent: S3Result<bool> = async {
        let (mut gathered, mut gathered_len) = (Vec::new(), 0);
        if let Some(mut body) = body {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    s3_error!(
                        IncompleteBody,
                        "The request body could not be read whole: {e}"
                    )
                })?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(s3_error!(
                        EntityTooLarge,
                        "Your proposed upload exceeds the maximum allowed object size ({limit} bytes)."
                    ));
                }
                checks.update(&chunk);
                crc.update(&chunk);
                gathered_len += chunk.len();
                gathered.push(chunk);
                if gathered_len >= WRITE_CHUNK {
                    gathered_len = 0;
                    let full = std::mem::take(&mut gathered);
                    if tx.send(Chunk::Data(full)).await.is_err() {
                        // The writer failed: its error says why.
                        return Ok(false);
                    }
                }
            }
        }
        checks.verify(trailers.as_ref())?;
        if !gathered.is_empty() && tx.send(Chunk::Data(gathered)).await.is_err() {
            return Ok(false);
        }
        Ok(tx.send(Chunk::Finish).await.is_ok())
    }
    .await;
    // Without Finish, the writer is dropped: nothing is left.
    drop(tx);
    let written = task.await.map_err(|e| s3_error!(InternalError, "{e}"))?;
    sent?;
    let info = written.map_err(s3_err)?;
    Ok(Received {
        info,
        size,
        tag: format!("{}{size:016x}", to_hex(&crc.finalize())),
    })
}

/// A GET body: a blocking thread reads the object and sends its chunks.
struct ReadStream {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl futures_util::Stream for ReadStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

fn stream_reader(mut reader: Box<dyn Read + Send>) -> StreamingBlob {
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            let item = match reader.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(Bytes::from(buf))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // The client went away: stop reading.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    StreamingBlob::wrap(ReadStream { rx })
}

fn content_type_of(attributes: Option<String>) -> ObjectAttributes {
    ObjectAttributes {
        content_type: attributes,
        ..ObjectAttributes::default()
    }
}

/// A listing's token: the last key (or common prefix) given, in hex.
fn token(after: &str) -> String {
    to_hex(after.as_bytes())
}

fn untoken(t: &str) -> S3Result<String> {
    unhex(t)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3_error!(
                InvalidArgument,
                "The continuation token provided is incorrect"
            )
        })
}

/// One page of a listing, S3's way: keys after `after` (a common prefix
/// given before is skipped whole), rolled up at `delimiter`.
struct Page {
    objects: Vec<ObjectInfo>,
    prefixes: Vec<String>,
    /// Where the next page starts, when there is one.
    next: Option<String>,
}

fn page(
    all: Vec<ObjectInfo>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Page {
    let mut out = Page {
        objects: Vec::new(),
        prefixes: Vec::new(),
        next: None,
    };
    let delimiter = delimiter.filter(|d| !d.is_empty());
    let mut last: Option<String> = None;
    for o in all {
        if !o.key.starts_with(prefix) {
            continue;
        }
        if let Some(a) = after {
            let rolled = delimiter.is_some_and(|d| a.ends_with(d)) && o.key.starts_with(a);
            if o.key.as_str() <= a || rolled {
                continue;
            }
        }
        let rolled_up = delimiter.and_then(|d| {
            let rest = o.key.get(prefix.len()..)?;
            rest.find(d)
                .map(|i| o.key[..prefix.len() + i + d.len()].to_owned())
        });
        if let Some(p) = &rolled_up
            && out.prefixes.last() == Some(p)
        {
            continue;
        }
        if out.objects.len() + out.prefixes.len() == max {
            out.next = last;
            return out;
        }
        match rolled_up {
            Some(p) => {
                last = Some(p.clone());
                out.prefixes.push(p);
            }
            None => {
                last = Some(o.key.clone());
                out.objects.push(o);
            }
        }
    }
    out
}

/// A key, prefix or delimiter as the listing encodes it: percent-encoded
/// when the client asked for `encoding-type=url` (the aws CLI does), so
/// that any key survives XML.
fn encode(s: String, url: bool) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    if url {
        utf8_percent_encode(&s, KEEP).to_string()
    } else {
        s
    }
}

/// A listing's page, its keys and prefixes encoded as asked.
struct Listing {
    prefix: String,
    url: bool,
    max_keys: i32,
    key_count: i32,
    next: Option<String>,
    contents: Vec<Object>,
    common_prefixes: Vec<CommonPrefix>,
}

fn max_keys_of(asked: Option<i32>) -> usize {
    asked.map_or(MAX_KEYS, |n| usize::try_from(n).unwrap_or(0).min(MAX_KEYS))
}

#[async_trait::async_trait]
impl S3 for S3Front {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let me = self.owners.caller(&req);
        let owners = self.owners.clone();
        let buckets = self.port(|o| o.list_buckets()).await?;
        // Only the caller's.
        let buckets = blocking(move || {
            let mut mine = Vec::new();
            for b in buckets {
                let owner = Owners::owner(owners.store.as_ref(), &b.name)?;
                if owner == me {
                    mine.push(b);
                }
            }
            Ok(mine)
        })
        .await?;
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(
                buckets
                    .into_iter()
                    .map(|b| Bucket {
                        creation_date: timestamp(b.created_ms),
                        name: Some(b.name),
                        ..Bucket::default()
                    })
                    .collect(),
            ),
            ..ListBucketsOutput::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let me = self.owners.caller(&req);
        let bucket = req.input.bucket;
        let location = format!("/{bucket}");
        let made = {
            let bucket = bucket.clone();
            self.port(move |o| o.create_bucket(&bucket)).await
        };
        if let Err(e) = &made
            && *e.code() == S3ErrorCode::BucketAlreadyOwnedByYou
        {
            let owners = self.owners.clone();
            let (b, me) = (bucket.clone(), me.clone());
            let owner = blocking(move || Owners::owner(owners.store.as_ref(), &b)).await?;
            if owner != me {
                return Err(s3_error!(
                    BucketAlreadyExists,
                    "The requested bucket name is not available. The bucket namespace is shared \
                     by all users of the system. Please select a different name and try again."
                ));
            }
        }
        // Whose it is: recorded once made.
        if made.is_ok() {
            let store = Arc::clone(&self.owners.store);
            let settings = crate::store::BucketSettings {
                bucket: bucket.clone(),
                region: None,
                owner: None,
            };
            blocking(move || {
                store
                    .set_bucket_settings(&me, &settings)
                    .map_err(|e| s3_error!(InternalError, "{e}"))
            })
            .await?;
        }
        made.map_err(|e| {
            if *e.code() == S3ErrorCode::InvalidArgument {
                S3Error::with_message(
                    S3ErrorCode::InvalidBucketName,
                    e.message()
                        .unwrap_or("The specified bucket is not valid.")
                        .to_owned(),
                )
            } else {
                e
            }
        })?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(location),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.existing(req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.existing(req.input.bucket).await?;
        // us-east-1 is the empty constraint.
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = req.input.bucket;
        {
            let bucket = bucket.clone();
            self.port(move |o| o.delete_bucket(&bucket)).await?;
        }
        let store = Arc::clone(&self.owners.store);
        blocking(move || {
            for a in store
                .bucket_accounts(&bucket)
                .map_err(|e| s3_error!(InternalError, "{e}"))?
            {
                store
                    .forget_bucket(&a, &bucket)
                    .map_err(|e| s3_error!(InternalError, "{e}"))?;
            }
            Ok(())
        })
        .await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let after = match &input.continuation_token {
            Some(t) => Some(untoken(t)?),
            None => input.start_after.clone(),
        };
        let l = self
            .listing(
                &input.bucket,
                input.prefix.clone(),
                input.delimiter.as_deref(),
                after.as_deref(),
                input.max_keys,
                input.encoding_type.as_ref(),
            )
            .await?;
        let url = l.url;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(l.prefix),
            delimiter: input.delimiter.map(|d| encode(d, url)),
            start_after: input.start_after.map(|s| encode(s, url)),
            max_keys: Some(l.max_keys),
            key_count: Some(l.key_count),
            continuation_token: input.continuation_token,
            is_truncated: Some(l.next.is_some()),
            next_continuation_token: l.next.as_deref().map(token),
            encoding_type: input.encoding_type,
            contents: Some(l.contents),
            common_prefixes: Some(l.common_prefixes),
            ..ListObjectsV2Output::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let l = self
            .listing(
                &input.bucket,
                input.prefix.clone(),
                input.delimiter.as_deref(),
                input.marker.as_deref(),
                input.max_keys,
                input.encoding_type.as_ref(),
            )
            .await?;
        let (url, is_truncated) = (l.url, l.next.is_some());
        // S3 gives NextMarker only with a delimiter; without one the
        // client takes the last key.
        let next_marker = l.next.filter(|_| input.delimiter.is_some());
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(l.prefix),
            delimiter: input.delimiter.map(|d| encode(d, url)),
            marker: input.marker.map(|m| encode(m, url)),
            max_keys: Some(l.max_keys),
            is_truncated: Some(is_truncated),
            next_marker: next_marker.map(|m| encode(m, url)),
            encoding_type: input.encoding_type,
            contents: Some(l.contents),
            common_prefixes: Some(l.common_prefixes),
            ..ListObjectsOutput::default()
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailers = req.trailing_headers;
        let input = req.input;
        let checks = Checks::new(
            [
                input.checksum_crc32.clone(),
                input.checksum_crc32c.clone(),
                input.checksum_sha1.clone(),
                input.checksum_sha256.clone(),
                input.checksum_crc64nvme.clone(),
            ],
            input.checksum_algorithm.as_ref().map(|a| a.as_str()),
            input.content_md5.clone(),
        );
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let attributes = content_type_of(input.content_type.clone());
        let writer = self
            .port(move |o| o.write(&bucket, &key, &attributes))
            .await?;
        let r = receive(input.body, writer, checks, trailers, self.max_object_bytes).await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: etag(&r.info),
            size: Some(length(r.size)),
            ..PutObjectOutput::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let info = self.port(move |o| o.head(&bucket, &key)).await?;
        let (range, content_range): (Range<u64>, Option<String>) = match &input.range {
            None => (0..info.size, None),
            Some(r) => {
                let r = r.check(info.size).map_err(|_| {
                    s3_error!(InvalidRange, "The requested range is not satisfiable")
                })?;
                let shown = format!(
                    "bytes {}-{}/{}",
                    r.start,
                    r.end.saturating_sub(1),
                    info.size
                );
                (r, Some(shown))
            }
        };
        let (bucket, key) = (input.bucket, input.key);
        let len = range.end - range.start;
        let reader = self.port(move |o| o.read(&bucket, &key, range)).await?;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(stream_reader(reader)),
            content_length: Some(length(len)),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: etag(&info),
            last_modified: timestamp(info.modified_ms),
            ..GetObjectOutput::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let (bucket, key) = (req.input.bucket, req.input.key);
        let info = self.port(move |o| o.head(&bucket, &key)).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(length(info.size)),
            accept_ranges: Some("bytes".into()),
            e_tag: etag(&info),
            last_modified: timestamp(info.modified_ms),
            ..HeadObjectOutput::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket, req.input.key);
        self.port(move |o| o.delete(&bucket, &key)).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let input = req.input;
        let quiet = input.delete.quiet.unwrap_or(false);
        let bucket = input.bucket;
        let keys: Vec<String> = input.delete.objects.into_iter().map(|o| o.key).collect();
        if keys.len() > MAX_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "A delete request names at most {MAX_KEYS} keys"
            ));
        }
        let results = self
            .port(move |o| {
                if !o.bucket_exists(&bucket)? {
                    return Err(ObjectError::no_bucket(&bucket));
                }
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        let r = o.delete(&bucket, &k);
                        (k, r)
                    })
                    .collect::<Vec<_>>())
            })
            .await?;
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for (key, r) in results {
            match r {
                Ok(()) => {
                    if !quiet {
                        deleted.push(DeletedObject {
                            key: Some(key),
                            ..DeletedObject::default()
                        });
                    }
                }
                Err(e) => {
                    let code = s3_err(e.clone()).code().as_str().to_owned();
                    errors.push(s3s::dto::Error {
                        code: Some(code),
                        key: Some(key),
                        message: Some(e.message),
                        ..s3s::dto::Error::default()
                    });
                }
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let me = self.owners.caller(&req);
        let input = req.input;
        let CopySource::Bucket {
            bucket: from_bucket,
            key: from_key,
            ..
        } = input.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Copying from an access point is not supported"
            ));
        };
        self.owners.check(&me, &from_bucket).await?;
        let (bucket, key) = (input.bucket, input.key);
        let attributes = content_type_of(input.content_type);
        let info = self
            .port(move |o| {
                let size = o.head(&from_bucket, &from_key)?.size;
                let mut reader = o.read(&from_bucket, &from_key, 0..size)?;
                let mut writer = o.write(&bucket, &key, &attributes)?;
                copy(&mut reader, &mut writer).map_err(|e| {
                    ObjectError::backend(format!("copying to s3://{bucket}/{key}"), e)
                })?;
                writer.finish()
            })
            .await?;
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: etag(&info),
                last_modified: timestamp(info.modified_ms),
                ..CopyObjectResult::default()
            }),
            ..CopyObjectOutput::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        // The key is checked now, as the object's write would.
        {
            let (bucket, key) = (bucket.clone(), key.clone());
            self.port(move |o| {
                if !o.bucket_exists(&bucket)? {
                    return Err(ObjectError::no_bucket(&bucket));
                }
                crate::objects::check_key(&key)
                    .map_err(|m| ObjectError::new(ObjectErrorKind::BadName, m))
            })
            .await?;
        }
        let id = to_hex(&crate::crypto::random::<16>());
        let meta = UploadMeta {
            bucket: bucket.clone(),
            key: key.clone(),
            content_type: input.content_type,
            initiated_ms: (crate::job::system_clock())(),
        };
        let json = serde_json::to_vec(&meta).map_err(|e| s3_error!(InternalError, "{e}"))?;
        let dir = self.multipart.join(&id);
        blocking(move || {
            crate::crypto::create_private_dir_all(&dir)
                .map_err(|e| s3_error!(InternalError, "{}: {e}", dir.display()))?;
            write_small(&LocalFolder::new(dir), UPLOAD_META, &json).map_err(s3_err)
        })
        .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(bucket),
            key: Some(key),
            upload_id: Some(id),
            ..CreateMultipartUploadOutput::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers;
        let req_decoded_length = req
            .headers
            .get("x-amz-decoded-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let input = req.input;
        if !(1..=MAX_PART_NUMBER).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
            ));
        }
        let folder = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let checks = Checks::new(
            [
                input.checksum_crc32.clone(),
                input.checksum_crc32c.clone(),
                input.checksum_sha1.clone(),
                input.checksum_sha256.clone(),
                input.checksum_crc64nvme.clone(),
            ],
            input.checksum_algorithm.as_ref().map(|a| a.as_str()),
            input.content_md5.clone(),
        );
        let n = input.part_number;
        // What the part will be: the decoded length of an aws-chunked body.
        let declared =
            req_decoded_length.or(input.content_length.and_then(|l| u64::try_from(l).ok()));
        let limit = self.max_object_bytes;
        let (writer, slot): (Box<dyn ObjectWriter>, bool) = {
            let folder = folder.clone();
            blocking(move || {
                Ok(match claim_slot(&folder, n, declared, limit)? {
                    Some((offset, size)) => (
                        Box::new(folder.write_at(SPOOL, offset, size).map_err(s3_err)?)
                            as Box<dyn ObjectWriter>,
                        true,
                    ),
                    None => (
                        Box::new(folder.write(&part_key(n)).map_err(s3_err)?)
                            as Box<dyn ObjectWriter>,
                        false,
                    ),
                })
            })
            .await?
        };
        let r = receive(input.body, writer, checks, trailers, self.max_object_bytes).await?;
        // The part's ETag (and for a part in the spool, its size), kept
        // beside it: a part is there once this is.
        {
            let (record, body) = if slot {
                (slot_key(n), format!("{} {}", r.tag, r.size))
            } else {
                (format!("{}.etag", part_key(n)), r.tag.clone())
            };
            blocking(move || write_small(&folder, &record, body.as_bytes()).map_err(s3_err))
                .await?;
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(r.tag)),
            ..UploadPartOutput::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let folder = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let (parts, _) = blocking(move || parts_of(&folder)).await?;
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            is_truncated: Some(false),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| Part {
                        part_number: Some(p.number),
                        size: Some(length(p.size)),
                        e_tag: Some(ETag::Strong(p.tag)),
                        last_modified: timestamp(p.modified_ms),
                        ..Part::default()
                    })
                    .collect(),
            ),
            ..ListPartsOutput::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let folder = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        blocking(move || {
            std::fs::remove_dir_all(folder.dir())
                .map_err(|e| s3_error!(InternalError, "{}: {e}", folder.dir().display()))
        })
        .await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let input = req.input;
        let folder = self
            .upload(&input.bucket, &input.key, &input.upload_id)
            .await?;
        let asked: Vec<(i32, Option<String>)> = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.part_number.unwrap_or(0), p.e_tag.map(ETag::into_value)))
            .collect();
        if asked.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part"
            ));
        }
        if asked.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(s3_error!(
                InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number."
            ));
        }
        let meta: UploadMeta = {
            let folder = folder.clone();
            let bytes = blocking(move || read_small(&folder, UPLOAD_META).map_err(s3_err)).await?;
            serde_json::from_slice(&bytes).map_err(|e| s3_error!(InternalError, "{e}"))?
        };
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        let attributes = content_type_of(meta.content_type);
        let objects = Arc::clone(&self.owners.objects);
        let tag = blocking(move || {
            let (have, slot) = parts_of(&folder)?;
            let mut chosen = Vec::with_capacity(asked.len());
            for (i, (n, tag)) in asked.iter().enumerate() {
                let found = have.iter().find(|p| p.number == *n);
                let Some(p) = found.filter(|p| tag.as_ref().is_none_or(|t| *t == p.tag)) else {
                    return Err(s3_error!(
                        InvalidPart,
                        "One or more of the specified parts could not be found: part {n}"
                    ));
                };
                if i + 1 < asked.len() && p.size < MIN_PART_BYTES {
                    return Err(s3_error!(
                        EntityTooSmall,
                        "Your proposed upload is smaller than the minimum allowed size: part {n} has {} bytes",
                        p.size
                    ));
                }
                chosen.push(p);
            }
            assemble(&folder, &chosen, slot, &*objects, &bucket, &key, &attributes)?;
            let mut md5s = Md5::new();
            for p in &chosen {
                md5s.update(unhex(&p.tag).unwrap_or_default());
            }
            // Done: the parts go.
            let _ = std::fs::remove_dir_all(folder.dir());
            Ok(format!("{}-{}", to_hex(&md5s.finalize()), chosen.len()))
        })
        .await?;
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(ETag::Strong(tag)),
            ..CompleteMultipartUploadOutput::default()
        }))
    }
}

/// A part on disk: a file of its own, or a slot of the spool.
struct StoredPart {
    number: i32,
    tag: String,
    size: u64,
    modified_ms: Option<i64>,
    at: PartAt,
}

enum PartAt {
    /// The file `part-NNNNN`.
    File(String),
    /// The spool, from this offset.
    Spool(u64),
}

/// The parts of an upload, and its slot size. A part number uploaded
/// again went to a file of its own (its slot was taken), so a file is
/// always the newer one.
fn parts_of(folder: &LocalFolder) -> S3Result<(Vec<StoredPart>, Option<u64>)> {
    let (files, _) = folder.walk().map_err(s3_err)?;
    let slot = slot_size(folder, None)?;
    let mut out: Vec<StoredPart> = Vec::new();
    for f in &files {
        if let Some(n) = f
            .key
            .strip_prefix("part-")
            .and_then(|n| n.parse::<i32>().ok())
        {
            // A part without its ETag was cut off between the two: not there.
            let Ok(tag) = read_small(folder, &format!("{}.etag", f.key)) else {
                continue;
            };
            out.retain(|p| p.number != n);
            out.push(StoredPart {
                number: n,
                tag: String::from_utf8_lossy(&tag).into_owned(),
                size: f.size,
                modified_ms: f.modified_ms,
                at: PartAt::File(f.key.clone()),
            });
        } else if let Some(n) = f
            .key
            .strip_prefix("slot-")
            .and_then(|n| n.parse::<i32>().ok())
            && let Some(slot) = slot
            && !out.iter().any(|p| p.number == n)
        {
            let record = read_small(folder, &f.key).map_err(s3_err)?;
            let record = String::from_utf8_lossy(&record);
            let Some((tag, size)) = record.split_once(' ') else {
                continue;
            };
            let Ok(size) = size.parse::<u64>() else {
                continue;
            };
            out.push(StoredPart {
                number: n,
                tag: tag.to_owned(),
                size,
                modified_ms: f.modified_ms,
                at: PartAt::Spool((n as u64 - 1) * slot),
            });
        }
    }
    out.sort_by_key(|p| p.number);
    Ok((out, slot))
}

/// The spool: one file of the upload where part N is written from
/// (N - 1) × the slot size, so that an upload whose parts are numbered
/// 1, 2, … and are all the slot size but the last (what the aws CLI and
/// the SDKs send) is already the object, moved into its bucket when
/// completed instead of copied there.
const SPOOL: &str = "spool";
const SLOT_SIZE: &str = "slot-size";

fn slot_key(n: i32) -> String {
    format!("slot-{n:05}")
}

/// The upload's slot size: decided by the first part that comes with a
/// length that can be one (at least the smallest part, whole blocks),
/// when `offer` is one; `None` when there is none.
fn slot_size(folder: &LocalFolder, offer: Option<u64>) -> S3Result<Option<u64>> {
    let path = folder.dir().join(SLOT_SIZE);
    let read = |path: &std::path::Path| -> S3Result<Option<u64>> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(s.trim().parse().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(s3_error!(InternalError, "{}: {e}", path.display())),
        }
    };
    if let Some(size) = read(&path)? {
        return Ok(Some(size));
    }
    let Some(offer) = offer.filter(|&l| l >= MIN_PART_BYTES && l.is_multiple_of(4096)) else {
        return Ok(None);
    };
    // Written whole beside it, then linked into place: the link fails
    // when another part decided first, and that size holds.
    let tmp = folder.dir().join(format!(
        "{SLOT_SIZE}.{}",
        to_hex(&crate::crypto::random::<8>())
    ));
    let internal = |e: std::io::Error| s3_error!(InternalError, "{}: {e}", path.display());
    crate::crypto::create_private(&tmp)
        .and_then(|mut f| f.write_all(offer.to_string().as_bytes()))
        .map_err(internal)?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(offer)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path),
        Err(e) => Err(internal(e)),
    }
}

/// Where part `n` of `declared` bytes goes in the spool (its offset and
/// the slot size), when it fits its slot and the slot is still free.
fn claim_slot(
    folder: &LocalFolder,
    n: i32,
    declared: Option<u64>,
    max_object_bytes: u64,
) -> S3Result<Option<(u64, u64)>> {
    let Some(len) = declared.filter(|&l| l > 0) else {
        return Ok(None);
    };
    let Some(size) = slot_size(folder, Some(len))? else {
        return Ok(None);
    };
    let n = u64::try_from(n).unwrap_or(0);
    if len > size || n.saturating_mul(size) > max_object_bytes {
        return Ok(None);
    }
    let claim = folder.dir().join(format!("{}.claim", slot_key(n as i32)));
    match crate::crypto::create_private(&claim) {
        Ok(_) => Ok(Some(((n - 1) * size, size))),
        // Taken by an earlier upload of the same part number.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(s3_error!(InternalError, "{}: {e}", claim.display())),
    }
}

/// Makes the object of the `chosen` parts: the spool moved into place
/// when the parts lie in it in order (parts in files of their own copied
/// into their slots first), else every part copied into a new object.
fn assemble(
    folder: &LocalFolder,
    chosen: &[&StoredPart],
    slot: Option<u64>,
    objects: &dyn Objects,
    bucket: &str,
    key: &str,
    attributes: &ObjectAttributes,
) -> S3Result<ObjectInfo> {
    let failed =
        |e: std::io::Error| s3_error!(InternalError, "assembling s3://{bucket}/{key}: {e}");
    let (last, rest) = chosen
        .split_last()
        .ok_or_else(|| s3_error!(MalformedXML, "no parts"))?;
    let in_order = slot.filter(|&size| {
        chosen
            .iter()
            .enumerate()
            .all(|(i, p)| p.number as usize == i + 1)
            && rest.iter().all(|p| p.size == size)
            && last.size <= size
    });
    if let Some(size) = in_order {
        for p in chosen {
            if let PartAt::File(k) = &p.at {
                let offset = (p.number as u64 - 1) * size;
                let mut reader = folder.read(k, 0..p.size).map_err(s3_err)?;
                let mut w = folder.write_at(SPOOL, offset, size).map_err(s3_err)?;
                copy(&mut reader, &mut w).map_err(failed)?;
                Box::new(w).finish().map_err(s3_err)?;
            }
        }
        let spool = folder.dir().join(SPOOL);
        let length = (last.number as u64 - 1) * size + last.size;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&spool)
            .map_err(failed)?;
        file.set_len(length).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        drop(file);
        if let Some(info) = objects
            .adopt(bucket, key, &spool, attributes)
            .map_err(s3_err)?
        {
            return Ok(info);
        }
        // Kept elsewhere: the spool is copied there whole.
        let mut reader = folder.read(SPOOL, 0..length).map_err(s3_err)?;
        let mut writer = objects.write(bucket, key, attributes).map_err(s3_err)?;
        copy(&mut reader, &mut writer).map_err(failed)?;
        return writer.finish().map_err(s3_err);
    }
    let mut writer = objects.write(bucket, key, attributes).map_err(s3_err)?;
    for p in chosen {
        let mut reader = match &p.at {
            PartAt::File(k) => folder.read(k, 0..p.size),
            PartAt::Spool(offset) => folder.read(SPOOL, *offset..offset + p.size),
        }
        .map_err(s3_err)?;
        copy(&mut reader, &mut writer).map_err(failed)?;
    }
    writer.finish().map_err(s3_err)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The secret keys of the server's credentials, for s3s's SigV4 checks.
pub(crate) struct Keys(pub(crate) Credentials);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        self.0
            .secret(access_key)
            .map(s3s::auth::SecretKey::from)
            .ok_or_else(|| {
                s3_error!(
                    InvalidAccessKeyId,
                    "The AWS Access Key Id you provided does not exist in our records."
                )
            })
    }
}

/// s3s's access check: a request must be signed by a key (as s3s's own
/// default check), and the operation and key go to the request's log line.
/// Every operation on a bucket or its objects is checked here to be the
/// caller's ([`Owners`]), but CreateBucket (which says whose a name is).
pub(crate) struct Access(pub(crate) Owners);

#[async_trait::async_trait]
impl s3s::access::S3Access for Access {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> S3Result<()> {
        let key = cx.credentials().map(|c| c.access_key.clone());
        let op = cx.s3_op().name().to_owned();
        let bucket = match cx.s3_path() {
            s3s::path::S3Path::Root => None,
            s3s::path::S3Path::Bucket { bucket } | s3s::path::S3Path::Object { bucket, .. } => {
                Some(bucket.to_string())
            }
        };
        if let Some(seen) = cx.extensions_mut().get::<super::SeenSlot>() {
            seen.with(|s| {
                s.operation = Some(op.clone());
                s.key.clone_from(&key);
            });
        }
        let Some(key) = key else {
            return Err(s3_error!(AccessDenied, "Signature is required"));
        };
        match bucket {
            Some(b) if op != "CreateBucket" => {
                let me = self.0.account_of(Some(&key));
                self.0.check(&me, &b).await
            }
            _ => Ok(()),
        }
    }
}

/// Virtual-host style for hosts below the server's own names
/// (`bucket.localhost:4566`), path style for every other host — never a
/// whole host taken as a bucket name.
pub(crate) struct Hosts(pub(crate) Vec<String>);

impl s3s::host::S3Host for Hosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        };
        for base in &self.0 {
            if let Some(bucket) = name
                .strip_suffix(base.as_str())
                .and_then(|b| b.strip_suffix('.'))
                .filter(|b| !b.is_empty())
            {
                return Ok(s3s::host::VirtualHost::new(base.as_str()).with_bucket(bucket));
            }
        }
        Ok(s3s::host::VirtualHost::new(name))
    }
}

/// The `Credential` of a SigV4 request (`KEY/DATE/REGION/SERVICE/aws4_request`),
/// from its Authorization header or its presigned URL.
fn credential(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        return auth
            .split([' ', ','])
            .find_map(|p| p.trim().strip_prefix("Credential="))
            .map(str::to_owned);
    }
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "X-Amz-Credential")
        .map(|(_, v)| v.into_owned())
}

/// Whether a request is signed for the service `s3`: its Authorization
/// header's or presigned URL's credential scope ends `/s3/aws4_request`,
/// or it is signed with SigV2 (`AWS key:signature`, or a URL with
/// `AWSAccessKeyId` and `Signature`: boto3's presigned URLs by default),
/// which of our services only S3 takes.
pub(crate) fn signed_for_s3(headers: &http::HeaderMap, query: Option<&str>) -> bool {
    let v2_header = headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes().starts_with(b"AWS "));
    if v2_header {
        return true;
    }
    if let Some(c) = credential(headers, query) {
        return c.split('/').nth(3) == Some("s3");
    }
    query.is_some_and(|q| {
        let (mut key, mut signature) = (false, false);
        for (k, _) in form_urlencoded::parse(q.as_bytes()) {
            key |= k == "AWSAccessKeyId";
            signature |= k == "Signature";
        }
        key && signature
    })
}

/// The region a SigV4 request is signed for, when it is one.
pub(crate) fn signed_region(headers: &http::HeaderMap, query: Option<&str>) -> Option<String> {
    credential(headers, query)?
        .split('/')
        .nth(2)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(key: &str) -> ObjectInfo {
        ObjectInfo {
            key: key.into(),
            size: 1,
            modified_ms: None,
            etag: None,
        }
    }

    fn keys(p: &Page) -> (Vec<&str>, Vec<&str>) {
        (
            p.objects.iter().map(|o| o.key.as_str()).collect(),
            p.prefixes.iter().map(String::as_str).collect(),
        )
    }

    #[test]
    fn pages_roll_up_at_the_delimiter_and_resume_after_a_prefix() {
        let all = || {
            ["a.csv", "in/1", "in/2", "in/x/3", "out/1", "z"]
                .map(o)
                .to_vec()
        };
        let p = page(all(), "", Some("/"), None, 1000);
        assert_eq!(keys(&p), (vec!["a.csv", "z"], vec!["in/", "out/"]));
        assert!(p.next.is_none());
        let first = page(all(), "", Some("/"), None, 2);
        assert_eq!(keys(&first), (vec!["a.csv"], vec!["in/"]));
        let next = first.next.clone().unwrap();
        let second = page(all(), "", Some("/"), Some(&next), 2);
        assert_eq!(keys(&second), (vec!["z"], vec!["out/"]));
        let inside = page(all(), "in/", Some("/"), None, 1000);
        assert_eq!(keys(&inside), (vec!["in/1", "in/2"], vec!["in/x/"]));
        let flat = page(all(), "", None, Some("in/2"), 2);
        assert_eq!(keys(&flat), (vec!["in/x/3", "out/1"], vec![]));
        assert_eq!(flat.next.as_deref(), Some("out/1"));
        assert_eq!(untoken(&token("in/ü")).unwrap(), "in/ü");
        assert!(untoken("zz").is_err());
    }

    #[test]
    fn the_service_is_told_by_the_credential_scope() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20261203/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert!(signed_for_s3(&h, None));
        assert_eq!(signed_region(&h, None).as_deref(), Some("us-east-1"));
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20261203/us-east-1/profile/aws4_request, \
             SignedHeaders=host, Signature=00"
                .parse()
                .unwrap(),
        );
        assert!(!signed_for_s3(&h, None));
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20261203%2Fus-east-1%2Fs3%2Faws4_request";
        assert!(signed_for_s3(&http::HeaderMap::new(), Some(q)));
        assert!(!signed_for_s3(&http::HeaderMap::new(), Some("a=b")));
        let v2 = "AWSAccessKeyId=AK&Signature=abc%3D&Expires=1796278240";
        assert!(signed_for_s3(&http::HeaderMap::new(), Some(v2)));
        h.insert("authorization", "AWS AK:c2ln".parse().unwrap());
        assert!(signed_for_s3(&h, None));
    }

    #[test]
    fn hosts_below_ours_name_buckets() {
        use s3s::host::S3Host;
        let h = Hosts(vec!["localhost".into()]);
        assert_eq!(
            h.parse_host_header("inbox.localhost:4566")
                .unwrap()
                .bucket(),
            Some("inbox")
        );
        assert_eq!(
            h.parse_host_header("localhost:4566").unwrap().bucket(),
            None
        );
        assert_eq!(
            h.parse_host_header("127.0.0.1:4566").unwrap().bucket(),
            None
        );
        assert_eq!(h.parse_host_header("files.example").unwrap().bucket(), None);
    }
}
