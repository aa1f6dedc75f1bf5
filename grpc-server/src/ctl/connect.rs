//! Where `ws-daemon ctl` finds the daemon: an explicit address or socket, else the configuration
//! the daemon itself reads (its unix socket when it has one, else its TCP listener).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::Status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An `http://host:port` address.
    Tcp(String),
    Unix(PathBuf),
}

impl Target {
    /// The target named by the flags, else the one of the daemon's configuration.
    pub fn choose(
        addr: Option<&str>,
        socket: Option<&Path>,
        config: Result<wsd_core::Config, String>,
    ) -> Result<Target, String> {
        if let Some(socket) = socket {
            return Ok(Target::Unix(socket.to_path_buf()));
        }
        if let Some(addr) = addr {
            return Ok(Target::Tcp(with_scheme(addr)));
        }
        let config = config.map_err(|e| format!("no --addr or --socket, and {e}"))?;
        if let Some(socket) = config.server.unix_socket {
            return Ok(Target::Unix(socket));
        }
        let listen: SocketAddr = config.server.listen.parse().map_err(|e| {
            format!(
                "no --addr or --socket, and the configured listen address {:?} is not an address: {e}",
                config.server.listen
            )
        })?;
        Ok(Target::Tcp(format!("http://{}", reachable(listen))))
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Tcp(addr) => addr.clone(),
            Target::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    pub async fn connect(&self) -> Result<Channel, Status> {
        let unreachable = |e: tonic::transport::Error| {
            // The transport error's own text is terse ("transport error"); its source says why.
            let why = std::error::Error::source(&e)
                .map(ToString::to_string)
                .unwrap_or_else(|| e.to_string());
            Status::unavailable(format!(
                "cannot reach the daemon at {}: {why}",
                self.describe()
            ))
        };
        match self {
            Target::Tcp(addr) => Endpoint::from_shared(addr.clone())
                .map_err(|e| Status::invalid_argument(format!("invalid address {addr:?}: {e}")))?
                .connect()
                .await
                .map_err(unreachable),
            Target::Unix(path) => {
                let path = path.clone();
                // The URI is required by the API but unused: the connector dials the socket.
                Endpoint::from_static("http://[::1]:0")
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let path = path.clone();
                        async move {
                            let stream = tokio::net::UnixStream::connect(path).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(stream))
                        }
                    }))
                    .await
                    .map_err(unreachable)
            }
        }
    }
}

fn with_scheme(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// A listener bound to every interface is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_configuration() {
        let config = || Ok(wsd_core::Config::default());
        assert_eq!(
            Target::choose(Some("127.0.0.1:9"), None, config()),
            Ok(Target::Tcp("http://127.0.0.1:9".into()))
        );
        assert_eq!(
            Target::choose(None, Some(Path::new("/run/wsd.sock")), config()),
            Ok(Target::Unix("/run/wsd.sock".into()))
        );
    }

    #[test]
    fn the_configured_listener_is_reached_on_loopback() {
        let mut config = wsd_core::Config::default();
        config.server.listen = "0.0.0.0:8080".into();
        assert_eq!(
            Target::choose(None, None, Ok(config.clone())),
            Ok(Target::Tcp("http://127.0.0.1:8080".into()))
        );
        config.server.listen = "[::]:8080".into();
        assert_eq!(
            Target::choose(None, None, Ok(config.clone())),
            Ok(Target::Tcp("http://[::1]:8080".into()))
        );
        config.server.unix_socket = Some("/run/wsd.sock".into());
        assert_eq!(
            Target::choose(None, None, Ok(config)),
            Ok(Target::Unix("/run/wsd.sock".into()))
        );
    }

    #[test]
    fn a_broken_configuration_is_reported_without_flags() {
        let err = Target::choose(None, None, Err("bad file".into())).expect_err("no target");
        assert!(err.contains("bad file"), "{err}");
    }
}
