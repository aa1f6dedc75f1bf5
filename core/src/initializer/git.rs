//! The git initializer, with the `git` command-line client as the engine: the four clone modes,
//! shallow or full, an `upstream` remote, submodules, custom config, basic and one-time-secret
//! auth, bounded retries of transient failures; and the prebuild update of an existing checkout.
//! Requests are checked by `crate::git::safety` before git runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use wsd_proto::contentservice::{CloneTargetMode, GitAuthMethod, GitInitializer};

use super::InitContext;
use crate::config::GitSettings;
use crate::confine;
use crate::error::{Error, Result};
use crate::git::checkout;
use crate::git::command::{redact, Credentials, Output};
use crate::git::safety;
use crate::retry::{self, Policy};

#[derive(Debug, Clone)]
enum Auth {
    None,
    Basic(Credentials),
    /// URL answering `user:password` once.
    OneTimeSecret(String),
}

#[derive(Debug, Clone)]
pub struct GitPlan {
    remote_uri: String,
    upstream: Option<String>,
    mode: CloneTargetMode,
    target: String,
    checkout: PathBuf,
    full_clone: bool,
    custom_config: Vec<(String, String)>,
    auth: Auth,
}

/// A failure of one clone attempt: transient ones (network errors, server errors) are retried.
type Attempt = retry::Failure;

/// The error for the caller, with every credential removed from its message.
fn into_error(failure: Attempt, creds: Option<&Credentials>) -> Error {
    let e = match failure {
        Attempt::Final(e) => e,
        Attempt::Transient(why) => Error::InitFailed(why),
    };
    redact_error(e, creds)
}

/// A repository URL for messages: without user info, query or fragment.
fn shown(url: &str) -> String {
    crate::url_text::for_messages(url)
}

impl GitPlan {
    pub fn from_request(g: &GitInitializer) -> Result<GitPlan> {
        let mode = CloneTargetMode::try_from(g.target_mode).map_err(|_| {
            Error::InvalidArgument(format!(
                "git initializer: unknown clone mode {}",
                g.target_mode
            ))
        })?;
        let config = g
            .config
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("git initializer: config is required".into()))?;
        let auth = match GitAuthMethod::try_from(config.authentication) {
            Ok(GitAuthMethod::NoAuth) => Auth::None,
            Ok(GitAuthMethod::BasicAuth) => {
                let (protocol, host) = safety::scheme_and_host(&g.remote_uri).unwrap_or_default();
                Auth::Basic(Credentials {
                    user: config.auth_user.clone(),
                    password: config.auth_password.clone(),
                    protocol,
                    host,
                })
            }
            Ok(GitAuthMethod::BasicAuthOts) => {
                if config.auth_ots.is_empty() {
                    return Err(Error::InvalidArgument(
                        "git initializer: auth_ots is required for BASIC_AUTH_OTS".into(),
                    ));
                }
                Auth::OneTimeSecret(config.auth_ots.clone())
            }
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "git initializer: unknown authentication method {}",
                    config.authentication
                )))
            }
        };
        if mode != CloneTargetMode::RemoteHead && g.clone_taget.is_empty() {
            return Err(Error::InvalidArgument(
                "git initializer: clone_taget is required for this clone mode".into(),
            ));
        }
        safety::check_value("clone_taget", &g.clone_taget)?;
        let mut custom_config: Vec<(String, String)> = config
            .custom_config
            .iter()
            .map(|(k, v)| safety::check_config(k, v).map(|_| (k.clone(), v.clone())))
            .collect::<Result<_>>()?;
        custom_config.sort();
        Ok(GitPlan {
            remote_uri: g.remote_uri.clone(),
            upstream: (!g.upstream_remote_uri.is_empty()).then(|| g.upstream_remote_uri.clone()),
            mode,
            target: g.clone_taget.clone(),
            checkout: confine::relative_request_path("checkout_location", &g.checkout_location)?,
            full_clone: g.full_clone,
            custom_config,
            auth,
        })
    }

    pub fn checkout(&self) -> &Path {
        &self.checkout
    }

    /// Checks the URLs against the daemon's transport allow-list.
    pub fn validate(&self, settings: &GitSettings) -> Result<()> {
        safety::check_url("remote_uri", &self.remote_uri, &settings.allowed_transports)?;
        if let Some(up) = &self.upstream {
            safety::check_url("upstream_Remote_uri", up, &settings.allowed_transports)?;
        }
        if let Auth::OneTimeSecret(url) = &self.auth {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(Error::InvalidArgument(
                    "git initializer: auth_ots must be an http(s) URL".into(),
                ));
            }
        }
        Ok(())
    }

    /// Fetches one-time-secret credentials once (bounded retries of network errors and 5xx
    /// answers; any other answer is final: the secret can be used only once).
    async fn credentials(&self, ctx: &InitContext) -> Result<Option<Credentials>> {
        let url = match &self.auth {
            Auth::None => return Ok(None),
            Auth::Basic(c) => return Ok(Some(c.clone())),
            Auth::OneTimeSecret(url) => url,
        };
        let policy = Policy::with_attempts(ctx.tools.git_settings.ots_attempts);
        retry::run(&policy, |_| self.fetch_ots(ctx, url), |_, _| {})
            .await
            .map(Some)
            .map_err(|failure| match failure {
                Attempt::Final(e) => e,
                Attempt::Transient(last) => Error::InitFailed(format!(
                    "cannot fetch the one-time secret after {} attempts: {last}",
                    policy.attempts
                )),
            })
    }

    /// One attempt at the one-time secret behind `url`.
    async fn fetch_ots(
        &self,
        ctx: &InitContext,
        url: &str,
    ) -> std::result::Result<Credentials, Attempt> {
        let r = match ctx.tools.http.get(url).send().await {
            Ok(r) => r,
            Err(e) => return Err(Attempt::Transient(e.without_url().to_string())),
        };
        if r.status().is_server_error() {
            return Err(Attempt::Transient(format!("HTTP {}", r.status())));
        }
        if !r.status().is_success() {
            return Err(Attempt::Final(Error::InitFailed(format!(
                "cannot fetch the one-time secret: HTTP {} (it can be used only once)",
                r.status()
            ))));
        }
        let body = r.text().await.map_err(|e| {
            Attempt::Final(Error::InitFailed(format!(
                "cannot read the one-time secret: {}",
                e.without_url()
            )))
        })?;
        let (user, password) = body.trim_end().split_once(':').ok_or_else(|| {
            Attempt::Final(Error::InitFailed(
                "the one-time secret is not of the form user:password".into(),
            ))
        })?;
        let (protocol, host) = safety::scheme_and_host(&self.remote_uri).unwrap_or_default();
        Ok(Credentials {
            user: user.to_string(),
            password: password.to_string(),
            protocol,
            host,
        })
    }

    async fn git(
        &self,
        ctx: &InitContext,
        cwd: &Path,
        args: &[&str],
        creds: Option<&Credentials>,
    ) -> std::result::Result<Output, Attempt> {
        ctx.tools
            .git
            .run(cwd, args, creds)
            .await
            .map_err(|e| Attempt::Final(Error::InitFailed(format!("git: {e}"))))
    }

    /// Classifies a failed git command.
    fn failed(&self, what: &str, out: &Output) -> Attempt {
        let err = out.stderr.trim();
        let lower = err.to_ascii_lowercase();
        let url = shown(&self.remote_uri);
        if lower.contains("authentication failed")
            || lower.contains("could not read username")
            || lower.contains("could not read password")
            || lower.contains("returned error: 401")
            || lower.contains("returned error: 403")
        {
            return Attempt::Final(Error::InitFailed(format!(
                "git authentication failed for {url}: check the credentials (not retried)"
            )));
        }
        if lower.contains("not found")
            || lower.contains("returned error: 404")
            || lower.contains("does not appear to be a git repository")
        {
            return Attempt::Final(Error::InitFailed(format!(
                "repository {url} does not exist or is not accessible (not retried): {}",
                last_line(err)
            )));
        }
        Attempt::Transient(format!("{what} failed: {}", last_line(err)))
    }

    /// Runs one git command that must succeed, with its failure as the caller's error.
    async fn step(
        &self,
        ctx: &InitContext,
        cwd: &Path,
        creds: Option<&Credentials>,
        what: &'static str,
        args: &[&str],
    ) -> Result<Output> {
        self.must(ctx, cwd, what, args, creds)
            .await
            .map_err(|a| into_error(a, creds))
    }

    async fn must(
        &self,
        ctx: &InitContext,
        cwd: &Path,
        what: &str,
        args: &[&str],
        creds: Option<&Credentials>,
    ) -> std::result::Result<Output, Attempt> {
        let out = self.git(ctx, cwd, args, creds).await?;
        if out.success {
            Ok(out)
        } else {
            Err(self.failed(what, &out))
        }
    }

    /// Clones into `<content>/<checkout_location>`; a checkout that is already a working copy is
    /// left as it is.
    pub async fn run(&self, ctx: &InitContext) -> Result<()> {
        let creds = self.credentials(ctx).await?;
        self.run_with(ctx, creds).await
    }

    async fn run_with(&self, ctx: &InitContext, creds: Option<Credentials>) -> Result<()> {
        let started = Instant::now();
        let target = ctx.content.join(&self.checkout);
        // Looked at inside the content folder without following symlinks planted in the tree.
        let found = checkout::prepare_clone(&ctx.content, &self.checkout).await?;
        // A folder that was there before (content of an earlier initializer of a composite, or
        // the content root) is never removed: only what the failed attempt wrote.
        let partial = match found {
            checkout::Found::WorkingCopy => {
                tracing::info!(checkout = %self.checkout.display(), "checkout is already a working copy; left as it is");
                return Ok(());
            }
            checkout::Found::Folder => target.join(".git"),
            checkout::Found::Nothing => target.clone(),
        };
        let policy = Policy::with_attempts(ctx.tools.git_settings.clone_attempts);
        let url = shown(&self.remote_uri);
        let (partial, creds) = (&partial, creds.as_ref());
        let cloned = retry::run(
            &policy,
            |attempt| async move {
                if attempt > 1 {
                    remove_partial(partial).await;
                }
                self.clone_once(ctx, creds).await
            },
            |attempt, why| tracing::warn!(url = %url, attempt, error = %why, "git clone failed; retrying"),
        )
        .await;
        match cloned {
            Ok(()) => {
                ctx.record("git", started, 0);
                Ok(())
            }
            Err(failure) => {
                remove_partial(partial).await;
                let e = match failure {
                    Attempt::Final(e) => e,
                    Attempt::Transient(last) => Error::InitFailed(format!(
                        "cannot clone {url} after {} attempts: {last}",
                        policy.attempts
                    )),
                };
                Err(redact_error(e, creds))
            }
        }
    }

    async fn clone_once(
        &self,
        ctx: &InitContext,
        creds: Option<&Credentials>,
    ) -> std::result::Result<(), Attempt> {
        // git runs in the content folder and is given the checkout relative to it, so its messages
        // (which reach the caller) name the checkout, not the node's folders.
        let target_str = match self.checkout.to_str() {
            Some("") => ".",
            Some(relative) => relative,
            None => {
                return Err(Attempt::Final(Error::InvalidArgument(
                    "checkout_location is not valid UTF-8".into(),
                )))
            }
        };
        let content = &ctx.content;
        let target = &content.join(&self.checkout);
        let depth: &[&str] = if self.full_clone { &[] } else { &["--depth=1"] };
        let config_args: Vec<String> = self
            .custom_config
            .iter()
            .flat_map(|(k, v)| ["--config".to_string(), format!("{k}={v}")])
            .collect();
        let config_args: Vec<&str> = config_args.iter().map(String::as_str).collect();

        if self.mode == CloneTargetMode::RemoteCommit {
            let mut init: Vec<&str> = vec!["init", "--quiet"];
            init.extend(["--", target_str]);
            self.must(ctx, content, "git init", &init, creds).await?;
            for (k, v) in &self.custom_config {
                self.must(ctx, target, "git config", &["config", "--", k, v], creds)
                    .await?;
            }
            self.must(
                ctx,
                target,
                "git remote add",
                &["remote", "add", "origin", "--", &self.remote_uri],
                creds,
            )
            .await?;
            let mut fetch = vec!["fetch", "--quiet"];
            fetch.extend(depth);
            fetch.extend(["origin", "--", &self.target]);
            if self
                .must(ctx, target, "git fetch", &fetch, creds)
                .await
                .is_err()
            {
                // Servers that refuse fetching a commit by id: fetch everything instead.
                self.must(
                    ctx,
                    target,
                    "git fetch",
                    &["fetch", "--quiet", "origin"],
                    creds,
                )
                .await?;
            }
            self.must(
                ctx,
                target,
                "git checkout",
                &["checkout", "--quiet", "--detach", &self.target, "--"],
                creds,
            )
            .await
            .map_err(|_| {
                Attempt::Final(Error::InitFailed(format!(
                    "commit {} does not exist in {}",
                    self.target,
                    shown(&self.remote_uri)
                )))
            })?;
        } else {
            let mut branch_exists = true;
            if self.mode == CloneTargetMode::RemoteBranch {
                let refname = format!("refs/heads/{}", self.target);
                let out = self
                    .git(
                        ctx,
                        content,
                        &[
                            "ls-remote",
                            "--exit-code",
                            "--heads",
                            "--",
                            &self.remote_uri,
                            &refname,
                        ],
                        creds,
                    )
                    .await?;
                if !out.success {
                    if out.stderr.trim().is_empty() {
                        branch_exists = false;
                    } else {
                        return Err(self.failed("git ls-remote", &out));
                    }
                }
            }
            let mut clone: Vec<&str> = vec!["clone", "--quiet"];
            clone.extend(depth);
            clone.extend(config_args.iter().copied());
            if self.mode == CloneTargetMode::RemoteBranch && branch_exists {
                clone.extend(["--branch", &self.target]);
            }
            clone.extend(["--", &self.remote_uri, target_str]);
            self.must(ctx, content, "git clone", &clone, creds).await?;
            let new_branch = match self.mode {
                CloneTargetMode::LocalBranch => true,
                CloneTargetMode::RemoteBranch => !branch_exists,
                _ => false,
            };
            if new_branch {
                self.must(
                    ctx,
                    target,
                    "git checkout",
                    &["checkout", "--quiet", "-b", &self.target],
                    creds,
                )
                .await?;
            }
        }

        if let Some(upstream) = &self.upstream {
            self.must(
                ctx,
                target,
                "git remote add",
                &["remote", "add", "upstream", "--", upstream],
                creds,
            )
            .await?;
            let mut fetch = vec!["fetch", "--quiet"];
            fetch.extend(depth);
            fetch.push("upstream");
            self.must(ctx, target, "git fetch upstream", &fetch, creds)
                .await?;
        }
        if checkout::has_gitmodules_file(content, &self.checkout)
            .await
            .map_err(Attempt::Final)?
        {
            let mut sub = vec!["submodule", "update", "--init", "--recursive", "--quiet"];
            sub.extend(depth);
            self.must(ctx, target, "git submodule update", &sub, creds)
                .await?;
        }
        Ok(())
    }

    /// Brings a checkout restored from a prebuild to the requested revision, keeping local changes
    /// (stash, update, pop). On a conflict the requested revision wins and the stash is kept.
    /// Returns whether the prebuild was outdated (had to move).
    pub async fn update_prebuild(&self, ctx: &InitContext) -> Result<bool> {
        let creds = self.credentials(ctx).await?;
        let target = ctx.content.join(&self.checkout);
        let trusted = crate::git::is_trusted_checkout(&ctx.tools.git, &ctx.content, &self.checkout)
            .await
            .map_err(|e| Error::InitFailed(format!("cannot inspect the prebuild checkout: {e}")))?;
        if !trusted {
            if checkout::has_git_entry(&ctx.content, &self.checkout).await? {
                return Err(Error::InitFailed(format!(
                    "the prebuild checkout {} is not a plain git working copy or its config could run commands",
                    self.checkout.display()
                )));
            }
            // The prebuild has no checkout here: clone it (with the credentials fetched above).
            self.run_with(ctx, creds).await?;
            return Ok(true);
        }
        let creds = creds.as_ref();
        // Every command here must succeed; failures become the caller's error.
        macro_rules! step {
            ($what:expr, $args:expr) => {
                self.step(ctx, &target, creds, $what, $args)
            };
        }
        let head = |out: Output| String::from_utf8_lossy(&out.stdout).trim().to_string();
        let before = head(step!("git rev-parse", &["rev-parse", "HEAD"]).await?);
        let status = step!("git status", &["status", "--porcelain"]).await?;
        let dirty = !status.stdout.is_empty();
        if dirty {
            let stash = ["stash", "push", "--include-untracked", "--quiet"];
            step!("git stash", &stash).await?;
        }
        let revision = match self.mode {
            CloneTargetMode::RemoteHead => "HEAD",
            _ => self.target.as_str(),
        };
        let mut fetch = vec!["fetch", "--quiet"];
        if !self.full_clone {
            fetch.push("--depth=1");
        }
        fetch.extend(["origin", "--", revision]);
        step!("git fetch", &fetch).await?;
        let checkout = ["checkout", "--quiet", "--force", "FETCH_HEAD"];
        step!("git checkout", &checkout).await?;
        if matches!(
            self.mode,
            CloneTargetMode::RemoteBranch | CloneTargetMode::LocalBranch
        ) {
            let branch = ["checkout", "--quiet", "-B", self.target.as_str()];
            step!("git checkout", &branch).await?;
        }
        if dirty
            && step!("git stash pop", &["stash", "pop", "--quiet"])
                .await
                .is_err()
        {
            // The requested revision wins: undo the half-applied stash, keep it in the list.
            let _ = step!("git reset", &["reset", "--hard", "--quiet"]).await;
            let _ = step!("git clean", &["clean", "-fdq"]).await;
            tracing::warn!(checkout = %self.checkout.display(), "local changes of the prebuild conflict with the requested revision; they stay in the stash");
        }
        let after = head(step!("git rev-parse", &["rev-parse", "HEAD"]).await?);
        Ok(after != before)
    }
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no detail")
        .trim()
}

fn redact_error(e: Error, creds: Option<&Credentials>) -> Error {
    match (e, creds) {
        (Error::InitFailed(m), Some(c)) => Error::InitFailed(redact(&m, c)),
        (e, _) => e,
    }
}

async fn remove_partial(target: &Path) {
    let target = target.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(target)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_urls_have_no_credentials() {
        assert_eq!(
            shown("https://u:secret@h.example/o/r.git"),
            "https://h.example/o/r.git"
        );
        assert_eq!(shown("git@h:o/r.git"), "git@h:o/r.git");
        assert_eq!(
            shown("https://h.example/o/r.git?access_token=t0k"),
            "https://h.example/o/r.git"
        );
    }
}
