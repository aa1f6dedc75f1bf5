//! The workspaces this daemon knows: in memory, and on disk as one state file per instance.
//!
//! Layout of the working area: `<area>/<id>/` (content), `<area>/<id>-daemon/` (in-workspace socket
//! folder) and `<area>/<id>.workspace.json` (state).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, SystemTime};

use futures::future::{BoxFuture, Shared};
use tokio::sync::watch;

use super::state::{write_atomically, ContentState, WorkspaceRecord};
use crate::error::{Error, Result};
use crate::quota::Quota;
use crate::sync::Mutex;
use wsd_proto::wsdaemon::DisposeWorkspaceResponse;

const STATE_SUFFIX: &str = ".workspace.json";
const DAEMON_SUFFIX: &str = "-daemon";
const PARENT_SUFFIX: &str = ".parent.wsm";

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

    /// The manifest of the workspace's last chunked backup, which the next one starts from.
    pub fn parent_manifest(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}{PARENT_SUFFIX}"))
    }
}

/// Progress of InitWorkspace as waiters see it.
#[derive(Debug, Clone)]
pub enum InitPhase {
    Running,
    Done,
    Failed(Error),
}

/// A disposal in progress, which concurrent DisposeWorkspace calls join.
pub type SharedDispose = Shared<BoxFuture<'static, Result<DisposeWorkspaceResponse>>>;

/// What other parts of the daemon learn about workspaces coming and going, whatever caused it
/// (InitWorkspace, a reload at start, a disposal, a failed init).
pub trait Lifecycle: Send + Sync {
    /// A workspace became known: registered by InitWorkspace or reloaded at start.
    fn registered(&self, ws: &Arc<Workspace>);
    /// A workspace is gone: disposed, or its init failed. An observer acts only on what it holds
    /// for this very workspace (its `generation`): the id may be registered again meanwhile.
    fn removed(&self, ws: &Workspace);
    /// A workspace is being disposed of: the observer undoes what it did outside the
    /// workspace's files (awaited before the files go; failures are the observer's to log).
    fn disposing(&self, _ws: &Arc<Workspace>) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Tells workspaces of the same id apart (a disposed one and the next InitWorkspace of its id).
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// One known workspace instance.
pub struct Workspace {
    pub id: String,
    /// Unique among all workspaces of this daemon process.
    pub generation: u64,
    record: Mutex<WorkspaceRecord>,
    /// Set once its files are removed: its record is never written again.
    removed: std::sync::atomic::AtomicBool,
    /// Held from a change of the record until it is on disk, so writes land in change order.
    persisting: tokio::sync::Mutex<()>,
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
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            record: Mutex::new(record),
            removed: std::sync::atomic::AtomicBool::new(false),
            persisting: tokio::sync::Mutex::new(()),
            init,
            content_lock: Arc::new(tokio::sync::RwLock::new(())),
            backup_lock: tokio::sync::Mutex::new(()),
            dispose: Mutex::new(None),
        }
    }

    fn lock_record(&self) -> MutexGuard<'_, WorkspaceRecord> {
        self.record.lock()
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

pub struct Store {
    area: WorkingArea,
    /// The quota backend of the area: content folders are made and removed through it.
    quota: Arc<Quota>,
    live: Mutex<HashMap<String, Arc<Workspace>>>,
    /// Weak: the observers are services that hold the store themselves.
    observers: std::sync::OnceLock<Vec<std::sync::Weak<dyn Lifecycle>>>,
}

/// What reloading the working area found.
#[derive(Debug, Default)]
pub struct Reloaded {
    pub available: usize,
    pub wrapping_up: usize,
    /// Instances that were SETTING_UP when the daemon stopped; their content and state are removed.
    pub cleaned_up: Vec<String>,
}

impl Store {
    pub(crate) fn new(area: WorkingArea, quota: Arc<Quota>) -> Store {
        Store {
            area,
            quota,
            live: Mutex::new(HashMap::new()),
            observers: std::sync::OnceLock::new(),
        }
    }

    /// Sets who learns of workspaces coming and going; once, before the first workspace.
    pub fn observe(&self, observers: Vec<std::sync::Weak<dyn Lifecycle>>) {
        if self.observers.set(observers).is_err() {
            tracing::error!("workspace lifecycle observers set twice; the second set is ignored");
        }
    }

    /// Lets every observer undo what it did for `ws`, which is being disposed of.
    pub async fn disposing(&self, ws: &Arc<Workspace>) {
        let undoing: Vec<_> = self.observers().iter().map(|o| o.disposing(ws)).collect();
        futures::future::join_all(undoing).await;
    }

    fn observers(&self) -> Vec<Arc<dyn Lifecycle>> {
        self.observers
            .get()
            .map(|all| all.iter().filter_map(std::sync::Weak::upgrade).collect())
            .unwrap_or_default()
    }

    pub fn area(&self) -> &WorkingArea {
        &self.area
    }

    pub(crate) fn quota(&self) -> &Arc<Quota> {
        &self.quota
    }

    /// Reads every state file of the working area (blocking; runs once at start).
    pub fn reload(&self) -> std::io::Result<Reloaded> {
        let mut found = Reloaded::default();
        // Dispose records of versions before the outcome records (`.outcomes/`).
        remove_dir_if_exists(&self.area.root().join(".disposed"))?;
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
                    self.live.lock().insert(id.to_string(), ws.clone());
                    for observer in self.observers() {
                        observer.registered(&ws);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The workspace of a request's `id`: INVALID_ARGUMENT for a malformed id, NOT_FOUND for an
    /// unknown one.
    pub fn find(&self, id: &str) -> Result<Arc<Workspace>> {
        super::ids::validate_instance_id(id)?;
        self.get(id)
            .ok_or_else(|| Error::WorkspaceNotFound(id.to_string()))
    }

    pub fn get(&self, id: &str) -> Option<Arc<Workspace>> {
        self.live.lock().get(id).cloned()
    }

    /// Every known workspace.
    pub fn all(&self) -> Vec<Arc<Workspace>> {
        self.live.lock().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.live.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Registers a new instance in SETTING_UP, or ALREADY_EXISTS for a known id.
    pub fn insert_new(&self, record: WorkspaceRecord) -> Result<Arc<Workspace>> {
        let mut live = self.live.lock();
        if live.contains_key(&record.id) {
            return Err(Error::WorkspaceExists(record.id));
        }
        let ws = Arc::new(Workspace::new(record, InitPhase::Running));
        live.insert(ws.id.clone(), ws.clone());
        drop(live);
        for observer in self.observers() {
            observer.registered(&ws);
        }
        Ok(ws)
    }

    /// Changes the state and persists it before returning.
    pub async fn set_state(&self, ws: &Workspace, state: ContentState) -> Result<()> {
        self.update(ws, |r| r.state = state).await
    }

    /// Changes the record and persists it before returning; concurrent changes of one workspace
    /// reach the disk in the order they were made.
    pub async fn update(
        &self,
        ws: &Workspace,
        change: impl FnOnce(&mut WorkspaceRecord),
    ) -> Result<()> {
        let _in_order = ws.persisting.lock().await;
        if ws.removed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::WorkspaceNotFound(ws.id.clone()));
        }
        let record = {
            let mut r = ws.lock_record();
            change(&mut r);
            r.clone()
        };
        self.persist(record).await
    }

    /// Writes the record as it is now (the first write of a new workspace).
    pub async fn save(&self, ws: &Workspace) -> Result<()> {
        self.update(ws, |_| {}).await
    }

    async fn persist(&self, record: WorkspaceRecord) -> Result<()> {
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
    /// (and retryable) when that fails. Once they are gone its record is never written again, so
    /// a change that races the removal cannot bring a state file back.
    pub async fn remove_files_of(&self, ws: &Workspace) -> Result<()> {
        let _no_writes = ws.persisting.lock().await;
        let (id, area) = (ws.id.clone(), self.area.clone());
        let quota = self.quota.clone();
        tokio::task::spawn_blocking(move || remove_instance_files(&area, &quota, &id))
            .await
            .map_err(Error::internal)?
            .map_err(|e| {
                tracing::error!(id = %ws.id, error = %e, "cannot remove workspace files");
                Error::Internal(format!("cannot remove the files of workspace {}", ws.id))
            })?;
        ws.removed.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Forgets an instance (after its files are gone), if it is still the one known by its id.
    pub fn forget(&self, ws: &Arc<Workspace>) {
        let known = {
            let mut live = self.live.lock();
            match live.get(&ws.id) {
                Some(current) if Arc::ptr_eq(current, ws) => live.remove(&ws.id).is_some(),
                _ => false,
            }
        };
        ws.removed.store(true, std::sync::atomic::Ordering::Release);
        if known {
            for observer in self.observers() {
                observer.removed(ws);
            }
        }
    }

    /// Removes an instance's files and forgets it; a failure still forgets it (used when an init
    /// failed: the instance is gone for the caller either way, housekeeping retries the files).
    pub async fn remove(&self, ws: &Arc<Workspace>) -> Result<()> {
        let removed = self.remove_files_of(ws).await;
        self.forget(ws);
        removed
    }

    fn remove_files(&self, id: &str) -> std::io::Result<()> {
        remove_instance_files(&self.area, &self.quota, id)
    }

    /// Removes content and socket folders that no workspace owns and that are older than
    /// `max_age` (blocking). Returns the names removed. Folders starting with `.` belong to the
    /// daemon (outcome records, git's home) and are left alone.
    pub fn remove_orphans(&self, max_age: Duration) -> std::io::Result<Vec<String>> {
        let live: std::collections::HashSet<String> = self.live.lock().keys().cloned().collect();
        let mut removed = Vec::new();
        for entry in std::fs::read_dir(self.area.root())? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let owner_id = name
                .strip_suffix(DAEMON_SUFFIX)
                .or_else(|| name.strip_suffix(PARENT_SUFFIX))
                .unwrap_or(&name);
            if name.ends_with(STATE_SUFFIX)
                || name.starts_with('.')
                || live.contains(owner_id)
                || self.area.state_file(owner_id).exists()
            {
                continue;
            }
            let meta = entry.metadata()?;
            if name.ends_with(PARENT_SUFFIX) && meta.is_file() {
                // A backup's parent left by a crash between removing its workspace's files.
                remove_file_if_exists(&entry.path())?;
                removed.push(name);
                continue;
            }
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
            if name.ends_with(DAEMON_SUFFIX) {
                remove_dir_if_exists(&entry.path())?;
            } else {
                self.quota.remove_folder(&entry.path())?;
            }
            removed.push(name);
        }
        Ok(removed)
    }
}

fn remove_file_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes content (with its quota: subvolume, project limit), socket folder and, last, the state
/// file, so a crash in between leaves a state file that the next start cleans up again.
pub(crate) fn remove_instance_files(
    area: &WorkingArea,
    quota: &Quota,
    id: &str,
) -> std::io::Result<()> {
    quota.remove_folder(&area.content_dir(id))?;
    remove_dir_if_exists(&area.daemon_dir(id))?;
    remove_file_if_exists(&area.parent_manifest(id))?;
    remove_file_if_exists(&area.state_file(id))
}
