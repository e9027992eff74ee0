//! `airt` against a registry that serves TLS (and one that requires a
//! client certificate): `https://` with the right CA (and certificate)
//! works; without the CA, or without the client certificate, it fails.

use std::process::Output;

use airt_kit::testing::tls::Authority;
use airt_kit::testing::{TestDb, TestServer};

async fn registry(tls: airt_kit::tls::ServerTls) -> (TestDb, TestServer) {
    let db = TestDb::sqlite();
    let mut config = db.dev_config(&registry_service::IDENTITY);
    config.tls = Some(tls);
    let server = TestServer::start(move |listener, shutdown| {
        registry_service::serve_on(config, listener, shutdown)
    })
    .await;
    (db, server)
}

/// `airt registry list` against `server` over https, with `extra` flags.
async fn list(server: &TestServer, extra: &[&str]) -> Output {
    let address = format!("https://{}", server.addr());
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_airt"));
    command
        .args([
            "--registry-addr",
            &address,
            "--as",
            "user:root",
            "--roles",
            "admin",
        ])
        .args(extra)
        .args(["registry", "list"])
        .env_remove("AIRT_TLS_CA")
        .env_remove("AIRT_TLS_CLIENT_CERT")
        .env_remove("AIRT_TLS_CLIENT_KEY");
    command.output().await.expect("run airt")
}

fn write(dir: &tempfile::TempDir, name: &str, pem: &[u8]) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, pem).expect("write PEM");
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn the_cli_speaks_tls_and_mutual_tls() {
    let (ca, clients) = (Authority::new("airt CA"), Authority::new("airt clients"));
    let dir = tempfile::tempdir().expect("dir");
    let ca_file = write(&dir, "ca.pem", &ca.pem());
    let client = clients.sign(&["operator"]);
    let (cert_file, key_file) = (
        write(&dir, "client.pem", &client.cert),
        write(&dir, "client-key.pem", &client.key),
    );

    let (_db, server) = registry(ca.loopback_server(None)).await;
    let trusted = list(&server, &["--tls-ca", &ca_file]).await;
    assert!(trusted.status.success(), "{trusted:?}");
    let untrusted = list(&server, &[]).await;
    assert!(
        !untrusted.status.success(),
        "the system roots do not know this CA"
    );
    server.stop().await.expect("stop");

    let (_db, mutual) = registry(ca.loopback_server(Some(&clients))).await;
    let with_certificate = list(
        &mutual,
        &[
            "--tls-ca",
            &ca_file,
            "--tls-client-cert",
            &cert_file,
            "--tls-client-key",
            &key_file,
        ],
    )
    .await;
    assert!(with_certificate.status.success(), "{with_certificate:?}");
    let without = list(&mutual, &["--tls-ca", &ca_file]).await;
    assert!(!without.status.success(), "no client certificate, no call");
    mutual.stop().await.expect("stop");
}
