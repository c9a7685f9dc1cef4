//! Forward authentication behind real gateways (docs/gateways.md): a real
//! nginx (`auth_request`) and a real Caddy (`forward_auth`), each run from
//! the configuration the documentation gives, in front of a small upstream
//! that echoes the headers it received, with the service as the auth
//! service. Clients connect from other loopback addresses (127.0.0.2, ...)
//! than the gateway's (127.0.0.1), so the service can tell the end client
//! from the gateway.
//!
//! Both gateways are Debian packages; a missing one fails the test with how
//! to install it (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use apikeys::application::Settings;
use common::{serve_with, Served};
use http_actix::{FailureLimitConfig, TrustedProxies};
use reqwest::{Client, Method, Response};
use serde_json::{json, Value};

/// Failed authentications allowed per address: low, to reach 429.
const FAILURE_LIMIT: u32 = 3;

/// The documentation's configurations, as the tests run them.
fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs")
}

/// A configuration file of docs/gateways/, checked to be the one
/// docs/gateways.md links and shows (in its code block `fence`, the same
/// directives without the file's comments).
fn documented_config(file: &str, fence: &str) -> String {
    let guide = std::fs::read_to_string(docs().join("gateways.md")).expect("docs/gateways.md");
    assert!(
        guide.contains(&format!("(gateways/{file})")),
        "docs/gateways.md must link gateways/{file}, the configuration the tests run"
    );
    let config =
        std::fs::read_to_string(docs().join("gateways").join(file)).expect("the documented config");
    let shown = guide
        .split(&format!("```{fence}\n"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("docs/gateways.md shows no ```{fence} block"));
    assert_eq!(
        directives(shown),
        directives(&config),
        "docs/gateways.md shows another configuration than gateways/{file}"
    );
    config
}

/// A configuration's lines without comments, blank lines and indentation.
fn directives(config: &str) -> Vec<&str> {
    config
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The documented configuration `file` (shown in the guide's `fence`
/// block) with its example addresses replaced: the service's, the app's,
/// and `listen` (the gateway's own) by `listening`. Each must be there
/// (else the documentation changed under the test).
fn documented_site(
    file: &str,
    fence: &str,
    apikeys: SocketAddr,
    app: SocketAddr,
    (listen, listening): (&str, &str),
) -> String {
    let mut site = documented_config(file, fence);
    for (from, to) in [
        ("127.0.0.1:8080", apikeys.to_string()),
        ("127.0.0.1:3000", app.to_string()),
        (listen, listening.to_owned()),
    ] {
        assert!(
            site.contains(from),
            "docs/gateways/{file} no longer holds `{from}`"
        );
        site = site.replace(from, &to);
    }
    site
}

/// The path of an installed program, or a failure saying how to install it.
fn program(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed; these tests run real gateways: \
                 `apt-get install nginx caddy` (Debian packages; .ci/run installs them)"
            )
        })
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A directory of its own under the system's temporary directory, removed
/// on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "apikeys-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A gateway running as a child process (never a daemon), killed on drop.
struct Gateway {
    name: &'static str,
    child: Child,
    port: u16,
    dir: TempDir,
}

impl Gateway {
    /// Starts `command` and waits until `port` accepts connections; fails
    /// with the gateway's output if it exits or does not listen in time.
    fn start(name: &'static str, mut command: Command, port: u16, dir: TempDir) -> Gateway {
        let log = dir.0.join("output.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
        let mut gateway = Gateway {
            name,
            child,
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = gateway.child.try_wait() {
                panic!("{name} exited ({status}): {}", gateway.output());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return gateway;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not listen on {port} within 20 s: {}",
                gateway.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("output.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx with docs/gateways/nginx.conf inside a minimal main configuration
/// of the test's own (pid, temporary paths and error log in its directory;
/// one process, in the foreground).
fn nginx(apikeys: SocketAddr, app: SocketAddr) -> Gateway {
    let nginx = program("nginx");
    let dir = TempDir::new("nginx");
    let port = free_port();
    let listening = format!("listen 127.0.0.1:{port};");
    let site = documented_site(
        "nginx.conf",
        "nginx",
        apikeys,
        app,
        ("listen 8000;", &listening),
    );
    std::fs::write(dir.0.join("site.conf"), site).expect("site.conf");
    let root = dir.0.display();
    let main = format!(
        "worker_processes 1;\n\
         pid {root}/nginx.pid;\n\
         error_log stderr;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
             access_log off;\n\
             client_body_temp_path {root}/body;\n\
             proxy_temp_path {root}/proxy;\n\
             fastcgi_temp_path {root}/fastcgi;\n\
             uwsgi_temp_path {root}/uwsgi;\n\
             scgi_temp_path {root}/scgi;\n\
             include {root}/site.conf;\n\
         }}\n"
    );
    let conf = dir.0.join("nginx.conf");
    std::fs::write(&conf, main).expect("nginx.conf");
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(&dir.0)
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off; master_process off;"]);
    Gateway::start("nginx", command, port, dir)
}

/// Caddy with docs/gateways/Caddyfile, behind global options of the test's
/// own (no admin endpoint, no automatic HTTPS), its state in its directory.
fn caddy(apikeys: SocketAddr, app: SocketAddr) -> Gateway {
    let caddy = program("caddy");
    let dir = TempDir::new("caddy");
    let port = free_port();
    let listening = format!("http://127.0.0.1:{port} {{");
    let site = documented_site(
        "Caddyfile",
        "caddyfile",
        apikeys,
        app,
        (":8000 {", &listening),
    );
    let conf = dir.0.join("Caddyfile");
    std::fs::write(
        &conf,
        format!("{{\n\tadmin off\n\tauto_https off\n}}\n\n{site}"),
    )
    .expect("Caddyfile");
    let mut command = Command::new(caddy);
    command
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", &dir.0)
        .env("XDG_CONFIG_HOME", &dir.0)
        .env("XDG_DATA_HOME", &dir.0);
    Gateway::start("caddy", command, port, dir)
}

/// The upstream: answers every request 200 with the headers it received,
/// one `name: value` line each (names in lower case), over kept-alive
/// connections.
fn echo_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the upstream");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || echo(stream));
        }
    });
    addr
}

fn echo(stream: TcpStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut lines = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim().to_ascii_lowercase();
                if name == "content-length" {
                    length = value.trim().parse().unwrap_or(0);
                }
                lines.push(format!("{name}: {}", value.trim()));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let text = lines.join("\n");
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The headers the upstream received, by name (a repeated name: its
/// values in order).
async fn echoed(response: Response) -> BTreeMap<String, Vec<String>> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in response.text().await.expect("body").lines() {
        if let Some((name, value)) = line.split_once(": ") {
            headers
                .entry(name.to_owned())
                .or_default()
                .push(value.to_owned());
        }
    }
    headers
}

/// A client whose connections come from `127.0.0.<n>`.
fn client_from(n: u8) -> Client {
    Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()
        .expect("client")
}

/// The service, trusting the gateways' address (127.0.0.1) for
/// `X-Forwarded-For`, with a low failure limit.
async fn service() -> Served {
    serve_with(&Settings {
        workers: Some(2),
        failure_limit: FailureLimitConfig {
            limit: FAILURE_LIMIT,
            window: Duration::from_secs(60),
            trusted_proxies: TrustedProxies::parse("127.0.0.1").expect("proxies"),
            ..FailureLimitConfig::default()
        },
        ..Settings::default()
    })
    .await
}

/// Calls the service's own API with the tenant's live key.
async fn api(served: &Served, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut request = Client::new()
        .request(method, format!("http://{}{path}", served.addr))
        .header("Authorization", format!("Bearer {}", served.tenant.live))
        .header("X-Tenant-ID", &served.tenant.id);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("send");
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

/// A new key with `scopes`: (id, full key).
async fn new_key(served: &Served, scopes: Value) -> (String, String) {
    let created = api(
        served,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"name": "Gateway client", "type": "secret", "scopes": scopes})),
    )
    .await;
    (
        created["id"].as_str().expect("id").to_owned(),
        created["key"].as_str().expect("key").to_owned(),
    )
}

/// A key made through the domain with restrictions and metadata (the API's
/// fields for them are another change's): (id, full key). Made before the
/// service ever sees it, so its first use reads it from the database.
fn restricted_key(
    served: &Served,
    key_type: domain::KeyType,
    allowed_ips: &[&str],
    allowed_origins: Option<&[&str]>,
) -> (String, String) {
    let store = served.db.store();
    let service = apikeys::application::service(
        &store,
        domain::testing::TestClock::default(),
        common::hash_key(),
    );
    let live = domain::PlainKey::parse(&served.tenant.live).expect("live key");
    let tenant = served.tenant.id.parse().expect("tenant id");
    let caller =
        domain::Authenticator::authenticate(&service, &domain::Credentials::new(live, tenant))
            .expect("the live key");
    let created = service
        .create(
            &domain::Principal::of(&caller),
            None,
            domain::CreateKey {
                name: domain::KeyName::parse("Restricted gateway client").expect("name"),
                key_type,
                mode: Some(domain::Mode::Live),
                scopes: domain::Scopes::parse(["users:read"]).expect("scopes"),
                expires_in: None,
                limits: domain::UsageLimits::default(),
                restrictions: domain::KeyRestrictions {
                    allowed_ips: Some(
                        domain::AllowedIps::parse(allowed_ips.iter().copied()).expect("ips"),
                    ),
                    allowed_origins: allowed_origins.map(|o| {
                        domain::AllowedOrigins::parse(o.iter().copied()).expect("origins")
                    }),
                },
                metadata: domain::Metadata::new([("plan".to_owned(), "pro".to_owned())])
                    .expect("metadata"),
            },
        )
        .expect("create the key");
    (created.key.id.to_string(), created.secret.into_secret())
}

/// The error body's code, checked to be the documented JSON shape.
async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(
        body["error"]["message"].is_string() && body["error"]["request_id"].is_string(),
        "{body}"
    );
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Everything the documentation promises, through one gateway: the
/// documented configuration asks for `users:read`.
async fn through(gateway: &Gateway, served: &Served) {
    let name = gateway.name;
    let client = client_from(2);
    let (id, key) = new_key(served, json!(["users:read"])).await;

    // A valid key reaches the upstream with the key's headers, and a
    // client's own X-ApiKey-* headers do not pass as ours.
    let response = client
        .get(gateway.url("/orders?x=1"))
        .header("Authorization", format!("Bearer {key}"))
        .header("X-ApiKey-Id", "key_FORGED")
        .header("X-ApiKey-Metadata", "Zm9yZ2Vk")
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200, "{name}");
    let headers = echoed(response).await;
    assert_eq!(
        headers.get("x-apikey-id"),
        Some(&vec![id.clone()]),
        "{name}: {headers:?}"
    );
    assert_eq!(
        headers.get("x-apikey-tenant-id"),
        Some(&vec![served.tenant.id.clone()]),
        "{name}"
    );
    assert_eq!(
        headers.get("x-apikey-scopes"),
        Some(&vec!["users:read".to_owned()]),
        "{name}"
    );
    assert_eq!(
        headers.get("x-apikey-type"),
        Some(&vec!["secret".to_owned()]),
        "{name}"
    );
    assert_eq!(
        headers.get("x-apikey-mode"),
        Some(&vec!["live".to_owned()]),
        "{name}"
    );
    assert_eq!(
        headers.get("x-apikey-metadata"),
        None,
        "{name}: no metadata, none forged"
    );

    // X-API-Key works as well.
    let response = client
        .get(gateway.url("/"))
        .header("X-API-Key", &key)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200, "{name}");

    // A key without the scope: 403 with the JSON body.
    let (_, narrow) = new_key(served, json!(["sessions:read"])).await;
    let response = client
        .get(gateway.url("/orders"))
        .header("Authorization", format!("Bearer {narrow}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403, "{name}");
    assert_eq!(error_code(response).await, "insufficient_scope", "{name}");

    // A revoked key: 401 with WWW-Authenticate and the JSON body.
    api(served, Method::DELETE, &format!("/v1/api-keys/{id}"), None).await;
    let response = client
        .get(gateway.url("/orders"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 401, "{name}");
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(challenges, ["Bearer"], "{name}");
    assert_eq!(error_code(response).await, "api_key_revoked", "{name}");

    // A key limited by address is judged by the end client's address
    // (X-Forwarded-For from the trusted gateway), not the gateway's: allowed
    // for 127.0.0.2 only, refused for 127.0.0.4; a key allowed for the
    // gateway's own address (127.0.0.1) is refused to its clients. Its
    // metadata reaches the upstream.
    let (only_id, only) = restricted_key(served, domain::KeyType::Secret, &["127.0.0.2"], None);
    let response = client
        .get(gateway.url("/"))
        .header("Authorization", format!("Bearer {only}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200, "{name}");
    let headers = echoed(response).await;
    assert_eq!(headers.get("x-apikey-id"), Some(&vec![only_id]), "{name}");
    // {"plan":"pro"}, base64url without padding.
    assert_eq!(
        headers.get("x-apikey-metadata"),
        Some(&vec!["eyJwbGFuIjoicHJvIn0".to_owned()]),
        "{name}"
    );
    let response = client_from(4)
        .get(gateway.url("/"))
        .header("Authorization", format!("Bearer {only}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403, "{name}");
    assert_eq!(error_code(response).await, "ip_not_allowed", "{name}");
    let (_, gateways_own) = restricted_key(served, domain::KeyType::Secret, &["127.0.0.1"], None);
    let response = client
        .get(gateway.url("/"))
        .header("Authorization", format!("Bearer {gateways_own}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 403, "{name}");
    assert_eq!(error_code(response).await, "ip_not_allowed", "{name}");

    // A publishable key's origins: the client's Origin passes through.
    let (_, public) = restricted_key(
        served,
        domain::KeyType::Publishable,
        &["127.0.0.0/8"],
        Some(&["https://app.example.com"]),
    );
    for (origin, status) in [
        ("https://app.example.com", 200),
        ("https://evil.example.net", 403),
    ] {
        let response = client
            .get(gateway.url("/"))
            .header("X-API-Key", &public)
            .header("Origin", origin)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), status, "{name}: {origin}");
    }

    // Failed authentications from one end client (127.0.0.3): past the
    // limit, 429 with Retry-After reaches it; the other client (127.0.0.2)
    // behind the same gateway is still served.
    let flooder = client_from(3);
    let unknown = domain::PlainKey::generate(
        domain::KeyType::Secret,
        domain::Mode::Live,
        &domain::OsSecretSource,
    )
    .into_secret();
    for attempt in 1..=FAILURE_LIMIT {
        let response = flooder
            .get(gateway.url("/orders"))
            .header("Authorization", format!("Bearer {unknown}"))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), 401, "{name}: attempt {attempt}");
    }
    let response = flooder
        .get(gateway.url("/orders"))
        .header("Authorization", format!("Bearer {unknown}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429, "{name}");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name}: 429 without Retry-After"));
    assert!((1..=60).contains(&retry_after), "{name}: {retry_after}");
    assert_eq!(error_code(response).await, "too_many_requests", "{name}");
    let (_, fresh) = new_key(served, json!(["users:read"])).await;
    let response = client
        .get(gateway.url("/"))
        .header("Authorization", format!("Bearer {fresh}"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        response.status(),
        200,
        "{name}: another client is not limited"
    );
}

#[actix_web::test]
async fn nginx_auth_request_with_the_documented_configuration() {
    let served = service().await;
    let gateway = nginx(served.addr, echo_upstream());
    through(&gateway, &served).await;
    served.handle.stop(true).await;
}

#[actix_web::test]
async fn caddy_forward_auth_with_the_documented_configuration() {
    let served = service().await;
    let gateway = caddy(served.addr, echo_upstream());
    through(&gateway, &served).await;
    served.handle.stop(true).await;
}
