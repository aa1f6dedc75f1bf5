//! Helpers shared by the integration tests: the `ws-daemon` binary run as a child process in its
//! own temporary working area, a real gRPC client for it, a tiny HTTP server, and tree comparison.

pub mod azurite;
pub mod bench;
pub mod cgroups;
pub mod container;
pub mod containerd;
pub mod fake_gcs;
pub mod git_server;
pub mod http;
pub mod s3;
pub mod tree;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tonic::transport::Channel;
use wsd_proto::contentservice::{workspace_initializer::Spec, WorkspaceInitializer};
use wsd_proto::wsdaemon::workspace_content_ext_client::WorkspaceContentExtClient;
use wsd_proto::wsdaemon::workspace_content_service_client::WorkspaceContentServiceClient;
use wsd_proto::wsdaemon::{InitWorkspaceRequest, WorkspaceMetadata};

pub type Client = WorkspaceContentServiceClient<Channel>;

/// The `ws-daemon` binary next to the test executable (cargo builds it for `cargo test --workspace`),
/// or `$WSD_BIN`.
pub fn daemon_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("WSD_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder of the test executable");
    let bin = dir.join("ws-daemon");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build -p ws-daemon) or set WSD_BIN",
        bin.display()
    );
    bin
}

/// Writes `len` incompressible bytes (xorshift from `seed`), so archives are as large as the file.
pub fn write_random(path: &Path, len: usize, seed: u64) {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        data.extend_from_slice(&state.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).expect("write");
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `ws-daemon` child process with its own working area and local storage.
pub struct DaemonProcess {
    pub dir: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub extra_config: String,
    child: Option<Child>,
}

impl DaemonProcess {
    /// Starts a daemon in `dir` (created if needed). `extra_config` is appended to its TOML file.
    pub async fn start(dir: &Path, extra_config: &str) -> DaemonProcess {
        let mut d = DaemonProcess {
            dir: dir.to_path_buf(),
            port: free_port(),
            metrics_port: free_port(),
            extra_config: extra_config.to_string(),
            child: None,
        };
        d.spawn().await;
        d
    }

    pub fn working_area(&self) -> PathBuf {
        self.dir.join("workspaces")
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("daemon folder");
        let config = self.dir.join("config.toml");
        std::fs::write(&config, &self.extra_config).expect("config file");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .expect("log file");
        // Folders and ports as flags, which win over the file, so tests may set any table.
        let child = Command::new(daemon_binary())
            .arg("--config")
            .arg(&config)
            .arg("--working-area")
            .arg(self.working_area())
            .arg("--storage-path")
            .arg(self.storage())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start ws-daemon");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "ws-daemon exited with {status}: {}",
                        std::fs::read_to_string(self.log_file()).unwrap_or_default()
                    );
                }
            }
            if let Ok(mut c) = WorkspaceContentServiceClient::connect(self.endpoint()).await {
                let probe = wsd_proto::wsdaemon::IsWorkspaceExistsRequest { id: "probe".into() };
                if c.is_workspace_exists(probe).await.is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "ws-daemon did not become ready within 30 s: {}",
                std::fs::read_to_string(self.log_file()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn client(&self) -> Client {
        WorkspaceContentServiceClient::connect(self.endpoint())
            .await
            .expect("connect")
    }

    pub async fn ext_client(&self) -> WorkspaceContentExtClient<Channel> {
        WorkspaceContentExtClient::connect(self.endpoint())
            .await
            .expect("connect")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    /// Sends `signal` and waits for the process to exit.
    pub async fn stop_with(
        &mut self,
        signal: nix::sys::signal::Signal,
    ) -> std::process::ExitStatus {
        let child = self.child.take().expect("running");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal)
            .expect("signal");
        wait_for_exit(child).await
    }

    /// Starts the same daemon (same folders, ports and config) again after a stop.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.spawn().await;
    }

    /// Stops the daemon (SIGTERM) and starts it again with another config file.
    pub async fn restart_with(&mut self, extra_config: &str) {
        self.stop_with(nix::sys::signal::Signal::SIGTERM).await;
        self.extra_config = extra_config.to_string();
        self.spawn().await;
    }

    /// The Prometheus text of the metrics endpoint.
    pub async fn metrics(&self) -> String {
        http::get_text(&format!("127.0.0.1:{}", self.metrics_port), "/metrics").await
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for a child to exit without blocking the test's runtime, whose tasks must keep serving
/// client connections (a graceful server shutdown waits for them to answer).
pub async fn wait_for_exit(mut child: Child) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a Prometheus sample line `name{labels} value` (labels matched as a substring).
pub fn metric_value(text: &str, name: &str, labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(labels)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// InitWorkspace, then WaitForInit; panics when either fails.
pub async fn init_ready(client: &mut Client, id: &str, meta_id: &str, spec: Spec) {
    client
        .init_workspace(init_request(id, meta_id, spec))
        .await
        .expect("init");
    client
        .wait_for_init(wsd_proto::wsdaemon::WaitForInitRequest { id: id.into() })
        .await
        .expect("wait for init");
}

/// Polls `done` every few milliseconds until it holds; panics with `what` after `within`.
pub async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Makes the child `cmd` starts receive SIGKILL when the thread that started it ends, so that
/// nothing it runs outlives a test that a ^C or a CI timeout ends without a drop.
pub fn dies_with_the_test(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls only prctl, which is
    // async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// An append-mode log file for a child process's output.
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("log file")
}

/// Waits until `port` on loopback accepts connections; panics, with the end of the child's `log`,
/// if `child` (`what`) exits first or the port stays closed for 60 s.
pub async fn wait_for_port(child: &mut Child, port: u16, what: &str, log: &Path) {
    let tail = || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited with {status}; its log ends with:\n{}",
                tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not start within 60 s; its log ends with:\n{}",
            tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn init_request(id: &str, meta_id: &str, spec: Spec) -> InitWorkspaceRequest {
    InitWorkspaceRequest {
        id: id.to_string(),
        metadata: Some(WorkspaceMetadata {
            owner: "owner-1".to_string(),
            meta_id: meta_id.to_string(),
        }),
        initializer: Some(WorkspaceInitializer { spec: Some(spec) }),
        remote_storage_disabled: false,
        storage_quota_bytes: 0,
    }
}
