//! The Azure Blob Storage emulator Azurite (which checks Shared Key signatures) as a child process
//! on loopback, for the Azure backend tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::free_port;

/// `$WSD_AZURITE`, the `azurite-blob` command that scripts/install-azurite.sh installs.
pub fn azurite_binary() -> PathBuf {
    let bin = std::env::var_os("WSD_AZURITE").map(PathBuf::from);
    match bin {
        Some(bin) if bin.is_file() => bin,
        _ => panic!(
            "the Azure test emulator is missing: run ./scripts/test-all.sh once (it installs \
             Azurite) or set WSD_AZURITE to the path that scripts/install-azurite.sh prints"
        ),
    }
}

pub struct Azurite {
    pub port: u16,
    child: Child,
}

impl Azurite {
    pub async fn start(data: &Path) -> Azurite {
        let log = data.with_extension("log");
        std::fs::create_dir_all(data).expect("azurite folder");
        let port = free_port();
        let child = Command::new(azurite_binary())
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data)
            .args(["--silent", "--skipApiVersionCheck"])
            .stdout(crate::log_file(&log))
            .stderr(crate::log_file(&log))
            .spawn()
            .expect("start azurite");
        let mut azurite = Azurite { port, child };
        crate::wait_for_port(&mut azurite.child, port, "azurite", &log).await;
        azurite
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `[storage]` tables of a daemon on this emulator's development account.
    pub fn daemon_config(&self) -> String {
        format!(
            "[storage]\nbackend = \"azure\"\n[storage.azure]\nuse_emulator = true\nendpoint = \"{}\"\n",
            self.endpoint()
        )
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
