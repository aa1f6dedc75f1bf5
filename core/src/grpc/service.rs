//! A tonic service that hands every request to the core dispatch table, for the main listener of
//! the server binary and for the workspaces' own sockets (where it adds the caller, and the
//! dispatch answers only the in-workspace services). Requests arrive as protobuf bytes and go to
//! `Daemon::call` unchanged, so a method added to core is served here without new code.

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;

use super::status::to_status;
use crate::call::{CallContext, Caller};
use crate::daemon::Daemon;
use bytes::{Buf, BufMut, Bytes};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::TryStreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, ServerStreamingService, UnaryService};
use tonic::{Request, Response, Status};

/// Passes message bytes through untouched; core decodes them.
#[derive(Clone, Copy, Default)]
struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Vec<u8>;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for BytesCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// Serves every method it is routed for by handing the request path to core. On a workspace's
/// own socket it also carries who is calling.
#[derive(Clone)]
pub struct DispatchService {
    daemon: Daemon,
    caller: Option<Caller>,
}

impl DispatchService {
    /// For a listener that knows nothing of its callers (the main gRPC listener).
    pub fn new(daemon: Daemon) -> Self {
        DispatchService {
            daemon,
            caller: None,
        }
    }

    /// For one connection of a workspace's own socket.
    pub(crate) fn for_caller(daemon: Daemon, caller: Caller) -> Self {
        DispatchService {
            daemon,
            caller: Some(caller),
        }
    }
}

struct Unary {
    daemon: Daemon,
    path: String,
    caller: Option<Caller>,
}

impl UnaryService<Bytes> for Unary {
    type Response = Vec<u8>;
    type Future = BoxFuture<'static, Result<Response<Vec<u8>>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let daemon = self.daemon.clone();
        let path = std::mem::take(&mut self.path);
        let ctx = CallContext {
            deadline: request
                .metadata()
                .get("grpc-timeout")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_grpc_timeout)
                .map(|t| tokio::time::Instant::now() + t.saturating_sub(deadline_margin(t))),
            caller: self.caller.clone(),
            ..CallContext::default()
        };
        Box::pin(async move {
            daemon
                .call(&path, request.into_inner(), ctx)
                .await
                .map(Response::new)
                .map_err(to_status)
        })
    }
}

/// A server-streaming method: the long poll it streams, asked by core until the end.
struct Streaming {
    daemon: Daemon,
    path: String,
}

impl ServerStreamingService<Bytes> for Streaming {
    type Response = Vec<u8>;
    type ResponseStream = BoxStream<'static, Result<Vec<u8>, Status>>;
    type Future = BoxFuture<'static, Result<Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let daemon = self.daemon.clone();
        let path = std::mem::take(&mut self.path);
        Box::pin(async move {
            // The stream lives as long as the client reads it; no deadline applies per report.
            let stream = daemon
                .stream(&path, request.into_inner(), CallContext::default())
                .ok_or_else(|| Status::unimplemented(format!("{path} is not a stream")))?;
            let stream: Self::ResponseStream = Box::pin(stream.map_err(to_status));
            Ok(Response::new(stream))
        })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for DispatchService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        // Streams are served on the main listener only (none is an in-workspace operation).
        if crate::dispatch::streamed_by(&path).is_some() && self.caller.is_none() {
            let streaming = Streaming {
                daemon: self.daemon.clone(),
                path,
            };
            return Box::pin(async move {
                let mut grpc = Grpc::new(BytesCodec);
                Ok(grpc.server_streaming(streaming, request).await)
            });
        }
        let unary = Unary {
            daemon: self.daemon.clone(),
            path,
            caller: self.caller.clone(),
        };
        // Unknown methods are answered by core like on every surface (code, reason, metrics).
        Box::pin(async move {
            let mut grpc = Grpc::new(BytesCodec);
            Ok(grpc.unary(unary, request).await)
        })
    }
}

/// tonic's own enforcement of `grpc-timeout` answers CANCELLED when it fires; ending the wait a
/// little earlier lets the caller get the DEADLINE_EXCEEDED the behaviour spec promises.
fn deadline_margin(timeout: Duration) -> Duration {
    (timeout / 20).min(Duration::from_millis(50))
}

/// Parses the `grpc-timeout` header: up to 8 digits and a unit (H M S m u n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }
}
