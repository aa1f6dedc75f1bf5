//! A real workspace container for the in-workspace service tests, without docker: a process tree in
//! new PID, mount and network namespaces (no user namespace, as a workspace container has), private
//! mount propagation, its own root (a tmpfs, pivot_root) with `/usr` and `/etc` bound in, a `/dev`
//! of its own with the host's basic devices,
//! its own `/proc`, chosen host files or folders bound at fixed paths, and an init that reaps its
//! children. Everything goes away on drop, also when a test fails: the init is killed (which ends
//! the whole PID namespace, and with it the mount namespace and every mount in it) and the folder
//! removed; nothing is ever mounted in the host's namespace.
//!
//! Requires root (CAP_SYS_ADMIN) and util-linux `unshare` / `nsenter`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::workspace_runtime_client::WorkspaceRuntimeClient;
use wsd_proto::wsdaemon::AttachContainerRequest;

use crate::DaemonProcess;

/// Where the workspace's socket folder (`<area>/<id>-daemon`) appears inside the container.
pub const SOCKET_DIR_INSIDE: &str = "/.workspace";
/// The workspace socket as the container sees it.
pub const SOCKET_INSIDE: &str = "/.workspace/daemon.sock";
/// Where the client binary appears inside the container.
pub const CLIENT_INSIDE: &str = "/.bin/iws-client";

/// Runs as the container's first process (after `unshare --fork`): builds the root, pivots into
/// it, mounts its own proc, then reaps children until killed. Arguments: the root folder, then
/// pairs of (host path, path inside).
const INIT_SCRIPT: &str = r#"
set -e
R=$1; shift
mount -t tmpfs -o size=64m,mode=755 ctrroot "$R"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/dev" "$R/tmp" "$R/sys" "$R/oldroot"
chmod 1777 "$R/tmp"
for l in bin sbin lib lib64; do if [ -L "/$l" ]; then ln -s "$(readlink "/$l")" "$R/$l"; fi; done
mount --rbind /usr "$R/usr"; mount --rbind /etc "$R/etc"
# A /dev of its own (PrepareForUserNS creates device files in it), with the host's basic devices.
mount -t tmpfs -o size=1m,mode=755 ctrdev "$R/dev"
for d in null zero full random urandom tty; do touch "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
while [ $# -gt 1 ]; do
  if [ -d "$1" ]; then mkdir -p "$R$2"; else mkdir -p "$(dirname "$R$2")"; touch "$R$2"; fi
  mount --bind "$1" "$R$2"
  shift 2
done
cd "$R"
pivot_root . oldroot
mount -t proc proc /proc
umount -l /oldroot
rmdir /oldroot
touch /.ready
trap "exit 0" TERM
while :; do sleep 1 & wait $! || true; done
"#;

pub struct Container {
    root: PathBuf,
    log: PathBuf,
    unshare: Option<Child>,
    init: i32,
}

impl Container {
    /// Starts a container whose root is built in `root` (created; must not exist yet), with each
    /// `(host path, path inside)` of `binds` bound in. Panics when it does not come up.
    pub fn start(root: &Path, binds: &[(&Path, &str)]) -> Container {
        std::fs::create_dir_all(root).expect("container root folder");
        let log = root.with_extension("log");
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--fork",
            "--pid",
            "--mount",
            "--net",
            "--propagation",
            "private",
            // The container's init dies with unshare, whatever ends it.
            "--kill-child",
            "sh",
            "-c",
            INIT_SCRIPT,
            "init",
        ])
        .arg(root);
        for (host, inside) in binds {
            cmd.arg(host).arg(inside);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(crate::log_file(&log))
            // Own process group, so a ^C reaches only the test; unshare (and so the container)
            // still ends with the test process, which a ^C or a CI timeout ends without a drop.
            .process_group(0);
        crate::dies_with_the_test(&mut cmd);
        let child = cmd.spawn().expect("start unshare");
        let mut ctr = Container {
            root: root.to_path_buf(),
            log,
            init: 0,
            unshare: Some(child),
        };
        ctr.wait_ready();
        ctr
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let up = self.unshare.as_ref().map(|c| c.id()).expect("started");
        loop {
            if self.init == 0 {
                let children = std::fs::read_to_string(format!("/proc/{up}/task/{up}/children"))
                    .unwrap_or_default();
                self.init = children
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
            }
            if self.init != 0 && Path::new(&format!("/proc/{}/root/.ready", self.init)).exists() {
                return;
            }
            if let Some(Ok(Some(status))) = self.unshare.as_mut().map(Child::try_wait) {
                panic!(
                    "the container exited with {status} while starting: {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the container did not come up within 20 s: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The host PID of the container's init (PID 1 inside).
    pub fn init_pid(&self) -> i32 {
        self.init
    }

    /// `nsenter` into every namespace, root and working folder of the container. Processes
    /// started this way are in the container's PID namespace but are not descendants of its init
    /// (their parent is the host-side `nsenter`).
    pub fn nsenter(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(self.init.to_string()).args(["-a", "--"]);
        cmd
    }

    /// Runs `args` inside (see `nsenter`) and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.nsenter()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run nsenter")
    }

    /// Runs a shell script inside; panics unless it succeeds; returns its stdout.
    pub fn sh(&self, script: &str) -> String {
        let out = self.run(&["sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` inside the container failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `command` (a shell command line) inside as a real descendant of the container's init
    /// (a double fork: the shell that started it exits and it is reparented to the init) and
    /// returns its PID inside the container.
    pub fn spawn_descendant(&self, command: &str) -> i32 {
        let out = self.sh(&format!("{command} </dev/null >/dev/null 2>&1 & echo $!"));
        let pid = out.trim().parse().expect("PID of the started process");
        // Wait until the starting shell is gone and the process hangs below the init.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.parent_inside(pid) != Some(1) {
            assert!(
                Instant::now() < deadline,
                "process {pid} was not reparented to the container's init"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        pid
    }

    /// The parent PID (as seen inside) of the process the container knows as `pid`.
    pub fn parent_inside(&self, pid: i32) -> Option<i32> {
        let status =
            std::fs::read_to_string(format!("/proc/{}/root/proc/{pid}/status", self.init)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Whether the container has a process `pid` (inside numbering).
    pub fn has_pid(&self, pid: i32) -> bool {
        Path::new(&format!("/proc/{}/root/proc/{pid}", self.init)).exists()
    }

    /// The host PID of the process the container knows as `pid`.
    pub fn host_pid(&self, pid: i32) -> Option<i32> {
        // The host process whose innermost NSpid is `pid`, in the container's PID namespace.
        let ns = std::fs::read_link(format!("/proc/{}/ns/pid", self.init)).ok()?;
        std::fs::read_dir("/proc")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .find(|host| {
                let status =
                    std::fs::read_to_string(format!("/proc/{host}/status")).unwrap_or_default();
                let last = status
                    .lines()
                    .find_map(|l| l.strip_prefix("NSpid:"))
                    .and_then(|v| v.split_whitespace().last())
                    .and_then(|v| v.parse::<i32>().ok());
                last == Some(pid)
                    && std::fs::read_link(format!("/proc/{host}/ns/pid")).ok() == Some(ns.clone())
            })
    }

    /// The container's mount table as its processes see it.
    pub fn mountinfo(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/mountinfo", self.init)).expect("mountinfo")
    }

    /// The mount points (as seen inside) of the container's mount table.
    pub fn mount_points(&self) -> Vec<String> {
        mount_points(&self.mountinfo())
    }

    /// Runs the iws client inside (via `nsenter`) against the workspace socket; returns its
    /// first line (`OK` or `<Code>: message`).
    pub fn client(&self, args: &[&str]) -> String {
        let mut all = vec![CLIENT_INSIDE, SOCKET_INSIDE];
        all.extend_from_slice(args);
        first_line(&self.run(&all))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.init > 0 {
            // SIGKILL of a PID namespace's init ends every process in it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.init),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if let Some(mut child) = self.unshare.take() {
            // `unshare` waits for the init and exits after it: let it reap the init (killed
            // first, it would leave the init to the host's PID 1, which may reap it late).
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir(&self.root);
        let _ = std::fs::remove_file(&self.log);
        let left = host_mounts_under(&self.root);
        if !left.is_empty() && !std::thread::panicking() {
            panic!("mounts left on the host under the container's root: {left:?}");
        }
    }
}

/// The mount points (field 5) of a mountinfo text, unescaped for spaces.
pub fn mount_points(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| p.replace("\\040", " "))
        .collect()
}

/// The host's mount points (this process's mount namespace) at or under `dir`.
pub fn host_mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points(&text)
        .into_iter()
        .filter(|p| Path::new(p).starts_with(dir))
        .collect()
}

/// The first line of a command's stdout, or its stderr when stdout is empty.
pub fn first_line(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().next() {
        Some(line) => line.to_string(),
        None => format!(
            "no output ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

/// The client binary: `$IWS_CLIENT`, or `iws-client` next to the running executable or one folder
/// up (integration tests live in `deps/`).
pub fn client_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("IWS_CLIENT") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("executable path");
    let here = exe.parent();
    for dir in [here, here.and_then(Path::parent)].into_iter().flatten() {
        let bin = dir.join("iws-client");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "iws-client is missing next to {}: build it (cargo build -p wsd-tests --bin iws-client) or set IWS_CLIENT",
        exe.display()
    );
}

/// A daemon with one workspace (Empty initializer) and a container with the workspace's socket
/// folder and the client bound in, attached or not yet.
pub struct IwsWorkspace {
    /// Declared first: dropped (killed) before the daemon and the folders.
    pub container: Container,
    pub daemon: DaemonProcess,
    pub id: String,
    pub dir: tempfile::TempDir,
}

impl IwsWorkspace {
    /// Starts it in a new folder under the system's temporary folder.
    pub async fn start(attach: bool) -> IwsWorkspace {
        IwsWorkspace::start_in(&std::env::temp_dir(), attach).await
    }

    /// Starts it in a new folder under `base` (the daemon's working area is in there).
    pub async fn start_in(base: &Path, attach: bool) -> IwsWorkspace {
        let dir = tempfile::tempdir_in(base).expect("tempdir");
        let daemon = DaemonProcess::start(&dir.path().join("node"), "").await;
        let id = "ws-iws".to_string();
        crate::init_ready(
            &mut daemon.client().await,
            &id,
            "meta-iws",
            Spec::Empty(EmptyInitializer {}),
        )
        .await;
        let container = start_bound(&dir.path().join("ctr"), &daemon, &id);
        let ws = IwsWorkspace {
            container,
            daemon,
            id,
            dir,
        };
        if attach {
            ws.attach().await.expect("AttachContainer");
        }
        ws
    }

    /// A second container with the same socket folder and client bound in.
    pub fn sibling(&self, name: &str) -> Container {
        start_bound(&self.dir.path().join(name), &self.daemon, &self.id)
    }

    /// The socket folder on the host.
    pub fn socket_dir(&self) -> PathBuf {
        socket_dir(&self.daemon, &self.id)
    }

    pub async fn runtime(&self) -> WorkspaceRuntimeClient<Channel> {
        WorkspaceRuntimeClient::connect(self.daemon.endpoint())
            .await
            .expect("connect")
    }

    pub async fn attach(&self) -> Result<(), tonic::Status> {
        self.runtime()
            .await
            .attach_container(AttachContainerRequest {
                id: self.id.clone(),
                pid: i64::from(self.container.init_pid()),
                cgroup_path: String::new(),
            })
            .await
            .map(|_| ())
    }

    /// How many file descriptors the daemon has open.
    pub fn daemon_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.daemon.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

pub fn socket_dir(daemon: &DaemonProcess, id: &str) -> PathBuf {
    daemon.working_area().join(format!("{id}-daemon"))
}

fn start_bound(root: &Path, daemon: &DaemonProcess, id: &str) -> Container {
    let sockets = socket_dir(daemon, id);
    assert!(
        sockets.join("daemon.sock").exists(),
        "the workspace socket {} is missing",
        sockets.display()
    );
    let client = client_binary();
    Container::start(
        root,
        &[
            (sockets.as_path(), SOCKET_DIR_INSIDE),
            (client.as_path(), CLIENT_INSIDE),
        ],
    )
}
