//! Bytes and strings handed to C, and their free functions.

use std::ffi::{c_char, CString};

/// Hands a byte vector to C as pointer + length; free it with [`wsd_bytes_free`]. An empty vector
/// is NULL with length 0: Rust's dangling non-NULL pointer for empty buffers must not reach callers
/// (Go, for one, aborts when it finds such a value in a pointer variable).
pub(crate) fn bytes_out(v: Vec<u8>) -> (*mut u8, usize) {
    if v.is_empty() {
        return (std::ptr::null_mut(), 0);
    }
    let boxed = v.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed).cast::<u8>(), len)
}

/// Hands a string to C; free it with [`wsd_string_free`]. Interior NULs (impossible in JSON and
/// object names) are replaced.
pub(crate) fn string_out(s: String) -> *mut c_char {
    CString::new(s.replace('\0', "?"))
        .unwrap_or_default()
        .into_raw()
}

/// Frees bytes returned by libwsd (`wsd_call`, ...). `len` is the length returned with them.
/// NULL is a no-op.
///
/// # Safety
/// `bytes` is NULL or a buffer returned by libwsd with its length `len`, not freed before; it is
/// not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn wsd_bytes_free(bytes: *mut u8, len: usize) {
    if bytes.is_null() {
        return;
    }
    // SAFETY: `bytes`/`len` came from `bytes_out`, i.e. from Box<[u8]>::into_raw of that length,
    // and are freed once by the caller's contract.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(bytes, len)) });
}

/// Frees a string returned by libwsd. NULL is a no-op.
///
/// # Safety
/// `s` is NULL or a string returned by libwsd, not freed before; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn wsd_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: `s` came from CString::into_raw in `string_out` and is freed once by contract.
    drop(unsafe { CString::from_raw(s) });
}
