//! Human logs carry colour only for a person at a terminal: a log written to a file or a pipe has
//! no ANSI escape, and `NO_COLOR` turns colour off on a terminal too.
//!
//! The daemon is started the way a new user would (`ws-daemon > log 2>&1`), without the test
//! harness's `NO_COLOR`, on a port that is already taken: it logs its start (INFO) and the failure
//! (ERROR), both coloured on a terminal, and exits at once.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use wsd_tests::{daemon_binary, free_port};

const ESC: u8 = 0x1b;

/// The daemon's arguments for a start in `dir` that fails on the taken `port`.
fn args(dir: &Path, port: u16) -> Vec<String> {
    let config = dir.join("config.toml");
    std::fs::write(&config, "").expect("config file");
    vec![
        "--config".into(),
        config.display().to_string(),
        "--working-area".into(),
        dir.join("workspaces").display().to_string(),
        "--storage-path".into(),
        dir.join("storage").display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{}", free_port()),
    ]
}

/// A port held by this test, so the daemon's listen fails after its logging is set up.
fn taken_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local address").port();
    (listener, port)
}

/// Checks that `log` is the failed start's log and says whether it contains an escape byte.
fn has_escape(log: &[u8]) -> bool {
    let text = String::from_utf8_lossy(log);
    assert!(
        text.contains("INFO") && text.contains("ERROR") && text.contains("cannot listen"),
        "unexpected log:\n{text}"
    );
    log.contains(&ESC)
}

fn without_no_color(mut command: Command) -> Command {
    command.env_remove("NO_COLOR");
    command
}

#[test]
fn logs_written_to_a_file_have_no_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_held, port) = taken_port();
    let log_path = dir.path().join("log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let err = log.try_clone().expect("log file");
    // ws-daemon > log 2>&1
    let status = without_no_color(Command::new(daemon_binary()))
        .args(args(dir.path(), port))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .status()
        .expect("run ws-daemon");
    assert!(!status.success(), "the taken port must fail the start");
    let log = std::fs::read(&log_path).expect("read log");
    assert!(
        !has_escape(&log),
        "ANSI escapes in a log file:\n{}",
        String::from_utf8_lossy(&log)
    );
}

#[test]
fn logs_written_to_a_pipe_have_no_colour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_held, port) = taken_port();
    let output = without_no_color(Command::new(daemon_binary()))
        .args(args(dir.path(), port))
        .stdin(Stdio::null())
        .output()
        .expect("run ws-daemon");
    assert!(
        !output.status.success(),
        "the taken port must fail the start"
    );
    assert!(
        !has_escape(&output.stderr),
        "ANSI escapes in a piped log:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the daemon on a pseudo-terminal (util-linux `script`), so the checks above are known to
/// see colour when there is some; returns what the terminal showed.
fn on_a_terminal(dir: &Path, port: u16, no_color: Option<&str>) -> Output {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut line = quote(&daemon_binary().display().to_string());
    for arg in args(dir, port) {
        line.push(' ');
        line.push_str(&quote(&arg));
    }
    let mut command = without_no_color(Command::new("script"));
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    command
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("run script (util-linux) to give ws-daemon a terminal")
}

#[test]
fn logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_held, port) = taken_port();
    let plain = on_a_terminal(dir.path(), port, None);
    assert!(
        has_escape(&plain.stdout),
        "no colour on a terminal:\n{}",
        String::from_utf8_lossy(&plain.stdout)
    );
    let empty = on_a_terminal(dir.path(), port, Some(""));
    assert!(
        has_escape(&empty.stdout),
        "an empty NO_COLOR counts as unset:\n{}",
        String::from_utf8_lossy(&empty.stdout)
    );
    let no_color = on_a_terminal(dir.path(), port, Some("1"));
    assert!(
        !has_escape(&no_color.stdout),
        "NO_COLOR=1 on a terminal still coloured:\n{}",
        String::from_utf8_lossy(&no_color.stdout)
    );
}
