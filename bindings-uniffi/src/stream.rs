//! WatchProgress in-process: a `ProgressStream` object whose `next()` answers each report (the
//! Python package makes it an async iterator), read from core's `CallStream` on the daemon's
//! threads.

use std::sync::Arc;

use wsd_core::{CallStream, EmbeddedDaemon};

use crate::typed::{decode, encode, ProgressRequest, ProgressResponse};
use crate::{context, start_on, Daemon, Started, WsdError};

const WATCH_PROGRESS: &str = "/wsdaemon.WorkspaceContentExt/WatchProgress";

/// The reports of a running (or the last) init, backup or snapshot, each change once, until the
/// operation is done (what WatchProgress streams over gRPC).
#[derive(uniffi::Object)]
pub struct ProgressStream {
    daemon: Arc<EmbeddedDaemon>,
    stream: Arc<CallStream>,
}

#[uniffi::export]
impl Daemon {
    /// Watches the progress of `request.id`'s operations: read the reports with
    /// `ProgressStream.next()` (or `async for` in Python). `timeout_ms` bounds the whole watch.
    #[uniffi::method(default(timeout_ms = 0))]
    pub fn watch_progress(
        &self,
        request: ProgressRequest,
        timeout_ms: u64,
    ) -> Result<Arc<ProgressStream>, WsdError> {
        let Some(daemon) = self.inner.lock().clone() else {
            return Err(wsd_core::Error::ShuttingDown.into());
        };
        let request = encode(WATCH_PROGRESS, request)?;
        let stream = daemon.open_stream(WATCH_PROGRESS, request, context(timeout_ms, None))?;
        Ok(Arc::new(ProgressStream { daemon, stream }))
    }
}

#[uniffi::export]
impl ProgressStream {
    /// The next report, or `None` once the stream has ended; an error ends the stream. A caller
    /// that stops waiting (a cancelled task) loses no report: the next `next()` answers it.
    pub async fn next(&self) -> Result<Option<ProgressResponse>, WsdError> {
        let stream = self.stream.clone();
        let started = start_on(&self.daemon, move |cancel| async move {
            tokio::select! {
                next = stream.next() => next,
                // Dropping `stream.next()` here keeps its place (CallStream::next is cancel-safe).
                _ = cancel.cancelled() => Err(wsd_core::Error::Cancelled),
            }
        })?;
        let bytes = match started {
            Started::Done(bytes) => bytes,
            Started::Pending(rest) => rest.wait().await?,
        };
        match bytes {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }
}
