//! How a client of the services identifies itself: a bearer token, or the
//! development-mode principal and roles. One type for every caller (the
//! workflow service's gate and publisher, the CLI, tests), usable as a
//! tonic interceptor or applied to a single request.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Status};

use crate::auth::{DEV_PRINCIPAL_HEADER, DEV_ROLES_HEADER};
use crate::config::Secret;

/// Metadata added to every call. Token values are marked sensitive, so they
/// never appear in a `Debug` print of a request.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    headers: Vec<(&'static str, MetadataValue<Ascii>)>,
}

/// Credentials that cannot travel as gRPC metadata.
#[derive(Debug, Clone, thiserror::Error)]
#[error("credentials must be visible ASCII")]
pub struct InvalidCredentials;

fn ascii(value: &str) -> Result<MetadataValue<Ascii>, InvalidCredentials> {
    MetadataValue::try_from(value).map_err(|_| InvalidCredentials)
}

impl Credentials {
    /// No credentials: calls go out anonymous (and are refused by services
    /// that require a caller).
    pub fn none() -> Self {
        Self::default()
    }

    /// `authorization: Bearer <token>`.
    pub fn bearer(token: &Secret) -> Result<Self, InvalidCredentials> {
        Self::none().with_bearer(token.expose())
    }

    /// `x-airt-principal` / `x-airt-roles`, trusted only by services in
    /// development mode.
    pub fn development(principal: &str, roles: &str) -> Result<Self, InvalidCredentials> {
        Self::none().with_development(principal, roles)
    }

    /// Adds a bearer token.
    pub fn with_bearer(mut self, token: &str) -> Result<Self, InvalidCredentials> {
        let mut value = ascii(&format!("Bearer {token}"))?;
        value.set_sensitive(true);
        self.headers.push(("authorization", value));
        Ok(self)
    }

    /// Adds a development-mode identity.
    pub fn with_development(
        mut self,
        principal: &str,
        roles: &str,
    ) -> Result<Self, InvalidCredentials> {
        self.headers.push((DEV_PRINCIPAL_HEADER, ascii(principal)?));
        self.headers.push((DEV_ROLES_HEADER, ascii(roles)?));
        Ok(self)
    }

    /// Whether any credential is set.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }

    /// Adds the credentials to one request.
    pub fn apply<T>(&self, request: &mut Request<T>) {
        for (key, value) in &self.headers {
            request.metadata_mut().insert(*key, value.clone());
        }
        // The call continues the caller's trace (when it is traced).
        crate::trace::inject(request);
    }
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.apply(&mut request);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_sent_and_hidden_from_debug() {
        let credentials = Credentials::bearer(&Secret::new("s3cr3t")).unwrap();
        let mut request = Request::new(());
        credentials.apply(&mut request);
        let header = request.metadata().get("authorization").unwrap();
        assert_eq!(header.to_str().unwrap(), "Bearer s3cr3t");
        assert!(!format!("{credentials:?}").contains("s3cr3t"));
    }

    #[test]
    fn development_identity_and_refusals() {
        let credentials = Credentials::development("user:alice", "admin").unwrap();
        let mut request = Request::new(());
        credentials.apply(&mut request);
        assert_eq!(
            request.metadata().get(DEV_PRINCIPAL_HEADER).unwrap(),
            "user:alice"
        );
        assert_eq!(request.metadata().get(DEV_ROLES_HEADER).unwrap(), "admin");
        assert!(Credentials::development("user:é\n", "x").is_err());
        assert!(Credentials::none().is_empty());
    }
}
