//! What a git initializer request may ask for: values that git would read as options, transports
//! that run commands or read the node's files, and config keys that run commands are refused with
//! INVALID_ARGUMENT before git is started.

use crate::error::{Error, Result};

fn refuse(what: &str, why: &str) -> Error {
    Error::InvalidArgument(format!("git initializer: {what} {why}"))
}

/// A value that ends up as a git argument: never option-like, never multi-line.
pub fn check_value(field: &str, value: &str) -> Result<()> {
    if value.starts_with('-') {
        return Err(refuse(field, "must not start with '-'"));
    }
    if value.chars().any(|c| c == '\0' || c == '\n' || c == '\r') {
        return Err(refuse(field, "must not contain NUL or line breaks"));
    }
    Ok(())
}

/// The transport of a repository URL: `https`, `ssh` (also `user@host:path`), `file` for local
/// paths, or the URL scheme; `ext::`/`fd::` style helpers are named by their prefix.
pub fn transport(url: &str) -> String {
    if let Some((scheme, _)) = url.split_once("://") {
        return scheme.to_ascii_lowercase();
    }
    if let Some((helper, _)) = url.split_once("::") {
        return helper.to_ascii_lowercase();
    }
    // scp-like syntax: [user@]host:path, where host has no slash before the colon.
    if let Some((host, _)) = url.split_once(':') {
        if !host.contains('/') && !host.is_empty() {
            return "ssh".to_string();
        }
    }
    "file".to_string()
}

/// Scheme and host (with port) of a URL such as `https://user@host:8080/path`; `None` for
/// scp-like or local paths.
pub fn scheme_and_host(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some((scheme.to_ascii_lowercase(), host.to_string()))
}

/// Checks a repository URL against the allow-list.
pub fn check_url(field: &str, url: &str, allowed: &[String]) -> Result<()> {
    check_value(field, url)?;
    if url.is_empty() {
        return Err(refuse(field, "is required"));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
        // A password, or any user part of an http(s) URL (often a token), would reach git's argv.
        let http = scheme.to_ascii_lowercase().starts_with("http");
        if userinfo.is_some_and(|u| u.contains(':') || http) {
            return Err(refuse(
                field,
                "must not contain credentials: pass them in config (auth_user, auth_password)",
            ));
        }
    }
    let t = transport(url);
    if t == "ext" || t == "fd" {
        return Err(refuse(
            field,
            "uses a transport that runs commands (ext::, fd::)",
        ));
    }
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&t)) {
        return Err(refuse(
            field,
            &format!(
                "uses transport {t:?}, which is not allowed here (allowed: {})",
                allowed.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Config keys that make git run a command, read other files or redirect fetches. Matched case
/// insensitively against the whole key, its first section, or its last part.
const DANGEROUS_SECTIONS: &[&str] = &[
    "alias",
    "credential",
    "filter",
    "include",
    "includeif",
    "protocol",
    "url",
    "sequence",
    "gpg",
    "uploadpack",
    "receive",
    "transfer",
    "ssh",
];
const DANGEROUS_KEYS: &[&str] = &[
    "core.sshcommand",
    "core.fsmonitor",
    "core.hookspath",
    "core.pager",
    "core.editor",
    "core.askpass",
    "core.gitproxy",
    "core.alternaterefscommand",
    "core.worktree",
    "core.attributesfile",
    "core.excludesfile",
    "http.proxy",
    "https.proxy",
    "http.cookiefile",
    "http.sslkey",
    "http.sslcert",
    "http.sslcainfo",
    "http.sslcapath",
    "init.templatedir",
    "safe.directory",
    "status.showuntrackedfiles",
];
const DANGEROUS_SUFFIXES: &[&str] = &[
    "helper",
    "command",
    "textconv",
    "program",
    "uploadpack",
    "receivepack",
    "proxycommand",
    "cmd",
    "tool",
    "driver",
    "hook",
];

pub fn check_config(key: &str, value: &str) -> Result<()> {
    check_value("custom_config key", key)?;
    check_value(&format!("custom_config value of {key}"), value)?;
    let valid_shape = key.contains('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if !valid_shape {
        return Err(refuse(
            &format!("custom_config key {key:?}"),
            "is not a plain section.name key",
        ));
    }
    check_config_key(key)
}

/// The key half of [`check_config`]: also used on the config a repository brings along, whose
/// subsections (`submodule.<path>.url`) may hold any character.
pub fn check_config_key(key: &str) -> Result<()> {
    let lower = key.to_ascii_lowercase();
    let section = lower.split('.').next().unwrap_or_default();
    let last = lower.rsplit('.').next().unwrap_or_default();
    if DANGEROUS_SECTIONS.contains(&section)
        || DANGEROUS_KEYS.contains(&lower.as_str())
        || DANGEROUS_SUFFIXES.iter().any(|s| last.ends_with(s))
    {
        return Err(refuse(
            &format!("custom_config key {key:?}"),
            "could run commands or read files on the node and is not allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        ["https", "http", "ssh", "git"].map(String::from).to_vec()
    }

    #[test]
    fn transports_are_recognized() {
        assert_eq!(transport("https://h/r.git"), "https");
        assert_eq!(transport("git@github.com:o/r.git"), "ssh");
        assert_eq!(transport("/srv/repo"), "file");
        assert_eq!(transport("./repo"), "file");
        assert_eq!(transport("file:///srv/repo"), "file");
        assert_eq!(transport("ext::sh -c touch% /tmp/x"), "ext");
        assert_eq!(transport("fd::3"), "fd");
    }

    #[test]
    fn urls_outside_the_allow_list_are_refused() {
        assert!(check_url("remote_uri", "https://h/r.git", &allowed()).is_ok());
        assert!(check_url("remote_uri", "git@h:r.git", &allowed()).is_ok());
        assert!(check_url("remote_uri", "https://token@h/r.git", &allowed()).is_err());
        assert!(check_url("remote_uri", "ssh://git@h/r.git", &allowed()).is_ok());
        assert!(check_url("remote_uri", "https://u:secret@h/r.git", &allowed()).is_err());
        assert_eq!(
            scheme_and_host("https://u@h.example:8443/o/r.git"),
            Some(("https".into(), "h.example:8443".into()))
        );
        for bad in [
            "/etc",
            "file:///etc",
            "ext::sh -c id",
            "fd::7",
            "--upload-pack=id",
            "",
            "https://h/\nx",
        ] {
            assert!(check_url("remote_uri", bad, &allowed()).is_err(), "{bad:?}");
        }
        let with_file = ["https", "file"].map(String::from).to_vec();
        assert!(check_url("remote_uri", "/srv/repo", &with_file).is_ok());
    }

    #[test]
    fn config_that_runs_commands_is_refused() {
        for ok in [
            ("core.autocrlf", "input"),
            ("user.name", "A B"),
            ("pull.rebase", "true"),
            ("http.postBuffer", "524288000"),
        ] {
            assert!(check_config(ok.0, ok.1).is_ok(), "{ok:?}");
        }
        for bad in [
            "core.sshCommand",
            "core.fsmonitor",
            "credential.helper",
            "credential.https://h.helper",
            "filter.lfs.clean",
            "diff.x.textconv",
            "url.file:///.insteadOf",
            "include.path",
            "includeIf.gitdir:/.path",
            "core.hooksPath",
            "remote.origin.uploadpack",
            "alias.x",
            "gpg.program",
            "core.pager",
            "-c",
            "nodot",
        ] {
            assert!(check_config(bad, "x").is_err(), "{bad}");
        }
        assert!(check_config("user.name", "-x").is_err());
    }
}
