//! The typed methods from Rust (the same code the foreign languages call): records go through
//! core's JSON converters and back, including the composite initializer (a record that holds
//! records of its own type through a list) and errors as `WsdError::Status`.

use std::sync::Arc;

use wsd_uniffi::*;

fn daemon(dir: &std::path::Path) -> Arc<Daemon> {
    let config = format!(
        "working_area = {:?}\n[storage]\nlocal_path = {:?}\n",
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
    assert_eq!(served.len(), 10, "{served:?}");
}
