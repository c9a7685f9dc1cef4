//! The body fields of a key's restrictions and metadata (docs/api.md,
//! "Restricting a key"), as create and PATCH read them: each to its domain
//! value, or 400 `invalid_parameter` naming the field.

use domain::{AllowedIps, AllowedOrigins, KeyRestrictions, Metadata, MetadataPatch};
use serde_json::Value;

use crate::body::JsonObject;
use crate::error::{restriction, ApiError};

/// `allowed_ips` or `allowed_origins` as PATCH reads it: absent (`None`),
/// `null` (`Some(None)`: lift the restriction), or a list.
fn nullable_list<'a>(
    body: &'a JsonObject,
    field: &str,
) -> Result<Option<Option<Vec<&'a str>>>, ApiError> {
    if !body.has(field) {
        return Ok(None);
    }
    Ok(Some(body.opt_str_array(field)?))
}

/// `allowed_ips`: absent, `null`, or 1–100 blocks.
///
/// # Errors
/// 400 `invalid_parameter` (`allowed_ips`).
pub(crate) fn allowed_ips(body: &JsonObject) -> Result<Option<Option<AllowedIps>>, ApiError> {
    nullable_list(body, "allowed_ips")?
        .map(|list| list.map(AllowedIps::parse).transpose().map_err(restriction))
        .transpose()
}

/// `allowed_origins`: absent, `null`, or 1–50 origins.
///
/// # Errors
/// 400 `invalid_parameter` (`allowed_origins`).
pub(crate) fn allowed_origins(
    body: &JsonObject,
) -> Result<Option<Option<AllowedOrigins>>, ApiError> {
    nullable_list(body, "allowed_origins")?
        .map(|list| {
            list.map(AllowedOrigins::parse)
                .transpose()
                .map_err(restriction)
        })
        .transpose()
}

/// Both restrictions of a new key (absent or `null`: none).
///
/// # Errors
/// 400 `invalid_parameter` naming the field.
pub(crate) fn restrictions(body: &JsonObject) -> Result<KeyRestrictions, ApiError> {
    Ok(KeyRestrictions {
        allowed_ips: allowed_ips(body)?.flatten(),
        allowed_origins: allowed_origins(body)?.flatten(),
    })
}

fn metadata_error(e: domain::MetadataError) -> ApiError {
    ApiError::invalid_parameter("metadata", e.to_string())
}

fn wrong_value() -> ApiError {
    ApiError::invalid_parameter("metadata", "metadata values must be strings")
}

/// `metadata` of a new key: an object of strings (absent or `null`: `{}`).
///
/// # Errors
/// 400 `invalid_parameter` (`metadata`).
pub(crate) fn metadata(body: &JsonObject) -> Result<Metadata, ApiError> {
    let Some(map) = body.opt_object("metadata")? else {
        return Ok(Metadata::default());
    };
    let entries = map
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(wrong_value()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Metadata::new(entries).map_err(metadata_error)
}

/// `metadata` of a PATCH: an object whose values are strings (set) or
/// `null` (remove); absent or `null`: no change.
///
/// # Errors
/// 400 `invalid_parameter` (`metadata`).
pub(crate) fn metadata_patch(body: &JsonObject) -> Result<Option<MetadataPatch>, ApiError> {
    let Some(map) = body.opt_object("metadata")? else {
        return Ok(None);
    };
    let entries = map
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), Some(s.clone()))),
            Value::Null => Ok((k.clone(), None)),
            _ => Err(wrong_value()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    MetadataPatch::new(entries)
        .map(Some)
        .map_err(metadata_error)
}
