//! Starting a service the same way everywhere: auth, database and
//! migrations, audit, the service's own gRPC services, then serve until
//! shutdown and close the pool.

use std::future::Future;
use std::process::ExitCode;

use airt_proto::audit::v1::audit_service_server::AuditServiceServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::server::HealthReporter;

use crate::admin::Readiness;
use crate::audit::{AuditApi, AuditLog};
use crate::auth::{AuthSettings, Authenticator};
use crate::config::{ServerArgs, ServiceConfig, ServiceIdentity};
use crate::db::{Database, Migrations};
use crate::metrics::{Metrics, RpcMetrics};
use crate::middleware::RpcLayer;
use crate::server::{GrpcServer, shutdown_signal};

/// What a service's builder receives to construct its gRPC services.
#[derive(Debug, Clone)]
pub struct ServiceContext {
    pub config: ServiceConfig,
    /// Cancelled when shutdown begins: background loops and open streams
    /// end on it, so the drain can finish.
    pub shutdown: CancellationToken,
    /// Background work of the service: awaited (up to the grace period)
    /// after the last call was served and before the database closes.
    pub tasks: TaskTracker,
    pub db: Database,
    pub auth: Authenticator,
    pub audit: AuditLog,
    pub health: HealthReporter,
    /// The service's metrics, served at the admin listener's `/metrics`.
    pub metrics: Metrics,
    /// What the admin listener's `/readyz` checks; a service adds its own
    /// dependencies.
    pub readiness: Readiness,
}

/// Runs one service on `listener` until `shutdown` resolves.
///
/// The database is opened and migrated before the first connection is
/// accepted, so `Health/Check` answers SERVING only after migrations ran.
/// `build` adds the service's own gRPC services; every call to them is
/// authenticated and traced by the server's [`RpcLayer`] (the principal is
/// in the request's extensions: [`crate::auth::principal`]).
/// `AuditService` is added here for every service.
pub async fn serve<F, Fut>(
    identity: &ServiceIdentity,
    config: ServiceConfig,
    migrations: Option<Migrations>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    build: F,
) -> anyhow::Result<()>
where
    F: FnOnce(ServiceContext, GrpcServer) -> Fut,
    Fut: Future<Output = anyhow::Result<GrpcServer>>,
{
    let auth = Authenticator::new(&config.auth)?;
    match config.auth {
        AuthSettings::Development => tracing::warn!(
            service = identity.name,
            "DEVELOPMENT AUTH MODE: callers are trusted to name themselves in x-airt-principal; never use this in production"
        ),
        AuthSettings::Unconfigured => tracing::warn!(
            service = identity.name,
            "no token verifier configured: every authenticated call will be refused (set AIRT_JWT_HS256_SECRET or AIRT_JWT_EDDSA_PUBLIC_KEY_FILE)"
        ),
        AuthSettings::Jwt(_) => auth.warm_up().await,
    }
    let (metrics, readiness) = (Metrics::new(), Readiness::new());
    // Up before the migrations, so liveness answers while they run.
    let admin = AdminTask::start(identity, &config, &metrics, &readiness).await?;
    let db = Database::connect(&config.database_url, migrations).await?;
    let audit = AuditLog::new(db.clone());
    observe_storage(identity, &metrics, &readiness, &db, &audit);
    let rpc = RpcLayer::new(identity.name, auth.clone(), RpcMetrics::new(&metrics));
    let server = GrpcServer::new(rpc, readiness.clone());
    let (token, tasks) = (CancellationToken::new(), TaskTracker::new());
    let ctx = ServiceContext {
        metrics,
        readiness,
        shutdown: token.clone(),
        tasks: tasks.clone(),
        config,
        db: db.clone(),
        auth: auth.clone(),
        audit: audit.clone(),
        health: server.health_reporter(),
    };
    let server = server.add_service(AuditServiceServer::new(AuditApi::new(audit)));
    let (grace, tls) = (ctx.config.shutdown_grace, ctx.config.tls.clone());
    let server = build(ctx, server).await?.with_tls(tls);
    tracing::info!(service = identity.name, addr = %listener.local_addr()?, ?server, "serving");
    let stopping = token.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.cancel();
    };
    let result = server.serve(listener, shutdown, grace).await;
    token.cancel();
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            service = identity.name,
            "background work did not stop within {grace:?}"
        );
    }
    db.close().await;
    admin.stop().await;
    tracing::info!(service = identity.name, "stopped");
    Ok(result?)
}

/// The admin listener of a running service; stopped last (or when the
/// start fails, by dropping it).
struct AdminTask {
    stop: tokio_util::sync::DropGuard,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl AdminTask {
    async fn start(
        identity: &ServiceIdentity,
        config: &ServiceConfig,
        metrics: &Metrics,
        readiness: &Readiness,
    ) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let task = match config.admin_listen {
            None => None,
            Some(addr) => {
                let listener = crate::admin::bind(addr).await?;
                let addr = listener.local_addr()?;
                tracing::info!(service = identity.name, %addr, "admin listening");
                let serving =
                    crate::admin::serve(listener, metrics.clone(), readiness.clone(), stop.clone());
                Some(tokio::spawn(serving))
            }
        };
        Ok(Self {
            stop: stop.drop_guard(),
            task,
        })
    }

    async fn stop(self) {
        let Self { stop, task } = self;
        drop(stop);
        // A scraper holding a request open must not hold up the exit.
        if let Some(task) = task {
            match tokio::time::timeout(std::time::Duration::from_secs(2), task).await {
                Ok(Ok(Err(error))) => tracing::warn!(%error, "the admin listener failed"),
                Err(_) => tracing::warn!("the admin listener did not stop within 2s"),
                Ok(_) => {}
            }
        }
    }
}

/// Metrics and readiness every service shares: the database (reachable,
/// its pool) and the audit chain's length; the build.
fn observe_storage(
    identity: &ServiceIdentity,
    metrics: &Metrics,
    readiness: &Readiness,
    db: &Database,
    audit: &AuditLog,
) {
    use crate::metrics::{EncodeLabelSet, Family, Gauge};
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct State {
        state: &'static str,
    }
    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Build {
        service: &'static str,
        version: &'static str,
    }
    metrics.register(
        "build",
        "The running build.",
        prometheus_client::metrics::info::Info::new(Build {
            service: identity.name,
            version: env!("CARGO_PKG_VERSION"),
        }),
    );
    metrics.register_seconds(
        "db_transaction",
        "Write transactions, from asking for one to its commit, by outcome (committed, failed, rolled_back).",
        crate::db::transaction_seconds(),
    );
    let pool: Family<State, Gauge> = Family::default();
    metrics.register(
        "db_pool_connections",
        "Open database connections, by state (idle or in_use).",
        pool.clone(),
    );
    let chain: Gauge = Gauge::default();
    metrics.register(
        "audit_chain_events",
        "Events in this service's audit chain (every replica sharing the database appends to it).",
        chain.clone(),
    );
    let (db_, audit) = (db.clone(), audit.clone());
    metrics.on_scrape(move || {
        let (db, audit, pool, chain) = (db_.clone(), audit.clone(), pool.clone(), chain.clone());
        async move {
            let (open, idle) = db.pool_connections();
            let idle = i64::try_from(idle).unwrap_or(i64::MAX);
            pool.get_or_create(&State { state: "idle" }).set(idle);
            pool.get_or_create(&State { state: "in_use" })
                .set(i64::from(open) - idle);
            if let Ok(length) = audit.length().await {
                chain.set(length);
            }
        }
    });
    let db = db.clone();
    readiness.add_check("database", move || {
        let db = db.clone();
        async move { db.ping().await.map_err(|e| e.to_string()) }
    });
}

/// The whole `main` of a service binary: logging, configuration (logged with
/// secrets redacted), bind, serve until SIGTERM/SIGINT. Exit code 0 after a
/// clean shutdown, 1 on any error.
pub fn run_main<S, Fut>(
    identity: &'static ServiceIdentity,
    args: ServerArgs,
    serve_on: S,
) -> ExitCode
where
    S: FnOnce(
        ServiceConfig,
        TcpListener,
        std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The OTLP exporter is a gRPC client: set up inside the runtime.
    let telemetry = runtime.block_on(async { crate::telemetry::init(&args.log, identity.name) });
    let result = runtime.block_on(async move {
        let config = ServiceConfig::from_args(identity, &args)?;
        tracing::info!(service = identity.name, version = env!("CARGO_PKG_VERSION"), config = %config.redacted(), "starting");
        let listener = TcpListener::bind(config.listen).await?;
        serve_on(config, listener, Box::pin(shutdown_signal())).await
    });
    runtime.block_on(async { telemetry.shutdown() });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(
                service = identity.name,
                error = format!("{error:#}"),
                "exiting"
            );
            ExitCode::FAILURE
        }
    }
}

/// Subcommands every service binary has besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Asks the server on this configuration's `--listen` port (over
    /// loopback) for `grpc.health.v1.Health/Check`; exits 0 when it answers
    /// SERVING, 1 otherwise. For container and orchestrator health checks.
    Healthcheck {
        /// Ask this address instead, e.g. `http://10.0.0.5:50051`.
        #[arg(long)]
        addr: Option<String>,
    },
}

/// Runs a [`Command`] for the service `identity`.
pub fn run_command(
    identity: &'static ServiceIdentity,
    args: &ServerArgs,
    command: Command,
) -> ExitCode {
    match command {
        Command::Healthcheck { addr } => healthcheck(identity, args, addr),
    }
}

fn healthcheck(
    identity: &'static ServiceIdentity,
    args: &ServerArgs,
    addr: Option<String>,
) -> ExitCode {
    use tonic_health::pb::health_check_response::ServingStatus;
    let target = match addr {
        Some(addr) => addr,
        None => match ServiceConfig::from_args(identity, args) {
            Ok(config) => {
                let mut listen = config.listen;
                if listen.ip().is_unspecified() {
                    listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{listen}")
            }
            Err(error) => {
                eprintln!("{}: {error:#}", identity.name);
                return ExitCode::FAILURE;
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{}: {error}", identity.name);
            return ExitCode::FAILURE;
        }
    };
    let answer = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(target.clone())?
            .connect_timeout(std::time::Duration::from_secs(3))
            .timeout(std::time::Duration::from_secs(3))
            .connect()
            .await?;
        let response = tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await?;
        anyhow::Ok(response.into_inner().status())
    });
    match answer {
        Ok(ServingStatus::Serving) => {
            println!("{} at {target}: SERVING", identity.name);
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{} at {target}: {}", identity.name, status.as_str_name());
            ExitCode::FAILURE
        }
        Err(error) => {
            println!("{} at {target}: unreachable: {error:#}", identity.name);
            ExitCode::FAILURE
        }
    }
}
