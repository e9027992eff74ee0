//! Every attempt is a decision: a policy changed to DENY, or a capability
//! FROZEN, between two attempts of a step stops it before the handler is
//! called again; a DEPRECATED capability is flagged on the step.

use std::time::Duration;

use airt_kit::testing::http::Recorder;
use airt_kit::testing::{TestDb, as_principal};
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::{Stack, register_capability, run_workflow};
use workflow_service::capabilities::net::NetworkPolicy;

const ALLOW_ALL: &str = "escalate_high_risk: false\nrules:\n  - {id: allow-all, decision: ALLOW}\n";
const RETRIED: &str = "name: sync\nsteps:\n  - {name: sync, capability: crm.sync, \
    retry: {max_attempts: 3, initial_backoff: 1s}}\n";

async fn stack(recorder: &Recorder) -> Stack {
    let stack = Stack::start_with(TestDb::sqlite(), ALLOW_ALL, |config| {
        config.catalogue.network = NetworkPolicy::parse(&["127.0.0.1".to_owned()]).expect("allow");
    })
    .await;
    let spec = format!(
        "id: crm.sync\nname: Sync\noperation_type: WRITE\nrisk: {{level: MEDIUM}}\n\
         side_effects: {{reversible: true, scope: EXTERNAL}}\ncompensation: {{supported: true, strategy: MANUAL}}\n\
         metadata: {{version: 1.0.0}}\nhandler: \"http:{}\"\n",
        recorder.url("/sync")
    );
    let channel = stack.registry.as_ref().expect("registry").channel().await;
    register_capability(channel, spec).await;
    stack
}

fn step(workflow: &pb::Workflow) -> &pb::Step {
    workflow.steps.first().expect("one step")
}

/// Runs the retried workflow; once its first attempt failed, `between`
/// changes the world; returns how the workflow rested.
async fn retried_with(
    stack: &Stack,
    recorder: &Recorder,
    between: impl std::future::Future<Output = ()>,
) -> pb::Workflow {
    recorder.fail_next("/sync", 1);
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let run = tokio::spawn(async move { run_workflow(&mut client, "user:alice", RETRIED).await });
    recorder.wait_for("/sync", 1, Duration::from_secs(10)).await;
    between.await;
    run.await.expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_changed_to_deny_between_attempts_stops_the_retry() {
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let policy_channel = stack.policy.as_ref().expect("policy").channel().await;
    let workflow = retried_with(&stack, &recorder, async move {
        PolicyServiceClient::new(policy_channel)
            .put_policy_set(as_principal(
                policy::PutPolicySetRequest {
                    source_yaml: "rules:\n  - {id: freeze-crm, when: {capability: crm.sync}, decision: DENY, reason: incident}\n".into(),
                    activate: true,
                    ..Default::default()
                },
                "user:root",
                &["admin"],
            ))
            .await
            .expect("deny");
    })
    .await;
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Failed as i32,
        "{workflow:?}"
    );
    assert_eq!(
        step(&workflow).status,
        pb::StepStatus::Denied as i32,
        "{workflow:?}"
    );
    assert!(
        step(&workflow).error.contains("freeze-crm"),
        "{}",
        step(&workflow).error
    );
    assert_eq!(
        recorder.requests("/sync").len(),
        1,
        "the handler was called again"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_frozen_between_attempts_is_not_called_again() {
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let registry_channel = stack.registry.as_ref().expect("registry").channel().await;
    let workflow = retried_with(&stack, &recorder, async move {
        set_lifecycle(registry_channel, registry::CapabilityLifecycle::Frozen).await;
    })
    .await;
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Failed as i32,
        "{workflow:?}"
    );
    assert!(
        step(&workflow).error.contains("FROZEN"),
        "{}",
        step(&workflow).error
    );
    assert_eq!(
        recorder.requests("/sync").len(),
        1,
        "the handler was called again"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprecated_capability_is_flagged_on_the_step() {
    let recorder = Recorder::start().await;
    let stack = stack(&recorder).await;
    let registry_channel = stack.registry.as_ref().expect("registry").channel().await;
    set_lifecycle(registry_channel, registry::CapabilityLifecycle::Deprecated).await;
    // The workflow service hears of it through the registry's change feed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let workflow = run_workflow(&mut client, "user:alice", RETRIED).await;
    assert_eq!(
        workflow.status,
        pb::WorkflowStatus::Completed as i32,
        "{workflow:?}"
    );
    assert_eq!(
        step(&workflow).warnings,
        vec!["capability crm.sync is DEPRECATED".to_owned()]
    );
    stack.stop().await;
}

async fn set_lifecycle(
    channel: tonic::transport::Channel,
    lifecycle: registry::CapabilityLifecycle,
) {
    RegistryServiceClient::new(channel)
        .set_capability_lifecycle(as_principal(
            registry::SetCapabilityLifecycleRequest {
                capability_id: "crm.sync".into(),
                lifecycle: lifecycle as i32,
                reason: "CRM migration".into(),
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("lifecycle");
}
