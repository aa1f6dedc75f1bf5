//! The rate-limit table of the in-workspace service (behaviour spec), per workspace: some
//! operations run once, some draw from a token bucket, the rest are not limited. Kept in memory:
//! a restarted daemon starts afresh (what the once-only operations do is idempotent underneath).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sync::Mutex;

/// How an operation is limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Unlimited,
    Once,
    /// `burst` calls at once, then one more per `refill`.
    Bucket {
        burst: u32,
        refill: Duration,
    },
}

/// The table of the behaviour spec, by method name; other methods are not limited.
const TABLE: &[(&str, Limit)] = &[
    ("PrepareForUserNS", Limit::Once),
    ("EvacuateCGroup", Limit::Once),
    ("Teardown", Limit::Once),
    ("WriteIDMapping", EVERY_2_5_S),
    ("WipingTeardown", EVERY_2_5_S),
    (
        "WorkspaceInfo",
        Limit::Bucket {
            burst: 4,
            refill: Duration::from_millis(1500),
        },
    ),
];

const EVERY_2_5_S: Limit = Limit::Bucket {
    burst: 4,
    refill: Duration::from_millis(2500),
};

pub fn limit_of(method: &str) -> Limit {
    TABLE
        .iter()
        .find(|(name, _)| *name == method)
        .map_or(Limit::Unlimited, |(_, limit)| *limit)
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The limits of one workspace's current container: a new container starts afresh.
#[derive(Default)]
struct WorkspaceLimits {
    container: i32,
    used_once: HashSet<&'static str>,
    buckets: HashMap<&'static str, Bucket>,
}

#[derive(Default)]
pub struct RateLimits {
    workspaces: Mutex<HashMap<String, WorkspaceLimits>>,
}

impl RateLimits {
    /// Takes one call of `method` for `workspace` (whose container's init is `container`) at
    /// `now`, or refuses it.
    pub fn take(
        &self,
        workspace: &str,
        container: i32,
        method: &'static str,
        now: Instant,
    ) -> Result<()> {
        let limit = limit_of(method);
        if limit == Limit::Unlimited {
            return Ok(());
        }
        let mut all = self.workspaces.lock();
        let limits = all.entry(workspace.to_string()).or_default();
        if limits.container != container {
            *limits = WorkspaceLimits {
                container,
                ..WorkspaceLimits::default()
            };
        }
        match limit {
            Limit::Unlimited => Ok(()),
            Limit::Once => {
                if limits.used_once.insert(method) {
                    Ok(())
                } else {
                    Err(Error::OnlyOnce(method))
                }
            }
            Limit::Bucket { burst, refill } => {
                let bucket = limits.buckets.entry(method).or_insert(Bucket {
                    tokens: f64::from(burst),
                    at: now,
                });
                let earned =
                    now.saturating_duration_since(bucket.at).as_secs_f64() / refill.as_secs_f64();
                bucket.tokens = (bucket.tokens + earned).min(f64::from(burst));
                bucket.at = now;
                if bucket.tokens >= 1.0 {
                    bucket.tokens -= 1.0;
                    Ok(())
                } else {
                    Err(Error::TooManyRequests(method))
                }
            }
        }
    }

    /// Forgets a workspace (disposed).
    pub fn forget(&self, workspace: &str) {
        self.workspaces.lock().remove(workspace);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn once_only_operations_answer_resource_exhausted_the_second_time() {
        let limits = RateLimits::default();
        let now = Instant::now();
        limits.take("a", 7, "PrepareForUserNS", now).expect("first");
        let err = limits
            .take("a", 7, "PrepareForUserNS", now + Duration::from_secs(3600))
            .expect_err("second");
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.to_string().contains("only once"), "{err}");
        limits
            .take("b", 7, "PrepareForUserNS", now)
            .expect("another workspace");
        limits
            .take("a", 7, "Teardown", now)
            .expect("another operation");
        limits.forget("a");
        limits
            .take("a", 7, "PrepareForUserNS", now)
            .expect("after forget");
    }

    #[test]
    fn buckets_allow_a_burst_then_refill_at_their_rate() {
        let limits = RateLimits::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            limits.take("a", 7, "WriteIDMapping", t0).expect("burst");
        }
        let err = limits
            .take("a", 7, "WriteIDMapping", t0)
            .expect_err("empty");
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(err.to_string().contains("too many requests"), "{err}");
        let err = limits
            .take("a", 7, "WriteIDMapping", t0 + Duration::from_millis(2400))
            .expect_err("not yet refilled");
        assert_eq!(err.code(), Code::ResourceExhausted);
        limits
            .take("a", 7, "WriteIDMapping", t0 + Duration::from_millis(2600))
            .expect("one token back");
        // WorkspaceInfo refills faster, and buckets never hold more than the burst.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..4 {
            limits.take("a", 7, "WorkspaceInfo", later).expect("burst");
        }
        assert!(limits.take("a", 7, "WorkspaceInfo", later).is_err());
        limits
            .take("a", 7, "WorkspaceInfo", later + Duration::from_millis(1500))
            .expect("refilled");
    }

    #[test]
    fn the_table_names_methods_of_the_in_workspace_services() {
        let methods = crate::json::api_methods().expect("the contract's methods");
        for (name, _) in TABLE {
            assert!(
                methods
                    .iter()
                    .any(|m| m.service.starts_with("iws.") && m.name == *name),
                "{name} is no in-workspace method: a typo would leave it unlimited"
            );
        }
    }

    #[test]
    fn mounts_are_not_limited() {
        let limits = RateLimits::default();
        let now = Instant::now();
        for _ in 0..1000 {
            limits.take("a", 7, "MountProc", now).expect("unlimited");
        }
    }
}
