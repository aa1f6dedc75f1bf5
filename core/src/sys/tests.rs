//! The wrappers against the real kernel, on the test process itself (most need root, as the
//! daemon does).

use std::os::fd::AsFd;

use nix::sched::CloneFlags;

use super::mount_api::{self, FsContext};
use super::namespaces::{self, NamespaceId};
use super::process::Pidfd;

fn own_pid_namespace() -> std::fs::File {
    std::fs::File::open("/proc/self/ns/pid").expect("own pid namespace")
}

#[test]
fn a_pidfd_tells_its_process_and_pid_namespace() {
    let me = Pidfd::open(std::process::id() as i32).expect("pidfd of self");
    assert!(me.is_alive());
    let ns = me.pid_namespace().expect("pid namespace of the pidfd");
    let own = own_pid_namespace();
    assert_eq!(
        NamespaceId::of(ns.as_fd()).expect("id"),
        NamespaceId::of(own.as_fd()).expect("id")
    );
    let id = NamespaceId::of(own.as_fd()).expect("id");
    assert!(namespaces::is_within(ns, id).expect("walk"));
    // A child PID namespace is within ours; ours is not within the child's.
    let child = crate::testing::TestContainer::start();
    let child_ns = Pidfd::open(child.pid)
        .expect("child")
        .pid_namespace()
        .expect("child ns");
    let child_id = NamespaceId::of(child_ns.as_fd()).expect("child id");
    assert_ne!(child_id, id);
    assert!(namespaces::is_within(child_ns, id).expect("walk up"));
    let ours = Pidfd::open(std::process::id() as i32)
        .expect("self")
        .pid_namespace()
        .expect("ns");
    assert!(!namespaces::is_within(ours, child_id).expect("walk up"));
    assert_eq!(
        Pidfd::open(i32::MAX)
            .expect_err("no such process")
            .raw_os_error(),
        Some(libc::ESRCH)
    );
}

#[test]
fn pids_translate_through_a_pid_namespace() {
    let own = own_pid_namespace();
    let pid = std::process::id() as i32;
    assert_eq!(
        namespaces::pid_from_namespace(own.as_fd(), pid).expect("translate"),
        pid
    );
    assert_eq!(
        namespaces::pid_in_namespace(own.as_fd(), pid).expect("translate back"),
        pid
    );
    let unknown = namespaces::pid_from_namespace(own.as_fd(), i32::MAX).expect_err("unknown");
    assert_eq!(unknown.raw_os_error(), Some(libc::ESRCH));
    assert!(namespaces::parent(own.as_fd())
        .expect("parent of the initial namespace")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_namespaces_are_entered_on_a_thread_of_their_own() {
    let mnt = std::fs::File::open("/proc/self/ns/mnt").expect("own mount namespace");
    let inside = namespaces::run_inside(vec![(mnt.into(), CloneFlags::CLONE_NEWNS)], || {
        Ok::<_, std::io::Error>(std::thread::current().name().map(str::to_string))
    })
    .await
    .expect("setns from a multi-threaded process");
    assert_eq!(inside.as_deref(), Some("wsd-namespace"));
    let failed = namespaces::run_inside(Vec::new(), || -> std::io::Result<()> {
        Err(std::io::Error::from_raw_os_error(libc::EPERM))
    })
    .await;
    assert_eq!(
        failed.expect_err("passed on").raw_os_error(),
        Some(libc::EPERM)
    );
}

#[test]
fn detached_mounts_are_built_configured_and_refused_with_reasons() {
    assert_eq!(
        FsContext::open("no-such-filesystem")
            .err()
            .and_then(|e| e.raw_os_error()),
        Some(libc::ENODEV)
    );
    let tmpfs = FsContext::open("tmpfs").expect("tmpfs");
    tmpfs.set_string("size", "1m").expect("size");
    let bad = tmpfs.set_string("mode", "not-octal");
    assert!(bad.is_err());
    assert!(
        !tmpfs.messages().is_empty(),
        "the kernel's reason is readable"
    );
    let tmpfs = FsContext::open("tmpfs").expect("tmpfs");
    let mount = tmpfs
        .mount(libc::MOUNT_ATTR_NOSUID)
        .expect("detached tmpfs");
    mount_api::set_attributes(mount.as_fd(), libc::MOUNT_ATTR_RDONLY, None).expect("read-only");
    let clone = mount_api::open_tree(
        mount.as_fd(),
        "",
        libc::OPEN_TREE_CLONE | libc::AT_EMPTY_PATH as u32,
    )
    .expect("clone of a detached mount");
    drop((mount, clone));
}
