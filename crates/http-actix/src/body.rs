//! Reading JSON request bodies so that every failure has its own code and
//! `param` (docs/api.md, "Conventions", request bodies): the body is read
//! with a 16 KiB limit, parsed as a JSON object, and read field by field. Each accessor checks the field's
//! JSON type and hands back the value it borrows, which the handler parses
//! into its domain type; the body is never decoded a second time.

use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::{web, HttpRequest};
use serde_json::{Map, Value};

use crate::edge::{RequestLimits, DEFAULT_BODY_TIMEOUT};
use crate::error::{ApiError, ErrorCode};
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

/// Reads the body as a JSON object whose fields are all in `known`.
///
/// Checks, in order: content type (415), size (413), arrival within the
/// body timeout (408), JSON syntax and that it is an object (400
/// `invalid_json`), unknown fields (400 `unknown_field`).
pub(crate) async fn read_object(
    req: &HttpRequest,
    payload: web::Payload,
    known: &[&str],
) -> Result<JsonObject, ApiError> {
    if !is_json_content_type(req) {
        return Err(ApiError::unsupported_media_type());
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Err(ApiError::payload_too_large());
    }
    // A body that trickles in would hold the connection and the handler:
    // it has a deadline (docs/api.md, "Limits").
    let limit = req
        .app_data::<RequestLimits>()
        .map_or(DEFAULT_BODY_TIMEOUT, |l| l.body_timeout);
    let bytes = actix_web::rt::time::timeout(limit, payload.to_bytes_limited(BODY_LIMIT))
        .await
        .map_err(|_| ApiError::request_timeout(limit))?
        .map_err(|_| ApiError::payload_too_large())?
        .map_err(|e| {
            ApiError::invalid_json("the request body could not be read").with_source(e.to_string())
        })?;
    parse_object(&bytes, known)
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

    /// A required string field.
    pub(crate) fn req_str(&self, field: &str) -> Result<&str, ApiError> {
        self.opt_str(field)?
            .ok_or_else(|| ApiError::missing_parameter(field))
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

        #[test]
        fn a_json_object_with_only_known_fields_is_never_invalid_json(
            value in json(),
            route in 0..KNOWN.len(),
        ) {
            let known = KNOWN[route];
            let Value::Object(map) = value else {
                return Ok(());
            };
            let only_known: Map<String, Value> = map
                .into_iter()
                .filter(|(k, _)| known.contains(&k.as_str()))
                .collect();
            let bytes = Value::Object(only_known).to_string();
            prop_assert!(parse_object(bytes.as_bytes(), known).is_ok());
        }
    }
}
