//! Memory and scale of the workflow service: the real binary's resident
//! memory idle, with N workflows paused for an approval, and with W
//! `WatchWorkflow` streams open; then every approval given at once: how fast
//! the paused workflows drain, and how long after a workflow's final event
//! was recorded each watcher sees it.
//!
//! Run: `cargo build --release -p workflow-service && cd bench && cargo run
//! --release --bin scale -- [N] [W] [--postgres]` (defaults 10,000 and
//! 1,000; `--postgres` puts the workflow database on `AIRT_TEST_POSTGRES_URL`).
//!
//! The registry and the policy service run in this process; the policy asks
//! for an approval on every `sys.info.get_time` step, so each one-step
//! workflow pauses. Submissions and approvals come from 16 concurrent
//! clients. Resident memory is `VmRSS` of the workflow-service process.

use std::time::{Duration, Instant, SystemTime};

use airt_bench::workflows::{Probe, pending_approvals, percentile, workflow_db};
use airt_kit::testing::{ServiceProcess, TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;

const POLICY: &str = "default: DENY\nrules:\n  - {id: gate, when: {capability: sys.info.get_time}, decision: REQUIRE_APPROVAL}\n";
const SPEC: &str = "name: gated\nsteps:\n  - {name: s, capability: sys.info.get_time}\n";
const CLIENTS: usize = 16;
/// Watched workflows approved one at a time before the others.
const LOW: usize = 100;

/// p50, p99 and max of sorted delays.
fn spread(sorted: &[Duration]) -> String {
    if sorted.is_empty() {
        return "–".into();
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99)),
        ms(sorted[sorted.len() - 1])
    )
}

/// Resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Runs `work(i)` for i in 0..n on `CLIENTS` concurrent tasks.
async fn fan_out<F, Fut>(n: usize, work: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let work = work.clone();
        tasks.push(tokio::spawn(async move {
            for i in (client..n).step_by(CLIENTS) {
                work(i).await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn submit_all(channel: Channel, n: usize) -> anyhow::Result<Vec<String>> {
    let ids = std::sync::Arc::new(std::sync::Mutex::new(vec![String::new(); n]));
    let kept = ids.clone();
    fan_out(n, move |i| {
        let (channel, ids) = (channel.clone(), kept.clone());
        async move {
            let id = airt_bench::workflows::submit(channel, SPEC).await?;
            ids.lock().expect("ids")[i] = id;
            Ok(())
        }
    })
    .await?;
    let ids = std::mem::take(&mut *ids.lock().expect("ids"));
    Ok(ids)
}

/// Watches `id` until it is COMPLETED: how long after its final event was
/// recorded this watcher received it.
async fn watch(channel: Channel, id: String) -> anyhow::Result<Duration> {
    let mut stream = WorkflowServiceClient::new(channel)
        .watch_workflow(as_principal(
            pb::WatchWorkflowRequest {
                workflow_id: id,
                after_sequence: 0,
            },
            "user:bench",
            &[],
        ))
        .await?
        .into_inner();
    while let Some(update) = stream.message().await? {
        let received = SystemTime::now();
        let done = update
            .workflow
            .as_ref()
            .is_some_and(|w| w.status == pb::WorkflowStatus::Completed as i32);
        if let (true, Some(last)) = (done, update.events.last()) {
            let at = last.occur_time.unwrap_or_default();
            let recorded = SystemTime::UNIX_EPOCH
                + Duration::new(u64::try_from(at.seconds)?, u32::try_from(at.nanos)?);
            return Ok(received.duration_since(recorded).unwrap_or_default());
        }
    }
    anyhow::bail!("the stream ended before the workflow completed")
}

async fn approve(channel: Channel, approval_id: String) -> anyhow::Result<()> {
    ApprovalServiceClient::new(channel)
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id,
                comment: String::new(),
                request_id: String::new(),
            },
            "user:bob",
            &["approver"],
        ))
        .await?;
    Ok(())
}

async fn until(probe: &Probe, status: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    while probe.count(status).await? < i64::try_from(n)? {
        anyhow::ensure!(Instant::now() < deadline, "not {n} {status} within 15 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (n, w) = (
        numbers.first().copied().unwrap_or(10_000),
        numbers.get(1).copied().unwrap_or(1_000),
    );
    anyhow::ensure!(w <= n, "watchers ({w}) watch paused workflows ({n})");
    let binary = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/release/workflow-service"
    );
    anyhow::ensure!(
        std::path::Path::new(binary).exists(),
        "{binary} not found: cargo build --release -p workflow-service"
    );
    let db = workflow_db(&args).await?;
    let (registry_db, policy_db) = (TestDb::sqlite(), TestDb::sqlite());
    let registry = airt_system_tests::start_registry(&registry_db).await;
    let policy = airt_system_tests::start_policy(&policy_db).await;
    airt_kit::testing::activate_policy(policy.channel().await, POLICY).await;
    let workspace = tempfile::tempdir()?;
    let (registry_url, policy_url) = (registry.url(), policy.url());
    let workspace_path = workspace.path().to_string_lossy().into_owned();
    // One client holds all W streams: the per-principal limit (64 by
    // default) raised to W, as an operator would for a dashboard.
    let per_principal = w.max(64).to_string();
    let service = ServiceProcess::spawn(
        binary,
        db.url(),
        &[
            "--auth-dev-mode",
            "--registry-addr",
            &registry_url,
            "--policy-addr",
            &policy_url,
            "--workspace",
            &workspace_path,
            "--max-watchers-per-principal",
            &per_principal,
            "--log",
            "warn,airt_kit=info",
        ],
    );
    let pid = service.pid();
    let channel = service.channel().await;
    let probe = Probe::connect(db.url()).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_mib(pid);

    let started = Instant::now();
    let ids = submit_all(channel.clone(), n).await?;
    until(&probe, "PAUSED", n).await?;
    let paused_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let paused = rss_mib(pid);

    let watchers: Vec<_> = ids[..w]
        .iter()
        .map(|id| tokio::spawn(watch(channel.clone(), id.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let watched = rss_mib(pid);

    let mut pending = pending_approvals(channel.clone()).await?;
    anyhow::ensure!(pending.len() == n, "{} of {n} pending", pending.len());
    // At low load first: the first LOW watched workflows approved one at a
    // time, each watcher awaited before the next approval.
    let low = w.min(LOW);
    let mut watchers = watchers.into_iter();
    let mut quiet = Vec::with_capacity(low);
    for id in &ids[..low] {
        let at = pending
            .iter()
            .position(|(workflow, _)| workflow == id)
            .ok_or_else(|| anyhow::anyhow!("no approval for {id}"))?;
        let (_, approval_id) = pending.swap_remove(at);
        approve(channel.clone(), approval_id).await?;
        quiet.push(watchers.next().expect("a watcher per id").await??);
    }
    quiet.sort_unstable();
    // Then every other approval at once.
    let rest = pending.len();
    let pending = std::sync::Arc::new(pending);
    let started = Instant::now();
    let approver = channel.clone();
    fan_out(rest, move |i| {
        let (channel, pending) = (approver.clone(), pending.clone());
        async move { approve(channel, pending[i].1.clone()).await }
    })
    .await?;
    until(&probe, "COMPLETED", n).await?;
    let drained_in = started.elapsed();
    let mut delays = Vec::with_capacity(w);
    for watcher in watchers {
        delays.push(watcher.await??);
    }
    delays.sort_unstable();
    let after = rss_mib(pid);
    service.terminate(Duration::from_secs(20)).await;

    let backend = if db.url().starts_with("postgres") {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!("| measurement ({backend}, N = {n}, W = {w}) | result |");
    println!("|---|---:|");
    println!("| workflow-service RSS idle | {idle:.1} MiB |");
    println!(
        "| {n} workflows submitted and paused | {:.1} s ({:.0}/s) |",
        paused_in.as_secs_f64(),
        n as f64 / paused_in.as_secs_f64()
    );
    println!("| RSS with {n} paused | {paused:.1} MiB |");
    println!(
        "| RSS with {w} WatchWorkflow streams open | {watched:.1} MiB ({:.1} KiB per stream) |",
        (watched - paused) * 1024.0 / w as f64
    );
    println!(
        "| watcher sees the final event, {low} approved one at a time | {} |",
        spread(&quiet)
    );
    println!(
        "| the other {rest} approved at once (16 approvers) until all COMPLETED | {:.1} s ({:.0}/s) |",
        drained_in.as_secs_f64(),
        rest as f64 / drained_in.as_secs_f64()
    );
    println!(
        "| watcher sees the final event, during that drain ({} watchers) | {} |",
        delays.len(),
        spread(&delays)
    );
    println!("| RSS after the drain | {after:.1} MiB |");
    Ok(())
}
