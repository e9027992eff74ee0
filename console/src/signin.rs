//! Signing in and out. Development mode asks for a principal and roles
//! (marked as such on every page); otherwise a bearer token from the
//! identity provider, verified here as the services verify it, then sent
//! with every call (the services verify it again, every time).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, StatusCode, header};
use maud::{Markup, html};
use serde::Deserialize;

use crate::Console;
use crate::error::ConsoleError;
use crate::session::{self, Identity, SESSION_COOKIE, SIGNIN_COOKIE, SIGNIN_TTL};
use crate::user::User;
use crate::view;

#[derive(Debug, Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    expired: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    roles: String,
    #[serde(default)]
    token: String,
}

/// `GET /signin`: the form, bound to a fresh pre-session cookie.
pub async fn form(
    State(console): State<Arc<Console>>,
    Query(query): Query<SignInQuery>,
) -> Response {
    let note = query
        .expired
        .map(|_| "Your session ended or your token was refused: sign in again.");
    render(&console, StatusCode::OK, note)
}

fn render(console: &Console, status: StatusCode, note: Option<&str>) -> Response {
    let nonce = session::nonce();
    let csrf = console.key.csrf_token(&nonce);
    let cookie = session::set_cookie(
        SIGNIN_COOKIE,
        &session::seal_signin(&console.key, &nonce),
        SIGNIN_TTL,
        console.secure,
    );
    let body = fields(console.development, &csrf, note);
    let body = html! {
        @if let Some(provider) = &console.oidc {
            p { a href="/signin/oidc" data-testid="signin-oidc" { "Sign in with " (provider.issuer) } }
            p.muted { "Or paste a bearer token:" }
        }
        (body)
    };
    let page = view::page("Sign in", None, console.development, &body);
    (status, [(header::SET_COOKIE, cookie)], page).into_response()
}

fn fields(development: bool, csrf: &str, note: Option<&str>) -> Markup {
    html! {
        @if let Some(note) = note { p.problem role="alert" data-testid="signin-error" { (note) } }
        form method="post" action="/signin" {
            (view::csrf(csrf))
            @if development {
                p.muted { "Development mode: the services trust the principal and roles you type." }
                label for="principal" { "Principal" }
                input #principal type="text" name="principal" required
                    placeholder="user:alice" autocomplete="username" data-testid="signin-principal";
                label for="roles" { "Roles (comma-separated)" }
                input #roles type="text" name="roles" placeholder="approver"
                    data-testid="signin-roles";
            } @else {
                label for="token" { "Bearer token from your identity provider" }
                textarea #token name="token" rows="6" required autocomplete="off"
                    data-testid="signin-token" {}
            }
            button type="submit" data-testid="signin-submit" { "Sign in" }
        }
    }
}

/// `POST /signin`: checks the form, authenticates the identity like the
/// services do, and starts a session.
pub async fn submit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let nonce = session::cookie(&headers, SIGNIN_COOKIE)
        .and_then(|cookie| session::open_signin(&console.key, cookie))
        .unwrap_or_default();
    crate::forms::check(&console, &headers, &nonce, &form.csrf)?;
    let identity = match authenticate(&console, &form).await {
        Ok(identity) => identity,
        Err(why) => return Ok(render(&console, StatusCode::UNAUTHORIZED, Some(&why))),
    };
    let set = console.start_session(identity);
    let clear = session::set_cookie(SIGNIN_COOKIE, "", std::time::Duration::ZERO, console.secure);
    // 303: the browser follows with a GET.
    let mut response = Redirect::to("/").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set.parse().map_err(bad)?);
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear.parse().map_err(bad)?);
    Ok(response)
}

fn bad(_: impl std::fmt::Display) -> ConsoleError {
    ConsoleError::BadRequest("the identity cannot be stored in a cookie".into())
}

/// The identity the form names, as the services would authenticate it.
async fn authenticate(console: &Console, form: &SignInForm) -> Result<Identity, String> {
    let (identity, credentials) = if console.development {
        let identity = Identity::Development {
            principal: form.principal.trim().to_owned(),
            roles: form.roles.trim().to_owned(),
        };
        let credentials = identity.credentials();
        (identity, credentials)
    } else {
        let token = form.token.trim();
        let credentials = airt_kit::credentials::Credentials::none().with_bearer(token);
        let identity = Identity::Bearer {
            principal: String::new(),
            roles: String::new(),
            token: token.to_owned(),
        };
        (identity, credentials)
    };
    let credentials = credentials.map_err(|e| e.to_string())?;
    let principal = verify(console, &credentials)
        .await
        .map_err(|status| status.message().to_owned())?;
    Ok(match identity {
        Identity::Bearer { token, .. } => Identity::Bearer {
            principal: principal.to_string(),
            roles: principal.roles.join(","),
            token,
        },
        development => development,
    })
}

/// Who `credentials` name, checked as the services check them.
pub(crate) async fn verify(
    console: &Console,
    credentials: &airt_kit::credentials::Credentials,
) -> Result<airt_kit::Principal, tonic::Status> {
    let mut probe = tonic::Request::new(());
    credentials.apply(&mut probe);
    console
        .authenticator
        .authenticate_call(probe.metadata())
        .await
}

/// `POST /signout`: ends the session (the cookie is deleted).
pub async fn sign_out(
    State(console): State<Arc<Console>>,
    user: User,
    headers: HeaderMap,
    Form(form): Form<crate::forms::Plain>,
) -> Result<Response, ConsoleError> {
    crate::forms::check(&console, &headers, &user.nonce, &form.csrf)?;
    let clear = session::set_cookie(
        SESSION_COOKIE,
        "",
        std::time::Duration::ZERO,
        console.secure,
    );
    let mut response = Redirect::to("/signin").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, clear.parse().map_err(bad)?);
    Ok(response)
}
