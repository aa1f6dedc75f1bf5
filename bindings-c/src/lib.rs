//! C ABI of the workspace daemon. The full surface (handles, dispatch, async calls) comes with the
//! C ABI issue; for now it exposes the library version so that linking can be checked.

use std::ffi::c_char;

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as a NUL-terminated static string; never free it.
#[no_mangle]
pub extern "C" fn wsd_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_matches_core() {
        // SAFETY: wsd_version returns a pointer to a static NUL-terminated string.
        let v = unsafe { std::ffi::CStr::from_ptr(super::wsd_version()) };
        assert_eq!(v.to_str().ok(), Some(wsd_core::version()));
    }
}
