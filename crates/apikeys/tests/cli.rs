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

#[test]
fn every_configuration_error_exits_1_and_a_usage_error_exits_2() {
    let bad_log_format = apikeys()
        .arg("migrate")
        .env("APIKEYS_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(bad_log_format.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(bad_log_format.stderr).unwrap(),
        "error: APIKEYS_LOG_FORMAT is invalid: expected json or text, got \"xml\"\n"
    );

    let no_database = apikeys().arg("migrate").output().unwrap();
    assert_eq!(no_database.status.code(), Some(1));

    let unknown_command = apikeys().arg("frobnicate").output().unwrap();
    assert_eq!(unknown_command.status.code(), Some(2));
    let unknown_flag = apikeys().args(["serve", "--port", "1"]).output().unwrap();
    assert_eq!(unknown_flag.status.code(), Some(2));
}

/// `apikeys migrate` on `url`, with a minute to get a connection: asserts
/// it exits 1 and returns what it said.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure is a failed test"
)]
fn migrate_fails_with(url: &str) -> String {
    let output = apikeys()
        .arg("migrate")
        .env("DATABASE_URL", url)
        .env("APIKEYS_DB_TIMEOUT", "60s")
        .output()
        .unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    stderr
}

#[test]
fn a_database_that_does_not_exist_fails_at_once_not_after_the_timeout() {
    let started = std::time::Instant::now();
    let stderr = migrate_fails_with("postgres://postgres@127.0.0.1:5432/apikeys_no_such_database");
    assert!(
        stderr.contains("cannot use DATABASE_URL")
            && stderr.contains("database \"apikeys_no_such_database\" does not exist"),
        "stderr: {stderr}"
    );
    // Retrying would have taken the whole 60 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[test]
fn a_malformed_database_url_fails_at_once_without_echoing_it() {
    let stderr = migrate_fails_with("postgres://user:s3cret@host:notaport/db");
    assert!(
        stderr.contains("cannot use DATABASE_URL: the URL is malformed: invalid integer value"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("refused"), "stderr: {stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the password was echoed: {stderr}"
    );
}

#[test]
fn serve_help_lists_every_variable_of_the_readme_configuration_table() {
    let output = apikeys().args(["serve", "--help"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).unwrap();
    let readme = include_str!("../../../README.md");
    let table = readme
        .split("## Configuration")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").nth(1))
        .expect("the configuration table");
    let variables: Vec<&str> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|line| line.split('`').next())
        .collect();
    assert!(variables.contains(&"APIKEYS_METRICS_BIND"), "{variables:?}");
    for variable in variables {
        assert!(help.contains(variable), "{variable} is not in serve --help");
    }
}

#[test]
fn text_logs_to_a_file_have_no_colour_and_an_up_to_date_schema_is_not_logged() {
    let db = TestDatabase::new();
    let output = apikeys()
        .arg("migrate")
        .env("DATABASE_URL", db.url())
        .env("RUST_LOG", "infra_postgres=debug")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("DEBUG") && stderr.contains("the database schema is up to date"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "ANSI escapes: {stderr:?}");
    assert!(!stderr.contains("applied=[]"), "{stderr}");
}

// ---- the operator's commands ----

/// Helpers of the operator commands' tests.
#[expect(
    clippy::unwrap_used,
    reason = "test helpers: a failure is a failed test"
)]
mod operator {
    use super::{apikeys, HASH_KEY};
    use infra_postgres::testing::TestDatabase;
    use serde_json::Value;

    /// Runs `apikeys ARGS` on `db` with the test hash key.
    pub(crate) fn run(db: &TestDatabase, args: &[&str]) -> std::process::Output {
        apikeys()
            .args(args)
            .env("DATABASE_URL", db.url())
            .env("APIKEYS_HASH_KEY", HASH_KEY)
            .output()
            .unwrap()
    }

    /// Runs `apikeys ARGS`, asserts success and returns stdout.
    pub(crate) fn succeeds(db: &TestDatabase, args: &[&str]) -> String {
        let output = run(db, args);
        assert!(
            output.status.success(),
            "{args:?}: stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `apikeys ARGS`, asserts a non-zero exit with nothing on stdout and
    /// returns stderr.
    pub(crate) fn fails(db: &TestDatabase, args: &[&str]) -> String {
        let output = run(db, args);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert_ne!(output.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&output.stdout), "", "{args:?}");
        String::from_utf8(output.stderr).unwrap()
    }

    /// Runs `apikeys ARGS --json` and parses its one line of output.
    pub(crate) fn json(db: &TestDatabase, args: &[&str]) -> Value {
        let stdout = succeeds(db, &[args, &["--json"]].concat());
        assert_eq!(stdout.lines().count(), 1, "stdout: {stdout}");
        serde_json::from_str(&stdout).unwrap()
    }

    /// A tenant made by `apikeys tenant create`: (id, live key, test key).
    pub(crate) fn cli_tenant(db: &TestDatabase, name: &str) -> (String, String, String) {
        let created = json(db, &["tenant", "create", "--name", name]);
        let field = |v: &Value| v.as_str().unwrap().to_owned();
        (
            field(&created["tenant_id"]),
            field(&created["keys"]["live"]),
            field(&created["keys"]["test"]),
        )
    }

    pub(crate) fn field_names(object: &Value) -> Vec<&str> {
        object
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect()
    }

    /// A server on the same database, with the test hash key.
    pub(crate) struct Server {
        base: String,
        client: reqwest::Client,
        handle: actix_web::dev::ServerHandle,
    }

    impl Server {
        pub(crate) fn start(db: &TestDatabase) -> Self {
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
            Server {
                base,
                client: reqwest::Client::new(),
                handle,
            }
        }

        /// `GET path` with `key` for `tenant`: (status, body).
        pub(crate) async fn get(&self, path: &str, key: &str, tenant: &str) -> (u16, Value) {
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .header("Authorization", format!("Bearer {key}"))
                .header("X-Tenant-ID", tenant)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap())
        }

        /// `POST /v1/api-keys` with `key` for `tenant`: the response body.
        pub(crate) async fn create_key(&self, key: &str, tenant: &str, body: Value) -> Value {
            let response = self
                .client
                .post(format!("{}/v1/api-keys", self.base))
                .header("Authorization", format!("Bearer {key}"))
                .header("X-Tenant-ID", tenant)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::CREATED);
            response.json().await.unwrap()
        }

        pub(crate) async fn stop(self) {
            self.handle.stop(true).await;
        }
    }

    /// `value` without its `field`s, for comparing what does not depend on them.
    pub(crate) fn without(value: &Value, fields: &[&str]) -> Value {
        let mut value = value.clone();
        for field in fields {
            value.as_object_mut().unwrap().remove(*field);
        }
        value
    }
}

use operator::{cli_tenant, fails, field_names, json, succeeds, without, Server};

#[test]
fn tenant_list_json_prints_every_tenant_oldest_first() {
    let db = TestDatabase::new();
    assert_eq!(json(&db, &["tenant", "list"]), json!([]));
    let (acme, _, _) = cli_tenant(&db, "Acme Corp");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (initech, _, _) = cli_tenant(&db, "Initech");

    let listed = json(&db, &["tenant", "list"]);

    let tenants = listed.as_array().unwrap();
    assert_eq!(tenants.len(), 2, "{listed}");
    for (tenant, (id, name)) in tenants
        .iter()
        .zip([(&acme, "Acme Corp"), (&initech, "Initech")])
    {
        assert_eq!(field_names(tenant), ["tenant_id", "name", "created_at"]);
        assert_eq!(tenant["tenant_id"], id.as_str());
        assert_eq!(tenant["name"], name);
        let created_at = tenant["created_at"].as_str().unwrap();
        assert!(
            created_at.len() == 20 && created_at.ends_with('Z'),
            "{created_at}"
        );
    }
    assert!(tenants[0]["created_at"].as_str() < tenants[1]["created_at"].as_str());
    // The readable form names both.
    let text = succeeds(&db, &["tenant", "list"]);
    assert!(text.contains(&acme) && text.contains("Acme Corp"), "{text}");
    assert!(
        text.contains(&initech) && text.contains("Initech"),
        "{text}"
    );
}

#[actix_web::test]
async fn key_create_json_prints_the_apis_201_body_and_the_key_works_against_a_server() {
    let db = TestDatabase::new();
    let (tenant, live, _) = cli_tenant(&db, "Acme");

    let created = json(
        &db,
        &["key", "create", "--tenant", &tenant, "--name", "Recovery"],
    );
    let scoped = json(
        &db,
        &[
            "key",
            "create",
            "--tenant",
            &tenant,
            "--name",
            "Analytics",
            "--type",
            "publishable",
            "--mode",
            "test",
            "--scopes",
            "users:read,sessions:read",
            "--expires-in",
            "90d",
        ],
    );

    // The defaults: a live full-access secret key that never expires.
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("sk_live_") && domain::PlainKey::parse(key).is_ok());
    assert_eq!(created["name"], "Recovery");
    assert_eq!(
        (&created["type"], &created["mode"]),
        (&json!("secret"), &json!("live"))
    );
    assert_eq!(created["scopes"], json!(["*"]));
    assert_eq!(created["expires_at"], Value::Null);
    assert_eq!(created["prefix"], &key[..12]);
    assert_eq!(created["last_four"], &key[key.len() - 4..]);
    assert!(created["id"].as_str().unwrap().starts_with("key_"));
    // Every option.
    let pk = scoped["key"].as_str().unwrap();
    assert!(pk.starts_with("pk_test_"), "{scoped}");
    assert_eq!(scoped["scopes"], json!(["users:read", "sessions:read"]));
    assert!(scoped["expires_at"].is_string(), "{scoped}");

    let server = Server::start(&db);
    // The same object, field for field and in the same order, as the API's
    // own 201 body.
    let by_api = server
        .create_key(
            &live,
            &tenant,
            json!({"name": "By the API", "type": "secret"}),
        )
        .await;
    assert_eq!(field_names(&created), field_names(&by_api));
    assert_eq!(
        field_names(&created),
        [
            "id",
            "name",
            "type",
            "mode",
            "key",
            "prefix",
            "last_four",
            "scopes",
            "expires_at",
            "created_at"
        ]
    );
    // The new key manages the tenant's keys.
    let (status, keys) = server.get("/v1/api-keys", key, &tenant).await;
    assert_eq!(status, 200, "{keys}");
    let listed = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == created["id"])
        .cloned()
        .unwrap();
    assert_eq!(listed["created_at"], created["created_at"]);
    server.stop().await;
}

#[actix_web::test]
async fn key_list_json_prints_the_apis_key_objects_of_every_mode() {
    let db = TestDatabase::new();
    let (tenant, live, test) = cli_tenant(&db, "Acme");
    let (_, _, _) = cli_tenant(&db, "Another tenant");
    let test_id = json(&db, &["key", "list", "--tenant", &tenant]);
    let test_id = test_id
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["mode"] == "test")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    succeeds(&db, &["key", "revoke", "--tenant", &tenant, &test_id]);

    let active = json(&db, &["key", "list", "--tenant", &tenant]);
    let every = json(&db, &["key", "list", "--tenant", &tenant, "--revoked"]);

    let active = active.as_array().unwrap();
    let every = every.as_array().unwrap();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(every.len(), 2, "{every:?}");
    assert_eq!(active[0]["mode"], "live");
    let revoked = every.iter().find(|k| k["id"] == test_id.as_str()).unwrap();
    assert_eq!(revoked["revoked"], true);
    assert!(revoked["revokes_at"].is_string());
    // The API lists the same objects (its caller's use aside).
    let server = Server::start(&db);
    let (status, by_api) = server
        .get("/v1/api-keys?revoked=true", &live, &tenant)
        .await;
    assert_eq!(status, 200, "{by_api}");
    let (status, _) = server.get("/v1/api-keys", &test, &tenant).await;
    assert_eq!(status, 401, "the revoked test key");
    server.stop().await;
    let by_api = by_api["data"].as_array().unwrap();
    assert_eq!(by_api.len(), every.len());
    for (cli, api) in every.iter().zip(by_api) {
        assert_eq!(field_names(cli), field_names(api));
        assert_eq!(
            without(cli, &["last_used_at"]),
            without(api, &["last_used_at"])
        );
    }
    // The readable form.
    let text = succeeds(&db, &["key", "list", "--tenant", &tenant, "--revoked"]);
    assert!(
        text.contains(&test_id) && text.contains("revoked"),
        "{text}"
    );
    assert!(!text.contains(&live) && !text.contains(&test), "{text}");
}

#[actix_web::test]
async fn a_locked_out_tenant_gets_back_in_and_every_change_is_recorded_by_the_cli() {
    let db = TestDatabase::new();
    let (tenant, live, _) = cli_tenant(&db, "Acme");
    let live_id = json(&db, &["key", "list", "--tenant", &tenant])
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["mode"] == "live")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let service = apikeys::application::service(
        &db.store(),
        domain::SystemClock,
        domain::HashKey::from_hex(HASH_KEY).unwrap(),
    );
    let authenticates = |key: &str| {
        use domain::Authenticator;
        let credentials = domain::Credentials::new(
            domain::PlainKey::parse(key).unwrap(),
            domain::TenantId::parse(&tenant).unwrap(),
        );
        service.authenticate(&credentials).is_ok()
    };

    // The last full-access live secret key: refused without --force.
    let stderr = fails(&db, &["key", "revoke", "--tenant", &tenant, &live_id]);
    assert!(
        stderr.contains("last active full-access live secret key") && stderr.contains("--force"),
        "stderr: {stderr}"
    );
    assert!(authenticates(&live), "the key still works");

    // Revoked with --force; revoking it again changes nothing.
    let out = succeeds(
        &db,
        &["key", "revoke", "--tenant", &tenant, &live_id, "--force"],
    );
    assert!(out.contains("Revoked") && out.contains(&live_id), "{out}");
    let again = succeeds(&db, &["key", "revoke", "--tenant", &tenant, &live_id]);
    assert!(again.contains("already revoked"), "{again}");
    assert!(!authenticates(&live));

    // The way back in.
    let recovery = json(
        &db,
        &["key", "create", "--tenant", &tenant, "--name", "Recovery"],
    );
    let key = recovery["key"].as_str().unwrap();

    let server = Server::start(&db);
    let (status, error) = server.get("/v1/api-keys", &live, &tenant).await;
    assert_eq!(status, 401);
    assert_eq!(error["error"]["code"], "api_key_revoked");
    let (status, log) = server.get("/v1/audit-events", key, &tenant).await;
    server.stop().await;
    assert_eq!(status, 200, "{log}");

    // Newest first: the recovery key's creation, the one revocation, then
    // the tenant's creation (three events), all by the CLI outside HTTP.
    let events = log["data"].as_array().unwrap();
    assert_eq!(events.len(), 5, "{log}");
    let summary: Vec<(&Value, &Value, &Value)> = events[..2]
        .iter()
        .map(|e| (&e["type"], &e["key_id"], &e["mode"]))
        .collect();
    assert_eq!(
        summary,
        [
            (&json!("api_key.created"), &recovery["id"], &json!("live")),
            (&json!("api_key.revoked"), &json!(live_id), &json!("live")),
        ]
    );
    for event in events {
        assert_eq!(event["actor"], json!({"type": "cli"}), "{event}");
        assert_eq!(event["request_id"], Value::Null, "{event}");
        assert_eq!(event["tenant_id"], tenant.as_str());
    }
}

#[test]
fn key_create_without_json_prints_the_key_once_with_a_warning() {
    let db = TestDatabase::new();
    let (tenant, _, _) = cli_tenant(&db, "Acme");

    let out = succeeds(
        &db,
        &["key", "create", "--tenant", &tenant, "--name", "Recovery"],
    );

    let keys: Vec<&str> = out
        .split_whitespace()
        .filter(|w| w.starts_with("sk_live_") && w.len() == 46)
        .collect();
    assert_eq!(keys.len(), 1, "{out}");
    assert!(domain::PlainKey::parse(keys[0]).is_ok());
    assert!(out.contains("cannot be shown again"), "{out}");
    assert!(out.contains(&tenant), "{out}");
}

#[test]
fn invalid_operator_commands_say_why_and_change_nothing() {
    let db = TestDatabase::new();
    let (tenant, _, _) = cli_tenant(&db, "Acme");
    let keys_before = json(&db, &["key", "list", "--tenant", &tenant, "--revoked"]);
    let live_id = keys_before
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["mode"] == "live")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ghost = "tnt_01HQ2ZJ8N00000000000000000";
    let no_key = "key_01HQ2ZJ8N00000000000000000";
    let create = |extra: &[&str]| -> Vec<String> {
        let name: &[&str] = if extra.contains(&"--name") {
            &[]
        } else {
            &["--name", "Backend"]
        };
        ["key", "create", "--tenant", &tenant]
            .iter()
            .chain(name)
            .chain(extra)
            .map(|s| (*s).to_owned())
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (create(&["--name", "  "]), "invalid --name"),
        (create(&["--scopes", "users:read,nope"]), "invalid --scopes"),
        (create(&["--scopes", "*,users:read"]), "invalid --scopes"),
        (create(&["--expires-in", "90"]), "invalid --expires-in"),
        (create(&["--expires-in", "11y"]), "invalid --expires-in"),
        (create(&["--mode", "prod"]), "--mode"),
        (create(&["--type", "public"]), "--type"),
        (
            ["key", "create", "--tenant", "acme", "--name", "Backend"]
                .map(str::to_owned)
                .to_vec(),
            "invalid --tenant",
        ),
        (
            ["key", "create", "--tenant", ghost, "--name", "Backend"]
                .map(str::to_owned)
                .to_vec(),
            "unknown tenant",
        ),
        (
            ["key", "list", "--tenant", ghost]
                .map(str::to_owned)
                .to_vec(),
            "unknown tenant",
        ),
        (
            ["key", "revoke", "--tenant", ghost, &live_id]
                .map(str::to_owned)
                .to_vec(),
            "unknown tenant",
        ),
        (
            ["key", "revoke", "--tenant", &tenant, no_key]
                .map(str::to_owned)
                .to_vec(),
            "no key",
        ),
        (
            ["key", "revoke", "--tenant", &tenant, "sk_live_oops"]
                .map(str::to_owned)
                .to_vec(),
            "invalid key id",
        ),
    ];
    for (args, message) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let stderr = fails(&db, &args);
        assert!(stderr.contains(message), "{args:?}: stderr: {stderr}");
        assert!(!stderr.contains("sk_live_oops"), "an id is not echoed");
    }

    assert_eq!(
        json(&db, &["key", "list", "--tenant", &tenant, "--revoked"]),
        keys_before
    );
    let events = domain::EventRepository::list_events(
        &db.store(),
        &domain::TenantId::parse(&tenant).unwrap(),
        &domain::EventQuery {
            key_id: None,
            event_type: None,
            mode: None,
            starting_after: None,
            limit: 100,
        },
    )
    .unwrap();
    assert_eq!(events.events.len(), 3, "only the tenant's creation");
}

// ---- the hash key (docs/api.md, "The hash key") ----

const OTHER_HASH_KEY: &str = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

/// Runs `apikeys ARGS` on `db` with `hash_key`, stopping it if it has not
/// exited after 30 s (a server that started when it should have refused):
/// (exit code, stdout, stderr).
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure is a failed test"
)]
fn run_with_hash_key(db: &TestDatabase, hash_key: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = apikeys()
        .args(args)
        .env("DATABASE_URL", db.url())
        .env("APIKEYS_HASH_KEY", hash_key)
        .env("APIKEYS_BIND", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("{args:?} did not exit: it should have refused to run");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn every_command_refuses_a_hash_key_other_than_the_databases_at_once() {
    // Given a database whose first tenant was made with HASH_KEY.
    let db = TestDatabase::new();
    let (tenant, _, _) = cli_tenant(&db, "Acme");
    let before = json(&db, &["key", "list", "--tenant", &tenant, "--revoked"]);
    let live_id = before[0]["id"].as_str().unwrap().to_owned();

    // When every command that uses the hash key runs with another one.
    for args in [
        vec!["serve"],
        vec!["migrate"],
        vec!["tenant", "create", "--name", "Other"],
        vec!["tenant", "list"],
        vec!["key", "create", "--tenant", &tenant, "--name", "Recovery"],
        vec!["key", "list", "--tenant", &tenant],
        vec!["key", "revoke", "--tenant", &tenant, &live_id, "--force"],
        vec!["hash-key", "check"],
    ] {
        let started = std::time::Instant::now();
        let (code, stdout, stderr) = run_with_hash_key(&db, OTHER_HASH_KEY, &args);

        // Then each exits 1 at once, saying why, and prints nothing.
        assert_eq!(code, 1, "{args:?}: stderr: {stderr}");
        assert_eq!(stdout, "", "{args:?}");
        assert!(
            stderr.contains(
                "error: APIKEYS_HASH_KEY is not the hash key of this database: its keys were \
                 hashed with another one, so every key would be refused"
            ),
            "{args:?}: stderr: {stderr}"
        );
        assert!(!stderr.contains(OTHER_HASH_KEY) && !stderr.contains(HASH_KEY));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{args:?}"
        );
    }
    // And nothing changed: no tenant, no key, no revocation.
    assert_eq!(
        json(&db, &["key", "list", "--tenant", &tenant, "--revoked"]),
        before
    );
    assert_eq!(json(&db, &["tenant", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(
        succeeds(&db, &["hash-key", "check"]),
        "APIKEYS_HASH_KEY is this database's hash key.\n"
    );
}

#[test]
fn a_database_made_before_verifiers_is_refused_until_hash_key_set() {
    // Given a database with keys but no verifier (as an earlier version
    // left it).
    let db = TestDatabase::new();
    let service = apikeys::application::service(
        &db.store(),
        domain::SystemClock,
        domain::HashKey::from_hex(HASH_KEY).unwrap(),
    );
    let created = service
        .create_tenant(&domain::Origin::cli(), "Before")
        .unwrap();
    let tenant = created.tenant.id.to_string();

    // Then every command refuses it, naming the fix.
    let stderr = fails(&db, &["key", "list", "--tenant", &tenant]);
    assert!(
        stderr.contains("this database has keys but no hash-key verifier yet")
            && stderr.contains("run `apikeys hash-key set` once"),
        "{stderr}"
    );

    // When the operator stores the verifier of the right hash key.
    assert_eq!(
        succeeds(&db, &["hash-key", "set"]),
        "Stored the verifier of APIKEYS_HASH_KEY: every command now refuses another hash \
         key for this database.\n"
    );

    // Then the commands run, and another hash key is refused.
    assert_eq!(
        json(&db, &["key", "list", "--tenant", &tenant])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        succeeds(&db, &["hash-key", "set"]),
        "APIKEYS_HASH_KEY is this database's hash key already; nothing changed.\n"
    );
    let (code, _, stderr) =
        run_with_hash_key(&db, OTHER_HASH_KEY, &["key", "list", "--tenant", &tenant]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("is not the hash key of this database"),
        "{stderr}"
    );
    // Setting another one needs --replace, which then refuses the first.
    let (code, stdout, stderr) = run_with_hash_key(&db, OTHER_HASH_KEY, &["hash-key", "set"]);
    assert_eq!((code, stdout.as_str()), (1, ""));
    assert!(stderr.contains("pass --replace"), "{stderr}");
    let (code, _, stderr) =
        run_with_hash_key(&db, OTHER_HASH_KEY, &["hash-key", "set", "--replace"]);
    assert_eq!(code, 0, "{stderr}");
    let stderr = fails(&db, &["tenant", "list"]);
    assert!(
        stderr.contains("is not the hash key of this database"),
        "{stderr}"
    );
}

#[test]
fn serve_and_the_operator_commands_refuse_the_development_and_non_random_hash_keys() {
    let db = TestDatabase::new();
    let zeros = "00".repeat(32);
    let repeated = "5a".repeat(40);
    for (hash_key, reason) in [
        (
            apikeys::commands::DEV_HASH_KEY_HEX,
            "APIKEYS_HASH_KEY is invalid: it is the published development hash key of \
             `apikeys dev`",
        ),
        (
            zeros.as_str(),
            "APIKEYS_HASH_KEY is invalid: it is not random",
        ),
        (
            repeated.as_str(),
            "APIKEYS_HASH_KEY is invalid: it is not random",
        ),
    ] {
        for args in [
            vec!["serve"],
            vec!["migrate"],
            vec!["tenant", "create", "--name", "Acme"],
            vec!["hash-key", "set"],
        ] {
            let (code, stdout, stderr) = run_with_hash_key(&db, hash_key, &args);
            assert_eq!((code, stdout.as_str()), (1, ""), "{args:?}");
            assert!(stderr.contains(reason), "{args:?}: {stderr}");
            assert!(!stderr.contains(hash_key), "the hash key was echoed");
        }
    }
    // Nothing was stored: the first good hash key becomes the database's.
    let (tenant, _, _) = cli_tenant(&db, "Acme");
    assert!(tenant.starts_with("tnt_"));
}

/// Starts `apikeys dev` on `url`, reads its stdout up to the blank line that
/// ends its greeting, stops it, and returns the greeting.
#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure is a failed test"
)]
fn dev_greeting(url: &str) -> String {
    use std::io::BufRead;
    let mut child = apikeys()
        .arg("dev")
        .env("DATABASE_URL", url)
        .env("APIKEYS_BIND", "127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut greeting = String::new();
    // A blank line, the greeting, a blank line.
    let mut blank = 0;
    while blank < 2 {
        let mut line = String::new();
        assert_ne!(
            stdout.read_line(&mut line).unwrap(),
            0,
            "dev ended: {greeting}"
        );
        if line.trim().is_empty() {
            blank += 1;
        }
        greeting.push_str(&line);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    greeting
}

#[test]
fn dev_shows_how_to_give_its_tenant_a_key_without_printing_the_password() {
    // Given `apikeys dev` on a database whose URL holds a password (trust
    // authentication ignores it).
    let db = TestDatabase::new();
    let url = db.url().replacen("postgres@", "postgres:s3cret@", 1);
    assert_ne!(url, db.url());
    let first = dev_greeting(&url);
    assert!(first.contains("Created the development tenant"), "{first}");

    // When it starts again.
    let again = dev_greeting(&url);

    // Then it shows the command that gives its tenant a new key, with the
    // environment it needs and without the password.
    let listed = apikeys()
        .args(["dev", "tenant", "list", "--json"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let tenant = String::from_utf8(listed.stdout).unwrap();
    assert!(tenant.contains("\"Development\""), "{tenant}");
    assert!(
        !again.contains("s3cret") && !first.contains("s3cret"),
        "{again}"
    );
    let shown = url.replacen("s3cret", "PASSWORD", 1);
    let line = again
        .lines()
        .find(|l| l.contains("dev key create"))
        .unwrap_or_else(|| panic!("no recovery command: {again}"));
    let tenant_id = line
        .split_whitespace()
        .skip_while(|w| *w != "--tenant")
        .nth(1)
        .unwrap();
    assert!(tenant.contains(tenant_id), "{tenant}");
    assert_eq!(
        line,
        format!(
            "  DATABASE_URL='{shown}' cargo run -p apikeys -- dev key create --tenant {tenant_id} --name Recovery"
        )
    );
    assert!(
        again.contains("with your password in place of PASSWORD"),
        "{again}"
    );

    // And that command works, printing a working key (the development
    // database's hash key is the development one).
    let output = apikeys()
        .args([
            "dev", "key", "create", "--tenant", tenant_id, "--name", "Recovery", "--json",
        ])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created: Value = serde_json::from_slice(&output.stdout).unwrap();
    let key = domain::PlainKey::parse(created["key"].as_str().unwrap()).unwrap();
    let service = apikeys::application::service(
        &db.store(),
        domain::SystemClock,
        domain::HashKey::from_hex(apikeys::commands::DEV_HASH_KEY_HEX).unwrap(),
    );
    let credentials = domain::Credentials::new(key, domain::TenantId::parse(tenant_id).unwrap());
    assert!(domain::Authenticator::authenticate(&service, &credentials).is_ok());
}

#[test]
fn every_leaf_command_help_lists_the_environment_it_reads() {
    for args in [
        &["tenant", "create"][..],
        &["tenant", "list"],
        &["key", "create"],
        &["key", "list"],
        &["key", "revoke"],
        &["hash-key", "set"],
        &["hash-key", "check"],
    ] {
        let output = apikeys().args(args).arg("--help").output().unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        for variable in [
            "DATABASE_URL",
            "APIKEYS_HASH_KEY",
            "APIKEYS_DB_POOL_SIZE",
            "APIKEYS_LOG_FORMAT",
        ] {
            assert!(
                help.contains(variable),
                "{args:?} --help lacks {variable}:\n{help}"
            );
        }
    }
    for args in [
        &["dev", "key", "create"][..],
        &["dev", "key", "revoke"],
        &["dev", "tenant", "list"],
    ] {
        let output = apikeys().args(args).arg("--help").output().unwrap();
        let help = String::from_utf8(output.stdout).unwrap();
        assert!(
            help.contains("DATABASE_URL") && help.contains("the hash key is the development one"),
            "{args:?}: {help}"
        );
        assert!(!help.contains("APIKEYS_HASH_KEY"), "{args:?}: {help}");
    }
}

#[test]
fn a_refused_tenant_name_is_explained_once() {
    let db = TestDatabase::new();
    let stderr = fails(&db, &["tenant", "create", "--name", "  "]);
    assert_eq!(
        stderr.matches("name must not be empty").count(),
        1,
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains(
            "error: cannot create the tenant: invalid tenant name: name must not be empty"
        ),
        "stderr: {stderr}"
    );
}

#[test]
fn key_create_force_passes_the_key_limit_of_a_full_mode_only() {
    // Given a tenant whose live mode is full: its own live key and 9,999
    // more (rows made directly: the API would take minutes),
    let db = TestDatabase::new();
    let (tenant, _, _) = cli_tenant(&db, "Acme");
    let limit = domain::DEFAULT_MAX_ACTIVE_KEYS;
    db.batch_execute(&format!(
        "INSERT INTO api_keys (id, tenant_id, hash, name, key_type, mode, prefix, \
                               last_four, scopes, created_at) \
         SELECT 'key_0' || lpad(upper(to_hex(g)), 25, '0'), '{tenant}', \
                sha256(g::text::bytea), 'Filler', 'secret', 'live', 'sk_live_abcd', \
                'abcd', ARRAY['users:read'], now() \
         FROM generate_series(1, {}) AS g",
        limit - 1
    ));
    let keys = |mode: &str| {
        db.count(&format!(
            "SELECT count(*) AS n FROM api_keys WHERE tenant_id = '{tenant}' AND mode = '{mode}'"
        ))
    };
    let events = || db.count("SELECT count(*) AS n FROM key_events");
    let base = ["key", "create", "--tenant", &tenant, "--name", "Recovery"];
    let create = |extra: &[&'static str]| [&base[..], extra].concat();
    assert_eq!(keys("live"), i64::from(limit));
    let events_before = events();

    // a live key is refused without --force, and nothing is written,
    let refused = fails(&db, &create(&[]));
    assert!(refused.contains("limit of active keys"), "{refused}");
    assert_eq!((keys("live"), events()), (i64::from(limit), events_before));
    // a test key still fits (the modes count apart),
    let test_key = json(&db, &create(&["--mode", "test"]));
    assert_eq!(test_key["mode"], "test");
    assert_eq!(keys("test"), 2);
    // and --force creates the live key past the limit, with its event.
    let forced = json(&db, &create(&["--force"]));
    assert_eq!(forced["mode"], "live");
    assert!(forced["key"].as_str().unwrap().starts_with("sk_live_"));
    assert_eq!(keys("live"), i64::from(limit) + 1);
    assert_eq!(events(), events_before + 2);
}
