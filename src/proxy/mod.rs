//! The Kafka proxy in front of the destination cluster.
//!
//! listener (bootstrap + one per destination broker, or SNI on one port) -> connection
//! (TLS, frame pipeline, in-flight FIFO) -> interceptors (address rewrite, ApiVersions,
//! write guard). Every decision reads the registry's current snapshot.

mod connection;
pub mod destination;
pub mod error;
mod in_flight;
pub mod interceptors;
mod listener;
pub mod reload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dashmap::DashMap;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::metrics::ProxyMetrics;
pub use crate::config::routing::Target;
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::frame_budget::FrameBudget;
use crate::kafka::transport::{self, BoxIo, ConnectError};
use crate::registry::{Registry, Snapshot};
use destination::Destination;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no address known for destination broker {0}")]
    UnknownBroker(i32),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// A listener and the token that stops it.
struct OpenListener {
    addr: SocketAddr,
    stop: CancellationToken,
}

/// State shared by every listener and connection of the proxy.
pub struct Shared {
    pub registry: Arc<Registry>,
    pub destination: Destination,
    pub metrics: &'static ProxyMetrics,
    bootstrap_listener: Mutex<Option<OpenListener>>,
    broker_listeners: DashMap<i32, OpenListener>,
    connection_slots: Arc<Semaphore>,
    max_connections: AtomicUsize,
    /// Client request bytes buffered across every connection.
    pub request_budget: FrameBudget,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    next_bootstrap: AtomicUsize,
}

impl Shared {
    fn new(registry: Arc<Registry>, shutdown: CancellationToken) -> Self {
        let snapshot = registry.load();
        let proxy = &snapshot.config.proxy;
        let (max_connections, max_buffered) =
            (proxy.max_connections, proxy.max_buffered_request_bytes);
        Self {
            registry,
            destination: Destination::default(),
            metrics: ProxyMetrics::get(),
            bootstrap_listener: Mutex::new(None),
            broker_listeners: DashMap::new(),
            connection_slots: Arc::new(Semaphore::new(max_connections)),
            request_budget: FrameBudget::new(max_buffered),
            max_connections: AtomicUsize::new(max_connections),
            tracker: TaskTracker::new(),
            shutdown,
            next_bootstrap: AtomicUsize::new(0),
        }
    }

    /// Records a destination broker and returns the address clients must use instead.
    /// With port routing, opens the broker's listener first, so the address works by
    /// the time the client reads it.
    pub fn advertise(
        self: &Arc<Self>,
        node_id: i32,
        host: &str,
        port: i32,
    ) -> anyhow::Result<(String, i32)> {
        let snapshot = self.registry.load();
        let (proxy_host, proxy_port, listen) =
            snapshot.routing.address_of(node_id).with_context(|| {
                format!("node id {node_id} has no address under the proxy's routing")
            })?;
        self.destination.record_broker(node_id, host, port);
        if let Some(addr) = listen {
            self.ensure_broker_listener(node_id, addr)?;
        }
        Ok((proxy_host, proxy_port))
    }

    fn ensure_broker_listener(
        self: &Arc<Self>,
        node_id: i32,
        addr: SocketAddr,
    ) -> anyhow::Result<()> {
        if self
            .broker_listeners
            .get(&node_id)
            .is_some_and(|l| l.addr == addr)
        {
            return Ok(());
        }
        let stop = self.shutdown.child_token();
        listener::spawn(self.clone(), addr, Target::Broker(node_id), stop.clone())
            .with_context(|| format!("listener for destination broker {node_id} on {addr}"))?;
        if let Some(old) = self
            .broker_listeners
            .insert(node_id, OpenListener { addr, stop })
        {
            old.stop.cancel();
        }
        Ok(())
    }

    fn close_broker_listener(&self, node_id: i32) {
        if let Some((_, listener)) = self.broker_listeners.remove(&node_id) {
            tracing::info!(node_id, addr = %listener.addr, "broker listener closed");
            listener.stop.cancel();
        }
    }

    async fn connect_upstream(&self, target: Target) -> Result<BoxIo, UpstreamError> {
        let snapshot = self.registry.load();
        let config = &snapshot.config.destination;
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
                let mut servers = config.bootstrap_list();
                let len = servers.len().max(1);
                servers.rotate_left(self.next_bootstrap.fetch_add(1, Ordering::Relaxed) % len);
                servers
            }
        };
        let mut last = UpstreamError::UnknownBroker(-1);
        for addr in candidates {
            match transport::connect(
                &addr,
                config.connect_timeout(),
                snapshot.upstream_tls.as_ref(),
            )
            .await
            {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e.into(),
            }
        }
        Err(last)
    }

    /// Refreshes destination metadata; opens listeners for new brokers and closes
    /// those of brokers that left. `force` skips the once-a-second coalescing.
    pub async fn refresh_destination(self: &Arc<Self>, force: bool) -> anyhow::Result<()> {
        let snapshot = self.registry.load();
        let config = &snapshot.config.destination;
        let Some(metadata) = self
            .destination
            .fetch(config, snapshot.upstream_tls.as_ref(), force)
            .await
            .context("destination metadata refresh")?
        else {
            return Ok(());
        };
        self.metrics.destination_refreshes.increment(1);
        for broker in &metadata.brokers {
            self.advertise(broker.node_id.0, broker.host.as_str(), broker.port)?;
        }
        let snapshot = self.registry.load();
        let is_internal = |topic: &str| snapshot.is_internal(topic);
        for node_id in self.destination.apply_full_view(&metadata, &is_internal) {
            self.close_broker_listener(node_id);
        }
        Ok(())
    }

    /// True when a frame may name one of mirrorgate's own topics, by name or (for
    /// versions naming topics by id) by an id the proxy has learned.
    pub fn may_name_internal(&self, snapshot: &Snapshot, bytes: &[u8], by_id: bool) -> bool {
        if by_id {
            // Before the first refresh no id is known: decode rather than guess.
            !self.destination.is_known() || self.destination.may_name_internal_id(bytes)
        } else {
            snapshot.may_name_internal(bytes)
        }
    }

    /// The name of a destination topic id; an unknown id triggers at most one metadata
    /// refresh per `refreshed` flag (one per request), so a burst of unknown ids costs
    /// one round trip. `None`: not a topic of the destination.
    pub async fn topic_name(
        self: &Arc<Self>,
        id: &uuid::Uuid,
        refreshed: &mut bool,
    ) -> Option<StrBytes> {
        if let Some(name) = self.destination.topic_name(id) {
            return Some(name);
        }
        if !*refreshed {
            *refreshed = true;
            if let Err(e) = self.refresh_destination(false).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    side = "upstream",
                    "topic id lookup refresh failed"
                );
            }
        }
        self.destination.topic_name(id)
    }

    fn open_bootstrap_listener(self: &Arc<Self>, addr: SocketAddr) -> anyhow::Result<()> {
        let stop = self.shutdown.child_token();
        listener::spawn(self.clone(), addr, Target::Bootstrap, stop.clone())
            .with_context(|| format!("proxy.bind: cannot listen on {addr}"))?;
        let old = self
            .bootstrap_listener
            .lock()
            .map_err(|_| anyhow::anyhow!("bootstrap listener lock poisoned"))?
            .replace(OpenListener { addr, stop });
        if let Some(old) = old {
            tracing::info!(addr = %old.addr, "old bootstrap listener stops accepting");
            old.stop.cancel();
        }
        Ok(())
    }

    fn set_max_connections(&self, max: usize) {
        let old = self.max_connections.swap(max, Ordering::AcqRel);
        if max > old {
            self.connection_slots.add_permits(max - old);
        } else if max < old {
            let excess = old - max;
            let forgotten = self.connection_slots.forget_permits(excess);
            // Slots in use now are retired as their connections close.
            if forgotten < excess {
                let slots = self.connection_slots.clone();
                tokio::spawn(async move {
                    if let Ok(permits) = slots.acquire_many_owned((excess - forgotten) as u32).await
                    {
                        permits.forget();
                    }
                });
            }
        }
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
        let snapshot = registry.load();
        let shared = Arc::new(Shared::new(registry, shutdown));
        let bind = bind_addr(&snapshot)?;
        shared.open_bootstrap_listener(bind)?;
        tokio::spawn(refresh_loop(shared.clone()));
        Ok(Self { shared })
    }

    /// Ready once the destination's metadata is known (and so broker listeners bound).
    pub fn is_ready(&self) -> bool {
        self.shared.destination.is_known()
    }

    /// Switches to a new snapshot. Listener changes are prepared first (a new bootstrap
    /// address must bind), so a failure leaves the old snapshot running.
    pub async fn apply(&self, snapshot: Snapshot) -> anyhow::Result<()> {
        let shared = &self.shared;
        let old = shared.registry.load();
        let new_bind = bind_addr(&snapshot)?;
        if bind_addr(&old)? != new_bind {
            shared.open_bootstrap_listener(new_bind)?;
        }
        let routing_changed = old.routing != snapshot.routing;
        let max_connections = snapshot.config.proxy.max_connections;
        shared.registry.store(snapshot);
        shared.set_max_connections(max_connections);
        if routing_changed {
            let ids: Vec<i32> = shared.broker_listeners.iter().map(|l| *l.key()).collect();
            for id in ids {
                shared.close_broker_listener(id);
            }
        }
        // New bootstrap servers, TLS settings or routing: re-learn the brokers now.
        if let Err(e) = shared.refresh_destination(true).await {
            tracing::warn!(
                error = format!("{e:#}"),
                side = "upstream",
                "refresh after reload failed"
            );
        }
        Ok(())
    }

    /// The grace period of the active config.
    pub fn shutdown_grace(&self) -> Duration {
        self.shared.registry.load().config.proxy.shutdown_grace()
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

fn bind_addr(snapshot: &Snapshot) -> anyhow::Result<SocketAddr> {
    let bind = &snapshot.config.proxy.bind;
    bind.parse()
        .with_context(|| format!("proxy.bind '{bind}' is not ip:port"))
}

/// The longest wait between metadata attempts while the destination is unknown.
const UNKNOWN_RETRY_MAX: Duration = Duration::from_secs(8);

async fn refresh_loop(shared: Arc<Shared>) {
    let mut retry = unknown_retry();
    loop {
        let result = shared.refresh_destination(true).await;
        let interval = shared.registry.load().config.destination.metadata_refresh();
        if let Err(e) = &result {
            tracing::warn!(
                error = format!("{e:#}"),
                side = "upstream",
                "destination metadata refresh failed"
            );
        }
        let known = shared.destination.is_known();
        let delay = next_refresh(result.is_ok(), known, interval, &mut retry);
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// While the destination is unknown, retries start at 1 s and back off with jitter to
/// `UNKNOWN_RETRY_MAX`, so a fleet of instances does not knock in step.
fn unknown_retry() -> Backoff {
    Backoff::new(Duration::from_secs(1), UNKNOWN_RETRY_MAX, Jitter::Equal)
}

/// The wait before the next refresh: the interval after a success (which starts the
/// retries over) or while the last metadata still stands, else the next retry, never
/// longer than the interval.
fn next_refresh(succeeded: bool, known: bool, interval: Duration, retry: &mut Backoff) -> Duration {
    if succeeded {
        retry.reset();
        interval
    } else if known {
        interval
    } else {
        retry.next_delay().min(interval)
    }
}

#[cfg(test)]
mod refresh_tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(30);

    fn assert_within_equal_jitter(delay: Duration, step: Duration) {
        assert!(
            delay >= step / 2 && delay <= step,
            "{delay:?} is not within [{:?}, {step:?}]",
            step / 2
        );
    }

    #[test]
    fn an_unknown_destination_is_retried_later_and_later_up_to_8_s() {
        let mut retry = unknown_retry();
        for step_s in [1, 2, 4, 8, 8, 8] {
            let delay = next_refresh(false, false, INTERVAL, &mut retry);
            assert_within_equal_jitter(delay, Duration::from_secs(step_s));
        }
    }

    #[test]
    fn a_success_starts_the_retries_over_and_waits_the_interval() {
        let mut retry = unknown_retry();
        for _ in 0..5 {
            next_refresh(false, false, INTERVAL, &mut retry);
        }
        assert_eq!(next_refresh(true, true, INTERVAL, &mut retry), INTERVAL);
        let delay = next_refresh(false, false, INTERVAL, &mut retry);
        assert_within_equal_jitter(delay, Duration::from_secs(1));
    }

    #[test]
    fn a_failure_with_metadata_in_hand_waits_the_interval_and_no_retry_outlasts_it() {
        let mut retry = unknown_retry();
        assert_eq!(next_refresh(false, true, INTERVAL, &mut retry), INTERVAL);
        // Known metadata does not advance the retries.
        let delay = next_refresh(false, false, INTERVAL, &mut retry);
        assert_within_equal_jitter(delay, Duration::from_secs(1));
        let short = Duration::from_secs(3);
        for _ in 0..6 {
            assert!(next_refresh(false, false, short, &mut retry) <= short);
        }
    }
}

/// A `Shared` for unit tests of the interceptors: no listener, no destination known.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub fn shared() -> Arc<Shared> {
        let text = r#"
[proxy]
bind = "127.0.0.1:0"
advertised_host = "127.0.0.1"
broker_port_base = 19100

[destination]
bootstrap_servers = "127.0.0.1:9092"

[admin]
bind = "127.0.0.1:0"
"#;
        let config = crate::config::Config::parse(text, std::path::Path::new("test.toml"))
            .expect("the test config parses");
        let snapshot = Snapshot::build(config).expect("the test snapshot builds");
        Arc::new(Shared::new(
            Arc::new(Registry::new(snapshot)),
            CancellationToken::new(),
        ))
    }
}
