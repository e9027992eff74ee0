//! What observability costs: per-step time and policy `Evaluate` latency
//! with traces exported and metrics scraped, against neither.
//!
//! Run: `cargo build --release -p registry-service -p policy-service -p
//! workflow-service && cd bench && cargo run --release --bin
//! observability-overhead` (the release binaries of the main workspace, or
//! those in `AIRT_BIN_DIR`; `-- 5` for five rounds; `-- 5 --calibrate` runs
//! both stacks `off`, so the change it prints is the method's own bias).
//!
//! Each round starts two stacks of the three real service binaries side by
//! side, each on fresh SQLite databases: one plain (`off`), one with
//! `--otlp-endpoint` naming an in-process OTLP receiver that counts the
//! spans and drops them, as a collector sink does (`on`) while a scraper reads its three `/metrics` every second
//! (Prometheus scrapes every 15–60 s; once a second is the pessimistic
//! end). Metrics are recorded in both (they cannot be switched off;
//! reading them is what `on` adds). The work alternates between the two
//! stacks, so the machine's drift falls on both alike:
//! - per step: 100 workflows of 10 `sys.info.get_time` steps on each, one
//!   at a time, one on each stack in turn; a sample is the time between two
//!   steps' SUCCEEDED events;
//! - `Evaluate`: 5,000 sequential calls on each, timed one by one, in
//!   blocks of 100 on each stack in turn.
//!
//! The result: each mode's median over rounds of a round's p50, and the
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
/// `Evaluate` calls made on one stack before turning to the other.
const BLOCK: usize = 100;

#[derive(Debug, Clone, Copy)]
struct Run {
    step_p50: Duration,
    evaluate_p50: Duration,
    /// The policy service's CPU time per `Evaluate` (all threads).
    evaluate_cpu: Duration,
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

/// One stack of the three real services on fresh SQLite databases, traced
/// and scraped (`on`) or not (`off`).
struct Stack {
    services: Vec<ServiceProcess>,
    scraper: Option<tokio::task::JoinHandle<()>>,
    collector: Collector,
    probe: Probe,
    channel: tonic::transport::Channel,
    evaluator: PolicyServiceClient<tonic::transport::Channel>,
    text: String,
    _dbs: (TestDb, TestDb, TestDb),
    _workspace: tempfile::TempDir,
}

impl Stack {
    async fn start(observed: bool) -> anyhow::Result<Self> {
        let collector = Collector::sink().await;
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
        let spawn =
            |name: &str, db: &TestDb, args: Vec<String>| -> anyhow::Result<ServiceProcess> {
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
        let evaluator = PolicyServiceClient::connect(policy_url).await?;
        let stack = Self {
            services: vec![workflow, policy_service, registry],
            scraper,
            collector,
            probe,
            channel,
            evaluator,
            text: chain_spec(STEPS),
            _dbs: (registry_db, policy_db, workflow_db),
            _workspace: workspace,
        };
        // Warm up: the registry cache, the connections, the first pages.
        stack.workflow().await?;
        Ok(stack)
    }

    /// Runs one workflow of `STEPS` steps: its per-step times.
    async fn workflow(&self) -> anyhow::Result<Vec<Duration>> {
        let id = submit(self.channel.clone(), &self.text).await?;
        self.probe.until_completed(&id).await?;
        self.probe.step_times(&id).await
    }

    /// CPU time the policy service has used so far (all its threads).
    fn policy_cpu(&self) -> Duration {
        airt_bench::cpu_time(&self.services[1].pid().to_string())
    }

    /// Times `n` sequential `Evaluate` calls.
    async fn evaluate(&mut self, n: usize) -> anyhow::Result<Vec<Duration>> {
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
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
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
            self.evaluator.evaluate(request).await?;
            samples.push(started.elapsed());
        }
        Ok(samples)
    }

    async fn stop(self) -> usize {
        if let Some(scraper) = self.scraper {
            scraper.abort();
        }
        for service in self.services {
            service.terminate(Duration::from_secs(20)).await;
        }
        self.collector.count()
    }
}

/// One round: both stacks up at once, the work interleaved between them
/// (one workflow, or one block of `Evaluate` calls, on each in turn, the
/// first of each pair alternating), so that whatever the machine does
/// meanwhile falls on both alike.
async fn round(calibrate: bool) -> anyhow::Result<[Run; 2]> {
    let mut stacks = [Stack::start(false).await?, Stack::start(!calibrate).await?];
    let mut steps = [Vec::new(), Vec::new()];
    let mut evaluations = [Vec::new(), Vec::new()];
    for i in 0..WORKFLOWS {
        for which in [i % 2, 1 - i % 2] {
            steps[which].extend(stacks[which].workflow().await?);
        }
    }
    for which in [0, 1] {
        stacks[which].evaluate(500).await?; // warm-up
    }
    let mut cpu = [Duration::ZERO; 2];
    for block in 0..EVALUATIONS / BLOCK {
        for which in [block % 2, 1 - block % 2] {
            let before = stacks[which].policy_cpu();
            evaluations[which].extend(stacks[which].evaluate(BLOCK).await?);
            cpu[which] += stacks[which].policy_cpu().saturating_sub(before);
        }
    }
    let [off, on] = stacks;
    let spans = [off.stop().await, on.stop().await];
    Ok([0, 1].map(|which| {
        steps[which].sort_unstable();
        evaluations[which].sort_unstable();
        Run {
            step_p50: percentile(&steps[which], 0.5),
            evaluate_p50: percentile(&evaluations[which], 0.5),
            evaluate_cpu: cpu[which] / u32::try_from(EVALUATIONS).unwrap_or(u32::MAX),
            spans: spans[which],
        }
    }))
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    // `--calibrate`: both stacks `off`; the change measured is the noise.
    let calibrate = std::env::args().any(|a| a == "--calibrate");
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(3);
    println!(
        "| round | mode | p50 per step | Evaluate p50 | policy CPU per Evaluate | spans exported |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round_number in 1..=rounds {
        let runs = round(calibrate).await?;
        for (mode, run) in ["off", "on"].into_iter().zip(runs) {
            println!(
                "| {round_number} | {mode} | {} | {} | {:.1} µs | {} |",
                micros(run.step_p50),
                micros(run.evaluate_p50),
                run.evaluate_cpu.as_secs_f64() * 1e6,
                run.spans
            );
        }
        off.push(runs[0]);
        on.push(runs[1]);
    }
    // Each round pairs an `off` and an `on` run measured side by side: the
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
        ("policy CPU per Evaluate", |r: &Run| r.evaluate_cpu),
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
