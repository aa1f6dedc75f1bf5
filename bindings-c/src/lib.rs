//! libwsd: the workspace daemon in-process for C (and Go through cgo).
//!
//! Conventions (see README "C and Go"): every fallible function returns a [`wsd_status`]; outputs go
//! through out-parameters written only on success; strings are NUL-terminated UTF-8; bytes and
//! strings handed out are freed with [`wsd_bytes_free`] / [`wsd_string_free`]; `*_free(NULL)` is a
//! no-op; [`wsd_last_error_message`] and [`wsd_last_error_reason`] add detail to the last failure on
//! the calling thread. Each exported `unsafe` function says in its `# Safety` section what the
//! caller must guarantee (the same text is in the header); NULL pointers are always detected.
//!
//! Every exported function is a thin adapter over `wsd_core`: the operations, the dispatch table
//! and the JSON conversion all live there.

#![allow(non_camel_case_types)]

#[macro_use]
mod boundary;
mod async_call;
mod call;
mod daemon;
mod memory;
mod status;
mod stream;
mod typed;

pub use async_call::{
    wsd_call_async, wsd_callback, wsd_pending, wsd_pending_cancel, wsd_pending_free,
};
pub use call::{wsd_call, wsd_call_json};
pub use daemon::{wsd_daemon, wsd_daemon_close, wsd_daemon_free, wsd_daemon_new, wsd_version};
pub use memory::{wsd_bytes_free, wsd_string_free};
pub use status::{wsd_last_error_message, wsd_last_error_reason, wsd_status, wsd_status_str};
pub use stream::{
    wsd_stream, wsd_stream_free, wsd_stream_next, wsd_stream_next_async, wsd_stream_open,
};
pub use typed::{
    wsd_backup_workspace, wsd_dispose_workspace, wsd_is_workspace_exists, wsd_take_snapshot,
    wsd_wait_for_init,
};
