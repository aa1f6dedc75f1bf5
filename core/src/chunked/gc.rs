//! Garbage collection of packs (mark and sweep) and deletion of a workspace's objects.
//!
//! Packs are shared by all manifests in one place (an owner's bucket or prefix), so a pack may go
//! only when no manifest names it. A backup uploads its packs before its manifest exists; the
//! grace period protects them: a pack younger than `grace` is never deleted, so `grace` must be
//! longer than the longest backup (the default is a day). Marking reads every manifest; a manifest
//! that cannot be read stops the collection before anything is deleted. Manifests are listed a
//! second time after the packs, so one committed while the collection ran (whose packs might have
//! been reused from a manifest pruned meanwhile) is marked too.

use std::collections::HashSet;
use std::time::Duration;

use super::format::{decode_stored, is_pack_name, FormatError, Stored};
use super::objects::PackPlace;
use crate::error::{Error, Result};
use crate::storage::{ObjectLocation, Storage};

/// What one collection found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests: u64,
    pub packs: u64,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    /// Unreferenced packs left because they are younger than the grace period.
    pub packs_in_grace: u64,
}

/// Deletes the packs of `place` that no manifest references and that are older than `grace`.
pub async fn collect_garbage(
    storage: &Storage,
    place: &PackPlace,
    grace: Duration,
) -> Result<GcReport> {
    let started_ms = unix_millis();
    let mut report = GcReport::default();
    let mut marked: HashSet<String> = HashSet::new();
    let mut seen: HashSet<String> = HashSet::new();
    mark(storage, place, &mut seen, &mut marked, &mut report).await?;
    let packs = storage
        .list(&place.bucket, &format!("{}packs/", place.prefix))
        .await?;
    // Manifests committed since the first listing. A manifest that vanished between being listed
    // and read was pruned after a newer one was committed, which the next listing finds: list
    // until a round sees nothing vanish.
    let mut rounds = 0;
    while mark(storage, place, &mut seen, &mut marked, &mut report).await? {
        rounds += 1;
        if rounds >= MAX_MARK_ROUNDS {
            return Err(Error::Storage(
                "garbage collection stopped before deleting anything: manifests kept changing while it ran"
                    .into(),
            ));
        }
    }
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    for pack in packs {
        let key = pack.location.to_string();
        let Some(name) = pack_name(&key) else {
            continue;
        };
        report.packs += 1;
        if marked.contains(name) {
            continue;
        }
        if started_ms.saturating_sub(pack.last_modified.timestamp_millis()) < grace_ms {
            report.packs_in_grace += 1;
            continue;
        }
        storage
            .delete(&ObjectLocation {
                bucket: place.bucket.clone(),
                key: key.clone(),
            })
            .await?;
        report.packs_deleted += 1;
        report.bytes_deleted += pack.size;
    }
    tracing::info!(
        bucket = %place.bucket, manifests = report.manifests, packs = report.packs,
        deleted = report.packs_deleted, bytes = report.bytes_deleted, in_grace = report.packs_in_grace,
        "pack garbage collection done"
    );
    Ok(report)
}

/// Listings of manifests after the packs' before a collection gives up.
const MAX_MARK_ROUNDS: usize = 20;

/// Marks the packs of every manifest in `place` not in `seen` yet; answers whether one of them
/// vanished before it could be read.
async fn mark(
    storage: &Storage,
    place: &PackPlace,
    seen: &mut HashSet<String>,
    marked: &mut HashSet<String>,
    report: &mut GcReport,
) -> Result<bool> {
    let mut vanished = false;
    let listed = storage
        .list(&place.bucket, &format!("{}workspaces/", place.prefix))
        .await?;
    for object in listed {
        let key = object.location.to_string();
        if !super::is_manifest_key(&key) || !seen.insert(key.clone()) {
            continue;
        }
        let loc = ObjectLocation {
            bucket: place.bucket.clone(),
            key,
        };
        let Some(bytes) = storage.get_bytes(&loc).await? else {
            vanished = true;
            continue;
        };
        report.manifests += 1;
        let stored = decode(bytes).await?.map_err(|e| stop(&loc, &e))?;
        let base = match stored {
            Stored::Full(manifest) => {
                marked.extend(manifest.packs);
                continue;
            }
            Stored::Delta(header, delta) => {
                marked.extend(delta.packs);
                header.base_key
            }
        };
        // The packs a delta shares with its base are the base's: marked with it, read once
        // (pruning keeps a base while a delta needs it, so it is listed too, unless both went
        // since the listing).
        if !seen.insert(base.clone()) {
            continue;
        }
        let base_loc = ObjectLocation {
            bucket: place.bucket.clone(),
            key: base,
        };
        match storage.get_bytes(&base_loc).await? {
            Some(bytes) => match decode(bytes).await?.map_err(|e| stop(&base_loc, &e))? {
                Stored::Full(manifest) => {
                    report.manifests += 1;
                    marked.extend(manifest.packs);
                }
                Stored::Delta(..) => {
                    return Err(stop(&base_loc, &"a delta's base is a delta itself"));
                }
            },
            None if storage.head(&loc).await?.is_none() => vanished = true,
            None => {
                return Err(stop(
                    &loc,
                    &format!("its base {} is missing", base_loc.qualified()),
                ))
            }
        }
    }
    Ok(vanished)
}

/// Decodes a stored manifest off the async threads.
async fn decode(bytes: bytes::Bytes) -> Result<std::result::Result<Stored, FormatError>> {
    tokio::task::spawn_blocking(move || decode_stored(&bytes))
        .await
        .map_err(Error::internal)
}

/// The error that stops a collection at an unusable manifest, before anything is deleted.
fn stop(loc: &ObjectLocation, why: &dyn std::fmt::Display) -> Error {
    Error::DataLoss(format!(
        "garbage collection stopped before deleting anything: the manifest {} cannot be used: {why}",
        loc.qualified()
    ))
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The pack name of a key `.../packs/xx/<name>.pack`.
fn pack_name(key: &str) -> Option<&str> {
    let file = key.rsplit('/').next()?;
    let name = file.strip_suffix(".pack")?;
    is_pack_name(name).then_some(name)
}

/// Deletes every object of workspace `meta_id` in `place` (full archives, snapshots, manifests,
/// logs), then the packs only its manifests referenced (those older than `grace`). Answers the
/// number of workspace objects deleted and the collection's report.
pub async fn delete_workspace(
    storage: &Storage,
    place: &PackPlace,
    meta_id: &str,
    grace: Duration,
) -> Result<(u64, GcReport)> {
    let objects = storage
        .list(
            &place.bucket,
            &format!("{}workspaces/{meta_id}/", place.prefix),
        )
        .await?;
    let mut deleted = 0;
    for object in objects {
        storage
            .delete(&ObjectLocation {
                bucket: place.bucket.clone(),
                key: object.location.to_string(),
            })
            .await?;
        deleted += 1;
    }
    let report = collect_garbage(storage, place, grace).await?;
    Ok((deleted, report))
}
