//! The `ipgate` admin subcommands, run as a binary against a real control
//! plane and enforcer: every subcommand (so every admin RPC), its `--json`
//! output parsed, its human output read, and its errors.

mod support;

mod apis;
mod errors;
mod help;
mod keys;
mod lists;
mod logs;
mod tenants;
