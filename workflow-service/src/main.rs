use std::process::ExitCode;

use clap::Parser;

/// AI-First Runtime workflow service: the Body — runs workflows durably, asking the registry and the policy service before every step.
#[derive(Debug, Parser)]
#[command(name = "workflow-service", version)]
struct Cli {
    #[command(flatten)]
    server: airt_kit::config::ServerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    airt_kit::bootstrap::run_main(
        &workflow_service::IDENTITY,
        cli.server,
        workflow_service::serve_on,
    )
}
