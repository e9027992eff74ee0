//! The signed-in user of a request: read from the session cookie, with the
//! credentials every service call carries and the CSRF token of the forms
//! the page shows. A request without a valid session is sent to sign in.

use std::sync::Arc;

use airt_kit::credentials::Credentials;
use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::Console;
use crate::error::ConsoleError;
use crate::session::{Identity, SESSION_COOKIE, Session};

/// Who is signed in.
#[derive(Debug, Clone)]
pub struct User {
    pub identity: Identity,
    /// The CSRF token of this session's forms.
    pub csrf: String,
    pub(crate) nonce: String,
    credentials: Credentials,
}

impl User {
    /// A `tonic` request carrying the user's credentials (and the trace).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.credentials.apply(&mut request);
        request
    }

    #[cfg(test)]
    pub fn for_tests(identity: Identity) -> Self {
        Self {
            credentials: identity.credentials().unwrap_or_default(),
            identity,
            csrf: "token".into(),
            nonce: "nonce".into(),
        }
    }
}

impl FromRequestParts<Arc<Console>> for User {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let session = crate::session::cookie(&parts.headers, SESSION_COOKIE)
            .and_then(|cookie| Session::open(&console.key, cookie))
            .ok_or(ConsoleError::SignIn)?;
        let credentials = session
            .identity
            .credentials()
            .map_err(|_| ConsoleError::SignIn)?;
        Ok(Self {
            csrf: console.key.csrf_token(&session.nonce),
            nonce: session.nonce,
            identity: session.identity,
            credentials,
        })
    }
}
