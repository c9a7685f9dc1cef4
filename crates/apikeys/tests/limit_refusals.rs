//! Usage limits on one node, end to end (docs/api.md, "Limiting a key's
//! use"): the `RateLimit-*` headers a route answers, the 429 past the
//! budget, that a use refused for its scope spends nothing, and that a
//! revocation still wins over a budget held in memory.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test: a failed step is a failed test"
)]

mod common;

use common::{json, TestApp};
use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

/// Creates a secret key with `fields` added to its body: its id and value.
async fn limited(app: &TestApp, fields: Value) -> (String, String) {
    let mut body = json!({"name": "Metered", "type": "secret"});
    for (field, value) in fields.as_object().unwrap() {
        body[field] = value.clone();
    }
    let created = app.create_key(body).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn verify(app: &TestApp, key: &str, scopes: Option<&[&str]>) -> Value {
    let mut body = json!({"key": key});
    if let Some(scopes) = scopes {
        body["scopes"] = json!(scopes);
    }
    let response = app
        .client
        .post(format!("{}/v1/api-keys/verify", app.base))
        .header("X-Tenant-ID", &app.tenant)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await
}

#[actix_web::test]
async fn a_route_counts_down_its_rate_limit_headers_then_answers_429_rate_limited() {
    let app = TestApp::spawn().await;
    let (id, key) = limited(&app, json!({"rate_limit": {"limit": 3, "window": "1d"}})).await;
    let path = format!("/v1/api-keys/{id}");

    for remaining in ["2", "1", "0"] {
        let response = app
            .request_as(Method::GET, &path, &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-limit"), Some("3"));
        assert_eq!(header(&response, "ratelimit-remaining"), Some(remaining));
        let reset: u64 = header(&response, "ratelimit-reset")
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=86_400).contains(&reset), "{reset}");
    }
    let refused = app
        .request_as(Method::GET, &path, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "ratelimit-remaining"), Some("0"));
    assert_eq!(json(refused).await["error"]["code"], "rate_limited");
    app.stop().await;
}

#[actix_web::test]
async fn a_use_refused_for_its_scope_spends_no_credit() {
    // Given a key that may read users, with 2 credits,
    let app = TestApp::spawn().await;
    let (_, key) = limited(
        &app,
        json!({"scopes": ["users:read"], "credits": {"remaining": 2, "refill": null}}),
    )
    .await;

    // five uses refused for their scope (a route that needs `*`, and
    // verifications asking for a scope it lacks) spend nothing,
    for _ in 0..3 {
        let response = app
            .request_as(Method::GET, "/v1/api-keys", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(json(response).await["error"]["code"], "insufficient_scope");
    }
    for _ in 0..2 {
        let verdict = verify(&app, &key, Some(&["users:write"])).await;
        assert_eq!(verdict["code"], "insufficient_scope", "{verdict}");
    }
    // so both credits are still there, and the third use is refused.
    for _ in 0..2 {
        let verdict = verify(&app, &key, Some(&["users:read"])).await;
        assert_eq!(verdict["valid"], true, "{verdict}");
    }
    let verdict = verify(&app, &key, None).await;
    assert_eq!(
        (&verdict["valid"], &verdict["code"]),
        (&json!(false), &json!("usage_exceeded")),
        "{verdict}"
    );
    app.stop().await;
}

#[actix_web::test]
async fn a_revocation_wins_over_a_budget_held_in_memory() {
    // Given a limited key whose budget this node holds a share of,
    let app = TestApp::spawn().await;
    let (id, key) = limited(
        &app,
        json!({"rate_limit": {"limit": 1000, "window": "1h"}, "credits": {"remaining": 1000, "refill": null}}),
    )
    .await;
    let path = format!("/v1/api-keys/{id}");
    let used = app
        .request_as(Method::GET, &path, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(used.status(), StatusCode::OK);

    // when it is revoked, its next use is refused as revoked, not admitted
    // against the share.
    let revoked = app.request(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let refused = app
        .request_as(Method::GET, &path, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(json(refused).await["error"]["code"], "api_key_revoked");
    let verdict = verify(&app, &key, None).await;
    assert_eq!(verdict["code"], "api_key_revoked", "{verdict}");
    app.stop().await;
}

/// `RateLimit-Limit`, `-Remaining` and `-Reset` of `response`, the reset
/// checked to be within a day and then left out.
fn budget(response: &Response) -> (Option<&str>, Option<&str>) {
    let reset: u64 = header(response, "ratelimit-reset")
        .expect("RateLimit-Reset")
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&reset), "{reset}");
    (
        header(response, "ratelimit-limit"),
        header(response, "ratelimit-remaining"),
    )
}

#[actix_web::test]
async fn the_webhook_routes_spend_a_limited_keys_budget_as_every_route_does() {
    let app = TestApp::spawn().await;
    let (_, key) = limited(&app, json!({"rate_limit": {"limit": 2, "window": "1d"}})).await;
    for remaining in ["1", "0"] {
        let response = app
            .request_as(Method::GET, "/v1/webhook-endpoints", &key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(budget(&response), (Some("2"), Some(remaining)));
    }
    let refused = app
        .request_as(Method::GET, "/v1/webhook-endpoints", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(json(refused).await["error"]["code"], "rate_limited");
    app.stop().await;
}

#[actix_web::test]
async fn a_use_refused_for_its_scope_carries_the_budget_unspent() {
    // Given a key that may read users, limited to 5 uses a day, used once,
    let app = TestApp::spawn().await;
    let (id, key) = limited(
        &app,
        json!({"scopes": ["users:read"], "rate_limit": {"limit": 5, "window": "1d"}}),
    )
    .await;
    let forward = |query: &'static str| {
        app.client
            .get(format!("{}/v1/forward-auth{query}", app.base))
            .header("X-API-Key", &key)
    };
    let used = forward("?scopes=users:read").send().await.unwrap();
    assert_eq!(used.status(), StatusCode::OK);
    assert_eq!(budget(&used), (Some("5"), Some("4")));

    // a route it lacks the scope for, and forward-auth asking for another
    // scope or type, answer 403 with the budget as it is, unspent;
    let route = app
        .request_as(Method::GET, &format!("/v1/api-keys/{id}"), &key)
        .send()
        .await
        .unwrap();
    assert_eq!(route.status(), StatusCode::FORBIDDEN);
    assert_eq!(budget(&route), (Some("5"), Some("4")));
    assert_eq!(json(route).await["error"]["code"], "insufficient_scope");
    for (query, code) in [
        ("?scopes=users:write", "insufficient_scope"),
        ("?type=publishable", "key_type_mismatch"),
    ] {
        let refused = forward(query).send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{query}");
        assert_eq!(budget(&refused), (Some("5"), Some("4")), "{query}");
        assert_eq!(json(refused).await["error"]["code"], code);
    }
    // and the next use is the second.
    let used = forward("").send().await.unwrap();
    assert_eq!(used.status(), StatusCode::OK);
    assert_eq!(budget(&used), (Some("5"), Some("3")));
    app.stop().await;
}
