//! Command line and configuration: defaults, then the TOML file, then environment variables, then
//! flags (clap reads each flag from its `WSD_*` variable when the flag is absent).

use std::path::PathBuf;

use clap::Parser;
use wsd_core::Config;

#[derive(Debug, Parser)]
#[command(
    name = "ws-daemon",
    version,
    about = "Workspace daemon: workspace content over gRPC"
)]
pub struct Cli {
    /// TOML configuration file (every key optional; see README "Configuration").
    #[arg(long, short, env = "WSD_CONFIG")]
    pub config: Option<PathBuf>,
    /// TCP address of the gRPC server [default: 127.0.0.1:8080].
    #[arg(long, env = "WSD_LISTEN")]
    pub listen: Option<String>,
    /// Also serve gRPC on this unix socket.
    #[arg(long, env = "WSD_UNIX_SOCKET")]
    pub unix_socket: Option<PathBuf>,
    /// Address of the Prometheus endpoint `/metrics`; "off" turns it off [default: 127.0.0.1:9500].
    #[arg(long, env = "WSD_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Folder of workspace contents and state files.
    #[arg(long, env = "WSD_WORKING_AREA")]
    pub working_area: Option<PathBuf>,
    /// Backup storage backend: local, s3, gcs, azure or none (remote backends take their settings
    /// from the config file and the usual AWS_*, GOOGLE_*, AZURE_STORAGE_* variables).
    #[arg(long, env = "WSD_STORAGE_BACKEND", value_parser = ["local", "s3", "gcs", "azure", "none"])]
    pub storage_backend: Option<String>,
    /// Root folder of the local backup storage.
    #[arg(long, env = "WSD_STORAGE_PATH")]
    pub storage_path: Option<PathBuf>,
    /// Log format: human or json.
    #[arg(long, env = "WSD_LOG_FORMAT", value_parser = ["human", "json"])]
    pub log_format: Option<String>,
    /// Log filter, e.g. "info" or "wsd_core=debug,info".
    #[arg(long, env = "WSD_LOG")]
    pub log: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Talks to a running daemon: init, backup, snapshot, dispose, state, watch (see
    /// `ws-daemon ctl --help`). The exit code is the answer's gRPC status code.
    Ctl(crate::ctl::CtlArgs),
    /// Writes a workspace's newest backup as one archive (tar, zstd-compressed as archive.format
    /// says), made from its chunks when it is a chunked backup. Reads the configured storage
    /// directly; no daemon needs to run.
    Export(ExportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Owner of the workspace (a user id).
    #[arg(long)]
    pub owner: String,
    /// Workspace id whose backup to export.
    #[arg(long)]
    pub meta_id: String,
    /// File to write (replaced only when the archive is complete); `-` for standard output.
    #[arg(long, short)]
    pub out: std::path::PathBuf,
}

impl Cli {
    /// The effective configuration.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
                Config::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => Config::default(),
        };
        if let Some(v) = &self.listen {
            config.server.listen = v.clone();
        }
        if let Some(v) = &self.unix_socket {
            config.server.unix_socket = Some(v.clone());
        }
        if let Some(v) = &self.metrics_listen {
            config.server.metrics_listen = if v == "off" { String::new() } else { v.clone() };
        }
        if let Some(v) = &self.working_area {
            config.working_area = v.clone();
        }
        if let Some(v) = &self.storage_backend {
            config.storage.backend = config_name(v, "--storage-backend")?;
        }
        if let Some(v) = &self.storage_path {
            config.storage.local_path = v.clone();
        }
        if let Some(v) = &self.log_format {
            config.server.log_format = config_name(v, "--log-format")?;
        }
        if let Some(v) = &self.log {
            config.server.log_filter = v.clone();
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// A flag's value read with the config file's own names for it (serde), so the two cannot drift.
fn config_name<T: serde::de::DeserializeOwned>(value: &str, flag: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(value))
        .map_err(|e| format!("{flag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_and_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:1\"\nlog_format = \"json\"\n",
        )
        .expect("write");
        let cli = Cli::try_parse_from([
            "ws-daemon",
            "--config",
            file.to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:2",
            "--metrics-listen",
            "off",
        ])
        .expect("parse");
        let c = cli.config().expect("config");
        assert_eq!(c.server.listen, "127.0.0.1:2");
        assert_eq!(c.server.log_format, wsd_core::config::LogFormat::Json);
        assert!(c.server.metrics_listen.is_empty());
    }

    #[test]
    fn every_storage_backend_flag_value_means_that_backend() {
        use wsd_core::config::StorageBackend;
        for (flag, backend) in [
            ("local", StorageBackend::Local),
            ("s3", StorageBackend::S3),
            ("gcs", StorageBackend::Gcs),
            ("azure", StorageBackend::Azure),
            ("none", StorageBackend::None),
        ] {
            assert_eq!(
                config_name::<StorageBackend>(flag, "--storage-backend"),
                Ok(backend)
            );
        }
        assert!(config_name::<StorageBackend>("ftp", "--storage-backend").is_err());
    }
}
