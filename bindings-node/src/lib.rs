//! wsd-node: the workspace daemon in-process for Node.js (N-API). A thin adapter: the native class
//! takes requests as protobuf bytes or proto3 JSON text and hands them to core's dispatch; the
//! JavaScript facade (`wsd.js`) turns them into one typed async method per RPC.

mod error;

use std::sync::Arc;

use wsd_core::sync::Mutex;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Either, Object};
use napi::Env;
use napi_derive::napi;
use wsd_core::{CallContext, EmbeddedDaemon};

pub use crate::error::{status_codes, CallOutcome, StatusCode};

/// An RPC of the API contract.
#[napi(object)]
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

/// Every RPC of the contract (all three services) that answers once, in the order of the .proto
/// files.
#[napi]
pub fn methods() -> napi::Result<Vec<ApiMethod>> {
    api_methods(false)
}

/// Every server-streaming RPC of the contract (WatchProgress), read with `openStream`.
#[napi]
pub fn streams() -> napi::Result<Vec<ApiMethod>> {
    api_methods(true)
}

fn api_methods(server_streaming: bool) -> napi::Result<Vec<ApiMethod>> {
    Ok(wsd_core::json::api_methods()
        .map_err(|e| napi::Error::from_reason(e.to_string()))?
        .into_iter()
        .filter(|m| m.server_streaming == server_streaming)
        .map(|m| ApiMethod {
            path: m.path,
            service: m.service,
            name: m.name,
            served: m.served,
        })
        .collect())
}

/// The version of the daemon library.
#[napi]
pub fn version() -> String {
    wsd_core::version().to_string()
}

/// The caller's deadline: `timeout_ms` from now (waits such as WaitForInit end with
/// DEADLINE_EXCEEDED; detached work such as an init goes on).
fn context(timeout_ms: Option<f64>) -> CallContext {
    match timeout_ms {
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            CallContext::with_timeout(std::time::Duration::from_secs_f64(ms / 1000.0))
        }
        _ => CallContext::default(),
    }
}

/// Runs `work`: the outcome at once when it finishes on this thread (no thread hop, no Promise),
/// else a Promise settled from the daemon's threads when it is done. The event loop never waits.
fn settle<'env, T: Send + 'static>(
    env: &'env Env,
    daemon: &EmbeddedDaemon,
    work: impl std::future::Future<Output = wsd_core::Result<T>> + Send + 'static,
    outcome: fn(wsd_core::Result<T>) -> CallOutcome,
) -> napi::Result<Either<CallOutcome, Object<'env>>> {
    match daemon.run_or_spawn(work) {
        Ok(result) => Ok(Either::A(outcome(result))),
        Err(pending) => {
            let (deferred, promise) = env.create_deferred()?;
            pending.on_done(move |result| deferred.resolve(move |_| Ok(outcome(result))));
            Ok(Either::B(promise))
        }
    }
}

/// The daemon with its own threads. Use the facade class `Daemon` of `wsd.js`.
#[napi]
pub struct NativeDaemon {
    inner: Mutex<Option<Arc<EmbeddedDaemon>>>,
}

#[napi]
impl NativeDaemon {
    /// Starts a daemon from a configuration document in JSON (the server's config schema, keys in
    /// snake_case or camelCase); "" means all defaults. Answers the daemon, or the outcome of the
    /// failure (an invalid configuration, a working area that cannot be made) like every call.
    #[napi(ts_return_type = "NativeDaemon | CallOutcome")]
    pub fn start(config_json: String) -> Either<NativeDaemon, CallOutcome> {
        let started = EmbeddedDaemon::parse_config(&config_json).and_then(EmbeddedDaemon::start);
        match started {
            Ok(daemon) => Either::A(NativeDaemon {
                inner: Mutex::new(Some(Arc::new(daemon))),
            }),
            Err(e) => Either::B(CallOutcome::err(e)),
        }
    }

    fn daemon(&self) -> Option<Arc<EmbeddedDaemon>> {
        self.inner.lock().clone()
    }

    /// Runs `work` on the core daemon (see [`settle`]); a closed daemon answers UNAVAILABLE.
    fn run<'env, T, F>(
        &self,
        env: &'env Env,
        outcome: fn(wsd_core::Result<T>) -> CallOutcome,
        work: impl FnOnce(wsd_core::Daemon) -> F,
    ) -> napi::Result<Either<CallOutcome, Object<'env>>>
    where
        T: Send + 'static,
        F: std::future::Future<Output = wsd_core::Result<T>> + Send + 'static,
    {
        let Some(daemon) = self.daemon() else {
            return Ok(Either::A(outcome(Err(wsd_core::Error::ShuttingDown))));
        };
        let core = daemon.daemon().clone();
        settle(env, &daemon, work(core), outcome)
    }

    /// Calls the RPC at `method` with an encoded protobuf request. Answers at once when the call
    /// finishes without waiting, else with a Promise.
    #[napi(catch_unwind, ts_return_type = "CallOutcome | Promise<CallOutcome>")]
    pub fn call<'env>(
        &self,
        env: &'env Env,
        method: String,
        request: Buffer,
        timeout_ms: Option<f64>,
    ) -> napi::Result<Either<CallOutcome, Object<'env>>> {
        let request = Bytes::copy_from_slice(&request);
        self.run(env, CallOutcome::bytes, move |core| async move {
            core.call(&method, request, context(timeout_ms)).await
        })
    }

    /// Calls the RPC at `method` with a request in the proto3 JSON mapping. Answers at once when
    /// the call finishes without waiting, else with a Promise.
    #[napi(catch_unwind, ts_return_type = "CallOutcome | Promise<CallOutcome>")]
    pub fn call_json<'env>(
        &self,
        env: &'env Env,
        method: String,
        request_json: String,
        timeout_ms: Option<f64>,
    ) -> napi::Result<Either<CallOutcome, Object<'env>>> {
        self.run(env, CallOutcome::json, move |core| async move {
            core.call_json(&method, &request_json, context(timeout_ms))
                .await
        })
    }

    /// Opens the server-streaming RPC at `method` with a request in the proto3 JSON mapping.
    /// Answers the stream, or the outcome of the failure (a unary method, bad JSON, a closed
    /// daemon) like every call.
    #[napi(catch_unwind, ts_return_type = "NativeStream | CallOutcome")]
    pub fn open_stream(
        &self,
        method: String,
        request_json: String,
        timeout_ms: Option<f64>,
    ) -> Either<NativeStream, CallOutcome> {
        let Some(daemon) = self.daemon() else {
            return Either::B(CallOutcome::err(wsd_core::Error::ShuttingDown));
        };
        match daemon.open_stream_json(&method, &request_json, context(timeout_ms)) {
            Ok(stream) => Either::A(NativeStream {
                inner: Mutex::new(Some((daemon, stream))),
            }),
            Err(e) => Either::B(CallOutcome::err(e)),
        }
    }

    /// Stops accepting calls, lets in-flight work finish (up to the shutdown grace time) and stops
    /// the daemon's threads, without blocking the event loop. Idempotent.
    #[napi]
    pub async fn close(&self) -> CallOutcome {
        let daemon = self.inner.lock().take();
        if let Some(daemon) = daemon {
            let (tx, rx) = napi::tokio::sync::oneshot::channel();
            close_in_background(daemon, move || {
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
        CallOutcome::done(Ok(()))
    }
}

/// Closing joins the daemon's runtime and waits up to the grace time: never on the JS thread nor
/// inside an async runtime, so on a thread of its own.
fn close_in_background(daemon: Arc<EmbeddedDaemon>, done: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        daemon.close();
        done();
    });
}

impl Drop for NativeDaemon {
    /// A daemon collected by the GC without `close()` is closed off the JS thread.
    fn drop(&mut self) {
        let daemon = self.inner.get_mut().take();
        if let Some(daemon) = daemon {
            close_in_background(daemon, || {});
        }
    }
}

/// An open server-streaming call. Use the async iterator that the facade's `openStream` (or the
/// stream's own method, e.g. `watchProgress`) returns.
#[napi]
pub struct NativeStream {
    inner: Mutex<Option<(Arc<EmbeddedDaemon>, Arc<wsd_core::CallStream>)>>,
}

#[napi]
impl NativeStream {
    /// The next response in proto3 JSON, or an outcome without `json` once the stream has ended;
    /// an error ends the stream. At once when a response is ready, else a Promise.
    #[napi(catch_unwind, ts_return_type = "CallOutcome | Promise<CallOutcome>")]
    pub fn next<'env>(&self, env: &'env Env) -> napi::Result<Either<CallOutcome, Object<'env>>> {
        let Some((daemon, stream)) = self.inner.lock().clone() else {
            return Ok(Either::A(CallOutcome::end()));
        };
        settle(
            env,
            &daemon,
            async move { stream.next_json().await },
            CallOutcome::stream_item,
        )
    }

    /// Ends the stream; a `next` still waiting answers when its response comes.
    #[napi]
    pub fn close(&self) {
        self.inner.lock().take();
    }
}
