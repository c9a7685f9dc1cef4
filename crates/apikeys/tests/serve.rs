//! `apikeys serve` as a process: its logs never hold a key, a hash or an
//! `Authorization` header, and SIGTERM stops it cleanly.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use domain::{HashKey, PlainKey};
use infra_postgres::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{json, Value};

const HASH_KEY: &str = "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[actix_web::test]
async fn serve_logs_no_secrets_and_stops_on_sigterm() {
    // Given a tenant and a running `apikeys serve` logging at debug level.
    let db = TestDatabase::new();
    let created = Command::new(env!("CARGO_BIN_EXE_apikeys"))
        .args(["tenant", "create", "--name", "Logged", "--json"])
        .env("DATABASE_URL", db.url())
        .env("APIKEYS_HASH_KEY", HASH_KEY)
        .output()
        .unwrap();
    assert!(created.status.success());
    let tenant: Value = serde_json::from_slice(&created.stdout).unwrap();
    let tenant_id = tenant["tenant_id"].as_str().unwrap().to_owned();
    let live = tenant["keys"]["live"].as_str().unwrap().to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log_path = std::env::temp_dir().join(format!("apikeys-serve-{port}.log"));
    let log = fs::File::create(&log_path).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_apikeys"))
        .arg("serve")
        .env("DATABASE_URL", db.url())
        .env("APIKEYS_HASH_KEY", HASH_KEY)
        .env("APIKEYS_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            up = r.status() == StatusCode::OK;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "apikeys serve did not come up");

    // When keys are used, created, rotated and refused.
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .header("Authorization", format!("Bearer {live}"))
            .header("X-Tenant-ID", &tenant_id)
    };
    let list = call(reqwest::Method::GET, "/v1/api-keys")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    let new: Value = call(reqwest::Method::POST, "/v1/api-keys")
        .json(&json!({"name": "Logged key", "type": "secret"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_key = new["key"].as_str().unwrap().to_owned();
    let rotated: Value = call(reqwest::Method::POST, "/v1/api-keys/rotate")
        .json(&json!({"id": new["id"], "grace_period": "0s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rotated_key = rotated["key"].as_str().unwrap().to_owned();
    let refused = client
        .get(format!("{base}/v1/api-keys"))
        .header("Authorization", format!("Bearer {new_key}"))
        .header("X-Tenant-ID", &tenant_id)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    // And the server is asked to stop.
    let killed = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = server.wait().unwrap();

    // Then it stopped cleanly, and its logs hold none of the secrets.
    assert!(status.success(), "exit status {status}");
    let logs = fs::read_to_string(&log_path).unwrap();
    let _ = fs::remove_file(&log_path);
    assert!(logs.contains("stopped"), "logs: {logs}");
    let hash_key = HashKey::from_hex(HASH_KEY).unwrap();
    for key in [&live, &new_key, &rotated_key] {
        assert!(!logs.contains(key.as_str()), "a full key is in the logs");
        let hash = hash_key.hash(&PlainKey::parse(key).unwrap());
        assert!(
            !logs.contains(&hex(hash.as_bytes())),
            "a key hash is in the logs"
        );
    }
    assert!(!logs.contains(HASH_KEY), "the hash key is in the logs");
    assert!(
        !logs.to_lowercase().contains("bearer sk_"),
        "an Authorization header is in the logs"
    );
}
