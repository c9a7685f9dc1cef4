//! The domain's repository ports on [`PgStore`].
//!
//! Round trips per call (happy path): `find_by_hash`, `find`, `list`,
//! `record_uses` (any number of keys), `rotate`, an update that does not narrow scopes: one
//! statement each. `insert`, `revoke` and a narrowing update: `BEGIN`, the
//! tenant lock, one statement, `COMMIT`. The lock must be its own statement:
//! under READ COMMITTED a statement reads one snapshot taken before it waited
//! for the lock, so the count or guard check after it would miss a write the
//! lock holder just committed.
//!
//! Every write statement also inserts its events (`key_events`, whose trigger
//! sends `NOTIFY apikeys_key_events`) and checks its actor, in the same
//! statement: events cost no extra round trip. The actor check locks the
//! actor's row and the changed key's row together, in id order
//! ([`WRITE_PRELUDE`]), so that the write commits only while the actor is not
//! revoked, and two writes that lock the same two rows cannot deadlock.

use std::sync::LazyLock;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Cidr, Jsonb, Nullable, Text, Timestamptz};
use domain::{
    ActorRefusal, ApiKey, ApiKeyRepository, CreateTenantRepoError, FieldChanges, InsertError,
    KeyEvent, KeyHash, KeyId, KeyPage, KeyUse, ListQuery, NewKey, RepositoryError, RevokeRepoError,
    RotateRepoError, Tenant, TenantId, TenantRepository, UpdateRepoError,
};
use time::OffsetDateTime;

use crate::errors::{is_foreign_key_violation, is_unique_violation, Fail};
use crate::events::{insert_events_sql, EventColumns};
use crate::metrics;
use crate::models::{metadata_json, ApiKeyRow, NewApiKeyRow, TenantRow};
use crate::schema::{api_keys, tenants};
use crate::statement::{Statement, Template};
use crate::store::PgStore;

/// The columns a key is inserted with: the one list, in [`bind_key`] order.
const KEY_COLUMNS: [&str; 17] = [
    "id",
    "tenant_id",
    "hash",
    "name",
    "key_type",
    "mode",
    "prefix",
    "last_four",
    "scopes",
    "created_at",
    "last_used_at",
    "expires_at",
    "revokes_at",
    "replaced_by",
    "allowed_ips",
    "allowed_origins",
    "metadata",
];

/// The columns a key is read back with ([`ApiKeyRow`]): all but the hash.
fn key_returning() -> String {
    KEY_COLUMNS
        .iter()
        .filter(|c| **c != "hash")
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$first, $first+1, …` for the [`KEY_COLUMNS`].
fn key_values(first: usize) -> String {
    (first..first + KEY_COLUMNS.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The parameters every write statement starts with: `$1` tenant, `$2` the
/// changed key (NULL for an insert), `$3` now (the event's time), `$4` the
/// actor key (NULL when the actor is not a key). See [`bind_write`].
const WRITE_PARAMS: usize = 4;

/// Locks the changed key and the actor key, in id order (no deadlock between
/// two writes that lock the same pair), and says whether the actor may write:
/// it is not a key, or its key, as it stands once locked, may write at `$3`
/// (`ActorRefusal::judge`: not revoked, not expired, a secret key holding
/// `*`). A revocation or narrowing of the actor that commits first is seen
/// here (READ COMMITTED re-reads a row it waited for); one that comes later
/// waits for this write to commit.
const WRITE_PRELUDE: &str = "WITH locked AS (
    SELECT id, revokes_at, expires_at, key_type, scopes FROM api_keys
    WHERE tenant_id = $1 AND id IN ($2, $4)
    ORDER BY id
    FOR NO KEY UPDATE),
actor_ok AS (
    SELECT $4::text IS NULL OR EXISTS (
        SELECT 1 FROM locked WHERE id = $4
          AND (revokes_at IS NULL OR revokes_at > $3)
          AND (expires_at IS NULL OR expires_at > $3)
          AND key_type = 'secret' AND scopes = ARRAY['*']::TEXT[]) AS ok)";

/// Inserts a key (from `$6`) only if the actor may write and the tenant has
/// fewer than `$5` keys of the new key's mode that count for the limit at
/// `$3` (`ApiKey::counts_for_key_limit`: neither revoked nor expired; the
/// count stops at the limit), and its events (after the key) only if it did.
static INSERT_UNDER_LIMIT: LazyLock<Template> = LazyLock::new(|| {
    let key_first = WRITE_PARAMS + 2;
    Template::parse(&format!(
        "{WRITE_PRELUDE},
inserted AS (
    INSERT INTO api_keys ({columns})
    SELECT {values}
    WHERE (SELECT ok FROM actor_ok)
      AND (SELECT count(*) FROM (
               SELECT 1 FROM api_keys
               WHERE tenant_id = $1 AND mode = ${mode}
                 AND (revokes_at IS NULL OR revokes_at > $3)
                 AND (expires_at IS NULL OR expires_at > $3)
               LIMIT $5) AS counted) < $5
    RETURNING id)
{events} WHERE EXISTS (SELECT 1 FROM inserted)",
        columns = KEY_COLUMNS.join(", "),
        values = key_values(key_first),
        mode = key_first + key_column("mode"),
        events = insert_events_sql(key_first + KEY_COLUMNS.len()),
    ))
});

/// The position of `column` in [`KEY_COLUMNS`].
fn key_column(column: &str) -> usize {
    KEY_COLUMNS
        .iter()
        .position(|c| *c == column)
        .unwrap_or(KEY_COLUMNS.len())
}

/// Rotates key `$2` into the successor (from `$6`, whose id is `$6`) as one
/// statement: the old key gets `revokes_at = $5` and `replaced_by` only if
/// it is active at `$3` (no revocation scheduled, not expired) and the actor
/// may write; the successor and the events are inserted only if that update
/// happened. The successor takes its name and scopes from the old key's row
/// (and its restrictions and metadata)
/// as locked, not from the parameters (read before): a rename or re-scope
/// that commits while the rotation waits is carried over, not undone. Of
/// concurrent rotations the first takes the row lock; the others re-check
/// the condition on the updated row, find it no longer active, and write
/// nothing.
static ROTATE: LazyLock<Template> = LazyLock::new(|| {
    let key_first = WRITE_PARAMS + 2;
    let values = (key_first..)
        .zip(KEY_COLUMNS)
        .map(|(i, column)| match column {
            "name" | "scopes" | "allowed_ips" | "allowed_origins" | "metadata" => {
                format!("old.{column}")
            }
            _ => format!("${i}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Template::parse(&format!(
        "{WRITE_PRELUDE},
old AS (
    UPDATE api_keys SET revokes_at = $5, replaced_by = ${key_first}
    WHERE tenant_id = $1 AND id = $2
      AND revokes_at IS NULL
      AND (expires_at IS NULL OR expires_at > $3)
      AND (SELECT ok FROM actor_ok)
    RETURNING id, name, scopes, allowed_ips, allowed_origins, metadata),
successor AS (
    INSERT INTO api_keys ({columns})
    SELECT {values} FROM old
    RETURNING id)
{events} WHERE EXISTS (SELECT 1 FROM successor)",
        columns = KEY_COLUMNS.join(", "),
        events = insert_events_sql(key_first + KEY_COLUMNS.len()),
    ))
});

/// The full-access guard, shared by [`REVOKE`] and [`UPDATE`]: key `k` (`$2`
/// of tenant `$1`) does not count for the guard at `$3`
/// (`ApiKey::counts_for_full_access_guard`), or another key `g` of the tenant
/// does.
const GUARD_ALLOWS: &str =
    "(NOT (k.key_type = 'secret' AND k.mode = 'live' AND k.scopes = ARRAY['*']::TEXT[]
        AND k.revokes_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > $3))
   OR EXISTS (
       SELECT 1 FROM api_keys AS g
       WHERE g.tenant_id = $1 AND g.id <> $2
         AND g.key_type = 'secret' AND g.mode = 'live' AND g.scopes = ARRAY['*']::TEXT[]
         AND g.revokes_at IS NULL AND (g.expires_at IS NULL OR g.expires_at > $3)))";

/// Revokes key `$2` of tenant `$1` at `$3` if it is not revoked at `$3`, the
/// actor may write and, unless `$5` is false, the full-access guard allows
/// it; inserts the events (from `$6`) only if it did. Returns the revoked
/// key.
static REVOKE: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(&format!(
        "{WRITE_PRELUDE},
changed AS (
    UPDATE api_keys AS k SET revokes_at = $3
    WHERE k.tenant_id = $1 AND k.id = $2
      AND (k.revokes_at IS NULL OR k.revokes_at > $3)
      AND (SELECT ok FROM actor_ok)
      AND (NOT $5 OR {GUARD_ALLOWS})
    RETURNING {returning}),
events AS ({events} WHERE EXISTS (SELECT 1 FROM changed))
SELECT * FROM changed",
        returning = key_returning(),
        events = insert_events_sql(WRITE_PARAMS + 2),
    ))
});

/// Sets the name (`$5`, unless NULL, while it is still `$6`) and the scopes
/// (`$7`, unless NULL, while they are still `$8`) of key `$2` of tenant `$1`
/// if it is not revoked at `$3`, the actor may write and, when the change
/// narrows the scopes (`$9`), the full-access guard allows it (as for
/// [`REVOKE`]). Likewise, when `$10` (`$13`, `$16`), `allowed_ips`
/// (`allowed_origins`, `metadata`) becomes `$11` (`$14`, `$17`) while it is
/// still `$12` (`$15`, `$18`), NULL being a value of its own. Inserts the
/// events (from `$19`) only if it did. Returns the updated key.
static UPDATE: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(&format!(
        "{WRITE_PRELUDE},
changed AS (
    UPDATE api_keys AS k SET name = coalesce($5, k.name), scopes = coalesce($7, k.scopes),
        allowed_ips = CASE WHEN $10 THEN $11 ELSE k.allowed_ips END,
        allowed_origins = CASE WHEN $13 THEN $14 ELSE k.allowed_origins END,
        metadata = CASE WHEN $16 THEN $17 ELSE k.metadata END
    WHERE k.tenant_id = $1 AND k.id = $2
      AND (k.revokes_at IS NULL OR k.revokes_at > $3)
      AND ($5::text IS NULL OR k.name = $6)
      AND ($7::text[] IS NULL OR k.scopes = $8)
      AND (NOT $10 OR k.allowed_ips IS NOT DISTINCT FROM $12)
      AND (NOT $13 OR k.allowed_origins IS NOT DISTINCT FROM $15)
      AND (NOT $16 OR k.metadata = $18)
      AND (SELECT ok FROM actor_ok)
      AND (NOT $9 OR {GUARD_ALLOWS})
    RETURNING {returning}),
events AS ({events} WHERE EXISTS (SELECT 1 FROM changed))
SELECT * FROM changed",
        returning = key_returning(),
        events = insert_events_sql(WRITE_PARAMS + 15),
    ))
});

/// Sets `last_used_at` of many keys in one statement: each key (`$1` tenant,
/// `$2` id) to its use's time (`$3`) only where it is unset or not after the
/// use's `due_before` (`$4`), the domain's once-a-minute rule, checked by the
/// write itself so that concurrent nodes cannot both write.
static RECORD_USES: LazyLock<Template> = LazyLock::new(|| {
    Template::parse(
        "\
UPDATE api_keys AS k SET last_used_at = u.at
FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[])
    AS u(tenant_id, id, at, due_before)
WHERE k.tenant_id = u.tenant_id AND k.id = u.id
  AND (k.last_used_at IS NULL OR k.last_used_at <= u.due_before)",
    )
});

/// Inserts events alone (a tenant's creation, inside its transaction).
static INSERT_EVENTS: LazyLock<Template> = LazyLock::new(|| Template::parse(&insert_events_sql(1)));

/// Binds [`WRITE_PARAMS`]: the tenant, the changed key, the event's time and
/// its actor key.
fn bind_write<'a>(
    template: &'a Template,
    tenant: &'a str,
    target: &'a Option<&'a str>,
    event: &'a KeyEvent,
    actor: &'a Option<String>,
) -> Statement<'a> {
    Statement::new(template)
        .bind::<Text, _>(tenant)
        .bind::<Nullable<Text>, _>(target)
        .bind::<Timestamptz, _>(&event.created_at)
        .bind::<Nullable<Text>, _>(actor)
}

/// Binds a key's [`KEY_COLUMNS`], in order.
fn bind_key<'a>(statement: Statement<'a>, row: &'a NewApiKeyRow) -> Statement<'a> {
    statement
        .bind::<Text, _>(&row.id)
        .bind::<Text, _>(&row.tenant_id)
        .bind::<Bytea, _>(&row.hash)
        .bind::<Text, _>(&row.name)
        .bind::<Text, _>(row.key_type)
        .bind::<Text, _>(row.mode)
        .bind::<Text, _>(&row.prefix)
        .bind::<Text, _>(&row.last_four)
        .bind::<Array<Text>, _>(&row.scopes)
        .bind::<Timestamptz, _>(&row.created_at)
        .bind::<Nullable<Timestamptz>, _>(&row.last_used_at)
        .bind::<Nullable<Timestamptz>, _>(&row.expires_at)
        .bind::<Nullable<Timestamptz>, _>(&row.revokes_at)
        .bind::<Nullable<Text>, _>(&row.replaced_by)
        .bind::<Nullable<Array<Cidr>>, _>(&row.allowed_ips)
        .bind::<Nullable<Array<Text>>, _>(&row.allowed_origins)
        .bind::<Jsonb, _>(&row.metadata)
}

/// `allowed_origins` as its column holds it.
fn origins(origins: &Option<domain::AllowedOrigins>) -> Option<Vec<&str>> {
    origins
        .as_ref()
        .map(|o| o.iter().map(|o| o.as_str()).collect())
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

/// After a write that wrote nothing: whether its actor key was the reason,
/// and why (`ActorRefusal::judge` on the actor as it stands now, in the
/// write's transaction). Only on the failure path.
fn actor_refusal<E: From<RepositoryError>>(
    conn: &mut PgConnection,
    tenant: &str,
    event: &KeyEvent,
) -> Result<Option<ActorRefusal>, Fail<E>> {
    let Some(actor) = event.actor.key_id() else {
        return Ok(None);
    };
    let actor = find_row(conn, tenant, &actor.to_string())?
        .map(to_key::<E>)
        .transpose()?;
    Ok(ActorRefusal::judge(actor.as_ref(), event.created_at))
}

/// An insert of a key and its event, bound once: [`ApiKeyRepository::insert`]
/// runs it in a transaction of its own, an idempotent insert inside the
/// transaction that also writes its record.
pub(crate) struct KeyInsert<'a> {
    row: NewApiKeyRow,
    event: &'a KeyEvent,
    actor: Option<String>,
    events: EventColumns,
    max_active: i64,
}

impl<'a> KeyInsert<'a> {
    pub(crate) fn new(new: &NewKey, max_active: u32, event: &'a KeyEvent) -> Self {
        KeyInsert {
            row: NewApiKeyRow::from(new),
            event,
            actor: event.actor.key_id().map(|id| id.to_string()),
            events: EventColumns::new([event]),
            max_active: i64::from(max_active),
        }
    }

    /// Runs the insert; must be inside a transaction (the tenant lock is
    /// held until it ends).
    pub(crate) fn run(&self, conn: &mut PgConnection) -> Result<(), Fail<InsertError>> {
        let (row, event) = (&self.row, self.event);
        if !lock_tenant(conn, &row.tenant_id)? {
            return Err(Fail::Domain(InsertError::UnknownTenant));
        }
        let query = bind_write(
            &INSERT_UNDER_LIMIT,
            &row.tenant_id,
            &None,
            event,
            &self.actor,
        )
        .bind::<BigInt, _>(&self.max_active);
        let inserted = self.events.bind(bind_key(query, row)).execute(conn)?;
        if inserted == 0 {
            if let Some(refusal) = actor_refusal(conn, &row.tenant_id, event)? {
                return Err(Fail::Domain(InsertError::ActorRefused(refusal)));
            }
            return Err(Fail::Domain(InsertError::LimitReached));
        }
        Ok(())
    }

    /// The database errors that are the insert's business outcomes.
    pub(crate) fn refused(e: &diesel::result::Error) -> Option<InsertError> {
        if is_unique_violation(e) {
            Some(InsertError::Duplicate)
        } else if is_foreign_key_violation(e) {
            Some(InsertError::UnknownTenant)
        } else {
            None
        }
    }
}

/// A rotation and its two events, bound once: one statement, which
/// [`ApiKeyRepository::rotate`] runs alone and an idempotent rotation inside
/// the transaction that also writes its record.
pub(crate) struct KeyRotation<'a> {
    tenant: String,
    old: String,
    row: NewApiKeyRow,
    revokes_at: OffsetDateTime,
    rotated: &'a KeyEvent,
    actor: Option<String>,
    events: EventColumns,
}

impl<'a> KeyRotation<'a> {
    pub(crate) fn new(
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        rotated: &'a KeyEvent,
        created: &KeyEvent,
    ) -> Self {
        let row = NewApiKeyRow::from(successor);
        KeyRotation {
            tenant: row.tenant_id.clone(),
            old: old.to_string(),
            row,
            revokes_at,
            rotated,
            actor: rotated.actor.key_id().map(|id| id.to_string()),
            events: EventColumns::new([rotated, created]),
        }
    }

    /// Runs the rotation statement, and on no write, says why.
    pub(crate) fn run(&self, conn: &mut PgConnection) -> Result<(), Fail<RotateRepoError>> {
        let (tenant, old) = (&self.tenant, &self.old);
        let target = Some(old.as_str());
        let query = bind_write(&ROTATE, tenant, &target, self.rotated, &self.actor)
            .bind::<Timestamptz, _>(&self.revokes_at);
        let written = self.events.bind(bind_key(query, &self.row)).execute(conn)?;
        if written > 0 {
            return Ok(());
        }
        // Nothing written: unknown key, a revoked actor, or no longer
        // active.
        if find_row(conn, tenant, old)?.is_none() {
            Err(Fail::Domain(RotateRepoError::NotFound))
        } else if let Some(refusal) = actor_refusal(conn, tenant, self.rotated)? {
            Err(Fail::Domain(RotateRepoError::ActorRefused(refusal)))
        } else {
            Err(Fail::Domain(RotateRepoError::NotActive))
        }
    }

    /// The database errors that are the rotation's business outcomes.
    pub(crate) fn refused(e: &diesel::result::Error) -> Option<RotateRepoError> {
        is_unique_violation(e).then_some(RotateRepoError::Duplicate)
    }
}

impl ApiKeyRepository for PgStore {
    #[tracing::instrument(level = "debug", name = "db.insert_key", skip_all)]
    fn insert(&self, new: &NewKey, max_active: u32, event: &KeyEvent) -> Result<(), InsertError> {
        let insert = KeyInsert::new(new, max_active, event);
        self.run(
            "inserting a key",
            |conn| conn.transaction(|conn| insert.run(conn)),
            KeyInsert::refused,
        )
        .inspect(|()| metrics::events_committed([event]))
    }

    #[tracing::instrument(level = "debug", name = "db.find_by_hash", skip_all)]
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

    #[tracing::instrument(level = "debug", name = "db.find_keys_by_hash", skip_all)]
    fn find_by_hashes(&self, hashes: &[KeyHash]) -> Result<Vec<ApiKey>, RepositoryError> {
        if hashes.is_empty() {
            return Ok(Vec::new());
        }
        let hashes: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
        self.run(
            "finding keys by hash",
            |conn| {
                // One `hash = ANY($1)` on the unique index.
                api_keys::table
                    .filter(api_keys::hash.eq_any(&hashes))
                    .select(ApiKeyRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(to_key)
                    .collect()
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.find_key", skip_all, fields(key_id = %id))]
    fn find(&self, tenant: &TenantId, id: &KeyId) -> Result<Option<ApiKey>, RepositoryError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.run(
            "finding a key",
            |conn| find_row(conn, &tenant, &id)?.map(to_key).transpose(),
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.list_keys", skip_all)]
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

    #[tracing::instrument(level = "debug", name = "db.update_key", skip_all, fields(key_id = %id))]
    fn update(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        changes: &FieldChanges,
        event: &KeyEvent,
    ) -> Result<ApiKey, UpdateRepoError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let actor = event.actor.key_id().map(|id| id.to_string());
        let events = EventColumns::new([event]);
        let target = Some(id.as_str());
        let new_name = changes.name.as_ref().map(|c| c.new.as_str());
        let old_name = changes.name.as_ref().map(|c| c.old.as_str());
        let names = |s: &domain::Scopes| s.names().collect::<Vec<&str>>();
        let new_scopes = changes.scopes.as_ref().map(|c| names(&c.new));
        let old_scopes = changes.scopes.as_ref().map(|c| names(&c.old));
        // Only narrowing the scopes can take away a guard key; everything else
        // needs neither the tenant lock nor a transaction.
        let narrows = changes
            .scopes
            .as_ref()
            .is_some_and(|c| !c.new.is_full_access());
        let ips = |ips: &Option<domain::AllowedIps>| ips.as_ref().map(|i| i.blocks().to_vec());
        let ip_change = changes.allowed_ips.as_ref();
        let (new_ips, old_ips) = (
            ip_change.and_then(|c| ips(&c.new)),
            ip_change.and_then(|c| ips(&c.old)),
        );
        let origin_change = changes.allowed_origins.as_ref();
        let (new_origins, old_origins) = (
            origin_change.and_then(|c| origins(&c.new)),
            origin_change.and_then(|c| origins(&c.old)),
        );
        let metadata_change = changes.metadata.as_ref();
        let (new_metadata, old_metadata) = (
            metadata_change.map(|c| metadata_json(&c.new)),
            metadata_change.map(|c| metadata_json(&c.old)),
        );
        let (set_ips, set_origins, set_metadata) = (
            ip_change.is_some(),
            origin_change.is_some(),
            metadata_change.is_some(),
        );
        let attempt = |conn: &mut PgConnection| -> Result<ApiKey, Fail<UpdateRepoError>> {
            if narrows && !lock_tenant(conn, &tenant)? {
                return Err(Fail::Domain(UpdateRepoError::NotFound));
            }
            let query = bind_write(&UPDATE, &tenant, &target, event, &actor)
                .bind::<Nullable<Text>, _>(&new_name)
                .bind::<Nullable<Text>, _>(&old_name)
                .bind::<Nullable<Array<Text>>, _>(&new_scopes)
                .bind::<Nullable<Array<Text>>, _>(&old_scopes)
                .bind::<Bool, _>(&narrows)
                .bind::<Bool, _>(&set_ips)
                .bind::<Nullable<Array<Cidr>>, _>(&new_ips)
                .bind::<Nullable<Array<Cidr>>, _>(&old_ips)
                .bind::<Bool, _>(&set_origins)
                .bind::<Nullable<Array<Text>>, _>(&new_origins)
                .bind::<Nullable<Array<Text>>, _>(&old_origins)
                .bind::<Bool, _>(&set_metadata)
                .bind::<Nullable<Jsonb>, _>(&new_metadata)
                .bind::<Nullable<Jsonb>, _>(&old_metadata);
            let updated = events
                .bind(query)
                .get_result::<ApiKeyRow>(conn)
                .optional()?;
            if let Some(row) = updated {
                return to_key(row);
            }
            // Nothing written: say why.
            let Some(row) = find_row(conn, &tenant, &id)? else {
                return Err(Fail::Domain(UpdateRepoError::NotFound));
            };
            let key = to_key::<UpdateRepoError>(row)?;
            let stale = !changes.holds_old(&key);
            Err(Fail::Domain(if key.is_revoked(event.created_at) {
                UpdateRepoError::Revoked
            } else if let Some(refusal) = actor_refusal(conn, &tenant, event)? {
                UpdateRepoError::ActorRefused(refusal)
            } else if stale {
                UpdateRepoError::Stale
            } else {
                UpdateRepoError::LastFullAccessKey
            }))
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
        .inspect(|_| metrics::events_committed([event]))
    }

    #[tracing::instrument(level = "debug", name = "db.revoke_key", skip_all, fields(key_id = %id))]
    fn revoke(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
    ) -> Result<ApiKey, RevokeRepoError> {
        self.revoke_with(tenant, id, event, true)
    }

    #[tracing::instrument(level = "debug", name = "db.revoke_unguarded", skip_all, fields(key_id = %id))]
    fn revoke_unguarded(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
    ) -> Result<ApiKey, RevokeRepoError> {
        self.revoke_with(tenant, id, event, false)
    }
    #[tracing::instrument(level = "debug", name = "db.rotate_key", skip_all)]
    fn rotate(
        &self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        rotated: &KeyEvent,
        created: &KeyEvent,
    ) -> Result<(), RotateRepoError> {
        let rotation = KeyRotation::new(old, successor, revokes_at, rotated, created);
        self.run(
            "rotating a key",
            |conn| rotation.run(conn),
            KeyRotation::refused,
        )
        .inspect(|()| metrics::events_committed([rotated, created]))
    }

    #[tracing::instrument(level = "debug", name = "db.record_uses", skip_all)]
    fn record_uses(&self, uses: &[KeyUse]) -> Result<usize, RepositoryError> {
        if uses.is_empty() {
            return Ok(0);
        }
        let tenants: Vec<String> = uses.iter().map(|u| u.tenant_id.to_string()).collect();
        let ids: Vec<String> = uses.iter().map(|u| u.key_id.to_string()).collect();
        let at: Vec<OffsetDateTime> = uses.iter().map(|u| u.at).collect();
        let due_before: Vec<OffsetDateTime> = uses.iter().map(|u| u.due_before).collect();
        self.run(
            "recording key uses",
            |conn| {
                Ok(Statement::new(&RECORD_USES)
                    .bind::<Array<Text>, _>(&tenants)
                    .bind::<Array<Text>, _>(&ids)
                    .bind::<Array<Timestamptz>, _>(&at)
                    .bind::<Array<Timestamptz>, _>(&due_before)
                    .execute(conn)?)
            },
            |_| None,
        )
    }
}

impl TenantRepository for PgStore {
    #[tracing::instrument(level = "debug", name = "db.create_tenant", skip_all)]
    fn create(
        &self,
        tenant: &Tenant,
        keys: &[NewKey],
        events: &[KeyEvent],
    ) -> Result<(), CreateTenantRepoError> {
        if keys.iter().any(|k| k.key.tenant_id != tenant.id) {
            return Err(RepositoryError::failure(
                "creating a tenant",
                "a first key belongs to another tenant",
            )
            .into());
        }
        let tenant_row = TenantRow::from(tenant);
        let key_rows: Vec<NewApiKeyRow> = keys.iter().map(NewApiKeyRow::from).collect();
        let events_written = events;
        let events = EventColumns::new(events);
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
                    events.bind(Statement::new(&INSERT_EVENTS)).execute(conn)?;
                    Ok(())
                })
            },
            |e| is_unique_violation(e).then_some(CreateTenantRepoError::Duplicate),
        )
        .inspect(|()| metrics::events_committed(events_written))
    }

    #[tracing::instrument(level = "debug", name = "db.find_tenant_by_name", skip_all)]
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

    #[tracing::instrument(level = "debug", name = "db.list_tenants", skip_all)]
    fn list_tenants(&self) -> Result<Vec<Tenant>, RepositoryError> {
        self.run(
            "listing tenants",
            |conn| {
                tenants::table
                    .order((tenants::created_at.asc(), tenants::id.asc()))
                    .select(TenantRow::as_select())
                    .load(conn)?
                    .into_iter()
                    .map(to_tenant)
                    .collect()
            },
            |_| None,
        )
    }
}

fn to_tenant(row: TenantRow) -> Result<Tenant, Fail<RepositoryError>> {
    Tenant::try_from(row)
        .map_err(|e| Fail::Domain(RepositoryError::failure("reading a stored tenant", e)))
}

impl PgStore {
    /// [`ApiKeyRepository::revoke`], with the full-access guard or without
    /// it ([`ApiKeyRepository::revoke_unguarded`]).
    fn revoke_with(
        &self,
        tenant: &TenantId,
        id: &KeyId,
        event: &KeyEvent,
        guarded: bool,
    ) -> Result<ApiKey, RevokeRepoError> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        let actor = event.actor.key_id().map(|id| id.to_string());
        let events = EventColumns::new([event]);
        // Whether the (last) run wrote the event: revoking a revoked key
        // succeeds without one.
        let wrote = std::cell::Cell::new(false);
        let revoked = self.run(
            "revoking a key",
            |conn| {
                wrote.set(false);
                conn.transaction(|conn| {
                    if !lock_tenant(conn, &tenant)? {
                        return Err(Fail::Domain(RevokeRepoError::NotFound));
                    }
                    let target = Some(id.as_str());
                    let query = bind_write(&REVOKE, &tenant, &target, event, &actor)
                        .bind::<Bool, _>(&guarded);
                    let revoked = events
                        .bind(query)
                        .get_result::<ApiKeyRow>(conn)
                        .optional()?;
                    if let Some(row) = revoked {
                        wrote.set(true);
                        return to_key(row);
                    }
                    // Nothing written: unknown, already revoked (returned as
                    // it is, without an event), a revoked actor, or the
                    // tenant's last guard key.
                    let Some(row) = find_row(conn, &tenant, &id)? else {
                        return Err(Fail::Domain(RevokeRepoError::NotFound));
                    };
                    let key = to_key(row)?;
                    if key.is_revoked(event.created_at) {
                        Ok(key)
                    } else if let Some(refusal) = actor_refusal(conn, &tenant, event)? {
                        Err(Fail::Domain(RevokeRepoError::ActorRefused(refusal)))
                    } else {
                        Err(Fail::Domain(RevokeRepoError::LastFullAccessKey))
                    }
                })
            },
            |_| None,
        )?;
        if wrote.get() {
            metrics::events_committed([event]);
        }
        Ok(revoked)
    }
}
