//! The workspaces' own sockets, `<working_area>/<id>-daemon/daemon.sock`: created when a
//! workspace is registered (InitWorkspace, or a reload after a restart), removed with it. Each
//! serves the in-workspace services for that one workspace, in whatever process hosts core (the
//! server binary, or an embedded daemon inside Node, Go or C). Every connection carries its peer,
//! taken as a pidfd when it connects, so the handlers can check who is calling.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, OnceLock};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::background::Background;
use crate::call::Caller;
use crate::daemon::WeakDaemon;
use crate::grpc::DispatchService;
use crate::sync::Mutex;
use crate::sys::process::Pidfd;
use crate::workspace::store::{Lifecycle, WorkingArea, Workspace};

pub const SOCKET_NAME: &str = "daemon.sock";

pub(crate) struct Sockets {
    area: WorkingArea,
    background: Background,
    /// Set once the daemon exists (the sockets dispatch to it); weak, as the daemon holds this.
    daemon: OnceLock<WeakDaemon>,
    serving: Mutex<HashMap<String, CancellationToken>>,
}

impl Sockets {
    pub(crate) fn new(area: WorkingArea, background: Background) -> Sockets {
        Sockets {
            area,
            background,
            daemon: OnceLock::new(),
            serving: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn set_daemon(&self, daemon: WeakDaemon) {
        let _ = self.daemon.set(daemon);
    }

    /// Creates the socket of workspace `id` and starts serving it (replacing a stale one).
    fn serve(&self, id: &str) -> std::io::Result<()> {
        let dir = self.area.daemon_dir(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let path = dir.join(SOCKET_NAME);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        // Open to every process that can reach it: the caller check decides who may use it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let stop = CancellationToken::new();
        if let Some(old) = self.serving.lock().insert(id.to_string(), stop.clone()) {
            old.cancel();
        }
        let (workspace, daemon, closing) = (
            id.to_string(),
            self.daemon.get().cloned(),
            self.background.closing(),
        );
        self.background.spawn(async move {
            let ended = stop.clone();
            tokio::select! {
                _ = accept(listener, workspace, daemon, stop) => {}
                _ = ended.cancelled() => {}
                _ = closing.cancelled() => {}
            }
        });
        Ok(())
    }
}

/// Serves each connection of one workspace's socket on a task of its own.
/// Connections end with the socket (`stop`: the workspace is gone).
async fn accept(
    listener: UnixListener,
    workspace: String,
    daemon: Option<WeakDaemon>,
    stop: CancellationToken,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(workspace = %workspace, error = %e, "workspace socket: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(daemon) = daemon.as_ref().and_then(WeakDaemon::upgrade) else {
            return;
        };
        let peer = match peer_of(&stream) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::warn!(workspace = %workspace, error = %e, "workspace socket: cannot identify the peer; connection closed");
                continue;
            }
        };
        let caller = Caller {
            workspace: workspace.clone(),
            peer: Arc::new(peer),
        };
        let (stop, closing) = (stop.clone(), daemon.closing());
        tokio::spawn(async move {
            let service = DispatchService::for_caller(daemon, caller).map_request(
                |r: http::Request<hyper::body::Incoming>| r.map(tonic::body::Body::new),
            );
            let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "workspace socket connection ended");
                    }
                }
                _ = stop.cancelled() => {}
                _ = closing.cancelled() => {}
            }
        });
    }
}

/// The connected process, held as it was at connect time.
fn peer_of(stream: &UnixStream) -> std::io::Result<Pidfd> {
    let pidfd = getsockopt(stream, sockopt::PeerPidfd)?;
    let credentials = getsockopt(stream, sockopt::PeerCredentials)?;
    Ok(Pidfd::from_owned(pidfd, credentials.pid()))
}

impl Lifecycle for Sockets {
    fn registered(&self, ws: &Arc<Workspace>) {
        if let Err(e) = self.serve(&ws.id) {
            tracing::error!(id = %ws.id, error = %e, "cannot create the workspace's socket");
        }
    }

    fn removed(&self, id: &str) {
        if let Some(stop) = self.serving.lock().remove(id) {
            stop.cancel();
        }
        let _ = std::fs::remove_file(self.area.daemon_dir(id).join(SOCKET_NAME));
    }
}
