//! The workflow store's conformance suite: the same behaviour on SQLite and
//! PostgreSQL.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use airt_kit::Principal;
use airt_kit::audit::AuditLog;
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use serde_json::json;
use workflow_service::domain::{
    CompensationStatus, StepStatus, WorkflowDraft, WorkflowStatus, validate_workflow,
};
use workflow_service::error::WorkflowError;
use workflow_service::store::{ListFilter, MIGRATIONS, Transition, WorkflowStore};

const PIPELINE: &str = "name: pipeline\nsteps:\n  - {name: second, capability: io.fs.copy, depends_on: [first]}\n  - {name: first, capability: io.fs.write_file}\n";

fn alice() -> Principal {
    Principal::new("user", "alice", vec!["sales".into()])
}

async fn open(db: &TestDb) -> (Database, WorkflowStore) {
    let database = Database::connect(db.url(), Some(MIGRATIONS))
        .await
        .expect("connect");
    (database.clone(), WorkflowStore::new(database))
}

fn draft() -> (WorkflowDraft, workflow_service::domain::WorkflowSpec) {
    let draft = WorkflowDraft::from_text(PIPELINE).expect("parses");
    let spec = validate_workflow(&draft).expect("valid");
    (draft, spec)
}

#[tokio::test]
async fn the_largest_valid_workflow_is_stored_whole() {
    let mut text = String::from("name: wide\nsteps:\n");
    for i in 0..workflow_service::domain::spec::MAX_STEPS {
        text.push_str(&format!(
            "  - {{name: s{i}, capability: sys.info.get_time}}\n"
        ));
    }
    let draft = WorkflowDraft::from_text(&text).expect("parses");
    let spec = validate_workflow(&draft).expect("valid");
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        let (row, created) = store
            .create("wf-wide", &draft, &spec, &alice(), None)
            .await
            .expect("create");
        assert!(created);
        assert_eq!(row.event_seq, 1, "the submission is event 1");
        let steps = store.steps("wf-wide").await.expect("steps");
        assert_eq!(steps.len(), workflow_service::domain::spec::MAX_STEPS);
        assert_eq!(steps[999].step_name, "s999");
        assert_eq!(
            store.events("wf-wide", 0, 10).await.expect("events").len(),
            1
        );
        database.close().await;
    }
}

#[tokio::test]
async fn workflows_are_created_once_per_request_id_with_steps_in_order() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        let (draft, spec) = draft();
        let (row, created) = store
            .create("wf-1", &draft, &spec, &alice(), Some("req-1"))
            .await
            .expect("create");
        assert!(created);
        assert_eq!(
            (
                row.status().expect("status"),
                row.submitter.as_str(),
                row.event_seq
            ),
            (WorkflowStatus::Pending, "user:alice", 1)
        );
        assert_eq!(row.draft().expect("draft").steps.len(), 2);
        // The row handed back is the row stored.
        assert_eq!(Some(&row), store.get("wf-1").await.expect("get").as_ref());
        // So are the steps a submission answers with without reading them.
        assert_eq!(
            store.steps("wf-1").await.expect("steps"),
            workflow_service::store::pending_steps("wf-1", &spec)
        );
        let (again, created_again) = store
            .create("wf-2", &draft, &spec, &alice(), Some("req-1"))
            .await
            .expect("retry");
        assert!(!created_again, "{:?}", db.backend());
        assert_eq!(again.workflow_id, "wf-1");
        let bob = Principal::new("user", "bob", vec![]);
        assert!(
            store
                .create("wf-3", &draft, &spec, &bob, Some("req-1"))
                .await
                .expect("other submitter")
                .1
        );
        assert!(
            store
                .create("wf-4", &draft, &spec, &alice(), None)
                .await
                .expect("no request id")
                .1
        );
        let owned_draft =
            WorkflowDraft::from_text(&format!("metadata: {{owner: 'team:ops'}}\n{PIPELINE}"))
                .expect("parses");
        let owned_spec = validate_workflow(&owned_draft).expect("valid");
        let (owned, _) = store
            .create("wf-5", &owned_draft, &owned_spec, &alice(), None)
            .await
            .expect("owned");
        assert_eq!(Some(&owned), store.get("wf-5").await.expect("get").as_ref());

        let steps = store.steps("wf-1").await.expect("steps");
        let names: Vec<(&str, StepStatus)> = steps
            .iter()
            .map(|s| (s.step_name.as_str(), s.status().expect("status")))
            .collect();
        assert_eq!(
            names,
            [
                ("first", StepStatus::Pending),
                ("second", StepStatus::Pending)
            ]
        );

        let newest_first: Vec<String> = store
            .list(&ListFilter::default(), "", 10)
            .await
            .expect("list")
            .into_iter()
            .map(|w| w.workflow_id)
            .collect();
        assert_eq!(newest_first, ["wf-5", "wf-4", "wf-3", "wf-1"]);
        let page: Vec<String> = store
            .list(&ListFilter::default(), "wf-3", 10)
            .await
            .expect("page")
            .into_iter()
            .map(|w| w.workflow_id)
            .collect();
        assert_eq!(page, ["wf-1"]);
        let bobs = store
            .list(
                &ListFilter {
                    submitter: "user:bob".into(),
                    ..Default::default()
                },
                "",
                10,
            )
            .await
            .expect("filter");
        assert_eq!(bobs.len(), 1);
        database.close().await;
    }
}

#[tokio::test]
async fn transitions_are_committed_with_events_and_audit_entries() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        let (draft, spec) = draft();
        store
            .create("wf-1", &draft, &spec, &alice(), None)
            .await
            .expect("create");
        let actor = "service:workflow";
        let running = Transition::Workflow {
            status: WorkflowStatus::Running,
            reason: String::new(),
            failed_step: String::new(),
            deliveries: Vec::new(),
        };
        store.apply("wf-1", actor, &running).await.expect("running");
        let decision = json!({"decision": "ALLOW", "rule_id": "allow-writes"});
        store
            .apply(
                "wf-1",
                actor,
                &Transition::StepDecided {
                    step: "first".into(),
                    risk_level: "MEDIUM".into(),
                    capability_version: "1.0.0".into(),
                    resolved_inputs: json!({"path": "a.txt"}),
                    decision: decision.clone(),
                },
            )
            .await
            .expect("decided");
        store
            .apply(
                "wf-1",
                actor,
                &Transition::Step {
                    step: "first".into(),
                    status: StepStatus::Running,
                    attempt: Some(1),
                    error: String::new(),
                },
            )
            .await
            .expect("running");
        let step = store.steps("wf-1").await.expect("steps").remove(0);
        assert_eq!((step.status.as_str(), step.attempt), ("RUNNING", 1));
        assert!(
            step.started_at_us > 0 && step.ended_at_us == 0,
            "write-ahead: RUNNING recorded before the handler runs"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&step.decision).expect("json"),
            decision
        );

        store
            .apply(
                "wf-1",
                actor,
                &Transition::StepSucceeded {
                    step: "first".into(),
                    outputs: json!({"size": 3}),
                    undo: json!({"op": "write"}),
                },
            )
            .await
            .expect("ok");
        store
            .apply(
                "wf-1",
                actor,
                &Transition::Step {
                    step: "second".into(),
                    status: StepStatus::Running,
                    attempt: Some(1),
                    error: String::new(),
                },
            )
            .await
            .expect("running");
        store
            .apply(
                "wf-1",
                actor,
                &Transition::Step {
                    step: "second".into(),
                    status: StepStatus::Failed,
                    attempt: None,
                    error: "NOT_FOUND: src.txt".into(),
                },
            )
            .await
            .expect("failed");
        store
            .apply(
                "wf-1",
                actor,
                &Transition::Workflow {
                    status: WorkflowStatus::RollingBack,
                    reason: "step second failed: NOT_FOUND: src.txt".into(),
                    failed_step: "second".into(),
                    deliveries: Vec::new(),
                },
            )
            .await
            .expect("rolling back");
        let plan = Transition::CompensationPlanned {
            step: "first".into(),
            position: 1,
            capability_id: "io.fs.write_file".into(),
            inputs: json!({}),
        };
        store.apply("wf-1", actor, &plan).await.expect("planned");
        store
            .apply("wf-1", actor, &plan)
            .await
            .expect("planning twice is harmless");
        store
            .apply(
                "wf-1",
                actor,
                &Transition::Compensation {
                    step: "first".into(),
                    status: CompensationStatus::Done,
                    attempts: 1,
                    error: String::new(),
                },
            )
            .await
            .expect("done");
        let last = store
            .apply(
                "wf-1",
                actor,
                &Transition::Workflow {
                    status: WorkflowStatus::RolledBack,
                    reason: "step second failed: NOT_FOUND: src.txt".into(),
                    failed_step: "second".into(),
                    deliveries: Vec::new(),
                },
            )
            .await
            .expect("rolled back");

        let workflow = store.get("wf-1").await.expect("get").expect("exists");
        assert_eq!(
            (
                workflow.status().expect("status"),
                workflow.failed_step.as_str(),
                workflow.event_seq
            ),
            (WorkflowStatus::RolledBack, "second", last)
        );
        assert!(workflow.ended_at_us > 0);
        let steps = store.steps("wf-1").await.expect("steps");
        assert_eq!(
            (
                steps[0].status.as_str(),
                steps[0].completed_seq,
                steps[0].outputs.as_str()
            ),
            ("SUCCEEDED", 1, r#"{"size":3}"#)
        );
        assert_eq!(
            (steps[1].status.as_str(), steps[1].error.as_str()),
            ("FAILED", "NOT_FOUND: src.txt")
        );
        let compensations = store.compensations("wf-1").await.expect("compensations");
        assert_eq!(
            (
                compensations.len(),
                compensations[0].status.as_str(),
                compensations[0].attempts
            ),
            (1, "DONE", 1)
        );

        let events = store.events("wf-1", 0, 100).await.expect("events");
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (1..=last).collect::<Vec<_>>()
        );
        assert_eq!(events[0].kind, "workflow.submitted");
        assert_eq!(
            store
                .events("wf-1", last - 1, 100)
                .await
                .expect("tail")
                .len(),
            1,
            "a watcher resumes from its last seq"
        );

        let report = AuditLog::new(database.clone())
            .verify()
            .await
            .expect("verify");
        assert!(report.intact());
        assert_eq!(
            report.events_checked,
            last,
            "{:?}: one audit entry per event",
            db.backend()
        );

        let missing = store
            .apply("wf-404", actor, &running)
            .await
            .expect_err("unknown");
        assert!(matches!(missing, WorkflowError::NotFound(_)));
        let bad_step = store
            .apply(
                "wf-1",
                actor,
                &Transition::Step {
                    step: "ghost".into(),
                    status: StepStatus::Running,
                    attempt: Some(1),
                    error: String::new(),
                },
            )
            .await;
        assert!(matches!(bad_step, Err(WorkflowError::NotFound(_))));
        database.close().await;
    }
}

#[tokio::test]
async fn leases_fence_writes_and_expired_ones_are_taken_over() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        let (draft, spec) = draft();
        for id in ["wf-1", "wf-2"] {
            store
                .create(id, &draft, &spec, &alice(), None)
                .await
                .expect("create");
        }
        let now = airt_kit::clock::now_micros();
        let later = now + 60_000_000;
        let running = Transition::Workflow {
            status: WorkflowStatus::Running,
            reason: String::new(),
            failed_step: String::new(),
            deliveries: Vec::new(),
        };

        // A holds wf-1: B can neither claim it nor write to it.
        assert!(store.claim("wf-1", "a#1", later).await.expect("claim").held);
        assert!(!store.claim("wf-1", "b#1", later).await.expect("claim").held);
        let fenced = store
            .apply_fenced("wf-1", "service:workflow", "b#1", &running)
            .await;
        assert!(
            matches!(fenced, Err(WorkflowError::LeaseLost(_))),
            "{fenced:?}"
        );
        store
            .apply_fenced("wf-1", "service:workflow", "a#1", &running)
            .await
            .expect("the holder writes");
        assert!(store.renew("wf-1", "a#1", later).await.expect("renew").held);
        assert!(!store.renew("wf-1", "b#1", later).await.expect("renew").held);

        // A cancellation requested anywhere reaches the holder with its lease.
        store
            .request_cancel(
                "wf-1",
                "user:alice",
                &json!({"rollback": true, "reason": "stop"}),
            )
            .await
            .expect("cancel");
        let renewed = store.renew("wf-1", "a#1", later).await.expect("renew");
        assert!(renewed.cancel_request.contains("stop"), "{renewed:?}");

        // A's lease expires: B takes wf-1 over (and the unclaimed wf-2);
        // A's next write is refused.
        assert!(
            store
                .renew("wf-1", "a#1", now - 1)
                .await
                .expect("expire")
                .held
        );
        let mut orphans = store
            .claim_orphans("b#1", later, 10)
            .await
            .expect("orphans");
        orphans.sort();
        assert_eq!(orphans, ["wf-1", "wf-2"]);
        let fenced = store
            .apply_fenced("wf-1", "service:workflow", "a#1", &running)
            .await;
        assert!(
            matches!(fenced, Err(WorkflowError::LeaseLost(_))),
            "{fenced:?}"
        );
        assert!(
            store
                .claim_orphans("c#1", later, 10)
                .await
                .expect("orphans")
                .is_empty(),
            "live leases are not taken"
        );
        // B itself is never offered what it holds; B restarted (same
        // instance, new boot) takes its previous life's leases at once.
        assert!(
            store
                .claim_orphans("b#1", later, 10)
                .await
                .expect("own")
                .is_empty()
        );
        assert_eq!(
            store
                .claim_orphans("b#2", later, 10)
                .await
                .expect("restarted")
                .len(),
            2
        );
        assert!(store.claim("wf-1", "b#3", later).await.expect("claim").held);
        assert!(!store.claim("wf-1", "a#9", later).await.expect("claim").held);
        // A lease of its own that expired (its run stopped on an error) is
        // offered to the same process again (wf-2 comes as a previous boot's).
        assert!(
            store
                .renew("wf-1", "b#3", now - 1)
                .await
                .expect("expire")
                .held
        );
        let mut orphans = store
            .claim_orphans("b#3", later, 10)
            .await
            .expect("own expired");
        orphans.sort();
        assert_eq!(orphans, ["wf-1", "wf-2"]);
        assert!(
            store
                .claim_orphans("b#3", later, 10)
                .await
                .expect("own live")
                .is_empty(),
            "its live leases are not offered"
        );

        // Released (e.g. paused): anyone may claim it.
        store.release("wf-1", "b#3").await.expect("release");
        assert!(store.claim("wf-1", "c#1", later).await.expect("claim").held);
        database.close().await;
    }
}
