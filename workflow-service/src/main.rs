use std::process::ExitCode;

use clap::Parser;

/// mimalloc: under many small allocations across threads (spans, protobuf
/// messages) it spends far less than the system allocator (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AI-First Runtime workflow service: the Body — runs workflows durably,
/// asking the registry and the policy service before every step.
#[derive(Debug, Parser)]
#[command(name = "workflow-service", version)]
struct Cli {
    #[command(flatten)]
    server: airt_kit::config::ServerArgs,

    #[command(subcommand)]
    command: Option<airt_kit::bootstrap::Command>,

    #[command(flatten)]
    workflow: workflow_service::WorkflowArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: nothing but this thread runs yet (the runtime starts later).
    #[allow(unsafe_code)]
    unsafe {
        airt_kit::config::scrub_secret_env();
    }
    if let Some(command) = cli.command {
        return airt_kit::bootstrap::run_command(&workflow_service::IDENTITY, &cli.server, command);
    }
    let workflow = cli.workflow;
    airt_kit::bootstrap::run_main(
        &workflow_service::IDENTITY,
        cli.server,
        move |config, listener, shutdown| async move {
            let workflow = workflow_service::WorkflowConfig::from_args(&workflow, &config)?;
            workflow_service::serve_on(config, workflow, listener, shutdown).await
        },
    )
}
