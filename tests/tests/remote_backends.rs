//! Remote backends that cannot work refuse to start, saying what to set: no credentials for S3,
//! GCS or Azure, an unreadable GCS key file. Nothing here needs the network.

use std::process::Command;

use wsd_tests::{daemon_binary, free_port};

/// Runs ws-daemon with `config` and an environment without any cloud credentials; returns its exit
/// success and what it printed.
fn start_with(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).expect("config");
    let out = Command::new(daemon_binary())
        .env_clear()
        .env("HOME", dir.path())
        .arg("--config")
        .arg(&file)
        .arg("--working-area")
        .arg(dir.path().join("workspaces"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--metrics-listen")
        .arg("off")
        .output()
        .expect("run ws-daemon");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.success(), text)
}

#[test]
fn remote_backends_without_credentials_refuse_to_start() {
    for (backend, hint) in [
        ("s3", "AWS_ACCESS_KEY_ID"),
        ("gcs", "GOOGLE_APPLICATION_CREDENTIALS"),
        ("azure", "AZURE_STORAGE_ACCOUNT_NAME"),
    ] {
        let (ok, text) = start_with(&format!("[storage]\nbackend = \"{backend}\"\n"));
        assert!(!ok, "{backend}: started without credentials");
        assert!(
            text.contains("no ") && text.contains(hint),
            "{backend}: {text}"
        );
    }
}

#[test]
fn an_unreadable_gcs_key_file_refuses_to_start() {
    let (ok, text) = start_with(
        "[storage]\nbackend = \"gcs\"\n[storage.gcs]\nservice_account_path = \"/nonexistent/key.json\"\n",
    );
    assert!(!ok);
    assert!(text.contains("cannot be set up"), "{text}");
}

#[test]
fn an_azure_account_without_a_key_names_the_key_to_set() {
    let (ok, text) =
        start_with("[storage]\nbackend = \"azure\"\n[storage.azure]\naccount = \"acct\"\n");
    assert!(!ok);
    assert!(text.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{text}");
}
