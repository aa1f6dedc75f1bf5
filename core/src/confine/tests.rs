//! Hostile paths against both resolvers: openat2 (where the kernel has it) and the component walk.

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::stat::fstat;

use super::*;
use crate::error::Code;

/// Runs `case` with openat2 and with the component walk; `case` gets `true` for the walk.
fn both_resolvers(case: impl Fn(bool)) {
    case(false);
    with_component_walk(|| case(true));
}

/// `base/root` (the confining folder) and `base/outside` with a sentinel file.
struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    fs::create_dir_all(&root).expect("mkdir");
    fs::create_dir_all(&outside).expect("mkdir");
    fs::write(outside.join("sentinel"), b"untouched").expect("write");
    Env {
        _tmp: tmp,
        root,
        outside,
    }
}

fn outside_unchanged(env: &Env) {
    let names: Vec<_> = fs::read_dir(&env.outside)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("sentinel")]);
    assert_eq!(
        fs::read(env.outside.join("sentinel")).expect("read"),
        b"untouched"
    );
}

fn same_file(fd: &OwnedFd, path: &Path) -> bool {
    let st = fstat(fd.as_fd()).expect("fstat");
    let md = fs::metadata(path).expect("stat");
    st.st_dev == md.dev() && st.st_ino == md.ino()
}

#[test]
fn request_paths_stay_relative() {
    assert_eq!(
        relative_request_path("f", "/a/./b//c/").ok(),
        Some(PathBuf::from("a/b/c"))
    );
    assert_eq!(relative_request_path("f", "").ok(), Some(PathBuf::new()));
    for bad in ["../x", "a/../../x", "a/..", "a\0b"] {
        let err = relative_request_path("f", bad).expect_err(bad);
        assert_eq!(err.code(), Code::InvalidArgument, "{bad}");
    }
    assert!(matches!(
        normalize(b"a/../b"),
        Err(ConfineError::BadPath(BadPath::ParentDir))
    ));
    assert!(matches!(
        normalize(b"a\0"),
        Err(ConfineError::BadPath(BadPath::Nul))
    ));
    assert!(matches!(
        split_parent(Path::new("")),
        Err(ConfineError::BadPath(BadPath::NoFileName))
    ));
    let (dir, name) = split_parent(Path::new("f")).expect("split");
    assert_eq!((dir, name), (Path::new(""), std::ffi::OsStr::new("f")));
}

#[test]
fn symlinks_in_the_tree_are_never_followed() {
    both_resolvers(|walk| {
        let env = env();
        symlink(&env.outside, env.root.join("abs")).expect("symlink");
        symlink("../outside", env.root.join("rel")).expect("symlink");
        fs::create_dir(env.root.join("real")).expect("mkdir");
        symlink("real", env.root.join("inside")).expect("symlink");
        let b = Beneath::open(&env.root).expect("open");
        for link in ["abs", "rel", "inside"] {
            let sub = Path::new(link).join("sub");
            for result in [
                b.create_dir_all(&sub).map(drop),
                b.open_dir(Path::new(link)).map(drop),
                b.write_file_atomically(&Path::new(link).join("f"), b"x", 0o644),
                b.read_file(&Path::new(link).join("sentinel"), 100)
                    .map(drop),
                b.list_files(Path::new(link)).map(drop),
                b.kind_of(&Path::new(link).join("sentinel")).map(drop),
            ] {
                assert!(
                    matches!(result, Err(ConfineError::Symlink)),
                    "{link} (walk: {walk}): {result:?}"
                );
            }
            assert_eq!(
                b.kind_of(Path::new(link)).expect("kind"),
                Some(EntryKind::Symlink),
                "the link itself is seen, not followed"
            );
        }
        // A symlink to a file is not read through either.
        symlink(env.outside.join("sentinel"), env.root.join("file-link")).expect("symlink");
        assert!(matches!(
            b.read_file(Path::new("file-link"), 100),
            Err(ConfineError::Symlink)
        ));
        outside_unchanged(&env);
        // The same operations inside work.
        b.write_file_atomically(Path::new("a/b/file"), b"x", 0o644)
            .expect("write inside");
        assert_eq!(fs::read(env.root.join("a/b/file")).expect("read"), b"x");
        assert_eq!(b.read_file(Path::new("a/b/file"), 100).expect("read"), b"x");
        assert_eq!(
            b.list_files(Path::new("a/b")).expect("ls"),
            vec!["file".to_string()]
        );
        let fd = b.create_dir_all(Path::new("real/x/y")).expect("mkdir -p");
        assert!(same_file(&fd, &env.root.join("real/x/y")));
    });
}

#[test]
fn missing_and_non_folder_paths_are_told_apart() {
    both_resolvers(|walk| {
        let env = env();
        fs::write(env.root.join("file"), b"data").expect("write");
        let b = Beneath::open(&env.root).expect("open");
        assert!(
            matches!(
                b.open_dir(Path::new("nope/deeper")),
                Err(ConfineError::NotFound)
            ),
            "walk: {walk}"
        );
        assert!(matches!(
            b.open_dir(Path::new("file")),
            Err(ConfineError::NotAFolder)
        ));
        assert!(matches!(
            b.create_dir_all(Path::new("file/sub")),
            Err(ConfineError::NotAFolder)
        ));
        assert!(matches!(
            b.read_file(Path::new("."), 10),
            Err(ConfineError::BadPath(BadPath::NoFileName))
        ));
        assert_eq!(b.kind_of(Path::new("nope/x")).expect("kind"), None);
        assert_eq!(
            b.kind_of(Path::new("file")).expect("kind"),
            Some(EntryKind::File)
        );
        assert!(matches!(
            b.kind_of(Path::new("file/x")),
            Err(ConfineError::NotAFolder)
        ));
        // `..` never reaches the resolvers as a path component.
        assert!(matches!(
            b.open_dir(Path::new("../outside")),
            Err(ConfineError::BadPath(BadPath::ParentDir))
        ));
        let root = b.open_dir(Path::new("")).expect("the root itself");
        assert!(same_file(&root, &env.root));
        // io::Error keeps the kind callers branch on.
        let missing: std::io::Error = ConfineError::NotFound.into();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        outside_unchanged(&env);
    });
}

/// A container root: `root/etc`, `root/proc`, `root/etc/file`, and symlinks pointing out.
fn container() -> Env {
    let env = env();
    for dir in ["etc", "proc", "usr/lib"] {
        fs::create_dir_all(env.root.join(dir)).expect("mkdir");
    }
    fs::write(env.root.join("etc/file"), b"inside").expect("write");
    // Legitimate in a root file system: absolute symlinks meant relative to the root.
    symlink("/usr/lib", env.root.join("lib")).expect("symlink");
    // Pointing out: the host path of `outside`, and `..` past the root.
    symlink(&env.outside, env.root.join("abs-out")).expect("symlink");
    symlink("../../../../outside", env.root.join("dotdot-out")).expect("symlink");
    symlink("../..", env.root.join("etc/up")).expect("symlink");
    symlink("/proc/self/root", env.root.join("magic")).expect("symlink");
    env
}

#[test]
fn in_root_resolves_folders_and_tells_why_not() {
    both_resolvers(|walk| {
        let env = container();
        let root = InRoot::open(&env.root).expect("open root");
        for (path, want) in [
            ("/proc", "proc"),
            ("proc", "proc"),
            ("/", ""),
            ("/etc/", "etc"),
        ] {
            let fd = root.open_dir_path(path).expect(path);
            assert!(same_file(&fd, &env.root.join(want)), "{path}");
            let flags =
                OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL).expect("fl"));
            assert!(flags.contains(OFlag::O_PATH), "{path}: an O_PATH fd");
        }
        assert!(matches!(
            root.open_dir_path("/nope"),
            Err(ConfineError::NotFound)
        ));
        assert!(matches!(
            root.open_dir_path("/etc/file"),
            Err(ConfineError::NotAFolder)
        ));
        assert!(matches!(
            root.open_dir_path("/etc/../proc"),
            Err(ConfineError::BadPath(BadPath::ParentDir))
        ));
        // Symlinks inside the root: followed as if the root were `/`, or refused by the walk.
        let lib = root.open_dir_path("/lib");
        let up = root.open_dir_path("/etc/up/proc");
        if walk {
            assert!(matches!(lib, Err(ConfineError::Symlink)), "{lib:?}");
            assert!(matches!(up, Err(ConfineError::Symlink)), "{up:?}");
        } else {
            assert!(same_file(&lib.expect("/lib"), &env.root.join("usr/lib")));
            assert!(same_file(&up.expect("up"), &env.root.join("proc")));
        }
        outside_unchanged(&env);
    });
}

#[test]
fn in_root_symlinks_never_lead_out() {
    both_resolvers(|walk| {
        let env = container();
        let root = InRoot::open(&env.root).expect("open root");
        // Each would be `outside` (or the host's `/`) if followed from the host's view.
        for path in [
            "/abs-out",
            "/dotdot-out",
            "/etc/up/outside",
            "/magic",
            "/magic/etc",
        ] {
            match root.open_dir_path(path) {
                // Resolved inside the root, where there is no such folder.
                Err(ConfineError::NotFound) if !walk => {}
                // The walk refuses every symlink.
                Err(ConfineError::Symlink) if walk => {}
                // A magic link is refused outright.
                Err(ConfineError::Escapes | ConfineError::Symlink)
                    if path.starts_with("/magic") => {}
                Ok(fd) => panic!(
                    "{path} (walk: {walk}) resolved, to the outside: {}",
                    same_file(&fd, &env.outside)
                ),
                Err(other) => panic!("{path} (walk: {walk}): unexpected {other:?}"),
            }
        }
        // The same escape with a folder that exists inside: the inside one is found.
        if !walk {
            fs::create_dir_all(env.root.join(env.outside.strip_prefix("/").expect("abs")))
                .expect("mirror");
            let fd = root.open_dir_path("/abs-out").expect("inside twin");
            assert!(!same_file(&fd, &env.outside));
            assert!(same_file(
                &fd,
                &env.root.join(env.outside.strip_prefix("/").expect("abs"))
            ));
        }
        outside_unchanged(&env);
        // Every refusal of a request path answers INVALID_ARGUMENT.
        let err = root
            .open_dir_path("/nope")
            .expect_err("missing")
            .for_request("target");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(!err.to_string().contains(env.root.to_str().expect("utf-8")));
    });
}
