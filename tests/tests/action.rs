//! `ExecuteAction` over gRPC: one capability as a governed action, allowed,
//! denied, waiting for an approval and then finished, and idempotent by
//! request id (the handler runs once); `GetAction` by workflow id.

use std::time::Duration;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, action_request as action, execute_action as execute};
use tonic::Code;

const POLICY: &str = r#"
default: DENY
rules:
  - {id: no-deletes, when: {capability: io.fs.delete}, decision: DENY, reason: Nothing is deleted here}
  - {id: copies-need-a-look, when: {capability: io.fs.copy}, decision: REQUIRE_APPROVAL, reason: Copies need a look}
  - {id: allow-the-rest, decision: ALLOW, reason: Workspace work}
"#;

fn status(answer: &pb::ExecuteActionResponse) -> pb::ActionStatus {
    pb::ActionStatus::try_from(answer.status).expect("known status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_action_runs_once_and_answers_with_its_outputs() {
    let stack = Stack::start(TestDb::sqlite(), POLICY).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let inputs = serde_json::json!({"path": "note.txt", "content": "hello"});
    let done = execute(&mut client, "io.fs.write_file", inputs.clone(), "write-1").await;
    assert_eq!(status(&done), pb::ActionStatus::Succeeded, "{}", done.error);
    assert!(done.created);
    let outputs = airt_kit::json::from_proto_value(done.outputs.as_ref().expect("outputs"));
    assert_eq!(outputs["size"], 5);
    assert_eq!(
        done.decision.as_ref().map(|d| d.rule_id.as_str()),
        Some("allow-the-rest")
    );
    assert_eq!(
        std::fs::read(stack.root().join("note.txt")).expect("written"),
        b"hello"
    );

    // The same request again: the same action, not a second run.
    std::fs::remove_file(stack.root().join("note.txt")).expect("remove");
    let again = execute(&mut client, "io.fs.write_file", inputs, "write-1").await;
    assert_eq!(
        (again.workflow_id.as_str(), again.created),
        (done.workflow_id.as_str(), false)
    );
    assert_eq!(status(&again), pb::ActionStatus::Succeeded);
    assert!(
        !stack.root().join("note.txt").exists(),
        "the handler ran once"
    );
    // Another action under the same request id is a conflict.
    let conflict = client
        .execute_action(action(
            "io.fs.write_file",
            serde_json::json!({"path": "other.txt", "content": "x"}),
            "write-1",
        ))
        .await
        .expect_err("another action under a used request id");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_action_names_the_rule_and_nothing_runs() {
    let stack = Stack::start(TestDb::sqlite(), POLICY).await;
    std::fs::write(stack.root().join("keep.txt"), b"precious").expect("file");
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let denied = execute(
        &mut client,
        "io.fs.delete",
        serde_json::json!({"path": "keep.txt"}),
        "",
    )
    .await;
    assert_eq!(status(&denied), pb::ActionStatus::Denied);
    let decision = denied.decision.expect("decision");
    assert_eq!(decision.rule_id, "no-deletes");
    assert!(
        denied.error.contains("Nothing is deleted here"),
        "{}",
        denied.error
    );
    assert!(denied.outputs.is_none());
    assert_eq!(
        std::fs::read(stack.root().join("keep.txt")).expect("kept"),
        b"precious"
    );

    // Bad requests are refused before anything is stored.
    for (request, field) in [
        (action("", serde_json::json!({}), ""), "capability_id"),
        (
            action("io.fs.write_file", serde_json::json!({"path": "x"}), ""),
            "spec.steps[0].inputs.content",
        ),
    ] {
        let refused = client.execute_action(request).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument);
        let fields: Vec<String> = airt_kit::status::violations_of(&refused)
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert!(fields.iter().any(|f| f == field), "{fields:?}");
    }
    let mut too_long = action("io.fs.write_file", serde_json::json!({}), "");
    too_long.get_mut().wait = Some(prost_types::Duration {
        seconds: 61,
        nanos: 0,
    });
    assert_eq!(
        client
            .execute_action(too_long)
            .await
            .expect_err("wait")
            .code(),
        Code::InvalidArgument
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_that_needs_approval_answers_pending_then_its_result() {
    let stack = Stack::start(TestDb::sqlite(), POLICY).await;
    std::fs::write(stack.root().join("draft.md"), b"v1").expect("file");
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let inputs = serde_json::json!({"from": "draft.md", "to": "published.md"});
    let pending = execute(&mut client, "io.fs.copy", inputs.clone(), "publish-1").await;
    assert_eq!(
        status(&pending),
        pb::ActionStatus::AwaitingApproval,
        "{}",
        pending.error
    );
    let approval = pending.approval.expect("the pending approval");
    assert_eq!(approval.approver_roles, ["approver"]);
    assert!(approval.expire_time.is_some());
    assert!(
        !stack.root().join("published.md").exists(),
        "nothing ran before the approval"
    );

    let mut approvals = ApprovalServiceClient::new(stack.workflow.channel().await);
    approvals
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id: approval.approval_id.clone(),
                comment: "fine".into(),
                request_id: String::new(),
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("approve");
    // Asking again with the same request id gives the final result.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let done = loop {
        let answer = execute(&mut client, "io.fs.copy", inputs.clone(), "publish-1").await;
        if status(&answer) != pb::ActionStatus::AwaitingApproval
            || tokio::time::Instant::now() > deadline
        {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status(&done), pb::ActionStatus::Succeeded, "{}", done.error);
    assert_eq!(
        (done.workflow_id.as_str(), done.created),
        (pending.workflow_id.as_str(), false)
    );
    assert_eq!(
        std::fs::read(stack.root().join("published.md")).expect("copied"),
        b"v1"
    );

    // GetAction by workflow id says the same; only its owner sees it, and a
    // workflow that is not an action is refused.
    let got = client
        .get_action(as_principal(
            pb::GetActionRequest {
                workflow_id: done.workflow_id.clone(),
                wait: None,
            },
            "user:alice",
            &[],
        ))
        .await
        .expect("get action")
        .into_inner();
    assert_eq!(
        (got.status, got.outputs.clone()),
        (done.status, done.outputs.clone())
    );
    let stranger = client
        .get_action(as_principal(
            pb::GetActionRequest {
                workflow_id: done.workflow_id.clone(),
                wait: None,
            },
            "user:mallory",
            &[],
        ))
        .await
        .expect_err("not mallory's");
    assert_eq!(stranger.code(), Code::NotFound, "{stranger:?}");
    stack.stop().await;
}
