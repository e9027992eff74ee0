//! Signed webhooks from the persisted outbox.
//!
//! Deliveries are written in the transaction of the event they announce
//! (`approval.requested`, `approval.decided`, `workflow.finished`); the
//! [`Dispatcher`] sends each as a JSON POST signed the Standard Webhooks way
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`), retries
//! failures with exponential backoff and jitter, and records every attempt
//! (visible through `GetApproval`, audited). A down endpoint delays only its
//! own deliveries: nothing in a workflow waits for them.

use std::sync::Arc;
use std::time::Duration;

use airt_capabilities::outbound::{Poster, check_http_url, display_origin};
use airt_kit::config::Secret;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::domain::DeliveryStatus;
use crate::domain::approval::rfc3339;
use crate::store::{ApprovalRow, DeliveryRow, NewDelivery, WorkflowStore};
use tokio_util::sync::CancellationToken;

/// Where and how webhooks are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Every event goes to each of these.
    pub urls: Vec<String>,
    /// HMAC key of `webhook-signature`; required when `urls` is not empty.
    pub secret: Option<Secret>,
    /// Attempts per delivery before it is FAILED.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time limit of one attempt.
    pub request_timeout: Duration,
    /// The console's address (`--console-url`): `approval.requested`
    /// payloads link to the approval's page there.
    pub console_url: Option<String>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            urls: Vec::new(),
            secret: None,
            max_attempts: 12,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            console_url: None,
        }
    }
}

impl WebhookConfig {
    /// Refuses URLs that are not http(s) and URLs without a signing secret.
    pub fn validate(&self) -> Result<(), String> {
        for url in &self.urls {
            check_http_url(url).map_err(|e| format!("webhook URL {e}"))?;
        }
        if let Some(url) = &self.console_url {
            check_http_url(url).map_err(|e| format!("console URL {e}"))?;
        }
        if !self.urls.is_empty() && self.secret.as_ref().is_none_or(|s| s.expose().is_empty()) {
            return Err("webhooks need a signing secret (AIRT_WEBHOOK_SECRET)".into());
        }
        if self.max_attempts == 0 {
            return Err("webhook max attempts must be at least 1".into());
        }
        Ok(())
    }

    /// One delivery of `payload` (with `event`) per configured URL.
    /// Each carries the current span's trace context to its request.
    pub fn deliveries(&self, approval_id: &str, event: &str, payload: &Value) -> Vec<NewDelivery> {
        let trace_parent = airt_kit::trace::current_traceparent();
        self.urls
            .iter()
            .map(|url| {
                let delivery_id = uuid::Uuid::now_v7().to_string();
                let mut body = payload.clone();
                if let Some(map) = body.as_object_mut() {
                    map.insert("delivery_id".into(), json!(delivery_id));
                }
                NewDelivery {
                    delivery_id,
                    approval_id: approval_id.to_owned(),
                    url: url.clone(),
                    event: event.to_owned(),
                    payload: body.to_string(),
                    trace_parent: trace_parent.clone(),
                }
            })
            .collect()
    }

    fn backoff(&self, attempts: i64) -> Duration {
        let retry = u32::try_from(attempts.saturating_sub(1).max(0)).unwrap_or(u32::MAX);
        let backoff = airt_kit::backoff::Backoff::doubling(self.initial_backoff, self.max_backoff);
        airt_kit::backoff::jittered(backoff.nth(retry))
    }
}

/// A webhook URL as shown to API callers: its origin only, since paths and
/// queries of webhook URLs often carry credentials.
pub fn display_url(url: &str) -> String {
    display_origin(url)
}

/// The `webhook-signature` header of the Standard Webhooks scheme:
/// `v1,<base64 HMAC-SHA256(key, "<webhook-id>.<webhook-timestamp>.<body>")>`.
/// The key is the secret's bytes, or — for a `whsec_<base64>` secret as
/// Standard Webhooks libraries generate them — the decoded bytes. Signing
/// the timestamp lets a receiver refuse a captured delivery replayed later.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|encoded| engine.decode(encoded).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", engine.encode(mac.finalize().into_bytes()))
}

/// The `approval.requested` payload: what a human needs to decide, with
/// secret inputs masked, and how to answer (with `console_url`, the
/// approval's page in the console).
pub fn approval_requested(approval: &ApprovalRow, console_url: Option<&str>) -> Value {
    let inputs: Map<String, Value> =
        serde_json::from_str(&approval.resolved_inputs).unwrap_or_default();
    let decision: Value = serde_json::from_str(&approval.decision).unwrap_or(Value::Null);
    json!({
        "event": "approval.requested",
        "approval_id": approval.approval_id,
        "workflow_id": approval.workflow_id,
        "workflow_name": approval.workflow_name,
        "step_name": approval.step_name,
        "capability_id": approval.capability_id,
        "capability_version": approval.capability_version,
        "risk_level": approval.risk_level,
        "inputs": airt_kit::mask::mask_map(&inputs),
        "message": approval.message,
        "decision": decision,
        "action_digest": approval.action_digest,
        "approver_roles": approval.approver_roles(),
        "requested_for": approval.requested_for,
        "requested_at": rfc3339(approval.requested_at_us),
        "expires_at": rfc3339(approval.expires_at_us),
        "how_to_decide": {
            "approve_rpc": "airt.workflow.v1.ApprovalService/ApproveStep",
            "reject_rpc": "airt.workflow.v1.ApprovalService/RejectStep",
            "request": {"approval_id": approval.approval_id},
            "cli": format!("airt approvals approve {}", approval.approval_id),
        },
        "console_url": console_url.map(|base| {
            format!("{}/approvals/{}", base.trim_end_matches('/'), approval.approval_id)
        }),
    })
}

/// The `approval.decided` payload.
pub fn approval_decided(
    approval: &ApprovalRow,
    status: &str,
    decided_by: &str,
    comment: &str,
) -> Value {
    json!({
        "event": "approval.decided",
        "approval_id": approval.approval_id,
        "workflow_id": approval.workflow_id,
        "workflow_name": approval.workflow_name,
        "step_name": approval.step_name,
        "status": status,
        "decided_by": decided_by,
        "comment": comment,
        "decided_at": rfc3339(airt_kit::clock::now_micros()),
    })
}

/// What a `workflow.finished` payload reports.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub workflow_id: &'a str,
    pub workflow_name: &'a str,
    pub submitter: &'a str,
    pub status: &'a str,
    pub reason: &'a str,
    pub failed_step: &'a str,
}

/// The `workflow.finished` payload.
pub fn workflow_finished(f: Finished<'_>) -> Value {
    json!({
        "event": "workflow.finished",
        "workflow_id": f.workflow_id,
        "workflow_name": f.workflow_name,
        "status": f.status,
        "reason": f.reason,
        "failed_step": f.failed_step,
        "submitter": f.submitter,
        "finished_at": rfc3339(airt_kit::clock::now_micros()),
    })
}

/// Sends due deliveries until shutdown.
#[derive(Debug)]
pub struct Dispatcher {
    store: WorkflowStore,
    config: WebhookConfig,
    client: Poster,
    wake: Arc<Notify>,
    metrics: crate::metrics::WorkflowMetrics,
}

/// How often the outbox is read when nothing wakes the dispatcher (other
/// replicas' deliveries, retries).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Deliveries sent at once.
const BATCH: i64 = 32;

impl Dispatcher {
    /// `wake` is notified whenever a delivery is queued; each attempt is
    /// counted in `metrics`.
    pub fn new(
        store: WorkflowStore,
        config: WebhookConfig,
        wake: Arc<Notify>,
        metrics: crate::metrics::WorkflowMetrics,
    ) -> anyhow::Result<Self> {
        let client = Poster::new(
            config.request_timeout,
            concat!("airt-webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(Self {
            store,
            config,
            client,
            wake,
            metrics,
        })
    }

    pub async fn run(self, shutdown: CancellationToken) {
        if self.config.urls.is_empty() {
            return;
        }
        loop {
            let wait = match self.send_due().await {
                Ok(()) => self.until_next().await,
                Err(error) => {
                    tracing::warn!(%error, "webhook outbox unreadable; retrying");
                    IDLE_POLL
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn until_next(&self) -> Duration {
        match self.store.next_delivery_at().await {
            Ok(Some(at)) => {
                let micros = at.saturating_sub(airt_kit::clock::now_micros()).max(0);
                Duration::from_micros(micros as u64).min(IDLE_POLL)
            }
            _ => IDLE_POLL,
        }
    }

    async fn send_due(&self) -> Result<(), crate::error::WorkflowError> {
        loop {
            let now = airt_kit::clock::now_micros();
            let due = self.store.due_deliveries(now, BATCH).await?;
            if due.is_empty() {
                return Ok(());
            }
            let claim_until = now
                + i64::try_from(self.config.request_timeout.as_micros()).unwrap_or(i64::MAX / 2)
                + 5_000_000;
            let mut sends = tokio::task::JoinSet::new();
            for delivery in due {
                if !self.store.claim_delivery(&delivery, claim_until).await? {
                    continue;
                }
                let (client, secret) = (self.client.clone(), self.config.secret.clone());
                // Each attempt is a span in the trace of the run that queued it.
                let span = tracing::info_span!(
                    parent: None,
                    "webhook.deliver",
                    delivery_id = %delivery.delivery_id,
                    event = %delivery.event,
                    attempt = delivery.attempts + 1,
                );
                airt_kit::trace::continue_traceparent(&span, &delivery.trace_parent);
                sends.spawn(
                    async move {
                        let result = send(&client, secret.as_ref(), &delivery).await;
                        (delivery, result)
                    }
                    .instrument(span),
                );
            }
            while let Some(joined) = sends.join_next().await {
                let Ok((delivery, result)) = joined else {
                    continue;
                };
                self.record(&delivery, result).await?;
            }
        }
    }

    async fn record(
        &self,
        delivery: &DeliveryRow,
        result: Result<(), String>,
    ) -> Result<(), crate::error::WorkflowError> {
        let attempts = delivery.attempts + 1;
        let (status, error, next) = match result {
            Ok(()) => {
                self.metrics.webhook_attempt("delivered");
                (DeliveryStatus::Delivered, String::new(), 0)
            }
            Err(error) if attempts >= i64::from(self.config.max_attempts) => {
                tracing::warn!(delivery_id = %delivery.delivery_id, event = %delivery.event, %error, attempts, "webhook delivery gave up");
                self.metrics.webhook_attempt("failed");
                (DeliveryStatus::Failed, error, 0)
            }
            Err(error) => {
                let backoff = self.config.backoff(attempts);
                tracing::info!(delivery_id = %delivery.delivery_id, event = %delivery.event, %error, attempts, ?backoff, "webhook delivery failed; will retry");
                self.metrics.webhook_attempt("retrying");
                let next = airt_kit::clock::now_micros()
                    + i64::try_from(backoff.as_micros()).unwrap_or(i64::MAX / 2);
                (DeliveryStatus::Pending, error, next)
            }
        };
        self.store
            .record_attempt(delivery, status, &error, next)
            .await
    }
}

/// One attempt: a 2xx answer is delivered; anything else is an error.
async fn send(
    client: &Poster,
    secret: Option<&Secret>,
    delivery: &DeliveryRow,
) -> Result<(), String> {
    let body = delivery.payload.clone().into_bytes();
    let timestamp = airt_kit::clock::now_micros() / 1_000_000;
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-airt-event", delivery.event.clone()),
        ("webhook-id", delivery.delivery_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    if let Some(secret) = secret {
        let signed = signature(secret.expose(), &delivery.delivery_id, timestamp, &body);
        headers.push(("webhook-signature", signed));
    }
    let trace = airt_kit::trace::current_headers();
    for (name, value) in &trace {
        headers.push((name.as_str(), value.clone()));
    }
    match client.post(&delivery.url, &headers, body).await? {
        200..=299 => Ok(()),
        status => Err(format!("endpoint answered HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> ApprovalRow {
        let text = |s: &str| s.to_owned();
        ApprovalRow {
            approval_id: text("ap-1"),
            workflow_id: text("wf-1"),
            workflow_name: text("publish"),
            step_name: text("copy"),
            capability_id: text("io.fs.copy"),
            capability_version: text("1.0.0"),
            risk_level: text("MEDIUM"),
            resolved_inputs: text(r#"{"from":"a","to":"b"}"#),
            decision: text("{}"),
            action_digest: text("d"),
            approver_roles: text("approver"),
            message: String::new(),
            status: text("PENDING"),
            requested_for: text("user:alice"),
            decided_by: String::new(),
            comment: String::new(),
            status_reason: String::new(),
            requested_at_us: 0,
            expires_at_us: 0,
            decided_at_us: 0,
        }
    }

    #[test]
    fn approval_requests_link_to_the_console_when_it_is_configured() {
        let linked = approval_requested(&approval(), Some("https://console.example.com/"));
        assert_eq!(
            linked["console_url"],
            "https://console.example.com/approvals/ap-1"
        );
        assert_eq!(
            approval_requested(&approval(), None)["console_url"],
            Value::Null
        );
        let bad = WebhookConfig {
            console_url: Some("javascript:alert(1)".into()),
            ..WebhookConfig::default()
        };
        assert!(bad.validate().is_err(), "only http(s) console URLs");
    }

    #[test]
    fn the_signature_follows_standard_webhooks() {
        // Expected value computed with the reference implementation
        // (PyPI `standardwebhooks` 1.1.0, `Webhook(secret).sign(...)`).
        let body = br#"{"type":"contact.created","timestamp":"2022-11-03T20:26:10.344522Z","data":{"id":"1f81eb52-5198-4599-803e-771906343485","type":"contact"}}"#;
        assert_eq!(
            signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                body
            ),
            "v1,2csYhO6DE+ON4sTEaWR5zxNH19RBXckt40TJtrQ0QgU="
        );
        // A plain secret is used as it is.
        assert_ne!(
            signature("s3cret", "id", 1, b"{}"),
            signature("s3cret", "id", 2, b"{}")
        );
    }

    #[test]
    fn urls_are_shown_without_their_path() {
        assert_eq!(
            display_url("https://hooks.example/services/T0/B0/s3cret?x=1"),
            "https://hooks.example/…"
        );
        assert_eq!(
            display_url("http://127.0.0.1:8080/"),
            "http://127.0.0.1:8080/"
        );
    }

    #[test]
    fn webhooks_need_a_secret_and_http_urls() {
        let mut config = WebhookConfig {
            urls: vec!["https://hooks.example/airt".into()],
            ..WebhookConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("secret"));
        config.secret = Some(Secret::new("s3cret"));
        assert_eq!(config.validate(), Ok(()));
        config.urls.push("ftp://example/x".into());
        assert!(config.validate().unwrap_err().contains("http"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let config = WebhookConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..WebhookConfig::default()
        };
        let first = config.backoff(1);
        // The kit's jitter: 50-100% of the doubling sequence.
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let third = config.backoff(3);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
        assert!(config.backoff(30) <= Duration::from_secs(1));
        assert!(config.backoff(30) >= Duration::from_millis(500));
    }

    #[test]
    fn each_url_gets_its_own_delivery_id() {
        let config = WebhookConfig {
            urls: vec!["http://a/".into(), "http://b/".into()],
            ..WebhookConfig::default()
        };
        let deliveries = config.deliveries("ap1", "approval.requested", &json!({"x": 1}));
        assert_eq!(deliveries.len(), 2);
        assert_ne!(deliveries[0].delivery_id, deliveries[1].delivery_id);
        let body: Value = serde_json::from_str(&deliveries[1].payload).unwrap();
        assert_eq!(body["delivery_id"], json!(deliveries[1].delivery_id));
        assert_eq!(body["x"], json!(1));
    }
}
