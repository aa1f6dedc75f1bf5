//! SetupPairVeths for real: a stand-in container whose `eth0` leads to an "outside" network
//! namespace (192.168.250.1 there, .2 in the container, default route via .1), an inner network
//! namespace in the container (`unshare --net`), traffic both ways through the pair, and its
//! removal. Everything lives in namespaces of processes the tests kill, so the pairs and rules
//! go with them; the host's network namespace is never touched.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sched::CloneFlags;
use wsd_proto::iws::{SetupPairVethsRequest, SetupPairVethsResponse};

use super::*;
use crate::iws::network::remove_network;
use crate::runtime::Container;
use crate::sys::namespaces::run_inside;

const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 168, 250, 1);
const CONTAINER: Ipv4Addr = Ipv4Addr::new(192, 168, 250, 2);
const INNER: Ipv4Addr = Ipv4Addr::new(10, 0, 5, 2);

/// A network namespace of its own standing for the world outside the container: a process
/// killed when dropped, and with it the namespace and its end of the link.
struct Outside(Child);

impl Outside {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `ip args` (or any command) in the network namespace of `pid`; panics on failure.
fn net(pid: i32, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("nsenter");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The container, connected to a new outside namespace through its `eth0`.
fn wired(container: &TestContainer) -> Outside {
    let outside = Outside(
        Command::new("unshare")
            .args(["--net", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare"),
    );
    // unshare execs sleep once the namespace exists: wait for that.
    let own = std::fs::read_link("/proc/self/ns/net").expect("own netns");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{}/ns/net", outside.pid())).ok() == Some(own.clone()) {
        assert!(std::time::Instant::now() < deadline, "no outside namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (o, c) = (outside.pid(), container.pid);
    let peer_ns = c.to_string();
    net(
        o,
        &[
            "ip", "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", &peer_ns,
        ],
    );
    net(o, &["ip", "addr", "add", "192.168.250.1/30", "dev", "out0"]);
    net(o, &["ip", "link", "set", "out0", "up"]);
    net(o, &["ip", "link", "set", "lo", "up"]);
    net(c, &["ip", "addr", "add", "192.168.250.2/30", "dev", "eth0"]);
    net(c, &["ip", "link", "set", "eth0", "up"]);
    net(c, &["ip", "link", "set", "lo", "up"]);
    net(
        c,
        &["ip", "route", "add", "default", "via", "192.168.250.1"],
    );
    outside
}

/// A process in a new network namespace inside the container: (PID as the daemon sees it, PID
/// as the container sees it).
fn inner_namespace(container: &TestContainer) -> (i32, i64) {
    let host = container.spawn_inside(&["unshare", "--net", "sleep", "1000"]);
    let own = std::fs::read_link(format!("/proc/{}/ns/net", container.pid)).expect("netns");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{host}/ns/net")).ok() == Some(own.clone()) {
        assert!(std::time::Instant::now() < deadline, "no inner namespace");
        std::thread::sleep(Duration::from_millis(10));
    }
    (host, container.pid_inside(host).into())
}

/// `work` on a thread in the network namespace of `pid` (sockets made there stay there).
async fn in_net<T: Send + 'static>(
    pid: i32,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> T {
    let ns: OwnedFd = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .expect("netns")
        .into();
    run_inside(vec![(ns, CloneFlags::CLONE_NEWNET)], work)
        .await
        .expect("work in the namespace")
}

/// Connects from the network namespace of `from` to `to`, sends a line and returns what the
/// listener saw: the peer's address and the line.
async fn talk(listener: TcpListener, from: i32, to: SocketAddr) -> (SocketAddr, String) {
    let mut client = in_net(from, move || {
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
    })
    .await;
    client.write_all(b"hello\n").expect("send");
    drop(client);
    tokio::task::spawn_blocking(move || {
        let (mut conn, peer) = listener.accept().expect("accept");
        let mut got = String::new();
        conn.read_to_string(&mut got).expect("read");
        (peer, got)
    })
    .await
    .expect("accept thread")
}

async fn setup(d: &Daemon, ctx: &CallContext, pid: i64) -> Result<SetupPairVethsResponse> {
    call(
        d,
        "iws.InWorkspaceService/SetupPairVeths",
        SetupPairVethsRequest { pid },
        ctx,
    )
    .await
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// What the pair left in the container's and the inner namespaces, for comparing calls.
fn state(container: i32, inner: i32) -> Vec<String> {
    [
        net(container, &["ip", "-o", "link", "show", "type", "veth"])
            .lines()
            .map(|l| {
                l.split_once(':')
                    .map_or(l, |x| x.1)
                    .split('@')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(","),
        net(
            container,
            &["ip", "-o", "-4", "addr", "show", "dev", "veth0"],
        ),
        net(container, &["nft", "list", "tables"]),
        net(container, &["nft", "list", "table", "ip", "wsd"]),
        net(inner, &["ip", "-o", "-4", "addr", "show", "dev", "ceth0"]),
        net(inner, &["ip", "route", "show", "default"]),
    ]
    .into_iter()
    .map(|s| s.trim().to_string())
    .collect()
}

fn forwarding(pid: i32) -> String {
    net(pid, &["cat", "/proc/sys/net/ipv4/ip_forward"])
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inner_namespace_reaches_out_masqueraded_and_inbound_tcp_is_forwarded_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    let outside = wired(&container);
    let (inner, inner_pid) = inner_namespace(&container);
    workspace(&d, "ws-net").await;
    attach(&d, "ws-net", container.pid).await;
    let ctx = from("ws-net", container.pid);
    let host_forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host");

    setup(&d, &ctx, inner_pid).await.expect("set up");

    // Out: the outside sees the container's address, not the inner one.
    let listener = in_net(outside.pid(), || TcpListener::bind((OUTSIDE, 0))).await;
    let to = listener.local_addr().expect("addr");
    let (peer, got) = talk(listener, inner, to).await;
    assert_eq!(got, "hello\n");
    assert_eq!(peer.ip(), std::net::IpAddr::V4(CONTAINER), "masqueraded");

    // In: TCP to the container's outer address lands in the inner namespace.
    let listener = in_net(inner, || TcpListener::bind((INNER, 0))).await;
    let port = listener.local_addr().expect("addr").port();
    let (peer, got) = talk(listener, outside.pid(), SocketAddr::from((CONTAINER, port))).await;
    assert_eq!(got, "hello\n");
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(OUTSIDE),
        "forwarded as it came"
    );

    // Forwarding is on in the container's namespace only (/proc/sys/net follows the opener's
    // network namespace, also on the daemon's namespace thread).
    assert_eq!(forwarding(container.pid), "1");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("host"),
        host_forwarding,
        "the host's forwarding is untouched"
    );
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_duplicates_nothing_and_a_new_inner_namespace_gets_the_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    let outside = wired(&container);
    let (inner, inner_pid) = inner_namespace(&container);
    workspace(&d, "ws-net2").await;
    attach(&d, "ws-net2", container.pid).await;
    let ctx = from("ws-net2", container.pid);

    // The pair takes the MTU of the way out.
    net(container.pid, &["ip", "link", "set", "eth0", "mtu", "1400"]);
    setup(&d, &ctx, inner_pid).await.expect("first");
    assert!(net(container.pid, &["ip", "-o", "link", "show", "dev", "veth0"]).contains("mtu 1400"));
    assert!(net(inner, &["ip", "-o", "link", "show", "dev", "ceth0"]).contains("mtu 1400"));
    let first = state(container.pid, inner);
    assert_eq!(first[0], "eth0,veth0", "eth0 to the outside, and one pair");
    assert_eq!(lines(&first[1]).len(), 1, "{first:?}");
    assert!(first[1].contains("10.0.5.1/30"), "{first:?}");
    assert_eq!(lines(&first[2]), ["table ip wsd"]);
    assert_eq!(first[3].matches("masquerade").count(), 1, "{first:?}");
    assert_eq!(first[3].matches("dnat").count(), 1, "{first:?}");
    assert_eq!(lines(&first[4]).len(), 1, "{first:?}");
    assert!(first[4].contains("10.0.5.2/30"), "{first:?}");
    assert_eq!(
        lines(&first[5]),
        ["default via 10.0.5.1 dev ceth0 proto static"],
        "{first:?}"
    );

    setup(&d, &ctx, inner_pid).await.expect("second");
    assert_eq!(state(container.pid, inner), first, "nothing duplicated");
    let kept = net(container.pid, &["ip", "-o", "link", "show", "dev", "veth0"]);

    // The inner namespace was replaced: the pair moves to the new one.
    let (renewed, renewed_pid) = inner_namespace(&container);
    setup(&d, &ctx, renewed_pid)
        .await
        .expect("for the new inner namespace");
    // Made anew: the same state but for the interface numbers.
    let unnumbered = |state: Vec<String>| -> Vec<String> {
        state
            .into_iter()
            .map(|s| {
                s.split_once(": ")
                    .map_or(s.clone(), |(_, rest)| rest.to_string())
            })
            .collect()
    };
    assert_eq!(
        unnumbered(state(container.pid, renewed)),
        unnumbered(first.clone())
    );
    assert_ne!(
        net(container.pid, &["ip", "-o", "link", "show", "dev", "veth0"]),
        kept,
        "a new pair"
    );
    assert!(
        !net(inner, &["ip", "-o", "link"]).contains("ceth0"),
        "the old inner namespace lost its end"
    );
    let listener = in_net(outside.pid(), || TcpListener::bind((OUTSIDE, 0))).await;
    let to = listener.local_addr().expect("addr");
    let (peer, _) = talk(listener, renewed, to).await;
    assert_eq!(peer.ip(), std::net::IpAddr::V4(CONTAINER));
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_leaves_no_pair_and_no_table_and_may_run_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    // With the outer interface named: the rules name it, and the way out works through it.
    let mut settings = config(dir.path());
    settings.iws.network.outer_interface = "eth0".into();
    let d = Daemon::start(settings).await.expect("start");
    let container = TestContainer::start();
    let outside = wired(&container);
    let (inner, inner_pid) = inner_namespace(&container);
    workspace(&d, "ws-net3").await;
    attach(&d, "ws-net3", container.pid).await;
    let ctx = from("ws-net3", container.pid);
    setup(&d, &ctx, inner_pid).await.expect("set up");
    let rules = net(container.pid, &["nft", "list", "table", "ip", "wsd"]);
    assert!(rules.contains("oifname \"eth0\" masquerade"), "{rules}");
    assert!(
        rules.contains("iifname \"eth0\" meta l4proto tcp dnat"),
        "{rules}"
    );
    let listener = in_net(outside.pid(), || TcpListener::bind((OUTSIDE, 0))).await;
    let to = listener.local_addr().expect("addr");
    let (peer, _) = talk(listener, inner, to).await;
    assert_eq!(peer.ip(), std::net::IpAddr::V4(CONTAINER));

    let held = Arc::new(Container::open(container.pid.into(), "", None).expect("container"));
    remove_network(held.clone()).await.expect("remove");
    assert_eq!(
        net(container.pid, &["ip", "-o", "link", "show", "type", "veth"])
            .lines()
            .count(),
        1,
        "only eth0 is left"
    );
    assert!(!net(container.pid, &["ip", "-o", "link"]).contains("veth0"));
    assert!(!net(inner, &["ip", "-o", "link"]).contains("ceth0"));
    assert_eq!(net(container.pid, &["nft", "list", "tables"]).trim(), "");
    remove_network(held.clone())
        .await
        .expect("again: nothing to remove");

    // A stopped container has nothing left to remove.
    let mut stopped = TestContainer::start();
    let gone = Arc::new(Container::open(stopped.pid.into(), "", None).expect("container"));
    stopped.stop();
    remove_network(gone).await.expect("stopped container");

    // And set up again after it.
    setup(&d, &ctx, inner_pid).await.expect("set up again");
    assert_eq!(
        lines(&net(container.pid, &["nft", "list", "tables"])),
        ["table ip wsd"]
    );
    d.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pids_and_the_containers_own_namespace_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(config(dir.path())).await.expect("start");
    let container = TestContainer::start();
    workspace(&d, "ws-net4").await;
    attach(&d, "ws-net4", container.pid).await;
    let ctx = from("ws-net4", container.pid);

    let err = setup(&d, &ctx, 4242).await.expect_err("unknown pid");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = setup(&d, &ctx, -1).await.expect_err("negative pid");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    let err = setup(&d, &ctx, 1)
        .await
        .expect_err("the container's own namespace");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("own network namespace"), "{err}");
    assert!(!err.to_string().contains("/proc"), "{err}");
    assert!(
        !net(container.pid, &["ip", "-o", "link"]).contains("veth0"),
        "nothing was made"
    );
    // Not over the workspace socket: refused before anything.
    let err = setup(&d, &CallContext::default(), 1)
        .await
        .expect_err("no caller");
    assert_eq!(err.code(), Code::FailedPrecondition);
    d.shutdown(Duration::from_secs(1)).await;
}
