//! Where a client of the three services finds them: the flags every
//! front end (the MCP gateway, the console) shares, and the channels they
//! open. A host name, or a comma-separated list of addresses, spreads
//! calls over every address ([`crate::balance`]).

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::config::parse_duration;
use crate::tls::{ClientTls, ClientTlsArgs};

/// The services' addresses and how to reach them.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceAddrArgs {
    /// Registry service address (a host name or a comma-separated list
    /// spreads calls over every address).
    #[arg(
        long,
        env = "AIRT_REGISTRY_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub registry_addr: String,

    /// Policy service address.
    #[arg(
        long,
        env = "AIRT_POLICY_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub policy_addr: String,

    /// Workflow service address.
    #[arg(
        long,
        env = "AIRT_WORKFLOW_ADDR",
        default_value = "http://127.0.0.1:50053"
    )]
    pub workflow_addr: String,

    #[command(flatten)]
    pub tls: ClientTlsArgs,

    /// How often host names of the service addresses are resolved again.
    #[arg(long, env = "AIRT_RESOLVE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub resolve_interval: Duration,
}

impl ServiceAddrArgs {
    /// The services at `addrs` (registry, policy, workflow), in plaintext
    /// (the stack `airt up` runs in one process).
    pub fn at(addrs: [std::net::SocketAddr; 3]) -> Self {
        let [registry_addr, policy_addr, workflow_addr] = addrs.map(|a| format!("http://{a}"));
        Self {
            registry_addr,
            policy_addr,
            workflow_addr,
            tls: ClientTlsArgs::default(),
            resolve_interval: Duration::from_secs(5),
        }
    }
}

/// Lazily connected channels to the three services.
#[derive(Debug, Clone)]
pub struct ServiceChannels {
    pub registry: Channel,
    pub policy: Channel,
    pub workflow: Channel,
}

/// Timeouts and keep-alives of a front end's channels.
fn shaped(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
}

impl ServiceChannels {
    /// Opens (lazily: nothing is dialled before the first call) a channel
    /// to each service; an address that does not parse is an error.
    pub async fn open(args: &ServiceAddrArgs) -> anyhow::Result<Self> {
        let tls = ClientTls::load(&args.tls)?;
        let channel = |addr: &str| {
            let addr = addr.to_owned();
            let tls = tls.clone();
            async move {
                crate::balance::channel(&addr, &tls, shaped, args.resolve_interval)
                    .await
                    .map_err(|e| e.context(format!("service address {addr:?}")))
            }
        };
        Ok(Self {
            registry: channel(&args.registry_addr).await?,
            policy: channel(&args.policy_addr).await?,
            workflow: channel(&args.workflow_addr).await?,
        })
    }
}
