//! The protocol edge over real TCP (docs/api.md, "Limits", "Abuse limits"):
//! a body that trickles in is cut off with 408 in the error shape, failed
//! authentications from one address are limited, and the heads actix
//! refuses on its own are the ones the documentation lists.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use apikeys::application::Settings;
use common::{serve_with, Served};
use domain::{KeyType, Mode, OsSecretSource, PlainKey};
use http_actix::{FailureLimitConfig, RequestLimits};

const BODY_TIMEOUT: Duration = Duration::from_secs(1);

async fn serve(failure_limit: u32) -> Served {
    serve_with(&Settings {
        workers: Some(1),
        failure_limit: FailureLimitConfig {
            limit: failure_limit,
            ..FailureLimitConfig::default()
        },
        request_limits: RequestLimits {
            body_timeout: BODY_TIMEOUT,
            ..RequestLimits::default()
        },
        ..Settings::default()
    })
    .await
}

/// Writes `head` (and then `body`, byte by byte, a byte every `gap`), and
/// reads until the server closes the connection or 15 s pass. Returns what
/// was read and whether the server closed.
fn exchange(addr: SocketAddr, head: String, body: Vec<u8>, gap: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let writer = {
        let mut stream = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for byte in body {
                std::thread::sleep(gap);
                if stream.write_all(&[byte]).is_err() {
                    return;
                }
            }
        })
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) if Instant::now() < deadline => {}
            Err(_) => break false,
        }
    };
    drop(stream);
    let _ = writer.join();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

async fn exchange_off_thread(
    addr: SocketAddr,
    head: String,
    body: Vec<u8>,
    gap: Duration,
) -> (String, bool) {
    actix_web::rt::task::spawn_blocking(move || exchange(addr, head, body, gap))
        .await
        .unwrap()
}

fn body_of(response: &str) -> serde_json::Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {response}"))
}

#[actix_web::test]
async fn a_body_that_trickles_in_is_answered_408_in_the_error_shape_and_closed() {
    // Given a body of 40 bytes promised, sent at one byte every 300 ms
    let served = serve(0).await;
    let body = br#"{"name":"slow","type":"secret","x":"yy"}"#.to_vec();
    let head = format!(
        "POST /v1/api-keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nX-Tenant-ID: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        served.tenant.live,
        served.tenant.id,
        body.len()
    );

    // When the body timeout (1 s) passes first
    let (response, closed) =
        exchange_off_thread(served.addr, head, body, Duration::from_millis(300)).await;

    // Then 408 request_timeout, as JSON with the request id, and the
    // connection is closed
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(lower.contains("\r\nconnection: close\r\n"), "{response}");
    assert!(lower.contains("\r\nx-request-id: req_"), "{response}");
    let body = body_of(&response);
    assert_eq!(body["error"]["code"], "request_timeout");
    assert_eq!(
        body["error"]["message"],
        "the request body did not arrive within 1 seconds"
    );
    assert!(closed, "the connection stayed open: {response}");
    served.handle.stop(true).await;
}

#[actix_web::test]
async fn a_body_that_never_comes_is_answered_408_on_verify_too() {
    // Given a head promising a body, and then nothing at all (the body
    // deadline is armed only when the body is still missing on the
    // handler's second poll: `body::within`)
    let served = serve(0).await;
    let head = format!(
        "POST /v1/api-keys/verify HTTP/1.1\r\nHost: x\r\nX-Tenant-ID: {}\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n",
        served.tenant.id,
    );

    // When the body timeout (1 s) passes
    let (response, closed) =
        exchange_off_thread(served.addr, head, Vec::new(), Duration::ZERO).await;

    // Then 408 request_timeout, `no-store` as on every verify answer, and
    // the connection is closed
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let lower = response.to_ascii_lowercase();
    assert!(
        lower.contains("\r\ncache-control: no-store\r\n"),
        "{response}"
    );
    assert_eq!(body_of(&response)["error"]["code"], "request_timeout");
    assert!(closed, "the connection stayed open: {response}");
    served.handle.stop(true).await;
}

#[actix_web::test]
async fn failed_authentications_over_real_http_reach_429() {
    let served = serve(2).await;
    let client = reqwest::Client::new();
    let list = |key: String| {
        client
            .get(format!("http://{}/v1/api-keys", served.addr))
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Tenant-ID", served.tenant.id.clone())
            .send()
    };
    let stranger =
        || PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret();
    for _ in 0..2 {
        assert_eq!(list(stranger()).await.unwrap().status(), 401);
    }
    let r = list(stranger()).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "60");
    let r = list(served.tenant.live.clone()).await.unwrap();
    assert_eq!(r.status(), 429);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_requests");
    served.handle.stop(true).await;
}

#[actix_web::test]
async fn heads_beyond_actixs_own_limits_get_its_bare_status_as_documented() {
    // docs/api.md, "Limits": these are answered by actix-http before any of
    // our code runs, with no body and no request id.
    let served = serve(0).await;
    let mut many = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("x-filler-{i}: 1\r\n"));
    }
    many.push_str("\r\n");
    let (response, _) = exchange_off_thread(served.addr, many, Vec::new(), Duration::ZERO).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("x-request-id"));

    let conflict = "POST /v1/leaked-keys HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello".to_owned();
    let (response, _) =
        exchange_off_thread(served.addr, conflict, Vec::new(), Duration::ZERO).await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(!response.to_ascii_lowercase().contains("x-request-id"));

    // Within actix's limits but over ours: our JSON error.
    let mut over_ours = String::from("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..70 {
        over_ours.push_str(&format!("x-filler-{i}: 1\r\n"));
    }
    over_ours.push_str("\r\n");
    let (response, _) =
        exchange_off_thread(served.addr, over_ours, Vec::new(), Duration::ZERO).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert_eq!(
        body_of(&response)["error"]["code"],
        "request_header_fields_too_large"
    );
    served.handle.stop(true).await;
}
