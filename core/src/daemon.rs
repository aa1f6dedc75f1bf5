//! The daemon handle: built from a [`Config`], it owns the workspace store, the backup storage and
//! every background task. All surfaces call it, through [`crate::dispatch`] or its typed methods.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{ArchiveOptions, Compression, IdMap};
use crate::config::{ArchiveFormat, Config, IdMapping};
use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::workspace::store::{Store, WorkingArea};

/// Outcome of a snapshot, in particular of one taken with `return_immediately`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotPhase {
    InProgress,
    Done { size_bytes: u64 },
    Failed(String),
}

pub(crate) struct Inner {
    pub config: Config,
    pub store: Store,
    pub storage: Option<Arc<Storage>>,
    pub archive: Arc<ArchiveOptions>,
    pub http: reqwest::Client,
    pub git: crate::git::Git,
    pub tasks: TaskTracker,
    pub closing: CancellationToken,
    /// Outcomes of snapshots by qualified name, with when they were recorded (expired with the
    /// dispose-record TTL).
    pub snapshots: Mutex<HashMap<String, (std::time::Instant, SnapshotPhase)>>,
}

/// The workspace daemon. Cheap to clone; every clone is the same daemon.
#[derive(Clone)]
pub struct Daemon {
    pub(crate) inner: Arc<Inner>,
}

/// The validated id map of `archive.<which>` (Config::validate has checked it already).
fn id_map(entries: &[IdMapping], which: &str) -> Result<IdMap> {
    IdMap::new(entries.to_vec())
        .map_err(|e| Error::InvalidArgument(format!("invalid configuration: archive.{which}: {e}")))
}

impl Daemon {
    /// Starts a daemon: creates the working area, reloads every workspace it holds (cleaning up
    /// those that were initializing) and starts housekeeping. Must run inside a tokio runtime, which
    /// then also runs the daemon's background work.
    pub async fn start(config: Config) -> Result<Daemon> {
        config.validate()?;
        let area = config.working_area.clone();
        tokio::fs::create_dir_all(&area).await.map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot create the working area (working_area): {}",
                e.kind()
            ))
        })?;
        let storage =
            Storage::from_config(&config.storage, &crate::storage::process_env)?.map(Arc::new);
        let archive = Arc::new(ArchiveOptions {
            compression: match config.archive.format {
                ArchiveFormat::Zstd => Compression::Zstd,
                ArchiveFormat::Tar => Compression::None,
            },
            zstd_level: config.archive.zstd_level,
            zstd_workers: match config.archive.zstd_workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
                n => n,
            },
            uid_map: id_map(&config.archive.uid_map, "uid_map")?,
            gid_map: id_map(&config.archive.gid_map, "gid_map")?,
        });
        let http = reqwest::Client::builder()
            .user_agent(concat!("ws-daemon/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;

        let git = crate::git::Git::new(&config.git, &area);
        let store = Store::new(
            WorkingArea::new(area),
            Duration::from_secs(config.limits.dispose_record_ttl_secs),
        );
        let daemon = Daemon {
            inner: Arc::new(Inner {
                config,
                store,
                storage,
                archive,
                http,
                git,
                tasks: TaskTracker::new(),
                closing: CancellationToken::new(),
                snapshots: Mutex::new(HashMap::new()),
            }),
        };
        let me = daemon.clone();
        let reloaded = tokio::task::spawn_blocking(move || me.inner.store.reload())
            .await
            .map_err(Error::internal)?
            .map_err(|e| Error::Internal(format!("cannot read the working area: {}", e.kind())))?;
        tracing::info!(
            available = reloaded.available,
            wrapping_up = reloaded.wrapping_up,
            cleaned_up = reloaded.cleaned_up.len(),
            "working area reloaded"
        );
        daemon.start_housekeeping();
        Ok(daemon)
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Cancelled when shutdown begins: waits that run outside the daemon's tasks end on it.
    pub fn closing(&self) -> CancellationToken {
        self.inner.closing.clone()
    }

    /// Fails new work once shutdown has begun.
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closing.is_cancelled() {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Starts `work` at once as tracked background work that a caller's cancellation does not
    /// stop, and returns a future of its result. Spawning happens here, not on first poll, so a
    /// caller that is already cancelled cannot leave registered work that never runs.
    pub(crate) fn detached<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        let task = self.inner.tasks.spawn(work);
        async move {
            task.await
                .map_err(|e| Error::Internal(format!("background work failed: {e}")))?
        }
    }

    /// Refuses new work, lets in-flight work finish for up to `grace`, and stops background tasks.
    /// Work still running after `grace` is abandoned; its workspaces stay recorded on disk
    /// (SETTING_UP ones are cleaned up at the next start).
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.closing.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(grace, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.inner.tasks.len(),
                "shutdown grace period over; abandoning in-flight work"
            );
        }
    }

    fn start_housekeeping(&self) {
        let me = self.clone();
        let interval =
            Duration::from_secs(self.inner.config.limits.housekeeping_interval_secs.max(1));
        let max_age = Duration::from_secs(self.inner.config.limits.orphan_max_age_secs);
        self.inner.tasks.spawn(async move {
            loop {
                let pass = me.clone();
                let done =
                    tokio::task::spawn_blocking(move || pass.housekeeping_pass(max_age)).await;
                if let Ok(Err(e)) = done {
                    tracing::warn!(error = %e, "housekeeping failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = me.inner.closing.cancelled() => break,
                }
            }
        });
    }

    /// One housekeeping pass: orphaned folders, expired dispose records, free-space gauge.
    pub fn housekeeping_pass(&self, max_age: Duration) -> std::io::Result<Vec<String>> {
        let removed = self.inner.store.housekeeping(max_age)?;
        if let Ok(stat) = nix::sys::statvfs::statvfs(self.inner.store.area().root()) {
            let free = stat.blocks_available() as f64 * stat.fragment_size() as f64;
            metrics::gauge!("wsd_working_area_free_bytes").set(free);
        }
        metrics::gauge!("wsd_workspaces").set(self.inner.store.len() as f64);
        Ok(removed)
    }
}
