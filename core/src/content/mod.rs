//! The content service: WorkspaceContentService (InitWorkspace, WaitForInit, IsWorkspaceExists,
//! TakeSnapshot, BackupWorkspace, DisposeWorkspace) and its extension WorkspaceContentExt
//! (SnapshotStatus, WorkspaceState); behaviour spec, section WorkspaceContentService.
//!
//! It owns what only the content side uses (backup storage, archive options, the HTTP and git
//! clients, the outcome records of disposals and snapshots) and shares the workspace store and the
//! background tasks with the other services. Its operations are reached through
//! [`crate::dispatch`] only.

mod dispose;
pub mod export;
mod init;
pub(crate) mod progress;
mod upload;

use std::sync::Arc;
use std::time::Duration;

use wsd_proto::wsdaemon::{
    DisposeWorkspaceResponse, IsWorkspaceExistsRequest, IsWorkspaceExistsResponse, ProgressRequest,
    ProgressResponse, SnapshotStatusResponse, WorkspaceContentState, WorkspaceStateRequest,
    WorkspaceStateResponse,
};

use crate::archive::{ArchiveOptions, Compression, IdMap};
use crate::background::Background;
use crate::call::CallContext;
use crate::config::{ArchiveFormat, Config, IdMapping};
use crate::error::{Error, Result};
use crate::quota::Quota;
use crate::storage::Storage;
use crate::workspace::ids::validate_instance_id;
use crate::workspace::outcomes::OutcomeCache;
use crate::workspace::state::{ContentState, WorkspaceRecord};
use crate::workspace::store::{Store, Workspace};

pub(crate) struct ContentService {
    config: Arc<Config>,
    store: Arc<Store>,
    background: Background,
    storage: Option<Arc<Storage>>,
    archive: Arc<ArchiveOptions>,
    http: reqwest::Client,
    git: crate::git::Git,
    /// Storage quotas of the working area's content folders.
    quota: Arc<Quota>,
    /// Results of finished disposals by instance id, answered to repeated DisposeWorkspace calls.
    disposed: OutcomeCache<DisposeWorkspaceResponse>,
    /// Outcomes of snapshots by qualified name, answered by SnapshotStatus.
    snapshots: OutcomeCache<SnapshotStatusResponse>,
    /// The latest init, backup or snapshot of every workspace, for Progress.
    progress: progress::Board,
    /// Places this daemon wrote chunked backups to since their last garbage collection.
    gc_places: crate::sync::Mutex<std::collections::HashSet<crate::chunked::PackPlace>>,
}

/// The validated id map of `archive.<which>` (Config::validate has checked it already).
fn id_map(entries: &[IdMapping], which: &str) -> Result<IdMap> {
    IdMap::new(entries.to_vec())
        .map_err(|e| Error::InvalidArgument(format!("invalid configuration: archive.{which}: {e}")))
}

fn archive_options(config: &Config) -> Result<ArchiveOptions> {
    Ok(ArchiveOptions {
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
        progress: None,
    })
}

fn wrong_state(ws: &Workspace, state: ContentState, operation: &'static str) -> Error {
    Error::WrongState {
        id: ws.id.clone(),
        state: state.name(),
        operation,
        needed: "AVAILABLE",
    }
}

impl ContentService {
    pub(crate) fn new(
        config: Arc<Config>,
        store: Arc<Store>,
        background: Background,
    ) -> Result<ContentService> {
        let storage =
            Storage::from_config(&config.storage, &crate::storage::process_env)?.map(Arc::new);
        let http = reqwest::Client::builder()
            .user_agent(concat!("ws-daemon/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))?;
        let area = store.area().root();
        let ttl = Duration::from_secs(config.limits.dispose_record_ttl_secs);
        Ok(ContentService {
            archive: Arc::new(archive_options(&config)?),
            git: crate::git::Git::new(&config.git, area),
            quota: store.quota().clone(),
            disposed: OutcomeCache::new(area, "disposed", ttl),
            snapshots: OutcomeCache::new(area, "snapshots", ttl),
            gc_places: crate::sync::Mutex::new(std::collections::HashSet::new()),
            progress: progress::Board::default(),
            http,
            storage,
            config,
            store,
            background,
        })
    }

    /// The configured backup storage, `None` when there is none (readiness asks it).
    pub(crate) fn storage(&self) -> Option<&Arc<Storage>> {
        self.storage.as_ref()
    }

    /// The storage a workspace may use: `None` when it is disabled for it or not configured.
    fn storage_for(&self, record: &WorkspaceRecord) -> Option<Arc<Storage>> {
        if record.remote_storage_disabled {
            None
        } else {
            self.storage.clone()
        }
    }

    pub(crate) async fn is_workspace_exists(
        self: Arc<Self>,
        req: IsWorkspaceExistsRequest,
        _ctx: CallContext,
    ) -> Result<IsWorkspaceExistsResponse> {
        validate_instance_id(&req.id)?;
        Ok(IsWorkspaceExistsResponse {
            exists: self.store.get(&req.id).is_some(),
        })
    }

    pub(crate) async fn workspace_state(
        self: Arc<Self>,
        req: WorkspaceStateRequest,
        _ctx: CallContext,
    ) -> Result<WorkspaceStateResponse> {
        validate_instance_id(&req.id)?;
        let state = self
            .store
            .get(&req.id)
            .map(|ws| ws.state().to_wire())
            .unwrap_or(WorkspaceContentState::None);
        Ok(WorkspaceStateResponse {
            state: state as i32,
        })
    }

    /// The archive options of an operation that reports its progress to `op`.
    fn archive_reporting_to(&self, op: &progress::Operation) -> Arc<ArchiveOptions> {
        let mut options = (*self.archive).clone();
        options.progress = Some(op.counters());
        Arc::new(options)
    }

    /// Progress: the report of the workspace's latest long operation once it changed after
    /// `after`, waiting up to `wait_ms` (long poll). NOT_FOUND for an unknown workspace; a known
    /// one with no operation since the daemon started answers an empty, done report.
    pub(crate) async fn progress(
        self: Arc<Self>,
        req: ProgressRequest,
        ctx: CallContext,
    ) -> Result<ProgressResponse> {
        validate_instance_id(&req.id)?;
        let wait = Duration::from_millis(u64::from(req.wait_ms));
        let poll = async { Ok(self.progress.poll(&req.id, req.after, wait).await) };
        match ctx.wait("Progress", poll).await? {
            Some(report) => Ok(report),
            None if self.store.get(&req.id).is_some() => Ok(ProgressResponse {
                done: true,
                ..ProgressResponse::default()
            }),
            None => Err(Error::WorkspaceNotFound(req.id)),
        }
    }

    /// Collects the garbage packs of the places written to since the last collection; a place
    /// whose collection fails is tried again next time.
    pub(crate) async fn collect_garbage(&self) {
        let Some(storage) = self.storage.clone() else {
            return;
        };
        let places: Vec<_> = self.gc_places.lock().drain().collect();
        let grace = Duration::from_secs(self.config.archive.gc_grace_secs);
        for place in places {
            if let Err(e) = crate::chunked::collect_garbage(&storage, &place, grace).await {
                tracing::warn!(bucket = %place.bucket, error = %e, "pack garbage collection failed; trying again later");
                self.gc_places.lock().insert(place);
            }
        }
    }

    /// Starts the periodic garbage collection of packs (`archive.gc_interval_secs`).
    pub(crate) fn start_garbage_collection(self: &Arc<Self>) {
        let interval = self.config.archive.gc_interval_secs;
        if interval == 0 || !self.config.archive.mode.writes_chunked() || self.storage.is_none() {
            return;
        }
        let (me, closing) = (Arc::downgrade(self), self.background.closing());
        self.background.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(interval)) => {}
                    _ = closing.cancelled() => break,
                }
                let Some(service) = me.upgrade() else { break };
                tokio::select! {
                    _ = service.collect_garbage() => {}
                    _ = closing.cancelled() => break,
                }
            }
        });
    }

    /// Drops expired outcome records (blocking; run by housekeeping).
    pub(crate) fn housekeeping(&self) -> std::io::Result<()> {
        self.disposed.prune()?;
        self.snapshots.prune()?;
        self.progress.forget_gone(|id| self.store.get(id).is_some());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
