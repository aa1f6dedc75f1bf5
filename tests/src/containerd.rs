//! A real containerd for the discovery tests (Debian's `containerd` and `runc`, as root): started
//! with its own root, state folder, config and socket, no CRI plugin and no images. Containers are
//! made with `ctr run --rootfs` from a local root folder (the host's `/usr` bound read-only) with
//! the labels a CRI would set. On drop every task and container is deleted, containerd stopped,
//! the cgroups runc made removed and the folders deleted.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Test containerds alive in this process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The containerd namespace the kubelet uses (the daemon's default).
pub const NAMESPACE: &str = "k8s.io";

pub struct TestContainerd {
    dir: PathBuf,
    process: Option<Child>,
    /// The cgroup parent of this instance's containers (`/<parent>/<id>`).
    cgroup_parent: String,
}

const CONFIG: &str = r#"version = 2
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
  "io.containerd.internal.v1.opt",
]
"#;

/// A container to run: its id, labels and host paths bound in (host path, path inside, writable).
pub struct Spec<'a> {
    pub id: &'a str,
    pub labels: Vec<(String, String)>,
    pub binds: Vec<(&'a Path, &'a str, bool)>,
}

/// The labels the CRI and Gitpod put on a workspace pod's sandbox.
pub fn sandbox_labels(workspace: &str, pod: &str) -> Vec<(String, String)> {
    [
        ("io.cri-containerd.kind", "sandbox"),
        ("workspaceID", workspace),
        ("metaID", "meta"),
        ("owner", "owner"),
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.pod.namespace", "default"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The labels the CRI puts on container `name` of a pod.
pub fn container_labels(name: &str, pod: &str) -> Vec<(String, String)> {
    [
        ("io.cri-containerd.kind", "container"),
        ("io.kubernetes.container.name", name),
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.pod.namespace", "default"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl TestContainerd {
    /// Starts containerd with everything under `dir` (created); the socket is `dir/c.sock`, so
    /// keep `dir` short (unix socket paths hold 108 bytes).
    pub fn start(dir: &Path) -> TestContainerd {
        std::fs::create_dir_all(dir.join("rootfs")).expect("containerd folder");
        std::fs::write(dir.join("config.toml"), CONFIG).expect("containerd config");
        make_rootfs(&dir.join("rootfs"));
        let mut c = TestContainerd {
            dir: dir.to_path_buf(),
            process: None,
            cgroup_parent: format!(
                "wsdtest-ctd-{}-{}",
                std::process::id(),
                dir.file_name().and_then(|n| n.to_str()).unwrap_or("x")
            ),
        };
        LIVE.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = c.spawn() {
            panic!("{e}");
        }
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("c.sock")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = crate::log_file(&self.dir.join("containerd.log"));
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(self.dir.join("config.toml"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--state")
            .arg(self.dir.join("state"))
            .arg("--address")
            .arg(self.socket())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        // containerd dies with the test process, whatever ends it.
        crate::dies_with_the_test(&mut cmd);
        let process = cmd
            .spawn()
            .map_err(|e| format!("cannot start containerd (apt install containerd runc): {e}"))?;
        self.process = Some(process);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ctr(&["version"]).status.success() {
            if Instant::now() > deadline {
                return Err(format!("containerd did not start: {}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Kills containerd (SIGKILL, as a crash); its shims and containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts containerd again on the same root, state and socket.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "kill containerd first");
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr` against this containerd in the k8s.io namespace.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", NAMESPACE])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr (apt install containerd)")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates and starts a container running `sleep` from the shared root folder; returns its
    /// task's PID (host PID namespace).
    pub fn run(&self, spec: &Spec) -> i32 {
        let rootfs = self.dir.join("rootfs");
        let cgroup = format!("/{}/{}", self.cgroup_parent, spec.id);
        let mut args: Vec<String> = [
            "run",
            "-d",
            "--rootfs",
            "--null-io",
            "--env",
            "PATH=/usr/bin:/bin",
            "--mount",
            "type=bind,src=/usr,dst=/usr,options=rbind:ro",
            "--cgroup",
            &cgroup,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (host, inside, writable) in &spec.binds {
            let mode = if *writable { "rw" } else { "ro" };
            args.push("--mount".into());
            args.push(format!(
                "type=bind,src={},dst={inside},options=rbind:{mode}",
                host.display()
            ));
        }
        for (k, v) in &spec.labels {
            args.push("--label".into());
            args.push(format!("{k}={v}"));
        }
        args.push(rootfs.display().to_string());
        args.push(spec.id.into());
        args.extend(["sleep".into(), "3600".into()]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&refs);
        self.pid_of(spec.id).expect("a running task")
    }

    /// The PID of a container's running task.
    pub fn pid_of(&self, id: &str) -> Option<i32> {
        self.ok(&["task", "ls"]).lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields[..] {
                [task, pid, "RUNNING"] if task == id => pid.parse().ok(),
                _ => None,
            }
        })
    }

    /// Runs `args` in the container (a process of its namespaces, as `kubectl exec` would).
    pub fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Output {
        let mut all = vec!["task", "exec", "--exec-id", exec_id, id];
        all.extend_from_slice(args);
        self.ctr(&all)
    }

    /// Deletes a container and its task.
    pub fn delete(&self, id: &str) {
        let _ = self.ctr(&["task", "delete", "--force", id]);
        self.ok(&["container", "rm", id]);
    }

    fn delete_everything(&self) {
        let out = self.ctr(&["container", "ls", "--quiet"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.ctr(&["task", "delete", "--force", id]);
            let _ = self.ctr(&["container", "rm", id]);
        }
    }
}

/// A root folder for `ctr run --rootfs`: mount points and the merged-/usr links.
fn make_rootfs(root: &Path) {
    for dir in [
        "usr", "proc", "dev", "sys", "tmp", "etc", "run", ".bin", "wa",
    ] {
        std::fs::create_dir_all(root.join(dir)).expect("rootfs folder");
    }
    for link in ["bin", "lib", "lib64", "sbin"] {
        if let Ok(target) = std::fs::read_link(Path::new("/").join(link)) {
            let _ = std::os::unix::fs::symlink(target, root.join(link));
        }
    }
}

impl Drop for TestContainerd {
    fn drop(&mut self) {
        // Containers are deleted through containerd (their shims outlive it).
        if self.process.is_some() || self.spawn().is_ok() {
            self.delete_everything();
        }
        self.kill();
        // runc removes a container's cgroup but leaves its parents, in every hierarchy.
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = std::fs::remove_dir(h.path().join(&self.cgroup_parent));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        // Made by ctr and the shims outside --state; removed by the last test containerd of this
        // process (a shim of another one may be about to use them), and only when empty (some
        // other containerd of the machine may use them).
        if LIVE.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        for dir in [
            "/run/containerd/fifo",
            "/run/containerd/runc/k8s.io",
            "/run/containerd/runc",
            "/run/containerd/s",
            "/run/containerd",
        ] {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
