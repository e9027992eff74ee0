//! `airt up`: the three services in one process, each with its own SQLite
//! file under the data directory, and the MCP gateway in front of them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use airt_kit::config::{AuthArgs, LogArgs, ServerArgs, ServiceConfig, ServiceIdentity};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Directory holding the three SQLite databases.
    #[arg(long, env = "AIRT_DATA_DIR", default_value = ".airt")]
    data_dir: PathBuf,

    /// Interface to listen on. The ports are those of `--registry-addr`,
    /// `--policy-addr` and `--workflow-addr` (default 50051–50053).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Ports of the registry, policy and workflow admin listeners
    /// (`/metrics`, `/livez`, `/readyz`), or `off`.
    #[arg(long, env = "AIRT_UP_ADMIN_PORTS", default_value = "9451,9452,9453", value_parser = parse_admin_ports)]
    admin_ports: AdminPorts,

    /// Port of the MCP gateway (Streamable HTTP at `/mcp`), or `off`.
    #[arg(long, env = "AIRT_UP_MCP_PORT", default_value = "50054", value_parser = parse_port_or_off)]
    mcp_port: OptionalPort,

    /// Port of the web console (approvals inbox, workflows), or `off`.
    #[arg(long, env = "AIRT_UP_CONSOLE_PORT", default_value = "50080", value_parser = parse_port_or_off)]
    console_port: OptionalPort,

    #[command(flatten)]
    auth: AuthArgs,

    /// Token the workflow service presents to the registry when JWT auth is on.
    #[arg(long, env = "AIRT_SERVICE_TOKEN", hide_env_values = true)]
    service_token: Option<airt_kit::config::Secret>,

    /// File holding the service token.
    #[arg(long, env = "AIRT_SERVICE_TOKEN_FILE")]
    service_token_file: Option<PathBuf>,

    #[command(flatten)]
    log: LogArgs,

    /// Default time an approval waits for a decision.
    #[arg(long, env = "AIRT_APPROVAL_TIMEOUT", default_value = "24h", value_parser = airt_kit::config::parse_duration)]
    approval_timeout: Duration,

    /// URLs receiving signed approval and workflow events (comma-separated).
    #[arg(
        long,
        env = "AIRT_WEBHOOK_URLS",
        value_delimiter = ',',
        default_value = ""
    )]
    webhook_urls: Vec<String>,

    /// HMAC key of the webhooks' `webhook-signature`.
    #[arg(long, env = "AIRT_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<airt_kit::config::Secret>,

    /// File holding the webhook signing key.
    #[arg(long, env = "AIRT_WEBHOOK_SECRET_FILE")]
    webhook_secret_file: Option<PathBuf>,

    /// Internal hosts and CIDRs that net.http.*, http: and mcp: handlers may
    /// reach (comma-separated), e.g. `127.0.0.1` for a local MCP server.
    #[arg(
        long,
        env = "AIRT_NET_ALLOW",
        value_delimiter = ',',
        default_value = ""
    )]
    net_allow: Vec<String>,

    /// Local MCP servers `mcp:stdio:<name>#<tool>` capabilities call, as
    /// `name=program args...` (repeatable).
    #[arg(
        long = "mcp-stdio-server",
        env = "AIRT_MCP_STDIO_SERVERS",
        value_delimiter = ';'
    )]
    mcp_stdio_servers: Vec<String>,

    /// This deployment's environment, as policies see it (e.g. `dev`).
    #[arg(long, env = "AIRT_ENVIRONMENT", default_value = "")]
    environment: String,

    /// How sys.exec.run confines programs (`landlock` or `none`).
    #[arg(
        long,
        env = "AIRT_EXEC_SANDBOX",
        value_enum,
        default_value = "landlock"
    )]
    exec_sandbox: workflow_service::capabilities::sandbox::SandboxMode,

    /// Once the stack is up, load a demo policy and run three workflows: one
    /// allowed, one denied before execution, one rolled back. Needs --auth-dev-mode.
    #[arg(long)]
    demo: bool,
}

/// `--admin-ports`: three ports, or none.
#[derive(Debug, Clone, Copy)]
struct AdminPorts(Option<[u16; 3]>);

/// `--mcp-port`, `--console-port`: a port, or none.
#[derive(Debug, Clone, Copy)]
struct OptionalPort(Option<u16>);

fn parse_port_or_off(text: &str) -> Result<OptionalPort, String> {
    match text.trim() {
        "off" | "none" => Ok(OptionalPort(None)),
        port => port
            .parse()
            .map(|p| OptionalPort(Some(p)))
            .map_err(|e| format!("{text:?}: expected a port like 50054, or off: {e}")),
    }
}

/// The console's configuration: the services of this process, the same
/// sign-in (development mode or the same token verifier).
fn console_config(
    args: &UpArgs,
    addrs: [SocketAddr; 3],
) -> anyhow::Result<airt_console::ConsoleConfig> {
    airt_console::ConsoleConfig::from_args(
        &airt_console::ConsoleArgs {
            services: airt_kit::dependencies::ServiceAddrArgs::at(addrs),
            session_key_file: None,
            session_ttl: Duration::from_secs(8 * 3600),
            console_url: None,
            oidc_issuer: None,
            oidc_client_id: None,
            oidc_client_secret_file: None,
            oidc_scopes: String::new(),
            oidc_use_id_token: false,
        },
        args.auth.settings()?,
    )
}

/// The MCP gateway's configuration: the services of this process, the same
/// caller authentication.
fn gateway_config(
    args: &UpArgs,
    addrs: [SocketAddr; 3],
) -> anyhow::Result<mcp_gateway::GatewayConfig> {
    mcp_gateway::GatewayConfig::from_args(
        &mcp_gateway::GatewayArgs {
            services: airt_kit::dependencies::ServiceAddrArgs::at(addrs),
            approval_wait: Duration::from_secs(30),
            environment: args.environment.clone(),
            service_token: args.service_token.clone(),
            service_token_file: args.service_token_file.clone(),
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
        },
        args.auth.settings()?,
    )
}

fn parse_admin_ports(text: &str) -> Result<AdminPorts, String> {
    if matches!(text.trim(), "off" | "none") {
        return Ok(AdminPorts(None));
    }
    let ports: Vec<u16> = text
        .split(',')
        .map(|p| p.trim().parse::<u16>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{text:?}: expected three ports like 9451,9452,9453, or off: {e}"))?;
    <[u16; 3]>::try_from(ports)
        .map(|ports| AdminPorts(Some(ports)))
        .map_err(|_| format!("{text:?}: expected three ports (registry,policy,workflow), or off"))
}

/// The port of a service address given to the CLI (`http://host:port`).
fn port_of(service: &str, address: &str) -> anyhow::Result<u16> {
    let uri: tonic::transport::Uri = address
        .parse()
        .map_err(|e| anyhow::anyhow!("--{service}-addr {address:?}: {e}"))?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "--{service}-addr {address:?}: `airt up` serves plaintext; use http://"
    );
    uri.port_u16()
        .ok_or_else(|| anyhow::anyhow!("--{service}-addr {address:?} names no port"))
}

/// Where `airt up` serves each service: the interface of `--host`, the
/// ports of the CLI's service addresses.
fn service_config(
    args: &UpArgs,
    identity: &ServiceIdentity,
    port: u16,
    admin_port: Option<u16>,
) -> anyhow::Result<ServiceConfig> {
    let admin_listen = match admin_port {
        Some(port) => airt_kit::config::AdminListen::At(SocketAddr::new(args.host, port)),
        None => airt_kit::config::AdminListen::Off,
    };
    let server_args = ServerArgs {
        listen: Some(SocketAddr::new(args.host, port)),
        admin_listen: Some(admin_listen),
        database_url: Some(format!(
            "sqlite://{}",
            args.data_dir.join(identity.default_db_file).display()
        )),
        shutdown_grace: Duration::from_secs(5),
        tls: airt_kit::tls::ServerTlsArgs::default(),
        auth: args.auth.clone(),
        log: args.log.clone(),
    };
    ServiceConfig::from_args(identity, &server_args)
}

/// The workflow service's own configuration under `airt up`: the registry
/// and policy of this process, the built-in programs, the data directory's
/// workspace.
fn workflow_config(
    args: &UpArgs,
    registry: SocketAddr,
    policy: SocketAddr,
    workflow: &ServiceConfig,
) -> anyhow::Result<workflow_service::WorkflowConfig> {
    workflow_service::WorkflowConfig::from_args(
        &workflow_service::WorkflowArgs {
            registry_addr: format!("http://{registry}"),
            policy_addr: format!("http://{policy}"),
            tls: airt_kit::tls::ClientTlsArgs::default(),
            resolve_interval: Duration::from_secs(5),
            workspace: args.data_dir.join("workspace"),
            service_token: args.service_token.clone(),
            service_token_file: args.service_token_file.clone(),
            env_allow_list: Vec::new(),
            net_allow: args.net_allow.clone(),
            mcp_stdio_servers: args.mcp_stdio_servers.clone(),
            exec_allow: workflow_service::capabilities::exec::DEFAULT_PROGRAMS
                .iter()
                .map(|p| (*p).to_owned())
                .collect(),
            exec_sandbox: args.exec_sandbox,
            environment: args.environment.clone(),
            approval_timeout: args.approval_timeout,
            webhook_urls: args.webhook_urls.clone(),
            webhook_secret: args.webhook_secret.clone(),
            webhook_secret_file: args.webhook_secret_file.clone(),
            webhook_max_attempts: 12,
            console_url: args
                .console_port
                .0
                .map(|port| format!("http://{}", SocketAddr::new(args.host, port))),
            instance_id: None,
            lease_ttl: Duration::from_secs(15),
            undo_retention: Duration::from_secs(24 * 3600),
            watch_poll: Duration::from_millis(100),
            max_watchers: 10_000,
            max_watchers_per_principal: 64,
            max_active_workflows: 1024,
            webhook_initial_backoff: Duration::from_secs(1),
        },
        workflow,
    )
}

/// Binds a service's listener; the error names the service and address.
async fn bind(service: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for the {service} service: {e}"))
}

pub async fn run(
    args: UpArgs,
    connection: &crate::client::ConnectionArgs,
) -> anyhow::Result<ExitCode> {
    let telemetry = airt_kit::telemetry::init(&args.log, "airt-up");
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let admin = |i: usize| args.admin_ports.0.map(|ports| ports[i]);
    let registry = service_config(
        &args,
        &registry_service::IDENTITY,
        port_of("registry", &connection.registry_addr)?,
        admin(0),
    )?;
    let policy = service_config(
        &args,
        &policy_service::IDENTITY,
        port_of("policy", &connection.policy_addr)?,
        admin(1),
    )?;
    let workflow = service_config(
        &args,
        &workflow_service::IDENTITY,
        port_of("workflow", &connection.workflow_addr)?,
        admin(2),
    )?;
    let workflow_own = workflow_config(&args, registry.listen, policy.listen, &workflow)?;
    let gateway = gateway_config(&args, [registry.listen, policy.listen, workflow.listen])?;
    let console = console_config(&args, [registry.listen, policy.listen, workflow.listen])?;
    // Bind everything first so a busy port fails before anything starts.
    let (policy_listen, workflow_listen) = (policy.listen, workflow.listen);
    let registry_listener = bind("registry", registry.listen).await?;
    let policy_listener = bind("policy", policy.listen).await?;
    let workflow_listener = bind("workflow", workflow.listen).await?;
    let mcp_listener = match args.mcp_port.0 {
        Some(port) => Some(bind("MCP gateway", SocketAddr::new(args.host, port)).await?),
        None => None,
    };
    let console_listener = match args.console_port.0 {
        Some(port) => Some(bind("console", SocketAddr::new(args.host, port)).await?),
        None => None,
    };
    let url = |listener: &Option<tokio::net::TcpListener>, path: &str| {
        listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or_else(|| "off".to_owned(), |a| format!("http://{a}{path}"))
    };
    let (mcp, console_url) = (url(&mcp_listener, "/mcp"), url(&console_listener, "/"));
    let admin = |config: &ServiceConfig| {
        config
            .admin_listen
            .map_or_else(|| "off".to_owned(), |a| format!("http://{a}"))
    };
    tracing::info!(
        registry = %registry.listen, policy = %policy.listen, workflow = %workflow.listen,
        registry_admin = %admin(&registry), policy_admin = %admin(&policy), workflow_admin = %admin(&workflow), mcp = %mcp, console = %console_url,
        data_dir = %args.data_dir.display(), auth = %registry.redacted(), "airt up"
    );

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(registry_service::serve_on(
        registry,
        registry_listener,
        stopped(stop_rx.clone()),
    ));
    tasks.spawn(policy_service::serve_on(
        policy,
        policy_listener,
        stopped(stop_rx.clone()),
    ));
    tasks.spawn(workflow_service::serve_on(
        workflow,
        workflow_own,
        workflow_listener,
        stopped(stop_rx.clone()),
    ));
    if let Some(listener) = mcp_listener {
        tasks.spawn(mcp_gateway::serve_on(
            gateway,
            listener,
            stopped(stop_rx.clone()),
        ));
    }
    if let Some(listener) = console_listener {
        eprintln!("console: {console_url}");
        tasks.spawn(airt_console::serve_on(console, listener, stopped(stop_rx)));
    }

    if args.demo {
        if !args.auth.auth_dev_mode {
            anyhow::bail!("--demo acts as user:demo and needs --auth-dev-mode");
        }
        let workflow_url = format!("http://{}", workflow_listen);
        let policy_url = format!("http://{}", policy_listen);
        tokio::spawn(async move {
            if let Err(error) = crate::demo::run(&policy_url, &workflow_url).await {
                eprintln!("demo failed: {error:#}");
            }
        });
    }

    let mut failed = false;
    tokio::select! {
        () = airt_kit::server::shutdown_signal() => {}
        Some(first) = tasks.join_next() => {
            failed = true;
            report(first);
        }
    }
    let _ = stop_tx.send(true);
    while let Some(result) = tasks.join_next().await {
        failed |= !report(result);
    }
    telemetry.shutdown();
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Logs a finished service task; true when it ended cleanly.
fn report(result: Result<anyhow::Result<()>, tokio::task::JoinError>) -> bool {
    match result {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::error!(
                error = format!("{error:#}"),
                "a service stopped with an error"
            );
            false
        }
        Err(error) => {
            tracing::error!(%error, "a service task panicked");
            false
        }
    }
}
