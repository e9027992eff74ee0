//! The MCP gateway: the registry's capabilities as Model Context Protocol
//! tools, each call one governed action of the workflow service.
//!
//! A client of the registry, policy and workflow services (their generated
//! gRPC clients, never their crates), built on the official Rust MCP SDK
//! (`rmcp`). Served over Streamable HTTP (`/mcp`, default
//! `127.0.0.1:50054`) or over stdio (`airt mcp stdio`). Every service call
//! carries the end user's credentials, so the services — not the gateway —
//! decide, and the audit names the user.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airt_kit::auth::{AuthSettings, Authenticator};
use airt_kit::config::{Secret, parse_duration};
use airt_kit::credentials::Credentials;
use airt_kit::dependencies::ServiceChannels;
use airt_proto::common::v1::RiskLevel;
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;

pub mod call;
pub mod caller;
pub mod catalog;
mod changes;
pub mod error;
pub mod handler;
mod http;
pub mod tools;

pub use caller::Caller;
pub use handler::McpHandler;
pub use http::{serve_on, serve_stdio};

/// The default Streamable HTTP address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50054";
/// The longest `--approval-wait`.
const MAX_APPROVAL_WAIT: Duration = Duration::from_secs(600);

/// The gateway's flags (besides authentication, logging and the listener).
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    pub services: airt_kit::dependencies::ServiceAddrArgs,

    /// How long a `tools/call` that needs an approval waits for it (sending
    /// progress) before answering that it awaits approval (at most 10m).
    #[arg(long, env = "AIRT_MCP_APPROVAL_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub approval_wait: Duration,

    /// Deployment environment the policy sees (as the workflow service's
    /// `--environment`), used to list the tools a caller may call.
    #[arg(long, env = "AIRT_ENVIRONMENT", default_value = "")]
    pub environment: String,

    /// The gateway's own token, for following registry changes (tools are
    /// always listed and called with the caller's credentials).
    #[arg(long, env = "AIRT_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<Secret>,

    /// File holding the gateway's own token.
    #[arg(long, env = "AIRT_SERVICE_TOKEN_FILE")]
    pub service_token_file: Option<PathBuf>,

    /// Host names (or host:port) accepted in the `Host` header, comma-separated
    /// (DNS-rebinding protection; default loopback names). Add the names the
    /// gateway is reached by when it is not on loopback.
    #[arg(
        long,
        env = "AIRT_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub allowed_hosts: Vec<String>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub services: airt_kit::dependencies::ServiceAddrArgs,
    pub approval_wait: Duration,
    pub environment: String,
    /// How callers are authenticated (HTTP).
    pub auth: AuthSettings,
    /// The gateway's own credentials (the registry watch).
    pub own_credentials: Credentials,
    pub allowed_hosts: Vec<String>,
}

impl GatewayConfig {
    pub fn from_args(args: &GatewayArgs, auth: AuthSettings) -> anyhow::Result<Self> {
        if args.approval_wait > MAX_APPROVAL_WAIT {
            anyhow::bail!("--approval-wait must be at most 10m");
        }
        let token = Secret::from_value_or_file(
            "service-token",
            args.service_token.as_ref(),
            args.service_token_file.as_deref(),
        )?;
        let own_credentials = match (&token, &auth) {
            (Some(token), _) => {
                Credentials::bearer(token).map_err(|e| anyhow::anyhow!("--service-token: {e}"))?
            }
            (None, AuthSettings::Development) => development_credentials(),
            (None, _) => Credentials::none(),
        };
        Ok(Self {
            services: args.services.clone(),
            approval_wait: args.approval_wait,
            environment: args.environment.clone(),
            auth,
            own_credentials,
            allowed_hosts: args.allowed_hosts.clone(),
        })
    }
}

/// The gateway's identity in development mode.
pub fn development_credentials() -> Credentials {
    Credentials::development("service:mcp-gateway", "").unwrap_or_default()
}

/// What every MCP session shares.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) registry: RegistryServiceClient<Channel>,
    pub(crate) policy: PolicyServiceClient<Channel>,
    pub(crate) workflow: WorkflowServiceClient<Channel>,
    pub(crate) environment: String,
    pub(crate) approval_wait: Duration,
    pub(crate) own_credentials: Credentials,
    /// The caller of every request over stdio.
    pub(crate) fixed_caller: Option<Caller>,
    /// The last registry revision that changed the tools.
    pub(crate) changes: tokio::sync::watch::Sender<i64>,
    pub(crate) legacy_peers: handler::LegacyPeers,
    /// The registry's listing, while the change feed is live.
    pub(crate) catalog: catalog::Catalog,
}

impl Gateway {
    /// Connects (lazily) to the three services.
    pub async fn connect(
        config: &GatewayConfig,
        fixed_caller: Option<Caller>,
    ) -> anyhow::Result<Arc<Self>> {
        let channels = ServiceChannels::open(&config.services).await?;
        // A listing of 1000 capabilities is larger than tonic's default 4 MiB.
        let registry = RegistryServiceClient::new(channels.registry)
            .max_decoding_message_size(64 * 1024 * 1024);
        let policy = PolicyServiceClient::new(channels.policy);
        let workflow = WorkflowServiceClient::new(channels.workflow);
        Ok(Arc::new(Self {
            registry,
            policy,
            workflow,
            environment: config.environment.clone(),
            approval_wait: config.approval_wait,
            own_credentials: config.own_credentials.clone(),
            fixed_caller,
            changes: tokio::sync::watch::channel(0).0,
            legacy_peers: handler::LegacyPeers::default(),
            catalog: catalog::Catalog::default(),
        }))
    }

    /// The policy context of "may `caller` call this capability at all".
    pub(crate) fn context(
        &self,
        caller: &Caller,
        spec: Option<&registry::CapabilitySpec>,
    ) -> policy::PolicyContext {
        let spec = spec.cloned().unwrap_or_default();
        let risk = spec.risk.unwrap_or_default();
        let level = match RiskLevel::try_from(risk.level) {
            Ok(RiskLevel::Unspecified) | Err(_) => RiskLevel::High as i32,
            Ok(level) => level as i32,
        };
        policy::PolicyContext {
            principal: Some(caller.principal.to_proto()),
            agent: caller.agent.clone(),
            capability_id: spec.id,
            risk_level: level,
            requires_approval: risk.requires_approval,
            operation_type: spec.operation_type,
            environment: self.environment.clone(),
            ..Default::default()
        }
    }
}

/// The authenticator of HTTP callers.
pub(crate) fn authenticator(settings: &AuthSettings) -> anyhow::Result<Arc<Authenticator>> {
    Ok(Arc::new(Authenticator::new(settings)?))
}

/// Where the Streamable HTTP endpoint listens by default.
pub fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 50054)))
}
