//! `GET /metrics` end to end: the real application with
//! `APIKEYS_METRICS_BIND`'s listener, some traffic of every kind, then a
//! scrape checked family by family, and no label value that looks like an
//! id or a key (docs/metrics.md).
//!
//! One test in this binary: the recorder is global to the process, so the
//! counts below are exact.

#![expect(
    clippy::expect_used,
    reason = "test helpers outside #[test] functions: a failed step is a failed test"
)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apikeys::application::{Application, Settings};
use common::{create_tenant, hash_key, json};
use domain::testing::TestClock;
use infra_postgres::testing::TestDatabase;
use reqwest::{Client, Method, StatusCode};
use serde_json::json;

/// One sample: the family and its labels, sorted by name.
type Series = (String, BTreeMap<String, String>);

/// Parses the text format's sample lines (not `# HELP`/`# TYPE`).
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        let value: f64 = value.parse().expect("a number");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|pair| !pair.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                        (k.to_owned(), v.trim_end_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        samples.insert((name, labels), value);
    }
    samples
}

fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples.get(&(name.to_owned(), labels)).copied()
}

async fn scrape(client: &Client, metrics: SocketAddr) -> (String, BTreeMap<Series, f64>) {
    let response = client
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("body");
    let samples = parse(&text);
    (text, samples)
}

/// The families in docs/metrics.md's table, in its order.
fn documented_families() -> Vec<String> {
    include_str!("../../../docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `apikeys_"))
        .filter_map(|rest| rest.split('`').next())
        .map(|name| format!("apikeys_{name}"))
        .collect()
}

#[actix_web::test]
async fn metrics_show_every_family_after_traffic_and_no_label_holds_an_id() {
    // Given the application with a metrics listener and a tenant,
    let db = TestDatabase::new();
    let store = db.store();
    let clock = TestClock::default();
    let settings = Settings {
        workers: Some(2),
        services: composition::Settings {
            flush_uses_every: Duration::from_millis(50),
            ..composition::Settings::default()
        },
        metrics_bind: Some("127.0.0.1:0".parse().expect("addr")),
        // A small limit for one forwarded address (the test's own requests
        // come from 127.0.0.1, which makes fewer failures than that).
        failure_limit: http_actix::FailureLimitConfig {
            limit: 3,
            trusted_proxies: http_actix::TrustedProxies::parse("127.0.0.1").expect("proxies"),
            ..http_actix::FailureLimitConfig::default()
        },
        ..Settings::default()
    };
    let bind: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let app = Application::build_with(bind, &store, clock.clone(), hash_key(), &settings)
        .expect("build application");
    // After the recorder is installed, so that its events are counted.
    let tenant = create_tenant(&store, &clock, "Acme");
    let base = format!("http://{}", app.addr());
    let metrics = app.metrics_addr().expect("a metrics listener");
    let handle = app.handle();
    actix_web::rt::spawn(app.into_server());
    let client = Client::new();
    let call = |method: Method, path: &str, key: &str| {
        client
            .request(method, format!("{base}{path}"))
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Tenant-ID", &tenant.id)
    };

    // when every kind of request is made:
    for _ in 0..2 {
        let listed = call(Method::GET, "/v1/api-keys", &tenant.live)
            .send()
            .await
            .expect("list");
        assert_eq!(listed.status(), StatusCode::OK);
    }
    let created = call(Method::POST, "/v1/api-keys", &tenant.live)
        .json(&json!({"name": "Worker", "type": "secret"}))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let (id, secret) = (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    );
    let read = call(Method::GET, &format!("/v1/api-keys/{id}"), &tenant.live)
        .send()
        .await
        .expect("read");
    assert_eq!(read.status(), StatusCode::OK);
    let renamed = call(Method::PATCH, &format!("/v1/api-keys/{id}"), &tenant.live)
        .json(&json!({"name": "Worker (EU)"}))
        .send()
        .await
        .expect("rename");
    assert_eq!(renamed.status(), StatusCode::OK);
    let rotated = call(Method::POST, "/v1/api-keys/rotate", &tenant.live)
        .json(&json!({"id": id, "grace_period": "0s"}))
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), StatusCode::OK);
    let successor = json(rotated).await["id"]
        .as_str()
        .expect("successor id")
        .to_owned();
    let revoked = call(
        Method::DELETE,
        &format!("/v1/api-keys/{successor}"),
        &tenant.live,
    )
    .send()
    .await
    .expect("revoke");
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let invalid = call(Method::GET, "/v1/api-keys", "sk_live_not_a_key")
        .send()
        .await
        .expect("bad key");
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    let missing = client
        .get(format!("{base}/v1/api-keys"))
        .header("X-Tenant-ID", &tenant.id)
        .send()
        .await
        .expect("no key");
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    let verified = client
        .post(format!("{base}/v1/api-keys/verify"))
        .header("X-Tenant-ID", &tenant.id)
        .json(&json!({"key": tenant.test}))
        .send()
        .await
        .expect("verify");
    assert_eq!(json(verified).await["code"], "valid");
    let old_key = client
        .post(format!("{base}/v1/api-keys/verify"))
        .header("X-Tenant-ID", &tenant.id)
        .json(&json!({"key": secret}))
        .send()
        .await
        .expect("verify");
    assert_eq!(json(old_key).await["code"], "api_key_revoked");
    let nowhere = client
        .get(format!("{base}/no/such/route"))
        .send()
        .await
        .expect("404");
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    // An address that guesses keys until the failure limit refuses it.
    let mut too_many = 0.0;
    for _ in 0..6 {
        let guess = call(Method::GET, "/v1/audit-events", "sk_live_not_a_key")
            .header("X-Forwarded-For", "203.0.113.9")
            .send()
            .await
            .expect("a guess");
        match guess.status() {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => too_many += 1.0,
            other => panic!("a guess answered {other}"),
        }
    }
    assert!(too_many >= 2.0, "the limit refused {too_many} guesses");

    // then, once the last-used writer has written its batch and the feed has
    // confirmed, a scrape shows every family:
    let deadline = Instant::now() + Duration::from_secs(10);
    let (text, samples) = loop {
        let (text, samples) = scrape(&client, metrics).await;
        let written = value(&samples, "apikeys_last_used_batches_total", &[]).unwrap_or(0.0);
        let lag = value(&samples, "apikeys_event_feed_lag_seconds", &[]).unwrap_or(f64::INFINITY);
        if written >= 1.0 && lag < 1.0 {
            break (text, samples);
        }
        assert!(
            Instant::now() < deadline,
            "no last-used batch or no feed confirmation within 10 s:\n{text}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    };

    let requests = "apikeys_http_requests_total";
    for (route, method, status, count) in [
        ("/v1/api-keys", "GET", "200", 2.0),
        ("/v1/api-keys", "GET", "401", 2.0),
        ("/v1/api-keys", "POST", "201", 1.0),
        ("/v1/api-keys/{id}", "GET", "200", 1.0),
        ("/v1/api-keys/{id}", "PATCH", "200", 1.0),
        ("/v1/api-keys/{id}", "DELETE", "204", 1.0),
        ("/v1/api-keys/rotate", "POST", "200", 1.0),
        ("/v1/api-keys/verify", "POST", "200", 2.0),
        ("unmatched", "GET", "404", 1.0),
    ] {
        assert_eq!(
            value(
                &samples,
                requests,
                &[("method", method), ("route", route), ("status", status)]
            ),
            Some(count),
            "{route} {method} {status}\n{text}"
        );
    }
    let buckets: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("apikeys_http_request_duration_seconds_bucket{")
                && l.contains("route=\"/v1/api-keys/{id}\"")
                && l.contains("method=\"GET\"")
        })
        .collect();
    assert!(
        buckets.first().is_some_and(|b| b.contains("le=\"0.0001\"")),
        "the first bucket is 100 µs: {buckets:?}"
    );
    assert_eq!(
        value(
            &samples,
            "apikeys_http_request_duration_seconds_count",
            &[("method", "GET"), ("route", "/v1/api-keys/{id}")]
        ),
        Some(1.0)
    );

    let auth = "apikeys_auth_outcomes_total";
    // Two lists, create, read, rename, rotate, revoke.
    assert_eq!(
        value(&samples, auth, &[("code", "valid"), ("via", "request")]),
        Some(7.0)
    );
    assert_eq!(
        value(
            &samples,
            "apikeys_rate_limited_total",
            &[("route", "/v1/audit-events")]
        ),
        Some(too_many),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            auth,
            &[("code", "invalid_api_key"), ("via", "request")]
        ),
        Some(1.0 + 3.0),
        "the first guess, then three guesses within the limit"
    );
    for (via, code) in [
        ("request", "missing_api_key"),
        ("verify", "valid"),
        ("verify", "api_key_revoked"),
    ] {
        assert_eq!(
            value(&samples, auth, &[("code", code), ("via", via)]),
            Some(1.0),
            "{via} {code}"
        );
    }

    let events = "apikeys_events_written_total";
    // The tenant (with its two keys), the created key, the rename, the
    // rotation (rotated + the successor's created) and the revocation.
    for (kind, count) in [
        ("tenant.created", 1.0),
        ("api_key.created", 4.0),
        ("api_key.updated", 1.0),
        ("api_key.rotated", 1.0),
        ("api_key.revoked", 1.0),
    ] {
        assert_eq!(
            value(&samples, events, &[("type", kind)]),
            Some(count),
            "{kind}"
        );
    }

    let at_least_one = |name: &str| {
        assert!(
            value(&samples, name, &[]).is_some_and(|v| v >= 1.0),
            "{name}\n{text}"
        );
    };
    at_least_one("apikeys_cache_hits_total");
    at_least_one("apikeys_cache_misses_total");
    at_least_one("apikeys_cache_invalidations_total");
    at_least_one("apikeys_last_used_batches_total");
    at_least_one("apikeys_last_used_rows_total");
    assert!(value(&samples, "apikeys_cache_negative_hits_total", &[]).is_some());
    for state in ["in_use", "idle"] {
        assert!(
            value(&samples, "apikeys_db_pool_connections", &[("state", state)]).is_some(),
            "pool {state}"
        );
    }

    // and every family docs/metrics.md lists is in the scrape, and no other.
    let documented = documented_families();
    assert!(documented.len() >= 13, "{documented:?}");
    for family in &documented {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} (docs/metrics.md) is not in the scrape:\n{text}"
        );
    }
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let family = line.split(' ').nth(2).expect("a family");
        assert!(
            documented.iter().any(|d| d == family),
            "{family} is not in docs/metrics.md"
        );
    }

    // and no label value looks like an id, and no key appears anywhere.
    for (name, labels) in samples.keys() {
        for (label, value) in labels {
            for prefix in ["key_", "tnt_", "evt_", "req_", "sk_", "pk_"] {
                assert!(
                    !value.starts_with(prefix),
                    "{name} {label}={value} looks like an id"
                );
            }
        }
    }
    for secret in [&tenant.live, &tenant.test, &secret] {
        assert!(!text.contains(secret.as_str()), "a key in the metrics");
    }
    assert!(!text.contains(&tenant.id) && !text.contains(&id));

    handle.stop(true).await;
}
