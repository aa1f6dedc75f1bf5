//! `ws-daemon`: the workspace daemon's gRPC server.

mod cli;
mod ctl;
mod endpoints;
mod export;
mod server;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use wsd_core::config::LogFormat;
use wsd_core::{Config, Daemon};

/// Colour only for a person at a terminal: not in a file or a pipe, and not when `NO_COLOR` has a
/// non-empty value (no-color.org; an empty value counts as unset).
fn use_colour(writer_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    writer_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn init_logging(config: &Config) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.server.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // The logs go to stderr, so that is the stream whose kind decides.
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    match config.server.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

/// The metrics listener, bound and its recorder installed before the daemon starts.
struct MetricsListener {
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
}

async fn init_metrics(config: &Config) -> Result<Option<MetricsListener>, String> {
    if config.server.metrics_listen.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = config.server.metrics_listen.parse().map_err(|e| {
        format!(
            "invalid metrics address {:?}: {e}",
            config.server.metrics_listen
        )
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot start the metrics endpoint on {addr}: {e}"))?;
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
        ])
        .and_then(|b| b.install_recorder())
        .map_err(|e| format!("cannot start the metrics endpoint on {addr}: {e}"))?;
    tracing::info!(
        address = %listener.local_addr().unwrap_or(addr),
        "metrics endpoint listening on /metrics, health on /live and /ready"
    );
    Ok(Some(MetricsListener { listener, handle }))
}

async fn stop_signal(stop: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    stop.cancel();
}

async fn run(config: Config) -> Result<(), String> {
    let stop = CancellationToken::new();
    // Serves from before the daemon starts: /live answers while the working area is reloaded.
    let slot = endpoints::DaemonSlot::default();
    if let Some(metrics) = init_metrics(&config).await? {
        tokio::spawn(endpoints::serve(
            metrics.listener,
            metrics.handle,
            slot.clone(),
            stop.clone(),
        ));
    }
    let daemon = Daemon::start(config.clone())
        .await
        .map_err(|e| e.to_string())?;
    let _ = slot.set(daemon.clone());
    tokio::spawn(stop_signal(stop.clone()));
    server::serve(&config, daemon, stop).await
}

fn main() -> std::process::ExitCode {
    let mut cli = cli::Cli::parse();
    match cli.command.take() {
        Some(cli::Command::Ctl(args)) => return ctl::main(args, cli.config()),
        Some(cli::Command::Export(args)) => return export::main(args, cli.config()),
        None => {}
    }
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ws-daemon: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if cli.print_config {
        match toml::to_string_pretty(&config) {
            Ok(text) => {
                print!("{text}");
                return std::process::ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("ws-daemon: cannot print the configuration: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ws-daemon: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ws-daemon: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(
            use_colour(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(
            !use_colour(true, Some(OsStr::new("false"))),
            "any non-empty value"
        );
        assert!(!use_colour(false, None), "a file or a pipe");
        assert!(!use_colour(false, Some(OsStr::new(""))));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
    }
}
