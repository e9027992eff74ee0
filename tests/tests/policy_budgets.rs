//! Budgets over real gRPC: two policy replicas sharing one database never
//! allow more than `max` under parallel clients; previews and callers that
//! are not services never spend; an action resumed after its approval is
//! not counted twice; an exhausted budget refuses the action and nothing
//! runs.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use std::time::Duration;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::common::v1::{Principal, RiskLevel};
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, execute_action as execute, start_policy};
use tokio::time::Instant;
use tonic::transport::Channel;

const CAPPED: &str = r#"
default: DENY
rules:
  - id: mail-budget
    when: {capability: email.send}
    decision: ALLOW
    reason: Agents send mail
    budget: {max: 25, per: 1h, by: [agent]}
"#;

fn context(agent: &str) -> policy::PolicyContext {
    policy::PolicyContext {
        principal: Some(Principal {
            r#type: "user".into(),
            id: "alice".into(),
            roles: vec![],
        }),
        agent: agent.into(),
        capability_id: "email.send".into(),
        risk_level: RiskLevel::Low as i32,
        ..Default::default()
    }
}

async fn ask(
    client: &mut PolicyServiceClient<Channel>,
    caller: &str,
    agent: &str,
    purpose: policy::EvaluationPurpose,
) -> policy::DecisionRecord {
    client
        .evaluate(as_principal(
            policy::EvaluateRequest {
                context: Some(context(agent)),
                explain: false,
                any_inputs: false,
                purpose: purpose as i32,
            },
            caller,
            &[],
        ))
        .await
        .expect("evaluate")
        .into_inner()
        .decision
        .expect("decision")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_allow_more_than_the_budget() {
    for db in TestDb::all().await {
        let replicas = [start_policy(&db).await, start_policy(&db).await];
        airt_kit::testing::activate_policy(replicas[0].channel().await, CAPPED).await;
        let mut clients = Vec::new();
        for replica in &replicas {
            clients.push(PolicyServiceClient::new(replica.channel().await));
        }
        // Wait until the second replica decides with the set (a preview
        // spends nothing).
        let deadline = Instant::now() + Duration::from_secs(10);
        while ask(
            &mut clients[1],
            "service:workflow",
            "warmup",
            policy::EvaluationPurpose::Preview,
        )
        .await
        .rule_id
            != "mail-budget"
        {
            assert!(
                Instant::now() < deadline,
                "the second replica never loaded the set"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..16 {
            let mut client = clients[i % 2].clone();
            tasks.spawn(async move {
                let mut allowed = 0;
                for _ in 0..10 {
                    let record = ask(
                        &mut client,
                        "service:workflow",
                        "mailer",
                        policy::EvaluationPurpose::Execute,
                    )
                    .await;
                    if record.decision == policy::Decision::Allow as i32 {
                        allowed += 1;
                    } else {
                        assert_eq!(record.decision, policy::Decision::Deny as i32);
                        assert!(
                            record.reason.starts_with(
                                "over budget: rule mail-budget allows 25 per 1h for agent=mailer"
                            ),
                            "{}",
                            record.reason
                        );
                        let budget = record.budget.expect("budget");
                        assert!(budget.exceeded && !budget.counted && budget.remaining == 0);
                    }
                }
                allowed
            });
        }
        let mut allowed = 0;
        while let Some(count) = tasks.join_next().await {
            allowed += count.expect("client");
        }
        assert_eq!(allowed, 25, "{:?}: 160 decisions, budget 25", db.backend());

        // A preview sees the exhausted budget and spends nothing; so does
        // any caller that is not a service, whatever purpose it claims.
        let preview = ask(
            &mut clients[0],
            "service:workflow",
            "mailer",
            policy::EvaluationPurpose::Preview,
        )
        .await;
        assert_eq!(preview.decision, policy::Decision::Deny as i32);
        let fresh = ask(
            &mut clients[0],
            "user:alice",
            "fresh",
            policy::EvaluationPurpose::Execute,
        )
        .await;
        let budget = fresh.budget.expect("budget shown");
        assert_eq!(
            (
                fresh.decision,
                budget.used,
                budget.remaining,
                budget.counted
            ),
            (policy::Decision::Allow as i32, 0, 25, false)
        );
        // Each agent has its own budget.
        let first = ask(
            &mut clients[1],
            "service:workflow",
            "fresh",
            policy::EvaluationPurpose::Execute,
        )
        .await;
        let budget = first.budget.expect("budget");
        assert_eq!(
            (
                first.decision,
                budget.used,
                budget.remaining,
                budget.counted
            ),
            (policy::Decision::Allow as i32, 1, 24, true)
        );
        // An action already counted is neither counted nor checked again.
        let resumed = ask(
            &mut clients[0],
            "service:workflow",
            "mailer",
            policy::EvaluationPurpose::Continue,
        )
        .await;
        assert_eq!(
            (resumed.decision, resumed.budget),
            (policy::Decision::Allow as i32, None)
        );

        for replica in replicas {
            replica.stop().await.expect("stops");
        }
    }
}

const WORKSPACE: &str = r#"
default: DENY
rules:
  - id: two-writes-an-hour
    when: {capability: io.fs.write_file}
    decision: ALLOW
    budget: {max: 2, per: 1h, by: [principal]}
  - id: one-reviewed-copy-an-hour
    when: {capability: io.fs.copy}
    decision: REQUIRE_APPROVAL
    budget: {max: 1, per: 1h}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_spend_the_budget_once_and_stop_when_it_is_spent() {
    let stack = Stack::start(TestDb::sqlite(), WORKSPACE).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    for i in 1..=3 {
        let inputs = serde_json::json!({"path": format!("note-{i}.txt"), "content": "x"});
        let answer = execute(
            &mut client,
            "io.fs.write_file",
            inputs,
            &format!("write-{i}"),
        )
        .await;
        let written = stack.root().join(format!("note-{i}.txt")).exists();
        if i <= 2 {
            assert_eq!(
                answer.status,
                pb::ActionStatus::Succeeded as i32,
                "{}",
                answer.error
            );
            assert!(written);
        } else {
            assert_eq!(answer.status, pb::ActionStatus::Denied as i32);
            assert!(
                answer.error.contains(
                    "over budget: rule two-writes-an-hour allows 2 per 1h for principal=user:alice"
                ),
                "{}",
                answer.error
            );
            assert!(!written, "nothing ran");
        }
    }

    // A copy waits for a human (counted once), runs once approved (not
    // counted again), and the next copy finds the budget spent.
    std::fs::write(stack.root().join("draft.md"), b"v1").expect("file");
    let inputs = serde_json::json!({"from": "draft.md", "to": "published.md"});
    let pending = execute(&mut client, "io.fs.copy", inputs.clone(), "copy-1").await;
    assert_eq!(
        pending.status,
        pb::ActionStatus::AwaitingApproval as i32,
        "{}",
        pending.error
    );
    let approval = pending.approval.expect("approval");
    ApprovalServiceClient::new(stack.workflow.channel().await)
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id: approval.approval_id,
                comment: "fine".into(),
                request_id: String::new(),
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("approve");
    let deadline = Instant::now() + Duration::from_secs(20);
    let done = loop {
        let answer = execute(&mut client, "io.fs.copy", inputs.clone(), "copy-1").await;
        if answer.status != pb::ActionStatus::AwaitingApproval as i32 || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        done.status,
        pb::ActionStatus::Succeeded as i32,
        "{}",
        done.error
    );
    assert!(stack.root().join("published.md").exists());
    let second = execute(
        &mut client,
        "io.fs.copy",
        serde_json::json!({"from": "draft.md", "to": "again.md"}),
        "copy-2",
    )
    .await;
    assert_eq!(
        second.status,
        pb::ActionStatus::Denied as i32,
        "{}",
        second.error
    );
    assert!(second.error.contains("over budget"), "{}", second.error);
    assert!(!stack.root().join("again.md").exists());
    stack.stop().await;
}
