//! The replicator: cluster links to source clusters and mirror topics copied with
//! identical offsets.
//!
//! commands (`manager`, `mirror_ops`, `link_ops`) -> records in the destination's
//! metadata topic (`store`) -> `catalog_feed` -> `controller` (the one writer of the
//! state; `reconcile`, `transitions`) -> one `task` per mirror partition and one
//! `link_runtime` actor per link. The data path:
//!
//! ```text
//!  source broker 1 ... source broker N          (one connection each, per link)
//!        |                    |
//!   fetcher (KIP-227 incremental fetch session, READ_COMMITTED, all the link's
//!        |   partitions this broker leads; asks for at most the link budget's room)
//!        |  bounded channel per partition: SourceData (records + budget charge)
//!        v
//!   task -> partition copier (fillers, header rewrite; `partition`)
//!        |
//!   producer window (idempotent producer id, sequences, up to 16 batches in flight;
//!        |           each base offset checked; the charge is returned on the ack)
//!        v
//!   produce_mux (one connection per destination broker, shared by the partitions it
//!        |       leads: one Produce request carries a batch of each)
//!        v
//!   destination leader
//! ```
//!
//! The per-link `budget` caps bytes fetched and not yet acknowledged, so a slow
//! destination slows the fetchers down instead of filling memory; the per-link
//! `throttle` caps the rate they fetch at (`mirror.replication.throttled.rate`).
//!
//! Beside the data path, each link runs a `link_runtime` actor: availability probes
//! (SOURCE_UNAVAILABLE) and the `link_jobs`: `auto_create` of mirrors, `config_sync`,
//! `offset_sync`. `final_sync` runs their final rounds on promote and failover;
//! `source_watch` keeps partition counts in step and, through `mirror_topic`, creates a
//! mirror's topic that its `mirrors --create` left uncreated.
//!
//! For the proxy, `produce_forward` (with one `forward_conn` per source broker) writes
//! Produce to mirrors of links in `mirror.produce.mode=forward` to their source.
//!
//! A cut-over (`cutover_ops` -> `cutover`) moves a link's mirrors to the destination
//! under a fleet-wide fence: every instance's `fence_member` confirms that its proxy
//! parks Produce to them before the source is checked, the mirrors promoted and the
//! fence lifted. A reverse is a cut-over that also makes the source topics mirrors of
//! the promoted ones on the link's cluster (`reverse`, writing that fleet's catalog).

/// ACL sync: the source's ACLs that `acl.filters` select, kept on the destination.
pub mod acl_sync;
pub mod auto_create;
pub mod budget;
/// Links and mirrors as the metadata topic says (pure; every instance builds the same).
pub mod catalog;
/// Tails the metadata topic into the catalog and publishes the read-only set.
pub mod catalog_feed;
/// `mirrorgate cutover`: fence, verify, promote, release, resumable from its record.
mod cutover;
mod cutover_ops;
pub use cutover_ops::{CutoverRequest, CutoverView, DryRunView};
/// Topic config sync: mirror topic configs kept in line with their source.
pub mod config_sync;
/// The only writer of the replicator's state; everything else reads its snapshots.
mod controller;
mod copy_runtime;
/// Why a mirror is FAILED: the typed reasons.
pub mod failure;
mod fence_member;
mod fetcher;
mod final_sync;
/// This instance's share of the work, through the fleet's consumer group.
pub mod fleet;
mod forward_conn;
pub mod link_config;
mod link_jobs;
mod link_ops;
pub mod link_runtime;
pub mod manager;
mod mirror_ops;
mod mirror_tasks;
mod mirror_topic;
/// Consumer-group offset sync: filtered source groups' offsets copied to mirror topics.
pub mod offset_sync;
pub mod partition;
/// `mirror.produce.mode=forward`: Produce to a mirror written to its source.
pub mod produce_forward;
pub mod produce_mux;
pub mod producer_window;
mod reconcile;
mod remote_catalog;
pub mod restore;
pub mod resume_check;
mod reverse;
pub mod secrets;
mod set_aside;
pub mod source;
mod source_watch;
mod start_offsets;
pub mod store;
mod task;
pub mod throttle;
/// The controller's decisions, pure: what runs here, what a mirror shows.
mod transitions;
/// Transactions of producers writing to forwarded mirrors, run on the source.
mod txn_forward;

use std::sync::Arc;
use std::time::Duration;

use crate::config::DestinationConfig;
use crate::kafka::admin;
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::kept::KeptConnection;
use crate::registry::Registry;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections to the destination with the proxy's current TLS and SASL settings.
#[derive(Clone)]
pub struct Destination {
    registry: Arc<Registry>,
}

impl Destination {
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    pub fn max_bytes_in_flight_per_link(&self) -> usize {
        self.registry
            .load()
            .config
            .replicator
            .max_bytes_in_flight_per_link
    }

    pub fn metadata_topic(&self) -> String {
        self.registry
            .load()
            .config
            .replicator
            .metadata_topic
            .clone()
    }

    /// -1 (the broker's default) unless the config sets it.
    pub fn metadata_topic_replication_factor(&self) -> i16 {
        self.registry
            .load()
            .config
            .replicator
            .metadata_topic_replication_factor
            .unwrap_or(-1)
    }

    /// How the destination is reached now (a connection kept across a reload that
    /// changed it is not used again).
    pub fn settings(&self) -> DestinationConfig {
        self.registry.load().config.destination.clone()
    }

    pub async fn connect(&self, addr: &str) -> Result<KafkaConnection, ClientError> {
        let snapshot = self.registry.load();
        let sasl = snapshot.config.destination.sasl.as_ref();
        KafkaConnection::connect_with(
            addr,
            "mirrorgate-replicator",
            CONNECT_TIMEOUT,
            snapshot.upstream_tls.as_ref(),
            sasl,
        )
        .await
    }

    /// The first bootstrap server that answers.
    pub async fn connect_any(&self) -> Result<KafkaConnection, ClientError> {
        let snapshot = self.registry.load();
        let config = &snapshot.config.destination;
        KafkaConnection::connect_first(
            &config.bootstrap_list(),
            "mirrorgate-replicator",
            CONNECT_TIMEOUT,
            snapshot.upstream_tls.as_ref(),
            config.sasl.as_ref(),
        )
        .await
    }

    /// The high watermark of every partition of `topic`, asked of each partition's
    /// leader; `any` is a connection to any destination broker.
    pub async fn end_offsets(
        &self,
        any: &mut KafkaConnection,
        topic: &str,
    ) -> Result<std::collections::BTreeMap<i32, i64>, admin::AdminError> {
        crate::kafka::offsets::end_offsets(
            any,
            |addr| {
                let dest = self.clone();
                async move { dest.connect(&addr).await }
            },
            topic,
        )
        .await
    }

    pub async fn connect_leader(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<KafkaConnection, ClientError> {
        self.connect_leader_through(&mut KeptConnection::default(), topic, partition)
            .await
    }

    /// As [`Self::connect_leader`], asking the leader of a connection to any broker
    /// kept in `any` (a periodic job's).
    pub async fn connect_leader_through(
        &self,
        any: &mut KeptConnection<DestinationConfig>,
        topic: &str,
        partition: i32,
    ) -> Result<KafkaConnection, ClientError> {
        let metadata = any
            .call(self.settings(), self.connect_any(), |mut conn| async move {
                let metadata = admin::metadata(&mut conn, Some(&[topic])).await;
                (conn, metadata)
            })
            .await?;
        let leader = admin::leader_of(&metadata, topic, partition).ok_or_else(|| {
            ClientError::Protocol(format!(
                "no leader for {topic}-{partition} on the destination"
            ))
        })?;
        self.connect(&leader).await
    }
}
