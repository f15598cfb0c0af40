//! The Kafka proxy in front of the destination cluster.
//!
//! listener (bootstrap + one per destination broker) -> connection (frame pipeline,
//! pipelined in-flight FIFO) -> interceptors (address rewrite, ApiVersions, write guard).

mod connection;
pub mod destination;
pub mod error;
pub mod interceptors;
mod listener;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use dashmap::DashMap;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::Registry;
use destination::Destination;

/// Where a listener's connections go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Any destination bootstrap server.
    Bootstrap,
    /// The destination broker with this node id.
    Broker(i32),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Bootstrap => f.write_str("bootstrap"),
            Target::Broker(id) => write!(f, "broker-{id}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no address known for destination broker {0}")]
    UnknownBroker(i32),
    #[error("connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
}

/// State shared by every listener and connection of the proxy.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub destination: Destination,
    broker_listeners: DashMap<i32, CancellationToken>,
    connection_slots: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    next_bootstrap: AtomicUsize,
}

impl Shared {
    fn bind_ip(&self) -> anyhow::Result<IpAddr> {
        let config = self.registry.load().config.clone();
        let addr = config
            .proxy
            .bind_addr()
            .with_context(|| format!("proxy.bind '{}' is not ip:port", config.proxy.bind))?;
        Ok(addr.ip())
    }

    /// Records a destination broker and returns the address clients must use instead:
    /// (advertised_host, broker_port_base + node_id). Opens the broker's listener first,
    /// so the address works by the time the client reads it.
    pub fn advertise(
        self: &Arc<Self>,
        node_id: i32,
        host: &str,
        port: i32,
    ) -> anyhow::Result<(String, i32)> {
        let snapshot = self.registry.load();
        let proxy = &snapshot.config.proxy;
        let proxy_port = u16::try_from(i64::from(proxy.broker_port_base) + i64::from(node_id))
            .ok()
            .filter(|_| node_id >= 0)
            .with_context(|| {
                format!(
                    "node id {node_id} does not fit proxy.broker_port_base {}",
                    proxy.broker_port_base
                )
            })?;
        self.destination.record_broker(node_id, host, port);
        if !self.broker_listeners.contains_key(&node_id) {
            let addr = SocketAddr::new(self.bind_ip()?, proxy_port);
            let stop = self.shutdown.child_token();
            listener::spawn(self.clone(), addr, Target::Broker(node_id), stop.clone())
                .with_context(|| format!("listener for destination broker {node_id}"))?;
            self.broker_listeners.insert(node_id, stop);
        }
        Ok((proxy.advertised_host.clone(), i32::from(proxy_port)))
    }

    fn close_broker_listener(&self, node_id: i32) {
        if let Some((_, stop)) = self.broker_listeners.remove(&node_id) {
            tracing::info!(node_id, "destination broker left; its listener is closed");
            stop.cancel();
        }
    }

    async fn connect_upstream(&self, target: Target) -> Result<TcpStream, UpstreamError> {
        let config = self.registry.load().config.clone();
        let timeout = config.destination.connect_timeout();
        let candidates = match target {
            Target::Broker(id) => {
                let addr = self
                    .destination
                    .broker(id)
                    .ok_or(UpstreamError::UnknownBroker(id))?;
                vec![addr.to_string()]
            }
            Target::Bootstrap => {
                // Rotate the starting server so bootstrap connections spread out.
                let mut servers = config.destination.bootstrap_list();
                let len = servers.len().max(1);
                servers.rotate_left(self.next_bootstrap.fetch_add(1, Ordering::Relaxed) % len);
                servers
            }
        };
        let mut last = UpstreamError::UnknownBroker(-1);
        for addr in candidates {
            match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => {
                    last = UpstreamError::Connect {
                        addr,
                        reason: e.to_string(),
                    }
                }
                Err(_) => {
                    last = UpstreamError::Connect {
                        addr,
                        reason: format!("timed out after {timeout:?}"),
                    }
                }
            }
        }
        Err(last)
    }

    /// Refreshes destination metadata; opens listeners for new brokers and closes
    /// those of brokers that left. `force` skips the once-a-second coalescing.
    pub async fn refresh_destination(self: &Arc<Self>, force: bool) -> anyhow::Result<()> {
        let config = self.registry.load().config.clone();
        let Some(metadata) = self
            .destination
            .fetch(
                &config.destination.bootstrap_list(),
                config.destination.connect_timeout(),
                force,
            )
            .await
            .context("destination metadata refresh")?
        else {
            return Ok(());
        };
        for broker in &metadata.brokers {
            self.advertise(broker.node_id.0, broker.host.as_str(), broker.port)?;
        }
        for node_id in self.destination.apply_full_view(&metadata) {
            self.close_broker_listener(node_id);
        }
        Ok(())
    }
}

/// A running proxy: its listeners, connections and metadata refresher.
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Binds the bootstrap listener and starts the metadata refresher. Broker listeners
    /// open as brokers are discovered.
    pub fn start(registry: Arc<Registry>, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let config = registry.load().config.clone();
        let shared = Arc::new(Shared {
            registry,
            destination: Destination::default(),
            broker_listeners: DashMap::new(),
            connection_slots: Arc::new(Semaphore::new(config.proxy.max_connections)),
            tracker: TaskTracker::new(),
            shutdown,
            next_bootstrap: AtomicUsize::new(0),
        });
        let bind = config
            .proxy
            .bind_addr()
            .with_context(|| format!("proxy.bind '{}'", config.proxy.bind))?;
        listener::spawn(
            shared.clone(),
            bind,
            Target::Bootstrap,
            shared.shutdown.clone(),
        )
        .with_context(|| format!("bootstrap listener on {bind}"))?;
        tokio::spawn(refresh_loop(shared.clone()));
        Ok(Self { shared })
    }

    /// Ready once the destination's metadata is known (and so broker listeners bound).
    pub fn is_ready(&self) -> bool {
        self.shared.destination.is_known()
    }

    /// After shutdown was signalled: waits for open connections to drain their
    /// in-flight requests, up to `grace`. Returns how many were still open.
    pub async fn drain(&self, grace: Duration) -> usize {
        self.shared.tracker.close();
        if tokio::time::timeout(grace, self.shared.tracker.wait())
            .await
            .is_err()
        {
            return self.shared.tracker.len();
        }
        0
    }
}

async fn refresh_loop(shared: Arc<Shared>) {
    loop {
        let result = shared.refresh_destination(true).await;
        let interval = shared.registry.load().config.destination.metadata_refresh();
        let delay = match result {
            Ok(()) => interval,
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    side = "upstream",
                    "destination metadata refresh failed"
                );
                // Retry soon while the destination is unknown, else keep the interval.
                if shared.destination.is_known() {
                    interval
                } else {
                    Duration::from_secs(1)
                }
            }
        };
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
