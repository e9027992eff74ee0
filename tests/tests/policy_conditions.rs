//! Input conditions and time windows over real gRPC: governed actions
//! decided by what their inputs say (a path that walks into `prod/` is a
//! `prod/` path), explanations with expected against actual, bad
//! conditions refused with their field, and `TestPolicySet` linting
//! conditions against capability parameter types.

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::common::v1::{Principal, RiskLevel};
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::Stack;
use tonic::Code;

const POLICY: &str = r#"
default: DENY
rules:
  - id: no-prod-writes
    when: {capability: io.fs.write_file, inputs: {path: {glob: "prod/**"}}}
    decision: DENY
    reason: Production files are written by the release pipeline only
  - id: short-printable-notes
    when:
      capability: io.fs.write_file
      inputs: {content: {matches: "[ -~]{1,64}"}, path: {ends_with: ".txt"}}
      during: {days: [MON-SUN]}
    decision: ALLOW
    reason: Short notes are fine
"#;

fn action(path: &str, content: &str, request_id: &str) -> tonic::Request<pb::ExecuteActionRequest> {
    airt_system_tests::action_request(
        "io.fs.write_file",
        serde_json::json!({"path": path, "content": content}),
        request_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_are_decided_by_their_inputs() {
    let stack = Stack::start(TestDb::sqlite(), POLICY).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    for dir in ["prod", "notes"] {
        std::fs::create_dir_all(stack.root().join(dir)).expect("dir");
    }

    let note = client
        .execute_action(action("notes/a.txt", "hello", "note"))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(
        note.status,
        pb::ActionStatus::Succeeded as i32,
        "{}",
        note.error
    );
    assert_eq!(
        note.decision.as_ref().map(|d| d.rule_id.as_str()),
        Some("short-printable-notes")
    );
    assert!(stack.root().join("notes/a.txt").exists());

    // A path spelled to dodge the glob is judged where it leads.
    let sneaky = client
        .execute_action(action("notes/../prod/db.txt", "hello", "sneaky"))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(sneaky.status, pb::ActionStatus::Denied as i32, "{sneaky:?}");
    assert_eq!(
        sneaky.decision.as_ref().map(|d| d.rule_id.as_str()),
        Some("no-prod-writes")
    );
    assert!(
        !stack.root().join("prod/db.txt").exists(),
        "nothing was written"
    );

    // Content the condition does not admit falls through to the default.
    let long = client
        .execute_action(action("notes/b.txt", &"x".repeat(65), "long"))
        .await
        .expect("execute")
        .into_inner();
    assert_eq!(long.status, pb::ActionStatus::Denied as i32);
    assert_eq!(
        long.decision.as_ref().map(|d| d.rule_id.as_str()),
        Some("default")
    );
    assert!(!stack.root().join("notes/b.txt").exists());

    // Explained over the policy API: the failed condition, expected and actual.
    let mut policy_client =
        PolicyServiceClient::new(stack.policy.as_ref().expect("policy").channel().await);
    let explained = policy_client
        .evaluate(as_principal(
            policy::EvaluateRequest {
                context: Some(policy::PolicyContext {
                    principal: Some(Principal {
                        r#type: "user".into(),
                        id: "alice".into(),
                        roles: vec![],
                    }),
                    capability_id: "io.fs.write_file".into(),
                    risk_level: RiskLevel::Medium as i32,
                    inputs: serde_json::json!({"path": "notes/c.md", "content": "hi"})
                        .as_object()
                        .map(airt_kit::json::to_proto_struct),
                    ..Default::default()
                }),
                explain: true,
                any_inputs: false,
                purpose: policy::EvaluationPurpose::Preview as i32,
            },
            "user:alice",
            &[],
        ))
        .await
        .expect("evaluate")
        .into_inner()
        .decision
        .expect("decision");
    assert_eq!(explained.rule_id, "default");
    let second = &explained.explanation[1];
    assert_eq!(second.failed_condition, "when.inputs");
    assert_eq!(
        second.detail,
        "input path is \"notes/c.md\" but must end with \".txt\""
    );
    stack.stop().await;
}

fn admin_request<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:root", &["admin"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_conditions_are_refused_and_lint_knows_parameter_types() {
    let db = TestDb::sqlite();
    let server = airt_system_tests::start_policy(&db).await;
    let mut client = PolicyServiceClient::new(server.channel().await);

    let refused = client
        .put_policy_set(admin_request(policy::PutPolicySetRequest {
            source_yaml: "rules:\n  - {id: r, when: {inputs: {amount: {gt: soon}}, during: {timezone: Mars/Olympus}}, decision: DENY}\n".into(),
            validate_only: true,
            ..Default::default()
        }))
        .await
        .expect_err("invalid");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let details = tonic_types::StatusExt::get_details_bad_request(&refused).expect("violations");
    let fields: Vec<&str> = details
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "source_yaml.rules[0].when.inputs.amount.gt",
            "source_yaml.rules[0].when.during[0]"
        ]
    );

    let report = client
        .test_policy_set(admin_request(policy::TestPolicySetRequest {
            target: Some(policy::test_policy_set_request::Target::SourceYaml(
                "rules:\n  - {id: refunds, when: {capability: payments.refund, inputs: {amount_cents: {starts_with: '1'}, currency: EUR}}, decision: ALLOW}\n  - {id: never, when: {inputs: {amount: {gt: 10, lt: 5}}}, decision: DENY}\n".into(),
            )),
            tests_yaml: "cases: []\n".into(),
            known_capability_ids: vec!["net.http.get".into()],
            known_capabilities: vec![policy::KnownCapability {
                capability_id: "payments.refund".into(),
                parameter_types: [("amount_cents".to_owned(), "PARAMETER_TYPE_INTEGER".to_owned())]
                    .into_iter()
                    .collect(),
            }],
            ..Default::default()
        }))
        .await
        .expect("test")
        .into_inner();
    let findings: Vec<(i32, &str)> = report
        .lint_findings
        .iter()
        .map(|f| (f.kind, f.rule_id.as_str()))
        .collect();
    assert_eq!(
        findings,
        [
            (policy::LintKind::ParameterMismatch as i32, "refunds"),
            (policy::LintKind::ParameterMismatch as i32, "refunds"),
            (policy::LintKind::ImpossibleCondition as i32, "never"),
        ],
        "{:#?}",
        report.lint_findings
    );
    assert!(
        report.lint_findings[0]
            .message
            .contains("starts_with never matches a parameter of type integer")
    );
    assert!(
        report.lint_findings[1]
            .message
            .contains("no parameter \"currency\"")
    );

    let too_many = client
        .test_policy_set(admin_request(policy::TestPolicySetRequest {
            target: Some(policy::test_policy_set_request::Target::Active(true)),
            tests_yaml: "cases: []\n".into(),
            known_capabilities: vec![policy::KnownCapability {
                capability_id: "x.y".into(),
                parameter_types: [("a".to_owned(), "DECIMAL".to_owned())]
                    .into_iter()
                    .collect(),
            }],
            ..Default::default()
        }))
        .await
        .expect_err("bad type");
    assert_eq!(too_many.code(), Code::InvalidArgument);
    server.stop().await.expect("stops");
}
