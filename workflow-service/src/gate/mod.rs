//! The two questions asked before every step, as clients of the other
//! services: the registry (what is this capability, how risky?) and the
//! policy service (may this principal do it?). Both fail closed: while a
//! dependency is unreachable the caller waits with backoff up to its
//! deadline and then gets an error — never a guessed answer.

pub mod policy;
pub mod registry;

use std::time::{Duration, Instant};

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
    /// The dependency answered with an error that a retry cannot fix.
    #[error("{dependency} refused the request: {code:?}: {message}")]
    Refused {
        dependency: &'static str,
        code: Code,
        message: String,
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

/// 50-100% of `delay`, varied by the clock's sub-millisecond digits, so
/// callers that failed together do not retry in lockstep.
pub(crate) fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.5 + (airt_kit::clock::now_micros().rem_euclid(1000) as f64) / 2000.0)
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
    let mut delay = Duration::from_millis(50);
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
                tokio::time::sleep(jittered(delay).min(remaining)).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(status) => {
                return Err(GateError::Refused {
                    dependency,
                    code: status.code(),
                    message: status.message().to_owned(),
                });
            }
        }
    }
}
