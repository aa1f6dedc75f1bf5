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

/// `sleep` as PID 1 of a new PID namespace (needs root). Killed when dropped.
pub struct PidNamespaceProcess {
    unshare: Child,
    pub pid: i32,
}

impl PidNamespaceProcess {
    pub fn start() -> PidNamespaceProcess {
        let unshare = Command::new("unshare")
            .args(["--fork", "--pid", "--kill-child", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run unshare (util-linux)");
        let children = format!("/proc/{0}/task/{0}/children", unshare.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            let found = std::fs::read_to_string(&children)
                .ok()
                .and_then(|c| c.split_whitespace().next().and_then(|p| p.parse().ok()));
            if let Some(pid) = found {
                break pid;
            }
            assert!(Instant::now() < deadline, "unshare started no child");
            std::thread::sleep(Duration::from_millis(10));
        };
        PidNamespaceProcess { unshare, pid }
    }

    /// Ends the namespace's init (and so the namespace) and waits for it.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

impl Drop for PidNamespaceProcess {
    fn drop(&mut self) {
        self.stop();
    }
}
