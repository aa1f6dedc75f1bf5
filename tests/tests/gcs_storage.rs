//! The GCS backend against fake-gcs-server, the Google Cloud Storage emulator: the daemon's
//! requests reach it with the configured service account, backups are looked up at init, and with
//! a project configured a missing bucket is created before the first upload. fake-gcs-server does
//! not serve the XML API object_store uploads through (it answers "invalid uploadType"), so object
//! uploads to GCS are not exercised here; S3 and Azure cover the upload path end to end.

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::{DisposeWorkspaceRequest, WaitForInitRequest};
use wsd_tests::fake_gcs::FakeGcs;
use wsd_tests::{http, init_request, metric_value, DaemonProcess};

#[tokio::test]
async fn the_daemon_looks_up_backups_and_creates_its_bucket_in_google_cloud_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gcs = FakeGcs::start(&dir.path().join("gcs")).await;
    let d = DaemonProcess::start(&dir.path().join("node"), &gcs.daemon_config()).await;
    let mut c = d.client().await;
    let addr = format!("127.0.0.1:{}", gcs.port);
    let bucket_info = || http::get_text(&addr, "/storage/v1/b/gitpod-user-owner-1");
    assert!(!bucket_info().await.contains("\"name\""));

    // The lookup of a previous backup goes to GCS and finds none.
    c.init_workspace(init_request(
        "ws-a",
        "meta-a",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .unwrap_or_else(|e| panic!("init: {e:?}\n{}", d.logs()));
    c.wait_for_init(WaitForInitRequest { id: "ws-a".into() })
        .await
        .expect("wait");
    let gitpod = d.working_area().join("ws-a/.gitpod");
    std::fs::create_dir_all(&gitpod).expect(".gitpod");
    std::fs::write(gitpod.join("prebuild-log-0"), b"step 1\n").expect("log");

    // The log upload creates the bucket first (the upload itself then meets the emulator's gap,
    // which a log upload never turns into a failed disposal).
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: "ws-a".into(),
        backup: false,
        backup_logs: true,
    })
    .await
    .expect("dispose");
    assert!(
        bucket_info()
            .await
            .contains("\"name\":\"gitpod-user-owner-1\""),
        "{}",
        d.logs()
    );
    let metrics = d.metrics().await;
    assert_eq!(
        metric_value(&metrics, "wsd_buckets_created_total", ""),
        Some(1.0)
    );
}
