//! Query strings of the list endpoints, read the same way everywhere: a
//! malformed string, a repeated or an unknown parameter is refused before
//! any value is looked at.

use actix_web::web;
use domain::PageLimit;

use crate::error::{ApiError, ErrorCode};

/// The query's `(name, value)` pairs, in order, once each checked that the
/// string is well-formed, that no name repeats and that every name is one of
/// `known`.
///
/// # Errors
/// `invalid_parameter` for a malformed string or a repeated name,
/// `unknown_parameter` (with `param`) for a name not in `known`.
pub(crate) fn query_pairs(query: &str, known: &[&str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|_| ApiError::new(ErrorCode::InvalidParameter, "the query string is malformed"))?
        .into_inner();
    let mut seen: Vec<&str> = Vec::new();
    for (name, _) in &pairs {
        if !known.contains(&name.as_str()) {
            return Err(ApiError::new(
                ErrorCode::UnknownParameter,
                format!(
                    "unknown query parameter; this endpoint accepts {}",
                    known.join(", ")
                ),
            )
            .with_param(name.clone()));
        }
        if seen.contains(&name.as_str()) {
            return Err(ApiError::invalid_parameter(
                name,
                format!("`{name}` may be given only once"),
            ));
        }
        seen.push(name);
    }
    Ok(pairs)
}

/// `starting_after`: the id of the last item of the previous page, read by
/// `parse` (such as `KeyId::parse(..).ok()`); `what` names its kind in the
/// refusal (`a key id`).
///
/// # Errors
/// `invalid_parameter` with `param` `starting_after`.
pub(crate) fn parse_cursor<T>(
    value: &str,
    parse: impl FnOnce(&str) -> Option<T>,
    what: &str,
) -> Result<T, ApiError> {
    parse(value).ok_or_else(|| {
        ApiError::invalid_parameter("starting_after", format!("`starting_after` must be {what}"))
    })
}

/// `limit`: digits only, 1 to 100.
///
/// # Errors
/// `invalid_parameter` with `param` `limit`.
pub(crate) fn parse_limit(value: &str) -> Result<PageLimit, ApiError> {
    let wrong = || ApiError::invalid_parameter("limit", "`limit` must be an integer from 1 to 100");
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(wrong());
    }
    let n = value.parse::<u32>().map_err(|_| wrong())?;
    PageLimit::new(n).map_err(|_| wrong())
}
