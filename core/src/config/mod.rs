//! One configuration for every surface: the server's TOML file, the C ABI's TOML/JSON string and the
//! Node options object all deserialize into [`Config`]. Every field has a default, so an empty
//! document is a working daemon on local storage.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

mod health;
mod iws;
mod quota;
mod runtime;
mod storage;
pub use health::*;
pub use iws::*;
pub use quota::*;
pub use runtime::*;
pub use storage::*;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Folder that holds every workspace's content, socket folder and state file.
    pub working_area: PathBuf,
    pub storage: StorageConfig,
    pub archive: ArchiveConfig,
    pub limits: LimitsConfig,
    pub download: DownloadConfig,
    pub git: GitSettings,
    /// The in-workspace service (the workspaces' own sockets).
    pub iws: IwsConfig,
    /// Storage quotas of workspaces.
    pub quota: QuotaConfig,
    /// Finding workspace containers through a container runtime (containerd).
    pub runtime: RuntimeConfig,
    /// Readiness: what `/ready` and the gRPC health service report.
    pub health: HealthConfig,
    /// Settings of the gRPC server binary; ignored by in-process embeddings.
    pub server: ServerConfig,
}

impl Default for Config {
    fn default() -> Self {
        let data = default_data_dir();
        Config {
            working_area: data.join("workspaces"),
            storage: StorageConfig::default(),
            archive: ArchiveConfig::default(),
            limits: LimitsConfig::default(),
            download: DownloadConfig::default(),
            git: GitSettings::default(),
            iws: IwsConfig::default(),
            quota: QuotaConfig::default(),
            runtime: RuntimeConfig::default(),
            health: HealthConfig::default(),
            server: ServerConfig::default(),
        }
    }
}

/// `$XDG_DATA_HOME/ws-daemon`, else `$HOME/.local/share/ws-daemon`, else `./var`.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("ws-daemon");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/ws-daemon");
    }
    PathBuf::from("var")
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveFormat {
    /// tar compressed with zstd (`.tar.zst`), the default.
    Zstd,
    /// Plain tar (`.tar`), the historical format.
    Tar,
}

impl ArchiveFormat {
    /// The object name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveFormat::Zstd => "tar.zst",
            ArchiveFormat::Tar => "tar",
        }
    }
}

/// What backups and snapshots are written as.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveMode {
    /// One tar archive of the whole tree per backup (`full.tar.zst`), as the behaviour spec names.
    Full,
    /// Incremental and deduplicated: packs of chunks plus a manifest per backup.
    Chunked,
    /// Both, for clients that need the full archive while backups move to chunks.
    Both,
}

impl ArchiveMode {
    pub fn writes_full(self) -> bool {
        matches!(self, ArchiveMode::Full | ArchiveMode::Both)
    }

    pub fn writes_chunked(self) -> bool {
        matches!(self, ArchiveMode::Chunked | ArchiveMode::Both)
    }
}

/// One range of `archive.uid_map` / `gid_map`: the archive layer's own type, so the configuration
/// is validated by the same rules that use it.
pub use crate::archive::IdMapEntry as IdMapping;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveConfig {
    /// What backups and snapshots are written as: `full` archives, `chunked` (incremental,
    /// content-addressed) or `both`. Every kind is always readable.
    pub mode: ArchiveMode,
    /// Backup manifests kept per workspace in the chunked modes (at least 1).
    pub keep_backups: usize,
    /// How often packs that no manifest references are looked for, in the places this daemon
    /// wrote chunked backups to since the last time (seconds; 0: never).
    pub gc_interval_secs: u64,
    /// Unreferenced packs younger than this are kept: longer than the longest backup, whose
    /// packs are unreferenced until its manifest is written (seconds).
    pub gc_grace_secs: u64,
    /// Format of new full archives; both formats are always readable.
    pub format: ArchiveFormat,
    pub zstd_level: i32,
    /// zstd worker threads; 0 uses every available CPU.
    pub zstd_workers: u32,
    /// How in-workspace user ids map to host ids (empty: identity).
    pub uid_map: Vec<IdMapping>,
    /// How in-workspace group ids map to host ids (empty: identity).
    pub gid_map: Vec<IdMapping>,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            mode: ArchiveMode::Full,
            keep_backups: 3,
            gc_interval_secs: 3600,
            gc_grace_secs: 86400,
            format: ArchiveFormat::Zstd,
            zstd_level: 1,
            zstd_workers: 0,
            uid_map: Vec::new(),
            gid_map: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Server-side timeout of InitWorkspace (seconds).
    pub init_timeout_secs: u64,
    /// How long the result of a finished DisposeWorkspace answers repeated calls (seconds).
    pub dispose_record_ttl_secs: u64,
    /// How often housekeeping runs (seconds).
    pub housekeeping_interval_secs: u64,
    /// Content folders without a state file older than this are removed (seconds).
    pub orphan_max_age_secs: u64,
    /// How long shutdown waits for in-flight work (seconds).
    pub shutdown_grace_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            init_timeout_secs: 30 * 60,
            dispose_record_ttl_secs: 60 * 60,
            housekeeping_interval_secs: 5 * 60,
            orphan_max_age_secs: 60 * 60,
            shutdown_grace_secs: 60,
        }
    }
}

impl LimitsConfig {
    pub fn init_timeout(&self) -> Duration {
        Duration::from_secs(self.init_timeout_secs)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadConfig {
    /// Attempts per file (a retry starts the file anew).
    pub attempts: u32,
    /// Timeout of one attempt (seconds).
    pub attempt_timeout_secs: u64,
    /// Allow plain `http://` URLs (https is always allowed).
    pub allow_http: bool,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            attempts: 3,
            attempt_timeout_secs: 300,
            allow_http: true,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GitSettings {
    /// The git executable.
    pub binary: PathBuf,
    /// Transports a repository URL may use. `file` (local paths, `file://`) lets a workspace read
    /// the node's files and is off unless listed; `ext` and `fd` are never allowed.
    pub allowed_transports: Vec<String>,
    /// Environment variables passed to git from the daemon's environment (proxies, CA settings).
    /// Everything else is cleared; HOME is `home`.
    pub pass_env: Vec<String>,
    /// HOME of git calls; empty: a folder `.git-home` in the working area.
    pub home: PathBuf,
    /// Attempts of a clone that fails transiently (network errors, 5xx).
    pub clone_attempts: u32,
    /// Attempts to fetch one-time-secret credentials.
    pub ots_attempts: u32,
    /// Timeout of one git command (seconds).
    pub command_timeout_secs: u64,
}

impl Default for GitSettings {
    fn default() -> Self {
        GitSettings {
            binary: PathBuf::from("git"),
            allowed_transports: ["https", "http", "ssh", "git"].map(String::from).to_vec(),
            pass_env: [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "NO_PROXY",
                "http_proxy",
                "https_proxy",
                "no_proxy",
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
                "GIT_SSL_CAINFO",
                "GIT_SSL_CAPATH",
            ]
            .map(String::from)
            .to_vec(),
            home: PathBuf::new(),
            clone_attempts: 3,
            ots_attempts: 3,
            command_timeout_secs: 1800,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// TCP address of the gRPC server.
    pub listen: String,
    /// Optional unix socket path of the gRPC server.
    pub unix_socket: Option<PathBuf>,
    /// Address of the Prometheus metrics endpoint (`/metrics`); empty turns it off.
    pub metrics_listen: String,
    pub log_format: LogFormat,
    /// tracing filter, e.g. `info` or `wsd_core=debug,info`.
    pub log_filter: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".to_string(),
            unix_socket: None,
            metrics_listen: "127.0.0.1:9500".to_string(),
            log_format: LogFormat::Human,
            log_filter: "info".to_string(),
        }
    }
}

impl Config {
    /// Parses a TOML document (the server's config file format).
    pub fn from_toml(text: &str) -> Result<Config> {
        let config: Config = toml::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a JSON document with the same schema.
    pub fn from_json(text: &str) -> Result<Config> {
        let config: Config = serde_json::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("invalid configuration: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a JSON document whose keys may be in camelCase (as JavaScript options usually are)
    /// or snake_case.
    pub fn from_json_any_case(text: &str) -> Result<Config> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::InvalidArgument(format!("invalid configuration: {e}")))?;
        Config::from_json(&snake_case_keys(value).to_string()).map_err(|e| match e {
            // serde names the converted keys; say so, or `workingAreas` reads as a mystery.
            Error::InvalidArgument(msg) if msg.contains("unknown field") => Error::InvalidArgument(
                format!("{msg} (key names shown in snake_case; camelCase is accepted too)"),
            ),
            e => e,
        })
    }

    /// Checks values that deserialize fine but cannot work.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: &str| {
            Err(Error::InvalidArgument(format!(
                "invalid configuration: {msg}"
            )))
        };
        if self.working_area.as_os_str().is_empty() {
            return bad("working_area must not be empty");
        }
        if let Err(msg) = self.storage.check() {
            return bad(&msg);
        }
        for (which, entries) in [
            ("uid_map", &self.archive.uid_map),
            ("gid_map", &self.archive.gid_map),
        ] {
            if let Err(e) = crate::archive::IdMap::new(entries.clone()) {
                return bad(&format!("archive.{which}: {e}"));
            }
        }
        if !(-7..=22).contains(&self.archive.zstd_level) {
            return bad("archive.zstd_level must be between -7 and 22");
        }
        if self.archive.keep_backups == 0 {
            return bad(
                "archive.keep_backups must be at least 1: the newest backup is always kept",
            );
        }
        if self.limits.init_timeout_secs == 0 {
            return bad("limits.init_timeout_secs must be at least 1");
        }
        if self.git.clone_attempts == 0 || self.git.ots_attempts == 0 {
            return bad("git.clone_attempts and git.ots_attempts must be at least 1");
        }
        if self
            .git
            .allowed_transports
            .iter()
            .any(|t| t == "ext" || t == "fd")
        {
            return bad("git.allowed_transports must not contain ext or fd: they run commands");
        }
        if self.download.attempts == 0 {
            return bad("download.attempts must be at least 1");
        }
        if let Err(msg) = self.iws.check() {
            return bad(&msg);
        }
        if let Err(msg) = self.runtime.containerd.check() {
            return bad(&msg);
        }
        if let Err(msg) = self.health.check() {
            return bad(&msg);
        }
        Ok(())
    }
}

/// Renames object keys from camelCase to snake_case, recursively (values are left alone).
fn snake_case_keys(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let mut key = String::with_capacity(k.len() + 4);
                    for c in k.chars() {
                        if c.is_ascii_uppercase() {
                            key.push('_');
                            key.push(c.to_ascii_lowercase());
                        } else {
                            key.push(c);
                        }
                    }
                    (key, snake_case_keys(v))
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_id_maps_are_refused_by_validation() {
        let overlap = "[archive]\nuid_map = [{container_id = 0, host_id = 100000, size = 10}, \
                       {container_id = 5, host_id = 200000, size = 10}]";
        let err = Config::from_toml(overlap)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("archive.uid_map") && err.contains("overlapping"),
            "{err}"
        );
    }

    #[test]
    fn a_storage_table_without_local_path_keeps_the_default_folder() {
        let c = Config::from_toml("[storage]\nmax_concurrent_uploads = 2").expect("config");
        assert_eq!(c.storage.local_path, Config::default().storage.local_path);
    }

    #[test]
    fn camel_case_json_options_are_accepted() {
        let c = Config::from_json_any_case(
            r#"{"workingArea": "/tmp/wa", "storage": {"maxConcurrentUploads": 2}, "archive": {"uidMap": [{"containerId": 0, "hostId": 100000, "size": 10}]}}"#,
        )
        .expect("config");
        assert_eq!(c.working_area, PathBuf::from("/tmp/wa"));
        assert_eq!(c.storage.max_concurrent_uploads, 2);
        assert_eq!(c.archive.uid_map[0].host_id, 100000);
        assert!(Config::from_json_any_case(r#"{"workingAreas": "/x"}"#).is_err());
    }

    #[test]
    fn empty_document_is_the_default() {
        assert_eq!(Config::from_toml("").ok(), Some(Config::default()));
        assert_eq!(Config::from_json("{}").ok(), Some(Config::default()));
    }

    #[test]
    fn toml_sections_override_defaults() {
        let c = Config::from_toml(
            r#"
            working_area = "/tmp/wa"
            [storage]
            backend = "none"
            [archive]
            format = "tar"
            uid_map = [{ container_id = 0, host_id = 100000, size = 65536 }]
            [server]
            listen = "127.0.0.1:9999"
            "#,
        )
        .expect("valid config");
        assert_eq!(c.working_area, PathBuf::from("/tmp/wa"));
        assert_eq!(c.storage.backend, StorageBackend::None);
        assert_eq!(c.archive.format, ArchiveFormat::Tar);
        assert_eq!(c.archive.uid_map[0].host_id, 100000);
        assert_eq!(c.server.listen, "127.0.0.1:9999");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("workin_area = \"/x\"").is_err());
        assert!(Config::from_toml("[storage]\nmax_concurrent_uploads = 0").is_err());
        assert!(Config::from_json("{\"archive\": {\"zstd_level\": 99}}").is_err());
    }
}
