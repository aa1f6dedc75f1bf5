//! The gRPC surface's adapter, shared by the server binary's listeners and the per-workspace
//! sockets that core serves itself wherever it is hosted: protobuf bytes in and out of the
//! dispatch table, and core errors as gRPC statuses.

mod service;
mod status;

pub use service::DispatchService;
pub use status::to_status;
