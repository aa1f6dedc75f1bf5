//! Readiness and liveness without servers: the working area's probe and free-space floor, a store
//! that refuses connections or never answers, registered checks, and shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{bytes_text, ReadinessCheck};
use crate::config::StorageBackend;
use crate::testing::config;
use crate::{Config, Daemon};

fn small_floor(dir: &std::path::Path) -> Config {
    let mut c = config(dir);
    c.health.min_free_bytes = 1;
    c
}

/// An S3 backend at `endpoint`, with made-up credentials.
fn s3_config(dir: &std::path::Path, endpoint: &str) -> Config {
    let mut c = small_floor(dir);
    c.storage.backend = StorageBackend::S3;
    c.storage.s3.endpoint = endpoint.to_string();
    c.storage.s3.access_key_id = "health-test-key".into();
    c.storage.s3.secret_access_key = crate::config::Secret::new("health-test-secret");
    c.health.check_timeout_ms = 500;
    c
}

fn assert_no_host_details(reason: &str, dir: &std::path::Path) {
    let dir = dir.to_string_lossy();
    assert!(!reason.contains(dir.as_ref()), "host path in {reason:?}");
    assert!(!reason.contains("127.0.0.1"), "address in {reason:?}");
    assert!(!reason.contains("health-test"), "credential in {reason:?}");
}

#[tokio::test]
async fn a_local_daemon_with_a_writable_working_area_is_ready_and_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(small_floor(dir.path())).await.expect("start");
    let r = d.readiness().await;
    assert!(r.ready(), "{}", r.to_text());
    let names: Vec<_> = r.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["working_area"],
        "local storage has no storage check"
    );
    let area = r.check("working_area").expect("working_area");
    assert!(area.reason.contains("free"), "{}", area.reason);
    assert!(d.live().await);
    // The probe leaves nothing behind.
    let left: Vec<_> = std::fs::read_dir(&d.config().working_area)
        .expect("area")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".wsd-ready"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn below_the_free_space_floor_the_working_area_check_fails_with_the_figure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = config(dir.path());
    c.health.min_free_bytes = u64::MAX;
    let d = Daemon::start(c).await.expect("start");
    let r = d.readiness().await;
    assert!(!r.ready());
    let area = r.check("working_area").expect("working_area");
    assert!(!area.ok);
    assert!(
        area.reason
            .contains("free in the working area, below health.min_free_bytes"),
        "{}",
        area.reason
    );
    assert!(area.reason.contains("iB") || area.reason.contains("bytes"));
    assert_no_host_details(&area.reason, dir.path());
    assert!(r.to_text().starts_with("not ready\n"), "{}", r.to_text());
    assert!(r.to_text().contains("working_area: FAILED, "));
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).expect("json");
    assert_eq!(json["ready"], false);
    assert_eq!(json["checks"][0]["name"], "working_area");
    assert!(
        r.to_json().starts_with("{\"ready\":false,"),
        "{}",
        r.to_json()
    );
    assert!(d.live().await, "liveness does not depend on readiness");
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_missing_working_area_is_not_ready_and_ready_again_once_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(small_floor(dir.path())).await.expect("start");
    let area = d.config().working_area.clone();
    let moved = dir.path().join("moved");
    std::fs::rename(&area, &moved).expect("move the area away");
    let r = d.readiness().await;
    let check = r.check("working_area").expect("working_area");
    assert!(!check.ok);
    assert!(
        check
            .reason
            .starts_with("cannot write a file in the working area"),
        "{}",
        check.reason
    );
    assert_no_host_details(&check.reason, dir.path());
    std::fs::rename(&moved, &area).expect("move the area back");
    assert!(d.readiness().await.ready());
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_store_that_refuses_connections_is_not_ready_without_retrying() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let mut c = s3_config(dir.path(), &format!("http://127.0.0.1:{port}"));
    // Retries as the operations do them would take minutes; the probe must not.
    c.storage.retry.max_retries = 10;
    c.storage.retry.timeout_secs = 600;
    c.health.check_timeout_ms = 60_000;
    let d = Daemon::start(c).await.expect("start");
    let r = d.readiness().await;
    let storage = r
        .check("storage")
        .expect("storage check for a remote backend");
    assert!(!storage.ok, "{}", r.to_text());
    assert!(
        storage.reason.contains("cannot connect"),
        "{}",
        storage.reason
    );
    assert!(!storage.reason.contains("retries"), "{}", storage.reason);
    assert_no_host_details(&storage.reason, dir.path());
    assert!(r.check("working_area").expect("working_area").ok);
    assert!(d.live().await, "liveness does not depend on the storage");
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_store_that_never_answers_fails_within_the_check_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Accepts connections (the kernel does, from the backlog) and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    let d = Daemon::start(s3_config(dir.path(), &format!("http://{addr}")))
        .await
        .expect("start");
    let r = d.readiness().await;
    let storage = r.check("storage").expect("storage");
    assert!(!storage.ok);
    assert_no_host_details(&storage.reason, dir.path());
    drop(silent);
    d.shutdown(Duration::from_secs(5)).await;
}

struct Fixed(&'static str, Result<&'static str, &'static str>);

impl ReadinessCheck for Fixed {
    fn name(&self) -> &'static str {
        self.0
    }
    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        let outcome = self.1.map(str::to_string).map_err(str::to_string);
        async move { outcome }.boxed()
    }
}

struct Hangs;

impl ReadinessCheck for Hangs {
    fn name(&self) -> &'static str {
        "hangs"
    }
    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        futures::future::pending().boxed()
    }
}

#[tokio::test]
async fn registered_checks_count_and_are_bounded_by_the_check_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = small_floor(dir.path());
    c.health.check_timeout_ms = 200;
    let d = Daemon::start(c).await.expect("start");
    d.add_readiness_check(Arc::new(Fixed("extra", Ok("serving"))));
    let r = d.readiness().await;
    assert!(r.ready(), "{}", r.to_text());
    assert_eq!(r.check("extra").map(|c| c.reason.as_str()), Some("serving"));

    d.add_readiness_check(Arc::new(Hangs));
    d.add_readiness_check(Arc::new(Fixed("down", Err("not serving"))));
    let r = d.readiness().await;
    assert!(!r.ready());
    let names: Vec<_> = r.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["working_area", "extra", "hangs", "down"]);
    let hangs = r.check("hangs").expect("hangs");
    assert!(!hangs.ok);
    assert_eq!(
        hangs.reason,
        "no answer within health.check_timeout_ms (200 ms)"
    );
    assert!(!r.check("down").expect("down").ok);
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_daemon_shutting_down_is_neither_live_nor_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(small_floor(dir.path())).await.expect("start");
    d.shutdown(Duration::from_secs(5)).await;
    assert!(!d.live().await);
    let r = d.readiness().await;
    assert!(!r.ready());
    assert_eq!(
        r.check("daemon").map(|c| c.reason.as_str()),
        Some("shutting down")
    );
}

#[test]
fn byte_counts_read_as_binary_units() {
    assert_eq!(bytes_text(0), "0 bytes");
    assert_eq!(bytes_text(1023), "1023 bytes");
    assert_eq!(bytes_text(1536), "1.5 KiB");
    assert_eq!(bytes_text(1 << 30), "1.0 GiB");
    assert_eq!(bytes_text(u64::MAX), "16777216.0 TiB");
}

#[tokio::test]
async fn readiness_asked_many_times_at_once_shares_the_working_area_probe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(small_floor(dir.path())).await.expect("start");
    let all = futures::future::join_all((0..16).map(|_| d.readiness())).await;
    for r in &all {
        assert!(r.ready(), "{}", r.to_text());
    }
    // And the next call probes anew: a working area that went away shows at once.
    let area = d.config().working_area.clone();
    let moved = dir.path().join("moved");
    std::fs::rename(&area, &moved).expect("move the area away");
    assert!(!d.readiness().await.ready());
    std::fs::rename(&moved, &area).expect("move the area back");
    d.shutdown(Duration::from_secs(5)).await;
}
