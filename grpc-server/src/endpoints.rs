//! The metrics listener's HTTP endpoints: `/metrics` (Prometheus text), `/live` and `/ready`.
//! GET and HEAD; other paths 404. It serves from before the daemon has started (`/live` 200,
//! `/ready` 503 "starting") until shutdown begins, and never holds up shutdown.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wsd_core::Daemon;

/// How often histograms are drained (what the exporter's own listener did every 5 s).
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The daemon the endpoints ask, set once it has started.
pub type DaemonSlot = Arc<OnceLock<Daemon>>;

/// Serves the endpoints on `listener` until `stop` is cancelled; open connections are then
/// dropped, not drained.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    daemon: DaemonSlot,
    stop: CancellationToken,
) {
    let mut upkeep = tokio::time::interval(UPKEEP_INTERVAL);
    upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = upkeep.tick() => metrics.run_upkeep(),
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (metrics, daemon) = (metrics.clone(), daemon.clone());
                    connections.spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let (metrics, daemon) = (metrics.clone(), daemon.clone());
                            async move {
                                Ok::<_, Infallible>(answer(&request, &metrics, daemon.get()).await)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10))
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "metrics listener: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    connections.abort_all();
}

/// The response to one request. HEAD gets GET's status and headers; hyper leaves out the body.
async fn answer(
    request: &Request<Incoming>,
    metrics: &PrometheusHandle,
    daemon: Option<&Daemon>,
) -> Response<String> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => plain(StatusCode::OK, metrics.render()),
        "/live" => match daemon {
            None => plain(StatusCode::OK, "ok (starting)\n"),
            Some(d) if d.live().await => plain(StatusCode::OK, "ok\n"),
            Some(_) => plain(StatusCode::SERVICE_UNAVAILABLE, "not live\n"),
        },
        "/ready" => {
            let Some(d) = daemon else {
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready\ndaemon: FAILED, starting\n",
                );
            };
            let readiness = d.readiness().await;
            let status = if readiness.ready() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            if wants_json(request) {
                let mut response = plain(status, readiness.to_json());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("application/json"),
                );
                response
            } else {
                plain(status, readiness.to_text())
            }
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /live or /ready\n",
        ),
    }
}

fn wants_json(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

fn plain(status: StatusCode, body: impl Into<String>) -> Response<String> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}
