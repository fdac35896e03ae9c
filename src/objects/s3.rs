//! Objects on any S3-compatible endpoint, through the `object_store` crate.
//!
//! Calls are blocking: each runs its future on a small runtime this type
//! owns. Call them from threads that are not running async tasks (a job
//! thread, `spawn_blocking`, `main`).
//!
//! * Reads are ranged GETs whose body streams into a bounded queue
//!   ([`READ_AHEAD`] chunks): a reader holds at most that much of an object,
//!   and a body that breaks off is asked for again from where it broke.
//! * Writes buffer up to one part ([`PART_BYTES`]); a small object is one
//!   PUT, a larger one a multipart upload with at most [`PARTS_IN_FLIGHT`]
//!   parts on the way, completed by `finish` and aborted when dropped.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{Receiver, channel};

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
    WriteMultipart,
};

use super::{
    BucketInfo, ObjectAttributes, ObjectError, ObjectErrorKind, ObjectInfo, ObjectWriter, Objects,
    PART_BYTES, check_bucket_name, checked, checked_bucket,
};

/// Chunks of a GET body a reader may hold ahead of what was read.
pub const READ_AHEAD: usize = 8;
/// Parts being uploaded at once by one writer.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Times a broken GET body is asked for again before the read fails.
const READ_RETRIES: u32 = 3;

/// An S3-compatible endpoint.
#[derive(Clone, Eq, PartialEq)]
pub struct S3Config {
    /// Its URL, e.g. `http://127.0.0.1:9000` (path-style requests).
    pub endpoint: String,
    /// The region to sign for.
    pub region: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Buckets on an S3-compatible endpoint.
pub struct S3Objects {
    config: S3Config,
    /// Taken only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl fmt::Debug for S3Objects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Objects")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for S3Objects {
    /// Lets the runtime go without waiting for it, so that the last holder
    /// may drop it anywhere, an async task included (a blocking shutdown
    /// there panics).
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl S3Objects {
    /// Buckets at the endpoint `config` names.
    ///
    /// # Errors
    ///
    /// When the runtime cannot start.
    pub fn new(config: S3Config) -> Result<S3Objects, ObjectError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-s3")
            .enable_all()
            .build()
            .map_err(|e| ObjectError::backend("starting the S3 client", e))?;
        // reqwest is built without a TLS provider of its own; ring it is.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(S3Objects {
            config,
            runtime: Some(runtime),
            stores: Mutex::new(HashMap::new()),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is there until drop")
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime().block_on(f)
    }

    /// The client of a bucket, made (after asking the endpoint whether the
    /// bucket exists) the first time one is wanted; buckets are never
    /// deleted through the port, so later calls ask nothing more.
    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, ObjectError> {
        let cached = |stores: &HashMap<String, Arc<dyn ObjectStore>>| stores.get(bucket).cloned();
        if let Some(s) = cached(&self.stores.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(s);
        }
        if !self.bucket_exists(bucket)? {
            return Err(ObjectError::no_bucket(bucket));
        }
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cached(&stores) {
            return Ok(s);
        }
        let s3 = &self.config;
        let store: Arc<dyn ObjectStore> = Arc::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&s3.endpoint)
                .with_region(&s3.region)
                .with_bucket_name(bucket)
                .with_access_key_id(&s3.access_key_id)
                .with_secret_access_key(&s3.secret_access_key)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .build()
                .map_err(|e| ObjectError::backend(format!("opening bucket {bucket}"), e))?,
        );
        stores.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// A call on buckets, which `object_store` does not make (it works
    /// inside one bucket): `method` on `/{name}` (`/` when `name` is
    /// empty), signed by its `AwsAuthorizer` and sent with reqwest; the
    /// status and body of the answer.
    fn bucket_request(
        &self,
        method: http::Method,
        name: &str,
        what: &str,
    ) -> Result<(u16, String), ObjectError> {
        use object_store::aws::{AwsAuthorizer, AwsCredential};
        let s3 = &self.config;
        let fail = |e: &dyn fmt::Display| {
            let on = if name.is_empty() { "buckets" } else { name };
            ObjectError::backend(format!("{what} {on} at {}", s3.endpoint), e)
        };
        let url = format!("{}/{name}", s3.endpoint.trim_end_matches('/'));
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| fail(&e))?;
        let credential = AwsCredential {
            key_id: s3.access_key_id.clone(),
            secret_key: s3.secret_access_key.clone(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", &s3.region)
            .try_authorize(&mut req, None)
            .map_err(|e| fail(&e))?;
        let client = reqwest::Client::new();
        let mut out = client.request(method, &url);
        for (k, v) in req.headers() {
            out = out.header(k, v);
        }
        let resp = self.block_on(out.send()).map_err(|e| fail(&e))?;
        let status = resp.status().as_u16();
        let body = self.block_on(resp.text()).unwrap_or_default();
        Ok((status, body))
    }

    /// HEAD (exists?) or PUT (create) of a bucket.
    fn bucket_call(&self, name: &str, create: bool) -> Result<bool, ObjectError> {
        let (method, what) = if create {
            (http::Method::PUT, "creating bucket")
        } else {
            (http::Method::HEAD, "looking up bucket")
        };
        let (status, body) = self.bucket_request(method, name, what)?;
        match (create, status) {
            (_, 200..=299) => Ok(true),
            (false, 404) => Ok(false),
            (true, 409) => Err(ObjectError::bucket_exists(name)),
            _ => Err(ObjectError::backend(
                format!("{what} {name} at {}", self.config.endpoint),
                format!("the server answered {status}: {body}"),
            )),
        }
    }
}

/// The buckets of a ListBuckets answer: each `<Bucket>`'s `<Name>` and
/// `<CreationDate>` (bucket names need no unescaping: S3's rules allow
/// none of XML's special characters).
fn buckets_of(xml: &str) -> Vec<BucketInfo> {
    fn element<'a>(within: &'a str, tag: &str) -> Option<&'a str> {
        let open = format!("<{tag}>");
        let from = within.find(&open)? + open.len();
        let len = within[from..].find(&format!("</{tag}>"))?;
        Some(&within[from..from + len])
    }
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<Bucket>") {
        let Some(len) = rest[at..].find("</Bucket>") else {
            break;
        };
        let one = &rest[at..at + len];
        if let Some(name) = element(one, "Name") {
            out.push(BucketInfo {
                name: name.to_owned(),
                created_ms: element(one, "CreationDate").and_then(crate::time::parse_iso8601),
            });
        }
        rest = &rest[at + len..];
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn path(bucket: &str, key: &str) -> Result<ObjectPath, ObjectError> {
    // object_store's paths have no empty segments: it would drop a
    // leading or trailing `/` and keep the object under another key.
    if key.starts_with('/') || key.ends_with('/') || key.contains("//") {
        return Err(ObjectError::new(
            ObjectErrorKind::BadName,
            format!(
                "s3://{bucket}/{key}: keys with empty segments cannot be kept in an S3-compatible store here"
            ),
        ));
    }
    ObjectPath::parse(key).map_err(|e| {
        ObjectError::new(
            ObjectErrorKind::BadName,
            format!("s3://{bucket}/{key}: {e}"),
        )
    })
}

fn info(meta: &object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: meta.location.to_string(),
        size: meta.size,
        modified_ms: Some(meta.last_modified.timestamp_millis()),
        etag: meta.e_tag.clone(),
    }
}

fn store_err(bucket: &str, key: &str, what: &str, e: object_store::Error) -> ObjectError {
    match e {
        object_store::Error::NotFound { .. } if !key.is_empty() => ObjectError::no_key(bucket, key),
        other => ObjectError::backend(format!("{what} s3://{bucket}/{key}"), other),
    }
}

impl Objects for S3Objects {
    fn describe(&self) -> String {
        format!("S3 at {}", self.config.endpoint)
    }

    fn create_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        checked_bucket(bucket)?;
        // In us-east-1, S3 answers 200 to making a bucket its caller
        // already owns (elsewhere 409): ask first, so that every region
        // says the bucket exists.
        if self.bucket_call(bucket, false)? {
            return Err(ObjectError::bucket_exists(bucket));
        }
        self.bucket_call(bucket, true).map(|_| ())
    }

    fn list_buckets(&self) -> Result<Vec<BucketInfo>, ObjectError> {
        let what = "listing";
        let (status, body) = self.bucket_request(http::Method::GET, "", what)?;
        if !(200..=299).contains(&status) {
            return Err(ObjectError::backend(
                format!("listing buckets at {}", self.config.endpoint),
                format!("the server answered {status}: {body}"),
            ));
        }
        Ok(buckets_of(&body))
    }

    fn delete_bucket(&self, bucket: &str) -> Result<(), ObjectError> {
        if check_bucket_name(bucket).is_err() {
            return Err(ObjectError::no_bucket(bucket));
        }
        let (status, body) =
            self.bucket_request(http::Method::DELETE, bucket, "deleting bucket")?;
        match status {
            200..=299 => {
                self.stores
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(bucket);
                Ok(())
            }
            404 => Err(ObjectError::no_bucket(bucket)),
            409 => Err(ObjectError::not_empty(bucket)),
            _ => Err(ObjectError::backend(
                format!("deleting bucket {bucket} at {}", self.config.endpoint),
                format!("the server answered {status}: {body}"),
            )),
        }
    }

    fn bucket_exists(&self, bucket: &str) -> Result<bool, ObjectError> {
        if check_bucket_name(bucket).is_err() {
            return Ok(false);
        }
        self.bucket_call(bucket, false)
    }

    fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectError> {
        let store = self.store(bucket)?;
        // object_store lists by whole segments: list the folder the prefix
        // is in, then keep the keys that start with it.
        let folder = prefix.rsplit_once('/').map_or("", |(f, _)| f);
        let base = (!folder.is_empty())
            .then(|| path(bucket, folder))
            .transpose()?;
        let mut out: Vec<ObjectInfo> = self
            .block_on(store.list(base.as_ref()).try_collect::<Vec<_>>())
            .map_err(|e| store_err(bucket, prefix, "listing", e))?
            .iter()
            .map(info)
            .filter(|o| o.key.starts_with(prefix))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, ObjectError> {
        checked(bucket, key)?;
        let store = self.store(bucket)?;
        let p = path(bucket, key)?;
        self.block_on(store.head(&p))
            .map(|m| info(&m))
            .map_err(|e| store_err(bucket, key, "looking up", e))
    }

    fn read(
        &self,
        bucket: &str,
        key: &str,
        range: Range<u64>,
    ) -> Result<Box<dyn Read + Send>, ObjectError> {
        checked(bucket, key)?;
        let store = self.store(bucket)?;
        let size = self.head(bucket, key)?.size;
        let r = super::clamp(&range, size);
        let mut reader = S3Reader {
            handle: self.runtime().handle().clone(),
            store,
            path: path(bucket, key)?,
            name: format!("s3://{bucket}/{key}"),
            next: r.start,
            end: r.end,
            chunks: None,
            current: bytes::Bytes::new(),
            retries: 0,
        };
        reader
            .request()
            .map_err(|e| ObjectError::backend(&reader.name, e))?;
        Ok(Box::new(reader))
    }

    fn write(
        &self,
        bucket: &str,
        key: &str,
        attributes: &ObjectAttributes,
    ) -> Result<Box<dyn ObjectWriter>, ObjectError> {
        checked(bucket, key)?;
        let store = self.store(bucket)?;
        Ok(Box::new(S3Writer {
            handle: self.runtime().handle().clone(),
            store,
            path: path(bucket, key)?,
            name: format!("s3://{bucket}/{key}"),
            attributes: attributes_of(attributes),
            buffer: Vec::new(),
            upload: None,
        }))
    }

    fn delete(&self, bucket: &str, key: &str) -> Result<(), ObjectError> {
        checked(bucket, key)?;
        let store = self.store(bucket)?;
        let p = path(bucket, key)?;
        match self.block_on(store.delete(&p)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(bucket, key, "deleting", e)),
        }
    }

    fn locate(&self, bucket: &str, key: &str) -> String {
        format!(
            "{}/{bucket}/{key}",
            self.config.endpoint.trim_end_matches('/')
        )
    }
}

fn attributes_of(a: &ObjectAttributes) -> object_store::Attributes {
    use object_store::Attribute as A;
    let mut out = object_store::Attributes::new();
    for (k, v) in [
        (A::ContentType, &a.content_type),
        (A::CacheControl, &a.cache_control),
        (A::ContentDisposition, &a.content_disposition),
        (A::ContentLanguage, &a.content_language),
        (A::ContentEncoding, &a.content_encoding),
    ] {
        if let Some(v) = v {
            out.insert(k, v.clone().into());
        }
    }
    out
}

/// A ranged GET whose body streams into a bounded queue.
struct S3Reader {
    handle: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    name: String,
    /// The offset of the first byte not yet queued or read.
    next: u64,
    end: u64,
    chunks: Option<Receiver<Result<bytes::Bytes, object_store::Error>>>,
    current: bytes::Bytes,
    retries: u32,
}

impl S3Reader {
    /// Asks for `next..end`; the body fills a queue of [`READ_AHEAD`]
    /// chunks as the reader empties it.
    fn request(&mut self) -> io::Result<()> {
        if self.next >= self.end {
            self.chunks = None;
            return Ok(());
        }
        let (tx, rx) = channel(READ_AHEAD);
        let store = Arc::clone(&self.store);
        let path = self.path.clone();
        let opts = GetOptions {
            range: Some(GetRange::Bounded(self.next..self.end)),
            ..GetOptions::default()
        };
        self.handle.spawn(async move {
            let mut body = match store.get_opts(&path, opts).await {
                Ok(r) => r.into_stream(),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            while let Some(chunk) = body.next().await {
                let failed = chunk.is_err();
                // The queue is bounded: this waits for the reader to take
                // a chunk.
                if tx.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        });
        self.chunks = Some(rx);
        Ok(())
    }
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if !self.current.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current[..n]);
                self.current = self.current.slice(n..);
                return Ok(n);
            }
            if self.next >= self.end {
                return Ok(0);
            }
            let got = match &mut self.chunks {
                Some(rx) => rx.blocking_recv(),
                None => None,
            };
            match got {
                Some(Ok(chunk)) => {
                    self.next += chunk.len() as u64;
                    self.current = chunk;
                }
                Some(Err(e)) if self.retries >= READ_RETRIES => {
                    return Err(io::Error::other(format!("reading {}: {e}", self.name)));
                }
                // The body broke off (or the sender went away early): ask
                // again from where it broke.
                Some(Err(_)) | None => {
                    self.retries += 1;
                    if self.retries > READ_RETRIES {
                        return Err(io::Error::other(format!(
                            "reading {}: the body ended at byte {} of {}",
                            self.name, self.next, self.end
                        )));
                    }
                    self.request()?;
                }
            }
        }
    }
}

/// A PUT of a small object, or a multipart upload of a large one.
struct S3Writer {
    handle: tokio::runtime::Handle,
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    name: String,
    attributes: object_store::Attributes,
    /// Bytes not yet handed to an upload (the whole object while it is
    /// smaller than a part).
    buffer: Vec<u8>,
    upload: Option<WriteMultipart>,
}

impl S3Writer {
    fn err(&self, e: object_store::Error) -> io::Error {
        io::Error::other(format!("writing {}: {e}", self.name))
    }
}

impl Write for S3Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= PART_BYTES {
            if self.upload.is_none() {
                let opts = PutMultipartOptions {
                    attributes: self.attributes.clone(),
                    ..PutMultipartOptions::default()
                };
                let started = self
                    .handle
                    .block_on(self.store.put_multipart_opts(&self.path, opts))
                    .map_err(|e| self.err(e))?;
                self.upload = Some(WriteMultipart::new_with_chunk_size(started, PART_BYTES));
            }
            let part = std::mem::take(&mut self.buffer);
            let handle = self.handle.clone();
            let upload = self.upload.as_mut().expect("started above");
            // `put` spawns the part's upload: on the client's runtime.
            let entered = handle.enter();
            upload.put(part.into());
            drop(entered);
            handle
                .block_on(upload.wait_for_capacity(PARTS_IN_FLIGHT))
                .map_err(|e| io::Error::other(format!("writing {}: {e}", self.name)))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn finish(mut self: Box<Self>) -> Result<ObjectInfo, ObjectError> {
        let buffer = std::mem::take(&mut self.buffer);
        let size;
        match self.upload.take() {
            None => {
                size = buffer.len() as u64;
                let opts = PutOptions {
                    attributes: self.attributes.clone(),
                    ..PutOptions::default()
                };
                self.handle
                    .block_on(
                        self.store
                            .put_opts(&self.path, PutPayload::from(buffer), opts),
                    )
                    .map_err(|e| ObjectError::backend(format!("writing {}", self.name), e))?;
            }
            Some(mut upload) => {
                if !buffer.is_empty() {
                    let _entered = self.handle.enter();
                    upload.put(buffer.into());
                }
                self.handle
                    .block_on(upload.finish())
                    .map_err(|e| ObjectError::backend(format!("writing {}", self.name), e))?;
                size = self
                    .handle
                    .block_on(self.store.head(&self.path))
                    .map_err(|e| ObjectError::backend(format!("writing {}", self.name), e))?
                    .size;
            }
        }
        Ok(ObjectInfo {
            key: self.path.to_string(),
            size,
            modified_ms: None,
            etag: None,
        })
    }
}

impl Drop for S3Writer {
    /// An unfinished upload is aborted, on the client's runtime (a writer
    /// may be dropped anywhere).
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            self.handle.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
