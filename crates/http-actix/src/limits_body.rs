//! `rate_limit` and `credits` in request bodies (docs/api.md, "Limiting a
//! key's use"): read from JSON into the domain's value types, which check
//! every bound.

use domain::{Credits, LimitError, LimitsUpdate, RateLimit, Refill, RefillInterval};
use serde_json::{Map, Value};

use crate::body::JsonObject;
use crate::error::{ApiError, ErrorCode};

fn object<'a>(
    value: &'a Value,
    param: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::invalid_parameter(
            param,
            format!("`{param}` must be an object or null"),
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::new(
            ErrorCode::UnknownField,
            format!("unknown field; `{param}` accepts {}", known.join(", ")),
        )
        .with_param(format!("{param}.{unknown}")));
    }
    Ok(map)
}

fn number(map: &Map<String, Value>, param: &str, field: &str) -> Result<u64, ApiError> {
    let name = format!("{param}.{field}");
    match map.get(field) {
        None | Some(Value::Null) => Err(ApiError::missing_parameter(&name)),
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::invalid_parameter(&name, format!("`{name}` must be a whole number"))
        }),
    }
}

fn text<'a>(map: &'a Map<String, Value>, param: &str, field: &str) -> Result<&'a str, ApiError> {
    let name = format!("{param}.{field}");
    match map.get(field) {
        None | Some(Value::Null) => Err(ApiError::missing_parameter(&name)),
        Some(v) => v.as_str().ok_or_else(|| {
            ApiError::invalid_parameter(&name, format!("`{name}` must be a string"))
        }),
    }
}

fn out_of_bounds(name: &str, e: LimitError) -> ApiError {
    match e {
        LimitError::Window(d) => {
            ApiError::new(ErrorCode::InvalidDuration, format!("`{name}`: {d}")).with_param(name)
        }
        other => ApiError::invalid_parameter(name, other.to_string()),
    }
}

/// `rate_limit`: null or `{"limit", "window"}`.
fn rate_limit(value: &Value) -> Result<Option<RateLimit>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    let map = object(value, "rate_limit", &["limit", "window"])?;
    let limit = number(map, "rate_limit", "limit")?;
    let window = text(map, "rate_limit", "window")?;
    let window =
        domain::limits::parse_window(window).map_err(|e| out_of_bounds("rate_limit.window", e))?;
    RateLimit::new(limit, window)
        .map(Some)
        .map_err(|e| out_of_bounds("rate_limit.limit", e))
}

/// `credits`: null or `{"remaining", "refill"}`, `refill` null or
/// `{"amount", "interval"}`.
fn credits(value: &Value) -> Result<Option<Credits>, ApiError> {
    if value.is_null() {
        return Ok(None);
    }
    let map = object(value, "credits", &["remaining", "refill"])?;
    let remaining = number(map, "credits", "remaining")?;
    let refill = match map.get("refill") {
        None | Some(Value::Null) => None,
        Some(refill) => {
            let r = object(refill, "credits.refill", &["amount", "interval"])?;
            let amount = number(r, "credits.refill", "amount")?;
            let interval = RefillInterval::parse(text(r, "credits.refill", "interval")?)
                .map_err(|e| out_of_bounds("credits.refill.interval", e))?;
            Some(
                Refill::new(amount, interval)
                    .map_err(|e| out_of_bounds("credits.refill.amount", e))?,
            )
        }
    };
    Credits::new(remaining, refill)
        .map(Some)
        .map_err(|e| out_of_bounds("credits.remaining", e))
}

/// The limits a body sets: an absent field leaves its limit as it is, null
/// removes it.
///
/// # Errors
/// 400 `invalid_parameter`, `invalid_duration`, `missing_parameter` or
/// `unknown_field`, with the field's path as `param`.
pub(crate) fn limits_update(body: &JsonObject) -> Result<LimitsUpdate, ApiError> {
    Ok(LimitsUpdate {
        rate_limit: body.raw("rate_limit").map(rate_limit).transpose()?,
        credits: body.raw("credits").map(credits).transpose()?,
    })
}
