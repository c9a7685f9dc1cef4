//! Webhooks end to end (docs/webhooks.md): real nodes on a fresh database,
//! a real receiver on a local port, signatures checked with the
//! `standardwebhooks` crate (not our signer), time moved with the injected
//! clock (never slept through).
//!
//! Nothing sleeps a fixed time and then asserts: each wait polls every 10 ms
//! up to a deadline.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test: a failed step is a failed test"
)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse, HttpServer};
use apikeys::application::Settings;
use common::{create_tenant, hash_key, Node};
use domain::testing::TestClock;
use domain::{AllowHosts, Clock};
use infra_postgres::testing::TestDatabase;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

/// A wait fails after this long.
const GIVE_UP: Duration = Duration::from_secs(15);

// ------------------------------------------------------------- receiver

/// What the receiver answers next.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    /// Never answers (the connection is dropped by the sender).
    Hang,
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Checks the signature with the Standard Webhooks library.
    fn verify(&self, secret: &str) -> Result<(), standardwebhooks::WebhookError> {
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        standardwebhooks::Webhook::new(secret)?.verify(&self.body, &headers)
    }
}

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
}

/// A receiver on `127.0.0.1:<port>`: records every request, answers from
/// its script (then 200).
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    state.got.lock().unwrap().push(Received {
        path: req.path().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    });
    let reply = state.script.lock().unwrap().pop_front();
    match reply.unwrap_or(Reply::Status(200)) {
        Reply::Status(status) => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .insert_header(("location", "http://127.0.0.1:9/elsewhere"))
                .finish()
        }
        Reply::Hang => {
            actix_web::rt::time::sleep(Duration::from_secs(120)).await;
            HttpResponse::Ok().finish()
        }
    }
}

impl Receiver {
    fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            actix_web::App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        Receiver { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.addr.port())
    }

    fn script(&self, replies: &[Reply]) {
        self.state.script.lock().unwrap().extend(replies);
    }

    fn got(&self) -> Vec<Received> {
        self.state.got.lock().unwrap().clone()
    }

    fn got_on(&self, path: &str) -> Vec<Received> {
        self.got().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `n` requests arrived on `path`.
    async fn wait_for(&self, path: &str, n: usize) -> Vec<Received> {
        wait_until(&format!("{n} requests on {path}"), || {
            let got = self.got_on(path);
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < GIVE_UP, "gave up waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- nodes

fn settings(deliver: bool) -> Settings {
    Settings {
        workers: Some(2),
        services: composition::Settings {
            webhooks: composition::WebhookSettings {
                allow_hosts: AllowHosts::new(["127.0.0.1"]),
                deliver,
                poll_every: Duration::from_millis(20),
                expiry_every: Duration::from_millis(50),
                ..composition::WebhookSettings::default()
            },
            ..composition::Settings::default()
        },
        ..Settings::default()
    }
}

/// A database with tenant "Acme", a shared injected clock, and a client.
struct World {
    db: TestDatabase,
    clock: TestClock,
    client: Client,
    tenant: String,
    live: String,
    test: String,
}

impl World {
    fn new() -> World {
        let db = TestDatabase::new();
        let clock = TestClock::default();
        let tenant = create_tenant(&db.store(), &clock, "Acme");
        World {
            db,
            clock,
            client: Client::new(),
            tenant: tenant.id,
            live: tenant.live,
            test: tenant.test,
        }
    }

    fn node(&self, deliver: bool) -> Node {
        Node::start(&self.db.store(), self.clock.clone(), &settings(deliver))
    }

    async fn call(
        &self,
        node: &Node,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", node.base))
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Tenant-ID", &self.tenant);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_endpoint(&self, node: &Node, url: &str, events: Value) -> Value {
        let (status, body) = self
            .call(
                node,
                &self.live,
                Method::POST,
                "/v1/webhook-endpoints",
                Some(json!({"url": url, "events": events})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn create_key(&self, node: &Node, body: Value) -> Value {
        let (status, body) = self
            .call(node, &self.live, Method::POST, "/v1/api-keys", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn deliveries(&self, node: &Node, endpoint: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                node,
                &self.live,
                Method::GET,
                &format!("/v1/webhook-endpoints/{endpoint}/deliveries"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    }

    fn psql(&self, sql: &str) -> String {
        let out = std::process::Command::new("psql")
            .args([self.db.url(), "-Atc", sql])
            .output()
            .expect("psql (apt-get install postgresql-client)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

// ---------------------------------------------------------------- tests

#[actix_web::test]
async fn endpoints_are_managed_per_mode_with_a_secret_shown_once() {
    let world = World::new();
    let node = world.node(false);
    let created = world
        .create_endpoint(
            &node,
            "https://hooks.example.com/apikeys",
            json!(["api_key.revoked", "api_key.created"]),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whe_") && id.len() == 30, "{id}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 44,
        "{secret}"
    );
    assert_eq!(
        created["events"],
        json!(["api_key.created", "api_key.revoked"])
    );
    assert_eq!(created["enabled"], json!(true));
    assert_eq!(created["description"], Value::Null);

    // Shown once: never in a read.
    let (status, got) = world
        .call(
            &node,
            &world.live,
            Method::GET,
            &format!("/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("secret").is_none());
    let (_, list) = world
        .call(
            &node,
            &world.live,
            Method::GET,
            "/v1/webhook-endpoints",
            None,
        )
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["has_more"], json!(false));

    // A test key sees no live endpoint, and its own are test endpoints.
    let (status, body) = world
        .call(
            &node,
            &world.test,
            Method::GET,
            &format!("/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "webhook_endpoint_not_found");
    let (_, list) = world
        .call(
            &node,
            &world.test,
            Method::GET,
            "/v1/webhook-endpoints",
            None,
        )
        .await;
    assert_eq!(list["data"], json!([]));

    // PATCH.
    let (status, patched) = world
        .call(
            &node,
            &world.live,
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{id}"),
            Some(json!({"events": ["*"], "description": "chat alerts", "enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["events"], json!(["*"]));
    assert_eq!(patched["description"], "chat alerts");
    assert_eq!(patched["enabled"], json!(false));
    let (status, body) = world
        .call(
            &node,
            &world.live,
            Method::PATCH,
            &format!("/v1/webhook-endpoints/{id}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("missing_parameter"))
    );

    // Rotation: a new secret, shown once.
    let (status, rotated) = world
        .call(
            &node,
            &world.live,
            Method::POST,
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);

    // URL rules.
    for (url, why) in [
        ("http://hooks.example.com/", "https"),
        // 127.0.0.1 is allowed in these tests; 127.0.0.2 is not.
        ("https://127.0.0.2/", "loopback"),
        ("https://10.0.0.8/", "private"),
        ("https://169.254.169.254/", "link-local"),
        ("https://[ff02::1]/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
        ("ftp://hooks.example.com/", "https"),
    ] {
        let (status, body) = world
            .call(
                &node,
                &world.live,
                Method::POST,
                "/v1/webhook-endpoints",
                Some(json!({"url": url, "events": ["*"]})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}");
        assert_eq!(body["error"]["param"], "url", "{url}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{url}: {body}"
        );
    }
    let (status, body) = world
        .call(
            &node,
            &world.live,
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://a.example/", "events": ["api_key.nope"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("events"))
    );

    // Scopes: webhooks:read reads, cannot write.
    let reader = world
        .create_key(
            &node,
            json!({"name": "reader", "type": "secret", "scopes": ["webhooks:read"]}),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = world
        .call(&node, &reader, Method::GET, "/v1/webhook-endpoints", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = world
        .call(
            &node,
            &reader,
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://a.example/", "events": ["*"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("insufficient_scope"))
    );

    // At most 20 per tenant and mode.
    for _ in 1..20 {
        world
            .create_endpoint(&node, "https://hooks.example.com/", json!(["*"]))
            .await;
    }
    let (status, body) = world
        .call(
            &node,
            &world.live,
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://a.example/", "events": ["*"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("webhook_endpoint_limit_reached"))
    );
    let (status, _) = world
        .call(
            &node,
            &world.test,
            Method::POST,
            "/v1/webhook-endpoints",
            Some(json!({"url": "https://a.example/", "events": ["*"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "the test mode has its own 20");
    let (_, page) = world
        .call(
            &node,
            &world.live,
            Method::GET,
            "/v1/webhook-endpoints?limit=15",
            None,
        )
        .await;
    assert_eq!(
        (page["data"].as_array().unwrap().len(), &page["has_more"]),
        (15, &json!(true))
    );

    // DELETE.
    let (status, _) = world
        .call(
            &node,
            &world.live,
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = world
        .call(
            &node,
            &world.live,
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // No secret at rest: not in any column, not in a dump.
    let dump = std::process::Command::new("pg_dump")
        .arg(world.db.url())
        .output()
        .expect("pg_dump (apt-get install postgresql-client)");
    assert!(dump.status.success());
    let dump = String::from_utf8_lossy(&dump.stdout);
    for s in [&secret, new_secret] {
        let b64 = s.trim_start_matches("whsec_");
        assert!(!dump.contains(b64), "a secret in the dump");
        let bytes = base64_decode(b64);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!dump.contains(&hex), "a secret's bytes in the dump");
    }
    node.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[actix_web::test]
async fn every_key_event_type_arrives_signed() {
    let world = World::new();
    let receiver = Receiver::start();
    let node = world.node(true);
    let endpoint = world
        .create_endpoint(&node, &receiver.url("/all"), json!(["*"]))
        .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();

    let key = world
        .create_key(&node, json!({"name": "ci", "type": "secret"}))
        .await;
    let id = key["id"].as_str().unwrap().to_owned();
    let (status, _) = world
        .call(
            &node,
            &world.live,
            Method::PATCH,
            &format!("/v1/api-keys/{id}"),
            Some(json!({"name": "ci-2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = world
        .call(
            &node,
            &world.live,
            Method::POST,
            "/v1/api-keys/rotate",
            Some(json!({"id": id, "grace_period": "0s"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let successor = body["id"].as_str().unwrap().to_owned();
    let (status, _) = world
        .call(
            &node,
            &world.live,
            Method::DELETE,
            &format!("/v1/api-keys/{successor}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Expiry: 8 days to live, so a warning after 1 day, then the expiry.
    let expiring = world
        .create_key(
            &node,
            json!({"name": "temp", "type": "secret", "expires_in": "8d"}),
        )
        .await;
    receiver.wait_for("/all", 6).await;
    world
        .clock
        .advance(time::Duration::days(1) + time::Duration::seconds(1));
    receiver.wait_for("/all", 7).await;
    world.clock.advance(time::Duration::days(7));
    let got = receiver.wait_for("/all", 8).await;

    let mut types: Vec<String> = Vec::new();
    for r in &got {
        r.verify(&secret)
            .expect("a valid Standard Webhooks signature");
        let event = r.json();
        assert_eq!(r.header("webhook-id"), event["id"].as_str());
        assert_eq!(event["tenant_id"], world.tenant.as_str());
        assert_eq!(event["mode"], "live");
        types.push(event["type"].as_str().unwrap().to_owned());
    }
    types.sort();
    assert_eq!(
        types,
        [
            "api_key.created",
            "api_key.created",
            "api_key.created",
            "api_key.expired",
            "api_key.expiring",
            "api_key.revoked",
            "api_key.rotated",
            "api_key.updated",
        ]
    );
    let expiry: Vec<Value> = got
        .iter()
        .map(Received::json)
        .filter(|e| e["type"].as_str().unwrap().starts_with("api_key.expir"))
        .collect();
    for event in &expiry {
        assert_eq!(event["actor"], json!({"type": "system"}));
        assert_eq!(event["key_id"], expiring["id"]);
        assert_eq!(event["data"]["expires_at"], expiring["expires_at"]);
    }
    // In the audit log too, and each once.
    let (_, log) = world
        .call(
            &node,
            &world.live,
            Method::GET,
            &format!(
                "/v1/audit-events?key_id={}",
                expiring["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    let log_types: Vec<&str> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        log_types,
        ["api_key.expired", "api_key.expiring", "api_key.created"]
    );
    // A signature under another secret does not verify.
    assert!(got[0]
        .verify("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        .is_err());
    node.stop().await;
}

#[actix_web::test]
async fn a_key_created_with_less_than_7_days_gets_no_expiring_event() {
    let world = World::new();
    let node = world.node(true);
    let key = world
        .create_key(
            &node,
            json!({"name": "short", "type": "secret", "expires_in": "6d"}),
        )
        .await;
    let id = key["id"].as_str().unwrap().to_owned();
    world
        .clock
        .advance(time::Duration::days(6) + time::Duration::seconds(1));
    let types = wait_until("the expired event", || {
        let types = world.psql(&format!(
            "SELECT string_agg(type, ',' ORDER BY seq) FROM key_events WHERE key_id = '{id}'"
        ));
        types.contains("api_key.expired").then_some(types)
    })
    .await;
    assert_eq!(types, "api_key.created,api_key.expired");
    node.stop().await;
}

#[actix_web::test]
async fn a_failing_receiver_gets_n_plus_1_attempts_at_the_schedule() {
    let world = World::new();
    let receiver = Receiver::start();
    let node = world.node(true);
    let endpoint = world
        .create_endpoint(&node, &receiver.url("/flaky"), json!(["api_key.created"]))
        .await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    // Fails 3 times: 500, 302 (not followed), 503; then 200.
    receiver.script(&[Reply::Status(500), Reply::Status(302), Reply::Status(503)]);
    world
        .create_key(&node, json!({"name": "x", "type": "secret"}))
        .await;
    let waits = [
        time::Duration::seconds(5),
        time::Duration::minutes(5),
        time::Duration::minutes(30),
    ];
    for (n, wait) in waits.iter().enumerate() {
        receiver.wait_for("/flaky", n + 1).await;
        let d = loop {
            let d = world.deliveries(&node, &endpoint_id).await.remove(0);
            if d["attempts"] == json!(n + 1) {
                break d;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(d["status"], "pending");
        let now = world.clock.now();
        let due = time::OffsetDateTime::parse(
            d["next_attempt_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(due, now + *wait, "attempt {} is due {wait} later", n + 2);
        // Not before its time.
        assert_eq!(receiver.got_on("/flaky").len(), n + 1);
        world.clock.advance(*wait);
    }
    let got = receiver.wait_for("/flaky", 4).await;
    assert_eq!(got.len(), 4);
    let d = loop {
        let d = world.deliveries(&node, &endpoint_id).await.remove(0);
        if d["status"] == "delivered" {
            break d;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(d["attempts"], 4);
    assert_eq!(d["last_status"], 200);
    assert_eq!(d["next_attempt_at"], Value::Null);
    // Every attempt carried the same event id.
    let ids: std::collections::HashSet<_> = got
        .iter()
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    node.stop().await;
}

#[actix_web::test]
async fn two_nodes_deliver_each_event_once() {
    let world = World::new();
    let receiver = Receiver::start();
    let a = world.node(true);
    let b = world.node(true);
    let endpoint = world
        .create_endpoint(&a, &receiver.url("/both"), json!(["api_key.created"]))
        .await;
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        world
            .create_key(node, json!({"name": format!("k{i}"), "type": "secret"}))
            .await;
    }
    receiver.wait_for("/both", 20).await;
    wait_until("every delivery recorded", || {
        let delivered = world.psql(&format!("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = '{endpoint_id}' AND status = 'delivered'"));
        (delivered == "20").then_some(())
    })
    .await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in receiver.got_on("/both") {
        *per_id
            .entry(r.header("webhook-id").unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_id.len(), 20);
    assert!(per_id.values().all(|n| *n == 1), "{per_id:?}");
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn killing_the_delivering_node_midway_still_delivers() {
    let world = World::new();
    let receiver = Receiver::start();
    let a = world.node(true);
    let endpoint = world
        .create_endpoint(&a, &receiver.url("/kill"), json!(["api_key.created"]))
        .await;
    receiver.script(&[Reply::Hang]);
    let key = world
        .create_key(&a, json!({"name": "k", "type": "secret"}))
        .await;
    // A is attempting (the receiver holds the request): kill it.
    receiver.wait_for("/kill", 1).await;
    a.stop().await;
    let b = world.node(true);
    // B takes over once A's lease ran out.
    world.clock.advance(time::Duration::seconds(31));
    let got = receiver.wait_for("/kill", 2).await;
    let event = got[1].json();
    assert_eq!(event["key_id"], key["id"]);
    got[1]
        .verify(endpoint["secret"].as_str().unwrap())
        .expect("valid signature");
    b.stop().await;
}

#[actix_web::test]
async fn an_event_committed_while_every_node_is_down_is_delivered_after_start() {
    let world = World::new();
    let receiver = Receiver::start();
    let a = world.node(false);
    let endpoint = world
        .create_endpoint(&a, &receiver.url("/later"), json!(["api_key.created"]))
        .await;
    let key = world
        .create_key(&a, json!({"name": "k", "type": "secret"}))
        .await;
    a.stop().await;
    assert!(receiver.got_on("/later").is_empty());
    let b = world.node(true);
    let got = receiver.wait_for("/later", 1).await;
    assert_eq!(got[0].json()["key_id"], key["id"]);
    got[0]
        .verify(endpoint["secret"].as_str().unwrap())
        .expect("valid signature");
    b.stop().await;
}

#[actix_web::test]
async fn deleting_an_endpoint_stops_its_deliveries() {
    let world = World::new();
    let receiver = Receiver::start();
    let node = world.node(true);
    let doomed = world
        .create_endpoint(&node, &receiver.url("/doomed"), json!(["api_key.created"]))
        .await;
    receiver.script(&[Reply::Status(500)]);
    world
        .create_key(&node, json!({"name": "one", "type": "secret"}))
        .await;
    receiver.wait_for("/doomed", 1).await;
    wait_until("the failure recorded", || {
        let n = world.psql(
            "SELECT count(*) FROM webhook_deliveries WHERE attempts = 1 AND status = 'pending'",
        );
        (n == "1").then_some(())
    })
    .await;
    let (status, _) = world
        .call(
            &node,
            &world.live,
            Method::DELETE,
            &format!("/v1/webhook-endpoints/{}", doomed["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The retry would be due now; a new endpoint's delivery, due later,
    // arrives; the deleted one's never does.
    world.clock.advance(time::Duration::seconds(6));
    world
        .create_endpoint(&node, &receiver.url("/control"), json!(["api_key.created"]))
        .await;
    world
        .create_key(&node, json!({"name": "two", "type": "secret"}))
        .await;
    receiver.wait_for("/control", 1).await;
    assert_eq!(receiver.got_on("/doomed").len(), 1);
    assert_eq!(world.psql("SELECT count(*) FROM webhook_deliveries"), "1");
    node.stop().await;
}

#[actix_web::test]
async fn a_name_resolving_to_loopback_is_refused_at_each_attempt() {
    let world = World::new();
    let node = world.node(true);
    // https to a name: accepted at creation, refused when it resolves.
    let endpoint = world
        .create_endpoint(
            &node,
            "https://localhost:1/hook",
            json!(["api_key.created"]),
        )
        .await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    world
        .create_key(&node, json!({"name": "k", "type": "secret"}))
        .await;
    let d = loop {
        let d = world.deliveries(&node, &id).await;
        if d.first().is_some_and(|d| d["attempts"] == 1) {
            break d[0].clone();
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(d["status"], "pending");
    assert_eq!(d["last_status"], Value::Null);
    let error = d["last_error"].as_str().unwrap();
    assert!(
        error.contains("loopback") && error.contains("localhost"),
        "{error}"
    );
    // Retry by hand.
    let (status, retried) = world
        .call(
            &node,
            &world.live,
            Method::POST,
            &format!(
                "/v1/webhook-endpoints/{id}/deliveries/{}/retry",
                d["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["status"], "pending");
    let (status, body) = world
        .call(
            &node,
            &world.live,
            Method::POST,
            &format!("/v1/webhook-endpoints/{id}/deliveries/whd_01ARZ3NDEKTSV4RRFFQ69G5FAV/retry"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("webhook_delivery_not_found"))
    );
    node.stop().await;
}

#[test]
fn each_forbidden_address_is_refused_when_resolved() {
    let rt = tokio_runtime();
    let none = AllowHosts::default();
    for (url, kind) in [
        ("https://localhost/", "loopback"),
        ("https://127.0.0.1/", "loopback"),
        ("https://[::1]/", "loopback"),
        ("https://10.1.2.3/", "private"),
        ("https://192.168.0.1/", "private"),
        ("https://169.254.169.254/", "link-local"),
        ("https://224.0.0.1/", "multicast"),
        ("https://0.0.0.0/", "unspecified"),
    ] {
        let url = domain::WebhookUrl::from_stored(url.to_owned());
        let refused = rt
            .block_on(composition::resolve_checked(&url, &none))
            .expect_err(url.as_str());
        assert!(refused.contains(kind), "{refused}");
    }
    let allowed = AllowHosts::new(["localhost"]);
    let url = domain::WebhookUrl::from_stored("http://localhost:8080/".to_owned());
    let addr = rt
        .block_on(composition::resolve_checked(&url, &allowed))
        .expect("allowed");
    assert!(addr.ip().is_loopback());
}

fn tokio_runtime() -> actix_web::rt::Runtime {
    actix_web::rt::Runtime::new().unwrap()
}

#[actix_web::test]
async fn expiry_events_are_written_once_across_nodes() {
    let world = World::new();
    let a = world.node(true);
    let b = world.node(true);
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        world
            .create_key(
                node,
                json!({"name": format!("t{i}"), "type": "secret", "expires_in": "8d"}),
            )
            .await;
    }
    // Both nodes' schedulers run: the warnings, then the expiries.
    let count =
        "SELECT count(*) FROM key_events WHERE type IN ('api_key.expiring', 'api_key.expired')";
    world
        .clock
        .advance(time::Duration::days(1) + time::Duration::seconds(1));
    wait_until("10 expiring events", || {
        (world.psql(count) == "10").then_some(())
    })
    .await;
    world.clock.advance(time::Duration::days(7));
    wait_until("20 expiry events", || {
        (world.psql(count) == "20").then_some(())
    })
    .await;
    a.stop().await;
    b.stop().await;
    assert_eq!(world.psql(count), "20");
    assert_eq!(
        world.psql("SELECT count(*) FROM (SELECT key_id, type FROM key_events GROUP BY 1, 2 HAVING count(*) > 1) twice"),
        "0"
    );

    // Two writers racing on the same due keys, each on its own pool: every
    // event is written by exactly one of them.
    let node = world.node(false);
    for i in 0..10 {
        world
            .create_key(
                &node,
                json!({"name": format!("r{i}"), "type": "secret", "expires_in": "8d"}),
            )
            .await;
    }
    node.stop().await;
    let phases = [
        (time::Duration::days(1) + time::Duration::seconds(1), "30"),
        (time::Duration::days(7), "40"),
    ];
    for (advance, total) in phases {
        world.clock.advance(advance);
        let barrier = Arc::new(std::sync::Barrier::new(2));
        let writers: Vec<_> = (0..2)
            .map(|_| {
                let webhooks = domain::Webhooks::new(
                    infra_postgres::PgStore::connect(
                        world.db.url(),
                        &infra_postgres::PoolConfig::default(),
                    )
                    .unwrap(),
                    Arc::new(world.clock.clone()),
                    domain::OsSecretSource,
                    &hash_key(),
                    AllowHosts::default(),
                );
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    webhooks.write_expiry_events().unwrap()
                })
            })
            .collect();
        let written: usize = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(written, 10);
        assert_eq!(world.psql(count), total);
    }
}
