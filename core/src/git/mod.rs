//! The git side of the daemon: running the git client safely, checking requests, and reading the
//! status of a checkout.

pub mod command;
pub mod safety;
pub mod status;

use std::path::Path;

use wsd_proto::contentservice::GitStatus;

pub use command::Git;

/// The status of the checkout at `checkout`, or `None` when it is not a git working copy.
pub async fn status_of(git: &Git, checkout: &Path) -> std::io::Result<Option<GitStatus>> {
    if !checkout.join(".git").exists() {
        return Ok(None);
    }
    let out = git
        .run(
            checkout,
            &[
                "status",
                "--porcelain=v2",
                "--branch",
                "-z",
                "--untracked-files=all",
            ],
            None,
        )
        .await?;
    if !out.success {
        tracing::warn!(error = %out.stderr.trim(), "git status failed; no status reported");
        return Ok(None);
    }
    let mut status = status::parse_porcelain_v2(&out.stdout);
    let log = git
        .run(
            checkout,
            &[
                "log",
                "--format=%h: %s",
                "-z",
                "-n",
                "100",
                "--branches",
                "--not",
                "--remotes",
            ],
            None,
        )
        .await?;
    let count = git
        .run(
            checkout,
            &["rev-list", "--count", "--branches", "--not", "--remotes"],
            None,
        )
        .await?;
    if log.success && count.success {
        let total = String::from_utf8_lossy(&count.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        status::add_unpushed(&mut status, &log.stdout, total);
    }
    Ok(Some(status))
}
