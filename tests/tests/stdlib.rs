//! The standard capabilities as the registry sees them: published by the
//! workflow service at start-up, idempotently, and only once the registry
//! can be reached.

use std::time::Duration;

use airt_kit::testing::{TestDb, TestServer, as_principal, health_status};
use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_system_tests::{start_workflow, wait_until_serving};
use tonic_health::pb::health_check_response::ServingStatus;
use workflow_service::capabilities::{Catalogue, CatalogueConfig};

async fn builtins_in(registry: &TestServer) -> Vec<pb::Capability> {
    let mut client = RegistryServiceClient::new(registry.channel().await);
    client
        .list_capabilities(as_principal(
            pb::ListCapabilitiesRequest {
                page_size: 1000,
                tag: "stdlib".into(),
                ..Default::default()
            },
            "user:root",
            &[],
        ))
        .await
        .expect("list")
        .into_inner()
        .capabilities
}

#[tokio::test]
async fn every_builtin_is_published_consistent_and_undoable() {
    for registry_db in TestDb::all().await {
        let registry = airt_system_tests::start_registry(&registry_db).await;
        let workflow_db = TestDb::sqlite();
        let workspace = tempfile::tempdir().expect("workspace");
        let workflow = start_workflow(&workflow_db, &registry.url(), workspace.path()).await;
        wait_until_serving(workflow.channel().await, Duration::from_secs(20)).await;

        let published = builtins_in(&registry).await;
        let catalogue = Catalogue::new(&CatalogueConfig::default());
        let mut expected: Vec<&str> = catalogue.specs().iter().map(|s| s.id.as_str()).collect();
        expected.sort_unstable();
        let mut ids: Vec<&str> = published
            .iter()
            .map(|c| c.spec.as_ref().expect("spec").id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            expected,
            "{:?}: 100% of the built-ins are registered",
            registry_db.backend()
        );
        for capability in &published {
            let spec = capability.spec.as_ref().expect("spec");
            assert_eq!(spec.handler, format!("builtin:{}", spec.id));
            let side_effects = spec.side_effects.as_ref().expect("side effects");
            let compensation = spec.compensation.as_ref().expect("compensation");
            // Reads (READ, and GET over the network) have nothing to undo.
            use airt_proto::common::v1::OperationType;
            let writes = [OperationType::Write as i32, OperationType::Delete as i32]
                .contains(&spec.operation_type);
            if writes && side_effects.reversible {
                assert_eq!(
                    compensation.strategy,
                    pb::CompensationStrategy::Automatic as i32,
                    "{}",
                    spec.id
                );
            }
        }
        let head = published.iter().map(|c| c.registry_revision).max();

        // A restart publishes again: identical content, so nothing changes.
        workflow.stop().await.expect("clean stop");
        let workflow = start_workflow(&workflow_db, &registry.url(), workspace.path()).await;
        wait_until_serving(workflow.channel().await, Duration::from_secs(20)).await;
        let again = builtins_in(&registry).await;
        assert_eq!(
            again.iter().map(|c| c.registry_revision).max(),
            head,
            "re-publishing is idempotent"
        );
        workflow.stop().await.expect("clean stop");
        registry.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn the_workflow_service_is_not_serving_until_the_registry_answers() {
    // Reserve a port for a registry that is not running yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = reserved.local_addr().expect("addr");
    drop(reserved);
    let workflow_db = TestDb::sqlite();
    let workspace = tempfile::tempdir().expect("workspace");
    let workflow = start_workflow(&workflow_db, &format!("http://{addr}"), workspace.path()).await;
    let channel = workflow.channel().await;
    assert_eq!(
        health_status(channel.clone(), "").await,
        ServingStatus::NotServing
    );

    // The registry comes up on that address; publishing completes by itself.
    let registry_db = TestDb::sqlite();
    let config = airt_kit::config::ServiceConfig {
        database_url: registry_db.url().to_owned(),
        auth: airt_kit::auth::AuthSettings::Development,
        ..airt_kit::config::ServiceConfig::local(&registry_service::IDENTITY)
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind the reserved address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let registry = tokio::spawn(registry_service::serve_on(config, listener, async {
        let _ = stopped.await;
    }));
    wait_until_serving(channel, Duration::from_secs(60)).await;
    workflow.stop().await.expect("clean stop");
    let _ = stop.send(());
    registry.await.expect("join").expect("clean stop");
}
