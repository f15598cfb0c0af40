//! Promote and failover run the link's syncs one last time before a mirror stops:
//! promote insists they succeed (no config-sync or consumer-offset lag is left),
//! failover tries once, briefly, and stops the mirror whatever happens.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::config_sync::{ConfigSyncReport, MirrorConfigs};
use super::controller::Snapshot;
use super::link_config::LinkConfig;
use super::link_jobs::{self, LinkSyncs};
use super::manager::Inner;
use super::offset_sync::{MirrorOffsets, SyncReport};
use super::store::{MirrorRecord, MirrorState};

/// How long failover waits for a last offset sync from a source that may be gone.
const FAILOVER_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

/// A final sync round asked of a link's actor, which owns the sync memory.
pub(super) enum FinalRound {
    Configs {
        targets: Vec<MirrorConfigs>,
        reply: Reply<ConfigSyncReport>,
    },
    Offsets {
        targets: Vec<MirrorOffsets>,
        reply: Reply<SyncReport>,
    },
}

impl FinalRound {
    /// Runs the round with the actor's memory and answers (a caller that gave up
    /// finds no one to answer: nothing to do).
    pub(super) async fn run(
        self,
        inner: &Arc<Inner>,
        link: &str,
        config: &LinkConfig,
        syncs: &mut LinkSyncs,
    ) {
        match self {
            FinalRound::Configs { targets, reply } => {
                let round =
                    link_jobs::config_round(inner, link, config, &mut syncs.config, &targets).await;
                let _ = reply.send(round);
            }
            FinalRound::Offsets { targets, reply } => {
                let round = link_jobs::offset_round(
                    &inner.dest,
                    link,
                    config,
                    &mut syncs.offsets,
                    &targets,
                )
                .await;
                let _ = reply.send(round);
            }
        }
    }
}

/// The final rounds of one link, prepared from a snapshot.
pub(super) struct FinalSync {
    config: Arc<LinkConfig>,
    actor: mpsc::Sender<FinalRound>,
    configs: Vec<MirrorConfigs>,
    offsets: Vec<MirrorOffsets>,
}

impl FinalSync {
    /// None when `topic` is no mirror or its link's actor does not run here.
    pub(super) fn prepare(state: &Snapshot, topic: &str) -> Option<Self> {
        let link = &state.mirrors.get(topic)?.record.link;
        Some(Self {
            config: state.link_config(link)?,
            actor: state.runtimes.get(link)?.requests.clone(),
            configs: config_targets(state, link),
            offsets: offset_targets(state, link),
        })
    }

    /// Asks the link's actor for a round and waits for its answer.
    async fn ask<T>(&self, round: impl FnOnce(Reply<T>) -> FinalRound) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        let gone = || anyhow::anyhow!("the link's task stopped");
        self.actor.send(round(reply)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn config_round(&self) -> anyhow::Result<ConfigSyncReport> {
        let targets = self.configs.clone();
        self.ask(|reply| FinalRound::Configs { targets, reply })
            .await
    }

    async fn offset_round(&self) -> anyhow::Result<SyncReport> {
        let targets = self.offsets.clone();
        self.ask(|reply| FinalRound::Offsets { targets, reply })
            .await
    }

    /// Promote: the mirror's configs and the link's consumer offsets must sync.
    pub(super) async fn before_promote(
        &self,
        topic: &str,
        source_topic: &str,
    ) -> Result<(), String> {
        let names = [format!("'{topic}'"), format!("'{source_topic}'")];
        let configs = self
            .config_round()
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
            let offsets = self.offset_round().await;
            if let Err(e) = offsets {
                return Err(format!(
                    "Topic '{topic}' cannot be promoted while consumer offsets cannot be synced: {e:#}"
                ));
            }
        }
        Ok(())
    }

    /// Failover: one last offset sync if the source still answers in time.
    pub(super) async fn before_failover(&self, link: &str) {
        if !self.config.consumer_offset_sync {
            return;
        }
        match tokio::time::timeout(FAILOVER_SYNC_TIMEOUT, self.offset_round()).await {
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

/// A mirror whose configs and consumer offsets follow its source: all but STOPPED and
/// FAILED ones, one being restored (its topic is about to be deleted; offsets written
/// to it now would be deleted with it, while the sync took them as written), and one
/// being reversed (its source is still a mirror of it, and its groups are its own).
fn follows_source(record: &MirrorRecord) -> bool {
    !matches!(record.state, MirrorState::Stopped | MirrorState::Failed)
        && record.restoring.is_none()
        && record.reversing.is_none()
}

/// The link's mirrors whose configs follow the source.
pub(super) fn config_targets(state: &Snapshot, link: &str) -> Vec<MirrorConfigs> {
    state
        .mirrors
        .values()
        .filter(|m| m.record.link == link)
        .filter(|m| follows_source(&m.record))
        .map(|m| MirrorConfigs {
            source_topic: m.record.source_topic.clone(),
            mirror_topic: m.record.topic.clone(),
            overrides: m.record.overrides.clone(),
            synced: state.catalog.synced_configs(&m.record.topic).cloned(),
        })
        .collect()
}

/// The link's mirrors whose consumer offsets are synced, one entry per partition.
pub(super) fn offset_targets(state: &Snapshot, link: &str) -> Vec<MirrorOffsets> {
    state
        .mirrors
        .values()
        .filter(|m| m.record.link == link)
        .filter(|m| follows_source(&m.record))
        .map(|m| MirrorOffsets {
            source_topic: m.record.source_topic.clone(),
            mirror_topic: m.record.topic.clone(),
            // Read from the destination by each round (copiers run on any instance).
            mirrored_end: vec![-1; m.statuses.len()],
        })
        .collect()
}
