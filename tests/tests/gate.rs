//! The workflow service's questions to the registry and the policy service:
//! exact answers (a cache kept exact by the change feed) and fail-closed
//! behaviour when a dependency is down.

use std::time::Duration;
use tokio::time::Instant;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::common::v1::{OperationType, Principal, RiskLevel};
use airt_proto::policy::v1 as policy;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_system_tests::{register_capability, start_policy, start_registry};
use tonic::transport::Endpoint;
use workflow_service::gate::GateError;
use workflow_service::gate::policy::PolicyGate;
use workflow_service::gate::registry::RegistryGate;
use workflow_service::publish::development_credentials;

fn lazy(url: &str) -> tonic::transport::Channel {
    Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect_lazy()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

async fn until<F: Fn() -> bool>(what: &str, condition: F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A lookup of `crm.sync` gives up as "registry unavailable".
async fn fails_closed(gate: &RegistryGate) {
    let error = gate
        .capability("crm.sync", Instant::now() + Duration::from_millis(300))
        .await
        .expect_err("the registry is unreachable");
    assert!(
        matches!(
            error,
            GateError::Unavailable {
                dependency: "registry",
                ..
            }
        ),
        "{error}"
    );
}

fn capability_yaml(version: &str) -> String {
    format!(
        "id: crm.sync\nname: Sync\noperation_type: WRITE\nrisk: {{level: MEDIUM}}\nside_effects: {{reversible: true, scope: EXTERNAL}}\n\
         compensation: {{supported: true, strategy: MANUAL}}\nmetadata: {{version: \"{version}\"}}\nhandler: \"http:https://crm.example/sync\"\n"
    )
}

#[tokio::test]
async fn registry_answers_stay_exact_through_the_cache() {
    let db = TestDb::sqlite();
    let server = start_registry(&db).await;
    let gate = RegistryGate::new(lazy(&server.url()), development_credentials());
    let stop = tokio_util::sync::CancellationToken::new();
    let follower = tokio::spawn(gate.clone().follow(stop.clone()));
    until("the cache goes live", || gate.cache_is_live()).await;

    assert_eq!(
        gate.capability("crm.sync", soon()).await.expect("answer"),
        None,
        "unknown"
    );
    let mut admin = RegistryServiceClient::new(server.channel().await);
    register_capability(server.channel().await, capability_yaml("1.0.0")).await;
    // The cached "not found" is dropped by the change event.
    let mut found = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while found.is_none() {
        assert!(Instant::now() < deadline, "the registration is seen");
        found = gate.capability("crm.sync", soon()).await.expect("answer");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin
        .set_capability_lifecycle(as_principal(
            registry::SetCapabilityLifecycleRequest {
                capability_id: "crm.sync".into(),
                version: String::new(),
                lifecycle: registry::CapabilityLifecycle::Frozen as i32,
                reason: "incident".into(),
                request_id: String::new(),
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("freeze");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = gate
            .capability("crm.sync", soon())
            .await
            .expect("answer")
            .expect("known");
        if current.spec.as_ref().map(|s| s.lifecycle)
            == Some(registry::CapabilityLifecycle::Frozen as i32)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the freeze is seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The registry goes away: the cache is dropped and lookups fail closed.
    server.stop().await.expect("stop");
    until("the cache is dropped", || !gate.cache_is_live()).await;
    fails_closed(&gate).await;
    stop.cancel();
    follower.await.expect("follower ends");
}

/// A TCP proxy that can stop forwarding without closing anything, the way a
/// network partition looks to both ends.
async fn partitionable_proxy(
    upstream: std::net::SocketAddr,
) -> (String, tokio::sync::watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (partition, partitioned) = tokio::sync::watch::channel(false);
    let pump = |mut from: tokio::net::tcp::OwnedReadHalf,
                mut to: tokio::net::tcp::OwnedWriteHalf,
                mut partitioned: tokio::sync::watch::Receiver<bool>| async move {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let Ok(read) = from.read(&mut buffer).await else {
                return;
            };
            if read == 0 || partitioned.wait_for(|p| !*p).await.is_err() {
                return;
            }
            if to.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                continue;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(client_read, server_write, partitioned.clone()));
            tokio::spawn(pump(server_read, client_write, partitioned.clone()));
        }
    });
    (url, partition)
}

#[tokio::test]
async fn a_partitioned_registry_is_not_trusted_beyond_its_heartbeats() {
    let db = TestDb::sqlite();
    let server = start_registry(&db).await;
    let (proxy_url, partition) = partitionable_proxy(server.addr()).await;
    let gate = RegistryGate::new(lazy(&proxy_url), development_credentials())
        .with_heartbeat(Duration::from_millis(200));
    let stop = tokio_util::sync::CancellationToken::new();
    let follower = tokio::spawn(gate.clone().follow(stop.clone()));
    until("the cache goes live", || gate.cache_is_live()).await;
    assert_eq!(
        gate.capability("crm.sync", soon()).await.expect("answer"),
        None,
        "unknown, and cached"
    );
    // Heartbeats keep a quiet stream trusted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(gate.cache_is_live(), "heartbeats keep the cache live");

    // The network drops every packet; nothing reports an error.
    partition.send_replace(true);
    until("the silent stream is no longer trusted", || {
        !gate.cache_is_live()
    })
    .await;
    // The cached answer is not used; the registry is unreachable.
    fails_closed(&gate).await;

    // Meanwhile the registry learns of the capability.
    register_capability(server.channel().await, capability_yaml("1.0.0")).await;

    // The network heals: the stream resumes and the stale answer is gone.
    partition.send_replace(false);
    until("the cache is live again", || gate.cache_is_live()).await;
    let found = gate
        .capability("crm.sync", soon())
        .await
        .expect("answer")
        .expect("registered during the partition");
    assert_eq!(
        found.spec.and_then(|s| s.metadata).map(|m| m.version),
        Some("1.0.0".to_owned())
    );
    stop.cancel();
    follower.await.expect("follower ends");
    server.stop().await.expect("stop");
}

#[tokio::test]
async fn policy_decisions_or_a_fail_closed_error() {
    let db = TestDb::sqlite();
    let server = start_policy(&db).await;
    let gate = PolicyGate::new(lazy(&server.url()), development_credentials());
    let context = policy::PolicyContext {
        principal: Some(Principal {
            r#type: "user".into(),
            id: "alice".into(),
            roles: vec![],
        }),
        capability_id: "io.fs.read_file".into(),
        risk_level: RiskLevel::Low as i32,
        operation_type: OperationType::Read as i32,
        ..Default::default()
    };
    let record = gate
        .evaluate(context.clone(), policy::EvaluationPurpose::Preview, soon())
        .await
        .expect("decision");
    assert_eq!(
        (record.decision, record.rule_id.as_str()),
        (policy::Decision::Deny as i32, "default")
    );

    // Bad input is refused at once, not retried.
    let mut incomplete = context.clone();
    incomplete.risk_level = 0;
    let refused = gate
        .evaluate(incomplete, policy::EvaluationPurpose::Preview, soon())
        .await
        .expect_err("invalid");
    let GateError::Refused { code, reason, .. } = &refused else {
        panic!("refused, not {refused}");
    };
    assert_eq!(*code, tonic::Code::InvalidArgument);
    // The service's ErrorInfo reason survives into the step's failure text.
    let reason = reason.as_deref().expect("the policy service's reason");
    assert!(
        refused.to_string().contains(&format!("[{reason}]")),
        "{refused}"
    );

    server.stop().await.expect("stop");
    let started = Instant::now();
    let error = gate
        .evaluate(
            context,
            policy::EvaluationPurpose::Preview,
            Instant::now() + Duration::from_millis(400),
        )
        .await
        .expect_err("unreachable");
    assert!(
        matches!(
            error,
            GateError::Unavailable {
                dependency: "policy service",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it waited for the deadline before giving up"
    );
}
