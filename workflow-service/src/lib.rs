//! `workflow-service`: the Body — runs workflows durably, asking the registry and the policy service before every step.
//!
//! `serve_on` is used by the binary, by `airt up` and by tests.

use std::future::Future;

use airt_kit::config::{ServiceConfig, ServiceIdentity};
use tokio::net::TcpListener;

/// Name, default port and default SQLite file of this service.
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "workflow-service",
    default_port: 50053,
    default_db_file: "workflow.db",
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
        |_ctx, server| async { Ok(server) },
    )
    .await
}
