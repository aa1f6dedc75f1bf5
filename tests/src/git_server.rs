//! A real git server for tests: `git http-backend` (smart HTTP) behind a small HTTP/1.1 server on
//! loopback, with optional basic auth, injected 503 failures, and a one-time-secret endpoint.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    root: PathBuf,
    auth: Option<String>,
    fail_next: AtomicUsize,
    requests: AtomicUsize,
    ots: Mutex<HashMap<String, Option<String>>>,
    ots_hits: AtomicUsize,
    authorizations: AtomicUsize,
}

pub struct GitServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs git in `dir` with a fixed identity; panics on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    /// Serves the bare repositories in `root`; with `auth` = "user:password" every git request
    /// needs basic auth.
    pub async fn start(root: &Path, auth: Option<&str>) -> GitServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State {
            root: root.to_path_buf(),
            auth: auth.map(|a| format!("Basic {}", base64(a.as_bytes()))),
            ..State::default()
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, &s).await;
                });
            }
        });
        GitServer { addr, state, task }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }

    /// The next `n` requests are answered 503.
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// A one-time-secret URL answering `secret` once.
    pub fn one_time_secret(&self, name: &str, secret: &str) -> String {
        self.state
            .ots
            .lock()
            .expect("ots")
            .insert(name.to_string(), Some(secret.to_string()));
        format!("http://{}/ots/{name}", self.addr)
    }

    /// How many requests carried an Authorization header.
    pub fn authorizations(&self) -> usize {
        self.state.authorizations.load(Ordering::SeqCst)
    }

    pub fn ots_hits(&self) -> usize {
        self.state.ots_hits.load(Ordering::SeqCst)
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

async fn serve(stream: TcpStream, state: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("GET").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).await? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        reader.read_exact(&mut body).await?;
    }
    if headers.contains_key("authorization") {
        state.authorizations.fetch_add(1, Ordering::SeqCst);
    }
    let mut stream = reader.into_inner();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));

    if let Some(name) = path.strip_prefix("/ots/") {
        state.ots_hits.fetch_add(1, Ordering::SeqCst);
        let secret = state
            .ots
            .lock()
            .expect("ots")
            .get_mut(name)
            .and_then(Option::take);
        return match secret {
            Some(s) => respond(&mut stream, "200 OK", "", s.as_bytes()).await,
            None => respond(&mut stream, "404 Not Found", "", b"used").await,
        };
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    if state
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return respond(&mut stream, "503 Service Unavailable", "", b"try later").await;
    }
    if let Some(expected) = &state.auth {
        if headers.get("authorization") != Some(expected) {
            return respond(
                &mut stream,
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"git\"\r\n",
                b"",
            )
            .await;
        }
    }
    let root = state.root.clone();
    let (path, query, method) = (path.to_string(), query.to_string(), method.clone());
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    let protocol = headers.get("git-protocol").cloned().unwrap_or_default();
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("git")
            .arg("http-backend")
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("GIT_PROJECT_ROOT", root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method)
            .env("PATH_INFO", path)
            .env("QUERY_STRING", query)
            .env("CONTENT_TYPE", content_type)
            .env("CONTENT_LENGTH", body.len().to_string())
            .env("GIT_PROTOCOL", protocol)
            .env("REMOTE_ADDR", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&body)?;
        }
        child.wait_with_output()
    })
    .await
    .map_err(std::io::Error::other)??;
    let raw = output.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((at, sep)) = split else {
        return respond(&mut stream, "500 Internal Server Error", "", b"bad cgi").await;
    };
    let cgi_headers = String::from_utf8_lossy(&raw[..at]).to_string();
    let mut status = "200 OK".to_string();
    let mut extra = String::new();
    for h in cgi_headers.lines() {
        if let Some(s) = h.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !h.trim().is_empty() {
            extra.push_str(h.trim());
            extra.push_str("\r\n");
        }
    }
    respond(&mut stream, &status, &extra, &raw[at + sep..]).await
}
