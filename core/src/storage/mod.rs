//! Backup storage: an abstraction over `object_store`, with the local filesystem as the embedded
//! default. Uploads stream the archive while it is produced (a producer thread writes into a bounded
//! channel, the async side feeds a multipart upload that becomes visible only when complete);
//! downloads hand a blocking reader to a consumer thread. At most `max_concurrent_uploads` uploads
//! run at once.

mod location;
mod pipe;

pub use location::{full_backup_key, log_key, snapshot_key, ObjectLocation};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::sync::Semaphore;

use crate::config::{BucketLayout, StorageBackend, StorageConfig};
use crate::error::{Error, Result};

/// How many parts of one upload may be in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

enum Backend {
    Local { root: PathBuf },
}

pub struct Storage {
    backend: Backend,
    config: StorageConfig,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    upload_slots: Arc<Semaphore>,
}

/// What an upload did.
#[derive(Debug, Clone, Copy)]
pub struct UploadStats {
    pub bytes: u64,
    pub duration: Duration,
}

impl Storage {
    /// The configured backup storage, or `None` when the daemon has none.
    pub fn from_config(config: &StorageConfig) -> Result<Option<Storage>> {
        let backend = match config.backend {
            StorageBackend::None => return Ok(None),
            StorageBackend::Local => {
                std::fs::create_dir_all(&config.local_path).map_err(|e| {
                    Error::InvalidArgument(format!(
                        "cannot create the local storage folder (storage.local_path): {}",
                        e.kind()
                    ))
                })?;
                Backend::Local {
                    root: config.local_path.clone(),
                }
            }
        };
        Ok(Some(Storage {
            backend,
            config: config.clone(),
            buckets: Mutex::new(HashMap::new()),
            upload_slots: Arc::new(Semaphore::new(config.max_concurrent_uploads)),
        }))
    }

    /// Bucket and key prefix for an owner, following the configured layout.
    fn owner_location(&self, owner: &str, key: String) -> ObjectLocation {
        match self.config.layout {
            BucketLayout::BucketPerOwner => ObjectLocation {
                bucket: self.config.bucket_template.replace("{owner}", owner),
                key,
            },
            BucketLayout::Shared => ObjectLocation {
                bucket: self.config.shared_bucket.clone(),
                key: format!("{owner}/{key}"),
            },
        }
    }

    pub fn full_backup_location(&self, owner: &str, meta_id: &str, ext: &str) -> ObjectLocation {
        self.owner_location(owner, full_backup_key(meta_id, ext))
    }

    pub fn snapshot_location(
        &self,
        owner: &str,
        meta_id: &str,
        unix_nanos: u128,
        ext: &str,
    ) -> ObjectLocation {
        self.owner_location(owner, snapshot_key(meta_id, unix_nanos, ext))
    }

    pub fn log_location(
        &self,
        owner: &str,
        meta_id: &str,
        instance: &str,
        task: &str,
    ) -> ObjectLocation {
        self.owner_location(owner, log_key(meta_id, instance, task))
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>> {
        if !location::is_valid_bucket(bucket) {
            return Err(Error::InvalidArgument(format!(
                "invalid bucket name {bucket:?}"
            )));
        }
        let mut buckets = self.buckets.lock().map_err(Error::internal)?;
        if let Some(store) = buckets.get(bucket) {
            return Ok(store.clone());
        }
        let store: Arc<dyn ObjectStore> = match &self.backend {
            Backend::Local { root } => {
                let dir = root.join(bucket);
                std::fs::create_dir_all(&dir).map_err(|e| {
                    Error::Storage(format!("cannot create bucket {bucket}: {}", e.kind()))
                })?;
                let fs = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| storage_error("open bucket", bucket, &e))?
                    .with_fsync(true)
                    .with_automatic_cleanup(false);
                Arc::new(fs)
            }
        };
        buckets.insert(bucket.to_string(), store.clone());
        Ok(store)
    }

    fn object_path(loc: &ObjectLocation) -> Result<ObjectPath> {
        ObjectPath::parse(&loc.key)
            .map_err(|_| Error::InvalidArgument(format!("invalid object name {:?}", loc.key)))
    }

    /// Metadata of an object, `None` when it does not exist.
    pub async fn head(&self, loc: &ObjectLocation) -> Result<Option<ObjectMeta>> {
        let store = self.bucket(&loc.bucket)?;
        match store.head(&Self::object_path(loc)?).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("look up", &loc.qualified(), &e)),
        }
    }

    pub async fn delete(&self, loc: &ObjectLocation) -> Result<()> {
        let store = self.bucket(&loc.bucket)?;
        match store.delete(&Self::object_path(loc)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error("delete", &loc.qualified(), &e)),
        }
    }

    /// Waits (bounded) for one of the daemon's upload slots.
    async fn upload_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let wait = Duration::from_secs(self.config.upload_wait_timeout_secs);
        let started = Instant::now();
        let permit = tokio::time::timeout(wait, self.upload_slots.clone().acquire_owned()).await;
        metrics::histogram!("wsd_upload_slot_wait_seconds").record(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(Error::ShuttingDown),
            Err(_) => {
                metrics::counter!("wsd_upload_slot_timeouts_total").increment(1);
                Err(Error::ResourceExhausted(format!(
                    "too many uploads in progress: no upload slot became free within {}s",
                    wait.as_secs()
                )))
            }
        }
    }

    /// Streams what `produce` writes into the object at `loc`. The object appears only when the
    /// upload is complete; on any failure nothing is visible and an existing object stays intact.
    /// `produce` runs on a blocking thread.
    pub async fn upload<T, F>(&self, loc: &ObjectLocation, produce: F) -> Result<(T, UploadStats)>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Write) -> std::io::Result<T> + Send + 'static,
    {
        let _slot = self.upload_slot().await?;
        let started = Instant::now();
        let store = self.bucket(&loc.bucket)?;
        let path = Self::object_path(loc)?;
        let what = loc.qualified();
        let upload_failed = |reason: String| Error::UploadFailed {
            what: what.clone(),
            reason,
        };

        let upload = store
            .put_multipart(&path)
            .await
            .map_err(|e| upload_failed(describe(&e)))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.config.part_size_bytes);

        let (pipe_writer, mut chunks) = pipe::channel(1 << 20, 4);
        let producer = tokio::task::spawn_blocking(move || {
            let mut pipe_writer = pipe_writer;
            let value = produce(&mut pipe_writer)?;
            pipe_writer.flush()?;
            Ok::<_, std::io::Error>((value, pipe_writer.written()))
        });

        let mut backend_error = None;
        while let Some(chunk) = chunks.recv().await {
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                backend_error = Some(e);
                break;
            }
            writer.put(chunk);
        }
        // Dropping the receiver makes a still-running producer fail with a broken pipe.
        drop(chunks);
        let produced = producer.await;

        let failure = match (&backend_error, produced) {
            (Some(e), _) => Err(upload_failed(describe(e))),
            (None, Err(join)) => Err(upload_failed(format!("the archive writer stopped: {join}"))),
            (None, Ok(Err(io))) => Err(upload_failed(format!(
                "cannot read the workspace content: {io}"
            ))),
            (None, Ok(Ok(done))) => Ok(done),
        };
        match failure {
            Ok((value, bytes)) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| upload_failed(describe(&e)))?;
                Ok((
                    value,
                    UploadStats {
                        bytes,
                        duration: started.elapsed(),
                    },
                ))
            }
            Err(err) => {
                if let Some(e) = backend_error {
                    tracing::warn!(object = %what, error = %e, "upload failed");
                }
                if let Err(e) = writer.abort().await {
                    tracing::warn!(object = %what, error = %e, "cannot abort a failed upload");
                }
                Err(err)
            }
        }
    }

    /// Stores a small object in one request.
    pub async fn put_bytes(&self, loc: &ObjectLocation, bytes: Vec<u8>) -> Result<()> {
        let _slot = self.upload_slot().await?;
        let store = self.bucket(&loc.bucket)?;
        store
            .put(&Self::object_path(loc)?, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| Error::UploadFailed {
                what: loc.qualified(),
                reason: describe(&e),
            })
    }

    /// Hands a blocking reader of the object at `loc` to `consume`, on a blocking thread.
    /// `Ok(None)` when the object does not exist.
    pub async fn download<T, F>(&self, loc: &ObjectLocation, consume: F) -> Result<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> T + Send + 'static,
    {
        let store = self.bucket(&loc.bucket)?;
        let got = match store.get(&Self::object_path(loc)?).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage_error("read", &loc.qualified(), &e)),
        };
        let joined = match got.payload {
            GetResultPayload::File(file, _) => {
                tokio::task::spawn_blocking(move || {
                    let mut file = file;
                    consume(&mut file)
                })
                .await
            }
            GetResultPayload::Stream(stream) => {
                let reader =
                    tokio_util::io::StreamReader::new(stream.map_err(std::io::Error::other));
                let mut bridge = tokio_util::io::SyncIoBridge::new_with_handle(
                    reader,
                    tokio::runtime::Handle::current(),
                );
                tokio::task::spawn_blocking(move || consume(&mut bridge)).await
            }
        };
        joined.map(Some).map_err(Error::internal)
    }
}

/// A caller-facing description of a backend error: the kind and, for I/O failures, the operating
/// system's reason, never a host path or credential (those stay in the daemon's log).
fn describe(e: &object_store::Error) -> String {
    let what = match e {
        object_store::Error::NotFound { .. } => "the object does not exist".to_string(),
        object_store::Error::PermissionDenied { .. } => {
            "permission denied by the storage".to_string()
        }
        object_store::Error::Unauthenticated { .. } => {
            "the storage refused the credentials".to_string()
        }
        object_store::Error::Precondition { .. } | object_store::Error::NotModified { .. } => {
            "the object changed during the operation".to_string()
        }
        object_store::Error::Generic { store, .. } => format!("the {store} storage backend failed"),
        _ => "the storage backend failed".to_string(),
    };
    match io_cause(e) {
        Some(kind) => format!("{what} ({kind})"),
        None => what,
    }
}

/// The kind of the first I/O error in the cause chain, e.g. "not a directory", "storage full".
fn io_cause(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = c.source();
    }
    None
}

fn storage_error(op: &str, what: &str, e: &object_store::Error) -> Error {
    tracing::warn!(object = %what, error = %e, "storage: cannot {op}");
    Error::Storage(format!("cannot {op} {what}: {}", describe(e)))
}

#[cfg(test)]
mod tests;
