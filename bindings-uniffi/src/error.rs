//! The one place where core errors become the foreign languages' exceptions: `WsdError.Status`
//! carries the gRPC status code name (`NOT_FOUND`), the message and the stable reason.

/// A failed call. In Python: `ws_daemon.WsdError.Status`, with `.code`, `.message`, `.reason`.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum WsdError {
    #[error("{code}: {message}")]
    Status {
        /// The status code's name, e.g. `NOT_FOUND`, `INVALID_ARGUMENT`.
        code: String,
        /// What went wrong, for a person.
        message: String,
        /// A stable identifier of the failure, e.g. `workspace_not_found`.
        reason: String,
    },
}

impl From<wsd_core::Error> for WsdError {
    fn from(e: wsd_core::Error) -> Self {
        WsdError::Status {
            code: e.code().name().to_string(),
            message: e.to_string(),
            reason: e.reason().to_string(),
        }
    }
}
