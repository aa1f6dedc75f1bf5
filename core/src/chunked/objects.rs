//! Where the chunked archive mode keeps its objects, beside the full archives of the behaviour
//! spec:
//!
//! ```text
//! <owner's place>/packs/<2 hex>/<64 hex>.pack                   shared by the owner's workspaces
//! <owner's place>/workspaces/<meta id>/backups/<unix nanos>.wsm   one manifest per backup
//! <owner's place>/workspaces/<meta id>/backups/latest             the newest complete one
//! <owner's place>/workspaces/<meta id>/snapshot-<unix nanos>.wsm  a snapshot
//! ```
//!
//! A manifest names packs by hash only; they live in the packs folder of the place the manifest is
//! in, so a snapshot restores into any workspace that can read its bucket.

use crate::storage::ObjectLocation;

/// The extension of manifest objects.
pub const MANIFEST_EXT: &str = "wsm";

/// The bucket and key prefix under which a manifest's packs live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PackPlace {
    pub bucket: String,
    /// Empty, or ends with `/`.
    pub prefix: String,
}

impl PackPlace {
    /// The place of the manifest at `loc` (one this module named), `None` for other keys.
    pub fn of_manifest(loc: &ObjectLocation) -> Option<PackPlace> {
        let segments: Vec<&str> = loc.key.split('/').collect();
        let file = *segments.last()?;
        let stem = file.strip_suffix(".wsm")?;
        let depth = if segments.len() >= 4
            && segments[segments.len() - 2] == "backups"
            && !stem.is_empty()
            && stem.bytes().all(|b| b.is_ascii_digit())
        {
            4
        } else if stem.starts_with("snapshot-") {
            3
        } else {
            return None;
        };
        let root = segments.len().checked_sub(depth)?;
        if segments[root] != "workspaces" {
            return None;
        }
        let mut prefix = segments[..root].join("/");
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Some(PackPlace {
            bucket: loc.bucket.clone(),
            prefix,
        })
    }

    /// The place of the owner's objects that `full_backup` (any object of theirs under
    /// `workspaces/`) is in.
    pub fn of_workspace_object(loc: &ObjectLocation) -> Option<PackPlace> {
        let at = loc.key.find("workspaces/")?;
        let prefix = &loc.key[..at];
        if !(prefix.is_empty() || prefix.ends_with('/')) {
            return None;
        }
        Some(PackPlace {
            bucket: loc.bucket.clone(),
            prefix: prefix.to_string(),
        })
    }

    pub fn pack(&self, name: &str) -> ObjectLocation {
        let fan = name.get(..2).unwrap_or("00");
        ObjectLocation {
            bucket: self.bucket.clone(),
            key: format!("{}packs/{fan}/{name}.pack", self.prefix),
        }
    }

    /// The folder of a workspace's backup manifests (ends with `/`).
    pub fn backups_folder(&self, meta_id: &str) -> String {
        format!("{}workspaces/{meta_id}/backups/", self.prefix)
    }

    pub fn backup_manifest(&self, meta_id: &str, unix_nanos: u128) -> ObjectLocation {
        ObjectLocation {
            bucket: self.bucket.clone(),
            key: format!(
                "{}{unix_nanos:020}.{MANIFEST_EXT}",
                self.backups_folder(meta_id)
            ),
        }
    }

    /// The object naming the newest complete backup of a workspace (its time, as text).
    pub fn latest_pointer(&self, meta_id: &str) -> ObjectLocation {
        ObjectLocation {
            bucket: self.bucket.clone(),
            key: format!("{}latest", self.backups_folder(meta_id)),
        }
    }

    /// The time in a backup manifest's name, if `key` is one.
    pub fn backup_time(key: &str) -> Option<u128> {
        let file = key.rsplit('/').next()?;
        let stem = file.strip_suffix(".wsm")?;
        if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        stem.parse().ok()
    }
}

/// Whether a snapshot name (the object of `object@bucket`) is a chunked manifest.
pub fn is_manifest_key(key: &str) -> bool {
    key.ends_with(".wsm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(key: &str) -> ObjectLocation {
        ObjectLocation {
            bucket: "b".into(),
            key: key.into(),
        }
    }

    #[test]
    fn places_of_manifests() {
        let shared = PackPlace::of_manifest(&loc(
            "owner1/workspaces/m1/backups/00000000000000000042.wsm",
        ));
        assert_eq!(
            shared,
            Some(PackPlace {
                bucket: "b".into(),
                prefix: "owner1/".into()
            })
        );
        let own = PackPlace::of_manifest(&loc("workspaces/m1/snapshot-7.wsm")).unwrap();
        assert_eq!(own.prefix, "");
        assert_eq!(
            own.pack(&"ab".repeat(32)).key,
            format!("packs/ab/{}.pack", "ab".repeat(32))
        );
        // A workspace whose meta id is "workspaces" still finds the right root.
        let odd = PackPlace::of_manifest(&loc("workspaces/workspaces/backups/1.wsm")).unwrap();
        assert_eq!(odd.prefix, "");
        assert_eq!(
            PackPlace::of_manifest(&loc("workspaces/m1/full.tar.zst")),
            None
        );
        assert_eq!(
            PackPlace::of_manifest(&loc("elsewhere/m1/snapshot-1.wsm")),
            None
        );
    }

    #[test]
    fn backup_manifest_names_sort_by_time() {
        let p = PackPlace {
            bucket: "b".into(),
            prefix: String::new(),
        };
        let early = p.backup_manifest("m", 9).key;
        let late = p.backup_manifest("m", 10).key;
        assert!(early < late);
        assert_eq!(PackPlace::backup_time(&late), Some(10));
        assert_eq!(PackPlace::backup_time("workspaces/m/full.tar.zst"), None);
    }
}
