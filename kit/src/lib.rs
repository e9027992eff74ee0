//! `airt-kit`: what every AI-First Runtime server shares.
//!
//! - [`config`]: flags and `AIRT_*` environment, secrets redacted when logged.
//! - [`telemetry`]: logs, and traces exported over OTLP when configured
//!   ([`spans`]: the layer that turns spans into OpenTelemetry spans);
//!   [`trace`]: W3C trace context in and out of a process.
//! - [`admin`] and [`metrics`]: the admin listener (`/metrics`, `/livez`,
//!   `/readyz`) and the metrics registry every service fills.
//! - [`server`] and [`bootstrap`]: one way to start a service — its gRPC
//!   services, `AuditService`, health, reflection (v1 and v1alpha) and graceful
//!   shutdown.
//! - [`credentials`]: how a client identifies itself (token or development identity).
//! - [`auth`]: bearer JWT (HS256, EdDSA) or explicit development mode →
//!   [`Principal`]; role checks.
//! - [`middleware`]: the tower layer every call passes: authentication, one
//!   tracing span per RPC, gRPC metrics.
//! - [`db`]: the database connection manager (SQLite or PostgreSQL from the URL).
//! - [`audit`]: the hash-chained audit log and its gRPC service.
//! - [`status`]: `tonic::Status` with `google.rpc.ErrorInfo` and field violations.
//! - [`json`]: canonical JSON and `google.protobuf.Struct` conversions.
//! - [`mask`]: secret values masked before they reach a log or a webhook.
//! - `testing` (feature `testing`): fresh databases and in-process servers
//!   for tests; not in production builds.
//! - [`vocabulary`]: `RiskLevel`, `OperationType` (the `airt.common.v1` enums).

pub mod admin;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod balance;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod db;
pub mod dependencies;
pub mod json;
pub mod limits;
mod log_ids;
pub mod mask;
pub mod metrics;
pub mod middleware;
pub mod principal;
pub mod server;
pub mod spans;
pub mod status;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod trace;
pub mod vocabulary;

pub use principal::Principal;
