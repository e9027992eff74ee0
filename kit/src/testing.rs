//! Test helpers: a fresh database per test and in-process servers on
//! `127.0.0.1:0`. Nothing here touches a shared path.

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
        let task = tokio::spawn(serve(listener, shutdown));
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

    /// Signals shutdown and waits for the server to return.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await?
    }
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
