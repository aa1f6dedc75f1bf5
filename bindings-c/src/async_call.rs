//! Asynchronous calls: the call runs on the daemon's threads and a C callback receives the result
//! exactly once; a pending call can be cancelled.

use std::ffi::{c_char, c_void, CString};

use tokio_util::sync::CancellationToken;

use crate::boundary::{bytes_arg, ref_arg, str_arg};
use crate::daemon::wsd_daemon;
use crate::status::{error_strings, fail, fail_with, wsd_status};

/// Receives the result of [`wsd_call_async`], exactly once, on a daemon thread. `response` (encoded
/// protobuf, `response_len` bytes; NULL when empty), `message` (the error text) and `reason` (the
/// stable identifier of the failure, as `wsd_last_error_reason` gives it) are valid only during
/// the callback; `message` and `reason` are NULL on success. The callback must not block for long
/// nor call `wsd_daemon_close`/`_free`.
pub type wsd_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        status: wsd_status,
        response: *const u8,
        response_len: usize,
        message: *const c_char,
        reason: *const c_char,
    ),
>;

/// A pending asynchronous call, for [`wsd_pending_cancel`]. Free it with [`wsd_pending_free`]
/// (at any time: freeing does not cancel the call nor stop its callback).
pub struct wsd_pending {
    token: CancellationToken,
}

/// The caller's pointer, carried to the daemon thread that runs the callback.
struct UserData(*mut c_void);
// SAFETY: libwsd never dereferences user_data; the caller promises it may be used from the
// daemon's callback thread (documented on wsd_call_async).
unsafe impl Send for UserData {}

/// The caller's callback and pointer: delivers one outcome, on a daemon thread.
pub(crate) struct Delivery {
    callback: unsafe extern "C" fn(
        *mut c_void,
        wsd_status,
        *const u8,
        usize,
        *const c_char,
        *const c_char,
    ),
    user_data: UserData,
}

impl Delivery {
    pub(crate) fn result(self, result: wsd_core::Result<Vec<u8>>) {
        match result {
            Ok(bytes) => self.deliver(wsd_status::WSD_OK, &bytes, None),
            Err(e) => self.deliver(wsd_status::from(e.code()), &[], Some(error_strings(&e))),
        }
    }

    /// A status that is not a success, with its message and reason.
    pub(crate) fn status(self, status: wsd_status, message_and_reason: (CString, CString)) {
        self.deliver(status, &[], Some(message_and_reason));
    }

    fn deliver(self, status: wsd_status, bytes: &[u8], error: Option<(CString, CString)>) {
        let (message_ptr, reason_ptr) = error
            .as_ref()
            .map_or((std::ptr::null(), std::ptr::null()), |(m, r)| {
                (m.as_ptr(), r.as_ptr())
            });
        // NULL for an empty response, never Rust's dangling pointer (see memory::bytes_out).
        let response_ptr = if bytes.is_empty() {
            std::ptr::null()
        } else {
            bytes.as_ptr()
        };
        // SAFETY: the callback is a valid function pointer by contract; the buffers outlive
        // the call.
        unsafe {
            (self.callback)(
                self.user_data.0,
                status,
                response_ptr,
                bytes.len(),
                message_ptr,
                reason_ptr,
            )
        };
    }
}

/// What the asynchronous functions share: checks the callback, hands out the pending handle (when
/// `pending` is not NULL), starts the work with its cancellation and the delivery of its outcome,
/// and takes the handle back when the start is refused (then the callback never runs).
///
/// # Safety
/// `pending` is NULL or writable; `callback` and `user_data` as `wsd_call_async` requires.
pub(crate) unsafe fn start_async(
    callback: wsd_callback,
    user_data: *mut c_void,
    pending: *mut *mut wsd_pending,
    start: impl FnOnce(CancellationToken, Delivery) -> wsd_core::Result<()>,
) -> wsd_status {
    let Some(callback) = callback else {
        return fail_with(wsd_status::WSD_NULL_ARGUMENT, "callback must not be NULL");
    };
    let token = CancellationToken::new();
    // The handle is in place before the work starts: its callback may run at once.
    if !pending.is_null() {
        let handle = Box::new(wsd_pending {
            token: token.clone(),
        });
        // SAFETY: non-NULL and writable by contract.
        unsafe { *pending = Box::into_raw(handle) };
    }
    let delivery = Delivery {
        callback,
        user_data: UserData(user_data),
    };
    if let Err(e) = start(token, delivery) {
        if !pending.is_null() {
            // SAFETY: written just above from Box::into_raw and not yet seen by the caller.
            unsafe {
                drop(Box::from_raw(*pending));
                *pending = std::ptr::null_mut();
            }
        }
        return fail(e);
    }
    wsd_status::WSD_OK
}

/// Starts the operation at `method` with an encoded protobuf request and returns at once. The
/// callback runs exactly once with the outcome: the response, an error, WSD_CANCELLED after
/// [`wsd_pending_cancel`], or WSD_UNAVAILABLE when the daemon closes first. `user_data` is passed
/// through untouched and must be usable from another thread. `pending` may be NULL; otherwise it
/// receives a handle to cancel the call. When this function fails (WSD_UNAVAILABLE once the daemon
/// is closed), the callback never runs and no handle is handed out (`*pending` is NULL).
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `method` is NULL or a NUL-terminated string and `request` NULL or `request_len` readable bytes
/// (both copied before this function returns); `callback` is NULL or a function that may be called
/// from another thread with `user_data`; `pending` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_call_async(
    daemon: *const wsd_daemon,
    method: *const c_char,
    request: *const u8,
    request_len: usize,
    callback: wsd_callback,
    user_data: *mut c_void,
    pending: *mut *mut wsd_pending,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY (all three): pointers are checked for NULL; validity is the caller's contract.
        // SAFETY: the daemon argument is NULL or a live handle, as the function's # Safety section requires.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let method = arg!(unsafe { str_arg(method, "method") });
        // SAFETY: the buffer is NULL with length 0 or that many readable bytes (# Safety section).
        let request = arg!(unsafe { bytes_arg(request, request_len, "request") });
        // SAFETY: `pending`, `callback` and `user_data` as the # Safety section requires.
        unsafe {
            start_async(callback, user_data, pending, |token, delivery| {
                d.inner.call_with_callback(method, request.to_vec(), token, |result| {
                    delivery.result(result)
                })
            })
        }
    }
}

/// Cancels a pending call: its callback runs with WSD_CANCELLED unless it already ran. Work that
/// must not be abandoned half-way (an init, a backup) goes on in the daemon; only the wait ends.
///
/// # Safety
/// `pending` is NULL or a handle from `wsd_call_async` that has not been freed.
#[no_mangle]
pub unsafe extern "C" fn wsd_pending_cancel(pending: *const wsd_pending) -> wsd_status {
    ffi_boundary! {
        // SAFETY: a live handle or NULL by contract.
        let p = arg!(unsafe { ref_arg(pending, "pending") });
        p.token.cancel();
        wsd_status::WSD_OK
    }
}

/// Frees a pending-call handle. NULL is a no-op.
///
/// # Safety
/// `pending` is NULL or a handle from `wsd_call_async` that has not been freed; it is not used
/// afterwards, nor freed again.
#[no_mangle]
pub unsafe extern "C" fn wsd_pending_free(pending: *mut wsd_pending) {
    if pending.is_null() {
        return;
    }
    // SAFETY: created by Box::into_raw in wsd_call_async and freed once by contract.
    drop(unsafe { Box::from_raw(pending) });
}
