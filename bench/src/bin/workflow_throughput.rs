//! Workflow step overhead and throughput, on SQLite and PostgreSQL.
//!
//! Run: `cd bench && cargo run --release --bin workflow-throughput`
//! (PostgreSQL too when `AIRT_TEST_POSTGRES_URL` is set; `-- 200` for
//! fewer workflows; `--k 1` and `--db postgres` (or `sqlite`) run one case,
//! e.g. under `perf record`).
//!
//! The three services run in-process (release build, development auth);
//! the registry and the policy service on their own SQLite files, the
//! workflow service on SQLite or on a fresh PostgreSQL database. Each
//! workflow is a chain of K steps of `sys.info.get_time` (a built-in whose
//! handler takes microseconds), so a step's time is the runtime's own
//! overhead: input resolution, registry lookup (cached), input validation,
//! the policy decision over gRPC (logged by the policy service), and three
//! committed transitions each with its event and hash-chained audit entry.
//!
//! - overhead: 1,000 steps run one workflow at a time; one sample is the
//!   time between a step's SUCCEEDED event and the previous one's (or the
//!   workflow's RUNNING event), read from the workflow's event log.
//! - throughput: N workflows (default 1,000) submitted by 16 concurrent
//!   clients; steps/s = N × K / (last completion − first submission).

use std::time::{Duration, Instant};

use airt_bench::workflows::{Probe, chain_spec, ms, percentile, submit};
use airt_kit::testing::TestDb;
use airt_system_tests::Stack;

const POLICY: &str = "default: DENY\nrules:\n  - {id: allow-all, when: {risk_level: [LOW, MEDIUM]}, decision: ALLOW}\n";
const SUBMITTERS: usize = 16;

async fn measure(label: &str, db: TestDb, k: usize, n: usize) -> anyhow::Result<()> {
    let stack = Stack::start(db, POLICY).await;
    let probe = Probe::connect(stack.workflow_db_url()).await?;
    let channel = stack.workflow.channel().await;
    let text = chain_spec(k);

    // Overhead: one workflow at a time.
    let sequential = (1000 / k).max(1);
    let mut samples = Vec::with_capacity(1000);
    for _ in 0..sequential {
        let id = submit(channel.clone(), &text).await?;
        probe.until_completed(&id).await?;
        samples.extend(probe.step_times(&id).await?);
    }
    samples.sort_unstable();
    let done_before = probe.count("COMPLETED").await?;

    // Throughput: n workflows from 16 clients at once.
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..SUBMITTERS {
        let (channel, text) = (channel.clone(), text.clone());
        let share = n / SUBMITTERS + usize::from(c < n % SUBMITTERS);
        clients.spawn(async move {
            for _ in 0..share {
                submit(channel.clone(), &text).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined??;
    }
    let submitted = started.elapsed();
    let target = done_before + i64::try_from(n)?;
    loop {
        let done = probe.count("COMPLETED").await?;
        if done >= target {
            break;
        }
        anyhow::ensure!(probe.count("FAILED").await? == 0, "a workflow failed");
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "not done in 10 min"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    let steps_per_s = (n * k) as f64 / elapsed.as_secs_f64();
    println!(
        "| {label} | {k} | {} | {} | {} | {:.0} | {:.1} s ({:.1} s to submit) |",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        steps_per_s,
        elapsed.as_secs_f64(),
        submitted.as_secs_f64()
    );
    stack.stop().await;
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000);
    let ks: Vec<usize> = match flag("--k") {
        Some(k) => vec![k.parse()?],
        None => vec![1, 10],
    };
    let db = flag("--db");
    let (sqlite, postgres) = match db.as_deref() {
        None => (true, true),
        Some("sqlite") => (true, false),
        Some("postgres") => (false, true),
        Some(other) => anyhow::bail!("--db {other}: sqlite or postgres"),
    };
    println!(
        "| workflow db | K | overhead samples | p50 per step | p99 per step | steps/s ({n} workflows) | wall |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for k in ks {
        if sqlite {
            measure("SQLite", TestDb::sqlite(), k, n).await?;
        }
        if !postgres {
            continue;
        }
        match TestDb::postgres().await {
            Some(db) => measure("PostgreSQL", db, k, n).await?,
            None => eprintln!("PostgreSQL skipped: set AIRT_TEST_POSTGRES_URL"),
        }
    }
    Ok(())
}
