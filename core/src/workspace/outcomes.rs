//! Outcomes of finished work, kept for a while so that a repeated question gets the same answer:
//! the result of a DisposeWorkspace (a repeated dispose answers OK with the same git status) and
//! the outcome of a snapshot (SnapshotStatus). Held in memory and written as one protobuf file per
//! key under `<area>/.outcomes/<kind>/`, so they also answer after a restart; housekeeping removes
//! them once they are older than the TTL (`limits.dispose_record_ttl_secs`).

use std::collections::{HashMap, HashSet};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use prost::Message;
use sha2::{Digest, Sha256};

use super::state::write_atomically;
use crate::sync::Mutex;

/// The folder below the working area that holds every kind of outcome.
pub const OUTCOMES_FOLDER: &str = ".outcomes";

/// How long an outcome is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Work still running: kept until replaced, whatever its age.
    UntilReplaced,
    /// A final outcome: kept for the TTL.
    ForTtl,
}

/// An outcome as found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found<M> {
    pub value: M,
    /// Recorded by an earlier run of the daemon (read back from disk): work it marked as running
    /// did not finish.
    pub earlier_run: bool,
}

struct Entry<M> {
    at: Instant,
    keep: Keep,
    found: Found<M>,
}

pub struct OutcomeCache<M> {
    kind: &'static str,
    dir: PathBuf,
    ttl: Duration,
    entries: Mutex<HashMap<String, Entry<M>>>,
    _message: PhantomData<fn() -> M>,
}

/// The file of `key`: keys are free text (snapshot names hold `/` and `@`), so files are named
/// by the key's hash.
fn file_name(key: &str) -> String {
    format!("{}.pb", hex::encode(Sha256::digest(key.as_bytes())))
}

impl<M: Message + Default + Clone + Send + 'static> OutcomeCache<M> {
    /// A cache of one `kind` of outcome (a folder name) below `area`.
    pub fn new(area: &Path, kind: &'static str, ttl: Duration) -> OutcomeCache<M> {
        OutcomeCache {
            kind,
            dir: area.join(OUTCOMES_FOLDER).join(kind),
            ttl,
            entries: Mutex::new(HashMap::new()),
            _message: PhantomData,
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(file_name(key))
    }

    /// Records the outcome of `key`, in memory at once and then on disk. A failed write is logged:
    /// the outcome still answers until the daemon restarts.
    pub async fn put(&self, key: &str, value: M, keep: Keep) {
        self.entries.lock().insert(
            key.to_string(),
            Entry {
                at: Instant::now(),
                keep,
                found: Found {
                    value: value.clone(),
                    earlier_run: false,
                },
            },
        );
        let (dir, path, bytes) = (self.dir.clone(), self.path(key), value.encode_to_vec());
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            write_atomically(&path, &bytes)
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            tracing::warn!(
                kind = self.kind,
                "cannot persist an outcome record; it is forgotten at the next restart"
            );
        }
    }

    /// The outcome of `key` recorded less than the TTL ago (or still running), if any.
    pub async fn get(&self, key: &str) -> Option<Found<M>> {
        if let Some(entry) = self.entries.lock().get(key) {
            return self.alive(entry).then(|| entry.found.clone());
        }
        let (path, ttl) = (self.path(key), self.ttl);
        let (age, bytes) = tokio::task::spawn_blocking(move || -> Option<(Duration, Vec<u8>)> {
            let age = std::fs::metadata(&path).ok()?.modified().ok()?.elapsed();
            // A file dated in the future (clock changes) counts as new.
            let age = age.unwrap_or_default();
            (age < ttl).then(|| std::fs::read(&path).ok().map(|b| (age, b)))?
        })
        .await
        .ok()??;
        let found = Found {
            value: M::decode(bytes.as_slice()).ok()?,
            earlier_run: true,
        };
        self.entries.lock().entry(key.to_string()).or_insert(Entry {
            at: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
            keep: Keep::ForTtl,
            found: found.clone(),
        });
        Some(found)
    }

    /// Forgets the outcome of `key` (e.g. a disposed instance id initialized again).
    pub async fn remove(&self, key: &str) {
        self.entries.lock().remove(key);
        let path = self.path(key);
        let removed = tokio::task::spawn_blocking(move || std::fs::remove_file(path)).await;
        if let Ok(Err(e)) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(kind = self.kind, error = %e, "cannot remove an outcome record");
            }
        }
    }

    fn alive(&self, entry: &Entry<M>) -> bool {
        entry.keep == Keep::UntilReplaced || entry.at.elapsed() < self.ttl
    }

    /// Drops expired outcomes from memory and disk (blocking; run by housekeeping). Returns how
    /// many files were removed.
    pub fn prune(&self) -> std::io::Result<usize> {
        let running: HashSet<String> = {
            let mut entries = self.entries.lock();
            entries.retain(|_, e| self.alive(e));
            entries
                .iter()
                .filter(|(_, e)| e.keep == Keep::UntilReplaced)
                .map(|(key, _)| file_name(key))
                .collect()
        };
        let listing = match std::fs::read_dir(&self.dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for entry in listing {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| running.contains(n))
            {
                continue;
            }
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= self.ttl);
            if expired {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsd_proto::wsdaemon::SnapshotStatusResponse;

    fn status(size_bytes: i64) -> SnapshotStatusResponse {
        SnapshotStatusResponse {
            size_bytes,
            ..Default::default()
        }
    }

    fn age_file(path: &Path, by: Duration) {
        let file = std::fs::File::options()
            .write(true)
            .open(path)
            .expect("open");
        let then = std::time::SystemTime::now() - by;
        file.set_modified(then).expect("set mtime");
    }

    #[tokio::test]
    async fn outcomes_answer_after_a_restart_and_say_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ttl = Duration::from_secs(60);
        let first = OutcomeCache::new(dir.path(), "snapshots", ttl);
        first.put("a/b@c", status(7), Keep::ForTtl).await;
        let found = first.get("a/b@c").await.expect("found");
        assert_eq!((found.value.size_bytes, found.earlier_run), (7, false));

        let second = OutcomeCache::<SnapshotStatusResponse>::new(dir.path(), "snapshots", ttl);
        let found = second.get("a/b@c").await.expect("found after restart");
        assert_eq!((found.value.size_bytes, found.earlier_run), (7, true));
        assert!(second.get("other").await.is_none());
    }

    #[tokio::test]
    async fn prune_drops_expired_outcomes_and_keeps_running_work() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ttl = Duration::from_secs(60);
        let cache = OutcomeCache::new(dir.path(), "snapshots", ttl);
        cache.put("done", status(1), Keep::ForTtl).await;
        cache.put("running", status(2), Keep::UntilReplaced).await;
        cache.put("fresh", status(3), Keep::ForTtl).await;
        for key in ["done", "running"] {
            age_file(&cache.path(key), Duration::from_secs(120));
        }
        // Age the in-memory record of "done" as well.
        cache.entries.lock().get_mut("done").expect("done").at =
            Instant::now() - Duration::from_secs(120);

        assert_eq!(cache.prune().expect("prune"), 1);
        assert!(!cache.path("done").exists());
        assert!(cache.get("done").await.is_none());
        assert_eq!(
            cache
                .get("running")
                .await
                .expect("running")
                .value
                .size_bytes,
            2
        );
        assert_eq!(cache.get("fresh").await.expect("fresh").value.size_bytes, 3);

        // Replaced by a final outcome, the running record expires like the others.
        cache.put("running", status(4), Keep::ForTtl).await;
        cache.entries.lock().get_mut("running").expect("running").at =
            Instant::now() - Duration::from_secs(120);
        age_file(&cache.path("running"), Duration::from_secs(120));
        assert_eq!(cache.prune().expect("prune"), 1);
        assert!(cache.get("running").await.is_none());
    }

    #[tokio::test]
    async fn an_expired_file_is_not_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ttl = Duration::from_secs(60);
        let first = OutcomeCache::new(dir.path(), "disposed", ttl);
        first.put("ws-1", status(1), Keep::ForTtl).await;
        age_file(&first.path("ws-1"), Duration::from_secs(61));
        let second = OutcomeCache::<SnapshotStatusResponse>::new(dir.path(), "disposed", ttl);
        assert!(second.get("ws-1").await.is_none());
        second.remove("ws-1").await;
        assert!(!second.path("ws-1").exists());
    }
}
