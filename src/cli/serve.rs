//! `sluice serve`: the job APIs over HTTP for the AWS SDKs and CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::bucket::BucketArgs;
use std::time::Duration;

use sluice::server::{Server, ServerConfig};

use super::{CliError, parse_size};

/// Serve the AWS-shaped job APIs (Customer Profiles upload jobs, Pinpoint
/// import jobs) on HTTP.
///
/// Every API request must be signed (SigV4) with a key from --credentials;
/// without it, a key is generated into the data directory on first start and
/// its file's path is printed (the secret never is).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, env = "SLUICE_LISTEN", default_value = "127.0.0.1:4566")]
    listen: SocketAddr,
    /// Data directory, S3 endpoint: where the store, master key, uploads
    /// and buckets live.
    #[command(flatten)]
    at: BucketArgs,
    /// AWS shared-credentials file of accepted keys (every profile with
    /// aws_access_key_id and aws_secret_access_key).
    #[arg(long, env = "SLUICE_CREDENTIALS")]
    credentials: Option<PathBuf>,
    /// Base URL put in upload URLs, when clients reach the server by
    /// another name than --listen (a proxy, a container).
    #[arg(long, env = "SLUICE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Largest upload (B, KiB, MiB, GiB, KB, MB, GB).
    #[arg(long, env = "SLUICE_MAX_UPLOAD", default_value = "1GB", value_parser = parse_size)]
    max_upload: u64,
    /// Seconds an upload URL stays valid.
    #[arg(long, env = "SLUICE_URL_TTL", default_value_t = 3600)]
    url_ttl: u64,
    /// API requests served at once; more get ThrottlingException.
    #[arg(long, env = "SLUICE_MAX_REQUESTS", default_value_t = 64)]
    max_requests: usize,
    /// Uploads received at once; more get S3's SlowDown (503).
    #[arg(long, env = "SLUICE_MAX_UPLOADS", default_value_t = 8)]
    max_uploads: usize,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Seconds a request's headers (and an API request's body) may take to
    /// arrive, and a keep-alive connection may stay idle.
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT", default_value_t = 30)]
    request_timeout: u64,
    /// The slowest an upload may arrive after the first --request-timeout
    /// seconds, per second (B, KiB, MiB, …); slower is cut off with
    /// RequestTimeout.
    #[arg(long, env = "SLUICE_MIN_UPLOAD_RATE", default_value = "64KiB", value_parser = parse_size)]
    min_upload_rate: u64,
    /// Jobs this process runs at once; more wait in the queue. 0 runs
    /// none: jobs wait in the store for `sluice worker` processes that
    /// share it (--store).
    #[arg(
        long,
        env = "SLUICE_MAX_JOBS",
        visible_alias = "workers",
        default_value_t = 2
    )]
    max_jobs: usize,
    /// Pinpoint import jobs of one app run at once; more wait.
    #[arg(long, env = "SLUICE_MAX_JOBS_PER_APP", default_value_t = 2)]
    max_jobs_per_app: usize,
    /// Import/Export jobs one access key may create in 24 hours; more get
    /// CreateJobQuotaExceededException.
    #[arg(
        long,
        env = "SLUICE_MAX_IMPORTEXPORT_JOBS_PER_DAY",
        default_value_t = 100
    )]
    max_importexport_jobs_per_day: usize,
    /// Bytes per piece of an import job (default 4MiB).
    #[arg(long, env = "SLUICE_PIECE_SIZE", value_parser = parse_size)]
    piece_size: Option<u64>,
    /// Parsing threads (default: one per core).
    #[arg(long, env = "SLUICE_THREADS")]
    threads: Option<usize>,
    /// The region the server answers for: requests must be signed for it
    /// (as AWS's regional endpoints refuse others), and ARNs carry it.
    #[arg(long, env = "SLUICE_REGION", default_value = "us-east-1")]
    region: String,
    /// How the log (standard error, a line per request) is written: text
    /// or json. What it holds is chosen by SLUICE_LOG, as
    /// tracing-subscriber's filters (default: info,s3s=warn).
    #[arg(long, env = "SLUICE_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

/// How the log is written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to standard error: a line per request (request id, account, key,
/// service, operation, status, bytes, latency), and what else SLUICE_LOG
/// lets through.
fn start_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info,s3s=warn"));
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // Another subscriber (a test harness's) stays.
    let _ = match format {
        LogFormat::Text => log.try_init(),
        LogFormat::Json => log.json().flatten_event(true).try_init(),
    };
}

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    start_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let objects = args.at.objects()?;
    let store = args.at.open_store()?;
    runtime.block_on(async move {
        let config = ServerConfig {
            listen: args.listen,
            store,
            data_dir: args.at.data_dir.clone(),
            objects: Some(objects),
            max_jobs_per_app: args.max_jobs_per_app,
            region: args.region,
            max_importexport_jobs_per_day: args.max_importexport_jobs_per_day,
            piece_size: args.piece_size,
            credentials: args.credentials,
            public_url: args.public_url,
            url_ttl: Duration::from_secs(args.url_ttl.max(1)),
            max_upload_bytes: args.max_upload,
            max_requests: args.max_requests,
            max_uploads: args.max_uploads,
            max_connections: args.max_connections,
            request_timeout: Duration::from_secs(args.request_timeout.max(1)),
            min_upload_rate: args.min_upload_rate,
            max_jobs: args.max_jobs,
            threads: args.threads,
            ..ServerConfig::default()
        };
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        if let Some(f) = server.credentials_file() {
            eprintln!(
                "sluice: credentials (AWS shared-credentials format, profile [default]): {}",
                f.display()
            );
        }
        if !server.resumed().is_empty() {
            eprintln!("sluice: resumed {} unfinished jobs", server.resumed().len());
        }
        // The line scripts wait for: the address actually bound (port 0
        // picks a free one).
        println!("sluice: listening on http://{addr}");
        server.run(shutdown_signal()).await?;
        eprintln!("sluice: stopped");
        Ok(())
    })
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
