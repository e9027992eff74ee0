//! `policy-service`: the Brain — a gatekeeper that answers ALLOW, DENY or REQUIRE_APPROVAL. Knows nothing about workflows.
//!
//! `serve_on` is used by the binary, by `airt up` and by tests.

use std::future::Future;

use airt_kit::config::{ServiceConfig, ServiceIdentity};
use tokio::net::TcpListener;

/// Name, default port and default SQLite file of this service.
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "policy-service",
    default_port: 50052,
    default_db_file: "policy.db",
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
pub mod domain;
