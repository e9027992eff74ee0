//! Remote capabilities (`http:<url>` handlers): how agents in any language
//! plug in their own actions.
//!
//! The engine POSTs `{"inputs": ..., "context": {workflow_id, step_name,
//! attempt, idempotency_key}}` as JSON (with an `Idempotency-Key` header); a
//! 2xx JSON body is the step's outputs, 4xx is a non-retryable error, 5xx
//! and timeouts are retryable. The target passes the same network guard as
//! `net.http.*` (internal addresses only when allow-listed).

use std::sync::Arc;
use tokio::time::Instant;

use serde_json::{Map, Value, json};

use crate::net::{NetworkPolicy, client};
use crate::{ErrorKind, Execution, ExecutionContext, HandlerError};

/// Largest response body accepted from a remote capability.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

#[derive(Debug)]
pub struct RemoteCaller {
    client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
}

impl RemoteCaller {
    pub fn new(policy: Arc<NetworkPolicy>) -> Self {
        Self {
            client: client(policy.clone()),
            policy,
        }
    }

    pub async fn call(
        &self,
        url: &str,
        ctx: &ExecutionContext,
        inputs: &Map<String, Value>,
    ) -> Result<Execution, HandlerError> {
        let url: reqwest::Url = url
            .parse()
            .map_err(|e| HandlerError::invalid_input(format!("handler URL: {e}")))?;
        self.policy.check_url(&url).map_err(HandlerError::sandbox)?;
        let body = json!({
            "inputs": inputs,
            "context": {
                "workflow_id": ctx.workflow_id,
                "step_name": ctx.step_name,
                "attempt": ctx.attempt,
                "idempotency_key": ctx.idempotency_key,
            },
        });
        let timeout = ctx.deadline.saturating_duration_since(Instant::now());
        let mut request = self
            .client
            .post(url.clone())
            .timeout(timeout)
            .header("content-type", "application/json")
            .header("Idempotency-Key", ctx.idempotency_key.as_str());
        for (name, value) in &ctx.trace_headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.body(body.to_string()).send().await.map_err(|e| {
            let text = e.to_string();
            if format!("{e:?}").contains(crate::net::REFUSED) {
                HandlerError::sandbox(text)
            } else if e.is_timeout() {
                HandlerError::new(ErrorKind::Timeout, text)
            } else {
                HandlerError::new(ErrorKind::Transient, text)
            }
        })?;
        let status = response.status();
        // Streamed with a cap: a hostile endpoint cannot make the service
        // buffer more than the ceiling.
        let mut response = response;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| HandlerError::new(ErrorKind::Transient, e.to_string()))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE {
                return Err(HandlerError::new(
                    ErrorKind::ActionFailed,
                    format!("response larger than {MAX_RESPONSE} bytes"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if !status.is_success() {
            let retryable = status.is_server_error() || status.as_u16() == 429;
            let excerpt: String = text.chars().take(512).collect();
            return Err(HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{url} answered {status}: {excerpt}"),
            )
            .retryable(retryable)
            .with_details(json!({"status": status.as_u16(), "body_excerpt": excerpt})));
        }
        let outputs: Value = serde_json::from_str(&text).map_err(|e| {
            HandlerError::new(
                ErrorKind::ActionFailed,
                format!("{url} answered {status} without a JSON body: {e}"),
            )
        })?;
        Ok(Execution {
            outputs,
            undo: None,
        })
    }
}
