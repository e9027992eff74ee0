//! Sign-in through an OpenID Connect provider (authorization code + PKCE)
//! against a provider served by the test: the console sends the browser to
//! it with a S256 challenge, exchanges the code with the verifier, verifies
//! the token like the services and starts a session carrying it; an answer
//! that does not belong to the sign-in, a code without its verifier, or an
//! ID token without the sign-in's nonce, is refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use airt_console::session::{Identity, SESSION_COOKIE, Session, SessionKey};
use airt_console::{ConsoleArgs, ConsoleConfig};
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use base64::Engine as _;
use clap::Parser;
use sha2::Digest as _;

const SECRET: &str = "an hs256 secret of at least 32 bytes!!";

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    auth: airt_kit::config::AuthArgs,
    #[command(flatten)]
    console: ConsoleArgs,
}

/// What the provider remembers between /authorize and /token.
#[derive(Default)]
struct Idp {
    challenge: Mutex<String>,
    /// The nonce of the last /authorize.
    nonce: Mutex<String>,
    /// When set, ID tokens carry this nonce instead of the one sent.
    replayed_nonce: Mutex<Option<String>>,
    base: Mutex<String>,
}

fn token(subject: &str) -> String {
    token_with(subject, serde_json::json!({}))
}

/// A signed token for `subject` with `extra` claims.
fn token_with(subject: &str, extra: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = serde_json::json!({
        "sub": subject, "roles": ["approver"], "iss": "airt", "aud": "airt",
        "iat": now, "exp": now + 600,
    });
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

async fn discovery(State(idp): State<Arc<Idp>>) -> impl IntoResponse {
    let base = idp.base.lock().unwrap().clone();
    json_answer(
        http::StatusCode::OK,
        &serde_json::json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/authorize"),
            "token_endpoint": format!("{base}/token"),
        }),
    )
}

fn json_answer(status: http::StatusCode, value: &serde_json::Value) -> axum::response::Response {
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn authorize(
    State(idp): State<Arc<Idp>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> impl IntoResponse {
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "console");
    assert_eq!(query["code_challenge_method"], "S256");
    *idp.challenge.lock().unwrap() = query["code_challenge"].clone();
    *idp.nonce.lock().unwrap() = query.get("nonce").cloned().unwrap_or_default();
    // The user signs in; the provider sends the browser back.
    Redirect::to(&format!(
        "{}?code=the-code&state={}",
        query["redirect_uri"], query["state"]
    ))
}

async fn exchange(State(idp): State<Arc<Idp>>, body: String) -> axum::response::Response {
    let form: std::collections::HashMap<String, String> = url_pairs(&body).into_iter().collect();
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let expected = idp.challenge.lock().unwrap().clone();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    if form.get("code").map(String::as_str) != Some("the-code") || challenge != expected {
        return json_answer(
            http::StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_grant"}),
        );
    }
    let nonce = idp
        .replayed_nonce
        .lock()
        .unwrap()
        .clone()
        .unwrap_or_else(|| idp.nonce.lock().unwrap().clone());
    json_answer(
        http::StatusCode::OK,
        &serde_json::json!({
            "access_token": token("user:carol"), "token_type": "Bearer",
            "id_token": token_with("user:dave", serde_json::json!({"nonce": nonce})),
        }),
    )
}

fn url_pairs(body: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    base
}

fn cookie_of(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The console with JWT sign-in through `issuer` (and `extra` flags); its
/// address.
async fn start_console(issuer: &str, extra: &[&str]) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_url = format!("http://{}", listener.local_addr().unwrap());
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), [b'k'; 40]).unwrap();
    let flags = Flags::parse_from(
        [
            "console",
            "--jwt-hs256-secret",
            SECRET,
            "--oidc-issuer",
            issuer,
            "--oidc-client-id",
            "console",
            "--console-url",
            &console_url,
            "--session-key-file",
            key_file.path().to_str().unwrap(),
            "--registry-addr",
            "http://127.0.0.1:9",
            "--policy-addr",
            "http://127.0.0.1:9",
            "--workflow-addr",
            "http://127.0.0.1:9",
        ]
        .into_iter()
        .chain(extra.iter().copied()),
    );
    let config = ConsoleConfig::from_args(&flags.console, flags.auth.settings().unwrap()).unwrap();
    tokio::spawn(airt_console::serve_on(
        config,
        listener,
        std::future::pending(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    console_url
}

/// The provider, served; its issuer URL.
async fn provider(idp: &Arc<Idp>) -> String {
    let issuer = serve(
        Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/authorize", get(authorize))
            .route("/token", post(exchange))
            .with_state(idp.clone()),
    )
    .await;
    *idp.base.lock().unwrap() = issuer.clone();
    issuer
}

#[tokio::test]
async fn sign_in_through_the_provider_with_pkce() {
    airt_kit::tls::install_crypto();
    let idp = Arc::new(Idp::default());
    let issuer = provider(&idp).await;

    let console_url = start_console(&issuer, &[]).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The sign-in page offers the provider.
    let page = browser
        .get(format!("{console_url}/signin"))
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("/signin/oidc"));

    // Off to the provider, with a challenge and a state remembered in a cookie.
    let start = browser
        .get(format!("{console_url}/signin/oidc"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303);
    let attempt = cookie_of(&start, "airt_oidc").expect("the attempt's cookie");
    let to_provider = start.headers()["location"].to_str().unwrap().to_owned();
    assert!(to_provider.starts_with(&format!("{issuer}/authorize?")));
    let back = browser.get(&to_provider).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&format!(
        "{console_url}/signin/callback?code=the-code&state="
    )));

    // Without the attempt's cookie, or with another state: refused.
    let stranger = browser.get(&callback).send().await.unwrap();
    assert_eq!(stranger.status(), 403);
    let forged = browser
        .get(format!(
            "{console_url}/signin/callback?code=the-code&state=forged"
        ))
        .header("cookie", format!("airt_oidc={attempt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(cookie_of(&forged, SESSION_COOKIE).is_none());

    // The real callback: a session carrying the provider's (verified) token.
    let signed_in = browser
        .get(&callback)
        .header("cookie", format!("airt_oidc={attempt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let session = cookie_of(&signed_in, SESSION_COOKIE).expect("a session");
    let key = SessionKey::from_material(&[b'k'; 40]).unwrap();
    let session = Session::open(&key, &session).expect("signed by the console");
    match session.identity {
        Identity::Bearer {
            principal,
            roles,
            token,
        } => {
            assert_eq!(principal, "user:carol");
            assert_eq!(roles, "approver");
            assert!(!token.is_empty());
        }
        other => panic!("not a token session: {other:?}"),
    }

    // A code presented with another verifier is refused by the provider,
    // and the console says so (no session).
    let other = browser
        .get(format!("{console_url}/signin/oidc"))
        .send()
        .await
        .unwrap();
    let other_attempt = cookie_of(&other, "airt_oidc").unwrap();
    let other_location = other.headers()["location"].to_str().unwrap().to_owned();
    let state = url_pairs(other_location.split_once('?').unwrap().1)
        .into_iter()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1;
    // The provider still holds the first attempt's challenge.
    let mismatched = browser
        .get(format!(
            "{console_url}/signin/callback?code=the-code&state={state}"
        ))
        .header("cookie", format!("airt_oidc={other_attempt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(mismatched.status(), 400);
    assert!(cookie_of(&mismatched, SESSION_COOKIE).is_none());
}

/// Goes to the provider and back; the callback's answer.
async fn sign_in(browser: &reqwest::Client, console_url: &str) -> reqwest::Response {
    let start = browser
        .get(format!("{console_url}/signin/oidc"))
        .send()
        .await
        .unwrap();
    let attempt = cookie_of(&start, "airt_oidc").expect("the attempt's cookie");
    let to_provider = start.headers()["location"].to_str().unwrap().to_owned();
    let back = browser.get(&to_provider).send().await.unwrap();
    let callback = back.headers()["location"].to_str().unwrap().to_owned();
    browser
        .get(&callback)
        .header("cookie", format!("airt_oidc={attempt}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_id_token_must_carry_the_nonce_of_this_sign_in() {
    airt_kit::tls::install_crypto();
    let idp = Arc::new(Idp::default());
    let issuer = provider(&idp).await;
    let console_url = start_console(&issuer, &["--oidc-use-id-token"]).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The provider echoes the nonce it was sent: a session as the ID
    // token's subject.
    let signed_in = sign_in(&browser, &console_url).await;
    assert_eq!(signed_in.status(), 200);
    assert!(!idp.nonce.lock().unwrap().is_empty(), "no nonce was sent");
    let session = cookie_of(&signed_in, SESSION_COOKIE).expect("a session");
    let key = SessionKey::from_material(&[b'k'; 40]).unwrap();
    match Session::open(&key, &session).expect("signed").identity {
        Identity::Bearer { principal, .. } => assert_eq!(principal, "user:dave"),
        other => panic!("not a token session: {other:?}"),
    }

    // An ID token minted for another sign-in (a valid signature, another
    // nonce) is refused, and so is one without a nonce.
    for replayed in ["the nonce of another sign-in", ""] {
        *idp.replayed_nonce.lock().unwrap() = Some(replayed.to_owned());
        let refused = sign_in(&browser, &console_url).await;
        assert_eq!(refused.status(), 403, "nonce {replayed:?}");
        assert!(cookie_of(&refused, SESSION_COOKIE).is_none());
    }
}
