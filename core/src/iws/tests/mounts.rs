//! MountProc / MountSysfs in a stand-in container.

use std::path::Path;
use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_is_mounted_masked_in_the_container_and_unmounted_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    let target = dir.path().join("target");
    std::fs::create_dir(&target).expect("target folder");
    let target_text = target.to_string_lossy().into_owned();

    // A workspace's socket serves the in-workspace operations only.
    let other: Result<wsd_proto::wsdaemon::IsWorkspaceExistsResponse> = call(
        &d,
        "wsdaemon.WorkspaceContentService/IsWorkspaceExists",
        wsd_proto::wsdaemon::IsWorkspaceExistsRequest { id: "ws-p".into() },
        &from("ws-p", container.pid),
    )
    .await;
    assert_eq!(
        other.expect_err("content on a socket").code(),
        Code::PermissionDenied
    );

    // The in-process surfaces have no caller: refused.
    let err = mount_proc(&d, &CallContext::default(), &target_text, 1)
        .await
        .expect_err("no caller");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("own socket"), "{err}");

    workspace(&d, "ws-p").await;
    let inside = from("ws-p", container.pid);
    let err = mount_proc(&d, &inside, &target_text, 1)
        .await
        .expect_err("no container yet");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.to_string().contains("no container attached"), "{err}");

    attach(&d, "ws-p", container.pid).await;
    let host = from("ws-p", std::process::id() as i32);
    let err = mount_proc(&d, &host, &target_text, 1)
        .await
        .expect_err("caller on the host");
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = mount_proc(&d, &inside, &target_text, 4242)
        .await
        .expect_err("unknown pid");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = mount_proc(&d, &inside, &format!("{target_text}/missing"), 1)
        .await
        .expect_err("no target");
    assert_eq!(err.code(), Code::InvalidArgument);

    mount_proc(&d, &inside, &target_text, 1)
        .await
        .expect("mount proc");
    let names = listing(&container, &target);
    let pids: Vec<&String> = names.iter().filter(|n| n.parse::<u32>().is_ok()).collect();
    assert_eq!(pids, vec!["1"], "only the container's processes: {names:?}");
    assert!(
        listing(&container, &target.join("acpi")).is_empty(),
        "acpi masked"
    );
    let keys = Path::new(&format!("/proc/{}/root", container.pid))
        .join(target.join("keys").strip_prefix("/").expect("abs"));
    assert_eq!(std::fs::read(&keys).expect("keys").len(), 0, "keys masked");
    let drop_caches = Path::new(&format!("/proc/{}/root", container.pid)).join(
        target
            .join("sys/vm/drop_caches")
            .strip_prefix("/")
            .expect("abs"),
    );
    let write = std::fs::write(&drop_caches, "1");
    assert!(write.is_err(), "proc/sys is read-only");
    assert!(listing(&container, &target).len() > 1);
    assert!(
        std::fs::read_dir(&target)
            .expect("host view")
            .next()
            .is_none(),
        "the host sees nothing"
    );

    // The same call again finds its mount: nothing is mounted twice.
    mount_proc(&d, &inside, &target_text, 1)
        .await
        .expect("mount proc again");
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{}/mountinfo", container.pid)).expect("mountinfo");
    let procs_there = mountinfo
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(target_text.as_str()))
        .count();
    assert_eq!(procs_there, 1, "one proc at the target");

    umount_proc(&d, &inside, &target_text, 1)
        .await
        .expect("umount proc");
    assert!(listing(&container, &target).is_empty(), "unmounted");
    umount_proc(&d, &inside, &target_text, 1)
        .await
        .expect("umount again is success");
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysfs_shows_the_container_network_with_firmware_masked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    workspace(&d, "ws-s").await;
    attach(&d, "ws-s", container.pid).await;
    let target = dir.path().join("sys");
    std::fs::create_dir(&target).expect("target");
    let ctx = from("ws-s", container.pid);
    let req = MountProcRequest {
        target: target.to_string_lossy().into_owned(),
        pid: 1,
    };
    let _: MountProcResponse = call(&d, "iws.InWorkspaceService/MountSysfs", req.clone(), &ctx)
        .await
        .expect("mount sysfs");
    assert_eq!(listing(&container, &target.join("class/net")), ["lo"]);
    assert!(listing(&container, &target.join("firmware")).is_empty());
    assert!(
        is_mount(&container, &target.join("firmware")),
        "firmware is masked"
    );
    let umount = UmountProcRequest {
        target: req.target.clone(),
        pid: 1,
    };
    let _: UmountProcResponse = call(&d, "iws.InWorkspaceService/UmountSysfs", umount, &ctx)
        .await
        .expect("umount sysfs");
    assert!(listing(&container, &target).is_empty());
    d.shutdown(Duration::from_secs(1)).await;
}
