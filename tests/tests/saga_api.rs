//! The saga and the fail-closed gate through the workflow service's gRPC
//! API, on SQLite and PostgreSQL: rollback order (read from the audit log),
//! DENY at step two, escalation, failing
//! compensations, and a registry or policy service that is down.

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::audit::v1 as audit;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, register_capability};
use tonic::transport::Channel;

const POLICY: &str = r#"
rules:
  - {id: deny-high-risk, when: {risk_level: [HIGH, CRITICAL], capability: ["io.*", "ghost.*"]}, decision: DENY, reason: High-risk operations are not allowed}
  - {id: allow-risky, when: {capability: "risky.*"}, decision: ALLOW}
  - {id: allow-the-rest, when: {risk_level: [LOW, MEDIUM]}, decision: ALLOW}
"#;

async fn run(client: &mut WorkflowServiceClient<Channel>, spec: &str) -> pb::Workflow {
    airt_system_tests::run_workflow(client, "user:alice", spec).await
}

fn step<'a>(workflow: &'a pb::Workflow, name: &str) -> &'a pb::Step {
    workflow
        .steps
        .iter()
        .find(|s| s.name == name)
        .expect("step")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_over_grpc() {
    for db in TestDb::all().await {
        let stack = Stack::start(db, POLICY).await;
        let channel = stack.workflow.channel().await;
        let mut client = WorkflowServiceClient::new(channel.clone());
        std::fs::write(stack.root().join("config.txt"), b"v1").expect("file");

        // Third step fails: steps two then one are compensated.
        let saga = run(&mut client, "name: saga\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: config.txt, content: v2}}\n  - {name: two, capability: io.fs.write_file, depends_on: [one], inputs: {path: new.txt, content: fresh}}\n  - {name: three, capability: io.fs.read_file, depends_on: [two], inputs: {path: missing.txt}}\n").await;
        assert_eq!(
            saga.status,
            pb::WorkflowStatus::RolledBack as i32,
            "{}",
            saga.failure_reason
        );
        assert_eq!(
            std::fs::read(stack.root().join("config.txt")).expect("file"),
            b"v1"
        );
        assert!(!stack.root().join("new.txt").exists());
        let mut audit_client = AuditServiceClient::new(channel.clone());
        let events = audit_client
            .list_audit_events(as_principal(
                audit::ListAuditEventsRequest {
                    action: "compensation.status".into(),
                    resource_id: saga.workflow_id.clone(),
                    page_size: 100,
                    ..Default::default()
                },
                "user:root",
                &["auditor"],
            ))
            .await
            .expect("audit")
            .into_inner()
            .events;
        let done: Vec<String> = events
            .iter()
            .filter_map(|e| e.details.as_ref())
            .map(airt_kit::json::from_proto_struct)
            .filter(|d| d["status"] == "DONE")
            .map(|d| d["step"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            done,
            ["two", "one"],
            "reverse completion order, from the audit log"
        );

        // DENY at step two rolls back step one.
        std::fs::write(stack.root().join("victim.txt"), b"keep").expect("file");
        let denied = run(&mut client, "name: mixed\noptions: {preflight: false}\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: draft.txt, content: x}}\n  - {name: two, capability: io.fs.delete, depends_on: [one], inputs: {path: victim.txt}}\n").await;
        assert_eq!(denied.status, pb::WorkflowStatus::RolledBack as i32);
        assert_eq!(step(&denied, "two").status, pb::StepStatus::Denied as i32);
        assert!(!stack.root().join("draft.txt").exists());
        assert_eq!(
            std::fs::read(stack.root().join("victim.txt")).expect("file"),
            b"keep"
        );

        // An ALLOWed HIGH-risk step is escalated: PAUSED, not executed.
        let risky = "id: risky.operation\nname: Risky\noperation_type: WRITE\nrisk: {level: HIGH}\nside_effects: {reversible: false, scope: EXTERNAL}\ncompensation: {supported: true, strategy: MANUAL}\nmetadata: {version: 1.0.0}\nhandler: \"http:https://risky.example/op\"\n";
        register_capability(
            stack.registry.as_ref().expect("registry").channel().await,
            risky,
        )
        .await;
        let paused = run(
            &mut client,
            "name: p\nsteps:\n  - {name: risky, capability: risky.operation}\n",
        )
        .await;
        assert_eq!(paused.status, pb::WorkflowStatus::Paused as i32);
        let risky_step = step(&paused, "risky");
        assert_eq!(
            (risky_step.status, risky_step.attempt),
            (pb::StepStatus::AwaitingApproval as i32, 0)
        );
        assert!(risky_step.decision.as_ref().is_some_and(|d| d.escalated
            && d.decision == airt_proto::policy::v1::Decision::RequireApproval as i32));

        // A compensation that cannot succeed: COMPENSATION_FAILED naming the step.
        let broken = run(&mut client, "name: c\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: a.txt, content: x}, compensation: {capability: io.fs.read_file, inputs: {path: nowhere.txt}}}\n  - {name: two, capability: io.fs.read_file, depends_on: [one], inputs: {path: missing.txt}}\n").await;
        assert_eq!(
            (broken.status, broken.failed_step.as_str()),
            (pb::WorkflowStatus::CompensationFailed as i32, "one")
        );
        assert_eq!(
            broken.compensations[0].status,
            pb::CompensationStatus::Failed as i32
        );
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_dependency_down_no_handler_runs() {
    for down in ["registry", "policy service"] {
        let mut stack = Stack::start(TestDb::sqlite(), POLICY).await;
        let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
        let server = if down == "registry" {
            stack.registry.take()
        } else {
            stack.policy.take()
        };
        server.expect("server").stop().await.expect("stop");
        let failed = run(&mut client, "name: d\noptions: {preflight: false}\nsteps:\n  - {name: write, capability: io.fs.write_file, timeout: 1s, inputs: {path: never.txt, content: x}}\n").await;
        assert_eq!(failed.status, pb::WorkflowStatus::Failed as i32);
        assert!(
            failed
                .failure_reason
                .contains(&format!("{down} unavailable")),
            "{}",
            failed.failure_reason
        );
        assert!(!stack.root().join("never.txt").exists(), "no handler ran");
        assert_eq!(step(&failed, "write").attempt, 0);
        stack.stop().await;
    }
}
