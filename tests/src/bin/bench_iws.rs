//! Benchmark of the in-workspace service: MountProc + UmountProc pairs per second over a
//! workspace's socket under parallel clients inside a real workspace container
//! (`wsd_tests::container`), against the same pair done from a shell on the host with
//! `nsenter -t PID -m mount -t proc proc TARGET && nsenter -t PID -m umount TARGET`, same run and
//! same parallelism.
//!
//! The daemon's working area is on a tmpfs (as in the other benches); `--disk 1` puts it in the
//! system's temporary folder instead. Then WorkspaceInfo latency over the same socket (`--info N`
//! timed calls, within the service's rate limit). Then `--sequences N` times the whole
//! preparation of a workspace, each in a new container with cgroups of its own, in the order a
//! runtime makes the calls: PrepareForUserNS, WriteIDMapping uid and gid for a child in new user,
//! mount and network namespaces, MountProc, EvacuateCGroup, SetupPairVeths; then Teardown and
//! WipingTeardown. Times are taken in the client inside the container, per call.
//!
//! Usage (as root): scripts/bench-iws.sh [--clients 5] [--pairs 500] [--shell-pairs 100]
//!   [--disk 1] [--info 20] [--sequences 5]

use std::process::{Command, Stdio};
use std::time::Instant;

use wsd_tests::bench::{arg, Scratch};
use wsd_tests::container::{first_line, IwsWorkspace, CLIENT_INSIDE, SOCKET_INSIDE};

#[tokio::main]
async fn main() {
    let clients = arg("--clients", 5);
    let pairs = arg("--pairs", 500);
    let shell_pairs = arg("--shell-pairs", 100);
    let scratch = Scratch::new("bench-iws", "256m");
    let (ws, area) = if arg("--disk", 0) == 1 {
        (
            IwsWorkspace::start(true).await,
            "disk (system temporary folder)",
        )
    } else {
        (
            IwsWorkspace::start_in(scratch.path(), true).await,
            scratch.describe(),
        )
    };
    let ctr = &ws.container;
    let targets: Vec<String> = (0..clients).map(|i| format!("/tmp/bench-{i}")).collect();
    ctr.sh(&format!("mkdir -p {}", targets.join(" ")));
    // Warm up: the first call of a fresh daemon opens what it keeps.
    let warm = ctr.client(&["proc-pairs", "5", &targets[0], "1"]);
    assert!(warm.starts_with("OK"), "warm-up: {warm}");

    let started = Instant::now();
    let workers: Vec<_> = targets
        .iter()
        .map(|target| {
            ctr.nsenter()
                .args([
                    CLIENT_INSIDE,
                    SOCKET_INSIDE,
                    "proc-pairs",
                    &pairs.to_string(),
                    target,
                    "1",
                ])
                .stdout(Stdio::piped())
                .spawn()
                .expect("client")
        })
        .collect();
    for worker in workers {
        let line = first_line(&worker.wait_with_output().expect("client"));
        assert!(line.starts_with("OK"), "client: {line}");
    }
    let socket_secs = started.elapsed().as_secs_f64();
    let socket_rate = (clients * pairs) as f64 / socket_secs;

    let init = ctr.init_pid();
    let started = Instant::now();
    let shells: Vec<_> = targets
        .iter()
        .map(|target| {
            Command::new("bash")
                .args([
                    "-c",
                    &format!(
                        "set -e; for i in $(seq {shell_pairs}); do \
                         nsenter -t {init} -m mount -t proc proc {target} && \
                         nsenter -t {init} -m umount {target}; done"
                    ),
                ])
                .spawn()
                .expect("shell")
        })
        .collect();
    for mut shell in shells {
        assert!(shell.wait().expect("shell").success(), "shell loop failed");
    }
    let shell_secs = started.elapsed().as_secs_f64();
    let shell_rate = (clients * shell_pairs) as f64 / shell_secs;

    println!("MountProc + UmountProc pairs, {clients} parallel clients, working area on {area}:");
    println!(
        "  iws socket ({clients} x {pairs}):        {:>8.0} pairs/s ({socket_secs:.2} s)",
        socket_rate
    );
    println!(
        "  shell nsenter+mount ({clients} x {shell_pairs}): {:>8.0} pairs/s ({shell_secs:.2} s)",
        shell_rate
    );
    println!("  ratio: {:.1}x (target >= 5x)", socket_rate / shell_rate);
    let info_calls = arg("--info", 20);
    if info_calls > 0 {
        let latency = ctr.client(&["info-latency", &info_calls.to_string()]);
        assert!(latency.starts_with("OK"), "info: {latency}");
        println!(
            "WorkspaceInfo over the socket: {} (target: median under 1 ms)",
            latency.trim_start_matches("OK ")
        );
    }
    let dir = ws.dir.path().to_path_buf();
    drop(ws);
    let sequences = arg("--sequences", 5);
    if sequences > 0 {
        sequence_times(sequences, &scratch).await;
    }
    drop(scratch);
    let left = wsd_tests::container::host_mounts_under(&dir);
    assert!(left.is_empty(), "mounts left on the host: {left:?}");
}

/// `key=NNNus` values of a client answer, in ms.
fn step_ms(answer: &str) -> Vec<(String, f64)> {
    answer
        .split_whitespace()
        .filter_map(|w| {
            let (key, value) = w.split_once('=')?;
            let us: f64 = value.strip_suffix("us")?.parse().ok()?;
            Some((key.to_string(), us / 1000.0))
        })
        .collect()
}

async fn sequence_times(n: u64, scratch: &Scratch) {
    let mut runs: Vec<Vec<(String, f64)>> = Vec::new();
    for i in 0..n {
        let ws = IwsWorkspace::start_in(scratch.path(), false).await;
        let cgroups = wsd_tests::cgroups::TestCgroups::create(
            &format!("wsd-bench-{}-{i}", std::process::id()),
            512 << 20,
        );
        cgroups.enter(ws.container.init_pid(), "");
        ws.attach().await.expect("attach");
        let ctr = &ws.container;
        ctr.sh("mkdir -p /tmp/p");
        let mut steps = Vec::new();
        let prepare = ctr.client(&["prepare-timed"]);
        assert!(prepare.starts_with("OK"), "prepare: {prepare}");
        steps.extend(step_ms(&prepare));
        let child = ctr.spawn_descendant("unshare --user --mount --net sleep 600");
        let host = ctr.host_pid(child).expect("host PID");
        cgroups.enter(host, "workspace");
        while std::fs::read_link(format!("/proc/{host}/ns/user")).ok()
            == std::fs::read_link("/proc/self/ns/user").ok()
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let sequence = ctr.client(&["sequence", &child.to_string()]);
        assert!(sequence.starts_with("OK"), "sequence: {sequence}");
        steps.extend(step_ms(&sequence));
        let teardown = ctr.client(&["teardown-timed"]);
        assert!(teardown.starts_with("OK"), "teardown: {teardown}");
        steps.extend(step_ms(&teardown));
        runs.push(steps);
        drop(ws);
        drop(cgroups);
    }
    let names: Vec<String> = runs[0].iter().map(|(k, _)| k.clone()).collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("Preparation sequence, {n} workspaces (median ms per call, inside the container):");
    let mut parts = Vec::new();
    for name in &names {
        let values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(k, _)| k == name).map(|(_, v)| *v))
            .collect();
        parts.push(format!("{name} {:.1}", median(values)));
    }
    println!("  {}", parts.join(", "));
    let prep: Vec<f64> = runs
        .iter()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| k != "teardown" && k != "wipe")
                .map(|(_, v)| v)
                .sum()
        })
        .collect();
    let down: Vec<f64> = runs
        .iter()
        .map(|r| {
            r.iter()
                .filter(|(k, _)| k == "teardown" || k == "wipe")
                .map(|(_, v)| v)
                .sum()
        })
        .collect();
    println!(
        "  whole preparation (PrepareForUserNS .. SetupPairVeths): median {:.1} ms, max {:.1} ms; \
         Teardown + WipingTeardown: median {:.1} ms",
        median(prep.clone()),
        prep.iter().cloned().fold(0.0, f64::max),
        median(down)
    );
}
