//! The mounts this service made in each workspace's container, so that an unmount acts on those
//! mounts only, also after a daemon restart. Kept apart from the state file and written without
//! fsync: a mount does not outlive a reboot, so neither need its record, while a daemon that is
//! killed loses nothing (the page cache keeps what was written). Records are tied to the
//! container they were made in (its init's PID and start time); those of an earlier container
//! are never matched and are dropped at the next change.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::workspace::store::Workspace;

/// One mount made in a workspace's container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountRecord {
    /// `proc`, `sysfs` or `nfs`.
    pub kind: String,
    /// The kernel's unique id of the mount.
    pub mount_id: u64,
    /// The target as the request named it (for logs).
    pub target: String,
    /// The container's init: PID and start time.
    pub container: (i32, u64),
}

/// Mounts one workspace may hold.
pub const MAX_MOUNTS: usize = 256;

pub struct MountRecords {
    /// `<area>/.iws/`, one `<id>.mounts.json` per workspace.
    dir: PathBuf,
    /// By workspace id: the generation they belong to, and the records. Held across the write so
    /// that files are written in the order of the changes.
    loaded: tokio::sync::Mutex<HashMap<String, (u64, Vec<MountRecord>)>>,
}

fn identity(container: &Container) -> (i32, u64) {
    (container.pid(), container.record().start_time)
}

impl MountRecords {
    pub fn new(area: &std::path::Path) -> MountRecords {
        MountRecords {
            dir: area.join(".iws"),
            loaded: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.mounts.json"))
    }

    /// The records of `ws`, read from its file the first time (a daemon restarted).
    async fn of<'a>(
        &self,
        loaded: &'a mut HashMap<String, (u64, Vec<MountRecord>)>,
        ws: &Workspace,
    ) -> &'a mut Vec<MountRecord> {
        let stale = loaded
            .get(&ws.id)
            .is_none_or(|(generation, _)| *generation != ws.generation);
        if stale {
            let read = tokio::fs::read(self.file(&ws.id)).await.ok();
            let records = read
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or_default();
            loaded.insert(ws.id.clone(), (ws.generation, records));
        }
        &mut loaded.entry(ws.id.clone()).or_default().1
    }

    async fn write(&self, id: &str, records: &[MountRecord]) -> Result<()> {
        let bytes = serde_json::to_vec(records).map_err(Error::internal)?;
        let (file, temp) = (
            self.file(id),
            self.dir.join(format!(".{id}.mounts.json.tmp")),
        );
        let dir = self.dir.clone();
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(&temp, &bytes)?;
            std::fs::rename(&temp, &file)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        written.map_err(|e| {
            tracing::error!(id, error = %e, "cannot write the mount records");
            Error::Internal(format!("cannot record the mounts of workspace {id}"))
        })
    }

    /// The ids of mounts of `kind` made in `container`.
    pub async fn ours(&self, ws: &Workspace, container: &Container, kind: &str) -> Vec<u64> {
        let mut loaded = self.loaded.lock().await;
        let records = self.of(&mut loaded, ws).await;
        records
            .iter()
            .filter(|r| r.kind == kind && r.container == identity(container))
            .map(|r| r.mount_id)
            .collect()
    }

    /// Refuses a new mount when the workspace holds the most it may.
    pub async fn check_room(&self, ws: &Workspace, container: &Container) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let records = self.of(&mut loaded, ws).await;
        let held = records
            .iter()
            .filter(|r| r.container == identity(container))
            .count();
        if held >= MAX_MOUNTS {
            return Err(Error::ResourceExhausted(format!(
                "workspace {} holds {MAX_MOUNTS} mounts already; unmount some first",
                ws.id
            )));
        }
        Ok(())
    }

    /// Records a mount made in `container`.
    pub async fn add(
        &self,
        ws: &Workspace,
        container: &Container,
        kind: &str,
        mount_id: u64,
        target: String,
    ) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let records = self.of(&mut loaded, ws).await;
        let current = identity(container);
        records.retain(|r| r.container == current);
        records.push(MountRecord {
            kind: kind.to_string(),
            mount_id,
            target,
            container: current,
        });
        let snapshot = records.clone();
        self.write(&ws.id, &snapshot).await
    }

    /// Forgets an unmounted mount.
    pub async fn remove(&self, ws: &Workspace, mount_id: u64) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let records = self.of(&mut loaded, ws).await;
        records.retain(|r| r.mount_id != mount_id);
        let snapshot = records.clone();
        self.write(&ws.id, &snapshot).await
    }

    /// Forgets a workspace that is gone (blocking: removes its file). When the records are busy
    /// the memory is left: it carries its generation, so a later workspace of the id reloads.
    pub fn forget(&self, ws: &Workspace) {
        if let Ok(mut loaded) = self.loaded.try_lock() {
            if loaded.get(&ws.id).is_some_and(|(g, _)| *g == ws.generation) {
                loaded.remove(&ws.id);
            }
        }
        let _ = std::fs::remove_file(self.file(&ws.id));
    }
}
