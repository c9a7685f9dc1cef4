//! The one way domain calls leave the executor threads.

use std::any::Any;
use std::time::Duration;

use actix_web::rt::task::spawn_blocking;
use actix_web::HttpRequest;

use crate::error::ApiError;
use crate::request_limits::RequestLimits;

/// Runs `f` on actix's blocking thread pool inside the current tracing span,
/// so that synchronous domain and database work never blocks an executor
/// thread and its logs keep the request's context.
///
/// # Errors
/// 500 `internal_error` when `f` panicked: a panic is a bug, and answering
/// it like an outage would let a test expecting 503 pass while a mock
/// panics on the blocking thread (the panic's message is logged, never
/// shown). 503 `service_unavailable` when the pool could not run `f` (shut
/// down, or the task was cancelled).
pub async fn blocking<F, R>(f: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    match spawn_blocking(move || span.in_scope(f)).await {
        Ok(value) => Ok(value),
        Err(e) if e.is_panic() => {
            let message = panic_message(e.into_panic());
            Err(ApiError::internal().with_source(format!("blocking task panicked: {message}")))
        }
        Err(e) => Err(ApiError::unavailable().with_source(e.to_string())),
    }
}

/// [`blocking`], answered within `wait`: later, 503 `service_unavailable`
/// (with `Retry-After`), and `f` finishes on its own, its result dropped.
///
/// For calls that reach the database: a database that stops answering
/// without closing its connections (frozen, or behind a network that drops
/// packets) would otherwise hold the request for as long as TCP takes to
/// give up. The store fails later calls at once as soon as it knows
/// (docs/api.md, "When the database is down"); this bounds the calls that
/// were already waiting.
///
/// # Errors
/// As [`blocking`], and 503 when `wait` passes first.
pub async fn blocking_within<F, R>(wait: Duration, f: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    match actix_web::rt::time::timeout(wait, blocking(f)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ApiError::unavailable().with_source(format!(
            "storage gave no answer within {} ms",
            wait.as_millis()
        ))),
    }
}

/// How long a request may wait for storage: the app's [`RequestLimits`]
/// when it registered them, else their default.
pub(crate) fn storage_wait(req: &HttpRequest) -> Duration {
    req.app_data::<RequestLimits>()
        .map_or_else(|| RequestLimits::default().storage_wait, |l| l.storage_wait)
}

/// The text a panic was raised with, when it was raised with text.
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |text| (*text).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[actix_web::test]
    async fn a_panic_on_the_blocking_pool_is_500_not_503() {
        let outcome = blocking(|| -> u8 { panic!("mock without an expectation") }).await;
        let e = outcome.err().unwrap();
        assert_eq!(e.code(), ErrorCode::InternalError);
        assert_eq!(
            e.cause_chain().as_deref(),
            Some("blocking task panicked: mock without an expectation")
        );
    }

    #[actix_web::test]
    async fn a_value_comes_back() {
        assert_eq!(blocking(|| 7).await.ok(), Some(7));
    }

    #[actix_web::test]
    async fn a_call_that_outlasts_its_wait_is_503_at_the_wait() {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let outcome = blocking_within(Duration::from_millis(200), move || {
            // Stuck until the test lets go: a frozen database.
            let _ = held.recv();
            7
        })
        .await;
        let waited = started.elapsed();
        release.send(()).ok();
        let e = outcome.err().unwrap();
        assert_eq!(e.code(), ErrorCode::ServiceUnavailable);
        assert_eq!(
            e.cause_chain().as_deref(),
            Some("storage gave no answer within 200 ms")
        );
        assert!(waited >= Duration::from_millis(200), "{waited:?}");
    }

    #[actix_web::test]
    async fn a_call_within_its_wait_answers() {
        let outcome = blocking_within(Duration::from_secs(5), || 7).await;
        assert_eq!(outcome.ok(), Some(7));
    }
}
