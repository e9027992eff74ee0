use std::process::ExitCode;

use clap::Parser;

/// AI-First Runtime policy service: the Brain — a gatekeeper that answers ALLOW, DENY or REQUIRE_APPROVAL. Knows nothing about workflows.
#[derive(Debug, Parser)]
#[command(name = "policy-service", version)]
struct Cli {
    #[command(flatten)]
    server: airt_kit::config::ServerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    airt_kit::bootstrap::run_main(
        &policy_service::IDENTITY,
        cli.server,
        policy_service::serve_on,
    )
}
