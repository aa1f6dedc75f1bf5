use super::*;
use crate::config::StorageConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn local(dir: &std::path::Path, uploads: usize) -> Storage {
    let config = StorageConfig {
        local_path: dir.to_path_buf(),
        max_concurrent_uploads: uploads,
        part_size_bytes: 1 << 20,
        ..StorageConfig::default()
    };
    Storage::from_config(&config, &|_| None)
        .expect("storage config")
        .expect("local storage is configured")
}

async fn read_all(storage: &Storage, loc: &ObjectLocation) -> Option<Vec<u8>> {
    storage
        .download(loc, |r| {
            let mut v = Vec::new();
            r.read_to_end(&mut v).map(|_| v)
        })
        .await
        .expect("download")
        .map(|r| r.expect("read"))
}

#[tokio::test]
async fn streamed_upload_round_trips_in_many_parts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = local(dir.path(), 5);
    let loc = storage.full_backup_location("owner1", "meta1", "tar.zst");
    assert_eq!(loc.bucket, "gitpod-user-owner1");
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let expected = data.clone();
    let (_, stats) = storage
        .upload(&loc, move |w| w.write_all(&data))
        .await
        .expect("upload");
    assert_eq!(stats.bytes, expected.len() as u64);
    assert_eq!(read_all(&storage, &loc).await, Some(expected));
    assert!(dir
        .path()
        .join("gitpod-user-owner1/workspaces/meta1/full.tar.zst")
        .is_file());
}

#[tokio::test]
async fn failed_producer_leaves_the_previous_object_intact_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = local(dir.path(), 5);
    let loc = storage.full_backup_location("o", "m", "tar");
    storage
        .upload(&loc, |w| w.write_all(b"good backup"))
        .await
        .expect("first upload");
    let err = storage
        .upload(&loc, |w| {
            w.write_all(&vec![1u8; 3 << 20])?;
            Err::<(), _>(std::io::Error::other("disk vanished"))
        })
        .await
        .expect_err("a failing producer fails the upload");
    assert_eq!(err.code(), crate::Code::DataLoss);
    assert_eq!(
        read_all(&storage, &loc).await,
        Some(b"good backup".to_vec())
    );
    // The incomplete upload is aborted in the background, right after the failure.
    let folder = dir.path().join("gitpod-user-o/workspaces/m");
    let names = || -> Vec<_> {
        std::fs::read_dir(&folder)
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while names().len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        names(),
        vec![std::ffi::OsString::from("full.tar")],
        "no staging leftovers"
    );
}

#[tokio::test]
async fn missing_objects_read_as_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = local(dir.path(), 5);
    let loc = storage.snapshot_location("o", "m", 1, "tar");
    assert!(storage.head(&loc).await.expect("head").is_none());
    assert_eq!(read_all(&storage, &loc).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_uploads_in_flight_than_configured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Arc::new(local(dir.path(), 3));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (storage, in_flight, peak) = (storage.clone(), in_flight.clone(), peak.clone());
        tasks.push(tokio::spawn(async move {
            let loc = storage.snapshot_location("o", "m", i, "tar");
            storage
                .upload(&loc, move |w| {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(30));
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    w.write_all(b"x")
                })
                .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("upload");
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn shared_layout_prefixes_objects_with_the_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StorageConfig {
        local_path: dir.path().to_path_buf(),
        layout: crate::config::BucketLayout::Shared,
        ..StorageConfig::default()
    };
    let storage = Storage::from_config(&config, &|_| None)
        .expect("config")
        .expect("storage");
    let loc = storage.full_backup_location("u1", "m1", "tar");
    assert_eq!(loc.bucket, "gitpod-workspaces");
    assert_eq!(loc.key, "u1/workspaces/m1/full.tar");
}

/// A multipart upload that records what it is asked to do.
#[derive(Debug, Default, Clone)]
struct Recorder {
    parts: Arc<Mutex<Vec<usize>>>,
    completed: Arc<AtomicUsize>,
    aborted: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for Recorder {
    fn put_part(&mut self, data: object_store::PutPayload) -> object_store::UploadPart {
        self.parts.lock().expect("lock").push(data.content_length());
        Box::pin(async { Ok(()) })
    }

    async fn complete(&mut self) -> object_store::Result<object_store::PutResult> {
        self.completed.fetch_add(1, Ordering::SeqCst);
        Ok(object_store::PutResult {
            e_tag: None,
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.aborted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn parts_have_exactly_the_part_size_whatever_the_chunks() {
    let rec = Recorder::default();
    let mut sender = PartSender::new(Box::new(rec.clone()), 10, 2, "t".into());
    for len in [3usize, 7, 15, 1, 0, 24, 2] {
        sender
            .write(bytes::Bytes::from(vec![0u8; len]))
            .await
            .expect("write");
    }
    sender.finish().await.expect("finish");
    assert_eq!(
        *rec.parts.lock().expect("lock"),
        vec![10, 10, 10, 10, 10, 2]
    );
    assert_eq!(rec.completed.load(Ordering::SeqCst), 1);
    assert_eq!(rec.aborted.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_upload_dropped_half_way_is_aborted() {
    let rec = Recorder::default();
    let mut sender = PartSender::new(Box::new(rec.clone()), 10, 2, "t".into());
    sender
        .write(bytes::Bytes::from(vec![0u8; 25]))
        .await
        .expect("write");
    drop(sender);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rec.aborted.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rec.aborted.load(Ordering::SeqCst), 1);
    assert_eq!(rec.completed.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_upload_over_its_overall_time_limit_fails_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StorageConfig {
        local_path: dir.path().to_path_buf(),
        timeouts: crate::config::StorageTimeouts {
            upload_secs: 1,
            ..Default::default()
        },
        ..StorageConfig::default()
    };
    let storage = Storage::from_config(&config, &|_| None)
        .expect("config")
        .expect("local");
    let loc = storage.full_backup_location("o", "m", "tar");
    let err = storage
        .upload(&loc, |w| {
            w.write_all(b"start")?;
            std::thread::sleep(Duration::from_secs(3));
            w.write_all(b"too late")
        })
        .await
        .expect_err("over the limit");
    assert_eq!(err.code(), crate::Code::DataLoss);
    assert!(err.to_string().contains("upload_secs"), "{err}");
    assert_eq!(read_all(&storage, &loc).await, None);
}
