//! An in-process MCP gateway in front of a [`crate::Stack`] (development
//! identities), and an MCP client that calls it as a principal.

use std::time::Duration;

use rmcp::ServiceExt as _;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tokio::sync::oneshot;

use crate::Stack;

/// A running gateway; stops when dropped.
#[derive(Debug)]
pub struct Gateway {
    pub url: String,
    _stop: oneshot::Sender<()>,
}

/// Starts the gateway on a free loopback port for `stack`.
pub async fn start(stack: &Stack, approval_wait: Duration) -> Gateway {
    start_as(stack, approval_wait, mcp_gateway::development_credentials()).await
}

/// Like [`start`], with the gateway's own credentials (none: it follows no
/// registry changes, so every listing reads the registry).
pub async fn start_as(
    stack: &Stack,
    approval_wait: Duration,
    own_credentials: airt_kit::credentials::Credentials,
) -> Gateway {
    let registry = stack.registry.as_ref().expect("the stack's registry").url();
    let policy = stack
        .policy
        .as_ref()
        .expect("the stack's policy service")
        .url();
    let config = mcp_gateway::GatewayConfig {
        services: airt_kit::dependencies::ServiceAddrArgs {
            registry_addr: registry,
            policy_addr: policy,
            workflow_addr: stack.workflow.url(),
            tls: airt_kit::tls::ClientTlsArgs::default(),
            resolve_interval: Duration::from_secs(5),
        },
        approval_wait,
        environment: String::new(),
        auth: airt_kit::auth::AuthSettings::Development,
        own_credentials,
        allowed_hosts: vec!["127.0.0.1".into()],
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/mcp", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(mcp_gateway::serve_on(config, listener, async move {
        let _ = stopped.await;
    }));
    Gateway { url, _stop: stop }
}

/// An MCP client of `url` calling as `principal` with `roles`.
pub async fn client(url: &str, principal: &str, roles: &str) -> RunningService<RoleClient, ()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_owned());
    for (name, value) in [("x-airt-principal", principal), ("x-airt-roles", roles)] {
        config.custom_headers.insert(
            http::HeaderName::from_static(name),
            http::HeaderValue::from_str(value).expect("header value"),
        );
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("an MCP session with the gateway")
}
