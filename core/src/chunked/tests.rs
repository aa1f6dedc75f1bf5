//! The chunked mode against the local storage backend: the tricky tree round trip, parent skip
//! and deduplication, and damaged or missing packs.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::archive::tests::roundtrip::build_tree;
use crate::archive::tests::{is_root, pseudo_random, snapshot};
use crate::archive::{IdMap, IdMapEntry};
use crate::config::StorageConfig;

struct Env {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    storage: Arc<Storage>,
    place: PackPlace,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    let config = StorageConfig {
        local_path: root.join("store"),
        ..StorageConfig::default()
    };
    let storage = Storage::from_config(&config, &|_| None)
        .expect("storage config")
        .expect("local storage");
    let place = PackPlace::of_workspace_object(&storage.full_backup_location("o", "m", "tar"))
        .expect("place");
    Env {
        _tmp: tmp,
        root,
        storage: Arc::new(storage),
        place,
    }
}

impl Env {
    async fn backup(
        &self,
        src: &Path,
        nanos: u128,
        parent: Option<&Written>,
        opts: &ArchiveOptions,
    ) -> (ObjectLocation, Written) {
        let loc = self.place.backup_manifest("m", nanos);
        let parent = parent.map(|w| Arc::new(w.stored.clone().into_parent()));
        let written = write_backup(
            self.storage.clone(),
            self.place.clone(),
            loc.clone(),
            src.to_path_buf(),
            "m".into(),
            // The key's time is the test's; the backup's is now (it decides what is racily clean).
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
            parent,
            Arc::new(opts.clone()),
        )
        .await
        .expect("backup");
        (loc, written)
    }

    async fn restore(
        &self,
        loc: &ObjectLocation,
        dst: &Path,
        opts: &ArchiveOptions,
    ) -> Result<crate::archive::ArchiveStats> {
        let manifest = load_manifest(&self.storage, loc)
            .await?
            .expect("manifest exists");
        fs::create_dir_all(dst).expect("target");
        restore_manifest(
            self.storage.clone(),
            PackPlace::of_manifest(loc).expect("place"),
            Arc::new(manifest),
            loc.qualified(),
            dst.to_path_buf(),
            Arc::new(opts.clone()),
        )
        .await
    }

    fn packs(&self) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let dir = self
            .root
            .join("store")
            .join(&self.place.bucket)
            .join("packs");
        for fan in fs::read_dir(dir).into_iter().flatten().flatten() {
            for pack in fs::read_dir(fan.path()).into_iter().flatten().flatten() {
                out.push(pack.path());
            }
        }
        out.sort();
        out
    }
}

fn assert_same_tree(src: &Path, dst: &Path) {
    let mut before = snapshot(src, None, true);
    before.remove(Path::new("fifo"));
    before.remove(Path::new(""));
    let mut after = snapshot(dst, None, true);
    after.remove(Path::new(""));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (k, v) in &before {
        assert_eq!(Some(v), after.get(k), "entry {k:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tricky_tree_round_trips() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).expect("src");
    let xattr_ok = build_tree(&src);
    let opts = ArchiveOptions::default();
    let (loc, written) = env.backup(&src, 1, None, &opts).await;
    assert_eq!(written.stats.skipped, 1, "the FIFO is skipped");
    assert!(written.stats.chunks_new > 0);
    assert!(!env.packs().is_empty());
    let dst = env.root.join("dst");
    let stats = env.restore(&loc, &dst, &opts).await.expect("restore");
    assert_eq!(stats.entries, written.stats.entries);
    assert_eq!(stats.content_bytes, written.stats.content_bytes);
    assert_same_tree(&src, &dst);
    if xattr_ok {
        assert_eq!(
            xattr::get(dst.join("secret"), "user.test").unwrap(),
            Some(b"value\0bin".to_vec())
        );
    }
    let ino = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().ino();
    assert_eq!(ino("hard1"), ino("a/hard2"));
    assert_eq!(ino("hard1"), ino("private/hard3"));
    // The hole stays a hole: far fewer blocks than bytes.
    let sparse = fs::metadata(dst.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 8 << 20);
    assert!(
        sparse.blocks() * 512 <= 64 << 10,
        "restored sparse file uses {} blocks",
        sparse.blocks()
    );
    // Owners (set by build_tree when root) are part of the tree comparison above.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_files_are_not_read_and_stored_chunks_not_uploaded() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir_all(src.join("d")).unwrap();
    for i in 0..20 {
        fs::write(
            src.join(format!("d/f{i}")),
            pseudo_random(100_000 + i * 1000, i as u64 + 1),
        )
        .unwrap();
    }
    fs::write(src.join("big"), pseudo_random(6 << 20, 99)).unwrap();
    // Older than the racy window, as files in a workspace usually are at a backup.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let opts = ArchiveOptions::default();
    let (_, first) = env.backup(&src, 1, None, &opts).await;
    assert_eq!(first.stats.files_read, 21);
    let packs_after_first = env.packs();

    // Nothing changed: nothing read, nothing uploaded, the same chunk table.
    let (loc2, second) = env.backup(&src, 2, Some(&first), &opts).await;
    assert_eq!(second.stats.files_read, 0);
    assert_eq!(second.stats.files_unchanged, 21);
    assert_eq!(second.stats.chunks_new, 0);
    assert_eq!(second.stats.pack_bytes, 0);
    assert_eq!(env.packs(), packs_after_first);
    assert_eq!(second.stored.manifest.chunks, first.stored.manifest.chunks);

    // One small file changed, the big one appended to: only they are read, and only their new
    // chunks are stored (the big file's leading chunks are found again by content).
    fs::write(src.join("d/f3"), b"changed").unwrap();
    let mut big = fs::read(src.join("big")).unwrap();
    big.extend_from_slice(&pseudo_random(300_000, 7));
    fs::write(src.join("big"), &big).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (loc3, third) = env.backup(&src, 3, Some(&second), &opts).await;
    assert_eq!(third.stats.files_read, 2);
    assert_eq!(third.stats.files_unchanged, 19);
    assert!(
        third.stats.chunks_new >= 2 && third.stats.chunks_new < 6,
        "new chunks: {}",
        third.stats.chunks_new
    );
    assert!(
        third.stats.pack_bytes < 5 << 20,
        "uploaded {} bytes",
        third.stats.pack_bytes
    );

    for (loc, n) in [(&loc2, "two"), (&loc3, "three")] {
        let dst = env.root.join(n);
        env.restore(loc, &dst, &opts).await.expect("restore");
        if n == "three" {
            assert_same_tree(&src, &dst);
        }
    }
    assert_eq!(
        fs::read(env.root.join("two/d/f3")).unwrap(),
        pseudo_random(103_000, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_maps_apply_both_ways() {
    if !is_root() {
        eprintln!("not root: id map test skipped");
        return;
    }
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("owned"), b"x").unwrap();
    fs::write(src.join("unmapped"), b"y").unwrap();
    nix::unistd::chown(
        &src.join("owned"),
        Some(101_000.into()),
        Some(101_001.into()),
    )
    .unwrap();
    nix::unistd::chown(&src.join("unmapped"), Some(5.into()), Some(5.into())).unwrap();
    let map = IdMap::new(vec![IdMapEntry {
        container_id: 0,
        host_id: 100_000,
        size: 65536,
    }])
    .unwrap();
    let opts = ArchiveOptions {
        uid_map: map.clone(),
        gid_map: map,
        ..Default::default()
    };
    let (loc, written) = env.backup(&src, 1, None, &opts).await;
    let owned = written
        .stored
        .manifest
        .entries
        .iter()
        .find(|e| e.path == b"owned")
        .unwrap();
    assert_eq!((owned.uid, owned.gid), (1000, 1001));
    assert_eq!(written.stats.unmapped_ids, 2);
    let dst = env.root.join("dst");
    env.restore(&loc, &dst, &opts).await.unwrap();
    let md = fs::metadata(dst.join("owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (101_000, 101_001));
    let md = fs::metadata(dst.join("unmapped")).unwrap();
    assert_eq!((md.uid(), md.gid()), (165_534, 165_534));
}

async fn damaged_restore(damage: impl Fn(&Path)) -> crate::Error {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), pseudo_random(2 << 20, 1)).unwrap();
    let opts = ArchiveOptions::default();
    let (loc, _) = env.backup(&src, 1, None, &opts).await;
    let packs = env.packs();
    assert_eq!(packs.len(), 1);
    damage(&packs[0]);
    env.restore(&loc, &env.root.join("dst"), &opts)
        .await
        .expect_err("a damaged backup does not restore")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pack_is_data_loss_naming_the_workspace() {
    let e = damaged_restore(|p| fs::remove_file(p).unwrap()).await;
    assert_eq!(e.code(), crate::Code::DataLoss, "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("workspace m") && msg.contains("missing"),
        "{msg}"
    );
    assert!(!msg.contains("/tmp"), "no host path: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_pack_is_data_loss() {
    let e = damaged_restore(|p| {
        let mut bytes = fs::read(p).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(p, bytes).unwrap();
    })
    .await;
    assert_eq!(e.code(), crate::Code::DataLoss, "{e}");
    let e = damaged_restore(|p| {
        let bytes = fs::read(p).unwrap();
        fs::write(p, &bytes[..bytes.len() - 100]).unwrap();
    })
    .await;
    assert!(
        matches!(e.code(), crate::Code::DataLoss | crate::Code::Unavailable),
        "{e}"
    );
}

/// A valid manifest of one 20-byte file in one chunk.
fn one_file_manifest() -> super::format::Manifest {
    use super::format::*;
    Manifest {
        version: MANIFEST_VERSION,
        workspace: "m".into(),
        packs: vec!["a".repeat(64)],
        chunks: vec![ChunkLoc {
            id: vec![1; 32],
            pack: 0,
            offset: 8,
            stored_len: 10,
            plain_len: 20,
        }],
        entries: vec![Entry {
            path: b"f".to_vec(),
            kind: KIND_FILE,
            size: 20,
            chunks: vec![0],
            ..Default::default()
        }],
        content_bytes: 20,
        ..Default::default()
    }
}

#[test]
fn hostile_manifests_are_refused() {
    use super::format::*;
    let good = one_file_manifest();
    let bytes = encode_manifest(&good).unwrap();
    assert_eq!(decode_manifest(&bytes).unwrap(), good);
    let bad = |f: &dyn Fn(&mut Manifest)| {
        let mut m = good.clone();
        f(&mut m);
        decode_manifest(&encode_manifest(&m).unwrap()).expect_err("refused")
    };
    bad(&|m| m.version = 2);
    bad(&|m| m.packs[0] = "../../etc".into());
    bad(&|m| m.chunks[0].pack = 1);
    bad(&|m| m.chunks[0].id = vec![1; 3]);
    bad(&|m| m.chunks[0].offset = 0);
    bad(&|m| m.chunks[0].plain_len = u32::MAX);
    bad(&|m| m.entries[0].chunks = vec![7]);
    bad(&|m| m.entries[0].size = 21);
    bad(&|m| m.entries[0].kind = 99);
    bad(&|m| m.content_bytes = 1);
    bad(&|m| m.entries[0].kind = KIND_DIR);
    assert!(decode_manifest(b"WSDMANI1garbage").is_err());
    assert!(decode_manifest(b"not a manifest").is_err());
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(
        decode_manifest(&flipped).is_err(),
        "the frame checksum catches damage"
    );
}

/// Sets the modification time of every pack back by `secs`, as if they were written earlier.
fn age_packs(env: &Env, secs: i64) {
    for pack in env.packs() {
        let md = fs::metadata(&pack).unwrap();
        let t = nix::sys::time::TimeSpec::new(md.mtime() - secs, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &pack,
            &t,
            &t,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_deletes_only_old_unreferenced_packs() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("replaced"), pseudo_random(5 << 20, 2)).unwrap();
    let opts = ArchiveOptions::default();
    let (loc1, first) = env.backup(&src, 1, None, &opts).await;
    // The first backup's pack holds only "replaced"; the second stores everything anew.
    fs::write(src.join("replaced"), pseudo_random(5 << 20, 3)).unwrap();
    fs::write(src.join("kept"), pseudo_random(300_000, 1)).unwrap();
    let (loc2, _) = env.backup(&src, 2, Some(&first), &opts).await;
    let all = env.packs();
    assert!(all.len() >= 2);

    // Both manifests exist: nothing is garbage.
    age_packs(&env, 7200);
    let grace = std::time::Duration::from_secs(3600);
    let report = collect_garbage(&env.storage, &env.place, grace)
        .await
        .unwrap();
    assert_eq!((report.manifests, report.packs_deleted), (2, 0));

    // The first backup pruned: its packs that the second does not use go.
    assert_eq!(
        prune_backups(&env.storage, &env.place, "m", 1)
            .await
            .unwrap(),
        1
    );
    assert!(load_manifest(&env.storage, &loc1).await.unwrap().is_none());
    let report = collect_garbage(&env.storage, &env.place, grace)
        .await
        .unwrap();
    assert_eq!(report.manifests, 1);
    assert!(report.packs_deleted >= 1, "{report:?}");
    assert!(env.packs().len() < all.len());
    let dst = env.root.join("dst");
    env.restore(&loc2, &dst, &opts)
        .await
        .expect("the kept backup restores");
    assert_same_tree(&src, &dst);

    // Young unreferenced packs stay (a backup may be uploading them).
    let young = env.place.pack(&"ab".repeat(32));
    env.storage
        .put_new(&young, bytes::Bytes::from_static(b"WSDPACK1"))
        .await
        .unwrap();
    let report = collect_garbage(&env.storage, &env.place, grace)
        .await
        .unwrap();
    assert_eq!((report.packs_deleted, report.packs_in_grace), (0, 1));

    // Deleting the workspace removes its manifests and, past the grace period, every pack.
    age_packs(&env, 7200);
    let (objects, report) = delete_workspace(&env.storage, &env.place, "m", grace)
        .await
        .unwrap();
    assert_eq!(objects, 2, "the manifest and the latest pointer");
    assert_eq!(report.manifests, 0);
    assert!(env.packs().is_empty(), "{:?}", env.packs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_manifest_stops_garbage_collection_before_any_deletion() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), pseudo_random(100_000, 1)).unwrap();
    let opts = ArchiveOptions::default();
    let (loc, _) = env.backup(&src, 1, None, &opts).await;
    age_packs(&env, 7200);
    let file = env.root.join("store").join(&loc.bucket).join(&loc.key);
    fs::write(&file, b"WSDMANI1 damaged").unwrap();
    let err = collect_garbage(&env.storage, &env.place, std::time::Duration::from_secs(60))
        .await
        .expect_err("an unreadable manifest stops the collection");
    assert_eq!(err.code(), crate::Code::DataLoss, "{err}");
    assert_eq!(env.packs().len(), 1, "nothing deleted");
}

/// Backups that prune their parents run while garbage collection runs again and again with a
/// grace period longer than a backup: every manifest left restores exactly what it recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_racing_backups_loses_nothing() {
    let env = Arc::new(env());
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    for i in 0..8 {
        fs::write(src.join(format!("f{i}")), pseudo_random(400_000, i)).unwrap();
    }
    let opts = ArchiveOptions::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (env, stop) = (env.clone(), stop.clone());
        tokio::spawn(async move {
            let mut deleted = 0;
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let grace = std::time::Duration::from_millis(1500);
                let report = collect_garbage(&env.storage, &env.place, grace)
                    .await
                    .expect("gc");
                deleted += report.packs_deleted;
                runs += 1;
            }
            (runs, deleted)
        })
    };
    let mut parent: Option<Written> = None;
    let mut expected = std::collections::BTreeMap::new();
    for round in 0..12u64 {
        // Each round changes two files; the parent is pruned after the commit (keep 2).
        for i in [round % 8, (round * 3 + 1) % 8] {
            fs::write(
                src.join(format!("f{i}")),
                pseudo_random(400_000, 100 + round * 8 + i),
            )
            .unwrap();
        }
        let nanos = u128::from(round + 1);
        let (loc, written) = env.backup(&src, nanos, parent.as_ref(), &opts).await;
        prune_backups(&env.storage, &env.place, "m", 2)
            .await
            .unwrap();
        expected.insert(loc.key.clone(), snapshot(&src, None, true));
        parent = Some(written);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (runs, deleted) = collector.await.unwrap();
    assert!(runs >= 3, "the collector ran {runs} times");
    assert!(deleted > 0, "the race deleted packs of pruned backups");
    let left = list_backups(&env.storage, &env.place, "m").await.unwrap();
    // The newest two, and the full manifest the deltas among them build on.
    assert!((2..=3).contains(&left.len()), "{left:?}");
    for (loc, _) in left {
        let dst = env
            .root
            .join(format!("restore-{}", loc.key.replace('/', "_")));
        env.restore(&loc, &dst, &opts)
            .await
            .expect("every kept backup restores");
        let mut want = expected[&loc.key].clone();
        want.remove(Path::new(""));
        let mut got = snapshot(&dst, None, true);
        got.remove(Path::new(""));
        assert_eq!(got, want, "backup {}", loc.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posix_acls_and_long_names_survive_a_round_trip() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("shared.txt"), b"x").unwrap();
    // user::rw-, user:1234:r--, group::r--, mask::r--, other::r-- (the kernel's binary form).
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 1234),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 4, u32::MAX),
    ] {
        acl.extend(tag.to_le_bytes());
        acl.extend(perm.to_le_bytes());
        acl.extend(id.to_le_bytes());
    }
    xattr::set(src.join("shared.txt"), "system.posix_acl_access", &acl)
        .expect("this test needs a filesystem with POSIX ACLs for its temporary folder");
    let long = "n".repeat(255);
    fs::write(src.join(&long), b"long name").unwrap();
    let opts = ArchiveOptions::default();
    let (loc, _) = env.backup(&src, 1, None, &opts).await;
    let dst = env.root.join("dst");
    env.restore(&loc, &dst, &opts).await.unwrap();
    assert_eq!(
        xattr::get(dst.join("shared.txt"), "system.posix_acl_access").unwrap(),
        Some(acl)
    );
    assert_eq!(fs::read(dst.join(&long)).unwrap(), b"long name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_archive_is_made_from_a_manifest_on_demand() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    build_tree(&src);
    let opts = ArchiveOptions::default();
    let (loc, written) = env.backup(&src, 1, None, &opts).await;

    /// A writer the test can read after the export took its end.
    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Shared::default();
    let stats = export_full_archive(
        env.storage.clone(),
        env.place.clone(),
        written.stored.manifest.clone(),
        loc.qualified(),
        Box::new(out.clone()),
        Arc::new(opts.clone()),
    )
    .await
    .expect("export");
    let archive = out.0.lock().unwrap().clone();
    assert_eq!(stats.archive_bytes, archive.len() as u64);
    assert_eq!(
        crate::archive::detect_compression(&archive),
        Some(crate::archive::Compression::Zstd)
    );
    let dst = env.root.join("dst");
    fs::create_dir(&dst).unwrap();
    crate::archive::extract_archive(archive.as_slice(), &dst, &opts).expect("the export extracts");
    assert_same_tree(&src, &dst);
    let ino = |p: &str| fs::symlink_metadata(dst.join(p)).unwrap().ino();
    assert_eq!(ino("hard1"), ino("a/hard2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_changed_just_before_a_backup_are_read_again_by_the_next() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("fresh"), b"written now").unwrap();
    let opts = ArchiveOptions::default();
    let (_, first) = env.backup(&src, 1, None, &opts).await;
    let entry = first
        .stored
        .manifest
        .entries
        .iter()
        .find(|e| e.path == b"fresh")
        .unwrap();
    assert_eq!(entry.ctime_secs, 0, "a racily clean file keeps no ctime");
    // Same size and mtime, written within the same timestamp tick: only reading finds it.
    let (_, second) = env.backup(&src, 2, Some(&first), &opts).await;
    assert_eq!(
        (second.stats.files_read, second.stats.files_unchanged),
        (1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_pointer_finds_the_newest_backup_without_listing() {
    let env = env();
    let src = env.root.join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"one").unwrap();
    let opts = ArchiveOptions::default();
    assert!(latest_backup(&env.storage, &env.place, "m")
        .await
        .unwrap()
        .is_none());
    let (first, _) = env.backup(&src, 5, None, &opts).await;
    assert_eq!(
        latest_backup(&env.storage, &env.place, "m")
            .await
            .unwrap()
            .map(|l| l.0),
        Some(first.clone())
    );
    let (second, _) = env.backup(&src, 9, None, &opts).await;
    assert_eq!(
        latest_backup(&env.storage, &env.place, "m")
            .await
            .unwrap()
            .map(|l| l.0),
        Some(second.clone())
    );
    // The pointer's manifest removed behind the daemon's back: the listing finds the other.
    env.storage.delete(&second).await.unwrap();
    assert_eq!(
        latest_backup(&env.storage, &env.place, "m")
            .await
            .unwrap()
            .map(|l| l.0),
        Some(first)
    );
}

/// A tree of `files` small files of their own bytes.
fn many_files(src: &Path, files: u64) {
    fs::create_dir_all(src).unwrap();
    for i in 0..files {
        fs::write(src.join(format!("f{i:03}")), pseudo_random(20_000, i)).unwrap();
    }
}

/// A manifest's entries with their chunks by id (chunk tables number chunks differently).
fn files_of(m: &Manifest) -> Vec<(super::format::Entry, Vec<Vec<u8>>)> {
    m.entries
        .iter()
        .map(|e| {
            let ids = e
                .chunks
                .iter()
                .map(|&c| m.chunks[c as usize].id.clone())
                .collect();
            (
                super::format::Entry {
                    chunks: vec![],
                    ..e.clone()
                },
                ids,
            )
        })
        .collect()
}

fn stored_kind(env: &Env, loc: &ObjectLocation) -> Option<super::format::DeltaHeader> {
    let bytes = fs::read(env.root.join("store").join(&loc.bucket).join(&loc.key)).unwrap();
    super::format::delta_header(&bytes).expect("a manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_backups_store_small_deltas_against_one_full_base() {
    let env = env();
    let src = env.root.join("src");
    many_files(&src, 60);
    let opts = ArchiveOptions::default();
    let (loc1, first) = env.backup(&src, 1, None, &opts).await;
    assert!(
        stored_kind(&env, &loc1).is_none(),
        "the first backup is full"
    );
    let mut parent = first.clone();
    let mut locs = vec![loc1.clone()];
    let mut trees = vec![snapshot(&src, None, true)];
    for round in 0..3u64 {
        fs::write(
            src.join(format!("f{round:03}")),
            pseudo_random(30_000, 1000 + round),
        )
        .unwrap();
        fs::write(src.join(format!("new{round}")), b"added").unwrap();
        let (loc, written) = env
            .backup(&src, 2 + u128::from(round), Some(&parent), &opts)
            .await;
        let header = stored_kind(&env, &loc).expect("an incremental backup is a delta");
        // Every delta builds on the full base, not on the delta before it.
        assert_eq!(header.base_key, loc1.key);
        assert!(
            written.manifest_bytes() * 4 < first.manifest_bytes(),
            "delta of {} bytes against a full manifest of {}",
            written.manifest_bytes(),
            first.manifest_bytes()
        );
        assert_eq!(
            written.stored.manifest.entries.len(),
            60 + round as usize + 1
        );
        locs.push(loc);
        trees.push(snapshot(&src, None, true));
        parent = written;
    }
    for (i, loc) in locs.iter().enumerate() {
        let dst = env.root.join(format!("dst{i}"));
        env.restore(loc, &dst, &opts).await.expect("restores");
        let mut got = snapshot(&dst, None, true);
        got.remove(Path::new(""));
        let mut want = trees[i].clone();
        want.remove(Path::new(""));
        assert_eq!(got, want, "backup {i}");
    }

    // Keeping the newest one keeps its base too; garbage collection keeps what both need.
    let removed = prune_backups(&env.storage, &env.place, "m", 1)
        .await
        .unwrap();
    assert_eq!(removed, 2, "the two older deltas go, the base stays");
    let left: Vec<String> = list_backups(&env.storage, &env.place, "m")
        .await
        .unwrap()
        .into_iter()
        .map(|(l, _)| l.key)
        .collect();
    assert_eq!(left, vec![loc1.key.clone(), locs[3].key.clone()]);
    age_packs(&env, 7200);
    collect_garbage(&env.storage, &env.place, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    let dst = env.root.join("after-gc");
    env.restore(&locs[3], &dst, &opts)
        .await
        .expect("restores after gc");
    assert_same_tree(&src, &dst);

    // The parent kept in the working area: the delta and its base, resolved alike.
    let file = env.root.join("parent.wsm");
    save_local_parent(&file, &parent.stored).unwrap();
    let local = load_local_parent(&file).expect("usable");
    assert_eq!(files_of(&local.manifest), files_of(&parent.stored.manifest));
    assert_eq!(local.base.map(|b| b.key), Some(loc1.key.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_that_outgrows_a_quarter_of_the_tree_is_written_full() {
    let env = env();
    let src = env.root.join("src");
    many_files(&src, 12);
    let opts = ArchiveOptions::default();
    let (_, first) = env.backup(&src, 1, None, &opts).await;
    for i in 0..8u64 {
        fs::write(src.join(format!("f{i:03}")), pseudo_random(20_000, 500 + i)).unwrap();
    }
    let (loc2, second) = env.backup(&src, 2, Some(&first), &opts).await;
    assert!(
        stored_kind(&env, &loc2).is_none(),
        "most files changed: full"
    );
    fs::write(src.join("f011"), b"small change").unwrap();
    let (loc3, _) = env.backup(&src, 3, Some(&second), &opts).await;
    let header = stored_kind(&env, &loc3).expect("a delta");
    assert_eq!(
        header.base_key, loc2.key,
        "deltas build on the newest full manifest"
    );
    let dst = env.root.join("dst");
    env.restore(&loc3, &dst, &opts).await.expect("restores");
    assert_same_tree(&src, &dst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_whose_base_is_damaged_or_gone_is_data_loss() {
    let env = env();
    let src = env.root.join("src");
    many_files(&src, 20);
    let opts = ArchiveOptions::default();
    let (loc1, first) = env.backup(&src, 1, None, &opts).await;
    fs::write(src.join("f000"), b"changed").unwrap();
    let (loc2, _) = env.backup(&src, 2, Some(&first), &opts).await;
    assert!(stored_kind(&env, &loc2).is_some());
    let base_file = env.root.join("store").join(&loc1.bucket).join(&loc1.key);
    let stored = fs::read(&base_file).unwrap();

    // A base replaced by another manifest (even a valid one) is not the delta's base.
    let mut other = decode_manifest(&stored).unwrap();
    other.created_unix_nanos += 1;
    fs::write(&base_file, encode_manifest(&other).unwrap()).unwrap();
    let err = env
        .restore(&loc2, &env.root.join("dst1"), &opts)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), crate::Code::DataLoss, "{err}");
    assert!(
        !env.root.join("dst1").join("f001").exists(),
        "nothing restored"
    );

    fs::remove_file(&base_file).unwrap();
    let err = env
        .restore(&loc2, &env.root.join("dst2"), &opts)
        .await
        .expect_err("refused");
    assert_eq!(err.code(), crate::Code::DataLoss, "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!err.to_string().contains("/tmp"), "no host path: {err}");
    // Garbage collection will not guess what a delta without its base needs.
    age_packs(&env, 7200);
    let packs = env.packs().len();
    let err = collect_garbage(&env.storage, &env.place, std::time::Duration::from_secs(60))
        .await
        .expect_err("stops");
    assert_eq!(err.code(), crate::Code::DataLoss, "{err}");
    assert_eq!(env.packs().len(), packs, "nothing deleted");
}

#[test]
fn hostile_deltas_are_refused() {
    use super::format::*;
    let mut base = one_file_manifest();
    base.entries.push(Entry {
        path: b"d".to_vec(),
        kind: KIND_DIR,
        ..Default::default()
    });
    let mut new = base.clone();
    new.packs.push("b".repeat(64));
    new.chunks.push(ChunkLoc {
        id: vec![2; 32],
        pack: 1,
        offset: 8,
        stored_len: 5,
        plain_len: 7,
    });
    new.entries.push(Entry {
        path: b"g".to_vec(),
        kind: KIND_FILE,
        size: 7,
        chunks: vec![1],
        ..Default::default()
    });
    new.content_bytes = 27;
    let good = make_delta(&base, &new);
    assert_eq!(good.packs, vec!["b".repeat(64)]);
    assert_eq!(
        good.ops.len(),
        2,
        "one run of two copies, one entry: {good:?}"
    );
    let header = DeltaHeader {
        base_key: "workspaces/m/backups/1.wsm".into(),
        base_hash: [7; 32],
    };
    let bytes = encode_delta(&header, &good).unwrap();
    assert_eq!(
        delta_header(&bytes[..DELTA_HEADER_MAX.min(bytes.len())]).unwrap(),
        Some(header)
    );
    let Stored::Delta(_, decoded) = decode_stored(&bytes).unwrap() else {
        panic!("a delta")
    };
    assert_eq!(resolve_delta(&base, decoded).unwrap(), new);

    let bad = |f: &dyn Fn(&mut Delta)| {
        let mut d = good.clone();
        f(&mut d);
        resolve_delta(&base, d).expect_err("refused")
    };
    bad(&|d| d.version = 9);
    bad(&|d| d.ops[0].copy_from = 1);
    bad(&|d| d.ops[0].copy_from = u32::MAX);
    bad(&|d| {
        d.ops.push(DeltaOp {
            copy_from: 0,
            copy_len: 1,
            entry: None,
        })
    });
    bad(&|d| d.ops.push(DeltaOp::default()));
    bad(&|d| d.chunks[0].pack = 5);
    bad(&|d| d.packs[0] = "../x".into());
    bad(&|d| d.content_bytes = 1);
    assert!(decode_stored(b"WSDMDLT1").is_err());
    assert!(decode_stored(b"WSDMDLT1\x00\x00").is_err());
    assert!(decode_stored(b"WSDMDLT1\xff\x00abc").is_err());
}

/// Reads in pieces of varying, odd sizes, as a file on a network filesystem might.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = (self.step * 7 + 3) % 200_003 + 1;
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn large_files_are_cut_where_fastcdcs_streaming_chunker_cuts() {
    // Random bytes with a repeated stretch and a long run of zeros (cut at the largest size).
    let mut data = pseudo_random(9 << 20, 5);
    let again = data[1 << 20..3 << 20].to_vec();
    data.extend_from_slice(&again);
    data.extend(std::iter::repeat_n(0u8, 9 << 20));
    data.extend_from_slice(&pseudo_random(333_333, 6));
    let expected: Vec<usize> = fastcdc::v2020::StreamCDC::new(
        std::io::Cursor::new(&data),
        super::format::CHUNK_MIN,
        super::format::CHUNK_AVG,
        super::format::CHUNK_MAX,
    )
    .map(|c| c.expect("chunk").length)
    .collect();
    for mut reader in [
        Box::new(std::io::Cursor::new(&data)) as Box<dyn std::io::Read>,
        Box::new(Trickle {
            data: &data,
            step: 1,
        }),
    ] {
        let mut window = Vec::new();
        let mut cuts = Vec::new();
        let mut joined = Vec::new();
        let done = super::backup::cut_chunks(&mut reader, &mut window, |chunk| {
            cuts.push(chunk.len());
            joined.extend_from_slice(chunk);
            Ok::<(), ()>(())
        });
        assert!(done.is_ok());
        assert_eq!(cuts, expected);
        assert!(joined == data, "the chunks make up the file");
    }
}
