//! Every service, in-process on `127.0.0.1:0` with its own database, seen
//! only through gRPC: reflection, health, the audit service and its access
//! rules, authentication, and NOT_SERVING at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use airt_kit::audit::{AuditLog, NewAuditEvent};
use airt_kit::auth::{AuthSettings, JwtKey, JwtSettings};
use airt_kit::config::{ServiceConfig, ServiceIdentity};
use airt_kit::db::Database;
use airt_kit::testing::{
    COMMON_SERVICES, TestDb, TestServer, as_principal, health_status, reflected_services,
};
use airt_proto::audit::v1 as audit;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use tokio::net::TcpListener;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

type ServeOn = fn(
    ServiceConfig,
    TcpListener,
    airt_kit::testing::ShutdownSignal,
) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// The registry and policy services with the domain services they add to the
/// common ones (the workflow service needs a registry; see its own test).
fn services() -> Vec<(ServiceIdentity, ServeOn, &'static [&'static str])> {
    vec![
        (
            registry_service::IDENTITY,
            |c, l, s| Box::pin(registry_service::serve_on(c, l, s)),
            &["airt.registry.v1.RegistryService"],
        ),
        (
            policy_service::IDENTITY,
            |c, l, s| Box::pin(policy_service::serve_on(c, l, s)),
            &["airt.policy.v1.PolicyService"],
        ),
    ]
}

fn config(identity: &ServiceIdentity, db: &TestDb, auth: AuthSettings) -> ServiceConfig {
    ServiceConfig {
        database_url: db.url().to_owned(),
        auth,
        shutdown_grace: Duration::from_secs(5),
        ..ServiceConfig::local(identity)
    }
}

async fn start(serve_on: ServeOn, config: ServiceConfig) -> TestServer {
    TestServer::start(move |listener, shutdown| serve_on(config, listener, shutdown)).await
}

#[tokio::test]
async fn each_service_serves_health_reflection_and_an_intact_empty_audit_chain() {
    for (identity, serve_on, own_services) in services() {
        let mut expected: Vec<&str> = COMMON_SERVICES
            .iter()
            .chain(own_services)
            .copied()
            .collect();
        expected.sort_unstable();
        for db in TestDb::all().await {
            let server = start(serve_on, config(&identity, &db, AuthSettings::Development)).await;
            let channel = server.channel().await;

            let services = reflected_services(channel.clone()).await;
            assert_eq!(
                services,
                expected,
                "{} on {:?}",
                identity.name,
                db.backend()
            );
            assert_eq!(
                health_status(channel.clone(), "").await,
                ServingStatus::Serving
            );
            assert_eq!(
                health_status(channel.clone(), "airt.audit.v1.AuditService").await,
                ServingStatus::Serving
            );

            let mut client = AuditServiceClient::new(channel);
            let report = client
                .verify_audit_chain(as_principal(
                    audit::VerifyAuditChainRequest {},
                    "user:root",
                    &["admin"],
                ))
                .await
                .expect("verify")
                .into_inner();
            assert!(report.intact);
            assert_eq!(report.events_checked, 0);
            server.stop().await.expect("clean stop");
        }
    }
}

#[tokio::test]
async fn audit_events_are_listed_exported_and_tampering_is_reported_over_grpc() {
    for db in TestDb::all().await {
        // Events written by the service's store (here appended directly to its database).
        let store = Database::connect(db.url(), None).await.expect("connect");
        let log = AuditLog::new(store.clone());
        for id in [
            "crm.create_account",
            "crm.delete_account",
            "io.fs.write_file",
        ] {
            log.append(&NewAuditEvent::new(
                "user:alice",
                "capability.registered",
                "capability",
                id,
            ))
            .await
            .expect("append");
        }

        let server = start(
            |c, l, s| Box::pin(registry_service::serve_on(c, l, s)),
            config(&registry_service::IDENTITY, &db, AuthSettings::Development),
        )
        .await;
        let mut client = AuditServiceClient::new(server.channel().await);

        let page = client
            .list_audit_events(auditor(audit::ListAuditEventsRequest {
                page_size: 2,
                ..Default::default()
            }))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(
            page.events
                .iter()
                .map(|e| e.resource_id.as_str())
                .collect::<Vec<_>>(),
            ["crm.create_account", "crm.delete_account"]
        );
        assert!(!page.next_page_token.is_empty());
        let rest = client
            .list_audit_events(auditor(audit::ListAuditEventsRequest {
                page_size: 2,
                page_token: page.next_page_token,
                ..Default::default()
            }))
            .await
            .expect("second page")
            .into_inner();
        assert_eq!(rest.events.len(), 1);
        assert_eq!(rest.events[0].sequence, 3);
        assert!(rest.next_page_token.is_empty());

        let filtered = client
            .list_audit_events(auditor(audit::ListAuditEventsRequest {
                resource_id: "io.fs.write_file".into(),
                ..Default::default()
            }))
            .await
            .expect("filtered")
            .into_inner();
        assert_eq!(filtered.events.len(), 1);

        let mut export = client
            .export_audit_events(auditor(audit::ExportAuditEventsRequest {
                after_sequence: 1,
            }))
            .await
            .expect("export")
            .into_inner();
        let mut lines = Vec::new();
        while let Some(item) = export.message().await.expect("export item") {
            lines.push(item.json_line);
        }
        assert_eq!(lines.len(), 2);
        let second: serde_json::Value = serde_json::from_str(&lines[0]).expect("JSON line");
        assert_eq!(second["sequence"], 2);
        assert_eq!(second["resource_id"], "crm.delete_account");

        airt_kit::with_pool!(&store, pool => {
            sqlx::query("UPDATE audit_events SET actor = 'user:mallory' WHERE sequence = 2").execute(pool).await.expect("tamper");
        });
        let report = client
            .verify_audit_chain(auditor(audit::VerifyAuditChainRequest {}))
            .await
            .expect("verify")
            .into_inner();
        assert!(!report.intact);
        assert_eq!(report.first_broken_sequence, 2);
        assert_eq!(report.events_checked, 1);

        store.close().await;
        server.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn audit_access_needs_a_principal_and_an_audit_role() {
    let db = TestDb::sqlite();
    let server = start(
        |c, l, s| Box::pin(policy_service::serve_on(c, l, s)),
        config(&policy_service::IDENTITY, &db, AuthSettings::Development),
    )
    .await;
    let mut client = AuditServiceClient::new(server.channel().await);

    let anonymous = client
        .verify_audit_chain(audit::VerifyAuditChainRequest {})
        .await
        .expect_err("refused");
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let agent = client
        .verify_audit_chain(as_principal(
            audit::VerifyAuditChainRequest {},
            "agent:planner-7",
            &["oncall"],
        ))
        .await
        .expect_err("refused");
    assert_eq!(agent.code(), Code::PermissionDenied);
    assert_eq!(
        airt_kit::status::reason_of(&agent).as_deref(),
        Some("MISSING_ROLE")
    );

    let bad_token = client
        .list_audit_events(as_principal(
            audit::ListAuditEventsRequest {
                page_token: "not-a-token".into(),
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect_err("refused");
    assert_eq!(bad_token.code(), Code::InvalidArgument);
    assert_eq!(
        airt_kit::status::violations_of(&bad_token)
            .into_iter()
            .map(|v| v.field)
            .collect::<Vec<_>>(),
        ["page_token"]
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn with_jwt_auth_only_valid_tokens_get_through() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
    const SECRET: &[u8] = b"system-test-secret-of-at-least-32-bytes";
    let db = TestDb::sqlite();
    let auth = AuthSettings::Jwt(JwtSettings {
        key: JwtKey::Hs256(SECRET.to_vec()),
        issuer: "airt".into(),
        audience: "airt".into(),
        leeway_secs: 0,
        claims: Default::default(),
    });
    let server = start(
        |c, l, s| Box::pin(registry_service::serve_on(c, l, s)),
        config(&registry_service::IDENTITY, &db, auth),
    )
    .await;
    let mut client = AuditServiceClient::new(server.channel().await);
    let with_token = |token: &str| {
        let mut request = tonic::Request::new(audit::VerifyAuditChainRequest {});
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        request
    };
    let token = |exp: u64, aud: &str| {
        let claims = serde_json::json!({"sub": "user:root", "roles": ["admin"], "iss": "airt", "aud": aud, "exp": exp});
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode")
    };
    let now = get_current_timestamp();

    let missing = client
        .verify_audit_chain(audit::VerifyAuditChainRequest {})
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    // Development headers mean nothing here.
    let dev = client
        .verify_audit_chain(as_principal(
            audit::VerifyAuditChainRequest {},
            "user:root",
            &["admin"],
        ))
        .await
        .expect_err("dev headers");
    assert_eq!(dev.code(), Code::Unauthenticated);
    let expired = client
        .verify_audit_chain(with_token(&token(now - 600, "airt")))
        .await
        .expect_err("expired");
    assert_eq!(expired.code(), Code::Unauthenticated);
    let audience = client
        .verify_audit_chain(with_token(&token(now + 600, "other")))
        .await
        .expect_err("audience");
    assert_eq!(audience.code(), Code::Unauthenticated);
    // Not yet valid, or a subject that only looks like an admin's.
    let signed = |claims: serde_json::Value| {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode")
    };
    let early = signed(
        serde_json::json!({"sub": "user:root", "roles": ["admin"], "iss": "airt", "aud": "airt", "exp": now + 7200, "nbf": now + 3600}),
    );
    let look_alike = signed(
        serde_json::json!({"sub": "user:root\u{200b}", "roles": ["admin"], "iss": "airt", "aud": "airt", "exp": now + 600}),
    );
    for (what, token) in [("nbf", early), ("zero-width", look_alike)] {
        let refused = client
            .verify_audit_chain(with_token(&token))
            .await
            .expect_err(what);
        assert_eq!(refused.code(), Code::Unauthenticated, "{what}");
    }
    let report = client
        .verify_audit_chain(with_token(&token(now + 600, "airt")))
        .await
        .expect("valid token")
        .into_inner();
    assert!(report.intact);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn health_turns_not_serving_when_shutdown_begins() {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let db = TestDb::sqlite();
    let server = start(
        |c, l, s| Box::pin(registry_service::serve_on(c, l, s)),
        config(&registry_service::IDENTITY, &db, AuthSettings::Development),
    )
    .await;
    let mut watch = HealthClient::new(server.channel().await)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch
        .message()
        .await
        .expect("status")
        .expect("first status");
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let stopping = tokio::spawn(server.stop());
    let next = watch
        .message()
        .await
        .expect("status")
        .expect("status change");
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop(watch);
    stopping.await.expect("join").expect("clean stop");
}

fn auditor<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:carol", &["auditor"])
}

#[tokio::test]
async fn the_workflow_service_serves_health_reflection_and_audit_once_published() {
    let registry_db = TestDb::sqlite();
    let registry = airt_system_tests::start_registry(&registry_db).await;
    for db in TestDb::all().await {
        let workspace = tempfile::tempdir().expect("workspace");
        let server =
            airt_system_tests::start_workflow(&db, &registry.url(), workspace.path()).await;
        let channel = server.channel().await;
        airt_system_tests::wait_until_serving(channel.clone(), Duration::from_secs(20)).await;
        let mut expected: Vec<&str> = COMMON_SERVICES
            .iter()
            .copied()
            .chain([
                "airt.workflow.v1.ApprovalService",
                "airt.workflow.v1.WorkflowService",
            ])
            .collect();
        expected.sort_unstable();
        assert_eq!(
            reflected_services(channel.clone()).await,
            expected,
            "{:?}",
            db.backend()
        );
        let mut client = AuditServiceClient::new(channel);
        let report = client
            .verify_audit_chain(as_principal(
                audit::VerifyAuditChainRequest {},
                "user:root",
                &["admin"],
            ))
            .await
            .expect("verify")
            .into_inner();
        assert!(report.intact);
        server.stop().await.expect("clean stop");
    }
    registry.stop().await.expect("clean stop");
}
