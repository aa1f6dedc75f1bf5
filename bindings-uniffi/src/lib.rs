//! wsd-uniffi: the workspace daemon in-process for the languages uniffi generates bindings for
//! (Python is shipped: `pip install ./bindings-uniffi`, `import ws_daemon`; Kotlin, Swift and Ruby
//! sources generate from the same library). A thin adapter over core, like the other surfaces:
//! a `Daemon` object with an async method per RPC (records generated from the contract's
//! descriptors, see `build.rs`), a generic call with protobuf bytes or proto3 JSON through the
//! shared dispatch, and one error type.

mod error;
mod stream;
mod typed;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::{CancellationToken, DropGuard};
use wsd_core::sync::Mutex;
use wsd_core::{CallContext, EmbeddedDaemon};

pub use error::WsdError;
pub use stream::ProgressStream;
pub use typed::*;

uniffi::setup_scaffolding!("ws_daemon");

/// An RPC of the API contract.
#[derive(uniffi::Record)]
pub struct ApiMethod {
    /// Full gRPC path, e.g. "/wsdaemon.WorkspaceContentService/InitWorkspace".
    pub path: String,
    /// Full service name, e.g. "wsdaemon.WorkspaceContentService".
    pub service: String,
    /// Method name, e.g. "InitWorkspace".
    pub name: String,
    /// Whether this daemon serves it (others answer UNIMPLEMENTED).
    pub served: bool,
}

/// Every RPC of the contract, in the order of the .proto files.
#[uniffi::export]
pub fn methods() -> Result<Vec<ApiMethod>, WsdError> {
    Ok(wsd_core::json::api_methods()?
        .into_iter()
        // A stream is served over gRPC; in-process callers call the long poll it streams.
        .filter(|m| !m.server_streaming)
        .map(|m| ApiMethod {
            path: m.path,
            service: m.service,
            name: m.name,
            served: m.served,
        })
        .collect())
}

/// The version of the daemon library.
#[uniffi::export]
pub fn version() -> String {
    wsd_core::version().to_string()
}

/// Starts a daemon without blocking the caller's thread (the daemon's own threads start it).
/// `config` is the server's configuration schema as TOML, or JSON (keys in snake_case or
/// camelCase); "" means all defaults.
#[uniffi::export]
pub async fn start(config: String) -> Result<Arc<Daemon>, WsdError> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("wsd-start".into())
        .spawn(move || {
            let _ = tx.send(Daemon::new(config));
        })
        .map_err(|e| wsd_core::Error::Internal(format!("cannot start a thread: {e}")))?;
    rx.await
        .unwrap_or_else(|_| Err(wsd_core::Error::ShuttingDown.into()))
}

/// The workspace daemon with its own threads. Calls are async (they never block the caller's
/// event loop); `close()` ends it, after which every call fails with UNAVAILABLE.
#[derive(uniffi::Object)]
pub struct Daemon {
    inner: Mutex<Option<Arc<EmbeddedDaemon>>>,
}

/// The caller's deadline, `timeout_ms` from now, 0 for none (waits such as WaitForInit then end
/// with DEADLINE_EXCEEDED; detached work such as an init goes on; a plain integer rather than an
/// optional one, which uniffi passes through a heap buffer), and for async calls a cancellation
/// that fires when the caller stops waiting (an asyncio task cancelled drops the call's future).
fn context(timeout_ms: u64, cancel: Option<CancellationToken>) -> CallContext {
    let mut ctx = match timeout_ms {
        0 => CallContext::default(),
        ms => CallContext::with_timeout(Duration::from_millis(ms)),
    };
    ctx.cancel = cancel;
    ctx
}

#[uniffi::export]
impl Daemon {
    /// Starts a daemon, blocking the calling thread while it starts (see [`start`] for the
    /// asynchronous way).
    #[uniffi::constructor]
    pub fn new(config: String) -> Result<Arc<Daemon>, WsdError> {
        let config = EmbeddedDaemon::parse_config(&config)?;
        let daemon = EmbeddedDaemon::start(config)?;
        Ok(Arc::new(Daemon {
            inner: Mutex::new(Some(Arc::new(daemon))),
        }))
    }

    /// Calls the RPC at `method` (e.g. "/wsdaemon.WorkspaceContentService/InitWorkspace") with
    /// an encoded protobuf request; answers the encoded response.
    #[uniffi::method(default(timeout_ms = 0))]
    pub async fn call(
        &self,
        method: String,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<Vec<u8>, WsdError> {
        match self.call_start(method, &request, timeout_ms)? {
            CallStep::Done { response } => Ok(response),
            CallStep::Pending { rest } => rest.wait().await,
        }
    }

    /// The first step of `call`: runs the call on the calling thread until its first wait and
    /// answers the response, or the rest of the call to await. The Python package's `call` is
    /// made of the two. The request is borrowed (uniffi passes a borrowed `bytes` without a copy
    /// into a buffer of its own); the call copies it once.
    #[uniffi::method(default(timeout_ms = 0))]
    pub fn call_start(
        &self,
        method: String,
        request: &[u8],
        timeout_ms: u64,
    ) -> Result<CallStep, WsdError> {
        let request = bytes::Bytes::copy_from_slice(request);
        let started = self.start_call(move |core, cancel| async move {
            core.call(&method, request, context(timeout_ms, Some(cancel)))
                .await
        })?;
        Ok(match started {
            Started::Done(response) => CallStep::Done { response },
            Started::Pending(rest) => CallStep::Pending {
                rest: Arc::new(PendingBytes(rest)),
            },
        })
    }

    /// Calls the RPC at `method` with a request in the proto3 JSON mapping; answers the
    /// response in the same mapping.
    #[uniffi::method(default(timeout_ms = 0))]
    pub async fn call_json(
        &self,
        method: String,
        request_json: String,
        timeout_ms: u64,
    ) -> Result<String, WsdError> {
        match self.call_json_start(method, request_json, timeout_ms)? {
            JsonStep::Done { response } => Ok(response),
            JsonStep::Pending { rest } => rest.wait().await,
        }
    }

    /// The first step of `call_json` (as `call_start` is of `call`).
    #[uniffi::method(default(timeout_ms = 0))]
    pub fn call_json_start(
        &self,
        method: String,
        request_json: String,
        timeout_ms: u64,
    ) -> Result<JsonStep, WsdError> {
        let started = self.start_call(move |core, cancel| async move {
            core.call_json(&method, &request_json, context(timeout_ms, Some(cancel)))
                .await
        })?;
        Ok(match started {
            Started::Done(response) => JsonStep::Done { response },
            Started::Pending(rest) => JsonStep::Pending {
                rest: Arc::new(PendingJson(rest)),
            },
        })
    }

    /// Stops accepting calls, lets in-flight work finish (up to `limits.shutdown_grace_secs`)
    /// and stops the daemon's threads, without blocking the caller's. Idempotent.
    pub async fn close(&self) {
        let daemon = self.inner.lock().take();
        if let Some(daemon) = daemon {
            let (tx, rx) = oneshot::channel();
            close_in_background(daemon, move || {
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
    }

    /// Whether `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.lock().is_none()
    }

    /// The same daemon with blocking methods, for programs without an event loop (scripts,
    /// threads): each call holds the calling thread until it answers, with no event loop turn,
    /// so a call that answers at once costs a few microseconds instead of an async round.
    pub fn blocking(self: Arc<Self>) -> Arc<BlockingDaemon> {
        Arc::new(BlockingDaemon { daemon: self })
    }
}

/// A [`Daemon`] whose methods block the calling thread (see [`Daemon::blocking`]). Closing it
/// closes the daemon.
#[derive(uniffi::Object)]
pub struct BlockingDaemon {
    daemon: Arc<Daemon>,
}

#[uniffi::export]
impl BlockingDaemon {
    /// [`Daemon::call`], blocking.
    #[uniffi::method(default(timeout_ms = 0))]
    pub fn call(
        &self,
        method: String,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<Vec<u8>, WsdError> {
        self.daemon.call_blocking(method, request, timeout_ms)
    }

    /// [`Daemon::call_json`], blocking.
    #[uniffi::method(default(timeout_ms = 0))]
    pub fn call_json(
        &self,
        method: String,
        request_json: String,
        timeout_ms: u64,
    ) -> Result<String, WsdError> {
        self.daemon.block(move |core| async move {
            let ctx = context(timeout_ms, None);
            core.call_json(&method, &request_json, ctx).await
        })
    }

    /// [`Daemon::close`], blocking until the daemon has stopped.
    pub fn close(&self) {
        if let Some(daemon) = self.daemon.inner.lock().take() {
            daemon.close();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.daemon.is_closed()
    }
}

impl Daemon {
    /// Runs `work` on the core daemon on the calling thread, blocking it until done.
    fn block<T, F>(&self, work: impl FnOnce(wsd_core::Daemon) -> F) -> Result<T, WsdError>
    where
        T: Send + 'static,
        F: Future<Output = wsd_core::Result<T>> + Send + 'static,
    {
        let Some(daemon) = self.inner.lock().clone() else {
            return Err(wsd_core::Error::ShuttingDown.into());
        };
        daemon
            .block_on(work(daemon.daemon().clone()))
            .map_err(Into::into)
    }

    fn call_blocking(
        &self,
        method: String,
        request: Vec<u8>,
        timeout_ms: u64,
    ) -> Result<Vec<u8>, WsdError> {
        self.block(move |core| async move {
            let ctx = context(timeout_ms, None);
            core.call(&method, request.into(), ctx).await
        })
    }

    /// Starts `work` on the core daemon: polled once on the calling thread (most calls end
    /// there), the rest on the daemon's threads. A closed daemon answers UNAVAILABLE.
    fn start_call<T, F>(
        &self,
        work: impl FnOnce(wsd_core::Daemon, CancellationToken) -> F,
    ) -> Result<Started<T>, WsdError>
    where
        T: Send + 'static,
        F: Future<Output = wsd_core::Result<T>> + Send + 'static,
    {
        let Some(daemon) = self.inner.lock().clone() else {
            return Err(wsd_core::Error::ShuttingDown.into());
        };
        let core = daemon.daemon().clone();
        start_on(&daemon, move |cancel| work(core, cancel))
    }
}

/// Starts `work` on `daemon`: polled once on the calling thread, the rest on the daemon's
/// threads. `work` gets a cancellation that fires when the caller stops waiting for the rest.
pub(crate) fn start_on<T, F>(
    daemon: &EmbeddedDaemon,
    work: impl FnOnce(CancellationToken) -> F,
) -> Result<Started<T>, WsdError>
where
    T: Send + 'static,
    F: Future<Output = wsd_core::Result<T>> + Send + 'static,
{
    let cancel = CancellationToken::new();
    // Held by the rest of the call: dropped when the caller stops waiting, which ends the
    // call's waits.
    let cancel_on_drop = cancel.clone().drop_guard();
    match daemon.run_or_spawn(work(cancel)) {
        Ok(result) => result.map(Started::Done).map_err(Into::into),
        Err(pending) => {
            let (tx, rx) = oneshot::channel();
            pending.on_done(move |result| {
                let _ = tx.send(result);
            });
            Ok(Started::Pending(Rest {
                waiting: Mutex::new(Some((rx, cancel_on_drop))),
            }))
        }
    }
}

/// A call after its first poll (see `Daemon::call_start`).
pub(crate) enum Started<T> {
    Done(T),
    Pending(Rest<T>),
}

/// The rest of a call running on the daemon's threads, and the guard that cancels it when dropped
/// (with the object holding it, or with the future of `wait()` when the caller stops waiting).
pub(crate) struct Rest<T> {
    waiting: Mutex<Option<(oneshot::Receiver<wsd_core::Result<T>>, DropGuard)>>,
}

impl<T> Rest<T> {
    /// The call's result; a second wait answers INTERNAL.
    pub(crate) async fn wait(&self) -> Result<T, WsdError> {
        let waiting = self.waiting.lock().take();
        let Some((done, _cancel_on_drop)) = waiting else {
            return Err(wsd_core::Error::Internal(
                "the rest of this call was awaited already".into(),
            )
            .into());
        };
        done.await
            .unwrap_or(Err(wsd_core::Error::ShuttingDown))
            .map_err(Into::into)
    }
}

/// What `Daemon::call_start` answers: the response, or the rest of the call.
#[derive(uniffi::Enum)]
pub enum CallStep {
    Done { response: Vec<u8> },
    Pending { rest: Arc<PendingBytes> },
}

/// The rest of a `call` that did not finish on its first poll.
#[derive(uniffi::Object)]
pub struct PendingBytes(Rest<Vec<u8>>);

#[uniffi::export]
impl PendingBytes {
    /// Awaits the call's response (once).
    pub async fn wait(&self) -> Result<Vec<u8>, WsdError> {
        self.0.wait().await
    }
}

/// What `Daemon::call_json_start` answers: the response, or the rest of the call.
#[derive(uniffi::Enum)]
pub enum JsonStep {
    Done { response: String },
    Pending { rest: Arc<PendingJson> },
}

/// The rest of a `call_json` that did not finish on its first poll.
#[derive(uniffi::Object)]
pub struct PendingJson(Rest<String>);

#[uniffi::export]
impl PendingJson {
    /// Awaits the call's response (once).
    pub async fn wait(&self) -> Result<String, WsdError> {
        self.0.wait().await
    }
}

/// Closing joins the daemon's runtime and waits up to the grace time: never on a caller's thread
/// nor inside an async runtime, so on a thread of its own.
fn close_in_background(daemon: Arc<EmbeddedDaemon>, done: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("wsd-close".into())
        .spawn(move || {
            daemon.close();
            done();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to close the daemon");
    }
}

impl Drop for Daemon {
    /// A daemon collected without `close()` is closed off the caller's thread.
    fn drop(&mut self) {
        if let Some(daemon) = self.inner.get_mut().take() {
            close_in_background(daemon, || {});
        }
    }
}
