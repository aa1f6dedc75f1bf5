//! `ws-daemon ctl` against a running daemon, over TCP and its unix socket: a workspace made,
//! backed up with progress lines, disposed of and restored from its backup and from a snapshot;
//! answers that are not OK become the status code as exit code.

use std::process::Output;

use wsd_tests::{daemon_binary, tree, write_random, DaemonProcess};

const SKIP: &[&str] = &[".gitpod"];

async fn ctl(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(daemon_binary())
            .args(args)
            .env_remove("WSD_CTL_ADDR")
            .env_remove("WSD_CTL_SOCKET")
            .env_remove("WSD_CONFIG")
            .env("NO_COLOR", "1")
            .output()
    })
    .await
    .expect("join")
    .expect("run ws-daemon ctl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_string()
}

/// Runs `ws-daemon ctl --addr <daemon> args...` and expects exit code `code`; answers stdout.
async fn ctl_at(d: &DaemonProcess, args: &[&str], code: i32) -> (String, String) {
    let endpoint = d.endpoint();
    let mut all = vec!["ctl", "--addr", endpoint.as_str()];
    all.extend_from_slice(args);
    let out = ctl(&all).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(code),
        "ws-daemon {all:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    (stdout, stderr)
}

#[tokio::test]
async fn ctl_drives_a_workspace_from_init_to_restore() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("wsd.sock");
    let d = DaemonProcess::start(
        &dir.path().join("node"),
        &format!("[server]\nunix_socket = {socket:?}\n[archive]\nmode = \"chunked\"\n"),
    )
    .await;

    ctl_at(
        &d,
        &["init", "ws-c", "--owner", "u", "--meta-id", "meta-c"],
        0,
    )
    .await;
    let (state, _) = ctl_at(&d, &["state", "ws-c"], 0).await;
    assert_eq!(state, "AVAILABLE");
    let content = d.working_area().join("ws-c");
    tree::populate(&content);
    for i in 0..4 {
        write_random(&content.join(format!("big{i}.bin")), 16 << 20, i);
    }
    let original = tree::snapshot(&content, SKIP);

    // Over the unix socket; not a terminal, so progress comes as plain lines on stderr.
    let sock = socket.to_str().expect("utf-8");
    let out = ctl(&["ctl", "--socket", sock, "backup", "ws-c"]).await;
    let (url, lines) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{lines}");
    assert!(!url.is_empty(), "the backup's name is printed");
    assert!(lines.contains("ws-c backup: "), "{lines}");
    let last = lines.lines().last().unwrap_or_default();
    assert!(last.starts_with("ws-c backup: done, "), "{lines}");
    assert!(last.contains("MiB"), "bytes are counted: {lines}");

    // The target comes from the daemon's own config file (its unix socket) when no flag names it.
    let config = d.dir.join("config.toml");
    let out = ctl(&[
        "--config",
        config.to_str().expect("utf-8"),
        "ctl",
        "snapshot",
        "ws-c",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let snapshot = text(&out.stdout);
    assert!(!snapshot.is_empty(), "the snapshot's name is printed");

    // watch shows the last operation (the snapshot) and ends, as it is done.
    let (_, watched) = ctl_at(&d, &["watch", "ws-c"], 0).await;
    assert!(watched.contains("ws-c snapshot: done"), "{watched}");

    ctl_at(&d, &["dispose", "ws-c"], 0).await;
    assert!(!content.exists(), "disposed of");
    // As the RPC: disposing of a workspace that is gone already is not an error.
    ctl_at(&d, &["dispose", "ws-c", "--no-backup"], 0).await;

    ctl_at(
        &d,
        &[
            "init",
            "ws-r",
            "--owner",
            "u",
            "--meta-id",
            "meta-c",
            "--from-backup",
        ],
        0,
    )
    .await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-r"), SKIP),
        original,
        "restored from the backup"
    );
    ctl_at(
        &d,
        &[
            "init",
            "ws-s",
            "--owner",
            "u",
            "--meta-id",
            "meta-s",
            "--snapshot",
            &snapshot,
        ],
        0,
    )
    .await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-s"), SKIP),
        original,
        "restored from the snapshot"
    );
}

#[tokio::test]
async fn answers_that_are_not_ok_are_the_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;

    let (_, err) = ctl_at(&d, &["backup", "nope"], 5).await;
    assert!(err.contains("NOT_FOUND"), "{err}");
    ctl_at(&d, &["init", "ws-e", "--owner", "u", "--meta-id", "m-e"], 0).await;
    let (_, err) = ctl_at(&d, &["init", "ws-e", "--owner", "u", "--meta-id", "m-e"], 6).await;
    assert!(err.contains("ALREADY_EXISTS"), "{err}");
    let (_, err) = ctl_at(
        &d,
        &[
            "init",
            "ws-f",
            "--owner",
            "u",
            "--meta-id",
            "m-none",
            "--from-backup",
        ],
        9,
    )
    .await;
    assert!(err.contains("FAILED_PRECONDITION"), "{err}");
    let (_, err) = ctl_at(&d, &["init", "bad/id", "--owner", "u", "--meta-id", "m"], 3).await;
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");

    // Nothing listening: UNAVAILABLE, with the address in the message.
    let port = wsd_tests::free_port();
    let addr = format!("127.0.0.1:{port}");
    let out = ctl(&["ctl", "--addr", &addr, "state", "x"]).await;
    assert_eq!(out.status.code(), Some(14));
    let err = text(&out.stderr);
    assert!(err.contains("UNAVAILABLE") && err.contains(&addr), "{err}");
    let out = ctl(&["ctl", "--socket", "/nonexistent/wsd.sock", "state", "x"]).await;
    assert_eq!(out.status.code(), Some(14), "{}", text(&out.stderr));
}
