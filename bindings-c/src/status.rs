//! The status codes of the C ABI and the one place where core errors become them.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

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

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Records `message` as the calling thread's last error.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "?")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(c));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

/// Maps a core error to its status and records its message.
pub(crate) fn fail(e: Error) -> wsd_status {
    set_last_error(&e.to_string());
    e.code().into()
}

/// A library error that has no core counterpart.
pub(crate) fn fail_with(status: wsd_status, message: &str) -> wsd_status {
    set_last_error(message);
    status
}

/// The name of a status, e.g. "NOT_FOUND"; a static string, never freed. Unknown numbers give
/// "UNKNOWN_STATUS".
#[no_mangle]
pub extern "C" fn wsd_status_str(status: i32) -> *const c_char {
    let s: &'static [u8] = match status {
        0 => b"OK\0",
        1 => b"CANCELLED\0",
        2 => b"UNKNOWN\0",
        3 => b"INVALID_ARGUMENT\0",
        4 => b"DEADLINE_EXCEEDED\0",
        5 => b"NOT_FOUND\0",
        6 => b"ALREADY_EXISTS\0",
        7 => b"PERMISSION_DENIED\0",
        8 => b"RESOURCE_EXHAUSTED\0",
        9 => b"FAILED_PRECONDITION\0",
        10 => b"ABORTED\0",
        11 => b"OUT_OF_RANGE\0",
        12 => b"UNIMPLEMENTED\0",
        13 => b"INTERNAL\0",
        14 => b"UNAVAILABLE\0",
        15 => b"DATA_LOSS\0",
        16 => b"UNAUTHENTICATED\0",
        100 => b"NULL_ARGUMENT\0",
        101 => b"PANIC\0",
        102 => b"INVALID_UTF8\0",
        _ => b"UNKNOWN_STATUS\0",
    };
    s.as_ptr().cast()
}

/// The message of the last failed libwsd call on this thread, or NULL when the last call
/// succeeded. Valid until the next libwsd call on this thread; never freed by the caller.
#[no_mangle]
pub extern "C" fn wsd_last_error_message() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |c| c.as_ptr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_keeps_its_number() {
        for n in 0..=16 {
            let name = unsafe { std::ffi::CStr::from_ptr(wsd_status_str(n)) };
            assert_ne!(name.to_bytes(), b"UNKNOWN_STATUS", "{n}");
        }
        for code in Code::ALL {
            assert_eq!(wsd_status::from(code) as i32, code.as_i32(), "{code:?}");
            // SAFETY: wsd_status_str returns a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(wsd_status_str(code.as_i32())) };
            assert_eq!(name.to_str().ok(), Some(code.name()));
        }
        assert_eq!(wsd_status::from(Code::DataLoss) as i32, 15);
        assert_eq!(wsd_status::WSD_INVALID_UTF8 as i32, 102);
    }
}
