//! Where archives live: bucket + object key, the qualified name `object@bucket` that the API hands
//! out, and the naming scheme of the behaviour spec.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectLocation {
    pub bucket: String,
    pub key: String,
}

impl ObjectLocation {
    /// `object@bucket`, as returned by TakeSnapshot and BackupWorkspace.
    pub fn qualified(&self) -> String {
        format!("{}@{}", self.key, self.bucket)
    }

    /// Parses a qualified name from a request. The key must be a relative object name without `.`
    /// or `..` segments; the bucket a plain bucket name.
    pub fn parse_qualified(name: &str) -> Result<ObjectLocation> {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "snapshot name {name:?} is not a qualified name object@bucket: {why}"
            )))
        };
        let Some((key, bucket)) = name.rsplit_once('@') else {
            return bad("missing @bucket");
        };
        if !is_valid_bucket(bucket) {
            return bad("invalid bucket name");
        }
        if !is_valid_key(key) {
            return bad("invalid object name");
        }
        Ok(ObjectLocation {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

/// Bucket names as S3, GCS and folder names all accept them.
pub fn is_valid_bucket(bucket: &str) -> bool {
    !bucket.is_empty()
        && bucket.len() <= 222
        && !bucket.starts_with(['.', '-'])
        && bucket != "."
        && bucket != ".."
        && bucket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1024
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
        })
}

/// Object key of the full backup of a workspace, without the owner prefix of the shared layout.
pub fn full_backup_key(meta_id: &str, extension: &str) -> String {
    format!("workspaces/{meta_id}/full.{extension}")
}

/// Object key of a snapshot taken at `unix_nanos`.
pub fn snapshot_key(meta_id: &str, unix_nanos: u128, extension: &str) -> String {
    format!("workspaces/{meta_id}/snapshot-{unix_nanos}.{extension}")
}

/// Object key of one log file of an instance.
pub fn log_key(meta_id: &str, instance_id: &str, task: &str) -> String {
    format!("workspaces/{meta_id}/instances/{instance_id}/logs/{task}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_round_trip() {
        let loc = ObjectLocation {
            bucket: "gitpod-user-u1".into(),
            key: full_backup_key("m1", "tar.zst"),
        };
        assert_eq!(loc.qualified(), "workspaces/m1/full.tar.zst@gitpod-user-u1");
        assert_eq!(
            ObjectLocation::parse_qualified(&loc.qualified()).ok(),
            Some(loc)
        );
    }

    #[test]
    fn hostile_qualified_names_are_refused() {
        for name in [
            "",
            "no-bucket",
            "a@",
            "@b",
            "../x@b",
            "a/../../x@b",
            "/abs@b",
            "a//b@b",
            "a@../b",
            "a@b/c",
            "a@.",
            "a b@b",
        ] {
            assert!(ObjectLocation::parse_qualified(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn names_follow_the_spec_layout() {
        assert_eq!(snapshot_key("m", 17, "tar"), "workspaces/m/snapshot-17.tar");
        assert_eq!(
            log_key("m", "i", "prebuild-log-0"),
            "workspaces/m/instances/i/logs/prebuild-log-0"
        );
    }
}
