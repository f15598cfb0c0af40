//! Promote and failover run the link's syncs one last time before a mirror stops:
//! promote insists they succeed (no config-sync or consumer-offset lag is left),
//! failover tries once, briefly, and stops the mirror whatever happens.

use std::sync::Arc;
use std::time::Duration;

use super::config_sync::MirrorConfigs;
use super::link_config::LinkConfig;
use super::link_jobs::{self, LinkSyncs};
use super::manager::State;
use super::offset_sync::MirrorOffsets;
use super::store::MirrorState;
use super::Destination;

/// How long failover waits for a last offset sync from a source that may be gone.
const FAILOVER_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

/// The final rounds of one link, prepared while the state is at hand.
pub(super) struct FinalSync {
    config: LinkConfig,
    syncs: Arc<tokio::sync::Mutex<LinkSyncs>>,
    configs: Vec<MirrorConfigs>,
    offsets: Vec<MirrorOffsets>,
}

impl FinalSync {
    /// None when `topic` is no mirror or its link has no running task.
    pub(super) fn prepare(state: &State, topic: &str) -> Option<Self> {
        let link = &state.mirrors.get(topic)?.record.link;
        let config = LinkConfig::from_properties(state.links.get(link)?.config.clone()).ok()?;
        Some(Self {
            config,
            syncs: state.runtimes.get(link)?.syncs.clone(),
            configs: config_targets(state, link),
            offsets: offset_targets(state, link),
        })
    }

    /// Promote: the mirror's configs and the link's consumer offsets must sync.
    pub(super) async fn before_promote(
        &self,
        dest: &Destination,
        link: &str,
        topic: &str,
        source_topic: &str,
    ) -> Result<(), String> {
        let names = [format!("'{topic}'"), format!("'{source_topic}'")];
        let configs = link_jobs::config_round(dest, link, &self.config, &self.syncs, &self.configs)
            .await
            .map_err(|e| format!("{e:#}"))
            .and_then(|done| {
                match done
                    .errors
                    .iter()
                    .find(|e| names.iter().any(|n| e.contains(n)))
                {
                    Some(e) => Err(e.clone()),
                    None => Ok(()),
                }
            });
        if let Err(e) = configs {
            return Err(format!(
                "Topic '{topic}' cannot be promoted while its configs cannot be synced: {e}"
            ));
        }
        if self.config.consumer_offset_sync {
            let offsets =
                link_jobs::offset_round(dest, link, &self.config, &self.syncs, &self.offsets).await;
            if let Err(e) = offsets {
                return Err(format!(
                    "Topic '{topic}' cannot be promoted while consumer offsets cannot be synced: {e:#}"
                ));
            }
        }
        Ok(())
    }

    /// Failover: one last offset sync if the source still answers in time.
    pub(super) async fn before_failover(&self, dest: &Destination, link: &str) {
        if !self.config.consumer_offset_sync {
            return;
        }
        let round = link_jobs::offset_round(dest, link, &self.config, &self.syncs, &self.offsets);
        match tokio::time::timeout(FAILOVER_SYNC_TIMEOUT, round).await {
            Ok(Ok(done)) => tracing::info!(
                link,
                committed = done.committed,
                "final consumer offset sync before failover"
            ),
            Ok(Err(e)) => {
                tracing::warn!(link, error = %format!("{e:#}"), "no final offset sync before failover")
            }
            Err(_) => tracing::warn!(link, "final offset sync before failover timed out"),
        }
    }
}

/// The link's mirrors whose configs follow the source (all but STOPPED and FAILED).
pub(super) fn config_targets(state: &State, link: &str) -> Vec<MirrorConfigs> {
    state
        .mirrors
        .values()
        .filter(|m| m.record.link == link)
        .filter(|m| !matches!(m.record.state, MirrorState::Stopped | MirrorState::Failed))
        .map(|m| MirrorConfigs {
            source_topic: m.record.source_topic.clone(),
            mirror_topic: m.record.topic.clone(),
            overrides: m.record.overrides.clone(),
            synced: state.catalog.synced_configs(&m.record.topic).cloned(),
        })
        .collect()
}

/// The link's mirrors whose consumer offsets are synced, one entry per partition.
pub(super) fn offset_targets(state: &State, link: &str) -> Vec<MirrorOffsets> {
    state
        .mirrors
        .values()
        .filter(|m| m.record.link == link)
        .filter(|m| !matches!(m.record.state, MirrorState::Stopped | MirrorState::Failed))
        .map(|m| MirrorOffsets {
            source_topic: m.record.source_topic.clone(),
            mirror_topic: m.record.topic.clone(),
            // Read from the destination by each round (copiers run on any instance).
            mirrored_end: vec![-1; m.statuses.len()],
        })
        .collect()
}
