//! Leaked-key reports end to end, over real HTTP and a real PostgreSQL
//! (docs/api.md, "POST /v1/leaked-keys"): a reported secret key no longer
//! works once the 202 is sent (even the tenant's last full-access key), a
//! publishable key and junk are ignored, the audit log names the leak
//! report; and a measurement of the answer's latency for junk, unknown keys
//! and real keys (printed, not asserted: the 202 now waits for the
//! revocations, so it grows with the number of real keys, not with the
//! number of strings: they are looked up together).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::{Duration as StdDuration, Instant};

use common::{hash_key, json, TestApp};
use domain::{
    Actor, ApiKeyRepository, ApiKeys, Authenticator, CreateKey, Credentials, EventData,
    EventRepository, KeyName, KeyType, Mode, PlainKey, Principal, Scopes, TenantId,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// How long the revocations may take after the 202 before a test fails.
const DEADLINE: StdDuration = StdDuration::from_secs(10);

/// `POST /v1/leaked-keys` with `keys`, no credentials, and the request id
/// `request_id`; checks the 202 and its body, in which no key may appear.
async fn report(app: &TestApp, keys: &[&str], request_id: &str) -> StdDuration {
    let started = Instant::now();
    let response = app
        .client
        .post(format!("{}/v1/leaked-keys", app.base))
        .header("X-Request-ID", request_id)
        .json(&json!({ "keys": keys }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(text, format!(r#"{{"received":{}}}"#, keys.len()));
    for key in keys.iter().filter(|k| k.len() > 12) {
        assert!(!text.contains(&key[8..]), "{text}");
    }
    elapsed
}

/// `GET /v1/api-keys` with `key`: the status and the error code, if any.
async fn list_as(app: &TestApp, key: &str) -> (StatusCode, Value) {
    let response = app
        .request_as(Method::GET, "/v1/api-keys", key)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, json(response).await)
}

/// Polls until `key` answers 401 `api_key_revoked`; fails after [`DEADLINE`].
async fn until_refused_as_revoked(app: &TestApp, key: &str) {
    let started = Instant::now();
    loop {
        let (status, body) = list_as(app, key).await;
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(body["error"]["code"], "api_key_revoked", "{body}");
            return;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            started.elapsed() < DEADLINE,
            "still working {DEADLINE:?} after the report"
        );
        actix_web::rt::time::sleep(StdDuration::from_millis(20)).await;
    }
}

/// Creates a key over HTTP as the tenant's live key: (id, value).
async fn create(app: &TestApp, name: &str, key_type: &str) -> (String, String) {
    let response = app
        .create_key(json!({"name": name, "type": key_type}))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = json(response).await;
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// The tenant's audit log for one key, newest first, read with the live key.
async fn audit_of(app: &TestApp, key_id: &str) -> Vec<Value> {
    let response = app
        .request(Method::GET, &format!("/v1/audit-events?key_id={key_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    json(response).await["data"].as_array().unwrap().clone()
}

/// `key` with its last character changed: the checksum no longer matches.
fn bad_checksum(key: &str) -> String {
    let last = if key.ends_with('A') { "B" } else { "A" };
    format!("{}{last}", &key[..key.len() - 1])
}

#[actix_web::test]
async fn a_reported_secret_key_is_revoked_and_a_publishable_key_and_junk_ignored() {
    // Given a full-access secret key and a publishable key, both working,
    let app = TestApp::spawn().await;
    let (leaked_id, leaked) = create(&app, "Leaked", "secret").await;
    let (widget_id, widget) = create(&app, "Widget", "publishable").await;
    assert_eq!(list_as(&app, &leaked).await.0, StatusCode::OK);

    // when, a second later (so that the audit log's order is the order of
    // the changes), both are reported together with junk and a mistyped key,
    app.clock.advance(time::Duration::seconds(1));
    let mistyped = bad_checksum(&app.live_key);
    report(
        &app,
        &[&leaked, &widget, "junk", &mistyped, ""],
        "leak-e2e-1",
    )
    .await;

    // then the secret key soon answers 401 api_key_revoked,
    until_refused_as_revoked(&app, &leaked).await;
    let response = app
        .request(Method::GET, &format!("/v1/api-keys/{leaked_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["revoked"], true);
    // the publishable key still works,
    let response = app
        .client
        .post(format!("{}/v1/api-keys/verify", app.base))
        .header("X-Tenant-ID", &app.tenant)
        .json(&json!({ "key": widget }))
        .send()
        .await
        .unwrap();
    let verdict = json(response).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["key"]["id"], widget_id.as_str());
    // and so does the tenant's live key (the mistyped copy was junk),
    assert_eq!(list_as(&app, &app.live_key).await.0, StatusCode::OK);

    // and the audit log shows the revocation by the leak report.
    let events = audit_of(&app, &leaked_id).await;
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["api_key.revoked", "api_key.created"]);
    let revoked = &events[0];
    assert_eq!(revoked["actor"], json!({"type": "leak_report"}));
    assert_eq!(revoked["request_id"], "leak-e2e-1");
    assert_eq!(revoked["key_id"], leaked_id.as_str());
    assert_eq!(revoked["tenant_id"], app.tenant.as_str());
    assert_eq!(revoked["mode"], "live");
    assert_eq!(revoked["data"], json!({}));
    let types: Vec<String> = audit_of(&app, &widget_id)
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["api_key.created"]);
    app.stop().await;
}

#[actix_web::test]
async fn even_the_tenants_last_full_access_key_is_revoked() {
    // Given the tenant's live key, which a DELETE may not revoke,
    let app = TestApp::spawn().await;
    let tenant: TenantId = app.tenant.parse().unwrap();
    let live = PlainKey::parse(&app.live_key).unwrap();
    let live_id = hash_key().hash(&live);
    let key = app.store.find_by_hash(&live_id).unwrap().unwrap();
    let response = app
        .request(Method::DELETE, &format!("/v1/api-keys/{}", key.id))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);

    // when it is reported,
    report(&app, &[&app.live_key], "leak-e2e-last").await;

    // then it is revoked all the same, with its event.
    until_refused_as_revoked(&app, &app.live_key).await;
    let stored = app.store.find(&tenant, &key.id).unwrap().unwrap();
    assert!(stored.revokes_at.is_some());
    let events: Vec<_> = app
        .store
        .events_after(0, 100)
        .unwrap()
        .into_iter()
        .map(|s| s.event)
        .filter(|e| e.data == EventData::KeyRevoked)
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key_id, Some(key.id));
    assert_eq!(events[0].actor, Actor::LeakReport);
    assert_eq!(events[0].request_id.as_deref(), Some("leak-e2e-last"));
    app.stop().await;
}

// ---- timing --------------------------------------------------------------------

/// Reports per kind of body, after the warm-up: `LEAK_TIMING_ROUNDS`, or 6
/// (docs/api.md's numbers were taken with 40).
fn rounds() -> usize {
    std::env::var("LEAK_TIMING_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(6)
}
/// Pause before each measured report: the previous report's background work
/// (100 lookups) is over by then.
const SETTLE: StdDuration = StdDuration::from_millis(300);
/// Strings per report: the most a report may hold.
const PER_REPORT: usize = 100;

/// `PER_REPORT` fresh live secret keys of the tenant, made through the
/// domain (faster than over HTTP).
fn fresh_keys(service: &ApiKeys, admin: &Principal) -> Vec<String> {
    (0..PER_REPORT)
        .map(|_| {
            service
                .create(
                    admin,
                    None,
                    CreateKey {
                        name: KeyName::parse("Timing").unwrap(),
                        key_type: KeyType::Secret,
                        mode: Some(Mode::Live),
                        scopes: Scopes::full(),
                        expires_in: None,
                        restrictions: Default::default(),
                        metadata: Default::default(),
                    },
                )
                .unwrap()
                .secret
                .into_secret()
        })
        .collect()
}

/// Waits until every key of `keys` is revoked (so that one report's work
/// does not overlap the next measurement).
async fn until_all_revoked(app: &TestApp, service: &ApiKeys, keys: &[String]) {
    let started = Instant::now();
    loop {
        let now = service.now();
        let all = keys.iter().all(|k| {
            let hash = hash_key().hash(&PlainKey::parse(k).unwrap());
            app.store
                .find_by_hash(&hash)
                .unwrap()
                .is_some_and(|key| key.is_revoked(now))
        });
        if all {
            return;
        }
        assert!(started.elapsed() < DEADLINE, "not revoked in time");
        actix_web::rt::time::sleep(StdDuration::from_millis(10)).await;
    }
}

fn summary(name: &str, mut samples: Vec<StdDuration>) -> String {
    samples.sort();
    let ms = |d: StdDuration| d.as_secs_f64() * 1000.0;
    format!(
        "{name:>22}: median {:6.2} ms, min {:6.2} ms, max {:6.2} ms (n = {})",
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// The answer's latency for 100 junk strings, 100 well-formed keys that do
/// not exist, and 100 real keys; and, for scale, what the same work costs
/// when done synchronously. Printed (`--nocapture`), never asserted:
/// timings depend on the machine. What is asserted is that every report is
/// answered 202 and the real keys end up revoked.
#[actix_web::test]
async fn reports_of_junk_unknown_and_real_keys_are_all_answered_202_and_their_latency_printed() {
    let app = TestApp::spawn().await;
    let service = common_service(&app);
    let tenant: TenantId = app.tenant.parse().unwrap();
    let admin = principal_of(&service, &app.live_key, tenant);
    // Junk of a key's length, so that every body is the same size.
    let junk: Vec<String> = (0..PER_REPORT).map(|i| format!("{i:0>46}")).collect();
    let unknown: Vec<String> = (0..PER_REPORT)
        .map(|_| {
            PlainKey::generate(KeyType::Secret, Mode::Live, &domain::OsSecretSource).into_secret()
        })
        .collect();

    // Warm-up: connections, pools, code paths.
    for i in 0..3 {
        report(&app, &refs(&junk), &format!("warm-junk-{i}")).await;
        report(&app, &refs(&unknown), &format!("warm-unknown-{i}")).await;
        let real = fresh_keys(&service, &admin);
        report(&app, &refs(&real), &format!("warm-real-{i}")).await;
        until_all_revoked(&app, &service, &real).await;
    }

    let (mut for_junk, mut for_unknown, mut for_real) = (vec![], vec![], vec![]);
    let mut synchronous = vec![];
    for round in 0..rounds() {
        let real = fresh_keys(&service, &admin);
        // Each kind goes first, second and third equally often; each
        // measured report follows the same steps: the previous report's work
        // has finished (it would load the machine), and an unmeasured
        // one-string report has just warmed the connection (so that no kind
        // is measured after a pause).
        for kind in (0..3).map(|i| (i + round) % 3) {
            let (strings, samples, name) = match kind {
                0 => (&junk, &mut for_junk, "junk"),
                1 => (&unknown, &mut for_unknown, "unknown"),
                _ => (&real, &mut for_real, "real"),
            };
            actix_web::rt::time::sleep(SETTLE).await;
            report(&app, &["primer"], &format!("primer-{round}-{kind}")).await;
            samples.push(report(&app, &refs(strings), &format!("{name}-{round}")).await);
            if kind == 2 {
                // Its revocations must not load the next measurement.
                until_all_revoked(&app, &service, &real).await;
            }
        }
        // The work the answer no longer waits for, done in line.
        let real = fresh_keys(&service, &admin);
        let started = Instant::now();
        let outcome = service.revoke_leaked(None, &real).unwrap();
        synchronous.push(started.elapsed());
        assert_eq!(outcome.revoked, PER_REPORT);
    }
    println!("POST /v1/leaked-keys with {PER_REPORT} strings, answer latency over HTTP:");
    println!("{}", summary("junk strings", for_junk));
    println!("{}", summary("unknown well-formed", for_unknown));
    println!("{}", summary("real secret keys", for_real));
    println!("the revocations themselves, synchronously:");
    println!("{}", summary("revoke_leaked, 100 real", synchronous));
    app.stop().await;
}

/// The strings of `v`, borrowed.
fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The domain service over the application's store and clock.
fn common_service(app: &TestApp) -> ApiKeys {
    apikeys::application::service(&app.store, app.clock.clone(), hash_key())
}

/// The principal of `key`, a key of `tenant` that authenticates.
fn principal_of(service: &ApiKeys, key: &str, tenant: TenantId) -> Principal {
    let credentials = Credentials::new(PlainKey::parse(key).unwrap(), tenant);
    Principal::of(&service.authenticate(&credentials).unwrap())
}
