//! W3C trace context through a real server: a caller's `traceparent`
//! becomes the parent of the server's `rpc` span, and a client call made
//! inside a span carries that span's trace.

use airt_kit::auth::AuthSettings;
use airt_kit::config::{ServiceConfig, ServiceIdentity};
use airt_kit::testing::spans::CapturedSpans;
use airt_kit::testing::{TestDb, TestServer, as_principal};
use airt_proto::audit::v1 as pb;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;

const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "trace-test",
    default_port: 0,
    default_admin_port: 0,
    default_db_file: "trace.db",
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";
const REFUSED_TRACE_ID: &str = "5bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn a_callers_trace_continues_through_the_server_and_into_client_calls() {
    // This (current-thread) runtime runs the server and the client.
    let captured = CapturedSpans::start("trace_context");

    let db = TestDb::sqlite();
    let config = ServiceConfig {
        database_url: db.url().to_owned(),
        auth: AuthSettings::Development,
        ..ServiceConfig::local(&IDENTITY)
    };
    let server = TestServer::start(move |listener, shutdown| {
        airt_kit::bootstrap::serve(
            &IDENTITY,
            config,
            None,
            listener,
            shutdown,
            |_, server| async { Ok(server) },
        )
    })
    .await;
    let mut client = AuditServiceClient::new(server.channel().await);

    // 1. A caller that sends its own traceparent.
    let mut request = as_principal(
        pb::VerifyAuditChainRequest::default(),
        "user:alice",
        &["auditor"],
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN}-01").parse().unwrap(),
    );
    client.verify_audit_chain(request).await.expect("verify");

    // 2. A call made inside a traced span, through the kit's credentials.
    let (client_trace, headers) = {
        let span = tracing::info_span!("agent.step");
        let _entered = span.enter();
        let mut request = tonic::Request::new(pb::VerifyAuditChainRequest::default());
        airt_kit::credentials::Credentials::development("service:workflow", "auditor")
            .expect("credentials")
            .apply(&mut request);
        let headers = airt_kit::trace::current_headers();
        client.verify_audit_chain(request).await.expect("verify");
        (
            airt_kit::trace::current_trace_id().expect("traced"),
            headers,
        )
    };
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "traceparent" && v.contains(&client_trace)),
        "{headers:?}"
    );

    // 3. A refused call: its log line names the call's trace and span.
    let mut anonymous = tonic::Request::new(pb::VerifyAuditChainRequest::default());
    anonymous.metadata_mut().insert(
        "traceparent",
        format!("00-{REFUSED_TRACE_ID}-{PARENT_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let refused = client
        .verify_audit_chain(anonymous)
        .await
        .expect_err("no identity");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    server.stop().await.expect("stop");
    let spans = captured.ended();
    let rpcs: Vec<_> = spans.iter().filter(|s| s.name == "rpc").collect();
    assert_eq!(rpcs.len(), 3, "{spans:#?}");
    let refused_span = rpcs
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == REFUSED_TRACE_ID)
        .expect("the refused call's span");
    let lines = captured.log_lines();
    let line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "rpc refused" && l["trace_id"] == REFUSED_TRACE_ID)
        .unwrap_or_else(|| panic!("no log line names the refused call's trace: {lines:#?}"));
    assert_eq!(
        line["span_id"],
        refused_span.span_context.span_id().to_string()
    );
    assert!(
        refused_span
            .attributes
            .iter()
            .all(|kv| kv.key.as_str() != "trace_id"),
        "the ids are not repeated as attributes"
    );
    let continued = rpcs
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == TRACE_ID)
        .expect("the caller's trace continued");
    assert_eq!(continued.parent_span_id.to_string(), PARENT_SPAN);
    let from_client = rpcs
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == client_trace)
        .expect("the client span's trace continued");
    let agent = spans
        .iter()
        .find(|s| s.name == "agent.step")
        .expect("client span");
    assert_eq!(from_client.parent_span_id, agent.span_context.span_id());
}

#[test]
fn a_stored_traceparent_parents_a_later_span() {
    let captured = CapturedSpans::start("trace_context");
    let stored = {
        let span = tracing::info_span!("submission");
        let _entered = span.enter();
        airt_kit::trace::current_traceparent()
    };
    assert_eq!(
        airt_kit::trace::trace_id_of(&stored).map(str::len),
        Some(32),
        "{stored}"
    );
    {
        let later = tracing::info_span!(parent: None, "later.run");
        airt_kit::trace::continue_traceparent(&later, &stored);
    }
    {
        // Nothing stored: a root of its own trace.
        let root = tracing::info_span!(parent: None, "untraced.run");
        airt_kit::trace::continue_traceparent(&root, "");
    }
    let spans = captured.ended();
    let find = |name: &str| spans.iter().find(|s| s.name == name).expect(name);
    let (submission, later, root) = (find("submission"), find("later.run"), find("untraced.run"));
    assert_eq!(
        later.span_context.trace_id(),
        submission.span_context.trace_id()
    );
    assert_eq!(later.parent_span_id, submission.span_context.span_id());
    assert_ne!(
        root.span_context.trace_id(),
        submission.span_context.trace_id()
    );
}

#[test]
fn only_well_formed_traceparents_name_a_trace() {
    use airt_kit::trace::trace_id_of;
    assert_eq!(
        trace_id_of(&format!("00-{TRACE_ID}-{PARENT_SPAN}-01")),
        Some(TRACE_ID)
    );
    assert_eq!(trace_id_of(""), None);
    assert_eq!(trace_id_of("00-xyz-00f067aa0ba902b7-01"), None);
    assert_eq!(
        trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
        None
    );
}
