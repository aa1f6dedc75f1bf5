//! A minimal client of `iws.InWorkspaceService` over a workspace's unix socket, meant to run inside
//! a test container. It makes one call (or a loop of MountProc + UmountProc pairs), prints `OK` or
//! `<gRPC code>: <message>` and exits 0 on OK, 1 on a gRPC error, 2 on bad usage, 3 when it
//! cannot connect.
//!
//! Usage:
//!   iws-client SOCKET mount-proc|umount-proc|mount-sysfs|umount-sysfs TARGET PID
//!   iws-client SOCKET write-id-mapping PID uid|gid CONTAINER:HOST:SIZE[,...]
//!   iws-client SOCKET proc-pairs N TARGET PID     (N x MountProc + UmountProc, stops at an error)
//!   iws-client SOCKET info-latency N              (N timed WorkspaceInfo calls)
//!   iws-client SOCKET prepare                     (PrepareForUserNS; prints `OK fs_shift=...`)
//!   iws-client SOCKET evacuate | teardown | wiping-teardown true|false
//!   iws-client SOCKET setup-veths PID
//!   iws-client SOCKET info                        (prints `OK cpu=USED/LIMIT memory=USED/LIMIT`)
//!   iws-client SOCKET sequence PID                (WriteIDMapping uid+gid, MountProc /tmp/p,
//!                                                  EvacuateCGroup, SetupPairVeths for PID, timed)
//!   iws-client SOCKET prepare-timed | teardown-timed   (PrepareForUserNS; Teardown + wiping
//!                                                  WipingTeardown; timed)

use std::process::ExitCode;
use std::time::Instant;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use wsd_proto::iws::in_workspace_service_client::InWorkspaceServiceClient;
use wsd_proto::iws::write_id_mapping_request::Mapping;
use wsd_proto::iws::{
    EvacuateCGroupRequest, FsShiftMethod, MountProcRequest, PrepareForUserNsRequest,
    SetupPairVethsRequest, TeardownRequest, UmountProcRequest, WipingTeardownRequest,
    WorkspaceInfoRequest, WriteIdMappingRequest,
};

type Client = InWorkspaceServiceClient<Channel>;

const USAGE: &str =
    "usage: iws-client SOCKET (mount-proc|umount-proc|mount-sysfs|umount-sysfs TARGET PID \
                     | write-id-mapping PID uid|gid C:H:S[,C:H:S...] | proc-pairs N TARGET PID \
                     | info-latency N | prepare | evacuate | teardown | wiping-teardown BOOL \
                     | setup-veths PID | info | sequence PID | prepare-timed | teardown-timed)";

/// The id maps of the tests: container root to 33333, the rest from 100000.
const USUAL_MAP: &str = "0:33333:1,1:100000:65534";

async fn connect(socket: String) -> Result<Client, String> {
    // A daemon that stops answering fails the call (and the test) instead of hanging it.
    let channel = Endpoint::try_from("http://[::]:50051")
        .map_err(|e| e.to_string())?
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(120))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
        .map_err(|e| format!("{e}: {e:?}"))?;
    Ok(InWorkspaceServiceClient::new(channel))
}

fn pid(text: &str) -> Result<i64, String> {
    text.parse().map_err(|_| format!("not a PID: {text}"))
}

fn mappings(text: &str) -> Result<Vec<Mapping>, String> {
    text.split(',')
        .map(|entry| {
            let parts: Vec<u32> = entry
                .split(':')
                .map(|n| n.parse().map_err(|_| format!("not an id: {n}")))
                .collect::<Result<_, _>>()?;
            match parts[..] {
                [container_id, host_id, size] => Ok(Mapping {
                    container_id,
                    host_id,
                    size,
                }),
                _ => Err(format!("not CONTAINER:HOST:SIZE: {entry}")),
            }
        })
        .collect()
}

/// One call; `Err` carries the usage problem.
async fn call(
    client: &mut Client,
    args: &[String],
) -> Result<Result<String, tonic::Status>, String> {
    let arg = |i: usize| args.get(i).cloned().ok_or_else(|| USAGE.to_string());
    Ok(match arg(0)?.as_str() {
        "mount-proc" | "mount-sysfs" => {
            let req = MountProcRequest {
                target: arg(1)?,
                pid: pid(&arg(2)?)?,
            };
            if args[0] == "mount-proc" {
                client.mount_proc(req).await.map(|_| "OK".to_string())
            } else {
                client.mount_sysfs(req).await.map(|_| "OK".to_string())
            }
        }
        "umount-proc" | "umount-sysfs" => {
            let req = UmountProcRequest {
                target: arg(1)?,
                pid: pid(&arg(2)?)?,
            };
            if args[0] == "umount-proc" {
                client.umount_proc(req).await.map(|_| "OK".to_string())
            } else {
                client.umount_sysfs(req).await.map(|_| "OK".to_string())
            }
        }
        "write-id-mapping" => {
            let gid = match arg(2)?.as_str() {
                "uid" => false,
                "gid" => true,
                other => return Err(format!("uid or gid, not {other}")),
            };
            let req = WriteIdMappingRequest {
                pid: pid(&arg(1)?)?,
                gid,
                mapping: mappings(&arg(3)?)?,
            };
            client.write_id_mapping(req).await.map(|_| "OK".to_string())
        }
        "proc-pairs" => {
            let n: u64 = arg(1)?.parse().map_err(|_| USAGE.to_string())?;
            let (target, pid) = (arg(2)?, pid(&arg(3)?)?);
            let started = Instant::now();
            for i in 0..n {
                let pair = async {
                    client
                        .mount_proc(MountProcRequest {
                            target: target.clone(),
                            pid,
                        })
                        .await?;
                    client
                        .umount_proc(UmountProcRequest {
                            target: target.clone(),
                            pid,
                        })
                        .await
                };
                if let Err(status) = pair.await {
                    return Ok(Err(tonic::Status::new(
                        status.code(),
                        format!("pair {i}: {}", status.message()),
                    )));
                }
            }
            Ok(format!(
                "OK {n} pairs in {:.3} s",
                started.elapsed().as_secs_f64()
            ))
        }
        "info-latency" => {
            // N timed WorkspaceInfo calls; a call the rate limit refuses (4 at once, then one
            // per 1.5 s) is waited out and not timed. Calls right after another one and calls
            // after such a wait (threads idle, on both sides) are reported apart.
            let n: usize = arg(1)?.parse().map_err(|_| USAGE.to_string())?;
            let (mut burst, mut after_wait) = (Vec::new(), Vec::new());
            let mut waited = false;
            while burst.len() + after_wait.len() < n {
                let started = Instant::now();
                match client.workspace_info(WorkspaceInfoRequest {}).await {
                    Ok(_) => {
                        let us = started.elapsed().as_micros();
                        if waited {
                            after_wait.push(us)
                        } else {
                            burst.push(us)
                        }
                        waited = false;
                    }
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                        tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
                        waited = true;
                    }
                    Err(s) => return Ok(Err(s)),
                }
            }
            let describe = |mut v: Vec<u128>| {
                if v.is_empty() {
                    return "none".to_string();
                }
                v.sort_unstable();
                format!(
                    "median {} us, max {} us ({} calls)",
                    v[v.len() / 2],
                    v[v.len() - 1],
                    v.len()
                )
            };
            Ok(format!(
                "OK back to back: {}; after a 1.6 s wait: {}",
                describe(burst),
                describe(after_wait)
            ))
        }
        "prepare" => client
            .prepare_for_user_ns(PrepareForUserNsRequest {})
            .await
            .map(|r| {
                let shift = FsShiftMethod::try_from(r.into_inner().fs_shift)
                    .map_or("unknown", |m| m.as_str_name());
                format!("OK fs_shift={shift}")
            }),
        "prepare-timed" => {
            let started = Instant::now();
            client
                .prepare_for_user_ns(PrepareForUserNsRequest {})
                .await
                .map(|_| format!("OK prepare={}us", started.elapsed().as_micros()))
        }
        "teardown-timed" => {
            let started = Instant::now();
            if let Err(s) = client.teardown(TeardownRequest {}).await {
                return Ok(Err(s));
            }
            let teardown = started.elapsed().as_micros();
            let started = Instant::now();
            client
                .wiping_teardown(WipingTeardownRequest { do_wipe: true })
                .await
                .map(|_| {
                    format!(
                        "OK teardown={teardown}us wipe={}us",
                        started.elapsed().as_micros()
                    )
                })
        }
        "evacuate" => client
            .evacuate_c_group(EvacuateCGroupRequest {})
            .await
            .map(|_| "OK".to_string()),
        "teardown" => client
            .teardown(TeardownRequest {})
            .await
            .map(|r| format!("OK success={}", r.into_inner().success)),
        "wiping-teardown" => {
            let do_wipe = arg(1)?.parse().map_err(|_| USAGE.to_string())?;
            client
                .wiping_teardown(WipingTeardownRequest { do_wipe })
                .await
                .map(|r| format!("OK success={}", r.into_inner().success))
        }
        "setup-veths" => client
            .setup_pair_veths(SetupPairVethsRequest {
                pid: pid(&arg(1)?)?,
            })
            .await
            .map(|_| "OK".to_string()),
        "info" => client
            .workspace_info(WorkspaceInfoRequest {})
            .await
            .map(|r| {
                let res = r.into_inner().resources.unwrap_or_default();
                let (cpu, mem) = (res.cpu.unwrap_or_default(), res.memory.unwrap_or_default());
                format!(
                    "OK cpu={}/{} memory={}/{}",
                    cpu.used, cpu.limit, mem.used, mem.limit
                )
            }),
        "sequence" => {
            // The calls of a workspace's start after PrepareForUserNS, for the process PID in
            // new user, mount and network namespaces; prints the time each took.
            let target = pid(&arg(1)?)?;
            let mut times = Vec::new();
            let mut step = |name: &str, started: Instant| {
                times.push(format!("{name}={}us", started.elapsed().as_micros()))
            };
            for gid in [false, true] {
                let started = Instant::now();
                if let Err(s) = client
                    .write_id_mapping(WriteIdMappingRequest {
                        pid: target,
                        gid,
                        mapping: mappings(USUAL_MAP)?,
                    })
                    .await
                {
                    return Ok(Err(s));
                }
                step(if gid { "gid_map" } else { "uid_map" }, started);
            }
            let started = Instant::now();
            if let Err(s) = client
                .mount_proc(MountProcRequest {
                    target: "/tmp/p".into(),
                    pid: target,
                })
                .await
            {
                return Ok(Err(s));
            }
            step("mount_proc", started);
            let started = Instant::now();
            if let Err(s) = client.evacuate_c_group(EvacuateCGroupRequest {}).await {
                return Ok(Err(s));
            }
            step("evacuate", started);
            let started = Instant::now();
            if let Err(s) = client
                .setup_pair_veths(SetupPairVethsRequest { pid: target })
                .await
            {
                return Ok(Err(s));
            }
            step("veths", started);
            Ok(format!("OK {}", times.join(" ")))
        }
        _ => return Err(USAGE.to_string()),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(socket) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let mut client = match connect(socket).await {
        Ok(c) => c,
        Err(e) => {
            println!("connect: {e}");
            return ExitCode::from(3);
        }
    };
    match call(&mut client, &args[1..]).await {
        Ok(Ok(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Ok(Err(status)) => {
            println!("{:?}: {}", status.code(), status.message());
            ExitCode::from(1)
        }
        Err(usage) => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    }
}
