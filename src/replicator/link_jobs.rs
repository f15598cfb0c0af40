//! The periodic jobs of a cluster link, run by its `link_runtime` task: auto-created
//! mirrors, topic config sync, consumer offset sync and ACL sync. Each reports its task status
//! (ACTIVE, IN_ERROR, NOT_CONFIGURED, LINK_PAUSED) on the link.

use std::sync::Arc;

use super::acl_sync::AclSync;
use super::auto_create;
use super::config_sync::{ConfigSync, ConfigSyncReport, MirrorConfigs};
use super::link_config::LinkConfig;
use super::link_runtime::{LinkStatus, TaskError, TaskStatus};
use super::manager::Inner;
use super::offset_sync::{MirrorOffsets, OffsetSync, SyncReport};
use super::source::Source;
use super::Destination;

/// What the sync jobs remember between rounds, owned by the link's actor.
#[derive(Debug, Default)]
pub struct LinkSyncs {
    pub config: ConfigSync,
    pub offsets: OffsetSync,
    pub acls: AclSync,
}

const AUTO_CREATE: &str = "AutoCreateMirror";
const CONFIG_SYNC: &str = "TopicConfigsSync";
const OFFSET_SYNC: &str = "ConsumerOffsetSync";
const ACL_SYNC: &str = "AclSync";

fn report(
    status: &LinkStatus,
    task_name: &'static str,
    state: &'static str,
    errors: Vec<TaskError>,
) {
    status.set_task(TaskStatus {
        task_name,
        state,
        errors,
    });
}

/// ACTIVE after a clean round; IN_ERROR with `code` when some items failed, or with
/// SOURCE_UNAVAILABLE when the round could not run.
fn report_round(
    status: &LinkStatus,
    task: &'static str,
    code: &str,
    round: anyhow::Result<Vec<String>>,
) {
    report_problems(status, task, round.map(|errors| vec![(code, errors)]));
}

/// Like `report_round`, with several kinds of problems (error code, items).
fn report_problems(
    status: &LinkStatus,
    task: &'static str,
    round: anyhow::Result<Vec<(&str, Vec<String>)>>,
) {
    let errors: Vec<TaskError> = match round {
        Ok(problems) => problems
            .into_iter()
            .filter(|(_, items)| !items.is_empty())
            .map(|(code, items)| TaskError {
                error_code: code.to_string(),
                error_message: items.join("; "),
            })
            .collect(),
        Err(e) => {
            tracing::debug!(task, error = %format!("{e:#}"), "link job round failed");
            vec![TaskError {
                error_code: "SOURCE_UNAVAILABLE".to_string(),
                error_message: format!("{e:#}"),
            }]
        }
    };
    let state = if errors.is_empty() {
        "ACTIVE"
    } else {
        "IN_ERROR"
    };
    report(status, task, state, errors);
}

/// Reports NOT_CONFIGURED or LINK_PAUSED and returns false when the job must not run.
fn should_run(status: &LinkStatus, task: &'static str, enabled: bool, config: &LinkConfig) -> bool {
    if !enabled {
        report(status, task, "NOT_CONFIGURED", vec![]);
    } else if config.paused {
        report(status, task, "LINK_PAUSED", vec![]);
    }
    enabled && !config.paused
}

pub(super) async fn auto_create(
    inner: &Arc<Inner>,
    link: &str,
    config: &LinkConfig,
    status: &LinkStatus,
) {
    if !should_run(
        status,
        AUTO_CREATE,
        config.auto_create_mirror_topics,
        config,
    ) {
        return;
    }
    let round = auto_create::round(inner, link, config).await;
    report_round(
        status,
        AUTO_CREATE,
        "MIRROR_CREATION_FAILED",
        round.map(|r| r.errors),
    );
}

/// Topic config sync of the link's mirrors (always on, as on Confluent links).
pub(super) async fn config_sync(
    inner: &Arc<Inner>,
    link: &str,
    config: &LinkConfig,
    status: &LinkStatus,
    syncs: &mut LinkSyncs,
) {
    if !should_run(status, CONFIG_SYNC, true, config) {
        return;
    }
    let targets = inner.config_targets(link);
    let round = config_round(inner, link, config, &mut syncs.config, &targets).await;
    report_round(
        status,
        CONFIG_SYNC,
        "TOPIC_CONFIG_SYNC_FAILED",
        round.map(|r| r.errors),
    );
}

/// One config sync round over `targets` (the link's mirrors not stopped).
pub(super) async fn config_round(
    inner: &Arc<Inner>,
    link: &str,
    config: &LinkConfig,
    sync: &mut ConfigSync,
    targets: &[MirrorConfigs],
) -> anyhow::Result<ConfigSyncReport> {
    let source = Source::from_config(config).map_err(anyhow::Error::msg)?;
    // A mirror promoted while the round ran is the operator's from then on.
    let still_mirrored = |topic: &str| {
        inner
            .config_targets(link)
            .iter()
            .any(|m| m.mirror_topic == topic)
    };
    sync.round(&source, &inner.dest, link, targets, &still_mirrored)
        .await
}

/// Consumer offset sync of the link's filtered groups onto its mirrors.
pub(super) async fn offset_sync(
    inner: &Arc<Inner>,
    link: &str,
    config: &LinkConfig,
    status: &LinkStatus,
    syncs: &mut LinkSyncs,
) {
    if !should_run(status, OFFSET_SYNC, config.consumer_offset_sync, config) {
        return;
    }
    let targets = inner.offset_targets(link);
    let round = offset_round(&inner.dest, link, config, &mut syncs.offsets, &targets).await;
    report_problems(
        status,
        OFFSET_SYNC,
        round.map(|done| {
            vec![
                ("CONSUMER_GROUP_IN_USE", done.groups_in_use),
                ("OFFSET_SYNC_FAILED", done.errors),
            ]
        }),
    );
}

/// One offset sync round over `targets` (the link's mirrors not stopped).
pub(super) async fn offset_round(
    dest: &Destination,
    link: &str,
    config: &LinkConfig,
    sync: &mut OffsetSync,
    targets: &[MirrorOffsets],
) -> anyhow::Result<SyncReport> {
    let source = Source::from_config(config).map_err(anyhow::Error::msg)?;
    let prefix = config.prefix.as_deref().filter(|_| config.group_prefix);
    sync.round(link, &source, dest, &config.group_filters, prefix, targets)
        .await
}

/// ACL sync of the link's filtered ACLs onto the destination.
pub(super) async fn acl_sync(
    inner: &Arc<Inner>,
    link: &str,
    config: &LinkConfig,
    status: &LinkStatus,
    syncs: &mut LinkSyncs,
) {
    if !should_run(status, ACL_SYNC, config.acl_sync, config) {
        return;
    }
    let recorded = inner.snapshot().catalog.synced_acls(link).cloned();
    let round = async {
        let source = Source::from_config(config).map_err(anyhow::Error::msg)?;
        syncs
            .acls
            .round(
                &source,
                &inner.dest,
                link,
                &config.acl_filters,
                recorded.as_ref(),
            )
            .await
    }
    .await;
    report_round(status, ACL_SYNC, "ACL_SYNC_FAILED", round.map(|r| r.errors));
}
