//! Hostile input at the edges (docs/api.md, "Abuse limits", "Limits",
//! "Names"), through `actix_web::test` over the in-memory store: the limit
//! on failed authentications per client address (with a clock moved by
//! hand), which address a request is counted under, bearer tokens that are
//! not ASCII, names that hide what they are, and request heads over the
//! limits.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, with_json, Fx, Reply};
use domain::{KeyType, Mode, OsSecretSource, PlainKey};
use http_actix::{
    app, FailureLimitConfig, FailureLimiter, LimiterClock, ManualClock, TrustedProxies,
};
use serde_json::json;

const LIMIT: u32 = 3;
const WINDOW: Duration = Duration::from_secs(60);

/// Acme's fixture with a limit of [`LIMIT`] failures a [`WINDOW`] on a
/// clock the test moves.
fn limited(proxies: &str) -> (Fx, ManualClock, Arc<FailureLimiter>) {
    let fx = Fx::new();
    let clock = ManualClock::default();
    let limiter = Arc::new(FailureLimiter::with_clock(
        &FailureLimitConfig {
            limit: LIMIT,
            window: WINDOW,
            trusted_proxies: TrustedProxies::parse(proxies).unwrap(),
            ..FailureLimitConfig::default()
        },
        LimiterClock::manual(&clock),
    ));
    (fx, clock, limiter)
}

macro_rules! init {
    ($fx:expr, $limiter:expr) => {
        test::init_service(app($fx.state().with_failure_limiter($limiter.clone()))).await
    };
}

/// A well-formed key (checksum and all) that belongs to no one.
fn stranger_key() -> String {
    PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret()
}

fn peer(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

fn list_from(fx: &Fx, from: &str, key: &str) -> TestRequest {
    fx.req(Method::GET, "/v1/api-keys", key)
        .peer_addr(peer(from))
}

fn assert_too_many(r: &Reply, retry_after: &str) {
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", None);
    assert_eq!(r.header("retry-after"), Some(retry_after));
}

#[actix_web::test]
async fn failures_past_the_limit_get_429_everywhere_until_the_window_passes() {
    // Given an address that failed as often as the limit allows
    let (fx, clock, limiter) = limited("");
    let app = init!(fx, limiter);
    let attacker = "203.0.113.7:40000";
    for _ in 0..LIMIT {
        let r = send(&app, list_from(&fx, attacker, &stranger_key()).to_request()).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    }

    // When it fails once more, then comes back with a good key
    let r = send(&app, list_from(&fx, attacker, &stranger_key()).to_request()).await;
    assert_too_many(&r, "60");
    let r = send(&app, list_from(&fx, attacker, &fx.acme.live).to_request()).await;

    // Then every authenticated route, verify and leaked-keys refuse it
    assert_too_many(&r, "60");
    let verify = with_json(
        TestRequest::post()
            .uri("/v1/api-keys/verify")
            .insert_header(("X-Tenant-ID", fx.acme.tenant.clone())),
        &json!({"key": fx.acme.live}),
    )
    .peer_addr(peer(attacker));
    let r = send(&app, verify.to_request()).await;
    assert_too_many(&r, "60");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let report = with_json(
        TestRequest::post().uri("/v1/leaked-keys"),
        &json!({"keys": ["anything"]}),
    )
    .peer_addr(peer(attacker));
    let r = send(&app, report.to_request()).await;
    assert_too_many(&r, "60");

    // Until the window passes, then the good key works again
    clock.advance(WINDOW - Duration::from_secs(1));
    let r = send(&app, list_from(&fx, attacker, &fx.acme.live).to_request()).await;
    assert_too_many(&r, "1");
    clock.advance(Duration::from_secs(1));
    let r = send(&app, list_from(&fx, attacker, &fx.acme.live).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    let counts = limiter.counts();
    assert_eq!((counts.failures, counts.refusals, counts.blocks), (4, 5, 1));
}

#[actix_web::test]
async fn another_address_is_unaffected() {
    let (fx, _clock, limiter) = limited("");
    let app = init!(fx, limiter);
    for _ in 0..=LIMIT {
        send(
            &app,
            list_from(&fx, "203.0.113.7:1", &stranger_key()).to_request(),
        )
        .await;
    }
    let r = send(
        &app,
        list_from(&fx, "203.0.113.7:2", &fx.acme.live).to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);

    let r = send(
        &app,
        list_from(&fx, "198.51.100.2:1", &fx.acme.live).to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(
        &app,
        list_from(&fx, "198.51.100.2:1", &stranger_key()).to_request(),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
}

#[actix_web::test]
async fn missing_keys_and_other_refusals_do_not_count() {
    let (fx, _clock, limiter) = limited("");
    let app = init!(fx, limiter);
    let from = "203.0.113.7:1";
    for _ in 0..10 {
        let r = send(
            &app,
            TestRequest::get()
                .uri("/v1/api-keys")
                .peer_addr(peer(from))
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "missing_api_key", None);
        let r = send(
            &app,
            common::authed(Method::GET, "/v1/api-keys", &fx.acme.live, "tnt_nope")
                .peer_addr(peer(from))
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_tenant_id", None);
    }
    let r = send(&app, list_from(&fx, from, &fx.acme.live).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(limiter.counts().failures, 0);
}

#[actix_web::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_does_not_help() {
    // No trusted proxy: X-Forwarded-For is ignored
    let (fx, _clock, limiter) = limited("");
    let app = init!(fx, limiter);
    let attacker = "203.0.113.7:1";
    for i in 0..=LIMIT {
        let req = list_from(&fx, attacker, &stranger_key())
            .insert_header(("X-Forwarded-For", format!("192.0.2.{i}")));
        send(&app, req.to_request()).await;
    }
    let req =
        list_from(&fx, attacker, &fx.acme.live).insert_header(("X-Forwarded-For", "192.0.2.200"));
    let r = send(&app, req.to_request()).await;
    assert_too_many(&r, "60");
    // Nor can another peer be framed by naming the attacker's address.
    let req = list_from(&fx, "198.51.100.2:1", &fx.acme.live)
        .insert_header(("X-Forwarded-For", "203.0.113.7"));
    let r = send(&app, req.to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[actix_web::test]
async fn a_trusted_proxys_forwarded_for_names_the_client_counted() {
    let (fx, _clock, limiter) = limited("10.0.0.0/8");
    let app = init!(fx, limiter);
    let proxy = "10.0.0.1:5000";
    let via_proxy = |key: &str, client: &str| {
        list_from(&fx, proxy, key)
            // The client may prepend anything; the proxy appends what it saw.
            .insert_header(("X-Forwarded-For", format!("1.1.1.1, {client}")))
            .to_request()
    };
    for _ in 0..=LIMIT {
        send(&app, via_proxy(&stranger_key(), "198.51.100.9")).await;
    }
    let r = send(&app, via_proxy(&fx.acme.live, "198.51.100.9")).await;
    assert_too_many(&r, "60");
    // Other clients behind the same proxy, and the proxy itself, are fine.
    let r = send(&app, via_proxy(&fx.acme.live, "198.51.100.10")).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&app, list_from(&fx, proxy, &fx.acme.live).to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[actix_web::test]
async fn invalid_verifications_count_and_the_limit_answers_them_429() {
    let (fx, _clock, limiter) = limited("");
    let app = init!(fx, limiter);
    let verify = |key: &str| {
        with_json(
            TestRequest::post()
                .uri("/v1/api-keys/verify")
                .insert_header(("X-Tenant-ID", fx.acme.tenant.clone())),
            &json!({"key": key}),
        )
        .peer_addr(peer("203.0.113.7:1"))
        .to_request()
    };
    for key in ["not a key".to_owned(), stranger_key(), stranger_key()] {
        let r = send(&app, verify(&key)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json(), json!({"valid": false, "code": "invalid_api_key"}));
    }
    let r = send(&app, verify(&stranger_key())).await;
    assert_too_many(&r, "60");
    assert_eq!(limiter.counts().failures, 4);
}

#[actix_web::test]
async fn a_bearer_token_with_non_ascii_is_401_invalid_api_key() {
    let fx = Fx::new();
    let app = test::init_service(app(fx.state())).await;
    let key = fx.acme.live.clone();
    for token in [
        format!("{}\u{0455}", &key[..key.len() - 1]),
        "\u{FF53}\u{FF4B}_live_abc".to_owned(),
        format!("{key}\u{200B}"),
        format!("{key}\u{A0}"),
    ] {
        let req = TestRequest::get()
            .uri("/v1/api-keys")
            .insert_header((
                "Authorization",
                actix_web::http::header::HeaderValue::from_bytes(
                    format!("Bearer {token}").as_bytes(),
                )
                .unwrap(),
            ))
            .insert_header(("X-Tenant-ID", fx.acme.tenant.clone()));
        let r = send(&app, req.to_request()).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "invalid_api_key", None);
    }
}

#[actix_web::test]
async fn names_that_hide_what_they_are_are_refused_and_nothing_is_made() {
    let fx = Fx::new();
    let app = test::init_service(app(fx.state())).await;
    let key = stranger_key();
    for (name, message) in [
        ("\u{200B}\u{FEFF}", "name must not be empty (white space and invisible characters do not count)"),
        ("\u{3164}", "name must not be empty (white space and invisible characters do not count)"),
        ("invoice\u{202E}fdp.exe", "name must not contain control, invisible, bidirectional-override, private-use or unassigned characters"),
        ("line\u{2028}break", "name must not contain control, invisible, bidirectional-override, private-use or unassigned characters"),
        (key.as_str(), "name must not contain an API key: names are stored and shown in clear"),
    ] {
        let req = fx.req_json(
            Method::POST,
            "/v1/api-keys",
            &fx.acme.live,
            &json!({"name": name, "type": "secret"}),
        );
        let r = send(&app, req.to_request()).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some("name"));
        assert_eq!(r.json()["error"]["message"], message);
        assert!(!String::from_utf8_lossy(&r.body).contains(&key));
    }
    let r = send(
        &app,
        fx.req(Method::GET, "/v1/api-keys", &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(2));
}

#[actix_web::test]
async fn a_head_over_the_limits_is_answered_in_the_error_shape() {
    let fx = Fx::new();
    let app = test::init_service(app(fx.state())).await;

    let long = format!("/v1/api-keys?x={}", "a".repeat(http_actix::MAX_URI_LEN));
    let r = send(&app, fx.req(Method::GET, &long, &fx.acme.live).to_request()).await;
    r.assert_error(StatusCode::URI_TOO_LONG, "uri_too_long", None);

    let mut many = fx.req(Method::GET, "/v1/api-keys", &fx.acme.live);
    for i in 0..http_actix::MAX_HEADERS {
        many = many.insert_header((format!("x-filler-{i}"), "1"));
    }
    let r = send(&app, many.to_request()).await;
    r.assert_error(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
        None,
    );

    let big = fx
        .req(Method::GET, "/v1/api-keys", &fx.acme.live)
        .insert_header(("x-big", "b".repeat(http_actix::MAX_HEADER_BYTES)));
    let r = send(&app, big.to_request()).await;
    r.assert_error(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request_header_fields_too_large",
        None,
    );

    // Just under every limit: served.
    let mut fine = fx.req(Method::GET, "/v1/api-keys", &fx.acme.live);
    for i in 0..http_actix::MAX_HEADERS - 3 {
        fine = fine.insert_header((format!("x-filler-{i}"), "1"));
    }
    let r = send(&app, fine.to_request()).await;
    assert_eq!(r.status, StatusCode::OK);
}
