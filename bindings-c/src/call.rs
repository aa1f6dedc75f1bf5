//! The generic calls: any operation by method path, with protobuf bytes or proto3 JSON.

use std::ffi::c_char;

use crate::boundary::{bytes_arg, out_arg, ref_arg, str_arg};
use crate::daemon::wsd_daemon;
use crate::memory::{bytes_out, string_out};
use crate::status::{fail, wsd_status};

/// Calls the operation at `method` (a full gRPC path such as
/// "/wsdaemon.WorkspaceContentService/InitWorkspace") with an encoded protobuf request. On success
/// `*response`/`*response_len` receive the encoded response (NULL and 0 when it is empty), to be
/// freed with `wsd_bytes_free`.
/// Blocks the calling thread until the operation is done.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `method` is NULL or a NUL-terminated string; `request` is NULL or points to `request_len`
/// readable bytes; `response` and `response_len` are NULL or writable. None of them is modified by
/// another thread during the call.
#[no_mangle]
pub unsafe extern "C" fn wsd_call(
    daemon: *const wsd_daemon,
    method: *const c_char,
    request: *const u8,
    request_len: usize,
    response: *mut *mut u8,
    response_len: *mut usize,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY (all four): pointers are checked for NULL; validity is the caller's contract.
        // SAFETY: the daemon argument is NULL or a live handle, as the function's # Safety section requires.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let method = arg!(unsafe { str_arg(method, "method") });
        // SAFETY: the buffer is NULL with length 0 or that many readable bytes (# Safety section).
        let request = arg!(unsafe { bytes_arg(request, request_len, "request") });
        let (response, response_len) = (arg!(out_arg(response, "response")), arg!(out_arg(response_len, "response_len")));
        match d.inner.call_blocking(method, request.to_vec(), None) {
            Ok(bytes) => {
                let (ptr, len) = bytes_out(bytes);
                // SAFETY: both out-parameters are non-NULL and writable by contract.
                unsafe {
                    *response = ptr;
                    *response_len = len;
                }
                wsd_status::WSD_OK
            }
            Err(e) => fail(e),
        }
    }
}

/// Like [`wsd_call`] with the request and response in the proto3 JSON mapping (field names in
/// lowerCamelCase or as in the .proto files; enums by name). On success `*response_json` receives
/// a string to be freed with `wsd_string_free`.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `method` and `request_json` are NULL or NUL-terminated strings; `response_json` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_call_json(
    daemon: *const wsd_daemon,
    method: *const c_char,
    request_json: *const c_char,
    response_json: *mut *mut c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY (all three): pointers are checked for NULL; validity is the caller's contract.
        // SAFETY: the daemon argument is NULL or a live handle, as the function's # Safety section requires.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let method = arg!(unsafe { str_arg(method, "method") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let request = arg!(unsafe { str_arg(request_json, "request_json") });
        let out = arg!(out_arg(response_json, "response_json"));
        match d.inner.call_json_blocking(method, request.to_string()) {
            Ok(json) => {
                // SAFETY: non-NULL and writable by contract.
                unsafe { *out = string_out(json) };
                wsd_status::WSD_OK
            }
            Err(e) => fail(e),
        }
    }
}
