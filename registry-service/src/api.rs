//! `airt.registry.v1.RegistryService`: decode, check access, call the domain
//! and the store, encode.

use std::pin::Pin;
use std::time::Duration;

use airt_kit::Principal;
use airt_kit::auth::{principal, require_any_role};
use airt_kit::status::FieldViolation;
use airt_kit::vocabulary::RiskLevel;
use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_server::RegistryService;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::convert::{capability_to_proto, draft_from_proto, lifecycle_from_proto, spec_to_proto};
use crate::domain::validation::is_capability_id;
use crate::domain::{SpecDraft, validate};
use crate::error::RegistryError;
use crate::metrics::RegistryMetrics;
use crate::store::{ChangeType, ListFilter, Registered, RegistryStore};
use tokio_util::sync::CancellationToken;

/// Roles allowed to change the registry.
pub const WRITER_ROLES: &[&str] = &["admin", "registrar"];
/// The only principal that may register `builtin:` handlers: the workflow
/// service, which publishes the specs embedded in it. Anyone else could
/// relabel a built-in (program execution as a LOW-risk READ) or point a new
/// id at one.
pub const BUILTIN_PUBLISHER: &str = "service:workflow";
const DEFAULT_PAGE_SIZE: i32 = 100;
const MAX_PAGE_SIZE: i32 = 1000;
const MAX_BATCH: usize = 1000;
const MAX_SPEC_TEXT: usize = 256 * 1024;
/// How often a watcher looks for changes committed by other replicas.
const WATCH_POLL: Duration = Duration::from_secs(1);
const WATCH_PAGE: i64 = 500;
/// Heartbeat interval of a watch stream whose request leaves it unset.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct RegistryApi {
    store: RegistryStore,
    shutdown: CancellationToken,
    metrics: RegistryMetrics,
}

impl RegistryApi {
    /// `shutdown` turning true ends every open WatchCapabilities stream.
    pub fn new(
        store: RegistryStore,
        shutdown: CancellationToken,
        metrics: RegistryMetrics,
    ) -> Self {
        Self {
            store,
            shutdown,
            metrics,
        }
    }
}

fn invalid(field: &str, description: impl Into<String>) -> Status {
    RegistryError::InvalidRequest(FieldViolation::new(field, description)).into()
}

fn page_size(requested: i32) -> Result<i64, Status> {
    match requested {
        0 => Ok(i64::from(DEFAULT_PAGE_SIZE)),
        n if n < 0 => Err(invalid("page_size", "must not be negative")),
        n => Ok(i64::from(n.min(MAX_PAGE_SIZE))),
    }
}

fn check_id(field: &str, id: &str) -> Result<(), Status> {
    if is_capability_id(id) {
        Ok(())
    } else {
        Err(invalid(field, format!("{id:?} is not a capability id")))
    }
}

fn writer(request: &Request<impl Sized>) -> Result<Principal, Status> {
    let caller = principal(request)?;
    require_any_role(&caller, WRITER_ROLES)?;
    Ok(caller)
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchCapabilitiesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RegistryService for RegistryApi {
    async fn register_capability(
        &self,
        request: Request<pb::RegisterCapabilityRequest>,
    ) -> Result<Response<pb::RegisterCapabilityResponse>, Status> {
        let caller = writer(&request)?;
        let req = request.into_inner();
        let draft = match req.source {
            Some(pb::register_capability_request::Source::Spec(spec)) => draft_from_proto(spec),
            Some(pb::register_capability_request::Source::SpecText(text)) => {
                if text.len() > MAX_SPEC_TEXT {
                    return Err(invalid(
                        "spec_text",
                        format!("is larger than {MAX_SPEC_TEXT} bytes"),
                    ));
                }
                airt_kit::limits::off_runtime(move || SpecDraft::from_text(&text))
                    .await?
                    .map_err(|e| invalid(&e.field, e.message))?
            }
            None => return Err(invalid("spec", "is required (spec or spec_text)")),
        };
        let (spec, lifecycle) = validate(&draft).map_err(RegistryError::Invalid)?;
        if spec.handler.starts_with("builtin:") && caller.to_string() != BUILTIN_PUBLISHER {
            return Err(RegistryError::BuiltinReserved(spec.handler.clone()).into());
        }
        if req.validate_only {
            return Ok(Response::new(pb::RegisterCapabilityResponse {
                capability: Some(pb::Capability {
                    spec: Some(spec_to_proto(&spec, lifecycle)),
                    content_digest: spec.content_digest(),
                    ..Default::default()
                }),
                created: false,
            }));
        }
        let (stored, created) = match self
            .store
            .register(&spec, lifecycle, &caller, &req.request_id)
            .await?
        {
            Registered::Created(stored) => (stored, true),
            Registered::Unchanged(stored) => (stored, false),
        };
        if created {
            tracing::info!(capability = %spec.id, version = %spec.metadata.version, actor = %caller, "capability registered");
        }
        Ok(Response::new(pb::RegisterCapabilityResponse {
            capability: Some(capability_to_proto(&stored)),
            created,
        }))
    }

    async fn get_capability(
        &self,
        request: Request<pb::GetCapabilityRequest>,
    ) -> Result<Response<pb::GetCapabilityResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check_id("capability_id", &req.capability_id)?;
        let version = (!req.version.is_empty()).then_some(req.version.as_str());
        let stored = self
            .store
            .get(&req.capability_id, version)
            .await?
            .ok_or_else(|| {
                RegistryError::NotFound(match version {
                    Some(v) => format!("{} version {v}", req.capability_id),
                    None => req.capability_id.clone(),
                })
            })?;
        Ok(Response::new(pb::GetCapabilityResponse {
            capability: Some(capability_to_proto(&stored)),
        }))
    }

    async fn batch_get_capabilities(
        &self,
        request: Request<pb::BatchGetCapabilitiesRequest>,
    ) -> Result<Response<pb::BatchGetCapabilitiesResponse>, Status> {
        principal(&request)?;
        let ids = request.into_inner().capability_ids;
        if ids.len() > MAX_BATCH {
            return Err(invalid(
                "capability_ids",
                format!("at most {MAX_BATCH} ids per call"),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let mut response = pb::BatchGetCapabilitiesResponse::default();
        for (i, id) in ids.iter().enumerate() {
            check_id(&format!("capability_ids[{i}]"), id)?;
            if !seen.insert(id.as_str()) {
                continue;
            }
            match self.store.get(id, None).await? {
                Some(stored) => response.capabilities.push(capability_to_proto(&stored)),
                None => response.missing_ids.push(id.clone()),
            }
        }
        Ok(Response::new(response))
    }

    async fn list_capabilities(
        &self,
        request: Request<pb::ListCapabilitiesRequest>,
    ) -> Result<Response<pb::ListCapabilitiesResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        let limit = page_size(req.page_size)?;
        // The token is the last id of the previous page (keyset pagination):
        // rows inserted meanwhile never shift later pages.
        if !req.page_token.is_empty() {
            check_id("page_token", &req.page_token)?;
        }
        let risk_level = match req.risk_level {
            0 => None,
            n => Some(
                RiskLevel::from_proto(n)
                    .ok_or_else(|| invalid("risk_level", "unknown risk level"))?,
            ),
        };
        let lifecycle = match req.lifecycle {
            0 => None,
            n => Some(
                lifecycle_from_proto(n).ok_or_else(|| invalid("lifecycle", "unknown lifecycle"))?,
            ),
        };
        let filter = ListFilter {
            id_prefix: req.id_prefix,
            risk_level,
            tag: req.tag,
            lifecycle,
        };
        let page = self.store.list(&filter, &req.page_token, limit).await?;
        let next_page_token = match page.last() {
            Some(last) if page.len() as i64 == limit => last.spec.id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListCapabilitiesResponse {
            capabilities: page.iter().map(capability_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_capability_versions(
        &self,
        request: Request<pb::ListCapabilityVersionsRequest>,
    ) -> Result<Response<pb::ListCapabilityVersionsResponse>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        check_id("capability_id", &req.capability_id)?;
        let limit = page_size(req.page_size)? as usize;
        let offset = match req.page_token.as_str() {
            "" => 0,
            token => token
                .parse::<usize>()
                .map_err(|_| invalid("page_token", "malformed page token"))?,
        };
        let versions = self.store.versions(&req.capability_id).await?;
        if versions.is_empty() {
            return Err(RegistryError::NotFound(req.capability_id).into());
        }
        let page: Vec<_> = versions.iter().skip(offset).take(limit).collect();
        let next = offset + page.len();
        Ok(Response::new(pb::ListCapabilityVersionsResponse {
            capabilities: page.into_iter().map(capability_to_proto).collect(),
            next_page_token: if next < versions.len() {
                next.to_string()
            } else {
                String::new()
            },
        }))
    }

    async fn set_capability_lifecycle(
        &self,
        request: Request<pb::SetCapabilityLifecycleRequest>,
    ) -> Result<Response<pb::SetCapabilityLifecycleResponse>, Status> {
        let caller = writer(&request)?;
        let req = request.into_inner();
        check_id("capability_id", &req.capability_id)?;
        let lifecycle = lifecycle_from_proto(req.lifecycle)
            .ok_or_else(|| invalid("lifecycle", "is required: ACTIVE, DEPRECATED or FROZEN"))?;
        if req.reason.trim().is_empty() {
            return Err(invalid(
                "reason",
                "is required: say why the lifecycle changes",
            ));
        }
        if req.reason.len() > 4096 {
            return Err(invalid("reason", "is longer than 4096 bytes"));
        }
        let version = (!req.version.is_empty()).then_some(req.version.as_str());
        let stored = self
            .store
            .set_lifecycle(
                &req.capability_id,
                version,
                lifecycle,
                &req.reason,
                &caller,
                &req.request_id,
            )
            .await?;
        tracing::info!(capability = %req.capability_id, version = %stored.spec.metadata.version, %lifecycle, actor = %caller, "lifecycle set");
        Ok(Response::new(pb::SetCapabilityLifecycleResponse {
            capability: Some(capability_to_proto(&stored)),
        }))
    }

    type WatchCapabilitiesStream = WatchStream;

    async fn watch_capabilities(
        &self,
        request: Request<pb::WatchCapabilitiesRequest>,
    ) -> Result<Response<Self::WatchCapabilitiesStream>, Status> {
        principal(&request)?;
        let req = request.into_inner();
        if req.since_revision < 0 {
            return Err(invalid("since_revision", "must not be negative"));
        }
        let heartbeat = heartbeat_interval(req.heartbeat_interval)?;
        let (tx, rx) = mpsc::channel(64);
        let watching = self.metrics.watching();
        let watch = watch_loop(
            self.store.clone(),
            self.shutdown.clone(),
            Watch {
                cursor: req.since_revision,
                id_prefix: req.id_prefix,
                heartbeat,
            },
            tx,
        );
        tokio::spawn(async move {
            watch.await;
            drop(watching);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

type WatchSender = mpsc::Sender<Result<pb::WatchCapabilitiesResponse, Status>>;

/// What one WatchCapabilities stream follows.
struct Watch {
    /// The last registry revision sent (or asked to start after).
    cursor: i64,
    id_prefix: String,
    heartbeat: Duration,
}

/// The requested heartbeat interval: unset or zero means the default.
fn heartbeat_interval(requested: Option<prost_types::Duration>) -> Result<Duration, Status> {
    let Some(requested) = requested.filter(|d| d.seconds != 0 || d.nanos != 0) else {
        return Ok(DEFAULT_HEARTBEAT);
    };
    Duration::try_from(requested)
        .ok()
        .filter(|d| (MIN_HEARTBEAT..=MAX_HEARTBEAT).contains(d))
        .ok_or_else(|| invalid("heartbeat_interval", "must be between 100ms and 1h"))
}

/// Replays the change feed from `cursor`, announces CaughtUp once, then
/// follows live changes: woken by commits in this process, and polling for
/// commits by other replicas; a Heartbeat goes out whenever the stream was
/// quiet for the requested interval. Ends when the client goes away or the
/// server shuts down.
async fn watch_loop(
    store: RegistryStore,
    shutdown: CancellationToken,
    watch: Watch,
    tx: WatchSender,
) {
    use pb::watch_capabilities_response::Event;
    let Watch {
        mut cursor,
        id_prefix,
        heartbeat,
    } = watch;
    let mut local_commits = store.subscribe();
    let mut caught_up = false;
    let mut last_sent = tokio::time::Instant::now();
    loop {
        // Every change up to the head read here is committed, so after the
        // fetch below the cursor may move to the head even if the prefix
        // filtered everything out.
        let head = match store.head_revision().await {
            Ok(head) => head,
            Err(error) => {
                let _ = tx.send(Err(error.into())).await;
                return;
            }
        };
        loop {
            let changes = match store.changes_since(cursor, &id_prefix, WATCH_PAGE).await {
                Ok(changes) => changes,
                Err(error) => {
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
            };
            let exhausted = (changes.len() as i64) < WATCH_PAGE;
            for change in changes {
                cursor = change.registry_revision;
                let event = Event::Change(pb::CapabilityChange {
                    registry_revision: change.registry_revision,
                    change_type: match change.change_type {
                        ChangeType::Registered => pb::ChangeType::Registered,
                        ChangeType::LifecycleChanged => pb::ChangeType::LifecycleChanged,
                    } as i32,
                    capability: Some(capability_to_proto(&change.capability)),
                });
                if tx
                    .send(Ok(pb::WatchCapabilitiesResponse { event: Some(event) }))
                    .await
                    .is_err()
                {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
            if exhausted {
                break;
            }
        }
        cursor = cursor.max(head);
        let event = if !caught_up {
            caught_up = true;
            Some(Event::CaughtUp(pb::CaughtUp {
                registry_revision: cursor,
            }))
        } else if last_sent.elapsed() >= heartbeat {
            Some(Event::Heartbeat(pb::Heartbeat {
                registry_revision: cursor,
            }))
        } else {
            None
        };
        if let Some(event) = event {
            if tx
                .send(Ok(pb::WatchCapabilitiesResponse { event: Some(event) }))
                .await
                .is_err()
            {
                return;
            }
            last_sent = tokio::time::Instant::now();
        }
        let next_heartbeat = heartbeat.saturating_sub(last_sent.elapsed());
        tokio::select! {
            _ = local_commits.changed() => {}
            () = tokio::time::sleep(WATCH_POLL.min(next_heartbeat)) => {}
            () = tx.closed() => return,
            () = shutdown.cancelled() => return,
        }
    }
}
