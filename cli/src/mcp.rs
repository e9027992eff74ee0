//! `airt mcp stdio`: the MCP gateway over this process's stdin/stdout, for
//! desktop MCP clients that start their servers as commands. Every call
//! carries this command's credentials (`--token`, or `--as`/`--roles` in
//! development mode), so the caller is whoever runs it.

use std::process::ExitCode;
use std::time::Duration;

use airt_kit::Principal;
use airt_kit::auth::AuthSettings;
use base64::Engine as _;

use crate::client::ConnectionArgs;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum McpCommand {
    /// Serve MCP over stdin/stdout (stdout carries only MCP messages).
    Stdio(StdioArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct StdioArgs {
    /// How long a call that needs an approval waits for it before answering
    /// that it awaits approval.
    #[arg(long, env = "AIRT_MCP_APPROVAL_WAIT", default_value = "30s", value_parser = airt_kit::config::parse_duration)]
    approval_wait: Duration,

    /// The agent acting for the caller, as policy rules see it.
    #[arg(long, env = "AIRT_AGENT", default_value = "")]
    agent: String,

    /// Deployment environment the policy sees (as the workflow service's).
    #[arg(long, env = "AIRT_ENVIRONMENT", default_value = "")]
    environment: String,
}

pub async fn run(connection: &ConnectionArgs, command: McpCommand) -> anyhow::Result<ExitCode> {
    let McpCommand::Stdio(args) = command;
    let credentials = connection.credentials()?;
    let caller = mcp_gateway::Caller {
        principal: principal(connection)?,
        credentials: credentials.clone(),
        agent: args.agent.clone(),
    };
    let mut config = mcp_gateway::GatewayConfig::from_args(
        &mcp_gateway::GatewayArgs {
            services: airt_kit::dependencies::ServiceAddrArgs {
                registry_addr: connection.registry_addr.clone(),
                policy_addr: connection.policy_addr.clone(),
                workflow_addr: connection.workflow_addr.clone(),
                tls: airt_kit::tls::ClientTlsArgs {
                    tls_ca: connection.tls_ca.clone(),
                    tls_client_cert: connection.tls_client_cert.clone(),
                    tls_client_key: connection.tls_client_key.clone(),
                },
                resolve_interval: Duration::from_secs(5),
            },
            approval_wait: args.approval_wait,
            environment: args.environment,
            service_token: None,
            service_token_file: None,
            allowed_hosts: Vec::new(),
        },
        AuthSettings::Unconfigured,
    )?;
    // Registry changes are followed as the caller too.
    config.own_credentials = credentials;
    mcp_gateway::serve_stdio(config, caller).await?;
    Ok(ExitCode::SUCCESS)
}

/// Who the caller is, for the policy's view of what it may call: the
/// development identity, or the claims of the token (read, not verified:
/// the services verify it on every call, so a false claim only makes
/// calls fail).
fn principal(connection: &ConnectionArgs) -> anyhow::Result<Principal> {
    let (text, roles) = match (&connection.principal, &connection.token) {
        (Some(principal), _) => (
            principal.clone(),
            connection
                .roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        (None, Some(token)) => {
            let payload = token
                .split('.')
                .nth(1)
                .ok_or_else(|| anyhow::anyhow!("--token is not a JWT"))?;
            let claims: serde_json::Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(payload.trim_end_matches('='))?,
            )?;
            airt_kit::auth::ClaimNames::default()
                .extract(&claims)
                .map_err(|e| anyhow::anyhow!("--token: {e}"))?
        }
        (None, None) => anyhow::bail!(
            "airt mcp stdio needs an identity: --token (AIRT_TOKEN), or --as in development mode"
        ),
    };
    Principal::parse(&text, roles).map_err(|e| anyhow::anyhow!("{text:?}: {e}"))
}
