//! Every status code of the behaviour spec for the six content RPCs, over gRPC.

use std::time::Duration;

use tonic::Code;
use wsd_proto::contentservice::file_download_initializer::FileInfo;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{
    EmptyInitializer, FileDownloadInitializer, FromBackupInitializer, GitConfig, GitInitializer,
    SnapshotInitializer,
};
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, DisposeWorkspaceRequest, InitWorkspaceRequest,
    IsWorkspaceExistsRequest, TakeSnapshotRequest, WaitForInitRequest,
};
use wsd_tests::http::download_after;
use wsd_tests::{init_request, Client, DaemonProcess};

fn empty() -> Spec {
    Spec::Empty(EmptyInitializer {})
}

fn code<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Polls until the daemon knows `id` (an InitWorkspace started in the background has arrived).
async fn wait_until_known(c: &mut Client, id: &str) {
    for _ in 0..500 {
        let r = c
            .is_workspace_exists(IsWorkspaceExistsRequest { id: id.into() })
            .await;
        if r.is_ok_and(|r| r.into_inner().exists) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{id} never became known");
}

async fn init_ok(c: &mut Client, id: &str, meta: &str) {
    c.init_workspace(init_request(id, meta, empty()))
        .await
        .expect("init");
}

fn dispose_req(id: &str, backup: bool) -> DisposeWorkspaceRequest {
    DisposeWorkspaceRequest {
        id: id.into(),
        backup,
        backup_logs: false,
    }
}

#[tokio::test]
async fn init_workspace_refuses_bad_requests_before_touching_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;

    for id in ["", "../x", "a/b", "..", ".hidden", &"x".repeat(129)] {
        let r = c.init_workspace(init_request(id, "m", empty())).await;
        assert_eq!(code(r), Code::InvalidArgument, "id {id:?}");
    }
    let mut no_metadata = init_request("ws-1", "m", empty());
    no_metadata.metadata = None;
    assert_eq!(
        code(c.init_workspace(no_metadata).await),
        Code::InvalidArgument
    );
    let mut no_owner = init_request("ws-1", "m", empty());
    no_owner.metadata.as_mut().expect("metadata").owner.clear();
    assert_eq!(
        code(c.init_workspace(no_owner).await),
        Code::InvalidArgument
    );
    let bad_meta = init_request("ws-1", "../other", empty());
    assert_eq!(
        code(c.init_workspace(bad_meta).await),
        Code::InvalidArgument
    );
    let no_initializer = InitWorkspaceRequest {
        initializer: None,
        ..init_request("ws-1", "m", empty())
    };
    assert_eq!(
        code(c.init_workspace(no_initializer).await),
        Code::InvalidArgument
    );

    let bad_digest = Spec::Download(FileDownloadInitializer {
        files: vec![FileInfo {
            url: "http://127.0.0.1:1/x".into(),
            file_path: "x".into(),
            digest: "sha256:nothex".into(),
        }],
        target_location: String::new(),
    });
    assert_eq!(
        code(
            c.init_workspace(init_request("ws-1", "m", bad_digest))
                .await
        ),
        Code::InvalidArgument
    );

    let git = |config: Option<GitConfig>, mode: i32| {
        Spec::Git(GitInitializer {
            remote_uri: "https://example.invalid/repo.git".into(),
            target_mode: mode,
            clone_taget: "main".into(),
            config,
            ..GitInitializer::default()
        })
    };
    let missing_git_config = git(None, 0);
    assert_eq!(
        code(
            c.init_workspace(init_request("ws-1", "m", missing_git_config))
                .await
        ),
        Code::InvalidArgument
    );
    let bad_clone_mode = git(Some(GitConfig::default()), 42);
    assert_eq!(
        code(
            c.init_workspace(init_request("ws-1", "m", bad_clone_mode))
                .await
        ),
        Code::InvalidArgument
    );
    let local_repo = Spec::Git(GitInitializer {
        remote_uri: "file:///etc".into(),
        config: Some(GitConfig::default()),
        ..GitInitializer::default()
    });
    let r = c
        .init_workspace(init_request("ws-1", "m", local_repo))
        .await;
    assert_eq!(
        code(r),
        Code::InvalidArgument,
        "local repositories are refused by default"
    );

    let bad_snapshot = Spec::Snapshot(SnapshotInitializer {
        snapshot: "../../etc@b".into(),
        from_volume_snapshot: false,
    });
    assert_eq!(
        code(
            c.init_workspace(init_request("ws-1", "m", bad_snapshot))
                .await
        ),
        Code::InvalidArgument
    );

    // Nothing of ws-1 was created by any of these.
    let names: Vec<_> = std::fs::read_dir(d.working_area()).expect("ls").collect();
    assert!(names.is_empty(), "working area must stay empty: {names:?}");
    let exists = c
        .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws-1".into() })
        .await
        .expect("exists");
    assert!(!exists.into_inner().exists);
}

#[tokio::test]
async fn init_failures_leave_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;

    let missing_snapshot = Spec::Snapshot(SnapshotInitializer {
        snapshot: "workspaces/m/snapshot-1.tar.zst@gitpod-user-owner-1".into(),
        from_volume_snapshot: false,
    });
    let r = c
        .init_workspace(init_request("ws-1", "m", missing_snapshot))
        .await;
    assert_eq!(code(r), Code::NotFound);

    let no_backup = Spec::Backup(FromBackupInitializer::default());
    let r = c.init_workspace(init_request("ws-2", "m", no_backup)).await;
    let status = r.expect_err("no backup");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("no backup found"),
        "{}",
        status.message()
    );

    for id in ["ws-1", "ws-2"] {
        assert!(!d.working_area().join(id).exists());
        assert!(!d
            .working_area()
            .join(format!("{id}.workspace.json"))
            .exists());
        let r = c.wait_for_init(WaitForInitRequest { id: id.into() }).await;
        assert_eq!(code(r), Code::NotFound);
    }
    // The id is free again after a failed init.
    init_ok(&mut c, "ws-1", "m").await;
}

#[tokio::test]
async fn states_gate_wait_snapshot_backup_and_duplicates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    let (_server, slow) = download_after(Duration::from_secs(3), 200, "slow.txt").await;

    // InitWorkspace blocks until the init is done; run it in the background.
    let mut bg = c.clone();
    let init =
        tokio::spawn(async move { bg.init_workspace(init_request("ws-slow", "m", slow)).await });
    wait_until_known(&mut c, "ws-slow").await;

    let exists = c
        .is_workspace_exists(IsWorkspaceExistsRequest {
            id: "ws-slow".into(),
        })
        .await
        .expect("exists");
    assert!(exists.into_inner().exists, "exists while SETTING_UP");
    let dup = c
        .init_workspace(init_request("ws-slow", "m", empty()))
        .await;
    assert_eq!(code(dup), Code::AlreadyExists, "duplicate init mid-init");
    let snap = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-slow".into(),
            return_immediately: false,
        })
        .await;
    assert_eq!(
        code(snap),
        Code::FailedPrecondition,
        "snapshot while SETTING_UP"
    );
    let backup = c
        .backup_workspace(BackupWorkspaceRequest {
            id: "ws-slow".into(),
        })
        .await;
    assert_eq!(code(backup), Code::FailedPrecondition, "backup during init");

    // The caller's deadline ends the wait, not the init.
    let mut req = tonic::Request::new(WaitForInitRequest {
        id: "ws-slow".into(),
    });
    req.set_timeout(Duration::from_millis(300));
    assert_eq!(code(c.wait_for_init(req).await), Code::DeadlineExceeded);
    // A client that gives up (drops the call) does not disturb the init either.
    let mut quitter = c.clone();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(200),
        quitter.wait_for_init(WaitForInitRequest {
            id: "ws-slow".into(),
        }),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the wait was still running when the client cancelled it"
    );

    c.wait_for_init(WaitForInitRequest {
        id: "ws-slow".into(),
    })
    .await
    .expect("wait succeeds");
    init.await.expect("join").expect("init succeeded");
    assert_eq!(
        std::fs::read(d.working_area().join("ws-slow/slow.txt")).expect("downloaded"),
        b"content of slow.txt"
    );
    assert_eq!(
        code(
            c.wait_for_init(WaitForInitRequest {
                id: "ws-slow".into()
            })
            .await
        ),
        Code::Ok,
        "at once when AVAILABLE"
    );
    let dup = c
        .init_workspace(init_request("ws-slow", "m", empty()))
        .await;
    assert_eq!(
        code(dup),
        Code::AlreadyExists,
        "duplicate init when AVAILABLE"
    );

    for id in ["", "../x"] {
        assert_eq!(
            code(c.wait_for_init(WaitForInitRequest { id: id.into() }).await),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                c.is_workspace_exists(IsWorkspaceExistsRequest { id: id.into() })
                    .await
            ),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                c.take_snapshot(TakeSnapshotRequest {
                    id: id.into(),
                    return_immediately: false
                })
                .await
            ),
            Code::InvalidArgument
        );
        assert_eq!(
            code(
                c.backup_workspace(BackupWorkspaceRequest { id: id.into() })
                    .await
            ),
            Code::InvalidArgument
        );
        assert_eq!(
            code(c.dispose_workspace(dispose_req(id, false)).await),
            Code::InvalidArgument
        );
    }
    assert_eq!(
        code(
            c.wait_for_init(WaitForInitRequest { id: "nope".into() })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            c.take_snapshot(TakeSnapshotRequest {
                id: "nope".into(),
                return_immediately: false
            })
            .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(
            c.backup_workspace(BackupWorkspaceRequest { id: "nope".into() })
                .await
        ),
        Code::NotFound
    );
    assert_eq!(
        code(c.dispose_workspace(dispose_req("nope", false)).await),
        Code::NotFound
    );
}

#[tokio::test]
async fn wait_for_init_reports_a_failing_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    let (_server, failing) = download_after(Duration::from_secs(3), 404, "slow.txt").await;
    let mut bg = c.clone();
    let init =
        tokio::spawn(async move { bg.init_workspace(init_request("ws-f", "m", failing)).await });
    wait_until_known(&mut c, "ws-f").await;
    let waited = c
        .wait_for_init(WaitForInitRequest { id: "ws-f".into() })
        .await;
    let status = waited.expect_err("init fails");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("404"), "{}", status.message());
    // Names the workspace and says "cannot initialize" once.
    assert!(status.message().contains("ws-f"), "{}", status.message());
    assert_eq!(
        status.message().matches("cannot initialize").count(),
        1,
        "{}",
        status.message()
    );
    assert_eq!(
        init.await.expect("join").expect_err("init fails").code(),
        Code::FailedPrecondition
    );
}

#[tokio::test]
async fn storage_disabled_per_workspace_or_for_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(&dir.path().join("a"), "").await;
    let mut c = d.client().await;
    let mut req = init_request("ws-off", "m", empty());
    req.remote_storage_disabled = true;
    c.init_workspace(req).await.expect("init");
    let snap = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-off".into(),
            return_immediately: false,
        })
        .await;
    assert_eq!(code(snap), Code::FailedPrecondition);
    let backup = c
        .backup_workspace(BackupWorkspaceRequest {
            id: "ws-off".into(),
        })
        .await;
    assert_eq!(code(backup), Code::FailedPrecondition);
    // Disposal of a workspace without storage does not back up and does not fail.
    c.dispose_workspace(dispose_req("ws-off", true))
        .await
        .expect("dispose");

    let none = DaemonProcess::start(&dir.path().join("b"), "[storage]\nbackend = \"none\"\n").await;
    let mut c = none.client().await;
    init_ok(&mut c, "ws-n", "m").await;
    let snap = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-n".into(),
            return_immediately: true,
        })
        .await;
    assert_eq!(code(snap), Code::FailedPrecondition);
    let backup = c
        .backup_workspace(BackupWorkspaceRequest { id: "ws-n".into() })
        .await;
    let status = backup.expect_err("no storage");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("remote storage is disabled"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn failed_final_backup_is_data_loss_and_retryable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    init_ok(&mut c, "ws-d", "meta-d").await;
    std::fs::write(d.working_area().join("ws-d/work.txt"), b"precious").expect("write");
    let first = c
        .backup_workspace(BackupWorkspaceRequest { id: "ws-d".into() })
        .await
        .expect("backup");
    let first_object = d
        .storage()
        .join("gitpod-user-owner-1/workspaces/meta-d/full.tar.zst");
    let first_bytes = std::fs::read(&first_object).expect("first backup");
    assert!(first
        .into_inner()
        .url
        .starts_with("workspaces/meta-d/full.tar.zst@"));

    // Break the storage: the backup's folder is replaced by a file, so the upload cannot land.
    let folder = d.storage().join("gitpod-user-owner-1/workspaces/meta-d");
    let parked = dir.path().join("parked");
    std::fs::rename(&folder, &parked).expect("park");
    std::fs::write(&folder, b"in the way").expect("block");

    let backup = c
        .backup_workspace(BackupWorkspaceRequest { id: "ws-d".into() })
        .await;
    let status = backup.expect_err("the upload cannot land");
    assert_eq!(status.code(), Code::DataLoss);
    assert!(
        status.message().contains("not a directory"),
        "the cause is named: {}",
        status.message()
    );
    assert!(
        !status.message().contains(d.dir.to_str().expect("utf-8")),
        "no host path: {}",
        status.message()
    );
    let disposed = c.dispose_workspace(dispose_req("ws-d", true)).await;
    assert_eq!(code(disposed), Code::DataLoss);
    assert_eq!(
        std::fs::read(d.working_area().join("ws-d/work.txt")).expect("kept"),
        b"precious"
    );
    let exists = c
        .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws-d".into() })
        .await
        .expect("exists");
    assert!(exists.into_inner().exists, "exists while WRAPPING_UP");
    assert_eq!(
        code(
            c.wait_for_init(WaitForInitRequest { id: "ws-d".into() })
                .await
        ),
        Code::FailedPrecondition
    );
    let snap = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-d".into(),
            return_immediately: false,
        })
        .await;
    assert_eq!(
        code(snap),
        Code::FailedPrecondition,
        "snapshot while WRAPPING_UP"
    );

    // Repair the storage: the previous backup is intact and the retried dispose succeeds.
    std::fs::remove_file(&folder).expect("unblock");
    std::fs::rename(&parked, &folder).expect("unpark");
    assert_eq!(
        std::fs::read(&first_object).expect("previous backup"),
        first_bytes
    );
    std::fs::write(
        d.working_area().join("ws-d/last-words.txt"),
        b"written while wrapping up",
    )
    .expect("write");
    c.dispose_workspace(dispose_req("ws-d", true))
        .await
        .expect("retried dispose");
    assert!(!d.working_area().join("ws-d").exists());
    assert_ne!(
        std::fs::read(&first_object).expect("new backup"),
        first_bytes,
        "final backup written"
    );
    // Dispose repeated after success answers OK again.
    c.dispose_workspace(dispose_req("ws-d", true))
        .await
        .expect("dispose twice");
    c.dispose_workspace(dispose_req("ws-d", false))
        .await
        .expect("dispose three times");
}

#[tokio::test]
async fn unknown_methods_and_bad_bytes_get_clear_codes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let channel = tonic::transport::Endpoint::from_shared(d.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path =
        http::uri::PathAndQuery::from_static("/wsdaemon.WorkspaceContentService/IsWorkspaceExists");
    let garbage = RawRequest(vec![0x0a, 0xff, 0xff]);
    let r = grpc
        .unary(tonic::Request::new(garbage), path, RawCodec)
        .await;
    assert_eq!(r.expect_err("bad bytes").code(), Code::InvalidArgument);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/wsdaemon.WorkspaceContentService/Nope");
    let r = grpc
        .unary(tonic::Request::new(RawRequest(vec![])), path, RawCodec)
        .await;
    let status = r.expect_err("unknown");
    assert_eq!(status.code(), Code::Unimplemented);
    assert_eq!(
        status
            .metadata()
            .get("wsd-error-reason")
            .and_then(|v| v.to_str().ok()),
        Some("unknown_method")
    );
    // The in-workspace operations are served on the workspaces' own sockets only.
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/iws.InWorkspaceService/MountProc");
    let r = grpc
        .unary(tonic::Request::new(RawRequest(vec![])), path, RawCodec)
        .await;
    let status = r.expect_err("not on a workspace socket");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("own socket"),
        "{}",
        status.message()
    );
}

#[derive(Debug)]
struct RawRequest(Vec<u8>);

#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = RawRequest;
    type Decode = bytes::Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        *self
    }
    fn decoder(&mut self) -> RawCodec {
        *self
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = RawRequest;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: RawRequest,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item.0);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = bytes::Bytes;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<bytes::Bytes>, tonic::Status> {
        use bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
