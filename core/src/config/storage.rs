//! Backup storage settings: which backend, how objects are laid out in buckets, and how uploads
//! behave (parts, parallelism, concurrency, timeouts, retries).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StorageBackend {
    /// Backups on the local filesystem under `local_path` (the embedded default).
    Local,
    /// Any S3-compatible object store (`[storage.s3]`).
    S3,
    /// Google Cloud Storage (`[storage.gcs]`).
    Gcs,
    /// Azure Blob Storage (`[storage.azure]`); buckets are containers.
    Azure,
    /// No backup storage: every workspace behaves as if `remote_storage_disabled` were set.
    None,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BucketLayout {
    /// One bucket per owner, named by `bucket_template`.
    BucketPerOwner,
    /// One bucket (`shared_bucket`) for everybody, objects prefixed with `<owner>/`.
    Shared,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: StorageBackend,
    /// Root folder of the local backend; each bucket is a folder below it.
    pub local_path: PathBuf,
    pub layout: BucketLayout,
    /// Bucket name for `bucket-per-owner`; `{owner}` is replaced by the owner id.
    pub bucket_template: String,
    /// Bucket name for the `shared` layout.
    pub shared_bucket: String,
    /// Create a missing bucket before the first upload into it (local, S3, Azure containers with a
    /// key or SAS token, GCS buckets when `gcs.project` is set).
    pub create_buckets: bool,
    /// At most this many uploads run at once per daemon.
    pub max_concurrent_uploads: usize,
    /// How long an upload waits for a free slot before it fails (seconds).
    pub upload_wait_timeout_secs: u64,
    /// Size of the parts in which archives are uploaded (bytes).
    pub part_size_bytes: usize,
    /// How many parts of one upload are sent at once.
    pub upload_parallelism: usize,
    pub timeouts: StorageTimeouts,
    pub retry: StorageRetry,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Local,
            // Also when a config names other [storage] keys only: serde fills the missing ones
            // from here.
            local_path: super::default_data_dir().join("storage"),
            layout: BucketLayout::BucketPerOwner,
            bucket_template: "gitpod-user-{owner}".to_string(),
            shared_bucket: "gitpod-workspaces".to_string(),
            create_buckets: true,
            max_concurrent_uploads: 5,
            upload_wait_timeout_secs: 600,
            part_size_bytes: 8 << 20,
            upload_parallelism: 4,
            timeouts: StorageTimeouts::default(),
            retry: StorageRetry::default(),
            s3: S3Config::default(),
            gcs: GcsConfig::default(),
            azure: AzureConfig::default(),
        }
    }
}

impl StorageConfig {
    /// Checks values that deserialize fine but cannot work.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.backend == StorageBackend::Local && self.local_path.as_os_str().is_empty() {
            return Err("storage.local_path must not be empty for the local backend".into());
        }
        if self.max_concurrent_uploads == 0 {
            return Err("storage.max_concurrent_uploads must be at least 1".into());
        }
        if self.upload_parallelism == 0 {
            return Err("storage.upload_parallelism must be at least 1".into());
        }
        // S3 and GCS (XML multipart) refuse parts below 5 MiB, except the last.
        let min_part = if matches!(self.backend, StorageBackend::S3 | StorageBackend::Gcs) {
            5 << 20
        } else {
            1 << 20
        };
        if self.part_size_bytes < min_part {
            return Err(format!(
                "storage.part_size_bytes must be at least {} MiB for this backend",
                min_part >> 20
            ));
        }
        if self.part_size_bytes > (1 << 30) {
            return Err("storage.part_size_bytes must be at most 1 GiB".into());
        }
        if self.layout == BucketLayout::BucketPerOwner && !self.bucket_template.contains("{owner}")
        {
            return Err("storage.bucket_template must contain {owner}".into());
        }
        let t = &self.timeouts;
        if t.request_secs == 0 || t.connect_secs == 0 || t.read_secs == 0 {
            return Err(
                "storage.timeouts: request_secs, connect_secs and read_secs must be at least 1"
                    .into(),
            );
        }
        let r = &self.retry;
        if r.initial_backoff_ms == 0 || r.initial_backoff_ms > r.max_backoff_ms {
            return Err(
                "storage.retry: initial_backoff_ms must be at least 1 and at most max_backoff_ms"
                    .into(),
            );
        }
        for (key, url) in [
            ("storage.s3.endpoint", &self.s3.endpoint),
            ("storage.gcs.endpoint", &self.gcs.endpoint),
            ("storage.azure.endpoint", &self.azure.endpoint),
        ] {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return Err(format!("{key} must be an http:// or https:// URL"));
            }
        }
        Ok(())
    }
}

/// Timeouts of requests to a remote backend. A timed-out attempt is retried like any other
/// transient failure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageTimeouts {
    /// One attempt of one request (a part upload, a lookup), from connecting to the last byte of
    /// the answer. Downloads are bounded by `read_secs` instead, so large restores are not cut off.
    pub request_secs: u64,
    /// Establishing a connection.
    pub connect_secs: u64,
    /// A connection that delivers no bytes for this long is given up and the request retried.
    pub read_secs: u64,
    /// A whole upload (reading the content and sending all parts) must finish within this time, so
    /// a hung filesystem cannot hold an upload slot forever; 0 means no limit.
    pub upload_secs: u64,
}

impl Default for StorageTimeouts {
    fn default() -> Self {
        StorageTimeouts {
            request_secs: 120,
            connect_secs: 5,
            read_secs: 30,
            upload_secs: 6 * 3600,
        }
    }
}

/// Retries of transient failures (connection errors, timeouts, 5xx answers) with bounded
/// exponential backoff and jitter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageRetry {
    /// Retries of one request after its first attempt; 0 disables retries.
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt of a request.
    pub timeout_secs: u64,
    /// First backoff; each next one is up to twice as long.
    pub initial_backoff_ms: u64,
    /// Longest backoff.
    pub max_backoff_ms: u64,
}

impl Default for StorageRetry {
    fn default() -> Self {
        StorageRetry {
            max_retries: 10,
            timeout_secs: 180,
            initial_backoff_ms: 100,
            max_backoff_ms: 15_000,
        }
    }
}

/// An S3-compatible store. Credentials not given here come from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; the region from `AWS_REGION` /
/// `AWS_DEFAULT_REGION`, else `us-east-1`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint URL of a non-AWS store, e.g. `http://127.0.0.1:9000`; empty for AWS.
    pub endpoint: String,
    pub region: String,
    /// `bucket.host/key` requests instead of the default path style `host/bucket/key`.
    pub virtual_hosted_style: bool,
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Secret,
    /// Without static credentials, take them from the environment's identity provider (EC2
    /// instance metadata, ECS task role, web identity token).
    pub use_instance_metadata: bool,
}

/// Google Cloud Storage. Credentials not given here come from `GOOGLE_SERVICE_ACCOUNT_PATH`,
/// `GOOGLE_SERVICE_ACCOUNT_KEY` or `GOOGLE_APPLICATION_CREDENTIALS`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GcsConfig {
    /// Path of a service account key file (JSON).
    pub service_account_path: PathBuf,
    /// The service account key itself (JSON).
    pub service_account_key: Secret,
    /// Without a service account, use the instance's metadata server.
    pub use_instance_metadata: bool,
    /// Base URL of a non-Google service (an emulator); empty for Google.
    pub endpoint: String,
    /// Project in which missing buckets are created; empty: buckets must exist.
    pub project: String,
}

/// Azure Blob Storage. Values not given here come from `AZURE_STORAGE_ACCOUNT_NAME`,
/// `AZURE_STORAGE_ACCOUNT_KEY` and `AZURE_STORAGE_SAS_TOKEN`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AzureConfig {
    pub account: String,
    pub access_key: Secret,
    pub sas_token: Secret,
    /// Blob service URL of a non-Azure service; empty for Azure. With `use_emulator`, the
    /// emulator's host (default `http://127.0.0.1:10000`).
    pub endpoint: String,
    /// Talk to an Azurite emulator with its well-known development account.
    pub use_emulator: bool,
    /// Without a key or SAS token, use the managed identity of the machine.
    pub use_managed_identity: bool,
}

/// A credential from the configuration: never printed or logged. Serializing it (e.g. for
/// `--print-config`) writes `<redacted>`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(if self.0.is_empty() { "" } else { "<redacted>" })
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(empty)")
        } else {
            f.write_str("Secret(..)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let mut config = StorageConfig::default();
        config.s3.secret_access_key = Secret::new("s3-secret-value");
        config.azure.access_key = Secret::new("azure-key-value");
        let debug = format!("{config:?}");
        let json = serde_json::to_string(&config).expect("serialize");
        for text in [&debug, &json] {
            assert!(!text.contains("s3-secret-value"), "{text}");
            assert!(!text.contains("azure-key-value"), "{text}");
        }
        assert!(json.contains("<redacted>"));
        // An unset secret stays visibly unset.
        assert!(json.contains("\"session_token\":\"\""), "{json}");
    }
}
