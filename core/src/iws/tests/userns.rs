//! PrepareForUserNS, the idmapped root after WriteIDMapping, Teardown and WipingTeardown in a
//! container with a root of its own, and the same after a daemon restart.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use wsd_proto::iws::{
    FsShiftMethod, PrepareForUserNsRequest, PrepareForUserNsResponse, TeardownRequest,
    TeardownResponse, WipingTeardownRequest, WipingTeardownResponse,
};

use super::*;

async fn prepare(d: &Daemon, ctx: &CallContext) -> Result<PrepareForUserNsResponse> {
    call(
        d,
        "iws.InWorkspaceService/PrepareForUserNS",
        PrepareForUserNsRequest {},
        ctx,
    )
    .await
}

async fn write_maps(d: &Daemon, ctx: &CallContext, inner: i32) {
    for gid in [false, true] {
        let req = WriteIdMappingRequest {
            pid: inner.into(),
            gid,
            mapping: usual_map(),
        };
        let _: WriteIdMappingResponse = call(d, "iws.InWorkspaceService/WriteIDMapping", req, ctx)
            .await
            .unwrap_or_else(|e| panic!("write the {} map: {e}", if gid { "gid" } else { "uid" }));
    }
}

/// Runs `cmd` as `pid`'s user (root of its user namespace) in its user and mount namespaces.
fn as_inner_root(pid: i32, cmd: &str) -> std::process::Output {
    std::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-U", "-m"])
        .args(["sh", "-c", cmd])
        .output()
        .expect("nsenter")
}

fn is_mount_of(pid: i32, path: &str) -> bool {
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some(path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_prepared_shifted_and_torn_down_also_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let _real = REAL.lock().await;
    let cgroup = TestV2Cgroup::create(&format!("wsd-test-ws-p-{}", std::process::id()));
    let container = TestContainer::start_rooted();
    cgroup.enter(container.pid);
    workspace(&d, "ws-p").await;
    attach(&d, "ws-p", container.pid).await;
    let ctx = from("ws-p", container.pid);

    let answer = prepare(&d, &ctx).await.expect("prepare");
    assert_eq!(answer.fs_shift, FsShiftMethod::Idmapped as i32);
    let tun = std::fs::symlink_metadata(container.path("/dev/net/tun")).expect("tun");
    assert!(tun.file_type().is_char_device());
    assert_eq!((tun.uid(), tun.gid()), (33333, 33333));
    assert!(container.path("/dev/fuse").exists());
    assert!(container.path("/dev/kmsg").is_file());
    assert!(container.path("/.workspace/mark").is_dir());
    assert_eq!(
        cgroup.procs("workspace"),
        vec![container.pid],
        "the workspace cgroup"
    );
    assert_eq!(
        prepare(&d, &ctx).await.expect_err("once").code(),
        Code::ResourceExhausted
    );

    // The daemon restarts: the limiter starts afresh, the preparation changes nothing twice.
    d.shutdown(Duration::from_secs(1)).await;
    let d = Daemon::start(config(dir.path())).await.expect("restart");
    let answer = prepare(&d, &ctx).await.expect("prepare after a restart");
    assert_eq!(answer.fs_shift, FsShiftMethod::Idmapped as i32);
    assert_eq!(
        std::fs::read_dir(container.path("/dev/net"))
            .expect("net")
            .count(),
        1
    );

    // A child in new user and mount namespaces, as a workspace's runtime starts one.
    let child = container.spawn_inside(&["unshare", "--user", "--mount", "sleep", "600"]);
    in_own_user_namespace(child).await;
    let inner = container.pid_inside(child);
    write_maps(&d, &ctx, inner).await;
    assert!(is_mount_of(child, "/.workspace/mark"), "the shifted root");
    assert!(
        !is_mount_of(container.pid, "/.workspace/mark"),
        "in the child's mount namespace only"
    );
    // The same maps again: success, and no second mount.
    write_maps(&d, &ctx, inner).await;
    let marks = std::fs::read_to_string(format!("/proc/{child}/mountinfo"))
        .expect("mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some("/.workspace/mark"))
        .count();
    assert_eq!(marks, 1);

    // Root of the child's namespace creates a file through the shifted root: on disk it is
    // root's (0), through the idmapped mount the host sees the mapped owner.
    let made = as_inner_root(child, "touch /.workspace/mark/made-inside && id -u");
    assert!(made.status.success(), "{made:?}");
    assert_eq!(String::from_utf8_lossy(&made.stdout).trim(), "0");
    let on_disk = std::fs::metadata(container.path("/made-inside")).expect("on disk");
    assert_eq!(on_disk.uid(), 0);
    let shifted = std::fs::metadata(format!("/proc/{child}/root/.workspace/mark/made-inside"))
        .expect("through the mark");
    assert_eq!((shifted.uid(), shifted.gid()), (33333, 33333));

    // Teardown: the mounts go; once only.
    let down: TeardownResponse = call(
        &d,
        "iws.InWorkspaceService/Teardown",
        TeardownRequest {},
        &ctx,
    )
    .await
    .expect("teardown");
    assert!(down.success);
    assert!(!is_mount_of(child, "/.workspace/mark"));
    let again: Result<TeardownResponse> = call(
        &d,
        "iws.InWorkspaceService/Teardown",
        TeardownRequest {},
        &ctx,
    )
    .await;
    assert_eq!(again.expect_err("once").code(), Code::ResourceExhausted);

    // WipingTeardown without do_wipe does nothing; with it, PrepareForUserNS is undone.
    let wipe = |do_wipe| WipingTeardownRequest { do_wipe };
    let kept: WipingTeardownResponse = call(
        &d,
        "iws.InWorkspaceService/WipingTeardown",
        wipe(false),
        &ctx,
    )
    .await
    .expect("no wipe");
    assert!(kept.success);
    assert!(container.path("/dev/net/tun").exists());
    for _ in 0..2 {
        let wiped: WipingTeardownResponse = call(
            &d,
            "iws.InWorkspaceService/WipingTeardown",
            wipe(true),
            &ctx,
        )
        .await
        .expect("wipe");
        assert!(wiped.success);
        assert!(!container.path("/dev/net").exists());
        assert!(!container.path("/dev/fuse").exists());
        assert!(!container.path("/dev/kmsg").exists());
        assert!(!container.path("/.workspace/mark").exists());
        assert!(
            container.path("/dev/null").exists(),
            "the container's own kept"
        );
    }
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispose_undoes_the_shifted_root_and_the_preparation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let _real = REAL.lock().await;
    let cgroup = TestV2Cgroup::create(&format!("wsd-test-ws-q-{}", std::process::id()));
    let container = TestContainer::start_rooted();
    cgroup.enter(container.pid);
    workspace(&d, "ws-q").await;
    attach(&d, "ws-q", container.pid).await;
    let ctx = from("ws-q", container.pid);
    prepare(&d, &ctx).await.expect("prepare");
    let child = container.spawn_inside(&["unshare", "--user", "--mount", "sleep", "600"]);
    in_own_user_namespace(child).await;
    write_maps(&d, &ctx, container.pid_inside(child)).await;
    assert!(is_mount_of(child, "/.workspace/mark"));

    let _: wsd_proto::wsdaemon::DisposeWorkspaceResponse = call(
        &d,
        "wsdaemon.WorkspaceContentService/DisposeWorkspace",
        wsd_proto::wsdaemon::DisposeWorkspaceRequest {
            id: "ws-q".into(),
            ..Default::default()
        },
        &CallContext::default(),
    )
    .await
    .expect("dispose");
    assert!(!is_mount_of(child, "/.workspace/mark"));
    assert!(!container.path("/dev/net/tun").exists());
    assert!(!cgroup.dir.join("workspace").exists());
    d.shutdown(Duration::from_secs(1)).await;
}
