//! Compiles `proto/` with protox (no `protoc` binary needed) and writes the
//! descriptor sets: every ipgate proto (for the CLI's JSON output), and one
//! per server holding only what that server serves (for gRPC reflection).
//!
//! The enforcer also serves Envoy's `envoy.service.auth.v3.Authorization`,
//! whose Rust types come from the `envoy-types` crate. That crate ships no
//! descriptor set, so its `.proto` files (and the ones they import) are kept
//! in `proto/vendor/` and compiled here for reflection only: no code is
//! generated from them.

use std::{env, fs, path::PathBuf};

use prost::Message;

const ADMIN: &str = "ipgate/admin/v1/admin.proto";
const SYNC: &str = "ipgate/sync/v1/sync.proto";
const CHECK: &str = "ipgate/check/v1/check.proto";
const PROTOS: &[&str] = &[ADMIN, SYNC, CHECK];
/// Envoy's external authorization service, under `proto/vendor/`.
const ENVOY_AUTH: &str = "envoy/service/auth/v3/external_auth.proto";

/// Descriptor sets written beside the full one: (file name, protos).
const PER_SERVER: &[(&str, &[&str])] = &[
    ("control_plane_descriptor.bin", &[ADMIN, SYNC]),
    ("enforcer_descriptor.bin", &[CHECK, ENVOY_AUTH]),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let vendor_dir = proto_dir.join("vendor");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    // Protos are given by name, looked up in the include directories as
    // imports are, so a vendored file has the name its importers use.
    let includes = [&proto_dir, &vendor_dir];
    let descriptors = protox::compile(PROTOS, includes)?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("ipgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    for (name, protos) in PER_SERVER {
        let served = protox::compile(*protos, includes)?;
        fs::write(out_dir.join(name), served.encode_to_vec())?;
    }

    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
