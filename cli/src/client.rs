//! Connecting to the services and presenting the caller's identity.

use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

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

    /// A lazily connecting channel with a per-call deadline.
    pub fn channel(&self, service: ServiceName) -> anyhow::Result<Channel> {
        let address = self.address(service);
        let endpoint = Endpoint::from_shared(address.to_owned())
            .map_err(|e| anyhow::anyhow!("invalid address {address:?}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30));
        Ok(endpoint.connect_lazy())
    }

    /// A channel that adds the caller's credentials to every request.
    pub fn authenticated(
        &self,
        service: ServiceName,
    ) -> anyhow::Result<InterceptedService<Channel, Credentials>> {
        let credentials = Credentials::from_args(self)?;
        Ok(InterceptedService::new(self.channel(service)?, credentials))
    }
}

/// Adds `authorization` (token) or `x-airt-principal`/`x-airt-roles`
/// (development mode) metadata to each call.
#[derive(Debug, Clone)]
pub struct Credentials {
    headers: Vec<(&'static str, MetadataValue<tonic::metadata::Ascii>)>,
}

impl Credentials {
    fn from_args(args: &ConnectionArgs) -> anyhow::Result<Self> {
        let ascii = |value: String| {
            MetadataValue::try_from(value).map_err(|_| anyhow::anyhow!("credentials must be ASCII"))
        };
        let mut headers = Vec::new();
        if let Some(token) = &args.token {
            headers.push(("authorization", ascii(format!("Bearer {token}"))?));
        }
        if let Some(principal) = &args.principal {
            headers.push((
                airt_kit::auth::DEV_PRINCIPAL_HEADER,
                ascii(principal.clone())?,
            ));
            headers.push((airt_kit::auth::DEV_ROLES_HEADER, ascii(args.roles.clone())?));
        }
        Ok(Self { headers })
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        for (key, value) in &self.headers {
            request.metadata_mut().insert(*key, value.clone());
        }
        Ok(request)
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
