//! Group commit: several workflows' transitions ready at once share one
//! transaction, and each caller still gets exactly its own outcome; a
//! change from outside the driver may take the lease in its statement.

use airt_kit::Principal;
use airt_kit::audit::AuditLog;
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use workflow_service::domain::{
    ApprovalStatus, StepStatus, WorkflowDraft, WorkflowStatus, validate_workflow,
};
use workflow_service::error::WorkflowError;
use workflow_service::store::{
    ApprovalRow, EventRow, Lease, LeaseClaim, MIGRATIONS, Transition, WorkflowStore,
};

const ONE_STEP: &str = "name: single\nsteps:\n  - {name: only, capability: sys.info.get_time}\n";
const ACTOR: &str = "service:workflow";

fn running() -> Transition {
    Transition::Workflow {
        status: WorkflowStatus::Running,
        reason: String::new(),
        failed_step: String::new(),
        deliveries: Vec::new(),
    }
}

fn step(name: &str, status: StepStatus) -> Transition {
    Transition::Step {
        step: name.to_owned(),
        status,
        attempt: Some(1),
        error: String::new(),
    }
}

async fn stored(db: &TestDb, ids: &[&str]) -> (Database, WorkflowStore) {
    let database = Database::connect(db.url(), Some(MIGRATIONS))
        .await
        .expect("connect");
    let store = WorkflowStore::new(database.clone());
    let draft = WorkflowDraft::from_text(ONE_STEP).expect("parses");
    let spec = validate_workflow(&draft).expect("valid");
    let alice = Principal::new("user", "alice", vec![]);
    for id in ids {
        store
            .create(id, &draft, &spec, &alice, None)
            .await
            .expect("create");
    }
    (database, store)
}

async fn last_event(store: &WorkflowStore, id: &str) -> EventRow {
    let mut events = store.events(id, 0, 100).await.expect("events");
    events.pop().expect("an event")
}

#[tokio::test]
async fn a_batch_commits_together_and_answers_each_caller_alone() {
    for db in TestDb::all().await {
        let ids = ["wf-1", "wf-2", "wf-3", "wf-4", "wf-5"];
        let (database, store) = stored(&db, &ids).await;
        let later = airt_kit::clock::now_micros() + 60_000_000;
        assert!(store.claim("wf-1", "a#1", later).await.expect("claim").held);

        // Queued together (one task polls them all before the writer runs):
        // a lost lease and an unknown workflow fail alone, nothing of theirs
        // written; the other three commit in one transaction.
        let (lost, missing, two, three, five) = tokio::join!(
            store.apply_all("wf-1", ACTOR, "b#1", vec![running()]),
            store.apply_all("wf-none", ACTOR, "", vec![running()]),
            store.apply_all("wf-2", ACTOR, "", vec![running()]),
            store.apply_all(
                "wf-3",
                ACTOR,
                "",
                vec![running(), step("only", StepStatus::Running)]
            ),
            store.apply_all("wf-5", ACTOR, "", vec![running()]),
        );
        assert!(matches!(lost, Err(WorkflowError::LeaseLost(_))), "{lost:?}");
        assert!(
            matches!(missing, Err(WorkflowError::NotFound(_))),
            "{missing:?}"
        );
        assert_eq!(
            (
                two.expect("wf-2"),
                three.expect("wf-3"),
                five.expect("wf-5")
            ),
            (2, 3, 2)
        );
        let committed = [
            last_event(&store, "wf-2").await,
            last_event(&store, "wf-3").await,
            last_event(&store, "wf-5").await,
        ];
        assert!(
            committed
                .iter()
                .all(|e| e.occurred_at_us == committed[0].occurred_at_us),
            "one transaction: {committed:?}"
        );
        assert_eq!(
            store
                .get("wf-1")
                .await
                .expect("get")
                .expect("wf-1")
                .event_seq,
            1
        );
        assert_eq!(
            store.steps("wf-3").await.expect("steps")[0]
                .status()
                .expect("status"),
            StepStatus::Running
        );

        // A write that fails inside the batch (wf-4 has no such step) rolls
        // it back; the others are written again alone and commit.
        let (bad, good) = tokio::join!(
            store.apply_all(
                "wf-4",
                ACTOR,
                "",
                vec![running(), step("absent", StepStatus::Running)]
            ),
            store.apply_all("wf-5", ACTOR, "", vec![step("only", StepStatus::Running)]),
        );
        assert!(
            matches!(bad, Err(WorkflowError::NotFound(ref what)) if what == "wf-4/absent"),
            "{bad:?}"
        );
        assert_eq!(good.expect("wf-5"), 3);
        let wf4 = store.get("wf-4").await.expect("get").expect("wf-4");
        assert_eq!(
            (wf4.event_seq, wf4.status().expect("status")),
            (1, WorkflowStatus::Pending)
        );

        // Five submissions and the five transitions that committed, chained.
        let audit = AuditLog::new(database.clone());
        assert_eq!(audit.length().await.expect("length"), 10);
        assert!(audit.verify().await.expect("verify").intact());

        // The database gone: every caller of the batch is told so (retry
        // later), none waits for ever.
        database.close().await;
        let (one, two) = tokio::join!(
            store.apply_all("wf-2", ACTOR, "", vec![step("only", StepStatus::Running)]),
            store.apply_all("wf-3", ACTOR, "", vec![step("only", StepStatus::Running)]),
        );
        for result in [one, two] {
            let status = tonic::Status::from(result.expect_err("no database"));
            assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        }
    }
}

#[tokio::test]
async fn submissions_share_a_batch_and_a_repeated_request_id_names_one_workflow() {
    for db in TestDb::all().await {
        let (database, store) = stored(&db, &[]).await;
        let draft = WorkflowDraft::from_text(ONE_STEP).expect("parses");
        let spec = validate_workflow(&draft).expect("valid");
        let alice = Principal::new("user", "alice", vec![]);
        // Queued together: the later use of req-1 fails inside the batch
        // (unique request id), the batch is written again one by one, and
        // that call answers with the workflow the other created.
        let (one, two, other) = tokio::join!(
            store.create("wf-a", &draft, &spec, &alice, Some("req-1")),
            store.create("wf-b", &draft, &spec, &alice, Some("req-1")),
            store.create("wf-c", &draft, &spec, &alice, None),
        );
        let (one, two, other) = (one.expect("a"), two.expect("b"), other.expect("c"));
        assert_eq!(
            one.0.workflow_id, two.0.workflow_id,
            "one workflow per request id"
        );
        assert!(one.1 != two.1, "exactly one created: {one:?} {two:?}");
        let created = if one.1 { &one } else { &two };
        assert!(other.1);
        // Each created row is the row stored, with its one event.
        for (row, _) in [created, &other] {
            let stored = store.get(&row.workflow_id).await.expect("get");
            assert_eq!(Some(row), stored.as_ref());
            assert_eq!(
                last_event(&store, &row.workflow_id).await.kind,
                "workflow.submitted"
            );
        }
        let loser = if created.0.workflow_id == "wf-a" {
            "wf-b"
        } else {
            "wf-a"
        };
        assert_eq!(store.get(loser).await.expect("get"), None);
        let audit = AuditLog::new(database.clone());
        assert_eq!(audit.length().await.expect("length"), 2);
        assert!(audit.verify().await.expect("verify").intact());
        database.close().await;
    }
}

fn claim(owner: &str, until_us: i64) -> Option<LeaseClaim> {
    Some(LeaseClaim {
        owner: owner.to_owned(),
        until_us,
    })
}

fn held(cancel_request: &str) -> Option<Lease> {
    Some(Lease {
        held: true,
        cancel_request: cancel_request.to_owned(),
    })
}

#[tokio::test]
async fn a_change_from_outside_takes_the_lease_only_where_a_claim_would() {
    for db in TestDb::all().await {
        let ids = ["wf-1", "wf-2", "wf-3"];
        let (database, store) = stored(&db, &ids).await;
        let later = airt_kit::clock::now_micros() + 60_000_000;

        // A free lease is taken with the change; its holder's fence passes
        // and another instance can no longer claim it.
        let committed = store
            .apply_with("wf-1", "user:bob", "", claim("a#2", later), vec![running()])
            .await
            .expect("claiming change");
        assert_eq!(committed.lease, held(""));
        let event = last_event(&store, "wf-1").await;
        assert_eq!(
            (committed.last_seq, committed.at_us),
            (event.seq, event.occurred_at_us)
        );
        store
            .apply_all(
                "wf-1",
                ACTOR,
                "a#2",
                vec![step("only", StepStatus::Running)],
            )
            .await
            .expect("the claimant drives it");
        assert!(!store.claim("wf-1", "b#1", later).await.expect("claim").held);

        // Another instance's live lease stays its own; the change is still
        // written, unfenced.
        assert!(store.claim("wf-2", "b#1", later).await.expect("claim").held);
        let committed = store
            .apply_with("wf-2", "user:bob", "", claim("a#2", later), vec![running()])
            .await
            .expect("change");
        assert_eq!(committed.lease.map(|l| l.held), Some(false));
        assert_eq!(last_event(&store, "wf-2").await.seq, committed.last_seq);
        store
            .apply_all(
                "wf-2",
                ACTOR,
                "b#1",
                vec![step("only", StepStatus::Running)],
            )
            .await
            .expect("still b's");

        // A previous life of the same instance holds it: taken at once, with
        // the cancellation requested meanwhile.
        assert!(store.claim("wf-3", "a#1", later).await.expect("claim").held);
        store
            .request_cancel("wf-3", "user:alice", &serde_json::json!({"reason": "stop"}))
            .await
            .expect("cancel");
        let committed = store
            .apply_with("wf-3", "user:bob", "", claim("a#2", later), vec![running()])
            .await
            .expect("claiming change");
        assert_eq!(committed.lease, held(r#"{"reason":"stop"}"#));

        // A claim never rides with a fence; an unknown workflow is not found.
        let fenced = store
            .apply_with("wf-1", ACTOR, "a#2", claim("a#2", later), vec![running()])
            .await;
        assert!(
            matches!(fenced, Err(WorkflowError::Corrupt(_))),
            "{fenced:?}"
        );
        let missing = store
            .apply_with("wf-9", ACTOR, "", claim("a#2", later), vec![running()])
            .await;
        assert!(
            matches!(missing, Err(WorkflowError::NotFound(_))),
            "{missing:?}"
        );
        database.close().await;
    }
}

fn approval(workflow_id: &str, approval_id: &str) -> ApprovalRow {
    let now = airt_kit::clock::now_micros();
    ApprovalRow {
        approval_id: approval_id.to_owned(),
        workflow_id: workflow_id.to_owned(),
        workflow_name: "single".into(),
        step_name: "only".into(),
        capability_id: "sys.info.get_time".into(),
        capability_version: "1.0.0".into(),
        risk_level: "LOW".into(),
        resolved_inputs: "{}".into(),
        decision: "{}".into(),
        action_digest: "0".repeat(64),
        approver_roles: r#"["approver"]"#.into(),
        message: "may it?".into(),
        status: ApprovalStatus::Pending.as_str().to_owned(),
        requested_for: "user:alice".into(),
        decided_by: String::new(),
        comment: String::new(),
        status_reason: String::new(),
        requested_at_us: now,
        expires_at_us: now + 60_000_000,
        decided_at_us: 0,
    }
}

#[tokio::test]
async fn a_decided_workflow_claimed_before_a_restart_is_resumed_by_the_same_instance() {
    for db in TestDb::all().await {
        let (database, store) = stored(&db, &["wf-1"]).await;
        let later = airt_kit::clock::now_micros() + 60_000_000;
        assert!(store.claim("wf-1", "a#1", later).await.expect("claim").held);
        let paused = Transition::Workflow {
            status: WorkflowStatus::Paused,
            reason: String::new(),
            failed_step: String::new(),
            deliveries: Vec::new(),
        };
        let requested = Transition::ApprovalRequested {
            step: "only".into(),
            approval: Box::new(approval("wf-1", "ap-1")),
            deliveries: Vec::new(),
        };
        store
            .apply_all("wf-1", ACTOR, "a#1", vec![requested, paused])
            .await
            .expect("paused");
        // Pending: nothing to resume.
        assert!(
            store
                .decided_paused("a#1", 10)
                .await
                .expect("scan")
                .is_empty()
        );

        // The decision claims it for a#1, which dies before resuming it.
        let decided = Transition::ApprovalDecided {
            step: "only".into(),
            approval_id: "ap-1".into(),
            status: ApprovalStatus::Approved,
            decided_by: "user:bob".into(),
            comment: String::new(),
            deliveries: Vec::new(),
        };
        let committed = store
            .apply_with("wf-1", "user:bob", "", claim("a#1", later), vec![decided])
            .await
            .expect("decided");
        assert_eq!(committed.lease, held(""));
        let row = store.approval("ap-1").await.expect("read").expect("ap-1");
        assert_eq!(row.decided_at_us, committed.at_us);
        // Its next life resumes it at once; another instance waits for the
        // lease to expire.
        assert_eq!(
            store.decided_paused("a#2", 10).await.expect("scan"),
            ["wf-1"]
        );
        assert!(
            store
                .decided_paused("b#1", 10)
                .await
                .expect("scan")
                .is_empty()
        );
        database.close().await;
    }
}
