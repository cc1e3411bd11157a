//! Why the control plane could not start or stopped.

use std::net::SocketAddr;

use crate::store::{OpenError, StoreError};

/// A failure to start or run the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{var} must be a token of 16-256 printable ASCII characters without spaces")]
    BadBootstrapToken { var: &'static str },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("a control-plane task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
