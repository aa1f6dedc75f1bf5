//! Server-streaming calls for in-process hosts: the responses of a stream (WatchProgress) one at a
//! time, each fetched with an awaited `next`, so every surface turns it into its own iterator (a
//! JavaScript async iterator, a Go `grpc.ClientStream`, a C handle) without logic of its own.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};

use crate::call::CallContext;
use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// An open server-streaming call. `next` answers the next response, `None` once the stream ended;
/// after an error the stream has ended too. Safe to share: concurrent `next` calls take turns.
pub struct CallStream {
    path: String,
    responses: tokio::sync::Mutex<Option<BoxStream<'static, Result<Vec<u8>>>>>,
}

impl Daemon {
    /// Opens the server-streaming method at `path` with an encoded request. A unary method or a
    /// path outside the contract is refused (call those with [`Daemon::call`]).
    pub fn open_stream(&self, path: &str, request: Bytes, ctx: CallContext) -> Result<CallStream> {
        match self.stream(path, request, ctx) {
            Some(responses) => Ok(CallStream {
                path: path.to_string(),
                responses: tokio::sync::Mutex::new(Some(responses)),
            }),
            None if crate::dispatch::find(path).is_some() => Err(Error::InvalidArgument(format!(
                "{path} answers once: call it instead of opening a stream"
            ))),
            None if crate::json::is_contract_method(path) => Err(Error::Unimplemented(format!(
                "{path} is part of the API but not served by this version of the daemon"
            ))),
            None => Err(Error::Unimplemented(format!("unknown method {path}"))),
        }
    }

    /// [`Daemon::open_stream`] with a proto3 JSON request; read it with [`CallStream::next_json`].
    pub fn open_stream_json(&self, path: &str, json: &str, ctx: CallContext) -> Result<CallStream> {
        let request = crate::json::request_from_json(path, json)?;
        self.open_stream(path, Bytes::from(request), ctx)
    }
}

impl CallStream {
    /// The next encoded response, or `None` when the stream has ended. Cancel-safe: a `next`
    /// dropped while it waits loses nothing, the following one goes on from the same point.
    pub async fn next(&self) -> Result<Option<Vec<u8>>> {
        let mut responses = self.responses.lock().await;
        let Some(stream) = responses.as_mut() else {
            return Ok(None);
        };
        match stream.next().await {
            Some(Ok(bytes)) => Ok(Some(bytes)),
            Some(Err(e)) => {
                *responses = None;
                Err(e)
            }
            None => {
                *responses = None;
                Ok(None)
            }
        }
    }

    /// The next response in proto3 JSON (see [`CallStream::next`]).
    pub async fn next_json(&self) -> Result<Option<String>> {
        match self.next().await? {
            Some(bytes) => crate::json::response_to_json(&self.path, &bytes).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Code;
    use prost::Message;
    use wsd_proto::wsdaemon::{ProgressRequest, ProgressResponse};

    const WATCH: &str = "/wsdaemon.WorkspaceContentExt/WatchProgress";

    async fn daemon(dir: &std::path::Path) -> Daemon {
        Daemon::start(crate::testing::config(dir))
            .await
            .expect("start")
    }

    #[tokio::test]
    async fn a_stream_answers_its_reports_then_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = daemon(dir.path()).await;
        crate::testing::init_empty(&d, "ws-s").await;
        let stream = d
            .open_stream_json(WATCH, r#"{"id":"ws-s"}"#, CallContext::default())
            .expect("open");
        let first = stream.next().await.expect("next").expect("a report");
        let report = ProgressResponse::decode(first.as_slice()).expect("decode");
        assert_eq!(report.operation, "init");
        assert!(report.done, "{report:?}");
        assert_eq!(stream.next().await.expect("next"), None, "ended");
        assert_eq!(stream.next().await.expect("next"), None, "stays ended");
    }

    #[tokio::test]
    async fn errors_end_the_stream_and_unary_methods_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = daemon(dir.path()).await;
        let request = ProgressRequest {
            id: "nope".into(),
            ..Default::default()
        };
        let stream = d
            .open_stream(
                WATCH,
                request.encode_to_vec().into(),
                CallContext::default(),
            )
            .expect("open");
        let err = stream.next().await.expect_err("unknown workspace");
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(stream.next().await.expect("next"), None);

        let unary = "/wsdaemon.WorkspaceContentExt/Progress";
        let err = d
            .open_stream(unary, Bytes::new(), CallContext::default())
            .err()
            .expect("unary");
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = d
            .open_stream("/x.Y/Z", Bytes::new(), CallContext::default())
            .err()
            .expect("unknown");
        assert_eq!(err.code(), Code::Unimplemented);
        let err = d
            .open_stream_json(WATCH, "{\"id\": 5}", CallContext::default())
            .err()
            .expect("bad JSON");
        assert_eq!(err.code(), Code::InvalidArgument);
    }
}
