//! The daemon's background work: tasks that outlive the call that started them (inits, uploads,
//! disposals, housekeeping) and the signal that shutdown has begun. Every service holds a clone.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{Error, Result};

#[derive(Clone, Default)]
pub struct Background {
    tasks: TaskTracker,
    closing: CancellationToken,
}

impl Background {
    /// Cancelled when shutdown begins: waits that run outside the daemon's tasks end on it.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Fails new work once shutdown has begun.
    pub fn check_open(&self) -> Result<()> {
        if self.closing.is_cancelled() {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Starts `work` as tracked background work whose result nobody waits for.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Starts `work` at once as tracked background work that a caller's cancellation does not
    /// stop, and returns a future of its result. Spawning happens here, not on first poll, so a
    /// caller that is already cancelled cannot leave registered work that never runs.
    pub fn detached<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let task = self.tasks.spawn(work);
        async move {
            task.await
                .map_err(|e| Error::Internal(format!("background work failed: {e}")))?
        }
    }

    /// Runs `pass` on a blocking thread now and then every `interval` until shutdown.
    pub fn every(
        &self,
        interval: Duration,
        what: &'static str,
        pass: impl Fn() -> std::io::Result<()> + Send + Sync + Clone + 'static,
    ) {
        let closing = self.closing.clone();
        self.tasks.spawn(async move {
            loop {
                let once = pass.clone();
                match tokio::task::spawn_blocking(once).await {
                    Ok(Err(e)) => tracing::warn!(error = %e, "{what} failed"),
                    Err(e) => tracing::error!(error = %e, "{what} panicked"),
                    Ok(Ok(())) => {}
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = closing.cancelled() => break,
                }
            }
        });
    }

    /// Refuses new work, lets in-flight work finish for up to `grace`, and stops background tasks.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.cancel();
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                in_flight = self.tasks.len(),
                "shutdown grace period over; abandoning in-flight work"
            );
        }
    }
}
