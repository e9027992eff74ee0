use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// AI-First Runtime MCP gateway: the registry's capabilities as governed
/// MCP tools over Streamable HTTP, each call checked by the policy,
/// approved when needed, and audited under the caller's identity.
#[derive(Debug, Parser)]
#[command(name = "mcp-gateway", version)]
struct Cli {
    /// Address of the Streamable HTTP endpoint (served at `/mcp`).
    #[arg(long, env = "AIRT_MCP_LISTEN", default_value = mcp_gateway::DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// How long in-flight requests may finish after SIGTERM/SIGINT.
    #[arg(long, env = "AIRT_SHUTDOWN_GRACE", default_value = "5s", value_parser = airt_kit::config::parse_duration)]
    shutdown_grace: Duration,

    #[command(flatten)]
    gateway: mcp_gateway::GatewayArgs,

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
    airt_kit::server::run_front_end(&log, "mcp-gateway", run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let auth = cli.auth.settings()?;
    let config = mcp_gateway::GatewayConfig::from_args(&cli.gateway, auth)?;
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .map_err(|e| anyhow::anyhow!("mcp-gateway cannot listen on {}: {e}", cli.listen))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), listen = %cli.listen, "starting");
    mcp_gateway::serve_on(
        config,
        listener,
        airt_kit::server::shutdown_with_grace(cli.shutdown_grace),
    )
    .await
}
