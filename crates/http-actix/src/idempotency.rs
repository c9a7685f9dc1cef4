//! `Idempotency-Key` at the edge (docs/api.md, "Idempotent requests"): the
//! header, checked; the response a create or a rotation renders once, so
//! that the first answer and every replay are the same bytes; and the
//! replay's `Idempotent-Replayed: true`.
//!
//! The domain stores the response sealed, as opaque bytes
//! ([`domain::Replayable`]); its shape, [`ReplayableResponse`], is this
//! adapter's.

use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use std::fmt;

use domain::{IdempotencyKey, IdempotentResponse, Replayable};
use serde::Serialize;

use crate::error::ApiError;

/// The request header that makes a create or a rotation safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The response header a replay carries, with the value `true`.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// The response a request got, as this adapter rendered it: what a repeat
/// gets again, byte for byte. Its `Debug` leaves the body out: it holds a
/// full key (docs/api.md, "Secrets").
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ReplayableResponse {
    /// The status code.
    pub(crate) status: u16,
    /// Headers beyond those every response gets (`Location`, say).
    pub(crate) headers: Vec<(String, String)>,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl fmt::Debug for ReplayableResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayableResponse")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field(
                "body",
                &format_args!("[{} bytes, redacted]", self.body.len()),
            )
            .finish()
    }
}

/// Stored as it always was (records written before the domain stopped
/// knowing this shape still open): length-prefixed, big-endian `u32`
/// lengths: status (`u16`), header count, each name and value, body.
impl Replayable for ReplayableResponse {
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 64);
        out.extend_from_slice(&self.status.to_be_bytes());
        put_len(&mut out, self.headers.len());
        for (name, value) in &self.headers {
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, value.as_bytes());
        }
        put_bytes(&mut out, &self.body);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let mut input = Reader(bytes);
        let status = u16::from_be_bytes(input.take(2)?.try_into().ok()?);
        let count = input.len()?;
        let mut headers = Vec::with_capacity(count.min(16));
        for _ in 0..count {
            let name = String::from_utf8(input.bytes()?.to_vec()).ok()?;
            let value = String::from_utf8(input.bytes()?.to_vec()).ok()?;
            headers.push((name, value));
        }
        let body = input.bytes()?.to_vec();
        input.0.is_empty().then_some(ReplayableResponse {
            status,
            headers,
            body,
        })
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Every part is far below 4 GiB (bodies are a few hundred bytes).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn len(&mut self) -> Option<usize> {
        let raw = u32::from_be_bytes(self.take(4)?.try_into().ok()?);
        usize::try_from(raw).ok()
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
}

/// The request's `Idempotency-Key`, checked: `None` without one; 400
/// `invalid_parameter` (param `Idempotency-Key`) if it is not 1 to 255
/// printable ASCII characters, or is sent twice.
pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all(IDEMPOTENCY_KEY_HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let invalid = |message: String| ApiError::invalid_parameter(IDEMPOTENCY_KEY_HEADER, message);
    if values.next().is_some() {
        return Err(invalid(
            "send one `Idempotency-Key` header, not several".to_owned(),
        ));
    }
    let raw = value
        .to_str()
        .map_err(|_| invalid("`Idempotency-Key` must be printable ASCII".to_owned()))?;
    IdempotencyKey::parse(raw)
        .map(Some)
        .map_err(|e| invalid(e.to_string()))
}

/// A JSON response with `status` and `headers`, rendered to the bytes that
/// are sent and, for an idempotent request, kept for its replays.
pub(crate) fn json_response(
    status: StatusCode,
    headers: Vec<(String, String)>,
    body: &impl Serialize,
) -> ReplayableResponse {
    // The response bodies are strings, lists of strings and nulls: they
    // always serialise.
    #[allow(clippy::expect_used)]
    let body = serde_json::to_vec(body).expect("a response body serialises");
    ReplayableResponse {
        status: status.as_u16(),
        headers,
        body,
    }
}

/// The HTTP response of `outcome`; a replay says so. Every idempotent
/// response (a creation or a rotation) carries a full key, so none may be
/// cached (`Cache-Control: no-store`), also a replay of a record stored
/// before that header was part of the rendered response.
pub(crate) fn send(outcome: IdempotentResponse<ReplayableResponse>) -> HttpResponse {
    let mut response = send_once(outcome.response);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if outcome.replayed {
        response.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// The HTTP response of a rendered JSON response.
pub(crate) fn send_once(rendered: ReplayableResponse) -> HttpResponse {
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::OK);
    let mut builder = HttpResponse::build(status);
    builder.insert_header((CONTENT_TYPE, "application/json"));
    for (name, value) in rendered.headers {
        builder.insert_header((name, value));
    }
    builder.body(rendered.body)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn key_of(req: TestRequest) -> Result<Option<String>, (u16, String, Option<String>)> {
        idempotency_key(&req.to_http_request())
            .map(|k| k.map(|k| k.as_str().to_owned()))
            .map_err(|e| {
                let body = e.body(&req_id());
                (
                    e.code().status().as_u16(),
                    body.error.code.as_str().to_owned(),
                    body.error.param,
                )
            })
    }

    fn req_id() -> String {
        "req_test".to_owned()
    }

    fn response() -> ReplayableResponse {
        ReplayableResponse {
            status: 201,
            headers: vec![("location".into(), "/v1/api-keys/key_1".into())],
            body: br#"{"key":"sk_live_secret"}"#.to_vec(),
        }
    }

    /// The bytes of `response()` as the domain sealed them before this
    /// adapter owned the shape: stored records must still open.
    const STORED: &[u8] = b"\x00\xc9\x00\x00\x00\x01\x00\x00\x00\x08location\x00\x00\x00\x12/v1/api-keys/key_1\x00\x00\x00\x18{\"key\":\"sk_live_secret\"}";

    #[test]
    fn a_response_is_stored_in_the_format_of_earlier_records() {
        assert_eq!(response().to_bytes(), STORED);
        assert_eq!(ReplayableResponse::from_bytes(STORED), Some(response()));
        for cut in 0..STORED.len() {
            assert_eq!(
                ReplayableResponse::from_bytes(&STORED[..cut]),
                None,
                "{cut}"
            );
        }
        let mut longer = STORED.to_vec();
        longer.push(0);
        assert_eq!(ReplayableResponse::from_bytes(&longer), None);
    }

    #[test]
    fn debug_shows_no_body() {
        let text = format!("{:?}", response());
        assert!(!text.contains("sk_live_secret"), "{text}");
        assert!(text.contains("24 bytes, redacted"), "{text}");
    }

    #[test]
    fn the_header_is_optional_and_checked() {
        assert_eq!(key_of(TestRequest::default()), Ok(None));
        assert_eq!(
            key_of(TestRequest::default().insert_header(("Idempotency-Key", "order-42 retry"))),
            Ok(Some("order-42 retry".to_owned()))
        );
        let refused = Err((
            400,
            "invalid_parameter".to_owned(),
            Some("Idempotency-Key".to_owned()),
        ));
        assert_eq!(
            key_of(TestRequest::default().insert_header(("Idempotency-Key", "x".repeat(256)))),
            refused
        );
        assert_eq!(
            key_of(TestRequest::default().insert_header((
                "Idempotency-Key",
                HeaderValue::from_bytes(b"caf\xc3\xa9").expect("a header value")
            ))),
            refused
        );
        assert_eq!(
            key_of(
                TestRequest::default()
                    .append_header(("Idempotency-Key", "a"))
                    .append_header(("Idempotency-Key", "b"))
            ),
            refused
        );
    }
}
