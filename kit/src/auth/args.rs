//! Authentication flags and the settings they resolve to.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use super::{AuthSettings, ClaimNames, JwksSettings, JwtKey, JwtSettings};
use crate::config::{Secret, parse_duration};

/// Authentication flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// Trust `x-airt-principal` / `x-airt-roles` metadata instead of tokens. Development only.
    #[arg(long, env = "AIRT_AUTH_DEV_MODE", default_value_t = false)]
    pub auth_dev_mode: bool,

    /// HS256 secret (at least 32 bytes) that signs bearer tokens.
    #[arg(long, env = "AIRT_JWT_HS256_SECRET", hide_env_values = true)]
    pub jwt_hs256_secret: Option<Secret>,

    /// File holding the HS256 secret (instead of passing it as a value).
    #[arg(long, env = "AIRT_JWT_HS256_SECRET_FILE")]
    pub jwt_hs256_secret_file: Option<PathBuf>,

    /// PEM file with the Ed25519 public key that verifies EdDSA bearer tokens.
    #[arg(long, env = "AIRT_JWT_EDDSA_PUBLIC_KEY_FILE")]
    pub jwt_eddsa_public_key_file: Option<PathBuf>,

    /// An identity provider's JWKS URL: RS256, ES256 and EdDSA tokens are
    /// verified with its keys (e.g. `https://idp/realms/x/protocol/openid-connect/certs`).
    #[arg(long, env = "AIRT_JWT_JWKS_URL")]
    pub jwt_jwks_url: Option<String>,

    /// The JWKS document is fetched again once its keys are this old.
    #[arg(long, env = "AIRT_JWT_JWKS_MAX_AGE", default_value = "5m", value_parser = parse_duration)]
    pub jwt_jwks_max_age: Duration,

    /// At most one JWKS fetch per this interval, however many tokens name
    /// unknown keys.
    #[arg(long, env = "AIRT_JWT_JWKS_MIN_REFRESH", default_value = "10s", value_parser = parse_duration)]
    pub jwt_jwks_min_refresh: Duration,

    /// Required `iss` claim.
    #[arg(long, env = "AIRT_JWT_ISSUER", default_value = "airt")]
    pub jwt_issuer: String,

    /// Required `aud` claim.
    #[arg(long, env = "AIRT_JWT_AUDIENCE", default_value = "airt")]
    pub jwt_audience: String,

    /// Claim naming the caller (`type:id`, or a bare id for `user:<id>`);
    /// a dotted path reaches into nested claims.
    #[arg(long, env = "AIRT_JWT_PRINCIPAL_CLAIM", default_value = "sub")]
    pub jwt_principal_claim: String,

    /// Claim holding the caller's roles (a list, or a space-separated
    /// string), e.g. `groups` or `realm_access.roles`.
    #[arg(long, env = "AIRT_JWT_ROLES_CLAIM", default_value = "roles")]
    pub jwt_roles_claim: String,
}

impl AuthArgs {
    /// The authentication these flags configure; at most one key source.
    pub fn settings(&self) -> anyhow::Result<AuthSettings> {
        let hs256 = Secret::from_value_or_file(
            "jwt-hs256-secret",
            self.jwt_hs256_secret.as_ref(),
            self.jwt_hs256_secret_file.as_deref(),
        )?;
        let mut keys = Vec::new();
        if let Some(secret) = hs256 {
            keys.push(JwtKey::Hs256(secret.expose().as_bytes().to_vec()));
        }
        if let Some(path) = &self.jwt_eddsa_public_key_file {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            keys.push(JwtKey::EdDsaPem(pem));
        }
        if let Some(url) = self.jwt_jwks_url.as_deref().filter(|u| !u.is_empty()) {
            keys.push(JwtKey::Jwks(JwksSettings {
                url: url.to_owned(),
                max_age: self.jwt_jwks_max_age,
                min_refresh: self.jwt_jwks_min_refresh,
            }));
        }
        anyhow::ensure!(
            keys.len() <= 1,
            "configure one of an HS256 secret, an EdDSA public key or a JWKS URL, not several"
        );
        anyhow::ensure!(
            !self.jwt_principal_claim.trim().is_empty() && !self.jwt_roles_claim.trim().is_empty(),
            "--jwt-principal-claim and --jwt-roles-claim must name a claim"
        );
        Ok(match (self.auth_dev_mode, keys.pop()) {
            (true, Some(_)) => anyhow::bail!("development auth mode and JWT keys are exclusive"),
            (true, None) => AuthSettings::Development,
            (false, Some(key)) => AuthSettings::Jwt(JwtSettings {
                key,
                issuer: self.jwt_issuer.clone(),
                audience: self.jwt_audience.clone(),
                leeway_secs: 30,
                claims: ClaimNames {
                    principal: self.jwt_principal_claim.trim().to_owned(),
                    roles: self.jwt_roles_claim.trim().to_owned(),
                },
            }),
            (false, None) => AuthSettings::Unconfigured,
        })
    }
}
