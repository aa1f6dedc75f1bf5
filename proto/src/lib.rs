//! Generated wire types of the Workspace Daemon API.
//!
//! The `.proto` files under `protos/` are the contract (see `shared/spec/wire-contract.md`): field
//! numbers and spellings never change. Every surface (gRPC, C, Node, uniffi) shares these types.

#![allow(clippy::doc_lazy_continuation, clippy::large_enum_variant)]

pub mod contentservice {
    tonic::include_proto!("contentservice");
}

pub mod wsdaemon {
    tonic::include_proto!("wsdaemon");
}

pub mod iws {
    tonic::include_proto!("iws");
}

/// The encoded `FileDescriptorSet` of every proto file, served through gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// The gRPC services of the API, by full name.
pub const SERVICE_NAMES: &[&str] = &[
    "wsdaemon.WorkspaceContentService",
    "wsdaemon.WorkspaceContentExt",
    "iws.InWorkspaceService",
    "iws.WorkspaceInfoService",
];
