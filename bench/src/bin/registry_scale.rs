//! `GetCapability` over gRPC with the registry serving N capabilities
//! (default 10,000), beside the same connection's empty `Health/Check`.
//!
//! Run: `cd bench && cargo run --release --bin registry-scale -- [N] [--postgres]`
//! (`--postgres` puts the registry's database on `AIRT_TEST_POSTGRES_URL`).
//!
//! The registry runs in this process (its own runtime, development auth);
//! N remote capabilities of realistic size (four parameters, a return
//! schema, tags) are registered by 16 concurrent clients; then 20,000
//! `GetCapability` calls for random ids (current version) are timed one
//! at a time, interleaved in blocks of 100 with `Health/Check` calls on the
//! same channel.

use std::time::{Duration, Instant};

use airt_bench::workflows::percentile;
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CLIENTS: usize = 16;
const CALLS: usize = 20_000;
const BLOCK: usize = 100;

fn spec(i: usize) -> String {
    format!(
        "id: bench.cap_{i}\nname: Capability {i}\ndescription: A remote capability for the registry benchmark.\n\
         operation_type: WRITE\nrisk: {{level: MEDIUM, justification: Writes one record.}}\n\
         side_effects: {{reversible: true, scope: NETWORK, description: One record.}}\n\
         compensation: {{supported: false, strategy: NONE}}\n\
         parameters:\n\
         \x20 - {{name: customer, type: string, required: true, description: The customer.}}\n\
         \x20 - {{name: plan, type: string, required: false, default: standard}}\n\
         \x20 - {{name: seats, type: integer, required: false, default: 5}}\n\
         \x20 - {{name: note, type: string, required: false}}\n\
         returns: {{type: object, properties: {{record_id: {{type: string}}}}, required: [record_id]}}\n\
         metadata: {{version: 1.0.0, author: bench@example.com, tags: [bench, crm]}}\n\
         handler: \"http:https://records.example.com/write/{i}\"\n"
    )
}

async fn register_all(channel: Channel, n: usize) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let channel = channel.clone();
        tasks.push(tokio::spawn(async move {
            let mut registry = RegistryServiceClient::new(channel);
            for i in (client..n).step_by(CLIENTS) {
                registry
                    .register_capability(as_principal(
                        pb::RegisterCapabilityRequest {
                            source: Some(pb::register_capability_request::Source::SpecText(spec(
                                i,
                            ))),
                            validate_only: false,
                            request_id: String::new(),
                        },
                        "user:root",
                        &["admin"],
                    ))
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// A cheap pseudo-random sequence (xorshift), so runs are comparable.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(10_000);
    // The server gets a runtime of its own, as a separate process would.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let client_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (db, registry) = server_runtime.block_on(async {
        let db = if args.iter().any(|a| a == "--postgres") {
            TestDb::postgres()
                .await
                .ok_or_else(|| anyhow::anyhow!("set AIRT_TEST_POSTGRES_URL"))?
        } else {
            TestDb::sqlite()
        };
        let registry = airt_system_tests::start_registry(&db).await;
        anyhow::Ok((db, registry))
    })?;
    let url = registry.url();
    client_runtime.block_on(async {
        let channel = Channel::from_shared(url)?.connect().await?;
        let started = Instant::now();
        register_all(channel.clone(), n).await?;
        println!(
            "registered {n} capabilities in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let mut registry = RegistryServiceClient::new(channel.clone());
        let mut health = HealthClient::new(channel);
        let (mut get, mut check) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for block in 0..CALLS / BLOCK + 1 {
            let measured = block > 0; // the first block of each warms up
            for _ in 0..BLOCK {
                let id = format!("bench.cap_{}", next(&mut state) % n as u64);
                let at = Instant::now();
                let found = registry
                    .get_capability(as_principal(
                        pb::GetCapabilityRequest {
                            capability_id: id,
                            version: String::new(),
                        },
                        "service:workflow",
                        &[],
                    ))
                    .await?
                    .into_inner();
                anyhow::ensure!(found.capability.is_some(), "no capability");
                if measured {
                    get.push(at.elapsed());
                }
            }
            for _ in 0..BLOCK {
                let at = Instant::now();
                health.check(HealthCheckRequest::default()).await?;
                if measured {
                    check.push(at.elapsed());
                }
            }
        }
        get.sort_unstable();
        check.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let backend = if args.iter().any(|a| a == "--postgres") {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        println!("| call ({backend}, {n} capabilities, {CALLS} calls) | p50 | p99 |");
        println!("|---|---:|---:|");
        for (label, samples) in [("`GetCapability`", &get), ("`Health/Check`", &check)] {
            println!(
                "| {label} | {:.1} µs | {:.1} µs |",
                us(percentile(samples, 0.5)),
                us(percentile(samples, 0.99))
            );
        }
        anyhow::Ok(())
    })?;
    server_runtime.block_on(async {
        registry.stop().await?;
        drop(db);
        anyhow::Ok(())
    })?;
    Ok(())
}
