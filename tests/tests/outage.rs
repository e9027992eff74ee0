//! A database that stops answering is UNAVAILABLE (retryable), never
//! INTERNAL; once it answers again, so does the service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use airt_kit::auth::AuthSettings;
use airt_kit::config::ServiceConfig;
use airt_kit::testing::{TestDb, TestServer, as_principal};
use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP proxy to `target` on `listen`; dropping it closes the listener and
/// every connection it carried (the way a database host disappears).
struct Proxy {
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Proxy {
    async fn start(listen: SocketAddr, target: SocketAddr) -> (Self, SocketAddr) {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let connections = tasks.clone();
        tasks.lock().unwrap().spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.lock().unwrap().spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        (Self { tasks }, addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .abort_all();
    }
}

/// `url` (postgres://user@host:port/db) with its host and port replaced.
fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme_user, rest) = url.split_once('@').expect("user@host");
    let (host_port, database) = rest.split_once('/').expect("host/db");
    let target = host_port.parse().expect("an ip:port database address");
    (format!("{scheme_user}@{addr}/{database}"), target)
}

async fn list(
    client: &mut RegistryServiceClient<tonic::transport::Channel>,
) -> Result<usize, tonic::Status> {
    let request = as_principal(
        pb::ListCapabilitiesRequest::default(),
        "user:root",
        &["admin"],
    );
    client
        .list_capabilities(request)
        .await
        .map(|r| r.into_inner().capabilities.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_is_unavailable_and_passes() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let unbound: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (_, target) = through(db.url(), unbound);
    let (proxy, addr) = Proxy::start(unbound, target).await;
    let (url, _) = through(db.url(), addr);
    let config = ServiceConfig {
        database_url: url,
        auth: AuthSettings::Development,
        ..ServiceConfig::local(&registry_service::IDENTITY)
    };
    let server = TestServer::start(move |listener, shutdown| {
        registry_service::serve_on(config, listener, shutdown)
    })
    .await;
    let mut client = RegistryServiceClient::new(server.channel().await);
    assert_eq!(list(&mut client).await.expect("listed"), 0);

    drop(proxy);
    let down = list(&mut client).await.expect_err("the database is gone");
    assert_eq!(down.code(), tonic::Code::Unavailable, "{down:?}");
    assert_eq!(
        airt_kit::status::reason_of(&down).as_deref(),
        Some("DATABASE_UNAVAILABLE")
    );
    assert!(
        !down.message().contains("127.0.0.1"),
        "no internals: {}",
        down.message()
    );

    // The same address answers again: so does the service, with no restart.
    let (_proxy, _) = Proxy::start(addr, target).await;
    let mut answered = list(&mut client).await;
    for _ in 0..50 {
        if answered.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        answered = list(&mut client).await;
    }
    assert_eq!(answered.expect("back"), 0);
    server.stop().await.expect("stop");
}
