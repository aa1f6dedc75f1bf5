//! Documentation that lists what the code has: every metric the daemon records is named in the
//! README's "Metrics" section, and the README names none that no code records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Names `wsd_…` given to `metrics::counter!` / `gauge!` / `histogram!` in `text`.
fn recorded_metrics(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for macro_call in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
        for (at, _) in text.match_indices(macro_call) {
            let name: String = text[at + macro_call.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if name.starts_with("wsd_") {
                found.insert(name);
            }
        }
    }
    found
}

#[test]
fn the_readme_lists_every_metric_and_only_those() {
    let root = workspace_root();
    let mut files = Vec::new();
    for crate_dir in ["core/src", "grpc-server/src"] {
        rust_files(&root.join(crate_dir), &mut files);
    }
    let mut recorded = BTreeSet::new();
    for file in files {
        recorded.extend(recorded_metrics(
            &std::fs::read_to_string(&file).expect("read source"),
        ));
    }
    assert!(
        recorded.contains("wsd_rpc_requests_total"),
        "the scan finds no metrics: {recorded:?}"
    );

    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Metrics\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README has a Metrics section");
    let documented: BTreeSet<String> = section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| code.split('{').next())
        .filter(|name| name.starts_with("wsd_"))
        .map(str::to_string)
        .collect();

    let undocumented: Vec<_> = recorded.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&recorded).collect();
    assert!(
        undocumented.is_empty() && stale.is_empty(),
        "README Metrics section: missing {undocumented:?}, names no code records {stale:?}"
    );
}
