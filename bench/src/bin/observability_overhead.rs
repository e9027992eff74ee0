//! What observability costs: per-step time and policy `Evaluate` latency
//! with traces exported and metrics scraped, against neither.
//!
//! Run: `cargo build --release -p registry-service -p policy-service -p
//! workflow-service && cd bench && cargo run --release --bin
//! observability-overhead` (the release binaries of the main workspace, or
//! those in `AIRT_BIN_DIR`; `-- 5` for five rounds).
//!
//! Each round starts the three real service binaries twice, on fresh SQLite
//! databases: once plain (`off`), once with `--otlp-endpoint` naming an
//! in-process OTLP receiver that keeps every span (`on`) while a scraper
//! reads all three `/metrics` every second (Prometheus scrapes every
//! 15–60 s; once a second is the pessimistic end). Metrics are recorded in
//! both modes (they cannot be switched off; reading them is what `on` adds).
//! The order of the two alternates between rounds. Each run measures:
//! - per step: 100 workflows of 10 `sys.info.get_time` steps, one at a time;
//!   a sample is the time between two steps' SUCCEEDED events;
//! - `Evaluate`: 5,000 sequential calls from one client, each timed.
//!
//! The result: each mode's median over rounds of a run's p50, and the
//! median of the paired (same round) changes.

use std::time::{Duration, Instant};

use airt_bench::workflows::{Probe, chain_spec, percentile, submit};
use airt_kit::testing::otlp::Collector;
use airt_kit::testing::{ServiceProcess, TestDb, as_principal};
use airt_proto::common::v1::{Principal, RiskLevel};
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;

const POLICY: &str = "default: DENY\nrules:\n  - {id: allow-all, when: {risk_level: [LOW, MEDIUM]}, decision: ALLOW}\n";
const WORKFLOWS: usize = 100;
const STEPS: usize = 10;
const EVALUATIONS: usize = 5_000;

#[derive(Debug, Clone, Copy)]
struct Run {
    step_p50: Duration,
    evaluate_p50: Duration,
    spans: usize,
}

fn binary(name: &str) -> anyhow::Result<String> {
    let dir = std::env::var("AIRT_BIN_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release").into());
    let path = format!("{dir}/{name}");
    anyhow::ensure!(
        std::path::Path::new(&path).exists(),
        "{path} not found: cargo build --release -p {name}"
    );
    Ok(path)
}

/// `GET <admin><path>` over HTTP/1.1: the status code, if it answered.
async fn get(admin: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let host = admin.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
}

/// Waits (at most 60 s) until the service's `/readyz` answers 200.
async fn ready(admin: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if get(admin, "/readyz").await == Some(200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{admin} not ready within 60 s")
}

/// Reads every admin listener's `/metrics` once a second until aborted.
fn scrape(admins: Vec<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for admin in &admins {
                get(admin, "/metrics").await;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn evaluate_p50(policy_url: String) -> anyhow::Result<Duration> {
    let mut client = PolicyServiceClient::connect(policy_url).await?;
    let context = policy::PolicyContext {
        principal: Some(Principal {
            r#type: "agent".into(),
            id: "bench".into(),
            roles: Vec::new(),
        }),
        capability_id: "sys.info.get_time".into(),
        risk_level: RiskLevel::Low as i32,
        workflow_id: "wf-overhead".into(),
        step_name: "step".into(),
        ..Default::default()
    };
    let mut samples = Vec::with_capacity(EVALUATIONS);
    for i in 0..EVALUATIONS + 500 {
        let request = as_principal(
            policy::EvaluateRequest {
                context: Some(context.clone()),
                explain: false,
                any_inputs: false,
                purpose: Default::default(),
            },
            "service:workflow",
            &["admin"],
        );
        let started = Instant::now();
        client.evaluate(request).await?;
        // The first 500 warm up.
        if i >= 500 {
            samples.push(started.elapsed());
        }
    }
    samples.sort_unstable();
    Ok(percentile(&samples, 0.5))
}

async fn measure(observed: bool) -> anyhow::Result<Run> {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let traced: &[&str] = if observed {
        &["--otlp-endpoint", &endpoint]
    } else {
        &[]
    };
    let (registry_db, policy_db, workflow_db) =
        (TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite());
    let with = |args: &[&str]| -> Vec<String> {
        ["--auth-dev-mode"]
            .iter()
            .chain(args)
            .chain(traced)
            .map(|a| (*a).to_owned())
            .collect()
    };
    let spawn = |name: &str, db: &TestDb, args: Vec<String>| -> anyhow::Result<ServiceProcess> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(ServiceProcess::spawn(&binary(name)?, db.url(), &args))
    };
    let registry = spawn("registry-service", &registry_db, with(&[]))?;
    let policy_service = spawn("policy-service", &policy_db, with(&[]))?;
    airt_kit::testing::activate_policy(policy_service.channel().await, POLICY).await;
    let workspace = tempfile::tempdir()?;
    let (registry_url, policy_url) = (registry.url(), policy_service.url());
    let workspace_arg = workspace.path().to_string_lossy().into_owned();
    let workflow = spawn(
        "workflow-service",
        &workflow_db,
        with(&[
            "--registry-addr",
            &registry_url,
            "--policy-addr",
            &policy_url,
            "--workspace",
            &workspace_arg,
        ]),
    )?;
    ready(&workflow.admin_url()).await?;
    let scraper = observed.then(|| {
        scrape(vec![
            registry.admin_url(),
            policy_service.admin_url(),
            workflow.admin_url(),
        ])
    });

    let probe = Probe::connect(workflow_db.url()).await?;
    let channel = workflow.channel().await;
    let text = chain_spec(STEPS);
    // One warm-up workflow (the registry cache, the connections).
    let warm = submit(channel.clone(), &text).await?;
    probe.until_completed(&warm).await?;
    let mut steps = Vec::with_capacity(WORKFLOWS * STEPS);
    for _ in 0..WORKFLOWS {
        let id = submit(channel.clone(), &text).await?;
        probe.until_completed(&id).await?;
        steps.extend(probe.step_times(&id).await?);
    }
    steps.sort_unstable();
    let evaluate = evaluate_p50(policy_url).await?;

    if let Some(scraper) = scraper {
        scraper.abort();
    }
    for service in [workflow, policy_service, registry] {
        service.terminate(Duration::from_secs(20)).await;
    }
    Ok(Run {
        step_p50: percentile(&steps, 0.5),
        evaluate_p50: evaluate,
        spans: collector.spans().len(),
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3);
    println!("| round | mode | p50 per step | Evaluate p50 | spans exported |");
    println!("|---:|---|---:|---:|---:|");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for observed in order {
            let run = measure(observed).await?;
            let mode = if observed { "on" } else { "off" };
            println!(
                "| {round} | {mode} | {} | {} | {} |",
                micros(run.step_p50),
                micros(run.evaluate_p50),
                run.spans
            );
            if observed { &mut on } else { &mut off }.push(run);
        }
    }
    // Each round pairs an `off` and an `on` run made back to back: the
    // median of the paired changes is robust to the machine drifting
    // between rounds.
    let paired = |value: fn(&Run) -> Duration| {
        let mut changes: Vec<f64> = off
            .iter()
            .zip(&on)
            .map(|(off, on)| (value(on).as_secs_f64() / value(off).as_secs_f64() - 1.0) * 100.0)
            .collect();
        changes.sort_by(f64::total_cmp);
        let medians = (
            median(off.iter().map(value).collect()),
            median(on.iter().map(value).collect()),
        );
        (medians, changes[changes.len() / 2])
    };
    println!();
    println!("| median of {rounds} rounds | off | on | paired change (median) |");
    println!("|---|---:|---:|---:|");
    for (label, value) in [
        (
            "p50 per step",
            (|r: &Run| r.step_p50) as fn(&Run) -> Duration,
        ),
        ("Evaluate p50", |r: &Run| r.evaluate_p50),
    ] {
        let ((off, on), change) = paired(value);
        println!(
            "| {label} | {} | {} | {change:+.1}% |",
            micros(off),
            micros(on)
        );
    }
    Ok(())
}
