//! The mounts this service made in each workspace's container, so that an unmount acts on those
//! mounts only, also after a daemon restart. Kept apart from the state file, as a log of changes
//! appended one line at a time without fsync: a mount does not outlive a reboot, so neither need
//! its record, while a daemon that is killed loses nothing (the page cache keeps what was
//! written); no rename or truncation per change (file systems flush data on those). The log is
//! rewritten when it has grown well past what it records. Records are tied to the container they
//! were made in (its init's PID and start time); those of an earlier container never match and
//! are left out at the next rewrite.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::workspace::store::Workspace;

/// One mount made in a workspace's container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountRecord {
    /// `proc`, `sysfs`, `nfs` or `id-shift`.
    pub kind: String,
    /// The kernel's unique id of the mount.
    pub mount_id: u64,
    /// The target as the request named it (for logs).
    pub target: String,
    /// The container's init: PID and start time.
    pub container: (i32, u64),
    /// The process (PID and start time) in whose mount namespace it was made; records of an
    /// older daemon have none (their mounts were made for the container's init or a process
    /// sharing its mount namespace).
    #[serde(default)]
    pub holder: Option<(i32, u64)>,
}

/// Mounts one workspace may hold.
pub const MAX_MOUNTS: usize = 256;

/// One line of a workspace's log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    Add(MountRecord),
    Remove(u64),
}

/// What is known of one workspace: its generation, its records, the lines its log holds.
#[derive(Default)]
struct Loaded {
    generation: u64,
    records: Vec<MountRecord>,
    lines: usize,
}

pub struct MountRecords {
    /// `<area>/.iws/`, one `<id>.mounts` log per workspace.
    dir: PathBuf,
    /// By workspace id. Held across the write so that lines are appended in change order.
    loaded: tokio::sync::Mutex<HashMap<String, Loaded>>,
}

/// Replays a log; a torn last line (a daemon killed mid-write) is skipped.
fn replay(text: &str) -> (Vec<MountRecord>, usize) {
    let mut records: Vec<MountRecord> = Vec::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        match serde_json::from_str::<Change>(line) {
            Ok(Change::Add(r)) => records.push(r),
            Ok(Change::Remove(id)) => records.retain(|r| r.mount_id != id),
            Err(_) => {}
        }
    }
    (records, lines)
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
        self.dir.join(format!("{id}.mounts"))
    }

    /// What is known of `ws`, read from its log the first time (a daemon restarted).
    async fn of<'a>(
        &self,
        loaded: &'a mut HashMap<String, Loaded>,
        ws: &Workspace,
    ) -> &'a mut Loaded {
        let stale = loaded
            .get(&ws.id)
            .is_none_or(|known| known.generation != ws.generation);
        if stale {
            let text = tokio::fs::read_to_string(self.file(&ws.id))
                .await
                .unwrap_or_default();
            let (records, lines) = replay(&text);
            loaded.insert(
                ws.id.clone(),
                Loaded {
                    generation: ws.generation,
                    records,
                    lines,
                },
            );
        }
        loaded.entry(ws.id.clone()).or_default()
    }

    /// Appends `change` to the log of `id`, or rewrites the log from `known` when it has grown
    /// well past what it records.
    async fn log(
        &self,
        id: &str,
        known: &mut Loaded,
        change: Change,
        current: (i32, u64),
    ) -> Result<()> {
        use std::io::Write;
        let rewrite = known.lines >= 64 && known.lines >= 4 * known.records.len();
        let mut text = String::new();
        let lines = if rewrite {
            known.records.retain(|r| r.container == current);
            for r in &known.records {
                text += &serde_json::to_string(&Change::Add(r.clone())).map_err(Error::internal)?;
                text.push('\n');
            }
            known.records.len()
        } else {
            text = serde_json::to_string(&change).map_err(Error::internal)? + "\n";
            known.lines + 1
        };
        let (dir, file, temp) = (
            self.dir.clone(),
            self.file(id),
            self.dir.join(format!(".{id}.mounts.tmp")),
        );
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            if rewrite {
                std::fs::write(&temp, text.as_bytes())?;
                std::fs::rename(&temp, &file)
            } else {
                // One write of one line: appended whole or not at all.
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&file)?
                    .write_all(text.as_bytes())
            }
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        match written {
            Ok(()) => {
                known.lines = lines;
                Ok(())
            }
            Err(e) => {
                tracing::error!(id, error = %e, "cannot write the mount records");
                Err(Error::Internal(format!(
                    "cannot record the mounts of workspace {id}"
                )))
            }
        }
    }

    /// The ids of mounts of `kind` made in `container`.
    pub async fn ours(&self, ws: &Workspace, container: &Container, kind: &str) -> Vec<u64> {
        let mut loaded = self.loaded.lock().await;
        let known = self.of(&mut loaded, ws).await;
        known
            .records
            .iter()
            .filter(|r| r.kind == kind && r.container == identity(container))
            .map(|r| r.mount_id)
            .collect()
    }

    /// Every mount made in `container` (Teardown).
    pub async fn all(&self, ws: &Workspace, container: &Container) -> Vec<MountRecord> {
        let mut loaded = self.loaded.lock().await;
        let known = self.of(&mut loaded, ws).await;
        known
            .records
            .iter()
            .filter(|r| r.container == identity(container))
            .cloned()
            .collect()
    }

    /// Refuses a new mount when the workspace holds the most it may.
    pub async fn check_room(&self, ws: &Workspace, container: &Container) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let known = self.of(&mut loaded, ws).await;
        let held = known
            .records
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
        holder: Option<(i32, u64)>,
    ) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let known = self.of(&mut loaded, ws).await;
        let record = MountRecord {
            kind: kind.to_string(),
            mount_id,
            target,
            container: identity(container),
            holder,
        };
        known.records.push(record.clone());
        self.log(&ws.id, known, Change::Add(record), identity(container))
            .await
    }

    /// Forgets an unmounted mount of `container`.
    pub async fn remove(&self, ws: &Workspace, container: &Container, mount_id: u64) -> Result<()> {
        let mut loaded = self.loaded.lock().await;
        let known = self.of(&mut loaded, ws).await;
        known.records.retain(|r| r.mount_id != mount_id);
        self.log(&ws.id, known, Change::Remove(mount_id), identity(container))
            .await
    }

    /// Forgets a workspace that is gone (blocking: removes its file). When the records are busy
    /// the memory is left: it carries its generation, so a later workspace of the id reloads.
    pub fn forget(&self, ws: &Workspace) {
        if let Ok(mut loaded) = self.loaded.try_lock() {
            if loaded
                .get(&ws.id)
                .is_some_and(|k| k.generation == ws.generation)
            {
                loaded.remove(&ws.id);
            }
        }
        let _ = std::fs::remove_file(self.file(&ws.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64) -> MountRecord {
        MountRecord {
            kind: "proc".into(),
            mount_id: id,
            target: "/proc".into(),
            container: (7, 99),
            holder: None,
        }
    }

    #[test]
    fn a_log_replays_to_what_it_records_and_skips_a_torn_line() {
        let mut log = String::new();
        for change in [
            Change::Add(record(1)),
            Change::Add(record(2)),
            Change::Remove(1),
        ] {
            log += &serde_json::to_string(&change).expect("json");
            log.push('\n');
        }
        log += "{\"add\":{\"kind\":\"pro";
        let (records, lines) = replay(&log);
        assert_eq!(records, vec![record(2)]);
        assert_eq!(lines, 4);
    }
}
