//! The pair itself over rtnetlink: the veth pair, its addresses, the inner default route and
//! loopback. Each handle talks to the network namespace its socket was made in, whichever thread
//! drives it; the sockets are made on a namespace thread (see `super::inside`).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use futures::TryStreamExt;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::nsid::{NsidAttribute, NsidMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::{Plan, CONTAINER_END, INNER_END};
use crate::error::{Error, Result};

/// A route netlink handle on a socket of the calling thread's network namespace, its connection
/// driven on the current runtime.
pub fn connect() -> std::io::Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(connection);
    Ok(handle)
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(-m.raw_code()),
        _ => None,
    }
}

/// The kernel's refusal of `what`.
fn refused(what: &str, e: rtnetlink::Error) -> Error {
    let why = match &e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().to_string(),
        other => other.to_string(),
    };
    Error::KernelRefused(format!("cannot {what}: {why}"))
}

/// The link named `name`, if there is one.
async fn find(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(refused(&format!("look up interface {name}"), e)),
    }
}

fn is_veth(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}

/// The peer of a veth: its index and the id of its network namespace as the link's own
/// namespace numbers it (none: the same namespace).
fn peer_of(link: &LinkMessage) -> (Option<u32>, Option<i32>) {
    let mut peer = (None, None);
    for a in &link.attributes {
        match a {
            LinkAttribute::Link(index) => peer.0 = Some(*index),
            LinkAttribute::LinkNetNsId(id) => peer.1 = Some(*id),
            _ => {}
        }
    }
    peer
}

/// The id that the handle's namespace gives the network namespace `ns`, if it gave one.
async fn nsid_of(handle: &Handle, ns: BorrowedFd<'_>) -> Result<Option<i32>> {
    let mut message = NsidMessage::default();
    message.attributes = vec![NsidAttribute::Fd(ns.as_raw_fd() as u32)];
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetNsId(message));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
    let mut handle = handle.clone();
    let mut answers = handle
        .request(request)
        .map_err(|e| refused("ask for the namespace id", e))?;
    use futures::StreamExt;
    while let Some(answer) = answers.next().await {
        match answer.payload {
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(refused(
                    "ask for the namespace id",
                    rtnetlink::Error::NetlinkError(e),
                ))
            }
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNsId(m)) => {
                let id = m.attributes.iter().find_map(|a| match a {
                    NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                    _ => None,
                });
                return Ok(id);
            }
            _ => {}
        }
    }
    Ok(None)
}

/// Makes the pair between the handles' namespaces: `container` in the workspace container's,
/// `inner` in the target's (`inner_ns`). An existing pair to this target is kept; one to another
/// namespace (the inner one was replaced) is removed first.
pub async fn pair(
    container: &Handle,
    inner: &Handle,
    inner_ns: BorrowedFd<'_>,
    plan: &Plan,
) -> Result<()> {
    let ours = match find(container, CONTAINER_END).await? {
        Some(link) if !is_veth(&link) => {
            return Err(Error::KernelRefused(format!(
                "the container has an interface named {CONTAINER_END} that is not a veth: \
                 SetupPairVeths needs that name for its pair"
            )))
        }
        Some(link) => {
            let (peer, peer_ns) = peer_of(&link);
            let target_id = nsid_of(container, inner_ns).await?;
            let peer_there = match find(inner, INNER_END).await? {
                Some(end) => Some(end.header.index) == peer,
                None => false,
            };
            if peer_ns.is_some() && peer_ns == target_id && peer_there {
                true
            } else {
                delete(container, link.header.index).await?;
                false
            }
        }
        None => false,
    };
    if !ours {
        create(container, inner_ns).await?;
    }
    let prefix = plan.network.prefix;
    let mtu = outer_mtu(container, plan.outer.as_deref()).await?;
    let outer_end = index_of(container, CONTAINER_END).await?;
    set_address(container, outer_end, plan.container_address(), prefix).await?;
    up(container, outer_end, mtu).await?;
    let inner_end = index_of(inner, INNER_END).await?;
    set_address(inner, inner_end, plan.inner_address(), prefix).await?;
    up(inner, inner_end, mtu).await?;
    up(inner, index_of(inner, "lo").await?, None).await?;
    let default = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(plan.container_address())
        .output_interface(inner_end)
        .build();
    inner
        .route()
        .add(default)
        .replace()
        .execute()
        .await
        .map_err(|e| refused("set the default route of the inner namespace", e))
}

async fn index_of(handle: &Handle, name: &str) -> Result<u32> {
    find(handle, name)
        .await?
        .map(|l| l.header.index)
        .ok_or_else(|| {
            Error::KernelRefused(format!("interface {name} vanished while being set up"))
        })
}

async fn create(container: &Handle, inner_ns: BorrowedFd<'_>) -> Result<()> {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(INNER_END)
        .setns_by_fd(inner_ns.as_raw_fd())
        .build();
    let pair = LinkVeth::new(CONTAINER_END, INNER_END)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    match container.link().add(pair).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::EEXIST) => Err(Error::KernelRefused(format!(
            "the target's network namespace has an interface named {INNER_END} already, not \
             paired with the container: SetupPairVeths needs that name for its pair"
        ))),
        Err(e) => Err(refused("create the veth pair", e)),
    }
}

async fn delete(handle: &Handle, index: u32) -> Result<()> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(refused("remove the veth pair", e)),
    }
}

/// Removes the container's end of the pair (the other end goes with it); none is success.
pub async fn remove(container: &Handle) -> Result<()> {
    match find(container, CONTAINER_END).await? {
        Some(link) if is_veth(&link) => delete(container, link.header.index).await,
        _ => Ok(()),
    }
}

/// The MTU the pair takes from the way out, as Gitpod's does: the outer interface's, or the
/// smallest of the container's interfaces but loopback and the pair (inner packets leave through
/// one of them). None: nothing to go by, the kernel's default stays.
async fn outer_mtu(container: &Handle, outer: Option<&str>) -> Result<Option<u32>> {
    let links: Vec<LinkMessage> = container
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(|e| refused("list the container's interfaces", e))?;
    let mut smallest: Option<u32> = None;
    for link in &links {
        let mut name = None;
        let mut mtu = None;
        for a in &link.attributes {
            match a {
                LinkAttribute::IfName(n) => name = Some(n.as_str()),
                LinkAttribute::Mtu(m) => mtu = Some(*m),
                _ => {}
            }
        }
        let (Some(name), Some(mtu)) = (name, mtu) else {
            continue;
        };
        let counts = match outer {
            Some(outer) => name == outer,
            None => name != "lo" && name != CONTAINER_END,
        };
        if counts {
            smallest = Some(smallest.map_or(mtu, |s| s.min(mtu)));
        }
    }
    Ok(smallest)
}

async fn up(handle: &Handle, index: u32, mtu: Option<u32>) -> Result<()> {
    let mut message = LinkUnspec::new_with_index(index).up();
    if let Some(mtu) = mtu {
        message = message.mtu(mtu);
    }
    let message = message.build();
    handle
        .link()
        .set(message)
        .execute()
        .await
        .map_err(|e| refused("bring an interface of the pair up", e))
}

fn ipv4_of(message: &AddressMessage) -> Option<Ipv4Addr> {
    let mut found = None;
    for a in &message.attributes {
        match a {
            AddressAttribute::Local(IpAddr::V4(ip)) => return Some(*ip),
            AddressAttribute::Address(IpAddr::V4(ip)) => found = Some(*ip),
            _ => {}
        }
    }
    found
}

/// Gives the link `index` exactly the IPv4 address `address/prefix`: others are removed, so a
/// changed configuration does not leave the old one behind.
async fn set_address(handle: &Handle, index: u32, address: Ipv4Addr, prefix: u8) -> Result<()> {
    let present: Vec<AddressMessage> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(|e| refused("list the addresses of the pair", e))?;
    let mut have = false;
    for message in present {
        if message.header.family != AddressFamily::Inet || message.header.index != index {
            continue;
        }
        if ipv4_of(&message) == Some(address) && message.header.prefix_len == prefix {
            have = true;
            continue;
        }
        handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(|e| refused("remove an old address of the pair", e))?;
    }
    if have {
        return Ok(());
    }
    handle
        .address()
        .add(index, IpAddr::V4(address), prefix)
        .execute()
        .await
        .map_err(|e| refused("give the pair its address", e))
}
