//! The git status of a checkout, from machine-readable output (`git status --porcelain=v2 -z`),
//! so that names with spaces, quotes, newlines and renames come out exactly.

use wsd_proto::contentservice::GitStatus;

/// At most this many entries per list; the totals stay true.
pub const MAX_ENTRIES: usize = 100;

/// Parses `git status --porcelain=v2 --branch -z --untracked-files=all` output.
pub fn parse_porcelain_v2(raw: &[u8]) -> GitStatus {
    let mut status = GitStatus::default();
    let mut records = raw.split(|b| *b == 0).filter(|r| !r.is_empty());
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    while let Some(record) = records.next() {
        let line = text(record);
        if let Some(header) = line.strip_prefix("# ") {
            if let Some(oid) = header.strip_prefix("branch.oid ") {
                if oid != "(initial)" {
                    status.latest_commit = oid.to_string();
                }
            } else if let Some(head) = header.strip_prefix("branch.head ") {
                status.branch = head.to_string();
            }
            continue;
        }
        let (kind, fields_before_path) = match line.as_bytes().first() {
            Some(b'1') => ("changed", 8),
            Some(b'2') => ("renamed", 9),
            Some(b'u') => ("unmerged", 10),
            Some(b'?') => ("untracked", 1),
            _ => continue,
        };
        // The path is everything after the fixed fields: it may contain spaces.
        let path = line
            .splitn(fields_before_path + 1, ' ')
            .nth(fields_before_path)
            .unwrap_or("")
            .to_string();
        if kind == "renamed" {
            // -z puts the original path in the next record.
            records.next();
        }
        if kind == "untracked" {
            status.total_untracked_files += 1;
            if status.untracked_files.len() < MAX_ENTRIES {
                status.untracked_files.push(path);
            }
        } else {
            status.total_uncommited_files += 1;
            if status.uncommited_files.len() < MAX_ENTRIES {
                status.uncommited_files.push(path);
            }
        }
    }
    status
}

/// Adds the unpushed commits from `git log --format=%h: %s -z --branches --not --remotes` output
/// (capped list) and their true total (from `git rev-list --count ...`).
pub fn add_unpushed(status: &mut GitStatus, log: &[u8], total: i64) {
    status.unpushed_commits = log
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .take(MAX_ENTRIES)
        .map(|r| {
            String::from_utf8_lossy(r)
                .trim_start_matches('\n')
                .to_string()
        })
        .collect();
    status.total_unpushed_commits = total;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_branch_changes_renames_and_odd_names() {
        let raw = b"# branch.oid 1234abcd\0# branch.head main\0# branch.upstream origin/main\0# branch.ab +1 -0\0\
1 .M N... 100644 100644 100644 aaaa bbbb file with spaces.txt\0\
2 R. N... 100644 100644 100644 aaaa aaaa R100 new name.txt\0old name.txt\0\
u UU N... 100644 100644 100644 100644 aaaa bbbb cccc conflict.txt\0\
? untracked\nwith newline\0? \"quoted\".txt\0";
        let s = parse_porcelain_v2(raw);
        assert_eq!(s.branch, "main");
        assert_eq!(s.latest_commit, "1234abcd");
        assert_eq!(
            s.uncommited_files,
            vec!["file with spaces.txt", "new name.txt", "conflict.txt"]
        );
        assert_eq!(
            s.untracked_files,
            vec!["untracked\nwith newline", "\"quoted\".txt"]
        );
        assert_eq!((s.total_uncommited_files, s.total_untracked_files), (3, 2));
    }

    #[test]
    fn lists_are_capped_but_totals_are_true() {
        let mut raw = b"# branch.oid (initial)\0# branch.head (detached)\0".to_vec();
        for i in 0..250 {
            raw.extend_from_slice(format!("? u{i}\0").as_bytes());
        }
        let s = parse_porcelain_v2(&raw);
        assert_eq!(s.untracked_files.len(), MAX_ENTRIES);
        assert_eq!(s.total_untracked_files, 250);
        assert_eq!(s.latest_commit, "");
        assert_eq!(s.branch, "(detached)");
    }

    #[test]
    fn unpushed_commits_are_capped() {
        let mut s = GitStatus::default();
        let log: Vec<u8> = (0..150)
            .flat_map(|i| format!("abc{i}: subject {i}\0").into_bytes())
            .collect();
        add_unpushed(&mut s, &log, 150);
        assert_eq!(s.unpushed_commits.len(), MAX_ENTRIES);
        assert_eq!(s.unpushed_commits[0], "abc0: subject 0");
        assert_eq!(s.total_unpushed_commits, 150);
    }
}
