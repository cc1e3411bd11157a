//! ipgate control plane: the admin API, storage and change log, the sync
//! server enforcers follow, and the usage log.
//!
//! [`start`] wires everything (migrations, bootstrap tokens, the gRPC server
//! with reflection and health) so `ipgate control-plane`, `ipgate dev` and
//! the tests run the same code. Modules are listed by layer, lowest first:
//! a module imports only from layers below it (`docs/architecture.md`,
//! "Layers", which a test checks).

// Pieces that import nothing of the crate.
pub mod config;
pub mod etag;
pub mod invalid;
pub mod page;
pub mod time_format;
pub mod tokens;

// Domain logic, and admin requests -> domain values.
pub mod allowlists;
pub mod request;

// The database.
pub mod store;

// Services.
pub mod admin;
pub mod auth;
pub mod status;
pub mod sync;
pub mod usage;

// Wiring.
pub mod bootstrap;
pub mod error;
pub mod server;

pub use bootstrap::BootstrapTokens;
pub use config::Config;
pub use error::Error;
pub use ipgate_shared as shared;
pub use server::{Running, start};
