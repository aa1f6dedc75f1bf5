//! The panic boundary and argument checks that wrap every exported function body.

use std::ffi::{c_char, CStr};

use crate::status::{fail_with, wsd_status};

/// Runs a function body that returns a `wsd_status`: clears the thread's last error first and turns
/// a panic into `WSD_PANIC` instead of unwinding into C.
macro_rules! ffi_boundary {
    ($($body:tt)*) => {{
        $crate::status::clear_last_error();
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(
            || -> $crate::status::wsd_status { $($body)* },
        )) {
            Ok(status) => status,
            Err(_) => $crate::status::fail_with(
                $crate::status::wsd_status::WSD_PANIC,
                "libwsd panicked; the call had no reliable effect",
            ),
        }
    }};
}

/// Unwraps an argument conversion or returns its status from the enclosing boundary body.
macro_rules! arg {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}

fn null(name: &str) -> wsd_status {
    fail_with(
        wsd_status::WSD_NULL_ARGUMENT,
        &format!("{name} must not be NULL"),
    )
}

/// A NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that lives for `'a`.
pub(crate) unsafe fn str_arg<'a>(p: *const c_char, name: &str) -> Result<&'a str, wsd_status> {
    if p.is_null() {
        return Err(null(name));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str().map_err(|_| {
        fail_with(
            wsd_status::WSD_INVALID_UTF8,
            &format!("{name} is not valid UTF-8"),
        )
    })
}

/// A byte buffer argument; NULL is allowed only with length 0.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that live for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(
    p: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], wsd_status> {
    if p.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(null(name)) };
    }
    // SAFETY: non-NULL and `len` readable bytes by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A reference to a handle argument.
///
/// # Safety
/// `p` is NULL or points to a live `T` created by this library.
pub(crate) unsafe fn ref_arg<'a, T>(p: *const T, name: &str) -> Result<&'a T, wsd_status> {
    // SAFETY: NULL is checked by `as_ref`; liveness is the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| null(name))
}

/// Checks that an out-parameter is not NULL.
pub(crate) fn out_arg<T>(p: *mut T, name: &str) -> Result<*mut T, wsd_status> {
    if p.is_null() {
        Err(null(name))
    } else {
        Ok(p)
    }
}
