//! What a surface knows about one call: the caller's deadline and a way to cancel it. Operations
//! that wait (WaitForInit, and the caller's side of long operations) honour both; work that must not
//! be abandoned half-way (init, backups, disposal) runs detached and only the waiting stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::sys::process::Pidfd;

#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub deadline: Option<Instant>,
    pub cancel: Option<CancellationToken>,
    /// Who calls, when the call came over a workspace's own socket; `None` on every other surface.
    pub caller: Option<Caller>,
    /// The method called (e.g. `MountProc`), set by the dispatch: what rate limits and error
    /// messages name.
    pub method: &'static str,
}

/// A caller on a workspace's own socket: the workspace the socket belongs to, and the peer
/// process of the connection (SO_PEERPIDFD), held as it was when it connected.
#[derive(Debug, Clone)]
pub struct Caller {
    pub workspace: String,
    pub peer: Arc<Pidfd>,
}

impl CallContext {
    pub fn with_timeout(timeout: Duration) -> CallContext {
        CallContext {
            deadline: Some(Instant::now() + timeout),
            ..CallContext::default()
        }
    }

    /// Waits for `work`, or fails with CANCELLED / DEADLINE_EXCEEDED when the caller gives up first.
    pub async fn wait<T>(
        &self,
        what: &'static str,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let cancelled = async {
            match &self.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let deadline = async {
            match self.deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // Biased towards the work: a result that is ready wins over a cancellation that is too.
        tokio::select! {
            biased;
            result = work => result,
            _ = cancelled => Err(Error::Cancelled),
            _ = deadline => Err(Error::DeadlineExceeded(what)),
        }
    }
}
