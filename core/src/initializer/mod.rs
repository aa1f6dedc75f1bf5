//! Initializers: how a workspace content folder is produced from an `InitWorkspaceRequest`.
//!
//! A request's initializer tree is first turned into a [`Plan`], which checks everything that can be
//! checked without touching a file (INVALID_ARGUMENT before any work), then [`run`] executes it into
//! the content folder. One file per initializer kind.

mod download;
mod git;
mod restore;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wsd_proto::contentservice::{workspace_initializer::Spec, WorkspaceInitializer};

use crate::archive::ArchiveOptions;
use crate::config::{DownloadConfig, GitSettings};
use crate::error::{Error, Result};
use crate::git::Git;
use crate::storage::{ObjectLocation, Storage};
use crate::sync::Mutex;

pub use download::DownloadFile;
pub use restore::{find_backup, restore_archive};

/// A validated initializer tree.
#[derive(Debug, Clone)]
pub enum Plan {
    Empty,
    Git(git::GitPlan),
    Snapshot(ObjectLocation),
    Backup {
        checkout: PathBuf,
    },
    Prebuild {
        snapshot: Option<ObjectLocation>,
        git: Vec<git::GitPlan>,
    },
    Composite(Vec<Plan>),
    Download {
        target: PathBuf,
        files: Vec<DownloadFile>,
    },
}

impl Plan {
    /// Validates the request's initializer. A missing initializer is refused.
    pub fn from_request(init: Option<&WorkspaceInitializer>) -> Result<Plan> {
        let spec = init
            .and_then(|i| i.spec.as_ref())
            .ok_or_else(|| Error::InvalidArgument("initializer is required".to_string()))?;
        Plan::from_spec(spec, 0)
    }

    fn from_spec(spec: &Spec, depth: usize) -> Result<Plan> {
        if depth > 16 {
            return Err(Error::InvalidArgument(
                "initializer is nested more than 16 levels deep".to_string(),
            ));
        }
        Ok(match spec {
            Spec::Empty(_) => Plan::Empty,
            Spec::Git(g) => Plan::Git(git::GitPlan::from_request(g)?),
            Spec::Snapshot(s) => {
                if s.from_volume_snapshot {
                    return Err(Error::Unimplemented(
                        "volume snapshots are not supported by this daemon; restore from an archive snapshot".into(),
                    ));
                }
                Plan::Snapshot(ObjectLocation::parse_qualified(&s.snapshot)?)
            }
            Spec::Backup(b) => {
                if b.from_volume_snapshot {
                    return Err(Error::Unimplemented(
                        "volume snapshots are not supported by this daemon; restore from an archive backup".into(),
                    ));
                }
                Plan::Backup {
                    checkout: crate::confine::relative_request_path(
                        "checkout_location",
                        &b.checkout_location,
                    )?,
                }
            }
            Spec::Prebuild(p) => {
                let snapshot = match &p.prebuild {
                    Some(s) if !s.snapshot.is_empty() => {
                        Some(ObjectLocation::parse_qualified(&s.snapshot)?)
                    }
                    _ => None,
                };
                let git = p
                    .git
                    .iter()
                    .map(git::GitPlan::from_request)
                    .collect::<Result<Vec<_>>>()?;
                Plan::Prebuild { snapshot, git }
            }
            Spec::Composite(c) => Plan::Composite(
                c.initializer
                    .iter()
                    .map(|child| {
                        child
                            .spec
                            .as_ref()
                            .ok_or_else(|| {
                                Error::InvalidArgument(
                                    "composite initializer has an empty child".to_string(),
                                )
                            })
                            .and_then(|s| Plan::from_spec(s, depth + 1))
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
            Spec::Download(d) => download::plan(d)?,
        })
    }

    /// Checks what depends on the daemon's configuration (git transports), before anything is
    /// created.
    pub fn validate(&self, git: &GitSettings) -> Result<()> {
        match self {
            Plan::Git(g) => g.validate(git),
            Plan::Prebuild { git: gits, .. } => gits.iter().try_for_each(|g| g.validate(git)),
            Plan::Composite(children) => children.iter().try_for_each(|c| c.validate(git)),
            _ => Ok(()),
        }
    }

    /// The checkout whose git status DisposeWorkspace reports: the first git initializer's (or the
    /// backup initializer's) checkout location.
    pub fn checkout_location(&self) -> Option<PathBuf> {
        match self {
            Plan::Git(g) => Some(g.checkout().to_path_buf()),
            Plan::Prebuild { git, .. } => git.first().map(|g| g.checkout().to_path_buf()),
            Plan::Backup { checkout } => Some(checkout.clone()),
            Plan::Composite(children) => children.iter().find_map(Plan::checkout_location),
            _ => None,
        }
    }
}

/// Where the content came from, as the ready file says.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum InitSource {
    #[serde(rename = "from-other")]
    FromOther,
    #[serde(rename = "from-prebuild")]
    FromPrebuild,
    #[serde(rename = "from-backup")]
    FromBackup,
}

/// One entry of the ready file's `metrics`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InitMetric {
    #[serde(rename = "type")]
    pub kind: String,
    /// Nanoseconds.
    pub duration: u64,
    /// Bytes.
    pub size: u64,
}

/// The daemon-wide things initializers use.
#[derive(Clone)]
pub struct InitTools {
    pub archive: Arc<ArchiveOptions>,
    pub http: reqwest::Client,
    pub download: DownloadConfig,
    pub git: Git,
    pub git_settings: GitSettings,
}

/// Everything an initializer may use.
pub struct InitContext {
    pub content: PathBuf,
    /// `None` when remote storage is disabled for this workspace or not configured.
    pub storage: Option<Arc<Storage>>,
    pub owner: String,
    pub meta_id: String,
    pub tools: InitTools,
    /// Where a restored chunked manifest is kept for the workspace's next backup.
    pub keep_parent: Option<PathBuf>,
    metrics: Mutex<Vec<InitMetric>>,
}

impl InitContext {
    pub fn new(
        content: PathBuf,
        storage: Option<Arc<Storage>>,
        owner: String,
        meta_id: String,
        tools: InitTools,
    ) -> InitContext {
        InitContext {
            content,
            storage,
            owner,
            meta_id,
            tools,
            keep_parent: None,
            metrics: Mutex::new(Vec::new()),
        }
    }

    /// Keeps a restored chunked manifest at `path` (see [`InitContext::keep_parent`]).
    pub fn keeping_parent_at(mut self, path: PathBuf) -> InitContext {
        self.keep_parent = Some(path);
        self
    }

    pub fn record(&self, kind: &str, started: Instant, size: u64) {
        let duration = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.metrics.lock().push(InitMetric {
            kind: kind.to_string(),
            duration,
            size,
        });
    }

    pub fn metrics(&self) -> Vec<InitMetric> {
        self.metrics.lock().clone()
    }
}

/// Runs a plan into `ctx.content`.
pub fn run<'a>(
    plan: &'a Plan,
    ctx: &'a InitContext,
) -> futures::future::BoxFuture<'a, Result<InitSource>> {
    Box::pin(async move {
        match plan {
            Plan::Empty => Ok(InitSource::FromOther),
            Plan::Git(g) => {
                g.run(ctx).await?;
                Ok(InitSource::FromOther)
            }
            Plan::Snapshot(loc) => {
                restore::restore_snapshot(ctx, loc).await?;
                Ok(InitSource::FromOther)
            }
            Plan::Backup { .. } => {
                restore::restore_backup(ctx).await?;
                Ok(InitSource::FromBackup)
            }
            Plan::Prebuild { snapshot, git } => {
                let restored = match snapshot {
                    Some(loc) => restore::restore_prebuild(ctx, loc).await?,
                    None => false,
                };
                if restored {
                    let mut outdated = false;
                    for g in git {
                        outdated |= g.update_prebuild(ctx).await?;
                    }
                    Ok(if outdated {
                        InitSource::FromOther
                    } else {
                        InitSource::FromPrebuild
                    })
                } else {
                    for g in git {
                        g.run(ctx).await?;
                    }
                    Ok(InitSource::FromOther)
                }
            }
            Plan::Composite(children) => {
                let mut source = InitSource::FromOther;
                for child in children {
                    source = source.max(run(child, ctx).await?);
                }
                Ok(source)
            }
            Plan::Download { target, files } => {
                download::run(ctx, target, files).await?;
                Ok(InitSource::FromOther)
            }
        }
    })
}
