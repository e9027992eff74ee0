//! Connecting to the services and presenting the caller's identity.

use std::path::PathBuf;
use std::time::Duration;

use airt_kit::tls::{ClientTls, ClientTlsArgs};

pub use airt_kit::credentials::Credentials;
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Where the services are and who is calling.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Registry service address.
    #[arg(
        long,
        global = true,
        env = "AIRT_REGISTRY_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub registry_addr: String,

    /// Policy service address.
    #[arg(
        long,
        global = true,
        env = "AIRT_POLICY_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub policy_addr: String,

    /// Workflow service address.
    #[arg(
        long,
        global = true,
        env = "AIRT_WORKFLOW_ADDR",
        default_value = "http://127.0.0.1:50053"
    )]
    pub workflow_addr: String,

    /// Bearer token (JWT) sent as `authorization: Bearer <token>`.
    #[arg(long, global = true, env = "AIRT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Development mode only: the principal to claim (`type:id`).
    #[arg(long = "as", global = true, env = "AIRT_PRINCIPAL")]
    pub principal: Option<String>,

    /// Development mode only: comma-separated roles to claim.
    #[arg(long, global = true, env = "AIRT_ROLES", default_value = "")]
    pub roles: String,

    /// How read commands print: `text` (for people), `json` (the proto3 JSON
    /// mapping) or `yaml`.
    #[arg(
        long,
        short = 'o',
        global = true,
        env = "AIRT_OUTPUT",
        value_enum,
        default_value = "text"
    )]
    pub output: crate::output::Format,

    /// PEM CA bundle that verifies `https://` services (default: the
    /// system's trusted roots).
    #[arg(long, global = true, env = "AIRT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate for services that require one (mTLS).
    #[arg(long, global = true, env = "AIRT_TLS_CLIENT_CERT")]
    pub tls_client_cert: Option<PathBuf>,

    /// PEM private key of `--tls-client-cert`.
    #[arg(long, global = true, env = "AIRT_TLS_CLIENT_KEY")]
    pub tls_client_key: Option<PathBuf>,
}

/// Which service a command talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    Registry,
    Policy,
    Workflow,
}

impl ConnectionArgs {
    pub fn address(&self, service: ServiceName) -> &str {
        match service {
            ServiceName::Registry => &self.registry_addr,
            ServiceName::Policy => &self.policy_addr,
            ServiceName::Workflow => &self.workflow_addr,
        }
    }

    /// A lazily connecting channel with a per-call deadline (TLS for an
    /// `https://` address).
    pub fn channel(&self, service: ServiceName) -> anyhow::Result<Channel> {
        let tls = ClientTls::load(&ClientTlsArgs {
            tls_ca: self.tls_ca.clone(),
            tls_client_cert: self.tls_client_cert.clone(),
            tls_client_key: self.tls_client_key.clone(),
        })?;
        let endpoint = tls
            .endpoint(self.address(service))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        Ok(endpoint.connect_lazy())
    }

    /// A channel that adds the caller's credentials to every request.
    pub fn authenticated(
        &self,
        service: ServiceName,
    ) -> anyhow::Result<InterceptedService<Channel, Credentials>> {
        Ok(InterceptedService::new(
            self.channel(service)?,
            self.credentials()?,
        ))
    }

    /// Who the caller claims to be, for messages that depend on it: `; you
    /// are calling as user:bob with roles [viewer]` in development mode.
    pub fn identity_hint(&self) -> String {
        match (&self.principal, &self.token) {
            (Some(principal), _) => {
                let roles = self.roles.trim();
                format!("; you are calling as {principal} with roles [{roles}]")
            }
            (None, Some(_)) => "; your token names who you are and your roles".to_owned(),
            (None, None) => String::new(),
        }
    }

    /// The caller's token and/or development-mode identity.
    pub fn credentials(&self) -> anyhow::Result<Credentials> {
        let mut credentials = Credentials::none();
        if let Some(token) = &self.token {
            credentials = credentials.with_bearer(token)?;
        }
        if let Some(principal) = &self.principal {
            credentials = credentials.with_development(principal, &self.roles)?;
        }
        Ok(credentials)
    }
}

/// A failed call as the user should read it: code, message, reason and
/// every field violation.
pub fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(reason) = airt_kit::status::reason_of(status) {
        text.push_str(&format!(" [{reason}]"));
    }
    for violation in airt_kit::status::violations_of(status) {
        text.push_str(&format!(
            "\n  - {}: {}",
            violation.field, violation.description
        ));
    }
    text
}
