//! The download initializer against a local HTTP server: good digest, bad digest, 404, transient
//! failures retried, and paths that try to leave the workspace.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tonic::Code;
use wsd_proto::contentservice::file_download_initializer::FileInfo;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{
    CompositeInitializer, FileDownloadInitializer, WorkspaceInitializer,
};
use wsd_tests::http::{HttpServer, Route};
use wsd_tests::{init_request, DaemonProcess};

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn download(files: Vec<FileInfo>, target: &str) -> Spec {
    Spec::Download(FileDownloadInitializer {
        files,
        target_location: target.into(),
    })
}

async fn server() -> HttpServer {
    let mut flaky = Route::ok(b"third time lucky".to_vec());
    flaky.fail_first = 2;
    HttpServer::start(HashMap::from([
        ("/a.txt".to_string(), Route::ok(b"alpha".to_vec())),
        ("/b.bin".to_string(), Route::ok(vec![7u8; 300_000])),
        ("/flaky".to_string(), flaky),
    ]))
    .await
}

#[tokio::test]
async fn files_with_good_digests_land_in_their_folders() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let http = server().await;
    let mut c = d.client().await;
    let spec = download(
        vec![
            FileInfo {
                url: http.url("/a.txt"),
                file_path: "docs/a.txt".into(),
                digest: sha256(b"alpha"),
            },
            FileInfo {
                url: http.url("/b.bin"),
                file_path: "b.bin".into(),
                digest: sha256(&[7u8; 300_000]),
            },
            FileInfo {
                url: http.url("/flaky"),
                file_path: "deep/er/flaky.txt".into(),
                digest: sha256(b"third time lucky"),
            },
        ],
        "/downloads",
    );
    c.init_workspace(init_request("ws-1", "m", spec))
        .await
        .expect("init");
    let root = d.working_area().join("ws-1/downloads");
    assert_eq!(std::fs::read(root.join("docs/a.txt")).expect("a"), b"alpha");
    assert_eq!(std::fs::read(root.join("b.bin")).expect("b").len(), 300_000);
    assert_eq!(
        std::fs::read(root.join("deep/er/flaky.txt")).expect("flaky"),
        b"third time lucky"
    );
    assert_eq!(
        http.hits("/flaky"),
        3,
        "two 503 answers, then a retry that started anew"
    );
    let leftovers: Vec<_> = std::fs::read_dir(root.join("deep/er"))
        .expect("ls")
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
    let ready =
        std::fs::read_to_string(d.working_area().join("ws-1/.gitpod/ready")).expect("ready");
    let json: serde_json::Value = serde_json::from_str(&ready).expect("json");
    assert_eq!(json["source"], "from-other");
    assert_eq!(json["metrics"].as_array().map(Vec::len), Some(3));
    assert_eq!(json["metrics"][1]["type"], "download");
    assert_eq!(json["metrics"][1]["size"], 300_000);
}

#[tokio::test]
async fn bad_digest_404_and_traversal_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let http = server().await;
    let mut c = d.client().await;

    let bad_digest = download(
        vec![FileInfo {
            url: http.url("/a.txt"),
            file_path: "a.txt".into(),
            digest: sha256(b"something else"),
        }],
        "",
    );
    let status = c
        .init_workspace(init_request("ws-1", "m", bad_digest))
        .await
        .expect_err("mismatch");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("digest mismatch"),
        "{}",
        status.message()
    );
    assert_eq!(http.hits("/a.txt"), 1, "a digest mismatch is not retried");

    let missing = download(
        vec![FileInfo {
            url: format!("{}?token=s3cr3t", http.url("/missing")),
            file_path: "m".into(),
            digest: sha256(b""),
        }],
        "",
    );
    let status = c
        .init_workspace(init_request("ws-2", "m", missing))
        .await
        .expect_err("404");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("404"), "{}", status.message());
    assert!(
        !status.message().contains("s3cr3t"),
        "query strings never reach errors: {}",
        status.message()
    );

    for path in [
        "../../escape.txt",
        "a/../../../escape.txt",
        "/../escape.txt",
    ] {
        let spec = download(
            vec![FileInfo {
                url: http.url("/a.txt"),
                file_path: path.into(),
                digest: sha256(b"alpha"),
            }],
            "",
        );
        let r = c.init_workspace(init_request("ws-3", "m", spec)).await;
        assert_eq!(
            r.expect_err("traversal").code(),
            Code::InvalidArgument,
            "{path}"
        );
    }
    let spec = download(
        vec![FileInfo {
            url: http.url("/a.txt"),
            file_path: "x".into(),
            digest: sha256(b"alpha"),
        }],
        "../..",
    );
    let r = c.init_workspace(init_request("ws-3", "m", spec)).await;
    assert_eq!(r.expect_err("traversal").code(), Code::InvalidArgument);

    // A symlink planted by an earlier initializer of a composite cannot redirect a download.
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let snapshot_with_link = build_snapshot_with_symlink(&d, &outside);
    let composite = Spec::Composite(CompositeInitializer {
        initializer: vec![
            WorkspaceInitializer {
                spec: Some(snapshot_with_link),
            },
            WorkspaceInitializer {
                spec: Some(download(
                    vec![FileInfo {
                        url: http.url("/a.txt"),
                        file_path: "link/a.txt".into(),
                        digest: sha256(b"alpha"),
                    }],
                    "",
                )),
            },
        ],
    });
    let r = c.init_workspace(init_request("ws-4", "m", composite)).await;
    assert_eq!(
        r.expect_err("symlink escape").code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        std::fs::read_dir(&outside).expect("ls").count(),
        0,
        "nothing written outside"
    );

    for id in ["ws-1", "ws-2", "ws-3", "ws-4"] {
        assert!(
            !d.working_area().join(id).exists(),
            "{id} left content behind"
        );
    }
}

/// Puts a snapshot archive holding a symlink `link -> <outside>` into the daemon's storage.
fn build_snapshot_with_symlink(d: &DaemonProcess, outside: &std::path::Path) -> Spec {
    let key = "workspaces/m/snapshot-link.tar";
    let object = d.storage().join("gitpod-user-owner-1").join(key);
    std::fs::create_dir_all(object.parent().expect("parent")).expect("mkdir");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    builder
        .append_link(&mut header, "link", outside)
        .expect("append");
    std::fs::write(&object, builder.into_inner().expect("finish")).expect("write");
    Spec::Snapshot(wsd_proto::contentservice::SnapshotInitializer {
        snapshot: format!("{key}@gitpod-user-owner-1"),
        from_volume_snapshot: false,
    })
}
