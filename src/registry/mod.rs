//! The one source of truth the proxy reads on every request: an immutable `Snapshot`
//! behind an `ArcSwap`. Writers build a new snapshot and swap it in; readers never lock.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls::{ClientConfig, ServerConfig};

use crate::config::Config;
use crate::proxy::routing::Routing;
use crate::tls::{self, TlsError};

/// What the proxy needs to decide about a request, frozen at one point in time:
/// the config and everything derived from it.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub loaded_at: std::time::SystemTime,
    pub routing: Routing,
    /// Server side of every proxy listener, when `[proxy.tls]` is set.
    pub tls: Option<Arc<ServerConfig>>,
    /// Client side towards the destination, when `[destination.tls]` is set.
    pub upstream_tls: Option<Arc<ClientConfig>>,
    /// Topics clients may not write: every mirror topic in any state but STOPPED.
    read_only_topics: HashSet<String>,
}

impl Snapshot {
    /// Builds everything the config implies (reads certificate files).
    pub fn build(config: Config) -> Result<Self, TlsError> {
        let routing = Routing::from_config(&config.proxy).ok_or_else(|| TlsError::Invalid {
            key: "proxy.routing",
            reason: "incomplete routing settings".into(),
        })?;
        let tls = match &config.proxy.tls {
            Some(server) => Some(tls::server_config(server, routing.sni().cloned())?),
            None => None,
        };
        let upstream_tls = match &config.destination.tls {
            Some(client) => Some(tls::client_config(client)?),
            None => None,
        };
        let read_only_topics = config
            .mirror_topics
            .iter()
            .map(|t| t.name.clone())
            .collect();
        Ok(Self {
            config: Arc::new(config),
            loaded_at: std::time::SystemTime::now(),
            routing,
            tls,
            upstream_tls,
            read_only_topics,
        })
    }

    pub fn is_read_only(&self, topic: &str) -> bool {
        self.read_only_topics.contains(topic)
    }

    pub fn has_read_only_topics(&self) -> bool {
        !self.read_only_topics.is_empty()
    }
}

pub struct Registry {
    current: ArcSwap<Snapshot>,
}

impl Registry {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
        }
    }

    /// The snapshot to use for one request; in-flight work keeps the one it loaded.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }
}
