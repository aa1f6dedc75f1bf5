//! Server options: the unix socket, JSON logs, the server-side init timeout, prebuild log upload.

use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::transport::{Endpoint, Uri};
use wsd_proto::contentservice::workspace_initializer::Spec;
use wsd_proto::contentservice::EmptyInitializer;
use wsd_proto::wsdaemon::workspace_content_service_client::WorkspaceContentServiceClient;
use wsd_proto::wsdaemon::{DisposeWorkspaceRequest, IsWorkspaceExistsRequest};
use wsd_tests::http::download_after;
use wsd_tests::{init_request, DaemonProcess};

#[tokio::test]
async fn serves_the_same_api_on_a_unix_socket_and_logs_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("grpc.sock");
    let extra = format!("[server]\nunix_socket = {socket:?}\nlog_format = \"json\"\n");
    let d = DaemonProcess::start(&dir.path().join("node"), &extra).await;

    let path = socket.clone();
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .expect("connect over the unix socket");
    let mut unix = WorkspaceContentServiceClient::new(channel);
    unix.init_workspace(init_request("ws-u", "m", Spec::Empty(EmptyInitializer {})))
        .await
        .expect("init over the unix socket");
    let mut tcp = d.client().await;
    let seen = tcp
        .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws-u".into() })
        .await
        .expect("exists");
    assert!(seen.into_inner().exists, "one daemon behind both listeners");

    let logs = d.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("workspace initialized"))
        .expect("init logged");
    let json: serde_json::Value = serde_json::from_str(line).expect("log lines are JSON");
    assert_eq!(json["level"], "INFO");
}

#[tokio::test]
async fn init_stops_at_the_server_side_timeout_and_cleans_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "[limits]\ninit_timeout_secs = 1\n").await;
    let (_server, spec) = download_after(Duration::from_secs(30), 200, "late").await;
    let mut c = d.client().await;
    let status = c
        .init_workspace(init_request("ws-t", "m", spec))
        .await
        .expect_err("times out");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("longer than 1s"),
        "{}",
        status.message()
    );
    assert!(!d.working_area().join("ws-t").exists());
    assert!(!d.working_area().join("ws-t.workspace.json").exists());
}

#[tokio::test]
async fn dispose_uploads_prebuild_logs_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = DaemonProcess::start(dir.path(), "").await;
    let mut c = d.client().await;
    c.init_workspace(init_request(
        "ws-l",
        "meta-l",
        Spec::Empty(EmptyInitializer {}),
    ))
    .await
    .expect("init");
    let gitpod = d.working_area().join("ws-l/.gitpod");
    std::fs::write(gitpod.join("prebuild-log-0"), b"building...\ndone\n").expect("log");
    std::fs::write(gitpod.join("other.txt"), b"not a log").expect("file");
    std::os::unix::fs::symlink("/etc/hostname", gitpod.join("prebuild-log-1")).expect("symlink");
    c.dispose_workspace(DisposeWorkspaceRequest {
        id: "ws-l".into(),
        backup: false,
        backup_logs: true,
    })
    .await
    .expect("dispose");
    let logs = d
        .storage()
        .join("gitpod-user-owner-1/workspaces/meta-l/instances/ws-l/logs");
    assert_eq!(
        std::fs::read(logs.join("prebuild-log-0")).expect("uploaded"),
        b"building...\ndone\n"
    );
    assert!(!logs.join("other.txt").exists());
    assert!(
        !logs.join("prebuild-log-1").exists(),
        "symlinks out of the workspace are not followed"
    );
}
