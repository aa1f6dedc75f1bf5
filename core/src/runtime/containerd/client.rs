//! A containerd client over its unix socket: the few calls discovery needs, each in the configured
//! containerd namespace (the `containerd-namespace` header).

use std::path::PathBuf;
use std::time::Duration;

use prost::Message;
use tonic::transport::{Channel, Endpoint, Uri};
use wsd_proto::containerd::events::{
    ContainerCreate, ContainerDelete, TaskCreate, TaskDelete, TaskExit, TaskStart,
};
use wsd_proto::containerd::services::containers::v1::containers_client::ContainersClient;
use wsd_proto::containerd::services::containers::v1::{
    Container as ContainerdContainer, GetContainerRequest, ListContainersRequest,
};
use wsd_proto::containerd::services::events::v1::events_client::EventsClient;
use wsd_proto::containerd::services::events::v1::SubscribeRequest;
use wsd_proto::containerd::services::tasks::v1::tasks_client::TasksClient;
use wsd_proto::containerd::services::tasks::v1::GetRequest;
use wsd_proto::containerd::services::version::v1::version_client::VersionClient;
use wsd_proto::containerd::types::Envelope;
use wsd_proto::containerd::v1::types::Status as TaskStatus;

/// A containerd connection scoped to one namespace.
#[derive(Clone)]
pub(crate) struct Client {
    channel: Channel,
    namespace: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

/// Why a call to containerd failed, as discovery needs to tell apart.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Failed(String),
}

impl From<tonic::Status> for CallError {
    fn from(status: tonic::Status) -> Self {
        if status.code() == tonic::Code::NotFound {
            CallError::NotFound
        } else {
            CallError::Failed(format!("{:?}: {}", status.code(), status.message()))
        }
    }
}

/// What discovery learns of one event (decoded by its topic: containerd's `Any` type URLs have no
/// leading `/`, so they cannot be decoded by type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    ContainerCreated(String),
    ContainerDeleted(String),
    /// A task of the container was created, started, exited or deleted: its state is read again.
    TaskChanged(String),
    Other,
}

impl Event {
    pub(crate) fn of(envelope: &Envelope) -> Event {
        let value = envelope
            .event
            .as_ref()
            .map(|any| any.value.as_slice())
            .unwrap_or_default();
        let decoded = match envelope.topic.as_str() {
            "/containers/create" => {
                ContainerCreate::decode(value).map(|e| Event::ContainerCreated(e.id))
            }
            "/containers/delete" => {
                ContainerDelete::decode(value).map(|e| Event::ContainerDeleted(e.id))
            }
            "/tasks/create" => {
                TaskCreate::decode(value).map(|e| Event::TaskChanged(e.container_id))
            }
            "/tasks/start" => TaskStart::decode(value).map(|e| Event::TaskChanged(e.container_id)),
            "/tasks/exit" => TaskExit::decode(value).map(|e| Event::TaskChanged(e.container_id)),
            "/tasks/delete" => {
                TaskDelete::decode(value).map(|e| Event::TaskChanged(e.container_id))
            }
            _ => Ok(Event::Other),
        };
        decoded.unwrap_or_else(|e| {
            tracing::warn!(topic = %envelope.topic, error = %e, "undecodable containerd event");
            Event::Other
        })
    }
}

/// The events discovery follows, in containerd's filter syntax (filters are OR'ed).
pub(crate) fn event_filters(namespace: &str) -> Vec<String> {
    let ns = quote(namespace);
    vec![
        format!(r#"namespace=={ns},topic~="^/containers/(create|delete)$""#),
        format!(r#"namespace=={ns},topic~="^/tasks/(create|start|exit|delete)$""#),
    ]
}

/// A label filter `labels."key"=="value"`.
pub(crate) fn label_filter(key: &str, value: &str) -> String {
    format!("labels.{}=={}", quote(key), quote(value))
}

/// A quoted string of containerd's filter syntax (Go-style escapes).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Client {
    /// Connects to the socket (fails at once when nothing listens there).
    pub(crate) async fn connect(
        socket: PathBuf,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Client, CallError> {
        let namespace = namespace
            .parse()
            .map_err(|_| CallError::Failed("the namespace is not a valid header value".into()))?;
        // The URI is required by tonic but unused: the connector dials the socket.
        let endpoint = Endpoint::from_static("http://containerd.invalid").connect_timeout(timeout);
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(socket).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| CallError::Failed(format!("cannot connect: {}", source_of(&e))))?;
        Ok(Client { channel, namespace })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("containerd-namespace", self.namespace.clone());
        request
    }

    /// containerd's version: proves it serves.
    pub(crate) async fn version(&self) -> Result<String, CallError> {
        let reply = VersionClient::new(self.channel.clone())
            .version(self.request(()))
            .await?;
        Ok(reply.into_inner().version)
    }

    pub(crate) async fn list(&self, filter: String) -> Result<Vec<ContainerdContainer>, CallError> {
        let reply = ContainersClient::new(self.channel.clone())
            .list(self.request(ListContainersRequest {
                filters: vec![filter],
            }))
            .await?;
        Ok(reply.into_inner().containers)
    }

    pub(crate) async fn container(&self, id: &str) -> Result<ContainerdContainer, CallError> {
        let reply = ContainersClient::new(self.channel.clone())
            .get(self.request(GetContainerRequest { id: id.into() }))
            .await?;
        reply
            .into_inner()
            .container
            .ok_or_else(|| CallError::Failed("containerd answered no container".into()))
    }

    /// The PID of the container's task while it runs (a stopped task still reports its old PID).
    pub(crate) async fn running_pid(&self, container_id: &str) -> Result<Option<u32>, CallError> {
        let reply = TasksClient::new(self.channel.clone())
            .get(self.request(GetRequest {
                container_id: container_id.into(),
                exec_id: String::new(),
            }))
            .await;
        match reply {
            Ok(reply) => Ok(reply
                .into_inner()
                .process
                .filter(|p| p.status == TaskStatus::Running as i32 && p.pid > 0)
                .map(|p| p.pid)),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }

    pub(crate) async fn subscribe(
        &self,
        filters: Vec<String>,
    ) -> Result<tonic::Streaming<Envelope>, CallError> {
        let reply = EventsClient::new(self.channel.clone())
            .subscribe(self.request(SubscribeRequest { filters }))
            .await?;
        Ok(reply.into_inner())
    }
}

/// The innermost cause of a transport error ("connection refused", not "transport error").
fn source_of(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_quote_label_names_and_values() {
        assert_eq!(
            label_filter("io.cri-containerd.kind", "sandbox"),
            r#"labels."io.cri-containerd.kind"=="sandbox""#
        );
        assert_eq!(label_filter(r#"a"b"#, r"c\d"), r#"labels."a\"b"=="c\\d""#);
        assert_eq!(
            event_filters("k8s.io")[0],
            r#"namespace=="k8s.io",topic~="^/containers/(create|delete)$""#
        );
    }

    #[test]
    fn events_are_decoded_by_topic() {
        let envelope = |topic: &str, value: Vec<u8>| Envelope {
            topic: topic.into(),
            event: Some(prost_types::Any {
                // As containerd sends it: no leading slash.
                type_url: "containerd.events.TaskExit".into(),
                value,
            }),
            ..Envelope::default()
        };
        let exit = TaskExit {
            container_id: "c1".into(),
            id: "exec-7".into(),
            pid: 42,
            ..TaskExit::default()
        };
        assert_eq!(
            Event::of(&envelope("/tasks/exit", exit.encode_to_vec())),
            Event::TaskChanged("c1".into())
        );
        let create = ContainerCreate {
            id: "c2".into(),
            ..ContainerCreate::default()
        };
        assert_eq!(
            Event::of(&envelope("/containers/create", create.encode_to_vec())),
            Event::ContainerCreated("c2".into())
        );
        assert_eq!(Event::of(&envelope("/tasks/oom", vec![])), Event::Other);
        assert_eq!(
            Event::of(&envelope("/containers/delete", vec![0xff, 0xff])),
            Event::Other
        );
    }
}
