//! What makes the daemon ready (`/ready`, the gRPC health service).

use serde::{Deserialize, Serialize};

/// `health.*`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Below this much free space in the working area the daemon is not ready.
    pub min_free_bytes: u64,
    /// How long one readiness check (storage, containerd) may take before it counts as failed.
    pub check_timeout_ms: u64,
    /// How often the gRPC health service's status is brought up to date.
    pub interval_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            min_free_bytes: 1 << 30,
            check_timeout_ms: 3000,
            interval_secs: 5,
        }
    }
}

impl HealthConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.check_timeout_ms == 0 || self.interval_secs == 0 {
            return Err(
                "health.check_timeout_ms and health.interval_secs must be at least 1".into(),
            );
        }
        Ok(())
    }
}
