//! Group commit: several workflows' transitions ready at once share one
//! transaction, and each caller still gets exactly its own outcome.

use airt_kit::Principal;
use airt_kit::audit::AuditLog;
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use workflow_service::domain::{StepStatus, WorkflowDraft, WorkflowStatus, validate_workflow};
use workflow_service::error::WorkflowError;
use workflow_service::store::{EventRow, MIGRATIONS, Transition, WorkflowStore};

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
