//! Prometheus metrics: one registry per service, every name prefixed
//! `airt_`, rendered in the Prometheus text format (0.0.4) by the admin
//! listener's `/metrics`. Gauges that mirror stored state (workflows by
//! status, pending approvals, chain length) are refreshed by scrape hooks
//! just before a scrape, so they cost nothing when nobody scrapes.
//!
//! Label values are bounded: gRPC methods are those this server serves
//! (anything else is `unknown`), codes are the seventeen gRPC codes, and
//! services label only with ids an operator defined (capabilities the
//! registry knows, policy rule ids).

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
pub use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::{Metric, Registry, Unit};

/// How long the scrape hooks together may take before the scrape answers
/// with the values they had.
const SCRAPE_HOOK_TIMEOUT: Duration = Duration::from_secs(2);

/// `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

type Hook = Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A service's metrics registry and its scrape hooks (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
    /// One scrape at a time runs the hooks: concurrent scrapes (an
    /// admin port hammered) do not multiply the database's work.
    scraping: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            registry: Arc::new(Mutex::new(Registry::with_prefix("airt"))),
            hooks: Arc::new(Mutex::new(Vec::new())),
            scraping: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Registers `metric` as `airt_<name>` (a counter gets `_total`).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        // The encoder ends every help text with a period.
        lock(&self.registry).register(name, help.trim_end_matches('.'), metric);
    }

    /// Registers `metric` as `airt_<name>_seconds`.
    pub fn register_seconds(&self, name: &str, help: &str, metric: impl Metric) {
        lock(&self.registry).register_with_unit(
            name,
            help.trim_end_matches('.'),
            Unit::Seconds,
            metric,
        );
    }

    /// Runs `hook` before every scrape (all hooks at once, bounded by 2 s
    /// together): for gauges read from the store.
    pub fn on_scrape<F, Fut>(&self, hook: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        lock(&self.hooks).push(Arc::new(move || Box::pin(hook())));
    }

    /// The exposition: scrape hooks first, then every metric as text.
    pub async fn render(&self) -> String {
        let _one_at_a_time = self.scraping.lock().await;
        let hooks: Vec<Hook> = lock(&self.hooks).clone();
        let refreshed = futures::future::join_all(hooks.iter().map(|hook| hook()));
        if tokio::time::timeout(SCRAPE_HOOK_TIMEOUT, refreshed)
            .await
            .is_err()
        {
            tracing::warn!(
                "metrics scrape hooks did not finish within {SCRAPE_HOOK_TIMEOUT:?}; answering with older values"
            );
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &lock(&self.registry));
        text
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A label set of `N` labels, for services that define their own metrics:
/// `[("decision", "ALLOW".into()), ("rule", rule_id.into())]`.
pub type Labels<const N: usize> = [(&'static str, std::borrow::Cow<'static, str>); N];

/// A histogram of durations from 100 µs to about 15 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.5, 14))
}

/// Latency histograms by label set.
pub type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// An empty [`LatencyFamily`].
pub fn latency_family<L: EncodeLabelSet + Clone + std::hash::Hash + Eq>() -> LatencyFamily<L> {
    Family::new_with_constructor(latency_histogram)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandledLabels {
    grpc_service: String,
    grpc_method: String,
    grpc_code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    grpc_service: String,
    grpc_method: String,
}

/// gRPC server metrics, recorded by the kit middleware for every call.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    handled: Family<HandledLabels, Counter>,
    latency: LatencyFamily<MethodLabels>,
    in_flight: Gauge,
    known: Arc<HashSet<String>>,
}

impl RpcMetrics {
    /// Registered in `metrics`; methods outside the descriptors this
    /// server serves are counted as `unknown`.
    pub fn new(metrics: &Metrics) -> Self {
        let this = Self {
            handled: Family::default(),
            latency: latency_family(),
            in_flight: Gauge::default(),
            known: Arc::new(known_methods()),
        };
        metrics.register(
            "grpc_server_handled",
            "gRPC calls finished, by method and status code.",
            this.handled.clone(),
        );
        metrics.register_seconds(
            "grpc_server_handling",
            "How long gRPC calls took, from the request to the last message (streams included).",
            this.latency.clone(),
        );
        metrics.register(
            "grpc_server_in_flight",
            "gRPC calls being served now (open streams included).",
            this.in_flight.clone(),
        );
        this
    }

    /// A call to `path` (`/package.Service/Method`) started.
    pub fn started(&self, path: &str) -> RpcCall {
        self.in_flight.inc();
        let (service, method) = if self.known.contains(path) {
            let (service, method) = path[1..].split_once('/').unwrap_or(("unknown", "unknown"));
            (service.to_owned(), method.to_owned())
        } else {
            ("unknown".to_owned(), "unknown".to_owned())
        };
        RpcCall {
            metrics: self.clone(),
            labels: MethodLabels {
                grpc_service: service,
                grpc_method: method,
            },
            started: tokio::time::Instant::now(),
        }
    }
}

/// One call being measured: [`RpcCall::finished`] records it once.
#[derive(Debug)]
pub struct RpcCall {
    metrics: RpcMetrics,
    labels: MethodLabels,
    started: tokio::time::Instant,
}

impl RpcCall {
    /// Records the call's code and duration; returns the duration.
    pub fn finished(self, code: tonic::Code) -> Duration {
        let elapsed = self.started.elapsed();
        let metrics = &self.metrics;
        metrics.in_flight.dec();
        metrics
            .latency
            .get_or_create(&self.labels)
            .observe(elapsed.as_secs_f64());
        metrics
            .handled
            .get_or_create(&HandledLabels {
                grpc_service: self.labels.grpc_service,
                grpc_method: self.labels.grpc_method,
                grpc_code: code_name(code),
            })
            .inc();
        elapsed
    }
}

/// `OK`, `INVALID_ARGUMENT`, …: the names gRPC's own tools use.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `/package.Service/Method` of every method in the descriptors a server
/// serves (ours, health, reflection).
fn known_methods() -> HashSet<String> {
    use prost::Message as _;
    let sets = [
        airt_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut known = HashSet::new();
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    known.insert(format!(
                        "/{package}.{service_name}/{}",
                        method.name.unwrap_or_default()
                    ));
                }
            }
        }
    }
    known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_counted_by_known_method_and_code_only() {
        let metrics = Metrics::new();
        let rpc = RpcMetrics::new(&metrics);
        rpc.started("/airt.policy.v1.PolicyService/Evaluate")
            .finished(tonic::Code::Ok);
        rpc.started("/airt.policy.v1.PolicyService/Evaluate")
            .finished(tonic::Code::PermissionDenied);
        rpc.started("/grpc.health.v1.Health/Check")
            .finished(tonic::Code::Ok);
        rpc.started("/airt.policy.v1.PolicyService/AnythingAnAttackerLikes")
            .finished(tonic::Code::Unimplemented);
        let text = metrics.render().await;
        for line in [
            r#"airt_grpc_server_handled_total{grpc_service="airt.policy.v1.PolicyService",grpc_method="Evaluate",grpc_code="OK"} 1"#,
            r#"airt_grpc_server_handled_total{grpc_service="airt.policy.v1.PolicyService",grpc_method="Evaluate",grpc_code="PERMISSION_DENIED"} 1"#,
            r#"airt_grpc_server_handled_total{grpc_service="grpc.health.v1.Health",grpc_method="Check",grpc_code="OK"} 1"#,
            r#"airt_grpc_server_handled_total{grpc_service="unknown",grpc_method="unknown",grpc_code="UNIMPLEMENTED"} 1"#,
            r#"airt_grpc_server_handling_seconds_count{grpc_service="airt.policy.v1.PolicyService",grpc_method="Evaluate"} 2"#,
            "airt_grpc_server_in_flight 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("AnythingAnAttackerLikes"));
    }

    #[tokio::test]
    async fn scrape_hooks_refresh_gauges_before_the_text_is_written() {
        let metrics = Metrics::new();
        let gauge: Gauge = Gauge::default();
        metrics.register("things", "Things.", gauge.clone());
        let source = Arc::new(std::sync::atomic::AtomicI64::new(7));
        let (g, s) = (gauge.clone(), source.clone());
        metrics.on_scrape(move || {
            let (g, s) = (g.clone(), s.clone());
            async move {
                g.set(s.load(std::sync::atomic::Ordering::Relaxed));
            }
        });
        assert!(metrics.render().await.contains("airt_things 7\n"));
        source.store(9, std::sync::atomic::Ordering::Relaxed);
        assert!(metrics.render().await.contains("airt_things 9\n"));
    }
}
