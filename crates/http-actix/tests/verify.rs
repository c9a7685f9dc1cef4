//! `POST /v1/api-keys/verify` (docs/api.md, "POST /v1/api-keys/verify"),
//! through `actix_web::test` over the in-memory store: every verdict, the
//! scopes, the recorded use, the tenant header and body errors, the headers
//! of every answer, and the authenticator's cached path (with a mock).
//!
//! Every request goes through [`verify_with`], which also checks what every
//! answer of the route must do: `Cache-Control: no-store`, and never the key
//! that was sent.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, Fx, Reply};
use domain::mocks::MockAuthenticator;
use domain::testing::SeqSecretSource;
use domain::{
    ApiKey, ApiKeyRepository, AuthError, GracePeriod, KeyId, KeyType, Mode, PlainKey,
    RepositoryError, TenantId,
};
use http_actix::app;
use serde_json::{json, Value};
use time::Duration;

const URI: &str = "/v1/api-keys/verify";

const TOP_VALID: [&str; 3] = ["valid", "code", "key"];
const TOP_REFUSED: [&str; 2] = ["valid", "code"];
const TOP_SCOPES: [&str; 4] = ["valid", "code", "key", "missing_scopes"];
const KEY_FIELDS: [&str; 13] = [
    "id",
    "tenant_id",
    "name",
    "type",
    "mode",
    "scopes",
    "expires_at",
    "revokes_at",
    "rate_limit",
    "credits",
    "allowed_ips",
    "allowed_origins",
    "metadata",
];

macro_rules! init {
    ($state:expr) => {
        test::init_service(app($state)).await
    };
}

/// A verify request for `tenant` with a JSON body and no `Authorization`.
fn verify_req(tenant: &str, body: &Value) -> TestRequest {
    TestRequest::default()
        .method(Method::POST)
        .uri(URI)
        .insert_header(("X-Tenant-ID", tenant.to_owned()))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string())
}

/// Asserts what every answer of the route does: `Cache-Control: no-store`,
/// an `X-Request-ID`, and none of `secrets` (the keys the request carried)
/// anywhere in the body, not even a key's part after its prefix.
fn check_answer(r: &Reply, secrets: &[&str]) {
    assert_eq!(r.header("cache-control"), Some("no-store"), "{}", show(r));
    assert!(r.header("x-request-id").is_some());
    let body = String::from_utf8_lossy(&r.body);
    for secret in secrets.iter().filter(|s| s.len() >= 6) {
        assert!(!body.contains(secret), "the key is in the answer: {body}");
        if let Some(tail) = secret.get(12..).filter(|t| t.len() >= 6) {
            assert!(
                !body.contains(tail),
                "part of the key is in the answer: {body}"
            );
        }
    }
}

/// The status and body, for assertion messages.
fn show(r: &Reply) -> String {
    format!("{} {}", r.status, String::from_utf8_lossy(&r.body))
}

/// Sends `req` and checks [`check_answer`].
async fn checked<S, R, B>(app: &S, req: R, secrets: &[&str]) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let r = send(app, req).await;
    check_answer(&r, secrets);
    r
}

/// Sends the `TestRequest` `$req` (which carried the keys `$secrets`) and
/// checks [`check_answer`].
macro_rules! verify_with {
    ($app:expr, $req:expr, $secrets:expr $(,)?) => {
        checked(&$app, $req.to_request(), $secrets).await
    };
}

/// `POST /v1/api-keys/verify` for `$tenant` with the JSON `$body`; the
/// body's `key`, if a string, must not come back.
macro_rules! verify {
    ($app:expr, $tenant:expr, $body:expr $(,)?) => {{
        let body: Value = $body;
        let key = body
            .get("key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        checked(&$app, verify_req($tenant, &body).to_request(), &[&key]).await
    }};
}

/// Asserts a 200 refusal: exactly `{"valid": false, "code": code}`.
fn assert_refused(r: &Reply, code: &str) {
    assert_eq!(r.status, StatusCode::OK, "{}", show(r));
    assert_eq!(
        r.json(),
        json!({"valid": false, "code": code}),
        "{}",
        show(r)
    );
    assert_eq!(r.keys_at(&[]), TOP_REFUSED);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
}

/// Asserts a 200 `valid` verdict and returns the key object, whose fields
/// must be in the documented order.
fn assert_valid(r: &Reply) -> Value {
    assert_eq!(r.status, StatusCode::OK, "{}", show(r));
    let body = r.json();
    assert_eq!(body["valid"], true, "{}", show(r));
    assert_eq!(body["code"], "valid", "{}", show(r));
    assert_eq!(r.keys_at(&[]), TOP_VALID);
    assert_eq!(r.keys_at(&["key"]), KEY_FIELDS);
    body["key"].clone()
}

/// The key as stored.
fn stored(fx: &Fx, id: &str) -> ApiKey {
    let tenant: TenantId = fx.acme.tenant.parse().unwrap();
    let id: KeyId = id.parse().unwrap();
    fx.store.find(&tenant, &id).unwrap().unwrap()
}

/// A well-formed key with a good checksum that no key has.
fn unknown_key() -> String {
    PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(9_999)).into_secret()
}

/// `key` with its last (checksum) character changed.
fn bad_checksum(key: &str) -> String {
    let mut bad = key[..key.len() - 1].to_owned();
    bad.push(if key.ends_with('0') { '1' } else { '0' });
    bad
}

/// The state over a mock authenticator (the service itself stays real).
// ---- valid keys -------------------------------------------------------------

#[actix_web::test]
async fn a_valid_key_is_answered_with_the_key_in_the_documented_field_order() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(
        KeyType::Secret,
        Mode::Live,
        &["sessions:read", "users:read"],
        Some("90d"),
    );

    let r = verify!(app, &fx.acme.tenant, json!({"key": key}));

    assert_valid(&r);
    assert_eq!(
        r.json(),
        json!({
            "valid": true,
            "code": "valid",
            "key": {
                "id": id,
                "tenant_id": fx.acme.tenant,
                "name": "Made in a test",
                "type": "secret",
                "mode": "live",
                "scopes": ["users:read", "sessions:read"],
                "expires_at": "2024-04-09T09:00:00Z",
                "revokes_at": null,
                "rate_limit": null,
                "credits": null,
                "allowed_ips": null,
                "allowed_origins": null,
                "metadata": {},
            },
        })
    );
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(r.header("www-authenticate"), None);
}

#[actix_web::test]
async fn a_full_access_key_verifies_with_null_timestamps() {
    let fx = Fx::new();
    let app = init!(fx.state());

    let r = verify!(app, &fx.acme.tenant, json!({"key": fx.acme.live}));

    assert_eq!(
        assert_valid(&r),
        json!({
            "id": fx.acme.live_id,
            "tenant_id": fx.acme.tenant,
            "name": stored(&fx, &fx.acme.live_id).name.as_str(),
            "type": "secret",
            "mode": "live",
            "scopes": ["*"],
            "expires_at": null,
            "revokes_at": null,
            "rate_limit": null,
            "credits": null,
            "allowed_ips": null,
            "allowed_origins": null,
            "metadata": {},
        })
    );
}

#[actix_web::test]
async fn a_publishable_key_and_a_test_key_verify_too() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (pk_id, pk) = fx.make_key(KeyType::Publishable, Mode::Live, &["users:read"], None);
    let (_, pk_test) = fx.make_key(KeyType::Publishable, Mode::Test, &["users:read"], None);

    let key = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": pk})));
    assert_eq!(key["id"], pk_id.as_str());
    assert_eq!(key["type"], "publishable");
    assert_eq!(key["mode"], "live");

    let key = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": pk_test})));
    assert_eq!(key["type"], "publishable");
    assert_eq!(key["mode"], "test");

    let key = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": fx.acme.test})));
    assert_eq!(key["id"], fx.acme.test_id.as_str());
    assert_eq!(key["mode"], "test");
}

#[actix_web::test]
async fn a_key_of_the_other_type_than_asked_is_key_type_mismatch_after_authentication() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, pk) = fx.make_key(KeyType::Publishable, Mode::Live, &["users:read"], None);
    let (_, sk) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let tenant = &fx.acme.tenant;
    for (key, wrong, right) in [
        (&pk, "secret", "publishable"),
        (&sk, "publishable", "secret"),
    ] {
        let r = verify!(app, tenant, json!({"key": key, "type": wrong}));
        assert_refused(&r, "key_type_mismatch");
        let key = assert_valid(&verify!(app, tenant, json!({"key": key, "type": right})));
        assert_eq!(key["type"], right);
    }
    // The type is judged on a key that authenticates: an unknown key is
    // `invalid_api_key` whatever it asks for.
    let r = verify!(
        app,
        tenant,
        json!({"key": unknown_key(), "type": "publishable"})
    );
    assert_refused(&r, "invalid_api_key");
    let r = verify!(app, tenant, json!({"key": sk, "type": "public"}));
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", show(&r));
    assert_eq!(r.json()["error"]["code"], "invalid_parameter");
    assert_eq!(r.json()["error"]["param"], "type");
}

#[actix_web::test]
async fn a_doubled_tenant_header_is_duplicate_header_before_the_body() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, sk) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    for body in [json!({"key": sk}), json!({"nope": 1})] {
        let req = verify_req(&fx.acme.tenant, &body)
            .append_header(("X-Tenant-ID", fx.acme.tenant.clone()));
        let r = verify_with!(app, req, &[&sk]);
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", show(&r));
        assert_eq!(r.json()["error"]["code"], "duplicate_header");
        assert_eq!(r.json()["error"]["param"], "X-Tenant-ID");
    }
}

#[actix_web::test]
async fn no_authorization_is_needed_and_one_sent_is_ignored() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let (revoked_id, revoked) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    fx.service
        .revoke(&fx.live_principal(), None, &revoked_id.parse().unwrap())
        .unwrap();

    for authorization in [
        "Bearer garbage".to_owned(),
        format!("Bearer {revoked}"),
        "Basic abc".to_owned(),
    ] {
        let req = verify_req(&fx.acme.tenant, &json!({"key": key}))
            .insert_header(("Authorization", authorization));
        let r = verify_with!(app, req, &[&key, &revoked]);
        assert_valid(&r);
    }
}

// ---- refusals, in authentication's order -------------------------------------

#[actix_web::test]
async fn a_string_that_is_not_a_key_is_invalid_api_key_without_any_storage_work() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let live = fx.acme.live.clone();
    // A store that is down would answer 503: these never reach it.
    fx.store.set_unavailable(true);

    for not_a_key in [
        String::new(),
        "not-a-key".to_owned(),
        bad_checksum(&live),
        format!(" {live}"),
        format!("{live}\n"),
        live.to_uppercase(),
        live.replacen("sk_live_", "xk_live_", 1),
        live[..live.len() - 1].to_owned(),
        format!("{live}0"),
    ] {
        let req = verify_req(&fx.acme.tenant, &json!({"key": not_a_key}));
        let r = verify_with!(app, req, &[&not_a_key, &live]);
        assert_refused(&r, "invalid_api_key");
    }
}

#[actix_web::test]
async fn a_bad_checksum_is_invalid_api_key() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);

    let bad = bad_checksum(&key);
    let r = verify_with!(
        app,
        verify_req(&fx.acme.tenant, &json!({"key": bad})),
        &[&bad, &key],
    );

    assert_refused(&r, "invalid_api_key");
}

#[actix_web::test]
async fn an_unknown_key_is_invalid_api_key() {
    let fx = Fx::new();
    let app = init!(fx.state());

    let r = verify!(app, &fx.acme.tenant, json!({"key": unknown_key()}));

    assert_refused(&r, "invalid_api_key");
}

#[actix_web::test]
async fn a_revoked_key_is_api_key_revoked() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    fx.service
        .revoke(&fx.live_principal(), None, &id.parse().unwrap())
        .unwrap();

    let r = verify!(app, &fx.acme.tenant, json!({"key": key}));

    assert_refused(&r, "api_key_revoked");
}

#[actix_web::test]
async fn a_rotated_key_verifies_in_its_grace_period_and_is_revoked_after_it() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, old) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let rotated = fx
        .service
        .rotate(
            &fx.live_principal(),
            None,
            &id.parse().unwrap(),
            GracePeriod::parse("1h").unwrap(),
        )
        .unwrap();
    let new = rotated.secret.into_secret();

    // In the grace period: valid, with the scheduled revocation.
    let key = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": old})));
    assert_eq!(key["revokes_at"], "2024-01-10T10:00:00Z");

    // Past it: revoked; the successor verifies.
    fx.clock.advance(Duration::hours(1));
    let r = verify!(app, &fx.acme.tenant, json!({"key": old}));
    assert_refused(&r, "api_key_revoked");
    let key = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": new})));
    assert_eq!(key["id"], rotated.key.id.to_string());
    assert_eq!(key["revokes_at"], Value::Null);
}

#[actix_web::test]
async fn an_expired_key_is_api_key_expired() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], Some("1h"));

    fx.clock.advance(Duration::minutes(59));
    let body = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": key})));
    assert_eq!(body["expires_at"], "2024-01-10T10:00:00Z");

    fx.clock.advance(Duration::minutes(1));
    let r = verify!(app, &fx.acme.tenant, json!({"key": key}));
    assert_refused(&r, "api_key_expired");
}

#[actix_web::test]
async fn a_key_of_another_tenant_is_tenant_mismatch_after_the_other_checks() {
    let fx = Fx::new();
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let app = init!(fx.state());

    let r = verify!(app, &globex.tenant, json!({"key": fx.acme.live}));
    assert_refused(&r, "tenant_mismatch");
    let r = verify!(app, &fx.acme.tenant, json!({"key": globex.test}));
    assert_refused(&r, "tenant_mismatch");
    // A tenant that does not exist at all: the key is not its either.
    let nobody = "tnt_01HQ2ZJ8N0000000000000000Z";
    let r = verify!(app, nobody, json!({"key": fx.acme.live}));
    assert_refused(&r, "tenant_mismatch");

    // Revoked and expired are answered before the tenant, as in
    // authentication.
    let (id, revoked) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    fx.service
        .revoke(&fx.live_principal(), None, &id.parse().unwrap())
        .unwrap();
    let (_, expiring) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], Some("1m"));
    fx.clock.advance(Duration::minutes(1));
    let r = verify!(app, &globex.tenant, json!({"key": revoked}));
    assert_refused(&r, "api_key_revoked");
    let r = verify!(app, &globex.tenant, json!({"key": expiring}));
    assert_refused(&r, "api_key_expired");
}

// ---- scopes -----------------------------------------------------------------

#[actix_web::test]
async fn a_key_lacking_scopes_is_insufficient_scope_with_the_missing_ones_in_canonical_order() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(
        KeyType::Secret,
        Mode::Live,
        &["users:read", "sessions:read"],
        None,
    );

    let r = verify!(
        app,
        &fx.acme.tenant,
        json!({
            "key": key,
            "scopes": ["audit-logs:read", "users:read", "webhooks:write", "users:write", "users:write"],
        }),
    );

    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.keys_at(&[]), TOP_SCOPES);
    assert_eq!(r.keys_at(&["key"]), KEY_FIELDS);
    assert_eq!(
        r.json(),
        json!({
            "valid": false,
            "code": "insufficient_scope",
            "key": {
                "id": id,
                "tenant_id": fx.acme.tenant,
                "name": "Made in a test",
                "type": "secret",
                "mode": "live",
                "scopes": ["users:read", "sessions:read"],
                "expires_at": null,
                "revokes_at": null,
                "rate_limit": null,
                "credits": null,
                "allowed_ips": null,
                "allowed_origins": null,
                "metadata": {},
            },
            "missing_scopes": ["users:write", "webhooks:write", "audit-logs:read"],
        })
    );

    // `*` asked of a key without it is missing too.
    let r = verify!(
        app,
        &fx.acme.tenant,
        json!({"key": key, "scopes": ["users:read", "*"]}),
    );
    assert_eq!(r.json()["code"], "insufficient_scope");
    assert_eq!(r.json()["missing_scopes"], json!(["*"]));
}

#[actix_web::test]
async fn a_key_with_every_scope_asked_for_is_valid() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, key) = fx.make_key(
        KeyType::Secret,
        Mode::Live,
        &["users:read", "sessions:read"],
        None,
    );

    for scopes in [
        json!(["sessions:read", "users:read"]),
        json!(["users:read", "users:read"]),
        json!([]),
        Value::Null,
    ] {
        let r = verify!(app, &fx.acme.tenant, json!({"key": key, "scopes": scopes}));
        assert_valid(&r);
    }
    // `*` has every scope, `*` included.
    for scopes in [json!(["audit-logs:read", "webhooks:write"]), json!(["*"])] {
        let r = verify!(
            app,
            &fx.acme.tenant,
            json!({"key": fx.acme.live, "scopes": scopes}),
        );
        assert_valid(&r);
    }
}

#[actix_web::test]
async fn scopes_are_judged_only_for_a_key_that_authenticates() {
    let fx = Fx::new();
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let app = init!(fx.state());
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let body = json!({"key": key, "scopes": ["webhooks:write"]});

    let r = verify!(app, &globex.tenant, body.clone());
    assert_refused(&r, "tenant_mismatch");
    fx.service
        .revoke(&fx.live_principal(), None, &id.parse().unwrap())
        .unwrap();
    let r = verify!(app, &fx.acme.tenant, body);
    assert_refused(&r, "api_key_revoked");
    let r = verify!(
        app,
        &fx.acme.tenant,
        json!({"key": "not-a-key", "scopes": ["webhooks:write"]}),
    );
    assert_refused(&r, "invalid_api_key");
}

// ---- the use ------------------------------------------------------------------

#[actix_web::test]
async fn a_verification_is_recorded_as_a_use_of_the_key() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    assert_eq!(stored(&fx, &id).last_used_at, None);

    fx.clock.advance(Duration::minutes(5));
    assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": key})));
    let first = stored(&fx, &id).last_used_at;
    assert_eq!(
        first.map(http_actix::dto::timestamp).as_deref(),
        Some("2024-01-10T09:05:00Z")
    );

    // A key that is valid but lacks a scope was still used.
    fx.clock.advance(Duration::minutes(5));
    let r = verify!(
        app,
        &fx.acme.tenant,
        json!({"key": key, "scopes": ["webhooks:write"]}),
    );
    assert_eq!(r.json()["code"], "insufficient_scope");
    assert_eq!(
        stored(&fx, &id)
            .last_used_at
            .map(http_actix::dto::timestamp)
            .as_deref(),
        Some("2024-01-10T09:10:00Z")
    );

    // Refused verifications are no use: another tenant's header.
    let globex = Fx::tenant_of(&fx.service, "Globex");
    fx.clock.advance(Duration::minutes(5));
    assert_refused(
        &verify!(app, &globex.tenant, json!({"key": key})),
        "tenant_mismatch",
    );
    assert_eq!(
        stored(&fx, &id)
            .last_used_at
            .map(http_actix::dto::timestamp)
            .as_deref(),
        Some("2024-01-10T09:10:00Z")
    );
}

// ---- request errors -----------------------------------------------------------

#[actix_web::test]
async fn the_tenant_header_is_checked_before_the_body() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let key = fx.acme.live.clone();
    let good = json!({"key": key});

    let bad_tenants = [
        None,
        Some("tnt_bad"),
        Some(""),
        Some("key_01HQ2ZJ8N0000000000000000Z"),
        Some("tnt_01hq2zj8n0000000000000000z"),
    ];
    for tenant in bad_tenants {
        let requests = [
            json_request(tenant, good.to_string()),
            json_request(tenant, "{not json".to_owned()),
            json_request(tenant, r#"{"key": 1, "extra": true}"#.to_owned()),
            json_request(tenant, "x".repeat(20_000)),
            base(tenant)
                .insert_header(("Content-Type", "text/plain"))
                .set_payload(good.to_string()),
        ];
        for req in requests {
            let r = verify_with!(app, req, &[&key]);
            r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
        }
    }
}

/// A verify request with an optional tenant header.
fn base(tenant: Option<&str>) -> TestRequest {
    let req = TestRequest::default().method(Method::POST).uri(URI);
    match tenant {
        Some(t) => req.insert_header(("X-Tenant-ID", t.to_owned())),
        None => req,
    }
}

/// [`base`] with a JSON content type and a raw body.
fn json_request(tenant: Option<&str>, body: String) -> TestRequest {
    base(tenant)
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body)
}

#[actix_web::test]
async fn body_errors_are_answered_as_on_the_other_routes() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let tenant = Some(fx.acme.tenant.as_str());
    let key = fx.acme.live.clone();
    let good = json!({"key": key}).to_string();

    // Media type and size.
    for req in [
        base(tenant).set_payload(good.clone()),
        base(tenant)
            .insert_header(("Content-Type", "text/plain"))
            .set_payload(good.clone()),
        base(tenant)
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
            .set_payload(format!("key={key}")),
    ] {
        let r = verify_with!(app, req, &[&key]);
        r.assert_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            None,
        );
    }
    let padded = format!(
        r#"{{"key": "{key}", "scopes": [{}"users:read"]}}"#,
        " ".repeat(17_000)
    );
    let r = verify_with!(app, json_request(tenant, padded), &[&key]);
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);

    // Syntax and shape.
    for raw in [
        String::new(),
        "{not json".to_owned(),
        format!(r#"{{"key": "{key}""#),
        format!(r#"["{key}"]"#),
        format!(r#""{key}""#),
        "null".to_owned(),
    ] {
        let r = verify_with!(app, json_request(tenant, raw), &[&key]);
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_json", None);
    }

    // Field by field, in this order: unknown fields, `key`, `scopes`.
    let cases: [(Value, &str, &str); 13] = [
        (
            json!({"key": key, "tenant": "x"}),
            "unknown_field",
            "tenant",
        ),
        (
            json!({"scopes": ["nope"], "extra": 1}),
            "unknown_field",
            "extra",
        ),
        (
            json!({key.clone(): true}),
            "unknown_field",
            "sk_live_[redacted]",
        ),
        (json!({}), "missing_parameter", "key"),
        (json!({"key": null}), "missing_parameter", "key"),
        (
            json!({"scopes": ["users:read"]}),
            "missing_parameter",
            "key",
        ),
        (json!({"key": 42}), "invalid_parameter", "key"),
        (json!({"key": [key]}), "invalid_parameter", "key"),
        (
            json!({"key": {"value": key}, "scopes": "x"}),
            "invalid_parameter",
            "key",
        ),
        (
            json!({"key": key, "scopes": "users:read"}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"key": key, "scopes": ["users:read", 1]}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"key": key, "scopes": ["users:delete"]}),
            "invalid_parameter",
            "scopes",
        ),
        (
            json!({"key": "not-a-key", "scopes": ["Users:Read"]}),
            "invalid_parameter",
            "scopes",
        ),
    ];
    for (body, code, param) in cases {
        let r = verify_with!(app, verify_req(&fx.acme.tenant, &body), &[&key]);
        r.assert_error(StatusCode::BAD_REQUEST, code, Some(param));
    }

    // `charset` is accepted, as everywhere.
    let req = base(tenant)
        .insert_header(("Content-Type", "application/json; charset=utf-8"))
        .set_payload(good);
    assert_valid(&verify_with!(app, req, &[&key]));
}

#[actix_web::test]
async fn a_wrong_method_is_405_allow_post_and_not_taken_for_a_key_id() {
    let fx = Fx::new();
    let app = init!(fx.state());

    for method in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ] {
        let req = fx.req(method.clone(), URI, &fx.acme.live);
        let r = verify_with!(app, req, &[&fx.acme.live]);
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.header("allow"), Some("POST"), "{method}");
        if method != Method::HEAD {
            r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None);
        }
    }
}

#[actix_web::test]
async fn storage_down_is_503_and_not_a_verdict() {
    let fx = Fx::new();
    let app = init!(fx.state());
    fx.store.set_unavailable(true);

    let r = verify!(app, &fx.acme.tenant, json!({"key": fx.acme.live}));

    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", None);
}

#[actix_web::test]
async fn the_key_never_appears_in_any_answer() {
    // Every answer above is checked by `verify_with`; here one key goes
    // through each kind of answer in a row, in every place it can be put.
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], Some("1h"));
    let globex = Fx::tenant_of(&fx.service, "Globex");
    let bodies = [
        json!({"key": key}),
        json!({"key": key, "scopes": ["users:write"]}),
        json!({"key": key, "scopes": [key]}),
        json!({"key": key, "scopes": key}),
        json!({"key": [key]}),
        json!({"key": key, key.clone(): key}),
        json!({"key": bad_checksum(&key)}),
    ];
    let mut seen = Vec::new();
    for tenant in [fx.acme.tenant.as_str(), globex.tenant.as_str(), "tnt_bad"] {
        for body in &bodies {
            let r = verify_with!(app, verify_req(tenant, body), &[&key]);
            seen.push(r.status);
        }
    }
    fx.clock.advance(Duration::hours(1));
    let r = verify!(app, &fx.acme.tenant, json!({"key": key}));
    assert_refused(&r, "api_key_expired");
    fx.service
        .revoke(&fx.live_principal(), None, &id.parse().unwrap())
        .unwrap();
    let r = verify!(app, &fx.acme.tenant, json!({"key": key}));
    assert_refused(&r, "api_key_revoked");
    fx.store.set_unavailable(true);
    let r = verify!(app, &fx.acme.tenant, json!({"key": key}));
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(seen.contains(&StatusCode::OK) && seen.contains(&StatusCode::BAD_REQUEST));
}

// ---- the authenticator --------------------------------------------------------

#[actix_web::test]
async fn a_cached_answer_is_used_without_calling_authenticate() {
    let fx = Fx::new();
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let found = Arc::new(stored(&fx, &id));
    let expected_key = key.clone();
    let expected_tenant: TenantId = fx.acme.tenant.parse().unwrap();
    let mut mock = MockAuthenticator::new();
    mock.expect_authenticate_cached()
        .withf(move |c| {
            c.key().expose_secret() == expected_key && c.tenant() == Some(&expected_tenant)
        })
        .times(2)
        .returning(move |_| Some(Ok(Arc::clone(&found))));
    mock.expect_authenticate().never();
    let app = init!(fx.state_with(mock));

    let body = assert_valid(&verify!(app, &fx.acme.tenant, json!({"key": key})));
    assert_eq!(body["id"], id.as_str());
    let r = verify!(
        app,
        &fx.acme.tenant,
        json!({"key": key, "scopes": ["users:write"]}),
    );
    assert_eq!(r.json()["missing_scopes"], json!(["users:write"]));
}

#[actix_web::test]
async fn a_cached_refusal_is_the_verdict() {
    let fx = Fx::new();
    let mut mock = MockAuthenticator::new();
    mock.expect_authenticate_cached()
        .times(1)
        .returning(|_| Some(Err(AuthError::Revoked)));
    mock.expect_authenticate().never();
    let app = init!(fx.state_with(mock));

    let r = verify!(app, &fx.acme.tenant, json!({"key": fx.acme.live}));

    assert_refused(&r, "api_key_revoked");
}

#[actix_web::test]
async fn without_a_cached_answer_authenticate_decides() {
    let fx = Fx::new();
    let mut mock = MockAuthenticator::new();
    mock.expect_authenticate_cached()
        .times(3)
        .returning(|_| None);
    let mut answers = vec![
        Err(AuthError::Repository(RepositoryError::failure(
            "query",
            "syntax error",
        ))),
        Err(AuthError::Repository(RepositoryError::unavailable(
            "pool",
            "timed out",
        ))),
        Err(AuthError::Expired),
    ];
    mock.expect_authenticate()
        .times(3)
        .returning(move |_| answers.pop().unwrap());
    let app = init!(fx.state_with(mock));
    let body = json!({"key": fx.acme.live});

    assert_refused(
        &verify!(app, &fx.acme.tenant, body.clone()),
        "api_key_expired",
    );
    verify!(app, &fx.acme.tenant, body.clone()).assert_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        None,
    );
    let r = verify!(app, &fx.acme.tenant, body);
    r.assert_error(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", None);
    assert!(!String::from_utf8_lossy(&r.body).contains("syntax"));
}

#[actix_web::test]
async fn a_malformed_key_or_a_bad_request_never_reaches_the_authenticator() {
    let fx = Fx::new();
    let mut mock = MockAuthenticator::new();
    mock.expect_authenticate_cached().never();
    mock.expect_authenticate().never();
    let app = init!(fx.state_with(mock));

    let r = verify!(app, &fx.acme.tenant, json!({"key": "sk_live_short"}));
    assert_refused(&r, "invalid_api_key");
    let r = verify!(
        app,
        &fx.acme.tenant,
        json!({"key": fx.acme.live, "scopes": ["nope"]}),
    );
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some("scopes"));
    let r = verify!(app, "tnt_bad", json!({"key": fx.acme.live}));
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
}

// ---- the document ---------------------------------------------------------------

#[cfg(feature = "openapi")]
#[test]
fn the_openapi_document_describes_the_route_without_a_bearer_key() {
    let doc: Value = serde_json::from_str(&http_actix::openapi::openapi_json()).unwrap();
    let operation = &doc["paths"][URI]["post"];
    assert_eq!(operation["operationId"], "verify_api_key");
    // No bearer key: no security requirement, only the tenant header.
    assert_eq!(operation["security"], Value::Null);
    assert_eq!(
        operation["parameters"],
        json!([{
            "name": "X-Tenant-ID",
            "in": "header",
            "description": "The tenant: `tnt_` + ULID. Missing or malformed: 400 `invalid_tenant_id`; sent more than once: 400 `duplicate_header`.",
            "required": true,
            "schema": {"$ref": "#/components/schemas/TenantId"}
        }])
    );
    for status in ["200", "400", "405", "413", "415", "500", "503"] {
        assert!(
            operation["responses"][status]["headers"]["Cache-Control"].is_object(),
            "{status}"
        );
    }
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["VerifyCode"]["enum"],
        json!([
            "valid",
            "invalid_api_key",
            "api_key_revoked",
            "api_key_expired",
            "tenant_mismatch",
            "ip_not_allowed",
            "origin_not_allowed",
            "key_type_mismatch",
            "insufficient_scope",
            "rate_limited",
            "usage_exceeded"
        ])
    );
    assert_eq!(schemas["VerifyKeyRequest"]["required"], json!(["key"]));
    assert_eq!(
        schemas["VerifyKeyRequest"]["additionalProperties"],
        json!(false)
    );
    assert_eq!(
        schemas["VerifyKeyResponse"]["required"],
        json!(["valid", "code"])
    );
    let key_fields: Vec<&str> = schemas["VerifiedKey"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = KEY_FIELDS.to_vec();
    expected.sort_unstable();
    let mut key_fields = key_fields;
    key_fields.sort_unstable();
    assert_eq!(key_fields, expected);
}
