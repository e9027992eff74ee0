//! The routes, the headers every answer carries, and the listener.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, header};
use tokio::net::TcpListener;

use crate::pages::{approvals, catalogue, workflows};
use crate::{Console, ConsoleConfig, signin, view};

/// The console's routes over `console`.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(approvals::inbox))
        .route("/approvals/{id}", get(approvals::detail))
        .route("/approvals/{id}/{verb}", post(approvals::decide))
        .route("/workflows", get(workflows::list))
        .route("/workflows/{id}", get(workflows::detail))
        .route("/workflows/{id}/events", get(workflows::events))
        .route("/capabilities", get(catalogue::capabilities))
        .route("/policy", get(catalogue::policy))
        .route("/audit", get(catalogue::chains))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/signin/oidc", get(crate::oidc::start))
        .route("/signin/callback", get(crate::oidc::callback))
        .route(
            "/static/console.css",
            get(|| asset("text/css", view::STYLE)),
        )
        .route(
            "/static/live.js",
            get(|| asset("text/javascript", workflows::LIVE_SCRIPT)),
        )
        .route(
            "/favicon.ico",
            get(|| async { http::StatusCode::NO_CONTENT }),
        )
        .route("/livez", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(crate::forms::MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(protect))
        .with_state(console)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Every answer: no framing (an approve button cannot be overlaid), scripts
/// and styles from the console only, no caching of pages, no referrer.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut http::HeaderMap, name, value| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// Serves the console on `listener` until `shutdown` resolves.
pub async fn serve_on(
    config: ConsoleConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    match config.auth {
        airt_kit::auth::AuthSettings::Development => tracing::warn!(
            "development mode: anyone may sign in as any principal with any roles; never in production"
        ),
        airt_kit::auth::AuthSettings::Unconfigured => {
            tracing::warn!("no token verifier and no development mode: nobody can sign in");
        }
        _ => {}
    }
    let console = Console::new(&config, address).await?;
    console.authenticator.warm_up().await;
    tracing::info!(%address, origin = %console.origin, "console serving");
    axum::serve(listener, router(console))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Into::into)
}
