//! Authentication and role checks.
//!
//! Callers present `authorization: Bearer <JWT>`: HS256 with a shared
//! secret, EdDSA with a public key, or RS256/ES256/EdDSA (and RS384/RS512/
//! ES384) with keys from an identity provider's JWKS URL ([`jwks`]); issuer,
//! audience, expiry and not-before checked. The claims become a
//! [`Principal`]: by default `sub` is `type:id` (a bare id means
//! `user:<id>`) and `roles` a list of strings; both claim names are
//! configurable ([`claims`]).
//!
//! Development mode trusts `x-airt-principal` / `x-airt-roles` metadata
//! instead. It is off unless switched on explicitly, and logs a warning at
//! start-up. With neither configured, every call is refused (fail closed);
//! health and reflection stay reachable because they are not intercepted.

pub mod args;
pub mod claims;
pub mod jwks;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Status};

use crate::Principal;
use crate::status;
pub use claims::ClaimNames;
pub use jwks::JwksSettings;

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
    /// An identity provider's JWKS document (RS256, ES256, EdDSA, ...).
    Jwks(JwksSettings),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("Hs256(<redacted>)"),
            Self::EdDsaPem(_) => f.write_str("EdDsaPem(<public key>)"),
            Self::Jwks(jwks) => write!(f, "Jwks({})", jwks.url),
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
    /// Which claims name the caller and its roles.
    pub claims: ClaimNames,
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
    #[error("JWKS: {0}")]
    Jwks(String),
}

#[derive(Clone)]
enum Mode {
    Unconfigured,
    Development,
    Jwt {
        key: Arc<DecodingKey>,
        validation: Arc<Validation>,
        claims: Arc<ClaimNames>,
    },
    Jwks {
        jwks: Arc<jwks::Jwks>,
        /// Issuer, audience and required claims; the algorithm is the
        /// token's, once it is one of [`jwks::ALGORITHMS`].
        validation: Arc<Validation>,
        claims: Arc<ClaimNames>,
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
            Mode::Jwks { .. } => "jwks",
        };
        f.debug_struct("Authenticator")
            .field("mode", &mode)
            .finish()
    }
}

impl Authenticator {
    pub fn new(settings: &AuthSettings) -> Result<Self, AuthConfigError> {
        let mode = match settings {
            AuthSettings::Unconfigured => Mode::Unconfigured,
            AuthSettings::Development => Mode::Development,
            AuthSettings::Jwt(jwt) => {
                let claims = Arc::new(jwt.claims.clone());
                let (key, algorithm) = match &jwt.key {
                    JwtKey::Hs256(secret) => {
                        if secret.len() < 32 {
                            return Err(AuthConfigError::WeakSecret);
                        }
                        (DecodingKey::from_secret(secret), Algorithm::HS256)
                    }
                    JwtKey::EdDsaPem(pem) => (DecodingKey::from_ed_pem(pem)?, Algorithm::EdDSA),
                    JwtKey::Jwks(settings) => {
                        let jwks = jwks::Jwks::new(settings.clone())
                            .map_err(|e| AuthConfigError::Jwks(e.to_string()))?;
                        let mut validation = validation(jwt, Algorithm::RS256);
                        validation.algorithms = jwks::ALGORITHMS.to_vec();
                        return Ok(Self {
                            mode: Mode::Jwks {
                                jwks: Arc::new(jwks),
                                validation: Arc::new(validation),
                                claims,
                            },
                        });
                    }
                };
                Mode::Jwt {
                    key: Arc::new(key),
                    validation: Arc::new(validation(jwt, algorithm)),
                    claims,
                }
            }
        };
        Ok(Self { mode })
    }

    /// Fetches the identity provider's keys now (JWKS mode; nothing
    /// otherwise), so the first call does not wait for them. A failure is
    /// logged and retried when calls arrive.
    pub async fn warm_up(&self) {
        if let Mode::Jwks { jwks, .. } = &self.mode {
            jwks.refresh().await;
        }
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
            Mode::Jwt {
                key,
                validation,
                claims,
            } => verify(bearer_token(metadata)?, key, validation, claims),
            Mode::Jwks {
                jwks,
                validation,
                claims,
            } => {
                let token = bearer_token(metadata)?;
                let header = token_header(token)?;
                let key = jwks
                    .cached(header.kid.as_deref(), header.alg)
                    .map_err(key_error)?;
                verify(token, &key, &validation_for(validation, header.alg), claims)
            }
        }
    }

    /// The caller, when it can be known without waiting: `None` in JWKS
    /// mode when the token names a key the cache does not hold fresh, so
    /// only [`Authenticator::authenticate_call`] (which may fetch the keys)
    /// can answer. Every token is verified once either way.
    pub fn authenticate_now(&self, metadata: &MetadataMap) -> Option<Result<Principal, Status>> {
        let Mode::Jwks {
            jwks,
            validation,
            claims,
        } = &self.mode
        else {
            return Some(self.authenticate(metadata));
        };
        let verified = (|| {
            let token = bearer_token(metadata)?;
            let header = token_header(token)?;
            let Some(key) = jwks.fresh(header.kid.as_deref(), header.alg) else {
                return Ok(None);
            };
            verify(token, &key, &validation_for(validation, header.alg), claims).map(Some)
        })();
        verified.transpose()
    }

    /// Like [`Authenticator::authenticate`], but in JWKS mode a token
    /// signed by a key the cache does not know (yet) makes the provider's
    /// keys be fetched again first (at most once per the configured
    /// interval).
    pub async fn authenticate_call(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        let Mode::Jwks {
            jwks,
            validation,
            claims,
        } = &self.mode
        else {
            return self.authenticate(metadata);
        };
        let token = bearer_token(metadata)?;
        let header = token_header(token)?;
        let key = jwks
            .key(header.kid.as_deref(), header.alg)
            .await
            .map_err(key_error)?;
        verify(token, &key, &validation_for(validation, header.alg), claims)
    }
}

/// The checks every token passes, for keys of `algorithm`.
fn validation(jwt: &JwtSettings, algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&jwt.issuer]);
    validation.set_audience(&[&jwt.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = jwt.leeway_secs;
    // A token is not valid before its `nbf`.
    validation.validate_nbf = true;
    validation
}

/// `template` narrowed to the token's own algorithm, once that is one a
/// JWKS key may verify.
fn validation_for(template: &Validation, algorithm: Algorithm) -> Validation {
    let mut validation = template.clone();
    validation.algorithms = vec![algorithm];
    validation
}

/// The token's header, if its algorithm is one a JWKS key may verify
/// (never a shared secret, never `none`).
fn token_header(token: &str) -> Result<jsonwebtoken::Header, Status> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| unauthenticated("INVALID_TOKEN", format!("invalid token: {e}")))?;
    if !jwks::ALGORITHMS.contains(&header.alg) {
        return Err(unauthenticated(
            "INVALID_TOKEN",
            format!("invalid token: algorithm {:?} is not accepted", header.alg),
        ));
    }
    Ok(header)
}

fn key_error(error: jwks::KeyError) -> Status {
    match error {
        jwks::KeyError::Unavailable(why) => status::error(
            Code::Unavailable,
            "JWKS_UNAVAILABLE",
            format!("the identity provider's keys cannot be fetched: {why}"),
        ),
        jwks::KeyError::Unknown(kid) => unauthenticated(
            "INVALID_TOKEN",
            format!(
                "invalid token: no key {kid:?} for its algorithm in the identity provider's key set"
            ),
        ),
    }
}

/// Checks `token`'s signature and claims; its caller as a [`Principal`].
fn verify(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
    claims: &ClaimNames,
) -> Result<Principal, Status> {
    let data = jsonwebtoken::decode::<serde_json::Value>(token, key, validation)
        .map_err(|e| unauthenticated("INVALID_TOKEN", format!("invalid token: {e}")))?;
    let (subject, roles) = claims
        .extract(&data.claims)
        .map_err(|e| unauthenticated("INVALID_TOKEN", format!("invalid token: {e}")))?;
    Principal::parse(&subject, roles)
        .map_err(|e| unauthenticated("INVALID_TOKEN", format!("invalid token subject: {e}")))
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
