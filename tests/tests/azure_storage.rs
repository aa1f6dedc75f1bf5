//! Backups through the Azure backend against Azurite, the Azure Blob Storage emulator (it checks
//! Shared Key signatures): the container is created on first use, a backup and a snapshot restore
//! on another node, and a wrong key is a clear error.

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{EmptyInitializer, SnapshotInitializer};
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest, TakeSnapshotRequest};
use wsd_tests::azurite::Azurite;
use wsd_tests::{init_ready, init_request, metric_value, tree, DaemonProcess};

const SKIP: &[&str] = &[".gitpod"];

#[tokio::test]
async fn backups_travel_through_azure_blob_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let azurite = Azurite::start(&dir.path().join("azurite")).await;
    let config = azurite.daemon_config();
    let a = DaemonProcess::start(&dir.path().join("node-a"), &config).await;
    let mut ca = a.client().await;

    init_ready(&mut ca, "ws-a", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    let content = a.working_area().join("ws-a");
    tree::populate(&content);
    // Larger than one part (8 MiB), so the upload has several blocks.
    let big: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(content.join("big.bin"), big).expect("big file");
    let original = tree::snapshot(&content, SKIP);

    let url = ca
        .backup_workspace(BackupWorkspaceRequest { id: "ws-a".into() })
        .await
        .unwrap_or_else(|e| panic!("backup: {e:?}\n{}", a.logs()))
        .into_inner()
        .url;
    assert_eq!(url, "workspaces/meta-a/full.tar.zst@gitpod-user-owner-1");
    let snapshot = ca
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-a".into(),
            return_immediately: false,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;
    ca.dispose_workspace(DisposeWorkspaceRequest {
        id: "ws-a".into(),
        backup: true,
        backup_logs: false,
    })
    .await
    .expect("dispose");
    let metrics = a.metrics().await;
    assert_eq!(
        metric_value(&metrics, "wsd_buckets_created_total", ""),
        Some(1.0)
    );

    let b = DaemonProcess::start(&dir.path().join("node-b"), &config).await;
    let mut cb = b.client().await;
    init_ready(&mut cb, "ws-b", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(
        tree::snapshot(&b.working_area().join("ws-b"), SKIP),
        original
    );
    init_ready(
        &mut cb,
        "ws-snap",
        "meta-other",
        Spec::Snapshot(SnapshotInitializer {
            snapshot,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        tree::snapshot(&b.working_area().join("ws-snap"), SKIP),
        original
    );
}

#[tokio::test]
async fn a_wrong_azure_key_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let azurite = Azurite::start(&dir.path().join("azurite")).await;
    let config = format!(
        "[storage]\nbackend = \"azure\"\n[storage.azure]\naccount = \"devstoreaccount1\"\n\
         access_key = \"d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXk=\"\nendpoint = \"{}/devstoreaccount1\"\n",
        azurite.endpoint()
    );
    let d = DaemonProcess::start(&dir.path().join("node"), &config).await;
    let mut c = d.client().await;
    let err = c
        .init_workspace(init_request(
            "ws-1",
            "meta-1",
            Spec::Empty(EmptyInitializer {}),
        ))
        .await
        .expect_err("a wrong key cannot look up backups");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("refused"), "{}", err.message());
    assert!(!err.message().contains("d3Jvbmc"), "{}", err.message());
}
