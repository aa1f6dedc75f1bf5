//! Backups through a real S3-compatible server (s3s-fs, which checks signatures), driven over gRPC:
//! a round trip to another node, snapshots, log uploads, and the faults a remote store brings:
//! wrong credentials, a server killed mid-upload, a server restarted while retries still run, a
//! slow server, and many backups at once under the upload limit.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tonic::Code;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::{EmptyInitializer, SnapshotInitializer};
use wsd_proto::wsdaemon::{BackupWorkspaceRequest, DisposeWorkspaceRequest, TakeSnapshotRequest};
use wsd_tests::s3::{S3Proxy, S3Server, SECRET_KEY};
use wsd_tests::{init_ready, init_request, metric_value, tree, wait_until, Client, DaemonProcess};

const SKIP: &[&str] = &[".gitpod"];
const BUCKET: &str = "gitpod-user-owner-1";

async fn backup(client: &mut Client, id: &str) -> Result<String, tonic::Status> {
    let mut req = tonic::Request::new(BackupWorkspaceRequest { id: id.into() });
    req.set_timeout(Duration::from_secs(120));
    client
        .backup_workspace(req)
        .await
        .map(|r| r.into_inner().url)
}

async fn dispose(
    client: &mut Client,
    id: &str,
    backup: bool,
    logs: bool,
) -> Result<(), tonic::Status> {
    client
        .dispose_workspace(DisposeWorkspaceRequest {
            id: id.into(),
            backup,
            backup_logs: logs,
        })
        .await
        .map(|_| ())
}

/// Writes `mib` MiB of incompressible bytes, so archives are as large as the file.
fn write_random(path: &Path, mib: usize) {
    let mut f = std::fs::File::create(path).expect("create");
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ path.to_string_lossy().len() as u64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
        }
        f.write_all(&block).expect("write");
    }
}

fn sha_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read object")))
}

/// A daemon on the S3 server at `endpoint`; `storage_keys` go into its `[storage]` table, `tables`
/// after it.
async fn daemon(dir: &Path, endpoint: &str, storage_keys: &str, tables: &str) -> DaemonProcess {
    let config = format!(
        "{}{tables}",
        S3Server::daemon_config(endpoint, SECRET_KEY, storage_keys)
    );
    DaemonProcess::start(dir, &config).await
}

#[tokio::test]
async fn backups_travel_through_s3_to_another_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let a = daemon(&dir.path().join("node-a"), &s3.endpoint(), "", "").await;
    let mut ca = a.client().await;

    init_ready(&mut ca, "ws-a", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    let content = a.working_area().join("ws-a");
    tree::populate(&content);
    write_random(&content.join("big.bin"), 12);
    let gitpod = content.join(".gitpod");
    std::fs::create_dir_all(&gitpod).expect(".gitpod");
    std::fs::write(gitpod.join("prebuild-log-0"), b"building...\ndone\n").expect("log");
    let original = tree::snapshot(&content, SKIP);

    // The bucket did not exist: the daemon creates it.
    assert!(!s3.root.join(BUCKET).exists());
    let url = backup(&mut ca, "ws-a").await.expect("backup");
    assert_eq!(url, format!("workspaces/meta-a/full.tar.zst@{BUCKET}"));
    assert!(s3
        .object_file(BUCKET, "workspaces/meta-a/full.tar.zst")
        .is_file());

    let snapshot = ca
        .take_snapshot(TakeSnapshotRequest {
            id: "ws-a".into(),
            return_immediately: false,
        })
        .await
        .expect("snapshot")
        .into_inner()
        .url;
    assert!(
        snapshot.starts_with("workspaces/meta-a/snapshot-"),
        "{snapshot}"
    );

    dispose(&mut ca, "ws-a", true, true).await.expect("dispose");
    assert!(!content.exists());
    let log = s3.object_file(
        BUCKET,
        "workspaces/meta-a/instances/ws-a/logs/prebuild-log-0",
    );
    assert_eq!(
        std::fs::read(log).expect("log object"),
        b"building...\ndone\n"
    );
    assert!(
        s3.incomplete_uploads().is_empty(),
        "{:?}",
        s3.incomplete_uploads()
    );

    // Another node with its own working area restores both.
    let b = daemon(&dir.path().join("node-b"), &s3.endpoint(), "", "").await;
    let mut cb = b.client().await;
    init_ready(&mut cb, "ws-b", "meta-a", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(
        tree::snapshot(&b.working_area().join("ws-b"), SKIP),
        original
    );
    init_ready(
        &mut cb,
        "ws-snap",
        "meta-other",
        Spec::Snapshot(SnapshotInitializer {
            snapshot,
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(
        tree::snapshot(&b.working_area().join("ws-snap"), SKIP),
        original
    );

    let metrics = a.metrics().await;
    // Created once, not again by the snapshot, the dispose or the log upload.
    assert_eq!(
        metric_value(&metrics, "wsd_buckets_created_total", ""),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&metrics, "wsd_uploads_in_flight", ""),
        Some(0.0)
    );
}

#[tokio::test]
async fn wrong_credentials_are_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let mut d = daemon(&dir.path().join("node"), &s3.endpoint(), "", "").await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-1", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    tree::populate(&d.working_area().join("ws-1"));

    // The same node restarted with a wrong secret: its workspaces come back, their uploads fail.
    d.stop_with(nix::sys::signal::Signal::SIGTERM).await;
    d.extra_config = S3Server::daemon_config(&s3.endpoint(), "not-the-secret", "");
    d.restart().await;
    let mut c = d.client().await;
    let err = backup(&mut c, "ws-1").await.expect_err("wrong secret");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    let msg = err.message();
    assert!(
        msg.contains("refused") && msg.contains("SignatureDoesNotMatch"),
        "{msg}"
    );
    assert!(
        !msg.contains("not-the-secret") && !msg.contains("127.0.0.1"),
        "{msg}"
    );

    // A failed disposal keeps the content and leaves the workspace to retry.
    let err = dispose(&mut c, "ws-1", true, false)
        .await
        .expect_err("dispose");
    assert_eq!(err.code(), Code::DataLoss);
    assert!(d.working_area().join("ws-1/src").is_dir());

    // Looking for a backup to restore fails the init the same way.
    let err = c
        .init_workspace(init_request(
            "ws-2",
            "meta-2",
            Spec::Empty(EmptyInitializer {}),
        ))
        .await
        .expect_err("lookup with a wrong secret");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("refused"), "{}", err.message());
}

/// Retries that give up quickly, for the faults below.
const SHORT_RETRIES: &str = "[storage.retry]\nmax_retries = 3\ntimeout_secs = 2\n\
                             initial_backoff_ms = 50\nmax_backoff_ms = 500\n";

#[tokio::test]
async fn a_server_killed_mid_upload_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(&dir.path().join("s3")).await;
    let d = daemon(&dir.path().join("node"), &s3.endpoint(), "", SHORT_RETRIES).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-1", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-1");
    tree::populate(&content);
    let first = tree::snapshot(&content, SKIP);
    backup(&mut c, "ws-1").await.expect("first backup");
    let object = s3.object_file(BUCKET, "workspaces/meta-1/full.tar.zst");
    let first_sha = sha_of(&object);

    write_random(&content.join("big.bin"), 160);
    let mut c2 = c.clone();
    let second = tokio::spawn(async move { backup(&mut c2, "ws-1").await });
    s3.wait_for_a_part(Duration::from_secs(60)).await;
    s3.kill().await;

    let err = second.await.expect("join").expect_err("the server died");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("gave up after"), "{}", err.message());
    // Nothing partial replaced the previous backup.
    assert_eq!(sha_of(&object), first_sha);

    // Disposal with a backup fails the same way and keeps the content.
    let err = dispose(&mut c, "ws-1", true, false)
        .await
        .expect_err("dispose");
    assert_eq!(err.code(), Code::DataLoss);
    assert!(content.join("big.bin").is_file());

    // Once the server is back, the incomplete uploads are aborted and the previous backup restores.
    s3.restart().await;
    wait_until(
        "the incomplete uploads are aborted",
        Duration::from_secs(60),
        || s3.incomplete_uploads().is_empty(),
    )
    .await;
    let other = daemon(&dir.path().join("node-b"), &s3.endpoint(), "", "").await;
    let mut co = other.client().await;
    init_ready(&mut co, "ws-2", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(
        tree::snapshot(&other.working_area().join("ws-2"), SKIP),
        first
    );

    // And the retried disposal now succeeds.
    dispose(&mut c, "ws-1", true, false)
        .await
        .expect("dispose after restart");
    assert_ne!(sha_of(&object), first_sha);
}

#[tokio::test]
async fn a_server_restarted_within_the_retry_budget_lets_the_backup_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(&dir.path().join("s3")).await;
    let patient = "[storage.retry]\nmax_retries = 30\ntimeout_secs = 60\n\
                   initial_backoff_ms = 100\nmax_backoff_ms = 1000\n";
    let d = daemon(&dir.path().join("node"), &s3.endpoint(), "", patient).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-1", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    let content = d.working_area().join("ws-1");
    tree::populate(&content);
    write_random(&content.join("big.bin"), 160);
    let original = tree::snapshot(&content, SKIP);

    let mut c2 = c.clone();
    let running = tokio::spawn(async move { backup(&mut c2, "ws-1").await });
    s3.wait_for_a_part(Duration::from_secs(60)).await;
    s3.kill().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s3.restart().await;
    running
        .await
        .expect("join")
        .expect("backup survives the restart");
    assert!(
        s3.incomplete_uploads().is_empty(),
        "{:?}",
        s3.incomplete_uploads()
    );

    let other = daemon(&dir.path().join("node-b"), &s3.endpoint(), "", "").await;
    let mut co = other.client().await;
    init_ready(&mut co, "ws-2", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(
        tree::snapshot(&other.working_area().join("ws-2"), SKIP),
        original
    );
}

#[tokio::test]
async fn a_slow_server_is_waited_for_within_the_timeouts_and_given_up_beyond() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let proxy = S3Proxy::start(s3.port).await;
    let timeouts = format!(
        "[storage.timeouts]\nrequest_secs = 2\nconnect_secs = 1\nread_secs = 2\n{SHORT_RETRIES}"
    );
    let d = daemon(&dir.path().join("node"), &proxy.endpoint(), "", &timeouts).await;
    let mut c = d.client().await;
    init_ready(&mut c, "ws-1", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    tree::populate(&d.working_area().join("ws-1"));

    // Slow, but each answer comes within the request timeout: the backup succeeds.
    proxy.set_delay(Duration::from_millis(300));
    backup(&mut c, "ws-1").await.expect("slow backup");

    // Slower than the request timeout: every attempt times out, and the call ends with the error.
    proxy.set_delay(Duration::from_secs(5));
    let err = backup(&mut c, "ws-1").await.expect_err("too slow");
    assert_eq!(err.code(), Code::DataLoss, "{err:?}");
    assert!(err.message().contains("timed out"), "{}", err.message());

    // Looking for a backup on a server that slow fails the init instead of hanging it.
    let mut req = tonic::Request::new(init_request(
        "ws-2",
        "meta-1",
        Spec::Empty(EmptyInitializer {}),
    ));
    req.set_timeout(Duration::from_secs(120));
    let err = c.init_workspace(req).await.expect_err("lookup times out");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("timed out"), "{}", err.message());
}

#[tokio::test]
async fn twenty_concurrent_backups_never_exceed_five_uploads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s3 = S3Server::start(&dir.path().join("s3")).await;
    let proxy = S3Proxy::start(s3.port).await;
    let d = daemon(
        &dir.path().join("node"),
        &proxy.endpoint(),
        "max_concurrent_uploads = 5\n",
        "",
    )
    .await;
    let mut c = d.client().await;
    for i in 0..20 {
        let id = format!("ws-{i}");
        init_ready(
            &mut c,
            &id,
            &format!("meta-{i}"),
            Spec::Empty(EmptyInitializer {}),
        )
        .await;
        write_random(&d.working_area().join(&id).join("data.bin"), 6);
    }
    proxy.set_delay(Duration::from_millis(100));

    let calls = (0..20).map(|i| {
        let mut c = c.clone();
        tokio::spawn(async move { backup(&mut c, &format!("ws-{i}")).await })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("join").expect("backup");
    }
    assert_eq!(proxy.uploads_completed(), 20);
    let most = proxy.max_uploads_in_flight();
    assert!(
        (2..=5).contains(&most),
        "{most} uploads were in flight at once"
    );

    let metrics = d.metrics().await;
    assert_eq!(
        metric_value(&metrics, "wsd_uploads_total", "outcome=\"ok\""),
        Some(20.0)
    );
    assert_eq!(
        metric_value(&metrics, "wsd_uploads_in_flight", ""),
        Some(0.0)
    );
    assert_eq!(
        metric_value(&metrics, "wsd_upload_slot_wait_seconds_count", ""),
        Some(20.0)
    );
}

#[tokio::test]
async fn a_server_killed_mid_restore_fails_the_init_cleanly_and_a_retry_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(&dir.path().join("s3")).await;
    let a = daemon(&dir.path().join("node-a"), &s3.endpoint(), "", "").await;
    let mut ca = a.client().await;
    init_ready(&mut ca, "ws-a", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    let content = a.working_area().join("ws-a");
    tree::populate(&content);
    write_random(&content.join("big.bin"), 160);
    let original = tree::snapshot(&content, SKIP);
    backup(&mut ca, "ws-a").await.expect("backup");

    let b = daemon(
        &dir.path().join("node-b"),
        &s3.endpoint(),
        "",
        SHORT_RETRIES,
    )
    .await;
    let cb = b.client().await;
    let restoring = {
        let mut cb = cb.clone();
        tokio::spawn(async move {
            cb.init_workspace(init_request(
                "ws-b",
                "meta-1",
                Spec::Empty(EmptyInitializer {}),
            ))
            .await
        })
    };
    let partial = b.working_area().join("ws-b/big.bin");
    wait_until("the restore has begun", Duration::from_secs(60), || {
        partial.exists()
    })
    .await;
    s3.kill().await;
    let err = restoring.await.expect("join").expect_err("the server died");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(!err.message().contains("127.0.0.1"), "{}", err.message());
    assert!(
        !b.working_area().join("ws-b").exists(),
        "a partial workspace was left"
    );

    s3.restart().await;
    let mut cb = cb;
    init_ready(&mut cb, "ws-b", "meta-1", Spec::Empty(EmptyInitializer {})).await;
    assert_eq!(
        tree::snapshot(&b.working_area().join("ws-b"), SKIP),
        original
    );
}
