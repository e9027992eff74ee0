//! Test helpers: a fresh database per test and in-process servers on
//! `127.0.0.1:0`. Nothing here touches a shared path.

pub mod http;
pub mod otlp;
pub mod spans;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::auth::{DEV_PRINCIPAL_HEADER, DEV_ROLES_HEADER};
use crate::db::Backend;

/// Environment variable naming the PostgreSQL server tests may use.
pub const POSTGRES_URL_ENV: &str = "AIRT_TEST_POSTGRES_URL";

/// A database that exists only for one test: a temporary SQLite file, or a
/// freshly created PostgreSQL database that is dropped afterwards.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    backend: Backend,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A new SQLite file in its own temporary directory.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            backend: Backend::Sqlite,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A new PostgreSQL database on the server named by
    /// `AIRT_TEST_POSTGRES_URL`, or `None` (with a printed notice) when it is
    /// unset.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_URL_ENV) else {
            eprintln!("SKIPPED PostgreSQL case: {POSTGRES_URL_ENV} is not set");
            return None;
        };
        let name = format!("airt_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect_admin(&admin_url).await;
        // `name` is generated here from a UUID: no injection possible.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = database_url(&admin_url, &name);
        Some(Self {
            url,
            backend: Backend::Postgres,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    /// One database per available backend: SQLite always, PostgreSQL when
    /// configured. Conformance suites run against each.
    pub async fn all() -> Vec<Self> {
        let mut dbs = vec![Self::sqlite()];
        dbs.extend(Self::postgres().await);
        dbs
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// A service on this database in development auth mode, without an
    /// admin listener (set `admin_listen` to have one).
    pub fn dev_config(
        &self,
        identity: &crate::config::ServiceIdentity,
    ) -> crate::config::ServiceConfig {
        crate::config::ServiceConfig {
            database_url: self.url.clone(),
            auth: crate::auth::AuthSettings::Development,
            ..crate::config::ServiceConfig::local(identity)
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }
}

async fn connect_admin(admin_url: &str) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(admin_url)
        .await
        .unwrap_or_else(|e| panic!("connect to {POSTGRES_URL_ENV}: {e}"))
}

/// `admin_url` with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (admin_url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{base}/{name}{query}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime; use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut admin = connect_admin(&admin_url).await;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) {
            eprintln!("warning: could not drop test database {}", self.url);
        }
    }
}

/// The shutdown future handed to a server under test.
pub type ShutdownSignal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running in-process on `127.0.0.1:<ephemeral>`.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Binds `127.0.0.1:0` and spawns `serve(listener, shutdown)`.
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, ShutdownSignal) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: ShutdownSignal = Box::pin(async {
            let _ = stopped.await;
        });
        let serving = serve(listener, shutdown);
        let task = tokio::spawn(async move {
            let result = serving.await;
            if let Err(error) = &result {
                // Printed at once: a test usually fails later, on a refused
                // connection, without saying why the server stopped.
                eprintln!("test server on {addr} stopped: {error:#}");
            }
            result
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid URL")
            .connect()
            .await
            .expect("connect to the test server")
    }

    /// Signals shutdown and waits for the server to return. The port stays
    /// reserved (bound, not listening) for the rest of the process, so a
    /// client of the stopped server is refused rather than reaching another
    /// test's server that happened to get the same ephemeral port.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = (&mut self.task).await?;
        reserve_port(self.addr);
        result
    }
}

/// Ports of stopped test servers, bound without listening.
static RESERVED_PORTS: std::sync::Mutex<Vec<tokio::net::TcpSocket>> =
    std::sync::Mutex::new(Vec::new());

fn reserve_port(addr: SocketAddr) {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    };
    // Best effort: SO_REUSEADDR lets the bind succeed beside the stopped
    // server's TIME_WAIT connections; an ephemeral-port bind still skips a
    // port that any socket holds.
    let reserved = socket.and_then(|socket| {
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(socket)
    });
    if let Ok(socket) = reserved {
        RESERVED_PORTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(socket);
    }
}

/// Metadata carrying `authorization: Bearer <token>`.
pub fn bearer(token: &str) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "authorization",
        tonic::metadata::MetadataValue::try_from(format!("Bearer {token}")).expect("ascii token"),
    );
    metadata
}

/// A request carrying development-mode identity metadata.
pub fn as_principal<T>(message: T, principal: &str, roles: &[&str]) -> Request<T> {
    let mut request = Request::new(message);
    let metadata = request.metadata_mut();
    metadata.insert(
        DEV_PRINCIPAL_HEADER,
        MetadataValue::try_from(principal).expect("ASCII principal"),
    );
    metadata.insert(
        DEV_ROLES_HEADER,
        MetadataValue::try_from(roles.join(",")).expect("ASCII roles"),
    );
    request
}

#[cfg(test)]
mod tests {
    use super::database_url;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            database_url("postgres://u:p@h:1/db?sslmode=disable", "t2"),
            "postgres://u:p@h:1/t2?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h", "t3"), "postgres://h/t3");
    }
}

/// Services a server advertises through reflection v1 and v1alpha (both must
/// agree; the result is sorted).
pub async fn reflected_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::{v1, v1alpha};
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut v1_client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let mut stream = v1_client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("v1 response")
        .expect("one v1 message");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1 reflection answer");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();

    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut alpha_client = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let mut stream = alpha_client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let response = stream
        .message()
        .await
        .expect("v1alpha response")
        .expect("one v1alpha message");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("unexpected v1alpha reflection answer");
    };
    let mut alpha_names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    alpha_names.sort();
    assert_eq!(names, alpha_names, "reflection v1 and v1alpha disagree");
    names
}

/// Puts `source_yaml` as the active policy set, as `user:root` (admin) in
/// development auth mode.
pub async fn activate_policy(channel: Channel, source_yaml: &str) {
    use airt_proto::policy::v1 as policy;
    let request = policy::PutPolicySetRequest {
        source_yaml: source_yaml.into(),
        activate: true,
        ..Default::default()
    };
    policy::policy_service_client::PolicyServiceClient::new(channel)
        .put_policy_set(as_principal(request, "user:root", &["admin"]))
        .await
        .expect("the policy set is activated");
}

/// `grpc.health.v1.Health/Check` for `service` ("" is the whole server).
pub async fn health_status(
    channel: Channel,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health check")
        .into_inner();
    ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown)
}

/// A real service binary started as a child process on `127.0.0.1:0`.
#[derive(Debug)]
pub struct ServiceProcess {
    child: std::process::Child,
    addr: SocketAddr,
    admin: SocketAddr,
    logs: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl ServiceProcess {
    /// Starts `binary --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0
    /// --database-url URL --log-format json [extra args]` and waits (at most
    /// 60 s) for its `serving` log line, which carries the bound address
    /// (and its `admin listening` line before it).
    pub fn spawn(binary: &str, database_url: &str, extra_args: &[&str]) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--database-url",
                database_url,
                "--log-format",
                "json",
            ])
            .args(extra_args)
            .env("AIRT_LOG", "info")
            .env_remove("AIRT_AUTH_DEV_MODE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, address) = std::sync::mpsc::channel::<(&'static str, SocketAddr)>();
        let logs = std::sync::Arc::<std::sync::Mutex<Vec<serde_json::Value>>>::default();
        let kept = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                eprintln!("[service] {line}");
                let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(event.clone());
                let fields = &event["fields"];
                let Some(addr) = fields["addr"].as_str().and_then(|a| a.parse().ok()) else {
                    continue;
                };
                for listener in ["serving", "admin listening"] {
                    if fields["message"] == listener {
                        let _ = found.send((listener, addr));
                    }
                }
            }
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match address.recv_timeout(wait) {
                Ok(("serving", at)) => addr = Some(at),
                Ok((_, at)) => admin = Some(at),
                Err(_) => panic!("{binary} did not report `serving` within 60 s"),
            }
        }
        Self {
            child,
            addr: addr.expect("serving address"),
            admin: admin.expect("the admin listener starts before serving"),
            logs,
        }
    }

    /// Its JSON log lines so far.
    pub fn logs(&self) -> Vec<serde_json::Value> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `http://127.0.0.1:<port>` of its admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`: the process gets no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("valid URL")
            .connect()
            .await
            .expect("connect to the service process")
    }

    /// Sends SIGTERM and waits for the exit, at most `deadline`; returns
    /// the exit status, or `None` (after killing it) if it did not exit.
    pub async fn terminate(
        mut self,
        deadline: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                return Some(status);
            }
            if started.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Services every AI-First Runtime server advertises besides its own.
pub const COMMON_SERVICES: &[&str] = &[
    "airt.audit.v1.AuditService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Starts the real binary (with `extra_args`) on each available backend and
/// checks what an operator sees: reflection lists the common services plus
/// `own_services`, Health/Check answers `expected_health`, and SIGTERM makes
/// it exit 0 within 5 s.
pub async fn assert_binary_lifecycle(
    binary: &str,
    own_services: &[&str],
    extra_args: &[&str],
    expected_health: tonic_health::pb::health_check_response::ServingStatus,
) {
    let mut expected: Vec<String> = COMMON_SERVICES
        .iter()
        .chain(own_services)
        .map(|s| (*s).to_owned())
        .collect();
    expected.sort();
    for db in TestDb::all().await {
        let process = ServiceProcess::spawn(binary, db.url(), extra_args);
        let channel = process.channel().await;
        assert_eq!(
            reflected_services(channel.clone()).await,
            expected,
            "{:?}",
            db.backend()
        );
        assert_eq!(health_status(channel.clone(), "").await, expected_health);
        for service in COMMON_SERVICES
            .iter()
            .filter(|s| s.starts_with("airt."))
            .chain(own_services)
        {
            assert_eq!(
                health_status(channel.clone(), service).await,
                expected_health,
                "{service}"
            );
        }
        drop(channel);
        let status = process
            .terminate(std::time::Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{binary} did not exit within 5 s of SIGTERM"));
        assert_eq!(
            status.code(),
            Some(0),
            "{binary} exit status after SIGTERM: {status}"
        );
    }
}
