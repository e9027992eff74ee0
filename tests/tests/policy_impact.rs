//! Before shipping a policy change: `TestPolicySet` with `impact_since`
//! replays the decision log against a candidate and reports what would
//! change (flagging HIGH-risk actions newly allowed); a shadow set decides
//! beside the active one, logged as shadow, never enforced.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use std::time::Duration;

use airt_kit::audit::{AuditFilter, AuditLog};
use airt_kit::db::Database;
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::common::v1::{OperationType, Principal, RiskLevel};
use airt_proto::policy::v1 as pb;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_system_tests::start_policy;
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Channel;

const ENFORCED: &str = r#"
default: DENY
rules:
  - {id: no-deletes, when: {operation_type: DELETE}, decision: DENY, reason: Nothing is deleted}
  - {id: reads, when: {operation_type: READ}, decision: ALLOW}
"#;

const CANDIDATE: &str = r#"
default: DENY
escalate_high_risk: false
rules:
  - id: tmp-deletes
    when: {operation_type: DELETE, inputs: {path: {glob: "tmp/**"}}}
    decision: ALLOW
  - {id: no-deletes, when: {operation_type: DELETE}, decision: DENY}
  - {id: reads, when: {operation_type: READ}, decision: ALLOW}
  - {id: writes, when: {operation_type: WRITE}, decision: REQUIRE_APPROVAL}
"#;

fn admin<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:root", &["admin"])
}

async fn decide(
    client: &mut PolicyServiceClient<Channel>,
    capability: &str,
    risk: RiskLevel,
    operation: OperationType,
    path: &str,
) -> pb::DecisionRecord {
    let inputs = serde_json::json!({"path": path});
    client
        .evaluate(as_principal(
            pb::EvaluateRequest {
                context: Some(pb::PolicyContext {
                    principal: Some(Principal {
                        r#type: "agent".into(),
                        id: "ops".into(),
                        roles: vec![],
                    }),
                    workflow_id: "wf-1".into(),
                    step_name: "clean".into(),
                    capability_id: capability.into(),
                    risk_level: risk as i32,
                    operation_type: operation as i32,
                    inputs: inputs.as_object().map(airt_kit::json::to_proto_struct),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "service:workflow",
            &[],
        ))
        .await
        .expect("evaluate")
        .into_inner()
        .decision
        .expect("decision")
}

async fn put(client: &mut PolicyServiceClient<Channel>, yaml: &str, activate: bool) -> String {
    client
        .put_policy_set(admin(pb::PutPolicySetRequest {
            source_yaml: yaml.into(),
            activate,
            ..Default::default()
        }))
        .await
        .expect("put")
        .into_inner()
        .policy_set
        .expect("set")
        .revision
}

/// The decision log's entries once `count` are written.
async fn decision_entries(db: &TestDb, count: usize) -> Vec<serde_json::Value> {
    let audit = AuditLog::new(Database::connect(db.url(), None).await.expect("db"));
    let filter = AuditFilter {
        action: "policy.decision".into(),
        ..AuditFilter::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = audit.list(&filter, 0, 1000).await.expect("list");
        if events.len() >= count || Instant::now() > deadline {
            return events
                .iter()
                .map(|e| serde_json::from_str(&e.details).expect("details"))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impact_replays_the_log_and_shadow_sets_never_decide() {
    for db in TestDb::all().await {
        let server = start_policy(&db).await;
        let mut client = PolicyServiceClient::new(server.channel().await);
        put(&mut client, ENFORCED, true).await;
        for path in ["tmp/a", "tmp/b", "prod/db"] {
            let denied = decide(
                &mut client,
                "io.fs.delete",
                RiskLevel::High,
                OperationType::Delete,
                path,
            )
            .await;
            assert_eq!(denied.decision, pb::Decision::Deny as i32);
        }
        decide(
            &mut client,
            "io.fs.read_file",
            RiskLevel::Low,
            OperationType::Read,
            "x",
        )
        .await;
        decide(
            &mut client,
            "io.fs.write_file",
            RiskLevel::Medium,
            OperationType::Write,
            "x",
        )
        .await;
        decision_entries(&db, 5).await;

        // Impact of the candidate on what was decided.
        let report = client
            .test_policy_set(admin(pb::TestPolicySetRequest {
                target: Some(pb::test_policy_set_request::Target::SourceYaml(
                    CANDIDATE.into(),
                )),
                impact_since: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }))
            .await
            .expect("impact")
            .into_inner();
        let impact = report.impact.expect("impact report");
        assert_eq!(
            (
                impact.replayed,
                impact.changed,
                impact.flagged,
                impact.rule_only_changes,
                impact.truncated
            ),
            (5, 3, 2, 0, false),
            "{:?}: {impact:#?}",
            db.backend()
        );
        let flagged = &impact.groups[0];
        assert_eq!(
            (
                flagged.old_decision,
                flagged.new_decision,
                flagged.old_rule_id.as_str(),
                flagged.new_rule_id.as_str(),
                flagged.count,
                flagged.flagged
            ),
            (
                pb::Decision::Deny as i32,
                pb::Decision::Allow as i32,
                "no-deletes",
                "tmp-deletes",
                2,
                true
            )
        );
        assert_eq!(flagged.examples[0].capability_id, "io.fs.delete");
        assert_eq!(flagged.examples[0].risk_level, RiskLevel::High as i32);
        let writes = &impact.groups[1];
        assert_eq!(
            (
                writes.old_decision,
                writes.new_decision,
                writes.new_rule_id.as_str(),
                writes.flagged
            ),
            (
                pb::Decision::Deny as i32,
                pb::Decision::RequireApproval as i32,
                "writes",
                false
            )
        );
        // The log holds other principals' requests: readers only.
        let refused = client
            .test_policy_set(as_principal(
                pb::TestPolicySetRequest {
                    target: Some(pb::test_policy_set_request::Target::Active(true)),
                    impact_since: Some(prost_types::Duration {
                        seconds: 3600,
                        nanos: 0,
                    }),
                    ..Default::default()
                },
                "user:alice",
                &[],
            ))
            .await
            .expect_err("not a reader");
        assert_eq!(refused.code(), Code::PermissionDenied);

        // The candidate as a shadow: logged and marked, never enforced.
        let candidate = put(&mut client, CANDIDATE, false).await;
        let shadowing = client
            .activate_policy_set(admin(pb::ActivatePolicySetRequest {
                revision: candidate.clone(),
                reason: "try it on live traffic".into(),
                shadow: true,
                ..Default::default()
            }))
            .await
            .expect("shadow")
            .into_inner()
            .policy_set
            .expect("the shadow set");
        assert!(shadowing.shadow && !shadowing.active);
        let enforced = decide(
            &mut client,
            "io.fs.delete",
            RiskLevel::High,
            OperationType::Delete,
            "tmp/c",
        )
        .await;
        assert_eq!(
            (enforced.decision, enforced.rule_id.as_str()),
            (pb::Decision::Deny as i32, "no-deletes"),
            "the shadow set decides nothing"
        );
        let entries = decision_entries(&db, 7).await;
        let shadow = entries
            .iter()
            .find(|e| e["shadow"] == true)
            .expect("a shadow entry");
        assert_eq!(shadow["decision"], "ALLOW");
        assert_eq!(shadow["rule_id"], "tmp-deletes");
        assert_eq!(shadow["enforced_decision"], "DENY");
        assert_eq!(shadow["agrees"], false);
        assert_eq!(shadow["policy_revision"], candidate.as_str());
        // Replays skip shadow entries: 6 enforced decisions now.
        let again = client
            .test_policy_set(admin(pb::TestPolicySetRequest {
                target: Some(pb::test_policy_set_request::Target::Active(true)),
                impact_since: Some(prost_types::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                ..Default::default()
            }))
            .await
            .expect("impact of the active set")
            .into_inner()
            .impact
            .expect("report");
        assert_eq!((again.replayed, again.changed), (6, 0));

        // Stopped: no more shadow entries.
        let stopped = client
            .activate_policy_set(admin(pb::ActivatePolicySetRequest {
                shadow: true,
                ..Default::default()
            }))
            .await
            .expect("stop shadowing")
            .into_inner();
        assert!(stopped.policy_set.is_none());
        decide(
            &mut client,
            "io.fs.delete",
            RiskLevel::High,
            OperationType::Delete,
            "tmp/d",
        )
        .await;
        let entries = decision_entries(&db, 8).await;
        assert_eq!(entries.len(), 8, "7 entries and one more, no shadow entry");
        assert_eq!(entries.iter().filter(|e| e["shadow"] == true).count(), 1);
        server.stop().await.expect("stops");
    }
}
