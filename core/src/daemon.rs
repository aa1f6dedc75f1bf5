//! The daemon handle: built from a [`Config`], it holds the services and the parts they share (the
//! configuration, the workspace store, the background tasks). Every surface reaches the services
//! through [`crate::dispatch`], never directly.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::background::Background;
use crate::config::Config;
use crate::content::ContentService;
use crate::error::{Error, Result};
use crate::iws::socket::Sockets;
use crate::iws::IwsService;
use crate::runtime::containerd::Discovery;
use crate::runtime::RuntimeService;
use crate::workspace::store::{Store, WorkingArea};

struct Services {
    config: Arc<Config>,
    store: Arc<Store>,
    background: Background,
    content: Arc<ContentService>,
    runtime: Arc<RuntimeService>,
    iws: Arc<IwsService>,
    /// Owned here: the store holds its observers only weakly.
    #[allow(dead_code)]
    sockets: Arc<Sockets>,
    /// Readiness checks registered besides the daemon's own, and probe state.
    health: crate::health::Health,
}

/// The workspace daemon. Cheap to clone; every clone is the same daemon.
#[derive(Clone)]
pub struct Daemon {
    services: Arc<Services>,
}

/// A daemon held by a part of itself (the workspace sockets dispatch to it).
#[derive(Clone)]
pub(crate) struct WeakDaemon(std::sync::Weak<Services>);

impl WeakDaemon {
    pub(crate) fn upgrade(&self) -> Option<Daemon> {
        self.0.upgrade().map(|services| Daemon { services })
    }
}

impl Daemon {
    /// Starts a daemon: creates the working area, reloads every workspace it holds (cleaning up
    /// those that were initializing) and starts housekeeping. Must run inside a tokio runtime, which
    /// then also runs the daemon's background work.
    pub async fn start(config: Config) -> Result<Daemon> {
        config.validate()?;
        let config = Arc::new(config);
        let area = config.working_area.clone();
        tokio::fs::create_dir_all(&area).await.map_err(|e| {
            Error::InvalidArgument(format!(
                "cannot create the working area (working_area): {}",
                e.kind()
            ))
        })?;
        // Probing the file system (and maybe enabling btrfs quotas) blocks: off the async threads.
        let (probe_area, quota_config) = (area.clone(), config.quota.clone());
        let quota = tokio::task::spawn_blocking(move || {
            crate::quota::Quota::probe(&probe_area, &quota_config)
        })
        .await
        .map_err(Error::internal)?;
        let store = Arc::new(Store::new(WorkingArea::new(area), Arc::new(quota)));
        let background = Background::default();
        // Creates the local storage folder and builds HTTP clients: off the async threads.
        let (c, s, b) = (config.clone(), store.clone(), background.clone());
        let content = tokio::task::spawn_blocking(move || ContentService::new(c, s, b))
            .await
            .map_err(Error::internal)??;
        let content = Arc::new(content);
        let runtime = Arc::new(RuntimeService::new(store.clone()));
        let iws = IwsService::new(
            config.clone(),
            store.clone(),
            runtime.clone(),
            background.clone(),
        );
        let sockets = Arc::new(Sockets::new(store.area().clone(), background.clone()));
        let discovery = Discovery::new(&config.runtime.containerd, store.clone(), runtime.clone());
        let daemon = Daemon {
            services: Arc::new(Services {
                config,
                store: store.clone(),
                background,
                content,
                runtime: runtime.clone(),
                iws: iws.clone(),
                sockets: sockets.clone(),
                health: crate::health::Health::default(),
            }),
        };
        sockets.set_daemon(WeakDaemon(Arc::downgrade(&daemon.services)));
        // Attachments first: a workspace's socket serves as soon as it exists.
        let runtime: std::sync::Weak<RuntimeService> = Arc::downgrade(&runtime);
        let iws: std::sync::Weak<IwsService> = Arc::downgrade(&iws);
        let sockets_events: std::sync::Weak<Sockets> = Arc::downgrade(&sockets);
        // The content service re-applies the storage quotas of reloaded workspaces.
        let content_events: std::sync::Weak<ContentService> =
            Arc::downgrade(&daemon.services.content);
        let mut observers: Vec<std::sync::Weak<dyn crate::workspace::store::Lifecycle>> =
            vec![runtime, iws, sockets_events, content_events];
        // Last: a workspace registered is attached once the others know it.
        if let Some(discovery) = &discovery {
            let discovery: std::sync::Weak<Discovery> = Arc::downgrade(discovery);
            observers.push(discovery);
        }
        store.observe(observers);
        let store = daemon.services.store.clone();
        let reloaded = tokio::task::spawn_blocking(move || store.reload())
            .await
            .map_err(Error::internal)
            .and_then(|r| {
                r.map_err(|e| {
                    Error::Internal(format!("cannot read the working area: {}", e.kind()))
                })
            });
        let reloaded = match reloaded {
            Ok(reloaded) => reloaded,
            Err(e) => {
                // Sockets of workspaces reloaded so far stop with the daemon that never started.
                daemon.services.background.shutdown(Duration::ZERO).await;
                return Err(e);
            }
        };
        tracing::info!(
            available = reloaded.available,
            wrapping_up = reloaded.wrapping_up,
            cleaned_up = reloaded.cleaned_up.len(),
            "working area reloaded"
        );
        daemon.start_housekeeping();
        daemon.services.content.start_garbage_collection();
        // Held by its task and its readiness check; the store holds it weakly.
        if let Some(discovery) = discovery {
            daemon.add_readiness_check(discovery.clone());
            let closing = daemon.services.background.closing();
            daemon.services.background.spawn(discovery.run(closing));
        }
        daemon.services.iws.start_sampler(Duration::from_secs(1));
        Ok(daemon)
    }

    pub fn config(&self) -> &Config {
        &self.services.config
    }

    pub(crate) fn content(&self) -> &Arc<ContentService> {
        &self.services.content
    }

    #[cfg(test)]
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.services.store
    }

    pub(crate) fn runtime(&self) -> &Arc<RuntimeService> {
        &self.services.runtime
    }

    pub(crate) fn iws(&self) -> &Arc<IwsService> {
        &self.services.iws
    }

    pub(crate) fn health(&self) -> &crate::health::Health {
        &self.services.health
    }

    /// Cancelled when shutdown begins: waits that run outside the daemon's tasks end on it.
    pub fn closing(&self) -> CancellationToken {
        self.services.background.closing()
    }

    /// Refuses new work, lets in-flight work finish for up to `grace`, and stops background tasks.
    /// Work still running after `grace` is abandoned; its workspaces stay recorded on disk
    /// (SETTING_UP ones are cleaned up at the next start).
    pub async fn shutdown(&self, grace: Duration) {
        self.services.background.shutdown(grace).await;
    }

    fn start_housekeeping(&self) {
        let interval = Duration::from_secs(self.config().limits.housekeeping_interval_secs.max(1));
        let me = self.clone();
        self.services
            .background
            .every(interval, "housekeeping", move || {
                me.housekeeping_pass().map(drop)
            });
    }

    /// One housekeeping pass (blocking): orphaned folders, expired outcome records, gauges.
    /// Returns the orphaned folders removed.
    pub(crate) fn housekeeping_pass(&self) -> std::io::Result<Vec<String>> {
        let max_age = Duration::from_secs(self.config().limits.orphan_max_age_secs);
        let store = &self.services.store;
        let removed = store.remove_orphans(max_age)?;
        self.services.content.housekeeping()?;
        if let Ok(stat) = nix::sys::statvfs::statvfs(store.area().root()) {
            let free = stat.blocks_available() as f64 * stat.fragment_size() as f64;
            metrics::gauge!("wsd_working_area_free_bytes").set(free);
        }
        metrics::gauge!("wsd_workspaces").set(store.len() as f64);
        Ok(removed)
    }
}
