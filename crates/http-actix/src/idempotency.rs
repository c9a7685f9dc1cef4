//! `Idempotency-Key` at the edge (docs/api.md, "Idempotent requests"): the
//! header, checked; the response a create or a rotation renders once, so
//! that the first answer and every replay are the same bytes; and the
//! replay's `Idempotent-Replayed: true`.

use actix_web::http::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use domain::{IdempotencyKey, IdempotentResponse, ReplayableResponse};
use serde::Serialize;

use crate::error::ApiError;

/// The request header that makes a create or a rotation safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// The response header a replay carries, with the value `true`.
pub const IDEMPOTENT_REPLAYED_HEADER: &str = "Idempotent-Replayed";

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
pub(crate) fn send(outcome: IdempotentResponse) -> HttpResponse {
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
