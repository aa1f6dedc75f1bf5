//! Settings of the in-workspace service.

use serde::{Deserialize, Serialize};

/// `iws.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IwsConfig {
    /// Host ids that WriteIDMapping may map user ids of a workspace to.
    pub uid_map: IdRanges,
    /// Host ids that WriteIDMapping may map group ids of a workspace to.
    pub gid_map: IdRanges,
    /// Where the workspace cgroups are made (PrepareForUserNS, EvacuateCGroup).
    pub cgroup: CgroupConfig,
}

/// `iws.cgroup.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// The mount point of the cgroup v2 hierarchy; unset: the one in `/proc/self/mountinfo`
    /// (none there: a cgroup v1 node, where the workspace cgroup steps do nothing).
    pub v2_mount: Option<std::path::PathBuf>,
}

/// Where the ids of a workspace may land on the host.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdRanges {
    /// Container id 0 (the workspace's root) maps into this range.
    pub root_range: IdRange,
    /// Every other container id maps into one of these ranges.
    pub user_ranges: Vec<IdRange>,
}

/// Host ids `start .. start + size` (a missing size is 0, which the configuration check refuses).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct IdRange {
    pub start: u32,
    pub size: u32,
}

impl IdRange {
    /// Whether host ids `start .. start + size` lie inside this range (no overflow possible).
    pub fn contains(&self, start: u32, size: u32) -> bool {
        let (start, size) = (u64::from(start), u64::from(size));
        let (mine, my_size) = (u64::from(self.start), u64::from(self.size));
        start >= mine && start + size <= mine + my_size
    }

    fn check(&self, name: &str) -> Result<(), String> {
        if self.size == 0 {
            return Err(format!("{name}: size must be at least 1"));
        }
        if u64::from(self.start) + u64::from(self.size) > u64::from(u32::MAX) + 1 {
            return Err(format!("{name}: start + size goes past 4294967295"));
        }
        Ok(())
    }
}

impl Default for IdRanges {
    fn default() -> Self {
        IdRanges {
            root_range: IdRange {
                start: 33333,
                size: 1,
            },
            user_ranges: vec![IdRange {
                start: 100000,
                size: 70000,
            }],
        }
    }
}

impl IwsConfig {
    /// Checks the ranges (the message names the setting).
    pub fn check(&self) -> Result<(), String> {
        for (which, ranges) in [("uid_map", &self.uid_map), ("gid_map", &self.gid_map)] {
            ranges
                .root_range
                .check(&format!("iws.{which}.root_range"))?;
            for range in &ranges.user_ranges {
                range.check(&format!("iws.{which}.user_ranges"))?;
            }
        }
        if let Some(mount) = &self.cgroup.v2_mount {
            if !mount.is_absolute() {
                return Err("iws.cgroup.v2_mount: must be an absolute path".to_string());
            }
        }
        Ok(())
    }
}
