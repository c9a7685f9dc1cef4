//! The API through `actix_web::test` over the same app the server runs, with
//! the domain's in-memory store, a test clock and deterministic secrets.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{authed, send, Fx};
use domain::{KeyType, Mode, OsSecretSource, PlainKey};
use http_actix::app;
use serde_json::{json, Value};
use time::Duration;

const KEY_FIELDS: [&str; 17] = [
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

const CREATED_FIELDS: [&str; 10] = [
    "id",
    "name",
    "type",
    "mode",
    "key",
    "prefix",
    "last_four",
    "scopes",
    "expires_at",
    "created_at",
];

const ROTATED_FIELDS: [&str; 12] = [
    "id",
    "key",
    "old_key_id",
    "old_key_revokes_at",
    "name",
    "type",
    "mode",
    "scopes",
    "prefix",
    "last_four",
    "created_at",
    "expires_at",
];

macro_rules! init {
    ($fx:expr) => {
        test::init_service(app($fx.state())).await
    };
}

// ---- probes, documents, routing -------------------------------------------

#[actix_web::test]
async fn healthz_answers_ok_without_a_key() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(&app, TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ok"}));
    assert!(r.header("x-request-id").is_some());
}

#[actix_web::test]
async fn readyz_answers_ready_when_the_store_is_up() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(&app, TestRequest::get().uri("/readyz").to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "ready"}));
}

#[actix_web::test]
async fn readyz_is_503_with_retry_after_when_the_store_is_down() {
    let fx = Fx::new();
    let app = init!(fx);
    fx.store.set_unavailable(true);
    let r = send(&app, TestRequest::get().uri("/readyz").to_request()).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", None);
}

#[actix_web::test]
async fn unknown_route_is_json_404_not_found() {
    let fx = Fx::new();
    let app = init!(fx);
    for uri in ["/nope", "/v1/api-keys/key_x/extra", "/v2/api-keys", "/"] {
        let r = send(&app, TestRequest::get().uri(uri).to_request()).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found", None);
    }
}

/// The OpenAPI documents' routes: there with the feature `openapi` only.
const DOCUMENTS: &[&str] = if cfg!(feature = "openapi") {
    &["/openapi.json", "/openapi-3.0.json"]
} else {
    &[]
};

#[actix_web::test]
async fn wrong_method_is_json_405_with_allow_header() {
    let fx = Fx::new();
    let app = init!(fx);
    let cases = [
        (Method::DELETE, "/v1/api-keys", "GET, HEAD, POST"),
        (
            Method::PUT,
            "/v1/api-keys/key_01HABCDEF666555",
            "GET, HEAD, PATCH, DELETE",
        ),
        (Method::GET, "/v1/api-keys/rotate", "POST"),
        (Method::HEAD, "/v1/api-keys/rotate", "POST"),
        (Method::POST, "/healthz", "GET, HEAD"),
        (Method::POST, "/readyz", "GET, HEAD"),
        (Method::OPTIONS, "/v1/api-keys", "GET, HEAD, POST"),
    ];
    let documents = DOCUMENTS
        .iter()
        .map(|uri| (Method::DELETE, *uri, "GET, HEAD"));
    for (method, uri, allow) in cases.into_iter().chain(documents) {
        let r = send(
            &app,
            TestRequest::default().method(method).uri(uri).to_request(),
        )
        .await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        assert_eq!(r.header("allow"), Some(allow), "{uri}");
    }
}

#[actix_web::test]
async fn head_is_answered_wherever_get_is() {
    // RFC 9110 §9.1: a server that answers GET answers HEAD (load balancers
    // probe with it); the HTTP/1 encoder drops the body on the wire.
    let fx = Fx::new();
    let app = init!(fx);
    for &uri in ["/healthz", "/readyz"].iter().chain(DOCUMENTS) {
        let r = send(
            &app,
            TestRequest::default()
                .method(Method::HEAD)
                .uri(uri)
                .to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert!(r.header("x-request-id").is_some(), "{uri}");
    }
    let key_uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    for uri in ["/v1/api-keys", key_uri.as_str()] {
        let r = send(&app, fx.req(Method::HEAD, uri, &fx.acme.live).to_request()).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let r = send(
            &app,
            TestRequest::default()
                .method(Method::HEAD)
                .uri(uri)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{uri}");
    }
}

#[actix_web::test]
async fn well_formed_request_id_is_echoed_in_header_and_error_body() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/v1/api-keys")
            .insert_header(("X-Request-ID", "client-req.42_A"))
            .to_request(),
    )
    .await;
    assert_eq!(r.header("x-request-id"), Some("client-req.42_A"));
    assert_eq!(r.json()["error"]["request_id"], "client-req.42_A");
}

#[actix_web::test]
async fn malformed_request_id_is_replaced_by_a_generated_one() {
    let fx = Fx::new();
    let app = init!(fx);
    let too_long = "a".repeat(129);
    for bad in ["has space", "semi;colon", too_long.as_str()] {
        let r = send(
            &app,
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("X-Request-ID", bad))
                .to_request(),
        )
        .await;
        let id = r.header("x-request-id").unwrap();
        assert_ne!(id, bad);
        assert!(id.starts_with("req_") && id.len() == 30, "{id}");
    }
    let a = send(&app, TestRequest::get().uri("/healthz").to_request()).await;
    let b = send(&app, TestRequest::get().uri("/healthz").to_request()).await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    let max = "b".repeat(128);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/healthz")
            .insert_header(("X-Request-ID", max.as_str()))
            .to_request(),
    )
    .await;
    assert_eq!(r.header("x-request-id"), Some(max.as_str()));
}

// ---- authentication (docs/api.md, "Conventions", authentication) -------------------------------------------

#[actix_web::test]
async fn missing_authorization_is_401_missing_api_key() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/v1/api-keys")
            .insert_header(("X-Tenant-ID", fx.acme.tenant.as_str()))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
}

#[actix_web::test]
async fn non_bearer_scheme_or_empty_token_is_401_missing_api_key() {
    let fx = Fx::new();
    let app = init!(fx);
    for value in [
        format!("Basic {}", fx.acme.live),
        "Bearer ".to_owned(),
        fx.acme.live.clone(),
    ] {
        let r = send(
            &app,
            TestRequest::get()
                .uri("/v1/api-keys")
                .insert_header(("Authorization", value))
                .insert_header(("X-Tenant-ID", fx.acme.tenant.as_str()))
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    }
}

#[actix_web::test]
async fn bearer_scheme_is_case_insensitive() {
    let fx = Fx::new();
    let app = init!(fx);
    for scheme in ["bearer", "BEARER", "BeArEr"] {
        let r = send(
            &app,
            TestRequest::get()
                .uri("/v1/api-keys")
                .insert_header(("Authorization", format!("{scheme} {}", fx.acme.live)))
                .insert_header(("X-Tenant-ID", fx.acme.tenant.as_str()))
                .to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{scheme}");
    }
}

#[actix_web::test]
async fn malformed_key_is_401_invalid_api_key_before_the_tenant_header_is_checked() {
    let fx = Fx::new();
    let app = init!(fx);
    let mut bad_checksum = fx.acme.live.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    for key in ["sk_live_abc123", "not-a-key", bad_checksum.as_str()] {
        let r = send(
            &app,
            TestRequest::get()
                .uri("/v1/api-keys")
                .insert_header(("Authorization", format!("Bearer {key}")))
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    }
}

#[actix_web::test]
async fn missing_or_malformed_tenant_header_is_400_invalid_tenant_id() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        TestRequest::get()
            .uri("/v1/api-keys")
            .insert_header(("Authorization", format!("Bearer {}", fx.acme.live)))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
    let r = send(
        &app,
        authed(
            Method::GET,
            "/v1/api-keys",
            &fx.acme.live,
            "tnt_01HABCDEF654321",
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
}

#[actix_web::test]
async fn well_formed_unknown_key_is_401_invalid_api_key() {
    let fx = Fx::new();
    let app = init!(fx);
    let unknown = PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret();
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &unknown).to_request(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
}

#[actix_web::test]
async fn revoked_key_is_401_api_key_revoked() {
    let fx = Fx::new();
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{id}");
    let r = send(
        &app,
        fx.req(Method::DELETE, &uri, &fx.acme.live).to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &key).to_request()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
}

#[actix_web::test]
async fn expired_key_is_401_api_key_expired() {
    let fx = Fx::new();
    let (_, key) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], Some("1m"));
    let app = init!(fx);
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &key).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    fx.clock.advance(Duration::minutes(1));
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &key).to_request()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_expired", None);
}

#[actix_web::test]
async fn key_of_another_tenant_is_403_tenant_mismatch() {
    let fx = Fx::new();
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let app = init!(fx);
    let r = send(
        &app,
        authed(Method::GET, "/v1/api-keys", &globex.live, &fx.acme.tenant).to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "tenant_mismatch", None);
}

#[actix_web::test]
async fn authentication_answers_before_body_validation() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        TestRequest::post()
            .uri("/v1/api-keys")
            .insert_header(("Content-Type", "text/plain"))
            .set_payload("{not json")
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
}

// ---- authorization (docs/api.md, "Conventions", authorization) --------------------------------------------

#[actix_web::test]
async fn publishable_key_is_403_secret_key_required() {
    let fx = Fx::new();
    let (_, pk) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let app = init!(fx);
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &pk).to_request()).await;
    r.assert_error(StatusCode::FORBIDDEN, "secret_key_required", None);
    // Before any body validation, too.
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &pk, &json!({}))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "secret_key_required", None);
}

#[actix_web::test]
async fn secret_key_without_wildcard_is_403_insufficient_scope() {
    let fx = Fx::new();
    let (_, sk) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    let r = send(&app, fx.req(Method::GET, &uri, &sk).to_request()).await;
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
    let r = send(
        &app,
        fx.req(Method::DELETE, "/v1/api-keys/malformed", &sk)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
}

#[actix_web::test]
async fn test_key_gets_404_for_a_live_key() {
    let fx = Fx::new();
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    for method in [Method::GET, Method::DELETE] {
        let r = send(&app, fx.req(method, &uri, &fx.acme.test).to_request()).await;
        r.assert_error(StatusCode::NOT_FOUND, "key_not_found", None);
    }
    for uri in ["/v1/api-keys", "/v1/api-keys?mode=live"] {
        let r = send(&app, fx.req(Method::GET, uri, &fx.acme.test).to_request()).await;
        let ids: Vec<String> = r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        let expected: &[String] = if uri.ends_with("live") {
            &[]
        } else {
            std::slice::from_ref(&fx.acme.test_id)
        };
        assert_eq!(ids, expected, "{uri}");
    }
}

#[actix_web::test]
async fn test_key_cannot_create_live_keys() {
    let fx = Fx::new();
    let app = init!(fx);
    let body = json!({"name": "x", "type": "secret", "mode": "live"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.test, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "live_mode_required", Some("mode"));
    // Without `mode`, a test key makes a test key.
    let body = json!({"name": "x", "type": "secret"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.test, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["mode"], "test");
    assert!(r.json()["key"].as_str().unwrap().starts_with("sk_test_"));
}

// ---- list ------------------------------------------------------------------

#[actix_web::test]
async fn list_has_the_documented_shape() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), ["data", "has_more"]);
    assert_eq!(r.keys_at(&["data", "0"]), KEY_FIELDS);
    let body = r.json();
    assert_eq!(body["has_more"], false);
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "live and test keys of the tenant");
    let live = data
        .iter()
        .find(|k| k["id"] == fx.acme.live_id.as_str())
        .unwrap();
    assert_eq!(live["type"], "secret");
    assert_eq!(live["mode"], "live");
    assert_eq!(live["scopes"], json!(["*"]));
    assert_eq!(live["created_at"], "2024-01-10T09:00:00Z");
    assert_eq!(live["prefix"], &fx.acme.live[..12]);
    assert_eq!(live["last_four"], &fx.acme.live[fx.acme.live.len() - 4..]);
    assert_eq!(live["expires_at"], Value::Null);
    assert_eq!(live["revoked"], false);
    assert_eq!(live["revokes_at"], Value::Null);
    assert!(!r
        .body
        .windows(fx.acme.live.len())
        .any(|w| w == fx.acme.live.as_bytes()));
}

#[actix_web::test]
async fn list_filters_by_type_and_mode_and_hides_revoked_by_default() {
    let fx = Fx::new();
    let (pk_id, _) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let (gone_id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let app = init!(fx);
    let r = send(
        &app,
        fx.req(
            Method::DELETE,
            &format!("/v1/api-keys/{gone_id}"),
            &fx.acme.live,
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let ids = |r: &common::Reply| -> Vec<String> {
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys?type=publishable", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(ids(&r), [pk_id.as_str()]);
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys?mode=test", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(ids(&r), [fx.acme.test_id.as_str()]);
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert!(!ids(&r).contains(&gone_id));
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys?revoked=true", &fx.acme.live)
            .to_request(),
    )
    .await;
    let listed = r.json();
    let gone = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == gone_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(gone["revoked"], true);
    assert_eq!(gone["revokes_at"], "2024-01-10T09:00:00Z");
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys?revoked=false", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert!(!ids(&r).contains(&gone_id));
}

#[actix_web::test]
async fn list_pages_with_limit_and_starting_after_newest_first() {
    let fx = Fx::new();
    fx.clock.advance(Duration::seconds(1));
    let (a, _) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    fx.clock.advance(Duration::seconds(1));
    let (b, _) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys?mode=live&limit=1", &fx.acme.live)
            .to_request(),
    )
    .await;
    let body = r.json();
    assert_eq!(body["data"][0]["id"], b.as_str());
    assert_eq!(body["has_more"], true);
    let uri = format!("/v1/api-keys?mode=live&limit=1&starting_after={b}");
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    assert_eq!(r.json()["data"][0]["id"], a.as_str());
    let uri = format!("/v1/api-keys?mode=live&limit=100&starting_after={a}");
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    let body = r.json();
    assert_eq!(body["data"][0]["id"], fx.acme.live_id.as_str());
    assert_eq!(body["has_more"], false);
}

#[actix_web::test]
async fn list_rejects_unknown_parameters() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys?status=active", &fx.acme.live)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST, "unknown_parameter", Some("status"));
}

#[actix_web::test]
async fn list_rejects_bad_parameter_values() {
    let fx = Fx::new();
    let app = init!(fx);
    let cases = [
        ("type=secrets", "type"),
        ("type=", "type"),
        ("revoked=yes", "revoked"),
        ("revoked=1", "revoked"),
        ("revoked=TRUE", "revoked"),
        ("mode=prod", "mode"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=-1", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=ten", "limit"),
        ("starting_after=key_123", "starting_after"),
        ("limit=5&limit=6", "limit"),
    ];
    for (query, param) in cases {
        let uri = format!("/v1/api-keys?{query}");
        let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(param));
    }
}

// ---- create ----------------------------------------------------------------

#[actix_web::test]
async fn create_answers_the_documented_example() {
    let fx = Fx::new();
    let app = init!(fx);
    let body = json!({
        "name": "Analytics Service",
        "type": "secret",
        "scopes": ["users:read", "sessions:read"],
        "expires_in": "90d"
    });
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.keys_at(&[]), CREATED_FIELDS);
    let created = r.json();
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("key_") && id.len() == 30);
    assert_eq!(
        r.header("location"),
        Some(format!("/v1/api-keys/{id}").as_str())
    );
    assert_eq!(created["name"], "Analytics Service");
    assert_eq!(created["type"], "secret");
    assert_eq!(created["mode"], "live");
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_") && key.len() == 46);
    assert_eq!(created["prefix"], &key[..12]);
    assert_eq!(created["last_four"], &key[42..]);
    assert_eq!(created["scopes"], json!(["users:read", "sessions:read"]));
    assert_eq!(created["created_at"], "2024-01-10T09:00:00Z");
    assert_eq!(created["expires_at"], "2024-04-09T09:00:00Z");

    // The new key works (though not for managing keys), and GET never shows it.
    let r = send(
        &app,
        fx.req(Method::GET, &format!("/v1/api-keys/{id}"), &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), KEY_FIELDS);
    assert!(r.json().get("key").is_none());
    assert!(!String::from_utf8_lossy(&r.body).contains(key));
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", key).to_request()).await;
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
}

#[actix_web::test]
async fn create_defaults_to_full_scopes_no_expiry_and_the_callers_mode() {
    let fx = Fx::new();
    let app = init!(fx);
    let body = json!({"name": "  Frontend  ", "type": "publishable"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let created = r.json();
    assert_eq!(created["name"], "Frontend");
    assert_eq!(created["scopes"], json!(["*"]));
    assert_eq!(created["expires_at"], Value::Null);
    assert_eq!(created["mode"], "live");
    assert!(created["key"].as_str().unwrap().starts_with("pk_live_"));
}

#[actix_web::test]
async fn create_accepts_json_with_a_charset() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(
        &app,
        fx.req(Method::POST, "/v1/api-keys", &fx.acme.live)
            .insert_header(("Content-Type", "Application/JSON; charset=utf-8"))
            .set_payload(r#"{"name":"x","type":"secret","mode":"test","scopes":["users:read","users:read"]}"#)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json()["mode"], "test");
    assert_eq!(
        r.json()["scopes"],
        json!(["users:read"]),
        "duplicates removed"
    );
}

#[actix_web::test]
async fn create_rejects_each_invalid_field_with_its_code_and_param() {
    let fx = Fx::new();
    let app = init!(fx);
    let cases = [
        (json!({"type": "secret"}), "missing_parameter", "name"),
        (
            json!({"name": null, "type": "secret"}),
            "missing_parameter",
            "name",
        ),
        (json!({"name": "x"}), "missing_parameter", "type"),
        (
            json!({"name": "  ", "type": "secret"}),
            "invalid_parameter",
            "name",
        ),
        (
            json!({"name": "a".repeat(101), "type": "secret"}),
            "invalid_parameter",
            "name",
        ),
        (
            json!({"name": "a\u{7}b", "type": "secret"}),
            "invalid_parameter",
            "name",
        ),
        (
            json!({"name": 5, "type": "secret"}),
            "invalid_parameter",
            "name",
        ),
        (
            json!({"name": "x", "type": "private"}),
            "invalid_parameter",
            "type",
        ),
        (
            json!({"name": "x", "type": "secret", "mode": "prod"}),
            "invalid_parameter",
            "mode",
        ),
        (
            json!({"name": "x", "type": "secret", "scopes": []}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"name": "x", "type": "secret", "scopes": ["users:delete"]}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"name": "x", "type": "secret", "scopes": ["*", "users:read"]}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"name": "x", "type": "secret", "scopes": "users:read"}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"name": "x", "type": "secret", "scopes": [1]}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"name": "x", "type": "secret", "expires_in": "90x"}),
            "invalid_duration",
            "expires_in",
        ),
        (
            json!({"name": "x", "type": "secret", "expires_in": "90 d"}),
            "invalid_duration",
            "expires_in",
        ),
        (
            json!({"name": "x", "type": "secret", "expires_in": "59s"}),
            "invalid_duration",
            "expires_in",
        ),
        (
            json!({"name": "x", "type": "secret", "expires_in": "11y"}),
            "invalid_duration",
            "expires_in",
        ),
        (
            json!({"name": "x", "type": "secret", "expires_in": 90}),
            "invalid_parameter",
            "expires_in",
        ),
        (
            json!({"name": "x", "type": "secret", "owner": "me"}),
            "unknown_field",
            "owner",
        ),
    ];
    for (body, code, param) in cases {
        let r = send(
            &app,
            fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, code, Some(param));
    }
}

#[actix_web::test]
async fn body_fields_are_type_checked_first_then_parsed_in_a_fixed_order() {
    let fx = Fx::new();
    let app = init!(fx);
    let id = fx.acme.test_id.as_str();
    let cases = [
        // Every field's JSON type before any field's value.
        (
            "/v1/api-keys",
            json!({"name": "", "type": 7}),
            "invalid_parameter",
            "type",
        ),
        (
            "/v1/api-keys",
            json!({"name": "x", "type": "secret", "scopes": "no", "mode": "bogus"}),
            "invalid_parameter",
            "scopes",
        ),
        // Then the values: name, type, mode, scopes, expires_in.
        (
            "/v1/api-keys",
            json!({"name": "", "type": "nope"}),
            "invalid_parameter",
            "name",
        ),
        (
            "/v1/api-keys",
            json!({"name": "x", "type": "secret", "scopes": ["nope"], "mode": "bogus"}),
            "invalid_parameter",
            "mode",
        ),
        (
            "/v1/api-keys",
            json!({"name": "x", "type": "secret", "scopes": ["nope"], "expires_in": "90x"}),
            "invalid_parameter",
            "scopes",
        ),
        // Rotation: the grace period before the id.
        (
            "/v1/api-keys/rotate",
            json!({"id": "key_bad", "grace_period": "8d"}),
            "invalid_duration",
            "grace_period",
        ),
        (
            "/v1/api-keys/rotate",
            json!({"id": id, "grace_period": 8}),
            "invalid_parameter",
            "grace_period",
        ),
    ];
    for (uri, body, code, param) in cases {
        let r = send(
            &app,
            fx.req_json(Method::POST, uri, &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, code, Some(param));
    }
}

#[actix_web::test]
async fn malformed_json_is_400_invalid_json() {
    let fx = Fx::new();
    let app = init!(fx);
    for payload in [
        "{\"name\": ",
        "",
        "[1, 2]",
        "\"text\"",
        "{\"name\": \"x\",}",
    ] {
        let r = send(
            &app,
            fx.req(Method::POST, "/v1/api-keys", &fx.acme.live)
                .insert_header(("Content-Type", "application/json"))
                .set_payload(payload)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_json", None);
    }
}

#[actix_web::test]
async fn body_over_16_kib_is_413_payload_too_large() {
    let fx = Fx::new();
    let app = init!(fx);
    let body = json!({"name": "x".repeat(16 * 1024), "type": "secret"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    let uri = format!("/v1/api-keys/{}", fx.acme.test_id);
    let r = send(
        &app,
        fx.req_json(Method::PATCH, &uri, &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
}

#[actix_web::test]
async fn body_without_json_content_type_is_415() {
    let fx = Fx::new();
    let app = init!(fx);
    let payload = r#"{"name":"x","type":"secret"}"#;
    let uri_patch = format!("/v1/api-keys/{}", fx.acme.test_id);
    let cases: [(Method, &str, Option<&str>); 4] = [
        (Method::POST, "/v1/api-keys", None),
        (Method::POST, "/v1/api-keys", Some("text/plain")),
        (
            Method::POST,
            "/v1/api-keys/rotate",
            Some("application/x-www-form-urlencoded"),
        ),
        (Method::PATCH, uri_patch.as_str(), Some("application/jsonx")),
    ];
    for (method, uri, content_type) in cases {
        let mut req = fx.req(method, uri, &fx.acme.live).set_payload(payload);
        if let Some(ct) = content_type {
            req = req.insert_header(("Content-Type", ct));
        }
        let r = send(&app, req.to_request()).await;
        r.assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
}

#[actix_web::test]
async fn create_beyond_the_key_limit_is_409_key_limit_reached() {
    // The tenant's live key and one more fill a limit of two live keys (its
    // test key counts apart).
    let fx = Fx::with_max_keys(2);
    let app = init!(fx);
    let body = json!({"name": "second", "type": "secret"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_limit_reached", None);
}

#[actix_web::test]
async fn rotating_with_a_grace_period_at_the_key_limit_is_409_key_limit_reached() {
    // The tenant's live key alone fills a limit of one live key: a rotation
    // with a grace period would make two count; one with `0s` makes one.
    let fx = Fx::with_max_keys(1);
    let app = init!(fx);
    let id = fx.acme.live_id.clone();
    let rotate = |grace: &str| {
        fx.req_json(
            Method::POST,
            "/v1/api-keys/rotate",
            &fx.acme.live,
            &json!({"id": id, "grace_period": grace}),
        )
        .to_request()
    };
    let r = send(&app, rotate("1h")).await;
    r.assert_error(StatusCode::CONFLICT, "key_limit_reached", None);
    let r = send(&app, rotate("0s")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["old_key_id"], json!(id));
}

// ---- get, update, revoke ---------------------------------------------------

#[actix_web::test]
async fn get_answers_the_key_object() {
    let fx = Fx::new();
    let app = init!(fx);
    fx.clock.advance(Duration::minutes(5));
    let uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), KEY_FIELDS);
    let key = r.json();
    assert_eq!(key["id"], fx.acme.live_id.as_str());
    assert_eq!(key["name"], "Default live secret key");
}

#[actix_web::test]
async fn unknown_or_malformed_or_foreign_id_is_404_key_not_found() {
    let fx = Fx::new();
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let app = init!(fx);
    let unknown = "key_01HABCDEF6665550000000000A";
    for id in [
        unknown,
        "key_01HABCDEF666555",
        "rotatee",
        "%20",
        globex.live_id.as_str(),
    ] {
        let uri = format!("/v1/api-keys/{id}");
        for method in [Method::GET, Method::DELETE] {
            let r = send(&app, fx.req(method, &uri, &fx.acme.live).to_request()).await;
            r.assert_error(StatusCode::NOT_FOUND, "key_not_found", None);
        }
        let r = send(
            &app,
            fx.req_json(Method::PATCH, &uri, &fx.acme.live, &json!({"name": "y"}))
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::NOT_FOUND, "key_not_found", None);
    }
}

#[actix_web::test]
async fn patch_renames_and_rescopes() {
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{id}");
    let body = json!({"name": "Renamed", "scopes": ["webhooks:write", "audit-logs:read"]});
    let r = send(
        &app,
        fx.req_json(Method::PATCH, &uri, &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), KEY_FIELDS);
    let key = r.json();
    assert_eq!(key["name"], "Renamed");
    assert_eq!(key["scopes"], json!(["webhooks:write", "audit-logs:read"]));
    let r = send(
        &app,
        fx.req_json(
            Method::PATCH,
            &uri,
            &fx.acme.live,
            &json!({"name": "Only name"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.json()["name"], "Only name");
    assert_eq!(
        r.json()["scopes"],
        json!(["webhooks:write", "audit-logs:read"])
    );
}

#[actix_web::test]
async fn patch_with_no_field_is_400_missing_parameter() {
    let fx = Fx::new();
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.test_id);
    for body in [json!({}), json!({"name": null})] {
        let r = send(
            &app,
            fx.req_json(Method::PATCH, &uri, &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, "missing_parameter", None);
    }
}

#[actix_web::test]
async fn patch_rejects_invalid_fields() {
    let fx = Fx::new();
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.test_id);
    let cases = [
        (json!({"name": ""}), "invalid_parameter", "name"),
        (json!({"scopes": ["nope"]}), "invalid_parameter", "scopes"),
        (json!({"name": ["x"]}), "invalid_parameter", "name"),
        (json!({"type": "publishable"}), "unknown_field", "type"),
    ];
    for (body, code, param) in cases {
        let r = send(
            &app,
            fx.req_json(Method::PATCH, &uri, &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, code, Some(param));
    }
}

#[actix_web::test]
async fn patch_of_a_revoked_key_is_409_key_revoked() {
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{id}");
    let r = send(
        &app,
        fx.req(Method::DELETE, &uri, &fx.acme.live).to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(
        &app,
        fx.req_json(Method::PATCH, &uri, &fx.acme.live, &json!({"name": "z"}))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_revoked", None);
}

#[actix_web::test]
async fn narrowing_the_last_full_access_key_is_409() {
    let fx = Fx::new();
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    let body = json!({"scopes": ["users:read"]});
    let r = send(
        &app,
        fx.req_json(Method::PATCH, &uri, &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "last_full_access_key", None);
}

#[actix_web::test]
async fn revoking_the_last_full_access_key_is_409() {
    let fx = Fx::new();
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    let r = send(
        &app,
        fx.req(Method::DELETE, &uri, &fx.acme.live).to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "last_full_access_key", None);
}

#[actix_web::test]
async fn delete_is_204_with_an_empty_body_and_idempotent() {
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{id}");
    for _ in 0..2 {
        let r = send(
            &app,
            fx.req(Method::DELETE, &uri, &fx.acme.live).to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.body.is_empty());
        assert!(r.header("x-request-id").is_some());
    }
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    assert_eq!(r.json()["revoked"], true);
}

// ---- rotate ----------------------------------------------------------------

#[actix_web::test]
async fn rotate_answers_the_documented_example() {
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], Some("30d"));
    fx.clock.advance(Duration::days(1));
    let app = init!(fx);
    let body = json!({"id": id, "grace_period": "24h"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys/rotate", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), ROTATED_FIELDS);
    let rotated = r.json();
    assert_ne!(rotated["id"], id.as_str());
    assert!(rotated["key"].as_str().unwrap().starts_with("sk_live_"));
    assert_eq!(rotated["old_key_id"], id.as_str());
    assert_eq!(rotated["old_key_revokes_at"], "2024-01-12T09:00:00Z");
    assert_eq!(rotated["name"], "Made in a test");
    assert_eq!(rotated["type"], "secret");
    assert_eq!(rotated["mode"], "live");
    assert_eq!(rotated["scopes"], json!(["users:read"]));
    assert_eq!(rotated["created_at"], "2024-01-11T09:00:00Z");
    assert_eq!(
        rotated["expires_at"], "2024-02-10T09:00:00Z",
        "the old lifetime, from now"
    );
    let r = send(
        &app,
        fx.req(Method::GET, &format!("/v1/api-keys/{id}"), &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.json()["revokes_at"], "2024-01-12T09:00:00Z");
    assert_eq!(r.json()["revoked"], false);
}

#[actix_web::test]
async fn rotated_key_works_until_its_grace_period_ends() {
    let fx = Fx::new();
    let (id, old) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys/rotate",
            &fx.acme.live,
            &json!({"id": id}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["old_key_revokes_at"],
        "2024-01-10T10:00:00Z",
        "default 1h"
    );
    let new = r.json()["key"].as_str().unwrap().to_owned();
    fx.clock.advance(Duration::hours(1) - Duration::seconds(1));
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &old).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    fx.clock.advance(Duration::seconds(1));
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &old).to_request()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &new).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[actix_web::test]
async fn zero_grace_period_revokes_the_old_key_at_once() {
    let fx = Fx::new();
    let (id, old) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let body = json!({"id": id, "grace_period": "0s"});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys/rotate", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&app, fx.req(Method::GET, "/v1/api-keys", &old).to_request()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
}

#[actix_web::test]
async fn rotating_twice_is_409_key_already_rotated() {
    let fx = Fx::new();
    let app = init!(fx);
    let body = json!({"id": fx.acme.live_id});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys/rotate", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "rotation never trips the full-access guard"
    );
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys/rotate", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_already_rotated", None);
}

#[actix_web::test]
async fn rotating_a_revoked_key_is_409_key_revoked() {
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], None);
    let app = init!(fx);
    let r = send(
        &app,
        fx.req(Method::DELETE, &format!("/v1/api-keys/{id}"), &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys/rotate",
            &fx.acme.live,
            &json!({"id": id}),
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_revoked", None);
}

#[actix_web::test]
async fn rotating_an_expired_key_is_409_key_expired() {
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["*"], Some("1m"));
    fx.clock.advance(Duration::minutes(2));
    let app = init!(fx);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys/rotate",
            &fx.acme.live,
            &json!({"id": id}),
        )
        .to_request(),
    )
    .await;
    r.assert_error(StatusCode::CONFLICT, "key_expired", None);
}

#[actix_web::test]
async fn rotate_rejects_bad_bodies() {
    let fx = Fx::new();
    let app = init!(fx);
    let id = fx.acme.test_id.as_str();
    let cases = [
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            Some("id"),
        ),
        (
            json!({"grace_period": "1h"}),
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            Some("id"),
        ),
        (
            json!({"id": 7}),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("id"),
        ),
        (
            json!({"id": id, "grace_period": "8d"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
            Some("grace_period"),
        ),
        (
            json!({"id": id, "grace_period": "1H"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
            Some("grace_period"),
        ),
        (
            json!({"id": id, "grace_period": "01h"}),
            StatusCode::BAD_REQUEST,
            "invalid_duration",
            Some("grace_period"),
        ),
        (
            json!({"id": id, "name": "x"}),
            StatusCode::BAD_REQUEST,
            "unknown_field",
            Some("name"),
        ),
        (
            json!({"id": "key_01HABCDEF666555"}),
            StatusCode::NOT_FOUND,
            "key_not_found",
            None,
        ),
        (
            json!({"id": "key_01HABCDEF6665550000000000A"}),
            StatusCode::NOT_FOUND,
            "key_not_found",
            None,
        ),
    ];
    for (body, status, code, param) in cases {
        let r = send(
            &app,
            fx.req_json(Method::POST, "/v1/api-keys/rotate", &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(status, code, param);
    }
}

#[actix_web::test]
async fn test_key_cannot_rotate_a_live_key() {
    let fx = Fx::new();
    let app = init!(fx);
    let body = json!({"id": fx.acme.live_id});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys/rotate", &fx.acme.test, &body)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::NOT_FOUND, "key_not_found", None);
}

// ---- availability ------------------------------------------------------------

#[actix_web::test]
async fn store_down_is_503_with_retry_after_on_every_v1_route() {
    let fx = Fx::new();
    let app = init!(fx);
    fx.store.set_unavailable(true);
    let uri = format!("/v1/api-keys/{}", fx.acme.test_id);
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &fx.acme.live)
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", None);
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", None);
    // And it recovers by itself.
    fx.store.set_unavailable(false);
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[actix_web::test]
async fn last_used_at_is_recorded_after_a_successful_request() {
    let fx = Fx::new();
    let app = init!(fx);
    let uri = format!("/v1/api-keys/{}", fx.acme.live_id);
    let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    let mut last_used = Value::Null;
    for _ in 0..100 {
        let r = send(&app, fx.req(Method::GET, &uri, &fx.acme.live).to_request()).await;
        last_used = r.json()["last_used_at"].clone();
        if !last_used.is_null() {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(last_used, "2024-01-10T09:00:00Z");
}

// ---- the OpenAPI document (feature `openapi`) -----------------------------------

/// Without the feature there is no document, and the 404 does not point to one.
#[cfg(not(feature = "openapi"))]
#[actix_web::test]
async fn without_the_feature_the_documents_are_unknown_routes() {
    let fx = Fx::new();
    let app = init!(fx);
    for uri in ["/openapi.json", "/openapi-3.0.json"] {
        let r = send(&app, TestRequest::get().uri(uri).to_request()).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found", None);
        assert_eq!(r.json()["error"]["message"], "no such route", "{uri}");
    }
}

#[cfg(feature = "openapi")]
#[actix_web::test]
async fn openapi_document_lists_every_route_status_and_error_code() {
    let fx = Fx::new();
    let app = init!(fx);
    let r = send(&app, TestRequest::get().uri("/openapi.json").to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let common = ["400", "401", "403", "405", "500", "503"];
    let routes: [(&str, &str, &[&str]); 9] = [
        ("/v1/api-keys", "get", &["200"]),
        ("/v1/api-keys", "post", &["201", "409", "413", "415"]),
        (
            "/v1/api-keys/rotate",
            "post",
            &["200", "404", "409", "413", "415"],
        ),
        ("/v1/api-keys/{id}", "get", &["200", "404"]),
        (
            "/v1/api-keys/{id}",
            "patch",
            &["200", "404", "409", "413", "415"],
        ),
        ("/v1/api-keys/{id}", "delete", &["204", "404", "409"]),
        ("/healthz", "get", &["200", "405"]),
        ("/readyz", "get", &["200", "405", "503"]),
        ("/openapi.json", "get", &["200", "405"]),
    ];
    for (path, method, statuses) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        let mut expected: Vec<&str> = statuses.to_vec();
        if path.starts_with("/v1") {
            expected.extend(common);
        }
        for status in expected {
            assert!(
                op["responses"][status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    let codes = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap();
    let text = doc.to_string();
    for code in http_actix::ErrorCode::ALL {
        assert!(
            codes.contains(&json!(code.as_str())),
            "{code} in the ErrorCode schema"
        );
        assert!(text.contains(code.as_str()));
    }
    assert_eq!(codes.len(), http_actix::ErrorCode::ALL.len());
    for schema in [
        "KeyObject",
        "KeyList",
        "CreatedKeyResponse",
        "RotatedKeyResponse",
        "ErrorBody",
        "CreateKeyRequest",
        "UpdateKeyRequest",
        "RotateKeyRequest",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

// ---- the server ----------------------------------------------------------------

#[actix_web::test]
async fn server_serves_the_app_on_the_given_listener() {
    use std::io::{Read, Write};
    let fx = Fx::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = http_actix::server(listener, fx.state(), Some(1)).unwrap();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let raw = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Request-ID: e2e-1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200 OK"), "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("x-request-id: e2e-1"),
        "{raw}"
    );
    assert!(raw.ends_with(r#"{"status":"ok"}"#), "{raw}");
    handle.stop(true).await;
}

#[actix_web::test]
async fn responses_that_carry_a_full_key_and_their_replays_are_not_stored() {
    // Create and rotate, each plain and under an Idempotency-Key (first
    // answer and replay): every answer with a full key says `no-store`.
    let fx = Fx::new();
    let (id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let app = init!(fx);
    let create = json!({"name": "No store", "type": "secret"});
    let rotate = json!({"id": id});
    let mut answers = Vec::new();
    for (path, body, once) in [
        ("/v1/api-keys", &create, None),
        ("/v1/api-keys", &create, Some("create-once")),
        ("/v1/api-keys", &create, Some("create-once")),
        ("/v1/api-keys/rotate", &rotate, Some("rotate-once")),
        ("/v1/api-keys/rotate", &rotate, Some("rotate-once")),
    ] {
        let mut req = fx.req_json(Method::POST, path, &fx.acme.live, body);
        if let Some(once) = once {
            req = req.insert_header(("Idempotency-Key", once));
        }
        let r = send(&app, req.to_request()).await;
        assert!(r.json()["key"].is_string(), "{path}: {}", r.json());
        answers.push((
            path,
            r.header("idempotent-replayed").map(str::to_owned),
            r.header("cache-control").map(str::to_owned),
        ));
    }
    let (plain_id, _) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let r = send(
        &app,
        fx.req_json(
            Method::POST,
            "/v1/api-keys/rotate",
            &fx.acme.live,
            &json!({"id": plain_id}),
        )
        .to_request(),
    )
    .await;
    answers.push((
        "/v1/api-keys/rotate",
        r.header("idempotent-replayed").map(str::to_owned),
        r.header("cache-control").map(str::to_owned),
    ));
    let no_store = Some("no-store".to_owned());
    let replayed = Some("true".to_owned());
    assert_eq!(
        answers,
        [
            ("/v1/api-keys", None, no_store.clone()),
            ("/v1/api-keys", None, no_store.clone()),
            ("/v1/api-keys", replayed.clone(), no_store.clone()),
            ("/v1/api-keys/rotate", None, no_store.clone()),
            ("/v1/api-keys/rotate", replayed, no_store.clone()),
            ("/v1/api-keys/rotate", None, no_store),
        ]
    );
}
