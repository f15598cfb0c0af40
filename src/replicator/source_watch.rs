//! Keeps each active mirror's shape in step with its source topic (a background loop
//! of the replicator manager).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::MetadataResponse;

use super::catalog::MIRROR_PREFIX;
use super::failure::{FailureReason, MirrorFailure};
use super::manager::Inner;
use super::mirror_topic::PendingRetries;
use super::source::{Source, SourceSettings};
use super::store::{self, MirrorRecord, MirrorState};
use crate::kafka::admin::{self, AdminError};
use crate::kafka::client::ClientError;
use crate::kafka::error_code::{INVALID_PARTITIONS, UNKNOWN_TOPIC_OR_PARTITION};
use crate::kafka::kept::KeptConnection;

/// How often active mirrors are checked against their source topics.
const SOURCE_CHECK: Duration = Duration::from_secs(2);

/// Keeps each active mirror's shape in step with its source topic: partitions added on
/// the source are added and mirrored; a source topic that vanished, was recreated or
/// lost partitions fails the mirror with the reason. Each link's source is asked once
/// per check, for all its mirrors, over a connection kept between checks.
pub(super) async fn watch_sources(inner: Arc<Inner>) {
    let mut kept: HashMap<String, KeptConnection<SourceSettings>> = HashMap::new();
    let mut pending_retries = PendingRetries::default();
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(SOURCE_CHECK) => {}
        }
        let links: BTreeMap<String, LinkMirrors> = {
            let state = inner.snapshot();
            let mut links: BTreeMap<String, LinkMirrors> = BTreeMap::new();
            let active = state
                .mirrors
                .values()
                .filter(|m| m.record.state == MirrorState::Active)
                // The instance holding the link's jobs keeps its mirrors' shape.
                .filter(|m| state.share.owns_link(&m.record.link));
            for mirror in active {
                let link = &mirror.record.link;
                let entry = match links.entry(link.clone()) {
                    Entry::Occupied(known) => known.into_mut(),
                    Entry::Vacant(new) => {
                        let Some(source) = state.source_of(link) else {
                            continue;
                        };
                        new.insert(LinkMirrors {
                            source,
                            mirrors: Vec::new(),
                        })
                    }
                };
                entry.mirrors.push(mirror.record.clone());
            }
            links
        };
        kept.retain(|link, _| links.contains_key(link));
        let active: Vec<(MirrorRecord, Source)> = links
            .values()
            .flat_map(|l| l.mirrors.iter().map(|m| (m.clone(), l.source.clone())))
            .collect();
        inner
            .finish_overdue_topics(&active, &mut pending_retries)
            .await;
        for (link, entry) in links {
            let conn = kept.entry(link.clone()).or_default();
            let metadata = match entry.describe(conn).await {
                Ok(metadata) => metadata,
                Err(e) => {
                    tracing::warn!(link, error = %e, "source check failed; retrying");
                    continue;
                }
            };
            for record in &entry.mirrors {
                if let Err(e) = inner.check_source(record, &metadata).await {
                    tracing::warn!(mirror = %record.topic, error = %e, "source check failed; retrying");
                }
            }
        }
    }
}

/// One link's active mirrors, and how to reach its source.
struct LinkMirrors {
    source: Source,
    mirrors: Vec<MirrorRecord>,
}

impl LinkMirrors {
    /// The source's metadata of every mirror's source topic, in one request.
    async fn describe(
        &self,
        conn: &mut KeptConnection<SourceSettings>,
    ) -> Result<MetadataResponse, ClientError> {
        let topics: Vec<&str> = self
            .mirrors
            .iter()
            .map(|m| m.source_topic.as_str())
            .collect();
        let topics = topics.as_slice();
        conn.call(
            self.source.settings(),
            self.source.connect_any(),
            |mut conn| async move {
                let metadata = admin::metadata(&mut conn, Some(topics)).await;
                (conn, metadata)
            },
        )
        .await
    }
}

impl Inner {
    async fn check_source(
        self: &Arc<Self>,
        record: &MirrorRecord,
        metadata: &MetadataResponse,
    ) -> anyhow::Result<()> {
        let partitions = match admin::partition_count(metadata, &record.source_topic) {
            Ok(count) => count,
            Err(UNKNOWN_TOPIC_OR_PARTITION) => {
                let failure = MirrorFailure::new(
                    FailureReason::SourceTopicMayBeDeleted,
                    "the source topic is gone",
                );
                self.fail(&record.topic, failure).await;
                return Ok(());
            }
            Err(code) => anyhow::bail!("source metadata error {code}"),
        };
        let id = admin::topic_id(metadata, &record.source_topic);
        if record.source_topic_id.is_some() && id.is_some() && id != record.source_topic_id {
            let failure = MirrorFailure::new(
                FailureReason::SourceTopicIdChanged,
                "the source topic was recreated",
            );
            self.fail(&record.topic, failure).await;
            return Ok(());
        }
        if partitions < record.partitions {
            let failure = MirrorFailure::new(
                FailureReason::SourcePartitionsDecreased,
                format!("{} -> {partitions}", record.partitions),
            );
            self.fail(&record.topic, failure).await;
            return Ok(());
        }
        if partitions > record.partitions {
            let mut dest = self.dest.connect_any().await?;
            match admin::add_partitions(&mut dest, &record.topic, partitions).await {
                Ok(()) => {}
                // Added already (a restart between the two steps; CreatePartitions
                // answers INVALID_PARTITIONS to a count the topic has): go on.
                Err(AdminError::Kafka {
                    code: INVALID_PARTITIONS,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
            let state = self.snapshot();
            let Some(entry) = state.mirrors.get(&record.topic) else {
                return Ok(());
            };
            if entry.record.partitions >= partitions {
                return Ok(());
            }
            let key = format!("{MIRROR_PREFIX}{}", record.topic);
            let mut updated = entry.record.clone();
            updated.partitions = partitions;
            updated.version = state.catalog.next_version(&key);
            let offset = store::put_mirror(&self.dest, &record.topic, Some(&updated)).await?;
            tracing::info!(mirror = %record.topic, from = record.partitions, to = partitions, "source partitions added");
            // Applied when read back: the new partitions' tasks start then (`reconcile`).
            self.commit(offset)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(())
    }
}
