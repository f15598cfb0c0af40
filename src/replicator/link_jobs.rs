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

fn error(code: &str, message: String) -> Vec<TaskError> {
    vec![TaskError {
        error_code: code.to_string(),
        error_message: message,
    }]
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
    match auto_create::round(inner, link, config).await {
        Ok(done) if done.errors.is_empty() => report(status, AUTO_CREATE, "ACTIVE", vec![]),
        Ok(done) => report(
            status,
            AUTO_CREATE,
            "IN_ERROR",
            error("MIRROR_CREATION_FAILED", done.errors.join("; ")),
        ),
        Err(e) => report(
            status,
            AUTO_CREATE,
            "IN_ERROR",
            error("SOURCE_UNAVAILABLE", format!("{e:#}")),
        ),
    }
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
    match config_round(&inner.dest, link, config, syncs, &targets).await {
        Ok(done) if done.errors.is_empty() => report(status, CONFIG_SYNC, "ACTIVE", vec![]),
        Ok(done) => report(
            status,
            CONFIG_SYNC,
            "IN_ERROR",
            error("TOPIC_CONFIG_SYNC_FAILED", done.errors.join("; ")),
        ),
        Err(e) => report(
            status,
            CONFIG_SYNC,
            "IN_ERROR",
            error("SOURCE_UNAVAILABLE", format!("{e:#}")),
        ),
    }
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
