//! The daemon as a library inside a host that is not async Rust (C, Go through cgo, Node):
//! it owns its own tokio runtime, so it never runs on, blocks or reconfigures the host's threads
//! beyond the calling thread of an explicitly blocking call.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::call::CallContext;
use crate::call_stream::CallStream;
use crate::config::Config;
use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::sync::Mutex;

/// A running daemon with its own runtime. Dropping it shuts it down.
pub struct EmbeddedDaemon {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    daemon: Daemon,
    closed: AtomicBool,
}

impl EmbeddedDaemon {
    /// Builds the runtime (worker threads named `wsd-worker`) and starts the daemon on it.
    pub fn start(config: Config) -> Result<EmbeddedDaemon> {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("wsd-worker")
            .on_thread_start(block_sigpipe)
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the daemon's runtime: {e}")))?;
        let daemon = runtime.block_on(Daemon::start(config))?;
        Ok(EmbeddedDaemon {
            handle: runtime.handle().clone(),
            runtime: Mutex::new(Some(runtime)),
            daemon,
            closed: AtomicBool::new(false),
        })
    }

    /// Parses a configuration document for any host: TOML, or JSON (keys in snake_case or
    /// camelCase) when it starts with `{`. Empty means defaults (an empty TOML document).
    pub fn parse_config(text: &str) -> Result<Config> {
        if text.trim_start().starts_with('{') {
            Config::from_json_any_case(text)
        } else {
            Config::from_toml(text)
        }
    }

    pub fn daemon(&self) -> &Daemon {
        &self.daemon
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::ShuttingDown)
        } else {
            Ok(())
        }
    }

    /// Runs `work` on the calling thread inside the daemon's runtime context (its timers, I/O and
    /// spawned work run on the daemon's threads) and blocks until it is done: no thread hop for
    /// calls that finish at once. Refused on a thread of an async runtime, e.g. inside a callback.
    pub fn block_on<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.check_open()?;
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(Error::Internal(
                "a blocking call was made from a thread of an async runtime (for example inside a callback); use the asynchronous call there".into(),
            ));
        }
        // The work runs on the caller's thread, where the runtime's shutdown cannot drop it: end
        // it when closing begins, so a blocked caller (a WaitForInit) never holds up a close.
        let closing = self.daemon.closing();
        self.handle.block_on(async move {
            tokio::select! {
                biased;
                result = work => result,
                _ = closing.cancelled() => Err(Error::ShuttingDown),
            }
        })
    }

    /// Polls `work` once on the calling thread (inside the daemon's runtime context): most calls
    /// finish there without any thread hop. Otherwise the rest runs on the daemon's threads and
    /// the returned [`PendingCall`] says where to deliver the result. For event-loop hosts (Node):
    /// the first poll only runs until the operation's first wait, and work that blocks runs on
    /// the daemon's threads.
    pub fn run_or_spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) -> std::result::Result<Result<T>, PendingCall<T>> {
        if let Err(e) = self.check_open() {
            return Ok(Err(e));
        }
        let mut work: std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send>> = Box::pin(work);
        let polled = {
            let _context = self.handle.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            work.as_mut().poll(&mut cx)
        };
        match polled {
            std::task::Poll::Ready(result) => Ok(result),
            std::task::Poll::Pending => Err(PendingCall {
                work,
                handle: self.handle.clone(),
            }),
        }
    }

    /// Protobuf call through the dispatch table, blocking.
    pub fn call_blocking(
        &self,
        method: &str,
        request: Vec<u8>,
        cancel: Option<CancellationToken>,
    ) -> Result<Vec<u8>> {
        let (daemon, method) = (self.daemon.clone(), method.to_string());
        self.block_on(async move {
            daemon
                .call(
                    &method,
                    Bytes::from(request),
                    CallContext {
                        deadline: None,
                        cancel,
                        ..CallContext::default()
                    },
                )
                .await
        })
    }

    /// JSON call through the dispatch table, blocking.
    pub fn call_json_blocking(&self, method: &str, json: String) -> Result<String> {
        let (daemon, method) = (self.daemon.clone(), method.to_string());
        self.block_on(async move {
            daemon
                .call_json(&method, &json, CallContext::default())
                .await
        })
    }

    /// Protobuf call through the dispatch table; `done` runs exactly once on a daemon thread with
    /// the result, also when the call is cancelled through `cancel` or the daemon closes while it
    /// runs. A daemon already closed refuses the call with `Err` and never runs `done`.
    pub fn call_with_callback(
        &self,
        method: &str,
        request: Vec<u8>,
        cancel: CancellationToken,
        done: impl FnOnce(Result<Vec<u8>>) + Send + 'static,
    ) -> Result<()> {
        self.check_open()?;
        let (daemon, method) = (self.daemon.clone(), method.to_string());
        let mut done = OnceCallback::new(done);
        self.handle.spawn(async move {
            let ctx = CallContext {
                deadline: None,
                cancel: Some(cancel),
                ..CallContext::default()
            };
            let result = daemon.call(&method, Bytes::from(request), ctx).await;
            done.call(result);
        });
        Ok(())
    }

    /// Opens the server-streaming method at `method` with an encoded request (see
    /// [`Daemon::open_stream`]); read it with [`EmbeddedDaemon::stream_next_blocking`] or
    /// [`EmbeddedDaemon::stream_next_with_callback`].
    /// A closed daemon refuses with UNAVAILABLE.
    pub fn open_stream(
        &self,
        method: &str,
        request: Vec<u8>,
        ctx: CallContext,
    ) -> Result<Arc<CallStream>> {
        self.check_open()?;
        self.daemon
            .open_stream(method, Bytes::from(request), ctx)
            .map(Arc::new)
    }

    /// [`EmbeddedDaemon::open_stream`] with a proto3 JSON request.
    pub fn open_stream_json(
        &self,
        method: &str,
        json: &str,
        ctx: CallContext,
    ) -> Result<Arc<CallStream>> {
        self.check_open()?;
        self.daemon
            .open_stream_json(method, json, ctx)
            .map(Arc::new)
    }

    /// The next response of `stream` (`None` at its end), blocking like [`Self::block_on`].
    pub fn stream_next_blocking(&self, stream: &Arc<CallStream>) -> Result<Option<Vec<u8>>> {
        let stream = stream.clone();
        self.block_on(async move { stream.next().await })
    }

    /// The next response of `stream` (`None` at its end); `done` runs exactly once on a daemon
    /// thread with it, also when the wait is cancelled through `cancel` (CANCELLED; the stream
    /// goes on from the same point at the next call) or the daemon closes (UNAVAILABLE). A daemon
    /// already closed refuses with `Err` and never runs `done`.
    pub fn stream_next_with_callback(
        &self,
        stream: &Arc<CallStream>,
        cancel: CancellationToken,
        done: impl FnOnce(Result<Option<Vec<u8>>>) + Send + 'static,
    ) -> Result<()> {
        self.check_open()?;
        let stream = stream.clone();
        let mut done = OnceCallback::new(done);
        self.handle.spawn(async move {
            let result = tokio::select! {
                result = stream.next() => result,
                _ = cancel.cancelled() => Err(Error::Cancelled),
            };
            done.call(result);
        });
        Ok(())
    }

    /// Refuses new calls, lets in-flight work finish for up to the configured grace time and stops
    /// the runtime. Idempotent; must not be called from a daemon thread.
    pub fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let grace = Duration::from_secs(self.daemon.config().limits.shutdown_grace_secs);
        let runtime = self.runtime.lock().take();
        if let Some(runtime) = runtime {
            let daemon = self.daemon.clone();
            runtime.block_on(async move { daemon.shutdown(grace).await });
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// Blocks SIGPIPE on the calling thread (and so on the threads it starts): a write to a connection
/// whose peer is gone, such as a workspace socket whose client exited, then fails with EPIPE
/// instead of raising the signal. The server binary ignores SIGPIPE process-wide, as every Rust
/// program does; a library cannot, as the handlers belong to the host, and a Go host ends the
/// whole process for a SIGPIPE on a thread it did not start.
fn block_sigpipe() {
    use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    if let Err(e) = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None) {
        tracing::warn!(error = %e, "cannot block SIGPIPE on a daemon thread");
    }
}

/// A call that did not finish on the calling thread (see [`EmbeddedDaemon::run_or_spawn`]).
pub struct PendingCall<T> {
    work: std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send>>,
    handle: tokio::runtime::Handle,
}

impl<T: Send + 'static> PendingCall<T> {
    /// Finishes the call on the daemon's threads; `done` runs exactly once with the result (with
    /// UNAVAILABLE when the daemon closes first).
    pub fn on_done(self, done: impl FnOnce(Result<T>) + Send + 'static) {
        let mut done = OnceCallback::new(done);
        let work = self.work;
        self.handle.spawn(async move {
            let result = work.await;
            done.call(result);
        });
    }
}

/// Runs the callback exactly once: with the result, or with UNAVAILABLE when the runtime drops the
/// call at shutdown before it finished.
struct OnceCallback<T, F: FnOnce(Result<T>)>(Option<F>, std::marker::PhantomData<fn(T)>);

impl<T, F: FnOnce(Result<T>)> OnceCallback<T, F> {
    fn new(f: F) -> Self {
        OnceCallback(Some(f), std::marker::PhantomData)
    }

    fn call(&mut self, result: Result<T>) {
        if let Some(f) = self.0.take() {
            f(result);
        }
    }
}

impl<T, F: FnOnce(Result<T>)> Drop for OnceCallback<T, F> {
    fn drop(&mut self) {
        self.call(Err(Error::ShuttingDown));
    }
}

impl Drop for EmbeddedDaemon {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use wsd_proto::wsdaemon::{IsWorkspaceExistsRequest, IsWorkspaceExistsResponse};

    const EXISTS: &str = "/wsdaemon.WorkspaceContentService/IsWorkspaceExists";

    fn config(dir: &std::path::Path) -> String {
        format!(
            "working_area = {:?}\n[storage]\nlocal_path = {:?}\n",
            dir.join("area"),
            dir.join("storage")
        )
    }

    #[test]
    fn blocking_calls_work_from_plain_threads_and_fail_after_close() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = EmbeddedDaemon::start(
            EmbeddedDaemon::parse_config(&config(dir.path())).expect("config"),
        )
        .expect("start");
        let req = IsWorkspaceExistsRequest { id: "ws".into() }.encode_to_vec();
        let out = d.call_blocking(EXISTS, req.clone(), None).expect("call");
        assert!(
            !IsWorkspaceExistsResponse::decode(out.as_slice())
                .expect("decode")
                .exists
        );
        assert_eq!(
            d.call_json_blocking(EXISTS, "{\"id\":\"ws\"}".into())
                .expect("json"),
            "{}"
        );
        d.close();
        d.close();
        assert_eq!(
            d.call_blocking(EXISTS, req, None)
                .expect_err("closed")
                .code(),
            crate::Code::Unavailable
        );
    }

    #[test]
    fn the_runtime_threads_block_sigpipe() {
        use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow, Signal};
        let dir = tempfile::tempdir().expect("tempdir");
        let d = EmbeddedDaemon::start(
            EmbeddedDaemon::parse_config(&config(dir.path())).expect("config"),
        )
        .expect("start");
        fn blocked() -> bool {
            let mut mask = SigSet::empty();
            pthread_sigmask(SigmaskHow::SIG_BLOCK, None, Some(&mut mask)).expect("mask");
            mask.contains(Signal::SIGPIPE)
        }
        let (on_worker, on_blocking) = d.handle.block_on(async {
            let worker = tokio::spawn(async { blocked() });
            let blocking = tokio::task::spawn_blocking(blocked);
            (
                worker.await.expect("worker"),
                blocking.await.expect("blocking"),
            )
        });
        assert!(on_worker, "SIGPIPE blocked on a worker thread");
        assert!(on_blocking, "SIGPIPE blocked on a blocking thread");
        d.close();
    }

    /// An InitWorkspace request for `id` whose download goes to a server that accepts
    /// connections but never answers, so the init stays SETTING_UP; keep the listener alive.
    fn hanging_init(id: &str) -> (std::net::TcpListener, Vec<u8>) {
        use wsd_proto::contentservice::file_download_initializer::FileInfo;
        use wsd_proto::contentservice::{
            workspace_initializer::Spec, FileDownloadInitializer, WorkspaceInitializer,
        };
        use wsd_proto::wsdaemon::{InitWorkspaceRequest, WorkspaceMetadata};

        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/never", silent.local_addr().expect("addr"));
        let init = InitWorkspaceRequest {
            id: id.into(),
            metadata: Some(WorkspaceMetadata {
                owner: "o".into(),
                meta_id: "m".into(),
            }),
            initializer: Some(WorkspaceInitializer {
                spec: Some(Spec::Download(FileDownloadInitializer {
                    files: vec![FileInfo {
                        url,
                        file_path: "f".into(),
                        digest: format!("sha256:{}", "0".repeat(64)),
                    }],
                    target_location: String::new(),
                })),
            }),
            ..Default::default()
        };
        (silent, init.encode_to_vec())
    }

    #[test]
    fn callbacks_run_once_also_when_cancelled() {
        use wsd_proto::wsdaemon::WaitForInitRequest;

        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{}[limits]\nshutdown_grace_secs = 1\n", config(dir.path()));
        let d = EmbeddedDaemon::start(EmbeddedDaemon::parse_config(&text).expect("config"))
            .expect("start");
        let (_silent, init) = hanging_init("ws-hang");
        let (init_tx, init_rx) = std::sync::mpsc::channel();
        let init_path = "/wsdaemon.WorkspaceContentService/InitWorkspace";
        d.call_with_callback(init_path, init, CancellationToken::new(), move |r| {
            let _ = init_tx.send(r.is_ok());
        })
        .expect("open");
        std::thread::sleep(Duration::from_millis(200));

        let token = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let wait = "/wsdaemon.WorkspaceContentService/WaitForInit";
        let req = WaitForInitRequest {
            id: "ws-hang".into(),
        }
        .encode_to_vec();
        d.call_with_callback(wait, req, token.clone(), move |r| {
            let _ = tx.send(r.map_err(|e| e.code()));
        })
        .expect("open");
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "still waiting"
        );
        token.cancel();
        let got = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("callback ran");
        assert_eq!(got.expect_err("cancelled"), crate::Code::Cancelled);
        assert!(
            rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "exactly once"
        );
        d.close();
        // The init still hanging at close gets its callback too, once.
        assert_eq!(
            init_rx.recv_timeout(Duration::from_secs(10)).ok(),
            Some(false)
        );
        assert!(init_rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn close_wakes_a_caller_blocked_in_a_wait() {
        use wsd_proto::wsdaemon::WaitForInitRequest;

        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{}[limits]\nshutdown_grace_secs = 1\n", config(dir.path()));
        let d = std::sync::Arc::new(
            EmbeddedDaemon::start(EmbeddedDaemon::parse_config(&text).expect("config"))
                .expect("start"),
        );
        let (_silent, init) = hanging_init("ws-hang");
        d.call_with_callback(
            "/wsdaemon.WorkspaceContentService/InitWorkspace",
            init,
            CancellationToken::new(),
            |_| {},
        )
        .expect("open");
        std::thread::sleep(Duration::from_millis(200));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let d = d.clone();
            std::thread::spawn(move || {
                let req = WaitForInitRequest {
                    id: "ws-hang".into(),
                }
                .encode_to_vec();
                let r = d.call_blocking("/wsdaemon.WorkspaceContentService/WaitForInit", req, None);
                let _ = tx.send(r.map_err(|e| e.code()));
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        d.close();
        let got = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the blocked caller returned");
        assert_eq!(got.expect_err("woken by close"), crate::Code::Unavailable);
    }

    #[test]
    fn config_documents_are_toml_json_or_empty() {
        assert!(EmbeddedDaemon::parse_config("").is_ok());
        assert!(EmbeddedDaemon::parse_config("{\"storage\":{\"backend\":\"none\"}}").is_ok());
        assert!(EmbeddedDaemon::parse_config("[storage]\nbackend = \"none\"").is_ok());
        assert!(EmbeddedDaemon::parse_config("{\"nope\":1}").is_err());
        let camel = EmbeddedDaemon::parse_config("{\"storage\":{\"maxConcurrentUploads\":2}}");
        assert_eq!(
            camel.map(|c| c.storage.max_concurrent_uploads).ok(),
            Some(2)
        );
    }
}
