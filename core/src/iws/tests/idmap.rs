//! WriteIDMapping for a process in a user namespace of the container.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_maps_are_written_for_processes_of_the_container_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    workspace(&d, "ws-u").await;
    attach(&d, "ws-u", container.pid).await;
    let child = container.spawn_inside(&["unshare", "--user", "sleep", "600"]);
    let inner = container.pid_inside(child);
    in_own_user_namespace(child).await;
    let ctx = from("ws-u", container.pid);
    let map = |gid: bool, mapping: Vec<Mapping>| WriteIdMappingRequest {
        pid: inner.into(),
        gid,
        mapping,
    };
    let usual = usual_map();
    let out_of_range: Result<WriteIdMappingResponse> = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(
            false,
            vec![Mapping {
                container_id: 0,
                host_id: 0,
                size: 1,
            }],
        ),
        &ctx,
    )
    .await;
    assert_eq!(
        out_of_range.expect_err("root range").code(),
        Code::InvalidArgument
    );
    let _: WriteIdMappingResponse = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(false, usual.clone()),
        &ctx,
    )
    .await
    .expect("uid map");
    let _: WriteIdMappingResponse = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(true, usual.clone()),
        &ctx,
    )
    .await
    .expect("gid map");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{child}/uid_map"))
            .expect("uid_map")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["0", "33333", "1", "1", "100000", "65534"]
    );
    // A map is written once: another one is the kernel's refusal (the same one again is
    // success, see the user-namespace tests).
    let another: Result<WriteIdMappingResponse> = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(false, usual[..1].to_vec()),
        &ctx,
    )
    .await;
    assert_eq!(
        another.expect_err("written once").code(),
        Code::FailedPrecondition
    );
    // Four calls were the burst; the fifth is over the limit.
    let limited: Result<WriteIdMappingResponse> = call(
        &d,
        "iws.InWorkspaceService/WriteIDMapping",
        map(false, vec![]),
        &ctx,
    )
    .await;
    assert_eq!(
        limited.expect_err("rate limited").code(),
        Code::ResourceExhausted
    );
    d.shutdown(Duration::from_secs(1)).await;
}
