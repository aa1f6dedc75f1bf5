//! A real S3-compatible server for the tests: `s3s-fs` (which checks SigV4 signatures) as a child
//! process on loopback, stoppable and restartable on the same port and data folder, and an HTTP
//! proxy in front of it that can answer slowly and counts the multipart uploads in flight as the
//! server sees them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::free_port;

pub const ACCESS_KEY: &str = "wsd-test-access";
pub const SECRET_KEY: &str = "wsd-test-secret-0123456789";

/// `$WSD_S3S_FS`, the binary that scripts/install-s3s-fs.sh installs (it pins the version).
pub fn s3s_fs_binary() -> PathBuf {
    match std::env::var_os("WSD_S3S_FS").map(PathBuf::from) {
        Some(bin) if bin.is_file() => bin,
        _ => panic!(
            "the S3 test server is missing: run ./scripts/test-all.sh once (it installs s3s-fs) \
             or set WSD_S3S_FS to the path scripts/install-s3s-fs.sh prints"
        ),
    }
}

/// An s3s-fs server storing its buckets as folders under `root`.
pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    child: Option<Child>,
}

impl S3Server {
    pub async fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root).expect("s3 root");
        let mut server = S3Server {
            port: free_port(),
            root: root.to_path_buf(),
            child: None,
        };
        server.spawn().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let log_path = self.root.with_extension("log");
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(crate::log_file(&log_path))
            .spawn()
            .expect("start s3s-fs");
        let mut child = child;
        crate::wait_for_port(&mut child, self.port, "s3s-fs", &log_path).await;
        self.child = Some(child);
    }

    /// Kills the server at once, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            crate::wait_for_exit(child).await;
        }
    }

    /// Starts it again on the same port with the same data.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill the server first");
        self.spawn().await;
    }

    /// The file in which s3s-fs keeps an object.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.join(bucket).join(key)
    }

    /// Files of multipart uploads that were neither completed nor aborted.
    pub fn incomplete_uploads(&self) -> Vec<String> {
        std::fs::read_dir(&self.root)
            .expect("s3 root")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".upload"))
            .collect()
    }

    /// Waits until the server holds a part of an unfinished multipart upload.
    pub async fn wait_for_a_part(&self, within: Duration) {
        crate::wait_until("a part is uploaded", within, || {
            self.incomplete_uploads()
                .iter()
                .any(|name| name.contains(".part-"))
        })
        .await;
    }

    /// The `[storage]` tables of a daemon using this server at `endpoint` (the server itself or a
    /// proxy in front of it) with the given secret key; `storage_keys` go into `[storage]`.
    pub fn daemon_config(endpoint: &str, secret: &str, storage_keys: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\npart_size_bytes = 5242880\n{storage_keys}\n\
             [storage.s3]\nendpoint = \"{endpoint}\"\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key = \"{secret}\"\n"
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the proxy saw.
#[derive(Default)]
pub struct ProxyCounters {
    requests: AtomicUsize,
    uploads_in_flight: AtomicUsize,
    max_uploads_in_flight: AtomicUsize,
    uploads_completed: AtomicUsize,
    delay_ms: AtomicU64,
}

/// An HTTP/1.1 proxy in front of an S3 server. It forwards every request unchanged (the Host header
/// too, so signatures stay valid), optionally after a delay, and counts multipart uploads between
/// their CreateMultipartUpload and their Complete/Abort.
pub struct S3Proxy {
    pub addr: SocketAddr,
    counters: Arc<ProxyCounters>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Proxy {
    pub async fn start(upstream: u16) -> S3Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let counters = Arc::new(ProxyCounters::default());
        let client: HttpClient<_, Incoming> =
            HttpClient::builder(TokioExecutor::new()).build_http();
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let client = client.clone();
                let counters = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        forward(client.clone(), counters.clone(), upstream, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        S3Proxy {
            addr,
            counters,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request from now on waits this long before it is forwarded.
    pub fn set_delay(&self, delay: Duration) {
        self.counters
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.counters.requests.load(Ordering::SeqCst)
    }

    pub fn max_uploads_in_flight(&self) -> usize {
        self.counters.max_uploads_in_flight.load(Ordering::SeqCst)
    }

    pub fn uploads_completed(&self) -> usize {
        self.counters.uploads_completed.load(Ordering::SeqCst)
    }
}

impl Drop for S3Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    client: HttpClient<hyper_util::client::legacy::connect::HttpConnector, Incoming>,
    counters: Arc<ProxyCounters>,
    upstream: u16,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Incoming>, hyper_util::client::legacy::Error> {
    counters.requests.fetch_add(1, Ordering::SeqCst);
    let delay = counters.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let method = req.method().clone();
    let query = req.uri().query().unwrap_or("").to_string();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let (mut parts, body) = req.into_parts();
    parts.uri = format!("http://127.0.0.1:{upstream}{path_and_query}")
        .parse()
        .expect("upstream uri");
    let response = client
        .request(hyper::Request::from_parts(parts, body))
        .await?;
    let ok = response.status().is_success();
    let creates = method == hyper::Method::POST
        && query.split('&').any(|p| p == "uploads" || p == "uploads=");
    let ends = query.split('&').any(|p| p.starts_with("uploadId="))
        && (method == hyper::Method::POST || method == hyper::Method::DELETE);
    if ok && creates {
        let now = counters.uploads_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        counters
            .max_uploads_in_flight
            .fetch_max(now, Ordering::SeqCst);
    } else if ok && ends {
        counters.uploads_in_flight.fetch_sub(1, Ordering::SeqCst);
        if method == hyper::Method::POST {
            counters.uploads_completed.fetch_add(1, Ordering::SeqCst);
        }
    }
    Ok(response)
}
