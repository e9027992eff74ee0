use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AI-First Runtime console: the approvals inbox, decisions, workflows,
/// capabilities, policy and audit chains, as web pages acting with the
/// signed-in user's identity.
#[derive(Debug, Parser)]
#[command(name = "airt-console", version)]
struct Cli {
    /// Address the console listens on.
    #[arg(long, env = "AIRT_CONSOLE_LISTEN", default_value = airt_console::DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[arg(long, env = "AIRT_SHUTDOWN_GRACE", default_value = "5s", value_parser = airt_kit::config::parse_duration)]
    shutdown_grace: Duration,

    #[command(flatten)]
    console: airt_console::ConsoleArgs,

    #[command(flatten)]
    auth: airt_kit::config::AuthArgs,

    #[command(flatten)]
    log: airt_kit::config::LogArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: nothing but this thread runs yet (the runtime starts later).
    #[allow(unsafe_code)]
    unsafe {
        airt_kit::config::scrub_secret_env();
    }
    let log = cli.log.clone();
    airt_kit::server::run_front_end(&log, "console", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let auth = cli.auth.settings()?;
    let config = airt_console::ConsoleConfig::from_args(&cli.console, auth)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("airt-console cannot listen on {}: {e}", cli.listen))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), listen = %cli.listen, "starting");
    airt_console::serve_on(
        config,
        listener,
        airt_kit::server::shutdown_with_grace(cli.shutdown_grace),
    )
    .await
}
