//! Real C programs against libwsd: compiled with -Wall -Wextra -Werror, run plainly, under valgrind
//! (no leaks, no errors) and with AddressSanitizer; and libwsd exports the header's functions only.

use std::path::{Path, PathBuf};
use std::process::Command;

const PROGRAMS: &[&str] = &["roundtrip", "errors"];

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder where cargo put libwsd.so for this build (the test binary lives in its `deps/`).
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target folder")
        .to_path_buf();
    assert!(
        dir.join("libwsd.so").is_file(),
        "libwsd.so not found in {}",
        dir.display()
    );
    dir
}

fn compile(program: &str, out: &Path, extra: &[&str]) {
    let lib = lib_dir();
    let status = Command::new("cc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
        ])
        .args(extra)
        .arg("-I")
        .arg(crate_dir().join("../include"))
        .arg(crate_dir().join(format!("tests/c/{program}.c")))
        .arg("-o")
        .arg(out)
        .arg(format!("-L{}", lib.display()))
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .args(["-lwsd", "-lpthread"])
        .status()
        .expect("run cc");
    assert!(status.success(), "{program}.c does not compile cleanly");
}

fn run(mut command: Command, program: &str, how: &str) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let output = command.arg(scratch.path()).output().expect("run program");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(&format!("{program} ok")),
        "{program} ({how}) failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
}

#[test]
fn c_programs_pass() {
    let build = tempfile::tempdir().expect("tempdir");
    for program in PROGRAMS {
        let exe = build.path().join(program);
        compile(program, &exe, &[]);
        run(Command::new(&exe), program, "plain");
    }
}

#[test]
fn c_programs_pass_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        panic!("valgrind is required (scripts/test-all.sh installs it)");
    }
    let build = tempfile::tempdir().expect("tempdir");
    for program in PROGRAMS {
        let exe = build.path().join(program);
        compile(program, &exe, &[]);
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--quiet",
            "--error-exitcode=97",
            "--leak-check=full",
            "--show-leak-kinds=definite,indirect",
            "--errors-for-leak-kinds=definite,indirect",
            "--fair-sched=yes",
        ])
        .arg(&exe);
        run(cmd, program, "valgrind");
    }
}

#[test]
fn c_programs_pass_with_address_sanitizer() {
    let build = tempfile::tempdir().expect("tempdir");
    for program in PROGRAMS {
        let exe = build.path().join(format!("{program}-asan"));
        compile(
            program,
            &exe,
            &["-fsanitize=address,undefined", "-fno-omit-frame-pointer"],
        );
        let mut cmd = Command::new(&exe);
        cmd.env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:halt_on_error=1",
        );
        cmd.env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
        run(cmd, program, "AddressSanitizer");
    }
}

/// Functions declared in include/wsd.h: every `wsd_*` name directly followed by `(`.
fn header_functions() -> Vec<String> {
    let header =
        std::fs::read_to_string(crate_dir().join("../include/wsd.h")).expect("read include/wsd.h");
    let mut names: Vec<String> = header
        .match_indices("wsd_")
        .filter_map(|(at, _)| {
            let rest = &header[at..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            let boundary = at == 0 || !header.as_bytes()[at - 1].is_ascii_alphanumeric();
            (boundary && rest[end..].starts_with('(')).then(|| rest[..end].to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(
        names.len() > 10,
        "no functions found in include/wsd.h: {names:?}"
    );
    names
}

/// The symbols `nm args file` lists, as (archive member, or "" outside an archive; kind; name).
fn nm(args: &[&str], file: &Path) -> Vec<(String, String, String)> {
    let output = Command::new("nm")
        .args(args)
        .arg(file)
        .output()
        .expect("run nm");
    assert!(
        output.status.success(),
        "nm {args:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let (first, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
            // With -A the first column is `archive:member:address`.
            let member = first.rsplit_once(':').map_or("", |(m, _)| m);
            let member = member.rsplit_once(':').map_or(member, |(_, m)| m);
            Some((member.to_string(), kind.to_string(), name.to_string()))
        })
        .collect()
}

/// libwsd.so exports the header's functions and nothing else: no dependency's C API (crc-fast's
/// `crc_fast_*`, which object_store's S3 client brings) can collide with a host library of the same
/// names. bindings-c/build.rs links with `--exclude-libs,ALL` for this, which also hides any
/// `#[no_mangle]` function outside this crate: hence the check that the whole header is exported.
#[test]
fn exported_symbols_are_exactly_the_header_functions() {
    let symbols: Vec<String> = nm(&["-D", "--defined-only"], &lib_dir().join("libwsd.so"))
        .into_iter()
        // Code and data symbols; skip version nodes and absolute markers.
        .filter(|(_, kind, _)| matches!(kind.as_str(), "T" | "D" | "B" | "R" | "W" | "V" | "i"))
        .map(|(_, _, name)| name)
        .collect();
    let foreign: Vec<&String> = symbols.iter().filter(|s| !s.starts_with("wsd_")).collect();
    assert!(
        foreign.is_empty(),
        "libwsd.so exports symbols without the wsd_ prefix: {foreign:?}"
    );
    let missing: Vec<String> = header_functions()
        .into_iter()
        .filter(|f| !symbols.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "declared in include/wsd.h but not exported by libwsd.so: {missing:?} \
         (an exported function must be defined in bindings-c, see build.rs)"
    );
}

/// libwsd.a: a static archive cannot hide its dependencies' symbols (it carries `crc_fast_*`,
/// `ZSTD_*`, `aws_lc_*` as any static Rust library would; a host with the same names links
/// libwsd.so instead). What is ours is checked: the header's functions are defined, and the
/// objects of our own crates define no other unmangled global name. The weak `DW.ref.*` and
/// `__rustc_*` markers rustc emits in every object are not ours to name.
#[test]
fn static_library_defines_the_header_and_our_crates_add_no_foreign_names() {
    let symbols = nm(&["-A", "-g", "--defined-only"], &lib_dir().join("libwsd.a"));
    let ours = |member: &str| {
        ["wsd.", "wsd_core-", "wsd_proto-"]
            .iter()
            .any(|p| member.starts_with(p))
    };
    let defined: Vec<&str> = symbols
        .iter()
        .filter(|(member, kind, _)| ours(member) && kind == "T")
        .map(|(_, _, name)| name.as_str())
        .collect();
    let missing: Vec<String> = header_functions()
        .into_iter()
        .filter(|f| !defined.contains(&f.as_str()))
        .collect();
    assert!(missing.is_empty(), "not defined in libwsd.a: {missing:?}");
    let foreign: Vec<&(String, String, String)> = symbols
        .iter()
        .filter(|(member, kind, name)| {
            ours(member)
                && matches!(kind.as_str(), "T" | "D" | "B" | "R" | "i")
                && !name.starts_with("wsd_")
                && !name.starts_with("_ZN")
                && !name.starts_with("_R")
        })
        .collect();
    assert!(
        foreign.is_empty(),
        "our crates define unprefixed C names in libwsd.a: {foreign:?}"
    );
}
