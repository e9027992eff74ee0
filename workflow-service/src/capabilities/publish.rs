//! Publishing the built-in specs to the registry, as role `registrar`.

use std::time::Duration;

use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::Catalogue;

/// How the workflow service identifies itself to the other services.
#[derive(Debug, Clone)]
pub enum ServiceCredentials {
    /// Development mode: `x-airt-principal` / `x-airt-roles`.
    Development { principal: String, roles: String },
    /// A bearer token issued for `service:workflow`.
    Bearer(airt_kit::config::Secret),
    /// Nothing: calls will be refused (and publishing retried).
    None,
}

impl ServiceCredentials {
    /// Development-mode identity of the workflow service.
    pub fn development() -> Self {
        Self::Development {
            principal: "service:workflow".into(),
            roles: "registrar".into(),
        }
    }

    pub fn apply<T>(&self, request: &mut tonic::Request<T>) {
        let metadata = request.metadata_mut();
        match self {
            Self::Development { principal, roles } => {
                if let (Ok(p), Ok(r)) = (
                    MetadataValue::try_from(principal.as_str()),
                    MetadataValue::try_from(roles.as_str()),
                ) {
                    metadata.insert(airt_kit::auth::DEV_PRINCIPAL_HEADER, p);
                    metadata.insert(airt_kit::auth::DEV_ROLES_HEADER, r);
                }
            }
            Self::Bearer(token) => {
                if let Ok(value) = MetadataValue::try_from(format!("Bearer {}", token.expose())) {
                    metadata.insert("authorization", value);
                }
            }
            Self::None => {}
        }
    }
}

/// What one publishing pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Published {
    pub created: usize,
    pub unchanged: usize,
}

/// Registers every built-in spec (idempotent: identical content is a no-op).
pub async fn publish_all(
    catalogue: &Catalogue,
    registry: Channel,
    credentials: &ServiceCredentials,
) -> Result<Published, tonic::Status> {
    let mut client = RegistryServiceClient::new(registry);
    let mut published = Published::default();
    for spec in catalogue.specs() {
        let mut request = tonic::Request::new(pb::RegisterCapabilityRequest {
            source: Some(pb::register_capability_request::Source::SpecText(
                spec.text.to_owned(),
            )),
            validate_only: false,
            request_id: format!("builtin/{}", spec.id),
        });
        request.set_timeout(Duration::from_secs(10));
        credentials.apply(&mut request);
        if client
            .register_capability(request)
            .await?
            .into_inner()
            .created
        {
            published.created += 1;
        } else {
            published.unchanged += 1;
        }
    }
    Ok(published)
}

/// Publishes, retrying with backoff (up to 30 s apart) until it succeeds.
pub async fn publish_until_done(
    catalogue: &Catalogue,
    registry: Channel,
    credentials: &ServiceCredentials,
) -> Published {
    let mut delay = Duration::from_millis(200);
    loop {
        match publish_all(catalogue, registry.clone(), credentials).await {
            Ok(published) => {
                tracing::info!(
                    created = published.created,
                    unchanged = published.unchanged,
                    "built-in capabilities published"
                );
                return published;
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), retry_in = ?delay, "cannot publish built-in capabilities yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}
