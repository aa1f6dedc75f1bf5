//! Readiness and liveness of the binary: `/ready` and the gRPC health service follow the S3 server
//! (down, then back on the same port and data), the working area's free-space floor, `/live`
//! throughout, and the metrics listener's other answers (`/metrics`, unknown paths, HEAD).

use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use wsd_tests::s3::{S3Server, SECRET_KEY};
use wsd_tests::DaemonProcess;

/// Checks every second, each bounded by one second: a change shows within a few seconds.
const FAST_HEALTH: &str =
    "[health]\ninterval_secs = 1\ncheck_timeout_ms = 1000\nmin_free_bytes = 1\n";

/// Generous: a deadline for polling, not a timing assertion.
const WITHIN: Duration = Duration::from_secs(60);

/// Status and body of `method path` on the daemon's metrics listener.
async fn request(d: &DaemonProcess, method: &str, path: &str) -> (u16, String) {
    wsd_tests::http::request(&format!("127.0.0.1:{}", d.metrics_port), method, path).await
}

async fn grpc_health(d: &DaemonProcess, service: &str) -> ServingStatus {
    let channel = tonic::transport::Endpoint::from_shared(d.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let status = client
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status;
    ServingStatus::try_from(status).expect("a known status")
}

/// Polls `/ready` until its status is `want`; returns its body.
async fn ready_becomes(d: &DaemonProcess, want: u16) -> String {
    let deadline = Instant::now() + WITHIN;
    loop {
        let (status, body) = request(d, "GET", "/ready").await;
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/ready stayed {status} (waiting for {want}): {body}\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the gRPC health service until "" and the content service both report `want`.
async fn grpc_health_becomes(d: &DaemonProcess, want: ServingStatus) {
    let deadline = Instant::now() + WITHIN;
    loop {
        let overall = grpc_health(d, "").await;
        let content = grpc_health(d, "wsdaemon.WorkspaceContentService").await;
        if overall == want && content == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gRPC health stayed {overall:?}/{content:?} (waiting for {want:?})\n{}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_live(d: &DaemonProcess) {
    assert_eq!(request(d, "GET", "/live").await, (200, "ok\n".to_string()));
}

#[tokio::test]
async fn ready_follows_the_s3_server_down_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(&dir.path().join("s3")).await;
    let config = format!(
        "{}{FAST_HEALTH}",
        S3Server::daemon_config(&s3.endpoint(), SECRET_KEY, "")
    );
    let d = DaemonProcess::start(&dir.path().join("node"), &config).await;

    let body = ready_becomes(&d, 200).await;
    assert!(body.starts_with("ready\n"), "{body}");
    assert!(body.contains("storage: ok, reachable"), "{body}");
    assert!(body.contains("working_area: ok, "), "{body}");
    grpc_health_becomes(&d, ServingStatus::Serving).await;
    assert_live(&d).await;

    s3.kill().await;
    let body = ready_becomes(&d, 503).await;
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains("storage: FAILED, "), "{body}");
    assert!(body.contains("working_area: ok, "), "{body}");
    assert!(
        !body.contains("127.0.0.1") && !body.contains(&s3.port.to_string()),
        "the reason names no address: {body}"
    );
    grpc_health_becomes(&d, ServingStatus::NotServing).await;
    assert_live(&d).await;

    s3.restart().await;
    let body = ready_becomes(&d, 200).await;
    assert!(body.contains("storage: ok, reachable"), "{body}");
    grpc_health_becomes(&d, ServingStatus::Serving).await;
    assert_live(&d).await;
}

#[tokio::test]
async fn below_the_free_space_floor_the_daemon_is_live_but_not_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    // TOML integers are signed: the largest one is far above any disk.
    let config = "[health]\ninterval_secs = 1\nmin_free_bytes = 9223372036854775807\n";
    let d = DaemonProcess::start(&dir.path().join("node"), config).await;

    let (status, body) = request(&d, "GET", "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("working_area: FAILED, ") && body.contains("below health.min_free_bytes"),
        "{body}"
    );
    assert!(
        !body.contains(&*dir.path().to_string_lossy()),
        "the reason names no host path: {body}"
    );
    // Local storage: there is nothing remote to check.
    assert!(!body.contains("storage"), "{body}");
    grpc_health_becomes(&d, ServingStatus::NotServing).await;
    assert_live(&d).await;
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_and_answers_head_and_unknown_paths() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(&dir.path().join("node"), FAST_HEALTH).await;
    let metrics = d.metrics().await;
    assert!(metrics.contains("# TYPE "), "{metrics}");
    assert!(metrics.contains("wsd_"), "{metrics}");

    let (status, body) = request(&d, "GET", "/ready").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ready\n"), "{body}");
    grpc_health_becomes(&d, ServingStatus::Serving).await;

    assert_eq!(request(&d, "HEAD", "/ready").await, (200, String::new()));
    assert_eq!(request(&d, "HEAD", "/live").await, (200, String::new()));
    let (status, _) = request(&d, "HEAD", "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(request(&d, "GET", "/nope").await.0, 404);
    assert_eq!(request(&d, "GET", "/").await.0, 404);
    assert_eq!(request(&d, "POST", "/ready").await.0, 405);
    assert_live(&d).await;
}
