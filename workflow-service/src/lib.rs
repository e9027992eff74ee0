//! `workflow-service`: the Body — runs workflows durably, asking the
//! registry and the policy service before every step. Home of the standard
//! capabilities ([`capabilities`]), which it publishes to the registry at
//! start-up.
//!
//! `serve_on` is used by the binary, by `airt up` and by tests.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airt_kit::config::{ServiceConfig, ServiceIdentity};
use tokio::net::TcpListener;

/// The standard capabilities (their own crate, re-exported).
pub use airt_capabilities as capabilities;

use airt_kit::credentials::Credentials;
use capabilities::{Catalogue, CatalogueConfig, Workspace};
use publish::publish_until_done;

/// Name, default port and default SQLite file of this service.
pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "workflow-service",
    default_port: 50053,
    default_admin_port: 9453,
    default_db_file: "workflow.db",
};

/// Flags of the workflow service beyond the common ones.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkflowArgs {
    /// The registry service.
    #[arg(
        long,
        env = "AIRT_REGISTRY_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub registry_addr: String,

    /// The policy service.
    #[arg(
        long,
        env = "AIRT_POLICY_ADDR",
        default_value = "http://127.0.0.1:50052"
    )]
    pub policy_addr: String,

    /// TLS towards `https://` registry and policy addresses.
    #[command(flatten)]
    pub tls: airt_kit::tls::ClientTlsArgs,

    /// How often registry and policy host names are resolved again (and
    /// their addresses probed) to spread calls over every replica.
    #[arg(long, env = "AIRT_RESOLVE_INTERVAL", default_value = "5s", value_parser = airt_kit::config::parse_duration)]
    pub resolve_interval: Duration,

    /// Root of the filesystem sandbox for io.fs.* capabilities.
    #[arg(long, env = "AIRT_WORKSPACE", default_value = ".airt/workspace")]
    pub workspace: PathBuf,

    /// Bearer token this service presents to the registry and policy
    /// services (a token for `service:workflow` with role `registrar`).
    #[arg(long, env = "AIRT_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: Option<airt_kit::config::Secret>,

    /// File holding the service token (instead of passing it as a value).
    #[arg(long, env = "AIRT_SERVICE_TOKEN_FILE")]
    pub service_token_file: Option<PathBuf>,

    /// Environment variables sys.info.get_env_var may read (comma-separated).
    #[arg(
        long,
        env = "AIRT_ENV_ALLOW_LIST",
        value_delimiter = ',',
        default_value = ""
    )]
    pub env_allow_list: Vec<String>,

    /// Internal hosts and CIDRs that net.http.*, http: and mcp: handlers may
    /// reach (comma-separated), e.g.
    /// `crm.internal,10.1.0.0/16`. Everything internal is refused otherwise.
    #[arg(
        long,
        env = "AIRT_NET_ALLOW",
        value_delimiter = ',',
        default_value = ""
    )]
    pub net_allow: Vec<String>,

    /// Local MCP servers that `mcp:stdio:<name>#<tool>` capabilities call,
    /// as `name=program args...` (repeatable; `;`-separated in the
    /// environment). Started per call with the service's rights, no shell,
    /// an environment of PATH, HOME and LANG only.
    #[arg(
        long = "mcp-stdio-server",
        env = "AIRT_MCP_STDIO_SERVERS",
        value_delimiter = ';'
    )]
    pub mcp_stdio_servers: Vec<String>,

    /// Programs sys.exec.run may run (comma-separated names, resolved on PATH
    /// at start-up). Shells and interpreters are always refused.
    #[arg(
        long,
        env = "AIRT_EXEC_ALLOW",
        value_delimiter = ',',
        default_value = "echo,ls,cat,wc,head,tail,sort,uniq,sha256sum,date,true,false"
    )]
    pub exec_allow: Vec<String>,

    /// This deployment's environment (e.g. `prod`): what policies match with
    /// `when.environment`. Workflows cannot choose it.
    #[arg(long, env = "AIRT_ENVIRONMENT", default_value = "")]
    pub environment: String,

    /// How sys.exec.run confines programs: `landlock` (only the workspace is
    /// writable, only system directories readable, only allow-listed programs
    /// executable; refused when the kernel cannot) or `none` (no OS sandbox).
    #[arg(
        long,
        env = "AIRT_EXEC_SANDBOX",
        value_enum,
        default_value = "landlock"
    )]
    pub exec_sandbox: capabilities::sandbox::SandboxMode,

    /// How long an approval waits for a decision when the step sets no
    /// `approval.timeout` (e.g. `30m`, `24h`); then the step EXPIRES.
    #[arg(long, env = "AIRT_APPROVAL_TIMEOUT", default_value = "24h", value_parser = airt_kit::config::parse_duration)]
    pub approval_timeout: Duration,

    /// URLs that receive approval and workflow events as signed JSON POSTs
    /// (comma-separated).
    #[arg(
        long,
        env = "AIRT_WEBHOOK_URLS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub webhook_urls: Vec<String>,

    /// HMAC-SHA256 key of the `webhook-signature` header; required with
    /// webhook URLs.
    #[arg(long, env = "AIRT_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<airt_kit::config::Secret>,

    /// File holding the webhook signing key.
    #[arg(long, env = "AIRT_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,

    /// Attempts per webhook delivery before it is FAILED.
    #[arg(long, env = "AIRT_WEBHOOK_MAX_ATTEMPTS", default_value_t = 12)]
    pub webhook_max_attempts: u32,

    /// The console's address (e.g. `https://console.example.com`):
    /// `approval.requested` webhooks then link to the approval's page.
    #[arg(long, env = "AIRT_CONSOLE_URL")]
    pub console_url: Option<String>,

    /// This replica's name in workflow leases: stable across restarts and
    /// unique among replicas sharing a database. Default: `<hostname>:<port>`.
    #[arg(long, env = "AIRT_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How long a replica's claim on a workflow lasts without renewal; a
    /// crashed replica's workflows are taken over after it.
    #[arg(long, env = "AIRT_LEASE_TTL", default_value = "15s", value_parser = airt_kit::config::parse_duration)]
    pub lease_ttl: Duration,

    /// How long the undo data of a finished workflow (previous bytes,
    /// trashed files in the workspace's `.airt/undo`) is kept; a
    /// COMPENSATION_FAILED workflow keeps it for the operator.
    #[arg(long, env = "AIRT_UNDO_RETENTION", default_value = "24h", value_parser = airt_kit::config::parse_duration)]
    pub undo_retention: Duration,

    /// Workflows this replica drives at once; more wait their turn (and a
    /// replica at its limit claims no orphaned workflow, leaving them to
    /// replicas with room).
    #[arg(long, env = "AIRT_MAX_ACTIVE_WORKFLOWS", default_value_t = 1024)]
    pub max_active_workflows: usize,

    /// How often a WatchWorkflow stream looks for changes committed by other
    /// replicas sharing the database; this replica's own changes reach its
    /// watchers at once.
    #[arg(long, env = "AIRT_WATCH_POLL", default_value = "100ms", value_parser = airt_kit::config::parse_duration)]
    pub watch_poll: Duration,

    /// WatchWorkflow streams this replica keeps open at once.
    #[arg(long, env = "AIRT_MAX_WATCHERS", default_value_t = 10_000)]
    pub max_watchers: usize,

    /// WatchWorkflow streams one principal keeps open at once.
    #[arg(long, env = "AIRT_MAX_WATCHERS_PER_PRINCIPAL", default_value_t = 64)]
    pub max_watchers_per_principal: usize,

    /// Wait before the first retry of a webhook; doubles per attempt up to 5m.
    #[arg(long, env = "AIRT_WEBHOOK_INITIAL_BACKOFF", default_value = "1s", value_parser = airt_kit::config::parse_duration)]
    pub webhook_initial_backoff: Duration,
}

/// The workflow service's own configuration.
#[derive(Debug, Clone)]
pub struct WorkflowConfig {
    pub registry_addr: String,
    pub policy_addr: String,
    /// What `https://` dependencies are verified with and presented.
    pub client_tls: airt_kit::tls::ClientTls,
    /// How often dependency names are resolved again ([`airt_kit::balance`]).
    pub resolve_interval: Duration,
    pub workspace: PathBuf,
    pub credentials: Credentials,
    pub catalogue: CatalogueConfig,
    pub approval_timeout: Duration,
    pub webhooks: webhooks::WebhookConfig,
    pub instance_id: String,
    pub lease_ttl: Duration,
    pub undo_retention: Duration,
    pub watch_poll: Duration,
    pub max_active_workflows: usize,
    pub environment: String,
    /// Open WatchWorkflow streams: in all, and per principal.
    pub max_watchers: (usize, usize),
}

/// `<hostname>:<port>`: stable across restarts of one replica, distinct
/// between replicas on different hosts or ports (a random id for port 0).
pub fn default_instance_id(listen: std::net::SocketAddr) -> String {
    if listen.port() == 0 {
        return uuid::Uuid::now_v7().to_string();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", listen.port())
}

impl WorkflowConfig {
    /// From flags; without a service token, development auth mode implies
    /// development credentials towards the other services.
    pub fn from_args(args: &WorkflowArgs, server: &ServiceConfig) -> anyhow::Result<Self> {
        use airt_kit::config::Secret;
        let service_token = Secret::from_value_or_file(
            "service-token",
            args.service_token.as_ref(),
            args.service_token_file.as_deref(),
        )?;
        let webhook_secret = Secret::from_value_or_file(
            "webhook-secret",
            args.webhook_secret.as_ref(),
            args.webhook_secret_file.as_deref(),
        )?;
        let credentials = match (&service_token, &server.auth) {
            (Some(token), _) => {
                Credentials::bearer(token).map_err(|e| anyhow::anyhow!("--service-token: {e}"))?
            }
            (None, airt_kit::auth::AuthSettings::Development) => publish::development_credentials(),
            (None, _) => Credentials::none(),
        };
        anyhow::ensure!(
            args.watch_poll >= Duration::from_millis(10),
            "--watch-poll must be at least 10ms"
        );
        anyhow::ensure!(
            args.max_active_workflows >= 1,
            "--max-active-workflows must be at least 1"
        );
        let search_path =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        Ok(Self {
            registry_addr: args.registry_addr.clone(),
            policy_addr: args.policy_addr.clone(),
            client_tls: airt_kit::tls::ClientTls::load(&args.tls)?,
            resolve_interval: args.resolve_interval.max(Duration::from_millis(100)),
            workspace: args.workspace.clone(),
            credentials,
            instance_id: args
                .instance_id
                .clone()
                .filter(|id| !id.trim().is_empty())
                .unwrap_or_else(|| default_instance_id(server.listen)),
            lease_ttl: args.lease_ttl,
            undo_retention: args.undo_retention,
            watch_poll: args.watch_poll,
            max_active_workflows: args.max_active_workflows,
            environment: args.environment.trim().to_owned(),
            max_watchers: (args.max_watchers, args.max_watchers_per_principal),
            approval_timeout: args.approval_timeout,
            webhooks: {
                let config = webhooks::WebhookConfig {
                    urls: args
                        .webhook_urls
                        .iter()
                        .filter(|u| !u.is_empty())
                        .cloned()
                        .collect(),
                    secret: webhook_secret,
                    max_attempts: args.webhook_max_attempts,
                    initial_backoff: args.webhook_initial_backoff,
                    console_url: args.console_url.clone(),
                    ..webhooks::WebhookConfig::default()
                };
                config.validate().map_err(anyhow::Error::msg)?;
                config
            },
            catalogue: CatalogueConfig {
                env_allow_list: args
                    .env_allow_list
                    .iter()
                    .filter(|v| !v.is_empty())
                    .cloned()
                    .collect(),
                network: capabilities::net::NetworkPolicy::parse(&args.net_allow)
                    .map_err(anyhow::Error::msg)?,
                exec: capabilities::exec::ExecPolicy::resolve(&args.exec_allow, &search_path)
                    .map_err(anyhow::Error::msg)?
                    .with_sandbox(args.exec_sandbox),
                mcp_stdio: capabilities::mcp::StdioServers::parse(&args.mcp_stdio_servers)
                    .map_err(|e| anyhow::anyhow!("--mcp-stdio-server: {e}"))?,
            },
        })
    }
}

/// A lazily connected channel to the registry or the policy service: one
/// address, or a host name / comma-separated list spread over every
/// replica ([`airt_kit::balance`]). HTTP/2 keepalive pings notice a
/// connection that went silent (a vanished host, a partition) so calls
/// fail over to a new connection instead of hanging.
async fn dependency(
    addr: &str,
    workflow: &WorkflowConfig,
) -> anyhow::Result<tonic::transport::Channel> {
    fn shaped(endpoint: tonic::transport::Endpoint) -> tonic::transport::Endpoint {
        endpoint
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
    }
    airt_kit::balance::channel(
        addr,
        &workflow.client_tls,
        shaped,
        workflow.resolve_interval,
    )
    .await
    .map_err(|e| e.context(format!("dependency address {addr:?}")))
}

/// Serves on `listener` until `shutdown` resolves: `WorkflowService`,
/// `ApprovalService`, health, reflection and `AuditService`; in the
/// background, approval deadlines and webhook deliveries. Health is
/// NOT_SERVING until every built-in capability is published to the registry
/// (retried in the background while it is down).
pub async fn serve_on(
    config: ServiceConfig,
    workflow: WorkflowConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    if workflow.credentials.is_empty() {
        tracing::warn!(
            "no credentials for the registry and policy services (set AIRT_SERVICE_TOKEN); built-in capabilities cannot be published and no step can be decided"
        );
    }
    workflow.webhooks.validate().map_err(anyhow::Error::msg)?;
    let workspace = Arc::new(Workspace::open(&workflow.workspace)?);
    let catalogue = Arc::new(Catalogue::new(&workflow.catalogue));
    let registry = dependency(&workflow.registry_addr, &workflow).await?;
    let policy = dependency(&workflow.policy_addr, &workflow).await?;
    airt_kit::bootstrap::serve(&IDENTITY, config, Some(store::MIGRATIONS), listener, shutdown, move |ctx, server| async move {
        let credentials = workflow.credentials.clone();
        // Ready only while both dependencies answer (each check bounded).
        for (name, channel) in [("registry", registry.clone()), ("policy", policy.clone())] {
            ctx.readiness.add_check(name, move || airt_kit::admin::grpc_serving(channel.clone()));
        }
        let registry_gate = gate::registry::RegistryGate::new(registry.clone(), credentials.clone());
        // Background work ends when shutdown begins (watch streams, the
        // registry change feed, recovery, deadlines, deliveries, the sweep).
        let (stopped, tasks) = (ctx.shutdown.clone(), ctx.tasks.clone());
        tasks.spawn(registry_gate.clone().follow(stopped.clone()));
        let store = store::WorkflowStore::new(ctx.db.clone());
        let counted = metrics::WorkflowMetrics::register(&ctx.metrics);
        let engine = engine::Engine::new(
            store.clone(),
            catalogue.clone(),
            workspace,
            registry_gate,
            gate::policy::PolicyGate::new(policy, credentials.clone()),
            Arc::new(workflow.catalogue.network.clone()),
            engine::EngineConfig {
                approval_timeout: workflow.approval_timeout,
                webhooks: workflow.webhooks.clone(),
                instance_id: workflow.instance_id.clone(),
                lease_ttl: workflow.lease_ttl,
                undo_retention: workflow.undo_retention,
                max_active_runs: workflow.max_active_workflows,
                environment: workflow.environment.clone(),
                metrics: counted.clone(),
                mcp_stdio: Arc::new(workflow.catalogue.mcp_stdio.clone()),
                ..engine::EngineConfig::default()
            },
        );
        tracing::info!(instance_id = %workflow.instance_id, lease_ttl = ?workflow.lease_ttl, "workflow leases");
        metrics::WorkflowMetrics::observe_store(&ctx.metrics, &store, engine.active_runs(), workflow.max_active_workflows);
        let dispatcher = webhooks::Dispatcher::new(store, workflow.webhooks.clone(), engine.outbox_notify(), counted)?;
        tasks.spawn(dispatcher.run(stopped.clone()));
        tasks.spawn(engine.clone().run_deadlines(stopped.clone()));
        tasks.spawn(engine.clone().run_recovery(stopped.clone()));
        tasks.spawn(engine.clone().run_undo_collector(stopped.clone()));
        let approvals = api::ApprovalApi::new(engine.clone());
        let watchers = api::watchers::Watchers::new(workflow.max_watchers.0, workflow.max_watchers.1);
        let api = api::WorkflowApi::new(engine, stopped, workflow.watch_poll, watchers);
        Ok(server
            .add_service(airt_proto::workflow::v1::workflow_service_server::WorkflowServiceServer::new(api))
            .add_service(airt_proto::workflow::v1::approval_service_server::ApprovalServiceServer::new(approvals))
            .ready_when(async move {
                publish_until_done(&catalogue, registry, &credentials).await;
            }))
    })
    .await
}

pub mod api;
pub mod convert;
pub mod domain;
pub mod engine;
pub mod error;
pub mod gate;
pub mod metrics;
pub mod publish;
pub mod store;
pub mod webhooks;
