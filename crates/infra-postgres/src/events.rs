//! Key events in PostgreSQL: how an event becomes a `key_events` row (and its
//! `data` JSON) and back, the column arrays that let any write statement
//! insert its events with `unnest`, and [`EventRepository`] on [`PgStore`].

use diesel::prelude::*;
use diesel::sql_types::{Array, Jsonb, Nullable, Text, Timestamptz};
use domain::{
    format_duration, Actor, Change, Credits, EventData, EventId, EventPage, EventQuery,
    EventRepository, EventType, FieldChanges, KeyEvent, KeyId, KeyName, LeakSource, Mode,
    RateLimit, Refill, RefillInterval, RepositoryError, Scopes, StoredEvent, TenantId,
};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::errors::Fail;
use crate::models::{
    ips_from_json, ips_json, metadata_from_json, metadata_json, origins_from_json, origins_json,
    InvalidRow,
};
use crate::schema::key_events;
use crate::statement::Statement;
use crate::store::PgStore;

/// The columns an event is inserted with, in the order of [`EventColumns`]'s
/// arrays and of the `unnest` that [`events_source`] writes.
const EVENT_COLUMNS: [(&str, &str); 10] = [
    ("id", "text"),
    ("type", "text"),
    ("created_at", "timestamptz"),
    ("tenant_id", "text"),
    ("key_id", "text"),
    ("mode", "text"),
    ("actor_type", "text"),
    ("actor_key_id", "text"),
    ("request_id", "text"),
    ("data", "jsonb"),
];

/// How many parameters [`insert_events_sql`] takes.
pub(crate) const EVENT_PARAMS: usize = EVENT_COLUMNS.len();

/// `INSERT INTO key_events (…) SELECT * FROM unnest($first, …)`: inserts every
/// event bound by [`EventColumns::bind`] from parameter `$first` on. Append
/// `WHERE …` to make it conditional on the change.
pub(crate) fn insert_events_sql(first: usize) -> String {
    let names: Vec<&str> = EVENT_COLUMNS.iter().map(|(name, _)| *name).collect();
    let arrays: Vec<String> = EVENT_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| format!("${}::{ty}[]", first + i))
        .collect();
    format!(
        "INSERT INTO key_events ({}) SELECT * FROM unnest({})",
        names.join(", "),
        arrays.join(", ")
    )
}

/// Events as one array per column, to bind for [`insert_events_sql`].
pub(crate) struct EventColumns {
    id: Vec<String>,
    event_type: Vec<&'static str>,
    created_at: Vec<OffsetDateTime>,
    tenant_id: Vec<String>,
    key_id: Vec<Option<String>>,
    mode: Vec<Option<&'static str>>,
    actor_type: Vec<&'static str>,
    actor_key_id: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    data: Vec<Value>,
}

impl EventColumns {
    pub(crate) fn new<'e>(events: impl IntoIterator<Item = &'e KeyEvent>) -> Self {
        let mut columns = EventColumns {
            id: Vec::new(),
            event_type: Vec::new(),
            created_at: Vec::new(),
            tenant_id: Vec::new(),
            key_id: Vec::new(),
            mode: Vec::new(),
            actor_type: Vec::new(),
            actor_key_id: Vec::new(),
            request_id: Vec::new(),
            data: Vec::new(),
        };
        for event in events {
            columns.id.push(event.id.to_string());
            columns.event_type.push(event.event_type().as_str());
            columns.created_at.push(event.created_at);
            columns.tenant_id.push(event.tenant_id.to_string());
            columns.key_id.push(event.key_id.map(|id| id.to_string()));
            columns.mode.push(event.mode.map(Mode::as_str));
            columns.actor_type.push(event.actor.type_str());
            columns
                .actor_key_id
                .push(event.actor.key_id().map(|id| id.to_string()));
            columns.request_id.push(event.request_id.clone());
            columns.data.push(data_to_json(&event.data));
        }
        columns
    }

    /// Binds the [`EVENT_PARAMS`] arrays, in [`EVENT_COLUMNS`] order.
    pub(crate) fn bind<'a>(&'a self, statement: Statement<'a>) -> Statement<'a> {
        statement
            .bind::<Array<Text>, _>(&self.id)
            .bind::<Array<Text>, _>(&self.event_type)
            .bind::<Array<Timestamptz>, _>(&self.created_at)
            .bind::<Array<Text>, _>(&self.tenant_id)
            .bind::<Array<Nullable<Text>>, _>(&self.key_id)
            .bind::<Array<Nullable<Text>>, _>(&self.mode)
            .bind::<Array<Text>, _>(&self.actor_type)
            .bind::<Array<Nullable<Text>>, _>(&self.actor_key_id)
            .bind::<Array<Nullable<Text>>, _>(&self.request_id)
            .bind::<Array<Jsonb>, _>(&self.data)
    }
}

fn scopes_json(scopes: &Scopes) -> Value {
    Value::from(scopes.names().collect::<Vec<_>>())
}

fn rfc3339(at: OffsetDateTime) -> Value {
    at.format(&Rfc3339).map_or(Value::Null, Value::from)
}

/// The stored `data`. It has the same shape the API shows today, but it is
/// the storage schema, owned here: `http-actix` renders the API's `data`
/// itself, so neither can change the other by accident, and a change to the
/// stored shape needs a migration of the rows already written.
pub(crate) fn data_to_json(data: &EventData) -> Value {
    match data {
        EventData::KeyCreated { rotated_from } => match rotated_from {
            Some(id) => json!({ "rotated_from": id.to_string() }),
            None => json!({}),
        },
        EventData::KeyUpdated { changes } => {
            let mut map = Map::new();
            if let Some(c) = &changes.name {
                map.insert(
                    "name".to_owned(),
                    json!({ "old": c.old.as_str(), "new": c.new.as_str() }),
                );
            }
            if let Some(c) = &changes.scopes {
                map.insert(
                    "scopes".to_owned(),
                    json!({ "old": scopes_json(&c.old), "new": scopes_json(&c.new) }),
                );
            }
            if let Some(c) = &changes.rate_limit {
                map.insert(
                    "rate_limit".to_owned(),
                    json!({ "old": rate_limit_json(c.old), "new": rate_limit_json(c.new) }),
                );
            }
            if let Some(c) = &changes.credits {
                map.insert(
                    "credits".to_owned(),
                    json!({ "old": credits_json(c.old), "new": credits_json(c.new) }),
                );
            }
            if let Some(c) = &changes.allowed_ips {
                map.insert(
                    "allowed_ips".to_owned(),
                    json!({ "old": ips_json(c.old.as_ref()), "new": ips_json(c.new.as_ref()) }),
                );
            }
            if let Some(c) = &changes.allowed_origins {
                let (old, new) = (c.old.as_ref(), c.new.as_ref());
                map.insert(
                    "allowed_origins".to_owned(),
                    json!({ "old": origins_json(old), "new": origins_json(new) }),
                );
            }
            if let Some(c) = &changes.metadata {
                map.insert(
                    "metadata".to_owned(),
                    json!({ "old": metadata_json(&c.old), "new": metadata_json(&c.new) }),
                );
            }
            json!({ "changes": map })
        }
        EventData::KeyRevoked => json!({}),
        EventData::KeyRevokedFound { source, url } => {
            json!({ "source": source.as_str(), "url": url })
        }
        EventData::KeyRotated {
            replaced_by,
            grace_period,
            revokes_at,
        } => json!({
            "replaced_by": replaced_by.to_string(),
            "grace_period": format_duration(*grace_period),
            "revokes_at": rfc3339(*revokes_at),
        }),
        EventData::TenantCreated { name } => json!({ "name": name }),
        EventData::KeyExpiring { expires_at } | EventData::KeyExpired { expires_at } => {
            json!({ "expires_at": rfc3339(*expires_at) })
        }
    }
}

/// A rate limit as stored in `data`: `{"limit", "window"}` or null.
fn rate_limit_json(rate: Option<RateLimit>) -> Value {
    rate.map_or(
        Value::Null,
        |r| json!({ "limit": r.limit(), "window": format_duration(r.window()) }),
    )
}

/// Credits as stored in `data`: `{"remaining", "refill"}` or null.
fn credits_json(credits: Option<Credits>) -> Value {
    credits.map_or(Value::Null, |c| {
        json!({
            "remaining": c.remaining(),
            "refill": c.refill().map_or(Value::Null, |r| json!({
                "amount": r.amount(),
                "interval": r.interval().as_str(),
            })),
        })
    })
}

fn rate_limit_from(value: &Value) -> Result<Option<RateLimit>, InvalidRow> {
    if value.is_null() {
        return Ok(None);
    }
    let limit = value.get("limit").and_then(Value::as_u64);
    let window = value.get("window").and_then(Value::as_str);
    match (limit, window) {
        (Some(limit), Some(window)) => RateLimit::parse(limit, window)
            .map(Some)
            .map_err(|_| bad("data")),
        _ => Err(bad("data")),
    }
}

fn credits_from(value: &Value) -> Result<Option<Credits>, InvalidRow> {
    if value.is_null() {
        return Ok(None);
    }
    let remaining = value
        .get("remaining")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("data"))?;
    let refill = match value.get("refill") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let amount = r.get("amount").and_then(Value::as_u64);
            let interval = r.get("interval").and_then(Value::as_str);
            let (Some(amount), Some(interval)) = (amount, interval) else {
                return Err(bad("data"));
            };
            let interval = RefillInterval::parse(interval).map_err(|_| bad("data"))?;
            Some(Refill::new(amount, interval).map_err(|_| bad("data"))?)
        }
    };
    Credits::new(remaining, refill)
        .map(Some)
        .map_err(|_| bad("data"))
}

/// A change of `field` in `changes` (`{"old", "new"}`), read with `read`.
fn change_of<T>(
    changes: &Value,
    field: &str,
    read: fn(&Value) -> Result<T, InvalidRow>,
) -> Result<Option<Change<T>>, InvalidRow> {
    match changes.get(field) {
        None => Ok(None),
        Some(c) => Ok(Some(Change {
            old: read(c.get("old").ok_or_else(|| bad("data"))?)?,
            new: read(c.get("new").ok_or_else(|| bad("data"))?)?,
        })),
    }
}

fn bad(column: &'static str) -> InvalidRow {
    InvalidRow::new(column)
}

fn str_at<'v>(value: &'v Value, path: &[&str]) -> Result<&'v str, InvalidRow> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("data"))
}

/// A stored name (trusted: it was valid when written).
fn name(value: &Value, path: &[&str]) -> Result<KeyName, InvalidRow> {
    str_at(value, path).map(|name| KeyName::from_stored(name.to_owned()))
}

fn scopes_at(value: &Value, path: &[&str]) -> Result<Scopes, InvalidRow> {
    let names = path
        .iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_array)
        .ok_or_else(|| bad("data"))?
        .iter()
        .map(Value::as_str)
        .collect::<Option<Vec<&str>>>()
        .ok_or_else(|| bad("data"))?;
    Scopes::parse(names).map_err(|_| bad("data"))
}

fn time_at(value: &Value, key: &str) -> Result<OffsetDateTime, InvalidRow> {
    OffsetDateTime::parse(str_at(value, &[key])?, &Rfc3339).map_err(|_| bad("data"))
}

fn data_from_json(event_type: EventType, value: &Value) -> Result<EventData, InvalidRow> {
    let key_id = |path: &[&str]| -> Result<KeyId, InvalidRow> {
        KeyId::parse(str_at(value, path)?).map_err(|_| bad("data"))
    };
    Ok(match event_type {
        EventType::KeyCreated => EventData::KeyCreated {
            rotated_from: match value.get("rotated_from") {
                None | Some(Value::Null) => None,
                Some(_) => Some(key_id(&["rotated_from"])?),
            },
        },
        EventType::KeyUpdated => {
            let changes = value.get("changes").ok_or_else(|| bad("data"))?;
            let changes = FieldChanges {
                name: change_of(changes, "name", |v| name(v, &[]))?,
                scopes: change_of(changes, "scopes", |v| scopes_at(v, &[]))?,
                rate_limit: change_of(changes, "rate_limit", rate_limit_from)?,
                credits: change_of(changes, "credits", credits_from)?,
                allowed_ips: change_of(changes, "allowed_ips", |v| {
                    ips_from_json(v).ok_or_else(|| bad("data"))
                })?,
                allowed_origins: change_of(changes, "allowed_origins", |v| {
                    origins_from_json(v).ok_or_else(|| bad("data"))
                })?,
                metadata: change_of(changes, "metadata", |v| {
                    metadata_from_json(v).ok_or_else(|| bad("data"))
                })?,
            };
            EventData::KeyUpdated { changes }
        }
        EventType::KeyRevoked => match value.get("source") {
            None => EventData::KeyRevoked,
            Some(_) => EventData::KeyRevokedFound {
                source: LeakSource::parse(str_at(value, &["source"])?).map_err(|_| bad("data"))?,
                url: str_at(value, &["url"])?.to_owned(),
            },
        },
        EventType::KeyRotated => EventData::KeyRotated {
            replaced_by: key_id(&["replaced_by"])?,
            grace_period: domain::parse_duration(str_at(value, &["grace_period"])?)
                .map_err(|_| bad("data"))?,
            revokes_at: time_at(value, "revokes_at")?,
        },
        EventType::TenantCreated => EventData::TenantCreated {
            name: str_at(value, &["name"])?.to_owned(),
        },
        EventType::KeyExpiring => EventData::KeyExpiring {
            expires_at: time_at(value, "expires_at")?,
        },
        EventType::KeyExpired => EventData::KeyExpired {
            expires_at: time_at(value, "expires_at")?,
        },
    })
}

/// An event as read back, with its sequence number.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = key_events, check_for_backend(diesel::pg::Pg))]
pub(crate) struct EventRow {
    seq: i64,
    id: String,
    event_type: String,
    created_at: OffsetDateTime,
    tenant_id: String,
    key_id: Option<String>,
    mode: Option<String>,
    actor_type: String,
    actor_key_id: Option<String>,
    request_id: Option<String>,
    data: Value,
}

impl TryFrom<EventRow> for KeyEvent {
    type Error = InvalidRow;

    fn try_from(row: EventRow) -> Result<Self, InvalidRow> {
        let event_type = EventType::parse(&row.event_type).map_err(|_| bad("type"))?;
        let actor_key_id = row
            .actor_key_id
            .as_deref()
            .map(KeyId::parse)
            .transpose()
            .map_err(|_| bad("actor_key_id"))?;
        Ok(KeyEvent {
            id: EventId::parse(&row.id).map_err(|_| bad("id"))?,
            created_at: row.created_at,
            tenant_id: TenantId::parse(&row.tenant_id).map_err(|_| bad("tenant_id"))?,
            key_id: row
                .key_id
                .as_deref()
                .map(KeyId::parse)
                .transpose()
                .map_err(|_| bad("key_id"))?,
            mode: row
                .mode
                .as_deref()
                .map(Mode::parse)
                .transpose()
                .map_err(|_| bad("mode"))?,
            actor: Actor::from_parts(&row.actor_type, actor_key_id)
                .map_err(|_| bad("actor_type"))?,
            request_id: row.request_id,
            data: data_from_json(event_type, &row.data)?,
        })
    }
}

impl EventRepository for PgStore {
    #[tracing::instrument(level = "debug", name = "db.list_events", skip_all)]
    fn list_events(
        &self,
        tenant: &TenantId,
        query: &EventQuery,
    ) -> Result<EventPage, RepositoryError> {
        let tenant = tenant.to_string();
        let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
        self.run(
            "listing events",
            |conn| {
                let mut select = key_events::table
                    .filter(key_events::tenant_id.eq(&tenant))
                    .select(EventRow::as_select())
                    .order(key_events::id.desc())
                    .limit(i64::from(query.limit) + 1)
                    .into_boxed();
                if let Some(key_id) = query.key_id {
                    select = select.filter(key_events::key_id.eq(key_id.to_string()));
                }
                if let Some(event_type) = query.event_type {
                    select = select.filter(key_events::event_type.eq(event_type.as_str()));
                }
                if let Some(mode) = query.mode {
                    select = select.filter(key_events::mode.eq(mode.as_str()));
                }
                if let Some(after) = query.starting_after {
                    select = select.filter(key_events::id.lt(after.to_string()));
                }
                let mut events = select
                    .load::<EventRow>(conn)?
                    .into_iter()
                    .map(|row| to_event(row).map(|stored| stored.event))
                    .collect::<Result<Vec<_>, _>>()?;
                let has_more = events.len() > limit;
                events.truncate(limit);
                Ok(EventPage { events, has_more })
            },
            |_| None,
        )
    }

    #[tracing::instrument(level = "debug", name = "db.events_after", skip_all)]
    fn events_after(&self, after: i64, limit: u32) -> Result<Vec<StoredEvent>, RepositoryError> {
        self.run(
            "following events",
            |conn| {
                key_events::table
                    .filter(key_events::seq.gt(after))
                    .order(key_events::seq.asc())
                    .limit(i64::from(limit))
                    .select(EventRow::as_select())
                    .load::<EventRow>(conn)?
                    .into_iter()
                    .map(to_event)
                    .collect()
            },
            |_| None,
        )
    }
}

pub(crate) fn to_event(row: EventRow) -> Result<StoredEvent, Fail<RepositoryError>> {
    let seq = row.seq;
    KeyEvent::try_from(row)
        .map(|event| StoredEvent { seq, event })
        .map_err(|e| Fail::Domain(RepositoryError::failure("reading a stored event", e)))
}
