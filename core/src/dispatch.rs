//! The one table of operations, keyed by full gRPC method path. Every surface routes through it with
//! protobuf bytes in and out, so an operation added here appears on every surface (gRPC server,
//! C ABI with Go, Node addon) without new binding code. Each method names the service that owns
//! it; the table is the only caller of the services' operations.

use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use prost::Message;
use wsd_proto::iws as iws_pb;
use wsd_proto::wsdaemon as pb;

use crate::call::CallContext;
use crate::daemon::Daemon;
use crate::error::{Error, Result};

type Handler = fn(Daemon, Bytes, CallContext) -> BoxFuture<'static, Result<Vec<u8>>>;

/// One operation of the API.
pub struct Method {
    /// Full gRPC path, e.g. `/wsdaemon.WorkspaceContentService/InitWorkspace`.
    pub path: &'static str,
    /// Full service name, e.g. `wsdaemon.WorkspaceContentService`.
    pub service: &'static str,
    /// Method name, e.g. `InitWorkspace`.
    pub name: &'static str,
    handler: Handler,
}

impl Method {
    /// Served only on a workspace's own socket: the in-workspace services (`iws.*`) act for a
    /// caller inside a workspace container, which only those sockets know.
    pub fn socket_only(&self) -> bool {
        self.service.starts_with("iws.")
    }
}

fn decode<M: Message + Default>(path: &str, bytes: Bytes) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::BadRequest {
        method: path.to_string(),
        reason: e.to_string(),
    })
}

macro_rules! methods {
    ($( $service:literal / $name:literal => $owner:ident.$op:ident($req:ty) ),* $(,)?) => {
        /// Every operation served, in the order of the proto files.
        pub static METHODS: &[Method] = &[$(
            Method {
                path: concat!("/", $service, "/", $name),
                service: $service,
                name: $name,
                handler: {
                    fn handle(daemon: Daemon, request: Bytes, ctx: CallContext) -> BoxFuture<'static, Result<Vec<u8>>> {
                        Box::pin(async move {
                            let request: $req = decode(concat!("/", $service, "/", $name), request)?;
                            let owner = daemon.$owner().clone();
                            Ok(owner.$op(request, ctx).await?.encode_to_vec())
                        })
                    }
                    handle
                },
            }
        ),*];
    };
}

methods! {
    "wsdaemon.WorkspaceContentService" / "InitWorkspace" => content.init_workspace(pb::InitWorkspaceRequest),
    "wsdaemon.WorkspaceContentService" / "WaitForInit" => content.wait_for_init(pb::WaitForInitRequest),
    "wsdaemon.WorkspaceContentService" / "IsWorkspaceExists" => content.is_workspace_exists(pb::IsWorkspaceExistsRequest),
    "wsdaemon.WorkspaceContentService" / "TakeSnapshot" => content.take_snapshot(pb::TakeSnapshotRequest),
    "wsdaemon.WorkspaceContentService" / "DisposeWorkspace" => content.dispose_workspace(pb::DisposeWorkspaceRequest),
    "wsdaemon.WorkspaceContentService" / "BackupWorkspace" => content.backup_workspace(pb::BackupWorkspaceRequest),
    "wsdaemon.WorkspaceContentExt" / "SnapshotStatus" => content.snapshot_status(pb::SnapshotStatusRequest),
    "wsdaemon.WorkspaceContentExt" / "WorkspaceState" => content.workspace_state(pb::WorkspaceStateRequest),
    "wsdaemon.WorkspaceContentExt" / "Progress" => content.progress(pb::ProgressRequest),
    "wsdaemon.WorkspaceRuntime" / "AttachContainer" => runtime.attach_container(pb::AttachContainerRequest),
    "wsdaemon.WorkspaceRuntime" / "DetachContainer" => runtime.detach_container(pb::DetachContainerRequest),
    "iws.InWorkspaceService" / "PrepareForUserNS" => iws.prepare_for_user_ns(iws_pb::PrepareForUserNsRequest),
    "iws.InWorkspaceService" / "Teardown" => iws.teardown(iws_pb::TeardownRequest),
    "iws.InWorkspaceService" / "WipingTeardown" => iws.wiping_teardown(iws_pb::WipingTeardownRequest),
    "iws.InWorkspaceService" / "WriteIDMapping" => iws.write_id_mapping(iws_pb::WriteIdMappingRequest),
    "iws.InWorkspaceService" / "EvacuateCGroup" => iws.evacuate_cgroup(iws_pb::EvacuateCGroupRequest),
    "iws.InWorkspaceService" / "MountProc" => iws.mount_proc(iws_pb::MountProcRequest),
    "iws.InWorkspaceService" / "UmountProc" => iws.umount_proc(iws_pb::UmountProcRequest),
    "iws.InWorkspaceService" / "MountSysfs" => iws.mount_sysfs(iws_pb::MountProcRequest),
    "iws.InWorkspaceService" / "UmountSysfs" => iws.umount_sysfs(iws_pb::UmountProcRequest),
    "iws.InWorkspaceService" / "MountNfs" => iws.mount_nfs(iws_pb::MountNfsRequest),
    "iws.InWorkspaceService" / "UmountNfs" => iws.umount_nfs(iws_pb::UmountNfsRequest),
    "iws.InWorkspaceService" / "SetupPairVeths" => iws.setup_pair_veths(iws_pb::SetupPairVethsRequest),
    "iws.InWorkspaceService" / "WorkspaceInfo" => iws.workspace_info(iws_pb::WorkspaceInfoRequest),
    "iws.WorkspaceInfoService" / "WorkspaceInfo" => iws.workspace_info(iws_pb::WorkspaceInfoRequest),
}

/// The method served at `path`, if any.
pub fn find(path: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.path == path)
}

/// The server-streaming methods of the contract, each with the long poll it streams. In-process
/// surfaces call the long poll (unary, like every other call); the gRPC server streams it.
const STREAMS: &[(&str, &str)] = &[(
    "/wsdaemon.WorkspaceContentExt/WatchProgress",
    "/wsdaemon.WorkspaceContentExt/Progress",
)];

/// The long poll that the streaming method at `path` streams, if it is one.
pub fn streamed_by(path: &str) -> Option<&'static str> {
    STREAMS
        .iter()
        .find(|(stream, _)| *stream == path)
        .map(|(_, poll)| *poll)
}

impl Daemon {
    /// The responses of the server-streaming method at `path` (see [`streamed_by`]), or `None`
    /// when `path` is not one. Each item is an encoded response; the stream ends after the last.
    pub fn stream(
        &self,
        path: &str,
        request: Bytes,
        ctx: CallContext,
    ) -> Option<futures::stream::BoxStream<'static, Result<Vec<u8>>>> {
        let poll = streamed_by(path)?;
        Some(crate::content::progress::watch(
            self.clone(),
            poll,
            request,
            ctx,
        ))
    }
}

impl Daemon {
    /// Calls the operation at `path` with an encoded request and returns the encoded response.
    /// Records per-method request counts and latencies.
    pub async fn call(&self, path: &str, request: Bytes, ctx: CallContext) -> Result<Vec<u8>> {
        let started = Instant::now();
        let (label, result) = match find(path) {
            // A workspace's socket is for the in-workspace services of that workspace only.
            Some(method) if ctx.caller.is_some() && !method.socket_only() => (
                method.path,
                Err(Error::PermissionDenied(format!(
                    "{} is not served on a workspace's socket",
                    method.path
                ))),
            ),
            Some(method) => {
                let ctx = CallContext {
                    method: method.name,
                    ..ctx
                };
                // A bug in one operation answers INTERNAL instead of taking its host down.
                let handled =
                    std::panic::AssertUnwindSafe((method.handler)(self.clone(), request, ctx))
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!(method = method.path, "an operation panicked");
                            Err(Error::Internal(format!(
                                "{} failed unexpectedly; the daemon log has details",
                                method.path
                            )))
                        });
                (method.path, handled)
            }
            None if crate::json::is_contract_method(path) => (
                "unserved",
                Err(Error::Unimplemented(format!(
                    "{path} is part of the API but not served by this version of the daemon"
                ))),
            ),
            None => (
                "unknown",
                Err(Error::UnknownMethod(crate::workspace::ids::printable(path))),
            ),
        };
        let code = match &result {
            Ok(_) => crate::Code::Ok,
            Err(e) => e.code(),
        };
        metrics::counter!("wsd_rpc_requests_total", "method" => label, "code" => code.name())
            .increment(1);
        metrics::histogram!("wsd_rpc_duration_seconds", "method" => label, "code" => code.name())
            .record(started.elapsed().as_secs_f64());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_content_service_method_of_the_contract_is_in_the_table() {
        for name in [
            "InitWorkspace",
            "WaitForInit",
            "IsWorkspaceExists",
            "TakeSnapshot",
            "DisposeWorkspace",
            "BackupWorkspace",
        ] {
            let path = format!("/wsdaemon.WorkspaceContentService/{name}");
            assert!(find(&path).is_some(), "{path}");
        }
        assert!(find("/wsdaemon.WorkspaceContentService/Nope").is_none());
    }

    #[test]
    fn an_unknown_method_is_echoed_safely_with_the_expected_form() {
        let msg = Error::UnknownMethod(crate::workspace::ids::printable(
            "IsWorkspaceExists\n\x1b[31m",
        ))
        .to_string();
        assert!(!msg.contains('\n') && !msg.contains('\x1b'), "{msg}");
        assert!(
            msg.contains("/wsdaemon.WorkspaceContentService/IsWorkspaceExists"),
            "{msg}"
        );
    }
}
