//! orgplane's wire types. Only this crate knows protobuf: the generated code for `proto/` and
//! the conversions between wire messages and domain types (one file per message family in
//! [`conv`]). Wire-to-domain conversions are `TryFrom`-style functions with a typed error.

#![forbid(unsafe_code)]

pub mod conv;

/// The public API, package `orgplane.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("orgplane.v1");
}

/// The peer-only Raft service, package `orgplane.raft.v1`.
pub mod raft_v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("orgplane.raft.v1");
}

/// The encoded descriptor set of every proto file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/orgplane_descriptor.bin"));

pub use conv::ConvError;
