//! What discovery knows of containerd's containers: workspace pod sandboxes and workspace
//! containers, matched by pod (name and namespace, which the CRI sets on both), and which
//! container each workspace should have attached. Pure: the kernel and containerd stay outside.

use std::collections::{BTreeSet, HashMap};

use crate::config::ContainerdLabels;

/// A pod, as the CRI labels name it on its sandbox and its containers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Pod {
    pub namespace: String,
    pub name: String,
}

/// What a containerd container is to discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A workspace's pod sandbox, carrying the workspace instance id.
    Sandbox {
        pod: Pod,
        workspace: String,
    },
    /// The container named as a workspace's container in its pod.
    WorkspaceContainer {
        pod: Pod,
    },
    Other,
}

pub(crate) fn classify(labels: &HashMap<String, String>, names: &ContainerdLabels) -> Kind {
    let label = |key: &str| {
        labels
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let (Some(kind), Some(name), Some(namespace)) = (
        label(&names.kind),
        label(&names.pod_name),
        label(&names.pod_namespace),
    ) else {
        return Kind::Other;
    };
    let pod = Pod {
        namespace: namespace.into(),
        name: name.into(),
    };
    match kind {
        "sandbox" => match label(&names.workspace_id) {
            Some(workspace) => Kind::Sandbox {
                pod,
                workspace: workspace.into(),
            },
            None => Kind::Other,
        },
        "container" if label(&names.container_name) == Some(&names.workspace_container_name) => {
            Kind::WorkspaceContainer { pod }
        }
        _ => Kind::Other,
    }
}

/// A workspace container as containerd last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Found {
    pub pod: Pod,
    /// Its task's PID while the task runs.
    pub pid: Option<u32>,
    /// Its cgroup (expanded), empty when its spec gives none.
    pub cgroup_path: String,
    /// When containerd created it (seconds, nanoseconds): the newest running one wins.
    pub created: (i64, i32),
}

/// The container a workspace should have attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub container: String,
    pub pid: u32,
    pub cgroup_path: String,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// By container id.
    sandboxes: HashMap<String, (Pod, String)>,
    containers: HashMap<String, Found>,
}

impl Index {
    fn workspaces_of(&self, pod: &Pod) -> BTreeSet<String> {
        self.sandboxes
            .values()
            .filter(|(p, _)| p == pod)
            .map(|(_, ws)| ws.clone())
            .collect()
    }

    /// Records a sandbox; returns the workspaces whose wanted container may have changed.
    pub(crate) fn put_sandbox(
        &mut self,
        id: &str,
        pod: Pod,
        workspace: String,
    ) -> BTreeSet<String> {
        let mut affected = self.remove(id);
        affected.insert(workspace.clone());
        self.sandboxes.insert(id.into(), (pod, workspace));
        affected
    }

    /// Records a workspace container; returns the workspaces affected.
    pub(crate) fn put_container(&mut self, id: &str, found: Found) -> BTreeSet<String> {
        let mut affected = self.remove(id);
        affected.extend(self.workspaces_of(&found.pod));
        self.containers.insert(id.into(), found);
        affected
    }

    /// A workspace container's task changed; `None` when the container is not known.
    pub(crate) fn set_pid(&mut self, id: &str, pid: Option<u32>) -> Option<BTreeSet<String>> {
        let found = self.containers.get_mut(id)?;
        found.pid = pid;
        let pod = found.pod.clone();
        Some(self.workspaces_of(&pod))
    }

    pub(crate) fn is_workspace_container(&self, id: &str) -> bool {
        self.containers.contains_key(id)
    }

    /// Forgets a container of either kind; returns the workspaces affected.
    pub(crate) fn remove(&mut self, id: &str) -> BTreeSet<String> {
        let mut affected = BTreeSet::new();
        if let Some((_, workspace)) = self.sandboxes.remove(id) {
            affected.insert(workspace);
        }
        if let Some(found) = self.containers.remove(id) {
            affected.extend(self.workspaces_of(&found.pod));
        }
        affected
    }

    /// Every workspace that has a sandbox.
    pub(crate) fn workspaces(&self) -> BTreeSet<String> {
        self.sandboxes.values().map(|(_, ws)| ws.clone()).collect()
    }

    /// The running container of `workspace`'s pod; the newest when there are several (the old
    /// one of a restarted container may linger until it is deleted).
    pub(crate) fn wanted(&self, workspace: &str) -> Option<Wanted> {
        let pods: Vec<&Pod> = self
            .sandboxes
            .values()
            .filter(|(_, ws)| ws == workspace)
            .map(|(pod, _)| pod)
            .collect();
        self.containers
            .iter()
            .filter(|(_, f)| f.pid.is_some() && pods.contains(&&f.pod))
            .max_by_key(|(id, f)| (f.created, id.as_str()))
            .and_then(|(id, f)| {
                Some(Wanted {
                    container: id.clone(),
                    pid: f.pid?,
                    cgroup_path: f.cgroup_path.clone(),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pod(name: &str) -> Pod {
        Pod {
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn found(name: &str, pid: Option<u32>, created: i64) -> Found {
        Found {
            pod: pod(name),
            pid,
            cgroup_path: format!("/k8s.io/{name}"),
            created: (created, 0),
        }
    }

    #[test]
    fn gitpod_labels_classify_sandboxes_and_workspace_containers() {
        let names = ContainerdLabels::default();
        let sandbox = labels(&[
            ("io.cri-containerd.kind", "sandbox"),
            ("workspaceID", "ws-1"),
            ("io.kubernetes.pod.name", "ws-pod"),
            ("io.kubernetes.pod.namespace", "default"),
        ]);
        assert_eq!(
            classify(&sandbox, &names),
            Kind::Sandbox {
                pod: pod("ws-pod"),
                workspace: "ws-1".into()
            }
        );
        let container = labels(&[
            ("io.cri-containerd.kind", "container"),
            ("io.kubernetes.container.name", "workspace"),
            ("io.kubernetes.pod.name", "ws-pod"),
            ("io.kubernetes.pod.namespace", "default"),
        ]);
        assert_eq!(
            classify(&container, &names),
            Kind::WorkspaceContainer { pod: pod("ws-pod") }
        );
        // A sidecar of the same pod, a sandbox of a pod that is no workspace, a container that
        // names no pod.
        let mut sidecar = container.clone();
        sidecar.insert("io.kubernetes.container.name".into(), "proxy".into());
        assert_eq!(classify(&sidecar, &names), Kind::Other);
        let mut plain_pod = sandbox.clone();
        plain_pod.remove("workspaceID");
        assert_eq!(classify(&plain_pod, &names), Kind::Other);
        let mut no_pod = container.clone();
        no_pod.remove("io.kubernetes.pod.name");
        assert_eq!(classify(&no_pod, &names), Kind::Other);
    }

    #[test]
    fn a_workspace_wants_the_running_container_of_its_pod() {
        let mut index = Index::default();
        // The container may be known before its sandbox.
        assert!(index
            .put_container("c1", found("p1", Some(100), 1))
            .is_empty());
        assert_eq!(index.wanted("ws-1"), None);
        assert_eq!(
            index.put_sandbox("s1", pod("p1"), "ws-1".into()),
            BTreeSet::from(["ws-1".to_string()])
        );
        assert_eq!(
            index.wanted("ws-1"),
            Some(Wanted {
                container: "c1".into(),
                pid: 100,
                cgroup_path: "/k8s.io/p1".into()
            })
        );
        // Another pod's container is not ws-1's.
        index.put_container("c2", found("p2", Some(200), 5));
        assert_eq!(index.wanted("ws-1").map(|w| w.pid), Some(100));
        // The task stops: nothing is wanted; a newer container of the pod wins over an older.
        assert_eq!(
            index.set_pid("c1", None),
            Some(BTreeSet::from(["ws-1".to_string()]))
        );
        assert_eq!(index.wanted("ws-1"), None);
        index.set_pid("c1", Some(101));
        index.put_container("c3", found("p1", Some(300), 9));
        assert_eq!(index.wanted("ws-1").map(|w| w.container), Some("c3".into()));
        assert_eq!(index.remove("c3"), BTreeSet::from(["ws-1".to_string()]));
        assert_eq!(index.wanted("ws-1").map(|w| w.pid), Some(101));
        // The sandbox goes: the workspace wants nothing.
        assert_eq!(index.remove("s1"), BTreeSet::from(["ws-1".to_string()]));
        assert_eq!(index.wanted("ws-1"), None);
        assert!(index.workspaces().is_empty());
        assert_eq!(index.set_pid("unknown", Some(1)), None);
    }
}
