//! What PrepareForUserNS did in a workspace's container: WriteIDMapping reads it to know that the
//! shifted root is wanted, and WipingTeardown undoes exactly that, also after a daemon restart.
//! One small JSON file per workspace, `<area>/.iws/<id>.prepared`, replaced whole (write to a
//! temporary name, rename). Tied to the container it was made for.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::dev::DevFile;
use super::shift::Shift;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    /// The container's init: PID and start time.
    pub container: (i32, u64),
    pub shift: Shift,
    /// Files of `/dev` this service created (not those the container brought).
    pub dev_created: Vec<DevFile>,
    /// Whether this service created the mark folder.
    pub mark_created: bool,
    /// Whether the workspace cgroup was made.
    pub cgroup: bool,
}

impl Prepared {
    /// `self` after another PrepareForUserNS in the same container, which found `later`: what
    /// either call created was created by this service.
    pub fn merged(mut self, later: Prepared) -> Prepared {
        if later.container != self.container {
            return later;
        }
        for file in later.dev_created {
            if !self.dev_created.contains(&file) {
                self.dev_created.push(file);
            }
        }
        self.mark_created |= later.mark_created;
        self.cgroup |= later.cgroup;
        self.shift = later.shift;
        self
    }
}

pub struct PreparedRecords {
    dir: PathBuf,
}

impl PreparedRecords {
    pub fn new(area: &std::path::Path) -> PreparedRecords {
        PreparedRecords {
            dir: area.join(".iws"),
        }
    }

    fn file(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.prepared"))
    }

    /// The record of workspace `id` for the container `container` (blocking).
    pub fn load(&self, id: &str, container: (i32, u64)) -> Option<Prepared> {
        let text = std::fs::read(self.file(id)).ok()?;
        serde_json::from_slice::<Prepared>(&text)
            .ok()
            .filter(|p| p.container == container)
    }

    /// Saves `prepared` merged into what is recorded (blocking).
    pub fn save(&self, id: &str, prepared: Prepared) -> Result<Prepared> {
        let merged = match self.load(id, prepared.container) {
            Some(earlier) => earlier.merged(prepared),
            None => prepared,
        };
        let text = serde_json::to_vec(&merged).map_err(Error::internal)?;
        let temp = self.dir.join(format!(".{id}.prepared.tmp"));
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&temp, &text))
            .and_then(|()| std::fs::rename(&temp, self.file(id)));
        written.map_err(|e| {
            tracing::error!(id, error = %e, "cannot record what PrepareForUserNS did");
            Error::Internal(format!("cannot record the preparation of workspace {id}"))
        })?;
        Ok(merged)
    }

    /// Forgets the record of `id` (blocking); a missing one is fine.
    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.file(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(container: (i32, u64), dev: Vec<DevFile>) -> Prepared {
        Prepared {
            container,
            shift: Shift::Idmapped,
            dev_created: dev,
            mark_created: false,
            cgroup: true,
        }
    }

    #[test]
    fn a_second_preparation_keeps_what_the_first_created() {
        let dir = tempfile::tempdir().expect("dir");
        let records = PreparedRecords::new(dir.path());
        let first = prepared((7, 1), vec![DevFile::Tun, DevFile::Fuse]);
        records.save("ws", first.clone()).expect("save");
        let again = records
            .save("ws", prepared((7, 1), vec![]))
            .expect("save again");
        assert_eq!(again.dev_created, first.dev_created);
        assert_eq!(records.load("ws", (7, 1)), Some(again));
        assert_eq!(records.load("ws", (8, 1)), None, "another container");
        let other = records
            .save("ws", prepared((8, 1), vec![DevFile::KmsgPlaceholder]))
            .expect("new container");
        assert_eq!(other.dev_created, vec![DevFile::KmsgPlaceholder]);
        records.remove("ws");
        assert_eq!(records.load("ws", (8, 1)), None);
    }
}
