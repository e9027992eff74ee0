//! Generates the Rust code and the descriptor set of every `airt.*.v1` package.
//! protoc comes from `protoc-bin-vendored` unless `PROTOC` is set, so a fresh
//! machine needs no system package.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "airt/common/v1/common.proto",
    "airt/audit/v1/audit.proto",
    "airt/registry/v1/registry.proto",
    "airt/policy/v1/policy.proto",
    "airt/workflow/v1/workflow.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=airt");
    println!("cargo:rerun-if-env-changed=PROTOC");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut config = prost_build::Config::new();
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    config.protoc_executable(protoc);
    // `prost::Name` for every message: its full name finds its descriptor
    // (the CLI prints any answer as proto3 JSON through it).
    config.enable_type_names();

    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("airt_descriptor.bin"))
        .compile_with_config(
            config,
            &PROTOS.iter().map(PathBuf::from).collect::<Vec<_>>(),
            &[PathBuf::from("."), well_known],
        )?;
    Ok(())
}
