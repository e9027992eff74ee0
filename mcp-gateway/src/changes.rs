//! Registry changes, followed with `WatchCapabilities` under the gateway's
//! own credentials: every change after the backlog bumps a counter that MCP
//! sessions turn into `notifications/tools/list_changed`, and drops the
//! cached listing ([`crate::catalog`]). The stream is reopened from the last
//! revision seen after any error, or after three heartbeat intervals of
//! silence (a stalled connection reports nothing by itself), with backoff;
//! the cache is trusted only from the backlog's end until the stream ends.

use std::sync::Arc;
use std::time::Duration;

/// The heartbeat interval asked for; the stream is given up after three.
const HEARTBEAT: Duration = Duration::from_secs(5);

use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::watch_capabilities_response::Event;
use tokio_util::sync::CancellationToken;

use crate::Gateway;

/// Follows the registry until `stop`; tells sessions of each change.
pub async fn follow(gateway: Arc<Gateway>, stop: CancellationToken) {
    if gateway.own_credentials.is_empty() {
        tracing::warn!(
            "no --service-token: registry changes are not followed and no tools/list_changed is sent"
        );
        return;
    }
    let mut since = 0;
    let mut caught_up = false;
    let mut backoff =
        airt_kit::backoff::Backoff::doubling(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let mut request = tonic::Request::new(registry::WatchCapabilitiesRequest {
            since_revision: since,
            heartbeat_interval: Some(prost_types::Duration {
                seconds: HEARTBEAT.as_secs() as i64,
                nanos: 0,
            }),
            ..Default::default()
        });
        gateway.own_credentials.apply(&mut request);
        let mut client = gateway.registry.clone();
        let opened = tokio::select! {
            () = stop.cancelled() => return,
            opened = client.watch_capabilities(request) => opened,
        };
        match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    let next = tokio::select! {
                        () = stop.cancelled() => return,
                        next = tokio::time::timeout(3 * HEARTBEAT, stream.message()) => next,
                    };
                    let Ok(Ok(Some(message))) = next else { break };
                    backoff = airt_kit::backoff::Backoff::doubling(
                        Duration::from_millis(200),
                        Duration::from_secs(30),
                    );
                    match message.event {
                        Some(Event::Change(change)) => {
                            since = since.max(change.registry_revision);
                            if caught_up {
                                changed(&gateway, since).await;
                            }
                        }
                        Some(Event::CaughtUp(mark)) => {
                            since = since.max(mark.registry_revision);
                            caught_up = true;
                            gateway.catalog.set_live(true);
                        }
                        Some(Event::Heartbeat(_)) | None => {}
                    }
                }
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), error = status.message(), "cannot watch the registry; tools/list_changed is not sent until it can");
            }
        }
        gateway.catalog.set_live(false);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}

async fn changed(gateway: &Gateway, revision: i64) {
    tracing::debug!(revision, "registry changed; tools/list_changed");
    gateway.catalog.invalidate();
    gateway.changes.send_replace(revision);
    gateway.legacy_peers.notify().await;
}
