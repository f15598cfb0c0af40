//! Tails the metadata topic into the `catalog`, on every instance (replicating or not),
//! and publishes it: the read-only set to the registry (so the proxy refuses writes to
//! mirrors), the whole view to whoever subscribes (the replicator).
//!
//! Until the feed has read the topic from its log start up to the high watermark it
//! saw at start, the instance does not know which topics are mirrors: the registry says
//! so and the proxy refuses writes to every topic it cannot rule out (fail closed).
//! After that it long-polls, so a change made through any instance is enforced here
//! within one round trip.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::catalog::{Catalog, Invalid, Outcome};
use super::partition::{log_end_offset, log_start_offset};
use super::secrets::Sealer;
use super::{store, Destination};
use crate::config::DestinationConfig;
use crate::kafka::admin::{self, topic_name};
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::KafkaConnection;
use crate::kafka::error_code::{OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION};
use crate::kafka::kept::KeptConnection;
use crate::kafka::record_batch::RecordBatches;
use crate::kafka::record_codec::decode_records;
use crate::registry::{LinkMirrors, Registry};

/// Bytes asked for per fetch (a soft limit: one larger batch comes whole, KIP-74; the
/// client's frame limit bounds that).
const FETCH_MAX_BYTES: i32 = 16 << 20;
/// Long-poll wait once loaded: changes arrive as soon as they are written.
const LONG_POLL_MS: i32 = 500;
/// How often a missing metadata topic is looked for again.
const ABSENT_RECHECK: Duration = Duration::from_millis(500);
const FETCH_VERSION: i16 = 12;

/// The catalog at one point of the log.
#[derive(Debug, Clone, Default)]
pub struct CatalogView {
    pub catalog: Arc<Catalog>,
    /// Every record before this offset is applied.
    pub next_offset: i64,
    /// Read up to the end seen at start; until then nothing is known for sure.
    pub loaded: bool,
    /// Why the feed is not (yet) loaded, or last failed.
    pub problem: Option<String>,
}

/// The running feed; dropping it stops the task.
pub struct CatalogFeed {
    view: watch::Receiver<Arc<CatalogView>>,
    stop: CancellationToken,
}

impl Drop for CatalogFeed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error("the metadata topic was not read up to offset {0} in time")]
    Timeout(i64),
    #[error("the catalog feed stopped")]
    Stopped,
}

impl CatalogFeed {
    /// Starts tailing. `create_topic`: replicating instances create the metadata topic
    /// when it is missing; the others take a missing topic for an empty catalog (no
    /// mirror can exist before its record does) and keep looking for it.
    pub fn start(
        dest: Destination,
        registry: Arc<Registry>,
        sealer: Option<Sealer>,
        create_topic: bool,
        shutdown: &CancellationToken,
    ) -> Self {
        let stop = shutdown.child_token();
        let (tx, view) = watch::channel(Arc::new(CatalogView {
            problem: Some("the metadata topic has not been read yet".into()),
            ..CatalogView::default()
        }));
        let tail = Tail {
            dest,
            registry,
            sealer,
            create_topic,
            tx,
            catalog: Catalog::default(),
            position: None,
            target: None,
            loaded: false,
            any: KeptConnection::default(),
            pushed: None,
        };
        tokio::spawn(tail.run(stop.clone()));
        Self { view, stop }
    }

    pub fn view(&self) -> Arc<CatalogView> {
        self.view.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<CatalogView>> {
        self.view.clone()
    }

    /// The first view that includes the record at `offset` (a write of our own).
    pub async fn applied(
        &self,
        offset: i64,
        within: Duration,
    ) -> Result<Arc<CatalogView>, WaitError> {
        applied(self.view.clone(), offset, within).await
    }
}

/// The first view of `views` that includes the record at `offset`.
pub async fn applied(
    mut views: watch::Receiver<Arc<CatalogView>>,
    offset: i64,
    within: Duration,
) -> Result<Arc<CatalogView>, WaitError> {
    let wait = async move {
        views
            .wait_for(|v| v.next_offset > offset)
            .await
            .map(|view| view.clone())
    };
    match tokio::time::timeout(within, wait).await {
        Ok(Ok(view)) => Ok(view),
        Ok(Err(_)) => Err(WaitError::Stopped),
        Err(_) => Err(WaitError::Timeout(offset)),
    }
}

struct Tail {
    dest: Destination,
    registry: Arc<Registry>,
    sealer: Option<Sealer>,
    create_topic: bool,
    tx: watch::Sender<Arc<CatalogView>>,
    catalog: Catalog,
    /// Next offset to read; None before the first read (start at the log start).
    position: Option<i64>,
    /// The high watermark seen at start: read up to it, the catalog is loaded.
    target: Option<i64>,
    loaded: bool,
    /// For the leader lookups: while the topic is absent they come every
    /// `ABSENT_RECHECK`.
    any: KeptConnection<DestinationConfig>,
    /// What the registry was last given: (catalog revision, loaded, problem).
    pushed: Option<(u64, bool, Option<String>)>,
}

/// How a session with the metadata topic's leader ended.
enum Ended {
    Absent,
    Failed(String),
}

impl Tail {
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(10),
            Jitter::Equal,
        );
        loop {
            let ended = tokio::select! {
                _ = stop.cancelled() => return,
                ended = self.session(&mut backoff) => ended,
            };
            let pause = match ended {
                Ended::Absent => ABSENT_RECHECK,
                Ended::Failed(reason) => {
                    tracing::warn!(side = "upstream", error = %reason, "metadata topic: cannot read; retrying");
                    metrics::counter!("mirrorgate_catalog_read_errors_total").increment(1);
                    self.publish(Some(reason));
                    backoff.next_delay()
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Reads from the leader until something fails.
    async fn session(&mut self, backoff: &mut Backoff) -> Ended {
        let topic = self.dest.metadata_topic();
        let mut conn = match self.leader(&topic).await {
            Ok(Some(conn)) => conn,
            Ok(None) if self.create_topic => {
                return match store::ensure_topic(&self.dest).await {
                    Ok(()) => Ended::Absent,
                    Err(e) => Ended::Failed(format!("creating the metadata topic: {e}")),
                };
            }
            Ok(None) if self.position.is_some() => {
                // It existed: keep enforcing what it said (fail closed).
                self.publish(Some(format!("the metadata topic '{topic}' is gone")));
                return Ended::Absent;
            }
            Ok(None) => {
                // Never existed: no record, so no mirror; an empty catalog is the truth.
                if !self.loaded {
                    self.loaded = true;
                    self.publish(None);
                }
                return Ended::Absent;
            }
            Err(e) => return Ended::Failed(e),
        };
        let start = match log_start_offset(&mut conn, &topic, 0).await {
            Ok(offset) => offset,
            Err(e) => return Ended::Failed(format!("log start: {e}")),
        };
        if self.position.is_none_or(|p| p < start) {
            // First read, or records we had not read yet were deleted: rebuild from
            // what is there.
            if self.position.is_some() {
                tracing::warn!(
                    topic,
                    start,
                    "metadata topic log start moved past our position; reading it again"
                );
            }
            self.catalog = Catalog::default();
            self.position = Some(start);
        }
        if self.target.is_none() {
            match log_end_offset(&mut conn, &topic, 0).await {
                Ok(end) => self.target = Some(end),
                Err(e) => return Ended::Failed(format!("high watermark: {e}")),
            }
        }
        loop {
            let position = self.position.unwrap_or(start);
            let wait = if self.loaded { LONG_POLL_MS } else { 0 };
            let (records, high_watermark) = match fetch(&mut conn, &topic, 0, position, wait).await
            {
                Ok(Fetched::Records(records, hw)) => (records, hw),
                Ok(Fetched::OutOfRange) => {
                    self.position = None;
                    return Ended::Failed("fetch position out of range".into());
                }
                Err(e) => return Ended::Failed(e),
            };
            backoff.reset();
            let mut next = apply_records(
                &mut self.catalog,
                &topic,
                records,
                position,
                self.sealer.as_ref(),
            );
            if next == position && position < high_watermark {
                // Nothing left below the high watermark (compacted away).
                next = high_watermark;
            }
            self.position = Some(next);
            metrics::gauge!("mirrorgate_catalog_lag_records")
                .set((high_watermark - next).max(0) as f64);
            let newly_loaded = !self.loaded && self.target.is_some_and(|t| next >= t);
            if newly_loaded {
                self.loaded = true;
                tracing::info!(
                    topic,
                    links = self.catalog.links().len(),
                    mirrors = self.catalog.mirrors().len(),
                    next_offset = next,
                    "catalog loaded"
                );
            }
            // No record read, nothing changed: an empty long-poll costs no view.
            if newly_loaded || next != position {
                self.publish(None);
            }
        }
    }

    /// A connection to the leader of the metadata topic; None when the topic does not
    /// exist.
    async fn leader(&mut self, topic: &str) -> Result<Option<KafkaConnection>, String> {
        let dest = &self.dest;
        let metadata = self
            .any
            .call(dest.settings(), dest.connect_any(), |mut conn| async move {
                let metadata = admin::metadata(&mut conn, Some(&[topic])).await;
                (conn, metadata)
            })
            .await
            .map_err(|e| e.to_string())?;
        match admin::partition_count(&metadata, topic) {
            Ok(_) => {}
            Err(UNKNOWN_TOPIC_OR_PARTITION) => return Ok(None),
            Err(code) => return Err(format!("metadata topic '{topic}': error {code}")),
        }
        let leader = admin::leader_of(&metadata, topic, 0)
            .ok_or_else(|| format!("metadata topic '{topic}' has no leader"))?;
        self.dest
            .connect(&leader)
            .await
            .map(Some)
            .map_err(|e| e.to_string())
    }

    /// Sends the current view to subscribers and the read-only set to the registry.
    fn publish(&mut self, problem: Option<String>) {
        let view = CatalogView {
            catalog: Arc::new(self.catalog.clone()),
            next_offset: self.position.unwrap_or(0),
            loaded: self.loaded,
            problem: if self.loaded {
                problem
            } else {
                problem.or_else(|| Some("reading the metadata topic".into()))
            },
        };
        metrics::gauge!("mirrorgate_catalog_loaded").set(if view.loaded { 1.0 } else { 0.0 });
        // Before the view goes out: whoever acts on a view (a fence's confirmation)
        // finds the proxy already enforcing it. Heartbeats alone change nothing there.
        let pushed = (view.catalog.revision(), view.loaded, view.problem.clone());
        if self.pushed.as_ref() != Some(&pushed) {
            metrics::counter!("mirrorgate_catalog_read_only_updates_total").increment(1);
            self.registry.set_link_mirrors(LinkMirrors {
                read_only: view.catalog.read_only(),
                forwarded: view.catalog.forwarded(),
                fenced: view.catalog.fenced(),
                transactional_forwards: view.catalog.has_transactional_producers(),
                loaded: view.loaded,
                problem: view.problem.clone(),
            });
            self.pushed = Some(pushed);
        }
        self.tx.send_replace(Arc::new(view));
    }
}

pub(super) enum Fetched {
    Records(Bytes, i64),
    OutOfRange,
}

/// One fetch of `topic`-`partition` at `offset` (read uncommitted): its record bytes
/// and the high watermark.
pub(super) async fn fetch(
    conn: &mut KafkaConnection,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> Result<Fetched, String> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(FETCH_MAX_BYTES)])]);
    let response = conn
        .call(&request, FETCH_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    let partition = response
        .responses
        .into_iter()
        .flat_map(|t| t.partitions)
        .next()
        .ok_or_else(|| "no partition in the fetch answer".to_string())?;
    match partition.error_code {
        0 => Ok(Fetched::Records(
            partition.records.unwrap_or_default(),
            partition.high_watermark,
        )),
        OFFSET_OUT_OF_RANGE => Ok(Fetched::OutOfRange),
        code => Err(format!("fetch error {code}")),
    }
}

/// Logs and counts a record that was not applied: the topic is ours, but anyone who
/// can write to it could have put anything there, so a bad record never stops the load.
fn skip(topic: &str, offset: i64, reason: Invalid, detail: &str) {
    tracing::warn!(
        topic,
        partition = 0,
        offset,
        reason = reason.label(),
        detail,
        "metadata record not applied"
    );
    metrics::counter!("mirrorgate_metadata_records_invalid_total", "reason" => reason.label())
        .increment(1);
}

/// Applies the records at or past `offset` of a fetched record set, with our bounded
/// decoder (kafka-protocol's reserves counts from the wire and decompresses without a
/// limit); returns the offset to fetch next. A batch that does not decode is skipped
/// whole; one whose framing is broken ends the set (the offset stops there). Public
/// for the fuzz targets in `fuzz/`.
pub fn apply_records(
    catalog: &mut Catalog,
    topic: &str,
    records: Bytes,
    mut offset: i64,
    sealer: Option<&Sealer>,
) -> i64 {
    for batch in RecordBatches::new(records) {
        let batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                skip(topic, offset, Invalid::Batch, &e.to_string());
                break;
            }
        };
        if batch.last_offset() < offset {
            continue;
        }
        let decoded = if !batch.verify_crc() {
            Err("CRC mismatch".to_string())
        } else if batch.is_control() {
            Ok(Vec::new())
        } else {
            decode_records(&batch).map_err(|e| e.to_string())
        };
        match decoded {
            Ok(decoded) => {
                for record in decoded {
                    let at = batch
                        .base_offset()
                        .saturating_add(i64::from(record.offset_delta));
                    if at < offset {
                        continue;
                    }
                    match catalog.apply(record.key.as_deref(), record.value.as_deref(), sealer) {
                        Outcome::Applied | Outcome::Ignored => {}
                        Outcome::Stale => {
                            metrics::counter!("mirrorgate_catalog_stale_records_total")
                                .increment(1);
                        }
                        Outcome::Invalid(reason, detail) => skip(topic, at, reason, &detail),
                    }
                }
            }
            Err(e) => skip(topic, batch.base_offset(), Invalid::Batch, &e),
        }
        offset = offset.max(batch.next_offset());
    }
    offset
}

#[cfg(test)]
#[path = "catalog_feed_tests.rs"]
mod tests;
