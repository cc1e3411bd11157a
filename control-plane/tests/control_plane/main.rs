//! Component tests of the control plane: the store suite and the gRPC
//! services, each on SQLite and on PostgreSQL (one test binary, so the
//! crate is linked once).

mod access;
mod admin;
mod common;
mod layering;
mod lifecycle;
mod lists;
mod logs;
mod server;
mod store;
mod sync;
mod tenancy;
mod usage;
