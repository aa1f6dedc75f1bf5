//! uniffi's bindings generator, at the uniffi version of this crate: generates the Python module
//! (and Kotlin, Swift, Ruby sources) from the built library, e.g.
//! `uniffi-bindgen generate --library libwsd_uniffi.so --language python --out-dir out`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
