//! The registry over real gRPC, on SQLite and PostgreSQL: the whole life of
//! a capability, pagination under concurrent writes, the change feed with
//! reconnection, access control, and restarts.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use std::collections::HashSet;
use std::time::Duration;

use airt_kit::auth::AuthSettings;
use airt_kit::config::ServiceConfig;
use airt_kit::testing::{TestDb, TestServer, as_principal};
use airt_proto::audit::v1::VerifyAuditChainRequest;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;
use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use pb::watch_capabilities_response::Event;
use tonic::transport::Channel;
use tonic::{Code, Request};

async fn start(db: &TestDb) -> TestServer {
    let config = ServiceConfig {
        database_url: db.url().to_owned(),
        auth: AuthSettings::Development,
        ..ServiceConfig::local(&registry_service::IDENTITY)
    };
    TestServer::start(move |listener, shutdown| {
        registry_service::serve_on(config, listener, shutdown)
    })
    .await
}

fn admin<T>(message: T) -> Request<T> {
    as_principal(message, "user:root", &["admin"])
}

fn reader<T>(message: T) -> Request<T> {
    as_principal(message, "agent:planner-7", &[])
}

/// A capability file; LOW/MEDIUM are reversible, HIGH/CRITICAL are not.
fn capability_yaml(id: &str, version: &str, risk: &str) -> String {
    let reversible = matches!(risk, "LOW" | "MEDIUM");
    format!(
        "id: {id}\nname: {id}\noperation_type: WRITE\nrisk: {{level: {risk}}}\n\
         side_effects: {{reversible: {reversible}, scope: EXTERNAL}}\n\
         compensation: {{supported: true, strategy: MANUAL}}\n\
         metadata: {{version: \"{version}\", tags: [test]}}\nhandler: \"http:https://svc.example/{id}\"\n"
    )
}

fn register_text(text: String) -> pb::RegisterCapabilityRequest {
    pb::RegisterCapabilityRequest {
        source: Some(pb::register_capability_request::Source::SpecText(text)),
        validate_only: false,
        request_id: String::new(),
    }
}

async fn register(
    client: &mut RegistryServiceClient<Channel>,
    id: &str,
    version: &str,
    risk: &str,
) -> pb::Capability {
    client
        .register_capability(admin(register_text(capability_yaml(id, version, risk))))
        .await
        .unwrap_or_else(|s| panic!("register {id} {version}: {s:?}"))
        .into_inner()
        .capability
        .expect("capability")
}

async fn get(
    client: &mut RegistryServiceClient<Channel>,
    id: &str,
    version: &str,
) -> Result<pb::Capability, tonic::Status> {
    client
        .get_capability(reader(pb::GetCapabilityRequest {
            capability_id: id.into(),
            version: version.into(),
        }))
        .await
        .map(|r| r.into_inner().capability.expect("capability"))
}

fn version_of(capability: &pb::Capability) -> &str {
    &capability
        .spec
        .as_ref()
        .expect("spec")
        .metadata
        .as_ref()
        .expect("metadata")
        .version
}

fn lifecycle_of(capability: &pb::Capability) -> pb::CapabilityLifecycle {
    pb::CapabilityLifecycle::try_from(capability.spec.as_ref().expect("spec").lifecycle)
        .expect("known")
}

/// Reads watch events until CaughtUp (returned with the changes before it).
async fn until_caught_up(
    stream: &mut tonic::Streaming<pb::WatchCapabilitiesResponse>,
) -> (Vec<pb::CapabilityChange>, i64) {
    let mut changes = Vec::new();
    loop {
        match next_event(stream).await {
            Event::Change(change) => changes.push(change),
            Event::CaughtUp(caught_up) => return (changes, caught_up.registry_revision),
            Event::Heartbeat(_) => unreachable!("skipped by next_event"),
        }
    }
}

/// The next change or CaughtUp, skipping heartbeats.
async fn next_event(stream: &mut tonic::Streaming<pb::WatchCapabilitiesResponse>) -> Event {
    loop {
        match next_message(stream).await {
            Event::Heartbeat(_) => {}
            event => return event,
        }
    }
}

async fn next_message(stream: &mut tonic::Streaming<pb::WatchCapabilitiesResponse>) -> Event {
    tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("a watch event within 20 s")
        .expect("stream ok")
        .expect("stream open")
        .event
        .expect("event")
}

fn summary(
    change: &pb::CapabilityChange,
) -> (i64, pb::ChangeType, String, String, pb::CapabilityLifecycle) {
    let capability = change.capability.as_ref().expect("capability");
    (
        change.registry_revision,
        pb::ChangeType::try_from(change.change_type).expect("known"),
        capability.spec.as_ref().expect("spec").id.clone(),
        version_of(capability).to_owned(),
        lifecycle_of(capability),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_life_of_a_capability_over_grpc() {
    for db in TestDb::all().await {
        let server = start(&db).await;
        let mut client = RegistryServiceClient::new(server.channel().await);

        // Watch from the very beginning, before anything exists.
        let mut watch = client
            .watch_capabilities(reader(pb::WatchCapabilitiesRequest::default()))
            .await
            .expect("watch")
            .into_inner();
        let (backlog, revision) = until_caught_up(&mut watch).await;
        assert!(backlog.is_empty());
        assert_eq!(revision, 0);

        // Register, then get.
        let created = register(&mut client, "crm.create_account", "1.0.0", "MEDIUM").await;
        assert_eq!(created.registry_revision, 1);
        let fetched = get(&mut client, "crm.create_account", "")
            .await
            .expect("get");
        assert_eq!(fetched, created);
        assert_eq!(lifecycle_of(&fetched), pb::CapabilityLifecycle::Active);
        assert_eq!(
            fetched.registered_by.as_ref().map(|p| p.id.as_str()),
            Some("root")
        );
        let missing = get(&mut client, "crm.nothing", "")
            .await
            .expect_err("not found");
        assert_eq!(missing.code(), Code::NotFound);

        // Pagination across pages while a writer inserts concurrently.
        for i in 0..8 {
            register(&mut client, &format!("catalog.item_{i:02}"), "1.0.0", "LOW").await;
        }
        let before: HashSet<String> = list_all(&mut client, 100).await.into_iter().collect();
        assert_eq!(before.len(), 9);
        let writer = {
            let mut writer_client = client.clone();
            tokio::spawn(async move {
                for i in 0..12 {
                    // Ids before, between and after the pages being read.
                    let id = match i % 3 {
                        0 => format!("aaa.new_{i:02}"),
                        1 => format!("catalog.item_{i:02}_new"),
                        _ => format!("zzz.new_{i:02}"),
                    };
                    register(&mut writer_client, &id, "1.0.0", "LOW").await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            let page = client
                .list_capabilities(reader(pb::ListCapabilitiesRequest {
                    page_size: 3,
                    page_token,
                    ..Default::default()
                }))
                .await
                .expect("page")
                .into_inner();
            pages += 1;
            seen.extend(
                page.capabilities
                    .iter()
                    .map(|c| c.spec.as_ref().expect("spec").id.clone()),
            );
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
            tokio::task::yield_now().await;
        }
        writer.await.expect("writer");
        assert!(pages >= 3, "{pages} pages");
        let unique: HashSet<&String> = seen.iter().collect();
        assert_eq!(
            unique.len(),
            seen.len(),
            "{:?}: duplicates in {seen:?}",
            db.backend()
        );
        for id in &before {
            assert!(
                unique.contains(id),
                "{:?}: {id} missing from {seen:?}",
                db.backend()
            );
        }

        // A new version becomes current.
        register(&mut client, "crm.create_account", "1.1.0", "MEDIUM").await;
        assert_eq!(
            version_of(
                &get(&mut client, "crm.create_account", "")
                    .await
                    .expect("get")
            ),
            "1.1.0"
        );

        // Freeze it: the exact version still answers, with its lifecycle visible.
        let frozen = client
            .set_capability_lifecycle(admin(pb::SetCapabilityLifecycleRequest {
                capability_id: "crm.create_account".into(),
                version: "1.1.0".into(),
                lifecycle: pb::CapabilityLifecycle::Frozen as i32,
                reason: "double-creates accounts".into(),
                request_id: String::new(),
            }))
            .await
            .expect("freeze")
            .into_inner()
            .capability
            .expect("capability");
        assert_eq!(lifecycle_of(&frozen), pb::CapabilityLifecycle::Frozen);
        let pinned = get(&mut client, "crm.create_account", "1.1.0")
            .await
            .expect("get version");
        assert_eq!(lifecycle_of(&pinned), pb::CapabilityLifecycle::Frozen);
        assert_eq!(pinned.lifecycle_reason, "double-creates accounts");
        assert_eq!(
            version_of(
                &get(&mut client, "crm.create_account", "")
                    .await
                    .expect("get")
            ),
            "1.0.0"
        );
        let versions = client
            .list_capability_versions(reader(pb::ListCapabilityVersionsRequest {
                capability_id: "crm.create_account".into(),
                ..Default::default()
            }))
            .await
            .expect("versions")
            .into_inner();
        assert_eq!(
            versions
                .capabilities
                .iter()
                .map(version_of)
                .collect::<Vec<_>>(),
            ["1.1.0", "1.0.0"]
        );

        // The watch saw every change, in order.
        let head = frozen.registry_revision;
        let mut live = Vec::new();
        while live.len() < head as usize {
            match next_event(&mut watch).await {
                Event::Change(change) => live.push(summary(&change)),
                Event::CaughtUp(_) => panic!("CaughtUp is sent once"),
                Event::Heartbeat(_) => unreachable!("skipped by next_event"),
            }
        }
        assert_eq!(
            live.iter().map(|c| c.0).collect::<Vec<_>>(),
            (1..=head).collect::<Vec<_>>(),
            "{:?}",
            db.backend()
        );
        assert_eq!(live[0].2, "crm.create_account");
        assert_eq!(
            live.last().map(|c| (c.1, c.4)),
            Some((
                pb::ChangeType::LifecycleChanged,
                pb::CapabilityLifecycle::Frozen
            ))
        );
        drop(watch);

        // Reconnect from a saved revision: exactly what happened since.
        let saved = head;
        register(&mut client, "crm.delete_account", "1.0.0", "HIGH").await;
        client
            .set_capability_lifecycle(admin(pb::SetCapabilityLifecycleRequest {
                capability_id: "crm.create_account".into(),
                version: "1.1.0".into(),
                lifecycle: pb::CapabilityLifecycle::Active as i32,
                reason: "fixed".into(),
                request_id: String::new(),
            }))
            .await
            .expect("unfreeze");
        let mut watch = client
            .watch_capabilities(reader(pb::WatchCapabilitiesRequest {
                since_revision: saved,
                ..Default::default()
            }))
            .await
            .expect("watch again")
            .into_inner();
        let (missed, caught_up) = until_caught_up(&mut watch).await;
        let missed: Vec<_> = missed.iter().map(summary).collect();
        assert_eq!(missed.len(), 2, "{missed:?}");
        assert_eq!(missed[0].0, saved + 1);
        assert_eq!(
            (missed[0].1, missed[0].2.as_str()),
            (pb::ChangeType::Registered, "crm.delete_account")
        );
        assert_eq!(
            (missed[1].1, missed[1].4),
            (
                pb::ChangeType::LifecycleChanged,
                pb::CapabilityLifecycle::Active
            )
        );
        assert_eq!(caught_up, saved + 2);
        // ...and live changes keep coming on the same stream.
        register(&mut client, "crm.merge_accounts", "1.0.0", "MEDIUM").await;
        let Event::Change(change) = next_event(&mut watch).await else {
            panic!("a change")
        };
        assert_eq!(
            (change.registry_revision, summary(&change).2.as_str()),
            (saved + 3, "crm.merge_accounts")
        );
        drop(watch);
        server.stop().await.expect("clean stop");
    }
}

async fn list_all(client: &mut RegistryServiceClient<Channel>, page_size: i32) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_capabilities(reader(pb::ListCapabilitiesRequest {
                page_size,
                page_token,
                ..Default::default()
            }))
            .await
            .expect("list")
            .into_inner();
        ids.extend(
            page.capabilities
                .into_iter()
                .map(|c| c.spec.expect("spec").id),
        );
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_spec_breaking_rules_1_and_3_gets_both_violations_in_one_error() {
    use tonic_types::StatusExt as _;
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let mut client = RegistryServiceClient::new(server.channel().await);
    let spec = pb::CapabilitySpec {
        id: "payments.refund".into(),
        name: "Refund".into(),
        operation_type: airt_proto::common::v1::OperationType::Network as i32,
        risk: Some(pb::Risk {
            level: airt_proto::common::v1::RiskLevel::Medium as i32,
            ..Default::default()
        }),
        side_effects: Some(pb::SideEffects {
            reversible: false,
            scope: pb::SideEffectScope::External as i32,
            description: String::new(),
        }),
        compensation: Some(pb::Compensation {
            supported: false,
            strategy: pb::CompensationStrategy::None as i32,
            capability_id: String::new(),
        }),
        metadata: Some(pb::CapabilityMetadata {
            version: "1.0.0".into(),
            ..Default::default()
        }),
        handler: "http:https://payments.example/refund".into(),
        ..Default::default()
    };
    let request = pb::RegisterCapabilityRequest {
        source: Some(pb::register_capability_request::Source::Spec(spec.clone())),
        validate_only: false,
        request_id: String::new(),
    };
    let status = client
        .register_capability(admin(request))
        .await
        .expect_err("rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    assert_eq!(
        details
            .error_info()
            .map(|i| (i.reason.as_str(), i.domain.as_str())),
        Some(("INVALID_CAPABILITY", "airt.dev"))
    );
    let violations = &details.bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations.len(), 2, "{violations:?}");
    for (violation, rule) in violations.iter().zip(["rule 1", "rule 3"]) {
        assert_eq!(violation.field, "spec.risk.level");
        assert!(
            violation
                .description
                .starts_with("Risk Consistency Check Failed: "),
            "{}",
            violation.description
        );
        assert!(
            violation.description.contains(rule),
            "{}",
            violation.description
        );
    }

    // validate_only on a consistent spec stores nothing.
    let mut fixed = spec;
    fixed.risk = Some(pb::Risk {
        level: airt_proto::common::v1::RiskLevel::Critical as i32,
        ..Default::default()
    });
    let dry_run = client
        .register_capability(admin(pb::RegisterCapabilityRequest {
            source: Some(pb::register_capability_request::Source::Spec(fixed)),
            validate_only: true,
            request_id: String::new(),
        }))
        .await
        .expect("valid")
        .into_inner();
    assert!(!dry_run.created);
    assert!(
        !dry_run
            .capability
            .expect("capability")
            .content_digest
            .is_empty()
    );
    assert_eq!(
        get(&mut client, "payments.refund", "")
            .await
            .expect_err("nothing stored")
            .code(),
        Code::NotFound
    );

    // A YAML file with a typo names the line.
    let status = client
        .register_capability(admin(register_text(
            "id: a.b\nrisk:\n  levl: HIGH\n".into(),
        )))
        .await
        .expect_err("unknown field");
    assert_eq!(status.code(), Code::InvalidArgument);
    let violations = airt_kit::status::violations_of(&status);
    assert_eq!(violations[0].field, "spec_text");
    assert!(
        violations[0].description.contains("line 3"),
        "{}",
        violations[0].description
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn only_admins_and_registrars_write_and_refused_calls_write_nothing() {
    for db in TestDb::all().await {
        let server = start(&db).await;
        let channel = server.channel().await;
        let mut client = RegistryServiceClient::new(channel.clone());
        let text = capability_yaml("crm.create_account", "1.0.0", "MEDIUM");

        let anonymous = client
            .register_capability(register_text(text.clone()))
            .await
            .expect_err("no identity");
        assert_eq!(anonymous.code(), Code::Unauthenticated);
        let agent = client
            .register_capability(as_principal(
                register_text(text.clone()),
                "agent:planner-7",
                &["approver"],
            ))
            .await
            .expect_err("no role");
        assert_eq!(agent.code(), Code::PermissionDenied);
        let freeze = client
            .set_capability_lifecycle(as_principal(
                pb::SetCapabilityLifecycleRequest {
                    capability_id: "crm.create_account".into(),
                    lifecycle: pb::CapabilityLifecycle::Frozen as i32,
                    reason: "x".into(),
                    ..Default::default()
                },
                "agent:planner-7",
                &[],
            ))
            .await
            .expect_err("no role");
        assert_eq!(freeze.code(), Code::PermissionDenied);
        let anonymous_read = client
            .get_capability(pb::GetCapabilityRequest {
                capability_id: "crm.create_account".into(),
                version: String::new(),
            })
            .await
            .expect_err("reads need a principal too");
        assert_eq!(anonymous_read.code(), Code::Unauthenticated);

        // Nothing was written: no capability, no revision, no audit event.
        assert!(list_all(&mut client, 100).await.is_empty());
        let mut audit = AuditServiceClient::new(channel);
        let report = audit
            .verify_audit_chain(admin(VerifyAuditChainRequest {}))
            .await
            .expect("verify")
            .into_inner();
        assert_eq!(report.events_checked, 0, "{:?}", db.backend());

        // The registrar role (used by the workflow service) may publish.
        let created = client
            .register_capability(as_principal(
                register_text(text),
                "service:workflow",
                &["registrar"],
            ))
            .await
            .expect("registrar registers")
            .into_inner();
        assert!(created.created);
        let report = audit
            .verify_audit_chain(admin(VerifyAuditChainRequest {}))
            .await
            .expect("verify")
            .into_inner();
        assert!(report.intact);
        assert_eq!(report.events_checked, 1);
        server.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn a_restart_keeps_everything() {
    for db in TestDb::all().await {
        let server = start(&db).await;
        let mut client = RegistryServiceClient::new(server.channel().await);
        register(&mut client, "crm.create_account", "1.0.0", "MEDIUM").await;
        register(&mut client, "crm.create_account", "2.0.0", "MEDIUM").await;
        server.stop().await.expect("clean stop");

        let server = start(&db).await;
        let mut client = RegistryServiceClient::new(server.channel().await);
        assert_eq!(
            version_of(
                &get(&mut client, "crm.create_account", "")
                    .await
                    .expect("get")
            ),
            "2.0.0"
        );
        assert_eq!(
            version_of(
                &get(&mut client, "crm.create_account", "1.0.0")
                    .await
                    .expect("get")
            ),
            "1.0.0"
        );
        let mut watch = client
            .watch_capabilities(reader(pb::WatchCapabilitiesRequest::default()))
            .await
            .expect("watch")
            .into_inner();
        let (changes, revision) = until_caught_up(&mut watch).await;
        assert_eq!((changes.len(), revision), (2, 2), "{:?}", db.backend());
        drop(watch);
        server.stop().await.expect("clean stop");
    }
}

#[tokio::test]
async fn a_quiet_watch_stream_sends_heartbeats_at_the_asked_interval() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let mut client = RegistryServiceClient::new(server.channel().await);
    register(&mut client, "crm.create_account", "1.0.0", "MEDIUM").await;
    let mut watch = client
        .watch_capabilities(reader(pb::WatchCapabilitiesRequest {
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            ..Default::default()
        }))
        .await
        .expect("watch")
        .into_inner();
    let (backlog, revision) = until_caught_up(&mut watch).await;
    assert_eq!((backlog.len(), revision), (1, 1));
    // Nothing changes: heartbeats, each naming the revision caught up to.
    for _ in 0..3 {
        let Event::Heartbeat(heartbeat) = next_message(&mut watch).await else {
            panic!("a heartbeat on a quiet stream")
        };
        assert_eq!(heartbeat.registry_revision, 1);
    }
    // A change still arrives as a change, and later heartbeats follow it.
    register(&mut client, "crm.delete_account", "1.0.0", "HIGH").await;
    let mut seen_change = false;
    loop {
        match next_message(&mut watch).await {
            Event::Change(change) => {
                assert_eq!(change.registry_revision, 2);
                seen_change = true;
            }
            Event::Heartbeat(heartbeat) if seen_change => {
                assert_eq!(heartbeat.registry_revision, 2);
                break;
            }
            Event::Heartbeat(heartbeat) => assert_eq!(heartbeat.registry_revision, 1),
            Event::CaughtUp(_) => panic!("CaughtUp is sent once"),
        }
    }
    drop(watch);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn bad_requests_get_invalid_argument_with_the_field() {
    let db = TestDb::sqlite();
    let server = start(&db).await;
    let mut client = RegistryServiceClient::new(server.channel().await);
    let cases: Vec<(tonic::Status, &str)> = vec![
        (
            get(&mut client, "NotAnId", "").await.expect_err("bad id"),
            "capability_id",
        ),
        (
            client
                .list_capabilities(reader(pb::ListCapabilitiesRequest {
                    page_size: -1,
                    ..Default::default()
                }))
                .await
                .expect_err("negative page"),
            "page_size",
        ),
        (
            client
                .list_capabilities(reader(pb::ListCapabilitiesRequest {
                    page_token: "!!".into(),
                    ..Default::default()
                }))
                .await
                .expect_err("bad token"),
            "page_token",
        ),
        (
            client
                .register_capability(admin(pb::RegisterCapabilityRequest::default()))
                .await
                .expect_err("no spec"),
            "spec",
        ),
        (
            client
                .set_capability_lifecycle(admin(pb::SetCapabilityLifecycleRequest {
                    capability_id: "crm.create_account".into(),
                    lifecycle: pb::CapabilityLifecycle::Frozen as i32,
                    ..Default::default()
                }))
                .await
                .expect_err("no reason"),
            "reason",
        ),
        (
            client
                .watch_capabilities(reader(pb::WatchCapabilitiesRequest {
                    heartbeat_interval: Some(prost_types::Duration {
                        seconds: 0,
                        nanos: 1_000_000,
                    }),
                    ..Default::default()
                }))
                .await
                .expect_err("heartbeat too frequent"),
            "heartbeat_interval",
        ),
    ];
    for (status, field) in cases {
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert_eq!(airt_kit::status::violations_of(&status)[0].field, field);
    }
    server.stop().await.expect("clean stop");
}
