//! The client against the real service: `Application` on a fresh database,
//! bound to port 0, every endpoint called through [`ApiKeysClient`].

#![expect(clippy::expect_used, reason = "tests")]

// The service's own end-to-end harness: the application on a fresh database.
#[path = "../../apikeys/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::num::{NonZeroU32, NonZeroU64};
use std::time::{Duration, Instant};

use apikeys_client::types::{
    ActorType, AllowedIpsList, AllowedOriginsList, CreateKeyRequest, CreditsObject, ErrorCode,
    EventType, KeyId, KeyNameInput, KeyObject, KeyType, MetadataObject, MetadataPatchObject, Mode,
    RateLimitObject, RefillObject, RotateKeyRequest, Scope, ScopeList, ScopeListVariant1Item,
    VerifyCode, VerifyKeyRequest,
};
use apikeys_client::{ApiKeysClient, Error, ListEvents, ListKeys, Restriction};
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
        rate_limit: None,
        credits: None,
        allowed_ips: None,
        allowed_origins: None,
        metadata: None,
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
            cost: None,
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
            cost: None,
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
            cost: None,
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

#[actix_web::test]
async fn webhook_endpoints_through_the_generated_client() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);
    let api = client.generated();
    let tenant = client.tenant();

    let created = api
        .create_webhook_endpoint(
            tenant,
            &apikeys_client::types::CreateEndpointRequest {
                url: "https://hooks.example.com/apikeys".to_owned(),
                events: vec!["api_key.revoked".to_owned()],
                description: Some("chat alerts".to_owned()),
            },
        )
        .await
        .expect("create")
        .into_inner();
    assert!(created.secret.as_str().starts_with("whsec_"));
    assert_eq!(created.events, ["api_key.revoked"]);
    assert_eq!(created.description.as_deref(), Some("chat alerts"));
    let id = created.id.as_str().to_owned();

    let list = api
        .list_webhook_endpoints(None, None, tenant)
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.data.len(), 1);
    assert_eq!(list.data[0].id.as_str(), id);

    let rotated = api
        .rotate_webhook_secret(&id, tenant)
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(rotated.secret.as_str(), created.secret.as_str());

    let deliveries = api
        .list_webhook_deliveries(&id, None, None, tenant)
        .await
        .expect("deliveries")
        .into_inner();
    assert!(deliveries.data.is_empty());

    api.delete_webhook_endpoint(&id, tenant)
        .await
        .expect("delete");
    let missing = api
        .get_webhook_endpoint(&id, tenant)
        .await
        .expect_err("deleted");
    assert_eq!(missing.status().map(|s| s.as_u16()), Some(404));
}

#[actix_web::test]
async fn limits_are_set_read_changed_and_spent_through_the_client() {
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);

    // Given a key created with a rate limit and credits,
    let created = client
        .create_key(&CreateKeyRequest {
            rate_limit: Some(RateLimitObject {
                limit: NonZeroU32::new(100).expect("non-zero"),
                window: "1m".parse().expect("a window"),
            }),
            credits: Some(CreditsObject {
                remaining: 2,
                refill: Some(RefillObject {
                    amount: NonZeroU64::new(50).expect("non-zero"),
                    interval: "monthly".parse().expect("an interval"),
                }),
            }),
            ..create("Metered", KeyType::Secret)
        })
        .await
        .expect("create");

    // it reads back with both limits;
    let key = client.get_key(&created.id).await.expect("get");
    let rate = key.rate_limit.expect("a rate limit");
    assert_eq!((rate.limit.get(), rate.window.as_str()), (100, "1m"));
    let credits = key.credits.expect("credits");
    assert_eq!(credits.remaining, 2);
    let refill = credits.refill.expect("a refill");
    assert_eq!(
        (refill.amount.get(), refill.interval.as_str()),
        (50, "monthly")
    );

    // its two credits are spent by two verifications, the third is refused
    // with `usage_exceeded`, the key and its limits shown;
    let request = VerifyKeyRequest {
        key: created.key.expose().to_owned(),
        scopes: None,
        type_: None,
        cost: None,
        ip: None,
        origin: None,
    };
    let verify = || client.verify_key(&request);
    for remaining in [1, 0] {
        let verdict = verify().await.expect("verify");
        assert!(verdict.valid);
        let limits = verdict.limits.expect("limits");
        assert_eq!(
            (limits.limit, limits.remaining),
            (100, 100 - (2 - remaining))
        );
    }
    let refused = verify().await.expect("verify");
    assert!(!refused.valid);
    assert_eq!(refused.code, VerifyCode::UsageExceeded);
    assert!(refused.key.is_some());

    // and new credits set by PATCH are spendable at once.
    let updated = client
        .update_key_limits(
            &created.id,
            None,
            Some(CreditsObject {
                remaining: 1,
                refill: None,
            }),
        )
        .await
        .expect("update");
    assert_eq!(updated.credits.expect("credits").remaining, 1);
    assert!(verify().await.expect("verify").valid);
}

fn ips(blocks: &[&str]) -> AllowedIpsList {
    AllowedIpsList(blocks.iter().map(|b| b.parse().expect("a block")).collect())
}

fn origins(list: &[&str]) -> AllowedOriginsList {
    AllowedOriginsList(list.iter().map(|o| o.parse().expect("an origin")).collect())
}

/// A restriction as the service shows it: its entries, or `None` (lifted).
fn shown<'a, T: std::ops::Deref<Target = String> + 'a>(
    list: Option<&'a impl std::ops::Deref<Target = Vec<T>>>,
) -> Option<Vec<&'a str>> {
    list.map(|list| list.iter().map(|entry| entry.as_str()).collect())
}

fn metadata(entries: &[(&str, &str)]) -> MetadataObject {
    MetadataObject(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.parse().expect("a value")))
            .collect(),
    )
}

fn metadata_patch(entries: &[(&str, Option<&str>)]) -> MetadataPatchObject {
    MetadataPatchObject(
        entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(|v| v.parse().expect("a value"))))
            .collect(),
    )
}

/// Metadata as the service shows it, sorted.
fn entries(metadata: &MetadataObject) -> BTreeMap<&str, &str> {
    metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// A verify request for `key` from a client at `ip` with `origin`.
fn verify_from(key: &str, ip: Option<&str>, origin: Option<&str>) -> VerifyKeyRequest {
    VerifyKeyRequest {
        key: key.to_owned(),
        scopes: None,
        type_: None,
        cost: None,
        ip: ip.map(str::to_owned),
        origin: origin.map(str::to_owned),
    }
}

#[actix_web::test]
async fn restrictions_and_metadata_are_set_and_read_through_the_client() {
    // The test's requests come from 127.0.0.1 (no trusted proxy).
    let app = TestApp::spawn().await;
    let client = client(&app, &app.live_key);

    // Given a secret key pinned to a /24 with metadata, and a publishable
    // key pinned to the subdomains of example.com,
    let secret = client
        .create_key(&CreateKeyRequest {
            allowed_ips: Some(ips(&["203.0.113.7/24"])),
            metadata: Some(metadata(&[("team", "billing")])),
            ..create("Billing backend", KeyType::Secret)
        })
        .await
        .expect("create");
    let publishable = client
        .create_key(&CreateKeyRequest {
            allowed_origins: Some(origins(&["https://*.Example.com:443"])),
            metadata: Some(metadata(&[("plan", "pro")])),
            ..create("Web app", KeyType::Publishable)
        })
        .await
        .expect("create");
    // (The create answer has a fixed set of fields, none of these three:
    // docs/api.md, `POST /v1/api-keys`.)
    assert_eq!(secret.type_, KeyType::Secret);
    assert_eq!(publishable.type_, KeyType::Publishable);

    // they read back normalized, alone and in the list,
    let expect_secret = |key: &KeyObject, ips: Option<Vec<&str>>, meta: &[(&str, &str)]| {
        assert_eq!(shown(key.allowed_ips.as_ref()), ips);
        assert_eq!(shown(key.allowed_origins.as_ref()), None);
        assert_eq!(entries(&key.metadata), meta.iter().copied().collect());
    };
    let expect_publishable = |key: &KeyObject, list: Option<Vec<&str>>| {
        assert_eq!(shown(key.allowed_ips.as_ref()), None);
        assert_eq!(shown(key.allowed_origins.as_ref()), list);
        assert_eq!(entries(&key.metadata), [("plan", "pro")].into());
    };
    let got = client.get_key(&secret.id).await.expect("get");
    expect_secret(&got, Some(vec!["203.0.113.0/24"]), &[("team", "billing")]);
    let got = client.get_key(&publishable.id).await.expect("get");
    expect_publishable(&got, Some(vec!["https://*.example.com"]));
    let page = client.list_keys(&ListKeys::default()).await.expect("list");
    let listed = |id: &KeyId| {
        page.data
            .iter()
            .find(|key| key.id == *id)
            .expect("listed")
            .clone()
    };
    expect_secret(
        &listed(&secret.id),
        Some(vec!["203.0.113.0/24"]),
        &[("team", "billing")],
    );
    expect_publishable(
        &listed(&publishable.id),
        Some(vec!["https://*.example.com"]),
    );

    // and verify judges its `ip` and `origin`, showing them in `key`.
    let sk = secret.key.expose();
    let pk = publishable.key.expose();
    let verdict = |request: VerifyKeyRequest| {
        let client = &client;
        async move { client.verify_key(&request).await.expect("verify") }
    };
    let valid = verdict(verify_from(sk, Some("203.0.113.5"), None)).await;
    assert_eq!((valid.valid, valid.code), (true, VerifyCode::Valid));
    let key = valid.key.expect("the key");
    assert_eq!(
        shown(key.allowed_ips.as_ref()),
        Some(vec!["203.0.113.0/24"])
    );
    assert_eq!(shown(key.allowed_origins.as_ref()), None);
    assert_eq!(entries(&key.metadata), [("team", "billing")].into());
    for ip in [None, Some("198.51.100.1")] {
        let refused = verdict(verify_from(sk, ip, None)).await;
        assert_eq!(
            (refused.valid, refused.code),
            (false, VerifyCode::IpNotAllowed),
            "{ip:?}"
        );
        assert!(refused.key.is_none());
    }
    let valid = verdict(verify_from(pk, None, Some("https://app.example.com"))).await;
    assert_eq!(valid.code, VerifyCode::Valid);
    let key = valid.key.expect("the key");
    assert_eq!(
        shown(key.allowed_origins.as_ref()),
        Some(vec!["https://*.example.com"])
    );
    assert_eq!(entries(&key.metadata), [("plan", "pro")].into());
    for origin in [
        None,
        Some("https://example.com"),
        Some("https://evil.example.net"),
    ] {
        let refused = verdict(verify_from(pk, None, origin)).await;
        assert_eq!(
            (refused.valid, refused.code),
            (false, VerifyCode::OriginNotAllowed),
            "{origin:?}"
        );
    }
    // The secret key itself, used from 127.0.0.1: 403 ip_not_allowed.
    assert_eq!(
        code(self::client(&app, sk).list_keys(&ListKeys::default()).await),
        (Some(403), ErrorCode::IpNotAllowed)
    );

    // PATCH: a restriction replaced, metadata merged,
    let updated = client
        .update_key_restrictions(
            &secret.id,
            Restriction::Set(ips(&["198.51.100.0/24", "127.0.0.1"])),
            Restriction::Keep,
            Some(metadata_patch(&[("owner", Some("ops"))])),
        )
        .await
        .expect("update");
    let now_ips = Some(vec!["127.0.0.1/32", "198.51.100.0/24"]);
    let mut got_ips = shown(updated.allowed_ips.as_ref());
    if let Some(list) = got_ips.as_mut() {
        list.sort_unstable();
    }
    assert_eq!(got_ips, now_ips);
    assert_eq!(
        entries(&updated.metadata),
        [("owner", "ops"), ("team", "billing")].into()
    );
    assert_eq!(
        verdict(verify_from(sk, Some("198.51.100.1"), None))
            .await
            .code,
        VerifyCode::Valid
    );
    assert_eq!(
        verdict(verify_from(sk, Some("203.0.113.5"), None))
            .await
            .code,
        VerifyCode::IpNotAllowed
    );
    // (now from 127.0.0.1 too)
    self::client(&app, sk)
        .list_keys(&ListKeys::default())
        .await
        .expect("allowed from 127.0.0.1");

    // a metadata entry removed (the restriction kept),
    let updated = client
        .update_key_restrictions(
            &secret.id,
            Restriction::Keep,
            Restriction::Keep,
            Some(metadata_patch(&[("team", None)])),
        )
        .await
        .expect("update");
    assert_eq!(updated.allowed_ips.as_ref().map(|l| l.len()), Some(2));
    assert_eq!(entries(&updated.metadata), [("owner", "ops")].into());

    // and the restriction lifted with `null`: any address again.
    let updated = client
        .update_key_restrictions(&secret.id, Restriction::Lift, Restriction::Keep, None)
        .await
        .expect("update");
    expect_secret(&updated, None, &[("owner", "ops")]);
    expect_secret(
        &client.get_key(&secret.id).await.expect("get"),
        None,
        &[("owner", "ops")],
    );
    let valid = verdict(verify_from(sk, None, None)).await;
    assert_eq!(valid.code, VerifyCode::Valid);
    assert_eq!(
        valid
            .key
            .expect("the key")
            .allowed_ips
            .as_ref()
            .map(|l| l.len()),
        None
    );

    // The publishable key's origins replaced, then lifted.
    let updated = client
        .update_key_restrictions(
            &publishable.id,
            Restriction::Keep,
            Restriction::Set(origins(&["https://app.example.com"])),
            None,
        )
        .await
        .expect("update");
    expect_publishable(&updated, Some(vec!["https://app.example.com"]));
    for (origin, code) in [
        ("https://app.example.com", VerifyCode::Valid),
        ("https://a.b.example.com", VerifyCode::OriginNotAllowed),
    ] {
        assert_eq!(
            verdict(verify_from(pk, None, Some(origin))).await.code,
            code,
            "{origin}"
        );
    }
    let updated = client
        .update_key_restrictions(&publishable.id, Restriction::Keep, Restriction::Lift, None)
        .await
        .expect("update");
    expect_publishable(&updated, None);
    assert_eq!(
        verdict(verify_from(pk, None, None)).await.code,
        VerifyCode::Valid
    );

    // Refusals: origins on a secret key, and nothing to change.
    let refused = client
        .update_key_restrictions(
            &secret.id,
            Restriction::Keep,
            Restriction::Set(origins(&["https://app.example.com"])),
            None,
        )
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Some(ErrorCode::InvalidParameter));
    assert!(
        matches!(&refused, Error::Api { status: 400, error } if error.param.as_deref() == Some("allowed_origins")),
        "{refused:?}"
    );
    assert_eq!(
        code(
            client
                .update_key_restrictions(&secret.id, Restriction::Keep, Restriction::Keep, None)
                .await
        ),
        (Some(400), ErrorCode::MissingParameter)
    );
    expect_secret(
        &client.get_key(&secret.id).await.expect("get"),
        None,
        &[("owner", "ops")],
    );
    app.stop().await;
}
