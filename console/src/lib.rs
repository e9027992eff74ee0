//! The console: web pages for the humans in the loop — the approvals
//! inbox, an approval's detail and decision, workflows with a live
//! timeline, the capability catalogue, the active policy and the audit
//! chains.
//!
//! Server-rendered HTML (maud) on axum; a client of the workflow,
//! registry, policy and audit gRPC APIs (their generated clients) that acts
//! with the signed-in user's identity, never its own: the services decide
//! who may see and decide what. The console keeps nothing but sessions,
//! and those live in signed cookies ([`session`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airt_kit::auth::{AuthSettings, Authenticator};
use airt_kit::config::parse_duration;
use airt_kit::dependencies::{ServiceAddrArgs, ServiceChannels};

pub mod error;
mod forms;
pub mod oidc;
mod pages;
mod routes;
pub mod session;
mod signin;
mod user;
mod view;

pub use routes::serve_on;
use session::SessionKey;

/// The default listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50080";

/// The console's flags (besides authentication, logging and the listener).
#[derive(Debug, Clone, clap::Args)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub services: ServiceAddrArgs,

    /// File holding the key that signs session cookies (at least 32 bytes;
    /// every replica behind one address needs the same). Default: a random
    /// key per process, so sessions end when it restarts.
    #[arg(long, env = "AIRT_CONSOLE_SESSION_KEY_FILE")]
    pub session_key_file: Option<PathBuf>,

    /// How long a sign-in lasts.
    #[arg(long, env = "AIRT_CONSOLE_SESSION_TTL", default_value = "8h", value_parser = parse_duration)]
    pub session_ttl: Duration,

    /// The address users reach the console at (e.g.
    /// `https://console.example.com`): cookies are marked Secure when it is
    /// https, and POSTs must come from it. Default: the listener's address.
    #[arg(long, env = "AIRT_CONSOLE_URL")]
    pub console_url: Option<String>,

    /// OpenID Connect issuer for sign-in with the authorization-code flow
    /// and PKCE (e.g. `https://keycloak.example.com/realms/airt`); its
    /// tokens must be ones the services accept (`--jwt-*` flags). Needs
    /// `--oidc-client-id`; the redirect URI is `<console URL>/signin/callback`.
    #[arg(long, env = "AIRT_CONSOLE_OIDC_ISSUER", requires = "oidc_client_id")]
    pub oidc_issuer: Option<String>,

    /// The console's client id at the issuer.
    #[arg(long, env = "AIRT_CONSOLE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// File holding the client secret (confidential clients; public clients
    /// rely on PKCE alone).
    #[arg(long, env = "AIRT_CONSOLE_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,

    /// Scopes asked for.
    #[arg(
        long,
        env = "AIRT_CONSOLE_OIDC_SCOPES",
        default_value = "openid profile email"
    )]
    pub oidc_scopes: String,

    /// Forward the ID token instead of the access token (for providers
    /// whose access tokens are opaque).
    #[arg(long, env = "AIRT_CONSOLE_OIDC_USE_ID_TOKEN")]
    pub oidc_use_id_token: bool,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    pub services: ServiceAddrArgs,
    pub auth: AuthSettings,
    pub session_key: SessionKey,
    pub session_ttl: Duration,
    pub console_url: Option<String>,
    pub oidc: Option<oidc::OidcSettings>,
}

impl ConsoleConfig {
    pub fn from_args(args: &ConsoleArgs, auth: AuthSettings) -> anyhow::Result<Self> {
        let session_key = match &args.session_key_file {
            Some(path) => {
                let material = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("--session-key-file {}: {e}", path.display()))?;
                SessionKey::from_material(&material)
                    .map_err(|e| anyhow::anyhow!("--session-key-file {}: {e}", path.display()))?
            }
            None => SessionKey::random(),
        };
        if let Some(url) = &args.console_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("--console-url must start with http:// or https://");
        }
        anyhow::ensure!(
            args.session_ttl >= Duration::from_secs(60),
            "--session-ttl must be at least 1m"
        );
        let oidc = match (&args.oidc_issuer, &args.oidc_client_id) {
            (Some(issuer), Some(client_id)) => Some(oidc::OidcSettings {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret: match &args.oidc_client_secret_file {
                    Some(path) => Some(
                        std::fs::read_to_string(path)
                            .map_err(|e| {
                                anyhow::anyhow!("--oidc-client-secret-file {}: {e}", path.display())
                            })?
                            .trim()
                            .to_owned(),
                    ),
                    None => None,
                },
                scopes: args.oidc_scopes.clone(),
                use_id_token: args.oidc_use_id_token,
            }),
            _ => None,
        };
        Ok(Self {
            oidc,
            services: args.services.clone(),
            auth,
            session_key,
            session_ttl: args.session_ttl,
            console_url: args
                .console_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_owned()),
        })
    }
}

/// What every request shares.
#[derive(Debug)]
pub struct Console {
    pub(crate) channels: ServiceChannels,
    pub(crate) authenticator: Authenticator,
    pub(crate) development: bool,
    pub(crate) key: SessionKey,
    pub(crate) session_ttl: Duration,
    /// Cookies carry `Secure`.
    pub(crate) secure: bool,
    /// The origin POSTs must come from (`scheme://host[:port]`).
    pub(crate) origin: String,
    /// The OpenID Connect provider, when sign-in goes through one.
    pub(crate) oidc: Option<oidc::Provider>,
}

impl Console {
    /// Connects (lazily) to the services; `listening` is the listener's
    /// address, the origin unless `--console-url` names another.
    pub async fn new(config: &ConsoleConfig, listening: SocketAddr) -> anyhow::Result<Arc<Self>> {
        let origin = config
            .console_url
            .clone()
            .unwrap_or_else(|| format!("http://{listening}"));
        let oidc = match &config.oidc {
            Some(settings) => Some(oidc::Provider::discover(settings, &origin).await?),
            None => None,
        };
        Ok(Arc::new(Self {
            oidc,
            channels: ServiceChannels::open(&config.services).await?,
            authenticator: Authenticator::new(&config.auth)?,
            development: matches!(config.auth, AuthSettings::Development),
            key: config.session_key.clone(),
            session_ttl: config.session_ttl,
            secure: origin.starts_with("https://"),
            origin: origin_of(&origin),
        }))
    }
}

impl Console {
    /// The `Set-Cookie` value of a new session for `identity`.
    pub(crate) fn start_session(&self, identity: session::Identity) -> String {
        let session = session::Session::new(identity, self.session_ttl);
        session::set_cookie(
            session::SESSION_COOKIE,
            &session.seal(&self.key),
            self.session_ttl,
            self.secure,
        )
    }
}

/// `scheme://host[:port]` of a URL (what browsers send as `Origin`).
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

/// Where the console listens by default.
pub fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 50080)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_drop_paths() {
        assert_eq!(
            super::origin_of("https://console.example.com/approvals"),
            "https://console.example.com"
        );
        assert_eq!(
            super::origin_of("http://127.0.0.1:50080"),
            "http://127.0.0.1:50080"
        );
    }
}
