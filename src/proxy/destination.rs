//! What the proxy knows of the destination cluster: broker addresses by node id (to
//! route broker listeners upstream) and topic names by id (Produce v13 names topics by
//! id only). Learned from every Metadata response that passes through, and refreshed
//! on a timer from the destination itself, which is also the readiness signal.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use dashmap::DashMap;
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use rustls::ClientConfig;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::config::DestinationConfig;
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::kept::KeptConnection;

/// Metadata version of our own refresh: has topic ids, supported by Kafka 2.8 .. 4.x.
const METADATA_VERSION: i16 = 12;
/// Lookups of an unknown topic id trigger at most one refresh per this interval.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: i32,
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Default)]
pub struct Destination {
    brokers: DashMap<i32, BrokerAddr>,
    topic_names: DashMap<Uuid, StrBytes>,
    /// Ids of mirrorgate's own topics, for the cheap scan of frames naming topics by id.
    internal_ids: ArcSwap<Vec<Uuid>>,
    refresh: Mutex<Refresh>,
    known: AtomicBool,
}

/// When the destination was last asked, and the connection kept for the next time:
/// a refresh every 30 s costs the brokers no new connection (nor TLS and SASL
/// handshake) each time.
#[derive(Default)]
struct Refresh {
    at: Option<Instant>,
    conn: KeptConnection<DestinationConfig>,
    /// Refreshes so far: a new connection starts at the next bootstrap server, so one
    /// that accepts connections but fails the request is not asked every time.
    count: usize,
}

impl Destination {
    pub fn broker(&self, node_id: i32) -> Option<BrokerAddr> {
        self.brokers.get(&node_id).map(|b| b.clone())
    }

    /// Records a broker's real address; true when it is new or moved.
    pub fn record_broker(&self, node_id: i32, host: &str, port: i32) -> bool {
        let addr = BrokerAddr {
            host: host.to_string(),
            port,
        };
        match self.brokers.insert(node_id, addr.clone()) {
            Some(old) => old != addr,
            None => true,
        }
    }

    pub fn topic_name(&self, id: &Uuid) -> Option<StrBytes> {
        self.topic_names.get(id).map(|n| n.clone())
    }

    /// Learns topic ids from a Metadata response (v10+ carries them).
    pub fn learn_topics(&self, response: &MetadataResponse, is_internal: &dyn Fn(&str) -> bool) {
        let mut internal = self.internal_ids.load().to_vec();
        let known = internal.len();
        for topic in &response.topics {
            if let (Some(name), false) = (&topic.name, topic.topic_id.is_nil()) {
                self.topic_names.insert(topic.topic_id, name.0.clone());
                if is_internal(name.as_str()) && !internal.contains(&topic.topic_id) {
                    internal.push(topic.topic_id);
                }
            }
        }
        if internal.len() != known {
            self.internal_ids.store(Arc::new(internal));
        }
    }

    /// True when `bytes` contain the id of one of mirrorgate's own topics (a false
    /// positive only costs a decode).
    pub fn may_name_internal_id(&self, bytes: &[u8]) -> bool {
        self.internal_ids
            .load()
            .iter()
            .any(|id| memchr::memmem::find(bytes, id.as_bytes()).is_some())
    }

    /// True once the destination answered a metadata refresh.
    pub fn is_known(&self) -> bool {
        self.known.load(Ordering::Acquire)
    }

    /// Fetches the full cluster metadata from the first bootstrap server that answers.
    /// Returns `None` when another caller refreshed less than a second ago.
    pub async fn fetch(
        &self,
        config: &DestinationConfig,
        tls: Option<&Arc<ClientConfig>>,
        force: bool,
    ) -> Result<Option<MetadataResponse>, ClientError> {
        let mut refresh = self.refresh.lock().await;
        if !force
            && refresh
                .at
                .is_some_and(|at| at.elapsed() < MIN_REFRESH_INTERVAL)
        {
            return Ok(None);
        }
        let request = MetadataRequest::default().with_topics(None);
        let timeout = config.connect_timeout();
        refresh.count = refresh.count.wrapping_add(1);
        let connect = connect_first(config, tls, refresh.count);
        let response = refresh
            .conn
            .call(config.clone(), connect, |mut conn| {
                let request = request.clone();
                // A kept connection to a broker gone silent must not hold the refresh
                // (and the topic-id lookups waiting on it) for a whole request timeout.
                conn.set_request_timeout(timeout);
                async move {
                    let answer = conn.call(&request, METADATA_VERSION).await;
                    (conn, answer)
                }
            })
            .await?;
        refresh.at = Some(Instant::now());
        Ok(Some(response))
    }

    /// Applies a complete view: topic ids replaced, departed brokers forgotten.
    /// Returns the node ids that left.
    pub fn apply_full_view(
        &self,
        response: &MetadataResponse,
        is_internal: &dyn Fn(&str) -> bool,
    ) -> Vec<i32> {
        let present: HashSet<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
        let departed: Vec<i32> = self
            .brokers
            .iter()
            .map(|e| *e.key())
            .filter(|id| !present.contains(id))
            .collect();
        for id in &departed {
            self.brokers.remove(id);
        }
        let ids: HashSet<_> = response.topics.iter().map(|t| t.topic_id).collect();
        self.topic_names.retain(|id, _| ids.contains(id));
        self.internal_ids.store(Arc::default());
        self.learn_topics(response, is_internal);
        self.known.store(true, Ordering::Release);
        departed
    }
}

/// A connection to the first bootstrap server that answers, starting at the one
/// `start` picks.
async fn connect_first(
    config: &DestinationConfig,
    tls: Option<&Arc<ClientConfig>>,
    start: usize,
) -> Result<KafkaConnection, ClientError> {
    let mut servers = config.bootstrap_list();
    let len = servers.len().max(1);
    servers.rotate_left(start % len);
    let mut last_error = ClientError::Closed;
    for server in servers {
        match KafkaConnection::connect_with(
            &server,
            "mirrorgate-proxy",
            config.connect_timeout(),
            tls,
            config.sasl.as_ref(),
        )
        .await
        {
            Ok(conn) => return Ok(conn),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}
