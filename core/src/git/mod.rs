//! The git side of the daemon: running the git client safely, checking requests, and reading the
//! status of a checkout.

pub mod checkout;
pub mod command;
pub mod safety;
pub mod status;

use std::path::Path;

use wsd_proto::contentservice::GitStatus;

pub use command::Git;

/// Checks that `checkout` (relative to `content`) is a working copy this daemon may run git in:
/// no symlink on the way, `.git` a real folder, `.gitmodules` (if any) a regular file (see
/// [`checkout`]), and no repository config that makes git run commands or read other files (the
/// workspace user controls `.git/config`). `Ok(false)` when it is not a working copy or must not
/// be touched (logged).
pub async fn is_trusted_checkout(
    git: &Git,
    content: &Path,
    checkout: &Path,
) -> std::io::Result<bool> {
    let content_dir = content.to_path_buf();
    let rel = checkout.to_path_buf();
    let real = tokio::task::spawn_blocking(move || {
        checkout::is_plain_working_copy(&content_dir, &rel).map_err(std::io::Error::from)
    })
    .await
    .map_err(std::io::Error::other)??;
    if !real {
        return Ok(false);
    }
    let dir = content.join(checkout);
    let out = git
        .run(&dir, &["config", "--list", "--null", "--show-scope"], None)
        .await?;
    if !out.success {
        tracing::warn!(error = %out.stderr.trim(), "cannot read the repository config; git not run");
        return Ok(false);
    }
    // With --null each entry is `scope NUL key LF value NUL`; our own -c settings have scope
    // "command".
    let mut fields = out.stdout.split(|b| *b == 0);
    while let (Some(scope), Some(entry)) = (fields.next(), fields.next()) {
        if scope != b"local" && scope != b"worktree" {
            continue;
        }
        let entry = String::from_utf8_lossy(entry);
        let key = entry.split('\n').next().unwrap_or_default();
        if safety::check_config_key(key).is_err() {
            tracing::warn!(
                key,
                "repository config could run commands; git not run in this checkout"
            );
            return Ok(false);
        }
    }
    Ok(true)
}

/// The status of the checkout at `<content>/<checkout>`, or `None` when it is not a working copy
/// (or not one git may safely run in, see [`is_trusted_checkout`]).
pub async fn status_of(
    git: &Git,
    content: &Path,
    checkout: &Path,
) -> std::io::Result<Option<GitStatus>> {
    if !is_trusted_checkout(git, content, checkout).await? {
        return Ok(None);
    }
    let checkout = content.join(checkout);
    let checkout = checkout.as_path();
    let out = git
        .run(
            checkout,
            &[
                "--no-optional-locks",
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
