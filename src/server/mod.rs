/*!
`sluice serve`: the job APIs over AWS's wire protocols, for the AWS SDKs
and CLI.

# What a request goes through

The service is told by the path: Pinpoint's routes all start `/v1/`
(signing name `mobiletargeting`), Customer Profiles' do not (`profile`).
Each names the shared errors its own way ([`Service`]).

1. **Throttle.** At most [`ServerConfig::max_requests`] API requests (and
   [`ServerConfig::max_uploads`] uploads) are served at once; one more is
   answered `ThrottlingException` / `TooManyRequestsException` (429),
   which the SDKs retry with backoff, rather than queued without bound.
2. **Time.** A request's headers must arrive within
   [`ServerConfig::request_timeout`] (an idle keep-alive connection is
   closed after as long); an API body too, or it is answered
   `RequestTimeout` (408); an upload body must keep up at least
   [`ServerConfig::min_upload_rate`] after that grace time (S3's
   `RequestTimeout`, 400). At most [`ServerConfig::max_connections`]
   connections are open at once; one more is closed at once. A client that
   trickles bytes therefore holds a connection, a permit and memory for a
   bounded time only.
3. **Body.** API bodies over [`ServerConfig::max_body_bytes`] are refused
   (`BadRequestException`; Pinpoint's `PayloadTooLargeException`, 413); an
   upload body streams and is cut off past
   [`ServerConfig::max_upload_bytes`] (`EntityTooLarge`).
4. **Authentication.** Every API request must carry a valid SigV4
   signature ([`sigv4`]) by a key of [`credentials`]; an upload carries
   instead the signature of the URL GetUploadJobPath gave. There is no
   other way in.
5. **Routing** by the model's `http` entries (method, URI, status), then
   the operation in [`crate::api`], on a blocking thread (the store is
   SQLite).
6. **Answer.** JSON with the model's member names and success status;
   errors with the model's status, an `x-amzn-ErrorType` header and
   `{"Message": ..., "RequestID": ...}`, which is what botocore parses
   into the modelled exception. Every answer has an `x-amzn-RequestId`.
*/

pub mod credentials;
pub mod query;
pub mod rest;
mod s3;
pub mod sigv4;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::api::customer_profiles::{
    self as cp, CustomerProfiles, ProfilesConfig, UPLOAD_PATH_PREFIX, URL_EXPIRES, URL_SIGNATURE,
    UploadError, UploadRequest,
};
use crate::api::importexport::{Caller, ImportExport, ImportExportConfig, ImportExportError};
use crate::api::pinpoint::{Pinpoint, PinpointConfig};
use crate::api::{ApiError, ErrorCode, Service, escape_markup};
use crate::crypto::MasterKey;
use crate::job::{Clock, Objects, Runner, RunnerConfig, system_clock};
use crate::objects::LocalObjects;
use crate::store::{AccountId, MemoryStore, Store};
use credentials::Credentials;

/// The folder of the data directory that holds local buckets.
pub const BUCKETS_DIR: &str = "buckets";

/// Where S3 multipart uploads keep their parts until they complete, in the
/// data directory.
pub const S3_MULTIPART_DIR: &str = "s3-multipart";

/// The largest object or part one S3 request may put (S3's own limit).
const S3_MAX_PUT_BYTES: u64 = 5 << 30;

/// How `sluice serve` is set up.
#[derive(Clone)]
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The store of domains, apps, jobs and what they wrote: any backend
    /// of the store ports. An empty in-memory store unless given (the
    /// `sluice serve` command gives the SQLite file of its data
    /// directory).
    pub store: Arc<dyn Store>,
    /// The account every request acts for (until access keys map to
    /// accounts).
    pub account: AccountId,
    /// The data directory: master key, generated credentials, and (unless
    /// `objects` and `own_objects` say otherwise) buckets, uploads and
    /// labels.
    pub data_dir: PathBuf,
    /// A shared-credentials file of accepted keys; when `None`, a key is
    /// generated into the data directory (see [`Server::credentials_file`]).
    pub credentials: Option<PathBuf>,
    /// Where upload URLs point; `http://<listen address>` when `None`.
    pub public_url: Option<String>,
    /// How long an upload URL is valid.
    pub url_ttl: Duration,
    /// The largest upload.
    pub max_upload_bytes: u64,
    /// The largest API request body.
    pub max_body_bytes: usize,
    /// API requests served at once; more are throttled.
    pub max_requests: usize,
    /// Uploads received at once; more are refused with `SlowDown`.
    pub max_uploads: usize,
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    /// How long a request's headers, and an API request's body, may take
    /// to arrive; also how long a keep-alive connection may sit idle.
    pub request_timeout: Duration,
    /// The slowest an upload body may arrive, in bytes per second, after
    /// the first `request_timeout`.
    pub min_upload_rate: u64,
    /// The region the server answers for: requests must be signed for it,
    /// and ARNs carry it.
    pub region: String,
    /// Jobs run at once.
    pub max_jobs: usize,
    /// Pinpoint import jobs of one app run at once.
    pub max_jobs_per_app: usize,
    /// Import/Export jobs one access key may create in 24 hours.
    pub max_importexport_jobs_per_day: usize,
    /// Where buckets live; folders in `DATA_DIR/buckets` when `None`.
    pub objects: Option<Objects>,
    /// The server's own objects (uploads, shipping labels); folders in the
    /// data directory when `None` (`DATA_DIR/uploads`, `DATA_DIR/labels`).
    pub own_objects: Option<Objects>,
    /// Bytes per piece of an import job (the default when `None`).
    pub piece_size: Option<u64>,
    /// Worker threads for parsing (one per core when `None`).
    pub threads: Option<usize>,
    /// The time (tests move it).
    pub clock: Clock,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 4566)),
            store: Arc::new(MemoryStore::new()),
            account: AccountId::default(),
            data_dir: PathBuf::from("sluice-data"),
            credentials: None,
            public_url: None,
            url_ttl: cp::DEFAULT_URL_TTL,
            max_upload_bytes: cp::DEFAULT_MAX_UPLOAD_BYTES,
            max_body_bytes: 1 << 20,
            max_requests: 64,
            max_uploads: 8,
            max_connections: 1024,
            request_timeout: Duration::from_secs(30),
            min_upload_rate: 64 * 1024,
            region: "us-east-1".into(),
            max_jobs: 2,
            max_jobs_per_app: 2,
            max_importexport_jobs_per_day: ImportExportConfig::default().max_jobs_per_day,
            objects: None,
            own_objects: None,
            piece_size: None,
            threads: None,
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("credentials", &self.credentials)
            .field("public_url", &self.public_url)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_requests", &self.max_requests)
            .finish_non_exhaustive()
    }
}

/// What can stop a server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory, store or keys.
    #[error("{0}")]
    Setup(String),
    /// The listening socket.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The services behind the routes.
#[derive(Clone)]
pub(crate) struct Apis {
    profiles: CustomerProfiles,
    pinpoint: Pinpoint,
    importexport: ImportExport,
}

/// The services of each account, made when an account is first seen: every
/// accepted key belongs to one ([`Credentials::account`]), and each
/// account's services see only its domains, apps, endpoints, segments and
/// jobs (the store keys them all by account), with its id in their ARNs.
struct AccountApis {
    store: Arc<dyn Store>,
    objects: Objects,
    own: Objects,
    runner: Arc<Runner>,
    master: Arc<MasterKey>,
    config: ServerConfig,
    base_url: String,
    made: std::sync::Mutex<std::collections::HashMap<AccountId, Apis>>,
}

/// An account's services; made on a blocking thread the first time, as
/// making them may write (the buckets they keep uploads and labels in).
async fn apis_for(state: &Arc<AppState>, account: &AccountId) -> Result<Apis, String> {
    if let Some(a) = state.apis.made(account) {
        return Ok(a);
    }
    let (state, account) = (Arc::clone(state), account.clone());
    tokio::task::spawn_blocking(move || state.apis.get(&account))
        .await
        .map_err(|e| e.to_string())?
}

impl AccountApis {
    fn made(&self, account: &AccountId) -> Option<Apis> {
        self.made
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(account)
            .cloned()
    }

    fn get(&self, account: &AccountId) -> Result<Apis, String> {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = made.get(account) {
            return Ok(a.clone());
        }
        let cfg = &self.config;
        let importexport = ImportExport::new(
            Arc::clone(&self.store),
            Arc::clone(&self.objects),
            Arc::clone(&self.own),
            ImportExportConfig {
                max_jobs_per_day: cfg.max_importexport_jobs_per_day,
                account: account.clone(),
                region: cfg.region.clone(),
                ..ImportExportConfig::default()
            },
            Arc::clone(&cfg.clock),
        )
        .map_err(|e| e.to_string())?;
        let pinpoint = Pinpoint::new(
            Arc::clone(&self.runner),
            PinpointConfig {
                piece_size: cfg.piece_size,
                account: account.clone(),
                region: cfg.region.clone(),
                export_piece_endpoints: None,
            },
            Arc::clone(&cfg.clock),
        );
        let profiles = CustomerProfiles::new(
            Arc::clone(&self.runner),
            Arc::clone(&self.master),
            Arc::clone(&self.own),
            ProfilesConfig {
                base_url: self.base_url.clone(),
                url_ttl: cfg.url_ttl,
                max_upload_bytes: cfg.max_upload_bytes,
                account: account.clone(),
            },
            Arc::clone(&cfg.clock),
        )
        .map_err(|e| e.to_string())?;
        let apis = Apis {
            profiles,
            pinpoint,
            importexport,
        };
        made.insert(account.clone(), apis.clone());
        Ok(apis)
    }
}

struct AppState {
    apis: AccountApis,
    /// S3 on the same port ([`s3`]).
    s3: s3s::service::S3Service,
    /// For the health check.
    store: Arc<dyn Store>,
    /// The account of keys whose profile names none.
    account: AccountId,
    /// The region the server answers for: signatures are scoped to it.
    region: String,
    /// Per client address, the request bodies being read before their
    /// signature is verified.
    unverified: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    /// The most of those one client may have ([`Unverified`]).
    unverified_per_client: usize,
    credentials: Credentials,
    clock: Clock,
    max_body: usize,
    requests: Arc<Semaphore>,
    uploads: Arc<Semaphore>,
    request_timeout: Duration,
    min_upload_rate: u64,
    /// The largest upload, also the most a refused one is read for.
    max_upload: u64,
}

impl AppState {
    /// The account a key belongs to: the one its profile names, or the
    /// server's default.
    fn account_of(&self, key: &str) -> &AccountId {
        self.credentials.account(key).unwrap_or(&self.account)
    }
}

/// One request body of a client being read before its signature is
/// verified. A client may hold a quarter of the request slots this way, so
/// that one sending slow bodies under a key id it does not own (the
/// headers passed, the signature will not), or bodies of refused requests
/// that are read only to be dropped ([`discard`]), cannot hold them all.
struct Unverified<'a> {
    state: &'a AppState,
    peer: std::net::IpAddr,
}

impl<'a> Unverified<'a> {
    /// For a request with these headers: one without a body holds nothing
    /// (`Some(None)`) — it cannot trickle, and every client behind one
    /// proxy shares an address.
    fn take_for(
        state: &'a AppState,
        peer: std::net::IpAddr,
        headers: &HeaderMap,
    ) -> Option<Option<Unverified<'a>>> {
        let bodiless = !headers.contains_key("transfer-encoding") && content_length(headers) == 0;
        if bodiless {
            return Some(None);
        }
        Unverified::take(state, peer).map(Some)
    }

    fn take(state: &'a AppState, peer: std::net::IpAddr) -> Option<Unverified<'a>> {
        let mut all = state.unverified.lock().unwrap_or_else(|e| e.into_inner());
        let n = all.entry(peer).or_default();
        if *n >= state.unverified_per_client {
            return None;
        }
        *n += 1;
        Some(Unverified { state, peer })
    }
}

impl Drop for Unverified<'_> {
    fn drop(&mut self) {
        let mut all = self
            .state
            .unverified
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = all.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                all.remove(&self.peer);
            }
        }
    }
}

/// A bound server, ready to [`Server::run`].
pub struct Server {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    max_connections: usize,
    credentials_file: Option<PathBuf>,
    resumed: Vec<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the data directory (store, master key, credentials), starts
    /// the job runner, resumes jobs an earlier server left unfinished, and
    /// binds the listening socket.
    ///
    /// # Errors
    ///
    /// [`ServerError`], saying what could not be opened or bound.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let setup = |e: &dyn std::fmt::Display| ServerError::Setup(e.to_string());
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|e| setup(&e))?;
        let dir = config.data_dir.clone();
        let cfg = config.clone();
        let (apis, credentials, credentials_file, resumed, s3) =
            tokio::task::spawn_blocking(move || -> Result<_, ServerError> {
                let store = Arc::clone(&cfg.store);
                // The keys and uploads live here whichever store is used
                // (a PostgreSQL store makes no directory of its own).
                crate::crypto::create_private_dir_all(&dir)
                    .map_err(|e| setup(&format!("the data directory {}: {e}", dir.display())))?;
                let master = Arc::new(MasterKey::load_or_create(&dir).map_err(|e| setup(&e))?);
                let (credentials, file) = match &cfg.credentials {
                    Some(p) => (Credentials::load(p).map_err(|e| setup(&e))?, None),
                    None => {
                        let (c, _) = Credentials::load_or_generate(&dir).map_err(|e| setup(&e))?;
                        (c, Some(dir.join(credentials::GENERATED_FILE)))
                    }
                };
                let objects: Objects = match &cfg.objects {
                    Some(o) => Arc::clone(o),
                    None => Arc::new(LocalObjects::new(dir.join(BUCKETS_DIR))),
                };
                let owners = s3::Owners {
                    store: Arc::clone(&cfg.store),
                    objects: Arc::clone(&objects),
                    credentials: credentials.clone(),
                    default_account: cfg.account.clone(),
                };
                let s3_front =
                    s3::S3Front::new(owners.clone(), dir.join(S3_MULTIPART_DIR), S3_MAX_PUT_BYTES);
                let own: Objects = match &cfg.own_objects {
                    Some(o) => Arc::clone(o),
                    None => {
                        // Uploads that were being received when an earlier
                        // process died were never committed: an upload is
                        // whole or absent.
                        let local = LocalObjects::new(&dir);
                        local.remove_partial().map_err(|e| setup(&e))?;
                        Arc::new(local)
                    }
                };
                let runner = Arc::new(
                    Runner::new(
                        store,
                        RunnerConfig {
                            max_jobs: cfg.max_jobs,
                            max_jobs_per_app: cfg.max_jobs_per_app,
                            threads: cfg.threads,
                            clock: Arc::clone(&cfg.clock),
                            master_key: Some(Arc::clone(&master)),
                            objects: Some(Arc::clone(&objects)),
                            uploads: Some(Arc::clone(&own)),
                            // Jobs of runners that died elsewhere (other
                            // servers or workers on this store) resume.
                            recover_every: Some(RunnerConfig::default().lease_ttl / 2),
                            ..RunnerConfig::default()
                        },
                    )
                    .map_err(|e| setup(&e))?,
                );
                let resumed = runner
                    .recover()
                    .map_err(|e| setup(&e))?
                    .into_iter()
                    .map(|j| j.id)
                    .collect();
                let mut ip = addr.ip();
                if ip.is_unspecified() {
                    ip = std::net::Ipv4Addr::LOCALHOST.into();
                }
                let base_url = cfg
                    .public_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}", SocketAddr::new(ip, addr.port())));
                let apis = AccountApis {
                    store: Arc::clone(&cfg.store),
                    objects: Arc::clone(&objects),
                    own,
                    runner,
                    master,
                    config: cfg.clone(),
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    made: std::sync::Mutex::default(),
                };
                // The default account's, now: a setup error shows at start.
                apis.get(&cfg.account).map_err(|e| setup(&e))?;
                // Virtual-host style below localhost and the public name.
                let mut hosts = vec!["localhost".to_owned()];
                if let Some(host) = base_url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.split(['/', ':']).next())
                    .filter(|h| h.parse::<std::net::IpAddr>().is_err() && *h != "localhost")
                {
                    hosts.push(host.to_owned());
                }
                let mut s3 = s3s::service::S3ServiceBuilder::new(s3_front);
                s3.set_auth(s3::Keys(credentials.clone()));
                s3.set_access(s3::Access(owners));
                s3.set_host(s3::Hosts(hosts));
                Ok((apis, credentials, file, resumed, s3.build()))
            })
            .await
            .map_err(|e| setup(&e))??;
        Ok(Server {
            listener,
            state: Arc::new(AppState {
                apis,
                s3,
                store: Arc::clone(&config.store),
                account: config.account.clone(),
                region: config.region.clone(),
                unverified: std::sync::Mutex::default(),
                unverified_per_client: (config.max_requests / 4).max(1),
                credentials,
                clock: config.clock,
                max_body: config.max_body_bytes,
                requests: Arc::new(Semaphore::new(config.max_requests.max(1))),
                uploads: Arc::new(Semaphore::new(config.max_uploads.max(1))),
                request_timeout: config.request_timeout,
                min_upload_rate: config.min_upload_rate.max(1),
                max_upload: config.max_upload_bytes,
            }),
            max_connections: config.max_connections.max(1),
            credentials_file,
            resumed,
        })
    }

    /// The address it listens on.
    ///
    /// # Errors
    ///
    /// As [`tokio::net::TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The generated credentials file, when no `credentials` were given.
    pub fn credentials_file(&self) -> Option<&PathBuf> {
        self.credentials_file.as_ref()
    }

    /// Jobs resumed at start.
    pub fn resumed(&self) -> &[String] {
        &self.resumed
    }

    /// Serves until `shutdown` completes, then lets running requests
    /// finish and stops the runner (running jobs go back to the queue and
    /// resume at the next start).
    ///
    /// # Errors
    ///
    /// When accepting connections fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.state.request_timeout);
        let connections = Arc::new(Semaphore::new(self.max_connections));
        let (closing, closed) = tokio::sync::watch::channel(());
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of descriptors, or a connection reset before it
                    // was accepted: neither ends the server.
                    Err(e) => {
                        eprintln!("sluice: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                drop(stream); // over max_connections: closed at once
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = Arc::clone(&self.state);
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = Arc::clone(&state);
                async move {
                    Ok::<_, std::convert::Infallible>(
                        handle(state, peer.ip(), req.map(Body::new)).await,
                    )
                }
            });
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut closed = closed.clone();
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = closed.changed() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
                drop(permit);
            });
        }
        // Running requests finish; idle connections close.
        let _ = closing.send(());
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = connections.acquire_many(all).await;
        // The runner's drop joins its threads: not on the runtime's.
        let state = self.state;
        let _ = tokio::task::spawn_blocking(move || drop(state)).await;
        Ok(())
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn with_id(mut r: Response<Body>, id: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-amzn-requestid", v.clone());
        r.headers_mut().insert("x-amz-request-id", v);
    }
    r
}

/// A JSON error as the REST-JSON protocol has it (Pinpoint's errors also
/// carry the request id as a member).
fn json_error(status: u16, code: &str, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({ "Message": message, "RequestID": request_id }).to_string();
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "application/json")
        .header("x-amzn-errortype", code)
        .body(Body::from(body))
        .expect("a valid response")
}

fn api_error(e: &ApiError, service: Service, request_id: &str) -> Response<Body> {
    json_error(
        e.code.http_status_in(service),
        e.code.name_in(service),
        &e.message,
        request_id,
    )
}

/// An S3 error: XML.
fn s3_error(e: &UploadError, id: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
         <RequestId>{}</RequestId></Error>",
        e.code,
        escape_markup(&e.message),
        id
    );
    Response::builder()
        .status(StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "application/xml")
        .body(Body::from(body))
        .expect("a valid response")
}

/// The unsigned health check's path.
pub const HEALTH_PATH: &str = "/_sluice/health";

/// `GET /_sluice/health`: 200 with the version and the store when the store
/// answers a read, 503 with why when it does not. Unsigned, and telling
/// nothing of anyone's data.
async fn health(state: &AppState) -> Response<Body> {
    let store = Arc::clone(&state.store);
    let checked = tokio::task::spawn_blocking(move || {
        let at = store.location();
        (at, store.check().map_err(|e| e.to_string()))
    })
    .await;
    let (status, body) = match checked {
        Ok((at, Ok(()))) => (
            StatusCode::OK,
            serde_json::json!({
                "status": "ok", "version": env!("CARGO_PKG_VERSION"), "store": at,
            }),
        ),
        Ok((at, Err(e))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "unavailable", "version": env!("CARGO_PKG_VERSION"),
                "store": at, "error": e,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({
                "status": "unavailable", "version": env!("CARGO_PKG_VERSION"),
                "error": e.to_string(),
            }),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid response")
}

/// What a request turned out to be, filled in as it is served, for its
/// log line.
#[derive(Debug, Default)]
struct Seen {
    service: &'static str,
    operation: Option<String>,
    /// The access key that signed it, once the signature is checked.
    key: Option<String>,
}

/// Shared between a request's handler and, for S3, s3s's access check
/// (through the request's extensions).
#[derive(Clone, Debug, Default)]
struct SeenSlot(Arc<std::sync::Mutex<Seen>>);

impl SeenSlot {
    fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn content_length(h: &HeaderMap) -> u64 {
    h.get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Serves one request and writes its log line: request id, account, key,
/// service, operation, status, bytes in and out, latency.
async fn handle(
    state: Arc<AppState>,
    peer: std::net::IpAddr,
    req: Request<Body>,
) -> Response<Body> {
    let started = std::time::Instant::now();
    let id = request_id();
    let seen = SeenSlot::default();
    let (method, bytes_in) = (req.method().clone(), content_length(req.headers()));
    let response = serve(&state, peer, req, &id, &seen).await;
    let response = with_id(response, &id);
    let s = seen.with(std::mem::take);
    let account = s
        .key
        .as_deref()
        .map_or("-", |k| state.account_of(k).as_str());
    tracing::info!(
        target: "sluice::request",
        request_id = %id,
        account,
        key = s.key.as_deref().unwrap_or("-"),
        service = s.service,
        operation = s.operation.as_deref().unwrap_or("-"),
        method = %method,
        status = response.status().as_u16(),
        bytes_in,
        bytes_out = axum::body::HttpBody::size_hint(response.body())
            .exact()
            .unwrap_or_else(|| content_length(response.headers())),
        latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    );
    response
}

async fn serve(
    state: &Arc<AppState>,
    peer: std::net::IpAddr,
    req: Request<Body>,
    id: &str,
    seen: &SeenSlot,
) -> Response<Body> {
    if req.method() == Method::GET && req.uri().path() == HEALTH_PATH {
        seen.with(|s| (s.service, s.operation) = ("sluice", Some("Health".into())));
        return health(state).await;
    }
    let upload = req.method() == Method::PUT && req.uri().path().starts_with(UPLOAD_PATH_PREFIX);
    if upload {
        seen.with(|s| (s.service, s.operation) = ("profile", Some("UploadFile".into())));
        match Arc::clone(&state.uploads).try_acquire_owned() {
            Ok(_permit) => receive_upload(state, peer, req)
                .await
                .unwrap_or_else(|e| s3_error(&e, id)),
            Err(_) => s3_error(&slow_down(), id),
        }
    } else if s3::signed_for_s3(req.headers(), req.uri().query()) {
        seen.with(|s| s.service = "s3");
        if let Some(region) = s3::signed_region(req.headers(), req.uri().query())
            && region != state.region
        {
            return s3_error(
                &UploadError {
                    status: 400,
                    code: "AuthorizationHeaderMalformed",
                    message: format!(
                        "The authorization header is malformed; the region '{region}' is \
                         wrong; expecting '{}'",
                        state.region
                    ),
                },
                id,
            );
        }
        match Arc::clone(&state.requests).try_acquire_owned() {
            Ok(_permit) => s3_request(state, peer, req, id, seen).await,
            Err(_) => s3_error(&slow_down(), id),
        }
    } else if req.method() == Method::POST && req.uri().path() == "/" {
        seen.with(|s| s.service = "importexport");
        match Arc::clone(&state.requests).try_acquire_owned() {
            Ok(_permit) => query_request(state, peer, req, id, seen).await,
            Err(_) => xml_error(
                400,
                "Throttling",
                "too many requests at once; retry with backoff",
                id,
            ),
        }
    } else {
        let service = Service::of_path(req.uri().path());
        seen.with(|s| s.service = service.signing_name());
        match Arc::clone(&state.requests).try_acquire_owned() {
            Ok(_permit) => api_request(state, peer, req, service, id, seen).await,
            Err(_) => api_error(
                &ApiError {
                    code: ErrorCode::Throttling,
                    message: "too many requests at once; retry with backoff".into(),
                },
                service,
                id,
            ),
        }
    }
}

/// S3's answer when every slot is taken (the SDKs back off and retry).
fn slow_down() -> UploadError {
    UploadError {
        status: 503,
        code: "SlowDown",
        message: "Please reduce your request rate.".into(),
    }
}

/// An S3 call, through s3s: its answer, whose body streams. A refusal
/// made before the body was read (a bad signature on a PUT) first reads
/// and drops what the client still sends ([`discard`]), so that the client
/// gets the answer and not a connection closed under it.
async fn s3_request(
    state: &AppState,
    peer: std::net::IpAddr,
    req: Request<Body>,
    id: &str,
    seen: &SeenSlot,
) -> Response<Body> {
    let headers = req.headers().clone();
    let (mut parts, body) = req.into_parts();
    // s3's access check names the operation and key here.
    parts.extensions.insert(seen.clone());
    let body = Arc::new(std::sync::Mutex::new(Some(body)));
    let req = Request::from_parts(
        parts,
        s3s::Body::http_body_unsync(SharedBody(Arc::clone(&body))),
    );
    let response = match state.s3.call(req).await {
        Ok(r) => r.map(Body::new),
        Err(e) => xml_error(500, "InternalError", &format!("{e:?}"), id),
    };
    if response.status().is_client_error() || response.status().is_server_error() {
        let left = body.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(left) = left
            && !axum::body::HttpBody::is_end_stream(&left)
        {
            discard(state, peer, &headers, left).await;
        }
    }
    response
}

/// A request body that stays reachable after the handler it was given to
/// is done with it.
struct SharedBody(Arc<std::sync::Mutex<Option<Body>>>);

impl axum::body::HttpBody for SharedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match inner.as_mut() {
            Some(b) => std::pin::Pin::new(b).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(axum::body::HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or_else(
                hyper::body::SizeHint::default,
                axum::body::HttpBody::size_hint,
            )
    }
}

fn header_list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(), // always lowercase in `http`
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Checks a request's SigV4 signature for `signing_name` and returns the
/// access key id that signed it.
fn authenticate(
    state: &AppState,
    parts: &axum::http::request::Parts,
    body: &[u8],
    signing_name: &str,
) -> Result<String, sigv4::AuthError> {
    let headers = header_list(&parts.headers);
    let signed = sigv4::SignedRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &headers,
        body,
    };
    let scope = sigv4::Scope {
        service: signing_name,
        region: &state.region,
    };
    sigv4::verify(&signed, scope, &state.credentials, (state.clock)())
}

/// What the headers alone say of a request's signature ([`sigv4::precheck`]).
fn precheck(
    state: &AppState,
    parts: &axum::http::request::Parts,
    signing_name: &str,
) -> Result<(), sigv4::AuthError> {
    sigv4::precheck(
        &header_list(&parts.headers),
        sigv4::Scope {
            service: signing_name,
            region: &state.region,
        },
        &state.credentials,
        (state.clock)(),
    )
}

async fn api_request(
    state: &Arc<AppState>,
    peer: std::net::IpAddr,
    req: Request<Body>,
    service: Service,
    id: &str,
    seen: &SeenSlot,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // The headers first: a request no key signed is refused before its
    // body holds a slot.
    if let Err(e) = precheck(state, &parts, service.signing_name()) {
        return json_error(e.status, e.code, &e.message, id);
    }
    let Some(unverified) = Unverified::take_for(state, peer, &parts.headers) else {
        let e = ApiError {
            code: ErrorCode::Throttling,
            message: "too many requests at once from one client; retry with backoff".into(),
        };
        return api_error(&e, service, id);
    };
    let body = match read_body(state, body).await {
        Ok(b) => b,
        Err(BodyError::Slow) => {
            return json_error(408, "RequestTimeoutException", &slow_body(state), id);
        }
        Err(BodyError::TooLarge) => {
            return api_error(
                &ApiError {
                    code: ErrorCode::PayloadTooLarge,
                    message: format!(
                        "the request body is over {} bytes, or was cut off",
                        state.max_body
                    ),
                },
                service,
                id,
            );
        }
    };
    let key = match authenticate(state, &parts, &body, service.signing_name()) {
        Ok(key) => key,
        Err(e) => return json_error(e.status, e.code, &e.message, id),
    };
    drop(unverified);
    let account = state.account_of(&key).clone();
    seen.with(|s| s.key = Some(key));
    let apis = match apis_for(state, &account).await {
        Ok(a) => a,
        Err(e) => return api_error(&ApiError::internal(&e), service, id),
    };
    let (method, uri) = (parts.method, parts.uri);
    let seen_op = seen.clone();
    let result = tokio::task::spawn_blocking(move || {
        rest::decode(
            method.as_str(),
            uri.path(),
            uri.query().unwrap_or(""),
            &body,
        )
        .map(|call| {
            seen_op.with(|s| s.operation = Some(call.name().into()));
            call.call(&apis)
        })
    })
    .await;
    match result {
        Ok(Ok(Ok((status, v)))) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(v.to_string()))
            .expect("a valid response"),
        Ok(Ok(Err(e)) | Err(rest::RestError::Api(e))) => api_error(&e, service, id),
        Ok(Err(rest::RestError::NoOperation(m))) => {
            json_error(404, "UnknownOperationException", &m, id)
        }
        Err(e) => api_error(&ApiError::internal(&e), service, id),
    }
}

enum BodyError {
    TooLarge,
    Slow,
}

/// An API request's body, whole, within the size limit and the request
/// timeout.
async fn read_body(state: &AppState, body: Body) -> Result<axum::body::Bytes, BodyError> {
    match tokio::time::timeout(
        state.request_timeout,
        axum::body::to_bytes(body, state.max_body),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Slow),
    }
}

fn slow_body(state: &AppState) -> String {
    format!(
        "the request body did not arrive within {} s",
        state.request_timeout.as_secs_f64()
    )
}

fn xml_error(status: u16, code: &str, message: &str, request_id: &str) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
        .header("content-type", "text/xml")
        .body(Body::from(query::error(code, message, request_id)))
        .expect("a valid response")
}

fn ie_error(e: &ImportExportError, request_id: &str) -> Response<Body> {
    xml_error(
        e.exception.http_status(),
        e.exception.code(),
        &e.message,
        request_id,
    )
}

/// An operation's output as a JSON object of its members.
fn as_value<T: Serialize>(r: Result<T, ImportExportError>) -> Result<Value, ImportExportError> {
    r.and_then(|o| serde_json::to_value(o).map_err(|e| ImportExportError::internal(&e)))
}

/// An Import/Export request: the query protocol, signed like the rest.
async fn query_request(
    state: &Arc<AppState>,
    peer: std::net::IpAddr,
    req: Request<Body>,
    id: &str,
    seen: &SeenSlot,
) -> Response<Body> {
    use crate::api::importexport::SIGNING_NAME;
    use query::QueryRequest as Q;
    let (parts, body) = req.into_parts();
    // The headers first: a request no key signed is refused before its
    // body holds a slot.
    if let Err(e) = precheck(state, &parts, SIGNING_NAME) {
        return xml_error(e.status, e.code, &e.message, id);
    }
    let Some(unverified) = Unverified::take_for(state, peer, &parts.headers) else {
        return xml_error(
            400,
            "Throttling",
            "too many requests at once from one client; retry with backoff",
            id,
        );
    };
    let body = match read_body(state, body).await {
        Ok(b) => b,
        Err(BodyError::Slow) => return xml_error(408, "RequestTimeout", &slow_body(state), id),
        Err(BodyError::TooLarge) => {
            return xml_error(
                413,
                "RequestEntityTooLarge",
                &format!(
                    "the request body is over {} bytes, or was cut off",
                    state.max_body
                ),
                id,
            );
        }
    };
    let key_id = match authenticate(state, &parts, &body, SIGNING_NAME) {
        Ok(k) => k,
        Err(e) => return xml_error(e.status, e.code, &e.message, id),
    };
    drop(unverified);
    let account = state.account_of(&key_id).clone();
    seen.with(|s| s.key = Some(key_id.clone()));
    let apis = match apis_for(state, &account).await {
        Ok(a) => a,
        Err(e) => return xml_error(500, "InternalError", &e, id),
    };
    let caller = Caller {
        secret_access_key: state
            .credentials
            .secret(&key_id)
            .unwrap_or_default()
            .to_owned(),
        access_key_id: key_id,
    };
    let request = match query::decode(&body) {
        Ok(r) => r,
        Err(query::DecodeError::Api(e)) => return ie_error(&e, id),
        Err(query::DecodeError::Protocol(code, m)) => return xml_error(400, code, &m, id),
    };
    let action = request.action();
    seen.with(|s| s.operation = Some(action.into()));
    let result = tokio::task::spawn_blocking(move || {
        let (ie, c) = (&apis.importexport, &caller);
        match request {
            Q::CreateJob(r) => as_value(ie.create_job(c, &r)),
            Q::GetStatus(r) => as_value(ie.get_status(c, &r)),
            Q::ListJobs(r) => as_value(ie.list_jobs(c, &r)),
            Q::UpdateJob(r) => as_value(ie.update_job(c, &r)),
            Q::CancelJob(r) => as_value(ie.cancel_job(c, &r)),
            Q::GetShippingLabel(r) => as_value(ie.get_shipping_label(c, &r)),
        }
    })
    .await;
    match result {
        Ok(Ok(v)) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/xml")
            .body(Body::from(query::response(action, &v, id)))
            .expect("a valid response"),
        Ok(Err(e)) => ie_error(&e, id),
        Err(e) => ie_error(&ImportExportError::internal(&e), id),
    }
}

/// An upload PUT: authorized by its URL and SSE-C headers, streamed into a
/// sealed file, committed whole or not at all.
/// Reads and drops the body of a request refused before its body was
/// read, so that a client that sends its body before it reads the answer
/// (urllib, most scripts) gets the answer, not a connection closed under
/// it. Not when the client asked `Expect: 100-continue` (it waits for the
/// answer and sends nothing), and never more than the upload limit or for
/// longer than the upload pace allows.
async fn discard(state: &AppState, peer: std::net::IpAddr, headers: &HeaderMap, mut body: Body) {
    let continues = headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if continues {
        return;
    }
    // What it may hold is its client's budget of unverified bodies: a
    // client over it gets the connection closed instead.
    let Some(_unverified) = Unverified::take(state, peer) else {
        return;
    };
    let started = tokio::time::Instant::now();
    let mut received: u64 = 0;
    while received <= state.max_upload {
        let allowed = state.request_timeout
            + Duration::from_secs_f64(received as f64 / state.min_upload_rate as f64);
        match tokio::time::timeout_at(started + allowed, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                received += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

async fn receive_upload(
    state: &Arc<AppState>,
    peer: std::net::IpAddr,
    req: Request<Body>,
) -> Result<Response<Body>, UploadError> {
    let (parts, body) = req.into_parts();
    let seg = rest::segments(parts.uri.path());
    let account = match seg.as_slice() {
        [_, account, _, _] => AccountId::parse(account),
        _ => None,
    };
    let (Some(account), [_, _, domain, job]) = (account, seg.as_slice()) else {
        discard(state, peer, &parts.headers, body).await;
        return Err(UploadError {
            status: 404,
            code: "NoSuchKey",
            message: "an upload URL is /uploads/<account>/<domain>/<job>".into(),
        });
    };
    let query = parts.uri.query().unwrap_or("");
    let h = &parts.headers;
    let request = UploadRequest {
        domain_name: domain.clone(),
        job_id: job.clone(),
        expires: rest::query_param(query, URL_EXPIRES),
        signature: rest::query_param(query, URL_SIGNATURE),
        sse_algorithm: header(h, "x-amz-server-side-encryption-customer-algorithm"),
        sse_key: header(h, "x-amz-server-side-encryption-customer-key"),
        sse_key_md5: header(h, "x-amz-server-side-encryption-customer-key-md5"),
        content_length: header(h, "content-length").and_then(|v| v.trim().parse().ok()),
        host: header(h, "host"),
    };
    let internal = |e: &dyn std::fmt::Display| {
        eprintln!("sluice: upload: {e}");
        UploadError {
            status: 500,
            code: "InternalError",
            message: "We encountered an internal error. Please try again.".into(),
        }
    };
    let profiles = apis_for(state, &account)
        .await
        .map_err(|e| internal(&e))?
        .profiles;
    let slot = match tokio::task::spawn_blocking(move || profiles.authorize_upload(&request))
        .await
        .map_err(|e| internal(&e))?
    {
        Ok(slot) => slot,
        Err(refused) => {
            discard(state, peer, &parts.headers, body).await;
            return Err(refused);
        }
    };
    let key_md5 = slot.key().md5_base64();
    // The slot writes (a file, or parts to S3) on a blocking thread; the
    // body is handed to it as it arrives, a few frames at a time. Only an
    // explicit end commits: a sender dropped before it (a timeout, a
    // broken body) drops the slot, and nothing of the upload stays.
    enum Part {
        Data(axum::body::Bytes),
        End,
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Part>(4);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), UploadError> {
        let mut slot = slot;
        loop {
            match rx.blocking_recv() {
                Some(Part::Data(data)) => slot.push(&data)?,
                Some(Part::End) => return slot.commit(),
                None => {
                    return Err(UploadError {
                        status: 400,
                        code: "IncompleteBody",
                        message: "the upload was abandoned".into(),
                    });
                }
            }
        }
    });
    let mut received: u64 = 0;
    let mut body = body;
    // The body must keep up min_upload_rate after a grace of
    // request_timeout: a trickle is cut off, a slow but steady link is not.
    let started = tokio::time::Instant::now();
    let broken = loop {
        let allowed = state.request_timeout
            + Duration::from_secs_f64(received as f64 / state.min_upload_rate as f64);
        let Ok(frame) = tokio::time::timeout_at(started + allowed, body.frame()).await else {
            break Some(UploadError {
                status: 400,
                code: "RequestTimeout",
                message: format!(
                    "Your socket connection to the server was not read from or written to \
                     within the timeout period: {received} bytes in {:.0} s, slower than {} \
                     bytes per second.",
                    allowed.as_secs_f64(),
                    state.min_upload_rate
                ),
            });
        };
        let Some(frame) = frame else {
            break None;
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                break Some(UploadError {
                    status: 400,
                    code: "IncompleteBody",
                    message: format!("the body was cut off after {received} bytes: {e}"),
                });
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        received += data.len() as u64;
        // The slot refuses a body past its size (EntityTooLarge) or a
        // store that fails; then the writer is gone and its result says
        // why.
        if tx.send(Part::Data(data)).await.is_err() {
            break None;
        }
    };
    if let Some(e) = broken {
        drop(tx);
        let _ = writer.await;
        return Err(e);
    }
    // The writer may have failed already: then the end is not taken.
    let _ = tx.send(Part::End).await;
    writer.await.map_err(|e| internal(&e))??;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
        .header("x-amz-server-side-encryption-customer-key-md5", key_md5)
        .body(Body::empty())
        .expect("a valid response"))
}
