//! How long a key event takes from its commit to the receiver of a webhook
//! (docs/webhooks.md, docs/performance.md).
//!
//! ```text
//! cargo run --release -p apikeys --example webhook_delay
//! ```
//!
//! Starts two `Application`s, A and B, in this process on a scratch database
//! (created, migrated and dropped as the tests' `TestDatabase` does; needs
//! PostgreSQL as the tests do), and a receiver on a local port. A runs no
//! delivery worker; B does. Two series of 100 trials, one at a time: a key
//! created through B (B's worker is woken by its own commit), then through
//! A (B's worker is woken by its event feed). A trial's delay runs from
//! sending the POST (so it includes the commit: an upper bound of commit →
//! receiver) to the receiver's hit. Prints p50, p99 and p100 in
//! milliseconds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use apikeys::application::Settings;
use domain::AllowHosts;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::{millis, percentile, Node, TwoPools};

const TRIALS: usize = 100;
const GIVE_UP: Duration = Duration::from_secs(10);

type Hits = Arc<Mutex<HashMap<String, Instant>>>;

/// A node's settings: deliveries to the local receiver allowed, and made
/// by this node's worker only if `deliver`.
fn settings(deliver: bool) -> Settings {
    Settings {
        workers: Some(2),
        services: composition::Settings {
            webhooks: composition::WebhookSettings {
                allow_hosts: AllowHosts::new(["127.0.0.1"]),
                deliver,
                ..composition::WebhookSettings::default()
            },
            ..composition::Settings::default()
        },
        ..Settings::default()
    }
}

async fn hit(
    body: actix_web::web::Bytes,
    hits: actix_web::web::Data<Mutex<HashMap<String, Instant>>>,
) -> actix_web::HttpResponse {
    let at = Instant::now();
    if let Ok(event) = serde_json::from_slice::<Value>(&body) {
        if let Some(key) = event["key_id"].as_str() {
            if let Ok(mut hits) = hits.lock() {
                hits.insert(key.to_owned(), at);
            }
        }
    }
    actix_web::HttpResponse::Ok().finish()
}

async fn series(
    http: &Client,
    via: &Node,
    tenant: &str,
    admin: &str,
    hits: &Hits,
) -> anyhow::Result<Vec<Duration>> {
    let mut delays = Vec::with_capacity(TRIALS);
    for i in 0..TRIALS {
        let sent = Instant::now();
        let response = http
            .post(format!("{}/v1/api-keys", via.base))
            .header("Authorization", format!("Bearer {admin}"))
            .header("X-Tenant-ID", tenant)
            .json(&json!({"name": format!("Trial {i}"), "type": "secret"}))
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::CREATED,
            "creating a key: {}",
            response.status()
        );
        let body: Value = response.json().await?;
        let id = body["id"].as_str().context("id")?.to_owned();
        loop {
            let at = hits.lock().ok().and_then(|h| h.get(&id).copied());
            if let Some(at) = at {
                delays.push(at.duration_since(sent));
                break;
            }
            ensure!(
                sent.elapsed() < GIVE_UP,
                "no delivery of {id} after {GIVE_UP:?}"
            );
            actix_web::rt::time::sleep(Duration::from_micros(200)).await;
        }
    }
    delays.sort();
    Ok(delays)
}

fn report(what: &str, delays: &[Duration]) {
    println!(
        "{what}: p50 {:.1} ms, p99 {:.1} ms, p100 {:.1} ms",
        millis(percentile(delays, 0.50)),
        millis(percentile(delays, 0.99)),
        millis(percentile(delays, 1.00)),
    );
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let TwoPools {
        db,
        hash_key,
        store_a,
        store_b,
        tenant,
        admin,
    } = TwoPools::new()?;

    let hits: Hits = Arc::default();
    let data = actix_web::web::Data::from(hits.clone());
    let receiver = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .default_service(actix_web::web::to(hit))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))?;
    let port = receiver.addrs()[0].port();
    let receiver = receiver.run();
    let receiver_handle = receiver.handle();
    actix_web::rt::spawn(receiver);

    let a = Node::start(&store_a, hash_key.clone(), &settings(false))?;
    let b = Node::start(&store_b, hash_key, &settings(true))?;
    let http = Client::new();
    let response = http
        .post(format!("{}/v1/webhook-endpoints", b.base))
        .header("Authorization", format!("Bearer {admin}"))
        .header("X-Tenant-ID", &tenant)
        .json(
            &json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["api_key.created"]}),
        )
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::CREATED,
        "creating the endpoint: {}",
        response.status()
    );

    let local = series(&http, &b, &tenant, &admin, &hits).await?;
    let remote = series(&http, &a, &tenant, &admin, &hits).await?;
    a.stop().await?;
    b.stop().await?;
    receiver_handle.stop(true).await;
    drop(db);

    println!("command: cargo run [--release] -p apikeys --example webhook_delay");
    println!(
        "{TRIALS} events each, from sending the POST that commits the event to the receiver's hit:"
    );
    report("event made on the delivering node", &local);
    report(
        "event made on another node (woken by its event feed)",
        &remote,
    );
    Ok(())
}
