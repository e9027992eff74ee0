//! The policy service over real gRPC, on SQLite and PostgreSQL.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use std::time::{Duration, Instant};

use airt_kit::audit::{AuditFilter, AuditLog};
use airt_kit::auth::AuthSettings;
use airt_kit::config::ServiceConfig;
use airt_kit::db::Database;
use airt_kit::testing::{TestDb, TestServer, as_principal};
use airt_proto::common::v1::{OperationType, Principal, RiskLevel};
use airt_proto::policy::v1 as pb;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use tonic::transport::Channel;
use tonic::{Code, Request};

const POLICY_V1: &str = r#"
default: DENY
rules:
  - id: deny-high-risk-agents
    principal: "agent:*"
    when: {risk_level: [HIGH, CRITICAL]}
    decision: DENY
    reason: High-risk operations are not allowed
  - id: allow-reads
    when: {operation_type: READ}
    decision: ALLOW
    reason: reads are fine
  - id: allow-crm
    when: {capability: "crm.*"}
    decision: ALLOW
"#;

const POLICY_V2: &str = "default: ALLOW\nrules:\n  - {id: deny-everything-crm, when: {capability: 'crm.*'}, decision: DENY}\n";

async fn start(db: &TestDb) -> TestServer {
    let config = ServiceConfig {
        database_url: db.url().to_owned(),
        auth: AuthSettings::Development,
        ..ServiceConfig::local(&policy_service::IDENTITY)
    };
    TestServer::start(move |listener, shutdown| {
        policy_service::serve_on(config, listener, shutdown)
    })
    .await
}

fn admin<T>(message: T) -> Request<T> {
    as_principal(message, "user:root", &["admin"])
}

fn workflow_service<T>(message: T) -> Request<T> {
    as_principal(message, "service:workflow", &["registrar"])
}

fn context(
    principal: &str,
    capability: &str,
    risk: RiskLevel,
    operation: OperationType,
) -> pb::PolicyContext {
    let (kind, id) = principal.split_once(':').expect("type:id");
    pb::PolicyContext {
        principal: Some(Principal {
            r#type: kind.into(),
            id: id.into(),
            roles: vec![],
        }),
        agent: "planner".into(),
        workflow_id: "wf-1".into(),
        step_name: "step_one".into(),
        capability_id: capability.into(),
        risk_level: risk as i32,
        requires_approval: false,
        operation_type: operation as i32,
        inputs: None,
        environment: "prod".into(),
    }
}

async fn evaluate(
    client: &mut PolicyServiceClient<Channel>,
    ctx: pb::PolicyContext,
    explain: bool,
) -> pb::DecisionRecord {
    client
        .evaluate(workflow_service(pb::EvaluateRequest {
            context: Some(ctx),
            explain,
            any_inputs: false,
            purpose: Default::default(),
        }))
        .await
        .expect("evaluate")
        .into_inner()
        .decision
        .expect("decision")
}

async fn put(
    client: &mut PolicyServiceClient<Channel>,
    source: &str,
    activate: bool,
) -> Result<pb::PutPolicySetResponse, tonic::Status> {
    client
        .put_policy_set(admin(pb::PutPolicySetRequest {
            source_yaml: source.into(),
            description: String::new(),
            validate_only: false,
            activate,
            request_id: String::new(),
        }))
        .await
        .map(tonic::Response::into_inner)
}

fn decision(record: &pb::DecisionRecord) -> (pb::Decision, &str) {
    (
        pb::Decision::try_from(record.decision).expect("known"),
        record.rule_id.as_str(),
    )
}

#[tokio::test]
async fn put_evaluate_reject_a_bad_set_and_roll_back() {
    for db in TestDb::all().await {
        let server = start(&db).await;
        let mut client = PolicyServiceClient::new(server.channel().await);
        let read = || {
            context(
                "agent:planner-7",
                "io.fs.read_file",
                RiskLevel::Low,
                OperationType::Read,
            )
        };

        // Before any set is put, everything is denied by `default`.
        let before = evaluate(&mut client, read(), false).await;
        assert_eq!(decision(&before), (pb::Decision::Deny, "default"));

        let v1 = put(&mut client, POLICY_V1, true).await.expect("put v1");
        assert!(v1.created);
        let v1_revision = v1.policy_set.expect("set").revision;
        let allowed = evaluate(&mut client, read(), false).await;
        assert_eq!(decision(&allowed), (pb::Decision::Allow, "allow-reads"));
        assert_eq!(allowed.policy_revision, v1_revision);
        let denied = evaluate(
            &mut client,
            context(
                "agent:planner-7",
                "crm.delete_account",
                RiskLevel::High,
                OperationType::Delete,
            ),
            false,
        )
        .await;
        assert_eq!(
            decision(&denied),
            (pb::Decision::Deny, "deny-high-risk-agents")
        );
        assert_eq!(denied.reason, "High-risk operations are not allowed");
        let escalated = evaluate(
            &mut client,
            context(
                "user:alice",
                "crm.delete_account",
                RiskLevel::High,
                OperationType::Delete,
            ),
            false,
        )
        .await;
        assert_eq!(
            decision(&escalated),
            (pb::Decision::RequireApproval, "allow-crm")
        );
        assert!(escalated.escalated);

        // A bad set: INVALID_ARGUMENT naming line and field; the active set is unchanged.
        let bad = put(
            &mut client,
            "default: DENY\nrules:\n  - id: x\n    decison: ALLOW\n",
            true,
        )
        .await
        .expect_err("typo");
        assert_eq!(bad.code(), Code::InvalidArgument);
        let violations = airt_kit::status::violations_of(&bad);
        assert_eq!(violations[0].field, "source_yaml");
        assert!(
            violations[0].description.contains("line 4")
                && violations[0].description.contains("decison"),
            "{violations:?}"
        );
        let semantic = put(&mut client, "rules:\n  - {id: a, decision: MAYBE}\n", true)
            .await
            .expect_err("bad decision");
        assert_eq!(
            airt_kit::status::violations_of(&semantic)[0].field,
            "source_yaml.rules[0].decision"
        );
        assert_eq!(
            evaluate(&mut client, read(), false).await.policy_revision,
            v1_revision
        );
        let active = client
            .get_policy_set(admin(pb::GetPolicySetRequest::default()))
            .await
            .expect("get")
            .into_inner()
            .policy_set
            .expect("set");
        assert_eq!(
            (active.revision.as_str(), active.active),
            (v1_revision.as_str(), true)
        );

        // Put v2 and activate it, then roll back to v1.
        let v2 = put(&mut client, POLICY_V2, true)
            .await
            .expect("put v2")
            .policy_set
            .expect("set");
        let crm = || {
            context(
                "user:alice",
                "crm.create_account",
                RiskLevel::Medium,
                OperationType::Write,
            )
        };
        assert_eq!(
            decision(&evaluate(&mut client, crm(), false).await),
            (pb::Decision::Deny, "deny-everything-crm")
        );
        let listed = client
            .list_policy_sets(admin(pb::ListPolicySetsRequest::default()))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(
            listed
                .policy_sets
                .iter()
                .map(|s| (s.revision.as_str(), s.active))
                .collect::<Vec<_>>(),
            [(v2.revision.as_str(), true), (v1_revision.as_str(), false)]
        );
        let rolled_back = client
            .activate_policy_set(admin(pb::ActivatePolicySetRequest {
                revision: v1_revision.clone(),
                reason: "v2 blocks sales".into(),
                request_id: String::new(),
                shadow: false,
            }))
            .await
            .expect("activate")
            .into_inner()
            .policy_set
            .expect("set");
        assert!(rolled_back.active);
        let after = evaluate(&mut client, crm(), false).await;
        assert_eq!(
            (decision(&after), after.policy_revision.as_str()),
            ((pb::Decision::Allow, "allow-crm"), v1_revision.as_str())
        );

        // Re-putting identical content stores nothing new.
        assert!(
            !put(&mut client, POLICY_V1, false)
                .await
                .expect("again")
                .created
        );
        server.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn explanations_and_a_masked_intact_decision_log() {
    for db in TestDb::all().await {
        let server = start(&db).await;
        let mut client = PolicyServiceClient::new(server.channel().await);
        put(&mut client, POLICY_V1, true).await.expect("put");
        let mut ctx = context(
            "user:alice",
            "net.http.post",
            RiskLevel::Critical,
            OperationType::Network,
        );
        let inputs = serde_json::json!({"url": "https://x", "api_key": "sk-live-123", "author": "ann", "headers": {"Authorization": "Bearer t"}});
        ctx.inputs = Some(airt_kit::json::to_proto_struct(
            inputs.as_object().expect("object"),
        ));
        let record = evaluate(&mut client, ctx, true).await;
        assert_eq!(decision(&record), (pb::Decision::Deny, "default"));
        let steps: Vec<(&str, &str)> = record
            .explanation
            .iter()
            .map(|e| (e.rule_id.as_str(), e.failed_condition.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("deny-high-risk-agents", "principal"),
                ("allow-reads", "when.operation_type"),
                ("allow-crm", "when.capability")
            ]
        );
        assert!(record.explanation[2].detail.contains("net.http.post"));

        // Stop cleanly: every acknowledged decision must be in the log.
        server.stop().await.expect("clean stop");
        let database = Database::connect(db.url(), None).await.expect("reopen");
        let log = AuditLog::new(database.clone());
        let report = log.verify().await.expect("verify");
        assert!(report.intact(), "{:?}: {report:?}", db.backend());
        let filter = AuditFilter {
            action: "policy.decision".into(),
            ..Default::default()
        };
        let decisions = log.list(&filter, 0, 100).await.expect("list");
        assert_eq!(decisions.len(), 1);
        let details: serde_json::Value = serde_json::from_str(&decisions[0].details).expect("json");
        assert_eq!(details["inputs"]["api_key"], "***");
        assert_eq!(details["inputs"]["headers"]["Authorization"], "***");
        assert_eq!(details["inputs"]["author"], "ann");
        assert!(!decisions[0].details.contains("sk-live-123"));
        assert_eq!(
            (details["decision"].as_str(), details["rule_id"].as_str()),
            (Some("DENY"), Some("default"))
        );
        assert_eq!(details["inputs_digest"].as_str().map(str::len), Some(64));
        assert_eq!(decisions[0].actor, "service:workflow");
        database.close().await;
    }
}

#[tokio::test]
async fn many_decisions_are_all_logged_after_a_clean_shutdown() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let mut client = PolicyServiceClient::new(server.channel().await);
    let contexts: Vec<_> = (0..200)
        .map(|i| {
            context(
                "user:alice",
                &format!("crm.op_{i}"),
                RiskLevel::Low,
                OperationType::Read,
            )
        })
        .collect();
    for chunk in contexts.chunks(50) {
        let decisions = client
            .batch_evaluate(workflow_service(pb::BatchEvaluateRequest {
                contexts: chunk.to_vec(),
                explain: false,
                any_inputs: false,
                purpose: Default::default(),
            }))
            .await
            .expect("batch")
            .into_inner()
            .decisions;
        assert_eq!(decisions.len(), chunk.len());
    }
    for _ in 0..20 {
        evaluate(&mut client, contexts[0].clone(), false).await;
    }
    server.stop().await.expect("clean stop");
    let database = Database::connect(db.url(), None).await.expect("reopen");
    let log = AuditLog::new(database.clone());
    let filter = AuditFilter {
        action: "policy.decision".into(),
        ..Default::default()
    };
    assert_eq!(log.list(&filter, 0, 1000).await.expect("list").len(), 220);
    assert!(log.verify().await.expect("verify").intact());
    database.close().await;
}

#[tokio::test]
async fn who_may_evaluate_and_who_may_change_policy() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let mut client = PolicyServiceClient::new(server.channel().await);
    let ctx = context(
        "agent:planner-7",
        "io.fs.read_file",
        RiskLevel::Low,
        OperationType::Read,
    );

    let other = client
        .evaluate(as_principal(
            pb::EvaluateRequest {
                context: Some(ctx.clone()),
                explain: false,
                any_inputs: false,
                purpose: Default::default(),
            },
            "agent:someone-else",
            &[],
        ))
        .await
        .expect_err("not about itself");
    assert_eq!(other.code(), Code::PermissionDenied);
    client
        .evaluate(as_principal(
            pb::EvaluateRequest {
                context: Some(ctx.clone()),
                explain: false,
                any_inputs: false,
                purpose: Default::default(),
            },
            "agent:planner-7",
            &[],
        ))
        .await
        .expect("a principal may ask about itself");
    let anonymous = client
        .evaluate(pb::EvaluateRequest {
            context: Some(ctx.clone()),
            explain: false,
            any_inputs: false,
            purpose: Default::default(),
        })
        .await
        .expect_err("no identity");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let not_admin = client
        .put_policy_set(as_principal(
            pb::PutPolicySetRequest {
                source_yaml: POLICY_V1.into(),
                activate: true,
                ..Default::default()
            },
            "service:workflow",
            &["registrar"],
        ))
        .await
        .expect_err("services do not write policy");
    assert_eq!(not_admin.code(), Code::PermissionDenied);

    let mut missing_risk = ctx;
    missing_risk.risk_level = 0;
    missing_risk.capability_id.clear();
    let invalid = client
        .evaluate(workflow_service(pb::EvaluateRequest {
            context: Some(missing_risk),
            explain: false,
            any_inputs: false,
            purpose: Default::default(),
        }))
        .await
        .expect_err("incomplete context");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    let fields: Vec<String> = airt_kit::status::violations_of(&invalid)
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["context.capability_id", "context.risk_level"]);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_set_activated_on_one_replica_is_picked_up_by_another() {
    for db in TestDb::all().await {
        let first = start(&db).await;
        let second = start(&db).await;
        let mut writer = PolicyServiceClient::new(first.channel().await);
        let mut reader = PolicyServiceClient::new(second.channel().await);
        let revision = put(&mut writer, POLICY_V1, true)
            .await
            .expect("put")
            .policy_set
            .expect("set")
            .revision;
        let ctx = context(
            "user:alice",
            "io.fs.read_file",
            RiskLevel::Low,
            OperationType::Read,
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let record = evaluate(&mut reader, ctx.clone(), false).await;
            if record.policy_revision == revision {
                assert_eq!(decision(&record), (pb::Decision::Allow, "allow-reads"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{:?}: the other replica never picked up the activation",
                db.backend()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        first.stop().await.expect("clean stop");
        second.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn policy_tests_report_failures_coverage_and_lint() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let mut client = PolicyServiceClient::new(server.channel().await);
    let tests = r#"
cases:
  - name: agents read files
    context: {principal: "agent:x", capability: io.fs.read_file, risk_level: LOW, operation_type: READ}
    expect: {decision: ALLOW, rule: allow-reads}
  - name: agents never delete
    context: {principal: "agent:x", capability: io.fs.delete, risk_level: HIGH, operation_type: DELETE}
    expect: {decision: DENY, rule: deny-high-risk-agents}
  - name: a wrong expectation
    context: {principal: "user:alice", capability: net.http.post, risk_level: CRITICAL, operation_type: NETWORK}
    expect: {decision: ALLOW}
"#;
    let report = client
        .test_policy_set(admin(pb::TestPolicySetRequest {
            target: Some(pb::test_policy_set_request::Target::SourceYaml(
                POLICY_V1.into(),
            )),
            tests_yaml: tests.into(),
            known_capability_ids: vec!["io.fs.read_file".into(), "net.http.post".into()],
            known_capabilities: Vec::new(),
            ..Default::default()
        }))
        .await
        .expect("test")
        .into_inner();
    assert!(!report.passed);
    assert_eq!((report.total, report.failed), (3, 1));
    assert!(
        report.results[2]
            .message
            .contains("allow-crm: when.capability"),
        "{}",
        report.results[2].message
    );
    let coverage: Vec<(&str, i32)> = report
        .coverage
        .iter()
        .map(|c| (c.rule_id.as_str(), c.hits))
        .collect();
    assert_eq!(
        coverage,
        [
            ("deny-high-risk-agents", 1),
            ("allow-reads", 1),
            ("allow-crm", 0),
            ("default", 1)
        ]
    );
    assert_eq!(report.lint_findings.len(), 1);
    assert_eq!(
        report.lint_findings[0].kind,
        pb::LintKind::UnmatchedPattern as i32
    );
    assert_eq!(report.lint_findings[0].rule_id, "allow-crm");
    server.stop().await.expect("clean stop");
}
