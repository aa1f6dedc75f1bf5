//! AttachContainer / DetachContainer through the dispatch, against real processes in PID
//! namespaces of their own (as root).

use std::time::Duration;

use wsd_proto::wsdaemon::{
    DetachContainerRequest, DetachContainerResponse, DisposeWorkspaceRequest,
    DisposeWorkspaceResponse,
};

use crate::testing::{attach, call, config, init_empty as init, TestContainer};
use crate::{CallContext, Code, Daemon, Result};

async fn detach(d: &Daemon, id: &str) -> Result<DetachContainerResponse> {
    let req = DetachContainerRequest { id: id.into() };
    call(
        d,
        "wsdaemon.WorkspaceRuntime/DetachContainer",
        req,
        &CallContext::default(),
    )
    .await
}

fn attached_pid(d: &Daemon, id: &str) -> Option<i32> {
    let ws = d.store().get(id)?;
    d.runtime().container(&ws).map(|c| c.pid())
}

#[tokio::test]
async fn containers_attach_replace_and_detach() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let first = TestContainer::start();
    assert_eq!(
        attach(&d, "nope", first.pid.into())
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );
    init(&d, "ws-a").await;
    for bad in [0, -1, i64::from(i32::MAX), i64::from(std::process::id())] {
        let err = attach(&d, "ws-a", bad).await.expect_err("not a container");
        assert_eq!(err.code(), Code::InvalidArgument, "pid {bad}: {err}");
    }
    attach(&d, "ws-a", first.pid.into()).await.expect("attach");
    attach(&d, "ws-a", first.pid.into())
        .await
        .expect("attach again");
    assert_eq!(attached_pid(&d, "ws-a"), Some(first.pid));

    let second = TestContainer::start();
    attach(&d, "ws-a", second.pid.into())
        .await
        .expect("replace");
    assert_eq!(attached_pid(&d, "ws-a"), Some(second.pid));

    detach(&d, "ws-a").await.expect("detach");
    detach(&d, "ws-a").await.expect("detach is idempotent");
    assert_eq!(attached_pid(&d, "ws-a"), None);
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn attachments_survive_a_restart_only_while_the_process_is_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path());
    let d = Daemon::start(cfg.clone()).await.expect("start");
    init(&d, "ws-kept").await;
    init(&d, "ws-gone").await;
    let kept = TestContainer::start();
    let mut gone = TestContainer::start();
    attach(&d, "ws-kept", kept.pid.into())
        .await
        .expect("attach");
    attach(&d, "ws-gone", gone.pid.into())
        .await
        .expect("attach");
    d.shutdown(Duration::from_secs(1)).await;
    drop(d);
    gone.stop();

    let d = Daemon::start(cfg).await.expect("restart");
    assert_eq!(attached_pid(&d, "ws-kept"), Some(kept.pid));
    assert_eq!(attached_pid(&d, "ws-gone"), None);

    let req = DisposeWorkspaceRequest {
        id: "ws-kept".into(),
        backup: false,
        backup_logs: false,
    };
    let _: DisposeWorkspaceResponse = call(
        &d,
        "wsdaemon.WorkspaceContentService/DisposeWorkspace",
        req,
        &CallContext::default(),
    )
    .await
    .expect("dispose");
    assert_eq!(attached_pid(&d, "ws-kept"), None, "dispose detaches");
    d.shutdown(Duration::from_secs(1)).await;
}
