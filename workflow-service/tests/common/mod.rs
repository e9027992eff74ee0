//! What the tests of the workflow-service binary share: submitting a
//! workflow and reading it back as a principal in development auth mode.

use std::time::Duration;

use airt_kit::testing::as_principal;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tonic::transport::Channel;

/// Submits `spec` as `principal`; the submission's answer.
pub async fn submit(
    channel: Channel,
    principal: &str,
    spec: &str,
) -> Result<pb::Workflow, tonic::Status> {
    let request = pb::SubmitWorkflowRequest {
        source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
        request_id: String::new(),
    };
    Ok(WorkflowServiceClient::new(channel)
        .submit_workflow(as_principal(request, principal, &[]))
        .await?
        .into_inner()
        .workflow
        .expect("workflow"))
}

/// The workflow `id` as `principal` (with `roles`) sees it.
pub async fn get(channel: Channel, principal: &str, roles: &[&str], id: &str) -> pb::Workflow {
    let request = pb::GetWorkflowRequest {
        workflow_id: id.into(),
    };
    WorkflowServiceClient::new(channel)
        .get_workflow(as_principal(request, principal, roles))
        .await
        .expect("get")
        .into_inner()
        .workflow
        .expect("workflow")
}

/// The workflow once it is neither PENDING nor RUNNING (polled every 20 ms,
/// at most 30 s).
pub async fn rested(channel: Channel, principal: &str, id: &str) -> pb::Workflow {
    for _ in 0..1500 {
        let workflow = get(channel.clone(), principal, &[], id).await;
        if !matches!(
            pb::WorkflowStatus::try_from(workflow.status),
            Ok(pb::WorkflowStatus::Pending | pb::WorkflowStatus::Running)
        ) {
            return workflow;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("workflow {id} did not come to rest within 30 s");
}
