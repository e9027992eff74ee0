//! What can be known before anything runs is refused before anything is
//! stored: unknown and FROZEN capabilities, missing, unknown and mistyped
//! inputs — every problem at once, by field path, from PlanWorkflow and
//! SubmitWorkflow alike.

use std::time::{Duration, Instant};

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, register_capability};
use tonic::transport::Channel;

const POLICY: &str = "rules:\n  - {id: allow-all, when: {}, decision: ALLOW}\n";

const BROKEN: &str = r#"
name: broken
steps:
  - {name: write, capability: io.fs.write_file, inputs: {pathh: x, content: 5}}
  - {name: ghost, capability: ghost.thing}
  - {name: frozen, capability: crm.sync, inputs: {account: acme}}
  - {name: later, capability: io.fs.write_file, depends_on: [write], inputs: {path: "{{write.path}}", content: ok}}
"#;

fn violations(status: &tonic::Status) -> Vec<String> {
    let mut fields: Vec<String> = airt_kit::status::violations_of(status)
        .into_iter()
        .map(|v| v.field)
        .collect();
    fields.sort();
    fields
}

async fn plan(
    client: &mut WorkflowServiceClient<Channel>,
    spec: &str,
) -> Result<pb::PlanWorkflowResponse, tonic::Status> {
    client
        .plan_workflow(as_principal(
            pb::PlanWorkflowRequest {
                source: Some(pb::plan_workflow_request::Source::SpecText(spec.into())),
            },
            "user:alice",
            &[],
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn submit(
    client: &mut WorkflowServiceClient<Channel>,
    spec: &str,
) -> Result<pb::SubmitWorkflowResponse, tonic::Status> {
    client
        .submit_workflow(as_principal(
            pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
                request_id: "once".into(),
            },
            "user:alice",
            &[],
        ))
        .await
        .map(tonic::Response::into_inner)
}

async fn freeze_crm_sync(channel: Channel) {
    register_capability(
        channel.clone(),
        "id: crm.sync\nname: Sync\noperation_type: WRITE\nrisk: {level: CRITICAL}\nside_effects: {reversible: false, scope: EXTERNAL}\ncompensation: {supported: false, strategy: NONE}\nparameters: [{name: account, type: string, required: true}]\nmetadata: {version: 1.0.0}\nhandler: \"http:https://crm.example/sync\"\n",
    )
    .await;
    RegistryServiceClient::new(channel)
        .set_capability_lifecycle(as_principal(
            registry::SetCapabilityLifecycleRequest {
                capability_id: "crm.sync".into(),
                version: String::new(),
                lifecycle: registry::CapabilityLifecycle::Frozen as i32,
                reason: "provider outage".into(),
                request_id: String::new(),
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("freeze");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_and_submit_refuse_every_static_problem_at_once_and_store_nothing() {
    let stack = Stack::start(TestDb::sqlite(), POLICY).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    freeze_crm_sync(stack.registry.as_ref().expect("registry").channel().await).await;

    let expected = [
        "spec.steps[0].inputs.content", // 5 is not a string
        "spec.steps[0].inputs.path",    // missing
        "spec.steps[0].inputs.pathh",   // unknown
        "spec.steps[1].capability",     // not registered
        "spec.steps[2].capability",     // FROZEN
    ];
    // The freeze reaches the workflow service through the registry's change feed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let refused = plan(&mut client, BROKEN).await.expect_err("not admissible");
        if violations(&refused) == expected || Instant::now() > deadline {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&refused), expected, "{}", refused.message());
    assert_eq!(
        airt_kit::status::reason_of(&refused).as_deref(),
        Some("INVALID_WORKFLOW")
    );
    assert!(
        refused.message().contains("FROZEN: provider outage"),
        "{}",
        refused.message()
    );
    // An input that needs an earlier step's output (steps[3].inputs.path) is no problem yet.

    let refused = submit(&mut client, BROKEN).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(violations(&refused), expected);
    let stored = client
        .list_workflows(as_principal(
            pb::ListWorkflowsRequest::default(),
            "user:alice",
            &[],
        ))
        .await
        .expect("list")
        .into_inner()
        .workflows;
    assert!(stored.is_empty(), "nothing is stored: {stored:?}");

    // Fixed, the same request id is free and the workflow runs.
    let fixed = "name: fixed\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: x.txt, content: '5'}}\n  - {name: later, capability: io.fs.write_file, depends_on: [write], inputs: {path: \"{{write.path}}\", content: ok}}\n";
    let planned = plan(&mut client, fixed).await.expect("plan");
    assert!(planned.admissible);
    assert_eq!(planned.steps[1].deferred_inputs, ["path"]);
    let submitted = submit(&mut client, fixed).await.expect("submit");
    assert!(submitted.created);
    stack.stop().await;
}
