//! Stream formats, truncation, garbage, and how stream and entry errors read.

use super::*;

fn sample_tree_archive(compression: Compression) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("big"), pseudo_random(1 << 20, 99)).unwrap();
    fs::write(tmp.path().join("small"), b"small").unwrap();
    let opts = ArchiveOptions {
        compression,
        ..Default::default()
    };
    let mut buf = Vec::new();
    write_archive(tmp.path(), &mut buf, &opts).unwrap();
    buf
}

#[test]
fn hostile_truncated() {
    let zst = sample_tree_archive(Compression::Zstd);
    for cut in [zst.len() / 2, zst.len() - 1, 100] {
        let env = hostile_env();
        let err = run_hostile(&env, &zst[..cut]).unwrap_err();
        assert!(err.is_truncation(), "cut {cut}: {err:?}");
    }
    let tar = sample_tree_archive(Compression::None);
    // Mid file data, mid header, and at an entry boundary without end marker.
    for cut in [
        512 + 4096,
        512 + 100,
        512 + (1 << 20) + 512 + 100,
        512 + (1 << 20),
    ] {
        let env = hostile_env();
        let err = run_hostile(&env, &tar[..cut]).unwrap_err();
        assert!(err.is_truncation(), "cut {cut}: {err:?}");
    }
    // Valid archive followed by a truncated zstd frame.
    let mut two = zst.clone();
    two.extend_from_slice(&zst[..zst.len() / 2]);
    let env = hostile_env();
    assert!(run_hostile(&env, &two).is_err());
    // A complete archive still works.
    let env = hostile_env();
    run_hostile(&env, &zst).unwrap();
    run_hostile(&hostile_env(), &tar).unwrap();
}

#[test]
fn hostile_garbage() {
    let env = hostile_env();
    let garbage = pseudo_random(4096, 7);
    assert!(matches!(
        run_hostile(&env, &garbage),
        Err(ArchiveError::UnknownFormat)
    ));
    assert!(matches!(
        run_hostile(&env, b""),
        Err(ArchiveError::UnknownFormat)
    ));
    let mut zgarbage = vec![0x28, 0xB5, 0x2F, 0xFD];
    zgarbage.extend_from_slice(&garbage);
    let err = run_hostile(&env, &zgarbage).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Malformed(_) | ArchiveError::Truncated(_)),
        "{err:?}"
    );
    // Bad header checksum.
    let mut ar = Vec::new();
    raw_entry(&mut ar, b"f", EntryType::Regular, b"", 0o644, b"data");
    end(&mut ar);
    ar[0] = b'g';
    assert!(matches!(
        run_hostile(&env, &ar),
        Err(ArchiveError::Malformed(_))
    ));
    // Valid header followed by garbage instead of the next header.
    let mut ar = Vec::new();
    raw_entry(&mut ar, b"f", EntryType::Regular, b"", 0o644, b"data");
    ar.extend_from_slice(&garbage);
    assert!(run_hostile(&env, &ar).is_err());
}

#[test]
fn detect_compression_cases() {
    assert_eq!(
        detect_compression(&[0x28, 0xB5, 0x2F, 0xFD, 0]),
        Some(Compression::Zstd)
    );
    assert_eq!(detect_compression(&[0x28, 0xB5, 0x2F]), None);
    assert_eq!(detect_compression(b""), None);
    let mut t = vec![0u8; 512];
    t[257..262].copy_from_slice(b"ustar");
    assert_eq!(detect_compression(&t), Some(Compression::None));
    assert_eq!(detect_compression(&t[..262]), Some(Compression::None));
    assert_eq!(detect_compression(&t[..261]), None);
    assert_eq!(detect_compression(&[0u8; 512]), None);
    let mut h = Header::new_gnu();
    h.set_path("x").unwrap();
    h.set_cksum();
    assert_eq!(detect_compression(h.as_bytes()), Some(Compression::None));
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    enc.write_all(b"hello").unwrap();
    let z = enc.finish().unwrap();
    assert_eq!(detect_compression(&z), Some(Compression::Zstd));
}

#[test]
fn pax_time_roundtrip() {
    for (s, n) in [
        (0i64, 1u32),
        (1_600_000_000, 999_999_999),
        (-1, 500_000_000),
        (-2, 1),
    ] {
        let txt = format_pax_time(s, n);
        assert_eq!(parse_pax_time(txt.as_bytes()), Some((s, n)), "{txt}");
    }
    assert_eq!(parse_pax_time(b"12"), Some((12, 0)));
    assert_eq!(parse_pax_time(b"12.5"), Some((12, 500_000_000)));
    assert_eq!(parse_pax_time(b"x"), None);
    assert_eq!(parse_pax_time(b"1.2.3"), None);
}

#[test]
fn vanished_source_and_reader_errors() {
    // A reader that fails: Io error, not a panic.
    struct Failing;
    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("boom"))
        }
    }
    let env = hostile_env();
    assert!(matches!(
        extract_archive(Failing, &env.target, &ArchiveOptions::default()),
        Err(ArchiveError::Io { .. })
    ));
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = write_archive(&missing, Vec::new(), &ArchiveOptions::default()).unwrap_err();
    assert!(!err.to_string().contains(tmp.path().to_str().unwrap()));
}

#[test]
fn stream_errors_name_no_entry_and_entry_errors_do() {
    let stream = ArchiveError::io("read archive", b"", std::io::Error::other("reset"));
    assert_eq!(stream.to_string(), "read archive failed: reset");
    let entry = ArchiveError::io("write", b"src/a.rs", std::io::Error::other("full"));
    assert_eq!(entry.to_string(), "write failed for \"src/a.rs\": full");
}
