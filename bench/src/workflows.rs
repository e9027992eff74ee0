//! What the workflow benchmarks share: a chain of K quick steps, and a
//! probe that reads the workflow service's database (statuses, and each
//! step's time from the workflow's event log).

use std::time::Duration;

use airt_kit::testing::as_principal;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;

/// A chain of `k` steps of `sys.info.get_time` (a built-in whose handler
/// takes microseconds), so a step's time is the runtime's own overhead.
pub fn chain_spec(k: usize) -> String {
    let mut text = String::from("name: bench\noptions: {preflight: false}\nsteps:\n");
    for i in 0..k {
        let depends = if i == 0 {
            String::new()
        } else {
            format!(", depends_on: [s{}]", i - 1)
        };
        text.push_str(&format!(
            "  - {{name: s{i}, capability: sys.info.get_time{depends}}}\n"
        ));
    }
    text
}

/// Submits `text` as `user:bench`; the new workflow's id.
pub async fn submit(channel: Channel, text: &str) -> anyhow::Result<String> {
    Ok(WorkflowServiceClient::new(channel)
        .submit_workflow(as_principal(
            pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(text.into())),
                request_id: String::new(),
            },
            "user:bench",
            &[],
        ))
        .await?
        .into_inner()
        .workflow
        .map(|w| w.workflow_id)
        .unwrap_or_default())
}

/// Every pending approval, as `user:bob` (an approver) lists them:
/// (workflow id, approval id).
pub async fn pending_approvals(channel: Channel) -> anyhow::Result<Vec<(String, String)>> {
    let mut approvals = ApprovalServiceClient::new(channel);
    let mut pending = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = approvals
            .list_approvals(as_principal(
                pb::ListApprovalsRequest {
                    status: pb::ApprovalStatus::Pending as i32,
                    page_size: 500,
                    page_token,
                    ..Default::default()
                },
                "user:bob",
                &["approver"],
            ))
            .await?
            .into_inner();
        pending.extend(
            page.approvals
                .into_iter()
                .map(|a| (a.workflow_id, a.approval_id)),
        );
        if page.next_page_token.is_empty() {
            return Ok(pending);
        }
        page_token = page.next_page_token;
    }
}

/// The workflow database a benchmark asked for: PostgreSQL with
/// `--postgres` among `args` (from `AIRT_TEST_POSTGRES_URL`), else SQLite.
pub async fn workflow_db(args: &[String]) -> anyhow::Result<airt_kit::testing::TestDb> {
    use airt_kit::testing::TestDb;
    if args.iter().any(|a| a == "--postgres") {
        TestDb::postgres()
            .await
            .ok_or_else(|| anyhow::anyhow!("set AIRT_TEST_POSTGRES_URL"))
    } else {
        Ok(TestDb::sqlite())
    }
}

/// The value at quantile `p` of sorted samples.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// Reads the workflow database directly (status counts and event times).
pub struct Probe(pub airt_kit::db::Database);

impl Probe {
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        Ok(Self(airt_kit::db::Database::connect(url, None).await?))
    }

    pub async fn count(&self, status: &str) -> anyhow::Result<i64> {
        Ok(airt_kit::with_pool!(&self.0, pool => {
            sqlx::query_scalar("SELECT COUNT(*) FROM workflows WHERE status = $1").bind(status).fetch_one(pool).await?
        }))
    }

    pub async fn status(&self, id: &str) -> anyhow::Result<String> {
        Ok(airt_kit::with_pool!(&self.0, pool => {
            sqlx::query_scalar("SELECT status FROM workflows WHERE workflow_id = $1").bind(id).fetch_one(pool).await?
        }))
    }

    /// Waits until the workflow is COMPLETED (an error if it ends otherwise).
    pub async fn until_completed(&self, id: &str) -> anyhow::Result<()> {
        loop {
            match self.status(id).await?.as_str() {
                "COMPLETED" => return Ok(()),
                "PENDING" | "RUNNING" => tokio::time::sleep(Duration::from_micros(500)).await,
                other => anyhow::bail!("workflow {id} ended {other}"),
            }
        }
    }

    /// Per-step times of one finished workflow: between a step's SUCCEEDED
    /// event and the previous one's (or the workflow's RUNNING event).
    pub async fn step_times(&self, id: &str) -> anyhow::Result<Vec<Duration>> {
        let events: Vec<(String, String, i64)> = airt_kit::with_pool!(&self.0, pool => {
            sqlx::query_as("SELECT kind, detail, occurred_at_us FROM workflow_events WHERE workflow_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(pool)
                .await?
        });
        let mut last = None;
        let mut times = Vec::new();
        for (kind, detail, at) in events {
            if kind == "workflow.status" && detail.contains("\"RUNNING\"") {
                last = Some(at);
            } else if kind == "step.succeeded"
                && let Some(previous) = last
            {
                times.push(Duration::from_micros(u64::try_from(at - previous)?));
                last = Some(at);
            }
        }
        Ok(times)
    }
}
