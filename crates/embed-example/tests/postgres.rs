//! The example composed on a real PostgreSQL, its tables in a schema of its
//! own, exactly as `main` does it: migrations, a tenant from code, a route
//! protected through the key cache, and a revocation seen at once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use domain::{HashKey, Origin};
use http_actix::TrustedProxies;
use infra_postgres::testing::TestDatabase;

#[actix_web::test]
async fn keys_made_from_code_open_the_route_until_revoked() {
    // Given the example's key service on a database whose tables live in
    // the schema `keys` (TestDatabase applies the migrations there; doing
    // it again is a no-op),
    let db = TestDatabase::in_schema("keys");
    let keys = embed_example::start_keys(
        db.url(),
        HashKey::from_bytes(&[3; 32]).unwrap(),
        TrustedProxies::none(),
    )
    .expect("start the key service");
    let service = keys.services.service();
    let tenant = embed_example::create_tenant(service, "Acme").unwrap();
    let app = test::init_service(embed_example::app(keys.services.registration())).await;
    let request = || {
        TestRequest::get()
            .uri("/v1/users")
            .insert_header((
                "Authorization",
                format!("Bearer {}", tenant.test.secret.expose_secret()),
            ))
            .insert_header(("X-Tenant-ID", tenant.tenant.id.to_string()))
            .to_request()
    };

    // when the tenant's test key asks, then it is let in,
    let r = test::call_service(&app, request()).await;
    assert_eq!(r.status(), StatusCode::OK);

    // and once it is revoked from code, it is refused at once.
    service
        .revoke_key_for(
            &Origin::cli(),
            &tenant.tenant.id,
            &tenant.test.key.id,
            false,
        )
        .unwrap();
    let r = test::call_service(&app, request()).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = test::read_body_json(r).await;
    assert_eq!(body["error"]["code"], "api_key_revoked");
}
