//! The daemon handle.

use std::ffi::c_char;

use wsd_core::EmbeddedDaemon;

use crate::boundary::{out_arg, ref_arg, str_arg};
use crate::status::{fail, wsd_status};

/// An in-process workspace daemon with its own threads. Create with [`wsd_daemon_new`], release
/// with [`wsd_daemon_free`]. All functions taking it are safe to call from many threads at once.
pub struct wsd_daemon {
    pub(crate) inner: EmbeddedDaemon,
}

static VERSION: &[u8] = concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes();

/// The library version, e.g. "0.1.0" (compare with WSD_VERSION); a static string, never freed.
#[no_mangle]
pub extern "C" fn wsd_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// Starts a daemon. `config` is a TOML or JSON document with the schema of the server's config
/// file (README "Configuration"); NULL or "" means all defaults. On success `*out` receives the
/// handle.
///
/// # Safety
/// `config` is NULL or a NUL-terminated string; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn wsd_daemon_new(
    config: *const c_char,
    out: *mut *mut wsd_daemon,
) -> wsd_status {
    ffi_boundary! {
        let out = arg!(out_arg(out, "out"));
        let text = if config.is_null() {
            ""
        } else {
            // SAFETY: non-NULL, NUL-terminated by contract.
            arg!(unsafe { str_arg(config, "config") })
        };
        let config = match EmbeddedDaemon::parse_config(text) {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        match EmbeddedDaemon::start(config) {
            Ok(inner) => {
                // SAFETY: `out` is non-NULL and writable by contract; written only on success.
                unsafe { *out = Box::into_raw(Box::new(wsd_daemon { inner })) };
                wsd_status::WSD_OK
            }
            Err(e) => fail(e),
        }
    }
}

/// Stops accepting calls, lets in-flight work finish (up to `limits.shutdown_grace_secs`) and
/// stops the daemon's threads. Later calls answer WSD_UNAVAILABLE. Idempotent. Must not be called
/// from inside a libwsd callback.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed (it may be closed).
#[no_mangle]
pub unsafe extern "C" fn wsd_daemon_close(daemon: *const wsd_daemon) -> wsd_status {
    ffi_boundary! {
        // SAFETY: a live handle or NULL by contract.
        let d = arg!(unsafe { ref_arg(daemon, "daemon") });
        d.inner.close();
        wsd_status::WSD_OK
    }
}

/// Closes (see [`wsd_daemon_close`]) and frees a daemon. NULL is a no-op. The handle must not be
/// used afterwards, nor freed from inside a libwsd callback.
///
/// # Safety
/// `daemon` is NULL or a handle from `wsd_daemon_new` that has not been freed, and no other thread
/// uses it during or after this call.
#[no_mangle]
pub unsafe extern "C" fn wsd_daemon_free(daemon: *mut wsd_daemon) {
    if daemon.is_null() {
        return;
    }
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: created by Box::into_raw in wsd_daemon_new and freed once by contract.
        drop(unsafe { Box::from_raw(daemon) });
    }));
}
