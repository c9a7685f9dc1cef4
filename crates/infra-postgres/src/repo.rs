//! The domain's repository ports on [`PgStore`].
//!
//! Round trips per call (happy path): `find_by_hash`, `find`, `list`,
//! `touch_last_used`, `rotate`, an update that does not narrow scopes: one
//! statement each. `insert`, `revoke` and a narrowing update: `BEGIN`, the
//! tenant lock, one statement, `COMMIT`. The lock must be its own statement:
//! under READ COMMITTED a statement reads one snapshot taken before it waited
//! for the lock, so the count or guard check after it would miss a write the
//! lock holder just committed.

use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::query_builder::BoxedSqlQuery;
use diesel::query_builder::SqlQuery;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Nullable, Text, Timestamptz};
use domain::{
    ApiKey, ApiKeyRepository, CreateTenantRepoError, InsertError, KeyChanges, KeyHash, KeyId,
    KeyPage, ListQuery, NewKey, RepositoryError, RevokeRepoError, RotateRepoError, Tenant,
    TenantId, TenantRepository, UpdateRepoError, LAST_USED_RESOLUTION,
};
use time::OffsetDateTime;

use crate::errors::{is_foreign_key_violation, is_unique_violation, Fail};
use crate::models::{ApiKeyRow, NewApiKeyRow, TenantRow};
use crate::schema::{api_keys, tenants};
use crate::store::PgStore;

/// Inserts a key ($1..$14) only if the tenant has fewer than $16 keys that
/// count for the limit at $15 (`ApiKey::counts_for_key_limit`: neither revoked
/// nor expired). The count stops at the limit.
const INSERT_UNDER_LIMIT: &str = "\
INSERT INTO api_keys (id, tenant_id, hash, name, key_type, mode, prefix, last_four, scopes, \
                      created_at, last_used_at, expires_at, revokes_at, replaced_by)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14
WHERE (SELECT count(*) FROM (
           SELECT 1 FROM api_keys
           WHERE tenant_id = $2
             AND (revokes_at IS NULL OR revokes_at > $15)
             AND (expires_at IS NULL OR expires_at > $15)
           LIMIT $16) AS counted) < $16";

/// Rotates key $16 of tenant $15 into the successor ($1..$14) as one statement:
/// the old key gets `revokes_at = $17` and `replaced_by` only if it is active at
/// $18 (no revocation scheduled, not expired), and the successor is inserted
/// only if that update happened. Of concurrent rotations the first takes the
/// row lock; the others re-check the condition on the updated row, find it no
/// longer active, and insert nothing.
const ROTATE: &str = "\
WITH old AS (
    UPDATE api_keys SET revokes_at = $17, replaced_by = $1
    WHERE tenant_id = $15 AND id = $16
      AND revokes_at IS NULL
      AND (expires_at IS NULL OR expires_at > $18)
    RETURNING id)
INSERT INTO api_keys (id, tenant_id, hash, name, key_type, mode, prefix, last_four, scopes, \
                      created_at, last_used_at, expires_at, revokes_at, replaced_by)
SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 FROM old";

/// The full-access guard, shared by [`REVOKE`] and [`UPDATE`]: key `k` ($2
/// of tenant $1) does not count for the guard at $3
/// (`ApiKey::counts_for_full_access_guard`), or another key `g` of the tenant
/// does. A macro, not a `const`, so that `concat!` can splice it in.
macro_rules! guard_allows_sql {
    () => {
        "(NOT (k.key_type = 'secret' AND k.mode = 'live' AND k.scopes = ARRAY['*']::TEXT[]
            AND k.revokes_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $3))
       OR EXISTS (
           SELECT 1 FROM api_keys AS g
           WHERE g.tenant_id = $1 AND g.id <> $2
             AND g.key_type = 'secret' AND g.mode = 'live' AND g.scopes = ARRAY['*']::TEXT[]
             AND g.revokes_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > $3)))"
    };
}

/// Revokes key $2 of tenant $1 at $3 if it is not revoked at $3 and the
/// full-access guard allows it.
const REVOKE: &str = concat!(
    "\
UPDATE api_keys AS k SET revokes_at = $3
WHERE k.tenant_id = $1 AND k.id = $2
  AND (k.revokes_at IS NULL OR k.revokes_at > $3)
  AND ",
    guard_allows_sql!(),
    "
RETURNING id, tenant_id, name, key_type, mode, prefix, last_four, scopes, created_at, \
          last_used_at, expires_at, revokes_at, replaced_by"
);

/// Sets the name ($4, unless NULL) and scopes ($5, unless NULL) of key $2 of
/// tenant $1 if it is not revoked at $3 and, when the change narrows the scopes
/// ($6), the full-access guard allows it (as for [`REVOKE`]).
const UPDATE: &str = concat!(
    "\
UPDATE api_keys AS k SET name = coalesce($4, k.name), scopes = coalesce($5, k.scopes)
WHERE k.tenant_id = $1 AND k.id = $2
  AND (k.revokes_at IS NULL OR k.revokes_at > $3)
  AND (NOT $6 OR ",
    guard_allows_sql!(),
    ")
RETURNING id, tenant_id, name, key_type, mode, prefix, last_four, scopes, created_at, \
          last_used_at, expires_at, revokes_at, replaced_by"
);

/// Binds a key's 14 columns as $1..$14, in `NewApiKeyRow` order.
fn bind_key<'a>(
    query: BoxedSqlQuery<'a, Pg, SqlQuery>,
    row: &'a NewApiKeyRow,
) -> BoxedSqlQuery<'a, Pg, SqlQuery> {
    query
        .bind::<Text, _>(&row.id)
        .bind::<Text, _>(&row.tenant_id)
        .bind::<Bytea, _>(&row.hash)
        .bind::<Text, _>(&row.name)
        .bind::<Text, _>(row.key_type)
        .bind::<Text, _>(row.mode)
        .bind::<Text, _>(&row.prefix)
        .bind::<Text, _>(&row.last_four)
        .bind::<Array<Text>, _>(&row.scopes)
        .bind::<Timestamptz, _>(row.created_at)
        .bind::<Nullable<Timestamptz>, _>(row.last_used_at)
        .bind::<Nullable<Timestamptz>, _>(row.expires_at)
        .bind::<Nullable<Timestamptz>, _>(row.revokes_at)
        .bind::<Nullable<Text>, _>(&row.replaced_by)
}

fn to_key<E: From<RepositoryError>>(row: ApiKeyRow) -> Result<ApiKey, Fail<E>> {
    ApiKey::try_from(row)
        .map_err(|e| Fail::Domain(RepositoryError::failure("reading a stored key", e).into()))
}

/// Takes the tenant's lock for the rest of the transaction; `false` if there
/// is no such tenant. `FOR NO KEY UPDATE` serialises the lockers without
/// blocking the foreign key checks of concurrent inserts (`FOR KEY SHARE`).
fn lock_tenant(conn: &mut PgConnection, tenant: &str) -> QueryResult<bool> {
    tenants::table
        .find(tenant)
        .select(tenants::id)
        .for_no_key_update()
        .first::<String>(conn)
        .optional()
        .map(|found| found.is_some())
}

fn find_row(conn: &mut PgConnection, tenant: &str, id: &str) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::tenant_id.eq(tenant))
        .filter(api_keys::id.eq(id))
        .select(ApiKeyRow::as_select())
        .first(conn)
        .optional()
}

impl ApiKeyRepository for PgStore {
    fn insert(
        &self,
        new: &NewKey,
        max_active: u32,
        now: OffsetDateTime,
    ) -> Result<(), InsertError> {
        let row = NewApiKeyRow::from(new);
        self.run(
            "inserting a key",
            |conn| {
                conn.transaction(|conn| {
                    if !lock_tenant(conn, &row.tenant_id)? {
                        return Err(Fail::Domain(InsertError::UnknownTenant));
                    }
                    let inserted = bind_key(sql_query(INSERT_UNDER_LIMIT).into_boxed(), &row)
                        .bind::<Timestamptz, _>(now)
                        .bind::<BigInt, _>(i64::from(max_active))
                        .execute(conn)?;
                    if inserted == 0 {
                        return Err(Fail::Domain(InsertError::LimitReached));
                    }
                    Ok(())
                })
            },
            |e| {
                if is_unique_violation(e) {
                    Some(InsertError::Duplicate)
                } else if is_foreign_key_violation(e) {
                    Some(InsertError::UnknownTenant)
                } else {
                    None
                }
            },
        )
    }

    fn find_by_hash(&self, hash: &KeyHash) -> Result<Option<ApiKey>, RepositoryError> {
        self.run(
            "finding a key by hash",
            |conn| {
                let row = api_keys::table
                    .filter(api_keys::hash.eq(hash.as_bytes().as_slice()))
                    .select(ApiKeyRow::as_select())
                    .first(conn)
                    .optional()?;
                row.map(to_key).transpose()
            },
            |_| None,
        )
    }

    fn find(&self, tenant: &TenantId, id: &KeyId) -> Result<Option<ApiKey>, RepositoryError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.run(
            "finding a key",
            |conn| find_row(conn, &tenant, &id)?.map(to_key).transpose(),
            |_| None,
        )
    }

    fn list(&self, tenant: &TenantId, query: &ListQuery) -> Result<KeyPage, RepositoryError> {
        let tenant = tenant.to_string();
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        self.run(
            "listing keys",
            |conn| {
                let mut select = api_keys::table
                    .filter(api_keys::tenant_id.eq(&tenant))
                    .select(ApiKeyRow::as_select())
                    .order(api_keys::id.desc())
                    .limit(i64::from(query.limit) + 1)
                    .into_boxed();
                if let Some(key_type) = query.key_type {
                    select = select.filter(api_keys::key_type.eq(key_type.as_str()));
                }
                if let Some(mode) = query.mode {
                    select = select.filter(api_keys::mode.eq(mode.as_str()));
                }
                if !query.include_revoked {
                    select = select.filter(
                        api_keys::revokes_at
                            .is_null()
                            .or(api_keys::revokes_at.gt(query.now)),
                    );
                }
                if let Some(after) = query.starting_after {
                    select = select.filter(api_keys::id.lt(after.to_string()));
                }
                let mut keys = select
                    .load::<ApiKeyRow>(conn)?
                    .into_iter()
                    .map(to_key)
                    .collect::<Result<Vec<_>, _>>()?;
                let has_more = keys.len() > limit;
                keys.truncate(limit);
                Ok(KeyPage { keys, has_more })
            },
            |_| None,
        )
    }

    fn update(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        changes: &KeyChanges,
        now: OffsetDateTime,
    ) -> Result<ApiKey, UpdateRepoError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let name = changes.name.as_ref().map(|n| n.as_str());
        let scopes: Option<Vec<&str>> = changes.scopes.as_ref().map(|s| s.names().collect());
        // Only narrowing the scopes can take away a guard key; everything else
        // needs neither the tenant lock nor a transaction.
        let narrows = changes.scopes.as_ref().is_some_and(|s| !s.is_full_access());
        let attempt = |conn: &mut PgConnection| -> Result<ApiKey, Fail<UpdateRepoError>> {
            if narrows && !lock_tenant(conn, &tenant)? {
                return Err(Fail::Domain(UpdateRepoError::NotFound));
            }
            let updated = sql_query(UPDATE)
                .bind::<Text, _>(&tenant)
                .bind::<Text, _>(&id)
                .bind::<Timestamptz, _>(now)
                .bind::<Nullable<Text>, _>(name)
                .bind::<Nullable<Array<Text>>, _>(&scopes)
                .bind::<Bool, _>(narrows)
                .get_result::<ApiKeyRow>(conn)
                .optional()?;
            if let Some(row) = updated {
                return to_key(row);
            }
            // Nothing written: say why.
            let Some(row) = find_row(conn, &tenant, &id)? else {
                return Err(Fail::Domain(UpdateRepoError::NotFound));
            };
            if to_key::<UpdateRepoError>(row)?.is_revoked(now) {
                Err(Fail::Domain(UpdateRepoError::Revoked))
            } else {
                Err(Fail::Domain(UpdateRepoError::LastFullAccessKey))
            }
        };
        self.run(
            "updating a key",
            |conn| {
                if narrows {
                    conn.transaction(attempt)
                } else {
                    attempt(conn)
                }
            },
            |_| None,
        )
    }

    fn revoke(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<ApiKey, RevokeRepoError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.run(
            "revoking a key",
            |conn| {
                conn.transaction(|conn| {
                    if !lock_tenant(conn, &tenant)? {
                        return Err(Fail::Domain(RevokeRepoError::NotFound));
                    }
                    let revoked = sql_query(REVOKE)
                        .bind::<Text, _>(&tenant)
                        .bind::<Text, _>(&id)
                        .bind::<Timestamptz, _>(now)
                        .get_result::<ApiKeyRow>(conn)
                        .optional()?;
                    if let Some(row) = revoked {
                        return to_key(row);
                    }
                    // Nothing written: unknown, already revoked (returned as
                    // it is), or the tenant's last guard key.
                    let Some(row) = find_row(conn, &tenant, &id)? else {
                        return Err(Fail::Domain(RevokeRepoError::NotFound));
                    };
                    let key = to_key(row)?;
                    if key.is_revoked(now) {
                        Ok(key)
                    } else {
                        Err(Fail::Domain(RevokeRepoError::LastFullAccessKey))
                    }
                })
            },
            |_| None,
        )
    }

    fn rotate(
        &self,
        tenant: &TenantId,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), RotateRepoError> {
        let (tenant, old) = (tenant.to_string(), old.to_string());
        let row = NewApiKeyRow::from(successor);
        self.run(
            "rotating a key",
            |conn| {
                let inserted = bind_key(sql_query(ROTATE).into_boxed(), &row)
                    .bind::<Text, _>(&tenant)
                    .bind::<Text, _>(&old)
                    .bind::<Timestamptz, _>(revokes_at)
                    .bind::<Timestamptz, _>(now)
                    .execute(conn)?;
                if inserted == 1 {
                    return Ok(());
                }
                // Nothing written: unknown key, or no longer active.
                match find_row(conn, &tenant, &old)? {
                    None => Err(Fail::Domain(RotateRepoError::NotFound)),
                    Some(_) => Err(Fail::Domain(RotateRepoError::NotActive)),
                }
            },
            |e| is_unique_violation(e).then_some(RotateRepoError::Duplicate),
        )
    }

    fn touch_last_used(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        now: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let stale_before = now - LAST_USED_RESOLUTION;
        self.run(
            "recording a key's use",
            |conn| {
                let written = diesel::update(
                    api_keys::table
                        .filter(api_keys::tenant_id.eq(&tenant))
                        .filter(api_keys::id.eq(&id))
                        .filter(
                            api_keys::last_used_at
                                .is_null()
                                .or(api_keys::last_used_at.le(stale_before)),
                        ),
                )
                .set(api_keys::last_used_at.eq(now))
                .execute(conn)?;
                Ok(written > 0)
            },
            |_| None,
        )
    }
}

impl TenantRepository for PgStore {
    fn create(&self, tenant: &Tenant, keys: &[NewKey]) -> Result<(), CreateTenantRepoError> {
        if keys.iter().any(|k| k.key.tenant_id != tenant.id) {
            return Err(RepositoryError::failure(
                "creating a tenant",
                "a first key belongs to another tenant",
            )
            .into());
        }
        let tenant_row = TenantRow::from(tenant);
        let key_rows: Vec<NewApiKeyRow> = keys.iter().map(NewApiKeyRow::from).collect();
        self.run(
            "creating a tenant",
            |conn| {
                conn.transaction(|conn| {
                    diesel::insert_into(tenants::table)
                        .values(&tenant_row)
                        .execute(conn)?;
                    if !key_rows.is_empty() {
                        diesel::insert_into(api_keys::table)
                            .values(&key_rows)
                            .execute(conn)?;
                    }
                    Ok(())
                })
            },
            |e| is_unique_violation(e).then_some(CreateTenantRepoError::Duplicate),
        )
    }

    fn find_tenant(&self, id: &TenantId) -> Result<Option<Tenant>, RepositoryError> {
        let id = id.to_string();
        self.run(
            "finding a tenant",
            |conn| {
                let row = tenants::table
                    .find(&id)
                    .select(TenantRow::as_select())
                    .first(conn)
                    .optional()?;
                row.map(to_tenant).transpose()
            },
            |_| None,
        )
    }

    fn find_tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, RepositoryError> {
        self.run(
            "finding a tenant by name",
            |conn| {
                let row = tenants::table
                    .filter(tenants::name.eq(name))
                    .order((tenants::created_at.asc(), tenants::id.asc()))
                    .select(TenantRow::as_select())
                    .first(conn)
                    .optional()?;
                row.map(to_tenant).transpose()
            },
            |_| None,
        )
    }
}

fn to_tenant(row: TenantRow) -> Result<Tenant, Fail<RepositoryError>> {
    Tenant::try_from(row)
        .map_err(|e| Fail::Domain(RepositoryError::failure("reading a stored tenant", e)))
}
