//! Concurrency: 100 DisposeWorkspace calls on one workspace coalesce into one disposal with one
//! answer; 50 concurrent InitWorkspace calls on different ids all succeed.

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::{DisposeWorkspaceRequest, IsWorkspaceExistsRequest, WaitForInitRequest};
use wsd_tests::{init_request, metric_value, tree, DaemonProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_disposals_do_the_work_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    c.init_workspace(init_request(
        "ws-1",
        "meta-1",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("init");
    tree::populate(&d.working_area().join("ws-1"));

    let calls = (0..100).map(|_| {
        let mut c = c.clone();
        tokio::spawn(async move {
            c.dispose_workspace(DisposeWorkspaceRequest {
                id: "ws-1".into(),
                backup: true,
                backup_logs: false,
            })
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.code())
        })
    });
    let answers = futures::future::join_all(calls).await;
    let first = answers[0].as_ref().expect("join").clone();
    assert!(first.is_ok(), "{first:?}");
    for a in &answers {
        assert_eq!(
            a.as_ref().expect("join"),
            &first,
            "all calls get the same answer"
        );
    }
    let metrics = d.metrics().await;
    assert_eq!(
        metric_value(&metrics, "wsd_workspace_disposals_total", ""),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "wsd_backup_bytes_total", "kind=\"backup\"").map(|v| v > 0.0),
        Some(true)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "wsd_rpc_requests_total",
            "DisposeWorkspace\",code=\"OK\""
        ),
        Some(100.0),
        "{metrics}"
    );
    let exists = c
        .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws-1".into() })
        .await
        .expect("exists");
    assert!(!exists.into_inner().exists);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_inits_all_succeed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let c = d.client().await;
    let calls = (0..50).map(|i| {
        let mut c = c.clone();
        tokio::spawn(async move {
            let id = format!("ws-{i}");
            c.init_workspace(init_request(
                &id,
                &format!("meta-{i}"),
                Spec::Empty(EmptyInitializer {}),
            ))
            .await
            .map_err(|s| s.code())?;
            c.wait_for_init(WaitForInitRequest { id })
                .await
                .map_err(|s| s.code())?;
            Ok::<_, tonic::Code>(())
        })
    });
    for r in futures::future::join_all(calls).await {
        r.expect("join").expect("init succeeds");
    }
    for i in 0..50 {
        assert!(d
            .working_area()
            .join(format!("ws-{i}/.gitpod/ready"))
            .is_file());
        assert!(d
            .working_area()
            .join(format!("ws-{i}.workspace.json"))
            .is_file());
    }
}
