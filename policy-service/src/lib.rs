//! `policy-service`: the Brain — a gatekeeper that answers ALLOW, DENY or
//! REQUIRE_APPROVAL. Knows nothing about workflows; risk arrives as an input.
//!
//! `serve_on` is used by the binary, by `airt up` and by tests.

use std::future::Future;

use airt_kit::config::{ServiceConfig, ServiceIdentity};
use airt_proto::policy::v1::policy_service_server::PolicyServiceServer;
use tokio::net::TcpListener;

pub mod active;
pub mod api;
pub mod budgets;
pub mod convert;
pub mod decision_log;
pub mod domain;
pub mod error;
pub mod impact;
pub mod metrics;
pub mod store;

/// Name, default port and default SQLite file of this service.
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "policy-service",
    default_port: 50052,
    default_admin_port: 9452,
    default_db_file: "policy.db",
};

/// Serves on `listener` until `shutdown` resolves: `PolicyService`, health,
/// reflection and `AuditService` over this service's own database. The
/// decision log is written completely before the database closes.
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
            let store = store::PolicyStore::new(ctx.db.clone());
            let active = active::ActivePolicy::load(&store).await?;
            ctx.tasks
                .spawn(active.clone().follow(store.clone(), ctx.shutdown.clone()));
            ctx.tasks
                .spawn(budgets::purge(store.clone(), ctx.shutdown.clone()));
            let (decisions, writer) = decision_log::DecisionLog::spawn(ctx.audit.clone());
            let metrics = metrics::PolicyMetrics::new(&ctx.metrics, &active, &decisions);
            let api = api::PolicyApi::new(store, ctx.audit.clone(), active, decisions, metrics);
            Ok(server
                .add_service(PolicyServiceServer::new(api))
                .on_stopped(async move {
                    let _ = writer.await;
                }))
        },
    )
    .await
}
