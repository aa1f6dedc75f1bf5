//! Over gRPC with a real client: content written into a workspace survives backup, disposal and
//! restore (backup initializer, plain init of the same meta_id, snapshot, prebuild) unchanged.

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{
    EmptyInitializer, FromBackupInitializer, PrebuildInitializer, SnapshotInitializer,
};
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest, TakeSnapshotRequest};
use wsd_tests::{init_ready, tree, Client, DaemonProcess};

const SKIP: &[&str] = &[".gitpod"];

fn ready_source(d: &DaemonProcess, id: &str) -> String {
    let text = std::fs::read_to_string(d.working_area().join(id).join(".gitpod/ready"))
        .expect("ready file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("ready file is JSON");
    assert!(json["metrics"].is_array(), "{text}");
    json["source"].as_str().expect("source").to_string()
}

async fn dispose(client: &mut Client, id: &str, backup: bool) {
    client
        .dispose_workspace(DisposeWorkspaceRequest {
            id: id.into(),
            backup,
            backup_logs: false,
        })
        .await
        .expect("dispose");
}

#[tokio::test]
async fn backup_dispose_restore_keeps_the_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;

    init_ready(&mut c, "ws-a", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(ready_source(&d, "ws-a"), "from-other");
    let content = d.working_area().join("ws-a");
    tree::populate(&content);
    let original = tree::snapshot(&content, SKIP);
    assert!(original.len() > 15);

    let url = c
        .backup_workspace(BackupWorkspaceRequest { id: "ws-a".into() })
        .await
        .expect("backup")
        .into_inner()
        .url;
    assert_eq!(url, "workspaces/meta-a/full.tar.zst@gitpod-user-owner-1");
    dispose(&mut c, "ws-a", false).await;
    assert!(!content.exists(), "content removed by dispose");
    assert!(!d.working_area().join("ws-a.workspace.json").exists());

    // The backup initializer restores the full backup.
    let spec = Spec::Backup(FromBackupInitializer {
        checkout_location: String::new(),
        from_volume_snapshot: false,
    });
    init_ready(&mut c, "ws-b", "meta-a", spec).await;
    assert_eq!(ready_source(&d, "ws-b"), "from-backup");
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-b"), SKIP),
        original
    );

    // Dispose with the final backup, then a plain init of the same meta_id restores it first.
    std::fs::write(d.working_area().join("ws-b/added-later.txt"), b"new").expect("write");
    let expected = tree::snapshot(&d.working_area().join("ws-b"), SKIP);
    dispose(&mut c, "ws-b", true).await;
    init_ready(&mut c, "ws-c", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(ready_source(&d, "ws-c"), "from-backup");
    let restored = tree::snapshot(&d.working_area().join("ws-c"), SKIP);
    assert_eq!(restored, expected);
}

#[tokio::test]
async fn snapshot_and_prebuild_restore_the_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;

    init_ready(&mut c, "ws-s", "meta-s", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-s");
    tree::populate(&content);
    let original = tree::snapshot(&content, SKIP);

    let url = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-s".into(),
            return_immediately: false,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;
    assert!(
        url.starts_with("workspaces/meta-s/snapshot-")
            && url.ends_with(".tar.zst@gitpod-user-owner-1"),
        "{url}"
    );
    dispose(&mut c, "ws-s", false).await;

    // A different meta_id, so that no full backup takes precedence.
    let snap = SnapshotInitializer {
        snapshot: url.clone(),
        from_volume_snapshot: false,
    };
    init_ready(&mut c, "ws-t", "meta-t", Spec::Snapshot(snap.clone())).await;
    assert_eq!(ready_source(&d, "ws-t"), "from-other");
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-t"), SKIP),
        original
    );

    let prebuild = PrebuildInitializer {
        prebuild: Some(snap),
        git: vec![],
    };
    init_ready(&mut c, "ws-p", "meta-p", Spec::Prebuild(prebuild)).await;
    assert_eq!(ready_source(&d, "ws-p"), "from-prebuild");
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-p"), SKIP),
        original
    );

    // A prebuild whose snapshot is gone falls back to its (empty) git list: an empty workspace.
    let missing = SnapshotInitializer {
        snapshot: "workspaces/meta-s/snapshot-1.tar.zst@gitpod-user-owner-1".into(),
        from_volume_snapshot: false,
    };
    let prebuild = PrebuildInitializer {
        prebuild: Some(missing),
        git: vec![],
    };
    init_ready(&mut c, "ws-q", "meta-q", Spec::Prebuild(prebuild)).await;
    assert_eq!(ready_source(&d, "ws-q"), "from-other");
    assert!(tree::snapshot(&d.working_area().join("ws-q"), SKIP).is_empty());
}

#[tokio::test]
async fn snapshot_returning_immediately_reports_its_outcome() {
    use wsd_proto::wsdaemon::snapshot_status_response::Phase;
    use wsd_proto::wsdaemon::SnapshotStatusRequest;
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-i", "meta-i", Spec::Empty(EmptyInitializer {})).await;
    tree::populate(&d.working_area().join("ws-i"));
    let url = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-i".into(),
            return_immediately: true,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;
    // Disposal waits for the snapshot instead of deleting content under it.
    dispose(&mut c, "ws-i", false).await;
    let status = d
        .ext_client()
        .await
        .snapshot_status(SnapshotStatusRequest { url: url.clone() })
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.phase(), Phase::Done, "{status:?}");
    let key = url.split('@').next().expect("object name");
    let object = d.storage().join("gitpod-user-owner-1").join(key);
    let stored = std::fs::metadata(&object).expect("snapshot object").len();
    assert_eq!(status.size_bytes as u64, stored);
    let snap = SnapshotInitializer {
        snapshot: url,
        from_volume_snapshot: false,
    };
    init_ready(&mut c, "ws-j", "meta-j", Spec::Snapshot(snap)).await;
    assert!(d.working_area().join("ws-j/data/blob.bin").is_file());
}

#[tokio::test]
async fn plain_tar_archives_are_written_and_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "[archive]\nformat = \"tar\"\n").await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-1", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    tree::populate(&d.working_area().join("ws-1"));
    let original = tree::snapshot(&d.working_area().join("ws-1"), SKIP);
    dispose(&mut c, "ws-1", true).await;
    let object = d
        .storage()
        .join("gitpod-user-owner-1/workspaces/meta-1/full.tar");
    let head = std::fs::read(&object).expect("plain tar backup");
    assert_eq!(&head[257..262], b"ustar");
    init_ready(&mut c, "ws-2", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-2"), SKIP),
        original
    );
}
