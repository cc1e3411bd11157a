//! Why the enforcer could not start or stopped.

use std::net::SocketAddr;

/// An error that stops the enforcer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag's value cannot be used; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why the system refused it.
        source: std::io::Error,
    },
    /// The gRPC door failed while serving.
    #[error("gRPC door failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The reflection service could not read the descriptor sets.
    #[error("cannot serve gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A background task panicked or was cancelled.
    #[error("enforcer task {task} ended abnormally: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
    /// A background task ended on its own, which it never should.
    #[error("enforcer task {0} stopped unexpectedly")]
    Stopped(&'static str),
    /// Waiting for the shutdown signal failed.
    #[error("cannot listen for shutdown signals: {0}")]
    Signal(std::io::Error),
}
