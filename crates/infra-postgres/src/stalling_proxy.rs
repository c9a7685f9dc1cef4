//! A TCP proxy in front of PostgreSQL that can stop forwarding without
//! closing anything (feature `test-support`): a database whose processes are
//! frozen, or a network that drops packets, as the client sees it. Every
//! byte already acknowledged by the operating system stays unanswered, new
//! connections are accepted but never greeted, and nothing is closed, until
//! [`StallingProxy::resume`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a stalled or idle pump looks again.
const POLL: Duration = Duration::from_millis(10);

/// The proxy: listening on a free loopback port until dropped.
#[derive(Debug)]
pub struct StallingProxy {
    addr: SocketAddr,
    /// The URL it was made for, with the proxy's address in place of the
    /// database's.
    url: String,
    stalled: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl StallingProxy {
    /// A proxy to the host and port of `database_url` (a
    /// `postgres://user@host:port/db` URL), forwarding until stalled.
    ///
    /// # Panics
    /// When the URL has no `host:port` or no loopback port is free: test
    /// set-up.
    #[track_caller]
    #[expect(
        clippy::expect_used,
        reason = "test set-up: a failure is a failed test"
    )]
    pub fn start(database_url: &str) -> Self {
        let (scheme, rest) = database_url
            .split_once("://")
            .unwrap_or_else(|| panic!("not a postgres:// URL: {database_url:?}"));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, host_port)) => (format!("{user}@"), host_port),
            None => (String::new(), authority),
        };
        let target = host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("no host:port in the URL's authority {host_port:?}"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let url = format!("{scheme}://{user}{addr}/{path}");
        let stalled = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (accept_stalled, accept_stopped) = (Arc::clone(&stalled), Arc::clone(&stopped));
        std::thread::spawn(move || {
            while !accept_stopped.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let Ok(server) = TcpStream::connect(target) else {
                            continue;
                        };
                        for (from, to) in [
                            (client.try_clone(), server.try_clone()),
                            (Ok(server), Ok(client)),
                        ] {
                            if let (Ok(from), Ok(to)) = (from, to) {
                                let (stalled, stopped) =
                                    (Arc::clone(&accept_stalled), Arc::clone(&accept_stopped));
                                std::thread::spawn(move || pump(from, to, &stalled, &stopped));
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        StallingProxy {
            addr,
            url,
            stalled,
            stopped,
        }
    }

    /// The database URL through the proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops forwarding in both directions; nothing is closed.
    pub fn stall(&self) {
        self.stalled.store(true, Ordering::Release);
    }

    /// Forwards again, the bytes held meanwhile first.
    pub fn resume(&self) {
        self.stalled.store(false, Ordering::Release);
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
    }
}

/// Copies `from` to `to` until either closes or the proxy stops; reads
/// nothing while stalled.
fn pump(mut from: TcpStream, mut to: TcpStream, stalled: &AtomicBool, stopped: &AtomicBool) {
    if from.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let mut buf = [0_u8; 16 * 1024];
    while !stopped.load(Ordering::Acquire) {
        if stalled.load(Ordering::Acquire) {
            std::thread::sleep(POLL);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Read just as the proxy stalled: held back too.
                while stalled.load(Ordering::Acquire) && !stopped.load(Ordering::Acquire) {
                    std::thread::sleep(POLL);
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
