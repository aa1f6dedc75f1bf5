//! The download initializer: each file fetched over HTTP(S) into a temporary file, verified against
//! its OCI digest and only then renamed into place. A retry starts the file anew.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use sha2::{Digest as _, Sha256, Sha512};
use tokio::io::AsyncWriteExt;
use wsd_proto::contentservice::FileDownloadInitializer;

use super::{InitContext, Plan};
use crate::confine::{self, Beneath};
use crate::error::{Error, Result};
use crate::retry::{self, Failure, Policy};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    Sha256(Vec<u8>),
    Sha512(Vec<u8>),
}

impl Digest {
    /// Parses an OCI digest `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest> {
        let bad = |why: &str| {
            Err(Error::InvalidArgument(format!(
                "invalid digest {s:?}: {why}"
            )))
        };
        let Some((algorithm, hex_part)) = s.split_once(':') else {
            return bad("expected algorithm:hex, e.g. sha256:<64 hex digits>");
        };
        let (len, make): (usize, fn(Vec<u8>) -> Digest) = match algorithm {
            "sha256" => (32, Digest::Sha256),
            "sha512" => (64, Digest::Sha512),
            _ => return bad("unsupported algorithm (use sha256 or sha512)"),
        };
        if hex_part.bytes().any(|b| b.is_ascii_uppercase()) {
            return bad("hex digits must be lower case");
        }
        match hex::decode(hex_part) {
            Ok(bytes) if bytes.len() == len => Ok(make(bytes)),
            _ => bad("wrong length or not hex"),
        }
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn for_digest(d: &Digest) -> Hasher {
        match d {
            Digest::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Digest::Sha512(_) => Hasher::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    fn matches(self, d: &Digest) -> bool {
        match (self, d) {
            (Hasher::Sha256(h), Digest::Sha256(want)) => h.finalize().as_slice() == want.as_slice(),
            (Hasher::Sha512(h), Digest::Sha512(want)) => h.finalize().as_slice() == want.as_slice(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DownloadFile {
    pub url: reqwest::Url,
    /// Relative to the content folder, already joined with the target location.
    pub path: PathBuf,
    pub digest: Digest,
}

pub fn plan(d: &FileDownloadInitializer) -> Result<Plan> {
    let target = confine::relative_request_path("target_location", &d.target_location)?;
    let mut files = Vec::with_capacity(d.files.len());
    for f in &d.files {
        let url = reqwest::Url::parse(&f.url).map_err(|e| {
            Error::InvalidArgument(format!(
                "download: the URL of file {:?} is not a valid URL ({e})",
                f.file_path
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::InvalidArgument(format!(
                "download: unsupported URL scheme {:?}: use http or https",
                url.scheme()
            )));
        }
        let rel = confine::relative_request_path("file_path", &f.file_path)?;
        if rel.as_os_str().is_empty() {
            return Err(Error::InvalidArgument(
                "download: file_path is required".into(),
            ));
        }
        files.push(DownloadFile {
            url,
            path: target.join(rel),
            digest: Digest::parse(&f.digest)?,
        });
    }
    Ok(Plan::Download { target, files })
}

pub async fn run(ctx: &InitContext, target: &Path, files: &[DownloadFile]) -> Result<()> {
    let content = ctx.content.clone();
    let target_rel = target.to_path_buf();
    tokio::task::spawn_blocking(move || {
        Beneath::open(&content).and_then(|b| b.create_dir_all(&target_rel).map(|_| ()))
    })
    .await
    .map_err(Error::internal)?
    .map_err(|e| {
        Error::InitFailed(format!(
            "download: cannot create the target folder {:?}: {e}",
            target.display()
        ))
    })?;

    for file in files {
        let started = Instant::now();
        let size = download_with_retries(ctx, file).await?;
        ctx.record("download", started, size);
    }
    Ok(())
}

/// One file under `download.attempts`: network errors, timeouts, 429 and 5xx answers are retried;
/// other answers, a digest mismatch and local write errors are final.
async fn download_with_retries(ctx: &InitContext, file: &DownloadFile) -> Result<u64> {
    let shown = crate::url_text::for_messages(file.url.as_str());
    let shown = shown.as_str();
    let policy = Policy::with_attempts(ctx.tools.download.attempts);
    retry::run(
        &policy,
        |_| download_once(ctx, file, shown),
        |attempt, why| tracing::warn!(url = %shown, attempt, error = %why, "download failed"),
    )
    .await
    .map_err(|failure| match failure {
        Failure::Final(e) => e,
        Failure::Transient(last) => Error::InitFailed(format!(
            "download of {shown} failed after {} attempts: {last}",
            policy.attempts
        )),
    })
}

async fn download_once(
    ctx: &InitContext,
    file: &DownloadFile,
    shown: &str,
) -> std::result::Result<u64, Failure> {
    let timeout = Duration::from_secs(ctx.tools.download.attempt_timeout_secs);
    let content = ctx.content.clone();
    let rel = file.path.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let (dir, name) = confine::split_parent(&rel)?;
        let dir_fd = Beneath::open(&content)?.create_dir_all(dir)?;
        let (tmp_file, tmp_name) = confine::create_temp_file(&dir_fd, name, 0o644)?;
        Ok::<_, std::io::Error>((dir_fd, tmp_file, tmp_name, name.to_os_string()))
    })
    .await
    .map_err(|e| Failure::Final(Error::internal(e)))?
    .map_err(|e| {
        Failure::Final(Error::InitFailed(format!(
            "download: cannot create {}: {e}",
            file.path.display()
        )))
    })?;
    let (dir_fd, tmp_file, tmp_name, name) = opened;

    let fetched = tokio::time::timeout(timeout, fetch_into(ctx, file, shown, tmp_file)).await;
    let result = match fetched {
        Err(_) => Err(Failure::Transient(format!(
            "timed out after {}s",
            timeout.as_secs()
        ))),
        Ok(r) => r,
    };
    let result = result.and_then(|(size, hasher)| {
        if hasher.matches(&file.digest) {
            Ok(size)
        } else {
            Err(Failure::Final(Error::InitFailed(format!(
                "digest mismatch for {}: the downloaded content does not match the requested digest",
                file.path.display()
            ))))
        }
    });
    match result {
        Ok(size) => {
            tokio::task::spawn_blocking(move || {
                confine::rename_into_place(&dir_fd, &tmp_name, &name)
            })
            .await
            .map_err(|e| Failure::Final(Error::internal(e)))?
            .map_err(|e| {
                Failure::Final(Error::InitFailed(format!(
                    "download: cannot move {} into place: {e}",
                    file.path.display()
                )))
            })?;
            Ok(size)
        }
        Err(f) => {
            confine::remove_temp(&dir_fd, &tmp_name);
            Err(f)
        }
    }
}

async fn fetch_into(
    ctx: &InitContext,
    file: &DownloadFile,
    shown: &str,
    tmp: std::fs::File,
) -> std::result::Result<(u64, Hasher), Failure> {
    let response = ctx
        .tools
        .http
        .get(file.url.clone())
        .send()
        .await
        .map_err(|e| Failure::Transient(without_url(e)))?;
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Err(Failure::Transient(format!("HTTP {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Final(Error::InitFailed(format!(
            "download of {shown} failed: HTTP {status}"
        ))));
    }
    let mut out = tokio::fs::File::from_std(tmp);
    let mut hasher = Hasher::for_digest(&file.digest);
    let mut size = 0u64;
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Failure::Transient(without_url(e)))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        out.write_all(&chunk).await.map_err(|e| {
            Failure::Final(Error::InitFailed(format!(
                "download: cannot write {}: {e}",
                file.path.display()
            )))
        })?;
    }
    out.sync_all().await.map_err(|e| {
        Failure::Final(Error::InitFailed(format!(
            "download: cannot write {}: {e}",
            file.path.display()
        )))
    })?;
    Ok((size, hasher))
}

/// A reqwest error's text without the URL it carries.
fn without_url(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_strictly() {
        let hex64 = "a".repeat(64);
        assert!(matches!(
            Digest::parse(&format!("sha256:{hex64}")),
            Ok(Digest::Sha256(_))
        ));
        assert!(Digest::parse(&format!("sha512:{hex64}")).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&format!("md5:{hex64}")).is_err());
        assert!(Digest::parse(&hex64).is_err());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
    }

    #[test]
    fn plans_refuse_traversal_and_odd_schemes() {
        let file = |url: &str, path: &str| {
            wsd_proto::contentservice::file_download_initializer::FileInfo {
                url: url.into(),
                file_path: path.into(),
                digest: format!("sha256:{}", "0".repeat(64)),
            }
        };
        let req = |f| FileDownloadInitializer {
            files: vec![f],
            target_location: "/dl".into(),
        };
        assert!(plan(&req(file("http://h/x", "a/b.txt"))).is_ok());
        assert!(plan(&req(file("http://h/x", "../../etc/passwd"))).is_err());
        assert!(plan(&req(file("file:///etc/passwd", "x"))).is_err());
        assert!(plan(&req(file("http://h/x", ""))).is_err());
    }

    #[test]
    fn redaction_drops_credentials_and_query() {
        assert_eq!(
            crate::url_text::for_messages("https://u:secret@h.example/p/f?token=abc"),
            "https://h.example/p/f"
        );
    }
}
