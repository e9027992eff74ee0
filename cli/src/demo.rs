//! `airt up --demo`: what the runtime does, in three workflows.

use std::time::{Duration, Instant};

use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::metadata::MetadataValue;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const POLICY: &str = include_str!("../../examples/policies/demo.yaml");
const WORKFLOWS: [(&str, &str); 3] = [
    (
        "an allowed workflow completes",
        include_str!("../../examples/workflows/demo_allowed.yaml"),
    ),
    (
        "a high-risk step is denied before anything runs",
        include_str!("../../examples/workflows/demo_denied.yaml"),
    ),
    (
        "a failing step rolls back the steps before it",
        include_str!("../../examples/workflows/demo_rollback.yaml"),
    ),
];

fn as_demo<T>(message: T, roles: &'static str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        airt_kit::auth::DEV_PRINCIPAL_HEADER,
        MetadataValue::from_static("user:demo"),
    );
    request.metadata_mut().insert(
        airt_kit::auth::DEV_ROLES_HEADER,
        MetadataValue::from_static(roles),
    );
    request
}

pub async fn run(policy_url: &str, workflow_url: &str) -> anyhow::Result<()> {
    let workflow_channel =
        tonic::transport::Endpoint::from_shared(workflow_url.to_owned())?.connect_lazy();
    // The workflow service is SERVING once its built-ins are published.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = HealthClient::new(workflow_channel.clone())
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if status.is_ok_and(|s| s.into_inner().status == ServingStatus::Serving as i32) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the workflow service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let policy_channel =
        tonic::transport::Endpoint::from_shared(policy_url.to_owned())?.connect_lazy();
    let put = PolicyServiceClient::new(policy_channel)
        .put_policy_set(as_demo(
            policy::PutPolicySetRequest {
                source_yaml: POLICY.into(),
                activate: true,
                description: "demo".into(),
                ..Default::default()
            },
            "admin",
        ))
        .await?
        .into_inner();
    out!(
        "\n== demo: policy {} active (deny HIGH/CRITICAL, allow LOW/MEDIUM)",
        put.policy_set.map(|s| s.revision).unwrap_or_default()
    );
    let mut client = WorkflowServiceClient::new(workflow_channel);
    for (title, spec) in WORKFLOWS {
        out!("\n== demo: {title}");
        let submitted = client
            .submit_workflow(as_demo(
                pb::SubmitWorkflowRequest {
                    source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
                    request_id: String::new(),
                },
                "",
            ))
            .await?
            .into_inner();
        let id = submitted.workflow.unwrap_or_default().workflow_id;
        let mut stream = client
            .watch_workflow(as_demo(
                pb::WatchWorkflowRequest {
                    workflow_id: id.clone(),
                    after_sequence: 0,
                },
                "",
            ))
            .await?
            .into_inner();
        let mut last = None;
        while let Some(update) = stream.message().await? {
            let workflow = update.workflow.unwrap_or_default();
            let done = matches!(
                pb::WorkflowStatus::try_from(workflow.status),
                Ok(pb::WorkflowStatus::Completed
                    | pb::WorkflowStatus::Failed
                    | pb::WorkflowStatus::RolledBack
                    | pb::WorkflowStatus::CompensationFailed
                    | pb::WorkflowStatus::Cancelled
                    | pb::WorkflowStatus::Paused)
            );
            last = Some(workflow);
            if done {
                break;
            }
        }
        if let Some(workflow) = last {
            crate::workflow::print(&workflow);
        }
    }
    let at = if workflow_url == "http://127.0.0.1:50053" {
        String::new()
    } else {
        format!(" --workflow-addr {workflow_url}")
    };
    out!(
        "\n== demo done. Try: airt{at} --as user:demo workflow list ; airt{at} --as user:root --roles admin audit verify --service workflow\n"
    );
    Ok(())
}
