//! Who calls: the end user behind an MCP request, authenticated like the
//! services authenticate, and the credentials the gateway forwards so the
//! services see that user — never the gateway — as the principal.
//!
//! Over HTTP the bearer token is verified here (so a bad token is a 401
//! before any MCP work) and then forwarded unchanged; in development mode
//! the `x-airt-principal`/`x-airt-roles` headers are forwarded. Over stdio
//! the caller is fixed when the gateway starts (the `airt` credentials).

use std::sync::Arc;

use airt_kit::Principal;
use airt_kit::auth::{Authenticator, DEV_PRINCIPAL_HEADER, DEV_ROLES_HEADER};
use airt_kit::credentials::Credentials;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use tonic::metadata::MetadataMap;

/// Header an MCP client may send to name the agent acting for the user (a
/// policy attribute, never an identity).
pub const AGENT_HEADER: &str = "x-airt-agent";

/// The authenticated caller of one MCP request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// Forwarded on every call to the services.
    pub credentials: Credentials,
    /// The agent name the client gave (empty when none).
    pub agent: String,
}

/// Authenticates `headers` and builds the credentials to forward.
pub async fn authenticate(
    authenticator: &Authenticator,
    headers: &HeaderMap,
) -> Result<Caller, tonic::Status> {
    let metadata = MetadataMap::from_headers(headers.clone());
    let principal = authenticator.authenticate_call(&metadata).await?;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let credentials = if authenticator.is_development() {
        Credentials::development(text(DEV_PRINCIPAL_HEADER), text(DEV_ROLES_HEADER))
    } else {
        let token = text(header::AUTHORIZATION.as_str());
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .unwrap_or_default();
        Credentials::none().with_bearer(token)
    }
    .map_err(|e| tonic::Status::unauthenticated(e.to_string()))?;
    let agent = text(AGENT_HEADER);
    if agent.len() > 256 {
        return Err(tonic::Status::invalid_argument(format!(
            "{AGENT_HEADER} is longer than 256 bytes"
        )));
    }
    Ok(Caller {
        principal,
        credentials,
        agent: agent.to_owned(),
    })
}

/// Axum middleware: every request to `/mcp` carries an authenticated
/// caller in its extensions, or is answered 401 (400 for a bad agent name).
pub async fn require_caller(
    State(authenticator): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticate(&authenticator, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(status) => {
            let code = if status.code() == tonic::Code::InvalidArgument {
                StatusCode::BAD_REQUEST
            } else {
                StatusCode::UNAUTHORIZED
            };
            let mut response = (code, format!("{}\n", status.message())).into_response();
            if code == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
            }
            response
        }
    }
}
