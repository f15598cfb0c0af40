//! The status page (`GET /`): one HTML page compiled into the binary, which reads the
//! admin API (links, mirrors, the fleet) and `GET /admin/lag-history` every few seconds.
//! The lag history is sampled here, every `SAMPLE_EVERY`, for the last hour, in memory:
//! at most `MAX_MIRRORS` mirrors of `POINTS` points each, so it stays under a few MiB.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::Json;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::AdminState;
use crate::replicator::manager::Replicator;

const PAGE: &str = include_str!("status.html");
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// One hour of samples.
const POINTS: usize = 360;
const MAX_MIRRORS: usize = 1_000;

/// (time in ms, total lag in records) per mirror, oldest first.
#[derive(Default)]
pub struct LagHistory {
    mirrors: Mutex<BTreeMap<String, VecDeque<(i64, i64)>>>,
}

impl LagHistory {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, VecDeque<(i64, i64)>>> {
        self.mirrors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one sample per mirror; mirrors no longer listed are forgotten, and past
    /// `MAX_MIRRORS` the rest are not kept.
    fn record(&self, at_ms: i64, lags: Vec<(String, i64)>) {
        let mut mirrors = self.lock();
        mirrors.retain(|topic, _| lags.iter().any(|(t, _)| t == topic));
        for (topic, lag) in lags {
            if !mirrors.contains_key(&topic) && mirrors.len() >= MAX_MIRRORS {
                continue;
            }
            let points = mirrors.entry(topic).or_default();
            if points.len() == POINTS {
                points.pop_front();
            }
            points.push_back((at_ms, lag));
        }
    }

    fn snapshot(&self) -> BTreeMap<String, Vec<(i64, i64)>> {
        self.lock()
            .iter()
            .map(|(topic, points)| (topic.clone(), points.iter().copied().collect()))
            .collect()
    }

    /// Samples the mirrors' lag until `stop`.
    pub fn spawn_sampler(self: &Arc<Self>, replicator: Replicator, stop: CancellationToken) {
        let history = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = every.tick() => {}
                }
                // Not loaded yet (or no replicator): nothing to show, try again later.
                let Ok(mirrors) = replicator.mirrors(None).await else {
                    continue;
                };
                let lags = mirrors
                    .into_iter()
                    .map(|m| {
                        let lag = m.mirror_lags.iter().map(|p| p.lag).sum();
                        (m.mirror_topic_name, lag)
                    })
                    .collect();
                history.record(crate::replicator::now_ms(), lags);
            }
        });
    }
}

pub(super) async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

pub(super) async fn lag_history(State(state): State<AdminState>) -> impl IntoResponse {
    Json(json!({
        "interval_ms": SAMPLE_EVERY.as_millis() as u64,
        "mirrors": state.lag_history.snapshot(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{LagHistory, MAX_MIRRORS, POINTS};

    #[test]
    fn keeps_an_hour_per_mirror_and_forgets_mirrors_gone() {
        let history = LagHistory::default();
        for i in 0..(POINTS as i64 + 5) {
            history.record(i, vec![("a".into(), i), ("b".into(), 0)]);
        }
        let shown = history.snapshot();
        assert_eq!(shown["a"].len(), POINTS);
        assert_eq!(shown["a"][0], (5, 5), "the oldest points went first");
        history.record(1000, vec![("b".into(), 1)]);
        assert!(!history.snapshot().contains_key("a"));
    }

    #[test]
    fn the_number_of_mirrors_is_bounded() {
        let history = LagHistory::default();
        let many = (0..MAX_MIRRORS + 10)
            .map(|i| (format!("m{i:05}"), 1))
            .collect();
        history.record(0, many);
        assert_eq!(history.snapshot().len(), MAX_MIRRORS);
    }
}
