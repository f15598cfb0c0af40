//! The one source of truth the proxy reads on every request: an immutable `Snapshot`
//! behind an `ArcSwap`. Writers build a new snapshot and swap it in; readers never lock.

use std::collections::HashSet;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;

/// What the proxy needs to decide about a request, frozen at one point in time.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    /// Topics clients may not write: every mirror topic in any state but STOPPED.
    read_only_topics: HashSet<String>,
}

impl Snapshot {
    pub fn from_config(config: Config) -> Self {
        let read_only_topics = config
            .mirror_topics
            .iter()
            .map(|t| t.name.clone())
            .collect();
        Self {
            config: Arc::new(config),
            read_only_topics,
        }
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
