//! Benchmark of the chunked archive mode (issue 15) in one run on one tree of `mkworkspace.py`:
//! full backup and restore in `chunked` mode against `full` mode (two daemons, one per mode, the
//! same tree copied into each), and the incremental backup after `mkworkspace.py --mutate 1`
//! against restic doing the same incremental backup of the same tree to a local repository.
//!
//! Usage (as root, which mounts a tmpfs so the VM's disk does not dominate):
//!   scripts/bench-chunked.sh [--size-mib N] [--rounds N] [--mutate PERCENT] [--perf]
//! Prints medians over the rounds: times, ratios, bytes stored by the incremental backup against
//! the bytes the mutation changed (raw and after `zstd -1`), restic's own figures, and the
//! daemons' peak RSS. With `--perf`, the chunked daemon's full backup, restore and incremental
//! backup of the last round are recorded with `perf record --call-graph dwarf` into the current folder
//! (`perf-chunked-{backup,restore,incremental}.data`); those rounds' times include perf's overhead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{EmptyInitializer, FromBackupInitializer};
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest, WaitForInitRequest};
use wsd_tests::bench::{
    arg, count_entries, du_bytes, generate_workspace, median, mkworkspace, peak_mib, reset_peak,
    sh, Scratch,
};
use wsd_tests::{init_request, Client, DaemonProcess};

/// Files written before this (unix seconds) are the generated tree's (mtimes 1.7e9 + n); the
/// mutation stamps changed files 1.8e9 + i and new files get the current time.
const MUTATED_AFTER: u64 = 1_750_000_000;

fn config(mode: &str) -> String {
    format!(
        "[limits]\ninit_timeout_secs = 7200\n\n[archive]\nmode = \"{mode}\"\nkeep_backups = 2\n"
    )
}

/// The resident set of `pid` now (VmRSS): what a peak measured after [`reset_peak`] starts from.
fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Fields of `/proc/{pid}/stat` after the command name: `[utime, stime, cutime, cstime]` as CPU
/// time (the kernel reports them in USER_HZ, 100 a second on Linux).
fn proc_cpu(pid: i32) -> [Duration; 4] {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .map(|v| v.parse().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    // After ")": state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    let at = |field: usize| Duration::from_millis(fields.get(field - 3).copied().unwrap_or(0) * 10);
    [at(14), at(15), at(16), at(17)]
}

/// CPU time (user + system, all threads) a process used so far.
fn cpu_of(pid: i32) -> Duration {
    let [user, system, _, _] = proc_cpu(pid);
    user + system
}

/// CPU time of this process's children that were waited for.
fn children_cpu() -> Duration {
    let [_, _, user, system] = proc_cpu(std::process::id() as i32);
    user + system
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median_u64(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Every file under `root` with its size.
fn files(root: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(p),
                Ok(m) => out.push((p, m.len())),
                Err(_) => {}
            }
        }
    }
    out
}

/// BackupWorkspace; answers its time and the CPU time the daemon `pid` used meanwhile.
async fn backup(c: &mut Client, pid: i32, id: &str) -> (Duration, Duration) {
    let (started, cpu) = (Instant::now(), cpu_of(pid));
    c.backup_workspace(BackupWorkspaceRequest { id: id.into() })
        .await
        .unwrap_or_else(|e| panic!("backup {id}: {e}"));
    (started.elapsed(), cpu_of(pid).saturating_sub(cpu))
}

async fn dispose(c: &mut Client, id: &str) {
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: id.into(),
        backup: false,
        backup_logs: false,
    })
    .await
    .unwrap_or_else(|e| panic!("dispose {id}: {e}"));
}

/// InitWorkspace from the meta id's backup and WaitForInit; answers how long both took and the CPU
/// time the daemon `pid` used meanwhile.
async fn restore(c: &mut Client, pid: i32, id: &str, meta_id: &str) -> (Duration, Duration) {
    let spec = Spec::Backup(FromBackupInitializer {
        checkout_location: String::new(),
        from_volume_snapshot: false,
    });
    let (started, cpu) = (Instant::now(), cpu_of(pid));
    c.init_workspace(init_request(id, meta_id, spec))
        .await
        .unwrap_or_else(|e| panic!("restore {id}: {e}"));
    c.wait_for_init(WaitForInitRequest { id: id.into() })
        .await
        .unwrap_or_else(|e| panic!("wait for {id}: {e}"));
    (started.elapsed(), cpu_of(pid).saturating_sub(cpu))
}

/// Longer than the racy window of the chunked backup's parent skip (2 s).
const RACY_WINDOW_PAST: Duration = Duration::from_millis(2500);

/// A new empty workspace holding a copy of `source` (`cp -a`, so modes and mtimes are kept).
async fn workspace_copy(d: &DaemonProcess, c: &mut Client, id: &str, meta_id: &str, source: &Path) {
    c.init_workspace(init_request(id, meta_id, Spec::Empty(EmptyInitializer {})))
        .await
        .unwrap_or_else(|e| panic!("init {id}: {e}"));
    c.wait_for_init(WaitForInitRequest { id: id.into() })
        .await
        .unwrap_or_else(|e| panic!("wait for {id}: {e}"));
    let dest = d.working_area().join(id);
    sh(&format!("cp -a . {}", dest.display()), source, &[]);
}

/// `mkworkspace.py DIR --mutate PERCENT`; answers its summary line.
fn mutate(dir: &Path, percent: u64) -> String {
    let out = Command::new("python3")
        .arg(mkworkspace())
        .arg(dir)
        .args(["--mutate", &percent.to_string()])
        .output()
        .expect("run mkworkspace.py --mutate");
    assert!(
        out.status.success(),
        "mkworkspace.py --mutate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The bytes the mutation left in changed and new files of `dir`, raw and as one `tar | zstd -1`.
fn mutated_bytes(dir: &Path) -> (u64, u64) {
    let list =
        format!("find . -path ./.gitpod -prune -o -type f -newermt @{MUTATED_AFTER} -print0");
    let count = |tail: &str| -> u64 {
        let out = Command::new("bash")
            .args(["-c", &format!("set -euo pipefail; {list} | {tail}")])
            .current_dir(dir)
            .output()
            .expect("measure the mutation");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    };
    (
        count("xargs -0 -r stat -c %s | awk '{s+=$1} END {print s+0}'"),
        count("tar --null -T - -cf - | zstd -q -1 | wc -c"),
    )
}

/// One restic run in `dir` (with `--json`): its time, its CPU time and, for a backup, its summary.
fn restic(
    dir: &Path,
    repo: &Path,
    cache: &Path,
    args: &[&str],
) -> (Duration, Duration, serde_json::Value) {
    let (started, cpu) = (Instant::now(), children_cpu());
    let out = Command::new("restic")
        .arg("--repo")
        .arg(repo)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--json")
        .args(args)
        .env("RESTIC_PASSWORD", "bench")
        .current_dir(dir)
        .output()
        .expect("run restic (apt-get install restic)");
    let (took, cpu) = (started.elapsed(), children_cpu().saturating_sub(cpu));
    assert!(
        out.status.success(),
        "restic {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap_or(serde_json::Value::Null);
    (took, cpu, summary)
}

/// The last "chunked backup written" line of a daemon's log, trimmed to its counters.
fn last_chunked_log(d: &DaemonProcess) -> String {
    d.logs()
        .lines()
        .rev()
        .find(|l| l.contains("chunked backup written"))
        .map(|l| match l.find("files_read") {
            Some(i) => l[i..].to_string(),
            None => l.to_string(),
        })
        .unwrap_or_default()
}

/// `perf record` (DWARF call graphs) of `pid` into `perf-chunked-{phase}.data` when asked (`--perf`).
fn perf_start(on: bool, pid: i32, phase: &str) -> Option<Child> {
    if !on {
        return None;
    }
    let child = Command::new("perf")
        // DWARF call graphs: release builds keep no frame pointers.
        .args(["record", "-q", "-F", "499", "--call-graph", "dwarf,32768"])
        .args(["-o", &format!("perf-chunked-{phase}.data")])
        .args(["-p", &pid.to_string()])
        .spawn()
        .expect("run perf (apt-get install linux-perf)");
    // perf needs a moment to attach; a phase that starts earlier is recorded in part.
    std::thread::sleep(Duration::from_millis(500));
    Some(child)
}

fn perf_stop(perf: Option<Child>) {
    if let Some(mut child) = perf {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let _ = child.wait();
    }
}

#[derive(Default)]
struct Figures {
    full_backup: Vec<Duration>,
    chunked_backup: Vec<Duration>,
    full_restore: Vec<Duration>,
    chunked_restore: Vec<Duration>,
    incremental: Vec<Duration>,
    restic_first: Vec<Duration>,
    restic_second: Vec<Duration>,
    /// Packs and manifest the incremental backup added to the storage folder.
    uploaded: Vec<u64>,
    manifest: Vec<u64>,
    changed: Vec<u64>,
    changed_zstd: Vec<u64>,
    restic_added: Vec<u64>,
    full_archive: u64,
    chunked_stored: u64,
    restic_first_added: u64,
    /// CPU time of each phase: full backup, chunked backup, full restore, chunked restore,
    /// incremental, restic's first and second backups.
    cpu: [Vec<Duration>; 7],
    peak: [f64; 5],
}

#[tokio::main]
async fn main() {
    let size_mib = arg("--size-mib", 1024);
    let rounds = arg("--rounds", 3).max(1) as usize;
    let percent = arg("--mutate", 1).max(1);
    let perf = std::env::args().any(|a| a == "--perf");
    let scratch = Scratch::new("wsd-bench-chunked", "16g");
    let root = scratch.path().to_path_buf();
    println!("bench folder: {} ({})", root.display(), scratch.describe());
    let restic_version = Command::new("restic")
        .arg("version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .expect("restic is needed (apt-get install restic)");

    let source = root.join("source");
    let summary = generate_workspace(&source, size_mib);
    let bytes = du_bytes(&source);
    let entries = count_entries(&source);
    println!(
        "tree: {summary} ({:.0} MiB apparent size, {entries} entries), {rounds} rounds, \
         mutate {percent} %, medians reported; {restic_version}",
        mib(bytes)
    );

    let full = DaemonProcess::start(&root.join("node-full"), &config("full")).await;
    let chunked = DaemonProcess::start(&root.join("node-chunked"), &config("chunked")).await;
    let (mut cf, mut cc) = (full.client().await, chunked.client().await);
    let mut f = Figures::default();
    for round in 0..rounds {
        let (fid, cid) = (format!("full-{round}"), format!("chunked-{round}"));
        let (fmeta, cmeta) = (
            format!("meta-full-{round}"),
            format!("meta-chunked-{round}"),
        );
        workspace_copy(&full, &mut cf, &fid, &fmeta, &source).await;
        workspace_copy(&chunked, &mut cc, &cid, &cmeta, &source).await;
        // A real workspace's files were not all written in the seconds before its backup: let
        // the copy's ctimes age past the 2 s in which a file changed just before a backup is
        // read again by the next one (else the incremental of a round whose chunked backup runs
        // first re-reads every file).
        std::thread::sleep(RACY_WINDOW_PAST);

        let (mut rss_before, mut chunked_peak) = (0f64, 0f64);
        // 1. Full backups, in alternating order so neither always runs on a warmer machine.
        for first in [round % 2 == 0, round % 2 == 1] {
            if first {
                reset_peak(full.pid());
                let (took, cpu) = backup(&mut cf, full.pid(), &fid).await;
                f.full_backup.push(took);
                f.cpu[0].push(cpu);
                f.peak[0] = f.peak[0].max(peak_mib(full.pid()));
            } else {
                rss_before = rss_mib(chunked.pid());
                reset_peak(chunked.pid());
                let recording = perf_start(perf && round + 1 == rounds, chunked.pid(), "backup");
                let (took, cpu) = backup(&mut cc, chunked.pid(), &cid).await;
                f.chunked_backup.push(took);
                f.cpu[1].push(cpu);
                perf_stop(recording);
                chunked_peak = peak_mib(chunked.pid());
                f.peak[1] = f.peak[1].max(chunked_peak);
            }
        }
        f.full_archive = files(&full.storage()).iter().map(|(_, n)| n).sum();
        f.chunked_stored = files(&chunked.storage()).iter().map(|(_, n)| n).sum();
        println!(
            "round {round}: full {:.2} s ({:.2} s CPU), chunked {:.2} s ({:.2} s CPU, peak RSS \
             {chunked_peak:.0} MiB from {rss_before:.0} MiB; {})",
            secs(f.full_backup[round]),
            secs(f.cpu[0][round]),
            secs(f.chunked_backup[round]),
            secs(f.cpu[1][round]),
            last_chunked_log(&chunked)
        );

        // 3. Restores of the same meta ids into new instances, alternating too.
        for first in [round % 2 == 1, round % 2 == 0] {
            let (d, c, meta, out) = if first {
                (&full, &mut cf, &fmeta, &mut f.full_restore)
            } else {
                (&chunked, &mut cc, &cmeta, &mut f.chunked_restore)
            };
            let id = format!("restore-{round}");
            reset_peak(d.pid());
            let recording = perf_start(perf && !first && round + 1 == rounds, d.pid(), "restore");
            let (took, cpu) = restore(c, d.pid(), &id, meta).await;
            out.push(took);
            f.cpu[if first { 2 } else { 3 }].push(cpu);
            perf_stop(recording);
            let peak = peak_mib(d.pid());
            println!(
                "round {round}: {} restore peak RSS {peak:.0} MiB",
                if first { "full" } else { "chunked" }
            );
            let slot = if first { 2 } else { 3 };
            f.peak[slot] = f.peak[slot].max(peak);
            let restored = d.working_area().join(&id);
            // The restored tree has the daemon's .gitpod folder beside the backed-up one.
            assert!(
                count_entries(&restored) >= entries,
                "restored tree lacks entries"
            );
            dispose(c, &id).await;
        }
        println!(
            "round {round}: restore full {:.2} s, chunked {:.2} s",
            secs(f.full_restore[round]),
            secs(f.chunked_restore[round])
        );

        // 2. The incremental backup: mutate, back up the same workspace again. restic gets a copy
        // of that workspace's folder (with the daemon's .gitpod files, so that the mutation picks
        // the same files) and its first backup before the mutation.
        let content = chunked.working_area().join(&cid);
        let (tree, repo, cache) = (
            root.join("restic-tree"),
            root.join("restic-repo"),
            root.join("restic-cache"),
        );
        sh(&format!("cp -a . {}", tree.display()), &content, &[]);
        restic(&tree, &repo, &cache, &["init"]);
        let (took, cpu, first) = restic(&tree, &repo, &cache, &["backup", "."]);
        f.restic_first.push(took);
        f.cpu[5].push(cpu);
        f.restic_first_added = first["data_added"].as_u64().unwrap_or(0);
        let before: HashSet<PathBuf> = files(&chunked.storage())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        let mutated = mutate(&content, percent);
        let (changed, changed_zstd) = mutated_bytes(&content);
        reset_peak(chunked.pid());
        let recording = perf_start(perf && round + 1 == rounds, chunked.pid(), "incremental");
        let (took, cpu) = backup(&mut cc, chunked.pid(), &cid).await;
        f.incremental.push(took);
        f.cpu[4].push(cpu);
        perf_stop(recording);
        f.peak[4] = f.peak[4].max(peak_mib(chunked.pid()));
        let added: Vec<(PathBuf, u64)> = files(&chunked.storage())
            .into_iter()
            .filter(|(p, _)| !before.contains(p))
            .collect();
        let manifest: u64 = added
            .iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with(".wsm"))
            .map(|(_, n)| n)
            .sum();
        f.uploaded.push(added.iter().map(|(_, n)| n).sum());
        f.manifest.push(manifest);
        f.changed.push(changed);
        f.changed_zstd.push(changed_zstd);
        println!(
            "round {round}: {mutated}; incremental {:.3} s, {} new objects, {} bytes ({})",
            secs(f.incremental[round]),
            added.len(),
            f.uploaded[round],
            last_chunked_log(&chunked)
        );

        // restic: its second backup of the same mutation.
        let restic_mutated = mutate(&tree, percent);
        assert_eq!(restic_mutated, mutated, "the same mutation on both trees");
        let (took, cpu, second) = restic(&tree, &repo, &cache, &["backup", "."]);
        f.restic_second.push(took);
        f.cpu[6].push(cpu);
        f.restic_added
            .push(second["data_added"].as_u64().unwrap_or(0));
        println!(
            "round {round}: restic first {:.2} s, second {:.3} s (files new {} changed {} \
             unmodified {}, data added {} bytes)",
            secs(f.restic_first[round]),
            secs(took),
            second["files_new"],
            second["files_changed"],
            second["files_unmodified"],
            f.restic_added[round]
        );

        // Free the tmpfs for the next round.
        dispose(&mut cf, &fid).await;
        dispose(&mut cc, &cid).await;
        for dir in [tree, repo] {
            std::fs::remove_dir_all(&dir).expect("remove restic folders");
        }
        for d in [&full, &chunked] {
            for (p, _) in files(&d.storage()) {
                std::fs::remove_file(&p).expect("remove stored objects");
            }
        }
    }

    let (fb, cb) = (median(f.full_backup), median(f.chunked_backup));
    let (fr, cr) = (median(f.full_restore), median(f.chunked_restore));
    let (inc, r1, r2) = (
        median(f.incremental),
        median(f.restic_first),
        median(f.restic_second),
    );
    let speed = |d: Duration| mib(bytes) / secs(d);
    let cpu: Vec<Duration> = f.cpu.iter().map(|v| median(v.clone())).collect();
    println!(
        "\n| operation | full mode | chunked mode | ratio (chunked / full time) | CPU full / chunked (ratio) |"
    );
    println!("|---|---|---|---|---|");
    for (name, a, b, used_a, used_b) in [
        ("backup", fb, cb, cpu[0], cpu[1]),
        ("restore", fr, cr, cpu[2], cpu[3]),
    ] {
        println!(
            "| {name} | {:.2} s ({:.0} MiB/s) | {:.2} s ({:.0} MiB/s) | {:.2} | {:.2} s / {:.2} s ({:.2}) |",
            secs(a),
            speed(a),
            secs(b),
            speed(b),
            secs(b) / secs(a),
            secs(used_a),
            secs(used_b),
            secs(used_b) / secs(used_a)
        );
    }
    println!("\n| incremental backup after --mutate {percent} | time | ratio to our chunked full backup | ratio to restic's incremental | CPU |");
    println!("|---|---|---|---|---|");
    println!(
        "| ws-daemon chunked | {:.3} s | {:.3} | {:.2} | {:.2} s |",
        secs(inc),
        secs(inc) / secs(cb),
        secs(inc) / secs(r2),
        secs(cpu[4])
    );
    println!(
        "| restic (local repository) | {:.3} s | {:.3} | 1.00 | {:.2} s |",
        secs(r2),
        secs(r2) / secs(cb),
        secs(cpu[6])
    );
    println!(
        "| restic's first (full) backup, for scale | {:.2} s | {:.2} | | {:.2} s |",
        secs(r1),
        secs(r1) / secs(cb),
        secs(cpu[5])
    );
    let (up, man, ch, chz, ra) = (
        median_u64(f.uploaded),
        median_u64(f.manifest),
        median_u64(f.changed),
        median_u64(f.changed_zstd),
        median_u64(f.restic_added),
    );
    println!(
        "\nincremental bytes: changed {:.2} MiB in changed and new files ({:.2} MiB after zstd -1); \
         ws-daemon stored {:.2} MiB ({:.2} MiB packs + {:.2} MiB manifest) = {:.2}x the zstd size; \
         restic added {:.2} MiB (before its compression; restic 0.14 repositories do not compress)",
        mib(ch),
        mib(chz),
        mib(up),
        mib(up - man),
        mib(man),
        up as f64 / chz.max(1) as f64,
        mib(ra)
    );
    println!(
        "full stored: full archive {:.1} MiB, chunked packs+manifest {:.1} MiB, restic first backup added {:.1} MiB",
        mib(f.full_archive),
        mib(f.chunked_stored),
        mib(f.restic_first_added)
    );
    println!(
        "daemon peak RSS (VmHWM): full backup {:.1} MiB, chunked backup {:.1} MiB, \
         full restore {:.1} MiB, chunked restore {:.1} MiB, incremental {:.1} MiB",
        f.peak[0], f.peak[1], f.peak[2], f.peak[3], f.peak[4]
    );
}
