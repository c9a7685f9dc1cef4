//! The webhook delivery worker and the expiry scheduler of each node
//! (docs/webhooks.md).
//!
//! The worker is one thread with its own tokio runtime, HTTP client and
//! connection pool: deliveries never take the request path's threads or
//! connections. It claims due deliveries with a lease
//! ([`WebhookSettings::lease`]), attempts them concurrently, and records each
//! end; it wakes when this node commits a change, when the event feed hears
//! of another node's, and every [`WebhookSettings::poll_every`] otherwise.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use domain::{
    forbidden_address, signature_header, AllowHosts, AttemptOutcome, Clock, DeliveryStatus,
    KeyChangeListener, KeyId, ReadyDelivery, SystemClock, WebhookUrl, Webhooks,
};
use tokio::sync::{watch, Notify, Semaphore};

/// Counter: webhook attempts by `outcome`: `delivered`, `retry` (failed,
/// another attempt scheduled) or `failed` (the last attempt failed).
pub const DELIVERIES: &str = "apikeys_webhook_deliveries_total";

/// Gauge: seconds since the oldest pending delivery's event was committed
/// (0 when none is pending).
pub const OLDEST_PENDING: &str = "apikeys_webhook_oldest_pending_seconds";

/// How the worker and the scheduler run; the defaults suit a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Hosts reachable over http and at any address
    /// (`APIKEYS_WEBHOOK_ALLOW_HOSTS`).
    pub allow_hosts: AllowHosts,
    /// Whether this node runs the worker and the scheduler (endpoints can be
    /// managed either way).
    pub deliver: bool,
    /// How often the worker looks for due deliveries when nothing woke it.
    pub poll_every: Duration,
    /// How long a claimed delivery is held: another node attempts it after
    /// this when the claiming node died mid-attempt. Longer than an
    /// attempt's 10 s.
    pub lease: time::Duration,
    /// Attempts in flight at once on this node.
    pub concurrency: usize,
    /// How often the expiry events are written.
    pub expiry_every: Duration,
    /// How often the oldest pending delivery's age is measured.
    pub measure_every: Duration,
}

impl Default for WebhookSettings {
    /// No allowed host; deliveries on; a poll every 250 ms; a 30 s lease;
    /// 16 attempts at once; expiry events every 30 s (so within a minute);
    /// the age measured every 5 s.
    fn default() -> Self {
        WebhookSettings {
            allow_hosts: AllowHosts::default(),
            deliver: true,
            poll_every: Duration::from_millis(250),
            lease: time::Duration::seconds(30),
            concurrency: 16,
            expiry_every: Duration::from_secs(30),
            measure_every: Duration::from_secs(5),
        }
    }
}

/// Wakes the worker: a [`KeyChangeListener`] for the service (this node's
/// changes) and the event feed (other nodes').
#[derive(Debug, Default)]
pub struct Waker(Notify);

impl Waker {
    /// Wakes the worker now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

impl KeyChangeListener for Waker {
    fn key_changed(&self, _: &KeyId) {
        self.wake();
    }
}

/// Tells several listeners (the event feed takes one).
pub(crate) struct Fanout(pub(crate) Vec<Arc<dyn KeyChangeListener>>);

impl KeyChangeListener for Fanout {
    fn key_changed(&self, id: &KeyId) {
        for l in &self.0 {
            l.key_changed(id);
        }
    }

    fn caught_up(&self, as_of: std::time::Instant) {
        for l in &self.0 {
            l.caught_up(as_of);
        }
    }
}

/// The worker thread. Stopping it abandons attempts in flight (as a crash
/// would): their lease runs out and another node attempts them again.
#[derive(Debug)]
pub struct DeliveryWorker {
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl DeliveryWorker {
    /// Starts the worker over `webhooks` (whose store is the worker's own
    /// pool).
    ///
    /// # Errors
    /// When the thread or its runtime cannot start.
    pub fn spawn(
        webhooks: Arc<Webhooks>,
        waker: Arc<Waker>,
        settings: &WebhookSettings,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("apikeys-webhooks")
            .build()?;
        let (stop, stopped) = watch::channel(false);
        let settings = settings.clone();
        // Present from the start (at zero), as the documentation lists them.
        for outcome in ["delivered", "retry", "failed"] {
            metrics::counter!(DELIVERIES, "outcome" => outcome).increment(0);
        }
        metrics::gauge!(OLDEST_PENDING).set(0.0);
        let thread = std::thread::Builder::new()
            .name("apikeys-webhooks".to_owned())
            .spawn(move || runtime.block_on(run(webhooks, waker, settings, stopped)))?;
        Ok(DeliveryWorker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the worker and waits for it.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the webhook worker panicked");
            }
        }
    }
}

impl Drop for DeliveryWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    webhooks: Arc<Webhooks>,
    waker: Arc<Waker>,
    settings: WebhookSettings,
    mut stopped: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let allow = Arc::new(settings.allow_hosts.clone());
    let mut measured = tokio::time::Instant::now() - settings.measure_every;
    while !*stopped.borrow() {
        if measured.elapsed() >= settings.measure_every {
            measured = tokio::time::Instant::now();
            measure(&webhooks).await;
        }
        let free = permits.available_permits();
        let mut full = false;
        if free > 0 {
            let claimer = webhooks.clone();
            let lease = settings.lease;
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match tokio::task::spawn_blocking(move || claimer.claim_due(lease, limit)).await {
                Ok(Ok(ready)) => {
                    full = ready.len() == free;
                    for delivery in ready {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            return;
                        };
                        let webhooks = webhooks.clone();
                        let allow = allow.clone();
                        tokio::spawn(async move {
                            deliver(&webhooks, &allow, delivery).await;
                            drop(permit);
                        });
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not claim webhook deliveries; retrying later");
                }
                Err(e) => tracing::error!(error = %e, "the webhook claim panicked"),
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            () = waker.0.notified() => {}
            () = tokio::time::sleep(settings.poll_every) => {}
            _ = stopped.changed() => {}
        }
    }
    // Attempts in flight are abandoned with the runtime, as a crash would
    // leave them: their lease runs out and a node attempts them again.
}

async fn measure(webhooks: &Arc<Webhooks>) {
    let webhooks = webhooks.clone();
    match tokio::task::spawn_blocking(move || webhooks.oldest_pending_age()).await {
        Ok(Ok(age)) => {
            let seconds = age.map_or(0.0, |a| a.as_seconds_f64().max(0.0));
            metrics::gauge!(OLDEST_PENDING).set(seconds);
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "could not measure pending deliveries"),
        Err(_) => {}
    }
}

/// One attempt of `ready`, and its record.
async fn deliver(webhooks: &Arc<Webhooks>, allow: &AllowHosts, ready: ReadyDelivery) {
    let outcome = attempt(allow, &ready).await;
    let finisher = webhooks.clone();
    let due = ready.due;
    let delivery = due.delivery.id;
    match tokio::task::spawn_blocking(move || finisher.finish(&due, &outcome)).await {
        Ok(Ok(record)) => {
            let outcome = match record.status {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::Pending => "retry",
                DeliveryStatus::Failed => "failed",
            };
            metrics::counter!(DELIVERIES, "outcome" => outcome).increment(1);
            tracing::debug!(%delivery, outcome, "webhook attempt");
        }
        // The lease runs out and the delivery is attempted again.
        Ok(Err(e)) => tracing::warn!(%delivery, error = %e, "could not record a webhook attempt"),
        Err(e) => tracing::error!(%delivery, error = %e, "recording a webhook attempt panicked"),
    }
}

fn failed(error: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        status: None,
        error: error.into(),
    }
}

/// The addresses `url`'s host resolves to, all of them checked: any
/// loopback, private, link-local, multicast or unspecified one refuses the
/// attempt unless the host is allowed.
///
/// # Errors
/// Why the attempt is refused, as its `last_error`.
pub async fn resolve_checked(url: &WebhookUrl, allow: &AllowHosts) -> Result<SocketAddr, String> {
    let host = url.host().trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, url.port())],
        Err(_) => tokio::net::lookup_host((host, url.port()))
            .await
            .map_err(|e| format!("could not resolve {host}: {e}"))?
            .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    if !allow.contains(host) {
        if let Some((addr, kind)) = addrs
            .iter()
            .find_map(|a| forbidden_address(a.ip()).map(|k| (a, k)))
        {
            return Err(format!(
                "refused: {host} resolves to {}, a {kind} address",
                addr.ip()
            ));
        }
    }
    Ok(first)
}

/// Sends the event once: resolved and checked first, to the address
/// checked, no redirect, 10 s in all, at most 64 KiB of the answer read.
async fn attempt(allow: &AllowHosts, ready: &ReadyDelivery) -> AttemptOutcome {
    if ready.secrets.is_empty() {
        return failed("the endpoint's secret could not be opened (was the hash key changed?)");
    }
    let url = &ready.due.url;
    let addr = match resolve_checked(url, allow).await {
        Ok(addr) => addr,
        Err(e) => return failed(e),
    };
    let host = url.host().trim_start_matches('[').trim_end_matches(']');
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(domain::webhooks::ATTEMPT_TIMEOUT)
        .no_proxy()
        .resolve(host, addr)
        .build()
    {
        Ok(client) => client,
        Err(e) => return failed(format!("could not build the HTTP client: {e}")),
    };
    let body = match serde_json::to_vec(&http_actix::EventObject::from(&ready.due.event)) {
        Ok(body) => body,
        Err(e) => return failed(format!("could not render the event: {e}")),
    };
    let msg_id = ready.due.event.id.to_string();
    // The wall clock, as receivers check it (Standard Webhooks: 5 minutes'
    // tolerance), whatever clock the schedule runs on.
    let timestamp = SystemClock.now().unix_timestamp();
    let signature = signature_header(&ready.secrets, &msg_id, timestamp, &body);
    let sent = client
        .post(url.as_str())
        .header("content-type", "application/json")
        .header("user-agent", "apikeys-webhooks/1")
        .header("webhook-id", &msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return failed("no response within 10 s"),
        Err(e) => return failed(format!("request failed: {}", without_url(&e))),
    };
    let status = response.status().as_u16();
    // Read at most 64 KiB, within the same 10 s, then drop the connection.
    let mut read = 0usize;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                if read >= domain::webhooks::MAX_RESPONSE_BYTES {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => {
                return AttemptOutcome::Failed {
                    status: Some(status),
                    error: "the response did not end within 10 s".to_owned(),
                }
            }
            Err(_) => break,
        }
    }
    if (200..300).contains(&status) {
        AttemptOutcome::Delivered { status }
    } else {
        AttemptOutcome::Failed {
            status: Some(status),
            error: format!("HTTP {status}"),
        }
    }
}

/// An error's message without its URL (which may hold a token in its path
/// or query).
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}
