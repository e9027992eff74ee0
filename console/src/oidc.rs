//! Sign-in through an OpenID Connect provider: the authorization-code flow
//! with PKCE (S256).
//!
//! `/signin/oidc` sends the browser to the provider with a fresh `state`,
//! `nonce` and code challenge, all remembered in a short-lived signed
//! cookie; `/signin/callback` checks the state, exchanges the code (with the
//! verifier) at the token endpoint over the back channel, verifies the token
//! as the services will (an ID token must also carry the nonce), and starts
//! a session carrying it. The services verify that token again on every
//! call.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, StatusCode, header};
use maud::html;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Console;
use crate::error::ConsoleError;
use crate::session::{self, Identity};
use crate::view;

/// The cookie remembering one sign-in attempt.
const OIDC_COOKIE: &str = "airt_oidc";
/// How long a sign-in at the provider may take.
const ATTEMPT_TTL: Duration = Duration::from_secs(10 * 60);
/// The largest answer read from the provider.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// The provider, as discovered at start-up.
#[derive(Debug, Clone)]
pub struct Provider {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: String,
    /// The console's `/signin/callback`.
    pub redirect_uri: String,
    /// Forward the ID token instead of the access token.
    pub use_id_token: bool,
    pub(crate) http: reqwest::Client,
}

/// What the operator configured (`--oidc-*`).
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: String,
    pub use_id_token: bool,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
}

/// Reads a bounded JSON answer.
async fn json<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let bytes = response.bytes().await?;
    anyhow::ensure!(
        bytes.len() <= MAX_ANSWER_BYTES,
        "the answer is larger than 1 MiB"
    );
    anyhow::ensure!(
        status.is_success(),
        "HTTP {status}: {}",
        String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
    );
    Ok(serde_json::from_slice(&bytes)?)
}

/// https, or http on a loopback host (a provider on the same machine).
fn acceptable(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "https"
            || (u.scheme() == "http"
                && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]")))
    })
}

impl Provider {
    /// Discovers the provider's endpoints (`/.well-known/openid-configuration`).
    pub async fn discover(settings: &OidcSettings, console_url: &str) -> anyhow::Result<Self> {
        airt_kit::tls::install_crypto();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let issuer = settings.issuer.trim_end_matches('/');
        anyhow::ensure!(
            acceptable(issuer),
            "--oidc-issuer must be https (or http on loopback)"
        );
        let url = format!("{issuer}/.well-known/openid-configuration");
        let found: Discovery = json(http.get(&url).send().await?)
            .await
            .map_err(|e| anyhow::anyhow!("OIDC discovery at {url}: {e}"))?;
        anyhow::ensure!(
            found.issuer.trim_end_matches('/') == issuer,
            "OIDC discovery at {url} names issuer {:?}, not {issuer:?}",
            found.issuer
        );
        for endpoint in [&found.authorization_endpoint, &found.token_endpoint] {
            anyhow::ensure!(
                acceptable(endpoint),
                "OIDC endpoint {endpoint} is neither https nor loopback"
            );
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            authorization_endpoint: found.authorization_endpoint,
            token_endpoint: found.token_endpoint,
            client_id: settings.client_id.clone(),
            client_secret: settings.client_secret.clone(),
            scopes: settings.scopes.clone(),
            redirect_uri: format!("{}/signin/callback", console_url.trim_end_matches('/')),
            use_id_token: settings.use_id_token,
            http,
        })
    }
}

/// One sign-in attempt, kept in the signed cookie until the callback.
#[derive(Debug, Serialize, Deserialize)]
struct Attempt {
    state: String,
    verifier: String,
    /// Sent to the provider; an ID token used as the credential must carry
    /// it back (OpenID Connect Core 3.1.2.1), or it was not issued for this
    /// sign-in.
    nonce: String,
    expires: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The S256 code challenge of a verifier.
fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The attempt cookie: Lax, not Strict, because the provider's redirect
/// back is a navigation from another site.
fn attempt_cookie(value: &str, max_age: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{OIDC_COOKIE}={value}; Path=/signin/callback; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

/// `GET /signin/oidc`: off to the provider.
pub async fn start(State(console): State<Arc<Console>>) -> Result<Response, ConsoleError> {
    let provider = console
        .oidc
        .as_ref()
        .ok_or_else(|| ConsoleError::BadRequest("no identity provider is configured".into()))?;
    let attempt = Attempt {
        state: session::nonce(),
        verifier: format!("{}{}", session::nonce(), session::nonce()),
        nonce: session::nonce(),
        expires: now_secs() + ATTEMPT_TTL.as_secs(),
    };
    let mut url = reqwest::Url::parse(&provider.authorization_endpoint)
        .map_err(|e| ConsoleError::BadRequest(format!("authorization endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &provider.redirect_uri)
        .append_pair("scope", &provider.scopes)
        .append_pair("state", &attempt.state)
        .append_pair("nonce", &attempt.nonce)
        .append_pair("code_challenge", &challenge(&attempt.verifier))
        .append_pair("code_challenge_method", "S256");
    let sealed = console.key.seal(
        OIDC_COOKIE,
        &serde_json::to_vec(&attempt).unwrap_or_default(),
    );
    let mut response = Redirect::to(url.as_str()).into_response();
    let cookie = attempt_cookie(&sealed, ATTEMPT_TTL, console.secure);
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug, Deserialize)]
struct Tokens {
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    id_token: String,
}

/// `GET /signin/callback`: the provider sent the browser back.
pub async fn callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(back): Query<Callback>,
) -> Result<Response, ConsoleError> {
    let provider = console
        .oidc
        .as_ref()
        .ok_or_else(|| ConsoleError::BadRequest("no identity provider is configured".into()))?;
    if !back.error.is_empty() {
        return Err(ConsoleError::BadRequest(format!(
            "the identity provider refused: {} {}",
            back.error, back.error_description
        )));
    }
    let attempt: Attempt = session::cookie(&headers, OIDC_COOKIE)
        .and_then(|cookie| console.key.open(OIDC_COOKIE, cookie))
        .and_then(|json| serde_json::from_slice(&json).ok())
        .filter(|a: &Attempt| a.expires > now_secs())
        .ok_or(ConsoleError::Forbidden(
            "no sign-in was started here, or it took too long: start again",
        ))?;
    if back.state.is_empty()
        || back.state != attempt.state
        || back.code.is_empty()
        || back.code.len() > 4096
    {
        return Err(ConsoleError::Forbidden(
            "the provider's answer does not belong to this sign-in",
        ));
    }
    let token = exchange(provider, &back.code, &attempt.verifier)
        .await
        .map_err(|e| ConsoleError::BadRequest(format!("the code exchange failed: {e:#}")))?;
    let credentials = airt_kit::credentials::Credentials::none()
        .with_bearer(&token)
        .map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let principal = crate::signin::verify(&console, &credentials)
        .await
        .map_err(|status| {
            ConsoleError::BadRequest(format!(
                "the provider's token is refused: {}",
                status.message()
            ))
        })?;
    if provider.use_id_token && nonce_of(&token).as_deref() != Some(attempt.nonce.as_str()) {
        return Err(ConsoleError::Forbidden(
            "the provider's ID token was not issued for this sign-in (nonce)",
        ));
    }
    let identity = Identity::Bearer {
        principal: principal.to_string(),
        roles: principal.roles.join(","),
        token,
    };
    let set = console.start_session(identity);
    let clear = attempt_cookie("", Duration::ZERO, console.secure);
    // A page, not a redirect: the session cookie is SameSite=Strict, and a
    // redirect continuing the provider's cross-site navigation would not
    // carry it. The page's own navigation to `/` does.
    let page = view::page(
        "Signed in",
        None,
        console.development,
        &html! {
            meta http-equiv="refresh" content="0;url=/";
            p { "Signed in as " strong { (principal.to_string()) } ". " a href="/" data-testid="continue" { "Continue" } }
        },
    );
    let mut response = (StatusCode::OK, page).into_response();
    for cookie in [set, clear] {
        if let Ok(value) = cookie.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// The `nonce` claim of a JWT whose signature was verified already.
fn nonce_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims.get("nonce")?.as_str().map(str::to_owned)
}

/// The authorization code for a token, over the back channel.
async fn exchange(provider: &Provider, code: &str, verifier: &str) -> anyhow::Result<String> {
    let mut form = reqwest::Url::parse("http://form.invalid/")?;
    form.query_pairs_mut()
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &provider.redirect_uri)
        .append_pair("client_id", &provider.client_id)
        .append_pair("code_verifier", verifier);
    if let Some(secret) = &provider.client_secret {
        form.query_pairs_mut().append_pair("client_secret", secret);
    }
    let response = provider
        .http
        .post(&provider.token_endpoint)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(form.query().unwrap_or_default().to_owned())
        .send()
        .await?;
    let tokens: Tokens = json(response).await?;
    let token = if provider.use_id_token {
        tokens.id_token
    } else {
        tokens.access_token
    };
    anyhow::ensure!(
        !token.is_empty(),
        "the token endpoint answered without the token"
    );
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_rfc_7636_s256() {
        // RFC 7636, appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_nonce_is_read_from_the_token_payload() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"user:x","nonce":"n-1"}"#);
        assert_eq!(nonce_of(&format!("h.{payload}.s")).as_deref(), Some("n-1"));
        let without = URL_SAFE_NO_PAD.encode(br#"{"sub":"user:x"}"#);
        assert_eq!(nonce_of(&format!("h.{without}.s")), None);
        let not_text = URL_SAFE_NO_PAD.encode(br#"{"nonce":7}"#);
        assert_eq!(nonce_of(&format!("h.{not_text}.s")), None);
        assert_eq!(nonce_of("no dots"), None);
        assert_eq!(nonce_of("h.!!!.s"), None);
    }

    #[test]
    fn providers_are_https_or_loopback() {
        assert!(acceptable("https://idp.example.com"));
        assert!(acceptable("http://127.0.0.1:8080/realms/x"));
        assert!(!acceptable("http://idp.example.com"));
        assert!(!acceptable("file:///etc/passwd"));
    }
}
