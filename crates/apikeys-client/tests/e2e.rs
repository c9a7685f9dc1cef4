//! The client against the real service: `Application` on a fresh database,
//! bound to port 0, every endpoint called through [`ApiKeysClient`].

#![expect(clippy::expect_used, reason = "tests")]

// The service's own end-to-end harness: the application on a fresh database.
#[path = "../../apikeys/tests/common/mod.rs"]
mod common;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use apikeys_client::types::{
    ActorType, CreateKeyRequest, ErrorCode, EventType, KeyId, KeyNameInput, KeyType, Mode,
    RotateKeyRequest, Scope, ScopeList, ScopeListVariant1Item, VerifyCode, VerifyKeyRequest,
};
use apikeys_client::{ApiKeysClient, Error, ListEvents, ListKeys};
use common::TestApp;

fn client(app: &TestApp, key: &str) -> ApiKeysClient {
    ApiKeysClient::new(&app.base, key, &app.tenant).expect("client")
}

fn name(s: &str) -> KeyNameInput {
    s.parse().expect("a valid name")
}

fn create(name_: &str, key_type: KeyType) -> CreateKeyRequest {
    CreateKeyRequest {
        name: name(name_),
        type_: key_type,
        scopes: None,
        expires_in: None,
        mode: None,
    }
}

fn code(result: Result<impl std::fmt::Debug, Error>) -> (Option<u16>, ErrorCode) {
    let error = result.expect_err("a refusal");
    (error.status(), error.code().expect("a JSON error body"))
}

#[actix_web::test]
async fn create_read_list_update_and_revoke_through_the_client() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);

    // Given a new key with scopes and an expiry,
    let created = client
        .create_key(&CreateKeyRequest {
            scopes: Some(ScopeList::Variant1(vec![ScopeListVariant1Item::UsersRead])),
            expires_in: Some("90d".parse().expect("a duration")),
            ..create("  Analytics Service ", KeyType::Secret)
        })
        .await
        .expect("create");
    assert_eq!(created.name.as_str(), "Analytics Service");
    assert!(created.key.expose().starts_with("sk_live_"));
    assert_eq!(format!("{:?}", created.key), "FullKey([redacted])");
    assert_eq!(created.mode, Mode::Live);
    assert_eq!(created.scopes, [Scope::UsersRead]);
    let expires_at = created.expires_at.expect("an expiry");
    assert_eq!(expires_at - created.created_at, chrono::Duration::days(90));

    // when it is read, it is as created, and never used;
    let key = client.get_key(&created.id).await.expect("get");
    assert_eq!(key.id, created.id);
    assert_eq!(key.last_used_at, None);
    assert_eq!(key.expires_at, Some(expires_at));
    assert!(!key.revoked);

    // renamed and re-scoped,
    let renamed = client
        .update_key(&created.id, Some(name("Reporting")), None)
        .await
        .expect("rename");
    assert_eq!(renamed.name.as_str(), "Reporting");
    assert_eq!(renamed.scopes, [Scope::UsersRead]);
    let rescoped = client
        .update_key(
            &created.id,
            None,
            Some(ScopeList::Variant1(vec![
                ScopeListVariant1Item::SessionsRead,
                ScopeListVariant1Item::UsersRead,
            ])),
        )
        .await
        .expect("re-scope");
    assert_eq!(rescoped.scopes, [Scope::UsersRead, Scope::SessionsRead]);
    // (neither field: 400 missing_parameter, without `param`)
    let neither = client.update_key(&created.id, None, None).await;
    let error = neither.expect_err("refused");
    assert_eq!(error.code(), Some(ErrorCode::MissingParameter));
    assert!(matches!(&error, Error::Api { error, .. } if error.param.is_none()));

    // then revoked: 204, and again 204; the key reads as revoked.
    client.revoke_key(&created.id).await.expect("revoke");
    client.revoke_key(&created.id).await.expect("revoke again");
    let revoked = client.get_key(&created.id).await.expect("get");
    assert!(revoked.revoked);
    assert!(revoked.revokes_at.is_some());

    // An unknown id: 404 key_not_found.
    let unknown: KeyId = "key_01HQ2ZJ8N0Z3C4V5B6N7M8K9JA".parse().expect("an id");
    assert_eq!(
        code(client.get_key(&unknown).await),
        (Some(404), ErrorCode::KeyNotFound)
    );
    app.stop().await;
}

#[actix_web::test]
async fn pages_follow_starting_after_to_the_end() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);
    let mut made = Vec::new();
    for i in 0..3 {
        let key = client
            .create_key(&create(&format!("Key {i}"), KeyType::Publishable))
            .await
            .expect("create");
        made.push(key.id);
        // Ids order by creation time, to the millisecond.
        app.clock.advance(time::Duration::seconds(1));
    }

    let mut seen = Vec::new();
    let mut query = ListKeys {
        key_type: Some(KeyType::Publishable),
        mode: Some(Mode::Live),
        limit: NonZeroU32::new(2),
        ..ListKeys::default()
    };
    let mut pages = 0;
    loop {
        let page = client.list_keys(&query).await.expect("list");
        pages += 1;
        seen.extend(page.data.iter().map(|k| k.id.clone()));
        if !page.has_more {
            break;
        }
        query.starting_after = page.data.last().map(|k| k.id.clone());
    }
    made.reverse();
    assert_eq!(seen, made, "newest first, each once");
    assert_eq!(pages, 2);
    app.stop().await;
}

#[actix_web::test]
async fn rotation_and_its_conflicts() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);
    // (not full access: the tenant's own key stays its only one)
    let old = client
        .create_key(&CreateKeyRequest {
            scopes: Some(ScopeList::Variant1(vec![ScopeListVariant1Item::UsersRead])),
            ..create("Rotating", KeyType::Secret)
        })
        .await
        .expect("create");

    let rotated = client
        .rotate_key(&RotateKeyRequest {
            id: old.id.clone(),
            grace_period: Some("24h".parse().expect("a duration")),
        })
        .await
        .expect("rotate");
    assert_eq!(rotated.old_key_id, old.id);
    assert_ne!(rotated.id, old.id);
    assert_eq!(
        rotated.old_key_revokes_at - rotated.created_at,
        chrono::Duration::hours(24)
    );

    let again = client
        .rotate_key(&RotateKeyRequest {
            id: old.id.clone(),
            grace_period: None,
        })
        .await;
    assert_eq!(code(again), (Some(409), ErrorCode::KeyAlreadyRotated));

    // The tenant's last full-access live secret key cannot be revoked.
    let own = client
        .list_keys(&ListKeys {
            key_type: Some(KeyType::Secret),
            mode: Some(Mode::Live),
            ..ListKeys::default()
        })
        .await
        .expect("list")
        .data
        .into_iter()
        .find(|k| k.scopes == [Scope::X])
        .expect("the tenant's own key");
    assert_eq!(
        code(client.revoke_key(&own.id).await),
        (Some(409), ErrorCode::LastFullAccessKey)
    );
    app.stop().await;
}

#[actix_web::test]
async fn refusals_carry_their_codes() {
    let app = TestApp::spawn().await;
    let live = client(&app, &app.live_key);

    // 401: not a key, an unknown key, a revoked key.
    let not_a_key = client(&app, "not-a-key");
    assert_eq!(
        code(not_a_key.list_keys(&ListKeys::default()).await),
        (Some(401), ErrorCode::InvalidApiKey)
    );
    let spare = live
        .create_key(&create("Spare", KeyType::Secret))
        .await
        .expect("create");
    let spare_client = client(&app, spare.key.expose());
    spare_client
        .list_keys(&ListKeys::default())
        .await
        .expect("the spare key works");
    live.revoke_key(&spare.id).await.expect("revoke");
    assert_eq!(
        code(spare_client.list_keys(&ListKeys::default()).await),
        (Some(401), ErrorCode::ApiKeyRevoked)
    );

    // 403: a test key asking for a live key.
    let test = client(&app, &app.test_key);
    let live_from_test = test
        .create_key(&CreateKeyRequest {
            mode: Some(Mode::Live),
            ..create("Live", KeyType::Secret)
        })
        .await;
    assert_eq!(
        code(live_from_test),
        (Some(403), ErrorCode::LiveModeRequired)
    );

    // A malformed tenant id never leaves the client.
    assert!(matches!(
        ApiKeysClient::new(&app.base, &app.live_key, "tnt_lower"),
        Err(Error::InvalidArgument(_))
    ));
    app.stop().await;
}

#[actix_web::test]
async fn verification_leak_reports_audit_events_and_readiness() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);
    let reader = client
        .create_key(&CreateKeyRequest {
            scopes: Some(ScopeList::Variant1(vec![ScopeListVariant1Item::UsersRead])),
            ..create("Reader", KeyType::Secret)
        })
        .await
        .expect("create");

    // Verify: valid, then lacking a scope.
    let valid = client
        .verify_key(&VerifyKeyRequest {
            key: reader.key.expose().to_owned(),
            scopes: Some(vec![Scope::UsersRead]),
            type_: Some(KeyType::Secret),
            ip: None,
            origin: None,
        })
        .await
        .expect("verify");
    assert!(valid.valid);
    assert_eq!(valid.code, VerifyCode::Valid);
    assert_eq!(valid.key.expect("the key").id, reader.id);
    let lacking = client
        .verify_key(&VerifyKeyRequest {
            key: reader.key.expose().to_owned(),
            scopes: Some(vec![Scope::UsersRead, Scope::WebhooksWrite]),
            type_: None,
            ip: None,
            origin: None,
        })
        .await
        .expect("verify");
    assert!(!lacking.valid);
    assert_eq!(lacking.code, VerifyCode::InsufficientScope);
    assert_eq!(lacking.missing_scopes, [Scope::WebhooksWrite]);
    let other_type = client
        .verify_key(&VerifyKeyRequest {
            key: reader.key.expose().to_owned(),
            scopes: None,
            type_: Some(KeyType::Publishable),
            ip: None,
            origin: None,
        })
        .await
        .expect("verify");
    assert!(!other_type.valid);
    assert_eq!(other_type.code, VerifyCode::KeyTypeMismatch);
    assert!(other_type.key.is_none());

    // Audit events: the creation, by the tenant's key, newest first.
    let events = client
        .list_audit_events(&ListEvents {
            key_id: Some(reader.id.clone()),
            ..ListEvents::default()
        })
        .await
        .expect("events");
    assert_eq!(events.data.len(), 1);
    assert_eq!(events.data[0].type_, EventType::ApiKeyCreated);
    assert_eq!(events.data[0].actor.type_, ActorType::ApiKey);
    let all = client
        .list_audit_events(&ListEvents {
            limit: NonZeroU32::new(1),
            ..ListEvents::default()
        })
        .await
        .expect("events");
    assert!(all.has_more);
    let next = client
        .list_audit_events(&ListEvents {
            limit: NonZeroU32::new(1),
            starting_after: Some(all.data[0].id.clone()),
            ..ListEvents::default()
        })
        .await
        .expect("events");
    assert_ne!(next.data[0].id, all.data[0].id);

    // A leak report: 202 with the count; the reported secret key stops
    // working once the report has been processed (after the answer).
    let accepted = client
        .report_leaked_keys(vec![reader.key.expose().to_owned(), "not a key".to_owned()])
        .await
        .expect("report");
    assert_eq!(accepted.received.get(), 2);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let key = client.get_key(&reader.id).await.expect("get");
        if key.revoked {
            break;
        }
        assert!(Instant::now() < deadline, "the leaked key was not revoked");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(
        client.readyz().await.expect("ready").status.as_str(),
        "ready"
    );
    app.stop().await;
}

#[actix_web::test]
async fn idempotent_creates_and_rotations_are_replayed_and_a_new_body_is_refused() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);
    let once = "client-retry-1".parse().expect("an idempotency key");

    let first = client
        .create_key_idempotent(&once, &create("Once", KeyType::Secret))
        .await
        .expect("create");
    let retry = client
        .create_key_idempotent(&once, &create("Once", KeyType::Secret))
        .await
        .expect("retry");
    assert_eq!(retry.id, first.id);
    assert_eq!(retry.key.expose(), first.key.expose());
    assert_eq!(
        code(
            client
                .create_key_idempotent(&once, &create("Twice", KeyType::Secret))
                .await
        ),
        (Some(422), ErrorCode::IdempotencyKeyReused)
    );

    let rotation = RotateKeyRequest {
        id: first.id.clone(),
        grace_period: None,
    };
    let rotate_once = "client-rotate-1".parse().expect("an idempotency key");
    let rotated = client
        .rotate_key_idempotent(&rotate_once, &rotation)
        .await
        .expect("rotate");
    let again = client
        .rotate_key_idempotent(&rotate_once, &rotation)
        .await
        .expect("a replay, not key_already_rotated");
    assert_eq!(again.id, rotated.id);
    assert_eq!(again.key.expose(), rotated.key.expose());
    app.stop().await;
}
