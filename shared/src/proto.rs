//! Code generated from `proto/` at build time, and the descriptor sets: all
//! of them, and each server's for gRPC reflection.

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

/// Encoded `FileDescriptorSet` of every ipgate proto.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ipgate_descriptor.bin"));

/// Encoded `FileDescriptorSet` of what the control plane serves (admin and
/// sync), for its gRPC reflection: the check service's types are not in it,
/// so reflection there neither lists nor describes a service it lacks.
pub const CONTROL_PLANE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/control_plane_descriptor.bin"));

/// Encoded `FileDescriptorSet` of what the enforcer serves (check, and
/// Envoy's `envoy.service.auth.v3.Authorization` with every file it imports,
/// compiled from `proto/vendor/`), for its gRPC reflection.
pub const ENFORCER_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/enforcer_descriptor.bin"));
