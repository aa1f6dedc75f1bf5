//! The README's first command, run as written (no flags, no config), serves on 127.0.0.1:8080 and
//! lists its services through gRPC reflection.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

#[tokio::test]
async fn default_daemon_serves_on_8080_with_reflection() {
    let home = tempfile::tempdir().expect("tempdir");
    let child = Command::new(wsd_tests::daemon_binary())
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("WSD_LISTEN")
        .env_remove("WSD_CONFIG")
        .current_dir(home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ws-daemon");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut client = loop {
        let endpoint = tonic::transport::Endpoint::from_static("http://127.0.0.1:8080");
        if let Ok(channel) = endpoint.connect().await {
            break ServerReflectionClient::new(channel);
        }
        assert!(
            Instant::now() < deadline,
            "ws-daemon did not listen on 127.0.0.1:8080"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["wsdaemon.WorkspaceContentService", "grpc.health.v1.Health"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    // The embedded default keeps its data under the user's data folder.
    assert!(home
        .path()
        .join(".local/share/ws-daemon/workspaces")
        .is_dir());
    let stopping = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let status = wsd_tests::wait_for_exit(child).await;
    assert!(status.success(), "{status:?}");
    assert!(
        stopping.elapsed() < Duration::from_secs(30),
        "graceful stop took {:?}",
        stopping.elapsed()
    );
}
