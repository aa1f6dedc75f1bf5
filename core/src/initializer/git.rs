//! The git initializer. Requests are validated here already (so a bad one is INVALID_ARGUMENT);
//! cloning itself comes with the git issue, and until then a git initializer answers UNIMPLEMENTED
//! before anything is created, never a silent success.

use wsd_proto::contentservice::{CloneTargetMode, GitAuthMethod, GitInitializer};

use super::InitContext;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct GitPlan {
    pub remote_uri: String,
    pub target_mode: CloneTargetMode,
}

impl GitPlan {
    pub fn from_request(g: &GitInitializer) -> Result<GitPlan> {
        if g.remote_uri.is_empty() {
            return Err(Error::InvalidArgument(
                "git initializer: remote_uri is required".into(),
            ));
        }
        let target_mode = CloneTargetMode::try_from(g.target_mode).map_err(|_| {
            Error::InvalidArgument(format!(
                "git initializer: unknown clone mode {}",
                g.target_mode
            ))
        })?;
        let config = g
            .config
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("git initializer: config is required".into()))?;
        GitAuthMethod::try_from(config.authentication).map_err(|_| {
            Error::InvalidArgument(format!(
                "git initializer: unknown authentication method {}",
                config.authentication
            ))
        })?;
        if matches!(
            target_mode,
            CloneTargetMode::RemoteCommit
                | CloneTargetMode::RemoteBranch
                | CloneTargetMode::LocalBranch
        ) && g.clone_taget.is_empty()
        {
            return Err(Error::InvalidArgument(
                "git initializer: clone_taget is required for this clone mode".into(),
            ));
        }
        crate::beneath::relative_request_path("checkout_location", &g.checkout_location)?;
        Ok(GitPlan {
            remote_uri: g.remote_uri.clone(),
            target_mode,
        })
    }

    pub fn check_supported(&self) -> Result<()> {
        Err(Error::Unimplemented(
            "the git initializer is not available in this version of the daemon; use a snapshot, backup or download initializer".into(),
        ))
    }

    pub async fn run(&self, _ctx: &InitContext) -> Result<()> {
        self.check_supported()
    }

    pub async fn update_prebuild(&self, _ctx: &InitContext) -> Result<()> {
        self.check_supported()
    }
}
