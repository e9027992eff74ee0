//! A client's `traceparent` on SubmitWorkflow becomes the parent of the
//! workflow service's span, and the registry's span for the submission's
//! static check belongs to the same trace.

use std::time::Duration;

use airt_kit::testing::http::Recorder;
use airt_kit::testing::spans::{CapturedSpans, attribute};
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, register_capability};
use opentelemetry_sdk::trace::SpanData;
use workflow_service::capabilities::net::NetworkPolicy;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT_SPAN: &str = "b7ad6b7169203331";

// Current-thread: the captured spans are every service's.
#[tokio::test]
async fn a_submission_continues_the_callers_trace_into_the_registry() {
    let captured = CapturedSpans::start("tracing");

    let recorder = Recorder::start().await;
    let stack = Stack::start_with(
        TestDb::sqlite(),
        "escalate_high_risk: false\nrules:\n  - {id: allow-all, decision: ALLOW}\n",
        |config| {
            config.catalogue.network =
                NetworkPolicy::parse(&["127.0.0.1".to_owned()]).expect("allow");
        },
    )
    .await;
    let registry = stack.registry.as_ref().expect("registry").channel().await;
    register_capability(
        registry,
        format!(
            "id: crm.sync\nname: Sync\noperation_type: WRITE\nrisk: {{level: LOW}}\n\
             side_effects: {{reversible: true, scope: EXTERNAL}}\n\
             compensation: {{supported: true, strategy: MANUAL}}\n\
             metadata: {{version: 1.0.0}}\nhandler: \"http:{}\"\n",
            recorder.url("/sync")
        ),
    )
    .await;

    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let mut request = as_principal(
        pb::SubmitWorkflowRequest {
            source: Some(pb::submit_workflow_request::Source::SpecText(
                "name: sync\nsteps:\n  - {name: sync, capability: crm.sync}\n".into(),
            )),
            request_id: String::new(),
        },
        "user:alice",
        &[],
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN}-01").parse().unwrap(),
    );
    client.submit_workflow(request).await.expect("submit");
    // The submission's span continues the caller's trace, and the
    // registry's answer to its static check is part of it.
    let mut spans = Vec::new();
    for _ in 0..250 {
        spans = captured.ended();
        if spans
            .iter()
            .any(|s| s.name == "rpc" && s.parent_span_id.to_string() == PARENT_SPAN)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let traced: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == TRACE_ID)
        .collect();
    let submit = traced
        .iter()
        .find(|s| {
            s.name == "rpc"
                && attribute(s, "method").is_some_and(|m| m.ends_with("/SubmitWorkflow"))
        })
        .expect("the submission's span is in the client's trace");
    assert_eq!(submit.parent_span_id.to_string(), PARENT_SPAN);
    assert_eq!(
        attribute(submit, "service").as_deref(),
        Some("workflow-service")
    );
    let registry_span = traced
        .iter()
        .find(|s| s.name == "rpc" && attribute(s, "service").as_deref() == Some("registry-service"))
        .expect("the registry answered within the trace");
    assert_eq!(
        attribute(registry_span, "method").as_deref(),
        Some("/airt.registry.v1.RegistryService/GetCapability")
    );
    recorder.wait_for("/sync", 1, Duration::from_secs(20)).await;
    stack.stop().await;
}
