//! What one call's span costs with the production layers: JSON logs alone,
//! or JSON logs and OpenTelemetry export (to an exporter that discards, so
//! only the process's own work is measured). One thread, no I/O.
//!
//! Run: `cd bench && cargo run --release --bin span-cost -- logs|otel [N]`
//! (N spans, default 300,000). Prints microseconds per span.

use std::time::Instant;

use airt_kit::config::{LogArgs, LogFormat};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

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
    let provider = (mode == "otel").then(|| {
        SdkTracerProvider::builder()
            .with_batch_exporter(Discard)
            .build()
    });
    airt_kit::telemetry::install(&args, provider.clone());
    let headers = http::HeaderMap::new();
    let start = Instant::now();
    for i in 0..n {
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
    println!(
        "{mode}: {:.2} µs per span ({n} spans)",
        elapsed.as_secs_f64() * 1e6 / f64::from(n)
    );
    if let Some(provider) = provider {
        let _ = provider.shutdown();
    }
}
