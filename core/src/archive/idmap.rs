//! User/group id maps between the host and a container (user namespace style).

use super::ArchiveError;

/// One contiguous range of a user namespace id map: container ids
/// `container_id .. container_id + size` correspond to host ids
/// `host_id .. host_id + size`. Also the configuration's `archive.uid_map` / `gid_map` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapEntry {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// A validated id map. An empty map is the identity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    entries: Vec<IdMapEntry>,
}

fn check_no_overlap(ranges: &mut [(u64, u64)], side: &str) -> Result<(), ArchiveError> {
    ranges.sort_unstable();
    for pair in ranges.windows(2) {
        let (start, len) = pair[0];
        if start + len > pair[1].0 {
            return Err(ArchiveError::IdMap(format!(
                "overlapping {side} ranges starting at {} and {}",
                start, pair[1].0
            )));
        }
    }
    Ok(())
}

impl IdMap {
    /// Validates and builds a map: every range must be non-empty, must not
    /// overflow u32 on either side, and ranges must not overlap on either side.
    pub fn new(entries: Vec<IdMapEntry>) -> Result<IdMap, ArchiveError> {
        const LIMIT: u64 = 1 << 32;
        for e in &entries {
            if e.size == 0 {
                return Err(ArchiveError::IdMap(format!(
                    "empty range at container id {}",
                    e.container_id
                )));
            }
            if u64::from(e.container_id) + u64::from(e.size) > LIMIT
                || u64::from(e.host_id) + u64::from(e.size) > LIMIT
            {
                return Err(ArchiveError::IdMap(format!(
                    "range container {} host {} size {} overflows",
                    e.container_id, e.host_id, e.size
                )));
            }
        }
        let mut c: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (u64::from(e.container_id), u64::from(e.size)))
            .collect();
        check_no_overlap(&mut c, "container")?;
        let mut h: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (u64::from(e.host_id), u64::from(e.size)))
            .collect();
        check_no_overlap(&mut h, "host")?;
        Ok(IdMap { entries })
    }

    /// The identity map (no translation).
    pub fn identity() -> IdMap {
        IdMap {
            entries: Vec::new(),
        }
    }

    /// True when this map performs no translation.
    pub fn is_identity(&self) -> bool {
        self.entries.is_empty()
    }

    /// The ranges of this map.
    pub fn entries(&self) -> &[IdMapEntry] {
        &self.entries
    }

    /// Maps a host id into the container; `None` if the id is not mapped.
    pub fn host_to_container(&self, host: u32) -> Option<u32> {
        if self.entries.is_empty() {
            return Some(host);
        }
        self.entries.iter().find_map(|e| {
            let off = host.checked_sub(e.host_id)?;
            (off < e.size).then(|| e.container_id + off)
        })
    }

    /// Maps a container id to the host; `None` if the id is not mapped.
    pub fn container_to_host(&self, container: u32) -> Option<u32> {
        if self.entries.is_empty() {
            return Some(container);
        }
        self.entries.iter().find_map(|e| {
            let off = container.checked_sub(e.container_id)?;
            (off < e.size).then(|| e.host_id + off)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(c: u32, h: u32, s: u32) -> IdMapEntry {
        IdMapEntry {
            container_id: c,
            host_id: h,
            size: s,
        }
    }

    #[test]
    fn identity_maps_everything() {
        let m = IdMap::identity();
        assert_eq!(m.host_to_container(0), Some(0));
        assert_eq!(m.container_to_host(u32::MAX), Some(u32::MAX));
        assert_eq!(IdMap::new(vec![]).unwrap(), m);
    }

    #[test]
    fn maps_ranges() {
        let m = IdMap::new(vec![e(0, 100_000, 65536), e(65536, 5000, 10)]).unwrap();
        assert_eq!(m.host_to_container(101_000), Some(1000));
        assert_eq!(m.container_to_host(1000), Some(101_000));
        assert_eq!(m.container_to_host(65535), Some(165_535));
        assert_eq!(m.container_to_host(65536), Some(5000));
        assert_eq!(m.container_to_host(65546), None);
        assert_eq!(m.host_to_container(99_999), None);
        assert_eq!(m.host_to_container(165_536), None);
        assert_eq!(m.host_to_container(5009), Some(65545));
    }

    #[test]
    fn rejects_invalid() {
        assert!(IdMap::new(vec![e(0, 0, 0)]).is_err());
        assert!(IdMap::new(vec![e(u32::MAX, 0, 2)]).is_err());
        assert!(IdMap::new(vec![e(0, u32::MAX, 2)]).is_err());
        assert!(IdMap::new(vec![e(0, 0, 1 << 31), e(0, 1 << 31, 1)]).is_err());
        assert!(IdMap::new(vec![e(0, 10, 10), e(10, 19, 5)]).is_err());
        assert!(IdMap::new(vec![e(u32::MAX, 0, 1)]).is_ok());
        assert!(IdMap::new(vec![e(0, 10, 10), e(10, 20, 5)]).is_ok());
    }
}
