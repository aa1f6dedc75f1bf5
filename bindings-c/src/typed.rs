//! Typed functions for the simple calls, for C callers that want neither protobuf nor JSON.

use std::ffi::c_char;

use prost::Message;
use wsd_core::proto::wsdaemon::{
    BackupWorkspaceRequest, BackupWorkspaceResponse, DisposeWorkspaceRequest,
    IsWorkspaceExistsRequest, IsWorkspaceExistsResponse, TakeSnapshotRequest, TakeSnapshotResponse,
    WaitForInitRequest, WaitForInitResponse,
};
use wsd_core::{Error, Result};

use crate::boundary::{out_arg, ref_arg, str_arg};
use crate::daemon::wsd_daemon;
use crate::memory::string_out;
use crate::status::{fail, wsd_status};

const SERVICE: &str = "/wsdaemon.WorkspaceContentService/";

/// Calls `method` of the content service through core's dispatch table (so typed calls count in
/// the same metrics as every other surface), blocking the calling thread; the encoded response.
fn call(d: &wsd_daemon, method: &str, request: impl Message) -> Result<Vec<u8>> {
    d.inner
        .call_blocking(&format!("{SERVICE}{method}"), request.encode_to_vec(), None)
}

/// [`call`] with the response decoded.
fn call_typed<R: Message + Default>(
    d: &wsd_daemon,
    method: &str,
    request: impl Message,
) -> Result<R> {
    let bytes = call(d, method, request)?;
    R::decode(bytes.as_slice())
        .map_err(|e| Error::Internal(format!("cannot decode the {method} response: {e}")))
}

/// Writes `value` through a checked out-parameter and answers OK, or maps the error.
fn finish<T, U>(result: Result<T>, out: *mut U, convert: impl FnOnce(T) -> U) -> wsd_status {
    match result {
        Ok(v) => {
            // SAFETY: `out` was checked non-NULL and is writable by the caller's contract.
            unsafe { *out = convert(v) };
            wsd_status::WSD_OK
        }
        Err(e) => fail(e),
    }
}

/// IsWorkspaceExists: `*exists` receives whether the daemon knows workspace `id`.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `id` is NULL or a NUL-terminated string; `exists` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_is_workspace_exists(
    daemon: *const wsd_daemon,
    id: *const c_char,
    exists: *mut bool,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let out = arg!(out_arg(exists, "exists"));
        let r = call_typed::<IsWorkspaceExistsResponse>(d, "IsWorkspaceExists", IsWorkspaceExistsRequest { id });
        finish(r, out, |resp| resp.exists)
    }
}

/// WaitForInit: blocks until workspace `id` is initialized (OK) or its init failed.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `id` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wsd_wait_for_init(
    daemon: *const wsd_daemon,
    id: *const c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        match call_typed::<WaitForInitResponse>(d, "WaitForInit", WaitForInitRequest { id }) {
            Ok(_) => wsd_status::WSD_OK,
            Err(e) => fail(e),
        }
    }
}

/// TakeSnapshot: `*url` receives the snapshot's qualified name (free with `wsd_string_free`).
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `id` is NULL or a NUL-terminated string; `url` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_take_snapshot(
    daemon: *const wsd_daemon,
    id: *const c_char,
    return_immediately: bool,
    url: *mut *mut c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let out = arg!(out_arg(url, "url"));
        let req = TakeSnapshotRequest { id, return_immediately };
        let r = call_typed::<TakeSnapshotResponse>(d, "TakeSnapshot", req);
        finish(r, out, |resp| string_out(resp.url))
    }
}

/// BackupWorkspace: `*url` receives the backup's qualified name (free with `wsd_string_free`).
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `id` is NULL or a NUL-terminated string; `url` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_backup_workspace(
    daemon: *const wsd_daemon,
    id: *const c_char,
    url: *mut *mut c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let out = arg!(out_arg(url, "url"));
        let r = call_typed::<BackupWorkspaceResponse>(d, "BackupWorkspace", BackupWorkspaceRequest { id });
        finish(r, out, |resp| string_out(resp.url))
    }
}

/// DisposeWorkspace: `*response_json` receives the response in proto3 JSON (`{}` or
/// `{"gitStatus": {...}}`; free with `wsd_string_free`). `response_json` may be NULL when the
/// caller does not want it.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed);
/// `id` is NULL or a NUL-terminated string; `response_json` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_dispose_workspace(
    daemon: *const wsd_daemon,
    id: *const c_char,
    backup: bool,
    backup_logs: bool,
    response_json: *mut *mut c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        // SAFETY: the string argument is NULL or NUL-terminated for this call (# Safety section).
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let req = DisposeWorkspaceRequest { id, backup, backup_logs };
        let bytes = match call(d, "DisposeWorkspace", req) {
            Ok(bytes) => bytes,
            Err(e) => return fail(e),
        };
        if response_json.is_null() {
            return wsd_status::WSD_OK;
        }
        // The disposal happened; only its description is converted here.
        match wsd_core::json::response_to_json(&format!("{SERVICE}DisposeWorkspace"), &bytes) {
            Ok(json) => {
                // SAFETY: non-NULL (checked) and writable by contract.
                unsafe { *response_json = string_out(json) };
                wsd_status::WSD_OK
            }
            Err(e) => fail(e),
        }
    }
}
