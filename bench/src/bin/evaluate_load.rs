//! gRPC load on `PolicyService/Evaluate` over loopback.
//!
//! Run: `cd bench && cargo run --release --bin evaluate-load`
//!
//! Starts the policy service in-process (its own runtime, a temporary SQLite
//! database, development auth), activates a generated 100-rule set, then:
//! 1. concurrency 1: 20,000 sequential calls, each timed → p50/p99;
//! 2. concurrency 32: 32 callers over 4 connections for 10 s → decisions/s.
//!
//! Every decision is also written to the decision log, as in production.
//! With `AIRT_BENCH_OTLP=<collector URL>` the service's spans are exported
//! over OTLP (an unreachable URL still builds and queues every span).

use std::time::{Duration, Instant};

use airt_bench::{airt_yaml, generate_requests, generate_rules};
use airt_kit::auth::AuthSettings;
use airt_kit::config::ServiceConfig;
use airt_proto::common::v1::{Principal, RiskLevel};
use airt_proto::policy::v1 as pb;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

const SEQUENTIAL_CALLS: usize = 20_000;
const CONCURRENCY: usize = 32;
const CONNECTIONS: usize = 4;
const LOAD_DURATION: Duration = Duration::from_secs(10);

fn with_identity<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "x-airt-principal",
        MetadataValue::from_static("service:workflow"),
    );
    request
        .metadata_mut()
        .insert("x-airt-roles", MetadataValue::from_static("admin"));
    request
}

use tonic_health::pb as airt_proto_health;

fn tonic_health_client(
    channel: Channel,
) -> airt_proto_health::health_client::HealthClient<Channel> {
    airt_proto_health::health_client::HealthClient::new(channel)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("airt-evaluate-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = ServiceConfig {
        database_url: format!("sqlite://{}", dir.join("policy.db").display()),
        auth: AuthSettings::Development,
        ..ServiceConfig::local(&policy_service::IDENTITY)
    };

    // The server gets a runtime of its own, as a separate process would.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // With AIRT_BENCH_OTLP=<collector URL>: spans exported, as a service
    // started with --otlp-endpoint does.
    let _telemetry = std::env::var("AIRT_BENCH_OTLP").ok().map(|endpoint| {
        let _runtime = server_runtime.enter();
        let logs = airt_kit::config::LogArgs {
            log: "warn".into(),
            log_format: airt_kit::config::LogFormat::Json,
            otlp_endpoint: Some(endpoint),
        };
        airt_kit::telemetry::init(&logs, "policy-service")
    });
    let listener = server_runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = server_runtime.spawn(policy_service::serve_on(config, listener, async {
        let _ = stopped.await;
    }));

    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    client_runtime.block_on(async {
        let mut channels = Vec::new();
        for _ in 0..CONNECTIONS {
            channels.push(
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?,
            );
        }
        let rules = generate_rules(100, 107);
        let mut admin = PolicyServiceClient::new(channels[0].clone());
        admin
            .put_policy_set(with_identity(pb::PutPolicySetRequest {
                source_yaml: airt_yaml(&rules),
                activate: true,
                ..Default::default()
            }))
            .await?;
        let contexts: Vec<pb::PolicyContext> = generate_requests(&rules, 10_000, 111)
            .into_iter()
            .map(|r| pb::PolicyContext {
                principal: Some(Principal {
                    r#type: r.principal_type.into(),
                    id: r.principal_id,
                    roles: vec![],
                }),
                capability_id: r.capability,
                risk_level: RiskLevel::from_str_name(&format!("RISK_LEVEL_{}", r.risk))
                    .map_or(0, |l| l as i32),
                workflow_id: "wf-load".into(),
                step_name: "step".into(),
                ..Default::default()
            })
            .collect();

        // The transport floor: grpc.health.v1.Health/Check, same connection.
        let mut health = tonic_health_client(channels[0].clone());
        let mut floor = Vec::with_capacity(SEQUENTIAL_CALLS);
        for _ in 0..SEQUENTIAL_CALLS {
            let started = Instant::now();
            health
                .check(airt_proto_health::HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            floor.push(started.elapsed().as_nanos() as u64);
        }
        floor.sort_unstable();
        println!(
            "transport floor (Health/Check, concurrency 1): p50 {:.1} µs, p99 {:.1} µs",
            percentile(&floor, 0.5) as f64 / 1000.0,
            percentile(&floor, 0.99) as f64 / 1000.0
        );

        // Warm up, then concurrency 1.
        let mut client = PolicyServiceClient::new(channels[0].clone());
        for ctx in contexts.iter().take(2_000) {
            client
                .evaluate(with_identity(pb::EvaluateRequest {
                    context: Some(ctx.clone()),
                    explain: false,
                    any_inputs: false,
                    purpose: Default::default(),
                }))
                .await?;
        }
        let mut samples = Vec::with_capacity(SEQUENTIAL_CALLS);
        for i in 0..SEQUENTIAL_CALLS {
            let request = with_identity(pb::EvaluateRequest {
                context: Some(contexts[i % contexts.len()].clone()),
                explain: false,
                any_inputs: false,
                purpose: Default::default(),
            });
            let started = Instant::now();
            client.evaluate(request).await?;
            samples.push(started.elapsed().as_nanos() as u64);
        }
        samples.sort_unstable();
        println!(
            "concurrency 1: {SEQUENTIAL_CALLS} calls, p50 {:.1} µs, p99 {:.1} µs",
            percentile(&samples, 0.5) as f64 / 1000.0,
            percentile(&samples, 0.99) as f64 / 1000.0
        );

        // Concurrency 32 for a fixed time.
        let deadline = Instant::now() + LOAD_DURATION;
        let started = Instant::now();
        let mut callers = Vec::new();
        for caller in 0..CONCURRENCY {
            let mut client = PolicyServiceClient::new(channels[caller % CONNECTIONS].clone());
            let contexts = contexts.clone();
            callers.push(tokio::spawn(async move {
                let mut done = 0u64;
                let mut i = caller;
                while Instant::now() < deadline {
                    let request = with_identity(pb::EvaluateRequest {
                        context: Some(contexts[i % contexts.len()].clone()),
                        explain: false,
                        any_inputs: false,
                        purpose: Default::default(),
                    });
                    client.evaluate(request).await?;
                    done += 1;
                    i += CONCURRENCY;
                }
                Ok::<u64, tonic::Status>(done)
            }));
        }
        let mut total = 0;
        for caller in callers {
            total += caller.await??;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "concurrency {CONCURRENCY}: {total} decisions in {elapsed:.1} s = {:.0} decisions/s",
            total as f64 / elapsed
        );
        anyhow::Ok(())
    })?;

    let _ = stop.send(());
    server_runtime.block_on(server)??;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
