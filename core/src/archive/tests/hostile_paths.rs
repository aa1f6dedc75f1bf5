//! Names and links that try to leave the target.

use super::*;

#[test]
fn hostile_dotdot() {
    both_resolvers(|| {
        for name in [&b"../evil"[..], b"a/../../evil", b"./../evil", b"a/b/.."] {
            let env = hostile_env();
            let mut ar = Vec::new();
            raw_entry(&mut ar, b"a/", EntryType::Directory, b"", 0o755, b"");
            raw_entry(&mut ar, name, EntryType::Regular, b"", 0o644, b"evil");
            end(&mut ar);
            assert_unsafe(run_hostile(&env, &ar));
            assert!(!env.root.join("evil").exists());
        }
    });
}

#[test]
fn hostile_absolute() {
    both_resolvers(|| {
        let env = hostile_env();
        let abs = format!("{}/outside/evil", env.root.display());
        let mut ar = Vec::new();
        raw_entry(
            &mut ar,
            abs.as_bytes(),
            EntryType::Regular,
            b"",
            0o644,
            b"evil",
        );
        end(&mut ar);
        assert_unsafe(run_hostile(&env, &ar));
        let mut ar = Vec::new();
        raw_entry(
            &mut ar,
            b"/abs/evil",
            EntryType::Regular,
            b"",
            0o644,
            b"evil",
        );
        end(&mut ar);
        assert_unsafe(run_hostile(&env, &ar));
        assert!(!Path::new("/abs/evil").exists());
    });
}

#[test]
fn hostile_symlink_parent() {
    both_resolvers(|| {
        let env = hostile_env();
        let outside = format!("{}/outside", env.root.display());
        for (link, name) in [
            (outside.as_bytes(), &b"l/evil"[..]),
            (b"..".as_slice(), b"l/evil"),
            (outside.as_bytes(), b"l/sentinel"),
            (b"../outside".as_slice(), b"l/sub/evil"),
        ] {
            let env2 = hostile_env();
            let link = if link == outside.as_bytes() {
                format!("{}/outside", env2.root.display()).into_bytes()
            } else {
                link.to_vec()
            };
            let mut ar = Vec::new();
            raw_entry(&mut ar, b"l", EntryType::Symlink, &link, 0o777, b"");
            raw_entry(&mut ar, name, EntryType::Regular, b"", 0o644, b"evil");
            end(&mut ar);
            assert_unsafe(run_hostile(&env2, &ar));
            // Also a folder entry and a symlink entry below the symlink.
            let mut ar = Vec::new();
            raw_entry(&mut ar, b"l", EntryType::Symlink, &link, 0o777, b"");
            raw_entry(&mut ar, b"l/d/", EntryType::Directory, b"", 0o777, b"");
            end(&mut ar);
            assert_unsafe(run_hostile(&env2, &ar));
        }
        drop(env);
    });
}

#[test]
fn hostile_hard_links() {
    both_resolvers(|| {
        let env = hostile_env();
        let abs = format!("{}/outside/sentinel", env.root.display());
        let cases: Vec<Vec<u8>> = vec![
            b"../outside/sentinel".to_vec(),
            abs.into_bytes(),
            b"l/sentinel".to_vec(),
            b"missing".to_vec(),
            b"a/../../outside/sentinel".to_vec(),
        ];
        for target in cases {
            let env = hostile_env();
            let target = if target.starts_with(b"/") {
                format!("{}/outside/sentinel", env.root.display()).into_bytes()
            } else {
                target
            };
            let mut ar = Vec::new();
            let outside = format!("{}/outside", env.root.display());
            raw_entry(
                &mut ar,
                b"l",
                EntryType::Symlink,
                outside.as_bytes(),
                0o777,
                b"",
            );
            raw_entry(&mut ar, b"h", EntryType::Link, &target, 0o644, b"");
            // Writing through the link would change the sentinel.
            raw_entry(
                &mut ar,
                b"h",
                EntryType::Regular,
                b"",
                0o777,
                b"overwritten",
            );
            end(&mut ar);
            assert_unsafe(run_hostile(&env, &ar));
            assert_eq!(
                fs::read(env.root.join("outside/sentinel")).unwrap(),
                b"do not touch"
            );
        }
        // A valid hard link inside the target works.
        let env = hostile_env();
        let mut ar = Vec::new();
        raw_entry(&mut ar, b"f", EntryType::Regular, b"", 0o644, b"data");
        raw_entry(&mut ar, b"d/h", EntryType::Link, b"./f", 0o644, b"");
        end(&mut ar);
        run_hostile(&env, &ar).unwrap();
        assert_eq!(fs::read(env.target.join("d/h")).unwrap(), b"data");
    });
}

#[test]
fn hostile_file_folder_conflicts() {
    both_resolvers(|| {
        // File then folder of the same name: the folder replaces the file.
        let env = hostile_env();
        let mut ar = Vec::new();
        raw_entry(&mut ar, b"x", EntryType::Regular, b"", 0o644, b"file");
        raw_entry(&mut ar, b"x/", EntryType::Directory, b"", 0o755, b"");
        raw_entry(&mut ar, b"x/inner", EntryType::Regular, b"", 0o644, b"in");
        end(&mut ar);
        run_hostile(&env, &ar).unwrap();
        assert!(env.target.join("x").is_dir());
        // Folder then file: refused.
        let env = hostile_env();
        let mut ar = Vec::new();
        raw_entry(&mut ar, b"y/", EntryType::Directory, b"", 0o755, b"");
        raw_entry(&mut ar, b"y/keep", EntryType::Regular, b"", 0o644, b"keep");
        raw_entry(&mut ar, b"y", EntryType::Regular, b"", 0o644, b"file");
        end(&mut ar);
        assert_unsafe(run_hostile(&env, &ar));
        assert_eq!(fs::read(env.target.join("y/keep")).unwrap(), b"keep");
        // Folder then symlink: refused.
        let env = hostile_env();
        let mut ar = Vec::new();
        raw_entry(&mut ar, b"z/", EntryType::Directory, b"", 0o755, b"");
        raw_entry(&mut ar, b"z", EntryType::Symlink, b"/", 0o777, b"");
        end(&mut ar);
        assert_unsafe(run_hostile(&env, &ar));
        // A file over a symlink to an outside file replaces the symlink and
        // does not write through it.
        let env = hostile_env();
        let sentinel = format!("{}/outside/sentinel", env.root.display());
        let mut ar = Vec::new();
        raw_entry(
            &mut ar,
            b"s",
            EntryType::Symlink,
            sentinel.as_bytes(),
            0o777,
            b"",
        );
        raw_entry(&mut ar, b"s", EntryType::Regular, b"", 0o777, b"replaced");
        raw_entry(&mut ar, b"t", EntryType::Symlink, b"../outside", 0o777, b"");
        raw_entry(&mut ar, b"t/", EntryType::Directory, b"", 0o700, b"");
        end(&mut ar);
        run_hostile(&env, &ar).unwrap();
        assert_eq!(fs::read(env.target.join("s")).unwrap(), b"replaced");
        assert!(fs::symlink_metadata(env.target.join("t")).unwrap().is_dir());
    });
}

#[test]
fn root_entry_sets_target_metadata() {
    both_resolvers(|| {
        let env = hostile_env();
        let mut ar = Vec::new();
        raw_entry(&mut ar, b"./", EntryType::Directory, b"", 0o711, b"");
        raw_entry(&mut ar, b"./f", EntryType::Regular, b"", 0o644, b"f");
        end(&mut ar);
        run_hostile(&env, &ar).unwrap();
        let md = fs::metadata(&env.target).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o711);
        assert_eq!(md.mtime(), 1_700_000_000);
        // A non-folder entry naming the root is refused.
        let env = hostile_env();
        let mut ar = Vec::new();
        raw_entry(&mut ar, b".", EntryType::Regular, b"", 0o644, b"f");
        end(&mut ar);
        assert_unsafe(run_hostile(&env, &ar));
    });
}
