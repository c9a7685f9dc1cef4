//! The webhook use cases on the in-memory store (docs/webhooks.md): the
//! retry schedule to `failed`, disabling after 5 days of failures, secrets
//! during a rotation, modes, and expiry events written once.

#![allow(clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use common::Harness;
use domain::testing::SeqSecretSource;
use domain::Clock;
use domain::{
    AllowHosts, AttemptOutcome, CreateEndpoint, DeliveryStatus, EventType, PageLimit,
    UpdateEndpoint, WebhookError, Webhooks,
};
use time::Duration;

fn webhooks(h: &Harness) -> Webhooks {
    Webhooks::new(
        h.store.clone(),
        Arc::new(h.clock.clone()),
        SeqSecretSource::new(11),
        &common::hash_key(),
        AllowHosts::default(),
    )
}

fn endpoint(events: &[&str]) -> CreateEndpoint {
    CreateEndpoint {
        url: "https://hooks.example.com/".to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        description: None,
    }
}

fn failure() -> AttemptOutcome {
    AttemptOutcome::Failed {
        status: Some(500),
        error: "HTTP 500".to_owned(),
    }
}

#[test]
fn a_delivery_fails_after_eight_attempts_at_the_schedule() {
    let h = Harness::new();
    let hooks = webhooks(&h);
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    hooks.create(&admin, endpoint(&["*"])).expect("endpoint");
    h.create_kind(&admin, domain::KeyType::Secret, domain::Mode::Live);
    let waits = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];
    for (n, wait) in waits.iter().enumerate() {
        let ready = hooks.claim_due(Duration::seconds(30), 10).expect("claim");
        assert_eq!(ready.len(), 1, "attempt {}", n + 1);
        assert_eq!(ready[0].secrets.len(), 1);
        let record = hooks.finish(&ready[0].due, &failure()).expect("finish");
        assert_eq!(record.attempts, u32::try_from(n + 1).expect("small"));
        assert_eq!(record.status, DeliveryStatus::Pending);
        assert_eq!(
            record.next_attempt_at,
            Some(h.clock.now() + Duration::seconds(*wait))
        );
        // Not due a moment before its time.
        h.clock
            .advance(Duration::seconds(*wait) - Duration::milliseconds(1));
        assert!(hooks
            .claim_due(Duration::seconds(30), 10)
            .expect("claim")
            .is_empty());
        h.clock.advance(Duration::milliseconds(1));
    }
    let ready = hooks.claim_due(Duration::seconds(30), 10).expect("claim");
    let record = hooks.finish(&ready[0].due, &failure()).expect("finish");
    assert_eq!(
        (record.attempts, record.status, record.next_attempt_at),
        (8, DeliveryStatus::Failed, None)
    );
    assert!(hooks
        .claim_due(Duration::seconds(30), 10)
        .expect("claim")
        .is_empty());
}

#[test]
fn a_claimed_delivery_is_held_for_its_lease() {
    let h = Harness::new();
    let hooks = webhooks(&h);
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    hooks
        .create(&admin, endpoint(&["api_key.created"]))
        .expect("endpoint");
    h.create_kind(&admin, domain::KeyType::Secret, domain::Mode::Live);
    assert_eq!(
        hooks
            .claim_due(Duration::seconds(30), 10)
            .expect("claim")
            .len(),
        1
    );
    // The claiming node died: nobody else gets it until the lease ends.
    h.clock.advance(Duration::seconds(29));
    assert!(hooks
        .claim_due(Duration::seconds(30), 10)
        .expect("claim")
        .is_empty());
    h.clock.advance(Duration::seconds(1));
    assert_eq!(
        hooks
            .claim_due(Duration::seconds(30), 10)
            .expect("claim")
            .len(),
        1
    );
}

#[test]
fn five_days_of_failures_disable_the_endpoint_and_enabling_restarts() {
    let h = Harness::new();
    let hooks = webhooks(&h);
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    let created = hooks.create(&admin, endpoint(&["*"])).expect("endpoint");
    let id = created.endpoint.id;
    for _ in 0..3 {
        h.create_kind(&admin, domain::KeyType::Secret, domain::Mode::Live);
    }
    // Fail every attempt for 5 days.
    let start = h.clock.now();
    while h.clock.now() < start + Duration::days(5) {
        for ready in hooks.claim_due(Duration::seconds(30), 10).expect("claim") {
            hooks.finish(&ready.due, &failure()).expect("finish");
        }
        assert!(
            hooks.get(&admin, &id).expect("get").enabled
                || h.clock.now() >= start + Duration::days(5)
        );
        h.clock.advance(Duration::hours(1));
        h.create_kind(&admin, domain::KeyType::Secret, domain::Mode::Live);
    }
    for ready in hooks.claim_due(Duration::seconds(30), 10).expect("claim") {
        hooks.finish(&ready.due, &failure()).expect("finish");
    }
    assert!(!hooks.get(&admin, &id).expect("get").enabled);
    assert!(hooks
        .claim_due(Duration::seconds(30), 10)
        .expect("claim")
        .is_empty());
    let enabled = hooks
        .update(
            &admin,
            &id,
            UpdateEndpoint {
                enabled: Some(true),
                ..UpdateEndpoint::default()
            },
        )
        .expect("enable");
    assert!(enabled.enabled);
    // A disabled endpoint got no delivery; enabled again, it gets the next.
    h.create_kind(&admin, domain::KeyType::Secret, domain::Mode::Live);
    let ready = hooks.claim_due(Duration::seconds(30), 100).expect("claim");
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].due.delivery.attempts, 0);
}

#[test]
fn a_rotated_secret_signs_beside_the_new_one_for_24_hours() {
    let h = Harness::new();
    let hooks = webhooks(&h);
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    let created = hooks.create(&admin, endpoint(&["*"])).expect("endpoint");
    let rotated = hooks
        .rotate_secret(&admin, &created.endpoint.id)
        .expect("rotate");
    assert_ne!(rotated.secret, created.secret);
    h.create_kind(&admin, domain::KeyType::Secret, domain::Mode::Live);
    let ready = hooks.claim_due(Duration::seconds(30), 10).expect("claim");
    assert_eq!(
        ready[0].secrets,
        [rotated.secret.clone(), created.secret.clone()]
    );
    hooks.finish(&ready[0].due, &failure()).expect("finish");
    h.clock.advance(Duration::hours(24));
    let ready = hooks.claim_due(Duration::seconds(30), 10).expect("claim");
    assert_eq!(ready[0].secrets, [rotated.secret]);
}

#[test]
fn modes_are_apart_and_test_endpoints_get_test_events_only() {
    let h = Harness::new();
    let hooks = webhooks(&h);
    let tenant = h.tenant();
    let live = h.principal(&tenant.live);
    let test = h.principal(&tenant.test);
    let live_endpoint = hooks
        .create(&live, endpoint(&["*"]))
        .expect("live endpoint");
    hooks
        .create(&test, endpoint(&["*"]))
        .expect("test endpoint");
    assert!(matches!(
        hooks.get(&test, &live_endpoint.endpoint.id),
        Err(WebhookError::NotFound)
    ));
    let page = hooks.list(&test, None, PageLimit::default()).expect("list");
    assert_eq!(page.endpoints.len(), 1);
    h.create_kind(&test, domain::KeyType::Secret, domain::Mode::Test);
    let ready = hooks.claim_due(Duration::seconds(30), 10).expect("claim");
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].due.event.mode, Some(domain::Mode::Test));
    assert_ne!(ready[0].due.delivery.endpoint_id, live_endpoint.endpoint.id);
}

#[test]
fn expiry_events_are_written_once_at_their_times() {
    let h = Harness::new();
    let hooks = webhooks(&h);
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    let long = h.create_expiring(&admin, "30d");
    let short = h.create_expiring(&admin, "6d");
    assert_eq!(hooks.write_expiry_events().expect("write"), 0);
    h.clock.advance(Duration::days(6));
    // `short` expired (no warning: it had less than 7 days); `long` not yet due.
    assert_eq!(hooks.write_expiry_events().expect("write"), 1);
    h.clock.advance(Duration::days(17));
    assert_eq!(hooks.write_expiry_events().expect("write"), 1);
    assert_eq!(hooks.write_expiry_events().expect("write"), 0);
    h.clock.advance(Duration::days(7));
    assert_eq!(hooks.write_expiry_events().expect("write"), 1);
    let of = |id| {
        h.events()
            .into_iter()
            .filter(|e| e.key_id == Some(id))
            .map(|e| e.event_type())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        of(short.key.id),
        [EventType::KeyCreated, EventType::KeyExpired]
    );
    assert_eq!(
        of(long.key.id),
        [
            EventType::KeyCreated,
            EventType::KeyExpiring,
            EventType::KeyExpired
        ]
    );
    assert!(h
        .events()
        .iter()
        .filter(|e| e.event_type() == EventType::KeyExpired)
        .all(|e| e.actor == domain::Actor::System));
}
