//! A TCP forwarder to PostgreSQL that a test can cut and restore, to see the
//! service answer 503 while the database is unreachable and recover after,
//! without stopping the PostgreSQL that other tests share.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Forwards `127.0.0.1:<port>` to the target while up.
pub struct Proxy {
    port: u16,
    target: SocketAddr,
    up: Arc<AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    stop_accepting: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts forwarding on a free port.
    pub fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let proxy = Proxy {
            port,
            target,
            up: Arc::new(AtomicBool::new(true)),
            streams: Arc::new(Mutex::new(Vec::new())),
            stop_accepting: Arc::new(AtomicBool::new(false)),
        };
        proxy.accept_loop(listener);
        proxy
    }

    /// The port to point a database URL at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts every connection and refuses new ones (they are accepted and
    /// closed at once, as a database that went away would look).
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for stream in self.streams.lock().expect("streams").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    fn accept_loop(&self, listener: TcpListener) {
        let up = self.up.clone();
        let streams = self.streams.clone();
        let target = self.target;
        let stop = self.stop_accepting.clone();
        thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                if !up.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut all = streams.lock().expect("streams");
                    all.push(client.try_clone().expect("clone"));
                    all.push(server.try_clone().expect("clone"));
                }
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                pipe(server, client);
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop_accepting.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so it sees the stop flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    thread::spawn(move || -> io::Result<()> {
        let result = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
        result.map(|_| ())
    });
}
