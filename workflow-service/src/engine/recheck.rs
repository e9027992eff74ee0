//! Every attempt is a decision. A step's first attempt runs on the decision
//! committed with it; before each retry the engine passes the gate again —
//! the registry (still registered, not FROZEN, inputs still fitting) and
//! the policy (still ALLOW, or still covered by the granted approval's
//! digest) — so a capability frozen or a policy changed to DENY between
//! attempts stops the step before the handler is called again. The
//! registry answer comes from the gate's cache (kept current by the change
//! feed); the policy call is one evaluation per retry, which only follows a
//! failure.

use airt_proto::policy::v1::EvaluationPurpose;
use tokio::time::Instant;

use serde_json::{Map, Value};

use super::assess::StepInputs;
use super::step::StepError;
use super::{Engine, Outcome, Run};
use crate::domain::StepSpec;
use crate::store::ApprovalRow;

impl Engine {
    /// `None` when attempt `attempt` may go ahead; otherwise what became of
    /// the step (waiting for a new approval), or why it stops.
    pub(super) async fn recheck(
        &self,
        run: &Run,
        step: &StepSpec,
        inputs: &Map<String, Value>,
        approval: Option<&ApprovalRow>,
        attempt: u32,
        deadline: Instant,
    ) -> Result<Option<Outcome>, StepError> {
        let when = format!("before attempt {attempt}");
        let inputs = StepInputs::resolved(inputs.clone());
        let assessment = self
            .assess(
                run,
                step,
                inputs,
                deadline,
                None,
                EvaluationPurpose::Continue,
            )
            .await
            .map_err(|failure| StepError::gate(failure, &when))?;
        self.obey(run, step, &assessment, approval, &when).await
    }
}
