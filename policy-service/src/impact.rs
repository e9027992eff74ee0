//! Replaying the decision log against a candidate set (`TestPolicySet`
//! with `impact_since`): the entries of the window are read in pages, in
//! order, and decided again off the async runtime.

use std::sync::Arc;

use airt_kit::audit::{AuditFilter, AuditLog};
use tonic::Status;

use crate::domain::CompiledPolicySet;
use crate::domain::impact::{ImpactReport, LoggedDecision, Replay};
use crate::error::PolicyError;

/// Entries replayed at most per call.
pub const MAX_REPLAY: usize = 1_000_000;
const PAGE: i64 = 1000;
/// Entries are appended in batches a little after they were decided, so
/// the search for the window's start begins this much earlier.
const SLACK_US: i64 = 5 * 60 * 1_000_000;

/// The replay, and whether the window held more than `max` entries.
pub async fn replay_log(
    audit: &AuditLog,
    candidate: Arc<CompiledPolicySet>,
    since_us: i64,
    max: usize,
) -> Result<(ImpactReport, bool), Status> {
    let mut after = first_sequence_near(audit, since_us.saturating_sub(SLACK_US)).await?;
    let filter = AuditFilter {
        action: "policy.decision".into(),
        ..AuditFilter::default()
    };
    let mut replay = Replay::default();
    let mut taken = 0usize;
    loop {
        let page = audit
            .list(&filter, after, PAGE)
            .await
            .map_err(PolicyError::from)?;
        let Some(last) = page.last() else {
            return Ok((replay.finish(), false));
        };
        after = last.sequence;
        let full = page.len() as i64 == PAGE;
        let entries: Vec<_> = page
            .into_iter()
            .filter(|event| event.occurred_at_us >= since_us)
            .collect();
        let room = max - taken;
        let truncated = entries.len() > room;
        taken += entries.len().min(room);
        let set = candidate.clone();
        replay = airt_kit::limits::off_runtime(move || {
            for event in entries.into_iter().take(room) {
                let details = serde_json::from_str(&event.details).unwrap_or_default();
                if let Some(logged) = LoggedDecision::from_entry(
                    event.sequence,
                    event.occurred_at_us,
                    &event.resource_id,
                    &details,
                ) {
                    replay.add(&set, &logged);
                }
            }
            replay
        })
        .await?;
        if truncated || (taken == max && full) {
            return Ok((replay.finish(), true));
        }
        if !full {
            return Ok((replay.finish(), false));
        }
    }
}

/// The sequence after which the first event at or after `at_us` lies
/// (binary search: events are appended in time order, give or take a
/// batch).
async fn first_sequence_near(audit: &AuditLog, at_us: i64) -> Result<i64, Status> {
    let everything = AuditFilter::default();
    let (mut low, mut high) = (0i64, audit.length().await.map_err(PolicyError::from)?);
    while low < high {
        let middle = low + (high - low) / 2;
        let event = audit
            .list(&everything, middle, 1)
            .await
            .map_err(PolicyError::from)?;
        match event.first() {
            Some(event) if event.occurred_at_us < at_us => low = middle + 1,
            _ => high = middle,
        }
    }
    Ok(low)
}
