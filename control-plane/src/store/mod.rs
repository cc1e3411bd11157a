//! Storage: [`Store`], the control plane's one way into its database (sqlx
//! `Any` over SQLite or PostgreSQL), with one file per concern for its
//! operations (`tenants`, `tokens`, `apis`, `keys`, `lists`, `audit`,
//! `sync`, `usage`, `gaps`). The usage log is apart from the configuration
//! (`usage_log`): its own SQLite file, its own writers on the backend's
//! own driver (`usage_writer`, `usage_sqlite`, `usage_postgres`).
//!
//! Every configuration write is one transaction that takes the next
//! revision first, checks the etag, writes the rows, appends the encoded
//! `ipgate.sync.v1.Delta` to the change log and its audit rows, so
//! revisions commit in order with no holes and no change goes unaudited
//! (`write.rs` holds that pattern once). Every write takes
//! [`WriteCtx::validate_only`]: it runs in full and is rolled back.
//!
//! The store imports nothing of the services above it (see
//! `docs/architecture.md`, "Layers").

mod apis;
mod args;
mod audit;
mod copy_binary;
mod db;
mod error;
mod gaps;
mod keys;
mod lists;
mod preview_hold;
mod records;
mod rows;
mod sync;
mod tenants;
mod tokens;
mod usage;
mod usage_log;
mod usage_postgres;
mod usage_sqlite;
mod usage_writer;
mod write;

pub use db::{Backend, Store};
pub use error::{OpenError, StoreError, StoreResult};
pub use lists::ListOwner;
pub use preview_hold::PreviewHold;
pub use records::*;
pub use write::Write;
