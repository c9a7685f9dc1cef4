//! `/v1/forward-auth` (docs/api.md, "Forward authentication") through
//! `actix_web::test` over the in-memory store: both ways of presenting the
//! key, the optional tenant, every method, the query, the `X-ApiKey-*`
//! headers, the refusals with their headers and their copy in
//! `X-ApiKey-Error`, the recorded use, the failure limit, and the
//! authenticator's cached path (with a mock).
//!
//! Every request goes through [`forward`], which also checks what every
//! answer must do: `Cache-Control: no-store`, and a refusal's body repeated
//! in `X-ApiKey-Error`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, Fx, Reply};
use domain::mocks::MockAuthenticator;
use domain::{
    ApiKey, ApiKeyRepository, AuthError, KeyId, KeyType, Mode, OsSecretSource, PlainKey, TenantId,
};
use http_actix::{
    app, FailureLimitConfig, FailureLimiter, LimiterClock, ManualClock, TrustedProxies,
};
use serde_json::Value;
use time::Duration;

const URI: &str = "/v1/forward-auth";

macro_rules! init {
    ($state:expr) => {
        test::init_service(app($state)).await
    };
}

/// Sends `req` and checks what every answer carries: `no-store`; a
/// refusal's JSON body also in `X-ApiKey-Error`; the key never.
macro_rules! forward {
    ($app:expr, $req:expr) => {{
        let r = send(&$app, $req.to_request()).await;
        every_answer(&r);
        r
    }};
}

fn every_answer(r: &Reply) {
    assert_eq!(r.header("cache-control"), Some("no-store"));
    if r.status.is_success() {
        assert!(r.body.is_empty(), "an allowed answer has no body");
        assert_eq!(r.header("x-apikey-error"), None);
    } else {
        let copy: Value = serde_json::from_str(r.header("x-apikey-error").unwrap()).unwrap();
        assert_eq!(copy, r.json(), "X-ApiKey-Error repeats the body");
    }
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        !text.contains("_live_") && !text.contains("_test_"),
        "{text}"
    );
}

fn get() -> TestRequest {
    TestRequest::get().uri(URI)
}

fn bearer(req: TestRequest, key: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {key}")))
}

fn stored(fx: &Fx, id: &str) -> ApiKey {
    let tenant: TenantId = fx.acme.tenant.parse().unwrap();
    let id: KeyId = id.parse().unwrap();
    fx.store.find(&tenant, &id).unwrap().unwrap()
}

fn unknown_key() -> String {
    PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret()
}

fn assert_allowed(r: &Reply, fx: &Fx, id: &str, key_type: &str, mode: &str, scopes: &str) {
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.header("x-apikey-id"), Some(id));
    assert_eq!(
        r.header("x-apikey-tenant-id"),
        Some(fx.acme.tenant.as_str())
    );
    assert_eq!(r.header("x-apikey-type"), Some(key_type));
    assert_eq!(r.header("x-apikey-mode"), Some(mode));
    assert_eq!(r.header("x-apikey-scopes"), Some(scopes));
    assert_eq!(
        r.header("x-apikey-metadata"),
        None,
        "no metadata: no header"
    );
    assert_eq!(r.header("www-authenticate"), None);
}

#[actix_web::test]
async fn a_valid_key_is_allowed_with_its_headers_by_either_header_and_any_method() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(
        KeyType::Secret,
        Mode::Live,
        &["users:read", "users:write"],
        None,
    );
    let r = forward!(app, bearer(get(), &key));
    assert_allowed(&r, &fx, &id, "secret", "live", "users:read users:write");
    // A second answer for the same key is the same (remembered per thread).
    let again = forward!(app, bearer(get(), &key));
    assert_allowed(&again, &fx, &id, "secret", "live", "users:read users:write");
    let r = forward!(app, get().insert_header(("X-API-Key", key.clone())));
    assert_allowed(&r, &fx, &id, "secret", "live", "users:read users:write");
    for method in [
        "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "PROPFIND",
    ] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let req = bearer(TestRequest::default().method(method.clone()).uri(URI), &key)
            // The body is ignored, whatever it claims to be.
            .insert_header(("Content-Type", "application/xml"))
            .insert_header(("Content-Encoding", "gzip"))
            .set_payload("<not json/>");
        let r = forward!(app, req);
        assert_eq!(r.status, StatusCode::OK, "{method}");
    }
    // The tenant header, when sent, is the key's: allowed.
    let r = forward!(
        app,
        bearer(get(), &key).insert_header(("X-Tenant-ID", fx.acme.tenant.clone()))
    );
    assert_eq!(r.status, StatusCode::OK);
    // A publishable test key with `*`.
    let (pk_id, pk) = fx.make_key(KeyType::Publishable, Mode::Test, &["*"], None);
    let r = forward!(app, bearer(get(), &pk));
    assert_allowed(&r, &fx, &pk_id, "publishable", "test", "*");
}

#[actix_web::test]
async fn the_query_asks_for_scopes_type_and_cost() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (_, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let (_, pk) = fx.make_key(KeyType::Publishable, Mode::Live, &["*"], None);
    let with =
        |query: &str, key: &str| bearer(TestRequest::get().uri(&format!("{URI}?{query}")), key);
    for query in [
        "scopes=users:read",
        "scopes=users%3Aread&type=secret&cost=0",
        "cost=1000",
        "scopes=",
    ] {
        let r = forward!(app, with(query, &key));
        assert_eq!(r.status, StatusCode::OK, "{query}");
    }
    let r = forward!(app, with("scopes=users:read,users:write", &key));
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("users:write"));
    let r = forward!(app, with("type=publishable&scopes=users:read", &key));
    r.assert_error(StatusCode::FORBIDDEN, "key_type_mismatch", None);
    // A publishable key never has a sensitive scope, `*` or not.
    let r = forward!(app, with("scopes=users:write", &pk));
    r.assert_error(StatusCode::FORBIDDEN, "insufficient_scope", None);
    let r = forward!(app, with("scopes=users:read", &pk));
    assert_eq!(r.status, StatusCode::OK);

    for (query, param) in [
        ("scopes=nope", "scopes"),
        ("type=either", "type"),
        ("cost=1001", "cost"),
        ("cost=-1", "cost"),
        ("cost=", "cost"),
        ("cost=1&cost=2", "cost"),
    ] {
        let r = forward!(app, with(query, &key));
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(param));
    }
    let r = forward!(app, with("scope=users:read", &key));
    r.assert_error(StatusCode::BAD_REQUEST, "unknown_parameter", Some("scope"));
}

#[actix_web::test]
async fn refusals_carry_their_status_code_and_headers() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);

    let r = forward!(app, get());
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    let r = forward!(app, get().insert_header(("X-API-Key", " ")));
    r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    let r = forward!(app, bearer(get(), "sk_live_nope"));
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    let r = forward!(app, get().insert_header(("X-API-Key", "sk_live_\u{0455}x")));
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    let r = forward!(app, bearer(get(), &unknown_key()));
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    let r = forward!(
        app,
        bearer(get(), &key).insert_header(("X-Tenant-ID", "tnt_nope"))
    );
    r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
    let other = Fx::tenant_of(&fx.service, "Other");
    let r = forward!(
        app,
        bearer(get(), &key).insert_header(("X-Tenant-ID", other.tenant))
    );
    r.assert_error(StatusCode::FORBIDDEN, "tenant_mismatch", None);

    // Both headers, or either twice: which key counts is not guessed.
    let bearer_header = ("Authorization", format!("Bearer {key}"));
    let api_key_header = ("X-API-Key", key.clone());
    for (first, second, param) in [
        (&bearer_header, &api_key_header, "X-API-Key"),
        (&api_key_header, &api_key_header, "X-API-Key"),
        (&bearer_header, &bearer_header, "Authorization"),
    ] {
        let req = get()
            .append_header(first.clone())
            .append_header(second.clone());
        let r = forward!(app, req);
        r.assert_error(StatusCode::BAD_REQUEST, "duplicate_header", Some(param));
    }

    // Expired, then revoked.
    let (_, soon) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], Some("1h"));
    fx.clock.advance(Duration::hours(2));
    let r = forward!(app, bearer(get(), &soon));
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_expired", None);
    fx.service
        .revoke(&fx.live_principal(), None, &id.parse().unwrap())
        .unwrap();
    let r = forward!(app, bearer(get(), &key));
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
}

#[actix_web::test]
async fn an_allowed_request_is_a_use_of_the_key() {
    let fx = Fx::new();
    let app = init!(fx.state());
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    assert_eq!(stored(&fx, &id).last_used_at, None);
    fx.clock.advance(Duration::minutes(5));
    let r = forward!(app, bearer(get(), &key));
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        stored(&fx, &id)
            .last_used_at
            .map(http_actix::dto::timestamp)
            .as_deref(),
        Some("2024-01-10T09:05:00Z")
    );
}

#[actix_web::test]
async fn failures_count_against_the_end_clients_address_from_a_trusted_proxy() {
    let fx = Fx::new();
    let clock = ManualClock::default();
    let limiter = Arc::new(FailureLimiter::with_clock(
        &FailureLimitConfig {
            limit: 2,
            window: std::time::Duration::from_secs(60),
            trusted_proxies: TrustedProxies::parse("10.0.0.1").unwrap(),
            ..FailureLimitConfig::default()
        },
        LimiterClock::manual(&clock),
    ));
    let app = init!(fx.state().with_failure_limiter(limiter));
    let gateway: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let from = |client: &str, key: &str| {
        bearer(get(), key)
            .peer_addr(gateway)
            .insert_header(("X-Forwarded-For", client.to_owned()))
    };
    let stranger = unknown_key();
    for _ in 0..2 {
        let r = forward!(app, from("203.0.113.7", &stranger));
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    }
    let r = forward!(app, from("203.0.113.7", &stranger));
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    assert_eq!(r.header("retry-after"), Some("60"));
    // Blocked now, even with a good key; another client behind the same
    // gateway is not.
    let r = forward!(app, from("203.0.113.7", &fx.acme.live));
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    let r = forward!(app, from("198.51.100.2", &fx.acme.live));
    assert_eq!(r.status, StatusCode::OK);
    // A missing key is not a failure that counts.
    for _ in 0..3 {
        let r = forward!(
            app,
            get()
                .peer_addr(gateway)
                .insert_header(("X-Forwarded-For", "192.0.2.1"))
        );
        r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
    }
}

#[actix_web::test]
async fn the_cache_answers_without_blocking_and_storage_down_is_503() {
    let fx = Fx::new();
    let (id, key) = fx.make_key(KeyType::Secret, Mode::Live, &["users:read"], None);
    let found = Arc::new(stored(&fx, &id));
    let mut cached = MockAuthenticator::new();
    cached
        .expect_authenticate_cached()
        .withf(|c| c.tenant().is_none())
        .times(1)
        .returning(move |_| Some(Ok(Arc::clone(&found))));
    cached.expect_authenticate().never();
    let app = init!(fx.state_with(cached));
    let r = forward!(app, bearer(get(), &key));
    assert_eq!(r.header("x-apikey-id"), Some(id.as_str()));

    let mut down = MockAuthenticator::new();
    down.expect_authenticate_cached().returning(|_| None);
    down.expect_authenticate().times(1).returning(|_| {
        Err(AuthError::Repository(domain::RepositoryError::unavailable(
            "pool", "down",
        )))
    });
    let app = init!(fx.state_with(down));
    let r = forward!(app, bearer(get(), &key));
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "service_unavailable", None);
}

#[actix_web::test]
async fn restrictions_are_judged_on_the_end_client_and_metadata_is_passed_on() {
    let fx = Fx::new();
    let limiter = Arc::new(FailureLimiter::new(&FailureLimitConfig {
        trusted_proxies: TrustedProxies::parse("10.0.0.1").unwrap(),
        ..FailureLimitConfig::default()
    }));
    let app = init!(fx.state().with_failure_limiter(limiter));
    let request =
        |key_type, scopes: &[&str], ips: &[&str], origins: Option<&[&str]>| domain::CreateKey {
            name: domain::KeyName::parse("Restricted").unwrap(),
            key_type,
            mode: Some(Mode::Live),
            scopes: domain::Scopes::parse(scopes.iter().copied()).unwrap(),
            expires_in: None,
            limits: domain::UsageLimits::default(),
            restrictions: domain::KeyRestrictions {
                allowed_ips: Some(domain::AllowedIps::parse(ips.iter().copied()).unwrap()),
                allowed_origins: origins
                    .map(|o| domain::AllowedOrigins::parse(o.iter().copied()).unwrap()),
            },
            metadata: domain::Metadata::new([
                ("plan".to_owned(), "pro".to_owned()),
                ("owner".to_owned(), "équipe".to_owned()),
            ])
            .unwrap(),
        };
    let (id, key) = fx.make_restricted_key(request(
        KeyType::Secret,
        &["users:read"],
        &["203.0.113.0/24"],
        None,
    ));
    let gateway: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let via_gateway = |client: &str, key: &str| {
        bearer(get(), key)
            .peer_addr(gateway)
            .insert_header(("X-Forwarded-For", client.to_owned()))
    };

    // The end client's address, not the gateway's, is judged.
    let r = forward!(app, via_gateway("203.0.113.9", &key));
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-apikey-id"), Some(id.as_str()));
    // `{"owner":"équipe","plan":"pro"}`, base64url without padding.
    let metadata = r.header("x-apikey-metadata").unwrap();
    assert_eq!(metadata, "eyJvd25lciI6IsOpcXVpcGUiLCJwbGFuIjoicHJvIn0");
    let r = forward!(app, via_gateway("198.51.100.1", &key));
    r.assert_error(StatusCode::FORBIDDEN, "ip_not_allowed", None);
    // Another scope asked for does not come before the address.
    let uri = format!("{URI}?scopes=users:write");
    let r = forward!(
        app,
        bearer(TestRequest::get().uri(&uri), &key)
            .peer_addr(gateway)
            .insert_header(("X-Forwarded-For", "198.51.100.1"))
    );
    r.assert_error(StatusCode::FORBIDDEN, "ip_not_allowed", None);
    // A client that is not a trusted proxy names no one else.
    let r = forward!(
        app,
        bearer(get(), &key)
            .peer_addr("198.51.100.1:5000".parse().unwrap())
            .insert_header(("X-Forwarded-For", "203.0.113.9"))
    );
    r.assert_error(StatusCode::FORBIDDEN, "ip_not_allowed", None);

    // A publishable key's origins: Origin, else Referer's origin.
    let (_, pk) = fx.make_restricted_key(request(
        KeyType::Publishable,
        &["*"],
        &["0.0.0.0/0"],
        Some(&["https://app.example.com"]),
    ));
    let from_origin =
        |header: (&'static str, &'static str)| via_gateway("192.0.2.1", &pk).insert_header(header);
    let r = forward!(app, from_origin(("Origin", "https://app.example.com")));
    assert_eq!(r.status, StatusCode::OK);
    let r = forward!(
        app,
        from_origin(("Referer", "https://app.example.com/cart?x=1"))
    );
    assert_eq!(r.status, StatusCode::OK);
    let r = forward!(app, from_origin(("Origin", "https://evil.example.net")));
    r.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed", None);
    let r = forward!(app, via_gateway("192.0.2.1", &pk));
    r.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed", None);
}
