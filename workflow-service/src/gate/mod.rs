//! The two questions asked before every step, as clients of the other
//! services: the registry (what is this capability, how risky?) and the
//! policy service (may this principal do it?). Both fail closed: while a
//! dependency is unreachable the caller waits with backoff up to its
//! deadline and then gets an error — never a guessed answer.

pub mod policy;
pub mod registry;

use std::time::Duration;
use tokio::time::Instant;

use tonic::{Code, Status};

/// Why a question could not be answered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GateError {
    /// The dependency did not answer before the deadline.
    #[error("{dependency} unavailable until the step deadline: {last_error}")]
    Unavailable {
        dependency: &'static str,
        last_error: String,
    },
    /// The dependency answered with an error that a retry cannot fix;
    /// `reason` is its `ErrorInfo` reason, kept for the step's failure.
    #[error("{dependency} refused the request: {code:?}: {message}{}", reason.as_ref().map(|r| format!(" [{r}]")).unwrap_or_default())]
    Refused {
        dependency: &'static str,
        code: Code,
        message: String,
        reason: Option<String>,
    },
}

/// Errors that say "no answer yet", not "no". A call that ran past its own
/// timeout comes back CANCELLED ("Timeout expired") from the client side.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
            | Code::Aborted
            | Code::Unknown
    )
}

/// Calls `attempt` until it succeeds, fails for good, or `deadline` passes,
/// sleeping with exponential backoff and jitter between tries.
pub(crate) async fn with_retry<T, F, Fut>(
    dependency: &'static str,
    deadline: Instant,
    mut attempt: F,
) -> Result<T, GateError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let mut backoff =
        airt_kit::backoff::Backoff::doubling(Duration::from_millis(50), Duration::from_secs(2));
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(GateError::Unavailable {
                dependency,
                last_error: "deadline passed before an answer".into(),
            });
        }
        match attempt(remaining.min(Duration::from_secs(10))).await {
            Ok(value) => return Ok(value),
            Err(status) if retryable(&status) => {
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    return Err(GateError::Unavailable {
                        dependency,
                        last_error: format!("{:?}: {}", status.code(), status.message()),
                    });
                }
                tokio::time::sleep(backoff.next_delay().min(remaining)).await;
            }
            Err(status) => {
                return Err(GateError::Refused {
                    dependency,
                    code: status.code(),
                    message: status.message().to_owned(),
                    reason: airt_kit::status::reason_of(&status),
                });
            }
        }
    }
}
