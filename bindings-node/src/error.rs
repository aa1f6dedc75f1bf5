//! The one place where core results become JavaScript values. Calls, and starting a daemon,
//! resolve to an outcome object (`code` 0 with the response, or the gRPC code, its name, the
//! message and the reason) that the facade turns into a value or a rejected Promise with an
//! `Error` carrying `code` (name), `grpcCode` (number) and `reason`.

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
    /// Stable identifier of the failure, e.g. "workspace_not_found" (the `wsd-error-reason`
    /// metadata of the gRPC server); empty on success.
    pub reason: String,
    /// Encoded protobuf response (`call`).
    pub response: Option<Buffer>,
    /// proto3 JSON response (`callJson`, and a stream's `next`, where its absence means the
    /// stream has ended).
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

    /// A response of a stream, or the end of the stream (`json` absent).
    pub fn stream_item(result: wsd_core::Result<Option<String>>) -> CallOutcome {
        match result {
            Ok(json) => CallOutcome::ok(None, json),
            Err(e) => CallOutcome::err(e),
        }
    }

    pub fn end() -> CallOutcome {
        CallOutcome::ok(None, None)
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
            reason: String::new(),
            response,
            json,
        }
    }

    pub fn err(e: Error) -> CallOutcome {
        CallOutcome {
            code: e.code().as_i32() as u32,
            name: e.code().name().into(),
            message: e.to_string(),
            reason: e.reason().into(),
            response: None,
            json: None,
        }
    }
}

/// A gRPC status code.
#[napi(object)]
pub struct StatusCode {
    /// The canonical name, e.g. "NOT_FOUND".
    pub name: String,
    /// The wire number, e.g. 5.
    pub code: u32,
}

/// Every gRPC status code, in wire-number order: the facade's `Status` table.
#[napi]
pub fn status_codes() -> Vec<StatusCode> {
    wsd_core::Code::ALL
        .iter()
        .map(|c| StatusCode {
            name: c.name().into(),
            code: c.as_i32() as u32,
        })
        .collect()
}
