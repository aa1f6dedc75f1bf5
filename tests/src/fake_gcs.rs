//! The Google Cloud Storage emulator fake-gcs-server as a child process on loopback (plain HTTP, no
//! OAuth), for the GCS backend tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::free_port;

/// `$WSD_FAKE_GCS`, the binary that scripts/install-fake-gcs-server.sh installs.
pub fn fake_gcs_binary() -> PathBuf {
    match std::env::var_os("WSD_FAKE_GCS").map(PathBuf::from) {
        Some(bin) if bin.is_file() => bin,
        _ => panic!(
            "the GCS test emulator is missing: run ./scripts/test-all.sh once (it installs \
             fake-gcs-server) or set WSD_FAKE_GCS to the path scripts/install-fake-gcs-server.sh \
             prints"
        ),
    }
}

pub struct FakeGcs {
    pub port: u16,
    pub root: PathBuf,
    child: Child,
}

impl FakeGcs {
    pub async fn start(root: &Path) -> FakeGcs {
        let log = root.with_extension("log");
        std::fs::create_dir_all(root).expect("gcs folder");
        let port = free_port();
        let child = Command::new(fake_gcs_binary())
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                &port.to_string(),
            ])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .args(["-backend", "filesystem", "-log-level", "error"])
            .arg("-filesystem-root")
            .arg(root)
            .stdout(crate::log_file(&log))
            .stderr(crate::log_file(&log))
            .spawn()
            .expect("start fake-gcs-server");
        let mut gcs = FakeGcs {
            port,
            root: root.to_path_buf(),
            child,
        };
        crate::wait_for_port(&mut gcs.child, port, "fake-gcs-server", &log).await;
        gcs
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `[storage]` tables of a daemon on this emulator: a service account key without OAuth (the
    /// emulator takes no tokens) and a project, so missing buckets are created.
    pub fn daemon_config(&self) -> String {
        let key = r#"{"client_email": "ws-daemon@test.iam", "private_key": "", "private_key_id": "", "disable_oauth": true}"#;
        format!(
            "[storage]\nbackend = \"gcs\"\n[storage.gcs]\nendpoint = \"{}\"\nproject = \"test\"\n\
             service_account_key = '{key}'\n",
            self.endpoint()
        )
    }
}

impl Drop for FakeGcs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
