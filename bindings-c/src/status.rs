//! The status codes of the C ABI and the one place where core errors become them.

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use wsd_core::{Code, Error};

/// Result of every fallible libwsd function. 0-16 are the gRPC status codes (the same numbers the
/// gRPC server answers with); 100 and up are library errors. Numbers are never reused.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum wsd_status {
    WSD_OK = 0,
    WSD_CANCELLED = 1,
    WSD_UNKNOWN = 2,
    WSD_INVALID_ARGUMENT = 3,
    WSD_DEADLINE_EXCEEDED = 4,
    WSD_NOT_FOUND = 5,
    WSD_ALREADY_EXISTS = 6,
    WSD_PERMISSION_DENIED = 7,
    WSD_RESOURCE_EXHAUSTED = 8,
    WSD_FAILED_PRECONDITION = 9,
    WSD_ABORTED = 10,
    WSD_OUT_OF_RANGE = 11,
    WSD_UNIMPLEMENTED = 12,
    WSD_INTERNAL = 13,
    WSD_UNAVAILABLE = 14,
    WSD_DATA_LOSS = 15,
    WSD_UNAUTHENTICATED = 16,
    /// A required pointer argument was NULL.
    WSD_NULL_ARGUMENT = 100,
    /// The library panicked; the call had no effect that can be relied on.
    WSD_PANIC = 101,
    /// A string argument was not valid UTF-8.
    WSD_INVALID_UTF8 = 102,
    /// Not a failure: the stream has no more responses (`wsd_stream_next`).
    WSD_STREAM_END = 103,
}

impl From<Code> for wsd_status {
    fn from(code: Code) -> wsd_status {
        use wsd_status::*;
        match code {
            Code::Ok => WSD_OK,
            Code::Cancelled => WSD_CANCELLED,
            Code::Unknown => WSD_UNKNOWN,
            Code::InvalidArgument => WSD_INVALID_ARGUMENT,
            Code::DeadlineExceeded => WSD_DEADLINE_EXCEEDED,
            Code::NotFound => WSD_NOT_FOUND,
            Code::AlreadyExists => WSD_ALREADY_EXISTS,
            Code::PermissionDenied => WSD_PERMISSION_DENIED,
            Code::ResourceExhausted => WSD_RESOURCE_EXHAUSTED,
            Code::FailedPrecondition => WSD_FAILED_PRECONDITION,
            Code::Aborted => WSD_ABORTED,
            Code::OutOfRange => WSD_OUT_OF_RANGE,
            Code::Unimplemented => WSD_UNIMPLEMENTED,
            Code::Internal => WSD_INTERNAL,
            Code::Unavailable => WSD_UNAVAILABLE,
            Code::DataLoss => WSD_DATA_LOSS,
            Code::Unauthenticated => WSD_UNAUTHENTICATED,
        }
    }
}

impl wsd_status {
    /// The statuses of the library itself, above the gRPC range.
    const LIBRARY: [wsd_status; 4] = [
        wsd_status::WSD_NULL_ARGUMENT,
        wsd_status::WSD_PANIC,
        wsd_status::WSD_INVALID_UTF8,
        wsd_status::WSD_STREAM_END,
    ];

    /// The name as the header spells it without the prefix, e.g. "NOT_FOUND". For the gRPC codes
    /// this is core's name of the code (a test holds them together).
    fn name(self) -> String {
        let debug = format!("{self:?}");
        debug.strip_prefix("WSD_").unwrap_or(&debug).to_string()
    }
}

/// The last failure of a libwsd call on this thread.
struct LastError {
    message: CString,
    reason: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<LastError>> = const { RefCell::new(None) };
}

/// A C copy of `s`; interior NULs (not expected in messages and reasons) are replaced.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

/// Records the calling thread's last error.
fn set_last_error(message: &str, reason: &str) {
    let error = LastError {
        message: c_string(message),
        reason: c_string(reason),
    };
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(error));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

/// Maps a core error to its status and records its message and reason.
pub(crate) fn fail(e: Error) -> wsd_status {
    set_last_error(&e.to_string(), e.reason());
    e.code().into()
}

/// A library error that has no core counterpart; its reason is the status name in lower case
/// (e.g. "null_argument").
pub(crate) fn fail_with(status: wsd_status, message: &str) -> wsd_status {
    set_last_error(message, &status.name().to_lowercase());
    status
}

/// The message and reason of a library status (as [`fail_with`] records them), for an
/// asynchronous callback.
pub(crate) fn status_strings(status: wsd_status, message: &str) -> (CString, CString) {
    (c_string(message), c_string(&status.name().to_lowercase()))
}

/// The message and reason of a failed call, for an asynchronous callback (which reports them as
/// arguments rather than through the thread's last error).
pub(crate) fn error_strings(e: &Error) -> (CString, CString) {
    (c_string(&e.to_string()), c_string(e.reason()))
}

/// Every status with its name, NUL-terminated for `wsd_status_str`; built once from core's codes
/// and the library's own statuses.
fn status_names() -> &'static [(i32, CString)] {
    static NAMES: OnceLock<Vec<(i32, CString)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        Code::ALL
            .into_iter()
            .map(wsd_status::from)
            .chain(wsd_status::LIBRARY)
            .map(|s| (s as i32, c_string(&s.name())))
            .collect()
    })
}

/// The name of a status, e.g. "NOT_FOUND"; a static string, never freed. Unknown numbers give
/// "UNKNOWN_STATUS".
#[no_mangle]
pub extern "C" fn wsd_status_str(status: i32) -> *const c_char {
    status_names()
        .iter()
        .find(|(n, _)| *n == status)
        .map_or(c"UNKNOWN_STATUS".as_ptr(), |(_, name)| name.as_ptr())
}

/// The message of the last failed libwsd call on this thread, or NULL when the last call
/// succeeded. Valid until the next libwsd call on this thread; never freed by the caller.
#[no_mangle]
pub extern "C" fn wsd_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| {
        e.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |e| e.message.as_ptr())
    })
}

/// The reason of the last failed libwsd call on this thread, or NULL when the last call
/// succeeded: a stable identifier of the failure to branch on, e.g. "workspace_not_found" or
/// "invalid_id" (the same as the `wsd-error-reason` metadata of the gRPC server), or for the
/// library's own statuses the status name in lower case ("null_argument", "panic",
/// "invalid_utf8"). Several reasons share a status (WSD_NOT_FOUND is "workspace_not_found" or
/// "snapshot_not_found"). Valid until the next libwsd call on this thread; never freed by the
/// caller.
#[no_mangle]
pub extern "C" fn wsd_last_error_reason() -> *const c_char {
    LAST_ERROR.with(|e| {
        e.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |e| e.reason.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn status_str(n: i32) -> &'static str {
        // SAFETY: wsd_status_str returns a static NUL-terminated string.
        unsafe { CStr::from_ptr(wsd_status_str(n)) }
            .to_str()
            .unwrap_or_default()
    }

    #[test]
    fn every_core_code_keeps_its_number_and_name() {
        for code in Code::ALL {
            let status = wsd_status::from(code);
            assert_eq!(status as i32, code.as_i32(), "{code:?}");
            // The header's spelling of the enum is core's name of the code.
            assert_eq!(status.name(), code.name(), "{code:?}");
            assert_eq!(status_str(code.as_i32()), code.name());
        }
        assert_eq!(wsd_status::from(Code::DataLoss) as i32, 15);
        assert_eq!(wsd_status::WSD_INVALID_UTF8 as i32, 102);
    }

    #[test]
    fn library_statuses_have_names_and_others_are_unknown() {
        assert_eq!(status_str(100), "NULL_ARGUMENT");
        assert_eq!(status_str(101), "PANIC");
        assert_eq!(status_str(102), "INVALID_UTF8");
        for n in [-1, 17, 99, 104, i32::MAX] {
            assert_eq!(status_str(n), "UNKNOWN_STATUS", "{n}");
        }
    }

    fn last(f: extern "C" fn() -> *const c_char) -> Option<String> {
        let p = f();
        // SAFETY: non-NULL results are NUL-terminated and live until the next call here.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    #[test]
    fn failures_record_message_and_reason_until_cleared() {
        let status = fail(Error::WorkspaceNotFound("ws1".into()));
        assert_eq!(status, wsd_status::WSD_NOT_FOUND);
        assert_eq!(
            last(wsd_last_error_reason).as_deref(),
            Some("workspace_not_found")
        );
        assert!(last(wsd_last_error_message).is_some_and(|m| m.contains("ws1")));
        fail_with(wsd_status::WSD_NULL_ARGUMENT, "x must not be NULL");
        assert_eq!(
            last(wsd_last_error_reason).as_deref(),
            Some("null_argument")
        );
        clear_last_error();
        assert_eq!(last(wsd_last_error_reason), None);
        assert_eq!(last(wsd_last_error_message), None);
    }
}
