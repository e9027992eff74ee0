//! Human approvals through the gRPC API, on SQLite and PostgreSQL: the
//! approved step really executes (once), rejection and expiry roll back,
//! who may decide, a changed action voids its approval, deadlines and
//! approvals survive a restart, and webhooks are signed and retried; also
//! what watchers and a replica's limit of workflows driven at once observe.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use std::time::Duration;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::http::Recorder;
use airt_system_tests::{Stack, register_capability};
use hmac::Mac;
use tonic::Code;
use tonic::transport::Channel;

const POLICY: &str = r#"
default: DENY
escalate_high_risk: true
rules:
  - {id: allow-everything, when: {risk_level: [LOW, MEDIUM, HIGH, CRITICAL]}, decision: ALLOW, reason: tests}
"#;

const MAKE_DIR_APPROVE_WRITE: &str = r#"
name: approve_then_write
initial_state: {who: Acme}
steps:
  - {name: make, capability: io.fs.make_dir, inputs: {path: reports}}
  - name: review
    type: HUMAN_APPROVAL
    depends_on: [make]
    approval: {approver_roles: [approver], message: "Write the report for {{who}}?"}
  - {name: write, capability: io.fs.write_file, depends_on: [review], inputs: {path: reports/acme.txt, content: "report for {{who}}"}}
"#;

fn alice<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:alice", &["approver"])
}

fn bob<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:bob", &["approver"])
}

struct Clients {
    workflows: WorkflowServiceClient<Channel>,
    approvals: ApprovalServiceClient<Channel>,
}

async fn clients(stack: &Stack) -> Clients {
    let channel = stack.workflow.channel().await;
    Clients {
        workflows: WorkflowServiceClient::new(channel.clone()),
        approvals: ApprovalServiceClient::new(channel),
    }
}

impl Clients {
    async fn submit(&mut self, spec: &str) -> String {
        self.workflows
            .submit_workflow(alice(pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
                request_id: String::new(),
            }))
            .await
            .expect("submit")
            .into_inner()
            .workflow
            .expect("workflow")
            .workflow_id
    }

    /// Watches until the workflow is `status`; returns it and every event.
    async fn until(
        &mut self,
        id: &str,
        status: pb::WorkflowStatus,
    ) -> (pb::Workflow, Vec<pb::WorkflowEvent>) {
        let mut stream = self
            .workflows
            .watch_workflow(alice(pb::WatchWorkflowRequest {
                workflow_id: id.into(),
                after_sequence: 0,
            }))
            .await
            .expect("watch")
            .into_inner();
        let mut events = Vec::new();
        loop {
            let update = tokio::time::timeout(Duration::from_secs(30), stream.message())
                .await
                .unwrap_or_else(|_| panic!("{id} not {status:?} within 30 s"))
                .expect("ok")
                .unwrap_or_else(|| panic!("{id} ended before {status:?}: {events:?}"));
            events.extend(update.events);
            let workflow = update.workflow.expect("snapshot");
            if workflow.status == status as i32 {
                return (workflow, events);
            }
        }
    }

    async fn pending_approval(&mut self, workflow_id: &str) -> pb::Approval {
        let approvals = self.pending_approvals(workflow_id).await;
        assert_eq!(approvals.len(), 1, "{approvals:?}");
        approvals.into_iter().next().expect("one")
    }

    async fn pending_approvals(&mut self, workflow_id: &str) -> Vec<pb::Approval> {
        self.approvals
            .list_approvals(bob(pb::ListApprovalsRequest {
                status: pb::ApprovalStatus::Pending as i32,
                workflow_id: workflow_id.into(),
                ..Default::default()
            }))
            .await
            .expect("list")
            .into_inner()
            .approvals
    }

    async fn approve(
        &mut self,
        request: tonic::Request<pb::ApproveStepRequest>,
    ) -> Result<pb::Approval, tonic::Status> {
        self.approvals
            .approve_step(request)
            .await
            .map(|r| r.into_inner().approval.expect("approval"))
    }

    async fn reject(
        &mut self,
        request: tonic::Request<pb::RejectStepRequest>,
    ) -> Result<pb::Approval, tonic::Status> {
        self.approvals
            .reject_step(request)
            .await
            .map(|r| r.into_inner().approval.expect("approval"))
    }

    async fn get(&mut self, approval_id: &str) -> pb::Approval {
        self.approvals
            .get_approval(bob(pb::GetApprovalRequest {
                approval_id: approval_id.into(),
            }))
            .await
            .expect("get approval")
            .into_inner()
            .approval
            .expect("approval")
    }
}

fn approve(id: &str) -> pb::ApproveStepRequest {
    pb::ApproveStepRequest {
        approval_id: id.into(),
        comment: "looks right".into(),
        request_id: String::new(),
    }
}

fn reject(id: &str) -> pb::RejectStepRequest {
    pb::RejectStepRequest {
        approval_id: id.into(),
        comment: "not today".into(),
        request_id: String::new(),
    }
}

fn step<'a>(workflow: &'a pb::Workflow, name: &str) -> &'a pb::Step {
    workflow
        .steps
        .iter()
        .find(|s| s.name == name)
        .expect("step")
}

fn reason(status: &tonic::Status) -> String {
    tonic_types::StatusExt::get_details_error_info(status)
        .map(|info| info.reason)
        .unwrap_or_default()
}

async fn register(stack: &Stack, spec: String) {
    register_capability(
        stack.registry.as_ref().expect("registry").channel().await,
        spec,
    )
    .await;
}

/// A remote capability on the recorder at `path`.
fn remote_capability(
    id: &str,
    version: &str,
    risk: &str,
    recorder: &Recorder,
    path: &str,
) -> String {
    format!(
        "id: {id}\nname: {id}\noperation_type: WRITE\nrisk: {{level: {risk}}}\nside_effects: {{reversible: true, scope: NETWORK}}\n\
         compensation: {{supported: false, strategy: NONE}}\nparameters: [{{name: service, type: string, required: true}}]\n\
         metadata: {{version: {version}}}\nhandler: \"http:{}\"\n",
        recorder.url(path)
    )
}

fn with_loopback(config: &mut workflow_service::WorkflowConfig) {
    config.catalogue.network =
        workflow_service::capabilities::net::NetworkPolicy::parse(&["127.0.0.1".to_owned()])
            .expect("allow loopback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_step_runs_and_a_rejected_one_rolls_back() {
    for db in TestDb::all().await {
        let stack = Stack::start(db, POLICY).await;
        let mut c = clients(&stack).await;

        // Approve: PAUSED with the directory made and the file absent.
        let id = c.submit(MAKE_DIR_APPROVE_WRITE).await;
        let (paused, _) = c.until(&id, pb::WorkflowStatus::Paused).await;
        assert!(stack.root().join("reports").is_dir());
        assert!(!stack.root().join("reports/acme.txt").exists());
        let review = step(&paused, "review");
        assert_eq!(review.status, pb::StepStatus::AwaitingApproval as i32);
        let approval = c.pending_approval(&id).await;
        assert_eq!(approval.approval_id, review.approval_id);
        assert_eq!(approval.message, "Write the report for Acme?");
        assert_eq!(approval.approver_roles, ["approver"]);
        assert_eq!(approval.action_digest.len(), 64);
        assert_eq!(
            approval.requested_for.as_ref().map(|p| p.id.as_str()),
            Some("alice")
        );
        // An approver may follow the workflow they are asked about.
        c.workflows
            .get_workflow(bob(pb::GetWorkflowRequest {
                workflow_id: id.clone(),
            }))
            .await
            .expect("an approver sees the workflow");

        let decided = c
            .approve(bob(approve(&approval.approval_id)))
            .await
            .expect("approve");
        assert_eq!(decided.status, pb::ApprovalStatus::Approved as i32);
        assert_eq!(
            decided.decided_by.as_ref().map(|p| p.id.as_str()),
            Some("bob")
        );
        let (done, events) = c.until(&id, pb::WorkflowStatus::Completed).await;
        assert_eq!(
            std::fs::read_to_string(stack.root().join("reports/acme.txt")).expect("file"),
            "report for Acme"
        );
        assert_eq!(
            step(&done, "review").status,
            pb::StepStatus::Succeeded as i32
        );
        assert_eq!(
            step(&done, "write").status,
            pb::StepStatus::Succeeded as i32
        );
        let statuses: Vec<String> = events
            .iter()
            .filter(|e| e.kind == "workflow.status")
            .filter_map(|e| e.detail.as_ref())
            .filter_map(|d| {
                airt_kit::json::from_proto_struct(d)
                    .get("status")?
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(statuses, ["RUNNING", "PAUSED", "RUNNING", "COMPLETED"]);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"approval.requested") && kinds.contains(&"approval.decided"));

        // Reject: the step is REJECTED and the directory is removed again.
        std::fs::remove_dir_all(stack.root().join("reports")).expect("clean");
        let id = c.submit(MAKE_DIR_APPROVE_WRITE).await;
        c.until(&id, pb::WorkflowStatus::Paused).await;
        let approval = c.pending_approval(&id).await;
        let decided = c
            .reject(bob(reject(&approval.approval_id)))
            .await
            .expect("reject");
        assert_eq!(decided.status, pb::ApprovalStatus::Rejected as i32);
        let (rolled_back, _) = c.until(&id, pb::WorkflowStatus::RolledBack).await;
        assert!(
            !stack.root().join("reports").exists(),
            "the directory is gone"
        );
        let review = step(&rolled_back, "review");
        assert_eq!(review.status, pb::StepStatus::Rejected as i32);
        assert!(
            review.error.contains("rejected by user:bob: not today"),
            "{}",
            review.error
        );
        assert_eq!(
            step(&rolled_back, "write").status,
            pb::StepStatus::Skipped as i32
        );
        assert_eq!(rolled_back.failed_step, "review");
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_hears_of_this_replicas_changes_without_polling() {
    // Polling (for other replicas' changes) is effectively off here.
    let stack = Stack::start_with(TestDb::sqlite(), POLICY, |config| {
        config.watch_poll = Duration::from_secs(3600);
    })
    .await;
    let mut c = clients(&stack).await;
    let id = c.submit(MAKE_DIR_APPROVE_WRITE).await;
    let (_, _) = c.until(&id, pb::WorkflowStatus::Paused).await;
    let mut stream = c
        .workflows
        .watch_workflow(alice(pb::WatchWorkflowRequest {
            workflow_id: id.clone(),
            after_sequence: 0,
        }))
        .await
        .expect("watch")
        .into_inner();
    let first = stream
        .message()
        .await
        .expect("ok")
        .expect("snapshot")
        .workflow
        .expect("workflow");
    assert_eq!(first.status, pb::WorkflowStatus::Paused as i32);
    let approval = c.pending_approval(&id).await;
    c.approve(bob(approve(&approval.approval_id)))
        .await
        .expect("approve");
    // Every change after the approval reaches the open stream.
    loop {
        let update = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .expect("woken by the commit, not by a poll an hour away")
            .expect("ok")
            .expect("open until terminal");
        if update.workflow.expect("snapshot").status == pb::WorkflowStatus::Completed as i32 {
            break;
        }
    }
    assert!(stack.root().join("reports/acme.txt").exists());
    stack.stop().await;
}

/// When `event` happened, in µs since the epoch.
fn micros(event: &pb::WorkflowEvent) -> i64 {
    let at = event.occur_time.as_ref().expect("time");
    at.seconds * 1_000_000 + i64::from(at.nanos / 1000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_drives_at_most_its_limit_of_workflows_at_once() {
    let recorder = Recorder::start().await;
    recorder.delay("/slow", Duration::from_millis(200));
    let stack = Stack::start_with(TestDb::sqlite(), POLICY, |config| {
        with_loopback(config);
        config.max_active_workflows = 1;
    })
    .await;
    register(
        &stack,
        remote_capability("ops.slow", "1.0.0", "MEDIUM", &recorder, "/slow"),
    )
    .await;
    let mut c = clients(&stack).await;
    let spec =
        "name: slow\nsteps:\n  - {name: call, capability: ops.slow, inputs: {service: api}}\n";
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(c.submit(spec).await);
    }
    // Each run, from its first write after submission to its last.
    let mut runs = Vec::new();
    for id in &ids {
        let (_, events) = c.until(id, pb::WorkflowStatus::Completed).await;
        let driven: Vec<i64> = events
            .iter()
            .filter(|e| e.kind != "workflow.submitted")
            .map(micros)
            .collect();
        runs.push((driven[0], driven[driven.len() - 1]));
    }
    assert_eq!(recorder.requests("/slow").len(), 3);
    runs.sort_unstable();
    for pair in runs.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "with a limit of one, runs do not overlap: {runs:?}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalated_step_runs_exactly_once_after_approval_and_decisions_are_guarded() {
    for db in TestDb::all().await {
        let recorder = Recorder::start().await;
        let stack = Stack::start_with(db, POLICY, with_loopback).await;
        register(
            &stack,
            remote_capability("ops.restart", "1.0.0", "HIGH", &recorder, "/restart"),
        )
        .await;
        let mut c = clients(&stack).await;
        let id = c
            .submit("name: restart\nsteps:\n  - {name: restart, capability: ops.restart, inputs: {service: billing}}\n")
            .await;
        let (paused, _) = c.until(&id, pb::WorkflowStatus::Paused).await;
        let decision = step(&paused, "restart").decision.clone().expect("decision");
        assert_eq!(
            decision.decision,
            airt_proto::policy::v1::Decision::RequireApproval as i32
        );
        assert!(
            decision.escalated,
            "ALLOW escalated because the risk is HIGH"
        );
        assert!(
            recorder.requests("/restart").is_empty(),
            "not executed before approval"
        );
        let approval = c.pending_approval(&id).await;
        assert_eq!(
            approval.risk_level,
            airt_proto::common::v1::RiskLevel::High as i32
        );
        assert_eq!(approval.capability_version, "1.0.0");

        // Who may decide.
        let outsider = c
            .approve(as_principal(
                approve(&approval.approval_id),
                "user:mallory",
                &["viewer"],
            ))
            .await
            .expect_err("no approver role");
        assert_eq!(outsider.code(), Code::PermissionDenied);
        assert_eq!(reason(&outsider), "NOT_AN_APPROVER");
        let own = c
            .approve(alice(approve(&approval.approval_id)))
            .await
            .expect_err("self-approval");
        assert_eq!(own.code(), Code::PermissionDenied);
        assert_eq!(reason(&own), "SELF_APPROVAL");
        let unknown = c
            .approve(bob(approve("0190f3b0-0000-7000-8000-000000000000")))
            .await
            .expect_err("unknown");
        assert_eq!(unknown.code(), Code::NotFound);
        assert_eq!(recorder.requests("/restart").len(), 0);

        let first = c
            .approve(bob(approve(&approval.approval_id)))
            .await
            .expect("approve");
        let (done, _) = c.until(&id, pb::WorkflowStatus::Completed).await;
        let calls = recorder.requests("/restart");
        assert_eq!(calls.len(), 1, "the handler ran exactly once");
        assert!(calls[0].body.contains("billing"), "{}", calls[0].body);
        let outputs = step(&done, "restart")
            .outputs
            .as_ref()
            .map(airt_kit::json::from_proto_value)
            .expect("outputs");
        assert_eq!(outputs["calls"], 1, "its effect is the step's output");

        // The same decision again: same answer, no second effect.
        let again = c
            .approve(as_principal(
                approve(&approval.approval_id),
                "user:carol",
                &["approver"],
            ))
            .await
            .expect("idempotent");
        // The first answer (built from the decision as written) is the
        // stored approval, field for field.
        assert_eq!(again, first);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(recorder.requests("/restart").len(), 1, "still once");
        // A conflicting decision is refused.
        let conflict = c
            .reject(bob(reject(&approval.approval_id)))
            .await
            .expect_err("conflict");
        assert_eq!(conflict.code(), Code::FailedPrecondition);
        assert_eq!(reason(&conflict), "APPROVAL_ALREADY_DECIDED");
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_risk_after_the_request_voids_the_approval() {
    for db in TestDb::all().await {
        let recorder = Recorder::start().await;
        let stack = Stack::start_with(db, POLICY, with_loopback).await;
        register(
            &stack,
            remote_capability("ops.scale", "1.0.0", "MEDIUM", &recorder, "/scale").replace(
                "risk: {level: MEDIUM}",
                "risk: {level: MEDIUM, requires_approval: true}",
            ),
        )
        .await;
        let mut c = clients(&stack).await;
        let id = c
            .submit("name: scale\nsteps:\n  - {name: scale, capability: ops.scale, inputs: {service: web}}\n")
            .await;
        c.until(&id, pb::WorkflowStatus::Paused).await;
        let first = c.pending_approval(&id).await;
        assert_eq!(
            first.risk_level,
            airt_proto::common::v1::RiskLevel::Medium as i32
        );

        // A new version with a higher risk, seen by the workflow service.
        register(
            &stack,
            remote_capability("ops.scale", "1.1.0", "HIGH", &recorder, "/scale"),
        )
        .await;
        let plan_spec =
            "name: p\nsteps:\n  - {name: scale, capability: ops.scale, inputs: {service: web}}\n";
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let plan = c
                .workflows
                .plan_workflow(alice(pb::PlanWorkflowRequest {
                    source: Some(pb::plan_workflow_request::Source::SpecText(
                        plan_spec.into(),
                    )),
                }))
                .await
                .expect("plan")
                .into_inner();
            if plan.steps[0].capability_version == "1.1.0" {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "new version not seen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        c.approve(bob(approve(&first.approval_id)))
            .await
            .expect("approve");
        // The resumed step finds another action: the approval is void and a
        // new request waits for a decision (its own commit, just after the
        // void); nothing ran.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let second = loop {
            let old = c.get(&first.approval_id).await;
            if old.status == pb::ApprovalStatus::Void as i32 {
                let pending = c.pending_approvals(&id).await;
                if let Some(second) = pending.into_iter().next() {
                    break second;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not voided, or no new request: {old:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_ne!(second.approval_id, first.approval_id);
        assert_ne!(second.action_digest, first.action_digest);
        assert_eq!(
            second.risk_level,
            airt_proto::common::v1::RiskLevel::High as i32
        );
        assert_eq!(second.capability_version, "1.1.0");
        assert!(
            c.get(&first.approval_id)
                .await
                .status_reason
                .contains("risk MEDIUM -> HIGH")
        );
        assert!(recorder.requests("/scale").is_empty());
        let (paused, _) = c.until(&id, pb::WorkflowStatus::Paused).await;
        assert_eq!(step(&paused, "scale").approval_id, second.approval_id);

        c.approve(bob(approve(&second.approval_id)))
            .await
            .expect("approve again");
        c.until(&id, pb::WorkflowStatus::Completed).await;
        assert_eq!(recorder.requests("/scale").len(), 1);
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_deadlines_survive_a_restart() {
    for db in TestDb::all().await {
        let stack = Stack::start(db, POLICY).await;
        let mut c = clients(&stack).await;
        // One workflow to approve after the restart, one that expires while
        // the service is down.
        let waiting = c.submit(MAKE_DIR_APPROVE_WRITE).await;
        c.until(&waiting, pb::WorkflowStatus::Paused).await;
        let expiring_spec = MAKE_DIR_APPROVE_WRITE
            .replace("path: reports}", "path: expiring}")
            .replace("message:", "timeout: 1s, message:");
        let expiring = c.submit(&expiring_spec).await;
        c.until(&expiring, pb::WorkflowStatus::Paused).await;
        assert!(stack.root().join("expiring").is_dir());
        let expiring_approval = c.pending_approval(&expiring).await;
        // The inbox pages oldest first; the last page names no next one.
        let mut seen = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            pages += 1;
            let page = c
                .approvals
                .list_approvals(bob(pb::ListApprovalsRequest {
                    status: pb::ApprovalStatus::Pending as i32,
                    page_size: 1,
                    page_token,
                    ..Default::default()
                }))
                .await
                .expect("page")
                .into_inner();
            assert!(page.approvals.len() <= 1);
            seen.extend(page.approvals.into_iter().map(|a| a.workflow_id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        assert_eq!(seen, [waiting.clone(), expiring.clone()]);
        assert_eq!(
            pages, 2,
            "two approvals in pages of one: no empty third page"
        );
        let whole = c
            .approvals
            .list_approvals(bob(pb::ListApprovalsRequest {
                status: pb::ApprovalStatus::Pending as i32,
                page_size: 2,
                ..Default::default()
            }))
            .await
            .expect("one full page")
            .into_inner();
        assert_eq!(whole.approvals.len(), 2);
        assert!(
            whole.next_page_token.is_empty(),
            "nothing follows a page that holds the rest"
        );
        // Someone who may not decide sees nothing.
        let hidden = c
            .approvals
            .list_approvals(as_principal(
                pb::ListApprovalsRequest::default(),
                "user:mallory",
                &[],
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(hidden.approvals.is_empty());

        let stack = stack.restart_workflow(Duration::from_millis(1500)).await;
        let mut c = clients(&stack).await;

        // The deadline passed while the service was down: it fires now.
        let refused = c
            .approve(bob(approve(&expiring_approval.approval_id)))
            .await
            .expect_err("expired");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(reason(&refused), "APPROVAL_EXPIRED");
        let (rolled_back, _) = c.until(&expiring, pb::WorkflowStatus::RolledBack).await;
        let review = step(&rolled_back, "review");
        assert_eq!(review.status, pb::StepStatus::Expired as i32);
        assert!(review.error.contains("expired"), "{}", review.error);
        assert!(!stack.root().join("expiring").exists(), "rolled back");
        assert_eq!(
            c.get(&expiring_approval.approval_id).await.status,
            pb::ApprovalStatus::Expired as i32
        );

        // The other one is still in the inbox; approving it completes it.
        let approval = c.pending_approval(&waiting).await;
        c.approve(bob(approve(&approval.approval_id)))
            .await
            .expect("approve");
        c.until(&waiting, pb::WorkflowStatus::Completed).await;
        assert!(stack.root().join("reports/acme.txt").is_file());
        stack.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_visible() {
    for db in TestDb::all().await {
        let hooks = Recorder::start().await;
        hooks.fail_next("/hooks", 2);
        let url = hooks.url("/hooks");
        let stack = Stack::start_with(db, POLICY, |config| {
            config.webhooks = workflow_service::webhooks::WebhookConfig {
                urls: vec![url],
                secret: Some(airt_kit::config::Secret::new("s3cret")),
                initial_backoff: Duration::from_millis(100),
                ..Default::default()
            };
        })
        .await;
        let mut c = clients(&stack).await;
        let id = c.submit(MAKE_DIR_APPROVE_WRITE).await;
        c.until(&id, pb::WorkflowStatus::Paused).await;
        let approval = c.pending_approval(&id).await;

        // Two 500s, then delivered on the third attempt.
        let delivered = hooks.wait_for("/hooks", 3, Duration::from_secs(15)).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let delivery = loop {
            let approval = c.get(&approval.approval_id).await;
            let requested = approval
                .deliveries
                .iter()
                .find(|d| d.event == "approval.requested")
                .cloned()
                .expect("a delivery");
            if requested.status == pb::DeliveryStatus::Delivered as i32 {
                break requested;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not delivered: {requested:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(delivery.attempts, 3);
        assert!(delivery.last_error.is_empty());
        assert_eq!(delivery.url, format!("http://127.0.0.1:{}/…", hooks.port()));
        let failed = &hooks.requests("/hooks")[0];
        assert_eq!(failed.body, delivered.body, "a retry sends the same body");

        // Standard Webhooks: HMAC over "<id>.<timestamp>.<body>", base64.
        let webhook_id = &delivered.headers["webhook-id"];
        let timestamp: i64 = delivered.headers["webhook-timestamp"]
            .parse()
            .expect("seconds");
        let now = airt_kit::clock::now_micros() / 1_000_000;
        assert!((now - timestamp).abs() < 60, "signed at delivery time");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("key");
        mac.update(format!("{webhook_id}.{timestamp}.{}", delivered.body).as_bytes());
        use base64::Engine as _;
        let expected = format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(delivered.headers.get("webhook-signature"), Some(&expected));
        assert_eq!(
            delivered.headers.get("x-airt-event").map(String::as_str),
            Some("approval.requested")
        );
        let body: serde_json::Value = serde_json::from_str(&delivered.body).expect("json");
        assert_eq!(body["event"], "approval.requested");
        assert_eq!(body["approval_id"], approval.approval_id.as_str());
        assert_eq!(body["workflow_name"], "approve_then_write");
        assert_eq!(body["step_name"], "review");
        assert_eq!(
            body["how_to_decide"]["approve_rpc"],
            "airt.workflow.v1.ApprovalService/ApproveStep"
        );

        // The decision and the end of the workflow are announced too.
        c.approve(bob(approve(&approval.approval_id)))
            .await
            .expect("approve");
        c.until(&id, pb::WorkflowStatus::Completed).await;
        hooks.wait_for("/hooks", 5, Duration::from_secs(15)).await;
        let events: Vec<String> = hooks
            .requests("/hooks")
            .iter()
            .map(|r| {
                serde_json::from_str::<serde_json::Value>(&r.body).expect("json")["event"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect();
        assert!(
            events.contains(&"approval.decided".to_owned()),
            "{events:?}"
        );
        assert!(
            events.contains(&"workflow.finished".to_owned()),
            "{events:?}"
        );

        // The request, the decision and every delivery attempt are audited,
        // and the chain verifies.
        let mut audit = airt_proto::audit::v1::audit_service_client::AuditServiceClient::new(
            stack.workflow.channel().await,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let trail = loop {
            let trail = audit
                .list_audit_events(as_principal(
                    airt_proto::audit::v1::ListAuditEventsRequest {
                        resource_id: id.clone(),
                        page_size: 1000,
                        ..Default::default()
                    },
                    "user:root",
                    &["auditor"],
                ))
                .await
                .expect("audit")
                .into_inner()
                .events;
            // The last delivery is recorded just after its request arrives.
            if trail
                .iter()
                .filter(|e| e.action == "webhook.delivered")
                .count()
                >= 3
            {
                break trail;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries not audited"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let count = |action: &str| trail.iter().filter(|e| e.action == action).count();
        assert_eq!(count("approval.requested"), 1);
        assert_eq!(count("webhook.attempt_failed"), 2);
        assert_eq!(
            count("webhook.delivered"),
            3,
            "requested, decided, finished"
        );
        let decided = trail
            .iter()
            .find(|e| e.action == "approval.decided")
            .expect("decision audited");
        assert_eq!(decided.actor, "user:bob");
        let report = audit
            .verify_audit_chain(as_principal(
                airt_proto::audit::v1::VerifyAuditChainRequest {},
                "user:root",
                &["auditor"],
            ))
            .await
            .expect("verify")
            .into_inner();
        assert!(report.intact, "{report:?}");
        stack.stop().await;
    }
}
