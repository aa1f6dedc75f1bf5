//! URLs as they may appear in messages and logs: scheme, host (with port) and path only. User
//! info, query and fragment are dropped, since any of them may carry a token. scp-style git
//! locations (`git@host:owner/repo`) have no such parts and are shown as they are.

pub fn for_messages(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.split(['?', '#']).next().unwrap_or("");
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::for_messages;

    #[test]
    fn credentials_queries_and_fragments_are_dropped() {
        assert_eq!(
            for_messages("https://u:secret@h.example:8443/o/r.git?token=abc#x"),
            "https://h.example:8443/o/r.git"
        );
        assert_eq!(for_messages("https://h.example"), "https://h.example");
        assert_eq!(for_messages("git@h:o/r.git"), "git@h:o/r.git");
    }
}
