//! The admin listener: plain HTTP on its own port (never the gRPC port),
//! for the process's operators and orchestrator.
//!
//! - `GET /metrics`: Prometheus text exposition ([`crate::metrics`]).
//! - `GET /livez`: 200 while the process and its async runtime respond;
//!   it never depends on the database or on another service, so an outage
//!   elsewhere does not get the process restarted.
//! - `GET /readyz`: 200 when migrations ran, the service serves (for the
//!   workflow service: its built-ins are published), every readiness check
//!   passes (the database; the dependencies of the workflow service) and
//!   it is not draining; 503 otherwise. Each check is one line, `[+]name ok`
//!   or `[-]name failed: reason`, as in Kubernetes' own endpoints.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::{CONTENT_TYPE, Metrics};

/// How long one readiness check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

type Check = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Where a service is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Migrating, building its services, or waiting for what it needs
    /// before it serves (the workflow service publishing its built-ins).
    Starting,
    Serving,
    /// Shutdown began: finishing in-flight calls, taking no new work.
    Draining,
}

/// What `/readyz` asks (cheap to clone).
#[derive(Clone)]
pub struct Readiness {
    phase: Arc<Mutex<Phase>>,
    checks: Arc<Mutex<Vec<(&'static str, Check)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("phase", &self.phase())
            .finish_non_exhaustive()
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self {
            phase: Arc::new(Mutex::new(Phase::Starting)),
            checks: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn phase(&self) -> Phase {
        *lock(&self.phase)
    }

    /// Moves to `phase`; a draining service never becomes ready again.
    pub fn set_phase(&self, phase: Phase) {
        let mut current = lock(&self.phase);
        if *current != Phase::Draining {
            *current = phase;
        }
    }

    /// Adds a check `/readyz` runs (bounded by 1 s; an error is its reason).
    pub fn add_check<F, Fut>(&self, name: &'static str, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        lock(&self.checks).push((name, Arc::new(move || Box::pin(check()))));
    }

    /// Whether the service is ready, and one line per check.
    pub async fn report(&self) -> (bool, String) {
        let phase = self.phase();
        let mut ready = phase == Phase::Serving;
        let mut text = match phase {
            Phase::Starting => "[-]serving failed: still starting\n".to_owned(),
            Phase::Serving => "[+]serving ok\n".to_owned(),
            Phase::Draining => "[-]serving failed: draining\n".to_owned(),
        };
        let checks: Vec<(&'static str, Check)> = lock(&self.checks).clone();
        let results = futures::future::join_all(checks.iter().map(|(_, check)| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(result) => result,
                Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
            }
        }))
        .await;
        for ((name, _), result) in checks.iter().zip(results) {
            match result {
                Ok(()) => text.push_str(&format!("[+]{name} ok\n")),
                Err(reason) => {
                    ready = false;
                    text.push_str(&format!("[-]{name} failed: {reason}\n"));
                }
            }
        }
        (ready, text)
    }
}

/// A readiness check of another service: its `grpc.health.v1.Health/Check`
/// answers SERVING.
pub async fn grpc_serving(channel: tonic::transport::Channel) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    match ServingStatus::try_from(answer.into_inner().status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(other) => Err(format!("answers {}", other.as_str_name())),
        Err(_) => Err("answers an unknown status".to_owned()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Clone)]
struct Admin {
    metrics: Metrics,
    readiness: Readiness,
}

/// Serves the admin endpoints on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .with_state(Admin { metrics, readiness });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}

/// Binds the admin address (before anything slow starts, so a busy port
/// fails the start at once).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the admin listener {addr} (--admin-listen)"))
}

async fn metrics_text(State(admin): State<Admin>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        admin.metrics.render().await,
    )
}

/// The runtime is responsive if a new task runs within a second.
async fn livez() -> impl IntoResponse {
    match tokio::time::timeout(Duration::from_secs(1), tokio::spawn(async {})).await {
        Ok(Ok(())) => (StatusCode::OK, "ok\n"),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the runtime is not responsive\n",
        ),
    }
}

async fn readyz(State(admin): State<Admin>) -> impl IntoResponse {
    let (ready, text) = admin.readiness.report().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_while_serving_and_every_check_passes() {
        let readiness = Readiness::new();
        let (ready, text) = readiness.report().await;
        assert!(!ready, "{text}");
        assert!(text.contains("[-]serving failed: still starting"));

        readiness.set_phase(Phase::Serving);
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let probe = healthy.clone();
        readiness.add_check("registry", move || {
            let up = probe.load(std::sync::atomic::Ordering::Relaxed);
            async move {
                if up {
                    Ok(())
                } else {
                    Err("unreachable".to_owned())
                }
            }
        });
        let (ready, text) = readiness.report().await;
        assert!(ready, "{text}");
        assert_eq!(text, "[+]serving ok\n[+]registry ok\n");

        healthy.store(false, std::sync::atomic::Ordering::Relaxed);
        let (ready, text) = readiness.report().await;
        assert!(!ready);
        assert!(text.contains("[-]registry failed: unreachable"), "{text}");

        healthy.store(true, std::sync::atomic::Ordering::Relaxed);
        readiness.set_phase(Phase::Draining);
        readiness.set_phase(Phase::Serving);
        let (ready, text) = readiness.report().await;
        assert!(!ready, "draining is final: {text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_fails_after_its_timeout() {
        let readiness = Readiness::new();
        readiness.set_phase(Phase::Serving);
        readiness.add_check("database", std::future::pending);
        let (ready, text) = readiness.report().await;
        assert!(!ready);
        assert!(
            text.contains("[-]database failed: no answer within 1s"),
            "{text}"
        );
    }
}
