//! wsd-core: every operation of the workspace daemon. No transport or FFI code lives here; the
//! gRPC server, the C ABI and the Node addon are thin adapters over [`Daemon`] and [`dispatch`].

// Kernel calls that need `unsafe` live in `sys` alone.
#![deny(unsafe_code)]

pub mod archive;
mod background;
pub mod call;
pub mod call_stream;
pub mod chunked;
pub mod config;
pub mod confine;
mod content;
mod daemon;
pub mod dispatch;
pub mod embedded;
pub mod error;
pub mod git;
pub mod grpc;
pub mod health;
pub mod initializer;
mod iws;
pub mod json;
mod quota;
pub mod retry;
mod runtime;
pub mod storage;
pub mod sync;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(test)]
mod testing;
pub mod url_text;
pub mod workspace;

pub use call::{CallContext, Caller};
pub use call_stream::CallStream;
pub use config::Config;
pub use content::export::{export_backup, Exported};
pub use daemon::Daemon;
pub use embedded::EmbeddedDaemon;
pub use error::{Code, Error, Result};
pub use wsd_proto as proto;

/// The version of the daemon library.
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}
