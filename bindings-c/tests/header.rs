//! The committed header is what the pinned cbindgen generates from the sources now, and its
//! version macros are the crate's version. Set WSD_BLESS=1 to rewrite it.

use std::path::PathBuf;

fn version_macros() -> String {
    format!(
        "#define WSD_VERSION \"{}\"\n#define WSD_VERSION_MAJOR {}\n#define WSD_VERSION_MINOR {}\n#define WSD_VERSION_PATCH {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION_MAJOR"),
        env!("CARGO_PKG_VERSION_MINOR"),
        env!("CARGO_PKG_VERSION_PATCH"),
    )
}

#[test]
fn committed_header_matches_the_sources() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut config =
        cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    config.after_includes = Some(version_macros());
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("generate the header");
    let mut generated = Vec::new();
    bindings.write(&mut generated);
    let generated = String::from_utf8(generated).expect("utf-8");

    let committed_path = crate_dir.join("../include/wsd.h");
    if std::env::var_os("WSD_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).expect("write header");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/wsd.h is out of date with bindings-c/src: regenerate with WSD_BLESS=1 cargo test -p wsd-c --test header"
    );
}

#[test]
fn header_version_macros_match_the_crate() {
    let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../include/wsd.h"))
        .expect("header");
    let line = |name: &str| {
        header
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .map(|l| {
                l.split_whitespace()
                    .nth(2)
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_string()
            })
            .unwrap_or_default()
    };
    assert_eq!(line("WSD_VERSION"), env!("CARGO_PKG_VERSION"));
    assert_eq!(line("WSD_VERSION_MAJOR"), env!("CARGO_PKG_VERSION_MAJOR"));
    assert_eq!(line("WSD_VERSION_MINOR"), env!("CARGO_PKG_VERSION_MINOR"));
    assert_eq!(line("WSD_VERSION_PATCH"), env!("CARGO_PKG_VERSION_PATCH"));
}
