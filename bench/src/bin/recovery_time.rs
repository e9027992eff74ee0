//! Recovery: time from restarting a killed workflow service to its first
//! resumed step, with N workflows in flight (1,000 by default).
//!
//! Run: `cargo build --release -p workflow-service && cd bench &&
//! cargo run --release --bin recovery-time [N]` (the release binary of
//! the main workspace, or `AIRT_WORKFLOW_BIN`).
//!
//! The registry and the policy service run in-process; the workflow service
//! is the real binary on SQLite (or on a fresh PostgreSQL database with
//! `--postgres`, when `AIRT_TEST_POSTGRES_URL` is set). N one-step workflows
//! call a remote capability that holds every request for a minute, so all N
//! steps are in flight; then the service is killed with SIGKILL and started
//! again (same instance id). Measured from the restart (spawn) to the first
//! re-executed step reaching the capability, and to the last.

use std::time::{Duration, Instant};

use airt_kit::testing::http::Recorder;
use airt_kit::testing::{ServiceProcess, TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000);
    let binary = std::env::var("AIRT_WORKFLOW_BIN").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/workflow-service"
        )
        .into()
    });
    anyhow::ensure!(
        std::path::Path::new(&binary).exists(),
        "{binary} not found: cargo build --release -p workflow-service"
    );
    let db = airt_bench::workflows::workflow_db(&args).await?;
    let (registry_db, policy_db) = (TestDb::sqlite(), TestDb::sqlite());
    let registry = airt_system_tests::start_registry(&registry_db).await;
    let policy_server = airt_system_tests::start_policy(&policy_db).await;
    let ledger = Recorder::start().await;
    // Held for ten minutes: every step is still in flight at the kill.
    ledger.delay("/slow", Duration::from_secs(600));
    let spec = format!(
        "id: ledger.slow\nname: slow\noperation_type: WRITE\nrisk: {{level: LOW}}\nside_effects: {{reversible: true, scope: NETWORK}}\n\
         compensation: {{supported: false, strategy: NONE}}\nparameters: [{{name: n, type: integer, required: true}}]\n\
         metadata: {{version: 1.0.0}}\nhandler: \"http:{}\"\n",
        ledger.url("/slow")
    );
    airt_system_tests::register_capability(registry.channel().await, spec).await;
    airt_kit::testing::activate_policy(policy_server.channel().await, "default: DENY\nrules:\n  - {id: allow-ledger, when: {capability: \"ledger.*\"}, decision: ALLOW}\n").await;
    let workspace = tempfile::tempdir()?;
    let (registry_url, policy_url) = (registry.url(), policy_server.url());
    let workspace_path = workspace.path().to_string_lossy().into_owned();
    // All N driven at once (the default limit is 1,024 per replica).
    let max_active = n.max(1024).to_string();
    let spawn = || {
        ServiceProcess::spawn(
            &binary,
            db.url(),
            &[
                "--auth-dev-mode",
                "--registry-addr",
                &registry_url,
                "--policy-addr",
                &policy_url,
                "--workspace",
                &workspace_path,
                "--net-allow",
                "127.0.0.1",
                "--instance-id",
                "recovery-bench",
                "--max-active-workflows",
                &max_active,
                "--log",
                "warn,airt_kit=info",
            ],
        )
    };

    let service = spawn();
    let mut client = WorkflowServiceClient::new(service.channel().await);
    for i in 0..n {
        client
            .submit_workflow(as_principal(
                pb::SubmitWorkflowRequest {
                    source: Some(pb::submit_workflow_request::Source::SpecText(format!(
                        "name: slow\nsteps:\n  - {{name: s, capability: ledger.slow, timeout: 30m, inputs: {{n: {i}}}}}\n"
                    ))),
                    request_id: String::new(),
                },
                "user:bench",
                &[],
            ))
            .await?;
    }
    ledger.wait_for("/slow", n, Duration::from_secs(600)).await;
    println!("{n} workflows with a step in flight; kill -9");
    service.kill();

    let restarted = Instant::now();
    let service = spawn();
    let serving = restarted.elapsed();
    let first = ledger
        .wait_for("/slow", n + 1, Duration::from_secs(120))
        .await;
    let last = ledger
        .wait_for("/slow", 2 * n, Duration::from_secs(300))
        .await;
    println!(
        "restart -> process serving: {:.0} ms; -> first resumed step: {:.0} ms; -> all {n} resumed: {:.0} ms",
        serving.as_secs_f64() * 1000.0,
        first.at.duration_since(restarted).as_secs_f64() * 1000.0,
        last.at.duration_since(restarted).as_secs_f64() * 1000.0
    );
    // No step ran a third time: each ran once before the kill (in flight)
    // and once after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut runs = std::collections::HashMap::<String, usize>::new();
    for request in ledger.requests("/slow") {
        *runs.entry(request.body).or_default() += 1;
    }
    let twice = runs.values().filter(|&&r| r == 2).count();
    println!(
        "steps run: {} distinct, {twice} exactly twice (in flight at the kill, then resumed), {} more than twice",
        runs.len(),
        runs.values().filter(|&&r| r > 2).count()
    );
    anyhow::ensure!(runs.len() == n && twice == n, "a step ran other than twice");
    service.kill();
    Ok(())
}
