//! Rows as Diesel reads and writes them, and their conversion to and from the
//! domain's types. Nothing here leaves the crate.

use diesel::prelude::*;
use domain::{ApiKey, KeyId, KeyName, KeyType, Mode, NewKey, Scopes, Tenant, TenantId};
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
        })
    }
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
