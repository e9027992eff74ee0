//! The v1 contracts of AI-First Runtime, generated from `proto/airt/**.proto`.
//!
//! Every package is versioned (`airt.<area>.v1`); other languages generate their
//! clients from the same `.proto` files.

#![allow(
    missing_docs,
    clippy::all,
    clippy::too_many_lines,
    missing_debug_implementations
)]

pub mod common {
    pub mod v1 {
        tonic::include_proto!("airt.common.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("airt.audit.v1");
    }
}

pub mod registry {
    pub mod v1 {
        tonic::include_proto!("airt.registry.v1");
    }
}

pub mod policy {
    pub mod v1 {
        tonic::include_proto!("airt.policy.v1");
    }
}

pub mod workflow {
    pub mod v1 {
        tonic::include_proto!("airt.workflow.v1");
    }
}

/// The encoded `FileDescriptorSet` of every `airt.*.v1` package, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("airt_descriptor");
