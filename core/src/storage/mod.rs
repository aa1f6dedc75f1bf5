//! Backup storage: an abstraction over `object_store`, with the local filesystem as the embedded
//! default and S3-compatible stores, GCS and Azure as remote backends. Uploads stream the archive
//! while it is produced (a producer thread writes into a bounded channel, the async side feeds a
//! multipart upload that becomes visible only when complete); downloads hand a blocking reader to a
//! consumer thread. At most `max_concurrent_uploads` uploads run at once.

mod backend;
mod create_bucket;
mod location;
mod multipart;
mod pipe;

pub use backend::{process_env, EnvLookup};

pub use location::{full_backup_key, log_key, snapshot_key, ObjectLocation};

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{GetResultPayload, ObjectMeta, ObjectStoreExt};
use tokio::sync::Semaphore;

use crate::config::{BucketLayout, StorageConfig};
use crate::error::{Error, Result};
use crate::sync::Mutex;
use backend::{Backend, BucketStores};
use create_bucket::Creation;
use multipart::PartSender;

/// Opened buckets are kept up to this many; beyond it the cache starts over.
const MAX_OPEN_BUCKETS: usize = 1024;

pub struct Storage {
    backend: Arc<Backend>,
    config: StorageConfig,
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    upload_slots: Arc<Semaphore>,
    /// Plain HTTP client for requests object_store does not offer (S3 CreateBucket).
    http: reqwest::Client,
    /// The store the readiness probe asks, opened at the first probe (see [`Storage::probe`]).
    probe_store: Mutex<Option<Arc<dyn object_store::ObjectStore>>>,
}

struct Bucket {
    name: String,
    stores: BucketStores,
    /// Set once the bucket is known to exist (created, found, or its creation refused for good).
    exists: std::sync::atomic::AtomicBool,
    creating: tokio::sync::Mutex<()>,
}

impl Bucket {
    /// A bucket removed behind the daemon's back is created again by the next upload.
    fn forget_existence_on(&self, e: &object_store::Error) {
        if matches!(e, object_store::Error::NotFound { .. }) && self.stores.creator.is_some() {
            self.exists
                .store(false, std::sync::atomic::Ordering::Release);
        }
    }
}

/// What an upload did.
#[derive(Debug, Clone, Copy)]
pub struct UploadStats {
    pub bytes: u64,
    pub duration: Duration,
}

impl Storage {
    /// The configured backup storage, or `None` when the daemon has none. Credentials missing from
    /// `config` are looked up with `env`.
    pub fn from_config(config: &StorageConfig, env: EnvLookup) -> Result<Option<Storage>> {
        let Some(backend) = Backend::from_config(config, env)? else {
            return Ok(None);
        };
        if backend.is_local() {
            std::fs::create_dir_all(&config.local_path).map_err(|e| {
                Error::InvalidArgument(format!(
                    "cannot create the local storage folder (storage.local_path): {}",
                    e.kind()
                ))
            })?;
        } else {
            // Catches unusable credentials (an unreadable key file, say) at start, not at the
            // first backup. Remote backends do no I/O here.
            backend.check(config)?;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.timeouts.connect_secs))
            .timeout(Duration::from_secs(config.timeouts.request_secs))
            .build()
            .map_err(Error::internal)?;
        Ok(Some(Storage {
            backend: Arc::new(backend),
            config: config.clone(),
            buckets: Mutex::new(HashMap::new()),
            upload_slots: Arc::new(Semaphore::new(config.max_concurrent_uploads)),
            http,
            probe_store: Mutex::new(None),
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

    async fn bucket(&self, bucket: &str) -> Result<Arc<Bucket>> {
        if !location::is_valid_bucket(bucket) {
            return Err(Error::InvalidArgument(format!(
                "invalid bucket name {bucket:?}"
            )));
        }
        if let Some(open) = self.buckets.lock().get(bucket) {
            return Ok(open.clone());
        }
        // Opening builds HTTP clients (and creates a folder for the local backend): on a blocking
        // thread and outside the lock, so neither an async thread nor other buckets wait for it.
        let (backend, config, name) = (
            self.backend.clone(),
            self.config.clone(),
            bucket.to_string(),
        );
        let stores = tokio::task::spawn_blocking(move || backend.open_bucket(&name, &config))
            .await
            .map_err(Error::internal)??;
        let mut buckets = self.buckets.lock();
        if let Some(opened_meanwhile) = buckets.get(bucket) {
            return Ok(opened_meanwhile.clone());
        }
        let open = Arc::new(Bucket {
            name: bucket.to_string(),
            stores,
            exists: std::sync::atomic::AtomicBool::new(self.backend.is_local()),
            creating: tokio::sync::Mutex::new(()),
        });
        if buckets.len() >= MAX_OPEN_BUCKETS {
            buckets.clear();
        }
        buckets.insert(bucket.to_string(), open.clone());
        Ok(open)
    }

    /// Before the first upload into a bucket: creates it when it is missing and the backend can,
    /// one attempt at a time per bucket. Failures are logged and left to the upload to report.
    async fn ensure_bucket(&self, bucket: &Bucket) {
        use std::sync::atomic::Ordering;
        if !self.config.create_buckets || bucket.exists.load(Ordering::Acquire) {
            return;
        }
        let Some(creator) = &bucket.stores.creator else {
            return;
        };
        let _one_at_a_time = bucket.creating.lock().await;
        if bucket.exists.load(Ordering::Acquire) {
            return;
        }
        match creator.create(&self.http).await {
            Ok(found) => {
                match &found {
                    Creation::Created => {
                        metrics::counter!("wsd_buckets_created_total").increment(1);
                        tracing::info!(bucket = %bucket.name, "created bucket");
                    }
                    Creation::Existed => {}
                    Creation::Refused(why) => tracing::warn!(
                        bucket = %bucket.name,
                        error = %why,
                        "the storage refused to create the bucket; uploads will show whether it is usable"
                    ),
                }
                bucket.exists.store(true, Ordering::Release);
            }
            Err(why) => {
                tracing::warn!(bucket = %bucket.name, error = %why, "cannot create bucket; will try again")
            }
        }
    }

    fn object_path(loc: &ObjectLocation) -> Result<ObjectPath> {
        ObjectPath::parse(&loc.key)
            .map_err(|_| Error::InvalidArgument(format!("invalid object name {:?}", loc.key)))
    }

    /// Whether the backend is a remote store (S3, GCS, Azure), not the local filesystem.
    pub(crate) fn is_remote(&self) -> bool {
        !self.backend.is_local()
    }

    /// Readiness: one lookup of an object that does not exist, which any store that answers
    /// answers with "not found" (or a refusal, which also proves it answers). Unlike the
    /// operations, the probe does not retry and each of its requests is bounded by `limit`, so a
    /// store that is down shows as down within `limit`, not after minutes of retries. `Err` is a
    /// caller-facing reason (no URL, host path or credential).
    pub(crate) async fn probe(&self, limit: Duration) -> std::result::Result<&'static str, String> {
        let store = self.probe_store(limit).await?;
        let path = ObjectPath::from("wsd-readiness-probe/absent");
        match tokio::time::timeout(limit, store.head(&path)).await {
            Err(_) => Err(format!(
                "no answer within health.check_timeout_ms ({} ms)",
                limit.as_millis()
            )),
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => Ok("reachable"),
            Ok(Err(
                object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. },
            )) => Ok("reachable; it refused the probe access (check the credentials)"),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "storage readiness probe failed");
                Err(describe(&e))
            }
        }
    }

    /// The probe's store: the backend's own setup for the bucket that the layout names first (the
    /// shared bucket, or the per-owner template filled with a name no owner has), without retries
    /// and with every timeout at most `limit`.
    async fn probe_store(
        &self,
        limit: Duration,
    ) -> std::result::Result<Arc<dyn object_store::ObjectStore>, String> {
        if let Some(store) = self.probe_store.lock().clone() {
            return Ok(store);
        }
        let bucket = match self.config.layout {
            BucketLayout::Shared => self.config.shared_bucket.clone(),
            BucketLayout::BucketPerOwner => self
                .config
                .bucket_template
                .replace("{owner}", "wsd-readiness-probe"),
        };
        let bucket = if location::is_valid_bucket(&bucket) {
            bucket
        } else {
            "wsd-readiness-probe".to_string()
        };
        let mut config = self.config.clone();
        let secs = limit.as_millis().div_ceil(1000).max(1) as u64;
        config.retry.max_retries = 0;
        config.retry.timeout_secs = secs;
        config.timeouts.connect_secs = config.timeouts.connect_secs.min(secs);
        config.timeouts.request_secs = config.timeouts.request_secs.min(secs);
        config.timeouts.read_secs = config.timeouts.read_secs.min(secs);
        // Building HTTP clients blocks: off the async threads.
        let backend = self.backend.clone();
        let stores = tokio::task::spawn_blocking(move || backend.open_bucket(&bucket, &config))
            .await
            .map_err(|_| "the storage client could not be set up".to_string())?
            .map_err(|e| e.to_string())?;
        let store = stores.requests;
        *self.probe_store.lock() = Some(store.clone());
        Ok(store)
    }

    /// Metadata of an object, `None` when it does not exist.
    pub async fn head(&self, loc: &ObjectLocation) -> Result<Option<ObjectMeta>> {
        let store = self.bucket(&loc.bucket).await?.stores.requests.clone();
        match store.head(&Self::object_path(loc)?).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("look up", &loc.qualified(), &e)),
        }
    }

    pub async fn delete(&self, loc: &ObjectLocation) -> Result<()> {
        let store = self.bucket(&loc.bucket).await?.stores.requests.clone();
        match store.delete(&Self::object_path(loc)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error("delete", &loc.qualified(), &e)),
        }
    }

    /// Waits (bounded) for one of the daemon's upload slots; the wait is measured, and the slot
    /// counts as an upload in flight until dropped.
    async fn upload_slot(&self) -> Result<UploadSlot> {
        let wait = Duration::from_secs(self.config.upload_wait_timeout_secs);
        let started = Instant::now();
        let permit = tokio::time::timeout(wait, self.upload_slots.clone().acquire_owned()).await;
        metrics::histogram!("wsd_upload_slot_wait_seconds").record(started.elapsed().as_secs_f64());
        match permit {
            Ok(Ok(permit)) => {
                metrics::gauge!("wsd_uploads_in_flight").increment(1.0);
                Ok(UploadSlot { _permit: permit })
            }
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
    /// upload is complete; on any failure nothing is visible, an existing object stays intact and
    /// the incomplete upload is aborted. `produce` runs on a blocking thread.
    pub async fn upload<T, F>(&self, loc: &ObjectLocation, produce: F) -> Result<(T, UploadStats)>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Write) -> std::io::Result<T> + Send + 'static,
    {
        let _slot = self.upload_slot().await?;
        let started = Instant::now();
        let what = loc.qualified();
        let limit = match self.config.timeouts.upload_secs {
            0 => Duration::MAX,
            secs => Duration::from_secs(secs),
        };
        let outcome = match tokio::time::timeout(limit, self.upload_unbounded(loc, produce)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Error::UploadFailed {
                what: what.clone(),
                reason: format!(
                    "the upload did not finish within storage.timeouts.upload_secs ({}s)",
                    limit.as_secs()
                ),
            }),
        };
        let label = if outcome.is_ok() { "ok" } else { "failed" };
        metrics::counter!("wsd_uploads_total", "outcome" => label).increment(1);
        let (value, bytes) = outcome?;
        metrics::counter!("wsd_upload_bytes_total").increment(bytes);
        Ok((
            value,
            UploadStats {
                bytes,
                duration: started.elapsed(),
            },
        ))
    }

    async fn upload_unbounded<T, F>(&self, loc: &ObjectLocation, produce: F) -> Result<(T, u64)>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Write) -> std::io::Result<T> + Send + 'static,
    {
        let bucket = self.bucket(&loc.bucket).await?;
        self.ensure_bucket(&bucket).await;
        let path = Self::object_path(loc)?;
        let what = loc.qualified();
        let upload_failed = |reason: String| Error::UploadFailed {
            what: what.clone(),
            reason,
        };

        let upload = match bucket.stores.requests.put_multipart(&path).await {
            Ok(upload) => upload,
            Err(e) => {
                bucket.forget_existence_on(&e);
                return Err(upload_failed(describe_logged(&e, &what)));
            }
        };
        let mut parts = PartSender::new(
            upload,
            self.config.part_size_bytes,
            self.config.upload_parallelism,
            what.clone(),
        );

        let (pipe_writer, mut chunks) = pipe::channel(1 << 20, 4);
        let producer = tokio::task::spawn_blocking(move || {
            let mut pipe_writer = pipe_writer;
            let value = produce(&mut pipe_writer)?;
            pipe_writer.flush()?;
            Ok::<_, std::io::Error>((value, pipe_writer.written()))
        });

        let mut backend_error = None;
        while let Some(chunk) = chunks.recv().await {
            if let Err(e) = parts.write(chunk).await {
                backend_error = Some(e);
                break;
            }
        }
        // Dropping the receiver makes a still-running producer fail with a broken pipe.
        drop(chunks);
        let produced = producer.await;

        let outcome = match (backend_error, produced) {
            (Some(e), _) => {
                // Azure sends nothing before the first part: a missing container shows here.
                bucket.forget_existence_on(&e);
                Err(upload_failed(describe_logged(&e, &what)))
            }
            (None, Err(join)) => Err(upload_failed(format!("the archive writer stopped: {join}"))),
            (None, Ok(Err(io))) => Err(upload_failed(format!(
                "cannot read the workspace content: {io}"
            ))),
            (None, Ok(Ok(done))) => match parts.finish().await {
                Ok(_) => Ok(done),
                Err(e) => {
                    bucket.forget_existence_on(&e);
                    Err(upload_failed(describe_logged(&e, &what)))
                }
            },
        };
        if outcome.is_err() {
            parts.abort();
        }
        outcome
    }

    /// Stores a small object in one request.
    pub async fn put_bytes(&self, loc: &ObjectLocation, bytes: Vec<u8>) -> Result<()> {
        let _slot = self.upload_slot().await?;
        let bucket = self.bucket(&loc.bucket).await?;
        self.ensure_bucket(&bucket).await;
        let what = loc.qualified();
        match bucket
            .stores
            .requests
            .put(&Self::object_path(loc)?, bytes.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                bucket.forget_existence_on(&e);
                Err(Error::UploadFailed {
                    reason: describe_logged(&e, &what),
                    what,
                })
            }
        }
    }

    /// An object of `owner` at `key` (relative to the owner's place in the configured layout).
    pub fn owner_object(&self, owner: &str, key: String) -> ObjectLocation {
        self.owner_location(owner, key)
    }

    /// Stores a small object only if no object is at `loc` yet. For content-named objects: an
    /// object already there holds the same bytes, so that answers `Ok(false)`. Stores that cannot
    /// put conditionally get a plain put, which for such objects changes nothing.
    pub async fn put_new(&self, loc: &ObjectLocation, bytes: bytes::Bytes) -> Result<bool> {
        let _slot = self.upload_slot().await?;
        let bucket = self.bucket(&loc.bucket).await?;
        self.ensure_bucket(&bucket).await;
        let path = Self::object_path(loc)?;
        let store = bucket.stores.requests.clone();
        let create = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        let outcome = match store.put_opts(&path, bytes.clone().into(), create).await {
            Err(object_store::Error::NotImplemented { .. }) => {
                store.put(&path, bytes.into()).await.map(|_| true)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            other => other.map(|_| true),
        };
        outcome.map_err(|e| {
            bucket.forget_existence_on(&e);
            let what = loc.qualified();
            Error::UploadFailed {
                reason: describe_logged(&e, &what),
                what,
            }
        })
    }

    /// The whole object at `loc` in memory (for small objects), `None` when it does not exist.
    pub async fn get_bytes(&self, loc: &ObjectLocation) -> Result<Option<bytes::Bytes>> {
        let store = self.bucket(&loc.bucket).await?.stores.downloads.clone();
        let got = match store.get(&Self::object_path(loc)?).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(storage_error("read", &loc.qualified(), &e)),
        };
        match got.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) => Err(storage_error("read", &loc.qualified(), &e)),
        }
    }

    /// Bytes `range` of the object at `loc`; `None` when the object does not exist. A range the
    /// object does not hold in full is an error.
    pub async fn get_range(
        &self,
        loc: &ObjectLocation,
        range: std::ops::Range<u64>,
    ) -> Result<Option<bytes::Bytes>> {
        let store = self.bucket(&loc.bucket).await?.stores.downloads.clone();
        let want = range.end - range.start;
        match store.get_range(&Self::object_path(loc)?, range).await {
            Ok(bytes) if bytes.len() as u64 == want => Ok(Some(bytes)),
            Ok(bytes) => Err(Error::Storage(format!(
                "cannot read {}: {} bytes came back of the {want} asked for",
                loc.qualified(),
                bytes.len()
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("read", &loc.qualified(), &e)),
        }
    }

    /// Every object in `bucket` whose key starts with `prefix` (a folder: ends with `/`).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let store = self.bucket(bucket).await?.stores.requests.clone();
        let what = format!("{prefix}@{bucket}");
        let prefix = ObjectPath::parse(prefix.trim_end_matches('/'))
            .map_err(|_| Error::InvalidArgument(format!("invalid object prefix {prefix:?}")))?;
        match store.list(Some(&prefix)).try_collect().await {
            Ok(found) => Ok(found),
            // A bucket that does not exist (yet) holds nothing.
            Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
            Err(e) if s3_error_code(&e.to_string()) == Some("NoSuchBucket") => Ok(Vec::new()),
            Err(e) => Err(storage_error("list", &what, &e)),
        }
    }

    /// Hands a blocking reader of the object at `loc` to `consume`, on a blocking thread.
    /// `Ok(None)` when the object does not exist.
    pub async fn download<T, F>(&self, loc: &ObjectLocation, consume: F) -> Result<Option<T>>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> T + Send + 'static,
    {
        let store = self.bucket(&loc.bucket).await?.stores.downloads.clone();
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
                // The consumer's errors reach API callers: they carry the caller-facing
                // description, not object_store's text with its URL.
                let what = loc.qualified();
                let stream = stream.map_err(move |e| {
                    std::io::Error::other(format!(
                        "reading from the storage failed: {}",
                        describe_logged(&e, &what)
                    ))
                });
                let reader = tokio_util::io::StreamReader::new(stream);
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

/// Holds one of the daemon's upload slots.
struct UploadSlot {
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        metrics::gauge!("wsd_uploads_in_flight").decrement(1.0);
    }
}

/// The error code of an S3 error document (`<Code>NoSuchBucket</Code>`), if there is one.
fn s3_error_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    code.bytes()
        .all(|b| b.is_ascii_alphanumeric())
        .then_some(code)
}

/// [`describe`], after logging the full error (URL and all) for the operator.
fn describe_logged(e: &object_store::Error, what: &str) -> String {
    tracing::warn!(object = %what, error = %e, "storage request failed");
    describe(e)
}

/// A caller-facing description of a backend error: the kind, the store's error code or the
/// transport failure, and how many retries were made; never a URL, host path or credential (those
/// stay in the daemon's log).
fn describe(e: &object_store::Error) -> String {
    let text = e.to_string();
    let what = match e {
        object_store::Error::NotFound { .. } if s3_error_code(&text) == Some("NoSuchBucket") => {
            "the bucket does not exist".to_string()
        }
        object_store::Error::NotFound { .. } => "the object does not exist".to_string(),
        object_store::Error::PermissionDenied { .. } => {
            "the storage refused access: wrong credentials or missing permissions".to_string()
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
    let mut details = Vec::new();
    if let Some(code) = s3_error_code(&text) {
        details.push(code.to_string());
    } else if let Some(http) = cause::<object_store::client::HttpError>(e) {
        use object_store::client::HttpErrorKind as Kind;
        match http.kind() {
            Kind::Connect => details.push("cannot connect".to_string()),
            Kind::Timeout => details.push("timed out".to_string()),
            Kind::Interrupted => details.push("connection lost".to_string()),
            _ => {}
        }
    }
    if let Some(kind) = cause::<std::io::Error>(e).map(|io| io.kind()) {
        if kind != std::io::ErrorKind::Other {
            details.push(kind.to_string());
        }
    }
    if let Some(retries) = retries_of(&text) {
        details.push(format!("gave up after {retries} retries"));
    }
    if details.is_empty() {
        what
    } else {
        format!("{what} ({})", details.join(", "))
    }
}

/// The number of retries object_store reports in its error text ("after 3 retries").
fn retries_of(text: &str) -> Option<usize> {
    let start = text.find(", after ")? + ", after ".len();
    let digits = text[start..].split(' ').next()?;
    digits.parse().ok()
}

/// The first error of type `E` in the cause chain.
fn cause<'a, E: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(found) = c.downcast_ref::<E>() {
            return Some(found);
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
