//! Running the `git` command-line client: a clean environment, hooks and command-running config
//! turned off on every call, transports limited to the allow-list, and credentials handed over
//! through a credential helper that reads them from the environment: never in argv.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::config::GitSettings;

/// User and password for one init; never logged, never in argv.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// The URL scheme they are for, e.g. `https`.
    pub protocol: String,
    /// The host (with port) they are for.
    pub host: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// What one git command did.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    /// stderr with every credential replaced.
    pub stderr: String,
}

/// Runs git commands for one daemon.
#[derive(Debug, Clone)]
pub struct Git {
    binary: PathBuf,
    home: PathBuf,
    pass_env: Vec<(String, OsString)>,
    protocol_config: Vec<String>,
    timeout: Duration,
}

/// The credential helper: prints the credentials from the environment of the git process, and only
/// to the protocol and host of the repository they are for (a submodule, upstream or redirect on
/// another host gets nothing).
const CREDENTIAL_HELPER: &str = "credential.helper=!f() { test \"$1\" = get || return 0; p=; h=; while IFS='=' read -r k v; do case \"$k\" in protocol) p=\"$v\";; host) h=\"$v\";; esac; done; test \"$p\" = \"$WSD_GIT_PROTOCOL\" && test \"$h\" = \"$WSD_GIT_HOST\" && printf 'username=%s\\npassword=%s\\n' \"$WSD_GIT_USER\" \"$WSD_GIT_PASSWORD\"; }; f";

impl Git {
    pub fn new(settings: &GitSettings, working_area: &Path) -> Git {
        let home = if settings.home.as_os_str().is_empty() {
            working_area.join(".git-home")
        } else {
            settings.home.clone()
        };
        let pass_env = settings
            .pass_env
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|v| (name.clone(), v)))
            .collect();
        // Deny every transport, then allow the configured ones (git applies this to submodules
        // and redirects too).
        let mut protocol_config = vec!["protocol.allow=never".to_string()];
        for t in &settings.allowed_transports {
            protocol_config.push(format!("protocol.{t}.allow=always"));
        }
        Git {
            binary: settings.binary.clone(),
            home,
            pass_env,
            protocol_config,
            timeout: Duration::from_secs(settings.command_timeout_secs.max(1)),
        }
    }

    /// Runs `git <args>` in `cwd`. A git that cannot be started is an error whose message names
    /// the setting to check (never a host path); a git that fails is an `Output` with
    /// `success == false`.
    pub async fn run(
        &self,
        cwd: &Path,
        args: &[&str],
        credentials: Option<&Credentials>,
    ) -> std::io::Result<Output> {
        tokio::fs::create_dir_all(&self.home).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot create git's home folder (check git.home): {}",
                    e.kind()
                ),
            )
        })?;
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env(
                "GIT_SSH_COMMAND",
                "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
            );
        for (name, value) in &self.pass_env {
            cmd.env(name, value);
        }
        // Hooks never run; config that runs commands is neutralized; no templates.
        for c in [
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "init.templateDir=",
            "safe.directory=*",
            "credential.helper=",
        ] {
            cmd.arg("-c").arg(c);
        }
        for c in &self.protocol_config {
            cmd.arg("-c").arg(c);
        }
        if let Some(c) = credentials {
            cmd.arg("-c")
                .arg(CREDENTIAL_HELPER)
                .env("WSD_GIT_USER", &c.user)
                .env("WSD_GIT_PASSWORD", &c.password)
                .env("WSD_GIT_PROTOCOL", &c.protocol)
                .env("WSD_GIT_HOST", &c.host);
        }
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group, so that stopping git also stops its helpers (remote-https, ssh,
        // index-pack), which would otherwise keep writing into the checkout.
        cmd.process_group(0);
        // std::process in a blocking thread rather than tokio::process, which would install a
        // process-wide SIGCHLD handler inside hosts (Node, Go) that manage their own children.
        let (pid_tx, pid_rx) = tokio::sync::oneshot::channel();
        let waiter = tokio::task::spawn_blocking(move || {
            let child = cmd.spawn().map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start git (check git.binary): {}", e.kind()),
                )
            })?;
            let _ = pid_tx.send(child.id());
            child.wait_with_output()
        });
        // Kills the group if this call is dropped (an init timeout) or times out.
        let mut group = ProcessGroup(pid_rx.await.ok().and_then(|p| i32::try_from(p).ok()));
        let output = match tokio::time::timeout(self.timeout, waiter).await {
            Ok(joined) => {
                group.0 = None;
                joined.map_err(std::io::Error::other)??
            }
            Err(_) => {
                drop(group);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "git took too long and was stopped",
                ));
            }
        };
        let mut stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        if let Some(c) = credentials {
            stderr = redact(&stderr, c);
        }
        Ok(Output {
            success: output.status.success(),
            stdout: output.stdout,
            stderr,
        })
    }
}

/// A running git process group, killed when dropped unless it finished.
struct ProcessGroup(Option<i32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Replaces every credential in `text`.
pub fn redact(text: &str, c: &Credentials) -> String {
    let mut out = text.to_string();
    for secret in [&c.password, &c.user] {
        if !secret.is_empty() {
            out = out.replace(secret.as_str(), "<redacted>");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_git_names_the_setting_to_check_not_a_path() {
        let area = tempfile::tempdir().expect("tempdir");
        let settings = GitSettings {
            binary: area.path().join("no-such-git"),
            ..GitSettings::default()
        };
        let git = Git::new(&settings, area.path());
        let err = git
            .run(area.path(), &["version"], None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("check git.binary"), "{err}");
        assert!(!err.contains(&area.path().display().to_string()), "{err}");
    }
}
