//! The one source of truth the proxy reads on every request: an immutable `Snapshot`
//! behind an `ArcSwap`. Writers build a new snapshot and swap it in; readers never lock.

pub mod fence;
pub mod forward;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;

use rustls::{ClientConfig, ServerConfig};

use crate::config::routing::Routing;
use crate::config::Config;
use crate::tls::{self, TlsError};
use fence::{Fence, InFlight, Lease};
use forward::{ForwardTarget, ProduceForwarder};

/// What the proxy needs to decide about a request, frozen at one point in time:
/// the config and everything derived from it.
#[derive(Clone)]
pub struct Snapshot {
    pub config: Arc<Config>,
    pub loaded_at: std::time::SystemTime,
    pub routing: Routing,
    /// Server side of every proxy listener, when `[proxy.tls]` is set.
    pub tls: Option<Arc<ServerConfig>>,
    /// Client side towards the destination, when `[destination.tls]` is set.
    pub upstream_tls: Option<Arc<ClientConfig>>,
    /// Mirror topics declared in the config file: always read-only.
    config_mirrors: HashSet<String>,
    /// Mirror topics of cluster links in any state but STOPPED (set by the catalog feed).
    link_mirrors: Arc<HashSet<String>>,
    /// ACTIVE mirrors of links in `mirror.produce.mode=forward`: Produce goes to the
    /// link's source (a subset of `link_mirrors`).
    forwarded: Arc<HashMap<String, ForwardTarget>>,
    /// Who forwards them (installed by the replicator at start).
    forwarder: Option<Arc<dyn ProduceForwarder>>,
    /// Topics under a cut-over's fence: their Produce is parked (`produce_fence`).
    fenced: Arc<HashMap<String, Fence>>,
    /// Some client producer's transactions are forwarded to a source: transactional
    /// requests are looked at even where no mirror is left (`txn_forward`).
    transactional_forwards: bool,
    /// What the catalog feed knows: until it has read the metadata topic up to its end,
    /// any topic may be a mirror.
    catalog: CatalogStatus,
}

/// Whether the read-only set is known, and what keeps it from being (or fresh).
#[derive(Debug, Clone, Default)]
pub struct CatalogStatus {
    pub loaded: bool,
    pub problem: Option<Arc<str>>,
}

/// Prefix of mirrorgate's own topics on the destination; no client may touch them.
pub const INTERNAL_TOPIC_PREFIX: &str = "_mirrorgate-";

/// Why the proxy keeps a client's write off a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// A mirror topic (any state but STOPPED): read-only, Confluent's refusal.
    Mirror,
    /// One of mirrorgate's own topics (the metadata topic holds sealed credentials and
    /// the catalog): no writes, no reads, TOPIC_AUTHORIZATION_FAILED.
    Internal,
    /// Named by a topic id the destination does not know, even after a refresh: never
    /// forwarded while topics are guarded, as a mirror learned late could hide behind it.
    UnknownTopicId,
    /// Any topic while the catalog is not loaded: it may be a mirror, so writes are
    /// refused with a retriable error until it is known.
    CatalogLoading,
    /// Produce parked at a cut-over's fence for as long as it may wait: answered with a
    /// retriable error, so the producer sends it again.
    Fenced,
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
        let config_mirrors = config
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
            config_mirrors,
            link_mirrors: Arc::default(),
            forwarded: Arc::default(),
            forwarder: None,
            fenced: Arc::default(),
            transactional_forwards: false,
            catalog: CatalogStatus::default(),
        })
    }

    /// Clients may not write to a mirror topic in any state but STOPPED.
    pub fn is_read_only(&self, topic: &str) -> bool {
        self.config_mirrors.contains(topic) || self.link_mirrors.contains(topic)
    }

    /// True when some write may have to be refused: mirrors exist, or the catalog is not
    /// loaded (every topic is then guarded).
    pub fn has_read_only_topics(&self) -> bool {
        !self.catalog.loaded || !self.config_mirrors.is_empty() || !self.link_mirrors.is_empty()
    }

    /// Where Produce to `topic` is forwarded, when it is an ACTIVE mirror of a link in
    /// forward mode and this instance can forward.
    pub fn forward_of(&self, topic: &str) -> Option<(&ForwardTarget, &Arc<dyn ProduceForwarder>)> {
        let target = self.forwarded.get(topic)?;
        Some((target, self.forwarder.as_ref()?))
    }

    /// True when some mirror's Produce is forwarded.
    pub fn forwards_any(&self) -> bool {
        !self.forwarded.is_empty()
    }

    /// The fence holding Produce to `topic`, if a cut-over fences it.
    pub fn fence_of(&self, topic: &str) -> Option<&Fence> {
        self.fenced.get(topic)
    }

    pub fn fences_any(&self) -> bool {
        !self.fenced.is_empty()
    }

    /// True when some client producer's transactions are forwarded to a source.
    pub fn forwards_transactions(&self) -> bool {
        self.transactional_forwards && self.forwarder.is_some()
    }

    /// Who forwards writes (and transactions) to links' sources, when installed.
    pub fn forwarder(&self) -> Option<&Arc<dyn ProduceForwarder>> {
        self.forwarder.as_ref()
    }

    /// True when some mirror of `link` is forwarded.
    pub fn forwards_link(&self, link: &str) -> bool {
        self.forwarded.values().any(|t| &*t.link == link)
    }

    pub fn catalog(&self) -> &CatalogStatus {
        &self.catalog
    }

    /// mirrorgate's own topics: the configured metadata topic and every `_mirrorgate-*`.
    pub fn is_internal(&self, topic: &str) -> bool {
        topic.starts_with(INTERNAL_TOPIC_PREFIX) || topic == self.config.replicator.metadata_topic
    }

    /// What guards `topic` against clients, if anything.
    pub fn guard_of(&self, topic: &str) -> Option<Guard> {
        if self.is_internal(topic) {
            Some(Guard::Internal)
        } else if self.is_read_only(topic) {
            Some(Guard::Mirror)
        } else if !self.catalog.loaded {
            Some(Guard::CatalogLoading)
        } else {
            None
        }
    }

    /// True when `bytes` (a request or response naming topics by name) may name an
    /// internal topic: a cheap scan that lets frames of other topics pass undecoded
    /// while no mirror exists. A false positive only costs a decode.
    pub fn may_name_internal(&self, bytes: &[u8]) -> bool {
        memchr::memmem::find(bytes, INTERNAL_TOPIC_PREFIX.as_bytes()).is_some()
            || memchr::memmem::find(bytes, self.config.replicator.metadata_topic.as_bytes())
                .is_some()
    }
}

/// What the catalog feed publishes: the read-only set and what the proxy does about it.
#[derive(Debug, Default)]
pub struct LinkMirrors {
    pub read_only: HashSet<String>,
    pub forwarded: HashMap<String, ForwardTarget>,
    pub fenced: HashMap<String, Fence>,
    pub transactional_forwards: bool,
    pub loaded: bool,
    pub problem: Option<String>,
}

pub struct Registry {
    current: ArcSwap<Snapshot>,
    /// Serializes writers (config reload, replicator) so neither loses the other's part.
    writers: std::sync::Mutex<()>,
    /// Ticks on every change of the link mirrors: parked writes look again.
    changes: tokio::sync::watch::Sender<()>,
    in_flight: Arc<InFlight>,
    lease: Lease,
}

impl Registry {
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
            writers: std::sync::Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(()),
            in_flight: Arc::default(),
            lease: Lease::default(),
        }
    }

    /// Changes of the link mirrors (and fences), from now on.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.changes.subscribe()
    }

    /// This instance's lease on forwarding (renewed by its heartbeats).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Forwarded Produce requests still on their way to a source.
    pub fn in_flight(&self) -> &Arc<InFlight> {
        &self.in_flight
    }

    /// The snapshot to use for one request; in-flight work keeps the one it loaded.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a snapshot built from a (re)loaded config; the replicator's mirror
    /// set carries over.
    pub fn store(&self, mut snapshot: Snapshot) {
        let _writer = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load();
        snapshot.link_mirrors = current.link_mirrors.clone();
        snapshot.forwarded = current.forwarded.clone();
        snapshot.forwarder = current.forwarder.clone();
        snapshot.fenced = current.fenced.clone();
        snapshot.transactional_forwards = current.transactional_forwards;
        snapshot.catalog = current.catalog.clone();
        self.current.store(Arc::new(snapshot));
    }

    /// Replaces the set of read-only cluster-link mirror topics (which of them are
    /// forwarded, which fenced) and the catalog status.
    pub fn set_link_mirrors(&self, mirrors: LinkMirrors) {
        let _writer = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Snapshot::clone(&self.current.load());
        next.link_mirrors = Arc::new(mirrors.read_only);
        next.forwarded = Arc::new(mirrors.forwarded);
        next.fenced = Arc::new(mirrors.fenced);
        next.transactional_forwards = mirrors.transactional_forwards;
        next.catalog = CatalogStatus {
            loaded: mirrors.loaded,
            problem: mirrors.problem.map(Arc::from),
        };
        self.current.store(Arc::new(next));
        self.changes.send_replace(());
    }

    /// Installs who forwards Produce for mirrors in forward mode.
    pub fn set_forwarder(&self, forwarder: Arc<dyn ProduceForwarder>) {
        let _writer = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Snapshot::clone(&self.current.load());
        next.forwarder = Some(forwarder);
        self.current.store(Arc::new(next));
    }
}
