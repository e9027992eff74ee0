//! What can go wrong in a page, and the page that says so: a service's
//! refusal with its code, reason and message (never a stack trace), a
//! refused form, or a sign-in that is needed.

use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;

use crate::view;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A service answered with an error.
    #[error("{}", .0.message())]
    Service(#[from] tonic::Status),
    /// No (valid) session: sign in first.
    #[error("sign in first")]
    SignIn,
    /// A POST without the right CSRF token or from another origin.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A malformed request (bad form field, unknown filter).
    #[error("{0}")]
    BadRequest(String),
}

/// The HTTP status a gRPC refusal is shown with.
fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        match self {
            Self::SignIn => Redirect::to("/signin").into_response(),
            Self::Forbidden(why) => (
                StatusCode::FORBIDDEN,
                view::problem("Refused", "FORBIDDEN", None, why),
            )
                .into_response(),
            Self::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                view::problem("Bad request", "INVALID_ARGUMENT", None, &why),
            )
                .into_response(),
            Self::Service(status) => {
                // An expired or revoked token: sign in again.
                if status.code() == tonic::Code::Unauthenticated {
                    return Redirect::to("/signin?expired=1").into_response();
                }
                let reason = airt_kit::status::reason_of(&status);
                let mut message = status.message().to_owned();
                for violation in airt_kit::status::violations_of(&status) {
                    message.push_str(&format!("\n{}: {}", violation.field, violation.description));
                }
                (
                    http_status(status.code()),
                    view::problem(
                        "The service refused",
                        &format!("{:?}", status.code()),
                        reason.as_deref(),
                        &message,
                    ),
                )
                    .into_response()
            }
        }
    }
}
