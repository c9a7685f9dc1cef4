//! The example's handlers tested the way docs/embedding.md recommends:
//! without a database, on the in-memory store and a test clock
//! (feature `testing` of `domain`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

// ANCHOR: fakes
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use composition::Registration;
use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{ApiKeys, Authenticator, CreateKey, HashKey, KeyName, KeyType, Mode, Origin, Scopes};
use http_actix::FailureLimitConfig;
use serde_json::Value;

/// The use cases over the in-memory store, on a clock the test moves.
fn service(clock: &TestClock) -> Arc<ApiKeys> {
    let store = InMemoryStore::new();
    Arc::new(ApiKeys::new(
        store.clone(),
        store.clone(),
        store.clone(),
        store,
        clock.clone(),
        SeqSecretSource::new(1),
        HashKey::from_bytes(&[7; 32]).unwrap(),
    ))
}

#[actix_web::test]
async fn a_secret_key_with_users_read_lists_users_until_it_expires() {
    // Given a tenant and a secret key with `users:read` that expires in an hour,
    let clock = TestClock::default();
    let service = service(&clock);
    let tenant = embed_example::create_tenant(&service, "Acme").unwrap();
    let key = service
        .create_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            CreateKey {
                name: KeyName::parse("Users reader").unwrap(),
                key_type: KeyType::Secret,
                mode: Some(Mode::Live),
                scopes: Scopes::parse(["users:read"]).unwrap(),
                expires_in: Some(domain::ExpiresIn::parse("1h").unwrap()),
                restrictions: Default::default(),
                metadata: Default::default(),
            },
        )
        .unwrap();
    // (`ApiKeys` itself is an `Authenticator`: no cache needed in a test.)
    let authenticator: Arc<dyn Authenticator> = service.clone();
    let registration = Registration::new(authenticator, &FailureLimitConfig::default());
    let app = test::init_service(embed_example::app(registration)).await;
    let request = || {
        TestRequest::get()
            .uri("/v1/users")
            .insert_header((
                "Authorization",
                format!("Bearer {}", key.secret.expose_secret()),
            ))
            .insert_header(("X-Tenant-ID", tenant.tenant.id.to_string()))
            .to_request()
    };

    // when it asks for the users, then it gets them,
    let r = test::call_service(&app, request()).await;
    assert_eq!(r.status(), StatusCode::OK);

    // and an hour later it is refused as expired.
    clock.advance(time::Duration::hours(1));
    let r = test::call_service(&app, request()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "api_key_expired");
}
// ANCHOR_END: fakes

/// The app over a service on the in-memory store, and the tenant's id, its
/// live secret key and a publishable key.
struct Scene {
    tenant: String,
    secret: String,
    publishable: String,
    service: Arc<ApiKeys>,
}

fn scene() -> Scene {
    let service = service(&TestClock::default());
    let tenant = embed_example::create_tenant(&service, "Acme").unwrap();
    let web = embed_example::create_publishable_key(
        &service,
        &tenant.tenant.id,
        KeyName::parse("Web").unwrap(),
    )
    .unwrap();
    Scene {
        tenant: tenant.tenant.id.to_string(),
        secret: tenant.live.secret.into_secret(),
        publishable: web.secret.into_secret(),
        service,
    }
}

async fn get(scene: &Scene, uri: &str, key: Option<&str>) -> (StatusCode, Value) {
    let authenticator: Arc<dyn Authenticator> = scene.service.clone();
    let registration = Registration::new(authenticator, &FailureLimitConfig::default());
    let app = test::init_service(embed_example::app(registration)).await;
    let mut req = TestRequest::get()
        .uri(uri)
        .insert_header(("X-Tenant-ID", scene.tenant.as_str()));
    if let Some(key) = key {
        req = req.insert_header(("Authorization", format!("Bearer {key}")));
    }
    let r = test::call_service(&app, req.to_request()).await;
    let status = r.status();
    (status, test::read_body_json(r).await)
}

#[actix_web::test]
async fn a_full_access_secret_key_lists_the_users_of_its_tenant() {
    let s = scene();
    let (status, body) = get(&s, "/v1/users", Some(&s.secret)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["tenant_id"], s.tenant);
    assert_eq!(body["users"], Value::Array(Vec::new()));
}

#[actix_web::test]
async fn a_publishable_key_reads_the_public_config_but_not_the_users() {
    let s = scene();
    let (status, body) = get(&s, "/v1/config", Some(&s.publishable)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["mode"], "live");
    let (status, body) = get(&s, "/v1/users", Some(&s.publishable)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "secret_key_required");
}

#[actix_web::test]
async fn a_secret_key_without_users_read_is_refused() {
    let s = scene();
    let tenant = s.tenant.parse().unwrap();
    let key = s
        .service
        .create_key_for(
            &Origin::cli(),
            &tenant,
            CreateKey {
                name: KeyName::parse("Sessions").unwrap(),
                key_type: KeyType::Secret,
                mode: Some(Mode::Live),
                scopes: Scopes::parse(["sessions:read"]).unwrap(),
                expires_in: None,
                restrictions: Default::default(),
                metadata: Default::default(),
            },
        )
        .unwrap();
    let (status, body) = get(&s, "/v1/users", Some(key.secret.expose_secret())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "insufficient_scope");
}

#[actix_web::test]
async fn no_key_is_401_with_a_request_id_though_the_app_has_no_middleware() {
    let s = scene();
    let (status, body) = get(&s, "/v1/users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "missing_api_key");
    let id = body["error"]["request_id"].as_str().unwrap();
    assert!(id.starts_with("req_") && id.len() == 30, "{id}");
}

#[actix_web::test]
async fn a_client_guessing_keys_is_refused_429_after_100_failures_a_minute() {
    // Given the app registered as the guide shows (the default limit: 100
    // failed authentications a minute per client address),
    let s = scene();
    let authenticator: Arc<dyn Authenticator> = s.service.clone();
    let registration = Registration::new(authenticator, &FailureLimitConfig::default());
    let app = test::init_service(embed_example::app(registration)).await;
    let guess = |peer: &str| {
        TestRequest::get()
            .uri("/v1/users")
            .peer_addr(peer.parse().unwrap())
            .insert_header(("X-Tenant-ID", s.tenant.as_str()))
            .insert_header(("Authorization", "Bearer sk_live_not_a_key"))
            .to_request()
    };

    // when one address sends 150 wrong keys,
    let mut statuses = Vec::new();
    for _ in 0..150 {
        statuses.push(
            test::call_service(&app, guess("203.0.113.7:4000"))
                .await
                .status(),
        );
    }

    // then the first 100 are 401 and the rest 429 with Retry-After,
    assert!(statuses[..100]
        .iter()
        .all(|s| *s == StatusCode::UNAUTHORIZED));
    assert!(statuses[100..]
        .iter()
        .all(|s| *s == StatusCode::TOO_MANY_REQUESTS));
    let r = test::call_service(&app, guess("203.0.113.7:4000")).await;
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "too_many_requests");
    // and the tenant's key, and another address, still reach authentication.
    let (status, _) = get(&s, "/v1/users", Some(&s.secret)).await;
    assert_eq!(status, StatusCode::OK);
    let r = test::call_service(&app, guess("198.51.100.1:4000")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}
