use std::process::ExitCode;

use clap::Parser;

/// mimalloc: under many small allocations across threads (spans, protobuf
/// messages) it spends far less than the system allocator (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AI-First Runtime registry service: the Law — capabilities, their risk and how to undo them. Knows nothing about workflows or policy.
#[derive(Debug, Parser)]
#[command(name = "registry-service", version)]
struct Cli {
    #[command(flatten)]
    server: airt_kit::config::ServerArgs,

    #[command(subcommand)]
    command: Option<airt_kit::bootstrap::Command>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: nothing but this thread runs yet (the runtime starts later).
    #[allow(unsafe_code)]
    unsafe {
        airt_kit::config::scrub_secret_env();
    }
    if let Some(command) = cli.command {
        return airt_kit::bootstrap::run_command(&registry_service::IDENTITY, &cli.server, command);
    }
    airt_kit::bootstrap::run_main(
        &registry_service::IDENTITY,
        cli.server,
        registry_service::serve_on,
    )
}
