//! End to end: hostile archives placed in storage and restored through a snapshot initializer are
//! refused or neutralized; nothing outside the workspace changes and no partial workspace remains.
//! (The archive module's own tests cover many more crafted archives.)

use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use tonic::Code;
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::SnapshotInitializer;
use wsd_tests::{init_request, tree, DaemonProcess};

fn raw_entry(name: &[u8], kind: u8, size: usize, mode: u32, link: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    {
        let bytes = h.as_mut_bytes();
        bytes[..name.len()].copy_from_slice(name);
        bytes[157..157 + link.len()].copy_from_slice(link);
    }
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h.as_bytes().to_vec()
}

fn file_entry(name: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
    let mut out = raw_entry(name, b'0', data.len(), mode, b"");
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn finish(mut entries: Vec<u8>) -> Vec<u8> {
    entries.extend_from_slice(&[0u8; 1024]);
    entries
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 1).expect("encoder");
    enc.write_all(data).expect("compress");
    enc.finish().expect("finish")
}

#[tokio::test]
async fn hostile_snapshots_are_refused_or_neutralized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(&dir.path().join("node"), "").await;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("sentinel"), b"untouched").expect("write");
    let outside_abs = outside.to_str().expect("utf-8").as_bytes().to_vec();
    let before = tree::snapshot(dir.path(), &["node"]);

    let big_zstd = zstd(&finish(file_entry(
        b"big",
        &(0..200_000u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
        0o644,
    )));
    let truncated = big_zstd[..big_zstd.len() / 2].to_vec();
    let valid = finish(file_entry(b"ok.txt", b"fine", 0o644));
    let cases: Vec<(&str, Vec<u8>, Option<Code>)> = vec![
        (
            "traversal",
            finish(file_entry(b"../../outside/evil", b"x", 0o644)),
            Some(Code::FailedPrecondition),
        ),
        (
            "absolute",
            finish(file_entry(
                &[outside_abs.as_slice(), b"/evil"].concat(),
                b"x",
                0o644,
            )),
            Some(Code::FailedPrecondition),
        ),
        (
            "symlink then file",
            finish(
                [
                    raw_entry(b"l", b'2', 0, 0o777, &outside_abs),
                    file_entry(b"l/evil", b"x", 0o644),
                ]
                .concat(),
            ),
            Some(Code::FailedPrecondition),
        ),
        (
            "hard link outside",
            finish(raw_entry(b"h", b'1', 0, 0o644, b"../../outside/sentinel")),
            Some(Code::FailedPrecondition),
        ),
        ("truncated zstd", truncated, Some(Code::FailedPrecondition)),
        (
            "garbage",
            b"this is not an archive at all, just words".repeat(20),
            Some(Code::FailedPrecondition),
        ),
        (
            "device node",
            finish(
                [
                    raw_entry(b"dev", b'3', 0, 0o666, b""),
                    file_entry(b"ok", b"k", 0o644),
                ]
                .concat(),
            ),
            None,
        ),
        (
            "setuid",
            finish(file_entry(b"suid", b"#!/bin/sh\n", 0o6755)),
            None,
        ),
        ("valid zstd", zstd(&valid), None),
    ];
    for (i, (name, archive, expected)) in cases.into_iter().enumerate() {
        let key = format!("workspaces/m/snapshot-{i}.tar");
        let object = d.storage().join("gitpod-user-owner-1").join(&key);
        std::fs::create_dir_all(object.parent().expect("parent")).expect("mkdir");
        std::fs::write(&object, archive).expect("write archive");
        let id = format!("ws-{i}");
        let spec = Spec::Snapshot(SnapshotInitializer {
            snapshot: format!("{key}@gitpod-user-owner-1"),
            from_volume_snapshot: false,
        });
        let result = d
            .client()
            .await
            .init_workspace(init_request(&id, "m", spec))
            .await;
        match expected {
            Some(code) => {
                let status = result.expect_err(name);
                assert_eq!(status.code(), code, "{name}: {}", status.message());
                // Entry names from the archive may be echoed; the daemon's own folders never are.
                assert!(
                    !status.message().contains(d.dir.to_str().expect("utf-8")),
                    "{name}: host path leaked: {}",
                    status.message()
                );
                assert!(
                    !d.working_area().join(&id).exists(),
                    "{name}: partial workspace left behind"
                );
            }
            None => {
                result.unwrap_or_else(|s| panic!("{name}: {s:?}"));
                let content = d.working_area().join(&id);
                if name == "device node" {
                    assert!(!content.join("dev").exists(), "device node skipped");
                    assert!(content.join("ok").is_file());
                }
                if name == "setuid" {
                    let mode = std::fs::metadata(content.join("suid"))
                        .expect("stat")
                        .permissions()
                        .mode();
                    assert_eq!(mode & 0o7777, 0o755, "setuid/setgid stripped");
                }
                if name == "valid zstd" {
                    // The control case really restores, so the refusals above are not blanket ones.
                    assert_eq!(
                        std::fs::read(content.join("ok.txt")).ok().as_deref(),
                        Some(&b"fine"[..])
                    );
                }
            }
        }
        assert_eq!(
            tree::snapshot(dir.path(), &["node"]),
            before,
            "{name}: something outside changed"
        );
    }
}
