//! The in-workspace operations through the dispatch against a real stand-in container (as root),
//! with the caller given as the workspace socket gives it. The socket itself is tested over the
//! wire by the integration tests.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wsd_proto::contentservice::{
    workspace_initializer::Spec, EmptyInitializer, WorkspaceInitializer,
};
use wsd_proto::iws::write_id_mapping_request::Mapping;
use wsd_proto::iws::{
    MountNfsRequest, MountNfsResponse, MountProcRequest, MountProcResponse, UmountProcRequest,
    UmountProcResponse, WriteIdMappingRequest, WriteIdMappingResponse,
};
use wsd_proto::wsdaemon::{
    AttachContainerRequest, AttachContainerResponse, InitWorkspaceRequest, InitWorkspaceResponse,
    WorkspaceMetadata,
};

use crate::call::Caller;
use crate::sys::process::Pidfd;
use crate::testing::{call, config, TestContainer};
use crate::{CallContext, Code, Daemon, Result};

async fn workspace(d: &Daemon, id: &str) {
    let req = InitWorkspaceRequest {
        id: id.into(),
        metadata: Some(WorkspaceMetadata {
            owner: "o".into(),
            meta_id: format!("m-{id}"),
        }),
        initializer: Some(WorkspaceInitializer {
            spec: Some(Spec::Empty(EmptyInitializer {})),
        }),
        ..Default::default()
    };
    let _: InitWorkspaceResponse = call(
        d,
        "wsdaemon.WorkspaceContentService/InitWorkspace",
        req,
        &CallContext::default(),
    )
    .await
    .expect("init");
}

async fn attach(d: &Daemon, id: &str, pid: i32) {
    let req = AttachContainerRequest {
        id: id.into(),
        pid: pid.into(),
        cgroup_path: String::new(),
    };
    let _: AttachContainerResponse = call(
        d,
        "wsdaemon.WorkspaceRuntime/AttachContainer",
        req,
        &CallContext::default(),
    )
    .await
    .expect("attach");
}

/// A call as the workspace socket of `id` makes it for the process `peer`.
fn from(id: &str, peer: i32) -> CallContext {
    CallContext {
        caller: Some(Caller {
            workspace: id.into(),
            peer: Arc::new(Pidfd::open(peer).expect("peer pidfd")),
        }),
        ..CallContext::default()
    }
}

async fn mount_proc(
    d: &Daemon,
    ctx: &CallContext,
    target: &str,
    pid: i64,
) -> Result<MountProcResponse> {
    let req = MountProcRequest {
        target: target.into(),
        pid,
    };
    call(d, "iws.InWorkspaceService/MountProc", req, ctx).await
}

async fn umount_proc(
    d: &Daemon,
    ctx: &CallContext,
    target: &str,
    pid: i64,
) -> Result<UmountProcResponse> {
    let req = UmountProcRequest {
        target: target.into(),
        pid,
    };
    call(d, "iws.InWorkspaceService/UmountProc", req, ctx).await
}

/// Whether `path` (as the container's init sees it) is a mount point: another mount than its
/// parent folder's.
fn is_mount(container: &TestContainer, path: &Path) -> bool {
    let inside = |p: &Path| {
        let full = Path::new(&format!("/proc/{}/root", container.pid))
            .join(p.strip_prefix("/").expect("absolute"));
        let fd = nix::fcntl::open(
            &full,
            nix::fcntl::OFlag::O_PATH,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        crate::sys::mount_api::mount_id(std::os::fd::AsFd::as_fd(&fd)).expect("mount id")
    };
    inside(path) != inside(path.parent().expect("parent"))
}

/// The names in `dir` as the container's init sees it.
fn listing(container: &TestContainer, dir: &Path) -> Vec<String> {
    let inside = Path::new(&format!("/proc/{}/root", container.pid))
        .join(dir.strip_prefix("/").expect("absolute"));
    let mut names: Vec<String> = std::fs::read_dir(inside)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

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
async fn id_maps_are_written_for_processes_of_the_container_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    workspace(&d, "ws-u").await;
    attach(&d, "ws-u", container.pid).await;
    let child = container.spawn_inside(&["unshare", "--user", "sleep", "600"]);
    let inner = {
        let ns = std::fs::File::open(format!("/proc/{}/ns/pid", container.pid)).expect("ns");
        crate::sys::namespaces::pid_in_namespace(std::os::fd::AsFd::as_fd(&ns), child)
            .expect("inner pid")
    };
    // unshare execs sleep once the user namespace exists.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{child}/ns/user")).ok()
        == std::fs::read_link("/proc/self/ns/user").ok()
    {
        assert!(std::time::Instant::now() < deadline, "no user namespace");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ctx = from("ws-u", container.pid);
    let map = |gid: bool, mapping: Vec<Mapping>| WriteIdMappingRequest {
        pid: inner.into(),
        gid,
        mapping,
    };
    let usual = vec![
        Mapping {
            container_id: 0,
            host_id: 33333,
            size: 1,
        },
        Mapping {
            container_id: 1,
            host_id: 100000,
            size: 65534,
        },
    ];
    let out_of_range: Result<WriteIdMappingResponse> = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(
            false,
            vec![Mapping {
                container_id: 0,
                host_id: 0,
                size: 1,
            }],
        ),
        &ctx,
    )
    .await;
    assert_eq!(
        out_of_range.expect_err("root range").code(),
        Code::InvalidArgument
    );
    let _: WriteIdMappingResponse = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(false, usual.clone()),
        &ctx,
    )
    .await
    .expect("uid map");
    let _: WriteIdMappingResponse = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(true, usual.clone()),
        &ctx,
    )
    .await
    .expect("gid map");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{child}/uid_map"))
            .expect("uid_map")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "33333", "1", "1", "100000", "65534"]
    );
    let again: Result<WriteIdMappingResponse> = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(false, usual),
        &ctx,
    )
    .await;
    assert_eq!(
        again.expect_err("written once").code(),
        Code::FailedPrecondition
    );
    // Four calls were the burst; the fifth is over the limit.
    let limited: Result<WriteIdMappingResponse> = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(false, vec![]),
        &ctx,
    )
    .await;
    assert_eq!(
        limited.expect_err("rate limited").code(),
        Code::ResourceExhausted
    );
    d.shutdown(Duration::from_secs(1)).await;
}

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
        err.to_string().contains("not supported by this kernel"),
        "{err}"
    );
    d.shutdown(Duration::from_secs(1)).await;
}

/// The NFS path with another file system standing in for the NFS mount step (this kernel has no
/// NFS client): built in the container's network namespace, nosuid and nodev forced, moved onto
/// the target in its mount namespace, unmounted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_mounts_are_made_in_the_workspace_and_moved_in_with_nosuid_nodev() {
    use super::mounts::{network_fs, Place};
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
        .attach(tree, target.to_string_lossy().into_owned())
        .await
        .expect("attach");
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
    let err = network_fs(net, "nfs4-not-here", "x:/y".into(), vec![])
        .await
        .expect_err("no such fs");
    assert!(
        err.to_string().contains("not supported by this kernel"),
        "{err}"
    );
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

/// v1 cgroups of the test's own (this machine keeps cpu, cpuacct and memory on v1), removed on
/// drop once their processes are gone.
struct TestCgroups {
    folders: Vec<std::path::PathBuf>,
}

impl TestCgroups {
    fn create(name: &str) -> TestCgroups {
        let mounts = super::info::CgroupMounts::from_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        );
        let folders = ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|c| mounts.v1.get(*c).expect("a v1 hierarchy").join(name))
            .collect::<Vec<_>>();
        for f in &folders {
            std::fs::create_dir_all(f).expect("cgroup");
        }
        TestCgroups { folders }
    }

    fn set(&self, controller_folder: usize, file: &str, value: &str) {
        std::fs::write(self.folders[controller_folder].join(file), value).expect("cgroup setting");
    }

    fn enter(&self, pid: i32) {
        for f in &self.folders {
            std::fs::write(f.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for f in &self.folders {
            for _ in 0..100 {
                if std::fs::remove_dir(f).is_ok() || !f.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_info_matches_the_cgroup_files_under_load() {
    use wsd_proto::iws::{WorkspaceInfoRequest, WorkspaceInfoResponse};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let cgroups = TestCgroups::create(&format!("wsd-test-info-{}", std::process::id()));
    cgroups.set(0, "cpu.cfs_period_us", "100000");
    cgroups.set(0, "cpu.cfs_quota_us", "150000");
    cgroups.set(2, "memory.limit_in_bytes", &(256u64 << 20).to_string());
    let container = TestContainer::start();
    cgroups.enter(container.pid);
    workspace(&d, "ws-i").await;
    attach(&d, "ws-i", container.pid).await;
    // Processes join the cgroups of their parent: the shell joins the container's first.
    let join = cgroups
        .folders
        .iter()
        .map(|f| format!("echo $$ > {}/cgroup.procs", f.display()))
        .collect::<Vec<_>>()
        .join("; ");
    let burner = container.spawn_inside_after(&join, &["sh", "-c", "'while :; do :; done'"]);
    let holder = container.spawn_inside_after(
        &join,
        &[
            "python3",
            "-c",
            "'import time; b = bytearray(96 << 20); time.sleep(600)'",
        ],
    );
    assert!(burner > 0 && holder > 0);
    // The sampler reads once a second; two readings make a rate.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let info: WorkspaceInfoResponse = call(
        &d,
        "iws.WorkspaceInfoService/WorkspaceInfo",
        WorkspaceInfoRequest {},
        &from("ws-i", container.pid),
    )
    .await
    .expect("workspace info");
    let resources = info.resources.expect("resources");
    let (cpu, memory) = (
        resources.cpu.expect("cpu"),
        resources.memory.expect("memory"),
    );
    assert_eq!(cpu.limit, 1500, "1.5 CPUs, fraction kept");
    assert_eq!(memory.limit, 256 << 20);
    assert!(
        (600..=1600).contains(&cpu.used),
        "one busy loop uses about one CPU: {cpu:?}"
    );
    let memory_dir = &cgroups.folders[2];
    let usage: i64 = std::fs::read_to_string(memory_dir.join("memory.usage_in_bytes"))
        .expect("usage")
        .trim()
        .parse()
        .expect("number");
    let stat = std::fs::read_to_string(memory_dir.join("memory.stat")).expect("stat");
    let inactive: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let expected = usage - inactive;
    assert!(
        memory.used >= 96 << 20,
        "the 96 MiB held are counted: {memory:?}"
    );
    assert!(
        (memory.used - expected).abs() < 16 << 20,
        "used {} vs the files' {expected}",
        memory.used
    );

    // The in-workspace service answers the same.
    let again: WorkspaceInfoResponse = call(
        &d,
        "iws.InWorkspaceService/WorkspaceInfo",
        WorkspaceInfoRequest {},
        &from("ws-i", container.pid),
    )
    .await
    .expect("workspace info");
    assert_eq!(
        again.resources.and_then(|r| r.cpu).map(|c| c.limit),
        Some(1500)
    );
    drop(container);
    d.shutdown(Duration::from_secs(1)).await;
    drop(cgroups);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_cgroups_report_the_cpus_and_memory_of_the_node() {
    use wsd_proto::iws::{WorkspaceInfoRequest, WorkspaceInfoResponse};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let cgroups = TestCgroups::create(&format!("wsd-test-unlimited-{}", std::process::id()));
    let container = TestContainer::start();
    cgroups.enter(container.pid);
    workspace(&d, "ws-j").await;
    attach(&d, "ws-j", container.pid).await;
    let info: WorkspaceInfoResponse = call(
        &d,
        "iws.WorkspaceInfoService/WorkspaceInfo",
        WorkspaceInfoRequest {},
        &from("ws-j", container.pid),
    )
    .await
    .expect("workspace info");
    let resources = info.resources.expect("resources");
    let cpus = std::thread::available_parallelism().expect("cpus").get() as i64;
    assert_eq!(resources.cpu.expect("cpu").limit, cpus * 1000);
    assert_eq!(
        resources.memory.expect("memory").limit,
        super::info::node_memory()
    );
    drop(container);
    d.shutdown(Duration::from_secs(1)).await;
    drop(cgroups);
}
