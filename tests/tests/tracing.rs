//! One workflow step is one trace: a client's `traceparent` on
//! SubmitWorkflow becomes the parent of the workflow service's span; the
//! run, its step and its commits, the registry's and the policy's answers,
//! the `http:` handler's request and the webhook announcing the end all
//! belong to it; GetWorkflow names it.

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

fn rpc<'a>(spans: &[&'a SpanData], method: &str) -> Option<&'a SpanData> {
    spans
        .iter()
        .copied()
        .find(|s| s.name == "rpc" && attribute(s, "method").is_some_and(|m| m.ends_with(method)))
}

fn named<'a>(spans: &[&'a SpanData], name: &str) -> &'a SpanData {
    spans
        .iter()
        .copied()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no {name} span in the trace"))
}

/// The trace id and parent span id of a `traceparent` header.
fn parent_of(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (parts[1].to_owned(), parts[2].to_owned())
}

async fn submit_traced(stack: &Stack) -> pb::Workflow {
    let mut last = None;
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
    let submitted = client.submit_workflow(request).await.expect("submit");
    let id = submitted
        .into_inner()
        .workflow
        .expect("workflow")
        .workflow_id;
    for _ in 0..500 {
        let workflow = client
            .get_workflow(as_principal(
                pb::GetWorkflowRequest {
                    workflow_id: id.clone(),
                },
                "user:alice",
                &[],
            ))
            .await
            .expect("get")
            .into_inner()
            .workflow
            .expect("workflow");
        if workflow.status == pb::WorkflowStatus::Completed as i32 {
            return workflow;
        }
        last = Some(workflow);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("workflow {id} did not complete: {last:#?}");
}

#[tokio::test]
async fn a_workflow_step_is_one_trace_from_the_caller_to_the_handler() {
    let captured = CapturedSpans::start("tracing");
    let recorder = Recorder::start().await;
    let hooks = recorder.url("/hooks");
    let stack = Stack::start_with(
        TestDb::sqlite(),
        "escalate_high_risk: false\nrules:\n  - {id: allow-all, decision: ALLOW}\n",
        |config| {
            config.catalogue.network =
                NetworkPolicy::parse(&["127.0.0.1".to_owned()]).expect("allow");
            config.webhooks = workflow_service::webhooks::WebhookConfig {
                urls: vec![hooks],
                secret: Some(airt_kit::config::Secret::new("s3cret")),
                ..Default::default()
            };
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

    let workflow = submit_traced(&stack).await;
    assert_eq!(workflow.trace_id, TRACE_ID, "GetWorkflow names the trace");
    let handled = recorder.wait_for("/sync", 1, Duration::from_secs(20)).await;
    let announced = recorder
        .wait_for("/hooks", 1, Duration::from_secs(20))
        .await;

    let mut spans = Vec::new();
    for _ in 0..250 {
        spans = captured.ended();
        let traced = |name: &str| {
            spans
                .iter()
                .any(|s| s.name == name && s.span_context.trace_id().to_string() == TRACE_ID)
        };
        if traced("webhook.deliver") && traced("workflow.run") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let traced: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id().to_string() == TRACE_ID)
        .collect();
    let names: Vec<&str> = traced.iter().map(|s| s.name.as_ref()).collect();

    // The caller's span is the submission's parent.
    let submit = rpc(&traced, "/SubmitWorkflow").expect("the submission is in the trace");
    assert_eq!(submit.parent_span_id.to_string(), PARENT_SPAN);
    assert_eq!(
        attribute(submit, "service").as_deref(),
        Some("workflow-service")
    );
    // The run continues the submission; the step is part of the run.
    let run = named(&traced, "workflow.run");
    assert_eq!(run.parent_span_id, submit.span_context.span_id());
    assert_eq!(attribute(run, "to").as_deref(), Some("COMPLETED"));
    let step = named(&traced, "workflow.step");
    assert_eq!(step.parent_span_id, run.span_context.span_id());
    assert_eq!(attribute(step, "capability").as_deref(), Some("crm.sync"));
    assert_eq!(attribute(step, "decision").as_deref(), Some("ALLOW"));
    assert_eq!(attribute(step, "attempt").as_deref(), Some("1"));
    assert_eq!(attribute(step, "status").as_deref(), Some("SUCCEEDED"));
    assert!(names.contains(&"workflow.commit"), "{names:?}");
    // The registry and the policy answered within the trace.
    let registry = rpc(&traced, "/GetCapability").expect("registry span");
    assert_eq!(
        attribute(registry, "service").as_deref(),
        Some("registry-service")
    );
    // The step's own question (the preflight asked one for the run too).
    let evaluate = traced
        .iter()
        .find(|s| {
            attribute(s, "method").is_some_and(|m| m.ends_with("/Evaluate"))
                && s.parent_span_id == step.span_context.span_id()
        })
        .expect("the policy answered the step within the trace");
    assert_eq!(
        attribute(evaluate, "service").as_deref(),
        Some("policy-service")
    );
    // The handler's request is a child of the step.
    let (trace, parent) = parent_of(&handled.headers["traceparent"]);
    assert_eq!(trace, TRACE_ID);
    assert_eq!(parent, step.span_context.span_id().to_string());
    // So is the webhook announcing the end, however late it is sent.
    let deliver = named(&traced, "webhook.deliver");
    let (trace, parent) = parent_of(&announced.headers["traceparent"]);
    assert_eq!(trace, TRACE_ID);
    assert_eq!(parent, deliver.span_context.span_id().to_string());
    stack.stop().await;
}
