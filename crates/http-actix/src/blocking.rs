//! The one way domain calls leave the executor threads.

use actix_web::web;

use crate::error::ApiError;

/// Runs `f` on actix's blocking thread pool inside the current tracing span,
/// so that synchronous domain and database work never blocks an executor
/// thread and its logs keep the request's context.
///
/// # Errors
/// 503 `service_unavailable` when the pool cannot run `f` (shut down, or the
/// task was canceled or panicked).
pub async fn blocking<F, R>(f: F) -> Result<R, ApiError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    Ok(web::block(move || span.in_scope(f)).await?)
}
