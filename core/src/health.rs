//! Readiness and liveness: what `/ready`, `/live` and the gRPC health service report.
//!
//! Readiness is a list of named checks, run concurrently and each bounded by
//! `health.check_timeout_ms`:
//! - `storage` (remote backends only): the store answers a lookup of an object that does not exist.
//! - `working_area`: a small file can be created, written, synced and removed in the working area,
//!   and its file system has at least `health.min_free_bytes` free.
//! - checks registered with [`Daemon::add_readiness_check`] (the container runtime's).
//!
//! Liveness is cheaper and never depends on anything outside the process: the daemon is not shut
//! down and its runtime runs a task.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use serde::Serialize;

use crate::sync::Mutex;
use crate::Daemon;

/// One readiness check's result. `reason` is meant for the person reading `/ready`: it never
/// holds a secret, URL or host path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub reason: String,
}

impl Check {
    fn from_outcome(name: &str, outcome: std::result::Result<String, String>) -> Check {
        let (ok, reason) = match outcome {
            Ok(reason) => (true, reason),
            Err(reason) => (false, reason),
        };
        Check {
            name: name.to_string(),
            ok,
            reason,
        }
    }
}

/// The result of every readiness check, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub checks: Vec<Check>,
}

impl Readiness {
    /// Ready when every check passed.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// `ready` or `not ready`, then one line per check: `name: ok, reason` or
    /// `name: FAILED, reason`.
    pub fn to_text(&self) -> String {
        let mut text = String::from(if self.ready() {
            "ready\n"
        } else {
            "not ready\n"
        });
        for c in &self.checks {
            let state = if c.ok { "ok" } else { "FAILED" };
            text.push_str(&format!("{}: {state}, {}\n", c.name, c.reason));
        }
        text
    }

    /// `{"ready": bool, "checks": [{"name", "ok", "reason"}...]}`.
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Document<'a> {
            ready: bool,
            checks: &'a [Check],
        }
        let document = Document {
            ready: self.ready(),
            checks: &self.checks,
        };
        serde_json::to_string(&document).unwrap_or_default()
    }
}

/// A readiness check besides the daemon's own (storage, working area): the container runtime's,
/// for one. `check` answers `Ok(reason)` when the dependency serves and `Err(reason)` when not;
/// the daemon bounds it by `health.check_timeout_ms`, so it need not time out by itself.
pub(crate) trait ReadinessCheck: Send + Sync + 'static {
    /// The check's name in `/ready` (e.g. `containerd`).
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'_, std::result::Result<String, String>>;
}

/// A probe of the working area running on a blocking thread, shared by everyone who asks while
/// it runs.
type SharedProbe = Shared<BoxFuture<'static, std::result::Result<String, String>>>;

/// What readiness keeps between calls.
#[derive(Default)]
pub(crate) struct Health {
    extra: Mutex<Vec<Arc<dyn ReadinessCheck>>>,
    /// The working-area probe in progress, if any: calls at the same time (the kubelet's and the
    /// gRPC health refresh) share it, and a probe stuck in a hung file system is waited for by
    /// every later call (each up to its own timeout) instead of being joined by another blocked
    /// thread at every call.
    /// The flag is set when the blocking work is over: its result is then old news.
    probe: Mutex<Option<(SharedProbe, Arc<AtomicBool>)>>,
    probe_seq: AtomicU64,
}

impl Daemon {
    /// Registers a readiness check that every later [`Daemon::readiness`] runs after the daemon's
    /// own (e.g. containerd's, when discovery is configured).
    pub(crate) fn add_readiness_check(&self, check: Arc<dyn ReadinessCheck>) {
        self.health().extra.lock().push(check);
    }

    /// Runs every readiness check (concurrently, each bounded by `health.check_timeout_ms`).
    pub async fn readiness(&self) -> Readiness {
        let config = &self.config().health;
        let limit = Duration::from_millis(config.check_timeout_ms);
        let mut pending: Vec<BoxFuture<'_, Check>> = Vec::new();
        if self.closing().is_cancelled() {
            pending
                .push(async { Check::from_outcome("daemon", Err("shutting down".into())) }.boxed());
        }
        if let Some(storage) = self.content().storage().filter(|s| s.is_remote()) {
            let probe = async move { storage.probe(limit).await.map(str::to_string) };
            pending.push(bounded("storage", limit, probe).boxed());
        }
        pending.push(bounded("working_area", limit, self.probe_working_area()).boxed());
        let extra: Vec<_> = self.health().extra.lock().clone();
        for check in extra {
            pending.push(
                async move {
                    let name = check.name();
                    bounded(name, limit, check.check()).await
                }
                .boxed(),
            );
        }
        Readiness {
            checks: futures::future::join_all(pending).await,
        }
    }

    /// Alive while the daemon is not shut down and its runtime still runs tasks. Never asks
    /// anything outside the process.
    pub async fn live(&self) -> bool {
        if self.closing().is_cancelled() {
            return false;
        }
        let limit = Duration::from_millis(self.config().health.check_timeout_ms);
        matches!(
            tokio::time::timeout(limit, tokio::spawn(async {})).await,
            Ok(Ok(()))
        )
    }

    fn probe_working_area(&self) -> SharedProbe {
        let health = self.health();
        let mut running = health.probe.lock();
        if let Some((probe, _)) = running
            .as_ref()
            .filter(|(_, over)| !over.load(Ordering::Acquire))
        {
            return probe.clone();
        }
        let seq = health.probe_seq.fetch_add(1, Ordering::Relaxed);
        let root = self.config().working_area.clone();
        let min_free = self.config().health.min_free_bytes;
        let over = Arc::new(AtomicBool::new(false));
        let done = over.clone();
        let probe = tokio::task::spawn_blocking(move || {
            let outcome = probe_working_area(&root, min_free, seq);
            done.store(true, Ordering::Release);
            outcome
        })
        .map(|joined| joined.unwrap_or_else(|_| Err("the probe of the working area failed".into())))
        .boxed()
        .shared();
        *running = Some((probe.clone(), over));
        probe
    }
}

/// `check` as a [`Check`] named `name`, failed when it takes longer than `limit`.
async fn bounded(
    name: &str,
    limit: Duration,
    check: impl std::future::Future<Output = std::result::Result<String, String>>,
) -> Check {
    let outcome = tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within health.check_timeout_ms ({} ms)",
                limit.as_millis()
            ))
        });
    Check::from_outcome(name, outcome)
}

/// Creates, writes, syncs and removes a small file in the working area, then compares the free
/// space of its file system with `min_free` (blocking).
fn probe_working_area(root: &Path, min_free: u64, seq: u64) -> std::result::Result<String, String> {
    let path = root.join(format!(".wsd-ready-{}-{seq}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .and_then(|mut file| {
            file.write_all(b"ready\n")?;
            file.sync_all()
        });
    let removed = std::fs::remove_file(&path);
    if let Err(e) = written {
        return Err(format!(
            "cannot write a file in the working area: {}",
            e.kind()
        ));
    }
    removed.map_err(|e| format!("cannot remove a file in the working area: {}", e.kind()))?;
    let stat = nix::sys::statvfs::statvfs(root).map_err(|e| {
        format!(
            "cannot read the free space of the working area: {}",
            e.desc()
        )
    })?;
    let free = (stat.blocks_available() as u64).saturating_mul(stat.fragment_size() as u64);
    if free < min_free {
        Err(format!(
            "{} free in the working area, below health.min_free_bytes ({})",
            bytes_text(free),
            bytes_text(min_free)
        ))
    } else {
        Ok(format!("writable, {} free", bytes_text(free)))
    }
}

/// `123 bytes`, `1.5 KiB` ... `2.0 TiB`, and beyond in TiB.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests;
