//! SetupPairVeths (behaviour spec, InWorkspaceService): a veth pair between the workspace
//! container's network namespace and the network namespace of a process in it (an inner one,
//! e.g. of a user-namespaced workspace), as Gitpod's `nsinsider setup-pair-veths` makes it:
//!
//! - `veth0` in the container with the first host address of `iws.network.cidr` (10.0.5.1/30),
//!   `ceth0` in the inner namespace with the second (10.0.5.2/30), a default route there via the
//!   first, and loopback up; both ends take the MTU of the way out;
//! - IPv4 forwarding on in the container's namespace;
//! - one nftables table of ours (`table ip wsd`) there: the inner network masqueraded on its way
//!   out, and TCP arriving from outside (`iws.network.outer_interface`, or every interface but
//!   loopback and the pair) forwarded to the inner address, every port (so from outside, the
//!   container's own TCP listeners are reached no more: the workspace lives in the inner one).
//!
//! Idempotent: a second call keeps the pair, sets exactly one address per end and replaces the
//! table whole. A call for another inner namespace (the old one was replaced) makes the pair
//! anew. [`remove_network`] undoes it for Teardown; forwarding is left on (its earlier value is
//! not known, and it ends with the container's namespace).
//!
//! Files: `links` (rtnetlink: the pair, addresses, routes), `nat` (the nft table).

mod links;
mod nat;

use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use nix::sched::CloneFlags;
use wsd_proto::iws::{SetupPairVethsRequest, SetupPairVethsResponse};

use super::mounts::Place;
use super::{pid, IwsService};
use crate::call::CallContext;
use crate::config::{Ipv4Network, NetworkConfig};
use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::sys::namespaces::{run_inside, NamespaceId};

/// The container's end of the pair.
pub const CONTAINER_END: &str = "veth0";
/// The inner namespace's end of the pair.
pub const INNER_END: &str = "ceth0";

/// One pair change at a time in this daemon: two calls for one workspace would race on the
/// same names, and the changes are short.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The pair as the configuration describes it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub network: Ipv4Network,
    /// None: every interface but loopback and the pair.
    pub outer: Option<String>,
}

impl Plan {
    pub fn of(config: &NetworkConfig) -> Result<Plan> {
        // Checked when the configuration was loaded; this only keeps the error typed.
        let bad = |e: String| Error::Internal(format!("invalid configuration: {e}"));
        Ok(Plan {
            network: config.network().map_err(bad)?,
            outer: config.outer_interface().map_err(bad)?.map(str::to_string),
        })
    }

    pub fn container_address(&self) -> Ipv4Addr {
        self.network.host(1)
    }

    pub fn inner_address(&self) -> Ipv4Addr {
        self.network.host(2)
    }
}

fn kernel(what: &str, e: std::io::Error) -> Error {
    Error::KernelRefused(format!("{what}: {e}"))
}

fn identity(ns: &OwnedFd) -> Result<NamespaceId> {
    NamespaceId::of(ns.as_fd()).map_err(Error::internal)
}

/// The network namespace of the container's init; None once it stopped. Opens a `/proc` entry.
fn container_namespace(container: &Container) -> Option<OwnedFd> {
    let ns = std::fs::File::open(format!("/proc/{}/ns/net", container.pid())).ok()?;
    // The entry belonged to the container's init if it still runs now.
    container.is_running().then(|| ns.into())
}

/// The daemon's own network namespace. Blocking thread pools never enter another one.
fn own_namespace() -> Result<NamespaceId> {
    let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(Error::internal)?;
    NamespaceId::of(own.as_fd()).map_err(Error::internal)
}

/// The container's and the target's network namespaces, checked to be two others than the
/// daemon's. Blocking (reads `/proc`).
fn namespaces(container: &Container, id: &str, target: i64) -> Result<(OwnedFd, OwnedFd)> {
    let own = own_namespace()?;
    let outer = container_namespace(container).ok_or_else(|| Error::NoContainer(id.into()))?;
    if identity(&outer)? == own {
        return Err(Error::KernelRefused(format!(
            "the container of workspace {id} shares the daemon's network namespace: \
             SetupPairVeths needs a container with a network namespace of its own"
        )));
    }
    let process = pid::translate(container, target)?;
    let inner = Place::network_namespace(&process)?;
    let inner_id = identity(&inner)?;
    if inner_id == identity(&outer)? {
        return Err(Error::InvalidArgument(format!(
            "pid {target} is in the container's own network namespace: SetupPairVeths connects \
             the container to another one, so give a process of that (e.g. started with \
             `unshare --net`)"
        )));
    }
    if inner_id == own {
        return Err(Error::InvalidArgument(format!(
            "pid {target} is in the daemon's network namespace, not one of the container's"
        )));
    }
    Ok((outer, inner))
}

/// Runs `work` on a namespace thread in the network namespace `ns`, with a current-thread
/// runtime (for the netlink connections made there) and a route netlink handle of `ns`.
async fn inside<T: Send + 'static>(
    ns: OwnedFd,
    work: impl FnOnce(&tokio::runtime::Runtime, rtnetlink::Handle) -> Result<T> + Send + 'static,
) -> Result<T> {
    run_inside(vec![(ns, CloneFlags::CLONE_NEWNET)], move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = runtime.block_on(async { links::connect() })?;
        Ok(work(&runtime, handle))
    })
    .await
    .map_err(|e| kernel("cannot work in the container's network namespace", e))?
}

/// Sets the pair up between the namespaces `outer` (the container's) and `inner`.
async fn set_up(plan: Plan, nft: nat::Nft, outer: OwnedFd, inner: OwnedFd) -> Result<()> {
    let for_nft = outer.try_clone().map_err(Error::internal)?;
    inside(outer, move |runtime, container| {
        // /proc/sys/net is the network namespace of the thread that opens it: this one's.
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| kernel("cannot turn on IP forwarding in the container", e))?;
        // A second socket, in the inner namespace; this thread ends with the work.
        nix::sched::setns(&inner, CloneFlags::CLONE_NEWNET)
            .map_err(|e| kernel("cannot enter the target's network namespace", e.into()))?;
        runtime.block_on(async {
            let inside = links::connect()
                .map_err(|e| kernel("cannot talk to the target's network namespace", e))?;
            links::pair(&container, &inside, inner.as_fd(), &plan).await
        })?;
        nft.apply(for_nft, &plan)
    })
    .await
}

impl IwsService {
    pub(crate) async fn setup_pair_veths(
        self: Arc<Self>,
        req: SetupPairVethsRequest,
        ctx: CallContext,
    ) -> Result<SetupPairVethsResponse> {
        let target = self.target(&ctx)?;
        let plan = Plan::of(&self.config.iws.network)?;
        let me = self.clone();
        // Background work: a caller that goes away half-way does not stop it half-way.
        let work = async move {
            let _turn = me.turn(&target.workspace.id).await;
            let _alone = ONE_AT_A_TIME.lock().await;
            let container = target.container.clone();
            let id = target.workspace.id.clone();
            // Everything checked before anything changes.
            let (nft, outer, inner) = tokio::task::spawn_blocking(move || {
                let nft = nat::Nft::find()?;
                let (outer, inner) = namespaces(&container, &id, req.pid)?;
                Ok::<_, Error>((nft, outer, inner))
            })
            .await
            .map_err(Error::internal)??;
            set_up(plan.clone(), nft, outer, inner).await?;
            tracing::info!(id = %target.workspace.id, pid = req.pid, network = %plan.network, "pair of veths set up");
            Ok(())
        };
        self.background.detached(work).await?;
        Ok(SetupPairVethsResponse {})
    }
}

/// Undoes SetupPairVeths in `container` (for Teardown): removes the pair and our nft table.
/// Nothing there (never set up, undone already, the container stopped) is success. Forwarding
/// stays on.
pub(crate) async fn remove_network(container: Arc<Container>) -> Result<()> {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (outer, nft) =
        tokio::task::spawn_blocking(move || (container_namespace(&container), nat::Nft::find()))
            .await
            .map_err(Error::internal)?;
    let Some(outer) = outer else {
        return Ok(());
    };
    let for_nft = outer.try_clone().map_err(Error::internal)?;
    inside(outer, move |runtime, handle| {
        runtime.block_on(links::remove(&handle))?;
        match nft {
            Ok(nft) => nft.remove(for_nft),
            // Without nft no table of ours can have been made by this machine's daemon.
            Err(_) => {
                tracing::warn!("nft is not installed: no NAT table to remove");
                Ok(())
            }
        }
    })
    .await
}
