//! Lifecycle tests against `Daemon` directly (no transport).

use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use wsd_proto::contentservice::{
    workspace_initializer::Spec, EmptyInitializer, WorkspaceInitializer,
};
use wsd_proto::wsdaemon::{
    DisposeWorkspaceRequest, InitWorkspaceRequest, IsWorkspaceExistsRequest,
    IsWorkspaceExistsResponse, WorkspaceMetadata,
};

use crate::config::Config;
use crate::{CallContext, Code, Daemon};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        working_area: dir.join("area"),
        ..Config::default()
    };
    c.storage.local_path = dir.join("storage");
    c
}

fn init(id: &str) -> InitWorkspaceRequest {
    InitWorkspaceRequest {
        id: id.into(),
        metadata: Some(WorkspaceMetadata {
            owner: "o".into(),
            meta_id: format!("m-{id}"),
        }),
        initializer: Some(WorkspaceInitializer {
            spec: Some(Spec::Empty(EmptyInitializer {})),
        }),
        ..Default::default()
    }
}

async fn exists(d: &Daemon, id: &str) -> bool {
    d.is_workspace_exists(
        IsWorkspaceExistsRequest { id: id.into() },
        &CallContext::default(),
    )
    .await
    .expect("exists")
    .exists
}

#[tokio::test]
async fn reload_keeps_wrapping_up_and_drops_unreadable_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    d.init_workspace(init("ws-w"), &CallContext::default())
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
    d.dispose_workspace(req, &CallContext::default())
        .await
        .expect("dispose resumes");
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
    let err = d
        .init_workspace(init("late"), &CallContext::default())
        .await;
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
        };
        let id = format!("ws-{i}");
        // Either answer is fine for the caller; the init must run either way.
        let _ = d.init_workspace(init(&id), &ctx).await;
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            d.wait_for_init(
                wsd_proto::wsdaemon::WaitForInitRequest { id: id.clone() },
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
