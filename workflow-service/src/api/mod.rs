//! `airt.workflow.v1.WorkflowService` (here) and `ApprovalService`
//! ([`approvals`]): decode, check access, call the engine and the store,
//! encode.

mod action;
mod approvals;
mod watch;
pub mod watchers;

pub use approvals::ApprovalApi;

use std::pin::Pin;
use std::time::Duration;

use airt_kit::Principal;
use airt_kit::auth::principal;
use airt_kit::status::FieldViolation;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_server::WorkflowService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::convert::{draft_from_proto, workflow_to_proto};
use crate::domain::{WorkflowDraft, WorkflowStatus};
use crate::engine::Engine;
use crate::error::WorkflowError;
use crate::store::{ListFilter, WorkflowRow};
use tokio_util::sync::CancellationToken;

const MAX_SPEC_TEXT: usize = 1024 * 1024;
/// Encoded size at which a ListWorkflows page ends.
pub(crate) const MAX_PAGE_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct WorkflowApi {
    engine: Engine,
    shutdown: CancellationToken,
    /// How often a watcher looks for changes committed by other replicas
    /// (this replica's own commits wake it at once).
    watch_poll: Duration,
    watchers: watchers::Watchers,
}

impl WorkflowApi {
    /// `shutdown` turning true ends every open WatchWorkflow stream.
    pub fn new(
        engine: Engine,
        shutdown: CancellationToken,
        watch_poll: Duration,
        watchers: watchers::Watchers,
    ) -> Self {
        Self {
            engine,
            shutdown,
            watch_poll,
            watchers,
        }
    }

    async fn snapshot(&self, row: &WorkflowRow) -> Result<pb::Workflow, WorkflowError> {
        let steps = self.engine.store().steps(&row.workflow_id).await?;
        let compensations = self.engine.store().compensations(&row.workflow_id).await?;
        Ok(workflow_to_proto(row, &steps, &compensations))
    }

    /// A ListWorkflows page of `rows`. It ends early rather than outgrow
    /// what clients decode (4 MiB by default): one large workflow cannot
    /// break listing for others. Steps and compensations are read for a
    /// chunk of rows at a time, the chunk doubling from 8 while the page is
    /// small, so a page costs a few statements and never reads far past
    /// the size at which it ends.
    async fn page(&self, rows: &[WorkflowRow]) -> Result<Vec<pb::Workflow>, WorkflowError> {
        let mut workflows = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        let (mut start, mut chunk) = (0, 8);
        while start < rows.len() {
            let rows = &rows[start..rows.len().min(start + chunk)];
            let ids: Vec<&str> = rows.iter().map(|r| r.workflow_id.as_str()).collect();
            let store = self.engine.store();
            let (mut steps, mut compensations) =
                tokio::try_join!(store.steps_of(&ids), store.compensations_of(&ids))?;
            for row in rows {
                let workflow = workflow_to_proto(
                    row,
                    &steps.remove(&row.workflow_id).unwrap_or_default(),
                    &compensations.remove(&row.workflow_id).unwrap_or_default(),
                );
                bytes += prost::Message::encoded_len(&workflow);
                if bytes > MAX_PAGE_BYTES && !workflows.is_empty() {
                    return Ok(workflows);
                }
                workflows.push(workflow);
            }
            start += rows.len();
            chunk *= 2;
        }
        Ok(workflows)
    }

    /// The workflow, if the caller may see it: its submitter, an admin, or
    /// a principal who may decide one of its approvals.
    async fn visible(&self, caller: &Principal, workflow_id: &str) -> Result<WorkflowRow, Status> {
        if workflow_id.is_empty() {
            return Err(invalid("workflow_id", "is required"));
        }
        let row = self
            .engine
            .store()
            .get(workflow_id)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(workflow_id.to_owned()))?;
        let approver = || async {
            self.engine
                .store()
                .approvals_of(workflow_id)
                .await
                .is_ok_and(|all| {
                    all.iter()
                        .any(|a| a.approver_roles().iter().any(|r| caller.has_role(r)))
                })
        };
        if row.submitter != caller.to_string() && !caller.has_role("admin") && !approver().await {
            // Indistinguishable from a missing workflow: ids are not secrets,
            // but other people's workflows are.
            return Err(WorkflowError::NotFound(workflow_id.to_owned()).into());
        }
        Ok(row)
    }
}

/// A malformed request field.
pub(crate) fn invalid(field: &str, description: &str) -> Status {
    WorkflowError::InvalidRequest(vec![FieldViolation::new(field, description)]).into()
}

/// A problem with the workflow spec itself.
fn invalid_workflow(field: &str, description: &str) -> Status {
    WorkflowError::InvalidWorkflow(vec![FieldViolation::new(field, description)]).into()
}

/// The draft a request carries; text is parsed on the blocking pool.
async fn draft_of(
    spec: Option<pb::WorkflowSpec>,
    text: Option<String>,
) -> Result<WorkflowDraft, Status> {
    match (spec, text) {
        (Some(spec), _) => Ok(draft_from_proto(spec)),
        (None, Some(text)) if text.len() > MAX_SPEC_TEXT => {
            Err(invalid_workflow("spec_text", "is larger than 1 MiB"))
        }
        (None, Some(text)) => {
            airt_kit::limits::off_runtime(move || WorkflowDraft::from_text(&text))
                .await?
                .map_err(|v| WorkflowError::InvalidWorkflow(vec![v]).into())
        }
        (None, None) => Err(invalid_workflow("spec", "is required (spec or spec_text)")),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchWorkflowResponse, Status>> + Send>>;

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn submit_workflow(
        &self,
        request: Request<pb::SubmitWorkflowRequest>,
    ) -> Result<Response<pb::SubmitWorkflowResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        if req.request_id.len() > 256 {
            return Err(invalid("request_id", "is longer than 256 bytes"));
        }
        let draft = match req.source {
            Some(pb::submit_workflow_request::Source::Spec(spec)) => {
                draft_of(Some(spec), None).await?
            }
            Some(pb::submit_workflow_request::Source::SpecText(text)) => {
                draft_of(None, Some(text)).await?
            }
            None => draft_of(None, None).await?,
        };
        let request_id = (!req.request_id.is_empty()).then_some(req.request_id);
        let (row, submitted) = self
            .engine
            .submit(draft, caller.clone(), request_id)
            .await?;
        // A new workflow is answered as stored (nothing to read back); a
        // retry that matched an earlier one, as it stands now.
        let (workflow, created) = match submitted {
            Some(steps) => {
                tracing::info!(workflow_id = %row.workflow_id, name = %row.name, submitter = %caller, "workflow submitted");
                (workflow_to_proto(&row, &steps, &[]), true)
            }
            None => (self.snapshot(&row).await?, false),
        };
        Ok(Response::new(pb::SubmitWorkflowResponse {
            workflow: Some(workflow),
            created,
        }))
    }

    async fn plan_workflow(
        &self,
        request: Request<pb::PlanWorkflowRequest>,
    ) -> Result<Response<pb::PlanWorkflowResponse>, Status> {
        let caller = principal(&request)?;
        let draft = match request.into_inner().source {
            Some(pb::plan_workflow_request::Source::Spec(spec)) => {
                draft_of(Some(spec), None).await?
            }
            Some(pb::plan_workflow_request::Source::SpecText(text)) => {
                draft_of(None, Some(text)).await?
            }
            None => draft_of(None, None).await?,
        };
        let plans = self.engine.plan(&draft, caller).await?;
        let deny = airt_proto::policy::v1::Decision::Deny as i32;
        let admissible = plans
            .iter()
            .all(|p| p.decision.as_ref().is_none_or(|d| d.decision != deny));
        let steps = plans
            .into_iter()
            .map(|plan| {
                let spec = plan.capability.as_ref().and_then(|c| c.spec.as_ref());
                pb::StepPlan {
                    capability_id: spec.map(|s| s.id.clone()).unwrap_or_default(),
                    capability_found: spec.is_some(),
                    capability_version: spec
                        .and_then(|s| s.metadata.as_ref())
                        .map(|m| m.version.clone())
                        .unwrap_or_default(),
                    risk_level: spec.and_then(|s| s.risk.as_ref()).map_or(
                        if plan.decision.is_some() {
                            airt_proto::common::v1::RiskLevel::High as i32
                        } else {
                            0
                        },
                        |r| r.level,
                    ),
                    decision: plan.decision,
                    deferred_inputs: plan.deferred_inputs,
                    step_name: plan.step_name,
                }
            })
            .collect();
        Ok(Response::new(pb::PlanWorkflowResponse {
            steps,
            admissible,
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<pb::GetWorkflowRequest>,
    ) -> Result<Response<pb::GetWorkflowResponse>, Status> {
        let caller = principal(&request)?;
        let row = self
            .visible(&caller, &request.into_inner().workflow_id)
            .await?;
        Ok(Response::new(pb::GetWorkflowResponse {
            workflow: Some(self.snapshot(&row).await?),
        }))
    }

    async fn list_workflows(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let limit = match req.page_size {
            0 => 50,
            n if n < 0 => return Err(invalid("page_size", "must not be negative")),
            n => i64::from(n.min(500)),
        };
        let status = match req.status {
            0 => None,
            n => {
                let name = pb::WorkflowStatus::try_from(n)
                    .map_err(|_| invalid("status", "unknown status"))?
                    .as_str_name();
                Some(
                    WorkflowStatus::parse(name.trim_start_matches("WORKFLOW_STATUS_"))
                        .ok_or_else(|| invalid("status", "unknown status"))?,
                )
            }
        };
        // Admins see every workflow; everyone else their own.
        let submitter = if caller.has_role("admin") {
            String::new()
        } else {
            caller.to_string()
        };
        let filter = ListFilter {
            status,
            submitter,
            name: req.name,
            owner: req.owner,
        };
        // One row more than the page: whether another page follows.
        let mut rows = self
            .engine
            .store()
            .list(&filter, &req.page_token, limit + 1)
            .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        let workflows = self.page(&rows).await?;
        let next_page_token = match workflows.last() {
            Some(last) if workflows.len() < rows.len() || more => last.workflow_id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListWorkflowsResponse {
            workflows,
            next_page_token,
        }))
    }

    type WatchWorkflowStream = WatchStream;

    async fn watch_workflow(
        &self,
        request: Request<pb::WatchWorkflowRequest>,
    ) -> Result<Response<Self::WatchWorkflowStream>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        if req.after_sequence < 0 {
            return Err(invalid("after_sequence", "must not be negative"));
        }
        let row = self.visible(&caller, &req.workflow_id).await?;
        let slot = self.watchers.open(&caller.to_string())?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(watch::follow(
            self.clone(),
            row.workflow_id,
            req.after_sequence,
            slot,
            tx,
        ));
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn execute_action(
        &self,
        request: Request<pb::ExecuteActionRequest>,
    ) -> Result<Response<pb::ExecuteActionResponse>, Status> {
        let caller = principal(&request)?;
        let answer = action::execute(self, caller, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::GetActionResponse>, Status> {
        let caller = principal(&request)?;
        let answer = action::get(self, &caller, request.into_inner()).await?;
        Ok(Response::new(answer))
    }

    async fn cancel_workflow(
        &self,
        request: Request<pb::CancelWorkflowRequest>,
    ) -> Result<Response<pb::CancelWorkflowResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let row = self.visible(&caller, &req.workflow_id).await?;
        if row.submitter != caller.to_string() && !caller.has_role("admin") {
            return Err(WorkflowError::PermissionDenied {
                reason: "NOT_THE_SUBMITTER",
                message: format!(
                    "only the submitter or an admin may cancel workflow {}",
                    req.workflow_id
                ),
            }
            .into());
        }
        if req.reason.len() > 4096 {
            return Err(invalid("reason", "is longer than 4096 bytes"));
        }
        let reason = if req.reason.is_empty() {
            format!("by {caller}")
        } else {
            format!("{} (by {caller})", req.reason)
        };
        let row = self
            .engine
            .cancel(&req.workflow_id, &caller, req.rollback, &reason)
            .await?;
        tracing::info!(workflow_id = %row.workflow_id, %caller, rollback = req.rollback, "workflow cancelled");
        Ok(Response::new(pb::CancelWorkflowResponse {
            workflow: Some(self.snapshot(&row).await?),
        }))
    }
}
