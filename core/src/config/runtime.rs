//! How the daemon learns which container runs a workspace, besides AttachContainer: containerd
//! discovery on Kubernetes nodes (runtime spec section 2).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `runtime.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    pub containerd: ContainerdConfig,
}

/// `runtime.containerd.*`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket (e.g. `/run/containerd/containerd.sock`); unset: no discovery.
    pub socket: Option<PathBuf>,
    /// The containerd namespace the kubelet's containers live in.
    pub namespace: String,
    /// The labels that identify workspace pods and containers.
    pub labels: ContainerdLabels,
    /// Backoff between reconnection attempts while containerd is away.
    pub reconnect_initial_backoff_ms: u64,
    pub reconnect_max_backoff_ms: u64,
    /// How often everything is listed again while connected (repairs anything an event stream
    /// missed).
    pub resync_interval_secs: u64,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        ContainerdConfig {
            socket: None,
            namespace: "k8s.io".into(),
            labels: ContainerdLabels::default(),
            reconnect_initial_backoff_ms: 100,
            reconnect_max_backoff_ms: 5000,
            resync_interval_secs: 60,
        }
    }
}

/// `runtime.containerd.labels.*`: Gitpod's names by default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerdLabels {
    /// On the pod sandbox: the workspace instance id.
    pub workspace_id: String,
    /// `sandbox` on pod sandboxes, `container` on containers (set by the CRI).
    pub kind: String,
    /// The container's name in its pod (set by the CRI).
    pub container_name: String,
    /// The name a workspace's container has in its pod.
    pub workspace_container_name: String,
    /// The pod's name and namespace, on the sandbox and on its containers (set by the CRI).
    pub pod_name: String,
    pub pod_namespace: String,
}

impl Default for ContainerdLabels {
    fn default() -> Self {
        ContainerdLabels {
            workspace_id: "workspaceID".into(),
            kind: "io.cri-containerd.kind".into(),
            container_name: "io.kubernetes.container.name".into(),
            workspace_container_name: "workspace".into(),
            pod_name: "io.kubernetes.pod.name".into(),
            pod_namespace: "io.kubernetes.pod.namespace".into(),
        }
    }
}

impl ContainerdConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.socket.as_ref().is_some_and(|s| !s.is_absolute()) {
            return Err("runtime.containerd.socket must be an absolute path".into());
        }
        if self.namespace.is_empty() {
            return Err("runtime.containerd.namespace must not be empty".into());
        }
        let l = &self.labels;
        for (key, value) in [
            ("workspace_id", &l.workspace_id),
            ("kind", &l.kind),
            ("container_name", &l.container_name),
            ("workspace_container_name", &l.workspace_container_name),
            ("pod_name", &l.pod_name),
            ("pod_namespace", &l.pod_namespace),
        ] {
            if value.is_empty() {
                return Err(format!("runtime.containerd.labels.{key} must not be empty"));
            }
        }
        if self.resync_interval_secs == 0 {
            return Err("runtime.containerd.resync_interval_secs must be at least 1".into());
        }
        if self.reconnect_initial_backoff_ms == 0
            || self.reconnect_max_backoff_ms < self.reconnect_initial_backoff_ms
        {
            return Err(
                "runtime.containerd.reconnect_initial_backoff_ms must be at least 1 and \
                        at most reconnect_max_backoff_ms"
                    .into(),
            );
        }
        Ok(())
    }
}
