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
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let telemetry = runtime.block_on(async { airt_kit::telemetry::init(&cli.log, "console") });
    let result = runtime.block_on(run(cli));
    runtime.block_on(async { telemetry.shutdown() });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "exiting");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let auth = cli.auth.settings()?;
    let config = airt_console::ConsoleConfig::from_args(&cli.console, auth)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("airt-console cannot listen on {}: {e}", cli.listen))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), listen = %cli.listen, "starting");
    let grace = cli.shutdown_grace;
    airt_console::serve_on(config, listener, async move {
        airt_kit::server::shutdown_signal().await;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::warn!("shutdown grace elapsed");
            std::process::exit(0);
        });
    })
    .await
}
