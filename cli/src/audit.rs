//! `airt audit list|verify|export`.

use std::io::Write as _;
use std::process::ExitCode;

use airt_proto::audit::v1 as pb;
use airt_proto::audit::v1::audit_service_client::AuditServiceClient;

use crate::client::{ConnectionArgs, ServiceName, describe};

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List events (oldest first).
    List {
        #[arg(long, value_enum)]
        service: ServiceName,
        #[arg(long, default_value = "")]
        action: String,
        #[arg(long, default_value = "")]
        resource_type: String,
        #[arg(long, default_value = "")]
        resource_id: String,
        /// Stop after this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Recompute the hash chain; exit code 2 if it is broken.
    Verify {
        #[arg(long, value_enum)]
        service: ServiceName,
    },
    /// Print every event as JSON Lines (the canonical, hashed form).
    Export {
        #[arg(long, value_enum)]
        service: ServiceName,
        /// Only events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

pub async fn run(args: &ConnectionArgs, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::List {
            service,
            action,
            resource_type,
            resource_id,
            limit,
        } => {
            let mut client = AuditServiceClient::new(args.authenticated(service)?);
            let mut listing = crate::output::Listing::new(args.output);
            let mut page_token = String::new();
            loop {
                let page = client
                    .list_audit_events(pb::ListAuditEventsRequest {
                        page_size: 500,
                        page_token,
                        action: action.clone(),
                        resource_type: resource_type.clone(),
                        resource_id: resource_id.clone(),
                        actor: String::new(),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!(describe(&s)))?
                    .into_inner();
                for event in &page.events {
                    if listing.len() == limit {
                        listing.finish()?;
                        return Ok(ExitCode::SUCCESS);
                    }
                    listing.push(event, |event| {
                        let time = event.occur_time.map(|t| t.to_string()).unwrap_or_default();
                        out!(
                            "{:>6}  {time}  {:<22} {:<28} {}:{}",
                            event.sequence,
                            event.actor,
                            event.action,
                            event.resource_type,
                            event.resource_id
                        );
                    })?;
                }
                if page.next_page_token.is_empty() {
                    listing.finish()?;
                    return Ok(ExitCode::SUCCESS);
                }
                page_token = page.next_page_token;
            }
        }
        AuditCommand::Verify { service } => {
            let mut client = AuditServiceClient::new(args.authenticated(service)?);
            let report = client
                .verify_audit_chain(pb::VerifyAuditChainRequest {})
                .await
                .map_err(|s| anyhow::anyhow!(describe(&s)))?
                .into_inner();
            if args.output != crate::output::Format::Text {
                crate::output::print(args.output, &crate::output::to_json(&report)?)?;
                return Ok(if report.intact {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(2)
                });
            }
            if report.intact {
                out!(
                    "intact: {} events, head {}",
                    report.events_checked,
                    report.head_hash
                );
                Ok(ExitCode::SUCCESS)
            } else {
                out!(
                    "BROKEN at sequence {}: {} ({} events verified before it)",
                    report.first_broken_sequence,
                    report.problem,
                    report.events_checked
                );
                Ok(ExitCode::from(2))
            }
        }
        AuditCommand::Export { service, after } => {
            let mut client = AuditServiceClient::new(args.authenticated(service)?);
            let mut stream = client
                .export_audit_events(pb::ExportAuditEventsRequest {
                    after_sequence: after,
                })
                .await
                .map_err(|s| anyhow::anyhow!(describe(&s)))?
                .into_inner();
            let mut out = std::io::stdout().lock();
            while let Some(item) = stream
                .message()
                .await
                .map_err(|s| anyhow::anyhow!(describe(&s)))?
            {
                writeln!(out, "{}", item.json_line)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
