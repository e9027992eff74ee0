//! `tools/list` latency of the MCP gateway with policy filtering.
//!
//! Run: `cd bench && cargo run --release --bin mcp-list [CAPABILITIES] [N] [no-feed]`
//!
//! `no-feed`: the gateway has no identity of its own, follows no registry
//! changes, and so reads the registry on every listing.
//!
//! Starts the registry, policy and workflow services and the gateway
//! in-process (release build, SQLite, development auth), registers
//! CAPABILITIES (default 500) capabilities besides the 23 built-ins, with a
//! policy of 41 rules (100 capabilities denied by prefix, 100 denied only
//! for some inputs, approvals by role, agents, reads), and lists the tools N
//! times (default 200) as one principal
//! over one MCP session: each listing asks the policy for every capability
//! (`BatchEvaluate` with `any_inputs`) and reads the registry's listing from
//! the gateway's cache (kept while its change feed is live; else it reads
//! the registry, pages of 1000). The two service calls are then timed alone
//! for the breakdown.

use std::time::{Duration, Instant};

use airt_bench as _;
use airt_kit::testing::TestDb;
use airt_system_tests::{Stack, gateway};

fn policy() -> String {
    let mut yaml = String::from("default: DENY\nescalate_high_risk: true\nrules:\n");
    for i in 0..10 {
        yaml.push_str(&format!(
            "  - {{id: deny-{i}, when: {{capability: \"bench.tools.t0{i}*\"}}, decision: DENY}}\n"
        ));
        yaml.push_str(&format!(
            "  - {{id: inputs-{i}, when: {{capability: \"bench.tools.t1{i}*\", inputs: {{mode: fast}}}}, decision: DENY}}\n"
        ));
        yaml.push_str(&format!(
            "  - {{id: ops-{i}, roles: [ops{i}], when: {{capability: \"bench.*\"}}, decision: REQUIRE_APPROVAL}}\n"
        ));
    }
    for i in 0..9 {
        yaml.push_str(&format!(
            "  - {{id: agent-{i}, when: {{agent: [\"agent-{i}\"]}}, decision: DENY}}\n"
        ));
    }
    yaml.push_str("  - {id: reads, when: {operation_type: READ}, decision: ALLOW}\n");
    yaml.push_str(
        "  - {id: writers, roles: [writer], when: {capability: \"bench.*\"}, decision: ALLOW}\n",
    );
    yaml
}

fn spec(i: usize) -> String {
    format!(
        "id: bench.tools.t{i:03}\nname: Tool {i}\ndescription: Benchmark tool number {i}.\n\
         operation_type: WRITE\nrisk: {{level: MEDIUM, justification: bench}}\n\
         side_effects: {{reversible: true, scope: NETWORK}}\n\
         compensation: {{supported: true, strategy: AUTOMATIC, capability_id: bench.tools.undo}}\n\
         parameters:\n  - {{name: target, type: string, required: true, description: What to act on}}\n\
         \x20 - {{name: count, type: integer, default: 1}}\n  - {{name: mode, type: string, default: safe}}\n\
         returns: {{type: object, properties: {{ok: {{type: boolean}}}}}}\n\
         metadata: {{version: 1.0.0, tags: [bench]}}\nhandler: \"http:https://tools.example/t{i}\"\n"
    )
}

/// The two service calls of a listing, timed alone (p50 of `n`).
async fn breakdown(stack: &Stack, n: usize) -> anyhow::Result<(Duration, Duration)> {
    use airt_kit::testing::as_principal;
    use airt_proto::policy::v1 as policy;
    use airt_proto::registry::v1 as registry;
    let mut registry_client = registry::registry_service_client::RegistryServiceClient::new(
        stack.registry.as_ref().expect("registry").channel().await,
    )
    .max_decoding_message_size(64 * 1024 * 1024);
    let mut policy_client = policy::policy_service_client::PolicyServiceClient::new(
        stack.policy.as_ref().expect("policy").channel().await,
    );
    let (mut lists, mut evaluations) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let started = Instant::now();
        let page = registry_client
            .list_capabilities(as_principal(
                registry::ListCapabilitiesRequest {
                    page_size: 1000,
                    ..Default::default()
                },
                "user:alice",
                &["writer"],
            ))
            .await?
            .into_inner();
        lists.push(started.elapsed());
        let contexts: Vec<policy::PolicyContext> = page
            .capabilities
            .iter()
            .map(|c| {
                let spec = c.spec.clone().unwrap_or_default();
                policy::PolicyContext {
                    principal: Some(airt_proto::common::v1::Principal {
                        r#type: "user".into(),
                        id: "alice".into(),
                        roles: vec!["writer".into()],
                    }),
                    capability_id: spec.id,
                    risk_level: spec.risk.map(|r| r.level).unwrap_or(3),
                    operation_type: spec.operation_type,
                    ..Default::default()
                }
            })
            .collect();
        let started = Instant::now();
        policy_client
            .batch_evaluate(as_principal(
                policy::BatchEvaluateRequest {
                    contexts,
                    explain: false,
                    any_inputs: true,
                    purpose: Default::default(),
                },
                "user:alice",
                &["writer"],
            ))
            .await?;
        evaluations.push(started.elapsed());
    }
    lists.sort();
    evaluations.sort();
    Ok((lists[n / 2], evaluations[n / 2]))
}

/// The gateway's identity in development mode (what `airt up` gives it).
fn mcp_gateway_credentials() -> airt_kit::credentials::Credentials {
    airt_kit::credentials::Credentials::development("service:mcp-gateway", "").expect("ascii")
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let capabilities: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let feed = args.next().as_deref() != Some("no-feed");
    airt_kit::tls::install_crypto();
    let stack = Stack::start(TestDb::sqlite(), &policy()).await;
    let registry = stack.registry.as_ref().expect("registry").channel().await;
    airt_system_tests::register_capability(
        registry.clone(),
        "id: bench.tools.undo\nname: Undo\ndescription: Undoes a benchmark tool.\noperation_type: WRITE\n\
         risk: {level: MEDIUM, justification: bench}\nside_effects: {reversible: true, scope: NETWORK}\n\
         compensation: {supported: false, strategy: NONE}\nparameters: []\nmetadata: {version: 1.0.0}\n\
         handler: \"http:https://tools.example/undo\"\n",
    )
    .await;
    for i in 0..capabilities {
        airt_system_tests::register_capability(registry.clone(), spec(i)).await;
    }
    let own = if feed {
        mcp_gateway_credentials()
    } else {
        airt_kit::credentials::Credentials::none()
    };
    let gateway = gateway::start_as(&stack, Duration::from_secs(1), own).await;
    let client = gateway::client(&gateway.url, "user:alice", "writer").await;
    let mut listed = 0;
    for _ in 0..10 {
        listed = client.list_all_tools().await?.len();
    }
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let tools = client.list_all_tools().await?;
        latencies.push(started.elapsed());
        assert_eq!(tools.len(), listed);
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "tools/list ({}): {} capabilities registered ({} with built-ins), {listed} listed for user:alice; \
         {n} listings: p50 {}  p90 {}  p99 {}  max {}",
        if feed {
            "registry listing cached while the change feed is live"
        } else {
            "no change feed: the registry read every time"
        },
        capabilities + 1,
        capabilities + 24,
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
    );
    let (list_p50, evaluate_p50) = breakdown(&stack, n).await?;
    println!(
        "  of which, measured alone over gRPC: ListCapabilities (all pages) p50 {}, \
         BatchEvaluate any_inputs of every capability p50 {}",
        ms(list_p50),
        ms(evaluate_p50)
    );
    let _ = client.cancel().await;
    drop(gateway);
    stack.stop().await;
    Ok(())
}
