//! Benchmark of the git initializer against plain `git clone --depth=1` of the same URL, same run
//! (issue 5): a generated repository (20 000 files, 2 000 commits) served over HTTP on loopback by
//! git http-backend.
//!
//! Usage (as root, which mounts a tmpfs): scripts/bench-git.sh [--files N] [--commits N] [--rounds N]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{GitConfig, GitInitializer};
use wsd_proto::wsdaemon::DisposeWorkspaceRequest;
use wsd_tests::bench::{arg, median, Scratch};
use wsd_tests::git_server::{git, GitServer};
use wsd_tests::{init_request, DaemonProcess};

/// A bare repository with `files` files in the first commit and `commits` commits in all,
/// written with git fast-import.
fn generate(dir: &Path, files: usize, commits: usize) -> PathBuf {
    let bare = dir.join("big.git");
    git(dir, &["init", "-q", "--bare", "big.git"]);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(&bare)
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    let mut input = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    for c in 0..commits {
        let message = format!("commit {c}");
        writeln!(
            input,
            "commit refs/heads/main\ncommitter Bench <bench@example.invalid> {} +0000",
            1_700_000_000 + c
        )
        .ok();
        writeln!(input, "data {}\n{message}", message.len()).ok();
        let changed: Box<dyn Iterator<Item = usize>> = if c == 0 {
            Box::new(0..files)
        } else {
            Box::new((0..10).map(move |k| (c * 10 + k) % files))
        };
        for f in changed {
            let content = format!("file {f} at commit {c}\n{}\n", "x".repeat(f % 300));
            writeln!(
                input,
                "M 100644 inline d{:03}/f{f:05}.txt\ndata {}\n{content}",
                f % 200,
                content.len()
            )
            .ok();
        }
    }
    drop(input);
    assert!(child.wait().expect("fast-import").success());
    bare
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let files = arg("--files", 20_000) as usize;
    let commits = arg("--commits", 2_000) as usize;
    let rounds = arg("--rounds", 3).max(1) as usize;
    let scratch = Scratch::new("wsd-bench-git", "8g");
    let root = scratch.path().to_path_buf();
    let repos = root.join("repos");
    std::fs::create_dir_all(&repos).expect("mkdir");
    let started = Instant::now();
    generate(&repos, files, commits);
    println!(
        "repository: {files} files, {commits} commits, generated in {:.1}s ({})",
        started.elapsed().as_secs_f64(),
        scratch.describe()
    );
    let server = GitServer::start(&repos, None).await;
    let url = server.url("big.git");
    let d = DaemonProcess::start(&root.join("node"), "").await;
    let mut c = d.client().await;

    let (mut plain, mut daemon) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let plain_clone = || {
            let dest = root.join(format!("plain-{round}"));
            let t = Instant::now();
            let status = Command::new("git")
                .args(["clone", "--quiet", "--depth=1", &url])
                .arg(&dest)
                .env("GIT_TERMINAL_PROMPT", "0")
                .status()
                .expect("git clone");
            assert!(status.success());
            let took = t.elapsed();
            std::fs::remove_dir_all(&dest).expect("clean");
            took
        };
        // Alternate which goes first, so neither always meets warm or cold caches.
        if round % 2 == 0 {
            plain.push(plain_clone());
        }
        let id = format!("git-{round}");
        let spec = Spec::Git(GitInitializer {
            remote_uri: url.clone(),
            checkout_location: "big".into(),
            config: Some(GitConfig::default()),
            ..GitInitializer::default()
        });
        let t = Instant::now();
        c.init_workspace(init_request(&id, &format!("m-{round}"), spec))
            .await
            .expect("init");
        daemon.push(t.elapsed());
        assert!(d
            .working_area()
            .join(&id)
            .join("big/d000/f00000.txt")
            .is_file());
        c.dispose_workspace(DisposeWorkspaceRequest {
            id,
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("dispose");
        if round % 2 == 1 {
            plain.push(plain_clone());
        }
    }
    let (p, w) = (median(plain), median(daemon));
    println!("\n| {files} files, {commits} commits, HTTP on loopback | median of {rounds} |");
    println!("|---|---|");
    println!("| git clone --depth=1 | {:.2} s |", p.as_secs_f64());
    println!(
        "| InitWorkspace with a git initializer | {:.2} s |",
        w.as_secs_f64()
    );
    println!(
        "| overhead | {:+.1} % |",
        (w.as_secs_f64() / p.as_secs_f64() - 1.0) * 100.0
    );
}
