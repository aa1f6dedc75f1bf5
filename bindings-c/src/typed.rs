//! Typed functions for the simple calls, for C callers that want neither protobuf nor JSON.

use std::ffi::c_char;

use wsd_core::proto::wsdaemon::{
    BackupWorkspaceRequest, DisposeWorkspaceRequest, IsWorkspaceExistsRequest, TakeSnapshotRequest,
    WaitForInitRequest,
};
use wsd_core::{CallContext, Daemon, Result};

use crate::boundary::{out_arg, ref_arg, str_arg};
use crate::daemon::wsd_daemon;
use crate::memory::string_out;
use crate::status::{fail, wsd_status};

/// Runs a typed operation on the daemon's runtime, blocking the calling thread.
fn run<T: Send + 'static, F>(d: &wsd_daemon, op: impl FnOnce(Daemon) -> F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
{
    d.inner.block_on(op(d.inner.daemon().clone()))
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
#[no_mangle]
pub unsafe extern "C" fn wsd_is_workspace_exists(
    daemon: *const wsd_daemon,
    id: *const c_char,
    exists: *mut bool,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let out = arg!(out_arg(exists, "exists"));
        let r = run(d, |daemon| async move {
            daemon.is_workspace_exists(IsWorkspaceExistsRequest { id }, &CallContext::default()).await
        });
        finish(r, out, |resp| resp.exists)
    }
}

/// WaitForInit: blocks until workspace `id` is initialized (OK) or its init failed.
#[no_mangle]
pub unsafe extern "C" fn wsd_wait_for_init(
    daemon: *const wsd_daemon,
    id: *const c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let r = run(d, |daemon| async move {
            daemon.wait_for_init(WaitForInitRequest { id }, &CallContext::default()).await
        });
        match r {
            Ok(_) => wsd_status::WSD_OK,
            Err(e) => fail(e),
        }
    }
}

/// TakeSnapshot: `*url` receives the snapshot's qualified name (free with `wsd_string_free`).
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
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let out = arg!(out_arg(url, "url"));
        let r = run(d, move |daemon| async move {
            let req = TakeSnapshotRequest { id, return_immediately };
            daemon.take_snapshot(req, &CallContext::default()).await
        });
        finish(r, out, |resp| string_out(resp.url))
    }
}

/// BackupWorkspace: `*url` receives the backup's qualified name (free with `wsd_string_free`).
#[no_mangle]
pub unsafe extern "C" fn wsd_backup_workspace(
    daemon: *const wsd_daemon,
    id: *const c_char,
    url: *mut *mut c_char,
) -> wsd_status {
    ffi_boundary! {
        // SAFETY: pointers are checked for NULL; validity is the caller's contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let out = arg!(out_arg(url, "url"));
        let r = run(d, |daemon| async move {
            daemon.backup_workspace(BackupWorkspaceRequest { id }, &CallContext::default()).await
        });
        finish(r, out, |resp| string_out(resp.url))
    }
}

/// DisposeWorkspace: `*response_json` receives the response in proto3 JSON (`{}` or
/// `{"gitStatus": {...}}`; free with `wsd_string_free`). `response_json` may be NULL when the
/// caller does not want it.
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
        let id = arg!(unsafe { str_arg(id, "id") }).to_string();
        let r = run(d, move |daemon| async move {
            let req = DisposeWorkspaceRequest { id, backup, backup_logs };
            daemon.dispose_workspace(req, &CallContext::default()).await
        });
        let json = r.and_then(|resp| {
            use prost::Message;
            wsd_core::json::response_to_json(
                "/wsdaemon.WorkspaceContentService/DisposeWorkspace",
                &resp.encode_to_vec(),
            )
        });
        match json {
            Ok(json) if !response_json.is_null() => {
                // SAFETY: non-NULL (checked) and writable by contract.
                unsafe { *response_json = string_out(json) };
                wsd_status::WSD_OK
            }
            Ok(_) => wsd_status::WSD_OK,
            Err(e) => fail(e),
        }
    }
}
