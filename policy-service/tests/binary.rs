//! The real `policy-service` binary: reflection, health and SIGTERM.

#[tokio::test]
async fn binary_serves_health_reflection_and_audit_then_exits_cleanly_on_sigterm() {
    airt_kit::testing::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_policy-service"),
        &["airt.policy.v1.PolicyService"],
        &[],
        tonic_health::pb::health_check_response::ServingStatus::Serving,
    )
    .await;
}
