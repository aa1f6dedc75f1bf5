//! Turns the storage configuration into object stores, one per bucket: the local filesystem, or a
//! remote backend (S3-compatible, GCS, Azure) with resolved credentials, timeouts and retries.
//! Missing credentials are found here, at daemon start, not at the first backup.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::create_bucket::{AzureAuth, BucketCreator};
use crate::config::{Secret, StorageBackend, StorageConfig};
use crate::error::{Error, Result};

/// Reads an environment variable; a parameter so credential resolution unit-tests without touching
/// the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, read once when the daemon starts (never written).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(super) enum Backend {
    Local { root: PathBuf },
    S3(S3Settings),
    Gcs(GcsSettings),
    Azure(AzureSettings),
}

pub(super) struct S3Settings {
    endpoint: String,
    region: String,
    virtual_hosted_style: bool,
    credentials: S3Credentials,
}

impl S3Settings {
    /// The endpoint for one bucket. object_store takes a custom endpoint as it is in the
    /// virtual-hosted style, so the bucket goes into the host name here (`bucket.host`), or every
    /// owner's bucket would be the same.
    fn bucket_endpoint(&self, bucket: &str) -> object_store::Result<String> {
        if !self.virtual_hosted_style || self.endpoint.is_empty() {
            return Ok(self.endpoint.clone());
        }
        let bad = |why: &str| object_store::Error::Generic {
            store: "S3",
            source: format!("storage.s3.endpoint {why}").into(),
        };
        let mut url = reqwest::Url::parse(&self.endpoint).map_err(|_| bad("is not a URL"))?;
        let host = url
            .host_str()
            .ok_or_else(|| bad("has no host"))?
            .to_string();
        url.set_host(Some(&format!("{bucket}.{host}")))
            .map_err(|_| bad("cannot take the bucket name in its host"))?;
        Ok(url.as_str().trim_end_matches('/').to_string())
    }
}

enum S3Credentials {
    Static {
        key_id: String,
        secret: Secret,
        token: Secret,
    },
    /// object_store's provider chain: web identity, ECS task role, instance metadata.
    Environment,
}

pub(super) struct GcsSettings {
    credentials: GcsCredentials,
    /// The JSON/XML API base URL when it is not Google's.
    endpoint: String,
    /// Project in which missing buckets are created; empty: buckets must exist.
    project: String,
}

enum GcsCredentials {
    ServiceAccountPath(String),
    ServiceAccountKey(Secret),
    ApplicationCredentials(String),
    InstanceMetadata,
}

const GCS_DEFAULT_BASE_URL: &str = "https://storage.googleapis.com";

pub(super) struct AzureSettings {
    account: String,
    endpoint: String,
    credentials: AzureCredentials,
}

enum AzureCredentials {
    AccessKey(Secret),
    SasToken(Secret),
    ManagedIdentity,
}

/// Azurite's development account, the same in every installation.
const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzureSettings {
    /// The blob service URL of the account, without a trailing slash.
    fn account_url(&self) -> String {
        if self.endpoint.is_empty() {
            format!("https://{}.blob.core.windows.net", self.account)
        } else {
            self.endpoint.clone()
        }
    }
}

/// The stores of one bucket: `requests` for uploads and lookups (each attempt bounded by the
/// request timeout), `downloads` for streaming reads (bounded by the read timeout, so a large
/// restore is not cut off), and what creates the bucket when the backend can.
pub(super) struct BucketStores {
    pub requests: Arc<dyn ObjectStore>,
    pub downloads: Arc<dyn ObjectStore>,
    pub creator: Option<BucketCreator>,
}

fn config_error(msg: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("invalid storage configuration: {}", msg.into()))
}

fn first(config: &str, env: EnvLookup, names: &[&str]) -> Option<String> {
    if !config.is_empty() {
        return Some(config.to_string());
    }
    names.iter().find_map(|name| env(name))
}

impl Backend {
    /// Resolves the configured backend, reading credentials from the configuration first and the
    /// environment second. `None` for a daemon without backup storage.
    pub fn from_config(config: &StorageConfig, env: EnvLookup) -> Result<Option<Backend>> {
        let backend = match config.backend {
            StorageBackend::None => return Ok(None),
            StorageBackend::Local => Backend::Local {
                root: config.local_path.clone(),
            },
            StorageBackend::S3 => Backend::S3(s3_settings(config, env)?),
            StorageBackend::Gcs => Backend::Gcs(gcs_settings(config, env)?),
            StorageBackend::Azure => Backend::Azure(azure_settings(config, env)?),
        };
        Ok(Some(backend))
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Backend::Local { .. })
    }

    /// Opens the stores of one bucket. Remote backends do no I/O here.
    pub fn open_bucket(&self, bucket: &str, config: &StorageConfig) -> Result<BucketStores> {
        self.open_bucket_or(bucket, config, &|e| {
            tracing::warn!(bucket, error = %e, "storage: cannot open bucket");
            config_error(format!(
                "cannot open bucket {bucket}: {}",
                super::describe(&e)
            ))
        })
    }

    /// At daemon start: builds the stores of a bucket once, so unusable settings (an unreadable
    /// key file, say) stop the start with the backend's own explanation, meant for the operator.
    pub fn check(&self, config: &StorageConfig) -> Result<()> {
        let inline_key = matches!(
            self,
            Backend::Gcs(GcsSettings {
                credentials: GcsCredentials::ServiceAccountKey(_),
                ..
            })
        );
        self.open_bucket_or("wsd-configuration-check", config, &|e| {
            if inline_key {
                // A parse error may quote the key itself.
                config_error(
                    "storage.gcs.service_account_key (or GOOGLE_SERVICE_ACCOUNT_KEY) is not a \
                     usable service account key: expected the JSON key file's content",
                )
            } else {
                config_error(format!("the storage backend cannot be set up: {e}"))
            }
        })
        .map(|_| ())
    }

    fn open_bucket_or(
        &self,
        bucket: &str,
        config: &StorageConfig,
        open_failed: &dyn Fn(object_store::Error) -> Error,
    ) -> Result<BucketStores> {
        match self {
            Backend::Local { root } => {
                let dir = root.join(bucket);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::Storage(format!("cannot create bucket {bucket}: {}", e.kind()))
                })?;
                let fs: Arc<dyn ObjectStore> = Arc::new(
                    LocalFileSystem::new_with_prefix(&dir)
                        .map_err(open_failed)?
                        .with_fsync(true)
                        .with_automatic_cleanup(false),
                );
                Ok(BucketStores {
                    requests: fs.clone(),
                    downloads: fs,
                    creator: None,
                })
            }
            Backend::S3(s3) => {
                let endpoint = s3.bucket_endpoint(bucket).map_err(open_failed)?;
                let build = |(options, retry): (ClientOptions, RetryConfig)| {
                    let mut b = match &s3.credentials {
                        S3Credentials::Environment => AmazonS3Builder::from_env(),
                        S3Credentials::Static { .. } => AmazonS3Builder::new(),
                    };
                    if let S3Credentials::Static {
                        key_id,
                        secret,
                        token,
                    } = &s3.credentials
                    {
                        b = b
                            .with_access_key_id(key_id)
                            .with_secret_access_key(secret.expose());
                        if !token.is_empty() {
                            b = b.with_token(token.expose());
                        }
                    }
                    if !endpoint.is_empty() {
                        b = b.with_endpoint(&endpoint);
                    }
                    // Client options carry allow_http: set it on them, not on the builder,
                    // whose setting with_client_options would replace.
                    let options = options.with_allow_http(s3.endpoint.starts_with("http://"));
                    b.with_bucket_name(bucket)
                        .with_region(&s3.region)
                        .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                        .with_retry(retry)
                        .with_client_options(options)
                        .build()
                };
                let requests = Arc::new(build(request_setup(config)).map_err(open_failed)?);
                let downloads = build(download_setup(config)).map_err(open_failed)?;
                Ok(BucketStores {
                    requests: requests.clone(),
                    downloads: Arc::new(downloads),
                    creator: Some(BucketCreator::S3 {
                        store: requests,
                        region: s3.region.clone(),
                    }),
                })
            }
            Backend::Gcs(gcs) => {
                let build = |(options, retry): (ClientOptions, RetryConfig)| {
                    let b = GoogleCloudStorageBuilder::new();
                    let mut b = match &gcs.credentials {
                        GcsCredentials::ServiceAccountPath(p) => b.with_service_account_path(p),
                        GcsCredentials::ServiceAccountKey(k) => {
                            b.with_service_account_key(k.expose())
                        }
                        GcsCredentials::ApplicationCredentials(p) => {
                            b.with_application_credentials(p)
                        }
                        GcsCredentials::InstanceMetadata => b,
                    };
                    if !gcs.endpoint.is_empty() {
                        b = b.with_base_url(&gcs.endpoint);
                    }
                    let options = options.with_allow_http(gcs.endpoint.starts_with("http://"));
                    b.with_bucket_name(bucket)
                        .with_retry(retry)
                        .with_client_options(options)
                        .build()
                };
                let requests = Arc::new(build(request_setup(config)).map_err(open_failed)?);
                let creator = (!gcs.project.is_empty()).then(|| BucketCreator::Gcs {
                    store: requests.clone(),
                    base_url: if gcs.endpoint.is_empty() {
                        GCS_DEFAULT_BASE_URL.to_string()
                    } else {
                        gcs.endpoint.clone()
                    },
                    project: gcs.project.clone(),
                    bucket: bucket.to_string(),
                });
                Ok(BucketStores {
                    requests,
                    downloads: Arc::new(build(download_setup(config)).map_err(open_failed)?),
                    creator,
                })
            }
            Backend::Azure(az) => {
                let build = |(options, retry): (ClientOptions, RetryConfig)| {
                    let mut b = MicrosoftAzureBuilder::new()
                        .with_container_name(bucket)
                        .with_account(&az.account);
                    b = match &az.credentials {
                        AzureCredentials::AccessKey(k) => b.with_access_key(k.expose()),
                        AzureCredentials::SasToken(t) => {
                            b.with_config(object_store::azure::AzureConfigKey::SasKey, t.expose())
                        }
                        AzureCredentials::ManagedIdentity => b,
                    };
                    if !az.endpoint.is_empty() {
                        b = b.with_endpoint(az.endpoint.clone());
                    }
                    let options = options.with_allow_http(az.endpoint.starts_with("http://"));
                    b.with_retry(retry).with_client_options(options).build()
                };
                let auth = match &az.credentials {
                    AzureCredentials::AccessKey(key) => Some(AzureAuth::SharedKey(key.clone())),
                    AzureCredentials::SasToken(token) => Some(AzureAuth::SasToken(token.clone())),
                    AzureCredentials::ManagedIdentity => None,
                };
                Ok(BucketStores {
                    requests: Arc::new(build(request_setup(config)).map_err(open_failed)?),
                    downloads: Arc::new(build(download_setup(config)).map_err(open_failed)?),
                    creator: auth.map(|auth| BucketCreator::Azure {
                        container_url: format!("{}/{bucket}", az.account_url()),
                        account: az.account.clone(),
                        auth,
                    }),
                })
            }
        }
    }
}

fn s3_settings(config: &StorageConfig, env: EnvLookup) -> Result<S3Settings> {
    let c = &config.s3;
    let key_id = first(&c.access_key_id, env, &["AWS_ACCESS_KEY_ID"]);
    let secret = first(
        c.secret_access_key.expose(),
        env,
        &["AWS_SECRET_ACCESS_KEY"],
    );
    let token = first(c.session_token.expose(), env, &["AWS_SESSION_TOKEN"]);
    let credentials = match (key_id, secret) {
        (Some(key_id), Some(secret)) => S3Credentials::Static {
            key_id,
            secret: Secret::new(secret),
            token: Secret::new(token.unwrap_or_default()),
        },
        (Some(_), None) => {
            return Err(config_error(
                "an S3 access key id is set but no secret access key \
                 (storage.s3.secret_access_key or AWS_SECRET_ACCESS_KEY)",
            ))
        }
        (None, Some(_)) => {
            return Err(config_error(
                "an S3 secret access key is set but no access key id \
                 (storage.s3.access_key_id or AWS_ACCESS_KEY_ID)",
            ))
        }
        (None, None) if c.use_instance_metadata => S3Credentials::Environment,
        (None, None) => {
            return Err(config_error(
                "storage.backend is s3 but no credentials are configured: set \
                 storage.s3.access_key_id and storage.s3.secret_access_key, or the environment \
                 variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
                 storage.s3.use_instance_metadata = true",
            ))
        }
    };
    Ok(S3Settings {
        endpoint: c.endpoint.trim_end_matches('/').to_string(),
        region: first(&c.region, env, &["AWS_REGION", "AWS_DEFAULT_REGION"])
            .unwrap_or_else(|| "us-east-1".to_string()),
        virtual_hosted_style: c.virtual_hosted_style,
        credentials,
    })
}

fn gcs_settings(config: &StorageConfig, env: EnvLookup) -> Result<GcsSettings> {
    let c = &config.gcs;
    let path = c.service_account_path.to_string_lossy();
    // Configured values first (path, then key), the environment after.
    let credentials = if !path.is_empty() {
        GcsCredentials::ServiceAccountPath(path.into_owned())
    } else if !c.service_account_key.is_empty() {
        GcsCredentials::ServiceAccountKey(c.service_account_key.clone())
    } else if let Some(path) = first(
        "",
        env,
        &["GOOGLE_SERVICE_ACCOUNT_PATH", "GOOGLE_SERVICE_ACCOUNT"],
    ) {
        GcsCredentials::ServiceAccountPath(path)
    } else if let Some(key) = env("GOOGLE_SERVICE_ACCOUNT_KEY") {
        GcsCredentials::ServiceAccountKey(Secret::new(key))
    } else if let Some(path) = env("GOOGLE_APPLICATION_CREDENTIALS") {
        GcsCredentials::ApplicationCredentials(path)
    } else if c.use_instance_metadata {
        GcsCredentials::InstanceMetadata
    } else {
        return Err(config_error(
            "storage.backend is gcs but no credentials are configured: set \
             storage.gcs.service_account_path or storage.gcs.service_account_key, or the \
             environment variable GOOGLE_APPLICATION_CREDENTIALS, or \
             storage.gcs.use_instance_metadata = true",
        ));
    };
    Ok(GcsSettings {
        credentials,
        endpoint: c.endpoint.trim_end_matches('/').to_string(),
        project: c.project.clone(),
    })
}

fn azure_settings(config: &StorageConfig, env: EnvLookup) -> Result<AzureSettings> {
    let c = &config.azure;
    let endpoint = c.endpoint.trim_end_matches('/').to_string();
    if c.use_emulator {
        // Azurite serves accounts path-style: http://host:port/<account>/<container>/<blob>.
        let host = if endpoint.is_empty() {
            "http://127.0.0.1:10000"
        } else {
            &endpoint
        };
        return Ok(AzureSettings {
            account: EMULATOR_ACCOUNT.to_string(),
            endpoint: format!("{host}/{EMULATOR_ACCOUNT}"),
            credentials: AzureCredentials::AccessKey(Secret::new(EMULATOR_KEY)),
        });
    }
    let Some(account) = first(&c.account, env, &["AZURE_STORAGE_ACCOUNT_NAME"]) else {
        return Err(config_error(
            "storage.backend is azure but no storage account is configured: set \
             storage.azure.account or AZURE_STORAGE_ACCOUNT_NAME",
        ));
    };
    // Configured values first (key, then SAS token), the environment after.
    let credentials = if !c.access_key.is_empty() {
        AzureCredentials::AccessKey(c.access_key.clone())
    } else if !c.sas_token.is_empty() {
        AzureCredentials::SasToken(c.sas_token.clone())
    } else if let Some(key) = first(
        "",
        env,
        &["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_ACCESS_KEY"],
    ) {
        AzureCredentials::AccessKey(Secret::new(key))
    } else if let Some(sas) = env("AZURE_STORAGE_SAS_TOKEN") {
        AzureCredentials::SasToken(Secret::new(sas))
    } else if c.use_managed_identity {
        AzureCredentials::ManagedIdentity
    } else {
        return Err(config_error(
            "storage.backend is azure but no credentials are configured: set \
             storage.azure.access_key or storage.azure.sas_token, or the environment variable \
             AZURE_STORAGE_ACCOUNT_KEY, or storage.azure.use_managed_identity = true",
        ));
    };
    Ok(AzureSettings {
        account,
        endpoint,
        credentials,
    })
}

fn retry_config(config: &StorageConfig) -> RetryConfig {
    let r = &config.retry;
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(r.initial_backoff_ms),
            max_backoff: Duration::from_millis(r.max_backoff_ms),
            base: 2.0,
        },
        max_retries: r.max_retries,
        retry_timeout: Duration::from_secs(r.timeout_secs),
    }
}

fn base_options(config: &StorageConfig) -> ClientOptions {
    let t = &config.timeouts;
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(t.connect_secs))
        .with_read_timeout(Duration::from_secs(t.read_secs))
}

/// Uploads and lookups: each attempt bounded by the request timeout, retries by the configuration.
fn request_setup(config: &StorageConfig) -> (ClientOptions, RetryConfig) {
    (
        base_options(config).with_timeout(Duration::from_secs(config.timeouts.request_secs)),
        retry_config(config),
    )
}

/// Streaming downloads: no overall timeout (a large restore takes as long as it takes; a stalled
/// connection is caught by the read timeout), and object_store's retry budget of a GET covers the
/// whole body, so its time limit must not end a long download at its first hiccup. The number of
/// retries stays bounded.
fn download_setup(config: &StorageConfig) -> (ClientOptions, RetryConfig) {
    let mut retry = retry_config(config);
    retry.retry_timeout = retry
        .retry_timeout
        .max(Duration::from_secs(DOWNLOAD_RETRY_WINDOW_SECS));
    (base_options(config).with_timeout_disabled(), retry)
}

/// How long after its start a download may still be resumed after an error.
const DOWNLOAD_RETRY_WINDOW_SECS: u64 = 24 * 3600;

#[cfg(test)]
mod tests;
