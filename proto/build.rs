//! Compiles the wire contract with protox (no system `protoc`) into Rust types, tonic clients, a
//! descriptor set that the server serves for reflection, and the list of the contract's services
//! (so that no other place spells them out).

use prost::Message;
use std::fmt::Write;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "contentservice/initializer.proto",
    "wsdaemon/daemon.proto",
    "wsdaemon/ext.proto",
    "wsdaemon/runtime.proto",
    "iws/workspace_daemon.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("protos");
    println!("cargo:rerun-if-changed={}", root.display());

    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join(p)).collect();
    let fds = protox::compile(&files, [&root])?;

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;

    let mut services = String::from("&[\n");
    for file in &fds.file {
        for service in &file.service {
            writeln!(services, "    \"{}.{}\",", file.package(), service.name())?;
        }
    }
    services.push(']');
    std::fs::write(out.join("service_names.rs"), services)?;

    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;

    compile_containerd_api()
}

/// containerd's API, for the daemon's containerd discovery (a client only; not part of the
/// contract, so not in the descriptor set or the service names).
const CONTAINERD: &[&str] = &[
    "services/containers/v1/containers.proto",
    "services/tasks/v1/tasks.proto",
    "services/events/v1/events.proto",
    "services/version/v1/version.proto",
    "events/container.proto",
    "events/task.proto",
];

fn compile_containerd_api() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("vendor/containerd");
    println!("cargo:rerun-if-changed={}", root.display());
    let api = root.join("github.com/containerd/containerd/api");
    let files: Vec<PathBuf> = CONTAINERD.iter().map(|p| api.join(p)).collect();
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
