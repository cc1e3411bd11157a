//! ipgate control plane (stub).
pub use ipgate_shared as shared;
use sqlx as _;
use tonic_reflection as _;
use tonic_health as _;
use tonic_types as _;
use tokio as _;
use tokio_stream as _;
use uuid as _;
use clap as _;
use prost as _;
use prost_types as _;
use sha2 as _;
use rand as _;
use tracing as _;
use thiserror as _;
