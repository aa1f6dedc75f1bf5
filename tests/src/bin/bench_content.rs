//! Benchmark of backup and restore through the daemon against the command-line pipeline on the same
//! tree, in one run: `tar -cf - . | zstd -1 -T0 > file` and `zstd -d < file | tar -xf -`.
//!
//! Usage (as root, which mounts a tmpfs so the VM's disk does not dominate):
//!   scripts/bench-content.sh [--size-mib N] [--rounds N]
//! Prints MiB/s of each, the ratios, and the daemon's peak RSS during backup and restore.

use std::time::{Duration, Instant};

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest};
use wsd_tests::bench::{
    arg, count_entries, du_bytes, generate_workspace, median, peak_mib, reset_peak, sh, Scratch,
};
use wsd_tests::{init_request, DaemonProcess};

#[tokio::main]
async fn main() {
    let size_mib = arg("--size-mib", 1024);
    let rounds = arg("--rounds", 3).max(1) as usize;
    let scratch = Scratch::new("wsd-bench", "12g");
    let root = scratch.path().to_path_buf();
    println!("bench folder: {} ({})", root.display(), scratch.describe());

    let d = DaemonProcess::start(&root.join("node"), "[limits]\ninit_timeout_secs = 7200\n").await;
    let pid = d.pid();
    let mut c = d.client().await;
    c.init_workspace(init_request(
        "bench",
        "meta-bench",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("init");
    let content = d.working_area().join("bench");
    let summary = generate_workspace(&content, size_mib);
    let bytes = du_bytes(&content);
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "tree: {} ({mib:.0} MiB apparent size), {rounds} rounds, medians reported",
        summary
    );

    let entries = count_entries(&content);
    let cli_archive = root.join("cli.tar.zst");
    let object = d
        .storage()
        .join("gitpod-user-owner-1/workspaces/meta-bench/full.tar.zst");
    let (mut cli_backup, mut wsd_backup, mut cli_restore, mut wsd_restore) =
        (vec![], vec![], vec![], vec![]);
    let (mut backup_peak, mut restore_peak) = (0f64, 0f64);
    for round in 0..rounds {
        cli_backup.push(sh(
            &format!("tar -cf - . | zstd -q -1 -T0 > {}", cli_archive.display()),
            &content,
            &[],
        ));
        reset_peak(pid);
        let started = Instant::now();
        c.backup_workspace(BackupWorkspaceRequest { id: "bench".into() })
            .await
            .expect("backup");
        wsd_backup.push(started.elapsed());
        backup_peak = backup_peak.max(peak_mib(pid));

        let out = root.join("cli-restore");
        std::fs::create_dir_all(&out).expect("mkdir");
        cli_restore.push(sh(
            &format!(
                "zstd -q -d < {} | tar -xf - -C {}",
                cli_archive.display(),
                out.display()
            ),
            &root,
            &[],
        ));
        std::fs::remove_dir_all(&out).expect("clean");

        reset_peak(pid);
        let id = format!("restore-{round}");
        let started = Instant::now();
        c.init_workspace(init_request(
            &id,
            "meta-bench",
            Spec::Empty(EmptyInitializer {}),
        ))
        .await
        .expect("restore");
        wsd_restore.push(started.elapsed());
        restore_peak = restore_peak.max(peak_mib(pid));
        assert_eq!(
            count_entries(&d.working_area().join(&id)),
            entries,
            "restored tree differs"
        );
        c.dispose_workspace(DisposeWorkspaceRequest {
            id,
            backup: false,
            backup_logs: false,
        })
        .await
        .expect("dispose");
    }
    let sizes = (
        std::fs::metadata(&cli_archive)
            .map(|m| m.len())
            .unwrap_or(0),
        std::fs::metadata(&object).map(|m| m.len()).unwrap_or(0),
    );
    let row = |name: &str, cli: Duration, wsd: Duration| {
        let (a, b) = (mib / cli.as_secs_f64(), mib / wsd.as_secs_f64());
        println!(
            "| {name} | {:.2} s ({a:.0} MiB/s) | {:.2} s ({b:.0} MiB/s) | {:.2} |",
            cli.as_secs_f64(),
            wsd.as_secs_f64(),
            b / a
        );
    };
    println!("\n| operation | command line | ws-daemon | ratio (daemon speed / command line) |");
    println!("|---|---|---|---|");
    row("backup", median(cli_backup), median(wsd_backup));
    row("restore", median(cli_restore), median(wsd_restore));
    println!(
        "\narchive size: command line {:.1} MiB, ws-daemon {:.1} MiB",
        sizes.0 as f64 / (1 << 20) as f64,
        sizes.1 as f64 / (1 << 20) as f64
    );
    println!("daemon peak RSS: backup {backup_peak:.1} MiB, restore {restore_peak:.1} MiB");
}
