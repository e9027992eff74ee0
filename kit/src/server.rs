//! The gRPC server every service runs: its own services, `grpc.health.v1.Health`,
//! reflection v1 and v1alpha, and graceful shutdown; every call passes the
//! kit's [`RpcLayer`] (authentication, one span per RPC).

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::admin::{Phase, Readiness};
use crate::middleware::RpcLayer;

/// Errors that stop a server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport error: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Collects a service's gRPC services, then serves them with health and
/// reflection until shutdown.
pub struct GrpcServer {
    routes: RoutesBuilder,
    finalizers: Vec<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    readiness: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    names: Vec<&'static str>,
    health: HealthReporter,
    health_service:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    rpc: RpcLayer,
    phase: Readiness,
    tls: Option<crate::tls::ServerTls>,
}

impl std::fmt::Debug for GrpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcServer")
            .field("services", &self.names)
            .finish()
    }
}

impl GrpcServer {
    /// A server whose every call passes `rpc` (authentication, tracing,
    /// metrics), reporting its phase (starting, serving, draining) to
    /// `readiness` as it reports health.
    pub fn new(rpc: RpcLayer, readiness: Readiness) -> Self {
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        Self {
            routes: RoutesBuilder::default(),
            finalizers: Vec::new(),
            readiness: None,
            names: Vec::new(),
            health,
            health_service,
            rpc,
            phase: readiness,
            tls: None,
        }
    }

    /// Serves TLS (mutual when `tls` names a client CA) instead of plaintext.
    pub fn with_tls(mut self, tls: Option<crate::tls::ServerTls>) -> Self {
        self.tls = tls;
        self
    }

    /// The reporter behind `grpc.health.v1.Health`, for services whose
    /// readiness depends on more than the database (e.g. a dependency).
    pub fn health_reporter(&self) -> HealthReporter {
        self.health.clone()
    }

    pub fn add_service<S>(mut self, service: S) -> Self
    where
        S: tower_service::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Serve NOT_SERVING until `ready` resolves (e.g. a dependency was
    /// reached), then SERVING.
    pub fn ready_when(mut self, ready: impl Future<Output = ()> + Send + 'static) -> Self {
        self.readiness = Some(Box::pin(ready));
        self
    }

    /// Work to finish after the last call has been served and before the
    /// service closes its database (e.g. flushing a queue the handlers
    /// filled). Bounded by the shutdown grace too.
    pub fn on_stopped(mut self, finalizer: impl Future<Output = ()> + Send + 'static) -> Self {
        self.finalizers.push(Box::pin(finalizer));
        self
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, stops
    /// accepting connections and waits at most `grace` for in-flight calls
    /// to finish; calls still open then end with the process.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        grace: Duration,
    ) -> Result<(), ServerError> {
        let Self {
            routes,
            finalizers,
            readiness,
            names,
            health,
            health_service,
            rpc,
            phase,
            tls,
        } = self;
        let reflection_v1 = reflection_builder(&names).build_v1()?;
        let reflection_v1alpha = reflection_builder(&names).build_v1alpha()?;

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut builder = Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls.config())?;
        }
        let server = builder
            .layer(tower::util::MapResponseLayer::new(
                malformed_is_invalid_argument,
            ))
            .layer(rpc)
            .add_routes(routes.routes())
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stop_rx.await;
                },
            );
        let readiness_task = match readiness {
            None => {
                set_status(&health, &names, ServingStatus::Serving).await;
                phase.set_phase(Phase::Serving);
                None
            }
            Some(ready) => {
                set_status(&health, &names, ServingStatus::NotServing).await;
                let (health, names, phase) = (health.clone(), names.clone(), phase.clone());
                // Aborted at shutdown, so it cannot flip a stopping server back.
                Some(tokio::spawn(async move {
                    ready.await;
                    set_status(&health, &names, ServingStatus::Serving).await;
                    phase.set_phase(Phase::Serving);
                }))
            }
        };
        let mut server = Box::pin(server);
        let result = tokio::select! {
            result = &mut server => result,
            () = shutdown => {
                tracing::info!("shutdown requested: NOT_SERVING, draining for at most {grace:?}");
                if let Some(task) = &readiness_task {
                    task.abort();
                }
                phase.set_phase(Phase::Draining);
                set_status(&health, &names, ServingStatus::NotServing).await;
                let _ = stop_tx.send(());
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!("drain did not finish within {grace:?}; shutting down with calls still open");
                        Ok(())
                    }
                }
            }
        };
        // Dropping the server drops the services, so queues they fed close.
        drop(server);
        if tokio::time::timeout(grace, futures::future::join_all(finalizers))
            .await
            .is_err()
        {
            tracing::warn!("shutdown work did not finish within {grace:?}");
        }
        Ok(result?)
    }
}

async fn set_status(health: &HealthReporter, names: &[&str], status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in names {
        health.set_service_status(name, status).await;
    }
}

/// Reflection over our descriptors plus health's and the rich error types',
/// advertising exactly the services this server runs.
fn reflection_builder(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(airt_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .include_reflection_service(false)
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection");
    for name in names {
        builder = builder.with_service_name(*name);
    }
    builder
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    tracing::error!(%error, "cannot listen for SIGTERM; only SIGINT will stop");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received"),
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A request message that does not decode (invalid UTF-8 in a string, nesting
/// beyond the decoder's limit, a truncated field) is the caller's fault:
/// INVALID_ARGUMENT, not the INTERNAL the protobuf codec reports. A message
/// over the size limit is RESOURCE_EXHAUSTED, as gRPC specifies for it, not
/// the codec's OUT_OF_RANGE.
fn malformed_is_invalid_argument<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default()
        .replace("%20", " ");
    let code = match headers.get("grpc-status").and_then(|s| s.to_str().ok()) {
        Some("13") if message.starts_with("failed to decode Protobuf message") => "3",
        Some("11") if message.starts_with("Error, decoded message length too large") => "8",
        _ => return response,
    };
    headers.insert("grpc-status", http::HeaderValue::from_static(code));
    response
}

/// Resolves on SIGTERM or SIGINT; in-flight requests then have `grace` to
/// finish before the process exits regardless (front ends without a drain
/// of their own: the MCP gateway, the console).
pub async fn shutdown_with_grace(grace: std::time::Duration) {
    shutdown_signal().await;
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        tracing::warn!("shutdown grace elapsed");
        std::process::exit(0);
    });
}

/// The rest of a front end's `main` (after its flags are parsed and secrets
/// scrubbed from the environment): a runtime, logs and traces as `name`,
/// `run`, the spans flushed, and the exit code (an error is logged).
pub fn run_front_end<F>(
    log: &crate::config::LogArgs,
    name: &'static str,
    run: F,
) -> std::process::ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let telemetry = runtime.block_on(async { crate::telemetry::init(log, name) });
    let result = runtime.block_on(run);
    runtime.block_on(async { telemetry.shutdown() });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "exiting");
            std::process::ExitCode::FAILURE
        }
    }
}
