//! `registry-service`: the Law — capabilities, their risk and how to undo them. Knows nothing about workflows or policy.
//!
//! `serve_on` is used by the binary, by `airt up` and by tests.

use std::future::Future;

use airt_kit::config::{ServiceConfig, ServiceIdentity};
use tokio::net::TcpListener;

/// Name, default port and default SQLite file of this service.
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "registry-service",
    default_port: 50051,
    default_db_file: "registry.db",
};

/// Serves on `listener` until `shutdown` resolves: health, reflection and
/// `AuditService` over this service's own database.
pub async fn serve_on(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    airt_kit::bootstrap::serve(
        &IDENTITY,
        config,
        None,
        listener,
        shutdown,
        |_ctx, server| Ok(server),
    )
    .await
}
pub mod domain;
