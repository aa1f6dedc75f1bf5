//! Containerd discovery against a real containerd (Debian's `containerd` and `runc`, as root): the
//! daemon finds workspace containers by Gitpod's labels, attaches them so that their socket
//! serves calls from inside, detaches them when they go, follows containerd through a crash and
//! restart, and attaches a container that appeared before its workspace once the workspace exists.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use wsd_proto::contentservice::workspace_initializer::Spec as InitSpec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_tests::container::{client_binary, first_line};
use wsd_tests::containerd::{container_labels, sandbox_labels, Spec, TestContainerd};
use wsd_tests::{init_ready, wait_until, DaemonProcess};

const WITHIN: Duration = Duration::from_secs(30);

struct Node {
    // Dropped in this order: the daemon first, then containerd (which deletes its containers).
    daemon: Option<DaemonProcess>,
    containerd: TestContainerd,
    _dir: tempfile::TempDir,
    daemon_dir: PathBuf,
}

impl Node {
    /// A containerd and the folders of a daemon; the daemon is started by `start_daemon`.
    fn new() -> Node {
        // Short: the containerd socket path must fit 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let containerd = TestContainerd::start(&dir.path().join("c"));
        let daemon_dir = dir.path().join("d");
        std::fs::create_dir_all(daemon_dir.join("workspaces")).expect("working area");
        Node {
            daemon: None,
            containerd,
            _dir: dir,
            daemon_dir,
        }
    }

    async fn start_daemon(&mut self) {
        let config = format!(
            "[runtime.containerd]\nsocket = {:?}\nreconnect_max_backoff_ms = 300\n\
             [health]\ninterval_secs = 1\ncheck_timeout_ms = 1000\nmin_free_bytes = 1\n",
            self.containerd.socket().display().to_string()
        );
        self.daemon = Some(DaemonProcess::start(&self.daemon_dir, &config).await);
    }

    fn daemon(&self) -> &DaemonProcess {
        self.daemon.as_ref().expect("daemon started")
    }

    fn working_area(&self) -> PathBuf {
        self.daemon_dir.join("workspaces")
    }

    /// A workspace pod: its sandbox, then its `workspace` container (and any `sidecars`), with
    /// the working area and the client bound in. Returns the workspace container's PID.
    /// What a workspace container has bound in: the working area and the client.
    fn binds(&self) -> Vec<(PathBuf, &'static str, bool)> {
        vec![
            (self.working_area(), "/wa", true),
            (client_binary(), "/.bin/iws-client", false),
        ]
    }

    fn run_pod(&self, workspace: &str, pod: &str, sidecars: &[&str]) -> i32 {
        let owned = self.binds();
        let binds: Vec<(&Path, &str, bool)> = owned
            .iter()
            .map(|(h, i, w)| (h.as_path(), *i, *w))
            .collect();
        self.containerd.run(&Spec {
            id: &format!("{pod}-sandbox"),
            labels: sandbox_labels(workspace, pod),
            binds: vec![],
        });
        for name in sidecars {
            self.containerd.run(&Spec {
                id: &format!("{pod}-{name}"),
                labels: container_labels(name, pod),
                binds: binds.clone(),
            });
        }
        self.containerd.run(&Spec {
            id: &format!("{pod}-ws"),
            labels: container_labels("workspace", pod),
            binds,
        })
    }

    /// WorkspaceInfo from inside container `container` over workspace `id`'s socket: the first
    /// line of the client's answer (`OK ...` or `<code>: <message>`).
    fn call_inside(&self, container: &str, id: &str) -> String {
        static EXECS: AtomicU32 = AtomicU32::new(0);
        let exec_id = format!("call{}", EXECS.fetch_add(1, Ordering::Relaxed));
        let socket = format!("/wa/{id}-daemon/daemon.sock");
        first_line(&self.containerd.exec(
            container,
            &exec_id,
            &["/.bin/iws-client", &socket, "info"],
        ))
    }

    /// The same call from the host (outside every container): refused as PERMISSION_DENIED while
    /// a container is attached, FAILED_PRECONDITION while none is.
    fn call_from_host(&self, id: &str) -> String {
        let socket = self.working_area().join(format!("{id}-daemon/daemon.sock"));
        let out = std::process::Command::new(client_binary())
            .arg(&socket)
            .arg("info")
            .output()
            .expect("iws-client");
        first_line(&out)
    }

    /// The PID recorded in workspace `id`'s state file as its container, if any.
    fn recorded_pid(&self, id: &str) -> Option<i64> {
        let state = self.working_area().join(format!("{id}.workspace.json"));
        let text = std::fs::read_to_string(state).ok()?;
        let record: serde_json::Value = serde_json::from_str(&text).ok()?;
        record.get("container")?.get("pid")?.as_i64()
    }

    async fn init(&self, id: &str) {
        let mut client = self.daemon().client().await;
        init_ready(
            &mut client,
            id,
            "meta",
            InitSpec::Empty(EmptyInitializer {}),
        )
        .await;
    }

    /// Waits until the daemon has logged `needle` `times` times.
    async fn wait_log(&self, needle: &str, times: usize) {
        let deadline = std::time::Instant::now() + WITHIN;
        while self.log_lines(needle) < times {
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not log {needle:?} {times} times: {}",
                self.daemon().logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log_lines(&self, needle: &str) -> usize {
        self.daemon()
            .logs()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

fn is_ok(answer: &str) -> bool {
    answer.starts_with("OK ")
}

async fn wait_attached(node: &Node, container: &str, id: &str, pid: i32) {
    wait_until(
        &format!("{id} answers a call from inside {container}"),
        WITHIN,
        || is_ok(&node.call_inside(container, id)),
    )
    .await;
    assert_eq!(node.recorded_pid(id), Some(i64::from(pid)));
}

async fn wait_detached(node: &Node, id: &str) {
    wait_until(&format!("{id} is detached"), WITHIN, || {
        node.call_from_host(id).starts_with("FailedPrecondition") && node.recorded_pid(id).is_none()
    })
    .await;
}

fn assert_no_files_of(dir: &Path) {
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[tokio::test]
async fn a_workspace_container_started_after_init_is_attached_replaced_and_detached() {
    let mut node = Node::new();
    node.start_daemon().await;
    node.init("ws-a").await;
    assert!(
        node.call_from_host("ws-a")
            .starts_with("FailedPrecondition"),
        "no container yet"
    );

    // A sidecar of the same pod is not the workspace's container.
    let pid = node.run_pod("ws-a", "pod-a", &["proxy"]);
    wait_attached(&node, "pod-a-ws", "ws-a", pid).await;
    // Another container of the pod (a PID namespace of its own) is no caller of the workspace.
    let answer = node.call_inside("pod-a-proxy", "ws-a");
    assert!(answer.starts_with("PermissionDenied"), "{answer}");
    assert!(
        node.call_from_host("ws-a").starts_with("PermissionDenied"),
        "the host is no caller of the workspace"
    );

    // Its task stops: detached. The kubelet starts a new container in the pod: attached.
    let killed = node
        .containerd
        .ctr(&["task", "kill", "--signal", "SIGKILL", "pod-a-ws"]);
    assert!(killed.status.success(), "{killed:?}");
    wait_detached(&node, "ws-a").await;
    let owned = node.binds();
    let restarted = node.containerd.run(&Spec {
        id: "pod-a-ws2",
        labels: container_labels("workspace", "pod-a"),
        binds: owned
            .iter()
            .map(|(h, i, w)| (h.as_path(), *i, *w))
            .collect(),
    });
    wait_attached(&node, "pod-a-ws2", "ws-a", restarted).await;

    node.containerd.delete("pod-a-ws2");
    wait_detached(&node, "ws-a").await;
    assert_eq!(
        node.log_lines("workspace container found through containerd"),
        2
    );
}

#[tokio::test]
async fn containerd_restarted_while_the_daemon_runs_is_followed_again() {
    let mut node = Node::new();
    node.start_daemon().await;
    node.init("ws-keep").await;
    node.init("ws-gone").await;
    let keep = node.run_pod("ws-keep", "pod-keep", &[]);
    let gone = node.run_pod("ws-gone", "pod-gone", &[]);
    wait_attached(&node, "pod-keep-ws", "ws-keep", keep).await;
    wait_attached(&node, "pod-gone-ws", "ws-gone", gone).await;

    // containerd crashes; while it is away one workspace's container dies.
    node.containerd.kill();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gone),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container's init");
    node.wait_log("lost containerd", 1).await;
    node.containerd.start_again();

    // Reconnected and listed again: the live one stays attached (not attached twice), the dead
    // one is detached, and events are followed again.
    node.wait_log("following containerd", 2).await;
    wait_detached(&node, "ws-gone").await;
    let answer = node.call_inside("pod-keep-ws", "ws-keep");
    assert!(is_ok(&answer), "{answer}");
    assert_eq!(node.recorded_pid("ws-keep"), Some(i64::from(keep)));
    let attached_keep = node
        .daemon()
        .logs()
        .lines()
        .filter(|l| l.contains("found through containerd") && l.contains("ws-keep"))
        .count();
    assert_eq!(attached_keep, 1, "attached once: {}", node.daemon().logs());

    node.init("ws-new").await;
    let new = node.run_pod("ws-new", "pod-new", &[]);
    wait_attached(&node, "pod-new-ws", "ws-new", new).await;
}

#[tokio::test]
async fn a_container_that_appears_before_its_workspace_is_attached_once_the_workspace_exists() {
    let mut node = Node::new();
    let pid = node.run_pod("ws-early", "pod-early", &[]);
    node.start_daemon().await;
    node.wait_log("following containerd", 1).await;
    assert_no_files_of(&node.working_area().join("ws-early-daemon"));

    node.init("ws-early").await;
    wait_attached(&node, "pod-early-ws", "ws-early", pid).await;

    // Disposed: detached; the container (still running) is attached again to a new workspace
    // of the same id.
    let mut client = node.daemon().client().await;
    client
        .dispose_workspace(wsd_proto::wsdaemon::DisposeWorkspaceRequest {
            id: "ws-early".into(),
            ..Default::default()
        })
        .await
        .expect("dispose");
    assert_eq!(node.recorded_pid("ws-early"), None);
    node.init("ws-early").await;
    wait_attached(&node, "pod-early-ws", "ws-early", pid).await;
}

/// `/ready`'s status and body.
async fn ready(node: &Node) -> (u16, String) {
    let addr = format!("127.0.0.1:{}", node.daemon().metrics_port);
    wsd_tests::http::request(&addr, "GET", "/ready").await
}

async fn wait_ready_status(node: &Node, status: u16, needle: &str) {
    let deadline = std::time::Instant::now() + WITHIN;
    loop {
        let (got, body) = ready(node).await;
        if got == status && body.contains(needle) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready did not answer {status} with {needle:?}: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_follows_containerd_away_and_back() {
    let mut node = Node::new();
    node.start_daemon().await;
    wait_ready_status(&node, 200, "containerd: ok").await;

    node.containerd.kill();
    wait_ready_status(&node, 503, "containerd: FAILED").await;
    let (live, _) = wsd_tests::http::request(
        &format!("127.0.0.1:{}", node.daemon().metrics_port),
        "GET",
        "/live",
    )
    .await;
    assert_eq!(live, 200, "liveness does not depend on containerd");

    node.containerd.start_again();
    wait_ready_status(&node, 200, "containerd: ok").await;
}

/// A rolling update: the daemon stops, containers come and go meanwhile, the new daemon picks up
/// the persisted attachments and brings them in line with containerd.
#[tokio::test]
async fn a_restarted_daemon_keeps_what_still_runs_and_catches_up_with_the_rest() {
    let mut node = Node::new();
    node.start_daemon().await;
    for id in ["ws-stay", "ws-leave", "ws-arrive"] {
        node.init(id).await;
    }
    let stay = node.run_pod("ws-stay", "pod-stay", &[]);
    let leave = node.run_pod("ws-leave", "pod-leave", &[]);
    wait_attached(&node, "pod-stay-ws", "ws-stay", stay).await;
    wait_attached(&node, "pod-leave-ws", "ws-leave", leave).await;

    let daemon = node.daemon.as_mut().expect("daemon");
    daemon.stop_with(nix::sys::signal::Signal::SIGTERM).await;
    node.containerd.delete("pod-leave-ws");
    let arrive = node.run_pod("ws-arrive", "pod-arrive", &[]);
    node.daemon.as_mut().expect("daemon").restart().await;

    wait_attached(&node, "pod-arrive-ws", "ws-arrive", arrive).await;
    wait_detached(&node, "ws-leave").await;
    let answer = node.call_inside("pod-stay-ws", "ws-stay");
    assert!(is_ok(&answer), "{answer}");
    let found_stay = node
        .daemon()
        .logs()
        .lines()
        .filter(|l| l.contains("found through containerd") && l.contains("ws-stay"))
        .count();
    assert_eq!(found_stay, 1, "attached again from its record, not anew");
}
