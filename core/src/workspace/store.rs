//! The workspaces this daemon knows: in memory, and on disk as one state file per instance.
//!
//! Layout of the working area: `<area>/<id>/` (content), `<area>/<id>-daemon/` (in-workspace socket
//! folder) and `<area>/<id>.workspace.json` (state).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

use super::state::{write_atomically, ContentState, WorkspaceRecord};
use crate::error::{Error, Result};
use prost::Message;
use wsd_proto::contentservice::GitStatus;
use wsd_proto::wsdaemon::DisposeWorkspaceResponse;

const STATE_SUFFIX: &str = ".workspace.json";
const DAEMON_SUFFIX: &str = "-daemon";
const DISPOSED_FOLDER: &str = ".disposed";

#[derive(Debug, Clone)]
pub struct WorkingArea {
    root: PathBuf,
}

impl WorkingArea {
    pub fn new(root: PathBuf) -> WorkingArea {
        WorkingArea { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    pub fn daemon_dir(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}{DAEMON_SUFFIX}"))
    }

    pub fn state_file(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}{STATE_SUFFIX}"))
    }
}

/// Progress of InitWorkspace as waiters see it.
#[derive(Debug, Clone)]
pub enum InitPhase {
    Running,
    Done,
    Failed(Error),
}

/// The outcome of a finished DisposeWorkspace, answered again to repeated calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DisposeOutcome {
    pub git_status: Option<GitStatus>,
}

pub type SharedDispose = Shared<BoxFuture<'static, Result<DisposeOutcome>>>;

/// One known workspace instance.
pub struct Workspace {
    pub id: String,
    record: Mutex<WorkspaceRecord>,
    init: watch::Sender<InitPhase>,
    /// Snapshots and backups hold it shared; disposal holds it exclusively, so content is never
    /// removed under an upload.
    pub content_lock: Arc<tokio::sync::RwLock<()>>,
    /// Serializes full backups of this workspace.
    pub backup_lock: tokio::sync::Mutex<()>,
    /// The disposal in progress, which concurrent DisposeWorkspace calls join.
    pub dispose: Mutex<Option<SharedDispose>>,
}

impl Workspace {
    fn new(record: WorkspaceRecord, phase: InitPhase) -> Workspace {
        let (init, _) = watch::channel(phase);
        Workspace {
            id: record.id.clone(),
            record: Mutex::new(record),
            init,
            content_lock: Arc::new(tokio::sync::RwLock::new(())),
            backup_lock: tokio::sync::Mutex::new(()),
            dispose: Mutex::new(None),
        }
    }

    fn lock_record(&self) -> MutexGuard<'_, WorkspaceRecord> {
        // A poisoned lock only means a panic elsewhere; the record itself is always whole.
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self) -> WorkspaceRecord {
        self.lock_record().clone()
    }

    pub fn state(&self) -> ContentState {
        self.lock_record().state
    }

    pub fn subscribe_init(&self) -> watch::Receiver<InitPhase> {
        self.init.subscribe()
    }

    pub fn finish_init(&self, phase: InitPhase) {
        self.init.send_replace(phase);
    }
}

struct Disposed {
    at: Instant,
    outcome: DisposeOutcome,
}

pub struct Store {
    area: WorkingArea,
    live: Mutex<HashMap<String, Arc<Workspace>>>,
    disposed: Mutex<HashMap<String, Disposed>>,
    disposed_ttl: Duration,
}

/// What reloading the working area found.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub available: usize,
    pub wrapping_up: usize,
    /// Instances that were SETTING_UP when the daemon stopped; their content and state are removed.
    pub cleaned_up: Vec<String>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Store {
    pub fn new(area: WorkingArea, disposed_ttl: Duration) -> Store {
        Store {
            area,
            live: Mutex::new(HashMap::new()),
            disposed: Mutex::new(HashMap::new()),
            disposed_ttl,
        }
    }

    pub fn area(&self) -> &WorkingArea {
        &self.area
    }

    /// Reads every state file of the working area (blocking; runs once at start).
    pub fn reload(&self) -> std::io::Result<Reloaded> {
        let mut found = Reloaded::default();
        for entry in std::fs::read_dir(self.area.root())? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(STATE_SUFFIX)) else {
                continue;
            };
            if super::ids::validate_instance_id(id).is_err() {
                continue;
            }
            let record: WorkspaceRecord = match std::fs::read(entry.path())
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(id, error = %e, "unreadable state file; the workspace is cleaned up");
                    self.remove_files(id)?;
                    found.cleaned_up.push(id.to_string());
                    continue;
                }
            };
            if record.id != id {
                tracing::error!(id, "state file names another workspace; ignored");
                continue;
            }
            match record.state {
                ContentState::SettingUp => {
                    tracing::warn!(
                        id,
                        "workspace was initializing when the daemon stopped; cleaning up"
                    );
                    self.remove_files(id)?;
                    found.cleaned_up.push(id.to_string());
                }
                ContentState::Available | ContentState::WrappingUp => {
                    if record.state == ContentState::Available {
                        found.available += 1;
                    } else {
                        found.wrapping_up += 1;
                    }
                    let ws = Arc::new(Workspace::new(record, InitPhase::Done));
                    lock(&self.live).insert(id.to_string(), ws);
                }
            }
        }
        Ok(found)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Workspace>> {
        lock(&self.live).get(id).cloned()
    }

    pub fn len(&self) -> usize {
        lock(&self.live).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a new instance in SETTING_UP, or ALREADY_EXISTS for a known id.
    pub fn insert_new(&self, record: WorkspaceRecord) -> Result<Arc<Workspace>> {
        let mut live = lock(&self.live);
        if live.contains_key(&record.id) {
            return Err(Error::WorkspaceExists(record.id));
        }
        lock(&self.disposed).remove(&record.id);
        let _ = std::fs::remove_file(self.disposed_file(&record.id));
        let ws = Arc::new(Workspace::new(record, InitPhase::Running));
        live.insert(ws.id.clone(), ws.clone());
        Ok(ws)
    }

    /// Changes the state and persists it before returning.
    pub async fn set_state(&self, ws: &Workspace, state: ContentState) -> Result<()> {
        let record = {
            let mut r = ws.lock_record();
            r.state = state;
            r.clone()
        };
        self.persist(record).await
    }

    pub async fn persist(&self, record: WorkspaceRecord) -> Result<()> {
        let path = self.area.state_file(&record.id);
        let bytes = serde_json::to_vec_pretty(&record).map_err(Error::internal)?;
        tokio::task::spawn_blocking(move || write_atomically(&path, &bytes))
            .await
            .map_err(Error::internal)?
            .map_err(|e| {
                tracing::error!(id = %record.id, error = %e, "cannot write state file");
                Error::Internal(format!(
                    "cannot persist the state of workspace {}",
                    record.id
                ))
            })
    }

    /// Removes an instance's content, socket folder and state file; the instance stays known
    /// (and retryable) when that fails.
    pub async fn remove_files_of(&self, id: &str) -> Result<()> {
        let owned = id.to_string();
        let area = self.area.clone();
        tokio::task::spawn_blocking(move || remove_instance_files(&area, &owned))
            .await
            .map_err(Error::internal)?
            .map_err(|e| {
                tracing::error!(id, error = %e, "cannot remove workspace files");
                Error::Internal(format!("cannot remove the files of workspace {id}"))
            })
    }

    /// Forgets an instance (after its files are gone).
    pub fn forget(&self, id: &str) {
        lock(&self.live).remove(id);
    }

    /// Removes an instance's files and forgets it; a failure still forgets it (used when an init
    /// failed: the instance is gone for the caller either way, housekeeping retries the files).
    pub async fn remove(&self, id: &str) -> Result<()> {
        let removed = self.remove_files_of(id).await;
        self.forget(id);
        removed
    }

    fn remove_files(&self, id: &str) -> std::io::Result<()> {
        remove_instance_files(&self.area, id)
    }

    /// `<area>/.disposed/<id>.pb`: the answer of a finished disposal, so that a repeated
    /// DisposeWorkspace answers the same also after a restart.
    fn disposed_file(&self, id: &str) -> PathBuf {
        self.area
            .root()
            .join(DISPOSED_FOLDER)
            .join(format!("{id}.pb"))
    }

    /// Remembers the outcome of a finished disposal (in memory and on disk) for the record TTL.
    pub async fn record_disposed(&self, id: &str, outcome: DisposeOutcome) {
        lock(&self.disposed).insert(
            id.to_string(),
            Disposed {
                at: Instant::now(),
                outcome: outcome.clone(),
            },
        );
        let path = self.disposed_file(id);
        let bytes = DisposeWorkspaceResponse {
            git_status: outcome.git_status,
        }
        .encode_to_vec();
        let written = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_atomically(&path, &bytes)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(id, "cannot persist the dispose record; repeated calls after a restart answer NOT_FOUND");
        }
    }

    /// The outcome of a disposal finished less than the record TTL ago.
    pub async fn disposed(&self, id: &str) -> Option<DisposeOutcome> {
        if let Some(d) = lock(&self.disposed).get(id) {
            return (d.at.elapsed() < self.disposed_ttl).then(|| d.outcome.clone());
        }
        let path = self.disposed_file(id);
        let ttl = self.disposed_ttl;
        let found = tokio::task::spawn_blocking(move || -> Option<(Duration, Vec<u8>)> {
            let age = std::fs::metadata(&path)
                .ok()?
                .modified()
                .ok()?
                .elapsed()
                .ok()?;
            (age < ttl).then(|| std::fs::read(&path).ok().map(|b| (age, b)))?
        })
        .await
        .ok()??;
        let (age, bytes) = found;
        let response = DisposeWorkspaceResponse::decode(bytes.as_slice()).ok()?;
        let outcome = DisposeOutcome {
            git_status: response.git_status,
        };
        lock(&self.disposed).insert(
            id.to_string(),
            Disposed {
                at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
                outcome: outcome.clone(),
            },
        );
        Some(outcome)
    }

    /// Drops expired dispose records and removes content folders that no state file owns and that
    /// are older than `max_age`. Returns the names removed.
    pub fn housekeeping(&self, max_age: Duration) -> std::io::Result<Vec<String>> {
        lock(&self.disposed).retain(|_, d| d.at.elapsed() < self.disposed_ttl);
        if let Ok(entries) = std::fs::read_dir(self.area.root().join(DISPOSED_FOLDER)) {
            for entry in entries.flatten() {
                let expired = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_none_or(|age| age >= self.disposed_ttl);
                if expired {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let live: std::collections::HashSet<String> = lock(&self.live).keys().cloned().collect();
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(self.area.root())? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let owner_id = name.strip_suffix(DAEMON_SUFFIX).unwrap_or(&name);
            if name.ends_with(STATE_SUFFIX)
                || name.starts_with('.')
                || live.contains(owner_id)
                || self.area.state_file(owner_id).exists()
            {
                continue;
            }
            let meta = entry.metadata()?;
            if !meta.is_dir() {
                continue;
            }
            let age = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or_default();
            if age < max_age {
                continue;
            }
            tracing::info!(folder = %name, age_secs = age.as_secs(), "housekeeping removes an orphaned folder");
            remove_dir_if_exists(&entry.path())?;
            removed.push(name);
        }
        Ok(removed)
    }
}

fn remove_dir_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes content, socket folder and, last, the state file, so a crash in between leaves a state
/// file that the next start cleans up again.
pub fn remove_instance_files(area: &WorkingArea, id: &str) -> std::io::Result<()> {
    remove_dir_if_exists(&area.content_dir(id))?;
    remove_dir_if_exists(&area.daemon_dir(id))?;
    match std::fs::remove_file(area.state_file(id)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
