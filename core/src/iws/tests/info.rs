//! WorkspaceInfo against real cgroups.

use std::time::Duration;

use super::*;

/// v1 cgroups of the test's own (this machine keeps cpu, cpuacct and memory on v1), removed on
/// drop once their processes are gone.
struct TestCgroups {
    folders: Vec<std::path::PathBuf>,
}

impl TestCgroups {
    fn create(name: &str) -> TestCgroups {
        let mounts = crate::iws::info::CgroupMounts::from_mountinfo(
            &std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo"),
        );
        let folders = ["cpu", "cpuacct", "memory"]
            .iter()
            .map(|c| mounts.v1.get(*c).expect("a v1 hierarchy").join(name))
            .collect::<Vec<_>>();
        for f in &folders {
            std::fs::create_dir_all(f).expect("cgroup");
        }
        TestCgroups { folders }
    }

    fn set(&self, controller_folder: usize, file: &str, value: &str) {
        std::fs::write(self.folders[controller_folder].join(file), value).expect("cgroup setting");
    }

    fn enter(&self, pid: i32) {
        for f in &self.folders {
            std::fs::write(f.join("cgroup.procs"), pid.to_string()).expect("move into the cgroup");
        }
    }
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for f in &self.folders {
            for _ in 0..100 {
                if std::fs::remove_dir(f).is_ok() || !f.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_info_matches_the_cgroup_files_under_load() {
    use wsd_proto::iws::{WorkspaceInfoRequest, WorkspaceInfoResponse};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let cgroups = TestCgroups::create(&format!("wsd-test-info-{}", std::process::id()));
    cgroups.set(0, "cpu.cfs_period_us", "100000");
    cgroups.set(0, "cpu.cfs_quota_us", "150000");
    cgroups.set(2, "memory.limit_in_bytes", &(256u64 << 20).to_string());
    let container = TestContainer::start();
    cgroups.enter(container.pid);
    workspace(&d, "ws-i").await;
    attach(&d, "ws-i", container.pid).await;
    // Processes join the cgroups of their parent: the shell joins the container's first.
    let join = cgroups
        .folders
        .iter()
        .map(|f| format!("echo $$ > {}/cgroup.procs", f.display()))
        .collect::<Vec<_>>()
        .join("; ");
    let burner = container.spawn_inside_after(&join, &["sh", "-c", "'while :; do :; done'"]);
    let holder = container.spawn_inside_after(
        &join,
        &[
            "python3",
            "-c",
            "'import time; b = bytearray(96 << 20); time.sleep(600)'",
        ],
    );
    assert!(burner > 0 && holder > 0);
    // The sampler reads once a second; two readings make a rate.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let info: WorkspaceInfoResponse = call(
        &d,
        "iws.WorkspaceInfoService/WorkspaceInfo",
        WorkspaceInfoRequest {},
        &from("ws-i", container.pid),
    )
    .await
    .expect("workspace info");
    let resources = info.resources.expect("resources");
    let (cpu, memory) = (
        resources.cpu.expect("cpu"),
        resources.memory.expect("memory"),
    );
    assert_eq!(cpu.limit, 1500, "1.5 CPUs, fraction kept");
    assert_eq!(memory.limit, 256 << 20);
    assert!(
        (600..=1600).contains(&cpu.used),
        "one busy loop uses about one CPU: {cpu:?}"
    );
    let memory_dir = &cgroups.folders[2];
    let usage: i64 = std::fs::read_to_string(memory_dir.join("memory.usage_in_bytes"))
        .expect("usage")
        .trim()
        .parse()
        .expect("number");
    let stat = std::fs::read_to_string(memory_dir.join("memory.stat")).expect("stat");
    let inactive: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let expected = usage - inactive;
    assert!(
        memory.used >= 96 << 20,
        "the 96 MiB held are counted: {memory:?}"
    );
    assert!(
        (memory.used - expected).abs() < 16 << 20,
        "used {} vs the files' {expected}",
        memory.used
    );

    // The in-workspace service answers the same.
    let again: WorkspaceInfoResponse = call(
        &d,
        "iws.InWorkspaceService/WorkspaceInfo",
        WorkspaceInfoRequest {},
        &from("ws-i", container.pid),
    )
    .await
    .expect("workspace info");
    assert_eq!(
        again.resources.and_then(|r| r.cpu).map(|c| c.limit),
        Some(1500)
    );
    drop(container);
    d.shutdown(Duration::from_secs(1)).await;
    drop(cgroups);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlimited_cgroups_report_the_cpus_and_memory_of_the_node() {
    use wsd_proto::iws::{WorkspaceInfoRequest, WorkspaceInfoResponse};
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let cgroups = TestCgroups::create(&format!("wsd-test-unlimited-{}", std::process::id()));
    let container = TestContainer::start();
    cgroups.enter(container.pid);
    workspace(&d, "ws-j").await;
    attach(&d, "ws-j", container.pid).await;
    let info: WorkspaceInfoResponse = call(
        &d,
        "iws.WorkspaceInfoService/WorkspaceInfo",
        WorkspaceInfoRequest {},
        &from("ws-j", container.pid),
    )
    .await
    .expect("workspace info");
    let resources = info.resources.expect("resources");
    let cpus = std::thread::available_parallelism().expect("cpus").get() as i64;
    assert_eq!(resources.cpu.expect("cpu").limit, cpus * 1000);
    assert_eq!(
        resources.memory.expect("memory").limit,
        crate::iws::info::node_memory()
    );
    drop(container);
    d.shutdown(Duration::from_secs(1)).await;
    drop(cgroups);
}
