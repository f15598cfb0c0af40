//! The periodic jobs of a cluster link, run by its `link_runtime` task: auto-created
//! mirrors, topic config sync and consumer offset sync. Each reports its task status
//! (ACTIVE, IN_ERROR, NOT_CONFIGURED, LINK_PAUSED) on the link.

use std::sync::Arc;

use super::auto_create;
use super::config_sync::{ConfigSync, ConfigSyncReport, MirrorConfigs};
use super::link_config::LinkConfig;
use super::link_runtime::{LinkStatus, TaskError, TaskStatus};
use super::manager::Inner;
use super::source::Source;
use super::Destination;

/// What the sync jobs remember between rounds.
#[derive(Debug, Default)]
pub struct LinkSyncs {
    pub config: ConfigSync,
}

const AUTO_CREATE: &str = "AutoCreateMirror";
const CONFIG_SYNC: &str = "TopicConfigsSync";

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
    let (state, errors) = match round {
        Ok(errors) if errors.is_empty() => ("ACTIVE", vec![]),
        Ok(errors) => ("IN_ERROR", vec![(code.to_string(), errors.join("; "))]),
        Err(e) => (
            "IN_ERROR",
            vec![("SOURCE_UNAVAILABLE".to_string(), format!("{e:#}"))],
        ),
    };
    let errors = errors
        .into_iter()
        .map(|(error_code, error_message)| TaskError {
            error_code,
            error_message,
        })
        .collect();
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
    syncs: &tokio::sync::Mutex<LinkSyncs>,
) {
    if !should_run(status, CONFIG_SYNC, true, config) {
        return;
    }
    let targets = inner.config_targets(link).await;
    let round = config_round(&inner.dest, link, config, syncs, &targets).await;
    report_round(
        status,
        CONFIG_SYNC,
        "TOPIC_CONFIG_SYNC_FAILED",
        round.map(|r| r.errors),
    );
}

/// One config sync round over `targets` (the link's mirrors not stopped).
pub(super) async fn config_round(
    dest: &Destination,
    link: &str,
    config: &LinkConfig,
    syncs: &tokio::sync::Mutex<LinkSyncs>,
    targets: &[MirrorConfigs],
) -> anyhow::Result<ConfigSyncReport> {
    let source = Source::from_config(config).map_err(anyhow::Error::msg)?;
    let mut syncs = syncs.lock().await;
    syncs.config.round(&source, dest, link, targets).await
}
