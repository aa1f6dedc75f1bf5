//! The one error type of core. Every surface maps it in one place: `Error::code()` gives the gRPC
//! status code (also used as the C status and the JS `code`), `Error::reason()` a stable,
//! never-reused identifier of the variant.
//!
//! Messages are written for the caller: they say what to fix and never contain host paths or secrets.

use std::fmt;

/// gRPC status codes, with their wire numbers. Every surface uses these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Code {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in wire-number order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The canonical upper-case name, e.g. `NOT_FOUND`.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An instance id that is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid workspace id {0:?}: use 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit")]
    InvalidId(String),

    /// Any other request field that cannot be used as given.
    #[error("{0}")]
    InvalidArgument(String),

    /// The workspace instance is not known to this daemon.
    #[error("workspace {0} does not exist")]
    WorkspaceNotFound(String),

    /// InitWorkspace for an id that is already known (also while it is still initializing).
    #[error("workspace {0} exists already")]
    WorkspaceExists(String),

    /// The workspace is in a state in which the operation cannot run.
    #[error("workspace {id} is {state}: {operation} needs it {needed}")]
    WrongState {
        id: String,
        state: &'static str,
        operation: &'static str,
        needed: &'static str,
    },

    /// Backup storage is turned off for this workspace or not configured for the daemon.
    #[error("remote storage is disabled for workspace {0}: snapshots, backups and log uploads are not available")]
    StorageDisabled(String),

    /// An initializer failed; the half-made content was removed.
    #[error("cannot initialize workspace: {0}")]
    InitFailed(String),

    /// An explicitly requested snapshot does not exist.
    #[error("snapshot {0} does not exist")]
    SnapshotNotFound(String),

    /// A workspace (meta id) has no backup in storage, in either archive mode.
    #[error("workspace {0} has no backup")]
    BackupNotFound(String),

    /// Writing a backup or snapshot to storage failed; what was stored before is intact.
    #[error(
        "cannot upload {what}: {reason}; nothing partial was stored and earlier objects are intact"
    )]
    UploadFailed { what: String, reason: String },

    /// Stored backup data is missing or damaged: a pack, a chunk or a manifest.
    #[error("{0}")]
    DataLoss(String),

    /// The storage backend failed in a way that is not an upload.
    #[error("storage error: {0}")]
    Storage(String),

    /// The caller cancelled the call.
    #[error("the call was cancelled by the caller")]
    Cancelled,

    /// The caller's deadline passed.
    #[error("the deadline of the call passed before {0} finished")]
    DeadlineExceeded(&'static str),

    /// The operation exists in the API but this daemon does not provide it (yet).
    #[error("{0}")]
    Unimplemented(String),

    /// A request was well-formed protobuf for an unknown method.
    #[error("unknown method {0:?}: methods are full gRPC paths such as /wsdaemon.WorkspaceContentService/IsWorkspaceExists")]
    UnknownMethod(String),

    /// The request bytes are not a valid protobuf message of the method's request type.
    #[error("cannot decode the request of {method}: {reason}")]
    BadRequest { method: String, reason: String },

    /// The daemon is shutting down or was closed.
    #[error("the daemon is shutting down")]
    ShuttingDown,

    /// Too many operations of a kind are waiting.
    #[error("{0}")]
    ResourceExhausted(String),

    /// An in-workspace operation reached the daemon other than over the workspace's own socket,
    /// so there is no caller whose container it could act on.
    #[error(
        "{0} is served only on the workspace's own socket (<working_area>/<id>-daemon/daemon.sock)"
    )]
    NotOnWorkspaceSocket(&'static str),

    /// No container is attached to the workspace (AttachContainer), or it stopped.
    #[error("no container attached to workspace {0}")]
    NoContainer(String),

    /// The caller may not act on this workspace.
    #[error("{0}")]
    PermissionDenied(String),

    /// An operation of the rate-limit table that may run once per workspace ran already.
    #[error("{0} can be used only once per workspace")]
    OnlyOnce(&'static str),

    /// The caller exceeded the rate limit of an operation.
    #[error("too many requests: {0} is rate limited, try again later")]
    TooManyRequests(&'static str),

    /// The kernel refused an operation whose request was valid.
    #[error("{0}")]
    KernelRefused(String),

    /// Something failed inside the daemon; details are in the daemon's log.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The gRPC status code of this error. Stable per variant.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidId(_) | Error::InvalidArgument(_) | Error::BadRequest { .. } => {
                Code::InvalidArgument
            }
            Error::WorkspaceNotFound(_) | Error::SnapshotNotFound(_) | Error::BackupNotFound(_) => {
                Code::NotFound
            }
            Error::WorkspaceExists(_) => Code::AlreadyExists,
            Error::WrongState { .. } | Error::StorageDisabled(_) | Error::InitFailed(_) => {
                Code::FailedPrecondition
            }
            Error::UploadFailed { .. } | Error::DataLoss(_) => Code::DataLoss,
            Error::Storage(_) => Code::Unavailable,
            Error::Cancelled => Code::Cancelled,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unimplemented(_) | Error::UnknownMethod(_) => Code::Unimplemented,
            Error::ShuttingDown => Code::Unavailable,
            Error::ResourceExhausted(_) | Error::OnlyOnce(_) | Error::TooManyRequests(_) => {
                Code::ResourceExhausted
            }
            Error::NotOnWorkspaceSocket(_) | Error::NoContainer(_) | Error::KernelRefused(_) => {
                Code::FailedPrecondition
            }
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Internal(_) => Code::Internal,
        }
    }

    /// A stable identifier of the variant, for logs, metrics and callers that branch on it.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidId(_) => "invalid_id",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::WorkspaceNotFound(_) => "workspace_not_found",
            Error::WorkspaceExists(_) => "workspace_exists",
            Error::WrongState { .. } => "wrong_state",
            Error::StorageDisabled(_) => "storage_disabled",
            Error::InitFailed(_) => "init_failed",
            Error::SnapshotNotFound(_) => "snapshot_not_found",
            Error::BackupNotFound(_) => "backup_not_found",
            Error::UploadFailed { .. } => "upload_failed",
            Error::DataLoss(_) => "data_loss",
            Error::Storage(_) => "storage",
            Error::Cancelled => "cancelled",
            Error::DeadlineExceeded(_) => "deadline_exceeded",
            Error::Unimplemented(_) => "unimplemented",
            Error::UnknownMethod(_) => "unknown_method",
            Error::BadRequest { .. } => "bad_request",
            Error::ShuttingDown => "shutting_down",
            Error::ResourceExhausted(_) => "resource_exhausted",
            Error::NotOnWorkspaceSocket(_) => "not_on_workspace_socket",
            Error::NoContainer(_) => "no_container",
            Error::PermissionDenied(_) => "permission_denied",
            Error::OnlyOnce(_) => "only_once",
            Error::TooManyRequests(_) => "too_many_requests",
            Error::KernelRefused(_) => "kernel_refused",
            Error::Internal(_) => "internal",
        }
    }

    pub(crate) fn internal(what: impl fmt::Display) -> Error {
        Error::Internal(what.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_wire_numbers_and_names() {
        for (number, code) in Code::ALL.iter().enumerate() {
            assert_eq!(code.as_i32(), number as i32, "{code:?}");
        }
        let names: std::collections::HashSet<_> = Code::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Code::ALL.len());
        assert_eq!(Code::Ok.as_i32(), 0);
        assert_eq!(Code::DataLoss.as_i32(), 15);
        assert_eq!(Code::Unauthenticated.as_i32(), 16);
        assert_eq!(Code::FailedPrecondition.name(), "FAILED_PRECONDITION");
    }

    #[test]
    fn variants_map_to_the_specified_codes() {
        assert_eq!(
            Error::InvalidId("../x".into()).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            Error::WorkspaceExists("a".into()).code(),
            Code::AlreadyExists
        );
        assert_eq!(Error::SnapshotNotFound("s@b".into()).code(), Code::NotFound);
        assert_eq!(
            Error::UploadFailed {
                what: "backup".into(),
                reason: "x".into()
            }
            .code(),
            Code::DataLoss
        );
        assert_eq!(
            Error::StorageDisabled("a".into()).code(),
            Code::FailedPrecondition
        );
    }
}
