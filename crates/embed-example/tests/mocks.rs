//! The helpers for test authors (docs/embedding.md, section 6): a real key
//! string, the key object built around it, the `MockAuthenticator` preset
//! that accepts it, and what a misregistered authenticator answers.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App};
use composition::Registration;
use domain::mocks::MockAuthenticator;
use domain::testing::{well_formed_key, ApiKeyBuilder};
use domain::{Authenticator, KeyType, Mode, Scopes, TenantId};
use http_actix::FailureLimitConfig;
use serde_json::Value;

const TENANT: &str = "tnt_01HQ2ZJ8N00000000000000000";

fn users(key: &str, tenant: &str) -> TestRequest {
    TestRequest::get()
        .uri("/v1/users")
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("X-Tenant-ID", tenant))
}

#[actix_web::test]
async fn the_mock_preset_lets_in_its_key_and_refuses_a_well_formed_stranger() {
    // Given a mock that accepts one real key with `users:read`,
    let tenant = TenantId::parse(TENANT).unwrap();
    let key = well_formed_key(KeyType::Secret, Mode::Live, 1);
    let api_key = ApiKeyBuilder::new(&key, tenant)
        .scopes(Scopes::parse(["users:read"]).unwrap())
        .build();
    let mock: Arc<dyn Authenticator> = Arc::new(MockAuthenticator::accepting(&key, api_key));
    let registration = Registration::new(mock, &FailureLimitConfig::default());
    let app = test::init_service(embed_example::app(registration)).await;

    // when that key asks, then it is let in;
    let r = test::call_service(&app, users(key.expose_secret(), TENANT).to_request()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["tenant_id"], TENANT);

    // when another well-formed key asks, the mock refuses it as unknown,
    let stranger = well_formed_key(KeyType::Secret, Mode::Live, 2);
    assert_ne!(stranger.expose_secret(), key.expose_secret());
    let r = test::call_service(&app, users(stranger.expose_secret(), TENANT).to_request()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "invalid_api_key");

    // and the right key for another tenant is a tenant mismatch.
    let other = "tnt_01HQ2ZJ8N00000000000000001";
    let r = test::call_service(&app, users(key.expose_secret(), other).to_request()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn the_key_object_builder_carries_what_the_routes_check() {
    // A publishable key built from a real publishable key string is refused
    // on the private route, as the real thing would be.
    let tenant = TenantId::parse(TENANT).unwrap();
    let key = well_formed_key(KeyType::Publishable, Mode::Test, 3);
    let api_key = ApiKeyBuilder::new(&key, tenant).build();
    assert_eq!(
        (api_key.key_type, api_key.mode),
        (KeyType::Publishable, Mode::Test)
    );
    assert_eq!(api_key.last_four, key.last_four());
    let mock: Arc<dyn Authenticator> = Arc::new(MockAuthenticator::accepting(&key, api_key));
    let app = test::init_service(embed_example::app(Registration::new(
        mock,
        &FailureLimitConfig::default(),
    )))
    .await;
    let r = test::call_service(&app, users(key.expose_secret(), TENANT).to_request()).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "secret_key_required");
}

#[actix_web::test]
async fn an_authenticator_registered_with_data_new_answers_500_not_a_verdict() {
    // The trap docs/embedding.md names: `web::Data::new(arc)` registers a
    // `Data<Arc<dyn Authenticator>>`, which the extractor does not find.
    let key = well_formed_key(KeyType::Secret, Mode::Live, 1);
    let api_key = ApiKeyBuilder::new(&key, TenantId::parse(TENANT).unwrap()).build();
    let mock: Arc<dyn Authenticator> = Arc::new(MockAuthenticator::accepting(&key, api_key));
    let app = test::init_service(App::new().app_data(web::Data::new(mock)).route(
        "/v1/users",
        web::get().to(|_: http_actix::Authenticated| async { "" }),
    ))
    .await;
    let r = test::call_service(&app, users(key.expose_secret(), TENANT).to_request()).await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "internal_error");
}

#[actix_web::test]
async fn the_mock_preset_judges_where_its_key_is_used_from() {
    // Given a mock accepting a key pinned to one block,
    let tenant = TenantId::parse(TENANT).unwrap();
    let key = well_formed_key(KeyType::Secret, Mode::Live, 4);
    let api_key = ApiKeyBuilder::new(&key, tenant)
        .restrictions(domain::KeyRestrictions {
            allowed_ips: Some(domain::AllowedIps::parse(["203.0.113.0/24"]).unwrap()),
            allowed_origins: None,
        })
        .build();
    let mock: Arc<dyn Authenticator> = Arc::new(MockAuthenticator::accepting(&key, api_key));
    let registration = Registration::new(mock, &FailureLimitConfig::default());
    let app = test::init_service(embed_example::app(registration)).await;
    let from = |ip: &str| {
        users(key.expose_secret(), TENANT)
            .peer_addr(format!("{ip}:5000").parse().unwrap())
            .to_request()
    };

    // when it asks from inside the block, it is let in;
    let r = test::call_service(&app, from("203.0.113.7")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // from outside, it is refused as the real authenticator refuses it.
    let r = test::call_service(&app, from("198.51.100.7")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "ip_not_allowed");
}
