//! Compiles `proto/` with protox (no `protoc` binary needed) and writes the
//! descriptor sets: every ipgate proto (for the CLI's JSON output), and one
//! per server holding only what that server serves (for gRPC reflection).

use std::{env, fs, path::PathBuf};

use prost::Message;

const ADMIN: &str = "ipgate/admin/v1/admin.proto";
const SYNC: &str = "ipgate/sync/v1/sync.proto";
const CHECK: &str = "ipgate/check/v1/check.proto";
const PROTOS: &[&str] = &[ADMIN, SYNC, CHECK];

/// Descriptor sets written beside the full one: (file name, protos).
const PER_SERVER: &[(&str, &[&str])] = &[
    ("control_plane_descriptor.bin", &[ADMIN, SYNC]),
    ("enforcer_descriptor.bin", &[CHECK]),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let files =
        |protos: &[&str]| -> Vec<PathBuf> { protos.iter().map(|p| proto_dir.join(p)).collect() };
    let descriptors = protox::compile(files(PROTOS), [&proto_dir])?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("ipgate_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    for (name, protos) in PER_SERVER {
        let served = protox::compile(files(protos), [&proto_dir])?;
        fs::write(out_dir.join(name), served.encode_to_vec())?;
    }

    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
