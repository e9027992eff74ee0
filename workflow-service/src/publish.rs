//! Publishing the built-in specs to the registry, as role `registrar`.

use std::time::Duration;

use airt_proto::registry::v1 as pb;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tonic::transport::Channel;

use airt_capabilities::Catalogue;
use airt_kit::backoff::Backoff;
use airt_kit::credentials::Credentials;

/// The development-mode identity of the workflow service towards the
/// registry and the policy service.
pub fn development_credentials() -> Credentials {
    Credentials::development("service:workflow", "registrar").expect("a constant ASCII identity")
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
    credentials: &Credentials,
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
    credentials: &Credentials,
) -> Published {
    let mut backoff = Backoff::doubling(Duration::from_millis(200), Duration::from_secs(30));
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
                let delay = backoff.next_delay();
                tracing::warn!(code = ?status.code(), message = status.message(), retry_in = ?delay, "cannot publish built-in capabilities yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
}
