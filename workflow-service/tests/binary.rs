//! The real `workflow-service` binary: reflection, health and SIGTERM.

/// With no registry reachable the built-ins cannot be published, so the
/// service is up (reflection answers) but reports NOT_SERVING; SIGTERM still
/// stops it cleanly.
#[tokio::test]
async fn binary_reports_not_serving_without_a_registry_and_exits_cleanly_on_sigterm() {
    let workspace = tempfile::tempdir().expect("workspace");
    let workspace = workspace.path().to_string_lossy().into_owned();
    airt_kit::testing::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_workflow-service"),
        &[
            "airt.workflow.v1.ApprovalService",
            "airt.workflow.v1.WorkflowService",
        ],
        &[
            "--registry-addr",
            "http://127.0.0.1:9",
            "--workspace",
            &workspace,
            "--auth-dev-mode",
        ],
        tonic_health::pb::health_check_response::ServingStatus::NotServing,
    )
    .await;
}
