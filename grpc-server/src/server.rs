//! The gRPC server: content services through the dispatch table, health, reflection, TCP and an
//! optional unix socket, graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;
use tower::ServiceExt;
use wsd_core::{Config, Daemon};

use wsd_core::grpc::DispatchService;

/// The services whose methods the dispatch table serves (at least one of them), by name: the
/// ones reported by health checks and listed by reflection.
fn served_services() -> Result<Vec<String>, String> {
    let mut served: Vec<String> = Vec::new();
    for method in wsd_core::json::api_methods().map_err(|e| e.to_string())? {
        // The in-workspace services answer only on the workspaces' own sockets.
        if method.served && !method.socket_only && !served.contains(&method.service) {
            served.push(method.service);
        }
    }
    Ok(served)
}

/// Reports `status` for the server as a whole ("") and for every served service.
async fn report(reporter: &HealthReporter, served: &[String], status: ServingStatus) {
    for name in served.iter().map(String::as_str).chain([""]) {
        reporter.set_service_status(name, status).await;
    }
}

fn status_of(readiness: &wsd_core::health::Readiness) -> ServingStatus {
    if readiness.ready() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

/// `name: reason` of every failed check, for the log.
fn failed_checks(readiness: &wsd_core::health::Readiness) -> Vec<String> {
    readiness
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.reason))
        .collect()
}

/// Keeps the health service's status that of the daemon's readiness, asked every
/// `health.interval_secs`, until `stop`; then reports NOT_SERVING while connections drain.
async fn refresh_health(
    daemon: Daemon,
    reporter: HealthReporter,
    served: Vec<String>,
    mut last: ServingStatus,
    stop: CancellationToken,
) {
    let interval = Duration::from_secs(daemon.config().health.interval_secs.max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.cancelled() => break,
        }
        let readiness = tokio::select! {
            readiness = daemon.readiness() => readiness,
            _ = stop.cancelled() => break,
        };
        let status = status_of(&readiness);
        if status != last {
            if status == ServingStatus::Serving {
                tracing::info!("ready again: the health service reports SERVING");
            } else {
                tracing::warn!(failed = ?failed_checks(&readiness), "not ready: the health service reports NOT_SERVING");
            }
            last = status;
        }
        report(&reporter, &served, status).await;
    }
    report(&reporter, &served, ServingStatus::NotServing).await;
}

async fn router(
    daemon: &Daemon,
    health: HealthServer<HealthService>,
) -> Result<tonic::transport::server::Router, String> {
    let served = served_services()?;
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wsd_core::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(wsd_core::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in served
        .iter()
        .map(String::as_str)
        .chain(["grpc.health.v1.Health"])
    {
        v1 = v1.with_service_name(name);
        v1alpha = v1alpha.with_service_name(name);
    }
    let v1 = v1.build_v1().map_err(|e| format!("reflection: {e}"))?;
    let v1alpha = v1alpha
        .build_v1alpha()
        .map_err(|e| format!("reflection: {e}"))?;

    // Every service of the contract goes to the dispatch table, also those with no method served
    // yet: their callers get core's answer ("part of the API but not served by this version"), as
    // they do in-process. Routed by name at run time (tonic's `add_service` wants the name as a
    // constant), in the form tonic uses for its own routes.
    let dispatch = DispatchService::new(daemon.clone());
    let mut routes = Routes::new(health)
        .add_service(v1)
        .add_service(v1alpha)
        .into_axum_router();
    for name in wsd_core::proto::SERVICE_NAMES {
        routes = routes.route_service(
            &format!("/{name}/{{*rest}}"),
            dispatch
                .clone()
                .map_request(|request: http::Request<_>| request.map(tonic::body::Body::new)),
        );
    }
    Ok(Server::builder().add_routes(Routes::from(routes)))
}

/// Serves until `stop` is cancelled, then drains connections for at most the shutdown grace time
/// and shuts the daemon down.
pub async fn serve(config: &Config, daemon: Daemon, stop: CancellationToken) -> Result<(), String> {
    let addr: SocketAddr = config
        .server
        .listen
        .parse()
        .map_err(|e| format!("invalid listen address {:?}: {e}", config.server.listen))?;
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    tracing::info!(address = %tcp.local_addr().unwrap_or(addr), "gRPC server listening");

    // One health service for every listener, its status that of the daemon's readiness: asked
    // once before serving, then kept up to date in the background.
    let reporter = HealthReporter::new();
    let health = HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
    let served = served_services()?;
    let readiness = daemon.readiness().await;
    let initial = status_of(&readiness);
    if initial != ServingStatus::Serving {
        tracing::warn!(failed = ?failed_checks(&readiness), "not ready at start: the health service reports NOT_SERVING");
    }
    report(&reporter, &served, initial).await;
    tokio::spawn(refresh_health(
        daemon.clone(),
        reporter,
        served,
        initial,
        stop.clone(),
    ));

    let mut servers = tokio::task::JoinSet::new();
    let tcp_router = router(&daemon, health.clone()).await?;
    let tcp_stop = stop.clone();
    servers.spawn(async move {
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs add ~40 ms to small unary calls.
        let incoming = TcpListenerStream::new(tcp).map(|conn| {
            conn.and_then(|stream| {
                stream.set_nodelay(true)?;
                Ok(stream)
            })
        });
        tcp_router
            .serve_with_incoming_shutdown(incoming, tcp_stop.cancelled_owned())
            .await
    });

    if let Some(path) = &config.server.unix_socket {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "cannot replace the unix socket {}: {e}",
                    path.display()
                ))
            }
            _ => {}
        }
        let unix = tokio::net::UnixListener::bind(path)
            .map_err(|e| format!("cannot listen on {}: {e}", path.display()))?;
        tracing::info!(socket = %path.display(), "gRPC server listening");
        let unix_router = router(&daemon, health).await?;
        let unix_stop = stop.clone();
        servers.spawn(async move {
            unix_router
                .serve_with_incoming_shutdown(
                    UnixListenerStream::new(unix),
                    unix_stop.cancelled_owned(),
                )
                .await
        });
    }

    stop.cancelled().await;
    let grace = Duration::from_secs(config.limits.shutdown_grace_secs);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining connections"
    );
    // One grace period for both phases: connections, then the daemon's own in-flight work.
    let deadline = tokio::time::Instant::now() + grace;
    let drained = tokio::time::timeout_at(deadline, async {
        while let Some(done) = servers.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "server stopped with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after the grace period; closing them");
        servers.abort_all();
    }
    daemon
        .shutdown(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await;
    if let Some(path) = &config.server.unix_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_services_are_those_of_the_dispatch_table() {
        let served = served_services().expect("served services");
        assert_eq!(
            served,
            [
                "wsdaemon.WorkspaceContentService",
                "wsdaemon.WorkspaceContentExt",
                "wsdaemon.WorkspaceRuntime",
            ]
        );
        for name in &served {
            assert!(
                wsd_core::proto::SERVICE_NAMES.contains(&name.as_str()),
                "{name}"
            );
        }
    }
}
