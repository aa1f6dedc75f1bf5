//! Link step of libwsd.so: export only the `wsd_*` API.
//!
//! rustc exports from a cdylib every `#[no_mangle]` function of the whole crate graph, through a
//! version script it writes itself that names each one as global. object_store's S3 client depends
//! on crc-fast with its default features, whose `ffi` feature defines the `crc_fast_*` C API, so
//! libwsd.so would export those too, and a host that also loads a library with those names binds
//! to whichever comes first. Cargo features are additive, so no feature of ours turns `ffi` off.
//! A second version script cannot narrow rustc's list (rust-lld keeps the names rustc lists
//! explicitly as global, GNU ld refuses two anonymous version scripts), but `--exclude-libs,ALL`
//! holds with both: every symbol defined in an archive (each dependency's rlib is one) stays out
//! of the dynamic symbol table, while the `wsd_*` functions, compiled into this crate's own object
//! files, keep their export. Hence every exported function must live in this crate, which the
//! symbol test checks against include/wsd.h.
//!
//! Cross-crate LTO would merge the dependencies into this crate's objects and defeat this; the
//! release profile does not use it. The static libwsd.a cannot hide anything: it carries its
//! dependencies' symbols as any static archive of Rust code does.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
    }
}
