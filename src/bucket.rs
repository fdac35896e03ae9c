/*!
Buckets: `s3://bucket/key` resolved through the `object_store` crate.

By default a bucket is a folder in the data directory
(`DATA_DIR/buckets/<bucket>`), so nothing else need be installed; with an
[`S3Config`] the same calls go to any S3-compatible endpoint. As in S3, a
bucket must be made before objects are put in it, and a missing bucket or
key is an error of its own.

No URL reaches outside the bucket folders: bucket names follow S3's rules
(lowercase letters, digits, dots and hyphens), and keys go through
`object_store`'s paths, which refuse `.` and `..` segments.

The calls are blocking: each runs its `object_store` future on a small
runtime this type owns. Call them from threads that are not running async
tasks (a job thread, `spawn_blocking`, `main`).
*/

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub use crate::job::{ObjectAttributes, check_bucket_name};

/// The folder of the data directory that holds local buckets.
pub const BUCKETS_DIR: &str = "buckets";

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

/// Where buckets live.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum BucketConfig {
    /// A folder per bucket under this directory.
    Local(PathBuf),
    /// An S3-compatible endpoint.
    S3(S3Config),
}

impl BucketConfig {
    /// Folders in `DATA_DIR/buckets`.
    pub fn local(data_dir: &Path) -> BucketConfig {
        BucketConfig::Local(data_dir.join(BUCKETS_DIR))
    }
}

/// What can go wrong with buckets.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// Not an `s3://bucket/key` URL.
    #[error("{url:?} is not an S3 URL: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// No such bucket.
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    /// No such object.
    #[error("s3://{bucket}/{key} does not exist")]
    NoSuchKey {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
    },
    /// `mb` of a bucket that exists.
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    /// A local file could not be read or a bucket folder made.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed (I/O, network, the S3 server said no).
    #[error("{what}: {source}")]
    Store {
        /// What was being done.
        what: String,
        /// What `object_store` said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `s3://bucket/key`, checked.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key or prefix (may be empty: the whole bucket).
    pub key: String,
}

impl S3Url {
    /// Parses and checks an `s3://` URL.
    ///
    /// # Errors
    ///
    /// [`BucketError::BadUrl`], saying what is wrong.
    pub fn parse(url: &str) -> Result<S3Url, BucketError> {
        let bad = |why: &str| BucketError::BadUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket_name(bucket).map_err(|why| bad(&why))?;
        if key.split('/').any(|seg| seg == "." || seg == "..") {
            return Err(bad("a key has no . or .. segments"));
        }
        if key.contains("//") || key.chars().any(char::is_control) {
            return Err(bad("a key has no empty segments or control characters"));
        }
        Ok(S3Url {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An object in a listing.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Buckets, local or on S3.
pub struct Buckets {
    config: BucketConfig,
    /// Taken only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl fmt::Debug for Buckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buckets")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Buckets {
    /// Lets the runtime go without waiting for it, so that the last holder
    /// may drop buckets anywhere, an async task included (a blocking
    /// shutdown there panics).
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Buckets {
    /// Runs a future on the buckets' own runtime.
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("the runtime is there until drop")
            .block_on(f)
    }

    /// Buckets as configured.
    ///
    /// # Errors
    ///
    /// When the runtime cannot start, or S3 support is not built in.
    pub fn open(config: BucketConfig) -> Result<Buckets, BucketError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("sluice-buckets")
            .enable_all()
            .build()
            .map_err(|e| BucketError::Io {
                path: PathBuf::from("(runtime)"),
                source: e,
            })?;
        #[cfg(feature = "s3")]
        if matches!(config, BucketConfig::S3(_)) {
            // reqwest is built without a TLS provider of its own; ring it is.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        #[cfg(not(feature = "s3"))]
        if matches!(config, BucketConfig::S3(_)) {
            return Err(BucketError::Store {
                what: "S3 buckets".into(),
                source: "this build of sluice has no S3 support (feature `s3`)".into(),
            });
        }
        Ok(Buckets {
            config,
            runtime: Some(runtime),
            stores: Mutex::new(HashMap::new()),
        })
    }

    /// Where buckets live, for people.
    pub fn describe(&self) -> String {
        match &self.config {
            BucketConfig::Local(root) => format!("folders in {}", root.display()),
            BucketConfig::S3(s3) => format!("S3 at {}", s3.endpoint),
        }
    }

    /// Makes a bucket.
    ///
    /// # Errors
    ///
    /// [`BucketError::BucketExists`], a bad name, or the store's error.
    pub fn create_bucket(&self, name: &str) -> Result<(), BucketError> {
        check_bucket_name(name).map_err(|why| BucketError::BadUrl {
            url: format!("s3://{name}"),
            why,
        })?;
        match &self.config {
            BucketConfig::Local(root) => {
                std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
                let dir = root.join(name);
                match std::fs::create_dir(&dir) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Err(BucketError::BucketExists(name.to_owned()))
                    }
                    Err(e) => Err(io(&dir, e)),
                }
            }
            BucketConfig::S3(s3) => self.s3_bucket_call(s3, name, true).map(|_| ()),
        }
    }

    /// Whether a bucket exists.
    ///
    /// # Errors
    ///
    /// The store's error.
    pub fn bucket_exists(&self, name: &str) -> Result<bool, BucketError> {
        if check_bucket_name(name).is_err() {
            return Ok(false);
        }
        match &self.config {
            BucketConfig::Local(root) => Ok(root.join(name).is_dir()),
            BucketConfig::S3(s3) => self.s3_bucket_call(s3, name, false),
        }
    }

    /// Puts a local file at `url` (a key, not a prefix).
    ///
    /// # Errors
    ///
    /// [`BucketError::NoSuchBucket`], a URL without a key, the file's or
    /// the store's error.
    pub fn put_file(&self, file: &Path, url: &S3Url) -> Result<u64, BucketError> {
        let bytes = std::fs::read(file).map_err(|e| io(file, e))?;
        let n = bytes.len() as u64;
        self.put(url, bytes)?;
        Ok(n)
    }

    /// Puts bytes at `url` (a key, not a prefix).
    ///
    /// # Errors
    ///
    /// As [`Buckets::put_file`].
    pub fn put(&self, url: &S3Url, bytes: Vec<u8>) -> Result<(), BucketError> {
        self.put_with(url, bytes, &ObjectAttributes::default())
    }

    /// Puts bytes at `url` with HTTP attributes (`Content-Type`, …). S3
    /// keeps them with the object; local folders have nowhere to keep
    /// them, so there they are dropped (callers that must not lose them,
    /// such as an Import/Export log, record them themselves).
    ///
    /// # Errors
    ///
    /// As [`Buckets::put_file`].
    pub fn put_with(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        attributes: &ObjectAttributes,
    ) -> Result<(), BucketError> {
        if url.key.is_empty() || url.key.ends_with('/') {
            return Err(BucketError::BadUrl {
                url: url.to_string(),
                why: "an object needs a key that does not end with /".into(),
            });
        }
        let store = self.store(&url.bucket)?;
        let path = object_path(url)?;
        let mut opts = object_store::PutOptions::default();
        if !matches!(self.config, BucketConfig::Local(_)) {
            use object_store::Attribute as A;
            for (a, v) in [
                (A::ContentType, &attributes.content_type),
                (A::CacheControl, &attributes.cache_control),
                (A::ContentDisposition, &attributes.content_disposition),
                (A::ContentLanguage, &attributes.content_language),
                (A::ContentEncoding, &attributes.content_encoding),
            ] {
                if let Some(v) = v {
                    opts.attributes.insert(a, v.clone().into());
                }
            }
        }
        self.block_on(store.put_opts(&path, PutPayload::from(bytes), opts))
            .map(|_| ())
            .map_err(|e| store_err(&format!("putting {url}"), e, url))
    }

    /// The objects at `url`: the one object of that key, or else every
    /// object below it as a folder (subfolders included), by key.
    ///
    /// # Errors
    ///
    /// [`BucketError::NoSuchBucket`], or the store's error.
    pub fn list(&self, url: &S3Url) -> Result<Vec<ObjectInfo>, BucketError> {
        let store = self.store(&url.bucket)?;
        let what = format!("listing {url}");
        if !url.key.is_empty() && !url.key.ends_with('/') {
            let path = object_path(url)?;
            match self.block_on(store.head(&path)) {
                Ok(meta) => {
                    return Ok(vec![ObjectInfo {
                        key: meta.location.to_string(),
                        size: meta.size,
                    }]);
                }
                Err(object_store::Error::NotFound { .. }) => {}
                // A local "key" that is a folder is not an object.
                Err(e) if matches!(self.config, BucketConfig::Local(_)) && is_dir_error(&e) => {}
                Err(e) => return Err(store_err(&what, e, url)),
            }
        }
        let prefix = url.key.trim_end_matches('/');
        let prefix = (!prefix.is_empty())
            .then(|| {
                object_path(&S3Url {
                    bucket: url.bucket.clone(),
                    key: prefix.to_owned(),
                })
            })
            .transpose()?;
        let mut objects: Vec<ObjectInfo> = self
            .block_on(store.list(prefix.as_ref()).try_collect::<Vec<_>>())
            .map_err(|e| store_err(&what, e, url))?
            .into_iter()
            .map(|m| ObjectInfo {
                key: m.location.to_string(),
                size: m.size,
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// An object's bytes.
    ///
    /// # Errors
    ///
    /// [`BucketError::NoSuchBucket`], [`BucketError::NoSuchKey`], or the
    /// store's error.
    pub fn get(&self, url: &S3Url) -> Result<Vec<u8>, BucketError> {
        let store = self.store(&url.bucket)?;
        let path = object_path(url)?;
        let what = format!("reading {url}");
        self.block_on(async {
            let got = store.get(&path).await?;
            got.bytes().await
        })
        .map(Vec::from)
        .map_err(|e| store_err(&what, e, url))
    }

    fn store(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, BucketError> {
        if !self.bucket_exists(bucket)? {
            return Err(BucketError::NoSuchBucket(bucket.to_owned()));
        }
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(bucket) {
            return Ok(Arc::clone(s));
        }
        let store: Arc<dyn ObjectStore> = match &self.config {
            BucketConfig::Local(root) => {
                let dir = root.join(bucket);
                Arc::new(
                    object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(|e| {
                        store_err(&format!("opening {}", dir.display()), e, &no_url())
                    })?,
                )
            }
            #[cfg(feature = "s3")]
            BucketConfig::S3(s3) => Arc::new(
                object_store::aws::AmazonS3Builder::new()
                    .with_endpoint(&s3.endpoint)
                    .with_region(&s3.region)
                    .with_bucket_name(bucket)
                    .with_access_key_id(&s3.access_key_id)
                    .with_secret_access_key(&s3.secret_access_key)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false)
                    .build()
                    .map_err(|e| store_err(&format!("opening bucket {bucket}"), e, &no_url()))?,
            ),
            #[cfg(not(feature = "s3"))]
            BucketConfig::S3(_) => unreachable!("refused by Buckets::open"),
        };
        stores.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// HEAD (exists?) or PUT (create) of a bucket on S3, which
    /// `object_store` does not do: a request signed by its `AwsAuthorizer`,
    /// sent with reqwest.
    #[cfg(feature = "s3")]
    fn s3_bucket_call(&self, s3: &S3Config, name: &str, create: bool) -> Result<bool, BucketError> {
        use object_store::aws::{AwsAuthorizer, AwsCredential};
        let what = if create { "creating" } else { "looking up" };
        let fail = |e: Box<dyn std::error::Error + Send + Sync>| BucketError::Store {
            what: format!("{what} bucket {name} at {}", s3.endpoint),
            source: e,
        };
        let url = format!("{}/{name}", s3.endpoint.trim_end_matches('/'));
        let method = if create {
            http::Method::PUT
        } else {
            http::Method::HEAD
        };
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| fail(e.into()))?;
        let credential = AwsCredential {
            key_id: s3.access_key_id.clone(),
            secret_key: s3.secret_access_key.clone(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", &s3.region)
            .try_authorize(&mut req, None)
            .map_err(|e| fail(e.into()))?;
        let client = reqwest::Client::new();
        let mut out = client.request(method, &url);
        for (k, v) in req.headers() {
            out = out.header(k, v);
        }
        let resp = self.block_on(out.send()).map_err(|e| fail(e.into()))?;
        let status = resp.status();
        match (create, status.as_u16()) {
            (_, 200..=299) => Ok(true),
            (false, 404) => Ok(false),
            (true, 409) => Err(BucketError::BucketExists(name.to_owned())),
            _ => {
                let body = self.block_on(resp.text()).unwrap_or_default();
                Err(fail(format!("the server answered {status}: {body}").into()))
            }
        }
    }

    #[cfg(not(feature = "s3"))]
    fn s3_bucket_call(&self, _: &S3Config, _: &str, _: bool) -> Result<bool, BucketError> {
        unreachable!("refused by Buckets::open")
    }
}

fn no_url() -> S3Url {
    S3Url {
        bucket: String::new(),
        key: String::new(),
    }
}

fn object_path(url: &S3Url) -> Result<ObjectPath, BucketError> {
    ObjectPath::parse(&url.key).map_err(|e| BucketError::BadUrl {
        url: url.to_string(),
        why: e.to_string(),
    })
}

fn io(path: &Path, e: std::io::Error) -> BucketError {
    BucketError::Io {
        path: path.to_owned(),
        source: e,
    }
}

fn is_dir_error(e: &object_store::Error) -> bool {
    e.to_string().to_ascii_lowercase().contains("directory")
}

fn store_err(what: &str, e: object_store::Error, url: &S3Url) -> BucketError {
    match e {
        object_store::Error::NotFound { .. } if !url.key.is_empty() => BucketError::NoSuchKey {
            bucket: url.bucket.clone(),
            key: url.key.clone(),
        },
        other => BucketError::Store {
            what: what.to_owned(),
            source: Box::new(other),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_can_be_dropped_in_an_async_task() {
        // A server's last holder may be a task: dropping must not block
        // (it panicked there once, at `sluice serve`'s shutdown).
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::open(BucketConfig::local(dir.path())).unwrap();
        b.create_bucket("bkt").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move { drop(b) });
    }

    #[test]
    fn urls_are_checked() {
        let u = S3Url::parse("s3://my-bucket/a/b.csv").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.key.as_str()),
            ("my-bucket", "a/b.csv")
        );
        assert_eq!(S3Url::parse("s3://bkt").unwrap().key, "");
        for (bad, says) in [
            ("http://b/k", "does not start with s3://"),
            ("s3://B/k", "bucket name"),
            ("s3://ab/k", "bucket name"),
            ("s3://bkt/../x", ". or .."),
            ("s3://bkt/a/./x", ". or .."),
            ("s3://bkt/a//x", "empty segments"),
            ("s3://../etc", "bucket name"),
        ] {
            let err = S3Url::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn local_buckets_behave_like_s3() {
        let dir = tempfile::tempdir().unwrap();
        let b = Buckets::open(BucketConfig::local(dir.path())).unwrap();
        let url = S3Url::parse("s3://bkt/in/a.csv").unwrap();
        assert!(matches!(
            b.put(&url, b"x".to_vec()),
            Err(BucketError::NoSuchBucket(_))
        ));
        b.create_bucket("bkt").unwrap();
        assert!(matches!(
            b.create_bucket("bkt"),
            Err(BucketError::BucketExists(_))
        ));
        b.put(&url, b"abc".to_vec()).unwrap();
        b.put(
            &S3Url::parse("s3://bkt/in/sub/b.csv").unwrap(),
            b"de".to_vec(),
        )
        .unwrap();
        b.put(&S3Url::parse("s3://bkt/other.csv").unwrap(), b"f".to_vec())
            .unwrap();
        let keys = |u: &str| -> Vec<(String, u64)> {
            b.list(&S3Url::parse(u).unwrap())
                .unwrap()
                .into_iter()
                .map(|o| (o.key, o.size))
                .collect()
        };
        assert_eq!(
            keys("s3://bkt/in"),
            [("in/a.csv".into(), 3), ("in/sub/b.csv".into(), 2)]
        );
        assert_eq!(keys("s3://bkt/in/"), keys("s3://bkt/in"));
        assert_eq!(keys("s3://bkt/in/a.csv"), [("in/a.csv".into(), 3)]);
        assert_eq!(keys("s3://bkt").len(), 3);
        assert!(keys("s3://bkt/nothing").is_empty());
        assert_eq!(b.get(&url).unwrap(), b"abc");
        assert!(matches!(
            b.get(&S3Url::parse("s3://bkt/missing").unwrap()),
            Err(BucketError::NoSuchKey { .. })
        ));
        assert!(matches!(
            b.list(&S3Url::parse("s3://nobkt/x").unwrap()),
            Err(BucketError::NoSuchBucket(_))
        ));
        // Everything stayed inside the bucket folder.
        assert!(dir.path().join("buckets/bkt/in/sub/b.csv").is_file());
    }
}
