//! The transports: Streamable HTTP (`/mcp`, behind caller authentication)
//! and stdio (one fixed caller).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use rmcp::ServiceExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::caller::{Caller, require_caller};
use crate::{Gateway, GatewayConfig, McpHandler};

/// Serves MCP over Streamable HTTP at `/mcp` on `listener` until `shutdown`
/// resolves (`/livez` answers without authentication).
pub async fn serve_on(
    config: GatewayConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if matches!(config.auth, airt_kit::auth::AuthSettings::Unconfigured) {
        tracing::warn!(
            "no token verifier and no development mode: every MCP request is refused (401)"
        );
    }
    if matches!(config.auth, airt_kit::auth::AuthSettings::Development) {
        tracing::warn!(
            "development mode: the x-airt-principal/x-airt-roles headers are trusted; never in production"
        );
    }
    let authenticator = crate::authenticator(&config.auth)?;
    authenticator.warm_up().await;
    let gateway = Gateway::connect(&config, None).await?;
    let stop = CancellationToken::new();
    let follower = tokio::spawn(crate::changes::follow(gateway.clone(), stop.child_token()));
    let mut allowed_hosts = config.allowed_hosts.clone();
    if let Ok(local) = listener.local_addr() {
        allowed_hosts.push(local.to_string());
    }
    let mcp = StreamableHttpService::new(
        {
            let gateway = gateway.clone();
            move || Ok(McpHandler::new(gateway.clone()))
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(allowed_hosts)
            .with_cancellation_token(stop.child_token()),
    );
    let router = Router::new()
        .nest_service("/mcp", mcp)
        .route_layer(axum::middleware::from_fn_with_state(
            authenticator,
            require_caller,
        ))
        .route("/livez", get(|| async { "ok\n" }));
    tracing::info!(address = %listener.local_addr()?, "MCP gateway serving Streamable HTTP at /mcp");
    let result = axum::serve(listener, router)
        .with_graceful_shutdown({
            let stop = stop.clone();
            async move {
                shutdown.await;
                stop.cancel();
            }
        })
        .await;
    stop.cancel();
    let _ = follower.await;
    result.map_err(Into::into)
}

/// Serves MCP over this process's stdin/stdout for one `caller` until the
/// client closes the stream.
pub async fn serve_stdio(config: GatewayConfig, caller: Caller) -> anyhow::Result<()> {
    let gateway = Gateway::connect(&config, Some(caller)).await?;
    let stop = CancellationToken::new();
    let follower = tokio::spawn(crate::changes::follow(gateway.clone(), stop.child_token()));
    let service = McpHandler::new(gateway)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))?;
    let ended = service.waiting().await;
    stop.cancel();
    let _ = follower.await;
    ended
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("MCP over stdio: {e}"))
}
