//! A TCP port that lets clients connect but holds their connections until the test opens
//! it, then relays each to the proxy. A JVM client takes seconds to start; a test that
//! needs its first request inside a short window starts it early behind a gate and
//! opens the gate when the window begins.

use std::io::Write;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::eventually;

#[derive(Default)]
struct Held {
    /// Where connections go once the gate is open.
    target: Option<String>,
    /// Connections accepted while the gate was closed.
    waiting: Vec<TcpStream>,
    accepted: usize,
}

pub struct Gate {
    pub addr: String,
    pub port: u16,
    held: Arc<Mutex<Held>>,
    stop: Arc<AtomicBool>,
}

impl Gate {
    pub fn new() -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a gate port");
        let local = listener.local_addr().expect("gate address");
        let held = Arc::new(Mutex::new(Held::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (accept_held, accept_stop) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let mut held = accept_held.lock().unwrap();
                held.accepted += 1;
                match &held.target {
                    Some(target) => relay(stream, target.clone()),
                    None => held.waiting.push(stream),
                }
            }
        });
        Gate {
            addr: local.to_string(),
            port: local.port(),
            held,
            stop,
        }
    }

    /// Waits until `n` connections have come in (the clients are up and asking).
    pub fn wait_for_clients(&self, n: usize) {
        eventually(
            &format!("{n} client connection(s) at the gate"),
            Duration::from_secs(120),
            || (self.held.lock().unwrap().accepted >= n).then_some(()),
        );
    }

    /// Relays every held connection, and every later one, to `target`.
    pub fn open(&self, target: &str) {
        let mut held = self.held.lock().unwrap();
        held.target = Some(target.to_string());
        for stream in held.waiting.drain(..) {
            relay(stream, target.to_string());
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Copies bytes both ways between `client` and a new connection to `target`, each
/// direction on its own thread, until either side closes.
fn relay(client: TcpStream, target: String) {
    std::thread::spawn(move || {
        let Ok(upstream) = TcpStream::connect(&target) else {
            let _ = client.shutdown(Shutdown::Both);
            return;
        };
        let pipes = [
            (client.try_clone(), upstream.try_clone()),
            (upstream.try_clone(), client.try_clone()),
        ];
        for (from, to) in pipes {
            let (Ok(mut from), Ok(mut to)) = (from, to) else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.flush();
                let _ = to.shutdown(Shutdown::Write);
            });
        }
    });
}
