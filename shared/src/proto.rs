//! Code generated from `proto/` at build time, and the descriptor set that
//! gRPC reflection serves.

#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// `ipgate.admin.v1`: the operators' API on the control plane.
pub mod admin {
    pub mod v1 {
        tonic::include_proto!("ipgate.admin.v1");
    }
}

/// `ipgate.sync.v1`: control plane <-> enforcer.
pub mod sync {
    pub mod v1 {
        tonic::include_proto!("ipgate.sync.v1");
    }
}

/// `ipgate.check.v1`: the enforcer's gRPC front door.
pub mod check {
    pub mod v1 {
        tonic::include_proto!("ipgate.check.v1");
    }
}

/// Encoded `FileDescriptorSet` of every ipgate proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ipgate_descriptor.bin"));
