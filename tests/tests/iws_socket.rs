//! The in-workspace service over the wire: the `ws-daemon` binary, a real workspace container
//! (PID, mount and network namespaces, its own root; `wsd_tests::container`) attached with
//! AttachContainer, and the `iws-client` binary calling the workspace socket from inside it.
//! Requires root. Each test checks at its end that nothing it mounted is left on the host.

use std::path::Path;
use std::time::{Duration, Instant};

use tonic::Code;
use wsd_proto::iws::in_workspace_service_client::InWorkspaceServiceClient;
use wsd_proto::iws::MountProcRequest;
use wsd_tests::container::{first_line, host_mounts_under, Container, IwsWorkspace, SOCKET_INSIDE};

/// Drops `ws` (killing its containers and the daemon) and checks that the host has no mount left
/// under the test's folder.
fn finish(ws: IwsWorkspace) {
    let dir = ws.dir.path().to_path_buf();
    drop(ws.container);
    let left = host_mounts_under(&dir);
    assert!(left.is_empty(), "mounts left on the host: {left:?}");
}

fn host_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo")
}

/// The gRPC code name (`OK` for success) of the client's answer line.
fn code_of(line: &str) -> &str {
    line.split(':')
        .next()
        .unwrap_or(line)
        .split(' ')
        .next()
        .unwrap_or(line)
}

#[tokio::test]
async fn only_callers_inside_the_attached_container_are_served() {
    let ws = IwsWorkspace::start(false).await;
    let ctr = &ws.container;
    ctr.sh("mkdir -p /tmp/p");

    // Before AttachContainer: no container to act on.
    let before = ctr.client(&["mount-proc", "/tmp/p", "1"]);
    assert_eq!(code_of(&before), "FailedPrecondition", "{before}");
    ws.attach().await.expect("attach");

    // Inside: served.
    let inside = ctr.client(&["mount-proc", "/tmp/p", "1"]);
    assert_eq!(inside, "OK");
    let inside = ctr.client(&["umount-proc", "/tmp/p", "1"]);
    assert_eq!(inside, "OK");

    // The same call from the host, over the same socket.
    let host = std::process::Command::new(wsd_tests::container::client_binary())
        .arg(ws.socket_dir().join("daemon.sock"))
        .args(["mount-proc", "/tmp/p", "1"])
        .output()
        .expect("client on the host");
    let host = first_line(&host);
    assert_eq!(code_of(&host), "PermissionDenied", "{host}");

    // From another container that has the same socket bound in.
    let other = ws.sibling("other");
    other.sh("mkdir -p /tmp/p");
    let sibling = other.client(&["mount-proc", "/tmp/p", "1"]);
    assert_eq!(code_of(&sibling), "PermissionDenied", "{sibling}");
    assert!(
        !other.mount_points().iter().any(|p| p == "/tmp/p"),
        "nothing mounted in the other container"
    );
    drop(other);

    // From a nested PID namespace inside the container: served.
    let nested = ctr.run(&[
        "unshare",
        "--fork",
        "--pid",
        "--",
        wsd_tests::container::CLIENT_INSIDE,
        SOCKET_INSIDE,
        "mount-proc",
        "/tmp/p",
        "1",
    ]);
    assert_eq!(first_line(&nested), "OK");
    assert_eq!(ctr.client(&["umount-proc", "/tmp/p", "1"]), "OK");

    // The main TCP listener has no caller identity.
    let mut tcp = InWorkspaceServiceClient::connect(ws.daemon.endpoint())
        .await
        .expect("connect");
    let status = tcp
        .mount_proc(MountProcRequest {
            target: "/tmp/p".into(),
            pid: 1,
        })
        .await
        .expect_err("refused on the main listener");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("own socket"),
        "{}",
        status.message()
    );
    finish(ws);
}

#[tokio::test]
async fn pids_outside_the_container_are_invalid_arguments() {
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    ctr.sh("mkdir -p /tmp/p");

    // A host PID that the container does not have (the daemon's).
    let daemon = ws.daemon.pid();
    assert!(!ctr.has_pid(daemon));
    let host = ctr.client(&["mount-proc", "/tmp/p", &daemon.to_string()]);
    assert_eq!(code_of(&host), "InvalidArgument", "{host}");

    // A process of a sibling container: neither its number there nor its host PID.
    let other = ws.sibling("other");
    let there = other.spawn_descendant("sleep 600");
    let there_host = other
        .host_pid(there)
        .expect("host PID of the sibling's process");
    for pid in [there, there_host] {
        if ctr.has_pid(pid) {
            continue;
        }
        let answer = ctr.client(&["mount-proc", "/tmp/p", &pid.to_string()]);
        assert_eq!(code_of(&answer), "InvalidArgument", "pid {pid}: {answer}");
    }
    drop(other);

    // In the container's PID namespace but not below its init (entered from the host).
    let mut outsider = ctr
        .nsenter()
        .args(["sleep", "600"])
        .spawn()
        .expect("nsenter sleep");
    let deadline = Instant::now() + Duration::from_secs(10);
    let inner = loop {
        let out = ctr.sh("pgrep -x sleep || true");
        if let Some(pid) = out
            .lines()
            .filter_map(|l| l.trim().parse::<i32>().ok())
            .find(|p| ctr.parent_inside(*p) == Some(0))
        {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the nsenter'd sleep did not show"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let answer = ctr.client(&["mount-proc", "/tmp/p", &inner.to_string()]);
    assert_eq!(code_of(&answer), "InvalidArgument", "{answer}");
    let _ = outsider.kill();
    let _ = outsider.wait();

    // A real descendant is accepted; zero and negative are not PIDs.
    let sleeper = ctr.spawn_descendant("sleep 600");
    assert_eq!(
        ctr.client(&["mount-proc", "/tmp/p", &sleeper.to_string()]),
        "OK"
    );
    assert_eq!(
        ctr.client(&["umount-proc", "/tmp/p", &sleeper.to_string()]),
        "OK"
    );
    for pid in ["0", "-1"] {
        let answer = ctr.client(&["mount-proc", "/tmp/p", pid]);
        assert_eq!(code_of(&answer), "InvalidArgument", "{pid}: {answer}");
    }
    finish(ws);
}

#[tokio::test]
async fn mount_proc_shows_only_the_container_masked_and_umount_proc_removes_it() {
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    ctr.sh("mkdir -p /tmp/p");
    assert_eq!(ctr.client(&["mount-proc", "/tmp/p", "1"]), "OK");
    assert!(ctr.mount_points().iter().any(|p| p == "/tmp/p"));

    // Only the container's processes: far fewer than the host's.
    let inside: usize = ctr
        .sh("ls /tmp/p | grep -c '^[0-9]'")
        .trim()
        .parse()
        .expect("count");
    let own: usize = ctr
        .sh("ls /proc | grep -c '^[0-9]'")
        .trim()
        .parse()
        .expect("count");
    let host = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    assert!(
        inside >= 1 && inside < host,
        "{inside} inside, {host} on the host"
    );
    assert!(
        inside.abs_diff(own) <= 2,
        "{inside} in the new proc, {own} in the container's own"
    );
    assert_eq!(
        ctr.sh("cat /tmp/p/1/comm").trim(),
        "sh",
        "PID 1 is the container's init"
    );

    // Masked files read empty (those this kernel has).
    for file in [
        "keys",
        "timer_list",
        "kcore",
        "sched_debug",
        "latency_stats",
        "timer_stats",
    ] {
        if Path::new("/proc").join(file).exists() {
            let size = ctr.sh(&format!("cat /tmp/p/{file} | wc -c"));
            assert_eq!(size.trim(), "0", "/proc/{file} is masked");
        }
    }
    // Read-only parts refuse writes.
    let write = ctr.run(&["sh", "-c", "echo 3 > /tmp/p/sys/vm/drop_caches"]);
    assert!(!write.status.success(), "sys is read-only");
    let write = ctr.run(&["sh", "-c", "echo h > /tmp/p/sysrq-trigger"]);
    assert!(!write.status.success(), "sysrq-trigger is read-only");
    // acpi is an empty folder.
    if Path::new("/proc/acpi").exists() {
        assert_eq!(ctr.sh("test -d /tmp/p/acpi && ls -A /tmp/p/acpi"), "");
        assert!(ctr.mount_points().iter().any(|p| p == "/tmp/p/acpi"));
    }

    assert_eq!(ctr.client(&["umount-proc", "/tmp/p", "1"]), "OK");
    let left: Vec<String> = ctr
        .mount_points()
        .into_iter()
        .filter(|p| p.starts_with("/tmp/p"))
        .collect();
    assert!(left.is_empty(), "still mounted: {left:?}");
    // Unmounting again: nothing of ours there is success.
    assert_eq!(ctr.client(&["umount-proc", "/tmp/p", "1"]), "OK");
    finish(ws);
}

#[tokio::test]
async fn mount_sysfs_shows_the_container_network_and_hides_firmware() {
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    ctr.sh("mkdir -p /tmp/s");
    assert_eq!(ctr.client(&["mount-sysfs", "/tmp/s", "1"]), "OK");
    assert_eq!(
        ctr.sh("ls /tmp/s/class/net")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["lo"]
    );
    assert!(
        std::fs::read_dir("/sys/class/net")
            .expect("host net")
            .count()
            > 1,
        "the host has more interfaces than lo"
    );
    assert_eq!(
        ctr.sh("test -d /tmp/s/firmware && ls -A /tmp/s/firmware"),
        ""
    );
    assert_eq!(ctr.client(&["umount-sysfs", "/tmp/s", "1"]), "OK");
    let left: Vec<String> = ctr
        .mount_points()
        .into_iter()
        .filter(|p| p.starts_with("/tmp/s"))
        .collect();
    assert!(left.is_empty(), "still mounted: {left:?}");
    finish(ws);
}

/// `CONTAINER:HOST:SIZE` entries joined for the client.
fn map(entries: &[(u32, u32, u32)]) -> String {
    entries
        .iter()
        .map(|(c, h, s)| format!("{c}:{h}:{s}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The fifth WriteIDMapping of a burst of 4 is refused, as long as no token came back (one per
/// 2.5 s) since the first call of the burst at `first`.
fn refused_within_burst(answer: &str, first: Instant) {
    if first.elapsed() < Duration::from_millis(2400) {
        assert_eq!(code_of(answer), "ResourceExhausted", "{answer}");
    } else {
        eprintln!(
            "the burst took {:?}: a token came back, not checked",
            first.elapsed()
        );
    }
}

#[tokio::test]
async fn write_id_mapping_writes_once_and_is_rate_limited() {
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    let child = ctr.spawn_descendant("unshare --user sleep 600").to_string();
    let usual = map(&[(0, 33333, 1), (1, 100000, 65534)]);
    let burst = Instant::now();
    assert_eq!(
        ctr.client(&["write-id-mapping", &child, "uid", &usual]),
        "OK"
    );
    assert_eq!(
        ctr.client(&["write-id-mapping", &child, "gid", &usual]),
        "OK"
    );
    let written = |file: &str| {
        ctr.sh(&format!("cat /proc/{child}/{file}"))
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
    };
    assert_eq!(written("uid_map"), ["0 33333 1", "1 100000 65534"]);
    assert_eq!(written("gid_map"), ["0 33333 1", "1 100000 65534"]);

    // A map is written once: the kernel refuses another one (the same one again is success).
    let other = map(&[(0, 33333, 1)]);
    let again = ctr.client(&["write-id-mapping", &child, "uid", &other]);
    assert_eq!(code_of(&again), "FailedPrecondition", "{again}");
    // The fourth call of the burst still goes through to the checks...
    let fourth = ctr.client(&["write-id-mapping", &child, "uid", &map(&[(0, 0, 1)])]);
    assert_eq!(code_of(&fourth), "InvalidArgument", "{fourth}");
    // ...the fifth within the burst is refused.
    let fifth = ctr.client(&["write-id-mapping", &child, "uid", &usual]);
    refused_within_burst(&fifth, burst);
    assert_eq!(written("uid_map"), ["0 33333 1", "1 100000 65534"]);
    finish(ws);
}

#[tokio::test]
async fn write_id_mapping_refuses_invalid_maps() {
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    let child = ctr.spawn_descendant("unshare --user sleep 600").to_string();
    let mut burst = None;
    let many: Vec<(u32, u32, u32)> = (0..341).map(|i| (1 + i * 10, 100000 + i * 10, 1)).collect();
    for (what, mapping) in [
        ("out of range", map(&[(0, 0, 1)])),
        ("overlapping", map(&[(1, 100000, 10), (5, 100100, 10)])),
        ("overflowing", map(&[(1, u32::MAX, 2)])),
        ("341 entries", map(&many)),
    ] {
        burst.get_or_insert_with(Instant::now);
        let answer = ctr.client(&["write-id-mapping", &child, "uid", &mapping]);
        assert_eq!(code_of(&answer), "InvalidArgument", "{what}: {answer}");
    }
    assert_eq!(
        ctr.sh(&format!("cat /proc/{child}/uid_map")),
        "",
        "nothing written"
    );
    let fifth = ctr.client(&["write-id-mapping", &child, "uid", &map(&[(0, 33333, 1)])]);
    refused_within_burst(&fifth, burst.expect("calls made"));
    finish(ws);
}

#[tokio::test]
async fn symlinked_targets_never_lead_out_of_the_container_root() {
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    // A folder of the test on the host, with a marker; the same path also exists inside.
    let host_dir = ws.dir.path().join("host-folder");
    std::fs::create_dir_all(&host_dir).expect("host folder");
    std::fs::write(host_dir.join("marker"), "host").expect("marker");
    let hd = host_dir.to_str().expect("utf-8 path");
    let mounts_before = host_mountinfo();
    ctr.sh(&format!(
        "mkdir -p /tmp/inside '{hd}' && \
         ln -s /../../../tmp/inside /abs && \
         ln -s ../../../../../../tmp/inside /tmp/rel && \
         ln -s '{hd}' /tohost && \
         ln -s ../../../../../../..'{hd}' /tmp/relhost"
    ));
    for (link, lands) in [
        ("/abs", "/tmp/inside"),
        ("/tmp/rel", "/tmp/inside"),
        ("/tohost", hd),
        ("/tmp/relhost", hd),
    ] {
        let answer = ctr.client(&["mount-proc", link, "1"]);
        eprintln!("MountProc at {link}: {answer}");
        if answer == "OK" {
            assert!(
                ctr.mount_points().iter().any(|p| p == lands),
                "{link}: the mount landed inside at {lands}: {:?}",
                ctr.mount_points()
            );
            assert_eq!(ctr.client(&["umount-proc", lands, "1"]), "OK", "{link}");
        } else {
            assert_eq!(code_of(&answer), "InvalidArgument", "{link}: {answer}");
        }
        assert_eq!(
            std::fs::read_dir(&host_dir).expect("host folder").count(),
            1,
            "{link}: the host folder is untouched"
        );
        assert!(host_mounts_under(&host_dir).is_empty(), "{link}");
    }
    assert_eq!(
        host_mountinfo(),
        mounts_before,
        "the host's mount table is unchanged"
    );

    // A target process with its own root (chrooted inside the container): its target is resolved
    // in its root, so a symlink climbing out of that root stays in it.
    ctr.sh(
        "mkdir -p /tmp/jail/usr /tmp/jail/tmp/outside /tmp/outside && \
         mount --bind /usr /tmp/jail/usr && \
         for l in bin sbin lib lib64; do ln -s usr/$l /tmp/jail/$l; done && \
         ln -s /../../../tmp/outside /tmp/jail/esc && \
         ln -s ../../../../tmp/outside /tmp/jail/tmp/rel",
    );
    let jailed = ctr
        .spawn_descendant("chroot /tmp/jail /usr/bin/sleep 600")
        .to_string();
    for link in ["/esc", "/tmp/rel"] {
        let answer = ctr.client(&["mount-proc", link, &jailed]);
        eprintln!("MountProc at {link} of a chrooted process: {answer}");
        let points = ctr.mount_points();
        assert!(
            !points.iter().any(|p| p == "/tmp/outside"),
            "{link}: mounted outside the process's root: {points:?}"
        );
        if answer == "OK" {
            assert!(
                points.iter().any(|p| p == "/tmp/jail/tmp/outside"),
                "{link}: {points:?}"
            );
            assert_eq!(ctr.client(&["umount-proc", "/tmp/outside", &jailed]), "OK");
        } else {
            assert_eq!(code_of(&answer), "InvalidArgument", "{link}: {answer}");
        }
    }
    finish(ws);
}

#[tokio::test]
async fn a_killed_and_restarted_daemon_serves_the_attached_container_again() {
    let mut ws = IwsWorkspace::start(true).await;
    ws.container.sh("mkdir -p /tmp/p");
    assert_eq!(ws.container.client(&["mount-proc", "/tmp/p", "1"]), "OK");
    ws.daemon.stop_with(nix::sys::signal::Signal::SIGKILL).await;
    let down = ws.container.client(&["umount-proc", "/tmp/p", "1"]);
    assert_ne!(down, "OK", "nobody answers while the daemon is down");
    ws.daemon.restart().await;
    // The socket is served again without anything done inside; the mount from before is still
    // known as ours and can be unmounted; a new one works.
    assert_eq!(ws.container.client(&["umount-proc", "/tmp/p", "1"]), "OK");
    assert!(!ws.container.mount_points().iter().any(|p| p == "/tmp/p"));
    assert_eq!(ws.container.client(&["mount-proc", "/tmp/p", "1"]), "OK");
    assert_eq!(ws.container.client(&["umount-proc", "/tmp/p", "1"]), "OK");
    finish(ws);
}

#[tokio::test]
async fn parallel_clients_mount_and_unmount_without_leaking() {
    const CLIENTS: usize = 5;
    let pairs: u64 = std::env::var("IWS_LOAD_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let ws = IwsWorkspace::start(true).await;
    let ctr = &ws.container;
    ctr.sh("mkdir -p /tmp/load-0 /tmp/load-1 /tmp/load-2 /tmp/load-3 /tmp/load-4");
    // Warm up once so that lazily opened files count in the baseline.
    let warm = ctr.client(&["proc-pairs", "1", "/tmp/load-0", "1"]);
    assert!(warm.starts_with("OK 1 pairs"), "{warm}");
    let mounts = ctr.mountinfo().lines().count();
    // The warm-up's connection closes asynchronously: let the count settle before taking it.
    let mut fds = ws.daemon_fds();
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        fds = fds.min(ws.daemon_fds());
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|i| {
            ctr.nsenter()
                .args([
                    wsd_tests::container::CLIENT_INSIDE,
                    SOCKET_INSIDE,
                    "proc-pairs",
                    &pairs.to_string(),
                    &format!("/tmp/load-{i}"),
                    "1",
                ])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("client")
        })
        .collect();
    for worker in workers {
        let out = worker.wait_with_output().expect("client");
        let line = first_line(&out);
        assert!(line.starts_with(&format!("OK {pairs} pairs")), "{line}");
    }
    let took = started.elapsed();
    eprintln!(
        "{CLIENTS} clients x {pairs} MountProc+UmountProc pairs: {took:.1?} ({:.0} pairs/s)",
        (CLIENTS as f64 * pairs as f64) / took.as_secs_f64()
    );
    assert_eq!(ctr.mountinfo().lines().count(), mounts, "mount table back");
    // Connections close asynchronously: give the daemon a moment to drop them.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ws.daemon_fds() > fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = ws.daemon_fds();
    assert!(after <= fds, "open files back: {after} after, {fds} before");
    finish(ws);
}

/// `pid` with its start time (field 22 of its stat; 0 when there is no such process).
fn started(pid: i32) -> (i32, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let start = stat
        .rsplit(')')
        .next()
        .and_then(|rest| rest.split_whitespace().nth(19))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (pid, start)
}

#[test]
fn a_container_is_cleaned_up_when_its_test_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("ctr");
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("shared folder");
    let (tx, rx) = std::sync::mpsc::channel();
    let failed = std::thread::spawn({
        let (root, shared) = (root.clone(), shared.clone());
        move || {
            let ctr = Container::start(&root, &[(shared.as_path(), "/shared")]);
            ctr.sh("mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && mount -t proc proc /shared");
            let sleeper = ctr.spawn_descendant("sleep 600");
            let host = ctr.host_pid(sleeper).expect("host PID");
            tx.send([started(ctr.init_pid()), started(host)])
                .expect("send");
            panic!("a failing test");
        }
    })
    .join();
    assert!(failed.is_err(), "the thread panicked");
    for (pid, start) in rx.recv().expect("PIDs") {
        assert_ne!(started(pid), (pid, start), "process {pid} still exists");
    }
    assert!(!root.exists(), "the container's folder is removed");
    assert!(host_mounts_under(dir.path()).is_empty());
    assert_eq!(std::fs::read_dir(&shared).expect("shared").count(), 0);
}
