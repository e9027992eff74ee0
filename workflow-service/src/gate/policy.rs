//! Asking the policy service for a decision.

use tokio::time::Instant;

use airt_proto::policy::v1 as pb;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use tonic::transport::Channel;

use super::{GateError, with_retry};
use airt_kit::credentials::Credentials;

#[derive(Debug, Clone)]
pub struct PolicyGate {
    client: PolicyServiceClient<Channel>,
    credentials: Credentials,
}

impl PolicyGate {
    pub fn new(channel: Channel, credentials: Credentials) -> Self {
        Self {
            client: PolicyServiceClient::new(channel),
            credentials,
        }
    }

    /// The decision for `context`, or an error once `deadline` passes with
    /// the policy service unreachable. Never a default answer. `purpose`
    /// says whether an action will run on it (budgets are consumed), it is
    /// a preview, or the action was already counted.
    pub async fn evaluate(
        &self,
        context: pb::PolicyContext,
        purpose: pb::EvaluationPurpose,
        deadline: Instant,
    ) -> Result<pb::DecisionRecord, GateError> {
        with_retry("policy service", deadline, |timeout| {
            let mut client = self.client.clone();
            let mut request = tonic::Request::new(pb::EvaluateRequest {
                context: Some(context.clone()),
                explain: false,
                any_inputs: false,
                purpose: purpose as i32,
            });
            request.set_timeout(timeout);
            self.credentials.apply(&mut request);
            async move {
                client
                    .evaluate(request)
                    .await
                    .map(|r| r.into_inner().decision.unwrap_or_default())
            }
        })
        .await
    }
}
