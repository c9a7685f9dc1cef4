//! The one way domain calls leave the executor threads.

use std::any::Any;

use actix_web::rt::task::spawn_blocking;

use crate::error::ApiError;

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
}
