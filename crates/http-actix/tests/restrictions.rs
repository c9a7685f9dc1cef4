//! A key's restrictions over HTTP (docs/api.md, "Restricting a key"): each
//! refusal code on an authenticated route and on verify, in its documented
//! place among the checks (after the key authenticated for the tenant,
//! before its type and scopes), and each bad restriction or metadata at
//! create and PATCH refused with 400 `invalid_parameter`, changing nothing.
//!
//! The client address is the peer's here (no trusted proxies); behind a
//! trusted proxy it is the `X-Forwarded-For` entry the proxy added, which
//! `crates/apikeys/tests/restrictions.rs` tests end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::SocketAddr;

use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use common::{send, with_json, Fx};
use http_actix::app;
use serde_json::{json, Value};

macro_rules! init {
    ($fx:expr) => {
        test::init_service(app($fx.state())).await
    };
}

/// A peer at `ip`.
fn from(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40_000)
}

/// Creates a key with Acme's live key; the created key object.
macro_rules! create {
    ($fx:expr, $app:expr, $body:expr $(,)?) => {{
        let r = send(
            &$app,
            $fx.req_json(Method::POST, "/v1/api-keys", &$fx.acme.live, &$body)
                .to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
        r.json()
    }};
}

/// `GET /v1/api-keys/{id}` of the key `created` (the creation answer, which
/// holds the documented creation fields only) with Acme's live key.
macro_rules! stored {
    ($fx:expr, $app:expr, $created:expr) => {{
        let uri = format!("/v1/api-keys/{}", $created["id"].as_str().unwrap());
        let r = send(
            &$app,
            $fx.req(Method::GET, &uri, &$fx.acme.live).to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        r.json()
    }};
}

/// `POST /v1/api-keys/verify` of `body` for Acme.
fn verify(fx: &Fx, body: &Value) -> TestRequest {
    with_json(
        TestRequest::post()
            .uri("/v1/api-keys/verify")
            .insert_header(("X-Tenant-ID", fx.acme.tenant.clone())),
        body,
    )
}

/// The ids of Acme's keys, as its live key lists them.
macro_rules! key_ids {
    ($fx:expr, $app:expr) => {{
        let r = send(
            &$app,
            $fx.req(Method::GET, "/v1/api-keys?limit=100", &$fx.acme.live)
                .to_request(),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let ids: Vec<String> = r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_str().unwrap().to_owned())
            .collect();
        ids
    }};
}

fn hundred_and_one_blocks() -> Value {
    (0..101).map(|i| format!("10.{i}.0.0/16")).collect()
}

fn metadata_of(entries: usize) -> Value {
    Value::Object(
        (0..entries)
            .map(|i| (format!("k{i}"), Value::String("v".into())))
            .collect(),
    )
}

/// Each bad restriction or metadata, and the field the 400 names.
fn bad_fields() -> Vec<(Value, &'static str)> {
    let secret = |extra: Value| {
        let mut body = json!({"name": "Bad", "type": "secret"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let publishable = |origins: Value| {
        json!({"name": "Bad", "type": "publishable", "scopes": ["users:read"],
               "allowed_origins": origins})
    };
    vec![
        // Origins are a browser's: never on a secret key.
        (
            secret(json!({"allowed_origins": ["https://app.example.com"]})),
            "allowed_origins",
        ),
        (secret(json!({"allowed_ips": []})), "allowed_ips"),
        (
            secret(json!({"allowed_ips": hundred_and_one_blocks()})),
            "allowed_ips",
        ),
        (
            secret(json!({"allowed_ips": ["300.1.2.0/24"]})),
            "allowed_ips",
        ),
        (
            secret(json!({"allowed_ips": ["203.0.113.0/33"]})),
            "allowed_ips",
        ),
        (
            secret(json!({"allowed_ips": ["2001:db8::/129"]})),
            "allowed_ips",
        ),
        (
            secret(json!({"allowed_ips": ["example.com"]})),
            "allowed_ips",
        ),
        (secret(json!({"allowed_ips": [24]})), "allowed_ips"),
        (
            secret(json!({"allowed_ips": "203.0.113.0/24"})),
            "allowed_ips",
        ),
        (publishable(json!([])), "allowed_origins"),
        (publishable(json!(["app.example.com"])), "allowed_origins"),
        (
            publishable(json!(["https://app.example.com/path"])),
            "allowed_origins",
        ),
        (
            publishable(json!(["https://user@app.example.com"])),
            "allowed_origins",
        ),
        (publishable(json!(["https://*"])), "allowed_origins"),
        (
            publishable(json!(["https://app.*.example.com"])),
            "allowed_origins",
        ),
        (
            publishable(
                (0..51)
                    .map(|i| format!("https://a{i}.example.com"))
                    .collect(),
            ),
            "allowed_origins",
        ),
        (secret(json!({"metadata": metadata_of(21)})), "metadata"),
        (secret(json!({"metadata": {"bad key": "v"}})), "metadata"),
        (secret(json!({"metadata": {"": "v"}})), "metadata"),
        (
            secret(json!({"metadata": {"k".repeat(41): "v"}})),
            "metadata",
        ),
        (
            secret(json!({"metadata": {"plan": "x".repeat(501)}})),
            "metadata",
        ),
        (
            secret(json!({"metadata": {"plan": "é".repeat(501)}})),
            "metadata",
        ),
        (secret(json!({"metadata": {"seats": 5}})), "metadata"),
        (secret(json!({"metadata": ["plan"]})), "metadata"),
    ]
}

#[actix_web::test]
async fn a_bad_restriction_or_metadata_at_create_is_400_and_makes_nothing() {
    let fx = Fx::new();
    let app = init!(fx);
    let before = key_ids!(fx, app);
    for (body, param) in bad_fields() {
        let r = send(
            &app,
            fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(param));
    }
    // A key in a value is refused, and not repeated in the answer.
    let body = json!({"name": "Bad", "type": "secret", "metadata": {"note": fx.acme.live}});
    let r = send(
        &app,
        fx.req_json(Method::POST, "/v1/api-keys", &fx.acme.live, &body)
            .to_request(),
    )
    .await;
    r.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
        Some("metadata"),
    );
    assert!(!String::from_utf8_lossy(&r.body).contains(&fx.acme.live[8..]));
    assert_eq!(key_ids!(fx, app), before);
    // The limits themselves are accepted: 100 blocks, 50 origins, 20
    // entries of 40-character keys and 500-character values (all at once
    // within the 16 KiB body).
    let blocks: Value = (0..100).map(|i| format!("10.{i}.0.0/16")).collect();
    let origins: Value = (0..50)
        .map(|i| format!("https://a{i}.example.com"))
        .collect();
    let mut metadata: serde_json::Map<String, Value> = (1..20)
        .map(|i| (format!("{i:0>40}"), Value::String("x".repeat(500))))
        .collect();
    // Characters, not bytes.
    metadata.insert("unicode".into(), Value::String("é".repeat(500)));
    let metadata = Value::Object(metadata);
    let key = create!(
        fx,
        app,
        json!({"name": "At the limits", "type": "publishable", "scopes": ["users:read"],
               "allowed_ips": blocks, "allowed_origins": origins, "metadata": metadata}),
    );
    let key = stored!(fx, app, key);
    assert_eq!(key["allowed_ips"], blocks);
    assert_eq!(key["allowed_origins"], origins);
    assert_eq!(key["metadata"], metadata);
}

#[actix_web::test]
async fn a_bad_restriction_or_metadata_in_a_patch_is_400_and_changes_nothing() {
    let fx = Fx::new();
    let app = init!(fx);
    let secret = create!(
        fx,
        app,
        json!({"name": "Pinned", "type": "secret", "allowed_ips": ["203.0.113.0/24"],
               "metadata": metadata_of(19)}),
    );
    let id = secret["id"].as_str().unwrap();
    let uri = format!("/v1/api-keys/{id}");
    let get = || fx.req(Method::GET, &uri, &fx.acme.live).to_request();
    let stored = send(&app, get()).await.json();
    let patches = [
        (
            json!({"allowed_origins": ["https://app.example.com"]}),
            "allowed_origins",
        ),
        (json!({"allowed_ips": []}), "allowed_ips"),
        (
            json!({"allowed_ips": ["203.0.113.0/24", "nope"]}),
            "allowed_ips",
        ),
        // 19 entries and two more are 21, even with a third removed that
        // was never there.
        (
            json!({"metadata": {"a": "1", "b": "2", "absent": null}}),
            "metadata",
        ),
        (json!({"metadata": {"bad key": null}}), "metadata"),
        (json!({"metadata": {"plan": 1}}), "metadata"),
        (json!({"metadata": "plan"}), "metadata"),
    ];
    for (patch, param) in patches {
        // With a valid change beside it: nothing of the request is applied.
        let mut body = patch.clone();
        body["name"] = json!("Renamed");
        let r = send(
            &app,
            fx.req_json(Method::PATCH, &uri, &fx.acme.live, &body)
                .to_request(),
        )
        .await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(param));
        assert_eq!(send(&app, get()).await.json(), stored, "after {patch}");
    }
    // At 19 entries, one more fits, and removing one makes room for it.
    let r = send(
        &app,
        fx.req_json(
            Method::PATCH,
            &uri,
            &fx.acme.live,
            &json!({"metadata": {"k0": null, "a": "1", "b": "2"}}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let metadata = r.json()["metadata"].as_object().unwrap().clone();
    assert_eq!(metadata.len(), 20);
    assert!(!metadata.contains_key("k0"));
    assert_eq!(metadata["a"], "1");
}

/// A route every secret key with `users:read` or `*` may call is
/// `GET /v1/audit-events` only with `audit-logs:read`: the refusal for the
/// scope shows which check came first.
const AUDIT: &str = "/v1/audit-events";

#[actix_web::test]
async fn a_secret_key_used_from_outside_its_blocks_is_403_ip_not_allowed() {
    let fx = Fx::new();
    let app = init!(fx);
    let key = create!(
        fx,
        app,
        json!({"name": "Pinned", "type": "secret", "scopes": ["audit-logs:read"],
               "allowed_ips": ["203.0.113.0/24", "2001:db8::/32"]}),
    );
    let (id, value) = (key["id"].as_str().unwrap(), key["key"].as_str().unwrap());
    let audit = |peer: Option<&str>| {
        let req = fx.req(Method::GET, AUDIT, value);
        match peer {
            Some(ip) => req.peer_addr(from(ip)),
            None => req,
        }
    };
    for inside in ["203.0.113.9", "::ffff:203.0.113.9", "2001:db8:1::7"] {
        let r = send(&app, audit(Some(inside)).to_request()).await;
        assert_eq!(r.status, StatusCode::OK, "from {inside}: {}", r.json());
    }
    for outside in [
        "198.51.100.1",
        "203.0.114.9",
        "2001:db9::1",
        "::ffff:198.51.100.1",
    ] {
        let r = send(&app, audit(Some(outside)).to_request()).await;
        r.assert_error(StatusCode::FORBIDDEN, "ip_not_allowed", None);
    }
    // No known address is no address inside the blocks.
    let r = send(&app, audit(None).to_request()).await;
    r.assert_error(StatusCode::FORBIDDEN, "ip_not_allowed", None);
    // Without a trusted proxy, `X-Forwarded-For` names no one.
    let r = send(
        &app,
        audit(Some("198.51.100.1"))
            .insert_header(("X-Forwarded-For", "203.0.113.9"))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "ip_not_allowed", None);
    // Before the scopes: a route the key lacks the scope for is refused
    // for the address from outside, for the scope from inside.
    let list = |ip: &str| {
        fx.req(Method::GET, "/v1/api-keys", value)
            .peer_addr(from(ip))
            .to_request()
    };
    send(&app, list("198.51.100.1")).await.assert_error(
        StatusCode::FORBIDDEN,
        "ip_not_allowed",
        None,
    );
    let r = send(&app, list("203.0.113.9")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.json()["error"]["code"], "insufficient_scope");
    // After authentication for the tenant: another tenant's header, or a
    // revoked key, is refused as such from anywhere.
    let other = Fx::tenant_of(&fx.service, "Globex");
    let r = send(
        &app,
        common::authed(Method::GET, AUDIT, value, &other.tenant)
            .peer_addr(from("198.51.100.1"))
            .to_request(),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "tenant_mismatch", None);
    let r = send(
        &app,
        fx.req(Method::DELETE, &format!("/v1/api-keys/{id}"), &fx.acme.live)
            .to_request(),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = send(&app, audit(Some("198.51.100.1")).to_request()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "api_key_revoked", None);
}

#[actix_web::test]
async fn a_publishable_key_from_another_origin_or_none_is_403_origin_not_allowed() {
    let fx = Fx::new();
    let app = init!(fx);
    let key = create!(
        fx,
        app,
        json!({"name": "Web app", "type": "publishable", "scopes": ["users:read"],
               "allowed_origins": ["https://*.example.com", "http://localhost:3000"]}),
    );
    assert_eq!(
        stored!(fx, app, key)["allowed_origins"],
        json!(["https://*.example.com", "http://localhost:3000"])
    );
    let value = key["key"].as_str().unwrap();
    let audit = |headers: &[(&'static str, &'static str)]| {
        let mut req = fx
            .req(Method::GET, AUDIT, value)
            .peer_addr(from("192.0.2.1"));
        for header in headers {
            req = req.insert_header(*header);
        }
        req.to_request()
    };
    // Past the origin check, the route wants a secret key: the next check.
    for allowed in [
        &[("Origin", "https://app.example.com")][..],
        &[("Origin", "https://a.b.example.com")],
        &[("Origin", "HTTPS://App.Example.com:443")],
        &[("Origin", "http://localhost:3000")],
        &[("Referer", "https://shop.example.com/cart?item=1")],
    ] {
        let r = send(&app, audit(allowed)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{allowed:?}");
        assert_eq!(
            r.json()["error"]["code"],
            "secret_key_required",
            "{allowed:?}"
        );
    }
    for refused in [
        &[][..],
        &[("Origin", "https://example.com")],
        &[("Origin", "https://evil.example.net")],
        &[("Origin", "https://example.com.evil.net")],
        &[("Origin", "http://app.example.com")],
        &[("Origin", "http://localhost:3001")],
        &[("Origin", "null")],
        &[(
            "Referer",
            "https://evil.example.net/?https://app.example.com",
        )],
        // `Origin` is the browser's word; a `Referer` does not overrule it.
        &[
            ("Origin", "https://evil.example.net"),
            ("Referer", "https://app.example.com/"),
        ],
    ] {
        let r = send(&app, audit(refused)).await;
        r.assert_error(StatusCode::FORBIDDEN, "origin_not_allowed", None);
    }
}

#[actix_web::test]
async fn verify_judges_the_end_client_the_body_names() {
    let fx = Fx::new();
    let app = init!(fx);
    let secret = create!(
        fx,
        app,
        json!({"name": "Billing backend", "type": "secret", "scopes": ["users:read"],
               "allowed_ips": ["203.0.113.0/24"], "metadata": {"team": "billing"}}),
    );
    let publishable = create!(
        fx,
        app,
        json!({"name": "Web app", "type": "publishable", "scopes": ["users:read"],
               "allowed_ips": ["192.0.2.0/24"], "allowed_origins": ["https://*.example.com"]}),
    );
    let sk = secret["key"].as_str().unwrap();
    let pk = publishable["key"].as_str().unwrap();
    let verdict = |body: Value| {
        let fx = &fx;
        let app = &app;
        async move {
            // The verifying service's own address is not the client's.
            let r = send(
                app,
                verify(fx, &body)
                    .peer_addr(from("203.0.113.1"))
                    .to_request(),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.json());
            r.json()
        }
    };
    let refused = |code: &str| json!({"valid": false, "code": code});

    let valid = verdict(json!({"key": sk, "ip": "203.0.113.7"})).await;
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["key"]["allowed_ips"], json!(["203.0.113.0/24"]));
    assert_eq!(valid["key"]["allowed_origins"], Value::Null);
    assert_eq!(valid["key"]["metadata"], json!({"team": "billing"}));
    assert_eq!(verdict(json!({"key": sk})).await, refused("ip_not_allowed"));
    assert_eq!(
        verdict(json!({"key": sk, "ip": "198.51.100.7"})).await,
        refused("ip_not_allowed")
    );
    // Before the scopes.
    assert_eq!(
        verdict(json!({"key": sk, "ip": "198.51.100.7", "scopes": ["users:write"]})).await,
        refused("ip_not_allowed")
    );
    // A secret key has no origins to match: an origin changes nothing.
    let valid = verdict(json!({"key": sk, "ip": "203.0.113.7", "origin": "https://x.test"})).await;
    assert_eq!(valid["code"], "valid");

    let valid =
        verdict(json!({"key": pk, "ip": "192.0.2.5", "origin": "https://app.example.com"})).await;
    assert_eq!(valid["code"], "valid");
    assert_eq!(
        valid["key"]["allowed_origins"],
        json!(["https://*.example.com"])
    );
    assert_eq!(valid["key"]["metadata"], json!({}));
    // The address first, then the origin.
    assert_eq!(
        verdict(json!({"key": pk, "ip": "198.51.100.7", "origin": "https://evil.example.net"}))
            .await,
        refused("ip_not_allowed")
    );
    assert_eq!(
        verdict(json!({"key": pk, "ip": "192.0.2.5"})).await,
        refused("origin_not_allowed")
    );
    assert_eq!(
        verdict(json!({"key": pk, "ip": "192.0.2.5", "origin": "https://example.com"})).await,
        refused("origin_not_allowed")
    );

    // An unrestricted key is valid whatever the body says of its client.
    let open = verdict(
        json!({"key": fx.acme.live, "ip": "198.51.100.7", "origin": "https://evil.example.net"}),
    )
    .await;
    assert_eq!(open["code"], "valid");
    assert_eq!(open["key"]["allowed_ips"], Value::Null);

    // What is not an address or an origin is a bad request, not a verdict.
    for (body, param) in [
        (json!({"key": sk, "ip": "203.0.113.300"}), "ip"),
        (json!({"key": sk, "ip": "203.0.113.0/24"}), "ip"),
        (json!({"key": sk, "ip": 7}), "ip"),
        (json!({"key": pk, "origin": 7}), "origin"),
    ] {
        let r = send(&app, verify(&fx, &body).to_request()).await;
        r.assert_error(StatusCode::BAD_REQUEST, "invalid_parameter", Some(param));
    }
}
