//! `airt.workflow.v1.ApprovalService`: the approver's inbox and decisions.
//! An approval is visible (List, Get) to the principals who may decide it
//! (one of its approver roles), to the submitter it was requested for, and
//! to admins; deciding needs an approver role (PERMISSION_DENIED otherwise)
//! and is refused to the submitter.

use airt_kit::Principal;
use airt_kit::auth::principal;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_server::ApprovalService;
use tonic::{Request, Response, Status};

use super::invalid;
use crate::convert::approval_to_proto;
use crate::domain::ApprovalStatus;
use crate::domain::approval::Verdict;
use crate::engine::Engine;
use crate::error::WorkflowError;
use crate::store::{ApprovalFilter, ApprovalRow};

/// Longest comment kept with a decision.
const MAX_COMMENT: usize = 4096;
/// Approvals a ListApprovals call reads at most, visible to the caller or not.
const MAX_SCANNED: usize = 1000;

#[derive(Debug, Clone)]
pub struct ApprovalApi {
    engine: Engine,
}

impl ApprovalApi {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    async fn to_proto(&self, row: &ApprovalRow) -> Result<pb::Approval, Status> {
        let deliveries = self.engine.store().deliveries_of(&row.approval_id).await?;
        Ok(approval_to_proto(row, &deliveries))
    }

    /// Up to `limit` approvals the caller may see, oldest first, after
    /// `after`, and the token of the page that follows (empty: none).
    /// Rows the caller may not see are passed over, at most [`MAX_SCANNED`]
    /// per call: a caller who may see few approvals gets a short (even
    /// empty) page and a token to go on from, rather than one call reading
    /// the whole table. A full page names a next page only if another
    /// visible row follows.
    async fn visible_page(
        &self,
        caller: &Principal,
        filter: &ApprovalFilter,
        mut after: String,
        limit: usize,
    ) -> Result<(Vec<ApprovalRow>, String), Status> {
        let batch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let mut rows: Vec<ApprovalRow> = Vec::new();
        let mut scanned = 0;
        loop {
            let found = self
                .engine
                .store()
                .list_approvals(filter, &after, batch)
                .await?;
            let exhausted = (found.len() as i64) < batch;
            for row in found {
                after.clone_from(&row.approval_id);
                scanned += 1;
                if !may_see(caller, &row) {
                    continue;
                }
                if rows.len() == limit {
                    let last = rows.last().map(|r| r.approval_id.clone());
                    return Ok((rows, last.unwrap_or_default()));
                }
                rows.push(row);
            }
            if exhausted {
                return Ok((rows, String::new()));
            }
            if scanned >= MAX_SCANNED {
                return Ok((rows, after));
            }
        }
    }

    /// The page's messages, their webhook deliveries read in one
    /// statement. It ends early rather than outgrow what clients decode
    /// (4 MiB by default), then naming the last approval it holds.
    async fn page(
        &self,
        rows: Vec<ApprovalRow>,
        mut next_page_token: String,
    ) -> Result<pb::ListApprovalsResponse, Status> {
        let ids: Vec<&str> = rows.iter().map(|r| r.approval_id.as_str()).collect();
        let mut deliveries = self.engine.store().deliveries_of_many(&ids).await?;
        let mut approvals = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for row in &rows {
            let approval = approval_to_proto(
                row,
                &deliveries.remove(&row.approval_id).unwrap_or_default(),
            );
            bytes += prost::Message::encoded_len(&approval);
            if bytes > super::MAX_PAGE_BYTES && !approvals.is_empty() {
                next_page_token = rows[approvals.len() - 1].approval_id.clone();
                break;
            }
            approvals.push(approval);
        }
        Ok(pb::ListApprovalsResponse {
            approvals,
            next_page_token,
        })
    }

    async fn visible(&self, caller: &Principal, approval_id: &str) -> Result<ApprovalRow, Status> {
        if approval_id.is_empty() {
            return Err(invalid("approval_id", "is required"));
        }
        let row = self
            .engine
            .store()
            .approval(approval_id)
            .await?
            .filter(|row| may_see(caller, row))
            .ok_or_else(|| WorkflowError::ApprovalNotFound(approval_id.to_owned()))?;
        Ok(row)
    }

    async fn decide(
        &self,
        caller: &Principal,
        approval_id: &str,
        comment: &str,
        verdict: Verdict,
    ) -> Result<pb::Approval, Status> {
        if comment.len() > MAX_COMMENT {
            return Err(invalid("comment", "is longer than 4096 bytes"));
        }
        if approval_id.is_empty() {
            return Err(invalid("approval_id", "is required"));
        }
        // A caller without an approver role gets PERMISSION_DENIED (the
        // engine checks who may decide before anything else).
        let row = self
            .engine
            .decide(approval_id, caller, verdict, comment)
            .await?;
        self.to_proto(&row).await
    }
}

/// An approver (one of its roles), the submitter it was requested for, or an admin.
pub(crate) fn may_see(caller: &Principal, row: &ApprovalRow) -> bool {
    caller.has_role("admin")
        || row.requested_for == caller.to_string()
        || row.approver_roles().iter().any(|r| caller.has_role(r))
}

fn status_filter(status: i32) -> Result<Option<ApprovalStatus>, Status> {
    if status == 0 {
        return Ok(None);
    }
    let name = pb::ApprovalStatus::try_from(status)
        .map_err(|_| invalid("status", "unknown status"))?
        .as_str_name();
    ApprovalStatus::parse(name.trim_start_matches("APPROVAL_STATUS_"))
        .map(Some)
        .ok_or_else(|| invalid("status", "unknown status"))
}

#[tonic::async_trait]
impl ApprovalService for ApprovalApi {
    async fn list_approvals(
        &self,
        request: Request<pb::ListApprovalsRequest>,
    ) -> Result<Response<pb::ListApprovalsResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let limit = match req.page_size {
            0 => 50,
            n if n < 0 => return Err(invalid("page_size", "must not be negative")),
            n => n.min(500) as usize,
        };
        let filter = ApprovalFilter {
            status: status_filter(req.status)?,
            workflow_id: req.workflow_id,
        };
        let (rows, next_page_token) = self
            .visible_page(&caller, &filter, req.page_token, limit)
            .await?;
        let approvals = self.page(rows, next_page_token).await?;
        Ok(Response::new(approvals))
    }

    async fn get_approval(
        &self,
        request: Request<pb::GetApprovalRequest>,
    ) -> Result<Response<pb::GetApprovalResponse>, Status> {
        let caller = principal(&request)?;
        let row = self
            .visible(&caller, &request.into_inner().approval_id)
            .await?;
        Ok(Response::new(pb::GetApprovalResponse {
            approval: Some(self.to_proto(&row).await?),
        }))
    }

    async fn approve_step(
        &self,
        request: Request<pb::ApproveStepRequest>,
    ) -> Result<Response<pb::ApproveStepResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let approval = self
            .decide(&caller, &req.approval_id, &req.comment, Verdict::Approve)
            .await?;
        Ok(Response::new(pb::ApproveStepResponse {
            approval: Some(approval),
        }))
    }

    async fn reject_step(
        &self,
        request: Request<pb::RejectStepRequest>,
    ) -> Result<Response<pb::RejectStepResponse>, Status> {
        let caller = principal(&request)?;
        let req = request.into_inner();
        let approval = self
            .decide(&caller, &req.approval_id, &req.comment, Verdict::Reject)
            .await?;
        Ok(Response::new(pb::RejectStepResponse {
            approval: Some(approval),
        }))
    }
}
