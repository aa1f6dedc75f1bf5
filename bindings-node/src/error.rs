//! The one place where core results become JavaScript values. Calls resolve to an outcome object
//! (`code` 0 with the response, or the gRPC code, its name and the message) that the facade turns
//! into a value or a rejected Promise with an `Error` carrying `code` (name) and `grpcCode`
//! (number). Only construction throws directly.

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use wsd_core::Error;

/// The result of a native call.
#[napi(object)]
pub struct CallOutcome {
    /// gRPC status code: 0 on success.
    pub code: u32,
    /// Status name, e.g. "OK" or "NOT_FOUND".
    pub name: String,
    /// Error message; empty on success.
    pub message: String,
    /// Encoded protobuf response (`call`).
    pub response: Option<Buffer>,
    /// proto3 JSON response (`callJson`).
    pub json: Option<String>,
}

impl CallOutcome {
    pub fn bytes(result: wsd_core::Result<Vec<u8>>) -> CallOutcome {
        match result {
            Ok(bytes) => CallOutcome::ok(Some(bytes.into()), None),
            Err(e) => CallOutcome::err(e),
        }
    }

    pub fn json(result: wsd_core::Result<String>) -> CallOutcome {
        match result {
            Ok(json) => CallOutcome::ok(None, Some(json)),
            Err(e) => CallOutcome::err(e),
        }
    }

    pub fn done(result: wsd_core::Result<()>) -> CallOutcome {
        match result {
            Ok(()) => CallOutcome::ok(None, None),
            Err(e) => CallOutcome::err(e),
        }
    }

    fn ok(response: Option<Buffer>, json: Option<String>) -> CallOutcome {
        CallOutcome {
            code: 0,
            name: "OK".into(),
            message: String::new(),
            response,
            json,
        }
    }

    fn err(e: Error) -> CallOutcome {
        CallOutcome {
            code: e.code().as_i32() as u32,
            name: e.code().name().into(),
            message: e.to_string(),
            response: None,
            json: None,
        }
    }
}

/// For the constructor, which cannot resolve to an outcome: the message starts with the status
/// name and a colon, which the facade splits off again.
pub fn thrown(e: Error) -> napi::Error {
    napi::Error::from_reason(format!("{}: {}", e.code().name(), e))
}
