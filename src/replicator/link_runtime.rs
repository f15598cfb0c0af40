//! One actor per cluster link whose jobs run here. It owns the link's sync memory and
//! runs its periodic jobs, each on its own interval: the availability probe (link
//! state ACTIVE, PAUSED or SOURCE_UNAVAILABLE) here, and the `link_jobs`: auto-created
//! mirrors, topic config sync, consumer offset sync, ACL sync. Promote and failover ask it for
//! a final round (`final_sync::FinalRound`) instead of sharing its memory. It takes the
//! link's config from the latest snapshot each round, so `--alter` applies from the
//! next round on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use super::final_sync::FinalRound;
use super::link_jobs::{self, LinkSyncs};
use super::manager::Inner;
use super::source::Source;
use crate::kafka::admin;

/// Longest a single availability probe may take before it counts as a failure.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// What the link's periodic jobs report, shown by `--describe` and the REST link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskStatus {
    pub task_name: &'static str,
    /// ACTIVE, IN_ERROR, NOT_CONFIGURED or LINK_PAUSED.
    pub state: &'static str,
    pub errors: Vec<TaskError>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskError {
    pub error_code: String,
    pub error_message: String,
}

/// Live state of a link, shared by its task and the views.
#[derive(Debug)]
pub struct LinkStatus {
    /// The last probe reached the source.
    available: AtomicBool,
    consecutive_failures: AtomicU32,
    /// Failures reached `availability.check.consecutive.failure.threshold`.
    unavailable: AtomicBool,
    tasks: Mutex<BTreeMap<&'static str, TaskStatus>>,
}

impl Default for LinkStatus {
    fn default() -> Self {
        Self {
            // A link is only created after its source answered.
            available: AtomicBool::new(true),
            consecutive_failures: AtomicU32::new(0),
            unavailable: AtomicBool::new(false),
            tasks: Mutex::new(BTreeMap::new()),
        }
    }
}

impl LinkStatus {
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// SOURCE_UNAVAILABLE: the source failed enough consecutive probes.
    pub fn source_unavailable(&self) -> bool {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// The link state users see.
    pub fn state(&self, paused: bool) -> &'static str {
        if paused {
            "PAUSED"
        } else if self.source_unavailable() {
            "SOURCE_UNAVAILABLE"
        } else {
            "ACTIVE"
        }
    }

    pub fn set_task(&self, status: TaskStatus) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(status.task_name, status);
        }
    }

    pub fn tasks(&self) -> Vec<TaskStatus> {
        self.tasks
            .lock()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Records one probe; returns true when the link's availability state changed.
    fn record_probe(&self, ok: bool, threshold: u32) -> bool {
        self.available.store(ok, Ordering::Relaxed);
        let was_unavailable = self.source_unavailable();
        let now_unavailable = if ok {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            false
        } else {
            let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            failures >= threshold.max(1)
        };
        self.unavailable.store(now_unavailable, Ordering::Relaxed);
        was_unavailable != now_unavailable
    }
}

/// Final rounds asked for at once; a promote waits for room.
const REQUEST_ROOM: usize = 4;

/// A running link actor, owned by the controller; dropping it stops the actor.
pub(super) struct LinkRuntime {
    pub(super) status: Arc<LinkStatus>,
    requests: mpsc::Sender<FinalRound>,
    _stop: DropGuard,
}

/// What readers may hold of a link actor: its status, and a way to ask it for rounds.
#[derive(Clone)]
pub(super) struct LinkHandle {
    pub(super) status: Arc<LinkStatus>,
    pub(super) requests: mpsc::Sender<FinalRound>,
}

impl LinkRuntime {
    pub(super) fn handle(&self) -> LinkHandle {
        LinkHandle {
            status: self.status.clone(),
            requests: self.requests.clone(),
        }
    }
}

/// Starts the actor of `link`. `probe_now` runs the first availability probe at once
/// (at start, when nothing is known yet) instead of after one interval.
pub(super) fn spawn(inner: Arc<Inner>, link: &str, probe_now: bool) -> LinkRuntime {
    let stop = inner.shutdown.child_token();
    let (requests, inbox) = mpsc::channel(REQUEST_ROOM);
    let status = Arc::new(LinkStatus::default());
    let span = tracing::info_span!("link", link = %link);
    tokio::spawn(
        run(
            inner,
            link.to_string(),
            status.clone(),
            inbox,
            stop.clone(),
            probe_now,
        )
        .instrument(span),
    );
    LinkRuntime {
        status,
        requests,
        _stop: stop.drop_guard(),
    }
}

async fn run(
    inner: Arc<Inner>,
    link: String,
    status: Arc<LinkStatus>,
    mut inbox: mpsc::Receiver<FinalRound>,
    stop: CancellationToken,
    probe_now: bool,
) {
    let mut syncs = LinkSyncs::default();
    let labels = [("link", link.clone())];
    let available_gauge = metrics::gauge!("mirrorgate_link_available", &labels);
    let probe_failures = metrics::counter!("mirrorgate_link_probe_failures_total", &labels);
    let max_lag = metrics::gauge!("mirrorgate_link_max_lag", &labels);
    let start = Instant::now();
    let mut next_probe = if probe_now {
        start
    } else {
        start + Duration::from_secs(1)
    };
    let (mut next_topics, mut next_offsets, mut next_acls) = (start, start, start);
    loop {
        let due = next_probe.min(next_topics).min(next_offsets).min(next_acls);
        let request = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep_until(due) => None,
            request = inbox.recv() => request,
        };
        // The link's current config: altered links take effect on the next round.
        let Some(config) = inner.link_config(&link) else {
            return;
        };
        if let Some(request) = request {
            request.run(&inner, &link, &config, &mut syncs).await;
            continue;
        }
        let now = Instant::now();
        if now >= next_topics {
            next_topics = now + config.topic_config_sync_interval;
            max_lag.set(inner.max_lag(&link) as f64);
            link_jobs::auto_create(&inner, &link, &config, &status).await;
            link_jobs::config_sync(&inner, &link, &config, &status, &mut syncs).await;
        }
        if now >= next_offsets {
            next_offsets = now + config.consumer_offset_sync_interval;
            link_jobs::offset_sync(&inner, &link, &config, &status, &mut syncs).await;
        }
        if now >= next_acls {
            next_acls = now + config.acl_sync_interval;
            link_jobs::acl_sync(&inner, &link, &config, &status, &mut syncs).await;
        }
        if now < next_probe {
            continue;
        }
        next_probe = now + config.availability_check;
        let ok = match Source::from_config(&config) {
            Ok(source) => probe(&source).await,
            Err(e) => {
                tracing::error!(error = %e, "link config cannot reach the source");
                false
            }
        };
        if !ok {
            probe_failures.increment(1);
        }
        available_gauge.set(if ok { 1.0 } else { 0.0 });
        if status.record_probe(ok, config.availability_failure_threshold) {
            if status.source_unavailable() {
                tracing::warn!(
                    failures = config.availability_failure_threshold,
                    "source cluster unavailable; mirrors report SOURCE_UNAVAILABLE"
                );
            } else {
                tracing::info!("source cluster available again");
            }
            inner.link_availability_changed().await;
        }
    }
}

/// True when the source answers a Metadata request in time.
async fn probe(source: &Source) -> bool {
    let attempt = async {
        let mut conn = source.connect_any().await?;
        admin::metadata(&mut conn, Some(&[])).await?;
        anyhow::Ok(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, side = "upstream", "source probe failed");
            false
        }
        Err(_) => {
            tracing::debug!(side = "upstream", "source probe timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_after_the_threshold_and_back_on_the_first_success() {
        let status = LinkStatus::default();
        assert_eq!(status.state(false), "ACTIVE");
        assert!(!status.record_probe(false, 3));
        assert!(!status.available());
        assert!(!status.record_probe(false, 3));
        assert!(
            status.record_probe(false, 3),
            "third failure changes the state"
        );
        assert_eq!(status.state(false), "SOURCE_UNAVAILABLE");
        assert!(!status.record_probe(false, 3));
        assert!(status.record_probe(true, 3));
        assert_eq!(status.state(false), "ACTIVE");
        assert_eq!(status.state(true), "PAUSED");
    }

    #[test]
    fn task_status_is_replaced_by_name() {
        let status = LinkStatus::default();
        let task = |state| TaskStatus {
            task_name: "ConsumerOffsetSync",
            state,
            errors: vec![],
        };
        status.set_task(task("ACTIVE"));
        status.set_task(task("IN_ERROR"));
        assert_eq!(status.tasks(), vec![task("IN_ERROR")]);
    }
}
