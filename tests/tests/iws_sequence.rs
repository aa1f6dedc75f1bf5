//! The whole in-workspace sequence over the wire, in the order a workspace runtime makes the
//! calls: a container (its own root, /dev, cgroups and network namespace, with a link to an
//! "outside" network namespace) -> PrepareForUserNS -> a child in new user, mount and network
//! namespaces -> WriteIDMapping (uid, gid) -> MountProc -> EvacuateCGroup -> SetupPairVeths,
//! then what each did is checked for real, the daemon is restarted, and Teardown plus
//! WipingTeardown leave nothing behind. Requires root, python3, ip and nft.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wsd_tests::cgroups::TestCgroups;
use wsd_tests::container::{Container, IwsWorkspace};

/// The gRPC code name (`OK` for success) of the client's answer line.
fn code_of(line: &str) -> &str {
    line.split([':', ' ']).next().unwrap_or(line)
}

/// Runs `args` in the network namespace of the host process `pid`.
fn in_netns(pid: i32, args: &[&str]) -> std::process::Output {
    Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--"])
        .args(args)
        .output()
        .expect("nsenter")
}

fn ok_in_netns(pid: i32, args: &[&str]) -> String {
    let out = in_netns(pid, args);
    assert!(
        out.status.success(),
        "{args:?} in the network namespace of {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace standing for the world outside the container, linked to the container's
/// `eth0`: outside 192.168.251.1/30, container 192.168.251.2/30 with its default route out.
struct Outside {
    holder: Child,
}

impl Outside {
    fn link(container: &Container) -> Outside {
        let holder = Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .spawn()
            .expect("outside namespace");
        let pid = holder.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
            == std::fs::read_link("/proc/self/ns/net").ok()
        {
            assert!(Instant::now() < deadline, "no outside namespace");
            std::thread::sleep(Duration::from_millis(10));
        }
        let init = container.init_pid();
        let out = Command::new("ip")
            .args([
                "link",
                "add",
                "out0",
                "netns",
                &pid.to_string(),
                "type",
                "veth",
            ])
            .args(["peer", "name", "eth0", "netns", &init.to_string()])
            .output()
            .expect("ip");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for args in [
            &["ip", "addr", "add", "192.168.251.1/30", "dev", "out0"][..],
            &["ip", "link", "set", "out0", "up"],
            &["ip", "link", "set", "lo", "up"],
        ] {
            ok_in_netns(pid, args);
        }
        for args in [
            &["ip", "addr", "add", "192.168.251.2/30", "dev", "eth0"][..],
            &["ip", "link", "set", "eth0", "up"],
            &["ip", "link", "set", "lo", "up"],
            &["ip", "route", "add", "default", "via", "192.168.251.1"],
        ] {
            ok_in_netns(init, args);
        }
        Outside { holder }
    }

    fn pid(&self) -> i32 {
        self.holder.id() as i32
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // Its namespace, and the link with it, goes with its last process.
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

const SERVER: &str = "import socket,sys\n\
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(20)\n\
print('listening', flush=True)\n\
c, a = s.accept(); print(a[0], flush=True)";
const CLIENT: &str =
    "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 10).close()";

/// Starts a one-connection TCP server in the network namespace of `server_ns` on `bind:port`,
/// connects from `client_ns` to `to:port`, and returns the address the server saw.
fn tcp_through(server_ns: i32, bind: &str, client_ns: i32, to: &str, port: u16) -> String {
    let port = port.to_string();
    let mut server = Command::new("nsenter")
        .args([
            "-t",
            &server_ns.to_string(),
            "-n",
            "--",
            "python3",
            "-c",
            SERVER,
            bind,
        ])
        .arg(&port)
        .stdout(Stdio::piped())
        .spawn()
        .expect("server");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    assert_eq!(
        lines.next().and_then(|l| l.ok()).as_deref(),
        Some("listening")
    );
    let client = in_netns(client_ns, &["python3", "-c", CLIENT, to, &port]);
    let seen = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        client.status.success(),
        "connect to {to}:{port}: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    seen
}

fn read_u64(path: &std::path::Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .expect("number")
}

/// `used/limit` pairs of the client's `info` answer: (cpu, memory).
fn info_of(answer: &str) -> ((i64, i64), (i64, i64)) {
    let pair = |key: &str| {
        let value = answer
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {answer}"));
        let (used, limit) = value.split_once('/').expect("used/limit");
        (used.parse().expect("used"), limit.parse().expect("limit"))
    };
    (pair("cpu="), pair("memory="))
}

fn mount_points_of(pid: i32) -> Vec<String> {
    wsd_tests::container::mount_points(
        &std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default(),
    )
}

#[tokio::test]
async fn the_in_workspace_sequence_works_for_real_and_leaves_nothing_behind() {
    let mut ws = IwsWorkspace::start(false).await;
    let cgroups = TestCgroups::create(&format!("wsd-e2e-{}", std::process::id()), 512 << 20);
    let init = ws.container.init_pid();
    cgroups.enter(init, "");
    ws.attach().await.expect("attach");
    let outside = Outside::link(&ws.container);
    let ctr = &ws.container;
    ctr.sh("mkdir -p /tmp/p");

    // PrepareForUserNS.
    assert_eq!(ctr.client(&["prepare"]), "OK fs_shift=IDMAPPED");
    assert_eq!(cgroups.v2_procs("workspace"), vec![init]);
    let tun = std::fs::symlink_metadata(format!("/proc/{init}/root/dev/net/tun")).expect("tun");
    assert_eq!((tun.uid(), tun.rdev()), (33333, libc::makedev(10, 200)));

    // The workspace's child in new user, mount and network namespaces (as a runtime starts it,
    // in the container's cgroups).
    let child = ctr.spawn_descendant("unshare --user --mount --net sleep 600");
    let child_host = ctr.host_pid(child).expect("host PID of the child");
    cgroups.enter(child_host, "workspace");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{child_host}/ns/user")).ok()
        == std::fs::read_link(format!("/proc/{init}/ns/user")).ok()
    {
        assert!(Instant::now() < deadline, "no user namespace");
        std::thread::sleep(Duration::from_millis(10));
    }

    // WriteIDMapping (uid, gid) -> MountProc -> EvacuateCGroup -> SetupPairVeths.
    let sequence = ctr.client(&["sequence", &child.to_string()]);
    assert_eq!(code_of(&sequence), "OK", "{sequence}");

    // The once-only operations answer RESOURCE_EXHAUSTED to a second call; the others succeed
    // again without doing anything twice.
    assert_eq!(code_of(&ctr.client(&["prepare"])), "ResourceExhausted");
    assert_eq!(code_of(&ctr.client(&["evacuate"])), "ResourceExhausted");
    assert_eq!(ctr.client(&["setup-veths", &child.to_string()]), "OK");
    let map = "0:33333:1,1:100000:65534";
    let again = ctr.client(&["write-id-mapping", &child.to_string(), "uid", map]);
    assert_eq!(again, "OK");

    // A daemon restart: everything is still known and idempotent underneath.
    ws.daemon.stop_with(nix::sys::signal::Signal::SIGKILL).await;
    ws.daemon.restart().await;
    let ctr = &ws.container;
    assert_eq!(ctr.client(&["prepare"]), "OK fs_shift=IDMAPPED");
    assert_eq!(ctr.client(&["evacuate"]), "OK");
    assert_eq!(ctr.client(&["setup-veths", &child.to_string()]), "OK");

    // The id shift: root of the child's namespace creates a file through the mark; on disk it is
    // root's, through the idmapped mount the host sees the mapped owner.
    assert!(mount_points_of(child_host).contains(&"/.workspace/mark".to_string()));
    let made = Command::new("nsenter")
        .args(["-t", &child_host.to_string(), "-U", "-m", "--"])
        .args(["touch", "/.workspace/mark/made-inside"])
        .output()
        .expect("nsenter");
    assert!(made.status.success(), "{made:?}");
    let on_disk = std::fs::metadata(format!("/proc/{init}/root/made-inside")).expect("on disk");
    assert_eq!((on_disk.uid(), on_disk.gid()), (0, 0));
    let shifted = std::fs::metadata(format!(
        "/proc/{child_host}/root/.workspace/mark/made-inside"
    ))
    .expect("through the mark");
    assert_eq!((shifted.uid(), shifted.gid()), (33333, 33333));
    assert!(mount_points_of(child_host).contains(&"/tmp/p".to_string()));

    // The cgroup delegation: every process in workspace/user, handed to the workspace's root.
    assert_eq!(cgroups.v2_procs("workspace/user"), {
        let mut both = vec![init, child_host];
        both.sort_unstable();
        both
    });
    let user_dir = cgroups.v2_dir("workspace/user").expect("v2");
    assert_eq!(std::fs::metadata(&user_dir).expect("user").uid(), 33333);

    // The network: the child reaches a server outside (masqueraded as the container), and a
    // server in the child is reached from outside through the container's address.
    let seen = tcp_through(
        outside.pid(),
        "192.168.251.1",
        child_host,
        "192.168.251.1",
        7101,
    );
    assert_eq!(seen, "192.168.251.2", "masqueraded as the container");
    let seen = tcp_through(child_host, "10.0.5.2", outside.pid(), "192.168.251.2", 7102);
    assert_eq!(seen, "192.168.251.1", "forwarded in from outside");

    // WorkspaceInfo under a known load: one busy process and 64 MiB held, in the container's
    // cgroups; the figures match the cgroup files.
    let busy = ctr.spawn_descendant("sh -c 'while :; do :; done'");
    // Memory is charged where it is allocated: the hog allocates once it is in the cgroups.
    let hog = ctr.spawn_descendant(
        "sh -c 'sleep 1; exec python3 -c \"import time; b = bytearray(64 << 20); b[::4096] = bytes(len(b[::4096])); time.sleep(600)\"'",
    );
    for pid in [busy, hog] {
        cgroups.enter(ctr.host_pid(pid).expect("host PID"), "workspace/user");
    }
    let usage = cgroups.v1_file("cpuacct.usage").expect("cpuacct.usage");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (t0, u0) = (Instant::now(), read_u64(&usage));
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let (t1, u1) = (Instant::now(), read_u64(&usage));
    let files_cpu = ((u1 - u0) as f64 / 1e6 / (t1 - t0).as_secs_f64()) as i64;
    let answer = ctr.client(&["info"]);
    let ((cpu_used, cpu_limit), (mem_used, mem_limit)) = info_of(&answer);
    let mem_file = cgroups
        .v1_file("memory.usage_in_bytes")
        .expect("memory usage");
    let stat = std::fs::read_to_string(mem_file.with_file_name("memory.stat")).expect("stat");
    let inactive: i64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("total_inactive_file "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let files_mem = read_u64(&mem_file) as i64 - inactive;
    assert_eq!(cpu_limit, 1500, "{answer}");
    assert_eq!(mem_limit, 512 << 20, "{answer}");
    assert!(
        (cpu_used - files_cpu).abs() <= 150 + files_cpu / 4,
        "cpu {cpu_used} against {files_cpu} from cpuacct.usage ({answer})"
    );
    assert!(cpu_used >= 500, "one busy process: {answer}");
    assert!(
        (mem_used - files_mem).abs() <= 8 << 20,
        "memory {mem_used} against {files_mem} from the files ({answer})"
    );
    assert!(mem_used >= 64 << 20, "64 MiB held: {answer}");

    // Teardown, then WipingTeardown: no mount, veth, nft table or cgroup left.
    assert_eq!(ctr.client(&["teardown"]), "OK success=true");
    assert_eq!(code_of(&ctr.client(&["teardown"])), "ResourceExhausted");
    let points = mount_points_of(child_host);
    assert!(
        !points.contains(&"/.workspace/mark".to_string()),
        "{points:?}"
    );
    assert!(!points.contains(&"/tmp/p".to_string()), "{points:?}");
    assert!(!ok_in_netns(init, &["ip", "-o", "link"]).contains("veth0"));
    assert!(!ok_in_netns(child_host, &["ip", "-o", "link"]).contains("ceth0"));
    assert_eq!(ok_in_netns(init, &["nft", "list", "tables"]).trim(), "");
    assert_eq!(ctr.client(&["wiping-teardown", "true"]), "OK success=true");
    assert_eq!(ctr.client(&["wiping-teardown", "true"]), "OK success=true");
    assert!(!cgroups.v2_dir("workspace").expect("v2").exists());
    assert!(cgroups.v2_procs("").contains(&init));
    assert!(!std::path::Path::new(&format!("/proc/{init}/root/dev/net")).exists());
    assert!(!std::path::Path::new(&format!("/proc/{init}/root/.workspace/mark")).exists());
    drop(outside);
}
