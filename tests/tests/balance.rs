//! One policy address naming two policy services: the workflow service
//! spreads its `Evaluate` calls over both, and when one stops, workflows
//! keep completing, every step with a decision from the one left.

use std::time::Duration;

use airt_kit::testing::{TestDb, TestServer, as_principal};
use airt_proto::audit::v1 as audit;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use airt_proto::policy::v1::Decision;
use airt_proto::workflow::v1::WorkflowStatus;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{
    run_workflow, start_policy, start_registry, start_workflow_with_config, wait_until_serving,
    workflow_config,
};

const POLICY: &str =
    "default: DENY\nrules:\n  - {id: low, when: {risk_level: LOW}, decision: ALLOW}\n";
const SPEC: &str = "name: clock\nsteps:\n  - {name: now, capability: sys.info.get_time}\n";

/// How many events the service's audit chain holds (each decision is one).
async fn audit_events(server: &TestServer) -> i64 {
    let mut client = AuditServiceClient::new(server.channel().await);
    client
        .verify_audit_chain(as_principal(
            audit::VerifyAuditChainRequest {},
            "user:auditor",
            &["auditor"],
        ))
        .await
        .expect("verify")
        .into_inner()
        .events_checked
}

/// Waits (at most 10 s) until the service's audit chain holds more than
/// `before` events: decisions are logged in batches.
async fn grew(server: &TestServer, before: i64) -> i64 {
    for _ in 0..200 {
        let now = audit_events(server).await;
        if now > before {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    audit_events(server).await
}

async fn run_all(client: &mut WorkflowServiceClient<tonic::transport::Channel>, n: usize) {
    for _ in 0..n {
        let done = run_workflow(client, "user:alice", SPEC).await;
        assert_eq!(done.status(), WorkflowStatus::Completed, "{done:?}");
        for step in &done.steps {
            let decision = step.decision.as_ref().expect("every step has a decision");
            assert_eq!(decision.decision(), Decision::Allow);
            assert_eq!(decision.rule_id, "low");
        }
    }
}

#[tokio::test]
async fn calls_spread_over_every_policy_replica_and_survive_one_stopping() {
    let dbs = [TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite()];
    let registry = start_registry(&dbs[0]).await;
    let first = start_policy(&dbs[1]).await;
    let second = start_policy(&dbs[2]).await;
    for policy in [&first, &second] {
        airt_kit::testing::activate_policy(policy.channel().await, POLICY).await;
    }
    let before = [audit_events(&first).await, audit_events(&second).await];

    let workspace = tempfile::tempdir().expect("workspace");
    let both = format!("{},{}", first.url(), second.url());
    let config = workflow_config(&registry.url(), &both, workspace.path());
    let workflow_db = TestDb::sqlite();
    let workflow = start_workflow_with_config(&workflow_db, config).await;
    wait_until_serving(workflow.channel().await, Duration::from_secs(20)).await;
    let mut client = WorkflowServiceClient::new(workflow.channel().await);

    run_all(&mut client, 40).await;
    let shares = [
        grew(&first, before[0]).await,
        grew(&second, before[1]).await,
    ];
    assert!(
        shares[0] > before[0] && shares[1] > before[1],
        "both policy services decide a share of the steps: audit events {before:?} -> {shares:?}"
    );

    second.stop().await.expect("stop one policy service");
    let left_before = audit_events(&first).await;
    run_all(&mut client, 10).await;
    let left_after = grew(&first, left_before).await;
    assert!(
        left_after >= left_before + 10,
        "the remaining policy service decided every later step: {left_before} -> {left_after}"
    );

    for server in [workflow, first, registry] {
        server.stop().await.expect("stop");
    }
}
