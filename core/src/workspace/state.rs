//! The persisted record of one workspace instance and its content states.
//!
//! `<area>/<id>.workspace.json` is written atomically (temp file, fsync, rename, fsync folder) at every
//! transition. It never holds initializer details, which may carry credentials.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

use wsd_proto::wsdaemon::WorkspaceContentState;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContentState {
    SettingUp,
    Available,
    WrappingUp,
}

impl ContentState {
    pub fn name(self) -> &'static str {
        match self {
            ContentState::SettingUp => "SETTING_UP",
            ContentState::Available => "AVAILABLE",
            ContentState::WrappingUp => "WRAPPING_UP",
        }
    }

    pub fn to_wire(self) -> WorkspaceContentState {
        match self {
            ContentState::SettingUp => WorkspaceContentState::SettingUp,
            ContentState::Available => WorkspaceContentState::Available,
            ContentState::WrappingUp => WorkspaceContentState::WrappingUp,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub id: String,
    pub owner: String,
    pub meta_id: String,
    pub state: ContentState,
    pub remote_storage_disabled: bool,
    pub storage_quota_bytes: i64,
    /// Milliseconds since the epoch when InitWorkspace started.
    pub created_unix_ms: u64,
    /// Checkout (relative to the content) whose git status DisposeWorkspace reports; the content
    /// root when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkout_location: Option<String>,
    /// The container attached to this workspace (AttachContainer), checked again at restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRecord>,
}

/// What is persisted of a container attachment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ContainerRecord {
    /// The container's init process, in the daemon's PID namespace.
    pub pid: i32,
    /// Its start time (clock ticks after boot, `/proc/<pid>/stat` field 22): a recycled PID has
    /// another one.
    pub start_time: u64,
    /// The container's cgroup (v2 path, or the v1 path of the cpu/memory hierarchies).
    pub cgroup_path: String,
}

/// Writes `bytes` to `path` so that readers see either the old or the new content, also after a crash.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("state file has no parent folder"))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("state file has no name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_json_with_wire_state_names() {
        let r = WorkspaceRecord {
            id: "ws1".into(),
            owner: "u".into(),
            meta_id: "m".into(),
            state: ContentState::SettingUp,
            remote_storage_disabled: false,
            storage_quota_bytes: 0,
            created_unix_ms: 1,
            checkout_location: None,
            container: None,
        };
        let json = serde_json::to_string(&r).expect("serialize");
        assert!(json.contains("\"SETTING_UP\""));
        let back: WorkspaceRecord = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, r);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.workspace.json");
        write_atomically(&p, b"one").expect("write");
        write_atomically(&p, b"two").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(names.len(), 1);
    }
}
