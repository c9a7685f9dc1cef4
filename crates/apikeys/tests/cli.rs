//! The `apikeys` program as a user runs it.

use std::process::Command;

use infra_postgres::testing::TestDatabase;
use serde_json::{json, Value};

const HASH_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn apikeys() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_apikeys"));
    command
        .env_remove("DATABASE_URL")
        .env_remove("APIKEYS_HASH_KEY")
        .env_remove("APIKEYS_BIND")
        .env("RUST_LOG", "warn");
    command
}

#[test]
fn tenant_create_json_prints_exactly_one_object() {
    let db = TestDatabase::new();

    let output = apikeys()
        .args(["tenant", "create", "--name", "Acme Corp", "--json"])
        .env("DATABASE_URL", db.url())
        .env("APIKEYS_HASH_KEY", HASH_KEY)
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
    let value: Value = serde_json::from_str(&stdout).unwrap();
    let object = value.as_object().unwrap();
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["tenant_id", "name", "keys"]
    );
    assert_eq!(value["name"], "Acme Corp");
    assert!(value["tenant_id"].as_str().unwrap().starts_with("tnt_"));
    assert_eq!(value["tenant_id"].as_str().unwrap().len(), 30);
    let live = value["keys"]["live"].as_str().unwrap();
    let test = value["keys"]["test"].as_str().unwrap();
    assert!(live.starts_with("sk_live_") && live.len() == 46);
    assert!(test.starts_with("sk_test_") && test.len() == 46);
    assert!(domain::PlainKey::parse(live).is_ok());
    assert!(domain::PlainKey::parse(test).is_ok());
    // The keys went to stdout only, never to the logs.
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains(live) && !stderr.contains(test));
}

#[actix_web::test]
async fn tenant_create_records_tenant_created_and_both_key_creations_by_the_cli() {
    // Given a tenant made by `apikeys tenant create --json`.
    let db = TestDatabase::new();
    let output = apikeys()
        .args(["tenant", "create", "--name", "Initech", "--json"])
        .env("DATABASE_URL", db.url())
        .env("APIKEYS_HASH_KEY", HASH_KEY)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let tenant = printed["tenant_id"].as_str().unwrap();
    let live = printed["keys"]["live"].as_str().unwrap();

    // When a server on the same database is asked for the audit log with
    // the printed live key.
    let app = apikeys::application::Application::build(
        "127.0.0.1:0".parse().unwrap(),
        &db.store(),
        domain::SystemClock,
        domain::HashKey::from_hex(HASH_KEY).unwrap(),
        Some(1),
    )
    .unwrap();
    let base = format!("http://{}", app.addr());
    let handle = app.handle();
    actix_web::rt::spawn(app.into_server());
    let client = reqwest::Client::new();
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .header("Authorization", format!("Bearer {live}"))
            .header("X-Tenant-ID", tenant)
            .send()
    };
    let response = get("/v1/audit-events").await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let log: Value = response.json().await.unwrap();
    let keys: Value = get("/v1/api-keys").await.unwrap().json().await.unwrap();
    handle.stop(true).await;

    // Then it holds tenant.created and then one api_key.created per key,
    // all by the CLI, outside any request, at the tenant's creation.
    assert_eq!(log["has_more"], false);
    let events = log["data"].as_array().unwrap();
    let key_id = |mode: &str| {
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["mode"] == mode)
            .unwrap()["id"]
            .clone()
    };
    let created_at = keys["data"][0]["created_at"].clone();
    let without_id = |event: &Value| {
        let mut event = event.clone();
        event.as_object_mut().unwrap().remove("id");
        event
    };
    let expected = [
        json!({"type": "api_key.created", "created_at": created_at, "tenant_id": tenant,
            "key_id": key_id("test"), "mode": "test", "actor": {"type": "cli"},
            "request_id": null, "data": {}}),
        json!({"type": "api_key.created", "created_at": created_at, "tenant_id": tenant,
            "key_id": key_id("live"), "mode": "live", "actor": {"type": "cli"},
            "request_id": null, "data": {}}),
        json!({"type": "tenant.created", "created_at": created_at, "tenant_id": tenant,
            "key_id": null, "mode": null, "actor": {"type": "cli"},
            "request_id": null, "data": {"name": "Initech"}}),
    ];
    assert_eq!(events.len(), 3, "{log}");
    for (got, want) in events.iter().zip(&expected) {
        assert_eq!(&without_id(got), want);
        assert_eq!(
            got.as_object().unwrap().keys().collect::<Vec<_>>(),
            [
                "id",
                "type",
                "created_at",
                "tenant_id",
                "key_id",
                "mode",
                "actor",
                "request_id",
                "data"
            ]
        );
    }
}

#[expect(
    clippy::expect_used,
    reason = "test helper: a failure is a failed test"
)]
/// Runs `apikeys serve` with `vars`, asserts that it refused to start, and
/// returns what it said.
fn serve_refuses(vars: &[(&str, &str)]) -> String {
    let mut command = apikeys();
    command.arg("serve");
    for (name, value) in vars {
        command.env(name, value);
    }
    let output = command.output().expect("run apikeys");
    assert!(!output.status.success(), "serve started with {vars:?}");
    String::from_utf8(output.stderr).expect("UTF-8 stderr")
}

// The configuration is checked before any connection, so these never touch
// the database they name.
const ANY_DATABASE: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[test]
fn serve_without_database_url_says_so_and_fails() {
    let stderr = serve_refuses(&[("APIKEYS_HASH_KEY", HASH_KEY)]);
    assert!(
        stderr.contains("DATABASE_URL is not set"),
        "stderr: {stderr}"
    );
}

#[test]
fn serve_with_a_short_hash_key_refuses_to_start() {
    let stderr = serve_refuses(&[("DATABASE_URL", ANY_DATABASE), ("APIKEYS_HASH_KEY", "abcd")]);
    assert!(
        stderr.contains("APIKEYS_HASH_KEY is invalid: the hash key must be at least 32 bytes"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("abcd"), "the hash key was echoed");
}

#[test]
fn serve_with_an_unusable_bind_address_refuses_to_start() {
    let stderr = serve_refuses(&[
        ("DATABASE_URL", ANY_DATABASE),
        ("APIKEYS_HASH_KEY", HASH_KEY),
        ("APIKEYS_BIND", "localhost:notaport"),
    ]);
    assert!(
        stderr.contains("APIKEYS_BIND is invalid"),
        "stderr: {stderr}"
    );
}

#[test]
fn serve_on_an_address_in_use_refuses_to_start() {
    let db = TestDatabase::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();

    let stderr = serve_refuses(&[
        ("DATABASE_URL", db.url()),
        ("APIKEYS_HASH_KEY", HASH_KEY),
        ("APIKEYS_BIND", &addr),
    ]);

    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "stderr: {stderr}"
    );
}

#[test]
fn migrate_applies_then_reports_up_to_date() {
    let db = TestDatabase::new();

    let output = apikeys()
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();

    // TestDatabase has migrated already.
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "The database is up to date.\n"
    );
}
