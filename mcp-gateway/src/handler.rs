//! The MCP server: `tools/list` (the caller's view of the registry,
//! filtered by the policy), `tools/call` (one governed action, see
//! [`crate::call`]), and `notifications/tools/list_changed` when the
//! registry changes (over `subscriptions/listen`, and to legacy sessions).

use std::sync::{Arc, Mutex};

use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, Implementation, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, ServerNotification,
    SubscriptionFilter, Tool, ToolListChangedNotification,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};

use crate::Gateway;
use crate::caller::Caller;
use crate::catalog::Capabilities;
use crate::error::GatewayError;
use crate::tools;

/// Most capabilities one listing reads (pages of 1000).
const MAX_LISTED: usize = 10_000;
const PAGE: i32 = 1000;

/// One MCP session's handler; every session shares the gateway.
#[derive(Debug, Clone)]
pub struct McpHandler {
    gateway: Arc<Gateway>,
}

impl McpHandler {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// The caller of this request: the authenticated HTTP caller, or the
    /// fixed stdio caller.
    fn caller(&self, context: &RequestContext<RoleServer>) -> Result<Caller, McpError> {
        if let Some(parts) = context.extensions.get::<http::request::Parts>()
            && let Some(caller) = parts.extensions.get::<Caller>()
        {
            return Ok(caller.clone());
        }
        self.gateway
            .fixed_caller
            .clone()
            .ok_or_else(|| McpError::invalid_request("no authenticated caller", None))
    }

    /// Every offered capability: the cached listing while the change feed
    /// is live, else the registry's answer to the caller.
    async fn capabilities(&self, caller: &Caller) -> Result<Capabilities, GatewayError> {
        if let Some(cached) = self.gateway.catalog.get() {
            return Ok(cached);
        }
        let generation = self.gateway.catalog.generation();
        let fetched = Arc::new(self.fetch(caller).await?);
        if let Some(generation) = generation {
            self.gateway.catalog.store(generation, fetched.clone());
        }
        Ok(fetched)
    }

    async fn fetch(&self, caller: &Caller) -> Result<Vec<registry::Capability>, GatewayError> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut request = tonic::Request::new(registry::ListCapabilitiesRequest {
                page_size: PAGE,
                page_token,
                ..Default::default()
            });
            caller.credentials.apply(&mut request);
            let page = self
                .gateway
                .registry
                .clone()
                .list_capabilities(request)
                .await?
                .into_inner();
            all.extend(page.capabilities.into_iter().filter(tools::offered));
            if page.next_page_token.is_empty() || all.len() >= MAX_LISTED {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// The policy's any-inputs decision for each capability, for the caller.
    async fn decisions(
        &self,
        caller: &Caller,
        capabilities: &[registry::Capability],
    ) -> Result<Vec<policy::DecisionRecord>, GatewayError> {
        let mut decisions = Vec::with_capacity(capabilities.len());
        for chunk in capabilities.chunks(PAGE as usize) {
            let contexts = chunk
                .iter()
                .map(|c| self.gateway.context(caller, c.spec.as_ref()))
                .collect();
            let mut request = tonic::Request::new(policy::BatchEvaluateRequest {
                contexts,
                explain: false,
                any_inputs: true,
                // A listing decides no action: nothing is counted.
                purpose: policy::EvaluationPurpose::Preview as i32,
            });
            caller.credentials.apply(&mut request);
            let answer = self
                .gateway
                .policy
                .clone()
                .batch_evaluate(request)
                .await?
                .into_inner();
            decisions.extend(answer.decisions);
        }
        Ok(decisions)
    }

    /// The tools the caller may call.
    pub async fn tools(&self, caller: &Caller) -> Result<Vec<Tool>, GatewayError> {
        let capabilities = self.capabilities(caller).await?;
        let decisions = self.decisions(caller, &capabilities).await?;
        let mut listed = Vec::with_capacity(capabilities.len() + 1);
        for (capability, decision) in capabilities.iter().zip(&decisions) {
            if decision.decision == policy::Decision::Deny as i32 {
                continue;
            }
            if let Some(tool) = tools::tool(capability, decision) {
                listed.push(serde_json::from_value(tool)?);
            }
        }
        listed.push(serde_json::from_value(tools::status_tool())?);
        Ok(listed)
    }
}

impl ServerHandler for McpHandler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
        .with_server_info(Implementation::new(
            "airt-mcp-gateway",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(
            "Tools are capabilities governed by AI-First Runtime: every call is checked by the \
             registry and the policy, may wait for a human approval, and is audited. A result \
             marked as an error has not run (denied, waiting for approval, rejected) or failed; \
             for one waiting for approval, call airt_action_status with its action_id later.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&context)?;
        let tools = self.tools(&caller).await.map_err(McpError::from)?;
        let mut result = ListToolsResult::with_all_items(tools);
        // Each caller sees its own list, and a policy change may alter it.
        result.cache_scope = Some(CacheScope::Private);
        result.ttl_ms = Some(0);
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = self.caller(&context)?;
        crate::call::call(&self.gateway, &caller, request, &context)
            .await
            .map(CallToolResponse::Complete)
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.gateway.changes.subscribe();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let sent = context
                        .sink()
                        .send(ServerNotification::ToolListChangedNotification(
                            ToolListChangedNotification::default(),
                        ))
                        .await;
                    if sent.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        // A session of an older protocol version: told of changes directly.
        self.gateway.legacy_peers.register(context.peer);
    }
}

/// The peers of sessions that negotiated a protocol older than
/// subscriptions (they get `list_changed` on their session stream).
#[derive(Debug, Default)]
pub struct LegacyPeers {
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl LegacyPeers {
    fn register(&self, peer: Peer<RoleServer>) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.retain(|p| !p.is_transport_closed());
        peers.push(peer);
    }

    /// Tells every open legacy session that the tool list changed.
    pub async fn notify(&self) {
        let peers: Vec<_> = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            peers.retain(|p| !p.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
        }
    }
}
