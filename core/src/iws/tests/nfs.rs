//! MountNfs: the checks, the path with a stand-in file system, and a real NFS server where the kernel has a client.

use std::path::Path;
use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_here_says_the_kernel_lacks_it_and_options_are_checked_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    workspace(&d, "ws-n").await;
    attach(&d, "ws-n", container.pid).await;
    let ctx = from("ws-n", container.pid);
    let target = dir.path().to_string_lossy().into_owned();
    let nfs = |args: &str| MountNfsRequest {
        source: "127.0.0.1:/export".into(),
        target: target.clone(),
        args: args.into(),
        pid: 1,
    };
    let refused: Result<MountNfsResponse> =
        call(&d, "iws.InWorkspaceService/MountNfs", nfs("suid"), &ctx).await;
    assert_eq!(refused.expect_err("suid").code(), Code::InvalidArgument);
    let has_nfs = std::fs::read_to_string("/proc/filesystems")
        .expect("filesystems")
        .contains("\tnfs4\n");
    if has_nfs {
        eprintln!("skipped: this kernel has NFS; the real NFS test covers it");
        return;
    }
    let err =
        call::<MountNfsResponse>(&d, "iws.InWorkspaceService/MountNfs", nfs("vers=4.2"), &ctx)
            .await
            .expect_err("no NFS client here");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.to_string()
            .contains("NFS is not supported by this kernel"),
        "{err}"
    );
    d.shutdown(Duration::from_secs(1)).await;
}

/// The NFS path with another file system standing in for the NFS mount step (this kernel has no
/// NFS client): built in the container's network namespace, nosuid and nodev forced, moved onto
/// the target in its mount namespace, unmounted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_mounts_are_made_in_the_workspace_and_moved_in_with_nosuid_nodev() {
    use crate::iws::mounts::{network_fs, Place};
    let dir = tempfile::tempdir().expect("tempdir");
    let container = TestContainer::start();
    let target = dir.path().join("share");
    std::fs::create_dir(&target).expect("target");
    let init = Pidfd::open(container.pid).expect("pidfd");
    let net = Place::network_namespace(&init).expect("netns");
    let tree = network_fs(
        net,
        "tmpfs",
        "stand-in".into(),
        vec![("size".into(), Some("1m".into()))],
    )
    .await
    .expect("stand-in mount");
    let id = Place::of(&init)
        .expect("place")
        .attach_unless_ours(tree, target.to_string_lossy().into_owned(), vec![])
        .await
        .expect("attach")
        .expect("nothing of ours there");
    let inside = Path::new(&format!("/proc/{}/root", container.pid))
        .join(target.strip_prefix("/").expect("abs"));
    let flags = nix::sys::statvfs::statvfs(&inside)
        .expect("statvfs")
        .flags();
    assert!(
        flags.contains(nix::sys::statvfs::FsFlags::ST_NOSUID),
        "{flags:?}"
    );
    assert!(
        flags.contains(nix::sys::statvfs::FsFlags::ST_NODEV),
        "{flags:?}"
    );
    std::fs::write(inside.join("file"), b"x").expect("write into the mount");
    assert!(
        !target.join("file").exists(),
        "the host's folder is untouched"
    );

    let gone = Place::of(&init)
        .expect("place")
        .detach(target.to_string_lossy().into_owned(), vec![id])
        .await
        .expect("detach");
    assert_eq!(gone, Some(id));
    assert!(!inside.join("file").exists(), "unmounted");
    let again = Place::of(&init)
        .expect("place")
        .detach(target.to_string_lossy().into_owned(), vec![id])
        .await
        .expect("nothing of ours there");
    assert_eq!(again, None);

    // An unknown file system type is the kernel's clear refusal, not a crash.
    let net = Place::network_namespace(&init).expect("netns");
    let err = network_fs(net, "no-such-fs", "x:/y".into(), vec![])
        .await
        .expect_err("no such fs");
    assert!(
        err.to_string().contains("not supported by this kernel"),
        "{err}"
    );
}

/// A real NFS server (nfs-ganesha) on the container's loopback and a real NFS mount through
/// MountNfs. Runs only where the kernel has an NFS client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nfs_from_a_real_server_where_the_kernel_has_nfs() {
    let filesystems = std::fs::read_to_string("/proc/filesystems").expect("filesystems");
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("\tnfs4"))
    {
        eprintln!(
            "skipped: this kernel has no NFS client (no nfs4 in /proc/filesystems); \
             the NFS path is tested with a stand-in file system"
        );
        return;
    }
    let ganesha = ["/usr/bin/ganesha.nfsd", "/usr/sbin/ganesha.nfsd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("ganesha.nfsd: install nfs-ganesha and nfs-ganesha-vfs (scripts/test-all.sh does where the kernel has NFS)");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    workspace(&d, "ws-nfs").await;
    attach(&d, "ws-nfs", container.pid).await;
    let export = dir.path().join("export");
    let target = dir.path().join("mnt");
    std::fs::create_dir(&export).expect("export");
    std::fs::create_dir(&target).expect("target");
    let conf = dir.path().join("ganesha.conf");
    std::fs::write(
        &conf,
        format!(
            "NFS_CORE_PARAM {{ Protocols = 4; Enable_NLM = false; Enable_RQUOTA = false; }}\n\
             NFS_KRB5 {{ Active_krb5 = false; }}\n\
             NFSV4 {{ Graceless = true; }}\n\
             EXPORT {{ Export_Id = 1; Path = {}; Pseudo = /export; Access_Type = RW;\n\
             Squash = No_Root_Squash; Protocols = 4; Transports = TCP; SecType = sys;\n\
             FSAL {{ Name = VFS; }} }}\n",
            export.display()
        ),
    )
    .expect("config");
    let in_container_net = |args: &[&str]| {
        std::process::Command::new("nsenter")
            .args(["-t", &container.pid.to_string(), "-n"])
            .args(args)
            .status()
            .expect("nsenter")
    };
    assert!(in_container_net(&["ip", "link", "set", "lo", "up"]).success());
    // In the foreground, in the container's network namespace (its loopback is the server's).
    let mut server = std::process::Command::new("nsenter")
        .args(["-t", &container.pid.to_string(), "-n", ganesha, "-F", "-f"])
        .arg(&conf)
        .arg("-L")
        .arg(dir.path().join("ganesha.log"))
        .spawn()
        .expect("start ganesha.nfsd");
    let ctx = from("ws-nfs", container.pid);
    let req = MountNfsRequest {
        source: "127.0.0.1:/export".into(),
        target: target.to_string_lossy().into_owned(),
        args: "vers=4.1".into(),
        pid: 1,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mounted = loop {
        let r: Result<MountNfsResponse> =
            call(&d, "iws.InWorkspaceService/MountNfs", req.clone(), &ctx).await;
        if r.is_ok() || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut stop_server = || {
        let _ = server.kill();
        let _ = server.wait();
    };
    if let Err(e) = &mounted {
        stop_server();
        panic!("MountNfs against ganesha: {e}");
    }
    let inside = Path::new(&format!("/proc/{}/root", container.pid))
        .join(target.strip_prefix("/").expect("abs"));
    std::fs::write(inside.join("from-workspace"), b"x").expect("write through NFS");
    assert!(
        export.join("from-workspace").exists(),
        "the file reached the server's export"
    );
    let umount = wsd_proto::iws::UmountNfsRequest {
        target: req.target.clone(),
        pid: 1,
    };
    let unmounted: Result<wsd_proto::iws::UmountNfsResponse> =
        call(&d, "iws.InWorkspaceService/UmountNfs", umount, &ctx).await;
    stop_server();
    unmounted.expect("umount nfs");
    assert!(!inside.join("from-workspace").exists());
    d.shutdown(Duration::from_secs(1)).await;
}
