//! End to end over real HTTP and a real PostgreSQL: the product document's
//! curl examples and the contract's rules.

mod common;

use common::{create_tenant, fields, json, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use time::Duration;

const KEY_OBJECT: [&str; 17] = [
    "id",
    "name",
    "type",
    "mode",
    "prefix",
    "last_four",
    "scopes",
    "created_at",
    "last_used_at",
    "expires_at",
    "revoked",
    "revokes_at",
    "rate_limit",
    "credits",
    "allowed_ips",
    "allowed_origins",
    "metadata",
];

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no code>")
}

#[actix_web::test]
async fn list_keys_as_in_the_document() {
    let app = TestApp::spawn().await;

    let response = app
        .request(Method::GET, "/v1/api-keys")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body = json(response).await;
    assert_eq!(fields(&body), ["data", "has_more"]);
    assert_eq!(body["has_more"], json!(false));
    let data = body["data"].as_array().unwrap();
    // The tenant's two keys.
    assert_eq!(data.len(), 2);
    // Both keys were made in the same millisecond, so their order is the
    // random part of their ULIDs: look them up by mode.
    let by_mode = |mode: &str| {
        data.iter()
            .position(|k| k["mode"] == mode)
            .unwrap_or_else(|| panic!("no {mode} key"))
    };
    let (live, test) = (by_mode("live"), by_mode("test"));
    assert_eq!(fields(&data[test]), KEY_OBJECT);
    assert_eq!(fields(&data[live]), KEY_OBJECT);
    assert_eq!(data[test]["prefix"], &app.test_key[..12]);
    let key = &data[live];
    assert_eq!(key["type"], "secret");
    assert_eq!(key["scopes"], json!(["*"]));
    assert_eq!(key["prefix"], &app.live_key[..12]);
    assert_eq!(key["last_four"], &app.live_key[app.live_key.len() - 4..]);
    assert_eq!(key["created_at"], "2024-01-10T09:00:00Z");
    assert_eq!(key["revoked"], false);
    assert_eq!(key["expires_at"], Value::Null);
    // This very request used the key: last_used_at is recorded off the
    // request path, to the clock's time, shortly after.
    let mut last_used = Value::Null;
    for _ in 0..50 {
        let again = json(
            app.request(Method::GET, "/v1/api-keys")
                .send()
                .await
                .unwrap(),
        )
        .await;
        last_used = again["data"][live]["last_used_at"].clone();
        if !last_used.is_null() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(last_used, "2024-01-10T09:00:00Z");
    assert!(!body.to_string().contains(&app.live_key));
}

#[actix_web::test]
async fn create_key_as_in_the_document() {
    let app = TestApp::spawn().await;

    let response = app
        .create_key(json!({
            "name": "Analytics Service",
            "type": "secret",
            "scopes": ["users:read", "sessions:read"],
            "expires_in": "90d"
        }))
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body = json(response).await;
    assert_eq!(
        fields(&body),
        [
            "id",
            "name",
            "type",
            "mode",
            "key",
            "prefix",
            "last_four",
            "scopes",
            "expires_at",
            "created_at"
        ]
    );
    let id = body["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/api-keys/{id}"));
    assert_eq!(body["name"], "Analytics Service");
    assert_eq!(body["type"], "secret");
    assert_eq!(body["mode"], "live");
    assert_eq!(body["scopes"], json!(["users:read", "sessions:read"]));
    assert_eq!(body["created_at"], "2024-01-10T09:00:00Z");
    assert_eq!(body["expires_at"], "2024-04-09T09:00:00Z");
    let key = body["key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_"));
    assert_eq!(key.len(), 46);
    assert_eq!(body["prefix"], &key[..12]);

    // The new key authenticates, and lacks `*`: it may not manage keys.
    let scoped = app
        .request_as(Method::GET, "/v1/api-keys", key)
        .send()
        .await
        .unwrap();
    assert_eq!(scoped.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&json(scoped).await), "insufficient_scope");

    // Reading it back never shows the key again.
    let read = app.request(Method::GET, &location).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let read = json(read).await;
    assert_eq!(fields(&read), KEY_OBJECT);
    assert!(!read.to_string().contains(key));
}

#[actix_web::test]
async fn get_patch_and_delete_a_key() {
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({"name": "Worker", "type": "secret"}))
            .await,
    )
    .await;
    let path = format!("/v1/api-keys/{}", created["id"].as_str().unwrap());

    let patched = app
        .request(Method::PATCH, &path)
        .json(&json!({"name": "Worker (EU)", "scopes": ["webhooks:write", "users:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), StatusCode::OK);
    let patched = json(patched).await;
    assert_eq!(patched["name"], "Worker (EU)");
    assert_eq!(patched["scopes"], json!(["users:read", "webhooks:write"]));

    let deleted = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(deleted.bytes().await.unwrap().len(), 0);
    let again = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NO_CONTENT);

    let read = json(app.request(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(read["revoked"], true);
    assert_eq!(read["revokes_at"], "2024-01-10T09:00:00Z");
    let revoked_key = created["key"].as_str().unwrap();
    let refused = app
        .request_as(Method::GET, "/v1/api-keys", revoked_key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    assert_eq!(error_code(&json(refused).await), "api_key_revoked");

    // Listing leaves it out unless asked.
    let listed = json(
        app.request(Method::GET, "/v1/api-keys")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    let all = json(
        app.request(Method::GET, "/v1/api-keys?revoked=true")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3);
}

#[actix_web::test]
async fn rotation_keeps_the_old_key_for_the_grace_period() {
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({"name": "Backend", "type": "secret", "expires_in": "30d"}))
            .await,
    )
    .await;
    let old_id = created["id"].as_str().unwrap();
    let old_key = created["key"].as_str().unwrap();
    app.clock.advance(Duration::days(10));

    let rotated = app
        .request(Method::POST, "/v1/api-keys/rotate")
        .json(&json!({"id": old_id, "grace_period": "24h"}))
        .send()
        .await
        .unwrap();

    assert_eq!(rotated.status(), StatusCode::OK);
    let rotated = json(rotated).await;
    assert_eq!(
        &fields(&rotated)[..4],
        ["id", "key", "old_key_id", "old_key_revokes_at"]
    );
    assert_eq!(rotated["old_key_id"], old_id);
    assert_eq!(rotated["old_key_revokes_at"], "2024-01-21T09:00:00Z");
    assert_eq!(rotated["name"], "Backend");
    // The same 30-day lifetime, counted from the rotation.
    assert_eq!(rotated["created_at"], "2024-01-20T09:00:00Z");
    assert_eq!(rotated["expires_at"], "2024-02-19T09:00:00Z");
    let new_key = rotated["key"].as_str().unwrap();

    let status_with = |key: String| {
        let request = app.request_as(
            Method::GET,
            "/v1/api-keys/key_01HABCDEF66655500000000000",
            &key,
        );
        async move { request.send().await.unwrap() }
    };
    // Both keys authenticate during the grace period (404: the route is
    // authenticated, the key id is unknown).
    app.clock
        .advance(Duration::hours(24) - Duration::seconds(1));
    assert_eq!(
        status_with(old_key.to_owned()).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        status_with(new_key.to_owned()).await.status(),
        StatusCode::NOT_FOUND
    );

    app.clock.advance(Duration::seconds(1));
    let refused = status_with(old_key.to_owned()).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&json(refused).await), "api_key_revoked");
    assert_eq!(
        status_with(new_key.to_owned()).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[actix_web::test]
async fn twelve_concurrent_rotations_of_one_key_have_one_winner() {
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({"name": "Contended", "type": "secret"}))
            .await,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();

    let attempts = (0..12).map(|_| {
        app.request(Method::POST, "/v1/api-keys/rotate")
            .json(&json!({"id": id}))
            .send()
    });
    let responses = futures_join_all(attempts).await;

    let mut ok = 0;
    let mut conflicts = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => {
                assert_eq!(error_code(&json(response).await), "key_already_rotated");
                conflicts += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 11));
}

/// `join_all` without a futures dependency: spawn each on the runtime.
#[expect(
    clippy::unwrap_used,
    reason = "a panicked request task is a failed test"
)]
async fn futures_join_all<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let handles: Vec<_> = futures.map(actix_web::rt::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

#[actix_web::test]
async fn other_tenants_and_modes_are_invisible() {
    let app = TestApp::spawn().await;
    let other = create_tenant(&app.store, &app.clock, "Other");
    let theirs = app
        .client
        .post(format!("{}/v1/api-keys", app.base))
        .header("Authorization", format!("Bearer {}", other.live))
        .header("X-Tenant-ID", &other.id)
        .json(&json!({"name": "Theirs", "type": "secret"}))
        .send()
        .await
        .unwrap();
    let theirs = json(theirs).await;
    let their_path = format!("/v1/api-keys/{}", theirs["id"].as_str().unwrap());

    // Another tenant's key id: 404, as if it did not exist.
    let read = app.request(Method::GET, &their_path).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&json(read).await), "key_not_found");
    // Another tenant's key under this tenant's id: 403.
    let mismatch = app
        .request_as(Method::GET, "/v1/api-keys", &other.live)
        .send()
        .await
        .unwrap();
    assert_eq!(mismatch.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&json(mismatch).await), "tenant_mismatch");

    // A test key sees only test keys.
    let live = json(
        app.create_key(json!({"name": "Live one", "type": "publishable"}))
            .await,
    )
    .await;
    let live_path = format!("/v1/api-keys/{}", live["id"].as_str().unwrap());
    let hidden = app
        .request_as(Method::GET, &live_path, &app.test_key)
        .send()
        .await
        .unwrap();
    assert_eq!(hidden.status(), StatusCode::NOT_FOUND);
    let listed = json(
        app.request_as(Method::GET, "/v1/api-keys", &app.test_key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let modes: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["test"]);
    let refused = app
        .request_as(Method::POST, "/v1/api-keys", &app.test_key)
        .json(&json!({"name": "Sneaky", "type": "secret", "mode": "live"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&json(refused).await), "live_mode_required");
}

#[actix_web::test]
async fn the_last_full_access_key_cannot_be_revoked_or_narrowed() {
    let app = TestApp::spawn().await;
    let keys = json(
        app.request(Method::GET, "/v1/api-keys")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let live = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["mode"] == "live")
        .unwrap();
    let path = format!("/v1/api-keys/{}", live["id"].as_str().unwrap());

    let revoke = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(revoke.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(&json(revoke).await), "last_full_access_key");
    let narrow = app
        .request(Method::PATCH, &path)
        .json(&json!({"scopes": ["users:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(narrow.status(), StatusCode::CONFLICT);
    assert_eq!(error_code(&json(narrow).await), "last_full_access_key");

    // With a second full-access live key, the first can go.
    let second = json(
        app.create_key(json!({"name": "Second admin", "type": "secret"}))
            .await,
    )
    .await;
    let revoke = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(revoke.status(), StatusCode::NO_CONTENT);
    let with_second = app
        .request_as(Method::GET, "/v1/api-keys", second["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(with_second.status(), StatusCode::OK);
}

#[actix_web::test]
async fn errors_are_json_with_a_request_id() {
    let app = TestApp::spawn().await;

    let missing = app
        .client
        .get(format!("{}/v1/api-keys", app.base))
        .header("X-Request-ID", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["x-request-id"], "trace-123");
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let body = json(missing).await;
    assert_eq!(error_code(&body), "missing_api_key");
    assert_eq!(body["error"]["request_id"], "trace-123");

    let unknown_route = app
        .request(Method::GET, "/v2/nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_route.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_code(&json(unknown_route).await), "not_found");

    let bad_duration = app
        .create_key(json!({"name": "x", "type": "secret", "expires_in": "1.5d"}))
        .await;
    assert_eq!(bad_duration.status(), StatusCode::BAD_REQUEST);
    let body = json(bad_duration).await;
    assert_eq!(error_code(&body), "invalid_duration");
    assert_eq!(body["error"]["param"], "expires_in");
}

#[actix_web::test]
async fn health_and_readiness_need_no_key() {
    let app = TestApp::spawn().await;
    let health = app.get_public("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app.get_public("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let openapi = app.get_public("/openapi.json").await;
    assert_eq!(openapi.status(), StatusCode::OK);
    let doc = json(openapi).await;
    assert!(doc["paths"]["/v1/api-keys/rotate"]["post"].is_object());
}

#[actix_web::test]
async fn forward_auth_spends_its_cost_of_a_limited_key() {
    // Given a key with 3 credits and no refill,
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({
            "name": "Gateway client",
            "type": "secret",
            "scopes": ["users:read"],
            "credits": {"remaining": 3, "refill": null}
        }))
        .await,
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let forward = |query: &str| {
        app.request_as(Method::GET, &format!("/v1/forward-auth?{query}"), &key)
            .send()
    };

    // a use refused by its scopes spends nothing,
    let refused = forward("scopes=users:write&cost=3").await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(&json(refused).await), "insufficient_scope");

    // a use of cost 2 passes and leaves 1 (the RateLimit-* headers say so;
    // without a refill, the limit is what remains),
    let allowed = forward("scopes=users:read&cost=2").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header(&allowed, "ratelimit-limit").as_deref(), Some("1"));
    assert_eq!(
        header(&allowed, "ratelimit-remaining").as_deref(),
        Some("1")
    );
    assert_eq!(header(&allowed, "ratelimit-reset").as_deref(), Some("0"));

    // and a use of cost 2 more is 429 `usage_exceeded` (no `Retry-After`:
    // there is no refill to wait for), the body also in `X-ApiKey-Error`
    // for the gateway,
    let spent = forward("cost=2").await.unwrap();
    assert_eq!(spent.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&spent, "retry-after"), None);
    assert_eq!(header(&spent, "ratelimit-remaining").as_deref(), Some("1"));
    let in_header: Value =
        serde_json::from_str(&header(&spent, "x-apikey-error").unwrap()).unwrap();
    assert_eq!(error_code(&in_header), "usage_exceeded");
    assert_eq!(error_code(&json(spent).await), "usage_exceeded");

    // while the last credit still pays for a use of cost 1.
    let last = forward("cost=1").await.unwrap();
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(header(&last, "ratelimit-remaining").as_deref(), Some("0"));
}

#[actix_web::test]
async fn forward_auth_past_a_rate_limit_is_429_rate_limited_with_retry_after() {
    // Given a key limited to one use per hour, used once through forward-auth,
    let app = TestApp::spawn().await;
    let created = json(
        app.create_key(json!({
            "name": "Gateway client",
            "type": "secret",
            "rate_limit": {"limit": 1, "window": "1h"}
        }))
        .await,
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let forward = || {
        app.request_as(Method::POST, "/v1/forward-auth", &key)
            .send()
    };
    let first = forward().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-remaining"], "0");

    // when it is used again in the same window,
    let second = forward().await.unwrap();

    // then it is refused 429 `rate_limited`, told when to come back.
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = second.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    assert_eq!(second.headers()["ratelimit-limit"], "1");
    assert_eq!(error_code(&json(second).await), "rate_limited");
}
