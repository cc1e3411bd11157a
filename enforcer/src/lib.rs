//! ipgate enforcer: keeps a compiled copy of every allowlist in memory, in
//! step with the control plane, and decides each request at its front doors.
//!
//! [`start`] binds the doors, starts the sync client and the usage-event
//! reporter, and hands back a [`Running`] enforcer. Every door decides through
//! [`Enforcer::decide`], which reads the index without locking.

pub mod client_ip;
pub mod config;
pub mod doors;
pub mod error;
pub mod events;
pub mod state;

mod backoff;
mod control_plane;
mod server;
mod shutdown;
mod sync;

pub use ipgate_shared as shared;

pub use config::Config;
pub use error::Error;
pub use server::{Running, SYNC_HEALTH, start};
pub use state::{DecisionInput, Enforcer, Outcome, PendingEvent};
