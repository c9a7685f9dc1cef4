//! The audit log end to end, over real HTTP and a real PostgreSQL: what the
//! writes record, the filters, the cursor, scopes and modes, the request id,
//! and that a write whose caller is revoked concurrently either commits
//! before the revocation or not at all (docs/events.md, "The actor").

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::collections::{HashMap, HashSet};

use common::{fields, json, TestApp};
use domain::{EventRepository, StoredEvent};
use reqwest::{Method, StatusCode};
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

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

/// `GET /v1/audit-events{query}` with `key`: the status and the body.
async fn audit(app: &TestApp, query: &str, key: &str) -> (StatusCode, Value) {
    let response = app
        .request_as(Method::GET, &format!("/v1/audit-events{query}"), key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, json(response).await)
}

/// The events of a 200 listing.
async fn events(app: &TestApp, query: &str, key: &str) -> Vec<Value> {
    let (status, body) = audit(app, query, key).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body["data"].as_array().unwrap().clone()
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

fn without_id(event: &Value) -> Value {
    let mut event = event.clone();
    event.as_object_mut().unwrap().remove("id");
    event
}

/// A write as the live key with `X-Request-ID: request_id`.
async fn write(
    app: &TestApp,
    method: Method,
    path: &str,
    request_id: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.request(method, path).header("X-Request-ID", request_id);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// Creates a key as the live key; its id and value.
async fn create(app: &TestApp, body: Value) -> (String, String) {
    let response = app.create_key(body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json(response).await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

/// The ids of the tenant's live and test keys (made in one millisecond).
async fn first_key_ids(app: &TestApp) -> (String, String) {
    let listed = json(
        app.request(Method::GET, "/v1/api-keys")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id_of = |mode: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["mode"] == mode)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    (id_of("live"), id_of("test"))
}

#[actix_web::test]
async fn each_write_is_recorded_once_with_its_actor_and_request_id_newest_first() {
    // Given the tenant (created by the CLI) and a clock that moves a second
    // before each write.
    let app = TestApp::spawn().await;
    let (live_id, test_id) = first_key_ids(&app).await;
    let caller = json!({"type": "api_key", "key_id": live_id});

    // When the live key creates, patches, rotates and revokes, each request
    // with its own X-Request-ID.
    app.clock.advance(Duration::seconds(1));
    let created = write(
        &app,
        Method::POST,
        "/v1/api-keys",
        "e2e-create",
        Some(json!({"name": "Worker", "type": "secret"})),
    )
    .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let a = json(created).await["id"].as_str().unwrap().to_owned();
    let a_path = format!("/v1/api-keys/{a}");
    app.clock.advance(Duration::seconds(1));
    let patched = write(
        &app,
        Method::PATCH,
        &a_path,
        "e2e-patch",
        Some(json!({"name": "Worker", "scopes": ["users:write", "users:read"]})),
    )
    .await;
    assert_eq!(patched.status(), StatusCode::OK);
    app.clock.advance(Duration::seconds(1));
    let rotated = write(
        &app,
        Method::POST,
        "/v1/api-keys/rotate",
        "e2e-rotate",
        Some(json!({"id": a, "grace_period": "90m"})),
    )
    .await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let b = json(rotated).await["id"].as_str().unwrap().to_owned();
    let b_path = format!("/v1/api-keys/{b}");
    app.clock.advance(Duration::seconds(1));
    let revoked = write(&app, Method::DELETE, &b_path, "e2e-revoke", None).await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    // Then the log holds exactly these events, newest first, each object
    // with the documented fields in order.
    let response = app
        .request(Method::GET, "/v1/audit-events")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json(response).await;
    assert_eq!(fields(&body), ["data", "has_more"]);
    assert_eq!(body["has_more"], false);
    let all = body["data"].as_array().unwrap().clone();
    for event in &all {
        assert_eq!(fields(event), EVENT_FIELDS);
    }
    let mut descending = ids(&all);
    descending.sort_unstable_by(|x, y| y.cmp(x));
    assert_eq!(descending, ids(&all));
    let tenant = app.tenant.as_str();
    let expected = [
        json!({"type": "api_key.revoked", "created_at": "2024-01-10T09:00:04Z",
            "tenant_id": tenant, "key_id": b, "mode": "live", "actor": caller,
            "request_id": "e2e-revoke", "data": {}}),
        json!({"type": "api_key.created", "created_at": "2024-01-10T09:00:03Z",
            "tenant_id": tenant, "key_id": b, "mode": "live", "actor": caller,
            "request_id": "e2e-rotate", "data": {"rotated_from": a}}),
        json!({"type": "api_key.rotated", "created_at": "2024-01-10T09:00:03Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "e2e-rotate", "data": {"replaced_by": b,
                "grace_period": "90m", "revokes_at": "2024-01-10T10:30:03Z"}}),
        json!({"type": "api_key.updated", "created_at": "2024-01-10T09:00:02Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "e2e-patch", "data": {"changes": {"scopes": {
                "old": ["*"], "new": ["users:read", "users:write"]}}}}),
        json!({"type": "api_key.created", "created_at": "2024-01-10T09:00:01Z",
            "tenant_id": tenant, "key_id": a, "mode": "live", "actor": caller,
            "request_id": "e2e-create", "data": {}}),
        json!({"type": "api_key.created", "created_at": "2024-01-10T09:00:00Z",
            "tenant_id": tenant, "key_id": test_id, "mode": "test",
            "actor": {"type": "cli"}, "request_id": null, "data": {}}),
        json!({"type": "api_key.created", "created_at": "2024-01-10T09:00:00Z",
            "tenant_id": tenant, "key_id": live_id, "mode": "live",
            "actor": {"type": "cli"}, "request_id": null, "data": {}}),
        json!({"type": "tenant.created", "created_at": "2024-01-10T09:00:00Z",
            "tenant_id": tenant, "key_id": null, "mode": null,
            "actor": {"type": "cli"}, "request_id": null, "data": {"name": "Acme"}}),
    ];
    assert_eq!(all.len(), expected.len(), "{all:#?}");
    for (i, (got, want)) in all.iter().zip(&expected).enumerate() {
        assert_eq!(&without_id(got), want, "event {i}");
    }
    assert_eq!(fields(&all[0]["actor"]), ["type", "key_id"]);

    // When B is deleted again and A is patched to what it is already, then
    // nothing is added.
    app.clock.advance(Duration::seconds(1));
    let again = write(&app, Method::DELETE, &b_path, "e2e-again", None).await;
    assert_eq!(again.status(), StatusCode::NO_CONTENT);
    let same = write(
        &app,
        Method::PATCH,
        &a_path,
        "e2e-same",
        Some(json!({"name": "Worker", "scopes": ["users:read", "users:write"]})),
    )
    .await;
    assert_eq!(same.status(), StatusCode::OK);
    assert_eq!(ids(&events(&app, "", &app.live_key).await), ids(&all));
}

#[actix_web::test]
async fn the_request_id_recorded_is_the_one_sent_or_the_one_announced() {
    let app = TestApp::spawn().await;

    // Given a create sent with X-Request-ID, and one sent without.
    let sent = write(
        &app,
        Method::POST,
        "/v1/api-keys",
        "trace.e2e-42_Z",
        Some(json!({"name": "Traced", "type": "publishable"})),
    )
    .await;
    assert_eq!(sent.headers()["x-request-id"], "trace.e2e-42_Z");
    let traced = json(sent).await["id"].as_str().unwrap().to_owned();
    let unsent = app
        .create_key(json!({"name": "Untraced", "type": "publishable"}))
        .await;
    let announced = unsent.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(announced.starts_with("req_") && announced.len() == 30);
    let untraced = json(unsent).await["id"].as_str().unwrap().to_owned();

    // When each key's events are read, then each carries its request's id.
    let one = events(&app, &format!("?key_id={traced}"), &app.live_key).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["request_id"], "trace.e2e-42_Z");
    let other = events(&app, &format!("?key_id={untraced}"), &app.live_key).await;
    assert_eq!(other.len(), 1);
    assert_eq!(other[0]["request_id"], announced.as_str());
}

#[actix_web::test]
async fn filters_cursor_scopes_and_modes_over_postgres() {
    // Given key A (created, updated, revoked), key P (created) and a test
    // key T (created by the test key), a second apart.
    let app = TestApp::spawn().await;
    let (live_id, test_id) = first_key_ids(&app).await;
    app.clock.advance(Duration::seconds(1));
    let (a, _) = create(&app, json!({"name": "A", "type": "secret"})).await;
    app.clock.advance(Duration::seconds(1));
    let renamed = app
        .request(Method::PATCH, &format!("/v1/api-keys/{a}"))
        .json(&json!({"name": "A2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), StatusCode::OK);
    app.clock.advance(Duration::seconds(1));
    let (p, _) = create(&app, json!({"name": "P", "type": "publishable"})).await;
    app.clock.advance(Duration::seconds(1));
    let deleted = app
        .request(Method::DELETE, &format!("/v1/api-keys/{a}"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    app.clock.advance(Duration::seconds(1));
    let t = app
        .request_as(Method::POST, "/v1/api-keys", &app.test_key)
        .json(&json!({"name": "T", "type": "secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), StatusCode::CREATED);
    let t = json(t).await["id"].as_str().unwrap().to_owned();
    let live = app.live_key.as_str();
    let all = events(&app, "", live).await;
    assert_eq!(all.len(), 8);

    // key_id, type, and both.
    let of_a = events(&app, &format!("?key_id={a}"), live).await;
    assert_eq!(
        types(&of_a),
        ["api_key.revoked", "api_key.updated", "api_key.created"]
    );
    let created = events(&app, "?type=api_key.created", live).await;
    let created_keys: Vec<&str> = created
        .iter()
        .map(|e| e["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(created_keys[..3], [t.as_str(), p.as_str(), a.as_str()]);
    let mut first_two = created_keys[3..].to_vec();
    first_two.sort_unstable();
    let mut expected_first = vec![live_id.as_str(), test_id.as_str()];
    expected_first.sort_unstable();
    assert_eq!(first_two, expected_first);
    let both = events(&app, &format!("?key_id={a}&type=api_key.updated"), live).await;
    assert_eq!(types(&both), ["api_key.updated"]);
    assert_eq!(
        both[0]["data"],
        json!({"changes": {"name": {"old": "A", "new": "A2"}}})
    );
    let tenant_events = events(&app, "?type=tenant.created", live).await;
    assert_eq!(types(&tenant_events), ["tenant.created"]);
    assert!(
        events(&app, &format!("?key_id={p}&type=api_key.revoked"), live)
            .await
            .is_empty()
    );

    // The cursor: pages of 3 with has_more, together the whole log.
    let mut walked = Vec::new();
    let mut query = "?limit=3".to_owned();
    let mut more_flags = Vec::new();
    loop {
        let (status, body) = audit(&app, &query, live).await;
        assert_eq!(status, StatusCode::OK);
        let page = ids(body["data"].as_array().unwrap());
        let has_more = body["has_more"].as_bool().unwrap();
        more_flags.push((page.len(), has_more));
        query = format!("?limit=3&starting_after={}", page.last().unwrap());
        walked.extend(page);
        if !has_more {
            break;
        }
    }
    assert_eq!(more_flags, [(3, true), (3, true), (2, false)]);
    assert_eq!(walked, ids(&all));
    let filtered = format!(
        "?type=api_key.created&limit=2&starting_after={}",
        all[0]["id"].as_str().unwrap()
    );
    let (_, body) = audit(&app, &filtered, live).await;
    assert_eq!(body["has_more"], true);
    assert_eq!(ids(body["data"].as_array().unwrap()), ids(&created[1..3]));

    // Scopes: publishable 403, a secret key without the scope 403, a
    // secret key with only audit-logs:read 200.
    app.clock.advance(Duration::seconds(1));
    let (_, pk) = create(&app, json!({"name": "pk", "type": "publishable"})).await;
    let (_, narrow) = create(
        &app,
        json!({"name": "narrow", "type": "secret", "scopes": ["users:read"]}),
    )
    .await;
    let (reader_id, reader) = create(
        &app,
        json!({"name": "reader", "type": "secret", "scopes": ["audit-logs:read"]}),
    )
    .await;
    let (status, body) = audit(&app, "", &pk).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "secret_key_required")
    );
    let (status, body) = audit(&app, "?bogus=1", &narrow).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::FORBIDDEN, "insufficient_scope")
    );
    let seen = events(&app, &format!("?key_id={reader_id}"), &reader).await;
    assert_eq!(types(&seen), ["api_key.created"]);
    assert_eq!(events(&app, "", &reader).await.len(), 11);

    // Modes: the test key sees the test keys' events only, never the
    // tenant's.
    let as_test = events(&app, "", &app.test_key).await;
    let test_keys: Vec<&str> = as_test
        .iter()
        .map(|e| e["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(test_keys, [t.as_str(), test_id.as_str()]);
    assert!(as_test.iter().all(|e| e["mode"] == "test"));
    for query in [format!("?key_id={a}"), "?type=tenant.created".to_owned()] {
        let (status, body) = audit(&app, &query, &app.test_key).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, json!({"data": [], "has_more": false}), "{query}");
    }

    // Bad input: 400 with the parameter's name.
    for (query, code, param) in [
        ("?mode=live", "unknown_parameter", "mode"),
        ("?limit=1&limit=2", "invalid_parameter", "limit"),
        ("?limit=0", "invalid_parameter", "limit"),
        ("?limit=abc", "invalid_parameter", "limit"),
        ("?type=nope", "invalid_parameter", "type"),
        ("?key_id=xyz", "invalid_parameter", "key_id"),
        (
            "?starting_after=key_01HABCDEF666555KXYZ0123456",
            "invalid_parameter",
            "starting_after",
        ),
    ] {
        let (status, body) = audit(&app, query, live).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_code(&body), code, "{query}");
        assert_eq!(body["error"]["param"], param, "{query}");
    }

    // Methods: HEAD answers without a body; others 405 with Allow.
    let head = app
        .request(Method::HEAD, "/v1/audit-events")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.bytes().await.unwrap().is_empty());
    let post = app
        .request(Method::POST, "/v1/audit-events")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
    assert_eq!(error_code(&json(post).await), "method_not_allowed");
}

/// One create of a round: its name and how it was answered.
struct Attempt {
    name: String,
    status: StatusCode,
    body: Value,
    www_authenticate: Option<String>,
}

/// Every event stored, in sequence order.
fn stored_events(app: &TestApp) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &StoredEvent| e.seq);
        let batch = app.store.events_after(after, 500).unwrap();
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// The names of every key of the tenant, revoked ones too.
async fn all_key_names(app: &TestApp) -> Vec<String> {
    let mut names = Vec::new();
    let mut query = "?revoked=true&limit=100".to_owned();
    loop {
        let body = json(
            app.request(Method::GET, &format!("/v1/api-keys{query}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let data = body["data"].as_array().unwrap();
        names.extend(data.iter().map(|k| k["name"].as_str().unwrap().to_owned()));
        if body["has_more"] != true {
            return names;
        }
        let last = data.last().unwrap()["id"].as_str().unwrap();
        query = format!("?revoked=true&limit=100&starting_after={last}");
    }
}

const ROUNDS: usize = 15;
const CREATES: usize = 6;

#[actix_web::test]
async fn creates_racing_the_revocation_of_their_key_commit_before_it_or_not_at_all() {
    let app = TestApp::spawn().await;
    let mut rounds: Vec<(String, Vec<Attempt>)> = Vec::new();

    for round in 0..ROUNDS {
        // Given a fresh full-access secret key K, made through the API.
        let (k_id, k) = create(&app, json!({"name": format!("K{round}"), "type": "secret"})).await;

        // When K makes several creates while the live key revokes K.
        let mut handles = Vec::new();
        for i in 0..CREATES {
            let name = format!("round {round} create {i}");
            let request = app
                .request_as(Method::POST, "/v1/api-keys", &k)
                .json(&json!({"name": name, "type": "publishable"}));
            handles.push(actix_web::rt::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let www_authenticate = response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap().to_owned());
                let body: Value = response.json().await.unwrap();
                Attempt {
                    name,
                    status,
                    body,
                    www_authenticate,
                }
            }));
            if i == CREATES / 2 {
                let revoke = app
                    .request(Method::DELETE, &format!("/v1/api-keys/{k_id}"))
                    .send();
                handles.push(actix_web::rt::spawn(async move {
                    let response = revoke.await.unwrap();
                    Attempt {
                        name: String::new(),
                        status: response.status(),
                        body: Value::Null,
                        www_authenticate: None,
                    }
                }));
            }
        }
        let mut attempts = Vec::new();
        for handle in handles {
            attempts.push(handle.await.unwrap());
        }
        let revoke_at = attempts.iter().position(|a| a.name.is_empty()).unwrap();
        let revoke = attempts.remove(revoke_at);

        // Then the revocation succeeds and each create is either 201 or 401
        // api_key_revoked (at authentication or at commit).
        assert_eq!(revoke.status, StatusCode::NO_CONTENT, "round {round}");
        for attempt in &attempts {
            match attempt.status {
                StatusCode::CREATED => {}
                StatusCode::UNAUTHORIZED => {
                    assert_eq!(error_code(&attempt.body), "api_key_revoked");
                    assert_eq!(attempt.www_authenticate.as_deref(), Some("Bearer"));
                }
                other => panic!("round {round}: {other} {}", attempt.body),
            }
        }
        rounds.push((k_id, attempts));
    }

    // And every 201's key exists with exactly one event, its creation by K;
    // no refused create left a key or an event; and every creation by K got
    // its sequence number before K's revocation did (it committed first).
    let names = all_key_names(&app).await;
    let stored = stored_events(&app);
    let mut created_by: HashMap<String, Vec<i64>> = HashMap::new();
    let mut revoked_seq: HashMap<String, i64> = HashMap::new();
    for e in &stored {
        let key = e.event.key_id.map(|id| id.to_string()).unwrap_or_default();
        match (e.event.event_type().as_str(), e.event.actor.key_id()) {
            ("api_key.created", Some(actor)) => {
                created_by.entry(actor.to_string()).or_default().push(e.seq);
            }
            ("api_key.revoked", _) => {
                assert!(revoked_seq.insert(key, e.seq).is_none(), "revoked twice");
            }
            _ => {}
        }
    }
    let (mut ok, mut refused) = (0, 0);
    for (k_id, attempts) in &rounds {
        let mut made_by_k = 0;
        for attempt in attempts {
            let present = names.iter().filter(|n| **n == attempt.name).count();
            if attempt.status == StatusCode::CREATED {
                ok += 1;
                made_by_k += 1;
                assert_eq!(present, 1, "{}", attempt.name);
                let id = attempt.body["id"].as_str().unwrap();
                let read = app
                    .request(Method::GET, &format!("/v1/api-keys/{id}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(read.status(), StatusCode::OK);
                assert_eq!(json(read).await["name"], attempt.name.as_str());
                let history = events(&app, &format!("?key_id={id}"), &app.live_key).await;
                assert_eq!(history.len(), 1, "{history:?}");
                assert_eq!(history[0]["type"], "api_key.created");
                assert_eq!(
                    history[0]["actor"],
                    json!({"type": "api_key", "key_id": k_id})
                );
            } else {
                refused += 1;
                assert_eq!(present, 0, "{} exists after a 401", attempt.name);
            }
        }
        let by_k = created_by.get(k_id).cloned().unwrap_or_default();
        assert_eq!(by_k.len(), made_by_k, "creations recorded for {k_id}");
        let k_revoked = revoked_seq[k_id];
        assert!(
            by_k.iter().all(|seq| *seq < k_revoked),
            "a creation by {k_id} was numbered after its revocation"
        );
    }
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "key names are unique");
    assert_eq!(names.len(), 2 + ROUNDS + ok);
    eprintln!("{ok} creates committed, {refused} refused over {ROUNDS} rounds");
}
