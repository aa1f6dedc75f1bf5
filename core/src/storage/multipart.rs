//! One multipart upload: cuts the incoming stream into parts of a fixed size, sends up to
//! `parallelism` parts at once, then completes the upload, or aborts it so no incomplete upload is
//! left behind on the store. An abort that fails (the store is down) is retried in the background.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::{MultipartUpload, PutPayload, PutResult};
use tokio::task::JoinSet;

use crate::retry::{self, Failure};

/// Abort attempts after a failure: at once, then after pauses of about 5 s, 25 s, 125 s and 600 s
/// (about 12 minutes in all). The store's own retries run inside each attempt; every failure of
/// an abort is worth another try.
const ABORT_RETRY: retry::Policy = retry::Policy {
    attempts: 5,
    initial_backoff: Duration::from_secs(5),
    max_backoff: Duration::from_secs(600),
    multiplier: 5,
    jitter: 0.2,
};

pub(super) struct PartSender {
    upload: Option<Box<dyn MultipartUpload>>,
    /// Where the abort of an unfinished upload runs, also when the sender is dropped elsewhere.
    runtime: Option<tokio::runtime::Handle>,
    in_flight: JoinSet<object_store::Result<()>>,
    pending: Vec<Bytes>,
    pending_len: usize,
    part_size: usize,
    parallelism: usize,
    what: String,
}

impl PartSender {
    pub fn new(
        upload: Box<dyn MultipartUpload>,
        part_size: usize,
        parallelism: usize,
        what: String,
    ) -> PartSender {
        PartSender {
            upload: Some(upload),
            runtime: tokio::runtime::Handle::try_current().ok(),
            in_flight: JoinSet::new(),
            pending: Vec::new(),
            pending_len: 0,
            part_size,
            parallelism,
            what,
        }
    }

    /// Takes the next bytes of the object; sends a part whenever `part_size` bytes are buffered,
    /// waiting while `parallelism` parts are already in flight.
    pub async fn write(&mut self, mut chunk: Bytes) -> object_store::Result<()> {
        while self.pending_len + chunk.len() >= self.part_size {
            let head = chunk.split_to(self.part_size - self.pending_len);
            self.pending.push(head);
            self.pending_len = self.part_size;
            self.send_pending().await?;
        }
        if !chunk.is_empty() {
            self.pending_len += chunk.len();
            self.pending.push(chunk);
        }
        Ok(())
    }

    async fn send_pending(&mut self) -> object_store::Result<()> {
        self.wait_for_in_flight(self.parallelism - 1).await?;
        let payload: PutPayload = self.pending.drain(..).collect();
        self.pending_len = 0;
        let Some(upload) = self.upload.as_mut() else {
            return Err(finished_error());
        };
        self.in_flight.spawn(upload.put_part(payload));
        Ok(())
    }

    async fn wait_for_in_flight(&mut self, at_most: usize) -> object_store::Result<()> {
        while self.in_flight.len() > at_most {
            match self.in_flight.join_next().await {
                Some(Ok(result)) => result?,
                Some(Err(join)) => return Err(object_store::Error::JoinError { source: join }),
                None => break,
            }
        }
        Ok(())
    }

    /// Sends what is left and completes the upload: only now does the object become visible.
    pub async fn finish(&mut self) -> object_store::Result<PutResult> {
        if self.pending_len > 0 {
            self.send_pending().await?;
        }
        self.wait_for_in_flight(0).await?;
        let Some(upload) = self.upload.as_mut() else {
            return Err(finished_error());
        };
        let done = upload.complete().await?;
        self.upload = None;
        Ok(done)
    }

    /// Stops sending parts and aborts the upload in the background, so the caller learns of the
    /// failure at once. While the store cannot be reached the abort is retried for a while; the
    /// store's lifecycle rules are the last resort.
    pub fn abort(&mut self) {
        self.pending.clear();
        if let Some(upload) = self.upload.take() {
            // Parts already on the wire could land after an abort and leave the upload behind:
            // they finish (each bounded by the request timeout and retry budget) first.
            let in_flight = std::mem::take(&mut self.in_flight);
            abort_in_background(self.runtime.as_ref(), in_flight, upload, self.what.clone());
        }
    }
}

impl Drop for PartSender {
    /// An upload dropped half-way (its task was cancelled) is aborted, not left on the store.
    fn drop(&mut self) {
        self.abort();
    }
}

fn abort_in_background(
    runtime: Option<&tokio::runtime::Handle>,
    mut in_flight: JoinSet<object_store::Result<()>>,
    upload: Box<dyn MultipartUpload>,
    what: String,
) {
    let Some(runtime) = runtime else {
        metrics::counter!("wsd_upload_aborts_total", "outcome" => "abandoned").increment(1);
        tracing::warn!(object = %what, "an incomplete upload was left on the storage: no runtime to abort it");
        return;
    };
    runtime.spawn(async move {
        while in_flight.join_next().await.is_some() {}
        let upload = Arc::new(tokio::sync::Mutex::new(upload));
        let aborted = retry::run(
            &ABORT_RETRY,
            |_| {
                tracing::debug!(object = %what, "aborting an incomplete upload");
                let upload = upload.clone();
                async move {
                    let aborted = upload.lock().await.abort().await;
                    aborted.map_err(|e| Failure::<Infallible>::Transient(e.to_string()))
                }
            },
            |_, _| {},
        )
        .await;
        match aborted {
            Ok(()) => {
                metrics::counter!("wsd_upload_aborts_total", "outcome" => "aborted").increment(1);
                tracing::info!(object = %what, "aborted an incomplete upload");
            }
            Err(Failure::Transient(last)) => {
                metrics::counter!("wsd_upload_aborts_total", "outcome" => "abandoned").increment(1);
                tracing::error!(object = %what, error = %last, "gave up aborting an incomplete upload; the storage's lifecycle rules must remove it");
            }
            Err(Failure::Final(never)) => match never {},
        }
    });
}

fn finished_error() -> object_store::Error {
    object_store::Error::Generic {
        store: "upload",
        source: "the upload was already completed or aborted".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Mutex;
    use tokio::time::Instant;

    /// An upload whose abort fails `failures` times before it succeeds; it records when each abort
    /// was tried.
    #[derive(Debug, Clone)]
    struct FlakyAbort {
        failures: usize,
        started: Instant,
        tries: Arc<Mutex<Vec<Duration>>>,
    }

    impl FlakyAbort {
        fn tries(&self) -> Vec<u64> {
            let tries = self.tries.lock();
            tries.iter().map(Duration::as_secs).collect()
        }
    }

    #[async_trait::async_trait]
    impl MultipartUpload for FlakyAbort {
        fn put_part(&mut self, _: PutPayload) -> object_store::UploadPart {
            Box::pin(async { Ok(()) })
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            Err(finished_error())
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            let mut tries = self.tries.lock();
            tries.push(self.started.elapsed());
            if tries.len() > self.failures {
                Ok(())
            } else {
                Err(object_store::Error::Generic {
                    store: "test",
                    source: "the store is down".into(),
                })
            }
        }
    }

    fn abort_with_failures(failures: usize) -> FlakyAbort {
        let upload = FlakyAbort {
            failures,
            started: Instant::now(),
            tries: Arc::default(),
        };
        let mut sender = PartSender::new(Box::new(upload.clone()), 10, 2, "t".into());
        sender.abort();
        upload
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_abort_is_retried_after_growing_pauses_until_it_succeeds() {
        let upload = abort_with_failures(2);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let tries = upload.tries();
        assert_eq!(tries.len(), 3, "{tries:?}");
        // At once, then after about 5 s and 25 s (jitter takes off up to a fifth).
        assert_eq!(tries[0], 0);
        assert!((4..=5).contains(&(tries[1] - tries[0])), "{tries:?}");
        assert!((20..=25).contains(&(tries[2] - tries[1])), "{tries:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_abort_that_keeps_failing_is_given_up_after_five_attempts() {
        let upload = abort_with_failures(usize::MAX);
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        let tries = upload.tries();
        assert_eq!(tries.len(), 5, "{tries:?}");
        let last = tries[4];
        assert!(
            (604..=755).contains(&last),
            "about 12 minutes in all: {tries:?}"
        );
    }
}
