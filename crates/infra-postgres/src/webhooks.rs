//! [`WebhookRepository`] on [`PgStore`] (docs/webhooks.md).
//!
//! Deliveries are not written here: the `key_events_webhook_deliveries`
//! trigger writes one per matching endpoint in the transaction of each
//! event. This module manages endpoints, claims due deliveries with a lease
//! (`FOR UPDATE SKIP LOCKED`, so that two nodes never claim the same one),
//! records attempts, and writes the expiry events.

use std::collections::HashMap;
use std::sync::LazyLock;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_query;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Integer, Nullable, Text, Timestamptz};
use domain::{
    ApiKey, AttemptRecord, Delivery, DeliveryId, DeliveryPage, DeliveryStatus, DueDelivery,
    EndpointChanges, EndpointId, EndpointPage, EndpointScope, EventFilter, EventId, EventType,
    InsertEndpointError, KeyEvent, Mode, NewEndpoint, RepositoryError, SealedSecret, TenantId,
    WebhookEndpoint, WebhookRepository, WebhookUrl,
};
use time::{Duration, OffsetDateTime};

use crate::errors::Fail;
use crate::events::{insert_events_sql, to_event, EventColumns, EventRow};
use crate::models::{ApiKeyRow, InvalidRow};
use crate::schema::key_events;
use crate::statement::{Statement, Template};
use crate::store::PgStore;

/// The endpoint columns every read selects.
const ENDPOINT_COLUMNS: &str = "id, tenant_id, mode, url, events, description, enabled, created_at";

/// The delivery columns every read selects.
const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_seq, event_id, event_type, status, \
    attempts, last_status, last_error, next_attempt_at, created_at";

/// Serialises endpoint inserts of one tenant and mode (the limit's count),
/// in a lock class of its own (`whe\0`).
const LOCK_SCOPE: &str = "SELECT pg_advisory_xact_lock(2003330304, hashtext($1))";

/// Inserts expiry events; one that `key_events_expiry_once` already has
/// (another node wrote it) is skipped.
static INSERT_EXPIRY_EVENTS: LazyLock<Template> =
    LazyLock::new(|| Template::parse(&format!("{} ON CONFLICT DO NOTHING", insert_events_sql(1))));

#[derive(QueryableByName)]
struct EndpointRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    tenant_id: String,
    #[diesel(sql_type = Text)]
    mode: String,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Array<Text>)]
    events: Vec<String>,
    #[diesel(sql_type = Nullable<Text>)]
    description: Option<String>,
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = InvalidRow;

    fn try_from(row: EndpointRow) -> Result<Self, InvalidRow> {
        Ok(WebhookEndpoint {
            id: EndpointId::parse(&row.id).map_err(|_| InvalidRow::new("id"))?,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(|_| InvalidRow::new("tenant_id"))?,
            mode: Mode::parse(&row.mode).map_err(|_| InvalidRow::new("mode"))?,
            url: WebhookUrl::from_stored(row.url),
            events: EventFilter::parse(&row.events).map_err(|_| InvalidRow::new("events"))?,
            description: row.description,
            enabled: row.enabled,
            created_at: row.created_at,
        })
    }
}

#[derive(QueryableByName)]
struct DeliveryRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    endpoint_id: String,
    #[diesel(sql_type = BigInt)]
    event_seq: i64,
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Integer>)]
    last_status: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    next_attempt_at: Option<OffsetDateTime>,
    #[diesel(sql_type = Timestamptz)]
    created_at: OffsetDateTime,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = InvalidRow;

    fn try_from(row: DeliveryRow) -> Result<Self, InvalidRow> {
        Ok(Delivery {
            id: DeliveryId::parse(&row.id).map_err(|_| InvalidRow::new("id"))?,
            endpoint_id: EndpointId::parse(&row.endpoint_id)
                .map_err(|_| InvalidRow::new("endpoint_id"))?,
            event_id: EventId::parse(&row.event_id).map_err(|_| InvalidRow::new("event_id"))?,
            event_type: EventType::parse(&row.event_type)
                .map_err(|_| InvalidRow::new("event_type"))?,
            status: DeliveryStatus::parse(&row.status).ok_or_else(|| InvalidRow::new("status"))?,
            attempts: u32::try_from(row.attempts).map_err(|_| InvalidRow::new("attempts"))?,
            last_status: row
                .last_status
                .map(u16::try_from)
                .transpose()
                .map_err(|_| InvalidRow::new("last_status"))?,
            last_error: row.last_error,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
        })
    }
}

/// A claimed delivery with its endpoint's URL and secrets.
#[derive(QueryableByName)]
struct ClaimRow {
    #[diesel(embed)]
    delivery: DeliveryRow,
    #[diesel(sql_type = Text)]
    url: String,
    #[diesel(sql_type = Bytea)]
    secret: Vec<u8>,
    #[diesel(sql_type = Nullable<Bytea>)]
    previous_secret: Option<Vec<u8>>,
}

/// A key due an expiry event, and which.
#[derive(QueryableByName)]
struct DueKeyRow {
    #[diesel(embed)]
    key: ApiKeyRow,
    #[diesel(sql_type = Text)]
    due_type: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct Oldest {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    oldest: Option<OffsetDateTime>,
}

fn failure<E: From<RepositoryError>>(context: &'static str) -> impl Fn(InvalidRow) -> Fail<E> {
    move |e| Fail::Domain(RepositoryError::failure(context, e).into())
}

fn endpoints<E: From<RepositoryError>>(
    rows: Vec<EndpointRow>,
) -> Result<Vec<WebhookEndpoint>, Fail<E>> {
    rows.into_iter()
        .map(|row| WebhookEndpoint::try_from(row).map_err(failure("reading a webhook endpoint")))
        .collect()
}

fn deliveries<E: From<RepositoryError>>(rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>, Fail<E>> {
    rows.into_iter()
        .map(|row| Delivery::try_from(row).map_err(failure("reading a webhook delivery")))
        .collect()
}

fn find(
    conn: &mut PgConnection,
    scope: &EndpointScope,
    id: &EndpointId,
) -> QueryResult<Option<EndpointRow>> {
    sql_query(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
         WHERE tenant_id = $1 AND mode = $2 AND id = $3"
    ))
    .bind::<Text, _>(scope.tenant_id.to_string())
    .bind::<Text, _>(scope.mode.as_str())
    .bind::<Text, _>(id.to_string())
    .get_result(conn)
    .optional()
}

impl WebhookRepository for PgStore {
    #[tracing::instrument(level = "debug", name = "db.insert_endpoint", skip_all)]
    fn insert_endpoint(&self, new: &NewEndpoint, max: u32) -> Result<(), InsertEndpointError> {
        let e = &new.endpoint;
        self.run(
            "creating a webhook endpoint",
            |conn| {
                conn.transaction(|conn| {
                    sql_query(LOCK_SCOPE)
                        .bind::<Text, _>(format!("{} {}", e.tenant_id, e.mode.as_str()))
                        .execute(conn)?;
                    let count: Count = sql_query(
                        "SELECT count(*) AS count FROM webhook_endpoints \
                         WHERE tenant_id = $1 AND mode = $2",
                    )
                    .bind::<Text, _>(e.tenant_id.to_string())
                    .bind::<Text, _>(e.mode.as_str())
                    .get_result(conn)?;
                    if count.count >= i64::from(max) {
                        return Err(Fail::Domain(InsertEndpointError::LimitReached));
                    }
                    sql_query(
                        "INSERT INTO webhook_endpoints \
                         (id, tenant_id, mode, url, events, description, enabled, secret, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    )
                    .bind::<Text, _>(e.id.to_string())
                    .bind::<Text, _>(e.tenant_id.to_string())
                    .bind::<Text, _>(e.mode.as_str())
                    .bind::<Text, _>(e.url.as_str())
                    .bind::<Array<Text>, _>(e.events.names())
                    .bind::<Nullable<Text>, _>(e.description.as_deref())
                    .bind::<Bool, _>(e.enabled)
                    .bind::<Bytea, _>(new.secret.as_bytes())
                    .bind::<Timestamptz, _>(e.created_at)
                    .execute(conn)?;
                    Ok(())
                })
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.list_endpoints", skip_all)]
    fn list_endpoints(
        &self,
        scope: &EndpointScope,
        starting_after: Option<EndpointId>,
        limit: u32,
    ) -> Result<EndpointPage, RepositoryError> {
        self.run(
            "listing webhook endpoints",
            |conn| {
                let rows: Vec<EndpointRow> = sql_query(format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
                     WHERE tenant_id = $1 AND mode = $2 AND ($3::text IS NULL OR id < $3) \
                     ORDER BY id DESC LIMIT $4"
                ))
                .bind::<Text, _>(scope.tenant_id.to_string())
                .bind::<Text, _>(scope.mode.as_str())
                .bind::<Nullable<Text>, _>(starting_after.map(|id| id.to_string()))
                .bind::<BigInt, _>(i64::from(limit) + 1)
                .load(conn)?;
                let mut endpoints = endpoints(rows)?;
                let has_more = endpoints.len() > limit as usize;
                endpoints.truncate(limit as usize);
                Ok(EndpointPage {
                    endpoints,
                    has_more,
                })
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.find_endpoint", skip_all)]
    fn find_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
    ) -> Result<Option<WebhookEndpoint>, RepositoryError> {
        self.run(
            "reading a webhook endpoint",
            |conn| {
                let row = find(conn, scope, id)?;
                Ok(endpoints(row.into_iter().collect())?.pop())
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.update_endpoint", skip_all)]
    fn update_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
        changes: &EndpointChanges,
    ) -> Result<Option<WebhookEndpoint>, RepositoryError> {
        self.run(
            "updating a webhook endpoint",
            |conn| {
                let rows: Vec<EndpointRow> = sql_query(format!(
                    "UPDATE webhook_endpoints SET \
                       url = COALESCE($4, url), \
                       events = COALESCE($5, events), \
                       description = CASE WHEN $6 THEN $7 ELSE description END, \
                       enabled = COALESCE($8, enabled), \
                       failing_since = CASE WHEN $8 IS TRUE THEN NULL ELSE failing_since END \
                     WHERE tenant_id = $1 AND mode = $2 AND id = $3 \
                     RETURNING {ENDPOINT_COLUMNS}"
                ))
                .bind::<Text, _>(scope.tenant_id.to_string())
                .bind::<Text, _>(scope.mode.as_str())
                .bind::<Text, _>(id.to_string())
                .bind::<Nullable<Text>, _>(changes.url.as_ref().map(WebhookUrl::as_str))
                .bind::<Nullable<Array<Text>>, _>(changes.events.as_ref().map(EventFilter::names))
                .bind::<Bool, _>(changes.description.is_some())
                .bind::<Nullable<Text>, _>(changes.description.clone().flatten())
                .bind::<Nullable<Bool>, _>(changes.enabled)
                .load(conn)?;
                Ok(endpoints(rows)?.pop())
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.delete_endpoint", skip_all)]
    fn delete_endpoint(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
    ) -> Result<bool, RepositoryError> {
        self.run(
            "deleting a webhook endpoint",
            |conn| {
                let deleted = sql_query(
                    "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND mode = $2 AND id = $3",
                )
                .bind::<Text, _>(scope.tenant_id.to_string())
                .bind::<Text, _>(scope.mode.as_str())
                .bind::<Text, _>(id.to_string())
                .execute(conn)?;
                Ok(deleted > 0)
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.rotate_endpoint_secret", skip_all)]
    fn rotate_endpoint_secret(
        &self,
        scope: &EndpointScope,
        id: &EndpointId,
        secret: &SealedSecret,
        previous_until: OffsetDateTime,
    ) -> Result<bool, RepositoryError> {
        self.run(
            "rotating a webhook secret",
            |conn| {
                let updated = sql_query(
                    "UPDATE webhook_endpoints SET previous_secret = secret, \
                       previous_secret_expires_at = $5, secret = $4 \
                     WHERE tenant_id = $1 AND mode = $2 AND id = $3",
                )
                .bind::<Text, _>(scope.tenant_id.to_string())
                .bind::<Text, _>(scope.mode.as_str())
                .bind::<Text, _>(id.to_string())
                .bind::<Bytea, _>(secret.as_bytes())
                .bind::<Timestamptz, _>(previous_until)
                .execute(conn)?;
                Ok(updated > 0)
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.list_deliveries", skip_all)]
    fn list_deliveries(
        &self,
        scope: &EndpointScope,
        endpoint: &EndpointId,
        starting_after: Option<DeliveryId>,
        limit: u32,
    ) -> Result<Option<DeliveryPage>, RepositoryError> {
        self.run(
            "listing webhook deliveries",
            |conn| {
                if find(conn, scope, endpoint)?.is_none() {
                    return Ok(None);
                }
                let rows: Vec<DeliveryRow> = sql_query(format!(
                    "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
                     WHERE endpoint_id = $1 AND ($2::text IS NULL OR id < $2) \
                     ORDER BY id DESC LIMIT $3"
                ))
                .bind::<Text, _>(endpoint.to_string())
                .bind::<Nullable<Text>, _>(starting_after.map(|id| id.to_string()))
                .bind::<BigInt, _>(i64::from(limit) + 1)
                .load(conn)?;
                let mut deliveries = deliveries(rows)?;
                let has_more = deliveries.len() > limit as usize;
                deliveries.truncate(limit as usize);
                Ok(Some(DeliveryPage {
                    deliveries,
                    has_more,
                }))
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.retry_delivery", skip_all)]
    fn retry_delivery(
        &self,
        scope: &EndpointScope,
        endpoint: &EndpointId,
        delivery: &DeliveryId,
        now: OffsetDateTime,
    ) -> Result<Option<Delivery>, RepositoryError> {
        self.run(
            "retrying a webhook delivery",
            |conn| {
                let rows: Vec<DeliveryRow> = sql_query(format!(
                    "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = $5, \
                       lease_until = NULL \
                     FROM webhook_endpoints e \
                     WHERE d.id = $4 AND d.endpoint_id = $3 AND e.id = d.endpoint_id \
                       AND e.tenant_id = $1 AND e.mode = $2 \
                     RETURNING {}",
                    prefixed("d", DELIVERY_COLUMNS)
                ))
                .bind::<Text, _>(scope.tenant_id.to_string())
                .bind::<Text, _>(scope.mode.as_str())
                .bind::<Text, _>(endpoint.to_string())
                .bind::<Text, _>(delivery.to_string())
                .bind::<Timestamptz, _>(now)
                .load(conn)?;
                Ok(deliveries(rows)?.pop())
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.claim_deliveries", skip_all)]
    fn claim_due_deliveries(
        &self,
        now: OffsetDateTime,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, RepositoryError> {
        self.run(
            "claiming webhook deliveries",
            |conn| {
                let claims: Vec<ClaimRow> = sql_query(format!(
                    "WITH due AS ( \
                       SELECT d.id FROM webhook_deliveries d \
                       JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                       WHERE d.status = 'pending' AND d.next_attempt_at <= $1 \
                         AND (d.lease_until IS NULL OR d.lease_until <= $1) AND e.enabled \
                       ORDER BY d.next_attempt_at LIMIT $3 \
                       FOR UPDATE OF d SKIP LOCKED), \
                     leased AS ( \
                       UPDATE webhook_deliveries d SET lease_until = $2 FROM due \
                       WHERE d.id = due.id RETURNING {}) \
                     SELECT {}, e.url, e.secret, \
                       CASE WHEN e.previous_secret_expires_at > $1 THEN e.previous_secret END \
                         AS previous_secret \
                     FROM leased l JOIN webhook_endpoints e ON e.id = l.endpoint_id",
                    prefixed("d", DELIVERY_COLUMNS),
                    prefixed("l", DELIVERY_COLUMNS)
                ))
                .bind::<Timestamptz, _>(now)
                .bind::<Timestamptz, _>(now + lease)
                .bind::<BigInt, _>(i64::from(limit))
                .load(conn)?;
                if claims.is_empty() {
                    return Ok(Vec::new());
                }
                let seqs: Vec<i64> = claims.iter().map(|c| c.delivery.event_seq).collect();
                let events: HashMap<i64, KeyEvent> = key_events::table
                    .filter(key_events::seq.eq_any(&seqs))
                    .select(EventRow::as_select())
                    .load::<EventRow>(conn)?
                    .into_iter()
                    .map(|row| to_event(row).map(|stored| (stored.seq, stored.event)))
                    .collect::<Result<_, _>>()?;
                claims
                    .into_iter()
                    .filter_map(|claim| {
                        let event = events.get(&claim.delivery.event_seq)?.clone();
                        let url = WebhookUrl::from_stored(claim.url);
                        let mut secrets = vec![SealedSecret::from_bytes(claim.secret)];
                        secrets.extend(claim.previous_secret.map(SealedSecret::from_bytes));
                        Some(
                            Delivery::try_from(claim.delivery)
                                .map_err(failure("reading a webhook delivery"))
                                .map(|delivery| DueDelivery {
                                    delivery,
                                    url,
                                    secrets,
                                    event,
                                }),
                        )
                    })
                    .collect()
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.record_attempt", skip_all)]
    fn record_attempt(
        &self,
        record: &AttemptRecord,
        disable_after: Duration,
    ) -> Result<(), RepositoryError> {
        self.run(
            "recording a webhook attempt",
            |conn| {
                sql_query(
                    "WITH d AS ( \
                       UPDATE webhook_deliveries SET status = $2, attempts = $3, \
                         last_status = $4, last_error = $5, next_attempt_at = $6, \
                         lease_until = NULL \
                       WHERE id = $1 RETURNING endpoint_id) \
                     UPDATE webhook_endpoints e SET \
                       failing_since = CASE WHEN $7 THEN NULL ELSE COALESCE(e.failing_since, $8) END, \
                       enabled = CASE WHEN NOT $7 AND COALESCE(e.failing_since, $8) <= $9 \
                         THEN false ELSE e.enabled END \
                     FROM d WHERE e.id = d.endpoint_id",
                )
                .bind::<Text, _>(record.delivery.to_string())
                .bind::<Text, _>(record.status.as_str())
                .bind::<Integer, _>(i32::try_from(record.attempts).unwrap_or(i32::MAX))
                .bind::<Nullable<Integer>, _>(record.last_status.map(i32::from))
                .bind::<Nullable<Text>, _>(record.last_error.as_deref())
                .bind::<Nullable<Timestamptz>, _>(record.next_attempt_at)
                .bind::<Bool, _>(record.succeeded())
                .bind::<Timestamptz, _>(record.at)
                .bind::<Timestamptz, _>(record.at - disable_after)
                .execute(conn)?;
                Ok(())
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.oldest_pending", skip_all)]
    fn oldest_pending_delivery(&self) -> Result<Option<OffsetDateTime>, RepositoryError> {
        self.run(
            "reading the oldest pending delivery",
            |conn| {
                let oldest: Oldest = sql_query(
                    "SELECT min(created_at) AS oldest FROM webhook_deliveries \
                     WHERE status = 'pending'",
                )
                .get_result(conn)?;
                Ok(oldest.oldest)
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.keys_due_expiry_events", skip_all)]
    fn keys_due_expiry_events(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(ApiKey, EventType)>, RepositoryError> {
        self.run(
            "finding keys due an expiry event",
            |conn| {
                // `k.*`: every column the key row reads, by name, however
                // many later migrations add.
                let rows: Vec<DueKeyRow> = sql_query(
                    "SELECT * FROM ( \
                       SELECT k.*, 'api_key.expiring' AS due_type, \
                         k.expires_at - interval '7 days' AS due_at \
                       FROM api_keys k \
                       WHERE k.expires_at IS NOT NULL \
                         AND k.expires_at - interval '7 days' <= $1 AND k.expires_at > $1 \
                         AND k.expires_at - k.created_at >= interval '7 days' \
                         AND (k.revokes_at IS NULL OR k.revokes_at > $1) \
                         AND NOT EXISTS (SELECT 1 FROM key_events ev WHERE ev.key_id = k.id \
                           AND ev.type = 'api_key.expiring') \
                       UNION ALL \
                       SELECT k.*, 'api_key.expired', k.expires_at \
                       FROM api_keys k \
                       WHERE k.expires_at IS NOT NULL AND k.expires_at <= $1 \
                         AND (k.revokes_at IS NULL OR k.revokes_at > k.expires_at) \
                         AND NOT EXISTS (SELECT 1 FROM key_events ev WHERE ev.key_id = k.id \
                           AND ev.type = 'api_key.expired') \
                     ) due ORDER BY due_at, id, due_type LIMIT $2",
                )
                .bind::<Timestamptz, _>(now)
                .bind::<BigInt, _>(i64::from(limit))
                .load(conn)?;
                rows.into_iter()
                    .map(|row| {
                        let event_type = EventType::parse(&row.due_type)
                            .map_err(|_| InvalidRow::new("due_type"))
                            .map_err(failure("reading a key due an expiry event"))?;
                        let key = ApiKey::try_from(row.key)
                            .map_err(failure("reading a key due an expiry event"))?;
                        Ok((key, event_type))
                    })
                    .collect()
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.insert_expiry_events", skip_all)]
    fn insert_expiry_events(&self, events: &[KeyEvent]) -> Result<usize, RepositoryError> {
        if events.is_empty() {
            return Ok(0);
        }
        let columns = EventColumns::new(events);
        self.run(
            "writing expiry events",
            |conn| {
                Ok(columns
                    .bind(Statement::new(&INSERT_EXPIRY_EVENTS))
                    .execute(conn)?)
            },
            |_| None,
        )
    }
}

/// `columns` with each name prefixed by `alias.`.
fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}
