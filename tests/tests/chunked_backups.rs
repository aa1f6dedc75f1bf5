//! The chunked archive mode over gRPC with a real daemon: backups that upload only what changed,
//! restores from manifests, snapshots and prebuilds as manifests, `both`, moving a workspace
//! between modes, a damaged backup failing its restore with DATA_LOSS and leaving nothing, and the
//! same round trip through the S3 test server.

use std::path::{Path, PathBuf};

use tonic::Code;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{
    EmptyInitializer, FromBackupInitializer, PrebuildInitializer, SnapshotInitializer,
};
use wsd_proto::wsdaemon::{
    BackupWorkspaceRequest, DisposeWorkspaceRequest, TakeSnapshotRequest, WaitForInitRequest,
};
use wsd_tests::s3::{S3Server, SECRET_KEY};
use wsd_tests::{init_ready, init_request, tree, write_random, Client, DaemonProcess};

const SKIP: &[&str] = &[".gitpod"];
const BUCKET: &str = "gitpod-user-owner-1";

/// Where the daemon's objects are kept: its local storage folder, or the S3 test server (whose
/// objects are files under its root too, so tests can damage them the same way).
enum Store {
    Local,
    S3(S3Server),
}

impl Store {
    async fn s3(dir: &Path) -> Store {
        Store::S3(S3Server::start(&dir.join("s3")).await)
    }

    fn config(&self, tables: &str) -> String {
        match self {
            Store::Local => tables.to_string(),
            Store::S3(s3) => format!(
                "{}{tables}",
                S3Server::daemon_config(&s3.endpoint(), SECRET_KEY, "")
            ),
        }
    }

    /// The folder holding the objects of the daemon's buckets.
    fn root(&self, d: &DaemonProcess) -> PathBuf {
        match self {
            Store::Local => d.storage(),
            Store::S3(s3) => s3.root.clone(),
        }
    }
}

fn mode(mode: &str) -> String {
    format!("[archive]\nmode = \"{mode}\"\nkeep_backups = 2\n")
}

async fn backup(c: &mut Client, id: &str) -> Result<String, tonic::Status> {
    c.backup_workspace(BackupWorkspaceRequest { id: id.into() })
        .await
        .map(|r| r.into_inner().url)
}

async fn dispose(c: &mut Client, id: &str, backup: bool) {
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: id.into(),
        backup,
        backup_logs: false,
    })
    .await
    .expect("dispose");
}

fn from_backup() -> Spec {
    Spec::Backup(FromBackupInitializer {
        checkout_location: String::new(),
        from_volume_snapshot: false,
    })
}

fn ready_source(d: &DaemonProcess, id: &str) -> String {
    let text = std::fs::read_to_string(d.working_area().join(id).join(".gitpod/ready"))
        .expect("ready file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("ready file is JSON");
    json["source"].as_str().expect("source").to_string()
}

/// Files under `root` whose names end with `suffix`.
fn files_ending(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The key of the full manifest the stored manifest at `path` is a delta against, if it is one.
fn base_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).expect("manifest");
    wsd_core::chunked::delta_header(&bytes)
        .expect("a manifest")
        .map(|h| h.base_key)
}

fn pack_bytes(storage: &Path) -> u64 {
    files_ending(storage, ".pack")
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn chunked_backups_upload_what_changed_and_restore_the_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), &mode("chunked")).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-a", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-a");
    tree::populate(&content);
    write_random(&content.join("big.bin"), 9 << 20, 7);

    let url = backup(&mut c, "ws-a").await.expect("backup");
    assert!(
        url.starts_with("workspaces/meta-a/backups/") && url.ends_with(&format!(".wsm@{BUCKET}")),
        "{url}"
    );
    assert!(
        files_ending(&d.storage(), "full.tar.zst").is_empty(),
        "no full archive in chunked mode"
    );
    let first = pack_bytes(&d.storage());
    assert!(
        first > 9 << 20,
        "the first backup stores everything: {first}"
    );

    // Unchanged: nothing new is stored.
    backup(&mut c, "ws-a").await.expect("second backup");
    assert_eq!(pack_bytes(&d.storage()), first);

    // A small change stores about that much.
    std::fs::write(content.join("changed.txt"), b"a new file").expect("write");
    let expected = tree::snapshot(&content, SKIP);
    backup(&mut c, "ws-a").await.expect("third backup");
    let grown = pack_bytes(&d.storage()) - first;
    assert!(
        grown > 0 && grown < 64 << 10,
        "the third backup stored {grown} bytes"
    );
    // The incremental backups stored deltas against the first, which keep_backups = 2 keeps
    // while they need it.
    let manifests = files_ending(
        &d.storage().join(BUCKET).join("workspaces/meta-a/backups"),
        ".wsm",
    );
    let bases: Vec<Option<String>> = manifests.iter().map(|m| base_of(m)).collect();
    let full = manifests[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        bases.len() == 3
            && bases[0].is_none()
            && bases[1..]
                .iter()
                .all(|b| b.as_deref().is_some_and(|b| b.ends_with(full))),
        "{manifests:?}: {bases:?}"
    );
    let full_bytes = std::fs::metadata(&manifests[0]).expect("manifest").len();
    let delta_bytes = std::fs::metadata(&manifests[2]).expect("manifest").len();
    assert!(
        delta_bytes * 2 < full_bytes,
        "a delta of {delta_bytes} bytes against a full manifest of {full_bytes}"
    );

    dispose(&mut c, "ws-a", false).await;
    init_ready(&mut c, "ws-b", "meta-a", from_backup()).await;
    assert_eq!(ready_source(&d, "ws-b"), "from-backup");
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-b"), SKIP),
        expected
    );

    // The restored workspace's next backup starts from the restored manifest: the content is
    // stored already, so (almost) nothing is uploaded.
    let before = pack_bytes(&d.storage());
    std::fs::write(d.working_area().join("ws-b/later.txt"), b"later").expect("write");
    let expected = tree::snapshot(&d.working_area().join("ws-b"), SKIP);
    dispose(&mut c, "ws-b", true).await;
    let grown = pack_bytes(&d.storage()) - before;
    assert!(
        grown < 64 << 10,
        "the restored workspace's backup stored {grown} bytes"
    );
    init_ready(&mut c, "ws-c", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(ready_source(&d, "ws-c"), "from-backup");
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-c"), SKIP),
        expected
    );
    assert!(
        !d.working_area().join("ws-a.parent.wsm").exists(),
        "disposal removes the kept parent"
    );
}

#[tokio::test]
async fn snapshots_and_prebuilds_as_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), &mode("chunked")).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-s", "meta-s", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-s");
    tree::populate(&content);
    let original = tree::snapshot(&content, SKIP);
    let url = c
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-s".into(),
            return_immediately: false,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;
    assert!(
        url.starts_with("workspaces/meta-s/snapshot-") && url.ends_with(&format!(".wsm@{BUCKET}")),
        "{url}"
    );
    dispose(&mut c, "ws-s", false).await;
    let snap = SnapshotInitializer {
        snapshot: url,
        from_volume_snapshot: false,
    };
    init_ready(&mut c, "ws-t", "meta-t", Spec::Snapshot(snap.clone())).await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-t"), SKIP),
        original
    );
    let prebuild = PrebuildInitializer {
        prebuild: Some(snap),
        git: vec![],
    };
    init_ready(&mut c, "ws-p", "meta-p", Spec::Prebuild(prebuild)).await;
    assert_eq!(ready_source(&d, "ws-p"), "from-prebuild");
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-p"), SKIP),
        original
    );
}

#[tokio::test]
async fn a_workspace_moves_between_modes_and_both_writes_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = DaemonProcess::start(dir.path(), &mode("full")).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-m", "meta-m", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-m");
    tree::populate(&content);
    let url = backup(&mut c, "ws-m").await.expect("full backup");
    assert_eq!(url, format!("workspaces/meta-m/full.tar.zst@{BUCKET}"));

    // Chunked now: the manifest is newer than the full archive and is what restores.
    d.restart_with(&mode("chunked")).await;
    let mut c = d.client().await;
    std::fs::write(content.join("after-full.txt"), b"1").expect("write");
    backup(&mut c, "ws-m").await.expect("chunked backup");
    let expected = tree::snapshot(&content, SKIP);
    init_ready(&mut c, "ws-m2", "meta-m", from_backup()).await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-m2"), SKIP),
        expected
    );
    dispose(&mut c, "ws-m2", false).await;

    // Full again: the new full archive is newest.
    d.restart_with(&mode("full")).await;
    let mut c = d.client().await;
    std::fs::write(content.join("after-chunked.txt"), b"2").expect("write");
    backup(&mut c, "ws-m").await.expect("full backup again");
    let expected = tree::snapshot(&content, SKIP);
    init_ready(&mut c, "ws-m3", "meta-m", from_backup()).await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-m3"), SKIP),
        expected
    );
    dispose(&mut c, "ws-m3", false).await;

    // Both: the answer names the full archive; both exist; the restore takes the manifest.
    d.restart_with(&mode("both")).await;
    let mut c = d.client().await;
    std::fs::write(content.join("in-both.txt"), b"3").expect("write");
    let url = backup(&mut c, "ws-m").await.expect("backup in both");
    assert_eq!(url, format!("workspaces/meta-m/full.tar.zst@{BUCKET}"));
    let expected = tree::snapshot(&content, SKIP);
    let manifests = files_ending(
        &d.storage().join(BUCKET).join("workspaces/meta-m/backups"),
        ".wsm",
    );
    assert_eq!(manifests.len(), 2, "keep_backups = 2: {manifests:?}");
    // Remove the full archive: the manifest alone restores it, so it was written in full.
    std::fs::remove_file(
        d.storage()
            .join(BUCKET)
            .join("workspaces/meta-m/full.tar.zst"),
    )
    .expect("rm");
    init_ready(&mut c, "ws-m4", "meta-m", from_backup()).await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-m4"), SKIP),
        expected
    );
}

#[tokio::test]
async fn a_damaged_backup_fails_with_data_loss_and_leaves_no_workspace() {
    damaged_backup(Store::Local).await;
}

#[tokio::test]
async fn a_damaged_backup_on_s3_fails_with_data_loss_and_leaves_no_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    damaged_backup(Store::s3(dir.path()).await).await;
}

async fn damaged_backup(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), &store.config(&mode("chunked"))).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-d", "meta-d", Spec::Empty(EmptyInitializer {})).await;
    write_random(&d.working_area().join("ws-d/data.bin"), 3 << 20, 3);
    backup(&mut c, "ws-d").await.expect("backup");
    dispose(&mut c, "ws-d", false).await;

    for damage in ["corrupt", "remove"] {
        let packs = files_ending(&store.root(&d), ".pack");
        assert_eq!(packs.len(), 1);
        let pack = &packs[0];
        let original = std::fs::read(pack).expect("pack");
        if damage == "corrupt" {
            let mut bytes = original.clone();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x5a;
            std::fs::write(pack, bytes).expect("corrupt");
        } else {
            std::fs::remove_file(pack).expect("remove");
        }
        let id = format!("ws-{damage}");
        // The backup is restored before InitWorkspace answers; a failure may also reach WaitForInit.
        let err = match c
            .init_workspace(init_request(&id, "meta-d", from_backup()))
            .await
        {
            Err(e) => e,
            Ok(_) => c
                .wait_for_init(WaitForInitRequest { id: id.clone() })
                .await
                .expect_err("a damaged backup does not restore"),
        };
        assert_eq!(err.code(), Code::DataLoss, "{damage}: {err:?}");
        assert!(
            err.message().contains("workspace meta-d"),
            "{}",
            err.message()
        );
        assert!(
            !err.message().contains(&dir.path().display().to_string()),
            "no host path"
        );
        assert!(!d.working_area().join(&id).exists(), "no partial workspace");
        std::fs::write(pack, &original).expect("repair");
    }
    // Repaired, it restores.
    init_ready(&mut c, "ws-ok", "meta-d", from_backup()).await;
    assert!(d.working_area().join("ws-ok/data.bin").is_file());
}

#[tokio::test]
async fn chunked_backups_through_s3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let config = format!(
        "{}{}",
        S3Server::daemon_config(&s3.endpoint(), SECRET_KEY, ""),
        mode("chunked")
    );
    let a = DaemonProcess::start(&dir.path().join("node-a"), &config).await;
    let mut ca = a.client().await;
    init_ready(&mut ca, "ws-a", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    let content = a.working_area().join("ws-a");
    tree::populate(&content);
    write_random(&content.join("big.bin"), 20 << 20, 11);
    backup(&mut ca, "ws-a").await.expect("backup");
    let first = pack_bytes(&s3.root);
    assert!(first > 20 << 20, "{first}");
    std::fs::write(content.join("small-change"), b"x").expect("write");
    let expected = tree::snapshot(&content, SKIP);
    backup(&mut ca, "ws-a").await.expect("incremental backup");
    assert!(pack_bytes(&s3.root) - first < 64 << 10);

    // Another node restores it.
    let b = DaemonProcess::start(&dir.path().join("node-b"), &config).await;
    let mut cb = b.client().await;
    init_ready(&mut cb, "ws-b", "meta-a", from_backup()).await;
    assert_eq!(
        tree::snapshot(&b.working_area().join("ws-b"), SKIP),
        expected
    );
}

#[tokio::test]
async fn the_daemon_collects_packs_of_pruned_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = "[archive]\nmode = \"chunked\"\nkeep_backups = 1\ngc_interval_secs = 1\ngc_grace_secs = 0\n";
    let d = DaemonProcess::start(dir.path(), config).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-g", "meta-g", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-g");
    // Only data.bin, so that replacing it leaves the first pack unreferenced (a pack goes only
    // when none of its chunks is used; the ready file would keep it).
    std::fs::remove_dir_all(content.join(".gitpod")).expect("remove .gitpod");
    write_random(&content.join("data.bin"), 4 << 20, 1);
    backup(&mut c, "ws-g").await.expect("first backup");
    let first = files_ending(&d.storage(), ".pack");
    write_random(&content.join("data.bin"), 4 << 20, 2);
    backup(&mut c, "ws-g").await.expect("second backup");
    let expected = tree::snapshot(&content, SKIP);
    // The first backup was pruned; its pack goes at the next collection.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while files_ending(&d.storage(), ".pack")
        .iter()
        .any(|p| first.contains(p))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the pruned backup's pack was not collected: {}",
            d.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(files_ending(&d.storage(), ".pack").len(), 1);
    init_ready(&mut c, "ws-h", "meta-g", from_backup()).await;
    assert_eq!(
        tree::snapshot(&d.working_area().join("ws-h"), SKIP),
        expected
    );
}

/// Kills the daemon (SIGKILL) at spread-out points of a chunked backup, many times: after each
/// restart the previous backup still restores, and every manifest in storage names only packs
/// that exist.
#[tokio::test]
async fn a_backup_killed_at_any_point_leaves_the_previous_one_whole() {
    killed_backups(Store::Local).await;
}

#[tokio::test]
async fn a_backup_on_s3_killed_at_any_point_leaves_the_previous_one_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    killed_backups(Store::s3(dir.path()).await).await;
}

async fn killed_backups(store: Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = DaemonProcess::start(dir.path(), &store.config(&mode("chunked"))).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-k", "meta-k", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-k");
    for i in 0..6 {
        write_random(&content.join(format!("f{i}.bin")), 6 << 20, i);
    }
    // How long a backup of everything takes here (killed backups leave more and more changed
    // files to the next): kill points spread over that long.
    let started = std::time::Instant::now();
    backup(&mut c, "ws-k").await.expect("first backup");
    let span_ms = (started.elapsed().as_millis() as u64).max(50);
    let mut expected = tree::snapshot(&content, SKIP);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.as_nanos() as u64)
        .unwrap_or(1);
    println!("kill points seed {seed}, spread over {span_ms} ms");
    let mut rng = seed | 1;
    let mut completed = 0;
    for round in 0..8u64 {
        // New content each round, so the backup has packs to upload when it is killed.
        write_random(
            &content.join(format!("f{}.bin", round % 6)),
            6 << 20,
            100 + round,
        );
        let attempt = tree::snapshot(&content, SKIP);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let delay = std::time::Duration::from_millis(rng % span_ms);
        let mut c = d.client().await;
        let running = tokio::spawn(async move { backup(&mut c, "ws-k").await });
        tokio::time::sleep(delay).await;
        d.stop_with(nix::sys::signal::Signal::SIGKILL).await;
        if let Ok(Ok(_)) = running.await {
            completed += 1;
            expected = attempt.clone();
        }
        d.restart().await;

        // Every manifest's packs exist.
        let storage = store.root(&d);
        for manifest in files_ending(
            &storage.join(BUCKET).join("workspaces/meta-k/backups"),
            ".wsm",
        ) {
            let bytes = std::fs::read(&manifest).expect("manifest");
            let stored =
                wsd_core::chunked::decode_stored(&bytes).expect("a stored manifest is whole");
            let packs = match stored {
                wsd_core::chunked::Stored::Full(m) => m.packs,
                // A delta's other packs are its base's, itself one of the manifests checked.
                wsd_core::chunked::Stored::Delta(header, delta) => {
                    assert!(
                        storage.join(BUCKET).join(&header.base_key).is_file(),
                        "round {round} (seed {seed}): a delta's base is missing"
                    );
                    delta.packs
                }
            };
            for pack in &packs {
                let file = storage
                    .join(BUCKET)
                    .join(format!("packs/{}/{pack}.pack", &pack[..2]));
                assert!(
                    file.is_file(),
                    "round {round} (seed {seed}): manifest names missing pack"
                );
            }
        }
        // The newest backup restores what it recorded.
        let mut c = d.client().await;
        let id = format!("ws-r{round}");
        init_ready(&mut c, &id, "meta-k", from_backup()).await;
        let restored = tree::snapshot(&d.working_area().join(&id), SKIP);
        if restored != expected {
            // A backup may have committed just before the kill without its answer arriving.
            assert_eq!(restored, attempt, "round {round} (seed {seed})");
            expected = attempt;
        }
        dispose(&mut c, &id, false).await;
    }
    println!("{completed} of 8 backups finished before the kill");
}

/// Runs `ws-daemon export` with the daemon's configuration; answers the exit code and stderr.
fn export(d: &DaemonProcess, meta_id: &str, out: &Path) -> (Option<i32>, String) {
    let done = std::process::Command::new(wsd_tests::daemon_binary())
        .arg("--config")
        .arg(d.dir.join("config.toml"))
        .arg("--working-area")
        .arg(d.working_area())
        .arg("--storage-path")
        .arg(d.storage())
        .args([
            "export",
            "--owner",
            "owner-1",
            "--meta-id",
            meta_id,
            "--out",
        ])
        .arg(out)
        .env_remove("WSD_CONFIG")
        .output()
        .expect("run ws-daemon export");
    (
        done.status.code(),
        String::from_utf8_lossy(&done.stderr).into_owned(),
    )
}

/// Unpacks a tar.zst with the system's tar, which restores nanosecond times from PAX headers.
fn unpack(archive: &Path, into: &Path) {
    let plain = into.with_extension("tar");
    let mut decoder =
        zstd::stream::read::Decoder::new(std::fs::File::open(archive).expect("archive"))
            .expect("zstd");
    std::io::copy(
        &mut decoder,
        &mut std::fs::File::create(&plain).expect("tar file"),
    )
    .expect("a whole zstd stream");
    std::fs::create_dir_all(into).expect("target");
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&plain)
        .arg("-C")
        .arg(into)
        .status()
        .expect("tar");
    assert!(status.success(), "tar -x");
}

#[tokio::test]
async fn export_writes_the_newest_backup_as_one_archive_in_either_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = DaemonProcess::start(&dir.path().join("node"), &mode("chunked")).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-e", "meta-e", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-e");
    tree::populate(&content);
    write_random(&content.join("big.bin"), 6 << 20, 3);
    backup(&mut c, "ws-e").await.expect("backup");
    std::fs::write(content.join("changed.txt"), b"after the first backup").expect("write");
    backup(&mut c, "ws-e").await.expect("incremental backup");
    let expected = tree::snapshot(&content, SKIP);

    // From the chunked backup (a delta and its base): the tree as it was backed up.
    let out = dir.path().join("export.tar.zst");
    let (code, stderr) = export(&d, "meta-e", &out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("made from the chunked backup"), "{stderr}");
    let x = dir.path().join("x1");
    unpack(&out, &x);
    assert_eq!(tree::snapshot(&x, SKIP), expected);

    // From a full archive: copied as stored.
    d.restart_with(&mode("full")).await;
    let mut c = d.client().await;
    std::fs::write(content.join("in-full.txt"), b"full mode").expect("write");
    backup(&mut c, "ws-e").await.expect("full backup");
    let expected = tree::snapshot(&content, SKIP);
    let (code, stderr) = export(&d, "meta-e", &out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("copied from the full archive"), "{stderr}");
    let x = dir.path().join("x2");
    unpack(&out, &x);
    assert_eq!(tree::snapshot(&x, SKIP), expected);

    // No backup: NOT_FOUND (5), nothing written.
    let missing = dir.path().join("missing.tar.zst");
    let (code, stderr) = export(&d, "meta-none", &missing);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(
        stderr.contains("workspace meta-none has no backup"),
        "{stderr}"
    );
    assert!(!missing.exists() && !dir.path().join("missing.tar.zst.partial").exists());

    // A chunked backup whose pack is gone: DATA_LOSS (15), no partial archive left.
    d.restart_with(&mode("chunked")).await;
    let mut c = d.client().await;
    std::fs::write(content.join("chunked-again.txt"), b"2").expect("write");
    backup(&mut c, "ws-e").await.expect("chunked backup");
    for pack in files_ending(&d.storage(), ".pack") {
        std::fs::remove_file(pack).expect("remove pack");
    }
    let broken = dir.path().join("broken.tar.zst");
    let (code, stderr) = export(&d, "meta-e", &broken);
    assert_eq!(code, Some(15), "{stderr}");
    assert!(!broken.exists() && !dir.path().join("broken.tar.zst.partial").exists());
    assert!(
        !stderr.contains(&dir.path().display().to_string()),
        "no host path: {stderr}"
    );
}
