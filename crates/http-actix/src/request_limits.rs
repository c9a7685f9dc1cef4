//! Limits at the protocol edge (docs/api.md, "Limits"): how long a request
//! may take to arrive, and how large its head may be.
//!
//! actix-http reads the head itself and refuses, with a bare status and no
//! body, a head of more than 96 headers or 128 KiB, or one it cannot parse;
//! nothing of ours runs for those. The limits here are lower, so every head
//! that actix lets through but that is still too large is answered by
//! [`request_context`](crate::request_context) in the JSON error shape.

use std::time::Duration;

use actix_web::dev::RequestHead;

use crate::error::{ApiError, ErrorCode};

/// Most request headers (actix itself refuses more than 96, without a body).
pub const MAX_HEADERS: usize = 64;
/// Most bytes of header names and values together (actix itself refuses a
/// head over 128 KiB, without a body).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Longest request target, path and query together.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// Default [`RequestLimits::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`RequestLimits::head_timeout`].
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Default [`RequestLimits::storage_wait`]: the pool's default wait for a
/// connection (5 s) plus its default statement timeout (5 s) plus 1 s.
pub const DEFAULT_STORAGE_WAIT: Duration = Duration::from_secs(11);

/// How long a request may take to arrive, and to be answered by storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// From the head to the body's last byte. Later: 408 `request_timeout`
    /// and the connection is closed.
    pub body_timeout: Duration,
    /// From the connection (or the previous response) to the end of the
    /// head. Later: actix answers 408 with no body and closes the connection.
    pub head_timeout: Duration,
    /// The longest a request waits for a storage call (a database that
    /// stopped answering): later, 503 `service_unavailable`. The program
    /// sets it to its pool's wait for a connection plus its statement
    /// timeout plus 1 s (docs/api.md, "When the database is down").
    pub storage_wait: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            body_timeout: DEFAULT_BODY_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            storage_wait: DEFAULT_STORAGE_WAIT,
        }
    }
}

/// Checks the request head against [`MAX_URI_LEN`], [`MAX_HEADERS`] and
/// [`MAX_HEADER_BYTES`].
///
/// # Errors
/// 414 `uri_too_long` or 431 `request_header_fields_too_large`.
pub(crate) fn check_head(head: &RequestHead) -> Result<(), ApiError> {
    let uri_len = head.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_len > MAX_URI_LEN {
        return Err(ApiError::new(
            ErrorCode::UriTooLong,
            format!("the request target must be at most {MAX_URI_LEN} bytes"),
        ));
    }
    let headers = &head.headers;
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("a request may have at most {MAX_HEADERS} headers"),
        ));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!("request headers must be at most {MAX_HEADER_BYTES} bytes together"),
        ));
    }
    Ok(())
}
