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
    /// By workspace id: the generation of the workspace served, and what stops its socket.
    serving: Mutex<HashMap<String, (u64, CancellationToken)>>,
}

/// Connections one workspace's socket serves at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 64;

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

    /// Creates the socket of workspace `ws` and starts serving it (replacing a stale one).
    fn serve(&self, ws: &Workspace) -> std::io::Result<()> {
        let id = ws.id.as_str();
        let dir = self.area.daemon_dir(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        // The folder is mounted into the container, whose root could plant a symlink there: the
        // socket is made and opened up (0777: the caller check decides who may use it) in a
        // folder of the daemon's own, then renamed into place, which never follows a symlink.
        let private = self.area.root().join(".sockets");
        std::fs::create_dir_all(&private)?;
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700))?;
        let staged = private.join(format!("{id}.sock"));
        match std::fs::remove_file(&staged) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o777))?;
        std::fs::rename(&staged, dir.join(SOCKET_NAME))?;
        listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(listener)?;
        let stop = CancellationToken::new();
        let replaced = self
            .serving
            .lock()
            .insert(id.to_string(), (ws.generation, stop.clone()));
        if let Some((_, old)) = replaced {
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
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
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
            let _slot = slot;
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
        if let Err(e) = self.serve(ws) {
            tracing::error!(id = %ws.id, error = %e, "cannot create the workspace's socket");
        }
    }

    /// Stops serving; the socket file went with the workspace's files.
    fn removed(&self, ws: &Workspace) {
        let mut serving = self.serving.lock();
        if serving
            .get(&ws.id)
            .is_some_and(|(generation, _)| *generation == ws.generation)
        {
            if let Some((_, stop)) = serving.remove(&ws.id) {
                stop.cancel();
            }
        }
    }
}
