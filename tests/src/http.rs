//! A minimal HTTP/1.1 server on loopback for download tests, and a GET helper for the metrics
//! endpoint. Each route answers a fixed status and body, optionally after a delay, optionally
//! failing its first requests with 503.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone, Debug)]
pub struct Route {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
    /// The first this many requests get 503.
    pub fail_first: usize,
}

impl Route {
    pub fn ok(body: impl Into<Vec<u8>>) -> Route {
        Route {
            status: 200,
            body: body.into(),
            delay: Duration::ZERO,
            fail_first: 0,
        }
    }
}

pub struct HttpServer {
    pub addr: SocketAddr,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(routes: HashMap<String, Route>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let routes = Arc::new(routes);
        let task_hits = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (routes, hits) = (routes.clone(), task_hits.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &routes, &hits).await;
                });
            }
        });
        HttpServer { addr, hits, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .expect("hits")
            .get(path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    routes: &HashMap<String, Route>,
    hits: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let count = {
        let mut hits = hits.lock().expect("hits");
        let c = hits.entry(path.clone()).or_insert(0);
        *c += 1;
        *c
    };
    let (status, body, delay) = match routes.get(&path) {
        Some(r) if count <= r.fail_first => (503, b"try again".to_vec(), r.delay),
        Some(r) => (r.status, r.body.clone(), r.delay),
        None => (404, b"not found".to_vec(), Duration::ZERO),
    };
    tokio::time::sleep(delay).await;
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// GET `path` from `addr` and return the body as text.
/// Status and body of `method path` on the HTTP/1.1 server at `addr`.
pub async fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the HTTP server");
    let req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

pub async fn get_text(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.expect("read");
    let text = String::from_utf8_lossy(&out).to_string();
    match text.split_once("\r\n\r\n") {
        Some((_, body)) => body.to_string(),
        None => text,
    }
}

/// A download initializer of one file `name` served by a new server after `delay` with `status`.
/// Returns the server (keep it alive) and the initializer.
pub async fn download_after(
    delay: Duration,
    status: u16,
    name: &str,
) -> (
    HttpServer,
    wsd_proto::contentservice::workspace_initializer::Spec,
) {
    use sha2::{Digest, Sha256};
    use wsd_proto::contentservice::file_download_initializer::FileInfo;
    use wsd_proto::contentservice::{workspace_initializer::Spec, FileDownloadInitializer};
    let body = format!("content of {name}").into_bytes();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let path = format!("/{name}");
    let route = Route {
        status,
        body,
        delay,
        fail_first: 0,
    };
    let server = HttpServer::start(HashMap::from([(path.clone(), route)])).await;
    let spec = Spec::Download(FileDownloadInitializer {
        files: vec![FileInfo {
            url: server.url(&path),
            file_path: name.to_string(),
            digest,
        }],
        target_location: String::new(),
    });
    (server, spec)
}
