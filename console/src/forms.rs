//! What every POST must show before anything is called: it comes from the
//! console's own pages (the `Origin` the browser sends, when it sends one)
//! and carries the CSRF token of the session (or sign-in form) it was
//! served with.

use http::HeaderMap;
use serde::Deserialize;

use crate::Console;
use crate::error::ConsoleError;

/// The largest form body read.
pub const MAX_FORM_BYTES: usize = 64 * 1024;
/// The longest decision comment.
pub const MAX_COMMENT_CHARS: usize = 2_000;

/// Refuses a POST from another origin or without the CSRF token bound to
/// `nonce`.
pub fn check(
    console: &Console,
    headers: &HeaderMap,
    nonce: &str,
    token: &str,
) -> Result<(), ConsoleError> {
    let text = |name: http::header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(ConsoleError::Forbidden("a form posted from another site"));
    }
    let origin = text(http::header::ORIGIN);
    if !origin.is_empty() && origin != "null" {
        let own = origin == console.origin
            || origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == text(http::header::HOST));
        if !own {
            return Err(ConsoleError::Forbidden("a form posted from another origin"));
        }
    }
    if token.is_empty() || !console.key.csrf_valid(nonce, token) {
        return Err(ConsoleError::Forbidden(
            "the form's CSRF token is missing or wrong: reload the page and try again",
        ));
    }
    Ok(())
}

/// A form with nothing but its CSRF token.
#[derive(Debug, Deserialize)]
pub struct Plain {
    #[serde(default)]
    pub csrf: String,
}

/// Approve or reject.
#[derive(Debug, Deserialize)]
pub struct Decision {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub comment: String,
    /// Set by the confirmation step.
    #[serde(default)]
    pub confirmed: String,
    /// The action digest the approver saw (the confirmation step shows it).
    #[serde(default)]
    pub digest: String,
    /// The confirmation's idempotency key: a double submit decides once.
    #[serde(default)]
    pub request_id: String,
}

impl Decision {
    /// The comment, bounded.
    pub fn comment(&self) -> Result<String, ConsoleError> {
        let comment = self.comment.trim();
        if comment.chars().count() > MAX_COMMENT_CHARS {
            return Err(ConsoleError::BadRequest(format!(
                "the comment is longer than {MAX_COMMENT_CHARS} characters"
            )));
        }
        Ok(comment.to_owned())
    }
}
