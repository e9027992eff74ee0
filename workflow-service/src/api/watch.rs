//! One WatchWorkflow stream: a snapshot of the workflow with every event
//! since the previous message, until the workflow ends, the caller goes
//! away or the service stops.

use airt_proto::workflow::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::WorkflowApi;
use super::watchers::WatchSlot;
use crate::domain::WorkflowStatus;
use crate::store::EventRow;

/// The most events read (and sent in one message) at a time; a longer
/// backlog follows in the next messages at once.
const BATCH: i64 = 10_000;

type Sender = mpsc::Sender<Result<pb::WatchWorkflowResponse, Status>>;

/// Streams workflow `id` to `tx`: the first message at once (the snapshot
/// and every event after `after_sequence`, even if there is none), then one
/// message per change. Events come in order, each exactly once.
pub(super) async fn follow(
    api: WorkflowApi,
    id: String,
    after_sequence: i64,
    slot: WatchSlot,
    tx: Sender,
) {
    // Held while the stream is open.
    let _slot = slot;
    let shutdown = api.shutdown.clone();
    let changes = api.engine.store().subscribe(&id);
    let mut sent = after_sequence;
    let mut first = true;
    loop {
        // Armed before the read: a commit after it wakes the wait below.
        let mut changed = std::pin::pin!(changes.notified());
        changed.as_mut().enable();
        let row = match api.engine.store().get(&id).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(error) => {
                let _ = tx.send(Err(error.into())).await;
                return;
            }
        };
        let mut more = false;
        if first || row.event_seq > sent {
            first = false;
            let events = match api.engine.store().events(&id, sent, BATCH).await {
                Ok(events) => events,
                Err(error) => {
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
            };
            more = events.len() as i64 == BATCH;
            // Only the events the snapshot below reflects: later ones
            // (committed since `row` was read) come with the next
            // snapshot, so the last status is never skipped.
            let events: Vec<pb::WorkflowEvent> = events
                .into_iter()
                .filter(|e| e.seq <= row.event_seq)
                .map(event_to_proto)
                .collect();
            sent = events.last().map_or(sent, |e| e.sequence);
            let snapshot = match api.snapshot(&row).await {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
            };
            let message = pb::WatchWorkflowResponse {
                workflow: Some(snapshot),
                events,
            };
            if tx.send(Ok(message)).await.is_err() {
                return;
            }
            if !more && sent >= row.event_seq && row.status().is_ok_and(WorkflowStatus::is_terminal)
            {
                return;
            }
        }
        if more {
            continue;
        }
        tokio::select! {
            () = &mut changed => {}
            () = tokio::time::sleep(api.watch_poll) => {}
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}

fn event_to_proto(event: EventRow) -> pb::WorkflowEvent {
    pb::WorkflowEvent {
        sequence: event.seq,
        occur_time: Some(airt_kit::clock::timestamp_from_micros(event.occurred_at_us)),
        kind: event.kind,
        step_name: event.step_name,
        detail: serde_json::from_str::<serde_json::Value>(&event.detail)
            .ok()
            .and_then(|d| d.as_object().map(airt_kit::json::to_proto_struct)),
    }
}
