//! Rows as Diesel reads and writes them, and their conversion to and from the
//! domain's types. Nothing here leaves the crate.

use diesel::prelude::*;
use domain::{
    AllowedIps, AllowedOrigins, ApiKey, KeyId, KeyName, KeyRestrictions, KeyType, Metadata, Mode,
    NewKey, Scopes, Tenant, TenantId,
};
use ipnet::IpNet;
use serde_json::Value;
use thiserror::Error;
use time::OffsetDateTime;

use crate::schema::{api_keys, tenants};

/// A stored value the domain refuses: the database was changed behind the
/// service's back, or a migration is missing.
#[derive(Debug, Error)]
#[error("the stored {column} is not valid")]
pub(crate) struct InvalidRow {
    column: &'static str,
}

impl InvalidRow {
    pub(crate) fn new(column: &'static str) -> Self {
        InvalidRow { column }
    }
}

fn invalid(column: &'static str) -> impl FnOnce(domain::IdError) -> InvalidRow {
    move |_| InvalidRow { column }
}

/// A key as read back: every column but the hash, which no read needs.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ApiKeyRow {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) name: String,
    pub(crate) key_type: String,
    pub(crate) mode: String,
    pub(crate) prefix: String,
    pub(crate) last_four: String,
    pub(crate) scopes: Vec<Option<String>>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) last_used_at: Option<OffsetDateTime>,
    pub(crate) expires_at: Option<OffsetDateTime>,
    pub(crate) revokes_at: Option<OffsetDateTime>,
    pub(crate) replaced_by: Option<String>,
    pub(crate) allowed_ips: Option<Vec<Option<IpNet>>>,
    pub(crate) allowed_origins: Option<Vec<Option<String>>>,
    pub(crate) metadata: Value,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = InvalidRow;

    fn try_from(row: ApiKeyRow) -> Result<Self, InvalidRow> {
        let scopes = row
            .scopes
            .iter()
            .map(|s| s.as_deref())
            .collect::<Option<Vec<&str>>>()
            .and_then(|names| Scopes::parse(names).ok())
            .ok_or(InvalidRow { column: "scopes" })?;
        Ok(ApiKey {
            id: KeyId::parse(&row.id).map_err(invalid("id"))?,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(invalid("tenant_id"))?,
            name: KeyName::from_stored(row.name),
            key_type: KeyType::parse(&row.key_type)
                .map_err(|_| InvalidRow { column: "key_type" })?,
            mode: Mode::parse(&row.mode).map_err(|_| InvalidRow { column: "mode" })?,
            prefix: row.prefix,
            last_four: row.last_four,
            scopes,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            revokes_at: row.revokes_at,
            replaced_by: row
                .replaced_by
                .as_deref()
                .map(KeyId::parse)
                .transpose()
                .map_err(invalid("replaced_by"))?,
            // Parsed here, once per read: a cached key is judged from these.
            restrictions: KeyRestrictions {
                allowed_ips: row
                    .allowed_ips
                    .map(|blocks| {
                        blocks
                            .into_iter()
                            .collect::<Option<Vec<IpNet>>>()
                            .and_then(|blocks| AllowedIps::new(blocks).ok())
                    })
                    .map(|ips| ips.ok_or(InvalidRow::new("allowed_ips")))
                    .transpose()?,
                allowed_origins: row
                    .allowed_origins
                    .map(|origins| {
                        origins
                            .iter()
                            .map(|o| o.as_deref())
                            .collect::<Option<Vec<&str>>>()
                            .and_then(|o| AllowedOrigins::parse(o).ok())
                            .ok_or(InvalidRow::new("allowed_origins"))
                    })
                    .transpose()?,
            },
            metadata: metadata_from_json(&row.metadata).ok_or(InvalidRow::new("metadata"))?,
        })
    }
}

/// `allowed_ips` as JSON (an event's old or new value): the blocks, or null.
pub(crate) fn ips_json(ips: Option<&AllowedIps>) -> Value {
    ips.map_or(Value::Null, |ips| {
        ips.blocks()
            .iter()
            .map(|b| Value::from(b.to_string()))
            .collect()
    })
}

/// `allowed_origins` as JSON: the origins, or null.
pub(crate) fn origins_json(origins: Option<&AllowedOrigins>) -> Value {
    origins.map_or(Value::Null, |origins| {
        origins.iter().map(|o| Value::from(o.as_str())).collect()
    })
}

/// `metadata` as JSON: an object of strings.
pub(crate) fn metadata_json(metadata: &Metadata) -> Value {
    Value::Object(
        metadata
            .iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect(),
    )
}

/// The inverse of [`ips_json`]; `None` when it is not one.
pub(crate) fn ips_from_json(value: &Value) -> Option<Option<AllowedIps>> {
    match value {
        Value::Null => Some(None),
        value => strings(value)
            .and_then(|blocks| AllowedIps::parse(blocks).ok())
            .map(Some),
    }
}

/// The inverse of [`origins_json`]; `None` when it is not one.
pub(crate) fn origins_from_json(value: &Value) -> Option<Option<AllowedOrigins>> {
    match value {
        Value::Null => Some(None),
        value => strings(value)
            .and_then(|origins| AllowedOrigins::parse(origins).ok())
            .map(Some),
    }
}

/// The inverse of [`metadata_json`]; `None` when it is not one.
pub(crate) fn metadata_from_json(value: &Value) -> Option<Metadata> {
    let entries = value
        .as_object()?
        .iter()
        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect::<Option<Vec<_>>>()?;
    Metadata::new(entries).ok()
}

fn strings(value: &Value) -> Option<Vec<&str>> {
    value.as_array()?.iter().map(Value::as_str).collect()
}

/// A key to insert, with its hash. Deliberately no `Debug`: the hash must not
/// reach a log (docs/api.md, "Secrets").
#[derive(Insertable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub(crate) struct NewApiKeyRow {
    pub(crate) id: String,
    pub(crate) tenant_id: String,
    pub(crate) hash: Vec<u8>,
    pub(crate) name: String,
    pub(crate) key_type: &'static str,
    pub(crate) mode: &'static str,
    pub(crate) prefix: String,
    pub(crate) last_four: String,
    pub(crate) scopes: Vec<&'static str>,
    pub(crate) created_at: OffsetDateTime,
    pub(crate) last_used_at: Option<OffsetDateTime>,
    pub(crate) expires_at: Option<OffsetDateTime>,
    pub(crate) revokes_at: Option<OffsetDateTime>,
    pub(crate) replaced_by: Option<String>,
    pub(crate) allowed_ips: Option<Vec<IpNet>>,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) metadata: Value,
}

impl From<&NewKey> for NewApiKeyRow {
    fn from(new: &NewKey) -> Self {
        let key = &new.key;
        NewApiKeyRow {
            id: key.id.to_string(),
            tenant_id: key.tenant_id.to_string(),
            hash: new.hash.as_bytes().to_vec(),
            name: key.name.as_str().to_owned(),
            key_type: key.key_type.as_str(),
            mode: key.mode.as_str(),
            prefix: key.prefix.clone(),
            last_four: key.last_four.clone(),
            // Canonical order: `Scopes` keeps its scopes sorted.
            scopes: key.scopes.names().collect(),
            created_at: key.created_at,
            last_used_at: key.last_used_at,
            expires_at: key.expires_at,
            revokes_at: key.revokes_at,
            replaced_by: key.replaced_by.map(|id| id.to_string()),
            allowed_ips: key
                .restrictions
                .allowed_ips
                .as_ref()
                .map(|ips| ips.blocks().to_vec()),
            allowed_origins: key
                .restrictions
                .allowed_origins
                .as_ref()
                .map(|o| o.iter().map(|o| o.as_str().to_owned()).collect()),
            metadata: metadata_json(&key.metadata),
        }
    }
}

/// A tenant, read or written.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
pub(crate) struct TenantRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) created_at: OffsetDateTime,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = InvalidRow;

    fn try_from(row: TenantRow) -> Result<Self, InvalidRow> {
        Ok(Tenant {
            id: TenantId::parse(&row.id).map_err(invalid("id"))?,
            name: row.name,
            created_at: row.created_at,
        })
    }
}

impl From<&Tenant> for TenantRow {
    fn from(tenant: &Tenant) -> Self {
        TenantRow {
            id: tenant.id.to_string(),
            name: tenant.name.clone(),
            created_at: tenant.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn row() -> ApiKeyRow {
        ApiKeyRow {
            id: "key_01HQ2ZJ8N0000000000000000B".to_owned(),
            tenant_id: "tnt_01HQ2ZJ8N0000000000000000A".to_owned(),
            name: "Backend".to_owned(),
            key_type: "secret".to_owned(),
            mode: "live".to_owned(),
            prefix: "sk_live_abcd".to_owned(),
            last_four: "wxyz".to_owned(),
            scopes: vec![
                Some("users:write".to_owned()),
                Some("users:read".to_owned()),
            ],
            created_at: datetime!(2024-01-10 09:00:00 UTC),
            last_used_at: None,
            expires_at: None,
            revokes_at: None,
            replaced_by: Some("key_01HQ2ZJ8N0000000000000000C".to_owned()),
            allowed_ips: None,
            allowed_origins: None,
            metadata: Value::Object(serde_json::Map::new()),
        }
    }

    #[test]
    fn a_valid_row_converts_with_canonical_scopes() {
        let key = ApiKey::try_from(row()).expect("valid row");
        assert_eq!(
            key.scopes.names().collect::<Vec<_>>(),
            ["users:read", "users:write"]
        );
        assert_eq!(
            key.replaced_by.map(|id| id.to_string()).as_deref(),
            Some("key_01HQ2ZJ8N0000000000000000C")
        );
    }

    #[test]
    fn invalid_rows_are_refused_naming_the_column() {
        type Spoil = fn(&mut ApiKeyRow);
        let cases: [(&str, Spoil); 5] = [
            ("id", |r| r.id = "key_bad".to_owned()),
            ("scopes", |r| r.scopes = vec![None]),
            ("scopes", |r| {
                r.scopes = vec![Some("*".to_owned()), Some("users:read".to_owned())]
            }),
            ("mode", |r| r.mode = "staging".to_owned()),
            ("replaced_by", |r| {
                r.replaced_by = Some("tnt_01HQ2ZJ8N0000000000000000A".to_owned())
            }),
        ];
        for (column, spoil) in cases {
            let mut bad = row();
            spoil(&mut bad);
            let error = ApiKey::try_from(bad).expect_err(column);
            assert_eq!(
                error.to_string(),
                format!("the stored {column} is not valid")
            );
        }
    }
}
