//! TLS and mutual TLS on the gRPC listeners, with certificates made at test
//! time: the right CA and client certificate get through; no TLS, an
//! unknown CA, no client certificate or one from another CA do not; the
//! workflow service runs a workflow against registry and policy services
//! that require its client certificate.

use std::time::Duration;

use airt_kit::testing::tls::Authority;
use airt_kit::testing::{TestDb, TestServer, health_status};
use airt_kit::tls::{ClientTls, ServerTls};
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{run_workflow, start_workflow_with_config, workflow_config};
use tonic_health::pb::health_check_response::ServingStatus;

async fn start_policy(db: &TestDb, tls: ServerTls) -> TestServer {
    let mut config = db.dev_config(&policy_service::IDENTITY);
    config.tls = Some(tls);
    TestServer::start(move |listener, shutdown| {
        policy_service::serve_on(config, listener, shutdown)
    })
    .await
}

fn https(server: &TestServer) -> String {
    format!("https://{}", server.addr())
}

/// `Health/Check` through `tls` at `address`: the status, or the error.
async fn check(tls: &ClientTls, address: &str) -> Result<ServingStatus, String> {
    let channel = tls
        .endpoint(address)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    client
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .map(|answer| answer.into_inner().status())
        .map_err(|status| format!("{status:?}"))
}

#[tokio::test]
async fn tls_serves_clients_that_trust_its_ca_and_nothing_in_plaintext() {
    let (ca, stranger) = (Authority::new("airt test CA"), Authority::new("other CA"));
    let db = TestDb::sqlite();
    let server = start_policy(&db, ca.loopback_server(None)).await;

    let trusting = ClientTls::from_pem(Some(ca.pem()), None);
    assert_eq!(
        check(&trusting, &https(&server)).await,
        Ok(ServingStatus::Serving)
    );
    // `localhost` is a name on the certificate too.
    let by_name = format!("https://localhost:{}", server.addr().port());
    assert_eq!(check(&trusting, &by_name).await, Ok(ServingStatus::Serving));

    let distrusting = ClientTls::from_pem(Some(stranger.pem()), None);
    assert!(check(&distrusting, &https(&server)).await.is_err());
    // The system's roots do not know a private CA.
    assert!(check(&ClientTls::default(), &https(&server)).await.is_err());
    // Plaintext to a TLS listener gets no answer.
    let plain = format!("http://{}", server.addr());
    assert!(check(&trusting, &plain).await.is_err());
    assert!(
        ClientTls::default()
            .endpoint(&format!("ftp://{}", server.addr()))
            .is_err()
    );
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_its_client_ca() {
    let (ca, clients, stranger) = (
        Authority::new("airt test CA"),
        Authority::new("airt clients"),
        Authority::new("other clients"),
    );
    let db = TestDb::sqlite();
    let server = start_policy(&db, ca.loopback_server(Some(&clients))).await;
    let address = https(&server);

    let client = clients.sign(&["workflow-service"]);
    let admitted = ClientTls::from_pem(Some(ca.pem()), Some((client.cert, client.key)));
    assert_eq!(check(&admitted, &address).await, Ok(ServingStatus::Serving));

    let anonymous = ClientTls::from_pem(Some(ca.pem()), None);
    assert!(check(&anonymous, &address).await.is_err());
    let foreign = stranger.sign(&["workflow-service"]);
    let refused = ClientTls::from_pem(Some(ca.pem()), Some((foreign.cert, foreign.key)));
    assert!(check(&refused, &address).await.is_err());
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn the_workflow_service_runs_steps_against_dependencies_that_require_mutual_tls() {
    let (ca, clients) = (
        Authority::new("airt test CA"),
        Authority::new("airt clients"),
    );
    let (registry_db, policy_db, workflow_db) =
        (TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite());
    let mut registry_config = registry_db.dev_config(&registry_service::IDENTITY);
    registry_config.tls = Some(ca.loopback_server(Some(&clients)));
    let registry = TestServer::start(move |listener, shutdown| {
        registry_service::serve_on(registry_config, listener, shutdown)
    })
    .await;
    let policy = start_policy(&policy_db, ca.loopback_server(Some(&clients))).await;
    let client = clients.sign(&["workflow-service"]);
    let tls = ClientTls::from_pem(Some(ca.pem()), Some((client.cert, client.key)));
    {
        let channel = tls
            .endpoint(&https(&policy))
            .expect("endpoint")
            .connect_lazy();
        airt_kit::testing::activate_policy(
            channel,
            "default: DENY\nrules:\n  - {id: low, when: {risk_level: LOW}, decision: ALLOW}\n",
        )
        .await;
    }

    let workspace = tempfile::tempdir().expect("workspace");
    let mut config = workflow_config(&https(&registry), &https(&policy), workspace.path());
    config.client_tls = tls;
    let workflow = start_workflow_with_config(&workflow_db, config).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while health_status(workflow.channel().await, "").await != ServingStatus::Serving {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the workflow service did not publish its built-ins over mTLS"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = WorkflowServiceClient::new(workflow.channel().await);
    let done = run_workflow(
        &mut client,
        "user:alice",
        "name: clock\nsteps:\n  - {name: now, capability: sys.info.get_time}\n",
    )
    .await;
    assert_eq!(
        done.status(),
        airt_proto::workflow::v1::WorkflowStatus::Completed,
        "{done:?}"
    );
    for server in [workflow, policy, registry] {
        server.stop().await.expect("stop");
    }
}

#[tokio::test]
async fn a_balanced_list_of_tls_replicas_checks_each_by_the_name_it_was_given() {
    // `localhost:A,localhost:B` is resolved and spread over; every
    // connection goes to an address but checks the certificate for `localhost`.
    let ca = Authority::new("airt test CA");
    let (first_db, second_db) = (TestDb::sqlite(), TestDb::sqlite());
    let first = start_policy(&first_db, ca.loopback_server(None)).await;
    let second = start_policy(&second_db, ca.loopback_server(None)).await;
    let list = format!(
        "https://localhost:{},https://localhost:{}",
        first.addr().port(),
        second.addr().port()
    );
    let tls = ClientTls::from_pem(Some(ca.pem()), None);
    let channel = airt_kit::balance::channel(&list, &tls, |e| e, Duration::from_millis(200))
        .await
        .expect("balanced channel");
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..20 {
        let answer = client
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("a TLS call through the balanced channel");
        assert_eq!(answer.into_inner().status(), ServingStatus::Serving);
    }
    // A CA that did not sign them: no call gets through.
    let distrusting = ClientTls::from_pem(Some(Authority::new("other").pem()), None);
    let channel = airt_kit::balance::channel(
        &list,
        &distrusting,
        |e| e.connect_timeout(Duration::from_secs(2)),
        Duration::from_millis(200),
    )
    .await
    .expect("balanced channel");
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        tonic_health::pb::health_client::HealthClient::new(channel)
            .check(tonic_health::pb::HealthCheckRequest::default()),
    )
    .await
    .expect("an answer within 10 s");
    assert!(refused.is_err(), "{refused:?}");
    first.stop().await.expect("stop");
    second.stop().await.expect("stop");
}
