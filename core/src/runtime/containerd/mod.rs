//! Containerd discovery (runtime spec section 2): on a Kubernetes node the daemon finds workspace
//! containers itself. It lists workspace pod sandboxes and workspace containers, follows
//! containerd's events, and attaches and detaches workspaces through the same path as
//! AttachContainer / DetachContainer. When containerd goes away it reconnects with backoff and
//! lists everything again (events are not replayed), so nothing is attached twice and nothing
//! stale is kept. A container that appears before its workspace's InitWorkspace is attached when
//! the workspace is registered.

mod cgroups_path;
mod client;
mod index;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wsd_proto::containerd::services::containers::v1::Container as ContainerdContainer;
use wsd_proto::wsdaemon::{AttachContainerRequest, DetachContainerRequest};

use crate::call::CallContext;
use crate::config::ContainerdConfig;
use crate::health::ReadinessCheck;
use crate::runtime::RuntimeService;
use crate::sync::Mutex;
use crate::workspace::store::{Lifecycle, Store, Workspace};
use client::{CallError, Client, Event};
use index::{classify, Found, Index, Kind};

pub(crate) struct Discovery {
    config: ContainerdConfig,
    socket: PathBuf,
    store: Arc<Store>,
    runtime: Arc<RuntimeService>,
    index: Mutex<Index>,
    /// Containers discovery attached, by workspace: (generation, pid). Only these are detached
    /// when containerd no longer has them (an AttachContainer caller's are left alone).
    ours: Mutex<HashMap<String, (u64, i32)>>,
    /// Workspaces registered since: each is looked up in the index.
    registered: mpsc::UnboundedSender<String>,
    registrations: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// The connection while it is up and in sync (listed and following events).
    connected: Mutex<Option<Client>>,
    in_sync: AtomicBool,
}

impl Discovery {
    /// `None` when `runtime.containerd.socket` is not set.
    pub(crate) fn new(
        config: &ContainerdConfig,
        store: Arc<Store>,
        runtime: Arc<RuntimeService>,
    ) -> Option<Arc<Discovery>> {
        let socket = config.socket.clone()?;
        let (registered, registrations) = mpsc::unbounded_channel();
        Some(Arc::new(Discovery {
            config: config.clone(),
            socket,
            store,
            runtime,
            index: Mutex::new(Index::default()),
            ours: Mutex::new(HashMap::new()),
            registered,
            registrations: Mutex::new(Some(registrations)),
            connected: Mutex::new(None),
            in_sync: AtomicBool::new(false),
        }))
    }

    /// Follows containerd until `closing`: connects, lists, follows events; reconnects with
    /// backoff whenever the connection is lost.
    pub(crate) async fn run(self: Arc<Self>, closing: CancellationToken) {
        let Some(mut registrations) = self.registrations.lock().take() else {
            return;
        };
        let initial = Duration::from_millis(self.config.reconnect_initial_backoff_ms);
        let max = Duration::from_millis(self.config.reconnect_max_backoff_ms);
        let mut backoff = initial;
        let mut outage_logged = false;
        loop {
            let mut was_in_sync = false;
            let lost = tokio::select! {
                lost = self.session(&mut registrations, &mut was_in_sync) => lost,
                _ = closing.cancelled() => break,
            };
            self.in_sync.store(false, Ordering::Release);
            *self.connected.lock() = None;
            if was_in_sync {
                backoff = initial;
                outage_logged = false;
            }
            if outage_logged {
                tracing::debug!(error = %lost, "containerd still unreachable");
            } else {
                tracing::warn!(error = %lost, "lost containerd; reconnecting with backoff");
                outage_logged = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = closing.cancelled() => break,
            }
            backoff = (backoff * 2).min(max);
        }
        tracing::debug!("containerd discovery stopped");
    }

    /// One connection: returns why it ended.
    async fn session(
        &self,
        registrations: &mut mpsc::UnboundedReceiver<String>,
        in_sync: &mut bool,
    ) -> String {
        let timeout = Duration::from_secs(5);
        let client =
            match Client::connect(self.socket.clone(), &self.config.namespace, timeout).await {
                Ok(client) => client,
                Err(e) => return e.to_string(),
            };
        // Subscribed before listing, so that what changes while the lists are read arrives as
        // events. On its own task: containerd answers a subscription only with its first event.
        let (sender, mut events) = mpsc::channel(256);
        let mut follower = AbortOnDrop(tokio::spawn(follow(
            client.clone(),
            client::event_filters(&self.config.namespace),
            sender,
        )));
        tokio::task::yield_now().await;
        if let Err(e) = self.resync(&client).await {
            return format!("cannot list containers: {e}");
        }
        let version = client.version().await.unwrap_or_default();
        *self.connected.lock() = Some(client.clone());
        self.in_sync.store(true, Ordering::Release);
        *in_sync = true;
        tracing::info!(
            version = %version,
            namespace = %self.config.namespace,
            "following containerd"
        );
        // Listing again now and then repairs what a subscription that started late missed.
        let every = Duration::from_secs(self.config.resync_interval_secs);
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        if let Err(e) = self.handle(&client, event).await {
                            return e.to_string();
                        }
                    }
                    None => return (&mut follower.0).await.unwrap_or_else(|e| e.to_string()),
                },
                Some(id) = registrations.recv() => self.reconcile(&id).await,
                _ = resync.tick() => {
                    if let Err(e) = self.resync(&client).await {
                        return format!("cannot list containers: {e}");
                    }
                }
            }
        }
    }

    /// Lists sandboxes, then workspace containers, replaces the index with what containerd has
    /// now, and brings every affected workspace's attachment in line.
    async fn resync(&self, client: &Client) -> Result<(), CallError> {
        let labels = &self.config.labels;
        let sandboxes = client
            .list(client::label_filter(&labels.kind, "sandbox"))
            .await?;
        let containers = client
            .list(client::label_filter(
                &labels.container_name,
                &labels.workspace_container_name,
            ))
            .await?;
        let mut index = Index::default();
        for sandbox in &sandboxes {
            if let Kind::Sandbox { pod, workspace } = classify(&sandbox.labels, labels) {
                index.put_sandbox(&sandbox.id, pod, workspace);
            }
        }
        for container in &containers {
            if let Kind::WorkspaceContainer { pod } = classify(&container.labels, labels) {
                let pid = client.running_pid(&container.id).await?;
                index.put_container(&container.id, found(container, pod, pid));
            }
        }
        let mut affected = index.workspaces();
        *self.index.lock() = index;
        affected.extend(self.ours.lock().keys().cloned());
        affected.extend(
            self.store
                .all()
                .into_iter()
                .filter(|ws| ws.record().container.is_some())
                .map(|ws| ws.id.clone()),
        );
        tracing::info!(
            sandboxes = sandboxes.len(),
            containers = containers.len(),
            "listed containerd's workspace pods"
        );
        self.reconcile_all(affected).await;
        Ok(())
    }

    async fn handle(&self, client: &Client, event: Event) -> Result<(), CallError> {
        let affected = match event {
            Event::ContainerCreated(id) => self.refresh(client, &id).await?,
            Event::TaskChanged(id) => {
                // Task events of other containers (or of sandboxes) change nothing here.
                if !self.index.lock().is_workspace_container(&id) {
                    return Ok(());
                }
                let pid = client.running_pid(&id).await?;
                self.index.lock().set_pid(&id, pid).unwrap_or_default()
            }
            Event::ContainerDeleted(id) => self.index.lock().remove(&id),
            Event::Other => BTreeSet::new(),
        };
        self.reconcile_all(affected).await;
        Ok(())
    }

    /// Reads container `id` again; returns the workspaces affected.
    async fn refresh(&self, client: &Client, id: &str) -> Result<BTreeSet<String>, CallError> {
        let container = match client.container(id).await {
            Ok(container) => container,
            Err(CallError::NotFound) => return Ok(self.index.lock().remove(id)),
            Err(e) => return Err(e),
        };
        Ok(match classify(&container.labels, &self.config.labels) {
            Kind::Sandbox { pod, workspace } => self.index.lock().put_sandbox(id, pod, workspace),
            Kind::WorkspaceContainer { pod } => {
                let pid = client.running_pid(id).await?;
                let found = found(&container, pod, pid);
                self.index.lock().put_container(id, found)
            }
            Kind::Other => BTreeSet::new(),
        })
    }

    async fn reconcile_all(&self, workspaces: BTreeSet<String>) {
        for id in workspaces {
            self.reconcile(&id).await;
        }
    }

    /// Attaches the container the index wants for workspace `id`, or detaches the one discovery
    /// attached when there is none. A workspace not registered yet waits for its registration.
    async fn reconcile(&self, id: &str) {
        let Some(ws) = self.store.get(id) else {
            return;
        };
        let wanted = self.index.lock().wanted(id);
        let current = self.runtime.container(&ws).map(|c| c.pid());
        match wanted {
            Some(wanted) => {
                let pid = i32::try_from(wanted.pid).unwrap_or(i32::MAX);
                if current != Some(pid) {
                    let request = AttachContainerRequest {
                        id: id.into(),
                        pid: i64::from(wanted.pid),
                        cgroup_path: wanted.cgroup_path,
                    };
                    let attached = self
                        .runtime
                        .clone()
                        .attach_container(request, CallContext::default())
                        .await;
                    if let Err(e) = attached {
                        tracing::warn!(id, container = %wanted.container, error = %e,
                            "cannot attach the workspace container found through containerd");
                        return;
                    }
                    tracing::info!(id, container = %wanted.container, pid,
                        "workspace container found through containerd");
                }
                self.ours.lock().insert(id.into(), (ws.generation, pid));
            }
            None => {
                let ours = self
                    .ours
                    .lock()
                    .get(id)
                    .filter(|(generation, _)| *generation == ws.generation)
                    .map(|(_, pid)| *pid);
                // The attached process is gone but still recorded: stale, whoever attached it.
                let stale_record = current.is_none() && ws.record().container.is_some();
                if !(stale_record || (current.is_some() && current == ours)) {
                    return;
                }
                let request = DetachContainerRequest { id: id.into() };
                let detached = self
                    .runtime
                    .clone()
                    .detach_container(request, CallContext::default())
                    .await;
                match detached {
                    Ok(_) => {
                        self.ours.lock().remove(id);
                        tracing::info!(id, "workspace container gone from containerd");
                    }
                    Err(e) => {
                        tracing::warn!(id, error = %e, "cannot detach the workspace container")
                    }
                }
            }
        }
    }
}

/// Forwards containerd's events until the stream ends; returns why it ended.
async fn follow(client: Client, filters: Vec<String>, events: mpsc::Sender<Event>) -> String {
    let mut stream = match client.subscribe(filters).await {
        Ok(stream) => stream,
        Err(e) => return format!("cannot follow events: {e}"),
    };
    loop {
        match stream.message().await {
            Ok(Some(envelope)) => {
                if events.send(Event::of(&envelope)).await.is_err() {
                    return "no longer followed".into();
                }
            }
            Ok(None) => return "containerd ended the event stream".into(),
            Err(status) => return format!("event stream failed: {}", status.message()),
        }
    }
}

/// A task that ends with the session that started it.
struct AbortOnDrop(tokio::task::JoinHandle<String>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn found(container: &ContainerdContainer, pod: index::Pod, pid: Option<u32>) -> Found {
    let created = container
        .created_at
        .as_ref()
        .map(|t| (t.seconds, t.nanos))
        .unwrap_or_default();
    Found {
        pod,
        pid,
        cgroup_path: cgroups_path_of(container),
        created,
    }
}

/// The cgroup in the container's OCI spec (`linux.cgroupsPath`), expanded; empty when there is
/// none (the attach then reads the process's own cgroup).
fn cgroups_path_of(container: &ContainerdContainer) -> String {
    let Some(spec) = &container.spec else {
        return String::new();
    };
    let path = serde_json::from_slice::<serde_json::Value>(&spec.value)
        .ok()
        .and_then(|spec| {
            spec.get("linux")?
                .get("cgroupsPath")?
                .as_str()
                .map(str::to_string)
        })
        .unwrap_or_default();
    cgroups_path::expand(&path).unwrap_or_else(|| {
        if !path.is_empty() {
            tracing::warn!(container = %container.id, cgroups_path = %path,
                "unrecognised cgroupsPath; using the process's own cgroup");
        }
        String::new()
    })
}

/// Readiness: containerd serves when discovery is connected, in sync, and containerd answers now.
impl ReadinessCheck for Discovery {
    fn name(&self) -> &'static str {
        "containerd"
    }

    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let client = self.connected.lock().clone();
            let Some(client) = client.filter(|_| self.in_sync.load(Ordering::Acquire)) else {
                return Err("not connected to containerd (reconnecting)".into());
            };
            match client.version().await {
                Ok(version) => Ok(format!("following containerd {version}")),
                Err(e) => Err(format!("containerd does not answer: {e}")),
            }
        })
    }
}

impl Lifecycle for Discovery {
    fn registered(&self, ws: &Arc<Workspace>) {
        // The receiver lives as long as the discovery runs; after that nothing needs telling.
        let _ = self.registered.send(ws.id.clone());
    }

    fn removed(&self, ws: &Workspace) {
        let mut ours = self.ours.lock();
        if ours
            .get(&ws.id)
            .is_some_and(|(generation, _)| *generation == ws.generation)
        {
            ours.remove(&ws.id);
        }
    }
}
