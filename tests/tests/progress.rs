//! Progress of long operations over gRPC: the Progress long poll and the WatchProgress stream
//! report a backup and a restore while they run, end with `done`, and refuse unknown workspaces.

use tonic::Code;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{EmptyInitializer, FromBackupInitializer};
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest, ProgressRequest};
use wsd_tests::{init_ready, write_random, DaemonProcess};

#[tokio::test]
async fn a_backup_and_a_restore_report_their_progress() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "[archive]\nmode = \"chunked\"\n").await;
    let mut c = d.client().await;
    let mut ext = d.ext_client().await;

    // Unknown workspace: NOT_FOUND; a known one with nothing run yet: an empty, done report.
    let err = ext
        .progress(ProgressRequest {
            id: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown workspace");
    assert_eq!(err.code(), Code::NotFound);
    init_ready(&mut c, "ws-p", "meta-p", Spec::Empty(EmptyInitializer {})).await;
    let after_init = ext
        .progress(ProgressRequest {
            id: "ws-p".into(),
            ..Default::default()
        })
        .await
        .expect("progress")
        .into_inner();
    assert_eq!(after_init.operation, "init");
    assert!(
        after_init.done && after_init.error.is_empty(),
        "{after_init:?}"
    );

    let content = d.working_area().join("ws-p");
    for i in 0..8 {
        write_random(&content.join(format!("f{i}.bin")), 8 << 20, i);
    }
    // Watch the backup from before it starts: the stream follows the next operation.
    let mut stream = ext
        .watch_progress(ProgressRequest {
            id: "ws-p".into(),
            after: after_init.seq,
            wait_ms: 0,
        })
        .await
        .expect("watch")
        .into_inner();
    let mut backup_client = c.clone();
    let backup = tokio::spawn(async move {
        backup_client
            .backup_workspace(BackupWorkspaceRequest { id: "ws-p".into() })
            .await
    });
    let mut reports = Vec::new();
    while let Some(report) = stream.message().await.expect("stream") {
        reports.push(report);
    }
    backup.await.expect("join").expect("backup");
    let last = reports.last().expect("reports");
    assert_eq!(last.operation, "backup");
    assert!(last.done && last.error.is_empty(), "{last:?}");
    assert_eq!(last.files_done, 8 + 1, "eight files and the ready file");
    assert!(last.bytes_done >= 64 << 20, "{last:?}");
    assert!(
        reports.windows(2).all(|w| w[0].seq < w[1].seq),
        "each change is sent once"
    );

    // A restore from the chunked backup knows its totals.
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: "ws-p".into(),
        backup: false,
        backup_logs: false,
    })
    .await
    .expect("dispose");
    let spec = Spec::Backup(FromBackupInitializer {
        checkout_location: String::new(),
        from_volume_snapshot: false,
    });
    init_ready(&mut c, "ws-q", "meta-p", spec).await;
    let restore = ext
        .progress(ProgressRequest {
            id: "ws-q".into(),
            ..Default::default()
        })
        .await
        .expect("progress")
        .into_inner();
    assert_eq!(restore.operation, "init");
    assert!(restore.done, "{restore:?}");
    assert_eq!(restore.bytes_total, restore.bytes_done);
    assert!(
        restore.bytes_total >= 64 << 20 && restore.files_total == 9,
        "{restore:?}"
    );
}
