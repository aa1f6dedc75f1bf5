//! Server-streaming calls (WatchProgress): a stream handle whose responses are read one at a
//! time, blocking or with a callback, until `WSD_STREAM_END`.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use wsd_core::CallStream;

use crate::async_call::{start_async, wsd_callback, wsd_pending};
use crate::boundary::{bytes_arg, out_arg, ref_arg, str_arg};
use crate::daemon::wsd_daemon;
use crate::memory::bytes_out;
use crate::status::{fail, fail_with, status_strings, wsd_status};

const STREAM_END: &str = "the stream has ended";

/// An open server-streaming call. Free it with [`wsd_stream_free`].
pub struct wsd_stream {
    inner: Arc<CallStream>,
}

/// Opens the server-streaming method at `method` (e.g.
/// "/wsdaemon.WorkspaceContentExt/WatchProgress") with an encoded protobuf request. A unary method
/// is refused with WSD_INVALID_ARGUMENT. The request is checked when the first response is read.
///
/// # Safety
/// `daemon` is NULL or a live handle from `wsd_daemon_new`; `method` is NULL or a NUL-terminated
/// string; `request` is NULL or `request_len` readable bytes; `stream` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_stream_open(
    daemon: *const wsd_daemon,
    method: *const c_char,
    request: *const u8,
    request_len: usize,
    stream: *mut *mut wsd_stream,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: the daemon argument is NULL or a live handle (# Safety section).
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated (# Safety section).
        let method = arg!(unsafe { str_arg(method, "method") });
        // SAFETY: the buffer is NULL with length 0 or that many readable bytes (# Safety section).
        let request = arg!(unsafe { bytes_arg(request, request_len, "request") });
        let out = arg!(out_arg(stream, "stream"));
        match d.inner.open_stream(method, request.to_vec(), wsd_core::CallContext::default()) {
            Ok(inner) => {
                // SAFETY: `out` is non-NULL and writable by contract; written only on success.
                unsafe { *out = Box::into_raw(Box::new(wsd_stream { inner })) };
                wsd_status::WSD_OK
            }
            Err(e) => fail(e),
        }
    }
}

/// Blocks until the next response of `stream`: WSD_OK with it in `*response` (free it with
/// `wsd_bytes_free`; NULL when empty), WSD_STREAM_END when the stream has ended, or the error that
/// ended it.
///
/// # Safety
/// `daemon` is NULL or the live handle the stream was opened on; `stream` is NULL or a handle
/// from `wsd_stream_open` that has not been freed; `response` and `response_len` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_stream_next(
    daemon: *const wsd_daemon,
    stream: *const wsd_stream,
    response: *mut *mut u8,
    response_len: *mut usize,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: NULL or live handles by contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: NULL or a live stream handle by contract.
        let s = arg!(unsafe { ref_arg(stream, "stream") });
        let (response, response_len) = (
            arg!(out_arg(response, "response")),
            arg!(out_arg(response_len, "response_len")),
        );
        match d.inner.stream_next_blocking(&s.inner) {
            Ok(Some(bytes)) => {
                let (ptr, len) = bytes_out(bytes);
                // SAFETY: both are non-NULL and writable by contract.
                unsafe {
                    *response = ptr;
                    *response_len = len;
                }
                wsd_status::WSD_OK
            }
            Ok(None) => fail_with(wsd_status::WSD_STREAM_END, STREAM_END),
            Err(e) => fail(e),
        }
    }
}

/// Starts reading the next response of `stream` and returns at once; the callback runs exactly
/// once with WSD_OK and the response, WSD_STREAM_END at the end of the stream, WSD_CANCELLED
/// after [`crate::wsd_pending_cancel`] (the stream goes on from the same point), or the error that
/// ended the stream. Read one response at a time. `pending` works as for `wsd_call_async`.
///
/// # Safety
/// As `wsd_stream_next` for `daemon` and `stream`; `callback` and `user_data` as for
/// `wsd_call_async`; `pending` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_stream_next_async(
    daemon: *const wsd_daemon,
    stream: *const wsd_stream,
    callback: wsd_callback,
    user_data: *mut c_void,
    pending: *mut *mut wsd_pending,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: NULL or live handles by contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: NULL or a live stream handle by contract.
        let s = arg!(unsafe { ref_arg(stream, "stream") });
        // SAFETY: `pending`, `callback` and `user_data` as the # Safety section requires.
        unsafe {
            start_async(callback, user_data, pending, |token, delivery| {
                d.inner.stream_next_with_callback(&s.inner, token, |result| match result {
                    Ok(Some(bytes)) => delivery.result(Ok(bytes)),
                    Ok(None) => delivery.status(wsd_status::WSD_STREAM_END, status_strings(wsd_status::WSD_STREAM_END, STREAM_END)),
                    Err(e) => delivery.result(Err(e)),
                })
            })
        }
    }
}

/// Frees a stream handle, ending the call. NULL is a no-op.
///
/// # Safety
/// `stream` is NULL or a handle from `wsd_stream_open` that has not been freed; it is not used
/// afterwards. A `wsd_stream_next_async` still pending is allowed: its callback still runs.
#[no_mangle]
pub unsafe extern "C" fn wsd_stream_free(stream: *mut wsd_stream) {
    if stream.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: created by Box::into_raw in wsd_stream_open and freed once by contract.
        drop(unsafe { Box::from_raw(stream) });
    }));
}
