//! [`IdempotencyRepository`] on [`PgStore`] (docs/api.md, "Idempotent
//! requests").
//!
//! An idempotent write is one transaction:
//! 1. `pg_try_advisory_xact_lock` on the record's scope and key
//!    (`TRY_RECORD_LOCK`). Taken by a
//!    twin that has not committed yet: `InUse`, at once (no waiting).
//! 2. The live record, read after the lock, so that a twin that committed
//!    and let go of the lock before it is seen (READ COMMITTED: each
//!    statement reads what committed before it started): `Completed`.
//! 3. The change, exactly as the plain write makes it.
//! 4. The record, replacing an expired one of the same scope and key.
//!
//! The record therefore commits exactly when its change does: a crash before
//! `COMMIT` leaves neither, and a retry runs the request again.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use domain::{
    IdempotencyKey, IdempotencyRecord, IdempotencyRepository, IdempotencyScope, InsertError,
    KeyEvent, KeyId, NewKey, RecordedWriteError, RepositoryError, RequestFingerprint,
    RotateRepoError, SealedResponse,
};
use time::OffsetDateTime;

use crate::errors::Fail;
use crate::metrics;
use crate::repositories::{KeyInsert, KeyRotation};
use crate::schema::idempotency_records as records;
use crate::store::PgStore;

/// Takes the transaction-scoped advisory lock of the lock name `$1` if no
/// one holds it: the two-key form, so it never meets a one-key lock (the
/// migration lock, an embedder's), with a class of its own (`idem`), and as
/// the key the first 32 bits of the name's SHA-256: the name holds client
/// text (the `Idempotency-Key`), and a client must not be able to aim at
/// another lock with it.
const TRY_RECORD_LOCK: &str = "SELECT pg_try_advisory_xact_lock(1768187245,
    ('x' || encode(substring(sha256(convert_to($1, 'UTF8')) FROM 1 FOR 4), 'hex'))::bit(32)::int4)
    AS locked";

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// A stored record, as read.
#[derive(Queryable, Selectable)]
#[diesel(table_name = records, check_for_backend(diesel::pg::Pg))]
struct RecordRow {
    fingerprint: Vec<u8>,
    response: Vec<u8>,
    created_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

/// The columns of a record, bound once.
struct RecordKey {
    tenant: String,
    caller: String,
    key: String,
}

impl RecordKey {
    fn of(scope: &IdempotencyScope, key: &IdempotencyKey) -> Self {
        RecordKey {
            tenant: scope.tenant_id.to_string(),
            caller: scope.caller.to_string(),
            key: key.as_str().to_owned(),
        }
    }

    /// The advisory lock's name: ids have no spaces, so the three parts
    /// cannot run into each other.
    fn lock_name(&self) -> String {
        format!("{} {} {}", self.tenant, self.caller, self.key)
    }

    fn find(&self, conn: &mut PgConnection, now: OffsetDateTime) -> QueryResult<Option<RecordRow>> {
        records::table
            .filter(records::tenant_id.eq(&self.tenant))
            .filter(records::caller_key_id.eq(&self.caller))
            .filter(records::idempotency_key.eq(&self.key))
            .filter(records::expires_at.gt(now))
            .select(RecordRow::as_select())
            .first(conn)
            .optional()
    }
}

/// Back to the domain's record. A fingerprint of another length than 32 is
/// impossible by the table's check; it is reported, not trusted.
fn to_record(
    scope: &IdempotencyScope,
    key: &IdempotencyKey,
    row: RecordRow,
) -> Result<IdempotencyRecord, RepositoryError> {
    let fingerprint: [u8; 32] = row.fingerprint.try_into().map_err(|_| {
        RepositoryError::failure(
            "reading an idempotency record",
            "a stored fingerprint is not 32 bytes",
        )
    })?;
    Ok(IdempotencyRecord {
        scope: *scope,
        key: key.clone(),
        fingerprint: RequestFingerprint::from_bytes(fingerprint),
        response: SealedResponse::from_bytes(row.response),
        created_at: row.created_at,
        expires_at: row.expires_at,
    })
}

/// Runs `write` (the change) in one transaction with the record of `record`,
/// as the module documentation says.
fn write_recorded<E: From<RepositoryError>>(
    conn: &mut PgConnection,
    record: &IdempotencyRecord,
    write: impl FnOnce(&mut PgConnection) -> Result<(), Fail<E>>,
) -> Result<(), Fail<RecordedWriteError<E>>> {
    let columns = RecordKey::of(&record.scope, &record.key);
    conn.transaction(|conn| {
        let locked = diesel::sql_query(TRY_RECORD_LOCK)
            .bind::<Text, _>(columns.lock_name())
            .get_result::<Locked>(conn)?
            .locked;
        if !locked {
            return Err(Fail::Domain(RecordedWriteError::InUse));
        }
        if let Some(row) = columns.find(conn, record.created_at)? {
            let found =
                to_record(&record.scope, &record.key, row).map_err(|e| Fail::Domain(e.into()))?;
            return Err(Fail::Domain(RecordedWriteError::Completed(Box::new(found))));
        }
        write(conn).map_err(|fail| match fail {
            Fail::Domain(e) => Fail::Domain(RecordedWriteError::Write(e)),
            Fail::Db(e) => Fail::Db(e),
        })?;
        // An expired record of the same scope and key is as good as absent:
        // the new one takes its place.
        diesel::delete(
            records::table
                .filter(records::tenant_id.eq(&columns.tenant))
                .filter(records::caller_key_id.eq(&columns.caller))
                .filter(records::idempotency_key.eq(&columns.key)),
        )
        .execute(conn)?;
        diesel::insert_into(records::table)
            .values((
                records::tenant_id.eq(&columns.tenant),
                records::caller_key_id.eq(&columns.caller),
                records::idempotency_key.eq(&columns.key),
                records::fingerprint.eq(record.fingerprint.as_bytes().as_slice()),
                records::response.eq(record.response.as_bytes()),
                records::created_at.eq(record.created_at),
                records::expires_at.eq(record.expires_at),
            ))
            .execute(conn)?;
        Ok(())
    })
}

/// `E`'s business outcomes among database errors, as the plain write names
/// them.
fn refused<E>(
    outcome: impl Fn(&diesel::result::Error) -> Option<E>,
) -> impl Fn(&diesel::result::Error) -> Option<RecordedWriteError<E>> {
    move |e| outcome(e).map(RecordedWriteError::Write)
}

impl IdempotencyRepository for PgStore {
    fn find_record(
        &self,
        scope: &IdempotencyScope,
        key: &IdempotencyKey,
        now: OffsetDateTime,
    ) -> Result<Option<IdempotencyRecord>, RepositoryError> {
        let columns = RecordKey::of(scope, key);
        self.run(
            "finding an idempotency record",
            |conn| {
                columns
                    .find(conn, now)?
                    .map(|row| to_record(scope, key, row).map_err(Fail::Domain))
                    .transpose()
            },
            |_| None,
        )
    }

    fn insert_recorded(
        &self,
        key: &NewKey,
        max_active: u32,
        event: &KeyEvent,
        record: &IdempotencyRecord,
    ) -> Result<(), RecordedWriteError<InsertError>> {
        let insert = KeyInsert::new(key, max_active, event);
        self.run(
            "inserting a key idempotently",
            |conn| write_recorded(conn, record, |conn| insert.run(conn)),
            refused(KeyInsert::refused),
        )
        .inspect(|()| metrics::events_committed([event]))
    }

    fn rotate_recorded(
        &self,
        old: &KeyId,
        successor: &NewKey,
        revokes_at: OffsetDateTime,
        max_active: u32,
        rotated: &KeyEvent,
        created: &KeyEvent,
        record: &IdempotencyRecord,
    ) -> Result<(), RecordedWriteError<RotateRepoError>> {
        let rotation = KeyRotation::new(old, successor, revokes_at, max_active, rotated, created);
        self.run(
            "rotating a key idempotently",
            |conn| write_recorded(conn, record, |conn| rotation.run(conn)),
            refused(KeyRotation::refused),
        )
        .inspect(|()| metrics::events_committed([rotated, created]))
    }

    fn delete_expired_records(&self, now: OffsetDateTime) -> Result<usize, RepositoryError> {
        self.run(
            "deleting expired idempotency records",
            |conn| {
                Ok(
                    diesel::delete(records::table.filter(records::expires_at.le(now)))
                        .execute(conn)?,
                )
            },
            |_| None,
        )
    }
}
