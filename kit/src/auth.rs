//! Authentication and role checks.
//!
//! Callers present `authorization: Bearer <JWT>` (HS256 or EdDSA; issuer,
//! audience and expiry checked). The claims become a [`Principal`]: `sub` is
//! `type:id` (a bare id means `user:<id>`), `roles` a list of strings.
//!
//! Development mode trusts `x-airt-principal` / `x-airt-roles` metadata
//! instead. It is off unless switched on explicitly, and logs a warning at
//! start-up. With neither configured, every call is refused (fail closed);
//! health and reflection stay reachable because they are not intercepted.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

use crate::Principal;
use crate::status;

/// Metadata key carrying the principal in development mode.
pub const DEV_PRINCIPAL_HEADER: &str = "x-airt-principal";
/// Metadata key carrying comma-separated roles in development mode.
pub const DEV_ROLES_HEADER: &str = "x-airt-roles";

/// The key that verifies token signatures.
#[derive(Clone)]
pub enum JwtKey {
    /// Shared secret (HS256).
    Hs256(Vec<u8>),
    /// Ed25519 public key in PEM (EdDSA).
    EdDsaPem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            Self::EdDsaPem(_) => f.write_str("EdDsaPem(<public key>)"),
        }
    }
}

/// How bearer tokens are verified.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub key: JwtKey,
    pub issuer: String,
    pub audience: String,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Which authentication a server uses.
#[derive(Debug, Clone, Default)]
pub enum AuthSettings {
    /// Nothing configured: every authenticated call is refused.
    #[default]
    Unconfigured,
    /// Trust `x-airt-principal` / `x-airt-roles` (development only).
    Development,
    /// Verify bearer JWTs.
    Jwt(JwtSettings),
}

/// Why the auth configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("invalid JWT key: {0}")]
    InvalidKey(#[from] jsonwebtoken::errors::Error),
    #[error("the HS256 secret must be at least 32 bytes")]
    WeakSecret,
}

#[derive(Clone)]
enum Mode {
    Unconfigured,
    Development,
    Jwt {
        key: Arc<DecodingKey>,
        validation: Arc<Validation>,
    },
}

/// Turns request metadata into a [`Principal`].
#[derive(Clone)]
pub struct Authenticator {
    mode: Mode,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            Mode::Unconfigured => "unconfigured",
            Mode::Development => "development",
            Mode::Jwt { .. } => "jwt",
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    roles: Vec<String>,
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let mode = match settings {
            AuthSettings::Unconfigured => Mode::Unconfigured,
            AuthSettings::Development => Mode::Development,
            AuthSettings::Jwt(jwt) => {
                let (key, algorithm) = match &jwt.key {
                    JwtKey::Hs256(secret) => {
                        if secret.len() < 32 {
                            return Err(AuthConfigError::WeakSecret);
                        }
                        (DecodingKey::from_secret(secret), Algorithm::HS256)
                    }
                    JwtKey::EdDsaPem(pem) => (DecodingKey::from_ed_pem(pem)?, Algorithm::EdDSA),
                };
                let mut validation = Validation::new(algorithm);
                validation.set_issuer(&[&jwt.issuer]);
                validation.set_audience(&[&jwt.audience]);
                validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                validation.leeway = jwt.leeway_secs;
                // A token is not valid before its `nbf`.
                validation.validate_nbf = true;
                Mode::Jwt {
                    key: Arc::new(key),
                    validation: Arc::new(validation),
                }
            }
        };
        Ok(Self { mode })
    }

    /// Development mode (trusts metadata). Tests and `airt up --dev-auth` only.
    pub fn development() -> Self {
        Self {
            mode: Mode::Development,
        }
    }

    pub fn is_development(&self) -> bool {
        matches!(self.mode, Mode::Development)
    }

    /// Identifies the caller of a request from its metadata.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        match &self.mode {
            Mode::Unconfigured => Err(unauthenticated(
                "AUTH_NOT_CONFIGURED",
                "this server has no token verifier configured; it accepts no authenticated calls",
            )),
            Mode::Development => development_principal(metadata),
            Mode::Jwt { key, validation } => {
                let token = bearer_token(metadata)?;
                let data = jsonwebtoken::decode::<Claims>(token, key, validation)
                    .map_err(|e| unauthenticated("INVALID_TOKEN", format!("invalid token: {e}")))?;
                let subject = if data.claims.sub.contains(':') {
                    data.claims.sub
                } else {
                    format!("user:{}", data.claims.sub)
                };
                Principal::parse(&subject, data.claims.roles).map_err(|e| {
                    unauthenticated("INVALID_TOKEN", format!("invalid token subject: {e}"))
                })
            }
        }
    }
}

/// The authenticated principal of a request (put there by the server's
/// [`crate::middleware::RpcLayer`]). A request that did not pass it has
/// none, and is refused rather than treated as anonymous.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            unauthenticated(
                "UNAUTHENTICATED",
                "request carries no authenticated principal",
            )
        })
}

/// PERMISSION_DENIED unless the principal holds at least one of `roles`.
pub fn require_any_role(principal: &Principal, roles: &[&str]) -> Result<(), Status> {
    if principal.has_any_role(roles) {
        return Ok(());
    }
    Err(status::error(
        Code::PermissionDenied,
        "MISSING_ROLE",
        format!("{principal} needs one of the roles [{}]", roles.join(", ")),
    ))
}

fn bearer_token(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = metadata.get("authorization").ok_or_else(|| {
        unauthenticated("MISSING_TOKEN", "missing `authorization: Bearer <token>`")
    })?;
    let text = value
        .to_str()
        .map_err(|_| unauthenticated("INVALID_TOKEN", "authorization header is not ASCII"))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| {
            unauthenticated("INVALID_TOKEN", "authorization must be `Bearer <token>`")
        })?;
    Ok(token.trim())
}

fn development_principal(metadata: &MetadataMap) -> Result<Principal, Status> {
    let text = metadata
        .get(DEV_PRINCIPAL_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            unauthenticated(
                "MISSING_PRINCIPAL",
                format!("development mode: missing `{DEV_PRINCIPAL_HEADER}: type:id` metadata"),
            )
        })?;
    let roles = metadata
        .get(DEV_ROLES_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|roles| {
            roles
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Principal::parse(text.trim(), roles)
        .map_err(|e| unauthenticated("INVALID_PRINCIPAL", e.to_string()))
}

fn unauthenticated(reason: &str, message: impl Into<String>) -> Status {
    status::error(Code::Unauthenticated, reason, message)
}
