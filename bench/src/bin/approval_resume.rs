//! Approval resume latency: from the `ApproveStep` call returning to the
//! approved step's handler starting.
//!
//! Run: `cd bench && cargo run --release --bin approval-resume [N]`
//!
//! Starts the registry, policy and workflow services in-process (release
//! build, each on its own temporary SQLite database, development auth) and
//! registers `bench.deploy`, a LOW-risk remote capability that requires
//! approval, served by a loopback HTTP server that timestamps each request
//! as it arrives. Submits N (default 1,000) one-step workflows, waits until
//! all are PAUSED with a PENDING approval, then approves them one at a time:
//! the latency of one approval is the arrival of the handler's request
//! minus the moment `ApproveStep` returned (zero when the handler started
//! first: the resume is launched when the decision commits, before the
//! answer is sent). Every resume re-reads the workflow from the database,
//! looks the capability up, re-evaluates the policy, checks the action
//! digest and records the step RUNNING before the call.

use std::time::{Duration, Instant};

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::Stack;
use airt_system_tests::http::Recorder;

const POLICY: &str = "default: DENY\nescalate_high_risk: true\nrules:\n  - {id: allow-deploys, when: {capability: \"bench.*\"}, decision: ALLOW}\n";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1000);
    let handler = Recorder::start().await;
    let stack = Stack::start_with(TestDb::sqlite(), POLICY, |config| {
        config.catalogue.network =
            workflow_service::capabilities::net::NetworkPolicy::parse(&["127.0.0.1".to_owned()])
                .expect("loopback");
    })
    .await;
    let spec = format!(
        "id: bench.deploy\nname: deploy\noperation_type: WRITE\nrisk: {{level: LOW, requires_approval: true}}\n\
         side_effects: {{reversible: true, scope: NETWORK}}\ncompensation: {{supported: false, strategy: NONE}}\n\
         parameters: [{{name: build, type: integer, required: true}}]\nmetadata: {{version: 1.0.0}}\nhandler: \"http:{}\"\n",
        handler.url("/deploy")
    );
    airt_system_tests::register_capability(
        stack.registry.as_ref().expect("registry").channel().await,
        spec,
    )
    .await;

    let channel = stack.workflow.channel().await;
    let mut workflows = WorkflowServiceClient::new(channel.clone());
    let mut approvals = ApprovalServiceClient::new(channel.clone());
    let started = Instant::now();
    for build in 0..n {
        let text = format!(
            "name: deploy\nsteps:\n  - {{name: deploy, capability: bench.deploy, inputs: {{build: {build}}}}}\n"
        );
        workflows
            .submit_workflow(as_principal(
                pb::SubmitWorkflowRequest {
                    source: Some(pb::submit_workflow_request::Source::SpecText(text)),
                    request_id: String::new(),
                },
                "user:alice",
                &[],
            ))
            .await?;
    }
    // Wait until every workflow waits for its approval.
    let mut pending = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(300);
    while pending.len() < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {n} paused",
            pending.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        pending = airt_bench::workflows::pending_approvals(channel.clone())
            .await?
            .into_iter()
            .map(|(_, approval_id)| approval_id)
            .collect();
    }
    println!(
        "{n} workflows submitted and paused in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        handler.requests("/deploy").is_empty(),
        "a handler ran before approval"
    );

    let mut latencies = Vec::with_capacity(n);
    let mut handler_first = 0;
    for (i, approval_id) in pending.iter().enumerate() {
        approvals
            .approve_step(as_principal(
                pb::ApproveStepRequest {
                    approval_id: approval_id.clone(),
                    comment: String::new(),
                    request_id: String::new(),
                },
                "user:bob",
                &["approver"],
            ))
            .await?;
        let returned = Instant::now();
        let call = handler
            .wait_for("/deploy", i + 1, Duration::from_secs(30))
            .await;
        if call.at < returned {
            handler_first += 1;
        }
        latencies.push(call.at.saturating_duration_since(returned));
    }
    anyhow::ensure!(
        handler.requests("/deploy").len() == n,
        "each approved step ran once"
    );
    latencies.sort_unstable();
    let mean = latencies.iter().sum::<Duration>() / n as u32;
    println!(
        "approval resume latency over {n} approvals (ApproveStep returned -> handler started):"
    );
    println!(
        "  p50 {}  p90 {}  p99 {}  max {}  mean {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0)),
        ms(mean)
    );
    println!("  handler already started when the answer arrived: {handler_first} of {n}");
    stack.stop().await;
    Ok(())
}
