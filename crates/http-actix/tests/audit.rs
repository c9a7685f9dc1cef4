//! The audit log, `GET /v1/audit-events` (docs/api.md, "GET
//! /v1/audit-events", "Key events and the audit log"), through
//! `actix_web::test` over the in-memory store: which events the API's writes
//! leave, their exact objects, filters, cursor, authorization and input
//! checks.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, Fx, Reply, StoreReadiness};
use domain::{ApiKey, ApiKeys, AuthError, Authenticator, Credentials, KeyType, Mode, Principal};
use http_actix::{app, AppState};
use serde_json::{json, Value};
use time::Duration;

const EVENT_FIELDS: [&str; 9] = [
    "id",
    "type",
    "created_at",
    "tenant_id",
    "key_id",
    "mode",
    "actor",
    "request_id",
    "data",
];

macro_rules! init {
    ($fx:expr) => {
        test::init_service(app($fx.state())).await
    };
}

/// `GET /v1/audit-events{query}` with `key`, as a request.
macro_rules! audit {
    ($fx:expr, $query:expr, $key:expr) => {
        $fx.req(Method::GET, &format!("/v1/audit-events{}", $query), $key)
            .to_request()
    };
}

/// A write with a chosen `X-Request-ID`.
fn write_request(
    fx: &Fx,
    method: Method,
    uri: &str,
    key: &str,
    request_id: &str,
    body: Option<Value>,
) -> TestRequest {
    let req = fx
        .req(method, uri, key)
        .insert_header(("X-Request-ID", request_id));
    match body {
        Some(body) => common::with_json(req, &body),
        None => req,
    }
}

/// [`write_request`], as a request.
macro_rules! write_req {
    ($($arg:expr),* $(,)?) => {
        write_request($($arg),*).to_request()
    };
}

/// The `data` array of a 200 listing.
fn events_of(r: &Reply) -> Vec<Value> {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "body: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["data"].as_array().unwrap().clone()
}

/// Each event's `id`.
fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Each event's `type`.
fn types(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

/// The event without its `id` (which is random), for whole-object comparison.
fn without_id(event: &Value) -> Value {
    let mut event = event.clone();
    event.as_object_mut().unwrap().remove("id");
    event
}

/// The audit log as the live full-access key sees it.
macro_rules! all_events {
    ($app:expr, $fx:expr) => {
        events_of(&send(&$app, audit!($fx, "", &$fx.acme.live)).await)
    };
}

/// Creates a key through the API with Acme's live key; its id and value.
macro_rules! create_via_api {
    ($app:expr, $fx:expr, $body:expr $(,)?) => {
        created_ids(
            &send(
                &$app,
                $fx.req_json(Method::POST, "/v1/api-keys", &$fx.acme.live, &$body)
                    .to_request(),
            )
            .await,
        )
    };
}

/// The id and value of a 201 creation.
fn created_ids(r: &Reply) -> (String, String) {
    assert_eq!(r.status, StatusCode::CREATED);
    let created = r.json();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

// ---- what the writes record -----------------------------------------------

#[actix_web::test]
async fn every_write_through_the_api_is_listed_newest_first_as_exact_event_objects() {
    // Given Acme (whose creation wrote tenant.created and two
    // api_key.created, by the CLI) and a clock that moves one second before
    // each write, so that newest first is unambiguous.
    let fx = Fx::new();
    let app = init!(fx);
    let live = fx.acme.live.as_str();
    let caller = json!({"type": "api_key", "key_id": fx.acme.live_id});

    // When the live key creates a key, patches its name only, patches name
    // and scopes, rotates it with a 24h grace period and revokes the
    // successor, each with its own X-Request-ID.
    fx.clock.advance(Duration::seconds(1));
    let r = send(
        &app,
        write_req!(
            &fx,
            Method::POST,
            "/v1/api-keys",
            live,
            "req-create",
            Some(json!({"name": "Worker", "type": "secret", "scopes": ["users:read"]})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let a = r.json()["id"].as_str().unwrap().to_owned();
    let a_uri = format!("/v1/api-keys/{a}");

    fx.clock.advance(Duration::seconds(1));
    let r = send(
        &app,
        write_req!(
            &fx,
            Method::PATCH,
            &a_uri,
            live,
            "req-rename",
            Some(json!({"name": "Worker EU", "scopes": ["users:read"]})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    fx.clock.advance(Duration::seconds(1));
    let r = send(
        &app,
        write_req!(
            &fx,
            Method::PATCH,
            &a_uri,
            live,
            "req-rescope",
            Some(json!({"name": "Worker US", "scopes": ["webhooks:write", "users:read"]})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    fx.clock.advance(Duration::seconds(1));
    let r = send(
        &app,
        write_req!(
            &fx,
            Method::POST,
            "/v1/api-keys/rotate",
            live,
            "req-rotate",
            Some(json!({"id": a, "grace_period": "24h"})),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let b = r.json()["id"].as_str().unwrap().to_owned();

    fx.clock.advance(Duration::seconds(1));
    let r = send(
        &app,
        write_req!(
            &fx,
            Method::DELETE,
            &format!("/v1/api-keys/{b}"),
            live,
            "req-revoke",
            None,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);

    // Then the audit log lists exactly these events, newest first, with the
    // documented fields in the documented order.
    let r = send(&app, audit!(fx, "", live)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), ["data", "has_more"]);
    assert_eq!(r.json()["has_more"], false);
    let events = events_of(&r);
    assert_eq!(events.len(), 9);
    for (i, event) in events.iter().enumerate() {
        let index = i.to_string();
        assert_eq!(r.keys_at(&["data", &index]), EVENT_FIELDS, "event {i}");
        assert_eq!(
            r.keys_at(&["data", &index, "actor"])[0],
            "type",
            "event {i}"
        );
        let id = event["id"].as_str().unwrap();
        assert!(
            id.starts_with("evt_") && id.len() == 30 && domain::EventId::parse(id).is_ok(),
            "{id}"
        );
    }
    let mut sorted = ids(&events);
    sorted.sort_unstable_by(|x, y| y.cmp(x));
    sorted.dedup();
    assert_eq!(sorted, ids(&events), "distinct ids, descending");

    // `data` keeps its documented field order too.
    assert_eq!(
        r.keys_at(&["data", "2", "data"]),
        ["replaced_by", "grace_period", "revokes_at"]
    );
    assert_eq!(
        r.keys_at(&["data", "3", "data", "changes"]),
        ["name", "scopes"]
    );
    assert_eq!(
        r.keys_at(&["data", "3", "data", "changes", "name"]),
        ["old", "new"]
    );

    let tenant = fx.acme.tenant.as_str();
    let expected = [
        json!({
            "type": "api_key.revoked", "created_at": "2024-01-10T09:00:05Z",
            "tenant_id": tenant, "key_id": b, "mode": "live", "actor": caller,
            "request_id": "req-revoke", "data": {}
        }),
        json!({
            "type": "api_key.created", "created_at": "2024-01-10T09:00:04Z",
            "tenant_id": tenant, "key_id": b, "mode": "live", "actor": caller,
            "request_id": "req-rotate", "data": {"rotated_from": a}
        }),
        json!({
            "type": "api_key.rotated", "created_at": "2024-01-10T09:00:04Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "req-rotate",
            "data": {
                "replaced_by": b,
                "grace_period": "1d",
                "revokes_at": "2024-01-11T09:00:04Z"
            }
        }),
        json!({
            "type": "api_key.updated", "created_at": "2024-01-10T09:00:03Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "req-rescope",
            "data": {"changes": {
                "name": {"old": "Worker EU", "new": "Worker US"},
                "scopes": {"old": ["users:read"], "new": ["users:read", "webhooks:write"]}
            }}
        }),
        json!({
            "type": "api_key.updated", "created_at": "2024-01-10T09:00:02Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "req-rename",
            "data": {"changes": {"name": {"old": "Worker", "new": "Worker EU"}}}
        }),
        json!({
            "type": "api_key.created", "created_at": "2024-01-10T09:00:01Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "req-create", "data": {}
        }),
        json!({
            "type": "api_key.created", "created_at": "2024-01-10T09:00:00Z",
            "tenant_id": tenant, "key_id": fx.acme.test_id, "mode": "test",
            "actor": {"type": "cli"}, "request_id": null, "data": {}
        }),
        json!({
            "type": "api_key.created", "created_at": "2024-01-10T09:00:00Z",
            "tenant_id": tenant, "key_id": fx.acme.live_id, "mode": "live",
            "actor": {"type": "cli"}, "request_id": null, "data": {}
        }),
        json!({
            "type": "tenant.created", "created_at": "2024-01-10T09:00:00Z",
            "tenant_id": tenant, "key_id": null, "mode": null,
            "actor": {"type": "cli"}, "request_id": null, "data": {"name": "Acme"}
        }),
    ];
    for (i, (got, want)) in events.iter().zip(&expected).enumerate() {
        assert_eq!(&without_id(got), want, "event {i}");
    }
    // The actor object: `type` then `key_id` for a key, `type` alone for the CLI.
    assert_eq!(r.keys_at(&["data", "0", "actor"]), ["type", "key_id"]);
    assert_eq!(r.keys_at(&["data", "8", "actor"]), ["type"]);
    // The rotation's two events are consecutive ids, the successor's last.
    assert!(events[1]["id"].as_str() > events[2]["id"].as_str());
}

#[actix_web::test]
async fn a_generated_request_id_is_recorded_as_the_response_announced_it() {
    // Given a write sent without X-Request-ID.
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys",
            &fx.acme.live,
            &json!({"name": "No id", "type": "secret"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let generated = r.header("x-request-id").unwrap().to_owned();
    assert!(generated.starts_with("req_") && generated.len() == 30);

    // When the audit log is read, then its event carries that id.
    let uri = format!("?key_id={}", r.json()["id"].as_str().unwrap());
    let events = events_of(&send(&app, audit!(fx, &uri, &fx.acme.live)).await);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["request_id"], generated.as_str());
}

#[actix_web::test]
async fn a_repeated_delete_and_a_patch_that_changes_nothing_add_no_event() {
    // Given a key created through the API, then revoked once.
    let fx = Fx::new();
    let app = init!(fx);
    let (id, _) = create_via_api!(
        app,
        fx,
        json!({"name": "Same", "type": "secret", "scopes": ["users:read", "sessions:read"]}),
    );
    let uri = format!("/v1/api-keys/{id}");

    // When it is patched to its own name and scopes (in another order).
    let before = ids(&all_events!(app, fx));
    let r = send(
        &app,
        fx.req_json(
            Method::PATCH,
            &uri,
            &fx.acme.live,
            &json!({"name": "Same", "scopes": ["sessions:read", "users:read"]}),
        )
        .to_request(),
    )
    .await;

    // Then it answers 200 with the key and the log is unchanged.
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["name"], "Same");
    assert_eq!(ids(&all_events!(app, fx)), before);

    // When it is deleted twice (a second later, so that its event is the
    // newest), then only the first delete is recorded.
    fx.clock.advance(Duration::seconds(1));
    for _ in 0..2 {
        let r = send(
            &app,
            fx.req(Method::DELETE, &uri, &fx.acme.live).to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    let after = all_events!(app, fx);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[0]["type"], "api_key.revoked");
    assert_eq!(after[0]["key_id"], id.as_str());
    assert_eq!(ids(&after[1..]), before);
    let query = format!("?key_id={id}&type=api_key.revoked");
    let revoked = events_of(&send(&app, audit!(fx, &query, &fx.acme.live)).await);
    assert_eq!(revoked.len(), 1);
}

#[actix_web::test]
async fn refused_writes_add_no_event() {
    // Given the tenant's only full-access live key and a revoked key.
    let fx = Fx::new();
    let app = init!(fx);
    let (gone, _) = create_via_api!(app, fx, json!({"name": "Gone", "type": "secret"}));
    let r = send(
        &app,
        fx.req(
            Method::DELETE,
            &format!("/v1/api-keys/{gone}"),
            &fx.acme.live,
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let before = ids(&all_events!(app, fx));

    // When writes are refused (last full-access key, revoked key, bad body).
    let live_uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    let r = send(
        &app,
        fx.req(Method::DELETE, &live_uri, &fx.acme.live)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "last_full_access_key", None);
    let r = send(
        &app,
        fx.req_json(
            Method::PATCH,
            &live_uri,
            &fx.acme.live,
            &json!({"scopes": ["users:read"]}),
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "last_full_access_key", None);
    let r = send(
        &app,
        fx.req_json(
            Method::PATCH,
            &format!("/v1/api-keys/{gone}"),
            &fx.acme.live,
            &json!({"name": "Back"}),
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_revoked", None);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys/rotate",
            &fx.acme.live,
            &json!({"id": gone}),
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_revoked", None);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys",
            &fx.acme.live,
            &json!({"type": "secret"}),
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "missing_parameter", Some("name"));

    // Then the log is unchanged.
    assert_eq!(ids(&all_events!(app, fx)), before);
}

// ---- filters and cursor ---------------------------------------------------

/// Acme plus key A (created, updated, revoked) and key P (created), one
/// second apart. Evaluates to (A, P).
macro_rules! seed {
    ($app:expr, $fx:expr) => {{
    $fx.clock.advance(Duration::seconds(1));
    let (a, _) = create_via_api!($app, $fx, json!({"name": "A", "type": "secret"}));
    $fx.clock.advance(Duration::seconds(1));
    let r = send(
        &$app,
        $fx.req_json(
            Method::PATCH,
            &format!("/v1/api-keys/{a}"),
            &$fx.acme.live,
            &json!({"name": "A2"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    $fx.clock.advance(Duration::seconds(1));
    let (p, _) = create_via_api!($app, $fx, json!({"name": "P", "type": "publishable"}));
    $fx.clock.advance(Duration::seconds(1));
    let r = send(
        &$app,
        $fx.req(Method::DELETE, &format!("/v1/api-keys/{a}"), &$fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    (a, p)
    }};
}

#[actix_web::test]
async fn key_id_and_type_filter_the_log_alone_and_together() {
    // Given events of several keys and types.
    let fx = Fx::new();
    let app = init!(fx);
    let (a, p) = seed!(app, fx);
    let all = all_events!(app, fx);
    let live = fx.acme.live.as_str();

    // When filtering by key, then only that key's events, newest first.
    let events = events_of(&send(&app, audit!(fx, &format!("?key_id={a}"), live)).await);
    assert_eq!(
        types(&events),
        ["api_key.revoked", "api_key.updated", "api_key.created"]
    );
    assert!(events.iter().all(|e| e["key_id"] == a.as_str()));
    let expected: Vec<String> = ids(&all)
        .into_iter()
        .zip(&all)
        .filter(|(_, e)| e["key_id"] == a.as_str())
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids(&events), expected);

    // When filtering by type, then only that type's events, of every key.
    let events = events_of(&send(&app, audit!(fx, "?type=api_key.created", live)).await);
    let key_ids: Vec<&str> = events
        .iter()
        .map(|e| e["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        key_ids,
        [p.as_str(), a.as_str(), &fx.acme.test_id, &fx.acme.live_id]
    );
    let events = events_of(&send(&app, audit!(fx, "?type=tenant.created", live)).await);
    assert_eq!(types(&events), ["tenant.created"]);
    assert_eq!(events[0]["key_id"], Value::Null);
    let events = events_of(&send(&app, audit!(fx, "?type=api_key.rotated", live)).await);
    assert!(events.is_empty());

    // When filtering by both, then events matching both.
    let query = format!("?type=api_key.updated&key_id={a}");
    let events = events_of(&send(&app, audit!(fx, &query, live)).await);
    assert_eq!(types(&events), ["api_key.updated"]);
    assert_eq!(
        events[0]["data"],
        json!({"changes": {"name": {"old": "A", "new": "A2"}}})
    );
    let query = format!("?key_id={p}&type=api_key.revoked");
    assert!(events_of(&send(&app, audit!(fx, &query, live)).await).is_empty());

    // When the key id is well-formed but unknown, then an empty page.
    let r = send(
        &app,
        audit!(fx, "?key_id=key_01HABCDEF666555KXYZ0123456", live),
    )
    .await;
    assert_eq!(r.json(), json!({"data": [], "has_more": false}));
}

#[actix_web::test]
async fn limit_and_starting_after_page_through_the_whole_log_with_has_more() {
    // Given seven events (Acme's three and four more).
    let fx = Fx::new();
    let app = init!(fx);
    seed!(app, fx);
    let all = ids(&all_events!(app, fx));
    assert_eq!(all.len(), 7);
    let live = fx.acme.live.as_str();

    // When paging three at a time from the newest.
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(after) => format!("?limit=3&starting_after={after}"),
            None => "?limit=3".to_owned(),
        };
        let r = send(&app, audit!(fx, &query, live)).await;
        let body = r.json();
        let page = ids(&events_of(&r));
        let has_more = body["has_more"].as_bool().unwrap();
        cursor = page.last().cloned();
        pages.push((page, has_more));
        if !has_more {
            break;
        }
    }

    // Then the pages are 3, 3, 1 events, has_more on all but the last, and
    // together the whole log in order.
    let sizes: Vec<(usize, bool)> = pages.iter().map(|(p, m)| (p.len(), *m)).collect();
    assert_eq!(sizes, [(3, true), (3, true), (1, false)]);
    let joined: Vec<String> = pages.into_iter().flat_map(|(p, _)| p).collect();
    assert_eq!(joined, all);

    // A page that ends exactly at the last event says there is no more.
    let r = send(&app, audit!(fx, "?limit=7", live)).await;
    assert_eq!(r.json()["has_more"], false);
    assert_eq!(ids(&events_of(&r)), all);
    let r = send(&app, audit!(fx, "?limit=6", live)).await;
    assert_eq!(r.json()["has_more"], true);

    // The cursor combines with the filters; after the oldest: empty.
    let query = format!("?type=api_key.created&limit=1&starting_after={}", all[0]);
    let r = send(&app, audit!(fx, &query, live)).await;
    let page = events_of(&r);
    assert_eq!(types(&page), ["api_key.created"]);
    assert_eq!(r.json()["has_more"], true);
    let query = format!("?starting_after={}", all[6]);
    let r = send(&app, audit!(fx, &query, live)).await;
    assert_eq!(r.json(), json!({"data": [], "has_more": false}));
    // An unknown (well-formed) event id is a position, not an error.
    let r = send(
        &app,
        audit!(fx, "?starting_after=evt_00000000000000000000000000", live),
    )
    .await;
    assert_eq!(r.json(), json!({"data": [], "has_more": false}));
    let r = send(
        &app,
        audit!(fx, "?starting_after=evt_7ZZZZZZZZZZZZZZZZZZZZZZZZZ", live),
    )
    .await;
    assert_eq!(ids(&events_of(&r)), all);
}

// ---- authorization --------------------------------------------------------

#[actix_web::test]
async fn a_publishable_key_is_403_secret_key_required_before_the_query_is_read() {
    let fx = Fx::new();
    let (_, pk) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let app = init!(fx);
    for query in ["", "?bogus=1", "?limit=0"] {
        let r = send(&app, audit!(fx, query, &pk)).await;
        r.assert_error(StatusCode::FORBIDDEN, "secret_key_required", None);
    }
}

#[actix_web::test]
async fn a_secret_key_without_audit_scope_is_403_insufficient_scope_before_the_query_is_read() {
    let fx = Fx::new();
    let (_, sk) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let (_, writer) = fx.make_key(
        KeyType::Secret,
        Mode::Live,
        &["users:write", "webhooks:read"],
        None,
    );
    let app = init!(fx);
    for key in [&sk, &writer] {
        for query in ["", "?bogus=1", "?type=nope"] {
            let r = send(&app, audit!(fx, query, key)).await;
            r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
        }
    }
}

#[actix_web::test]
async fn a_secret_key_with_only_audit_logs_read_reads_the_log_but_cannot_manage_keys() {
    // Given a secret key with only `audit-logs:read`.
    let fx = Fx::new();
    fx.clock.advance(Duration::seconds(1));
    let (id, reader) = fx.make_key(KeyType::Secret, Mode::Live, &["audit-logs:read"], None);
    let app = init!(fx);

    // When it reads the log, then it sees every event (its own creation too).
    let events = events_of(&send(&app, audit!(fx, "", &reader)).await);
    assert_eq!(ids(&events), ids(&all_events!(app, fx)));
    assert_eq!(events[0]["key_id"], id.as_str());
    assert_eq!(events.len(), 4);

    // But it may not manage keys.
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &reader).to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
}

#[actix_web::test]
async fn a_test_key_sees_only_events_of_test_keys_and_never_tenant_created() {
    // Given events of live keys and of test keys.
    let fx = Fx::new();
    let app = init!(fx);
    fx.clock.advance(Duration::seconds(1));
    let (live_id, _) = create_via_api!(app, fx, json!({"name": "L", "type": "secret"}));
    fx.clock.advance(Duration::seconds(1));
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys",
            &fx.acme.test,
            &json!({"name": "T", "type": "publishable"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let test_id = r.json()["id"].as_str().unwrap().to_owned();
    let (_, test_reader) = fx.make_key(KeyType::Secret, Mode::Test, &["audit-logs:read"], None);

    // When the test key reads the log.
    let events = events_of(&send(&app, audit!(fx, "", &fx.acme.test)).await);

    // Then it sees only the test keys' events: the tenant's test key's
    // creation (by the CLI), T's (by the test key) and the reader's (a test
    // key made by the live key).
    assert!(events.iter().all(|e| e["mode"] == "test"), "{events:?}");
    let key_ids: Vec<&str> = events
        .iter()
        .map(|e| e["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(key_ids.len(), 3);
    assert!(key_ids.contains(&test_id.as_str()));
    assert!(key_ids.contains(&fx.acme.test_id.as_str()));
    assert!(!key_ids.contains(&live_id.as_str()));
    let t_created = events
        .iter()
        .find(|e| e["key_id"] == test_id.as_str())
        .unwrap();
    assert_eq!(
        t_created["actor"],
        json!({"type": "api_key", "key_id": fx.acme.test_id})
    );
    // A test key with only audit-logs:read sees the same.
    let seen = events_of(&send(&app, audit!(fx, "", &test_reader)).await);
    assert_eq!(ids(&seen), ids(&events));

    // Filters cannot reach live events or tenant events.
    for query in [
        format!("?key_id={live_id}"),
        format!("?key_id={}", fx.acme.live_id),
        "?type=tenant.created".to_owned(),
    ] {
        let r = send(&app, audit!(fx, &query, &fx.acme.test)).await;
        assert_eq!(r.json(), json!({"data": [], "has_more": false}), "{query}");
    }
    // The live key sees both modes and the tenant event.
    let all = all_events!(app, fx);
    assert!(all.iter().any(|e| e["mode"] == "live"));
    assert!(all.iter().any(|e| e["type"] == "tenant.created"));
}

#[actix_web::test]
async fn authentication_failures_answer_before_anything_else() {
    let fx = Fx::new();
    let (_, revoked) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/v1/audit-events?bogus=1")
            .insert_header(("X-Tenant-ID", fx.acme.tenant.as_str()))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    let r = send(
        &app,
        common::authed(Method::GET, "/v1/audit-events", &fx.acme.live, "tnt_nope").to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let r = send(&app, audit!(fx, "", &globex.live)).await;
    r.assert_error(StatusCode::FORBIDDEN, "tenant_mismatch", None);
    fx.service
        .revoke(&fx.live_principal(), None, &revoked_id(&fx, &revoked))
        .unwrap();
    let r = send(&app, audit!(fx, "", &revoked)).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
}

/// The id of a key of Acme, by its value.
fn revoked_id(fx: &Fx, key: &str) -> domain::KeyId {
    let credentials = Credentials::parse(Some(key), Some(&fx.acme.tenant)).unwrap();
    fx.service.authenticate(&credentials).unwrap().id
}

// ---- bad input, methods, the document ---------------------------------------

#[actix_web::test]
async fn an_unknown_parameter_is_400_unknown_parameter_with_its_name() {
    let fx = Fx::new();
    let app = init!(fx);
    for (query, param) in [
        ("?mode=live", "mode"),
        ("?revoked=true", "revoked"),
        ("?limit=5&actor=cli", "actor"),
        ("?Key_id=key_01HABCDEF666555KXYZ0123456", "Key_id"),
    ] {
        let r = send(&app, audit!(fx, query, &fx.acme.live)).await;
        r.assert_error(StatusCode::BAD_REQUEST, "unknown_parameter", Some(param));
    }
}

#[actix_web::test]
async fn a_bad_or_repeated_parameter_is_400_invalid_parameter_with_its_name() {
    let fx = Fx::new();
    let app = init!(fx);
    let cases = [
        ("limit=5&limit=6", "limit"),
        ("type=api_key.created&type=api_key.revoked", "type"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=", "limit"),
        ("type=nope", "type"),
        ("type=", "type"),
        ("type=API_KEY.CREATED", "type"),
        ("type=api_key", "type"),
        ("key_id=xyz", "key_id"),
        ("key_id=key_01habcdef666555kxyz0123456", "key_id"),
        ("key_id=evt_01HABCDEF666555KXYZ0123456", "key_id"),
        (
            "starting_after=key_01HABCDEF666555KXYZ0123456",
            "starting_after",
        ),
        ("starting_after=evt_123", "starting_after"),
        ("starting_after=", "starting_after"),
    ];
    for (query, param) in cases {
        let r = send(&app, audit!(fx, &format!("?{query}"), &fx.acme.live)).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(param));
    }
}

#[actix_web::test]
async fn a_method_other_than_get_or_head_is_405_with_allow_get_head() {
    let fx = Fx::new();
    let app = init!(fx);
    for method in [
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        // With or without credentials: the route answers 405 first.
        let r = send(
            &app,
            fx.req(method.clone(), "/v1/audit-events", &fx.acme.live)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
        let r = send(
            &app,
            TestRequest::default()
                .method(method.clone())
                .uri("/v1/audit-events")
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        assert_eq!(r.header("allow"), Some("GET, HEAD"), "{method}");
    }
    // A sub-path is no route.
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/audit-events/evt_x", &fx.acme.live)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found", None);
}

#[actix_web::test]
async fn head_is_answered_like_get() {
    // The body itself is dropped by the HTTP/1 encoder on the wire (the end
    // to end tests check that); here: the same status and headers as GET.
    let fx = Fx::new();
    let (_, pk) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let app = init!(fx);
    let get = send(&app, audit!(fx, "", &fx.acme.live)).await;
    let head = send(
        &app,
        fx.req(Method::HEAD, "/v1/audit-events", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-type"), get.header("content-type"));
    assert!(head.header("x-request-id").is_some());
    let r = send(
        &app,
        fx.req(Method::HEAD, "/v1/audit-events", &pk).to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(
        &app,
        fx.req(Method::HEAD, "/v1/audit-events?limit=0", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[cfg(feature = "openapi")]
#[actix_web::test]
async fn the_openapi_document_describes_the_audit_log() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();

    let path = &doc["paths"]["/v1/audit-events"];
    assert!(path["get"].is_object(), "{path}");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        path.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["get"],
        "only GET is documented (HEAD is implied)"
    );
    assert!(paths.contains_key("/v1/audit-events"));
    let get = &path["get"];
    assert_eq!(get["operationId"], "list_audit_events");
    assert_eq!(get["tags"], json!(["audit-events"]));
    let params: Vec<(&str, &str)> = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap()))
        .collect();
    assert_eq!(
        params,
        [
            ("X-Tenant-ID", "header"),
            ("key_id", "query"),
            ("type", "query"),
            ("limit", "query"),
            ("starting_after", "query")
        ]
    );
    for status in ["200", "400", "401", "403", "405", "500", "503"] {
        assert!(get["responses"][status].is_object(), "response {status}");
    }
    assert!(get["security"].is_array());

    let schemas = &doc["components"]["schemas"];
    let event = &schemas["EventObject"];
    assert!(event.is_object(), "EventObject schema");
    let mut properties: Vec<&str> = event["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    properties.sort_unstable();
    let mut expected = EVENT_FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(properties, expected);
    assert!(schemas["EventList"].is_object());
    assert!(schemas["ActorObject"].is_object());
}

// ---- the actor is checked when the write commits ----------------------------

/// An authenticator that, once it has authenticated a key other than
/// `revoker`'s, revokes that key through the service: the key was valid at
/// authentication and is revoked by the time its write reaches the store.
struct RevokeAfterAuthentication {
    service: Arc<ApiKeys>,
    revoker: Principal,
}

impl Authenticator for RevokeAfterAuthentication {
    fn authenticate(&self, credentials: &Credentials) -> Result<Arc<ApiKey>, AuthError> {
        let key = self.service.authenticate(credentials)?;
        if key.id != self.revoker.key_id {
            self.service.revoke(&self.revoker, None, &key.id).unwrap();
        }
        Ok(key)
    }
}

#[actix_web::test]
async fn a_write_whose_caller_was_revoked_after_authentication_is_401_api_key_revoked_and_writes_nothing(
) {
    // Given a target key X, and an app whose authenticator revokes each
    // caller (but Acme's live key) right after authenticating it.
    let fx = Fx::new();
    let (x, _) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let state = AppState::new(
        fx.service.clone(),
        Arc::new(RevokeAfterAuthentication {
            service: fx.service.clone(),
            revoker: fx.live_principal(),
        }),
        Arc::new(StoreReadiness(fx.store.clone())),
    );
    let app = test::init_service(app(state)).await;
    let x_uri = format!("/v1/api-keys/{x}");
    let writes: [(Method, &str, Option<Value>); 4] = [
        (
            Method::POST,
            "/v1/api-keys",
            Some(json!({"name": "Never", "type": "secret"})),
        ),
        (Method::PATCH, &x_uri, Some(json!({"name": "Never"}))),
        (Method::DELETE, &x_uri, None),
        (Method::POST, "/v1/api-keys/rotate", Some(json!({"id": x}))),
    ];
    for (method, uri, body) in writes {
        // A fresh full-access caller K for each write.
        let (k, key) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
        let before = fx.store.stored_events().len();

        // When K makes the write.
        let r = send(
            &app,
            write_req!(&fx, method.clone(), uri, &key, "req-late", body),
        )
        .await;

        // Then 401 api_key_revoked with WWW-Authenticate, and the only new
        // event is K's revocation (by Acme's live key).
        r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let stored = fx.store.stored_events();
        assert_eq!(stored.len(), before + 1, "{method} {uri}");
        let event = &stored[before].event;
        assert_eq!(event.event_type().as_str(), "api_key.revoked");
        assert_eq!(event.key_id.map(|id| id.to_string()), Some(k.clone()));
        assert_eq!(
            event.actor.key_id().map(|id| id.to_string()),
            Some(fx.acme.live_id.clone())
        );
        assert!(stored
            .iter()
            .all(|s| s.event.request_id.as_deref() != Some("req-late")));
    }

    // And X is as it was: same name, not revoked, not rotated; no key
    // "Never" exists.
    let normal = test::init_service(http_actix::app(fx.state())).await;
    let r = send(
        &normal,
        fx.req(Method::GET, &x_uri, &fx.acme.live).to_request(),
    )
    .await;
    let key = r.json();
    assert_eq!(key["name"], "Made in a test");
    assert_eq!(key["revoked"], false);
    assert_eq!(key["revokes_at"], Value::Null);
    let r = send(
        &normal,
        fx.req(Method::GET, "/v1/api-keys?revoked=true", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert!(r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["name"] != "Never"));
}

#[actix_web::test]
async fn an_update_of_limits_restrictions_and_metadata_shows_each_old_and_new_value() {
    let fx = Fx::new();
    let app = init!(fx);
    let live = &fx.acme.live;
    let (secret, _) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let (publishable, _) = fx.make_key(KeyType::Publishable, Mode::Live, &["users:read"], None);
    let patch = |id: &str, body: Value| {
        fx.req_json(Method::PATCH, &format!("/v1/api-keys/{id}"), live, &body)
            .to_request()
    };
    let last_update = |id: &str| format!("?type=api_key.updated&key_id={id}&limit=1");

    let r = send(
        &app,
        patch(
            &secret,
            json!({"rate_limit": {"limit": 100, "window": "1m"},
                   "credits": {"remaining": 500, "refill": {"amount": 1000, "interval": "daily"}},
                   "allowed_ips": ["203.0.113.7/24", "2001:db8::1"],
                   "metadata": {"team": "billing", "plan": "pro"}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let events = events_of(&send(&app, audit!(fx, &last_update(&secret), live)).await);
    assert_eq!(
        events[0]["data"],
        json!({"changes": {
            "rate_limit": {"old": null, "new": {"limit": 100, "window": "1m"}},
            "credits": {"old": null, "new": {"remaining": 500, "refill": {"amount": 1000, "interval": "daily"}}},
            "allowed_ips": {"old": null, "new": ["203.0.113.0/24", "2001:db8::1/128"]},
            "metadata": {"old": {}, "new": {"plan": "pro", "team": "billing"}},
        }})
    );

    // Lifting and merging: the old values in full, the new after the merge.
    let r = send(
        &app,
        patch(
            &secret,
            json!({"rate_limit": null, "allowed_ips": null, "metadata": {"team": null}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let events = events_of(&send(&app, audit!(fx, &last_update(&secret), live)).await);
    assert_eq!(
        events[0]["data"],
        json!({"changes": {
            "rate_limit": {"old": {"limit": 100, "window": "1m"}, "new": null},
            "allowed_ips": {"old": ["203.0.113.0/24", "2001:db8::1/128"], "new": null},
            "metadata": {"old": {"plan": "pro", "team": "billing"}, "new": {"plan": "pro"}},
        }})
    );

    let r = send(
        &app,
        patch(
            &publishable,
            json!({"allowed_origins": ["https://*.Example.com", "http://localhost:3000"]}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let events = events_of(&send(&app, audit!(fx, &last_update(&publishable), live)).await);
    assert_eq!(
        events[0]["data"],
        json!({"changes": {"allowed_origins": {
            "old": null,
            "new": ["https://*.example.com", "http://localhost:3000"],
        }}})
    );
}
