//! Usage limits across nodes (docs/limits.md): three real `apikeys serve`
//! processes on one database, 64 concurrent clients hammering one limited
//! key through all of them, one node killed with SIGKILL and restarted in
//! the middle. Every admitted use (a 2xx of an authenticated route, or a
//! `valid: true` verification) is counted, and:
//!
//! - for a rate limit, the admitted uses of each window, over all nodes,
//!   never exceed the limit;
//! - for credits, the admitted uses never exceed the starting credits, also
//!   after every node was stopped and started again.
//!
//! Which window a use was admitted in is read from the answer itself: its
//! `RateLimit-Reset` (seconds to the window's end, rounded up) brackets the
//! window's end between the request's send and receive times, and only one
//! multiple of the window fits in that bracket. The window is 5 s (the
//! contract allows 1 s to 1 d) so that the test runs in well under a
//! minute; the proof is the same as for 10 s.
//!
//! The tests also assert that the budget really ran out (429s were seen),
//! so that "never above the limit" is not passed by a cluster too slow to
//! reach it, and that no refusal was `too_many_requests` (a spent budget is
//! not a failed authentication).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test: a failed step is a failed test"
)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::rt::time::sleep;
use infra_postgres::testing::TestDatabase;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

const HASH_KEY: &str = "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677";
/// Concurrent clients.
const CLIENTS: usize = 64;
/// Nodes.
const NODES: usize = 3;
/// The rate limit under test: `LIMIT` uses per `WINDOW_SECS`.
const LIMIT: u64 = 1000;
const WINDOW_SECS: u64 = 5;

/// One `apikeys serve` process, with its metrics listener.
struct Node {
    port: u16,
    metrics_port: u16,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Node {
    fn spawn(db: &TestDatabase, port: u16) -> Node {
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_apikeys"))
            .arg("serve")
            .env("DATABASE_URL", db.url())
            .env("APIKEYS_HASH_KEY", HASH_KEY)
            .env("APIKEYS_BIND", format!("127.0.0.1:{port}"))
            .env("APIKEYS_WORKERS", "2")
            .env("APIKEYS_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("apikeys serve starts");
        Node {
            port,
            metrics_port,
            child,
        }
    }

    /// The sum of the samples of counter `name` (over its labels).
    async fn counter(&self, client: &Client, name: &str) -> f64 {
        let text = client
            .get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self, client: &Client) {
        for _ in 0..300 {
            if let Ok(r) = client.get(format!("{}/readyz", self.base())).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            sleep(Duration::from_millis(50)).await;
        }
        panic!("apikeys serve on port {} did not come up", self.port);
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal}");
    }

    /// SIGKILL: no graceful stop, its shares are stranded.
    fn crash(mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM: a graceful stop, its unspent shares go back.
    fn stop(mut self) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful stop: {status}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database with one tenant; its admin key and id.
fn tenant(db: &TestDatabase) -> (String, String) {
    let created = Command::new(env!("CARGO_BIN_EXE_apikeys"))
        .args(["tenant", "create", "--name", "Limited", "--json"])
        .env("DATABASE_URL", db.url())
        .env("APIKEYS_HASH_KEY", HASH_KEY)
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let tenant: Value = serde_json::from_slice(&created.stdout).unwrap();
    (
        tenant["tenant_id"].as_str().unwrap().to_owned(),
        tenant["keys"]["live"].as_str().unwrap().to_owned(),
    )
}

/// Creates a full-access key with `limits` through `node`: its id and value.
async fn limited_key(
    client: &Client,
    node: &Node,
    tenant: &str,
    admin: &str,
    limits: Value,
) -> (String, String) {
    let mut body = json!({"name": "Hammered", "type": "secret"});
    for (field, value) in limits.as_object().unwrap() {
        body[field] = value.clone();
    }
    let created = client
        .post(format!("{}/v1/api-keys", node.base()))
        .bearer_auth(admin)
        .header("X-Tenant-ID", tenant)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// How one use came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Admitted: a 2xx, or `valid: true`.
    Admitted,
    /// Refused with this code.
    Refused(&'static str),
    /// No answer (the node was down) or a 503.
    NoAnswer,
}

/// What the clients saw.
#[derive(Debug, Default)]
struct Tally {
    /// Admitted uses per window start (unix seconds).
    per_window: BTreeMap<u64, u64>,
    /// Admitted uses whose window could not be told (never expected).
    unplaced: u64,
    admitted: u64,
    refused: BTreeMap<&'static str, u64>,
    no_answer: u64,
}

/// The window a use answered with `reset` was admitted in, between `sent`
/// and `received` (unix seconds): the one multiple of the window in
/// `[sent + reset - 1, received + reset]`.
fn window_of(sent: f64, received: f64, reset: u64) -> Option<u64> {
    let reset = reset as f64;
    let (low, high) = (sent + reset - 1.0, received + reset);
    let w = WINDOW_SECS as f64;
    let first = (low / w).ceil() as u64;
    let last = (high / w).floor() as u64;
    (first == last).then(|| (first - 1) * WINDOW_SECS)
}

/// One use of `key` through `base`: half the clients call an authenticated
/// route with it, the other half verify it.
async fn use_key(
    client: &Client,
    base: &str,
    tenant: &str,
    key: &str,
    id: &str,
    verify: bool,
) -> (Outcome, Option<u64>) {
    let request = if verify {
        client
            .post(format!("{base}/v1/api-keys/verify"))
            .header("X-Tenant-ID", tenant)
            .json(&json!({"key": key}))
    } else {
        client
            .get(format!("{base}/v1/api-keys/{id}"))
            .bearer_auth(key)
            .header("X-Tenant-ID", tenant)
    };
    let Ok(response) = request.timeout(Duration::from_secs(5)).send().await else {
        return (Outcome::NoAnswer, None);
    };
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let reset = response
        .headers()
        .get("ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Ok(body) = response.json::<Value>().await else {
        return (Outcome::NoAnswer, None);
    };
    let code = |c: &str| -> &'static str {
        match c {
            "rate_limited" => "rate_limited",
            "usage_exceeded" => "usage_exceeded",
            "too_many_requests" => "too_many_requests",
            "service_unavailable" => "service_unavailable",
            other => panic!("unexpected refusal {other}: {body}"),
        }
    };
    if verify && status == StatusCode::OK {
        if body["valid"] == json!(true) {
            let reset = body["limits"]["reset"].as_u64();
            return (Outcome::Admitted, reset);
        }
        return (Outcome::Refused(code(body["code"].as_str().unwrap())), None);
    }
    if status.is_success() {
        return (Outcome::Admitted, reset);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return (Outcome::NoAnswer, None);
    }
    let c = code(body["error"]["code"].as_str().unwrap_or("?"));
    if c == "rate_limited" {
        assert!(retry_after, "429 rate_limited without Retry-After");
    }
    (Outcome::Refused(c), None)
}

/// The nodes' base addresses, as the clients see them (a restarted node
/// keeps its port).
type Bases = Rc<RefCell<Vec<String>>>;

/// `CLIENTS` clients using `key` through all nodes until `until`.
async fn hammer(
    client: &Client,
    bases: &Bases,
    tenant: &str,
    key: &str,
    id: &str,
    until: Instant,
) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let (client, bases, tally) = (client.clone(), bases.clone(), tally.clone());
        let (tenant, key, id) = (tenant.to_owned(), key.to_owned(), id.to_owned());
        tasks.push(actix_web::rt::spawn(async move {
            let mut n = i;
            while Instant::now() < until {
                let base = {
                    let bases = bases.borrow();
                    bases[n % bases.len()].clone()
                };
                n += 1;
                let sent = unix_now();
                let (outcome, reset) =
                    use_key(&client, &base, &tenant, &key, &id, i % 2 == 1).await;
                let received = unix_now();
                {
                    let mut t = tally.borrow_mut();
                    match outcome {
                        Outcome::Admitted => {
                            t.admitted += 1;
                            match reset.and_then(|r| window_of(sent, received, r)) {
                                Some(w) => *t.per_window.entry(w).or_default() += 1,
                                None => t.unplaced += 1,
                            }
                        }
                        Outcome::Refused(code) => *t.refused.entry(code).or_default() += 1,
                        Outcome::NoAnswer => t.no_answer += 1,
                    }
                }
                if outcome == Outcome::NoAnswer {
                    // A node down: a moment before the next try.
                    sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    Rc::try_unwrap(tally).unwrap().into_inner()
}

struct Cluster {
    client: Client,
    nodes: Vec<Option<Node>>,
    bases: Bases,
    tenant: String,
    admin: String,
    // Dropped last.
    db: TestDatabase,
}

impl Cluster {
    async fn start() -> Cluster {
        let db = TestDatabase::new();
        let (tenant, admin) = tenant(&db);
        let client = Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .unwrap();
        let nodes: Vec<Node> = (0..NODES).map(|_| Node::spawn(&db, free_port())).collect();
        for node in &nodes {
            node.wait_up(&client).await;
        }
        let bases = Rc::new(RefCell::new(nodes.iter().map(Node::base).collect()));
        Cluster {
            client,
            nodes: nodes.into_iter().map(Some).collect(),
            bases,
            tenant,
            admin,
            db,
        }
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes[i].as_ref().unwrap()
    }

    /// Kills node `i` with SIGKILL after `after`, and starts it again on
    /// its port.
    async fn crash_and_restart(&mut self, i: usize, after: Duration) {
        sleep(after).await;
        let node = self.nodes[i].take().unwrap();
        let port = node.port;
        node.crash();
        let node = Node::spawn(&self.db, port);
        node.wait_up(&self.client).await;
        self.nodes[i] = Some(node);
    }

    /// Stops every node gracefully and starts them again.
    async fn restart_all(&mut self) {
        for i in 0..NODES {
            let node = self.nodes[i].take().unwrap();
            let port = node.port;
            node.stop();
            self.nodes[i] = Some(Node::spawn(&self.db, port));
        }
        for i in 0..NODES {
            self.node(i).wait_up(&self.client).await;
        }
    }

    async fn key(&self, id: &str) -> Value {
        let got = self
            .client
            .get(format!("{}/v1/api-keys/{id}", self.node(0).base()))
            .bearer_auth(&self.admin)
            .header("X-Tenant-ID", &self.tenant)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), StatusCode::OK);
        got.json().await.unwrap()
    }
}

#[actix_web::test]
async fn three_nodes_never_admit_more_than_the_limit_in_a_window_across_a_crash() {
    // Given three nodes and a key limited to 1,000 uses per 5-s window.
    let mut cluster = Cluster::start().await;
    let (id, key) = limited_key(
        &cluster.client,
        cluster.node(0),
        &cluster.tenant,
        &cluster.admin,
        json!({"rate_limit": {"limit": LIMIT, "window": format!("{WINDOW_SECS}s")}}),
    )
    .await;

    // When 64 clients hammer it through all nodes for five windows, node 1
    // being killed (SIGKILL) and restarted after two of them.
    let until = Instant::now() + Duration::from_secs(5 * WINDOW_SECS);
    let (client, bases, tenant) = (
        cluster.client.clone(),
        cluster.bases.clone(),
        cluster.tenant.clone(),
    );
    let (tally, ()) = futures_join(
        hammer(&client, &bases, &tenant, &key, &id, until),
        cluster.crash_and_restart(1, Duration::from_secs(2 * WINDOW_SECS)),
    )
    .await;

    // Then no window admitted more than the limit, over all nodes.
    let max = tally.per_window.values().copied().max().unwrap_or(0);
    println!("limit {LIMIT} per {WINDOW_SECS} s: admitted per window {:?}, max {max}, refused {:?}, no answer {}, unplaced {}",
        tally.per_window, tally.refused, tally.no_answer, tally.unplaced);
    assert!(
        max <= LIMIT,
        "a window admitted {max} > {LIMIT}: {:?}",
        tally.per_window
    );
    assert_eq!(tally.unplaced, 0, "every admitted use names its window");
    // And the limit was really reached: uses were refused as rate_limited,
    // never as failed authentications.
    assert!(
        tally.refused.get("rate_limited").copied().unwrap_or(0) > 0,
        "{:?}",
        tally.refused
    );
    assert_eq!(tally.refused.get("too_many_requests"), None);
    assert_eq!(tally.refused.get("usage_exceeded"), None);

    // And every share cost one database write, far fewer than the uses
    // (nodes 0 and 2 ran throughout; node 1's counters restarted with it).
    let (mut shares, mut writes) = (0.0, 0.0);
    for i in [0, 2] {
        shares += cluster
            .node(i)
            .counter(&cluster.client, "apikeys_usage_shares_taken_total")
            .await;
        writes += cluster
            .node(i)
            .counter(&cluster.client, "apikeys_usage_share_writes_total")
            .await;
    }
    println!("nodes 0 and 2: {shares} shares taken, {writes} database writes for them");
    assert!(shares > 0.0);
    assert_eq!(writes, shares, "one write per share");
}

#[actix_web::test]
async fn three_nodes_never_spend_more_credits_than_the_key_had_across_a_crash_and_restarts() {
    // Given three nodes and a key with 4,000 credits and no refill (few
    // enough that 64 clients spend them within the 15 s even on a loaded
    // 2-core machine: about 600 uses a second were seen there).
    const CREDITS: u64 = 4_000;
    let mut cluster = Cluster::start().await;
    let (id, key) = limited_key(
        &cluster.client,
        cluster.node(0),
        &cluster.tenant,
        &cluster.admin,
        json!({"credits": {"remaining": CREDITS, "refill": null}}),
    )
    .await;

    // When 64 clients hammer it through all nodes, node 2 being killed
    // (SIGKILL) and restarted in the middle.
    let until = Instant::now() + Duration::from_secs(15);
    let (client, bases, tenant) = (
        cluster.client.clone(),
        cluster.bases.clone(),
        cluster.tenant.clone(),
    );
    let (first, ()) = futures_join(
        hammer(&client, &bases, &tenant, &key, &id, until),
        cluster.crash_and_restart(2, Duration::from_secs(2)),
    )
    .await;
    // Then no more uses were admitted than the key had credits, and they
    // ran out.
    println!(
        "credits {CREDITS}: admitted {}, refused {:?}, no answer {}",
        first.admitted, first.refused, first.no_answer
    );
    assert!(
        first.admitted <= CREDITS,
        "admitted {} > {CREDITS}",
        first.admitted
    );
    assert!(
        first.refused.get("usage_exceeded").copied().unwrap_or(0) > 0,
        "{:?}",
        first.refused
    );
    assert_eq!(first.refused.get("too_many_requests"), None);
    let left = cluster.key(&id).await["credits"]["remaining"]
        .as_u64()
        .unwrap();
    assert!(
        first.admitted + left <= CREDITS,
        "admitted {} + left {left} > {CREDITS}",
        first.admitted
    );

    // When every node is stopped and started again, and the clients go on.
    cluster.restart_all().await;
    let until = Instant::now() + Duration::from_secs(3);
    let second = hammer(&client, &bases, &tenant, &key, &id, until).await;

    // Then the credits spent stayed spent: all uses together are still at
    // most the starting credits.
    println!(
        "after restarting every node: admitted {} more, refused {:?}",
        second.admitted, second.refused
    );
    let total = first.admitted + second.admitted;
    assert!(total <= CREDITS, "admitted {total} > {CREDITS} in all");
    assert!(
        second.admitted <= left,
        "admitted {} after the restart, {left} were left",
        second.admitted
    );
    let after = cluster.key(&id).await["credits"]["remaining"]
        .as_u64()
        .unwrap();
    assert!(
        total + after <= CREDITS,
        "admitted {total} + left {after} > {CREDITS}"
    );
}

/// Runs both futures to completion on this thread.
async fn futures_join<A, B>(
    a: impl std::future::Future<Output = A>,
    b: impl std::future::Future<Output = B>,
) -> (A, B) {
    let a = std::pin::pin!(a);
    let b = std::pin::pin!(b);
    let mut a = Some(a);
    let mut b = Some(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if let Some(f) = a.as_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                ra = Some(v);
                a = None;
            }
        }
        if let Some(f) = b.as_mut() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                rb = Some(v);
                b = None;
            }
        }
        if a.is_none() && b.is_none() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    (ra.unwrap(), rb.unwrap())
}
