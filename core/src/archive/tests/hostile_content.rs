//! Entries that are refused or neutralized for what they are, not where they go.

use super::*;

#[test]
fn hostile_devices_and_fifos_are_skipped() {
    let env = hostile_env();
    let mut ar = Vec::new();
    let mut h = Header::new_ustar();
    h.set_path("chardev").unwrap();
    h.set_entry_type(EntryType::Char);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_mode(0o666);
    h.set_size(0);
    h.set_cksum();
    ar.extend_from_slice(h.as_bytes());
    raw_entry(&mut ar, b"blockdev", EntryType::Block, b"", 0o666, b"");
    raw_entry(&mut ar, b"fifo", EntryType::Fifo, b"", 0o666, b"");
    raw_entry(&mut ar, b"after", EntryType::Regular, b"", 0o644, b"ok");
    end(&mut ar);
    let stats = run_hostile(&env, &ar).unwrap();
    assert_eq!(stats.skipped, 3);
    assert_eq!(stats.entries, 1);
    for n in ["chardev", "blockdev", "fifo"] {
        assert!(
            fs::symlink_metadata(env.target.join(n)).is_err(),
            "{n} was created"
        );
    }
    assert_eq!(fs::read(env.target.join("after")).unwrap(), b"ok");
}

#[test]
fn hostile_setuid_setgid_stripped() {
    let env = hostile_env();
    let mut ar = Vec::new();
    raw_entry(
        &mut ar,
        b"suid",
        EntryType::Regular,
        b"",
        0o6755,
        b"#!/bin/sh\n",
    );
    raw_entry(
        &mut ar,
        b"sticky-dir/",
        EntryType::Directory,
        b"",
        0o3775,
        b"",
    );
    end(&mut ar);
    run_hostile(&env, &ar).unwrap();
    let mode = |p: &str| fs::symlink_metadata(env.target.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sticky-dir"), 0o3775);
}

#[test]
fn hostile_xattrs_filtered() {
    let env = hostile_env();
    let mut ar = Vec::new();
    let pax = pax_records(&[
        (
            "SCHILY.xattr.security.capability",
            b"\x01\x00\x00\x02\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
        ),
        ("SCHILY.xattr.trusted.evil", b"x"),
        ("SCHILY.xattr.user.fine", b"ok"),
        ("mtime", b"1700000000.5"),
    ]);
    raw_entry(
        &mut ar,
        b"PaxHeader/f",
        EntryType::XHeader,
        b"",
        0o644,
        &pax,
    );
    raw_entry(
        &mut ar,
        b"f",
        EntryType::Regular,
        b"",
        0o755,
        b"#!/bin/sh\n",
    );
    end(&mut ar);
    run_hostile(&env, &ar).unwrap();
    let f = env.target.join("f");
    assert_eq!(xattr::get(&f, "security.capability").unwrap(), None);
    assert_eq!(xattr::get(&f, "trusted.evil").unwrap_or(None), None);
    if xattr::SUPPORTED_PLATFORM
        && xattr::set(env.root.join("outside/sentinel"), "user.probe", b"1").is_ok()
    {
        assert_eq!(
            xattr::get(&f, "user.fine").unwrap().as_deref(),
            Some(&b"ok"[..])
        );
    }
    let md = fs::symlink_metadata(&f).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 500_000_000));
}
