//! Lifecycle tests of the content service through the dispatch (no transport).

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use wsd_proto::wsdaemon::snapshot_status_response::Phase;
use wsd_proto::wsdaemon::{
    DisposeWorkspaceRequest, DisposeWorkspaceResponse, InitWorkspaceResponse,
    IsWorkspaceExistsRequest, IsWorkspaceExistsResponse, SnapshotStatusRequest,
    SnapshotStatusResponse, TakeSnapshotRequest, TakeSnapshotResponse, WaitForInitRequest,
    WaitForInitResponse,
};

use crate::testing::config;
use crate::{CallContext, Code, Daemon, Result};

/// Calls `/wsdaemon.<method>` through the dispatch, as every surface does.
async fn call<R: Message + Default>(
    d: &Daemon,
    method: &str,
    req: impl Message,
    ctx: &CallContext,
) -> Result<R> {
    crate::testing::call(d, &format!("wsdaemon.{method}"), req, ctx).await
}

async fn init_ws(d: &Daemon, id: &str, ctx: &CallContext) -> Result<InitWorkspaceResponse> {
    call(d, "WorkspaceContentService/InitWorkspace", init(id), ctx).await
}

async fn dispose(d: &Daemon, id: &str) -> Result<DisposeWorkspaceResponse> {
    let req = DisposeWorkspaceRequest {
        id: id.into(),
        backup: false,
        backup_logs: false,
    };
    call(
        d,
        "WorkspaceContentService/DisposeWorkspace",
        req,
        &CallContext::default(),
    )
    .await
}

use crate::testing::empty_workspace as init;

async fn exists(d: &Daemon, id: &str) -> bool {
    let req = IsWorkspaceExistsRequest { id: id.into() };
    let resp: IsWorkspaceExistsResponse = call(
        d,
        "WorkspaceContentService/IsWorkspaceExists",
        req,
        &CallContext::default(),
    )
    .await
    .expect("exists");
    resp.exists
}

#[tokio::test]
async fn reload_keeps_wrapping_up_and_drops_unreadable_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    init_ws(&d, "ws-w", &CallContext::default())
        .await
        .expect("init");
    d.shutdown(Duration::from_secs(1)).await;

    // Simulate a crash in the middle of a disposal, and a state file that got mangled.
    let state = cfg.working_area.join("ws-w.workspace.json");
    let text = std::fs::read_to_string(&state)
        .expect("state")
        .replace("AVAILABLE", "WRAPPING_UP");
    std::fs::write(&state, text).expect("write");
    std::fs::create_dir_all(cfg.working_area.join("ws-bad")).expect("mkdir");
    std::fs::write(cfg.working_area.join("ws-bad.workspace.json"), b"{not json").expect("write");

    let d = Daemon::start(cfg.clone()).await.expect("restart");
    assert!(exists(&d, "ws-w").await, "WRAPPING_UP comes back");
    assert!(!exists(&d, "ws-bad").await);
    assert!(
        !cfg.working_area.join("ws-bad").exists(),
        "unreadable state is cleaned up"
    );
    // The next DisposeWorkspace resumes the disposal.
    let req = DisposeWorkspaceRequest {
        id: "ws-w".into(),
        backup: true,
        backup_logs: false,
    };
    let resumed: Result<DisposeWorkspaceResponse> = call(
        &d,
        "WorkspaceContentService/DisposeWorkspace",
        req,
        &CallContext::default(),
    )
    .await;
    resumed.expect("dispose resumes");
    assert!(!exists(&d, "ws-w").await);
    assert!(!state.exists());
}

#[tokio::test]
async fn dispatch_decodes_routes_and_refuses_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let path = "/wsdaemon.WorkspaceContentService/IsWorkspaceExists";
    let req = IsWorkspaceExistsRequest { id: "nope".into() }.encode_to_vec();
    let out = d
        .call(path, Bytes::from(req), CallContext::default())
        .await
        .expect("call");
    assert!(
        !IsWorkspaceExistsResponse::decode(out.as_slice())
            .expect("decode")
            .exists
    );

    let err = d
        .call(
            path,
            Bytes::from_static(&[0x0a, 0xff]),
            CallContext::default(),
        )
        .await;
    assert_eq!(err.expect_err("garbage").code(), Code::InvalidArgument);
    let err = d.call("/x.Y/Z", Bytes::new(), CallContext::default()).await;
    assert_eq!(err.expect_err("unknown").code(), Code::Unimplemented);
}

#[tokio::test]
async fn shutdown_refuses_new_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    d.shutdown(Duration::from_secs(1)).await;
    let err = init_ws(&d, "late", &CallContext::default()).await;
    assert_eq!(err.expect_err("closed").code(), Code::Unavailable);
    assert!(!dir.path().join("area/late").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_cancelled_before_the_call_does_not_strand_the_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    for i in 0..30 {
        let token = tokio_util::sync::CancellationToken::new();
        token.cancel();
        let ctx = CallContext {
            deadline: None,
            cancel: Some(token),
            ..CallContext::default()
        };
        let id = format!("ws-{i}");
        // Either answer is fine for the caller; the init must run either way.
        let _ = init_ws(&d, &id, &ctx).await;
        let wait = WaitForInitRequest { id: id.clone() };
        let waited: std::result::Result<Result<WaitForInitResponse>, _> = tokio::time::timeout(
            Duration::from_secs(10),
            call(
                &d,
                "WorkspaceContentService/WaitForInit",
                wait,
                &CallContext::default(),
            ),
        )
        .await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "init of {id} never ran: {waited:?}"
        );
    }
}

#[tokio::test]
async fn outcome_records_answer_after_a_restart_until_housekeeping_expires_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    let ctx = CallContext::default();
    init_ws(&d, "ws-o", &ctx).await.expect("init");
    let snap = TakeSnapshotRequest {
        id: "ws-o".into(),
        return_immediately: false,
    };
    let taken: TakeSnapshotResponse = call(&d, "WorkspaceContentService/TakeSnapshot", snap, &ctx)
        .await
        .expect("snapshot");
    dispose(&d, "ws-o").await.expect("dispose");
    d.shutdown(Duration::from_secs(1)).await;

    let status = |d: Daemon, url: String| async move {
        let resp: SnapshotStatusResponse = call(
            &d,
            "WorkspaceContentExt/SnapshotStatus",
            SnapshotStatusRequest { url },
            &CallContext::default(),
        )
        .await
        .expect("status");
        resp
    };
    let d = Daemon::start(cfg.clone()).await.expect("restart");
    let found = status(d.clone(), taken.url.clone()).await;
    assert_eq!(found.phase(), Phase::Done, "{found:?}");
    assert!(found.size_bytes > 0);
    dispose(&d, "ws-o")
        .await
        .expect("a repeated dispose answers after a restart");
    // Housekeeping keeps records younger than the TTL.
    d.housekeeping_pass().expect("housekeeping");
    assert_eq!(
        status(d.clone(), taken.url.clone()).await.phase(),
        Phase::Done
    );
    d.shutdown(Duration::from_secs(1)).await;

    // With a TTL of 0 every record has expired: housekeeping removes them.
    let mut expiring = cfg.clone();
    expiring.limits.dispose_record_ttl_secs = 0;
    let d = Daemon::start(expiring).await.expect("restart");
    d.housekeeping_pass().expect("housekeeping");
    let outcomes = cfg
        .working_area
        .join(crate::workspace::outcomes::OUTCOMES_FOLDER);
    for kind in ["disposed", "snapshots"] {
        let left = std::fs::read_dir(outcomes.join(kind))
            .expect("folder")
            .count();
        assert_eq!(left, 0, "{kind} records left after expiry");
    }
    assert_eq!(status(d.clone(), taken.url).await.phase(), Phase::Unknown);
    assert_eq!(
        dispose(&d, "ws-o").await.expect_err("expired").code(),
        Code::NotFound
    );
}
