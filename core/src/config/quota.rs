//! Storage quota settings (InitWorkspace's `storage_quota_bytes`).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// On a btrfs working area whose quotas are off, enable them at start (a file-system-wide
    /// change that starts a rescan). Off: the administrator enables them (`btrfs quota enable`).
    pub btrfs_enable: bool,
}
