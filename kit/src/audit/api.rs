//! `airt.audit.v1.AuditService`, the same in every service.

use std::pin::Pin;

use airt_proto::audit::v1 as pb;
use airt_proto::audit::v1::audit_service_server::AuditService;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::{AUDIT_READER_ROLES, AuditFilter, AuditLog};
use crate::auth::{principal, require_any_role};
use crate::status;

const DEFAULT_PAGE_SIZE: i32 = 100;
const MAX_PAGE_SIZE: i32 = 1000;
const EXPORT_PAGE: i64 = 500;

/// Serves one service's [`AuditLog`]. Reading it needs role `admin` or `auditor`.
#[derive(Debug, Clone)]
pub struct AuditApi {
    log: AuditLog,
}

impl AuditApi {
    pub fn new(log: AuditLog) -> Self {
        Self { log }
    }
}

fn parse_page_token(token: &str) -> Result<i64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            status::invalid_argument(
                "INVALID_PAGE_TOKEN",
                "page_token is not a token returned by this service",
                [status::FieldViolation::new(
                    "page_token",
                    "malformed page token",
                )],
            )
        })
}

fn db_error(error: sqlx::Error) -> Status {
    status::storage(&error)
}

type ExportStream =
    Pin<Box<dyn Stream<Item = Result<pb::ExportAuditEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        require_any_role(&principal(&request)?, AUDIT_READER_ROLES)?;
        let req = request.into_inner();
        let page_size = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                return Err(status::invalid_argument(
                    "INVALID_PAGE_SIZE",
                    "page_size must not be negative",
                    [status::FieldViolation::new("page_size", "must be >= 0")],
                ));
            }
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = parse_page_token(&req.page_token)?;
        let filter = AuditFilter {
            action: req.action,
            resource_type: req.resource_type,
            resource_id: req.resource_id,
            actor: req.actor,
        };
        let events = self
            .log
            .list(&filter, after, i64::from(page_size))
            .await
            .map_err(db_error)?;
        let next_page_token = match events.last() {
            Some(last) if events.len() == page_size as usize => last.sequence.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: events.iter().map(|e| e.to_proto()).collect(),
            next_page_token,
        }))
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Result<Response<pb::VerifyAuditChainResponse>, Status> {
        require_any_role(&principal(&request)?, AUDIT_READER_ROLES)?;
        let report = self.log.verify().await.map_err(db_error)?;
        let (first_broken_sequence, problem) = report
            .broken
            .as_ref()
            .map_or((0, String::new()), |b| (b.sequence, b.problem.clone()));
        Ok(Response::new(pb::VerifyAuditChainResponse {
            intact: report.intact(),
            events_checked: report.events_checked,
            first_broken_sequence,
            problem,
            head_hash: report.head_hash,
        }))
    }

    type ExportAuditEventsStream = ExportStream;

    async fn export_audit_events(
        &self,
        request: Request<pb::ExportAuditEventsRequest>,
    ) -> Result<Response<Self::ExportAuditEventsStream>, Status> {
        require_any_role(&principal(&request)?, AUDIT_READER_ROLES)?;
        let after = request.into_inner().after_sequence;
        if after < 0 {
            return Err(status::error(
                Code::InvalidArgument,
                "INVALID_SEQUENCE",
                "after_sequence must not be negative",
            ));
        }
        let log = self.log.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut cursor = after;
            loop {
                let page = match log.list(&AuditFilter::default(), cursor, EXPORT_PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = tx.send(Err(db_error(error))).await;
                        return;
                    }
                };
                let done = (page.len() as i64) < EXPORT_PAGE;
                for event in page {
                    cursor = event.sequence;
                    let item = pb::ExportAuditEventsResponse {
                        json_line: event.json_line(),
                        event: Some(event.to_proto()),
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        return; // the client went away
                    }
                }
                if done {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
