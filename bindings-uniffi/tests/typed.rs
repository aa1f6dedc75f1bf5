//! The typed methods from Rust (the same code the foreign languages call): records go to their
//! messages and back, including the composite initializer (a record that holds records of its own
//! type through a list), errors as `WsdError::Status`, and the first steps (`<name>_start`) with
//! the rest of a call that waits.

use std::sync::Arc;

use wsd_uniffi::*;

fn daemon(dir: &std::path::Path) -> Arc<Daemon> {
    let config = format!(
        "working_area = {:?}\n[storage]\nlocal_path = {:?}\n[limits]\nshutdown_grace_secs = 1\n",
        dir.join("wa").display().to_string(),
        dir.join("storage").display().to_string()
    );
    Daemon::new(config).expect("daemon")
}

fn init_request(id: &str, initializer: WorkspaceInitializer) -> InitWorkspaceRequest {
    InitWorkspaceRequest {
        id: id.into(),
        metadata: Some(WorkspaceMetadata {
            owner: "owner".into(),
            meta_id: format!("meta-{id}"),
        }),
        initializer: Some(initializer),
        ..Default::default()
    }
}

fn code(e: WsdError) -> String {
    let WsdError::Status { code, .. } = e;
    code
}

#[test]
fn records_travel_through_the_dispatch_and_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    futures::executor::block_on(async {
        let empty = WorkspaceInitializer {
            empty: Some(EmptyInitializer {}),
            ..Default::default()
        };
        d.init_workspace(init_request("ws1", empty.clone()), 0)
            .await
            .expect("init");
        d.wait_for_init(WaitForInitRequest { id: "ws1".into() }, 0)
            .await
            .expect("wait");
        std::fs::write(dir.path().join("wa/ws1/hello.txt"), "hello").expect("write");
        let backup = d
            .backup_workspace(BackupWorkspaceRequest { id: "ws1".into() }, 0)
            .await
            .expect("backup");
        assert!(backup.url.contains("meta-ws1"), "{backup:?}");
        let state = d
            .workspace_state(WorkspaceStateRequest { id: "ws1".into() }, 0)
            .await
            .expect("state");
        assert_eq!(state.state, 2, "AVAILABLE: {state:?}");

        // A composite initializer whose member restores the backup: records inside records of
        // their own type.
        let restore = WorkspaceInitializer {
            composite: Some(CompositeInitializer {
                initializer: vec![
                    empty,
                    WorkspaceInitializer {
                        backup: Some(FromBackupInitializer {
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ],
            }),
            ..Default::default()
        };
        let mut request = init_request("ws2", restore);
        if let Some(m) = request.metadata.as_mut() {
            m.meta_id = "meta-ws1".into();
        }
        d.init_workspace(request, 0).await.expect("restore");
        let restored = std::fs::read_to_string(dir.path().join("wa/ws2/hello.txt"));
        assert_eq!(restored.ok().as_deref(), Some("hello"));

        let exists = d
            .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws2".into() }, 0)
            .await
            .expect("exists");
        assert!(exists.exists);
        let err = d
            .wait_for_init(WaitForInitRequest { id: "nope".into() }, 0)
            .await
            .expect_err("unknown workspace");
        assert_eq!(code(err), "NOT_FOUND");
        let err = d
            .init_workspace(
                InitWorkspaceRequest {
                    id: "ws3".into(),
                    ..Default::default()
                },
                0,
            )
            .await
            .expect_err("no metadata");
        assert_eq!(code(err), "INVALID_ARGUMENT");
        // The blocking twins answer the same.
        let blocking = d.clone().blocking();
        let exists = blocking
            .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws2".into() }, 0)
            .expect("exists, blocking");
        assert!(exists.exists);
        let err = blocking
            .wait_for_init(WaitForInitRequest { id: "nope".into() }, 0)
            .expect_err("unknown workspace, blocking");
        assert_eq!(code(err), "NOT_FOUND");

        d.close().await;
        assert!(blocking.is_closed());
        let err = blocking
            .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws2".into() }, 0)
            .expect_err("closed, blocking");
        assert_eq!(code(err), "UNAVAILABLE");
        let err = d
            .is_workspace_exists(IsWorkspaceExistsRequest { id: "ws2".into() }, 0)
            .await
            .expect_err("closed");
        assert_eq!(code(err), "UNAVAILABLE");
    });
}

#[test]
fn every_rpc_of_the_wsdaemon_services_has_a_typed_method() {
    // The generator writes one method per RPC of the package; their paths are in its docs, so
    // compare the contract's list with what the library exposes through uniffi's metadata.
    let served: Vec<String> = methods()
        .expect("methods")
        .into_iter()
        .filter(|m| m.service.starts_with("wsdaemon."))
        .map(|m| m.path)
        .collect();
    let generated = include_str!(concat!(env!("OUT_DIR"), "/typed.rs"));
    for path in &served {
        assert!(
            generated.contains(&format!("self.typed(\"{path}\"")),
            "no typed method for {path}"
        );
    }
    assert_eq!(served.len(), 11, "{served:?}");
}

#[test]
fn a_call_that_waits_answers_its_rest_to_await_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = daemon(dir.path());
    // A server that never answers (connections wait in its backlog) keeps the init SETTING_UP.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/never", silent.local_addr().expect("addr"));
    let download = WorkspaceInitializer {
        download: Some(FileDownloadInitializer {
            files: vec![FileDownloadInitializerFileInfo {
                url,
                file_path: "f".into(),
                digest: format!("sha256:{}", "0".repeat(64)),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let InitWorkspaceStep::Pending { rest: init } = d
        .init_workspace_start(init_request("ws", download), 0)
        .expect("init starts")
    else {
        panic!("an init that downloads from a silent server answered on its first poll");
    };
    // Answered on the first poll: the response itself.
    let exists = d
        .is_workspace_exists_start(IsWorkspaceExistsRequest { id: "nope".into() }, 0)
        .expect("exists");
    assert!(
        matches!(exists, IsWorkspaceExistsStep::Done { response } if !response.exists),
        "answered at once"
    );
    futures::executor::block_on(async {
        let mut waited = None;
        for _ in 0..500 {
            match d.wait_for_init_start(WaitForInitRequest { id: "ws".into() }, 200) {
                Ok(WaitForInitStep::Pending { rest }) => {
                    waited = Some(rest);
                    break;
                }
                // The init has not registered the workspace yet.
                Err(WsdError::Status { code, .. }) if code == "NOT_FOUND" => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                Err(e) => panic!("wait_for_init: {e}"),
                Ok(WaitForInitStep::Done { .. }) => panic!("the init cannot be done"),
            }
        }
        let rest = waited.expect("the workspace appears");
        let err = rest
            .wait()
            .await
            .expect_err("the wait ends at its deadline");
        assert_eq!(code(err), "DEADLINE_EXCEEDED");
        let err = rest.wait().await.expect_err("awaited twice");
        assert_eq!(code(err), "INTERNAL");
        // The init still waits for its download; closing the daemon ends it.
        d.close().await;
        let err = init.wait().await.expect_err("closed while in flight");
        assert_eq!(code(err), "UNAVAILABLE");
    });
    drop(silent);
}
