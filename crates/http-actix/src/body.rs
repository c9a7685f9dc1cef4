//! Reading JSON request bodies so that every failure has its own code and
//! `param` (docs/api.md, "Conventions", request bodies): the body is read
//! with a 16 KiB limit, parsed as a JSON object, and read field by field. Each accessor checks the field's
//! JSON type and hands back the value it borrows, which the handler parses
//! into its domain type; the body is never decoded a second time.

use std::future::{poll_fn, Future};
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, HttpRequest};
use futures_core::Stream;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};
use crate::request_limits::{RequestLimits, DEFAULT_BODY_TIMEOUT};
use crate::BODY_LIMIT;

/// A JSON object body, already checked for unknown fields.
#[derive(Debug)]
pub(crate) struct JsonObject(Map<String, Value>);

/// Whether the request says its body is JSON (`application/json`, with any
/// parameters such as `charset=utf-8`).
pub(crate) fn is_json_content_type(req: &HttpRequest) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether the body is sent as it is: no `Content-Encoding`, or only
/// `identity` (any case, any number of times). The service never decodes a
/// body (docs/api.md, "Conventions", request bodies): a decoder would turn
/// the 16 KiB limit into a limit on the compressed size.
pub(crate) fn is_identity_encoded(req: &HttpRequest) -> bool {
    req.headers().get_all(CONTENT_ENCODING).all(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        })
    })
}

/// Reads the body as a JSON object whose fields are all in `known`.
///
/// Checks, in order: content type and encoding (415), size (413), arrival within the
/// body timeout (408), JSON syntax and that it is an object (400
/// `invalid_json`), unknown fields (400 `unknown_field`).
pub(crate) async fn read_object(
    req: &HttpRequest,
    payload: web::Payload,
    known: &[&str],
) -> Result<JsonObject, ApiError> {
    let bytes = read_json_bytes(req, payload).await?;
    parse_object(&bytes, known)
}

/// Reads the bytes of a JSON body: the checks of [`read_object`] up to and
/// including the body timeout, without parsing.
pub(crate) async fn read_json_bytes(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Bytes, ApiError> {
    read_json_bytes_up_to(req, payload, BODY_LIMIT).await
}

/// [`read_json_bytes`] with a size limit of `limit` bytes instead of
/// [`BODY_LIMIT`] (a secret scanner's batch, docs/secret-scanning.md).
pub(crate) async fn read_json_bytes_up_to(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::payload_over(limit);
    if !is_json_content_type(req) {
        return Err(ApiError::unsupported_media_type());
    }
    if !is_identity_encoded(req) {
        return Err(ApiError::unsupported_content_encoding());
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    // A body that trickles in would hold the connection and the handler:
    // it has a deadline (docs/api.md, "Limits").
    let timeout = req
        .app_data::<RequestLimits>()
        .map_or(DEFAULT_BODY_TIMEOUT, |l| l.body_timeout);
    within(timeout, collect(payload, limit))
        .await
        .ok_or_else(|| ApiError::request_timeout(timeout))?
        .map_err(|_| too_large())?
        .map_err(|e| {
            ApiError::invalid_json("the request body could not be read").with_source(e.to_string())
        })
}

/// The body was longer than the limit.
struct Overflow;

/// The whole body, at most `limit` bytes: `Err(Overflow)` past it, the
/// payload's own error when it fails. A body that arrives as one chunk (the
/// usual small JSON body) is that chunk, not a copy of it.
async fn collect(
    mut payload: web::Payload,
    limit: usize,
) -> Result<Result<Bytes, PayloadError>, Overflow> {
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(chunk) = poll_fn(|cx| Pin::new(&mut payload).poll_next(cx)).await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => return Ok(Err(e)),
        };
        let held = first.as_ref().map_or(joined.len(), Bytes::len);
        if held + chunk.len() > limit {
            return Err(Overflow);
        }
        if first.is_none() && joined.is_empty() {
            first = Some(chunk);
            continue;
        }
        if let Some(held) = first.take() {
            joined.extend_from_slice(&held);
        }
        joined.extend_from_slice(&chunk);
    }
    Ok(Ok(first.unwrap_or_else(|| joined.freeze())))
}

/// `future` under a deadline of `limit` (`None` when it passed), the timer
/// armed only when the future is still pending on its second poll.
///
/// Why: actix polls a handler once before it hands it the body that came in
/// the same read as the head, so almost every body is there on the second
/// poll. Arming a timer for each of those (a clock read, a wheel insert and
/// a removal) was a measurable share of a cache-hit verification
/// (docs/performance.md, "Load"). The first pending poll wakes the task
/// again at once; a body still missing then gets the whole `limit`.
async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut polled = false;
    let early = poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if !polled => {
            polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    match early {
        Some(out) => Some(out),
        None => actix_web::rt::time::timeout(limit, future).await.ok(),
    }
}

/// Parses a body already read as a JSON object whose fields are all in
/// `known`: 400 `invalid_json` or `unknown_field`, nothing else.
///
/// # Errors
/// [`ApiError`] with one of those codes.
pub(crate) fn parse_object(bytes: &[u8], known: &[&str]) -> Result<JsonObject, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid_json(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let Value::Object(map) = value else {
        return Err(ApiError::invalid_json(
            "the request body must be a JSON object",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::new(
            ErrorCode::UnknownField,
            format!("unknown field; this endpoint accepts {}", known.join(", ")),
        )
        .with_param(unknown.clone()));
    }
    Ok(JsonObject(map))
}

impl JsonObject {
    /// The field, `None` when absent or `null`.
    fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    /// The field as sent, `null` included (`None`: absent).
    pub(crate) fn raw(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// An optional string field.
    pub(crate) fn opt_str(&self, field: &str) -> Result<Option<&str>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ApiError::invalid_parameter(
                field,
                format!("`{field}` must be a string"),
            )),
        }
    }

    /// Whether the field is in the body, `null` included.
    pub(crate) fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// An optional object field.
    pub(crate) fn opt_object(&self, field: &str) -> Result<Option<&Map<String, Value>>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(ApiError::invalid_parameter(
                field,
                format!("`{field}` must be an object"),
            )),
        }
    }

    /// A required string field.
    pub(crate) fn req_str(&self, field: &str) -> Result<&str, ApiError> {
        self.opt_str(field)?
            .ok_or_else(|| ApiError::missing_parameter(field))
    }

    /// An optional boolean field.
    pub(crate) fn opt_bool(&self, field: &str) -> Result<Option<bool>, ApiError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ApiError::invalid_parameter(
                field,
                format!("`{field}` must be true or false"),
            )),
        }
    }

    /// Whether the field is present with the value `null`.
    pub(crate) fn is_null(&self, field: &str) -> bool {
        self.0.get(field).is_some_and(Value::is_null)
    }

    /// An optional array of strings.
    pub(crate) fn opt_str_array(&self, field: &str) -> Result<Option<Vec<&str>>, ApiError> {
        let wrong =
            || ApiError::invalid_parameter(field, format!("`{field}` must be an array of strings"));
        match self.get(field) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().ok_or_else(wrong))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(wrong()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;
    use std::future::{pending, ready};
    use std::rc::Rc;
    use std::task::Context;

    use actix_web::dev::Payload;
    use actix_web::test::TestRequest;
    use actix_web::FromRequest;

    use super::*;

    /// A future that is pending on its first poll (waking itself) and
    /// ready with `7` on the second, counting its polls.
    fn ready_on_second_poll(polls: Rc<Cell<u32>>) -> impl Future<Output = u32> {
        poll_fn(move |cx| {
            polls.set(polls.get() + 1);
            if polls.get() == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(7)
            }
        })
    }

    #[actix_web::test]
    async fn within_passes_on_what_is_ready_at_once() {
        assert_eq!(within(Duration::from_secs(10), ready(3)).await, Some(3));
    }

    #[actix_web::test]
    async fn within_waits_for_a_future_that_becomes_ready() {
        let polls = Rc::new(Cell::new(0));
        let out = within(Duration::from_secs(10), ready_on_second_poll(polls.clone())).await;
        assert_eq!(out, Some(7));
        assert_eq!(polls.get(), 2);
    }

    #[actix_web::test]
    async fn within_gives_up_on_a_future_that_never_ends() {
        assert_eq!(
            within(Duration::from_millis(20), pending::<()>()).await,
            None
        );
    }

    /// A stream of chunks, each ready at once.
    struct Chunks(VecDeque<Result<Bytes, PayloadError>>);

    impl Stream for Chunks {
        type Item = Result<Bytes, PayloadError>;

        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            Poll::Ready(self.get_mut().0.pop_front())
        }
    }

    /// A `web::Payload` delivering `chunks`, then the end (or `error`).
    async fn payload_of(chunks: &[&'static [u8]], error: Option<PayloadError>) -> web::Payload {
        let mut items: VecDeque<_> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk)))
            .collect();
        items.extend(error.map(Err));
        let stream: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
            Box::pin(Chunks(items));
        let req = TestRequest::default().to_http_request();
        web::Payload::from_request(&req, &mut Payload::from(stream))
            .await
            .expect("a payload is always extracted")
    }

    #[actix_web::test]
    async fn a_body_in_one_chunk_is_that_chunk_not_a_copy() {
        static BODY: &[u8] = br#"{"key":"x"}"#;
        let Ok(Ok(bytes)) = collect(payload_of(&[BODY], None).await, 64).await else {
            panic!("a body within the limit");
        };
        assert_eq!(&bytes[..], BODY);
        assert_eq!(bytes.as_ptr(), BODY.as_ptr());
    }

    #[actix_web::test]
    async fn a_body_in_several_chunks_is_joined_in_order() {
        let payload = payload_of(&[b"{\"ke", b"", b"y\":", b"1}"], None).await;
        let Ok(Ok(bytes)) = collect(payload, 64).await else {
            panic!("a body within the limit");
        };
        assert_eq!(&bytes[..], br#"{"key":1}"#);
    }

    #[actix_web::test]
    async fn no_body_is_empty() {
        let Ok(Ok(bytes)) = collect(payload_of(&[], None).await, 64).await else {
            panic!("an empty body");
        };
        assert!(bytes.is_empty());
    }

    #[actix_web::test]
    async fn a_body_over_the_limit_overflows_whether_in_one_chunk_or_more() {
        assert!(collect(payload_of(&[b"12345"], None).await, 4)
            .await
            .is_err());
        assert!(collect(payload_of(&[b"12", b"345"], None).await, 4)
            .await
            .is_err());
        let Ok(Ok(bytes)) = collect(payload_of(&[b"12", b"34"], None).await, 4).await else {
            panic!("exactly the limit is within it");
        };
        assert_eq!(&bytes[..], b"1234");
    }

    #[actix_web::test]
    async fn a_failing_payload_is_its_error() {
        let payload = payload_of(&[b"{"], Some(PayloadError::Incomplete(None))).await;
        assert!(matches!(
            collect(payload, 64).await,
            Ok(Err(PayloadError::Incomplete(None)))
        ));
    }

    fn encoded(values: &[&str]) -> bool {
        let mut req = TestRequest::default();
        for value in values {
            req = req.append_header((CONTENT_ENCODING, *value));
        }
        is_identity_encoded(&req.to_http_request())
    }

    #[test]
    fn only_an_identity_encoded_body_is_read() {
        assert!(encoded(&[]));
        assert!(encoded(&["identity"]));
        assert!(encoded(&["Identity, identity", "IDENTITY"]));
        for refused in [
            &["gzip"][..],
            &["br"],
            &["deflate"],
            &["zstd"],
            &["identity, gzip"],
            &["identity", "br"],
            &["x-gzip"],
        ] {
            assert!(!encoded(refused), "{refused:?}");
        }
    }

    #[actix_web::test]
    async fn an_encoded_body_is_415_before_it_is_read() {
        let req = TestRequest::post()
            .insert_header((CONTENT_TYPE, "application/json"))
            .insert_header((CONTENT_ENCODING, "gzip"))
            .to_http_request();
        let payload = payload_of(&[b"{}"], None).await;
        let e = read_json_bytes(&req, payload).await.err();
        assert_eq!(
            e.as_ref().map(ApiError::code),
            Some(ErrorCode::UnsupportedMediaType),
            "{e:?}"
        );
    }
}

/// Property tests of the body reader: whatever the bytes, the answer is a
/// body or one of the documented 400 codes, never a panic or a 5xx.
/// `just fuzz` runs them with `PROPTEST_CASES` set high.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    use super::*;

    /// The fields of every route that reads a body.
    const KNOWN: &[&[&str]] = &[
        &["name", "type", "scopes", "expires_in", "mode"],
        &["name", "scopes"],
        &["id", "grace_period"],
        &["key", "scopes"],
        &["keys"],
    ];

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "(name|type|scopes|keys|key|id|\\*|users:read)".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        "(name|type|scopes|expires_in|mode|id|grace_period|key|keys|[a-z]{1,8})",
                        inner
                    ),
                    0..6
                )
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    /// Reads `bytes` as each route would, field by field; every failure must
    /// be one of `allowed`.
    fn read_as_every_route(bytes: &[u8], allowed: &[ErrorCode]) -> Result<(), TestCaseError> {
        for known in KNOWN {
            let checked = |e: ApiError| -> Result<(), TestCaseError> {
                prop_assert!(allowed.contains(&e.code()), "{e}");
                prop_assert_eq!(e.status().as_u16(), 400);
                Ok(())
            };
            match parse_object(bytes, known) {
                Err(e) => checked(e)?,
                Ok(body) => {
                    for field in *known {
                        if let Err(e) = body.opt_str(field) {
                            checked(e)?;
                        }
                        if let Err(e) = body.req_str(field) {
                            checked(e)?;
                        }
                        if let Err(e) = body.opt_str_array(field) {
                            checked(e)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    const BODY_CODES: [ErrorCode; 4] = [
        ErrorCode::InvalidJson,
        ErrorCode::UnknownField,
        ErrorCode::InvalidParameter,
        ErrorCode::MissingParameter,
    ];

    proptest! {
        // Cases from `PROPTEST_CASES` (default 256).
        #![proptest_config(ProptestConfig {
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn arbitrary_bytes_are_a_body_or_a_documented_400(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            read_as_every_route(&bytes, &BODY_CODES)?;
        }

        #[test]
        fn arbitrary_json_is_a_body_or_a_documented_400(value in json()) {
            read_as_every_route(value.to_string().as_bytes(), &BODY_CODES)?;
        }

        /// docs/api.md, "Request bodies": a field given twice counts with its
        /// last value. Written as clients write it (serde would not write a
        /// field twice).
        #[test]
        fn a_field_given_twice_counts_with_its_last_value(
            route in 0..KNOWN.len(),
            values in prop::collection::vec("[a-z]{0,4}", 2..4),
        ) {
            let field = KNOWN[route][0];
            let members: Vec<String> = values.iter().map(|v| format!("\"{field}\":\"{v}\"")).collect();
            let text = format!("{{{}}}", members.join(","));
            let body = parse_object(text.as_bytes(), KNOWN[route]);
            let last = values.last().map(String::as_str);
            let read = body.ok().and_then(|b| b.opt_str(field).ok().flatten().map(str::to_owned));
            prop_assert_eq!(read.as_deref(), last);
        }
    }
}
