//! Benchmark of backup and restore through an S3 server on loopback (s3s-fs), in one run against:
//! the same daemon operations on local storage, and the generic way of putting a tree into S3:
//! `tar | zstd` into a file, then `aws s3 cp` (also streamed: `tar | zstd | aws s3 cp -`), and back
//! with `aws s3 cp` then `zstd -d | tar -x`.
//!
//! Usage (as root, which mounts a tmpfs so the VM's disk does not dominate):
//!   scripts/bench-s3.sh [--size-mib N] [--rounds N]
//! Prints seconds and MiB/s of each, the ratios, and the S3 daemon's peak RSS per phase.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest};
use wsd_tests::bench::{
    arg, count_entries, du_bytes, generate_workspace, median, peak_mib, reset_peak, sh, Scratch,
};
use wsd_tests::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use wsd_tests::{init_request, Client, DaemonProcess};

const LIMITS: &str = "[limits]\ninit_timeout_secs = 7200\n";

/// Runs a shell pipeline with the aws CLI pointed at the server; returns its duration.
fn aws_sh(script: &str, dir: &Path, endpoint: &str) -> Duration {
    let envs = [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", endpoint),
    ];
    sh(script, dir, &envs)
}

async fn timed_backup(c: &mut Client) -> Duration {
    let started = Instant::now();
    c.backup_workspace(BackupWorkspaceRequest { id: "bench".into() })
        .await
        .expect("backup");
    started.elapsed()
}

async fn timed_restore(c: &mut Client, d: &DaemonProcess, id: &str, entries: usize) -> Duration {
    let started = Instant::now();
    c.init_workspace(init_request(
        id,
        "meta-bench",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("restore");
    let took = started.elapsed();
    assert_eq!(
        count_entries(&d.working_area().join(id)),
        entries,
        "restored tree differs"
    );
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: id.into(),
        backup: false,
        backup_logs: false,
    })
    .await
    .expect("dispose");
    took
}

#[tokio::main]
async fn main() {
    let size_mib = arg("--size-mib", 1024);
    let rounds = arg("--rounds", 3).max(1) as usize;
    let scratch = Scratch::new("wsd-bench-s3", "14g");
    let root = scratch.path().to_path_buf();
    println!("bench folder: {} ({})", root.display(), scratch.describe());

    let s3 = S3Server::start(&root.join("s3")).await;
    let endpoint = s3.endpoint();
    let local = DaemonProcess::start(&root.join("local"), LIMITS).await;
    let remote_config = format!(
        "{}{LIMITS}",
        S3Server::daemon_config(&endpoint, SECRET_KEY, "")
    );
    let remote = DaemonProcess::start(&root.join("remote"), &remote_config).await;
    let (mut cl, mut cr) = (local.client().await, remote.client().await);
    for c in [&mut cl, &mut cr] {
        c.init_workspace(init_request(
            "bench",
            "meta-bench",
            Spec::Empty(EmptyInitializer {}),
        ))
        .await
        .expect("init");
    }
    let content = local.working_area().join("bench");
    let summary = generate_workspace(&content, size_mib);
    let copy = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", content.display()))
        .arg(remote.working_area().join("bench"))
        .status()
        .expect("cp");
    assert!(copy.success());
    let mib = du_bytes(&content) as f64 / (1 << 20) as f64;
    let entries = count_entries(&content);
    println!(
        "tree: {} ({mib:.0} MiB apparent size), {rounds} rounds, medians reported",
        summary
    );
    aws_sh("aws s3 mb s3://bench-cli >/dev/null", &root, &endpoint);

    let archive = root.join("cli.tar.zst");
    let pid = remote.pid();
    let mut t: [Vec<Duration>; 8] = Default::default();
    let (mut backup_peak, mut restore_peak) = (0f64, 0f64);
    for round in 0..rounds {
        t[0].push(timed_backup(&mut cl).await);
        reset_peak(pid);
        t[1].push(timed_backup(&mut cr).await);
        backup_peak = backup_peak.max(peak_mib(pid));
        t[2].push(aws_sh(
            &format!(
                "tar -cf - . | zstd -q -1 -T0 > {a}; aws s3 cp --only-show-errors {a} s3://bench-cli/full.tar.zst",
                a = archive.display()
            ),
            &content,
            &endpoint,
        ));
        t[3].push(aws_sh(
            "tar -cf - . | zstd -q -1 -T0 | aws s3 cp --only-show-errors - s3://bench-cli/stream.tar.zst",
            &content,
            &endpoint,
        ));

        t[4].push(timed_restore(&mut cl, &local, &format!("restore-{round}"), entries).await);
        reset_peak(pid);
        t[5].push(timed_restore(&mut cr, &remote, &format!("restore-{round}"), entries).await);
        restore_peak = restore_peak.max(peak_mib(pid));
        let out = root.join("cli-restore");
        std::fs::create_dir_all(&out).expect("mkdir");
        t[6].push(aws_sh(
            &format!(
                "aws s3 cp --only-show-errors s3://bench-cli/full.tar.zst {a}; zstd -q -d < {a} | tar -xf - -C {o}",
                a = archive.display(),
                o = out.display()
            ),
            &root,
            &endpoint,
        ));
        std::fs::remove_dir_all(&out).expect("clean");
        std::fs::create_dir_all(&out).expect("mkdir");
        t[7].push(aws_sh(
            &format!(
                "aws s3 cp --only-show-errors s3://bench-cli/stream.tar.zst - | zstd -q -d | tar -xf - -C {o}",
                o = out.display()
            ),
            &root,
            &endpoint,
        ));
        std::fs::remove_dir_all(&out).expect("clean");
        let _ = std::fs::remove_file(&archive);
    }
    let [b_local, b_s3, b_cli, b_pipe, r_local, r_s3, r_cli, r_pipe] = t.map(median);
    let cell = |d: Duration| {
        format!(
            "{:.2} s ({:.0} MiB/s)",
            d.as_secs_f64(),
            mib / d.as_secs_f64()
        )
    };
    println!("\n| operation | ws-daemon, local storage | ws-daemon, S3 | tar+zstd to a file, then aws s3 cp | tar+zstd piped into aws s3 cp | S3 daemon speed / file-then-upload |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| backup | {} | {} | {} | {} | {:.2} |",
        cell(b_local),
        cell(b_s3),
        cell(b_cli),
        cell(b_pipe),
        b_cli.as_secs_f64() / b_s3.as_secs_f64()
    );
    println!(
        "| restore | {} | {} | {} | {} | {:.2} |",
        cell(r_local),
        cell(r_s3),
        cell(r_cli),
        cell(r_pipe),
        r_cli.as_secs_f64() / r_s3.as_secs_f64()
    );
    let object = s3.object_file("gitpod-user-owner-1", "workspaces/meta-bench/full.tar.zst");
    let size = std::fs::metadata(object).map(|m| m.len()).unwrap_or(0);
    println!(
        "\narchive in S3: {:.1} MiB; S3 daemon peak RSS: backup {backup_peak:.1} MiB, restore {restore_peak:.1} MiB",
        size as f64 / (1 << 20) as f64
    );
}
