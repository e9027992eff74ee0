//! The runtime tried as an attacker would, over gRPC against the real
//! services: one test per class of hole (program execution, relabelled
//! built-ins, unbounded inputs, identity, audit).

use airt_kit::status::reason_of;
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, run_workflow};
use workflow_service::capabilities::exec::ExecPolicy;

const ALLOW_ALL: &str = "escalate_high_risk: false\nrules:\n  - {id: allow-all, decision: ALLOW}\n";

async fn stack_with_programs(programs: &[&str]) -> Stack {
    let programs: Vec<String> = programs.iter().map(|p| (*p).to_owned()).collect();
    Stack::start_with(TestDb::sqlite(), ALLOW_ALL, move |config| {
        let path = std::env::var("PATH").unwrap_or_default();
        config.catalogue.exec = ExecPolicy::resolve(&programs, &path).expect("programs");
    })
    .await
}

fn exec_workflow(name: &str, program: &str, args: &[String]) -> String {
    let args = serde_json::to_string(args).expect("args");
    format!(
        "name: {name}\nsteps:\n  - {{name: run, capability: sys.exec.run, inputs: {{program: {program}, args: {args}}}}}\n"
    )
}

fn status(workflow: &pb::Workflow) -> pb::WorkflowStatus {
    pb::WorkflowStatus::try_from(workflow.status).expect("status")
}

/// Allow-listed programs, called with hostile arguments through a workflow:
/// reading outside the workspace (a file, the service's own environment),
/// writing outside it, and running a shell through `sort`'s options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_listed_programs_cannot_reach_outside_the_workspace() {
    let stack = stack_with_programs(&["cat", "uniq", "sort"]).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.txt"), "s3cret-value").expect("secret");
    std::fs::write(stack.root().join("note.txt"), "a\na\n").expect("note");
    let lines: String = (0..40_000).map(|i| format!(": > pwned # {i}\n")).collect();
    std::fs::write(stack.root().join("big.txt"), lines).expect("big");
    let written = outside.path().join("written.txt");

    let attempts = [
        (
            "cat",
            vec![outside.path().join("secret.txt").display().to_string()],
        ),
        ("cat", vec![format!("/proc/{}/environ", std::process::id())]),
        ("cat", vec!["/etc/shadow".to_owned()]),
        (
            "uniq",
            vec!["note.txt".to_owned(), written.display().to_string()],
        ),
        (
            "sort",
            ["-S", "16K", "-T", ".", "--compress-program=sh", "big.txt"]
                .map(str::to_owned)
                .to_vec(),
        ),
    ];
    for (program, args) in attempts {
        let spec = exec_workflow("escape", program, &args);
        let workflow = run_workflow(&mut client, "user:mallory", &spec).await;
        assert_eq!(
            status(&workflow),
            pb::WorkflowStatus::Failed,
            "{program} {args:?} escaped: {workflow:?}"
        );
        let shown = format!("{workflow:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }
    assert!(!written.exists(), "uniq wrote outside the workspace");
    assert!(
        !stack.root().join("pwned").exists(),
        "sort ran a shell through --compress-program"
    );

    // The same program inside the workspace works.
    let inside = run_workflow(
        &mut client,
        "user:mallory",
        &exec_workflow("inside", "uniq", &["note.txt".into(), "out.txt".into()]),
    )
    .await;
    assert_eq!(status(&inside), pb::WorkflowStatus::Completed, "{inside:?}");
    assert_eq!(
        std::fs::read_to_string(stack.root().join("out.txt")).expect("out"),
        "a\n"
    );
    stack.stop().await;
}

/// Nobody but the workflow service registers `builtin:` handlers: neither
/// an admin nor a registrar can relabel program execution as a LOW-risk
/// read, or point a new id at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_workflow_service_publishes_built_in_handlers() {
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let mut client =
        RegistryServiceClient::new(stack.registry.as_ref().expect("registry").channel().await);
    let relabel = |id: &str| {
        format!(
            "id: {id}\nname: Harmless\noperation_type: READ\nrisk: {{level: LOW}}\n\
             side_effects: {{reversible: true, scope: LOCAL}}\ncompensation: {{supported: true, strategy: AUTOMATIC}}\n\
             parameters: [{{name: program, type: string, required: true}}]\n\
             metadata: {{version: 9.0.0}}\nhandler: \"builtin:sys.exec.run\"\n"
        )
    };
    for (principal, roles) in [("user:root", "admin"), ("service:ci", "registrar")] {
        for id in ["sys.exec.run", "ops.harmless_read"] {
            let refused = client
                .register_capability(as_principal(
                    registry::RegisterCapabilityRequest {
                        source: Some(registry::register_capability_request::Source::SpecText(
                            relabel(id),
                        )),
                        validate_only: false,
                        request_id: String::new(),
                    },
                    principal,
                    &[roles],
                ))
                .await
                .expect_err("a relabelled built-in must be refused");
            assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
            assert_eq!(
                reason_of(&refused).as_deref(),
                Some("BUILTIN_HANDLER_RESERVED")
            );
        }
    }
    stack.stop().await;
}

/// Durations beyond any sensible bound are refused at submission instead of
/// overflowing the clock later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_durations_are_invalid_arguments() {
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    for spec in [
        "name: w\noptions: {max_duration: 18446744073709551615s}\nsteps:\n  - {name: a, capability: sys.info.get_time}\n",
        "name: w\nsteps:\n  - {name: a, capability: sys.info.get_time, timeout: 18446744073709551615s}\n",
        "name: w\nsteps:\n  - {name: a, capability: sys.info.get_time, timeout: 400d}\n",
    ] {
        let refused = client
            .submit_workflow(as_principal(
                pb::SubmitWorkflowRequest {
                    source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
                    request_id: String::new(),
                },
                "user:mallory",
                &[],
            ))
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    stack.stop().await;
}

/// Cancelling someone's workflow leaves an audit event naming who did it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_is_audited_with_its_caller() {
    use airt_proto::audit::v1 as audit;
    use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let channel = stack.workflow.channel().await;
    let mut client = WorkflowServiceClient::new(channel.clone());
    let spec = "name: w\nsteps:\n  - {name: gate, type: HUMAN_APPROVAL, approval: {approver_roles: [approver]}}\n";
    let paused = run_workflow(&mut client, "user:alice", spec).await;
    assert_eq!(status(&paused), pb::WorkflowStatus::Paused, "{paused:?}");
    client
        .cancel_workflow(as_principal(
            pb::CancelWorkflowRequest {
                workflow_id: paused.workflow_id.clone(),
                rollback: false,
                reason: "no longer needed".into(),
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("cancel");
    let events = AuditServiceClient::new(channel)
        .list_audit_events(as_principal(
            audit::ListAuditEventsRequest {
                action: "workflow.cancel_requested".into(),
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("audit")
        .into_inner()
        .events;
    let event = events
        .iter()
        .find(|e| e.resource_id == paused.workflow_id)
        .expect("the cancellation is audited");
    assert_eq!(event.actor, "user:root");
    stack.stop().await;
}

/// The environment a policy matches is the deployment's: a workflow cannot
/// claim to run in another one to pass rules written for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_environment_comes_from_the_deployment_not_the_caller() {
    let policy = "escalate_high_risk: false\nrules:\n\
      - {id: not-in-staging, when: {environment: staging, capability: sys.info.get_time}, decision: DENY}\n\
      - {id: allow-all, decision: ALLOW}\n";
    let stack = Stack::start_with(TestDb::sqlite(), policy, |config| {
        config.environment = "staging".into();
    })
    .await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let unlabelled = "name: w\nsteps:\n  - {name: t, capability: sys.info.get_time}\n";
    let denied = run_workflow(&mut client, "user:mallory", unlabelled).await;
    assert_eq!(status(&denied), pb::WorkflowStatus::Failed, "{denied:?}");
    assert!(
        denied.failure_reason.contains("not-in-staging"),
        "{}",
        denied.failure_reason
    );

    let claiming = format!("metadata: {{environment: prod}}\n{unlabelled}");
    let refused = client
        .submit_workflow(as_principal(
            pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(claiming)),
                request_id: String::new(),
            },
            "user:mallory",
            &[],
        ))
        .await
        .expect_err("another environment is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    stack.stop().await;
}

/// One principal cannot hold more than its share of watch streams; closing
/// one frees its place, and others are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_bounded_per_principal() {
    let stack = Stack::start_with(TestDb::sqlite(), ALLOW_ALL, |config| {
        config.max_watchers = (100, 2);
    })
    .await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let spec = "name: w\nsteps:\n  - {name: gate, type: HUMAN_APPROVAL, approval: {approver_roles: [approver]}}\n";
    let paused = run_workflow(&mut client, "user:mallory", spec).await;
    let watch = |client: &mut WorkflowServiceClient<tonic::transport::Channel>, who: &str| {
        let request = as_principal(
            pb::WatchWorkflowRequest {
                workflow_id: paused.workflow_id.clone(),
                after_sequence: 0,
            },
            who,
            &["admin"],
        );
        let mut client = client.clone();
        async move { client.watch_workflow(request).await }
    };
    let first = watch(&mut client, "user:mallory").await.expect("first");
    let _second = watch(&mut client, "user:mallory").await.expect("second");
    let refused = watch(&mut client, "user:mallory").await.expect_err("third");
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(reason_of(&refused).as_deref(), Some("TOO_MANY_WATCHERS"));
    watch(&mut client, "user:root")
        .await
        .expect("another principal");
    drop(first);
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(stream) = watch(&mut client, "user:mallory").await {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(reopened.is_some(), "a closed stream frees its place");
    stack.stop().await;
}

/// The policy judges the path the sandbox will use: a rule protecting
/// `config.yaml` cannot be passed with `./config.yaml` or `.//config.yaml`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_inputs_are_judged_as_the_sandbox_resolves_them() {
    let policy = "escalate_high_risk: false\nrules:\n\
      - {id: protect-config, when: {capability: io.fs.write_file, inputs: {path: config.yaml}}, decision: DENY}\n\
      - {id: allow-all, decision: ALLOW}\n";
    let stack = Stack::start(TestDb::sqlite(), policy).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    for path in [
        "config.yaml",
        "./config.yaml",
        ".//config.yaml",
        "././config.yaml",
    ] {
        let spec = format!(
            "name: w\nsteps:\n  - {{name: w, capability: io.fs.write_file, inputs: {{path: \"{path}\", content: pwned}}}}\n"
        );
        let workflow = run_workflow(&mut client, "user:mallory", &spec).await;
        assert_eq!(
            status(&workflow),
            pb::WorkflowStatus::Failed,
            "{path}: {workflow:?}"
        );
        assert!(
            workflow.failure_reason.contains("protect-config"),
            "{path}: {}",
            workflow.failure_reason
        );
    }
    assert!(!stack.root().join("config.yaml").exists());
    stack.stop().await;
}

/// A submitter cannot approve their own workflow by spelling their name
/// differently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_refused_whatever_the_spelling() {
    use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let channel = stack.workflow.channel().await;
    let mut client = WorkflowServiceClient::new(channel.clone());
    let spec = "name: w\nsteps:\n  - {name: gate, type: HUMAN_APPROVAL, approval: {approver_roles: [approver]}}\n";
    let paused = run_workflow(&mut client, "user:alice", spec).await;
    let approval_id = paused.steps[0].approval_id.clone();
    let mut approvals = ApprovalServiceClient::new(channel);
    for alias in ["User:alice", "user:Alice", "USER:ALICE"] {
        let refused = approvals
            .approve_step(as_principal(
                pb::ApproveStepRequest {
                    approval_id: approval_id.clone(),
                    comment: String::new(),
                    request_id: String::new(),
                },
                alias,
                &["approver"],
            ))
            .await
            .expect_err("self-approval");
        assert_eq!(
            refused.code(),
            tonic::Code::PermissionDenied,
            "{alias}: {refused:?}"
        );
        assert_eq!(
            reason_of(&refused).as_deref(),
            Some("SELF_APPROVAL"),
            "{alias}"
        );
    }
    stack.stop().await;
}

/// Free-text fields that are stored are bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_text_fields_are_invalid_arguments() {
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let spec = "name: w\nsteps:\n  - {name: t, capability: sys.info.get_time}\n";
    let refused = client
        .submit_workflow(as_principal(
            pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
                request_id: "r".repeat(300),
            },
            "user:mallory",
            &[],
        ))
        .await
        .expect_err("request_id too long");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let workflow = run_workflow(&mut client, "user:mallory", spec).await;
    let refused = client
        .cancel_workflow(as_principal(
            pb::CancelWorkflowRequest {
                workflow_id: workflow.workflow_id,
                reason: "x".repeat(5000),
                ..Default::default()
            },
            "user:mallory",
            &[],
        ))
        .await
        .expect_err("reason too long");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    let mut registry =
        RegistryServiceClient::new(stack.registry.as_ref().expect("registry").channel().await);
    let refused = registry
        .set_capability_lifecycle(as_principal(
            registry::SetCapabilityLifecycleRequest {
                capability_id: "sys.info.get_time".into(),
                lifecycle: registry::CapabilityLifecycle::Deprecated as i32,
                reason: "x".repeat(5000),
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect_err("reason too long");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    stack.stop().await;
}

/// An approver sees the whole command line a program-execution step runs,
/// every argument quoted, not just the program's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_of_program_execution_shows_the_whole_command_line() {
    let programs = vec!["sort".to_owned()];
    let stack = Stack::start_with(
        TestDb::sqlite(),
        "rules:\n  - {id: allow-all, decision: ALLOW}\n",
        move |config| {
            let path = std::env::var("PATH").unwrap_or_default();
            config.catalogue.exec = ExecPolicy::resolve(&programs, &path).expect("programs");
        },
    )
    .await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let spec = exec_workflow(
        "sort",
        "sort",
        &[
            "-S".into(),
            "16K".into(),
            "--compress-program=sh".into(),
            "my file.txt".into(),
        ],
    );
    let paused = run_workflow(&mut client, "user:alice", &spec).await;
    assert_eq!(status(&paused), pb::WorkflowStatus::Paused, "{paused:?}");
    let approval = airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient::new(
        stack.workflow.channel().await,
    )
    .get_approval(as_principal(
        pb::GetApprovalRequest {
            approval_id: paused.steps[0].approval_id.clone(),
        },
        "user:bob",
        &["approver"],
    ))
    .await
    .expect("approval")
    .into_inner()
    .approval
    .expect("approval");
    assert!(
        approval
            .message
            .contains(r#"runs: sort "-S" "16K" "--compress-program=sh" "my file.txt""#),
        "{}",
        approval.message
    );
    stack.stop().await;
}
