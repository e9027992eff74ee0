//! `ListWorkflows` and `ListApprovals` first pages over gRPC with N
//! workflows (default 1,000,000) in PostgreSQL, and each page query's plan.
//!
//! Run: `cd bench && AIRT_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --release --bin list-scale -- [N]`
//!
//! The three services run in this process, the workflow database on a fresh
//! PostgreSQL database. Two workflows are run through the service (one
//! approved and COMPLETED, one PAUSED awaiting approval); their rows —
//! workflow, step, approval — are the templates the table is filled from
//! with `generate_series`: of every 100 workflows 1 is PAUSED with a PENDING
//! approval, 1 FAILED, the rest COMPLETED; every 10th has an APPROVED
//! approval; 1,000 submitters (`user:u0`..`user:u999`) and 20 names
//! (`bench-0`..`bench-19`) in turn. Events and audit entries are not
//! cloned: no list reads them. Each case is then called 200 times in a row
//! (after 20 unmeasured), and its page statement — the text the store runs,
//! from `ListFilter::page_query` / `ApprovalFilter::page_query` — is
//! explained as the store sends it (unnamed, so planned for its values).

use std::time::{Duration, Instant};

use airt_bench::workflows::{Probe, pending_approvals, percentile};
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use sqlx::{Executor as _, Row as _};
use tonic::transport::Channel;
use workflow_service::domain::{ApprovalStatus, WorkflowStatus};
use workflow_service::store::{ApprovalFilter, ListFilter, PageQuery};

const POLICY: &str = "default: DENY\nrules:\n  - {id: gate, when: {capability: sys.info.get_time}, decision: REQUIRE_APPROVAL}\n";
const SPEC: &str = "name: gated\nsteps:\n  - {name: s, capability: sys.info.get_time}\n";
const CALLS: usize = 200;
const PAGE: i32 = 50;

/// A synthetic id that sorts by `g` (below every real UUIDv7).
const ID: &str = "lpad(to_hex(g), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(g), 12, '0')";
const APPROVAL_ID: &str =
    "lpad(to_hex(g), 8, '0') || '-0000-7000-9000-' || lpad(to_hex(g), 12, '0')";

async fn wait_for(probe: &Probe, status: &str, n: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe.count(status).await? < n {
        anyhow::ensure!(Instant::now() < deadline, "no {n} {status} within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Runs one workflow to COMPLETED through an approval, and one to PAUSED:
/// (completed id, paused id).
async fn templates(channel: Channel, probe: &Probe) -> anyhow::Result<(String, String)> {
    let done = airt_bench::workflows::submit(channel.clone(), SPEC).await?;
    wait_for(probe, "PAUSED", 1).await?;
    let (_, approval_id) = pending_approvals(channel.clone()).await?.remove(0);
    ApprovalServiceClient::new(channel.clone())
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id,
                ..Default::default()
            },
            "user:bob",
            &["approver"],
        ))
        .await?;
    wait_for(probe, "COMPLETED", 1).await?;
    let paused = airt_bench::workflows::submit(channel, SPEC).await?;
    wait_for(probe, "PAUSED", 1).await?;
    Ok((done, paused))
}

/// Fills the tables from the two templates (see the module docs).
async fn fill(pool: &sqlx::PgPool, n: i64, done: &str, paused: &str) -> anyhow::Result<()> {
    let series = format!(
        "WITH s AS (SELECT g, {ID} AS id, {APPROVAL_ID} AS aid, \
             CASE WHEN g % 100 = 98 THEN $2 ELSE $3 END AS tid FROM generate_series(1, $1::bigint) g)"
    );
    let workflows = format!(
        "{series} INSERT INTO workflows (workflow_id, name, draft_json, status, submitter, submitter_roles, \
         request_id, owner, failure_reason, failed_step, event_seq, created_at_us, updated_at_us, ended_at_us, \
         lease_owner, lease_expires_at_us, cancel_request, trace_parent) \
         SELECT s.id, 'bench-' || (s.g % 20), t.draft_json, CASE WHEN s.g % 100 = 99 THEN 'FAILED' ELSE t.status END, \
         'user:u' || (s.g % 1000), t.submitter_roles, NULL, t.owner, t.failure_reason, t.failed_step, t.event_seq, \
         t.created_at_us, t.updated_at_us, t.ended_at_us, '', 0, '', '' \
         FROM s JOIN workflows t ON t.workflow_id = s.tid"
    );
    let steps = format!(
        "{series} INSERT INTO workflow_steps (workflow_id, step_name, position, status, attempt, capability_version, \
         risk_level, resolved_inputs, outputs, decision, approval_id, error, undo, completed_seq, started_at_us, ended_at_us) \
         SELECT s.id, t.step_name, t.position, t.status, t.attempt, t.capability_version, t.risk_level, \
         t.resolved_inputs, t.outputs, t.decision, CASE WHEN s.g % 100 = 98 OR s.g % 10 = 0 THEN s.aid ELSE '' END, \
         t.error, t.undo, t.completed_seq, t.started_at_us, t.ended_at_us \
         FROM s JOIN workflow_steps t ON t.workflow_id = s.tid"
    );
    let approvals = format!(
        "{series} INSERT INTO approvals (approval_id, workflow_id, workflow_name, step_name, capability_id, \
         capability_version, risk_level, resolved_inputs, decision, action_digest, approver_roles, message, status, \
         requested_for, decided_by, comment, status_reason, requested_at_us, expires_at_us, decided_at_us) \
         SELECT s.aid, s.id, t.workflow_name, t.step_name, t.capability_id, t.capability_version, t.risk_level, \
         t.resolved_inputs, t.decision, t.action_digest, t.approver_roles, t.message, t.status, \
         'user:u' || (s.g % 1000), t.decided_by, t.comment, t.status_reason, t.requested_at_us, t.expires_at_us, \
         t.decided_at_us FROM s JOIN approvals t ON t.workflow_id = s.tid \
         WHERE s.g % 100 = 98 OR s.g % 10 = 0"
    );
    for sql in [workflows, steps, approvals] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(n)
            .bind(paused)
            .bind(done)
            .execute(pool)
            .await?;
    }
    pool.execute("ANALYZE").await?;
    Ok(())
}

/// One measured case: the call, and the statement it runs.
struct Case {
    label: &'static str,
    call: Call,
    query: PageQuery,
}

enum Call {
    Workflows(
        pb::ListWorkflowsRequest,
        &'static str,
        &'static [&'static str],
    ),
    Approvals(
        pb::ListApprovalsRequest,
        &'static str,
        &'static [&'static str],
    ),
}

fn cases() -> Vec<Case> {
    let workflows = |status: Option<WorkflowStatus>, name: &str, submitter: &str| ListFilter {
        status,
        submitter: submitter.into(),
        name: name.into(),
        owner: String::new(),
    };
    let list = |status: pb::WorkflowStatus, name: &str| pb::ListWorkflowsRequest {
        page_size: PAGE,
        status: status as i32,
        name: name.into(),
        ..Default::default()
    };
    let admin: &[&str] = &["admin"];
    let any = pb::WorkflowStatus::Unspecified;
    vec![
        Case {
            label: "ListWorkflows, admin, no filter",
            call: Call::Workflows(list(any, ""), "user:root", admin),
            query: workflows(None, "", "").page_query(""),
        },
        Case {
            label: "ListWorkflows, admin, status PAUSED (1 %)",
            call: Call::Workflows(list(pb::WorkflowStatus::Paused, ""), "user:root", admin),
            query: workflows(Some(WorkflowStatus::Paused), "", "").page_query(""),
        },
        Case {
            label: "ListWorkflows, admin, name bench-7 (5 %)",
            call: Call::Workflows(list(any, "bench-7"), "user:root", admin),
            query: workflows(None, "bench-7", "").page_query(""),
        },
        Case {
            label: "ListWorkflows, its submitter (user:u7, 0.1 %)",
            call: Call::Workflows(list(any, ""), "user:u7", &[]),
            query: workflows(None, "", "user:u7").page_query(""),
        },
        Case {
            label: "ListWorkflows, its submitter, status FAILED",
            call: Call::Workflows(list(pb::WorkflowStatus::Failed, ""), "user:u7", &[]),
            query: workflows(Some(WorkflowStatus::Failed), "", "user:u7").page_query(""),
        },
        Case {
            label: "ListApprovals, admin, no filter",
            call: Call::Approvals(
                pb::ListApprovalsRequest {
                    page_size: PAGE,
                    ..Default::default()
                },
                "user:root",
                admin,
            ),
            query: ApprovalFilter::default().page_query(""),
        },
        Case {
            label: "ListApprovals, approver, status PENDING (10,000)",
            call: Call::Approvals(
                pb::ListApprovalsRequest {
                    page_size: PAGE,
                    status: pb::ApprovalStatus::Pending as i32,
                    ..Default::default()
                },
                "user:bob",
                &["approver"],
            ),
            query: ApprovalFilter {
                status: Some(ApprovalStatus::Pending),
                workflow_id: String::new(),
            }
            .page_query(""),
        },
        Case {
            label: "ListApprovals, a submitter without a role (sees 0.1 %)",
            call: Call::Approvals(
                pb::ListApprovalsRequest {
                    page_size: PAGE,
                    ..Default::default()
                },
                "user:u7",
                &[],
            ),
            query: ApprovalFilter::default().page_query(""),
        },
    ]
}

/// One call of `call`: the number of rows on the page.
async fn call_once(channel: &Channel, call: &Call) -> anyhow::Result<usize> {
    Ok(match call {
        Call::Workflows(request, who, roles) => WorkflowServiceClient::new(channel.clone())
            .list_workflows(as_principal(request.clone(), who, roles))
            .await?
            .into_inner()
            .workflows
            .len(),
        Call::Approvals(request, who, roles) => ApprovalServiceClient::new(channel.clone())
            .list_approvals(as_principal(request.clone(), who, roles))
            .await?
            .into_inner()
            .approvals
            .len(),
    })
}

/// The plan PostgreSQL runs for `query` as the store sends it (an unnamed
/// statement, planned for its values).
async fn plan(pool: &sqlx::PgPool, query: &PageQuery) -> anyhow::Result<Vec<String>> {
    let explain = format!("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {}", query.sql);
    let mut statement = sqlx::query(sqlx::AssertSqlSafe(explain));
    for param in &query.params {
        statement = statement.bind(param.as_str());
    }
    let rows = statement
        .bind(i64::from(PAGE + 1))
        .persistent(false)
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let db = TestDb::postgres()
        .await
        .ok_or_else(|| anyhow::anyhow!("set AIRT_TEST_POSTGRES_URL"))?;
    let stack = airt_system_tests::Stack::start(db, POLICY).await;
    let channel = stack.workflow.channel().await;
    let probe = Probe::connect(stack.workflow_db_url()).await?;
    let (done, paused) = templates(channel.clone(), &probe).await?;
    let pool = sqlx::PgPool::connect(stack.workflow_db_url()).await?;
    let started = Instant::now();
    fill(&pool, n, &done, &paused).await?;
    println!(
        "filled {n} workflows in {:.0} s\n",
        started.elapsed().as_secs_f64()
    );

    let mut plans = Vec::new();
    println!("| call (page of {PAGE}, N = {n}) | rows | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    for case in cases() {
        let mut rows = 0;
        for _ in 0..20 {
            rows = call_once(&channel, &case.call).await?;
        }
        let mut samples = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            let at = Instant::now();
            call_once(&channel, &case.call).await?;
            samples.push(at.elapsed());
        }
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {} | {rows} | {:.2} ms | {:.2} ms |",
            case.label,
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.99))
        );
        plans.push((case.label, plan(&pool, &case.query).await?));
    }
    for (label, plan) in plans {
        println!("\n{label}:");
        for line in plan {
            println!("    {line}");
        }
    }
    pool.close().await;
    stack.stop().await;
    Ok(())
}
