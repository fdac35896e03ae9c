//! `sluice bucket mb|put|ls`: buckets as S3 has them, local or on an
//! S3-compatible endpoint.

use std::path::PathBuf;
use std::sync::Arc;

use sluice::crypto::{MASTER_KEY_FILE, MasterKey};
use sluice::job::Objects;
use sluice::objects::{LocalObjects, ObjectAttributes, ObjectUrl, S3Config, S3Objects};
use sluice::server::BUCKETS_DIR;
use sluice::store::BucketSettings;

use super::{CliError, DEFAULT_DATA_DIR};

/// Where buckets live: folders in the data directory, or an S3-compatible
/// endpoint.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BucketArgs {
    /// Data directory (buckets are folders in DATA_DIR/buckets; the store
    /// is the SQLite file in it unless --store names another).
    #[arg(long, env = "SLUICE_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub(crate) data_dir: PathBuf,
    /// The store, if not the SQLite file in --data-dir: a PostgreSQL
    /// database that several sluice processes share,
    /// postgresql://USER[:PASSWORD]@HOST:PORT/DB.
    #[arg(long, env = "SLUICE_STORE", hide_env_values = true, value_name = "URL")]
    pub(crate) store: Option<String>,
    /// An S3-compatible endpoint, if buckets are kept there.
    #[command(flatten)]
    pub(crate) s3: S3Args,
}

/// An S3-compatible endpoint to keep buckets on instead of folders.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct S3Args {
    /// An S3-compatible endpoint to keep buckets on, e.g.
    /// http://127.0.0.1:9000 (path-style requests).
    #[arg(long, env = "SLUICE_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Region to sign S3 requests for.
    #[arg(long, env = "SLUICE_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// Access key id for the S3 endpoint.
    #[arg(long, env = "SLUICE_S3_ACCESS_KEY_ID")]
    s3_access_key_id: Option<String>,
    /// Secret key for the S3 endpoint (better given by its environment
    /// variable than on the command line).
    #[arg(long, env = "SLUICE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    s3_secret_access_key: Option<String>,
}

impl S3Args {
    /// The buckets these flags name: on the endpoint, or folders in
    /// `local` without one.
    pub(crate) fn objects(&self, local: &std::path::Path) -> Result<Objects, CliError> {
        let Some(endpoint) = &self.s3_endpoint else {
            return Ok(Arc::new(LocalObjects::new(local)));
        };
        let (Some(id), Some(secret)) = (&self.s3_access_key_id, &self.s3_secret_access_key) else {
            return Err(CliError(
                "--s3-endpoint needs --s3-access-key-id and --s3-secret-access-key \
                 (or SLUICE_S3_ACCESS_KEY_ID and SLUICE_S3_SECRET_ACCESS_KEY)"
                    .into(),
            ));
        };
        Ok(Arc::new(S3Objects::new(S3Config {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            region: self.s3_region.clone(),
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        })?))
    }
}

impl BucketArgs {
    /// The buckets these flags name.
    pub(crate) fn objects(&self) -> Result<Objects, CliError> {
        self.s3.objects(&self.data_dir.join(BUCKETS_DIR))
    }

    /// The store these flags name.
    pub(crate) fn open_store(&self) -> Result<Arc<dyn sluice::store::Store>, CliError> {
        super::open(self.store.as_deref(), &self.data_dir)
    }

    /// The key of the data directory, which opens the uploads sealed
    /// there; none when it has none (no server wrote it).
    pub(crate) fn master_key(&self) -> Result<Option<Arc<MasterKey>>, CliError> {
        let key_file = self.data_dir.join(MASTER_KEY_FILE);
        if !key_file.is_file() {
            return Ok(None);
        }
        Ok(Some(Arc::new(MasterKey::load(&key_file)?)))
    }

    /// The data directory's own objects (uploads, labels).
    pub(crate) fn own_objects(&self) -> Objects {
        Arc::new(LocalObjects::new(&self.data_dir))
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Make a bucket: sluice bucket mb s3://BUCKET
    Mb {
        /// s3://BUCKET
        url: String,
        /// The bucket's region, as Import/Export checks it (a bucket with
        /// none is in the server's region).
        #[arg(long)]
        region: Option<String>,
        /// The access key id that owns the bucket: Import/Export jobs of
        /// other keys may not use it (any key may when not given).
        #[arg(long, value_name = "ACCESS_KEY_ID")]
        owner: Option<String>,
        #[command(flatten)]
        at: BucketArgs,
    },
    /// Put a file into a bucket that exists: sluice bucket put FILE s3://BUCKET/KEY
    /// (a KEY ending in / takes the file's name).
    Put {
        /// The local file.
        file: PathBuf,
        /// s3://BUCKET/KEY
        url: String,
        #[command(flatten)]
        at: BucketArgs,
    },
    /// List the objects at a key or below a prefix: sluice bucket ls s3://BUCKET/PREFIX
    Ls {
        /// s3://BUCKET[/PREFIX]
        url: String,
        #[command(flatten)]
        at: BucketArgs,
    },
}

pub(crate) fn run(cmd: Command) -> Result<(), CliError> {
    match cmd {
        Command::Mb {
            url,
            region,
            owner,
            at,
        } => {
            let u = ObjectUrl::parse(&url)?;
            if !u.key.is_empty() {
                return Err(CliError(format!(
                    "{url}: mb takes s3://BUCKET, without a key"
                )));
            }
            at.objects()?.create_bucket(&u.bucket)?;
            record_bucket(&at, &u.bucket, region, owner)?;
            println!("make_bucket: {}", u.bucket);
        }
        Command::Put { file, url, at } => {
            let mut u = ObjectUrl::parse(&url)?;
            if u.key.is_empty() || u.key.ends_with('/') {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .ok_or_else(|| CliError(format!("{}: no file name", file.display())))?;
                u.key.push_str(name);
            }
            let objects = at.objects()?;
            let mut from = std::fs::File::open(&file)
                .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
            let mut to = objects.write(&u.bucket, &u.key, &ObjectAttributes::default())?;
            let n = sluice::objects::copy(&mut from, &mut to)
                .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
            to.finish()?;
            println!("upload: {} to {u} ({n} bytes)", file.display());
        }
        Command::Ls { url, at } => {
            let u = ObjectUrl::parse(&url)?;
            for o in sluice::objects::resolve(&*at.objects()?, &u)? {
                println!("{:>12} s3://{}/{}", o.size, u.bucket, o.key);
            }
        }
    }
    Ok(())
}

/// Records a bucket's region and owner, as `bucket mb` takes them.
fn record_bucket(
    at: &BucketArgs,
    bucket: &str,
    region: Option<String>,
    owner: Option<String>,
) -> Result<(), CliError> {
    if region.is_none() && owner.is_none() {
        return Ok(());
    }
    let store = at.open_store()?;
    store.set_bucket_settings(
        &super::account(),
        &BucketSettings {
            bucket: bucket.to_owned(),
            region,
            owner,
        },
    )?;
    Ok(())
}
