//! Restricting a key, end to end (docs/api.md, "Restricting a key"): the
//! real server on a real PostgreSQL. `allowed_ips` judged on the client
//! address of "Abuse limits" (the peer, or a trusted proxy's
//! `X-Forwarded-For`; without trusted proxies `X-Forwarded-For` is ignored),
//! `allowed_origins` on `Origin` or else `Referer`, verify's `ip` and
//! `origin`, the documented worked example, and what create and PATCH
//! refuse.
//!
//! Every request here comes from 127.0.0.1; a server that trusts 127.0.0.1
//! as a proxy takes the client address from `X-Forwarded-For`, which is how
//! a request "from 198.51.100.9" is made.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use apikeys::application::Settings;
use common::{fields, serve_with, Served};
use http_actix::{FailureLimitConfig, TrustedProxies};
use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{json, Map, Value};

/// The API reference, whose field lists the answers are held to.
const API_DOC: &str = include_str!("../../../docs/api.md");

/// The key object's fields, in order: the first column of docs/api.md's
/// table "The key object".
fn key_fields() -> Vec<&'static str> {
    let section = API_DOC.split("\n## The key object\n").nth(1).unwrap();
    let table = section.split("\n## ").next().unwrap();
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .collect()
}

/// The comma-separated list in backticks that follows `marker` (after
/// `within`) in docs/api.md.
fn documented_list(within: &str, marker: &str) -> Vec<&'static str> {
    let text = API_DOC.split(within).nth(1).unwrap();
    let list = text
        .split(marker)
        .nth(1)
        .unwrap()
        .split('`')
        .next()
        .unwrap();
    list.split(',').map(str::trim).collect()
}

/// The `201` body's fields of `POST /v1/api-keys`, in order.
fn created_fields() -> Vec<&'static str> {
    documented_list("201 with `Location: /v1/api-keys/{id}`", "in this order: `")
}

/// Verify's `key`, in order.
fn verified_key_fields() -> Vec<&'static str> {
    documented_list("### `POST /v1/api-keys/verify`", "`key` is `")
}

/// The documented refusals' messages (docs/api.md, "Restricting a key").
const IP_MESSAGE: &str = "the API key may not be used from this address";
const ORIGIN_MESSAGE: &str = "the API key may not be used from this origin";
/// A wait for a buffered key use to be written gives up after this long
/// (uses are flushed every [`FLUSH_EVERY`]).
const USE_WRITTEN_WITHIN: Duration = Duration::from_secs(5);
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// A response: its status, its `X-Request-ID` and its JSON body
/// (`Value::Null` when empty).
struct Answer {
    status: StatusCode,
    request_id: String,
    body: Value,
}

impl Answer {
    async fn of(request: RequestBuilder) -> Answer {
        let response = request.send().await.expect("send");
        let status = response.status();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("a JSON body")
        };
        Answer {
            status,
            request_id,
            body,
        }
    }

    /// `status code`, or the status alone for a body without an error.
    fn label(&self) -> String {
        match self.body["error"]["code"].as_str() {
            Some(code) => format!("{} {code}", self.status.as_u16()),
            None => self.status.as_u16().to_string(),
        }
    }

    /// A 403 with exactly the documented error body: `code`, `message` and
    /// the request's id (no `param`).
    fn assert_forbidden(&self, code: &str, message: &str) {
        assert_eq!(self.status, StatusCode::FORBIDDEN, "{}", self.body);
        assert_eq!(fields(&self.body), ["error"]);
        assert_eq!(
            self.body["error"],
            json!({"code": code, "message": message, "request_id": self.request_id}),
        );
        assert_eq!(
            fields(&self.body["error"]),
            ["code", "message", "request_id"]
        );
        assert!(self.request_id.starts_with("req_"), "{}", self.request_id);
    }

    /// A 400 `code` naming `param`.
    fn assert_bad(&self, code: &str, param: &str, what: &str) {
        assert_eq!(
            self.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            self.body
        );
        assert_eq!(self.body["error"]["code"], code, "{what}: {}", self.body);
        assert_eq!(self.body["error"]["param"], param, "{what}: {}", self.body);
    }
}

/// The server (with one tenant "Acme") and a client for it.
struct Service {
    base: String,
    client: Client,
    served: Served,
}

impl Service {
    /// A server that trusts `trusted_proxies` (`""`: none), writing key
    /// uses every [`FLUSH_EVERY`].
    async fn start(trusted_proxies: &str) -> Service {
        let trusted_proxies = if trusted_proxies.is_empty() {
            TrustedProxies::none()
        } else {
            TrustedProxies::parse(trusted_proxies).expect("proxies")
        };
        let served = serve_with(&Settings {
            workers: Some(2),
            services: composition::Settings {
                flush_uses_every: FLUSH_EVERY,
                ..composition::Settings::default()
            },
            failure_limit: FailureLimitConfig {
                trusted_proxies,
                ..FailureLimitConfig::default()
            },
            ..Settings::default()
        })
        .await;
        Service {
            base: format!("http://{}", served.addr),
            client: Client::new(),
            served,
        }
    }

    async fn stop(self) {
        self.served.handle.stop(true).await;
    }

    fn tenant(&self) -> &str {
        &self.served.tenant.id
    }

    /// The tenant's live full-access secret key.
    fn admin(&self) -> &str {
        &self.served.tenant.live
    }

    /// A request with `key` for the tenant.
    fn request(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Tenant-ID", self.tenant())
    }

    /// `GET path` with `key`, sent with `headers`.
    async fn get(&self, path: &str, key: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.request(Method::GET, path, key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Answer::of(request).await
    }

    /// `POST /v1/api-keys` of `body` as the admin.
    async fn create(&self, body: &Value) -> Answer {
        Answer::of(
            self.request(Method::POST, "/v1/api-keys", self.admin())
                .json(body),
        )
        .await
    }

    /// A key created as the admin: the `201` body.
    async fn created(&self, body: &Value) -> Value {
        let created = self.create(body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        created.body
    }

    /// A secret key `name` with `allowed_ips`: its id and value.
    async fn secret_key(&self, name: &str, allowed_ips: &Value) -> (String, String) {
        let created = self
            .created(&json!({"name": name, "type": "secret", "allowed_ips": allowed_ips}))
            .await;
        (id_of(&created), key_of(&created))
    }

    /// `GET path` with `key`, once with each set of headers.
    async fn get_each(&self, path: &str, key: &str, each: &[&[(&str, &str)]]) -> Vec<Answer> {
        let mut answers = Vec::new();
        for headers in each {
            answers.push(self.get(path, key, headers).await);
        }
        answers
    }

    /// `PATCH /v1/api-keys/{id}` of `body` as the admin.
    async fn patch(&self, id: &str, body: &Value) -> Answer {
        Answer::of(
            self.request(Method::PATCH, &format!("/v1/api-keys/{id}"), self.admin())
                .json(body),
        )
        .await
    }

    /// `GET /v1/api-keys/{id}` as the admin: the key object.
    async fn key(&self, id: &str) -> Value {
        let read = self
            .get(&format!("/v1/api-keys/{id}"), self.admin(), &[])
            .await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.body);
        assert_eq!(fields(&read.body), key_fields());
        read.body
    }

    /// Every key the admin sees, revoked ones included, without
    /// `last_used_at` (the admin's own is written as it goes).
    async fn all_keys(&self) -> Vec<Value> {
        let listed = self
            .get("/v1/api-keys?revoked=true&limit=100", self.admin(), &[])
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        assert_eq!(listed.body["has_more"], false);
        listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(without_last_use)
            .collect()
    }

    /// The tenant's events (`GET /v1/audit-events{query}` as the admin).
    async fn events(&self, query: &str) -> Vec<Value> {
        let listed = self
            .get(&format!("/v1/audit-events{query}"), self.admin(), &[])
            .await;
        assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
        listed.body["data"].as_array().unwrap().clone()
    }

    /// `POST /v1/api-keys/verify` of `body` (no `Authorization`), sent with
    /// `headers`.
    async fn verify(&self, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut request = self
            .client
            .post(format!("{}/v1/api-keys/verify", self.base))
            .header("X-Tenant-ID", self.tenant())
            .json(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let answer = Answer::of(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        answer
    }

    /// Waits until key `id` has a `last_used_at` (its use was written).
    async fn until_use_written(&self, id: &str) {
        let started = Instant::now();
        while self.key(id).await["last_used_at"].is_null() {
            assert!(
                started.elapsed() < USE_WRITTEN_WITHIN,
                "the use of {id} was never written"
            );
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn id_of(created: &Value) -> String {
    created["id"].as_str().unwrap().to_owned()
}

fn key_of(created: &Value) -> String {
    created["key"].as_str().unwrap().to_owned()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

/// A key object without `last_used_at`, which a verification may set at
/// any time.
fn without_last_use(key: &Value) -> Value {
    let mut key = key.clone();
    key.as_object_mut().unwrap().remove("last_used_at");
    key
}

#[actix_web::test]
async fn without_trusted_proxies_x_forwarded_for_is_ignored() {
    let service = Service::start("").await;

    // A key pinned to a /24 that 127.0.0.1 is outside of: claiming to be
    // inside it with `X-Forwarded-For` changes nothing.
    let (_, elsewhere) = service
        .secret_key("Pinned elsewhere", &json!(["203.0.113.0/24"]))
        .await;
    let claims: [&[(&str, &str)]; 3] = [
        &[],
        &[("X-Forwarded-For", "203.0.113.7")],
        &[("X-Forwarded-For", "198.51.100.9, 203.0.113.7")],
    ];
    for refused in service.get_each("/v1/api-keys", &elsewhere, &claims).await {
        refused.assert_forbidden("ip_not_allowed", IP_MESSAGE);
    }

    // A key pinned to 127.0.0.1 works from there, whatever
    // `X-Forwarded-For` names.
    let (here_id, here) = service
        .secret_key("Pinned here", &json!(["127.0.0.1"]))
        .await;
    assert_eq!(
        service.key(&here_id).await["allowed_ips"],
        json!(["127.0.0.1/32"])
    );
    let claims: [&[(&str, &str)]; 3] = [
        &[],
        &[("X-Forwarded-For", "198.51.100.9")],
        &[("X-Forwarded-For", "203.0.113.7, 198.51.100.9")],
    ];
    let allowed = service.get_each("/v1/api-keys", &here, &claims).await;
    assert_eq!(
        allowed.iter().map(Answer::label).collect::<Vec<_>>(),
        ["200", "200", "200"]
    );
    service.stop().await;
}

#[actix_web::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_judged_and_a_refusal_changes_nothing() {
    let service = Service::start("127.0.0.1").await;
    let the_24 = json!(["203.0.113.0/24"]);
    let (pinned_id, pinned) = service.secret_key("Pinned", &the_24).await;
    // A key that is only verified, from outside its /24.
    let (verified_id, verified) = service.secret_key("Verified", &the_24).await;
    // An unrestricted key, used below to see when a use was written.
    let (witness_id, witness) = service.secret_key("Witness", &Value::Null).await;
    let keys_before = service.all_keys().await;
    let events_before = service.events("").await;
    let pinned_before = service.key(&pinned_id).await;
    assert_eq!(pinned_before["last_used_at"], Value::Null);

    // From 198.51.100.9 (the entry the trusted proxy added, the rightmost;
    // what a client wrote to its left does not count), or from the proxy
    // itself: every route refuses the key, reads and writes alike.
    let outside = [
        vec![("X-Forwarded-For", "198.51.100.9")],
        vec![("X-Forwarded-For", "203.0.113.7, 198.51.100.9")],
        vec![],
    ];
    for headers in &outside {
        let sent = |request: RequestBuilder| {
            headers.iter().fold(request, |request, (name, value)| {
                request.header(*name, *value)
            })
        };
        let attempts = [
            sent(service.request(Method::GET, "/v1/api-keys", &pinned)),
            sent(service.request(Method::GET, "/v1/audit-events", &pinned)),
            sent(
                service
                    .request(Method::PATCH, &format!("/v1/api-keys/{pinned_id}"), &pinned)
                    .json(&json!({"name": "Renamed", "allowed_ips": null})),
            ),
            sent(
                service
                    .request(Method::POST, "/v1/api-keys", &pinned)
                    .json(&json!({"name": "Made by the pinned key", "type": "secret"})),
            ),
            sent(service.request(
                Method::DELETE,
                &format!("/v1/api-keys/{witness_id}"),
                &pinned,
            )),
            sent(
                service
                    .request(Method::POST, "/v1/api-keys/rotate", &pinned)
                    .json(&json!({"id": pinned_id})),
            ),
        ];
        for attempt in attempts {
            Answer::of(attempt)
                .await
                .assert_forbidden("ip_not_allowed", IP_MESSAGE);
        }
    }

    for body in [
        json!({"key": verified, "ip": "198.51.100.9"}),
        json!({"key": verified}),
    ] {
        let verdict = service
            .verify(&body, &[("X-Forwarded-For", "203.0.113.7")])
            .await;
        assert_eq!(
            verdict.body,
            json!({"valid": false, "code": "ip_not_allowed"})
        );
    }

    // Nothing changed: the same keys (the pinned one not renamed, not
    // lifted; the witness not revoked), no event, ...
    assert_eq!(service.all_keys().await, keys_before);
    assert_eq!(
        without_last_use(&service.key(&pinned_id).await),
        without_last_use(&pinned_before)
    );
    assert_eq!(service.events("").await, events_before);
    // ... and no use written (docs/api.md, "Last use": on successful
    // authentication, of which the restrictions are step 6; verify: only
    // `valid` and `insufficient_scope` count as a use): the witness's use,
    // made after the refusals, is written, while the refused keys still
    // have none.
    let used = service
        .get(
            "/v1/api-keys",
            &witness,
            &[("X-Forwarded-For", "198.51.100.9")],
        )
        .await;
    assert_eq!(used.label(), "200");
    service.until_use_written(&witness_id).await;
    assert_eq!(
        (
            service.key(&pinned_id).await["last_used_at"].clone(),
            service.key(&verified_id).await["last_used_at"].clone()
        ),
        (Value::Null, Value::Null),
        "the last use of the key refused on routes, and of the key refused by verify"
    );

    // From inside the /24 (as the trusted proxy reports it), it works, and
    // that use is written.
    for forwarded in [
        "203.0.113.7",
        "198.51.100.9, 203.0.113.7",
        "203.0.113.200, 127.0.0.1",
    ] {
        let allowed = service
            .get("/v1/api-keys", &pinned, &[("X-Forwarded-For", forwarded)])
            .await;
        assert_eq!(allowed.label(), "200", "{forwarded}: {}", allowed.body);
    }
    service.until_use_written(&pinned_id).await;
    service.stop().await;
}

#[actix_web::test]
async fn the_worked_example_of_restricting_a_key() {
    // The server behind a trusted proxy, so that a request can come "from
    // 198.51.100.9".
    let service = Service::start("127.0.0.1").await;
    let tenant = service.tenant().to_owned();

    // Pin a secret key to one /24, and a publishable key to the subdomains
    // of example.com.
    let secret = service
        .create(
            &json!({"name": "Billing backend", "type": "secret", "scopes": ["users:read"],
            "allowed_ips": ["203.0.113.0/24"], "metadata": {"team": "billing"}}),
        )
        .await;
    assert_eq!(secret.status, StatusCode::CREATED, "{}", secret.body);
    assert_eq!(fields(&secret.body), created_fields());
    assert_eq!(secret.body["name"], "Billing backend");
    assert_eq!(secret.body["type"], "secret");
    assert!(key_of(&secret.body).starts_with("sk_live_"));
    let publishable = service
        .create(
            &json!({"name": "Web app", "type": "publishable", "scopes": ["users:read"],
            "allowed_origins": ["https://*.example.com"]}),
        )
        .await;
    assert_eq!(
        publishable.status,
        StatusCode::CREATED,
        "{}",
        publishable.body
    );
    assert_eq!(fields(&publishable.body), created_fields());
    assert_eq!(publishable.body["name"], "Web app");
    assert_eq!(publishable.body["type"], "publishable");
    assert!(key_of(&publishable.body).starts_with("pk_live_"));
    let (sid, sk) = (id_of(&secret.body), key_of(&secret.body));
    let (pid, pk) = (id_of(&publishable.body), key_of(&publishable.body));

    // The key objects show the restrictions.
    let secret_object = service.key(&sid).await;
    assert_eq!(secret_object["allowed_ips"], json!(["203.0.113.0/24"]));
    assert_eq!(secret_object["allowed_origins"], Value::Null);
    assert_eq!(secret_object["metadata"], json!({"team": "billing"}));
    let publishable_object = service.key(&pid).await;
    assert_eq!(publishable_object["allowed_ips"], Value::Null);
    assert_eq!(
        publishable_object["allowed_origins"],
        json!(["https://*.example.com"])
    );
    assert_eq!(publishable_object["metadata"], json!({}));

    // The secret key used from another address: 403 ip_not_allowed; from
    // inside its /24 it is past the restriction, and its scopes decide
    // (`users:read` does not read the audit log).
    service
        .get(
            "/v1/audit-events",
            &sk,
            &[("X-Forwarded-For", "198.51.100.9")],
        )
        .await
        .assert_forbidden("ip_not_allowed", IP_MESSAGE);
    assert_eq!(
        service
            .get(
                "/v1/audit-events",
                &sk,
                &[("X-Forwarded-For", "203.0.113.7")]
            )
            .await
            .label(),
        "403 insufficient_scope"
    );

    // The publishable key from a page of another site, or with no `Origin`:
    // 403 origin_not_allowed. A matching origin is past the restriction, and
    // a publishable key never reads the audit log: 403 secret_key_required.
    for headers in [
        &[("Origin", "https://evil.example.net")][..],
        &[][..],
        // The wildcard is for subdomains, not the domain itself; scheme and
        // port must match.
        &[("Origin", "https://example.com")][..],
        &[("Origin", "http://app.example.com")][..],
        &[("Origin", "https://app.example.com:8443")][..],
        &[("Referer", "https://evil.example.net/pay?to=me")][..],
        // `Origin` is judged when sent; the `Referer` only without it.
        &[
            ("Origin", "https://evil.example.net"),
            ("Referer", "https://app.example.com/billing"),
        ][..],
    ] {
        let refused = service.get("/v1/audit-events", &pk, headers).await;
        assert_eq!(refused.label(), "403 origin_not_allowed", "{headers:?}");
        refused.assert_forbidden("origin_not_allowed", ORIGIN_MESSAGE);
    }
    for headers in [
        &[("Origin", "https://app.example.com")][..],
        &[("Origin", "https://a.b.example.com")][..],
        &[("Referer", "https://app.example.com/billing?tab=invoices")][..],
    ] {
        let passed = service.get("/v1/audit-events", &pk, headers).await;
        assert_eq!(passed.label(), "403 secret_key_required", "{headers:?}");
    }

    // A service that verifies keys passes its own client's address and
    // origin; without them a restricted key is not valid.
    let verified = service
        .verify(&json!({"key": sk, "ip": "203.0.113.7"}), &[])
        .await;
    assert_eq!(fields(&verified.body), ["valid", "code", "key"]);
    assert_eq!(fields(&verified.body["key"]), verified_key_fields());
    assert_eq!(
        verified.body,
        json!({"valid": true, "code": "valid", "key": {"id": sid, "tenant_id": tenant,
            "name": "Billing backend", "type": "secret", "mode": "live",
            "scopes": ["users:read"], "expires_at": null, "revokes_at": null,
            "rate_limit": null, "credits": null, "allowed_ips": ["203.0.113.0/24"],
            "allowed_origins": null, "metadata": {"team": "billing"}}})
    );
    let not_valid = json!({"valid": false, "code": "ip_not_allowed"});
    assert_eq!(
        service.verify(&json!({"key": sk}), &[]).await.body,
        not_valid
    );
    assert_eq!(
        service
            .verify(&json!({"key": sk, "ip": "198.51.100.9"}), &[])
            .await
            .body,
        not_valid
    );
    // Verify judges `ip`, not the address the verification came from.
    assert_eq!(
        service
            .verify(&json!({"key": sk}), &[("X-Forwarded-For", "203.0.113.7")])
            .await
            .body,
        not_valid
    );
    let not_valid = json!({"valid": false, "code": "origin_not_allowed"});
    for body in [
        json!({"key": pk, "origin": "https://example.com"}),
        json!({"key": pk}),
        json!({"key": pk, "origin": "https://evil.example.net"}),
    ] {
        assert_eq!(service.verify(&body, &[]).await.body, not_valid, "{body}");
    }
    let verified = service
        .verify(
            &json!({"key": pk, "origin": "https://app.example.com"}),
            &[],
        )
        .await;
    assert_eq!(
        verified.body,
        json!({"valid": true, "code": "valid", "key": {"id": pid, "tenant_id": tenant,
            "name": "Web app", "type": "publishable", "mode": "live",
            "scopes": ["users:read"], "expires_at": null, "revokes_at": null,
            "rate_limit": null, "credits": null, "allowed_ips": null,
            "allowed_origins": ["https://*.example.com"], "metadata": {}}})
    );

    // Lift a restriction with `null`, change metadata by merging.
    let patched = service
        .patch(
            &sid,
            &json!({"allowed_ips": null, "metadata": {"team": null, "owner": "ops"}}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(fields(&patched.body), key_fields());
    assert_eq!(patched.body["allowed_ips"], Value::Null);
    assert_eq!(patched.body["allowed_origins"], Value::Null);
    assert_eq!(patched.body["metadata"], json!({"owner": "ops"}));
    let mut expected = without_last_use(&secret_object);
    expected["allowed_ips"] = Value::Null;
    expected["metadata"] = json!({"owner": "ops"});
    assert_eq!(without_last_use(&patched.body), expected);
    assert_eq!(without_last_use(&service.key(&sid).await), expected);
    // The key works from anywhere now.
    assert_eq!(
        service
            .get(
                "/v1/audit-events",
                &sk,
                &[("X-Forwarded-For", "198.51.100.9")]
            )
            .await
            .label(),
        "403 insufficient_scope"
    );
    let verified = service.verify(&json!({"key": sk}), &[]).await;
    assert_eq!(verified.body["code"], "valid");
    assert_eq!(verified.body["key"]["allowed_ips"], Value::Null);
    assert_eq!(verified.body["key"]["metadata"], json!({"owner": "ops"}));

    // The change is in the audit log, with the old and new values of the
    // fields that changed (metadata in full; docs/api.md, "Key events and
    // the audit log", `api_key.updated`), by the admin's key; the refusals
    // wrote nothing.
    let admin_id = service
        .all_keys()
        .await
        .into_iter()
        .find(|key| service.admin().starts_with(key["prefix"].as_str().unwrap()))
        .map(|key| id_of(&key))
        .unwrap();
    // (Both events carry the test clock's one instant: ids of one
    // millisecond do not order them, so the types are compared as a set.)
    let mut all = types(&service.events(&format!("?key_id={sid}")).await)
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    all.sort_unstable();
    assert_eq!(all, ["api_key.created", "api_key.updated"]);
    let events = service
        .events(&format!("?key_id={sid}&type=api_key.updated"))
        .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let updated = &events[0];
    assert_eq!(
        updated["actor"],
        json!({"type": "api_key", "key_id": admin_id})
    );
    assert_eq!(
        updated["data"],
        json!({"changes": {
            "allowed_ips": {"old": ["203.0.113.0/24"], "new": null},
            "metadata": {"old": {"team": "billing"}, "new": {"owner": "ops"}}}})
    );
    assert_eq!(
        types(&service.events(&format!("?key_id={pid}")).await),
        ["api_key.created"]
    );
    service.stop().await;
}

/// `count` distinct /32 blocks.
fn blocks(count: u32) -> Value {
    (0..count)
        .map(|i| Value::from(format!("10.0.{}.{}/32", i / 256, i % 256)))
        .collect()
}

/// `count` distinct origins.
fn origins(count: u32) -> Value {
    (0..count)
        .map(|i| Value::from(format!("https://app{i}.example.com")))
        .collect()
}

/// Metadata of `count` entries `k0`, `k1`, ...
fn entries(count: u32) -> Value {
    let map: Map<String, Value> = (0..count)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    Value::Object(map)
}

/// Bodies that create and PATCH refuse with 400 `invalid_parameter`, each
/// with the field it names (`type` is added for create).
fn refused_fields(api_key: &str) -> Vec<(&'static str, Value)> {
    vec![
        ("allowed_ips", json!({"allowed_ips": blocks(101)})),
        ("allowed_ips", json!({"allowed_ips": []})),
        ("allowed_ips", json!({"allowed_ips": ["203.0.113.0/33"]})),
        ("allowed_ips", json!({"allowed_ips": ["203.0.113.256"]})),
        ("allowed_ips", json!({"allowed_ips": ["not an address"]})),
        ("allowed_ips", json!({"allowed_ips": "203.0.113.0/24"})),
        ("metadata", json!({"metadata": entries(21)})),
        ("metadata", json!({"metadata": {"team name": "billing"}})),
        ("metadata", json!({"metadata": {"team/name": "billing"}})),
        ("metadata", json!({"metadata": {"": "billing"}})),
        ("metadata", json!({"metadata": {"k".repeat(41): "billing"}})),
        ("metadata", json!({"metadata": {"team": "v".repeat(501)}})),
        ("metadata", json!({"metadata": {"team": 5}})),
        ("metadata", json!({"metadata": ["team"]})),
        ("metadata", json!({"metadata": {"leak": api_key}})),
        // PostgreSQL's JSON cannot hold NUL: refused, not a storage failure.
        ("metadata", json!({"metadata": {"note": "a\u{0}b"}})),
        // A key, or its part after the prefix, is never repeated in the
        // refusal (checked where these are sent).
        ("allowed_ips", json!({"allowed_ips": [api_key]})),
        ("metadata", json!({"metadata": {&api_key[8..]: "x"}})),
    ]
}

/// Bodies about origins refused with 400 `invalid_parameter`
/// (`allowed_origins`) for a publishable key.
fn refused_origins() -> Vec<Value> {
    vec![
        json!({"allowed_origins": origins(51)}),
        json!({"allowed_origins": []}),
        json!({"allowed_origins": ["app.example.com"]}),
        json!({"allowed_origins": ["https://app.example.com/path"]}),
        json!({"allowed_origins": ["https://app.example.com:99999"]}),
    ]
}

/// `answer` holds no part of `api_key` that identifies it (docs/api.md,
/// "Secrets").
fn assert_no_key(answer: &Answer, api_key: &str) {
    let text = answer.body.to_string();
    assert!(!text.contains(&api_key[8..]), "the key repeated: {text}");
}

/// `base` with `extra`'s fields added.
fn with(base: &Value, extra: &Value) -> Value {
    let mut body = base.clone();
    for (name, value) in extra.as_object().unwrap() {
        body[name] = value.clone();
    }
    body
}

#[actix_web::test]
async fn restrictions_and_metadata_are_validated_at_create_and_patch() {
    let service = Service::start("").await;
    let admin = service.admin().to_owned();
    let secret = json!({"name": "Checked", "type": "secret"});
    let publishable = json!({"name": "Checked", "type": "publishable"});
    let keys_before = service.all_keys().await;

    // Create: each refusal names its field and creates nothing.
    let mut create_cases = vec![(
        "allowed_origins",
        with(
            &secret,
            &json!({"allowed_origins": ["https://app.example.com"]}),
        ),
    )];
    for (param, extra) in refused_fields(&admin) {
        create_cases.push((param, with(&secret, &extra)));
    }
    for extra in refused_origins() {
        create_cases.push(("allowed_origins", with(&publishable, &extra)));
    }
    for (param, body) in &create_cases {
        let refused = service.create(body).await;
        refused.assert_bad("invalid_parameter", param, &body.to_string());
        assert_no_key(&refused, &admin);
    }
    assert_eq!(service.all_keys().await, keys_before);

    // The bounds themselves are accepted, and what is given reads back
    // normalized.
    let at_bounds = service
        .created(&with(
            &publishable,
            &json!({"allowed_ips": blocks(100), "allowed_origins": origins(50),
                "metadata": {"k".repeat(40): "v".repeat(500), "a.b_c-D9": ""}}),
        ))
        .await;
    let at_bounds = service.key(&id_of(&at_bounds)).await;
    assert_eq!(at_bounds["allowed_ips"], blocks(100));
    assert_eq!(at_bounds["allowed_origins"], origins(50));
    assert_eq!(
        at_bounds["metadata"],
        json!({"k".repeat(40): "v".repeat(500), "a.b_c-D9": ""})
    );
    let normalized = service
        .created(&with(
            &publishable,
            &json!({"allowed_ips": ["203.0.113.7/24", "::ffff:203.0.113.0/120",
                    "203.0.113.0/24", "198.51.100.9", "2001:db8::1", "2001:db8:1::/48"],
                "allowed_origins": ["https://App.example.com:443", "https://app.example.com",
                    "http://*.Example.com:8080"]}),
        ))
        .await;
    let normalized = service.key(&id_of(&normalized)).await;
    // (Listed in no documented order: compared as sets, duplicates gone.)
    let sorted = |value: &Value| -> Vec<String> {
        let mut list: Vec<String> = value
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        list.sort_unstable();
        list
    };
    assert_eq!(
        sorted(&normalized["allowed_ips"]),
        [
            "198.51.100.9/32",
            "2001:db8:1::/48",
            "2001:db8::1/128",
            "203.0.113.0/24"
        ]
    );
    assert_eq!(
        sorted(&normalized["allowed_origins"]),
        ["http://*.example.com:8080", "https://app.example.com"]
    );

    // PATCH: each refusal names its field and changes nothing.
    let secret_id = id_of(
        &service
            .created(&with(&secret, &json!({"metadata": entries(19)})))
            .await,
    );
    let publishable_id = id_of(&service.created(&publishable).await);
    let mut patch_cases = vec![(
        secret_id.clone(),
        "allowed_origins",
        json!({"allowed_origins": ["https://app.example.com"]}),
    )];
    for (param, body) in refused_fields(&admin) {
        patch_cases.push((secret_id.clone(), param, body));
    }
    for body in refused_origins() {
        patch_cases.push((publishable_id.clone(), "allowed_origins", body));
    }
    // More than 20 entries after the merge (19 + 2 new).
    patch_cases.push((
        secret_id.clone(),
        "metadata",
        json!({"metadata": {"new1": "x", "new2": "y"}}),
    ));
    let secret_before = service.key(&secret_id).await;
    let publishable_before = service.key(&publishable_id).await;
    let events_before = service.events("").await;
    for (id, param, body) in &patch_cases {
        let refused = service.patch(id, body).await;
        refused.assert_bad("invalid_parameter", param, &body.to_string());
        assert_no_key(&refused, &admin);
    }
    assert_eq!(service.key(&secret_id).await, secret_before);
    assert_eq!(service.key(&publishable_id).await, publishable_before);
    assert_eq!(service.events("").await, events_before);

    // A merge that ends at 20 entries (19 + 2 new - 1 removed) is taken.
    let merged = service
        .patch(
            &secret_id,
            &json!({"metadata": {"new1": "x", "new2": "y", "k0": null}}),
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK, "{}", merged.body);
    let mut expected = entries(19);
    expected.as_object_mut().unwrap().remove("k0");
    expected["new1"] = json!("x");
    expected["new2"] = json!("y");
    assert_eq!(merged.body["metadata"], expected);
    assert_eq!(service.key(&secret_id).await["metadata"], expected);
    service.stop().await;
}
