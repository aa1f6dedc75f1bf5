//! Helpers of core's own tests: a daemon in a temporary folder, calls through the dispatch as
//! every surface makes them, and a process in a PID namespace of its own standing in for a
//! workspace container.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message;

use crate::config::Config;
use crate::{CallContext, Daemon, Result};

pub fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        working_area: dir.join("area"),
        ..Config::default()
    };
    c.storage.local_path = dir.join("storage");
    c
}

/// Calls `/<method>` (e.g. `wsdaemon.WorkspaceContentService/InitWorkspace`) through the dispatch.
pub async fn call<R: Message + Default>(
    d: &Daemon,
    method: &str,
    req: impl Message,
    ctx: &CallContext,
) -> Result<R> {
    let out = d
        .call(
            &format!("/{method}"),
            Bytes::from(req.encode_to_vec()),
            ctx.clone(),
        )
        .await?;
    Ok(R::decode(out.as_slice()).expect("decode the response"))
}

/// A stand-in workspace container (needs root): `sleep` as PID 1 of new PID, mount and network
/// namespaces with private mount propagation, sharing the host's root folder. Killed when
/// dropped; its mounts go with its mount namespace.
pub struct TestContainer {
    unshare: Child,
    pub pid: i32,
    /// The empty host folder a rooted container's tmpfs root was mounted on (in its namespace).
    root_dir: Option<tempfile::TempDir>,
}

/// A rooted container's first process: a tmpfs root of its own with `/usr` and `/etc` bound in, a
/// `/dev` of its own with a few host devices bound in, its own proc, then `sleep` as init.
const ROOTED_INIT: &str = r#"
set -e
R=$1
mount -t tmpfs -o size=16m,mode=755 ctrroot "$R"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp" "$R/sys" "$R/oldroot"
for l in bin sbin lib lib64; do if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi; done
mount --rbind /usr "$R/usr"; mount --rbind /etc "$R/etc"
mount -t tmpfs -o size=1m,mode=755 ctrdev "$R/dev"
for d in null zero full random urandom; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
cd "$R"
pivot_root . oldroot
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
touch /.ready
exec sleep 600
"#;

/// `unshare` making a container's PID, mount and network namespaces (private propagation) around
/// its first process, given by `args`; the container ends with it.
fn unshare(args: &[&str]) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--fork",
        "--pid",
        "--mount",
        "--net",
        "--propagation",
        "private",
        "--kill-child",
    ])
    .args(args)
    .stdin(Stdio::null());
    cmd
}

impl TestContainer {
    pub fn start() -> TestContainer {
        let unshare = unshare(&["--mount-proc", "sleep", "600"])
            .spawn()
            .expect("run unshare (util-linux)");
        let pid = child_of(unshare.id());
        TestContainer {
            unshare,
            pid,
            root_dir: None,
        }
    }

    /// A container with a root file system of its own (a tmpfs, pivot_root) and its own `/dev`,
    /// like a real workspace container: for operations that change files in the container.
    pub fn start_rooted() -> TestContainer {
        let root_dir = tempfile::tempdir().expect("root folder");
        let unshare = unshare(&["sh", "-c", ROOTED_INIT, "sh"])
            .arg(root_dir.path())
            .spawn()
            .expect("run unshare (util-linux)");
        let pid = child_of(unshare.id());
        let container = TestContainer {
            unshare,
            pid,
            root_dir: Some(root_dir),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !container.path("/.ready").exists() {
            assert!(Instant::now() < deadline, "the container root was not made");
            std::thread::sleep(Duration::from_millis(10));
        }
        container
    }

    /// The PID the container knows the host process `host` as.
    pub fn pid_inside(&self, host: i32) -> i32 {
        let ns = std::fs::File::open(format!("/proc/{}/ns/pid", self.pid)).expect("pid ns");
        crate::sys::namespaces::pid_in_namespace(std::os::fd::AsFd::as_fd(&ns), host)
            .expect("the process's PID in the container")
    }

    /// `inside` (absolute, as the container's init sees it) through the init's root.
    pub fn path(&self, inside: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/root", self.pid))
            .join(inside.trim_start_matches('/'))
    }

    /// Starts `args` inside the container as a descendant of its init (the way a workspace's
    /// processes are), and returns its PID as the daemon sees it.
    pub fn spawn_inside(&self, args: &[&str]) -> i32 {
        self.spawn_inside_after("true", args)
    }

    /// As [`TestContainer::spawn_inside`], after the shell command `first` (e.g. joining a
    /// cgroup, which a process inherits from its parent, not from the container).
    pub fn spawn_inside_after(&self, first: &str, args: &[&str]) -> i32 {
        // nsenter's child is not below the container's init; a double fork reparents it there.
        let script = format!(
            "{first}; {} >/dev/null 2>&1 </dev/null & echo $!",
            args.join(" ")
        );
        let out = Command::new("nsenter")
            .args(["-t", &self.pid.to_string(), "-a", "sh", "-c", &script])
            .output()
            .expect("nsenter");
        let inner: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid of the started process");
        let ns = std::fs::File::open(format!("/proc/{}/ns/pid", self.pid)).expect("pid ns");
        crate::sys::namespaces::pid_from_namespace(std::os::fd::AsFd::as_fd(&ns), inner)
            .expect("host pid")
    }
}

fn child_of(parent: u32) -> i32 {
    let children = format!("/proc/{parent}/task/{parent}/children");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = std::fs::read_to_string(&children)
            .ok()
            .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()));
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "unshare started no child");
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl TestContainer {
    /// Ends the container's init (and so its namespaces) and waits for it.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        // The tmpfs root lived in the container's mount namespace only: the folder is empty.
        self.root_dir.take();
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An InitWorkspace request for an empty workspace `id` (owner `o`, meta id `m-<id>`).
pub fn empty_workspace(id: &str) -> wsd_proto::wsdaemon::InitWorkspaceRequest {
    use wsd_proto::contentservice::{
        workspace_initializer::Spec, EmptyInitializer, WorkspaceInitializer,
    };
    wsd_proto::wsdaemon::InitWorkspaceRequest {
        id: id.into(),
        metadata: Some(wsd_proto::wsdaemon::WorkspaceMetadata {
            owner: "o".into(),
            meta_id: format!("m-{id}"),
        }),
        initializer: Some(WorkspaceInitializer {
            spec: Some(Spec::Empty(EmptyInitializer {})),
        }),
        ..Default::default()
    }
}

/// Initializes the empty workspace `id`.
pub async fn init_empty(d: &Daemon, id: &str) {
    let _: wsd_proto::wsdaemon::InitWorkspaceResponse = call(
        d,
        "wsdaemon.WorkspaceContentService/InitWorkspace",
        empty_workspace(id),
        &CallContext::default(),
    )
    .await
    .expect("init");
}

/// AttachContainer of workspace `id` to the process `pid`.
pub async fn attach(
    d: &Daemon,
    id: &str,
    pid: i64,
) -> Result<wsd_proto::wsdaemon::AttachContainerResponse> {
    let req = wsd_proto::wsdaemon::AttachContainerRequest {
        id: id.into(),
        pid,
        cgroup_path: String::new(),
    };
    call(
        d,
        "wsdaemon.WorkspaceRuntime/AttachContainer",
        req,
        &CallContext::default(),
    )
    .await
}
