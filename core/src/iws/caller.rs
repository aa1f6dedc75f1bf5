//! Who may call a workspace's socket: processes of that workspace's container, that is, in its
//! PID namespace or one nested below it (runtime spec, "The per-workspace socket"). Everyone else
//! gets PERMISSION_DENIED. The peer was taken as a pidfd when it connected, so a PID recycled
//! since then cannot pass for it.

use crate::call::Caller;
use crate::error::{Error, Result};
use crate::runtime::Container;
use crate::sys::namespaces;

pub fn check(caller: &Caller, container: &Container) -> Result<()> {
    let denied = || {
        Error::PermissionDenied(format!(
            "the caller is not a process of workspace {}'s container",
            caller.workspace
        ))
    };
    let peer_ns = caller.peer.pid_namespace().map_err(|_| denied())?;
    let inside = namespaces::is_within(peer_ns, container.pid_namespace_id()).map_err(|e| {
        tracing::warn!(workspace = %caller.workspace, error = %e, "cannot check a caller's PID namespace");
        denied()
    })?;
    if inside && caller.peer.is_alive() {
        Ok(())
    } else {
        Err(denied())
    }
}
