//! Remote capabilities, tried as an attacker would. A rollback never claims
//! more than happened: a remote effect is undone by the capability its spec
//! names (or the workflow ends COMPENSATION_FAILED naming the step), a
//! passed human approval needs no undo, and a FROZEN capability is not run
//! as a compensation. Secret-named inputs are masked on every read path.

use std::time::Duration;

use airt_kit::testing::http::Recorder;
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, register_capability, run_workflow};
use workflow_service::capabilities::net::NetworkPolicy;

const ALLOW_ALL: &str = "escalate_high_risk: false\nrules:\n  - {id: allow-all, decision: ALLOW}\n";

fn remote(id: &str, operation: &str, risk: &str, tail: &str, url: String) -> String {
    format!(
        "id: {id}\nname: {id}\noperation_type: {operation}\nrisk: {{level: {risk}}}\n{tail}\n\
         metadata: {{version: 1.0.0}}\nhandler: \"http:{url}\"\n"
    )
}

async fn stack(recorder: &Recorder) -> Stack {
    let stack = Stack::start_with(TestDb::sqlite(), ALLOW_ALL, |config| {
        config.catalogue.network = NetworkPolicy::parse(&["127.0.0.1".to_owned()]).expect("allow");
    })
    .await;
    let channel = stack.registry.as_ref().expect("registry").channel().await;
    let create = remote(
        "crm.create_account",
        "WRITE",
        "MEDIUM",
        "side_effects: {reversible: true, scope: EXTERNAL}\n\
         compensation: {supported: true, strategy: AUTOMATIC, capability_id: crm.delete_account}\n\
         parameters: [{name: customer_name, type: string, required: true}]",
        recorder.url("/create"),
    );
    let delete = remote(
        "crm.delete_account",
        "DELETE",
        "CRITICAL",
        "side_effects: {reversible: false, scope: EXTERNAL}\ncompensation: {supported: false, strategy: NONE}\n\
         parameters: [{name: customer_name, type: string, required: true}, {name: calls, type: integer}]",
        recorder.url("/delete"),
    );
    let manual = remote(
        "crm.tag_account",
        "WRITE",
        "MEDIUM",
        "side_effects: {reversible: true, scope: EXTERNAL}\ncompensation: {supported: true, strategy: MANUAL}",
        recorder.url("/tag"),
    );
    let fail = remote(
        "crm.fail",
        "WRITE",
        "MEDIUM",
        "side_effects: {reversible: true, scope: EXTERNAL}\ncompensation: {supported: true, strategy: MANUAL}",
        recorder.url("/fail"),
    );
    for spec in [create, delete, manual, fail] {
        register_capability(channel.clone(), spec).await;
    }
    recorder.always_answer("/fail", 400);
    stack
}

fn status(workflow: &pb::Workflow) -> pb::WorkflowStatus {
    pb::WorkflowStatus::try_from(workflow.status).expect("status")
}

const CREATE_THEN_FAIL: &str = "name: onboard\nsteps:\n\
  - {name: create, capability: crm.create_account, inputs: {customer_name: ACME}}\n\
  - {name: fail, capability: crm.fail, depends_on: [create]}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_effect_is_undone_by_its_named_capability() {
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let workflow = run_workflow(&mut client, "user:alice", CREATE_THEN_FAIL).await;
    assert_eq!(
        status(&workflow),
        pb::WorkflowStatus::RolledBack,
        "{workflow:?}"
    );
    let undo = recorder
        .wait_for("/delete", 1, Duration::from_secs(5))
        .await;
    let call: serde_json::Value = serde_json::from_str(&undo.body).expect("json");
    assert_eq!(
        call["inputs"],
        serde_json::json!({"customer_name": "ACME", "calls": 1}),
        "the undo gets the step's outputs, else its inputs, by parameter name"
    );
    let original_key = recorder.requests("/create")[0].headers["idempotency-key"].clone();
    assert_ne!(undo.headers["idempotency-key"], original_key);

    // FROZEN, the undo capability is not run: the effect stands, and the
    // workflow says so.
    let mut registry =
        RegistryServiceClient::new(stack.registry.as_ref().expect("registry").channel().await);
    registry
        .set_capability_lifecycle(as_principal(
            registry::SetCapabilityLifecycleRequest {
                capability_id: "crm.delete_account".into(),
                lifecycle: registry::CapabilityLifecycle::Frozen as i32,
                reason: "CRM migration".into(),
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("freeze");
    let frozen = run_workflow(&mut client, "user:alice", CREATE_THEN_FAIL).await;
    assert_eq!(
        status(&frozen),
        pb::WorkflowStatus::CompensationFailed,
        "{frozen:?}"
    );
    assert_eq!(frozen.failed_step, "create");
    assert!(
        frozen.failure_reason.contains("FROZEN"),
        "{}",
        frozen.failure_reason
    );
    assert_eq!(recorder.requests("/delete").len(), 1, "the frozen undo ran");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_effect_nothing_can_undo_is_compensation_failed_not_rolled_back() {
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let spec = "name: tag\nsteps:\n\
      - {name: tag, capability: crm.tag_account}\n\
      - {name: fail, capability: crm.fail, depends_on: [tag]}\n";
    let workflow = run_workflow(&mut client, "user:alice", spec).await;
    assert_eq!(
        status(&workflow),
        pb::WorkflowStatus::CompensationFailed,
        "{workflow:?}"
    );
    assert_eq!(workflow.failed_step, "tag");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_human_approval_needs_no_undo() {
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let channel = stack.workflow.channel().await;
    let mut client = WorkflowServiceClient::new(channel.clone());
    let spec = "name: gated\nsteps:\n\
      - {name: create, capability: crm.create_account, inputs: {customer_name: ACME}}\n\
      - {name: ok, type: HUMAN_APPROVAL, depends_on: [create], approval: {approver_roles: [approver]}}\n\
      - {name: fail, capability: crm.fail, depends_on: [ok]}\n";
    let paused = run_workflow(&mut client, "user:alice", spec).await;
    assert_eq!(status(&paused), pb::WorkflowStatus::Paused, "{paused:?}");
    let approval_id = paused
        .steps
        .iter()
        .find(|s| s.name == "ok")
        .expect("step")
        .approval_id
        .clone();
    ApprovalServiceClient::new(channel)
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id,
                comment: "go".into(),
                request_id: String::new(),
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("approve");
    let mut rested = paused;
    for _ in 0..300 {
        rested = client
            .get_workflow(as_principal(
                pb::GetWorkflowRequest {
                    workflow_id: rested.workflow_id.clone(),
                },
                "user:alice",
                &[],
            ))
            .await
            .expect("get")
            .into_inner()
            .workflow
            .expect("workflow");
        if status(&rested) == pb::WorkflowStatus::RolledBack
            || status(&rested) == pb::WorkflowStatus::CompensationFailed
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        status(&rested),
        pb::WorkflowStatus::RolledBack,
        "{rested:?}"
    );
    assert_eq!(recorder.requests("/delete").len(), 1);
    stack.stop().await;
}

/// Secret-named inputs are masked on every read path — the workflow, its
/// watch stream, the approval inbox — while the handler still gets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_on_every_read_path() {
    let recorder = Recorder::start().await;
    let stack = Stack::start_with(
        TestDb::sqlite(),
        "escalate_high_risk: false\nrules:\n  - {id: ask, when: {capability: crm.login}, decision: REQUIRE_APPROVAL}\n  - {id: allow-all, decision: ALLOW}\n",
        |config| {
            config.catalogue.network =
                NetworkPolicy::parse(&["127.0.0.1".to_owned()]).expect("allow");
        },
    )
    .await;
    let channel = stack.registry.as_ref().expect("registry").channel().await;
    register_capability(
        channel,
        remote(
            "crm.login",
            "READ",
            "LOW",
            "side_effects: {reversible: true, scope: EXTERNAL}\ncompensation: {supported: false, strategy: NONE}\n\
             parameters: [{name: api_token, type: string, required: true}]",
            recorder.url("/login"),
        ),
    )
    .await;
    let workflow_channel = stack.workflow.channel().await;
    let mut client = WorkflowServiceClient::new(workflow_channel.clone());
    let spec = "name: login\ninitial_state: {password: s3cr3t-value}\nsteps:\n  - {name: login, capability: crm.login, inputs: {api_token: \"{{password}}\"}}\n";
    let paused = run_workflow(&mut client, "user:alice", spec).await;
    assert_eq!(status(&paused), pb::WorkflowStatus::Paused, "{paused:?}");
    let mut approvals = ApprovalServiceClient::new(workflow_channel);
    let inbox = approvals
        .list_approvals(as_principal(
            pb::ListApprovalsRequest {
                workflow_id: paused.workflow_id.clone(),
                ..Default::default()
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("inbox")
        .into_inner();
    let approval_id = inbox.approvals[0].approval_id.clone();
    let shown = approvals
        .get_approval(as_principal(
            pb::GetApprovalRequest {
                approval_id: approval_id.clone(),
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("approval")
        .into_inner();
    let fetched = client
        .get_workflow(as_principal(
            pb::GetWorkflowRequest {
                workflow_id: paused.workflow_id.clone(),
            },
            "user:alice",
            &[],
        ))
        .await
        .expect("get")
        .into_inner();
    for (what, text) in [
        ("watch", format!("{paused:?}")),
        ("inbox", format!("{inbox:?}")),
        ("approval", format!("{shown:?}")),
        ("workflow", format!("{fetched:?}")),
    ] {
        assert!(
            !text.contains("s3cr3t-value"),
            "{what} shows the secret: {text}"
        );
        assert!(text.contains("***"), "{what} shows no mask");
    }
    approvals
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id,
                comment: String::new(),
                request_id: String::new(),
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("approve");
    let call = recorder
        .wait_for("/login", 1, Duration::from_secs(10))
        .await;
    assert!(
        call.body.contains("s3cr3t-value"),
        "the handler gets the real value"
    );
    stack.stop().await;
}

/// A remote endpoint that streams an endless answer is cut off at the cap
/// as the bytes arrive; the service never waits to buffer all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_remote_answer_is_cut_off_at_the_cap() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 65536];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                // 5 MiB, then nothing: the answer never ends on its own.
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..80 {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
            });
        }
    });
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let channel = stack.registry.as_ref().expect("registry").channel().await;
    register_capability(
        channel,
        remote(
            "agent.flood",
            "READ",
            "LOW",
            "side_effects: {reversible: true, scope: NETWORK}\ncompensation: {supported: false, strategy: NONE}",
            format!("http://127.0.0.1:{port}/flood"),
        ),
    )
    .await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let workflow = run_workflow(
        &mut client,
        "user:alice",
        "name: flood\nsteps:\n  - {name: f, capability: agent.flood, timeout: 20s}\n",
    )
    .await;
    assert_eq!(
        status(&workflow),
        pb::WorkflowStatus::Failed,
        "{workflow:?}"
    );
    assert!(
        workflow.failure_reason.contains("larger than"),
        "{}",
        workflow.failure_reason
    );
    stack.stop().await;
}
