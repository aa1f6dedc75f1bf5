//! One multipart upload: cuts the incoming stream into parts of a fixed size, sends up to
//! `parallelism` parts at once, then completes the upload, or aborts it so no incomplete upload is
//! left behind on the store. An abort that fails (the store is down) is retried in the background.

use std::time::Duration;

use bytes::Bytes;
use object_store::{MultipartUpload, PutPayload, PutResult};
use tokio::task::JoinSet;

/// Abort attempts after a failure, with these pauses between them (the store's own retries run
/// inside each attempt).
const ABORT_PAUSES: [Duration; 4] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
];

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
    mut upload: Box<dyn MultipartUpload>,
    what: String,
) {
    let Some(runtime) = runtime else {
        metrics::counter!("wsd_upload_aborts_total", "outcome" => "abandoned").increment(1);
        tracing::warn!(object = %what, "an incomplete upload was left on the storage: no runtime to abort it");
        return;
    };
    runtime.spawn(async move {
        while in_flight.join_next().await.is_some() {}
        let mut last = None;
        for pause in std::iter::once(Duration::ZERO).chain(ABORT_PAUSES) {
            tokio::time::sleep(pause).await;
            tracing::debug!(object = %what, "aborting an incomplete upload");
            match upload.abort().await {
                Ok(()) => {
                    metrics::counter!("wsd_upload_aborts_total", "outcome" => "aborted").increment(1);
                    tracing::info!(object = %what, "aborted an incomplete upload");
                    return;
                }
                Err(e) => last = Some(e),
            }
        }
        metrics::counter!("wsd_upload_aborts_total", "outcome" => "abandoned").increment(1);
        if let Some(e) = last {
            tracing::error!(object = %what, error = %e, "gave up aborting an incomplete upload; the storage's lifecycle rules must remove it");
        }
    });
}

fn finished_error() -> object_store::Error {
    object_store::Error::Generic {
        store: "upload",
        source: "the upload was already completed or aborted".into(),
    }
}
