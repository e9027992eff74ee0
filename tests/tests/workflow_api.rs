//! The workflow service over real gRPC with the registry and the policy
//! service: submit, watch, get, list, plan and cancel.

use std::time::Duration;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::Code;
use tonic::transport::Channel;

const POLICY: &str = "default: DENY\nrules:\n  - {id: deny-high-risk, when: {risk_level: [HIGH, CRITICAL]}, decision: DENY, reason: High-risk operations are not allowed}\n  - {id: allow-the-rest, decision: ALLOW}\n";

/// The three services (from the shared helper) and a workflow client.
struct Fixture {
    stack: airt_system_tests::Stack,
    client: WorkflowServiceClient<Channel>,
    root: std::path::PathBuf,
}

async fn stack(workflow_db: TestDb) -> Fixture {
    let stack = airt_system_tests::Stack::start(workflow_db, POLICY).await;
    let client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let root = stack.root().to_path_buf();
    Fixture {
        stack,
        client,
        root,
    }
}

fn alice<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:alice", &[])
}

fn submit(text: &str, request_id: &str) -> pb::SubmitWorkflowRequest {
    pb::SubmitWorkflowRequest {
        source: Some(pb::submit_workflow_request::Source::SpecText(text.into())),
        request_id: request_id.into(),
    }
}

/// Watches until the workflow is terminal or paused; returns every event
/// kind and status change it reported, and the last snapshot.
async fn watch(
    client: &mut WorkflowServiceClient<Channel>,
    id: &str,
) -> (Vec<String>, pb::Workflow) {
    let mut stream = client
        .watch_workflow(alice(pb::WatchWorkflowRequest {
            workflow_id: id.into(),
            after_sequence: 0,
        }))
        .await
        .expect("watch")
        .into_inner();
    let mut statuses = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an update")
            .expect("stream ok");
        let Some(item) = item else {
            panic!("stream ended before a final status: {statuses:?}")
        };
        let workflow = item.workflow.expect("snapshot");
        for event in item.events {
            let status = event
                .detail
                .as_ref()
                .and_then(|d| d.fields.get("status"))
                .map(airt_kit::json::from_proto_value);
            statuses.push(match status {
                Some(serde_json::Value::String(s)) => {
                    format!("{}:{}:{s}", event.kind, event.step_name)
                }
                _ => format!("{}:{}", event.kind, event.step_name),
            });
        }
        let status = pb::WorkflowStatus::try_from(workflow.status).expect("known");
        if matches!(
            status,
            pb::WorkflowStatus::Completed
                | pb::WorkflowStatus::Failed
                | pb::WorkflowStatus::RolledBack
                | pb::WorkflowStatus::CompensationFailed
                | pb::WorkflowStatus::Cancelled
                | pb::WorkflowStatus::Paused
        ) {
            return (statuses, workflow);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_watch_and_get_over_grpc() {
    for db in TestDb::all().await {
        let mut s = stack(db).await;
        let spec = "name: hello\ninitial_state: {who: world}\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: hello.txt, content: 'hello {{who}}'}}\n  - {name: read, capability: io.fs.read_file, depends_on: [write], inputs: {path: hello.txt}}\n";
        let submitted = s
            .client
            .submit_workflow(alice(submit(spec, "req-7")))
            .await
            .expect("submit")
            .into_inner();
        assert!(submitted.created);
        let id = submitted.workflow.expect("workflow").workflow_id;
        let (statuses, done) = watch(&mut s.client, &id).await;
        assert_eq!(
            done.status,
            pb::WorkflowStatus::Completed as i32,
            "{}",
            done.failure_reason
        );
        // Every event, in order, even though the watch started after the submission.
        assert_eq!(
            statuses.first().map(String::as_str),
            Some("workflow.submitted:"),
            "{statuses:?}"
        );
        for expected in [
            "workflow.status::RUNNING",
            "step.status:write:RUNNING",
            "step.succeeded:write:SUCCEEDED",
            "step.succeeded:read:SUCCEEDED",
            "workflow.status::COMPLETED",
        ] {
            assert!(
                statuses.iter().any(|s| s == expected),
                "{expected} missing from {statuses:?}"
            );
        }
        let read = done
            .steps
            .iter()
            .find(|step| step.name == "read")
            .expect("read step");
        let outputs = airt_kit::json::from_proto_value(read.outputs.as_ref().expect("outputs"));
        assert_eq!(outputs["content"], "hello world");
        assert_eq!(
            read.decision.as_ref().map(|d| d.rule_id.as_str()),
            Some("allow-the-rest")
        );
        assert_eq!(read.idempotency_key, format!("{id}/read"));
        assert_eq!(
            std::fs::read(s.root.join("hello.txt")).expect("file"),
            b"hello world"
        );

        // Retrying the submission returns the same workflow.
        let again = s
            .client
            .submit_workflow(alice(submit(spec, "req-7")))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(
            (again.created, again.workflow.expect("workflow").workflow_id),
            (false, id.clone())
        );
        // The same request_id with a different spec is a conflict, not the old workflow.
        let changed = spec.replace("hello.txt", "other.txt");
        let conflict = s
            .client
            .submit_workflow(alice(submit(&changed, "req-7")))
            .await
            .expect_err("a different spec under a used request_id");
        assert_eq!(conflict.code(), Code::AlreadyExists);
        assert_eq!(
            airt_kit::status::reason_of(&conflict).as_deref(),
            Some("REQUEST_ID_CONFLICT")
        );
        assert!(conflict.message().contains(&id), "{}", conflict.message());

        // Others do not see it; admins do.
        let other = s
            .client
            .get_workflow(as_principal(
                pb::GetWorkflowRequest {
                    workflow_id: id.clone(),
                },
                "user:mallory",
                &[],
            ))
            .await
            .expect_err("hidden");
        assert_eq!(other.code(), Code::NotFound);
        s.client
            .get_workflow(as_principal(
                pb::GetWorkflowRequest {
                    workflow_id: id.clone(),
                },
                "user:root",
                &["admin"],
            ))
            .await
            .expect("admin sees it");
        let mine = s
            .client
            .list_workflows(alice(pb::ListWorkflowsRequest::default()))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(mine.workflows.len(), 1);
        let theirs = s
            .client
            .list_workflows(as_principal(
                pb::ListWorkflowsRequest::default(),
                "user:mallory",
                &[],
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(theirs.workflows.is_empty());
        s.stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_invalid_planned_and_cancelled_workflows_over_grpc() {
    let mut s = stack(TestDb::sqlite()).await;
    std::fs::write(s.root.join("precious.txt"), b"keep").expect("file");

    // Grand Unified: the HIGH-risk delete is denied before execution.
    let denied = s.client.submit_workflow(alice(submit("name: shred\nsteps:\n  - {name: shred, capability: io.fs.delete, inputs: {path: precious.txt}}\n", ""))).await.expect("submit").into_inner();
    let (_, done) = watch(
        &mut s.client,
        &denied.workflow.expect("workflow").workflow_id,
    )
    .await;
    assert_eq!(done.status, pb::WorkflowStatus::Failed as i32);
    assert!(
        done.failure_reason
            .contains("policy denied: rule deny-high-risk: High-risk operations are not allowed"),
        "{}",
        done.failure_reason
    );
    assert_eq!(
        std::fs::read(s.root.join("precious.txt")).expect("file"),
        b"keep"
    );

    // Every problem of a bad spec at once.
    let bad = s.client.submit_workflow(alice(submit("name: bad\nsteps:\n  - {name: a, capability: NOPE}\n  - {name: a, capability: x.y, depends_on: [ghost]}\n", ""))).await.expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let fields: Vec<String> = airt_kit::status::violations_of(&bad)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.steps[1].name",
            "spec.steps[1].depends_on",
            "spec.steps[0].capability"
        ]
    );

    // A plan tells, without running anything.
    let plan = s
        .client
        .plan_workflow(alice(pb::PlanWorkflowRequest { source: Some(pb::plan_workflow_request::Source::SpecText("name: p\nsteps:\n  - {name: shred, capability: io.fs.delete, inputs: {path: precious.txt}}\n".into())) }))
        .await
        .expect("plan")
        .into_inner();
    assert!(!plan.admissible);
    assert_eq!(
        (plan.steps[0].risk_level, plan.steps[0].capability_found),
        (airt_proto::common::v1::RiskLevel::High as i32, true)
    );

    // A paused workflow cancelled with rollback undoes its completed step.
    let paused = s
        .client
        .submit_workflow(alice(submit("name: wait\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: draft.txt, content: x}}\n  - {name: ok, type: HUMAN_APPROVAL, depends_on: [write], approval: {message: go?}}\n", "")))
        .await
        .expect("submit")
        .into_inner();
    let id = paused.workflow.expect("workflow").workflow_id;
    let (_, waiting) = watch(&mut s.client, &id).await;
    assert_eq!(waiting.status, pb::WorkflowStatus::Paused as i32);
    assert!(s.root.join("draft.txt").exists());
    let cancelled = s
        .client
        .cancel_workflow(alice(pb::CancelWorkflowRequest {
            workflow_id: id.clone(),
            rollback: true,
            reason: "changed my mind".into(),
            request_id: String::new(),
        }))
        .await
        .expect("cancel")
        .into_inner()
        .workflow
        .expect("workflow");
    assert_eq!(cancelled.status, pb::WorkflowStatus::RolledBack as i32);
    assert!(
        cancelled
            .failure_reason
            .starts_with("cancelled: changed my mind"),
        "{}",
        cancelled.failure_reason
    );
    assert!(
        !s.root.join("draft.txt").exists(),
        "the completed step was undone"
    );
    let twice = s
        .client
        .cancel_workflow(alice(pb::CancelWorkflowRequest {
            workflow_id: id,
            ..Default::default()
        }))
        .await
        .expect_err("already over");
    assert_eq!(twice.code(), Code::FailedPrecondition);
    s.stack.stop().await;
}

/// Follows workflow `id` from `after_sequence` until it rests: the event
/// sequences received, in order, and the last status.
async fn sequences(
    client: &mut WorkflowServiceClient<Channel>,
    id: &str,
    after_sequence: i64,
) -> (Vec<i64>, pb::WorkflowStatus) {
    let mut stream = client
        .watch_workflow(alice(pb::WatchWorkflowRequest {
            workflow_id: id.into(),
            after_sequence,
        }))
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let item = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("an update")
            .expect("stream ok")
            .expect("open until the workflow rests");
        seen.extend(item.events.iter().map(|e| e.sequence));
        let status = item.workflow.expect("snapshot").status();
        if status != pb::WorkflowStatus::Running && status != pb::WorkflowStatus::Pending {
            return (seen, status);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_after_its_last_sequence_misses_and_repeats_nothing() {
    let mut s = stack(TestDb::sqlite()).await;
    let spec = "name: wait\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: w.txt, content: x}}\n  - {name: ok, type: HUMAN_APPROVAL, depends_on: [write], approval: {message: go?}}\n";
    let id = s
        .client
        .submit_workflow(alice(submit(spec, "")))
        .await
        .expect("submit")
        .into_inner()
        .workflow
        .expect("workflow")
        .workflow_id;
    // The first connection sees everything up to the pause, then drops.
    let (before, paused) = sequences(&mut s.client, &id, 0).await;
    assert_eq!(paused, pb::WorkflowStatus::Paused);
    let last = *before.last().expect("events before the pause");
    assert_eq!(before, (1..=last).collect::<Vec<_>>());

    // Meanwhile the workflow moves on (a rollback: several more events).
    s.client
        .cancel_workflow(alice(pb::CancelWorkflowRequest {
            workflow_id: id.clone(),
            rollback: true,
            reason: "resume test".into(),
            request_id: String::new(),
        }))
        .await
        .expect("cancel");
    let (after, status) = sequences(&mut s.client, &id, last).await;
    assert_eq!(status, pb::WorkflowStatus::RolledBack);
    let end = *after.last().expect("events after the pause");
    assert!(end > last + 1, "the rollback made events: {after:?}");
    assert_eq!(
        after,
        (last + 1..=end).collect::<Vec<_>>(),
        "exactly what was missed"
    );

    // Reconnecting at the end gets the snapshot at once and no event.
    let (none, status) = sequences(&mut s.client, &id, end).await;
    assert!(none.is_empty() && status == pb::WorkflowStatus::RolledBack);
    let negative = s
        .client
        .watch_workflow(alice(pb::WatchWorkflowRequest {
            workflow_id: id,
            after_sequence: -1,
        }))
        .await
        .expect_err("a negative sequence");
    assert_eq!(negative.code(), Code::InvalidArgument);
    // A page that holds the last workflow names no next page.
    let page = s
        .client
        .list_workflows(alice(pb::ListWorkflowsRequest {
            page_size: 1,
            ..Default::default()
        }))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(page.workflows.len(), 1);
    assert!(page.next_page_token.is_empty(), "{}", page.next_page_token);
    s.stack.stop().await;
}
