//! `registry-service`: the Law — capabilities, their risk and how to undo
//! them. Knows nothing about workflows or policy.
//!
//! `serve_on` is used by the binary, by `airt up` and by tests.

use std::future::Future;

use airt_kit::config::{ServiceConfig, ServiceIdentity};
use airt_proto::registry::v1::registry_service_server::RegistryServiceServer;
use tokio::net::TcpListener;

pub mod api;
pub mod convert;
pub mod domain;
pub mod error;
pub mod metrics;
pub mod store;

/// Name, default port and default SQLite file of this service.
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "registry-service",
    default_port: 50051,
    default_admin_port: 9451,
    default_db_file: "registry.db",
};

/// Serves on `listener` until `shutdown` resolves: `RegistryService`, health,
/// reflection and `AuditService` over this service's own database.
pub async fn serve_on(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    airt_kit::bootstrap::serve(
        &IDENTITY,
        config,
        Some(store::MIGRATIONS),
        listener,
        shutdown,
        |ctx, server| async move {
            let store = store::RegistryStore::new(ctx.db.clone()).await?;
            // Other replicas' changes reach the read cache through the feed.
            tokio::spawn(store.clone().follow_changes(ctx.shutdown.clone()));
            // WatchCapabilities streams end when shutdown begins.
            let metrics = metrics::RegistryMetrics::new(&ctx.metrics, &store);
            let api = api::RegistryApi::new(store, ctx.shutdown.clone(), metrics);
            Ok(server.add_service(RegistryServiceServer::new(api)))
        },
    )
    .await
}
