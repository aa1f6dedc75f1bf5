//! The NAT of the pair: one nftables table of ours in the container's network namespace, written
//! by the `nft` program (package nftables) in one transaction, so that it is replaced whole and
//! never duplicated, and removed whole.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Plan, CONTAINER_END};
use crate::error::{Error, Result};
use crate::sys::command::in_network_namespace;

/// Our table (family `ip`): nothing else in the container's rule set is touched.
pub const TABLE: &str = "wsd";

/// How long one nft run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where `nft` is looked for after PATH: a daemon started with a user's PATH may lack sbin.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

/// The `nft` program, found on PATH (then in sbin).
#[derive(Debug, Clone)]
pub struct Nft(PathBuf);

impl Nft {
    /// `nft`, or FAILED_PRECONDITION saying what to install.
    pub fn find() -> Result<Nft> {
        Nft::find_in(std::env::var_os("PATH").unwrap_or_default()).ok_or_else(|| {
            Error::KernelRefused(
                "SetupPairVeths sets up NAT with the nft program, which is not installed on the \
                 daemon's machine: install nftables (it was looked for on PATH and in sbin)"
                    .into(),
            )
        })
    }

    fn find_in(path: std::ffi::OsString) -> Option<Nft> {
        use std::os::unix::fs::PermissionsExt;
        std::env::split_paths(&path)
            .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join("nft"))
            .find(|file| {
                std::fs::metadata(file)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .map(Nft)
    }

    /// Runs `nft -f -` with `script` in the network namespace `ns`. Blocking.
    fn run(&self, ns: OwnedFd, script: &str) -> Result<()> {
        let mut command = Command::new(&self.0);
        command
            .args(["-f", "-"])
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        in_network_namespace(&mut command, ns);
        let mut child = command
            .spawn()
            .map_err(|e| Error::KernelRefused(format!("cannot run nft: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A failed write shows as nft's own error below. The script fits in a pipe's buffer.
            let _ = stdin.write_all(script.as_bytes());
        }
        // nft takes milliseconds; one that hangs must not hold every later pair change.
        let deadline = Instant::now() + NFT_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Error::KernelRefused(format!(
                        "nft did not finish the NAT rules of the pair within {} s",
                        NFT_TIMEOUT.as_secs()
                    )));
                }
                Err(e) => return Err(Error::KernelRefused(format!("cannot run nft: {e}"))),
            }
        };
        if status.success() {
            return Ok(());
        }
        let mut said = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut said);
        }
        let first = said
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        Err(Error::KernelRefused(format!(
            "the kernel refused the NAT rules of the pair ({status}): {first}"
        )))
    }

    /// Replaces our table with the rules of `plan`, in one transaction. Blocking.
    pub fn apply(&self, ns: OwnedFd, plan: &Plan) -> Result<()> {
        self.run(ns, &ruleset(plan))
    }

    /// Removes our table; none is success. Blocking.
    pub fn remove(&self, ns: OwnedFd) -> Result<()> {
        // Declaring the table first makes the delete succeed when there was none.
        self.run(
            ns,
            &format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n"),
        )
    }
}

/// The whole table: the inner network masqueraded on its way out, TCP arriving from outside
/// forwarded to the inner address. Declared, deleted and defined again in one input, which nft
/// applies as one transaction: a second call leaves exactly one copy.
pub fn ruleset(plan: &Plan) -> String {
    let (out, inbound) = match &plan.outer {
        Some(name) => (format!("oifname \"{name}\""), format!("iifname \"{name}\"")),
        None => (
            format!("oifname != \"{CONTAINER_END}\""),
            format!("iifname != \"lo\" iifname != \"{CONTAINER_END}\""),
        ),
    };
    format!(
        "table ip {TABLE} {{}}\n\
         delete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {network} {out} masquerade\n\
         \t}}\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\t{inbound} meta l4proto tcp dnat ip to {inner}\n\
         \t}}\n\
         }}\n",
        network = plan.network,
        inner = plan.inner_address(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetworkConfig;

    #[test]
    fn the_table_is_replaced_whole_and_names_the_outer_interface_when_set() {
        let plan = Plan::of(&NetworkConfig::default()).expect("default plan");
        let text = ruleset(&plan);
        assert!(text.starts_with("table ip wsd {}\ndelete table ip wsd\ntable ip wsd {\n"));
        assert!(
            text.contains("ip saddr 10.0.5.0/30 oifname != \"veth0\" masquerade"),
            "{text}"
        );
        assert!(
            text.contains(
                "iifname != \"lo\" iifname != \"veth0\" meta l4proto tcp dnat ip to 10.0.5.2"
            ),
            "{text}"
        );
        let plan = Plan::of(&NetworkConfig {
            cidr: "192.168.7.0/29".into(),
            outer_interface: "eth1".into(),
        })
        .expect("plan");
        let text = ruleset(&plan);
        assert!(
            text.contains("ip saddr 192.168.7.0/29 oifname \"eth1\" masquerade"),
            "{text}"
        );
        assert!(
            text.contains("iifname \"eth1\" meta l4proto tcp dnat ip to 192.168.7.2"),
            "{text}"
        );
    }

    #[test]
    fn a_refusal_says_nfts_first_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("nft");
        std::fs::write(
            &fake,
            "#!/bin/sh\ncat >/dev/null\necho >&2\necho 'Error: Could not process rule: No such file' >&2\necho more >&2\nexit 1\n",
        )
        .expect("write");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // The daemon's own namespace stands in (joining it again changes nothing).
        let ns: OwnedFd = std::fs::File::open("/proc/self/ns/net")
            .expect("netns")
            .into();
        let err = Nft(fake).remove(ns).expect_err("refused");
        assert_eq!(err.code(), crate::Code::FailedPrecondition);
        assert!(
            err.to_string()
                .ends_with(": Error: Could not process rule: No such file"),
            "{err}"
        );
    }

    #[test]
    fn nft_is_found_on_path_or_in_sbin_only_as_an_executable_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = tempfile::tempdir().expect("tempdir");
        let nft = dir.path().join("nft");
        std::fs::write(&nft, "#!/bin/sh\n").expect("write");
        let path = std::env::join_paths([empty.path(), dir.path()]).expect("join");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let found = Nft::find_in(path.clone()).map(|n| n.0);
        assert_ne!(found, Some(nft.clone()), "not executable");
        std::fs::set_permissions(&nft, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(Nft::find_in(path).map(|n| n.0), Some(nft));
        // Relative PATH entries are never used.
        let found = Nft::find_in(".".into()).map(|n| n.0);
        assert!(found.is_none_or(|p| p.is_absolute()));
    }
}
