//! ipgate control plane: the admin API, storage and change log, the sync
//! server enforcers follow, and the usage log.
//!
//! [`start`] wires everything (migrations, bootstrap tokens, the gRPC server
//! with reflection and health) so `ipgate control-plane`, `ipgate dev` and
//! the tests run the same code.

pub mod admin;
pub mod allowlists;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod error;
pub mod page;
pub mod server;
pub mod status;
pub mod store;
pub mod sync;
pub mod usage;

pub use bootstrap::BootstrapTokens;
pub use config::Config;
pub use error::Error;
pub use ipgate_shared as shared;
pub use server::{Running, start};
