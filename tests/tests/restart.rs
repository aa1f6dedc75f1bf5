//! Restart: a daemon stopped (SIGTERM or SIGKILL) with workspaces AVAILABLE and one SETTING_UP comes
//! back with the available ones answering as before and the half-initialized one cleaned up.

use std::time::Duration;

use nix::sys::signal::Signal;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, DisposeWorkspaceRequest, IsWorkspaceExistsRequest, WaitForInitRequest,
};
use wsd_tests::http::download_after;
use wsd_tests::{init_request, tree, wait_until, DaemonProcess};

async fn restart_after(signal: Signal) {
    let dir = tempfile::tempdir().expect("tempdir");
    // A short grace period so SIGTERM does not wait for the stuck download.
    let mut d = DaemonProcess::start(dir.path(), "[limits]\nshutdown_grace_secs = 1\n").await;
    let mut c = d.client().await;

    for id in ["ws-a", "ws-b"] {
        c.init_workspace(init_request(
            id,
            &format!("meta-{id}"),
            Spec::Empty(EmptyInitializer {}),
        ))
        .await
        .expect("init");
        tree::populate(&d.working_area().join(id));
    }
    let before = tree::snapshot(&d.working_area().join("ws-a"), &[]);

    // One init that never finishes before the stop: its download hangs.
    let (server, spec) = download_after(Duration::from_secs(600), 200, "hang").await;
    let mut bg = c.clone();
    let stuck = tokio::spawn(async move {
        bg.init_workspace(init_request("ws-setting-up", "meta-s", spec))
            .await
    });
    wait_until("the download has started", Duration::from_secs(30), || {
        server.hits("/hang") > 0
    })
    .await;
    let state_file = d.working_area().join("ws-setting-up.workspace.json");
    let state = std::fs::read_to_string(&state_file).expect("state file written at init start");
    assert!(state.contains("SETTING_UP"), "{state}");
    assert!(d.working_area().join("ws-setting-up").is_dir());

    let status = d.stop_with(signal).await;
    if signal == Signal::SIGTERM {
        assert!(
            status.success(),
            "graceful stop exits 0: {status:?}\n{}",
            d.logs()
        );
    }
    let _ = stuck.await;
    d.restart().await;
    let mut c = d.client().await;

    for id in ["ws-a", "ws-b"] {
        let exists = c
            .is_workspace_exists(IsWorkspaceExistsRequest { id: id.into() })
            .await
            .expect("exists");
        assert!(exists.into_inner().exists, "{id} is back");
        c.wait_for_init(WaitForInitRequest { id: id.into() })
            .await
            .expect("available");
    }
    assert_eq!(tree::snapshot(&d.working_area().join("ws-a"), &[]), before);
    c.backup_workspace(BackupWorkspaceRequest { id: "ws-a".into() })
        .await
        .expect("backup after restart");
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: "ws-b".into(),
        backup: true,
        backup_logs: false,
    })
    .await
    .expect("dispose after restart");

    let exists = c
        .is_workspace_exists(IsWorkspaceExistsRequest {
            id: "ws-setting-up".into(),
        })
        .await
        .expect("exists");
    assert!(
        !exists.into_inner().exists,
        "the half-initialized workspace is forgotten"
    );
    assert!(
        !d.working_area().join("ws-setting-up").exists(),
        "its content is removed"
    );
    assert!(!state_file.exists(), "its state is removed");
    // And it can be initialized again.
    c.init_workspace(init_request(
        "ws-setting-up",
        "meta-s",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("init again");
}

#[tokio::test]
async fn restart_after_sigterm() {
    restart_after(Signal::SIGTERM).await;
}

#[tokio::test]
async fn restart_after_sigkill() {
    restart_after(Signal::SIGKILL).await;
}

#[tokio::test]
async fn housekeeping_removes_orphaned_content_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let area = dir.path().join("workspaces");
    std::fs::create_dir_all(area.join("orphan/sub")).expect("mkdir");
    std::fs::write(area.join("orphan/sub/file"), b"x").expect("write");
    std::fs::create_dir_all(area.join("fresh-orphan")).expect("mkdir");
    // Make the first orphan old.
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &area.join("orphan"),
        &old,
        &old,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .expect("utimensat");
    let d = DaemonProcess::start(dir.path(), "[limits]\norphan_max_age_secs = 3600\n").await;
    let mut c = d.client().await;
    c.init_workspace(init_request(
        "ws-live",
        "m",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("init");
    wait_until("the orphan is removed", Duration::from_secs(10), || {
        !area.join("orphan").exists()
    })
    .await;
    assert!(area.join("fresh-orphan").exists(), "young folders are kept");
    assert!(area.join("ws-live").exists(), "live workspaces are kept");
}

#[tokio::test]
async fn a_repeated_dispose_after_a_restart_answers_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    c.init_workspace(init_request(
        "ws-gone",
        "meta-g",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("init");
    let dispose = || DisposeWorkspaceRequest {
        id: "ws-gone".into(),
        backup: true,
        backup_logs: false,
    };
    let first = c
        .dispose_workspace(dispose())
        .await
        .expect("dispose")
        .into_inner();
    d.stop_with(Signal::SIGTERM).await;
    d.restart().await;
    let mut c = d.client().await;
    let again = c
        .dispose_workspace(dispose())
        .await
        .expect("dispose after restart")
        .into_inner();
    assert_eq!(again, first);
    let never = c
        .dispose_workspace(DisposeWorkspaceRequest {
            id: "never-seen".into(),
            backup: false,
            backup_logs: false,
        })
        .await
        .expect_err("never seen");
    assert_eq!(never.code(), tonic::Code::NotFound);
}
