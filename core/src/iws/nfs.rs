//! MountNfs requests: the source and the options are checked against an allow-list before the
//! kernel sees them; `nosuid` and `nodev` are forced by the mount itself.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// Options a workspace may pass, with whether they take a value.
const ALLOWED: &[(&str, bool)] = &[
    ("vers", true),
    ("nfsvers", true),
    ("minorversion", true),
    ("proto", true),
    ("port", true),
    ("addr", true),
    ("clientaddr", true),
    ("timeo", true),
    ("retrans", true),
    ("rsize", true),
    ("wsize", true),
    ("acregmin", true),
    ("acregmax", true),
    ("acdirmin", true),
    ("acdirmax", true),
    ("actimeo", true),
    ("nconnect", true),
    ("lookupcache", true),
    ("local_lock", true),
    ("sec", true),
    ("hard", false),
    ("soft", false),
    ("softreval", false),
    ("ro", false),
    ("rw", false),
    ("noac", false),
    ("nocto", false),
    ("noatime", false),
    ("nodiratime", false),
    ("relatime", false),
    ("lock", false),
    ("nolock", false),
    ("noresvport", false),
    ("resvport", false),
];

fn bad(msg: String) -> Error {
    Error::InvalidArgument(format!("MountNfs: {msg}"))
}

/// A checked MountNfs request: the source and the options for the kernel.
#[derive(Debug, PartialEq)]
pub struct NfsMount {
    pub source: String,
    pub options: Vec<(String, Option<String>)>,
}

/// Checks `source` (`host:/path`) and `args` (comma-separated mount options).
pub fn check(source: &str, args: &str) -> Result<NfsMount> {
    let (host, path) = source
        .rsplit_once(":/")
        .map(|(h, p)| (h, format!("/{p}")))
        .ok_or_else(|| bad(format!("source {source:?} is not host:/path")))?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| !c.is_control() && !c.is_whitespace() && c != ',')
    };
    let host_ip = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse::<IpAddr>()
        .ok();
    let host_name_ok = host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if host_ip.is_none() && !host_name_ok {
        return Err(bad(format!(
            "source host {host:?} is not a host name or address"
        )));
    }
    if !plain(&path) || path.split('/').any(|c| c == "..") {
        return Err(bad(format!(
            "source path {path:?} is not a plain absolute path"
        )));
    }

    if args.chars().any(char::is_control) {
        return Err(bad("options contain control characters".into()));
    }
    let mut options = Vec::new();
    for option in args.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
        match ALLOWED.iter().find(|(name, _)| *name == key) {
            Some((_, true)) => match value {
                Some(v) if plain(v) => options.push((key.to_string(), Some(v.to_string()))),
                _ => return Err(bad(format!("option {key} needs a plain value"))),
            },
            Some((_, false)) if value.is_none() => options.push((key.to_string(), None)),
            Some(_) => return Err(bad(format!("option {key} takes no value"))),
            None => {
                return Err(bad(format!(
                    "option {key:?} is not allowed (nosuid and nodev are always set; allowed: {})",
                    ALLOWED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        }
    }
    // The kernel connects to an address: a host name needs addr= (no resolver runs here).
    if !options.iter().any(|(k, _)| k == "addr") {
        match host_ip {
            Some(ip) => options.push(("addr".into(), Some(ip.to_string()))),
            None => {
                return Err(bad(format!(
                    "give addr=<IP address> for the host name {host:?}"
                )))
            }
        }
    }
    Ok(NfsMount {
        source: format!("{host}:{path}"),
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    #[test]
    fn usual_requests_pass_with_the_address_filled_in() {
        let m = check("10.0.0.5:/exports/data", "vers=4.1,hard,timeo=600").expect("valid");
        assert_eq!(m.source, "10.0.0.5:/exports/data");
        assert_eq!(
            m.options,
            vec![
                ("vers".into(), Some("4.1".into())),
                ("hard".into(), None),
                ("timeo".into(), Some("600".into())),
                ("addr".into(), Some("10.0.0.5".into())),
            ]
        );
        let m = check("nfs.internal:/x", "addr=10.1.2.3").expect("host name with addr");
        assert_eq!(m.options, vec![("addr".into(), Some("10.1.2.3".into()))]);
        check("[fd00::1]:/x", "").expect("IPv6");
    }

    #[test]
    fn unsafe_or_malformed_requests_are_refused() {
        for (source, args) in [
            ("no-colon", ""),
            ("host:relative", ""),
            ("bad host:/x", ""),
            ("10.0.0.5:/a/../b", ""),
            ("10.0.0.5:/a b", ""),
            ("10.0.0.5:/x", "suid"),
            ("10.0.0.5:/x", "dev"),
            ("10.0.0.5:/x", "exec"),
            ("10.0.0.5:/x", "context=system_u:object_r:x"),
            ("10.0.0.5:/x", "hard=1"),
            ("10.0.0.5:/x", "vers"),
            ("10.0.0.5:/x", "vers=4\n"),
            ("nfs.internal:/x", "vers=4"),
        ] {
            let err = check(source, args).expect_err(&format!("{source} {args}"));
            assert_eq!(err.code(), Code::InvalidArgument, "{source} {args}");
        }
    }
}
