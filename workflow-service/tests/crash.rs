//! Crash recovery and replicas, with the real `workflow-service` binary.
//!
//! The registry and policy services run in-process; the workflow service
//! is a child process that is killed with SIGKILL at random moments and
//! started again on the same database. Steps are remote capabilities served
//! by a loopback ledger that records every call with its idempotency key,
//! so the checks see exactly which effects happened, how often and when.
//!
//! `AIRT_CRASH_CYCLES` sets the number of kill/restart cycles (default 20;
//! the README's long run uses 100).

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]
// The harness times real processes (and their recorded calls), never a
// paused tokio clock.
#![allow(clippy::disallowed_types)]

// Submits and reads; it needs no waiting for rest (it settles itself).
#[allow(dead_code)]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use airt_kit::testing::http::{Recorded, Recorder};
use airt_kit::testing::{ServiceProcess, TestDb, TestServer, as_principal};
use airt_proto::audit::v1 as audit;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;

#[path = "crash/kind.rs"]
mod kind;
use kind::Kind;

const BINARY: &str = env!("CARGO_BIN_EXE_workflow-service");
/// Every ledger call takes this long: kills land in the middle of steps.
const STEP_TIME: Duration = Duration::from_millis(200);

const POLICY: &str = "default: DENY\nescalate_high_risk: false\nrules:\n  - {id: allow-ledger, when: {capability: \"ledger.*\"}, decision: ALLOW}\n";

/// A tiny deterministic generator (SplitMix64) for kill moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn between(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        Duration::from_millis(low_ms + self.next() % (high_ms - low_ms))
    }
}

/// The registry and policy services, the ledger capabilities and the policy.
/// Workflows at rest (paused or finished) that still hold a lease: a lease
/// never given up would keep other replicas from resuming them.
async fn leased_at_rest(db: &TestDb) -> i64 {
    let database = airt_kit::db::Database::connect(db.url(), None)
        .await
        .expect("open the workflow database");
    let held = airt_kit::with_pool!(&database, pool => {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM workflows WHERE lease_owner <> '' AND status IN \
             ('PAUSED', 'COMPLETED', 'FAILED', 'ROLLED_BACK', 'COMPENSATION_FAILED', 'CANCELLED')",
        )
        .fetch_one(pool)
        .await
        .expect("count")
    });
    database.close().await;
    held
}

struct World {
    registry: TestServer,
    policy: TestServer,
    ledger: Recorder,
    workspace: tempfile::TempDir,
    _dbs: Vec<TestDb>,
}

impl World {
    async fn start() -> Self {
        let (registry_db, policy_db) = (TestDb::sqlite(), TestDb::sqlite());
        let config = registry_db.dev_config(&registry_service::IDENTITY);
        let registry =
            TestServer::start(move |l, s| registry_service::serve_on(config, l, s)).await;
        let config = policy_db.dev_config(&policy_service::IDENTITY);
        let policy = TestServer::start(move |l, s| policy_service::serve_on(config, l, s)).await;
        let ledger = Recorder::start().await;
        for path in ["/write", "/erase", "/fail"] {
            ledger.delay(path, STEP_TIME);
        }
        ledger.always_answer("/fail", 400);
        let mut registrar = RegistryServiceClient::new(registry.channel().await);
        let undo_by_erase = "{supported: true, strategy: AUTOMATIC, capability_id: ledger.erase}";
        let no_undo = "{supported: false, strategy: NONE}";
        for (id, path, compensation, requires_approval) in [
            ("ledger.write", "/write", undo_by_erase, false),
            ("ledger.guarded", "/write", undo_by_erase, true),
            ("ledger.erase", "/erase", no_undo, false),
            ("ledger.fail", "/fail", no_undo, false),
        ] {
            let spec = format!(
                "id: {id}\nname: {id}\noperation_type: WRITE\nrisk: {{level: LOW, requires_approval: {requires_approval}}}\nside_effects: {{reversible: true, scope: NETWORK}}\n\
                 compensation: {compensation}\n\
                 parameters: [{{name: entry, type: string, required: true}}]\nmetadata: {{version: 1.0.0}}\nhandler: \"http:{}\"\n",
                ledger.url(path)
            );
            registrar
                .register_capability(as_principal(
                    registry::RegisterCapabilityRequest {
                        source: Some(registry::register_capability_request::Source::SpecText(
                            spec,
                        )),
                        ..Default::default()
                    },
                    "user:root",
                    &["admin"],
                ))
                .await
                .expect("register");
        }
        airt_kit::testing::activate_policy(policy.channel().await, POLICY).await;
        Self {
            registry,
            policy,
            ledger,
            workspace: tempfile::tempdir().expect("workspace"),
            _dbs: vec![registry_db, policy_db],
        }
    }

    /// The workflow-service binary on `db` as `instance`.
    fn spawn(&self, db: &TestDb, instance: &str) -> ServiceProcess {
        let (registry, policy) = (self.registry.url(), self.policy.url());
        let workspace = self.workspace.path().to_string_lossy().into_owned();
        ServiceProcess::spawn(
            BINARY,
            db.url(),
            &[
                "--auth-dev-mode",
                "--registry-addr",
                &registry,
                "--policy-addr",
                &policy,
                "--workspace",
                &workspace,
                "--net-allow",
                "127.0.0.1",
                "--instance-id",
                instance,
                "--lease-ttl",
                "2s",
                "--log",
                "warn,airt_kit=info,workflow_service=info",
            ],
        )
    }
}

async fn submit(channel: Channel, kind: Kind) -> String {
    if kind == Kind::Action {
        // Answered at once (no wait): the kill may come while it runs.
        let request = pb::ExecuteActionRequest {
            capability_id: "ledger.write".into(),
            inputs: serde_json::json!({"entry": "a"})
                .as_object()
                .map(airt_kit::json::to_proto_struct),
            request_id: uuid::Uuid::new_v4().to_string(),
            agent: String::new(),
            wait: Some(prost_types::Duration::default()),
        };
        let answer = WorkflowServiceClient::new(channel)
            .execute_action(as_principal(request, "user:alice", &[]))
            .await
            .expect("execute action");
        return answer.into_inner().workflow_id;
    }
    let submitted = common::submit(channel, "user:alice", kind.spec()).await;
    submitted.expect("submit").workflow_id
}

async fn get(channel: Channel, id: &str) -> pb::Workflow {
    common::get(channel, "user:root", &["admin"], id).await
}

fn status(workflow: &pb::Workflow) -> pb::WorkflowStatus {
    pb::WorkflowStatus::try_from(workflow.status).expect("status")
}

/// Waits until every workflow is in the status `expected` gives it.
async fn settle(
    channel: Channel,
    ids: &[(String, Kind)],
    expected: impl Fn(Kind) -> pb::WorkflowStatus,
    within: Duration,
) -> Vec<pb::Workflow> {
    let deadline = Instant::now() + within;
    loop {
        let mut all = Vec::new();
        let mut waiting = Vec::new();
        for (id, kind) in ids {
            let workflow = get(channel.clone(), id).await;
            if status(&workflow) != expected(*kind) {
                waiting.push(format!("{id} {:?} is {:?}", kind, status(&workflow)));
            }
            all.push(workflow);
        }
        if waiting.is_empty() {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {within:?}: {waiting:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Approves every PENDING approval (as `user:bob`); remembers when each
/// workflow's approval was first given.
async fn approve_pending(channel: Channel, approved_at: &mut HashMap<String, Instant>) {
    let mut approvals = ApprovalServiceClient::new(channel);
    let pending = approvals
        .list_approvals(as_principal(
            pb::ListApprovalsRequest {
                status: pb::ApprovalStatus::Pending as i32,
                page_size: 500,
                ..Default::default()
            },
            "user:bob",
            &["approver"],
        ))
        .await
        .expect("inbox")
        .into_inner()
        .approvals;
    for approval in pending {
        approved_at
            .entry(approval.workflow_id.clone())
            .or_insert_with(Instant::now);
        approvals
            .approve_step(as_principal(
                pb::ApproveStepRequest {
                    approval_id: approval.approval_id,
                    ..Default::default()
                },
                "user:bob",
                &["approver"],
            ))
            .await
            .expect("approve");
    }
}

fn key(call: &Recorded) -> String {
    call.headers
        .get("idempotency-key")
        .cloned()
        .unwrap_or_default()
}

/// Calls to `path` by idempotency key, in arrival order. A key called more
/// than once must have a restart between each two calls (`starts`: when
/// each process was started): only a step in flight at a kill may run
/// again, and only in a later process. (Restarts, not kills, bound the
/// check: a request sent just before a kill may be read just after it;
/// the ledger is drained after each kill, so it is read before the next
/// start.)
/// Returns how many repeated calls there were.
fn effects(
    ledger: &Recorder,
    path: &str,
    starts: &[Instant],
) -> (HashMap<String, Vec<Instant>>, usize) {
    let mut by_key: HashMap<String, Vec<Instant>> = HashMap::new();
    for call in ledger.requests(path) {
        by_key.entry(key(&call)).or_default().push(call.at);
    }
    let mut repeats = 0;
    for (key, calls) in &by_key {
        for pair in calls.windows(2) {
            repeats += 1;
            assert!(
                starts.iter().any(|s| pair[0] <= *s && *s <= pair[1]),
                "{path} {key} ran twice in one process: calls at {:?} and {:?} after the first \
                 start, starts at {:?}",
                pair[0].duration_since(starts[0]),
                pair[1].duration_since(starts[0]),
                starts
                    .iter()
                    .map(|s| s.duration_since(starts[0]))
                    .filter(|s| *s + Duration::from_secs(5) >= pair[0].duration_since(starts[0]))
                    .take(4)
                    .collect::<Vec<_>>(),
            );
        }
    }
    (by_key, repeats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_survive_kill_9_at_random_moments() {
    let cycles: usize = std::env::var("AIRT_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let world = World::start().await;
    let db = TestDb::sqlite();
    let mut rng = Rng(0x00a1_2b3c);
    let mut ids: Vec<(String, Kind)> = Vec::new();
    let mut starts = Vec::new();
    // New workflows in every cycle but the last two, so each kill finds
    // work in every phase: deciding, executing, compensating, paused.
    const PER_CYCLE: usize = 4;
    let submitting_cycles = cycles.saturating_sub(2).max(1);

    let mut approved_at: HashMap<String, Instant> = HashMap::new();
    for cycle in 0..cycles {
        starts.push(Instant::now());
        let service = world.spawn(&db, "crash-test");
        let channel = service.channel().await;
        if cycle < submitting_cycles {
            for _ in 0..PER_CYCLE {
                let kind = Kind::of(ids.len());
                ids.push((submit(channel.clone(), kind).await, kind));
            }
        }
        // Approvals are given while kills go on: approved steps are
        // interrupted too.
        tokio::time::sleep(rng.between(50, 400)).await;
        approve_pending(channel, &mut approved_at).await;
        tokio::time::sleep(rng.between(50, 900)).await;
        service.kill();
        // Whatever the killed process sent is recorded before the next
        // start, so each call falls on the right side of it.
        world.ledger.drain(Duration::from_secs(10)).await;
    }

    // The last start: everything reaches its end, approvals given as they come.
    starts.push(Instant::now());
    let service = world.spawn(&db, "crash-test");
    let channel = service.channel().await;
    let finished = |kind| match kind {
        Kind::Failing => pb::WorkflowStatus::RolledBack,
        _ => pb::WorkflowStatus::Completed,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        approve_pending(channel.clone(), &mut approved_at).await;
        let mut open = 0;
        for (id, kind) in &ids {
            if status(&get(channel.clone(), id).await) != finished(*kind) {
                open += 1;
            }
        }
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} workflows did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let workflows = settle(channel.clone(), &ids, finished, Duration::from_secs(60)).await;

    for kind in [
        Kind::Chain,
        Kind::Failing,
        Kind::Approval,
        Kind::Guarded,
        Kind::Action,
    ] {
        assert!(ids.iter().any(|(_, k)| *k == kind), "no {kind:?} workflow");
    }

    // Effects: each step's effect exactly once, except a step in flight at a
    // kill, which ran again with the same idempotency key.
    let (writes, repeated_writes) = effects(&world.ledger, "/write", &starts);
    let (erases, repeated_erases) = effects(&world.ledger, "/erase", &starts);
    for ((id, kind), workflow) in ids.iter().zip(&workflows) {
        let written: &[&str] = match kind {
            Kind::Chain => &["w1", "w2", "w3"],
            Kind::Failing | Kind::Approval | Kind::Guarded => &["w1", "w2"],
            Kind::Action => &["action"],
        };
        for step in written {
            assert!(
                writes.contains_key(&format!("{id}/{step}")),
                "{id}/{step} never ran"
            );
        }
        let undone: Vec<&str> = match kind {
            Kind::Failing => vec!["w2", "w1"],
            _ => vec![],
        };
        let erased: Vec<&String> = erases
            .keys()
            .filter(|k| k.starts_with(id.as_str()))
            .collect();
        assert_eq!(
            erased.len(),
            undone.len(),
            "{id} {kind:?}: erased {erased:?}"
        );
        if *kind == Kind::Failing {
            // Reverse completion order; each compensation DONE exactly once.
            let first = |step: &str| erases[&format!("{id}/{step}/compensation")][0];
            assert!(first("w2") < first("w1"), "{id}: w2 is undone before w1");
            let records: Vec<(&str, i32, i32)> = workflow
                .compensations
                .iter()
                .map(|c| (c.step_name.as_str(), c.order, c.status))
                .collect();
            let done = pb::CompensationStatus::Done as i32;
            assert_eq!(records, [("w2", 1, done), ("w1", 2, done)], "{id}");
            assert_eq!(workflow.failed_step, "boom", "{id}");
        }
        if kind.needs_approval() {
            // Executed only after the approval, and a crash while executing
            // the approved step never asked for another approval.
            let guarded = if *kind == Kind::Approval { "w2" } else { "w1" };
            let first = writes[&format!("{id}/{guarded}")][0];
            assert!(
                first > approved_at[id],
                "{id}: {guarded} ran before its approval"
            );
            let all = ApprovalServiceClient::new(channel.clone())
                .list_approvals(as_principal(
                    pb::ListApprovalsRequest {
                        workflow_id: id.clone(),
                        ..Default::default()
                    },
                    "user:bob",
                    &["approver"],
                ))
                .await
                .expect("approvals")
                .into_inner()
                .approvals;
            let statuses: Vec<i32> = all.iter().map(|a| a.status).collect();
            assert_eq!(
                statuses,
                [pb::ApprovalStatus::Approved as i32],
                "{id} {kind:?}"
            );
        }
    }
    eprintln!(
        "{cycles} kill -9 cycles, {} workflows: {repeated_writes} step and {repeated_erases} compensation re-executions, all across a crash",
        ids.len()
    );

    let report = AuditServiceClient::new(channel)
        .verify_audit_chain(as_principal(
            audit::VerifyAuditChainRequest {},
            "user:root",
            &["auditor"],
        ))
        .await
        .expect("verify")
        .into_inner();
    assert!(report.intact, "{report:?}");
    service.kill();
    assert_eq!(
        leased_at_rest(&db).await,
        0,
        "paused and finished workflows hold no lease"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_postgres_and_take_over_a_dead_one() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("SKIPPED PostgreSQL case (set AIRT_TEST_POSTGRES_URL)");
        return;
    };
    const WORKFLOWS: usize = 200;
    const LEASE_TTL: Duration = Duration::from_secs(2);
    let world = World::start().await;
    let mut replicas: Vec<Option<ServiceProcess>> = (0..3)
        .map(|i| Some(world.spawn(&db, &format!("replica-{i}"))))
        .collect();
    let mut channels = Vec::new();
    for replica in replicas.iter().flatten() {
        channels.push(replica.channel().await);
    }

    // Spread over the three replicas.
    let mut ids = Vec::new();
    for i in 0..WORKFLOWS {
        ids.push((
            submit(channels[i % 3].clone(), Kind::Chain).await,
            Kind::Chain,
        ));
    }
    // Replica 0 dies with work in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_at = Instant::now();
    replicas[0].take().expect("replica 0").kill();
    let done = |_| pb::WorkflowStatus::Completed;
    settle(
        channels[1].clone(),
        &ids,
        done,
        LEASE_TTL + Duration::from_secs(30),
    )
    .await;
    eprintln!(
        "{WORKFLOWS} workflows on 3 replicas, one killed: all completed {:.1} s after the kill",
        killed_at.elapsed().as_secs_f64()
    );

    // Every step ran; a step ran twice only if it was in flight on the
    // killed replica and was taken over after its lease expired; the steps
    // of one workflow never overlapped (no workflow ran on two replicas at once).
    let mut by_workflow: HashMap<String, Vec<Recorded>> = HashMap::new();
    for call in world.ledger.requests("/write") {
        let workflow = key(&call).split('/').next().unwrap_or_default().to_owned();
        by_workflow.entry(workflow).or_default().push(call);
    }
    let mut taken_over = 0;
    for (id, _) in &ids {
        let calls = by_workflow.get(id).map(Vec::as_slice).unwrap_or_default();
        for step in ["w1", "w2", "w3"] {
            let runs: Vec<&Recorded> = calls
                .iter()
                .filter(|c| key(c) == format!("{id}/{step}"))
                .collect();
            assert!(!runs.is_empty(), "{id}/{step} never ran");
            for pair in runs.windows(2) {
                taken_over += 1;
                assert!(
                    pair[0].at <= killed_at + Duration::from_millis(100)
                        && pair[1].at >= killed_at + LEASE_TTL / 2,
                    "{id}/{step} ran twice, not as a take-over after the kill"
                );
            }
        }
        for pair in calls.windows(2) {
            assert!(
                pair[1].at >= pair[0].at + STEP_TIME,
                "{id}: {} and {} overlapped",
                key(&pair[0]),
                key(&pair[1])
            );
        }
    }
    eprintln!("{taken_over} steps in flight on the killed replica ran again elsewhere");
    assert_eq!(
        leased_at_rest(&db).await,
        0,
        "finished workflows hold no lease"
    );

    let report = AuditServiceClient::new(channels[1].clone())
        .verify_audit_chain(as_principal(
            audit::VerifyAuditChainRequest {},
            "user:root",
            &["auditor"],
        ))
        .await
        .expect("verify")
        .into_inner();
    assert!(report.intact, "{report:?}");
}
