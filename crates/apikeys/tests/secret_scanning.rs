//! GitHub secret scanning end to end (docs/secret-scanning.md; docs/api.md,
//! "POST /v1/secret-scanning/github"), over real HTTP and a real
//! PostgreSQL: two real nodes on one database, A with GitHub's public keys
//! (here a P-256 key pair made by the test, published in GitHub's
//! `public_keys` shape) and B without them.
//!
//! A batch signed as GitHub signs it revokes exactly the working secret keys
//! among its tokens and labels each token; a batch signed by another key,
//! tampered with, naming an unknown key or missing a header is 401 and
//! changes nothing; the revocation is in force on B within the bound of
//! docs/cache.md; B, unconfigured, does not serve the route.
//!
//! Waits poll every 10 ms up to a deadline, checking every answer on the
//! way; the propagation delay is printed and held to 1.5 s as in `nodes.rs`
//! (the contract's 1 s, with a margin for a loaded CI machine).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use apikeys::application::{self, Settings};
use base64::Engine as _;
use common::{hash_key, Node};
use domain::{Origin, SystemClock};
use http_actix::GithubPublicKeys;
use infra_postgres::testing::TestDatabase;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const ROUTE: &str = "/v1/secret-scanning/github";
/// The identifier of the test's GitHub key.
const KEY_ID: &str = "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c";
/// Another key GitHub lists (not the one that signs).
const OLD_KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";
/// How often a wait asks again.
const POLL_EVERY: Duration = Duration::from_millis(10);
/// The bound on a revocation through A showing on B (see the module doc).
const PROPAGATION_BOUND: Duration = Duration::from_millis(1500);
/// A wait fails after this long.
const GIVE_UP: Duration = Duration::from_secs(5);

/// GitHub, as the test plays it: a key pair, its `public_keys` document,
/// and another key pair that GitHub does not list.
struct Github {
    signing: SigningKey,
    stranger: SigningKey,
    public_keys: GithubPublicKeys,
}

impl Github {
    fn new() -> Github {
        let mut rng = ChaCha20Rng::seed_from_u64(0x6769_7468_7562);
        let signing = SigningKey::random(&mut rng);
        let old = SigningKey::random(&mut rng);
        let stranger = SigningKey::random(&mut rng);
        let pem = |key: &SigningKey| {
            key.verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap()
        };
        // As https://api.github.com/meta/public_keys/secret_scanning serves it.
        let document = json!({
            "public_keys": [
                {"key_identifier": OLD_KEY_ID, "key": pem(&old), "is_current": false},
                {"key_identifier": KEY_ID, "key": pem(&signing), "is_current": true},
            ]
        });
        let public_keys = GithubPublicKeys::from_json(&document.to_string()).unwrap();
        Github {
            signing,
            stranger,
            public_keys,
        }
    }
}

/// base64 of `key`'s DER signature of `body`.
fn signature(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

/// The lowercase hex SHA-256 of `token`.
fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A node over `store`, with GitHub's `keys` if given.
fn start_node(store: &infra_postgres::PgStore, keys: Option<&GithubPublicKeys>) -> Node {
    let settings = Settings {
        workers: Some(2),
        github_public_keys: keys.cloned().map(Arc::new),
        ..Settings::default()
    };
    Node::start(store, SystemClock, &settings)
}

/// Nodes A (with GitHub's keys) and B (without) on one fresh database,
/// with one tenant.
struct Cluster {
    github: Github,
    client: Client,
    tenant: String,
    admin: String,
    a: Node,
    b: Node,
    _db: TestDatabase,
}

impl Cluster {
    fn start() -> Cluster {
        let db = TestDatabase::new();
        let store = db.store();
        let created = application::service(&store, SystemClock, hash_key())
            .create_tenant(&Origin::cli(), "Acme")
            .expect("tenant");
        let github = Github::new();
        let a = start_node(&store, Some(&github.public_keys));
        let b = start_node(&store, None);
        Cluster {
            github,
            client: Client::new(),
            tenant: created.tenant.id.to_string(),
            admin: created.live.secret.into_secret(),
            a,
            b,
            _db: db,
        }
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }

    /// `method path` on `node` with `key`.
    async fn call(&self, node: &Node, method: Method, path: &str, key: &str) -> Response {
        self.client
            .request(method, format!("{}{path}", node.base))
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Tenant-ID", &self.tenant)
            .send()
            .await
            .unwrap()
    }

    /// Creates a key of `key_type` on A: (id, full key).
    async fn create(&self, name: &str, key_type: &str) -> (String, String) {
        let response = self
            .client
            .post(format!("{}/v1/api-keys", self.a.base))
            .header("Authorization", format!("Bearer {}", self.admin))
            .header("X-Tenant-ID", &self.tenant)
            .json(&json!({"name": name, "type": key_type}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        (
            body["id"].as_str().unwrap().to_owned(),
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// The status `key` gets listing keys on `node`, and the error code.
    async fn authenticate(&self, node: &Node, key: &str) -> (StatusCode, Value) {
        let response = self.call(node, Method::GET, "/v1/api-keys", key).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        (status, body["error"]["code"].clone())
    }

    /// The tenant's `api_key.revoked` events, newest first.
    async fn revocations(&self) -> Vec<Value> {
        let response = self
            .call(
                &self.a,
                Method::GET,
                "/v1/audit-events?type=api_key.revoked",
                &self.admin,
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["data"].as_array().unwrap().clone()
    }

    /// POSTs `body` to `node`'s route with these signature headers (`None`:
    /// not sent).
    async fn post(
        &self,
        node: &Node,
        body: Vec<u8>,
        identifier: Option<&str>,
        signature: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(format!("{}{ROUTE}", node.base))
            .header("Content-Type", "application/json");
        if let Some(identifier) = identifier {
            request = request.header("Github-Public-Key-Identifier", identifier);
        }
        if let Some(signature) = signature {
            request = request.header("Github-Public-Key-Signature", signature);
        }
        request.body(body).send().await.unwrap()
    }

    /// POSTs `body` to A signed as GitHub signs it.
    async fn post_signed(&self, body: &[u8]) -> Response {
        let signed = signature(&self.github.signing, body);
        self.post(&self.a, body.to_vec(), Some(KEY_ID), Some(&signed))
            .await
    }
}

/// A batch entry as GitHub sends it.
fn entry(token: &str, n: usize) -> Value {
    json!({
        "token": token,
        "type": "apikeys_secret_key",
        "url": format!("https://github.com/octo-org/hello/blob/12345600b9cbe38a219f39a9941c9319b600c002/config-{n}.env"),
        "source": "content",
    })
}

/// A refused batch: what it is, its body, its identifier and signature
/// headers (`None`: not sent).
type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, Option<&'a str>);

/// `status` and `invalid_signature`, without a bearer challenge.
async fn assert_invalid_signature(response: Response, case: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    assert!(
        response.headers().get("www-authenticate").is_none(),
        "{case}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_signature", "{case}: {body}");
}

#[actix_web::test]
async fn forged_tampered_unknown_or_unsigned_batches_are_401_and_change_nothing() {
    // Given a working secret key, and a real batch reporting it,
    let cluster = Cluster::start();
    let (_, key) = cluster.create("Leaky", "secret").await;
    let body = serde_json::to_vec(&json!([entry(&key, 0)])).unwrap();
    let genuine = signature(&cluster.github.signing, &body);
    let forged = signature(&cluster.github.stranger, &body);
    let mut tampered = body.clone();
    let last_digit = tampered.iter().rposition(u8::is_ascii_digit).unwrap();
    tampered[last_digit] = if tampered[last_digit] == b'1' {
        b'2'
    } else {
        b'1'
    };
    let not_base64 = "not base64!";
    let not_der = base64::engine::general_purpose::STANDARD.encode(b"not a DER signature");

    // when it comes signed by another key, tampered with, under an unknown
    // or another listed key's identifier, or without a header,
    let cases: [Case<'_>; 8] = [
        (
            "signed by another key",
            body.clone(),
            Some(KEY_ID),
            Some(&forged),
        ),
        ("tampered body", tampered, Some(KEY_ID), Some(&genuine)),
        (
            "unknown identifier",
            body.clone(),
            Some("c0ffee"),
            Some(&genuine),
        ),
        (
            "another listed key",
            body.clone(),
            Some(OLD_KEY_ID),
            Some(&genuine),
        ),
        ("no signature", body.clone(), Some(KEY_ID), None),
        ("no identifier", body.clone(), None, Some(&genuine)),
        (
            "signature not base64",
            body.clone(),
            Some(KEY_ID),
            Some(not_base64),
        ),
        (
            "signature not DER",
            body.clone(),
            Some(KEY_ID),
            Some(&not_der),
        ),
    ];
    for (case, body, identifier, signature) in cases {
        let response = cluster.post(&cluster.a, body, identifier, signature).await;
        // then each is 401 `invalid_signature`,
        assert_invalid_signature(response, case).await;
    }

    // and nothing changed: the key still works on both nodes, no event.
    for node in [&cluster.a, &cluster.b] {
        assert_eq!(
            cluster.authenticate(node, &key).await,
            (StatusCode::OK, Value::Null)
        );
    }
    assert_eq!(cluster.revocations().await, Vec::<Value>::new());

    // The genuine batch, for contrast, is accepted.
    let response = cluster
        .post(&cluster.a, body, Some(KEY_ID), Some(&genuine))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    cluster.stop().await;
}

#[actix_web::test]
async fn a_batch_of_1000_revokes_exactly_the_working_secret_key_and_labels_every_token() {
    // Given a working secret key that node B has just authenticated (so B
    // holds it in its cache), a secret key revoked before and a publishable
    // key,
    let cluster = Cluster::start();
    let (working_id, working) = cluster.create("Leaky", "secret").await;
    let (revoked_id, revoked) = cluster.create("Old", "secret").await;
    let (_, publishable) = cluster.create("Web", "publishable").await;
    let response = cluster
        .call(
            &cluster.a,
            Method::DELETE,
            &format!("/v1/api-keys/{revoked_id}"),
            &cluster.admin,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        cluster.authenticate(&cluster.b, &working).await,
        (StatusCode::OK, Value::Null)
    );
    let before = cluster.revocations().await;
    assert_eq!(before.len(), 1, "the DELETE's event");

    // when GitHub reports them among 997 other tokens (junk, mistyped keys,
    // keys of no one),
    let ours = [(100, &working), (500, &revoked), (900, &publishable)];
    let tokens: Vec<String> = (0..1000)
        .map(|n| match ours.iter().find(|(at, _)| *at == n) {
            Some((_, key)) => (*key).clone(),
            None if n % 3 == 0 => format!("sk_live_{:038}", n),
            None if n % 3 == 1 => {
                // One character changed: the checksum no longer matches.
                let at = 8 + n % 38;
                let typo = if &working[at..=at] == "0" { "1" } else { "0" };
                let mut mistyped = working.clone();
                mistyped.replace_range(at..=at, typo);
                mistyped
            }
            None => format!("ghp_{n:036}"),
        })
        .collect();
    let batch: Vec<Value> = tokens
        .iter()
        .enumerate()
        .map(|(n, t)| entry(t, n))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let response = cluster.post_signed(&body).await;

    // then it answers 1,000 verdicts in order, two `true_positive` (the
    // secret keys, working or revoked before), the publishable key and the
    // rest `false_positive`,
    let revoked_at = Instant::now();
    assert_eq!(response.status(), StatusCode::OK);
    let verdicts: Vec<Value> = response.json().await.unwrap();
    assert_eq!(verdicts.len(), 1000);
    for (n, (verdict, token)) in verdicts.iter().zip(&tokens).enumerate() {
        let label = if n == 100 || n == 500 {
            "true_positive"
        } else {
            "false_positive"
        };
        assert_eq!(
            *verdict,
            json!({
                "token_hash": sha256_hex(token),
                "token_type": "apikeys_secret_key",
                "label": label,
            }),
            "entry {n}"
        );
    }

    // it revoked exactly the working key, with one event naming GitHub and
    // where the key was found,
    let after = cluster.revocations().await;
    assert_eq!(after.len(), before.len() + 1, "{after:#?}");
    let event = &after[0];
    assert_eq!(event["key_id"], working_id.as_str());
    assert_eq!(event["actor"], json!({"type": "leak_report"}));
    assert_eq!(
        event["data"],
        json!({
            "source": "github",
            "url": "https://github.com/octo-org/hello/blob/12345600b9cbe38a219f39a9941c9319b600c002/config-100.env",
        })
    );
    assert_eq!(
        cluster.authenticate(&cluster.a, &working).await,
        (StatusCode::UNAUTHORIZED, json!("api_key_revoked"))
    );
    let (status, _) = cluster.authenticate(&cluster.a, &publishable).await;
    assert_ne!(
        status,
        StatusCode::UNAUTHORIZED,
        "the publishable key works"
    );

    // and the revocation is in force on node B within the bound.
    loop {
        let answer = cluster.authenticate(&cluster.b, &working).await;
        if answer.0 == StatusCode::UNAUTHORIZED {
            assert_eq!(answer.1, "api_key_revoked");
            break;
        }
        assert_eq!(answer, (StatusCode::OK, Value::Null));
        assert!(revoked_at.elapsed() < GIVE_UP, "B still accepts the key");
        actix_web::rt::time::sleep(POLL_EVERY).await;
    }
    let delay = revoked_at.elapsed();
    println!("revocation on node B after {delay:?}");
    assert!(delay < PROPAGATION_BOUND, "B took {delay:?}");

    // A batch reporting it again finds it still ours, and writes nothing.
    let again = serde_json::to_vec(&json!([entry(&working, 7)])).unwrap();
    let response = cluster.post_signed(&again).await;
    assert_eq!(response.status(), StatusCode::OK);
    let verdicts: Value = response.json().await.unwrap();
    assert_eq!(verdicts[0]["label"], "true_positive");
    assert_eq!(cluster.revocations().await.len(), after.len());
    cluster.stop().await;
}

#[actix_web::test]
async fn too_many_tokens_or_too_large_a_body_changes_nothing() {
    let cluster = Cluster::start();
    let (_, key) = cluster.create("Leaky", "secret").await;

    // 1,001 tokens, signed: 400, nothing revoked.
    let batch: Vec<Value> = (0..1001).map(|n| entry(&key, n)).collect();
    let response = cluster
        .post_signed(&serde_json::to_vec(&batch).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");

    // Not an array: 400 `invalid_json`.
    let response = cluster.post_signed(br#"{"token": "x"}"#).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");

    // Over 1 MiB: 413.
    let padding = "x".repeat(1024 * 1024);
    let large = serde_json::to_vec(&json!([{"token": padding, "type": "t"}])).unwrap();
    let response = cluster.post_signed(&large).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    assert_eq!(
        cluster.authenticate(&cluster.a, &key).await,
        (StatusCode::OK, Value::Null)
    );
    assert_eq!(cluster.revocations().await, Vec::<Value>::new());
    cluster.stop().await;
}

#[actix_web::test]
async fn a_node_without_githubs_keys_does_not_serve_the_route() {
    // Given node B, which has no GitHub public keys, and a genuine batch,
    let cluster = Cluster::start();
    let (_, key) = cluster.create("Leaky", "secret").await;
    let body = serde_json::to_vec(&json!([entry(&key, 0)])).unwrap();
    let genuine = signature(&cluster.github.signing, &body);

    // when it is sent there (or with another method),
    let response = cluster
        .post(&cluster.b, body, Some(KEY_ID), Some(&genuine))
        .await;

    // then the route is unknown: 404 `not_found`, as for any unknown path,
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let response = cluster
        .client
        .get(format!("{}{ROUTE}", cluster.b.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // and the key still works.
    assert_eq!(
        cluster.authenticate(&cluster.b, &key).await,
        (StatusCode::OK, Value::Null)
    );
    // On A, another method is 405 (the route is served there).
    let response = cluster
        .client
        .get(format!("{}{ROUTE}", cluster.a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    cluster.stop().await;
}
