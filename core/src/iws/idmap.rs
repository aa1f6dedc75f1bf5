//! WriteIDMapping: the checks of the behaviour spec on a requested uid/gid mapping, and the text
//! the kernel takes in one write of `/proc/<pid>/uid_map` or `gid_map`.

use std::fmt::Write;

use wsd_proto::iws::write_id_mapping_request::Mapping;

use crate::config::IdRanges;
use crate::error::{Error, Result};

/// The kernel takes at most 340 lines.
pub const MAX_ENTRIES: usize = 340;
/// ... in one write of less than a page.
const MAX_TEXT: usize = 4095;

fn bad(msg: String) -> Error {
    Error::InvalidArgument(format!("invalid id mapping: {msg}"))
}

/// Checks `mapping` against the allowed host ranges and returns the text to write.
pub fn map_text(mapping: &[Mapping], allowed: &IdRanges) -> Result<String> {
    if mapping.is_empty() {
        return Err(bad("no entries".into()));
    }
    if mapping.len() > MAX_ENTRIES {
        return Err(bad(format!(
            "{} entries; the kernel takes at most {MAX_ENTRIES}",
            mapping.len()
        )));
    }
    let ends = |start: u32, size: u32| u64::from(start) + u64::from(size);
    for (i, m) in mapping.iter().enumerate() {
        let what = format!(
            "entry {i} ({} -> {}, size {})",
            m.container_id, m.host_id, m.size
        );
        if m.size == 0 {
            return Err(bad(format!("{what}: size must be at least 1")));
        }
        if ends(m.container_id, m.size) > u64::from(u32::MAX)
            || ends(m.host_id, m.size) > u64::from(u32::MAX)
        {
            return Err(bad(format!("{what}: the range goes past the largest id")));
        }
        let allowed_here = if m.container_id == 0 {
            allowed.root_range.contains(m.host_id, m.size)
        } else {
            allowed
                .user_ranges
                .iter()
                .any(|r| r.contains(m.host_id, m.size))
        };
        if !allowed_here {
            let range = if m.container_id == 0 {
                "the root range"
            } else {
                "the user ranges"
            };
            return Err(bad(format!(
                "{what}: host ids outside {range} this daemon allows"
            )));
        }
    }
    for (side, key) in [
        (
            "container",
            (|m: &Mapping| m.container_id) as fn(&Mapping) -> u32,
        ),
        ("host", |m: &Mapping| m.host_id),
    ] {
        let mut sorted: Vec<&Mapping> = mapping.iter().collect();
        sorted.sort_by_key(|m| key(m));
        for pair in sorted.windows(2) {
            if ends(key(pair[0]), pair[0].size) > u64::from(key(pair[1])) {
                return Err(bad(format!(
                    "{side} ids {} and {} overlap",
                    key(pair[0]),
                    key(pair[1])
                )));
            }
        }
    }
    let mut text = String::new();
    for m in mapping {
        let _ = writeln!(text, "{} {} {}", m.container_id, m.host_id, m.size);
    }
    if text.len() > MAX_TEXT {
        return Err(bad(format!(
            "{} bytes of text; the kernel takes less than 4096",
            text.len()
        )));
    }
    Ok(text)
}

/// Whether `existing` (a map as the kernel shows it: columns padded with spaces) holds exactly
/// the lines of `text` (as [`map_text`] makes it): the same mapping written before.
pub fn same_map(existing: &str, text: &str) -> bool {
    let lines = |s: &str| -> Vec<Vec<String>> {
        s.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|fields| !fields.is_empty())
            .collect()
    };
    let wanted = lines(text);
    !wanted.is_empty() && lines(existing) == wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;

    fn m(container_id: u32, host_id: u32, size: u32) -> Mapping {
        Mapping {
            container_id,
            host_id,
            size,
        }
    }

    fn refused(mapping: &[Mapping]) -> String {
        let err = map_text(mapping, &IdRanges::default()).expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument);
        err.to_string()
    }

    #[test]
    fn the_usual_mapping_is_written_as_lines() {
        let text =
            map_text(&[m(0, 33333, 1), m(1, 100000, 65534)], &IdRanges::default()).expect("valid");
        assert_eq!(text, "0 33333 1\n1 100000 65534\n");
    }

    #[test]
    fn out_of_range_overlapping_overflowing_and_too_many_are_refused() {
        assert!(refused(&[]).contains("no entries"));
        assert!(refused(&[m(0, 0, 1)]).contains("root range"));
        assert!(refused(&[m(0, 33333, 2)]).contains("root range"));
        assert!(refused(&[m(1, 33333, 1)]).contains("user ranges"));
        assert!(refused(&[m(1, 100000, 70001)]).contains("user ranges"));
        assert!(refused(&[m(1, 100000, 0)]).contains("at least 1"));
        assert!(refused(&[m(u32::MAX - 1, 100000, 5)]).contains("largest id"));
        assert!(refused(&[m(1, u32::MAX, 2)]).contains("largest id"));
        assert!(refused(&[m(1, 100000, 10), m(5, 100100, 10)])
            .contains("container ids 1 and 5 overlap"));
        assert!(refused(&[m(1, 100000, 10), m(20, 100005, 10)])
            .contains("host ids 100000 and 100005 overlap"));
        let many: Vec<Mapping> = (0..341)
            .map(|i| m(1 + i * 10, 100000 + i * 10, 1))
            .collect();
        assert!(refused(&many).contains("at most 340"));
        let small = IdRanges {
            user_ranges: vec![crate::config::IdRange {
                start: 1000,
                size: 1000,
            }],
            ..IdRanges::default()
        };
        let most: Vec<Mapping> = (0..340).map(|i| m(1 + i, 1000 + i, 1)).collect();
        map_text(&most, &small).expect("340 short entries are fine");
    }

    #[test]
    fn a_map_written_before_is_recognised_in_the_kernels_layout() {
        let text = "0 33333 1\n1 100000 65534\n";
        let kernel = "         0      33333          1\n         1     100000      65534\n";
        assert!(same_map(kernel, text));
        assert!(!same_map("         0      33333          1\n", text));
        assert!(!same_map("", text));
        assert!(!same_map(kernel, "0 33333 1\n1 100000 65533\n"));
    }

    #[test]
    fn text_longer_than_a_page_is_refused() {
        let wide = IdRanges {
            user_ranges: vec![crate::config::IdRange {
                start: 1_000_000_000,
                size: 3_000_000_000,
            }],
            ..IdRanges::default()
        };
        let long: Vec<Mapping> = (0..340)
            .map(|i| m(1_000_000_000 + i * 100, 1_000_000_000 + i * 100, 10))
            .collect();
        let err = map_text(&long, &wide).expect_err("too long");
        assert!(err.to_string().contains("less than 4096"), "{err}");
    }
}
