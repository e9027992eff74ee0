//! What one call's span costs with the production layers: JSON logs alone
//! (`logs`), JSON logs and the exporting layer handing spans to a batch
//! processor whose exporter discards them (`otel`), or exported for real
//! over OTLP/gRPC to an in-process receiver that counts and drops them
//! (`otlp`).
//!
//! Run: `cd bench && cargo run --release --bin span-cost -- logs|otel|otlp [N]`
//! (N spans, default 300,000, paced at most ~50,000/s so that the export
//! queue never drops). Prints the process's CPU time per span, all threads
//! included (the batch processor's, the exporter's and the receiver's).

use std::sync::Arc;
use std::time::Instant;

use airt_kit::config::{LogArgs, LogFormat};
use airt_kit::testing::otlp::Collector;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor};

#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        drop(batch);
        std::future::ready(Ok(()))
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "otel".into());
    let n: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300_000);
    let args = LogArgs {
        log: "info".into(),
        log_format: LogFormat::Json,
        otlp_endpoint: None,
    };
    // `otlp`: exported for real, over OTLP/gRPC to an in-process sink.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sink = (mode == "otlp").then(|| runtime.block_on(Collector::sink()));
    let telemetry = sink.as_ref().map(|sink| {
        let _entered = runtime.enter();
        let args = LogArgs {
            otlp_endpoint: Some(sink.endpoint()),
            ..args.clone()
        };
        airt_kit::telemetry::init(&args, "span-cost")
    });
    let processor = (mode == "otel")
        .then(|| Arc::new(BatchSpanProcessor::builder(Discard).build()) as Arc<dyn SpanProcessor>);
    if telemetry.is_none() {
        airt_kit::telemetry::install(&args, processor.clone());
    }
    let cpu_before = airt_bench::cpu_time("self");
    let headers = http::HeaderMap::new();
    let start = Instant::now();
    for i in 0..n {
        // Paced (at most ~50,000 spans/s), so that the exporter keeps up
        // and the batch queue never drops: every span is measured.
        if i % 256 == 255 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // The middleware's `rpc` span, as a call to Evaluate makes it.
        let span = tracing::info_span!(
            target: "airt_kit",
            "rpc",
            service = "policy-service",
            method = %"/airt.policy.v1.PolicyService/Evaluate",
            principal = %"service:workflow",
            request_id = %"",
            code = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        airt_kit::trace::continue_from(&span, &headers);
        for _ in 0..3 {
            let _polled = span.enter();
            std::hint::black_box(i);
        }
        span.record("code", tracing::field::debug(tonic::Code::Ok));
        span.record("latency_us", 120u64);
    }
    let elapsed = start.elapsed();
    if let Some(processor) = processor {
        let _ = processor.shutdown();
    }
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    let cpu = airt_bench::cpu_time("self") - cpu_before;
    println!(
        "{mode}: {:.2} µs wall time per span (paced), {:.2} µs CPU per span, all threads ({n} spans{})",
        elapsed.as_secs_f64() * 1e6 / f64::from(n),
        cpu.as_secs_f64() * 1e6 / f64::from(n),
        sink.map(|s| format!(", {} received", s.count()))
            .unwrap_or_default()
    );
}
