//! The JSON twin of the dispatch: requests and responses in the proto3 JSON mapping, for callers
//! without a protobuf library (C programs, shells). It converts through the descriptors of the
//! wire contract and then takes the same path as protobuf calls.

use std::sync::OnceLock;

use bytes::Bytes;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::call::CallContext;
use crate::daemon::Daemon;
use crate::error::{Error, Result};

fn pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(wsd_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| Error::Internal(format!("cannot load the API descriptors: {e}")))
}

/// Input and output message types of the method at `path` (`/pkg.Service/Method`).
fn method_types(path: &str) -> Result<(MessageDescriptor, MessageDescriptor)> {
    let unknown = || Error::UnknownMethod(crate::workspace::ids::printable(path));
    let (service, method) = path
        .strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .ok_or_else(unknown)?;
    let service = pool()?.get_service_by_name(service).ok_or_else(unknown)?;
    let method = service
        .methods()
        .find(|m| m.name() == method)
        .ok_or_else(unknown)?;
    Ok((method.input(), method.output()))
}

/// Whether `path` names an RPC of the contract (served or not).
pub fn is_contract_method(path: &str) -> bool {
    method_types(path).is_ok()
}

/// Converts a proto3 JSON request of `path` into protobuf bytes.
pub fn request_from_json(path: &str, json: &str) -> Result<Vec<u8>> {
    let (input, _) = method_types(path)?;
    let mut de = serde_json::Deserializer::from_str(json);
    let message = DynamicMessage::deserialize(input, &mut de)
        .and_then(|m| de.end().map(|_| m))
        .map_err(|e| Error::BadRequest {
            method: path.to_string(),
            reason: format!("invalid JSON request: {e}"),
        })?;
    Ok(message.encode_to_vec())
}

/// Converts protobuf response bytes of `path` into proto3 JSON (lowerCamelCase names, default
/// values omitted, enums by name).
pub fn response_to_json(path: &str, bytes: &[u8]) -> Result<String> {
    let (_, output) = method_types(path)?;
    let message = DynamicMessage::decode(output, bytes).map_err(Error::internal)?;
    let mut out = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut out, &SerializeOptions::new())
        .map_err(Error::internal)?;
    String::from_utf8(out.into_inner()).map_err(Error::internal)
}

/// Converts protobuf response bytes of `path` into the JSON that typed surfaces deserialize into
/// records named after the proto fields (uniffi): proto field names, every field present (also
/// defaults), enums by number, 64-bit integers as numbers.
pub fn response_to_record_json(path: &str, bytes: &[u8]) -> Result<String> {
    let (_, output) = method_types(path)?;
    let message = DynamicMessage::decode(output, bytes).map_err(Error::internal)?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .use_enum_numbers(true)
        .stringify_64_bit_integers(false);
    let mut out = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut out, &options)
        .map_err(Error::internal)?;
    String::from_utf8(out.into_inner()).map_err(Error::internal)
}

/// One RPC of the API contract (all services of the .proto files, served or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiMethod {
    /// `/pkg.Service/Method`
    pub path: String,
    /// `pkg.Service`
    pub service: String,
    /// `Method`
    pub name: String,
    /// Full name of the request message, e.g. `wsdaemon.InitWorkspaceRequest`.
    pub input: String,
    /// Full name of the response message.
    pub output: String,
    /// Whether this daemon serves it (the dispatch table has it, or, for a streaming method, the
    /// long poll it streams).
    pub served: bool,
    /// Whether it answers a stream of responses (served by the gRPC server; in-process callers
    /// call the long poll it streams, see [`crate::dispatch::streamed_by`]).
    pub server_streaming: bool,
    /// Whether it is served only on a workspace's own socket (it acts for a caller inside a
    /// workspace container); elsewhere it answers FAILED_PRECONDITION.
    pub socket_only: bool,
}

/// Every RPC of the contract, in the order of the .proto files.
pub fn api_methods() -> Result<Vec<ApiMethod>> {
    let mut out = Vec::new();
    for service in pool()?.services() {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            let found = crate::dispatch::find(&path);
            let streamed = crate::dispatch::streamed_by(&path)
                .is_some_and(|poll| crate::dispatch::find(poll).is_some());
            out.push(ApiMethod {
                served: found.is_some() || (method.is_server_streaming() && streamed),
                server_streaming: method.is_server_streaming(),
                socket_only: found.is_some_and(|m| m.socket_only()),
                path,
                service: service.full_name().to_string(),
                name: method.name().to_string(),
                input: method.input().full_name().to_string(),
                output: method.output().full_name().to_string(),
            });
        }
    }
    Ok(out)
}

/// The descriptors of the API contract, for generators (e.g. TypeScript types).
pub fn descriptor_pool() -> Result<&'static DescriptorPool> {
    pool()
}

impl Daemon {
    /// Calls the operation at `path` with a proto3 JSON request and returns a JSON response.
    pub async fn call_json(&self, path: &str, json: &str, ctx: CallContext) -> Result<String> {
        let request = request_from_json(path, json)?;
        let response = self.call(path, Bytes::from(request), ctx).await?;
        response_to_json(path, &response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsd_proto::wsdaemon::{InitWorkspaceRequest, IsWorkspaceExistsResponse};

    const INIT: &str = "/wsdaemon.WorkspaceContentService/InitWorkspace";

    #[test]
    fn json_requests_accept_json_and_proto_field_names() {
        let json = r#"{"id":"ws1","metadata":{"owner":"u","metaId":"m"},"initializer":{"empty":{}},"remote_storage_disabled":true}"#;
        let bytes = request_from_json(INIT, json).expect("convert");
        let req = InitWorkspaceRequest::decode(bytes.as_slice()).expect("decode");
        assert_eq!(req.id, "ws1");
        assert_eq!(req.metadata.expect("metadata").meta_id, "m");
        assert!(req.remote_storage_disabled);
        assert!(req.initializer.expect("initializer").spec.is_some());
    }

    #[test]
    fn bad_json_and_unknown_methods_are_refused() {
        assert_eq!(
            request_from_json(INIT, "{\"id\": 5}")
                .expect_err("type")
                .code(),
            crate::Code::InvalidArgument
        );
        assert_eq!(
            request_from_json(INIT, "{} trailing")
                .expect_err("trailing")
                .code(),
            crate::Code::InvalidArgument
        );
        assert_eq!(
            request_from_json("/nope.X/Y", "{}")
                .expect_err("unknown")
                .code(),
            crate::Code::Unimplemented
        );
    }

    #[test]
    fn every_contract_method_is_listed_and_the_served_ones_are_marked() {
        let methods = api_methods().expect("methods");
        let init = methods
            .iter()
            .find(|m| m.path == INIT)
            .expect("InitWorkspace");
        assert!(init.served);
        assert_eq!(init.input, "wsdaemon.InitWorkspaceRequest");
        let proc = methods
            .iter()
            .find(|m| m.path == "/iws.InWorkspaceService/MountProc")
            .expect("MountProc");
        assert!(proc.served && proc.socket_only);
        assert!(!init.socket_only);
        assert!(
            methods.iter().all(|m| m.served),
            "no method of the contract is left unserved"
        );
        assert_eq!(
            methods
                .iter()
                .filter(|m| m.service == "iws.InWorkspaceService")
                .count(),
            13
        );
    }

    #[test]
    fn responses_use_proto3_json() {
        let path = "/wsdaemon.WorkspaceContentService/IsWorkspaceExists";
        let bytes = IsWorkspaceExistsResponse { exists: true }.encode_to_vec();
        assert_eq!(
            response_to_json(path, &bytes).expect("json"),
            r#"{"exists":true}"#
        );
        assert_eq!(response_to_json(path, &[]).expect("json"), "{}");
    }
}
