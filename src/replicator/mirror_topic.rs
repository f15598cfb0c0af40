//! A mirror's topic on the destination, created after its record: `mirrors --create`
//! writes the record first (the name is read-only on every instance before the topic
//! exists), then creates the topic, then clears the record's `topic_pending`. Whoever
//! finds the record still pending finishes the job: a retry of the command at once, the
//! link's owner (`source_watch`) once `CREATE_GRACE` has passed. So neither an instance
//! killed between the two writes nor a destination that did not answer the creation
//! leaves a mirror without a topic for good.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::catalog::MIRROR_PREFIX;
use super::config_sync::TIMESTAMP_TYPE;
use super::manager::{mirror_configs, unavailable, ApiError, Inner};
use super::source::Source;
use super::store::{self, MirrorRecord, MirrorState};
use crate::kafka::admin::{self, AdminError};
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::error_code::TOPIC_ALREADY_EXISTS;

/// How long after its record's last change a pending mirror's topic may still be in
/// creation by the command that wrote the record (its requests time out well within
/// this); past it, the link's owner creates the topic.
pub(super) const CREATE_GRACE: Duration = Duration::from_secs(120);

/// Whether the link's owner should create `record`'s topic now (`now_ms`, wall clock).
pub(super) fn overdue(record: &MirrorRecord, now_ms: i64) -> bool {
    let grace_ms = i64::try_from(CREATE_GRACE.as_millis()).unwrap_or(i64::MAX);
    record.topic_pending
        && record.state == MirrorState::Active
        && record.restoring.is_none()
        && record.reversing.is_none()
        && now_ms.saturating_sub(record.state_time_ms) > grace_ms
}

/// The `topic_pending` record of the same mirror (link and source) that a retry of
/// `mirrors --create` finishes instead of refusing.
pub(super) fn retry_of<'a>(
    existing: Option<&'a MirrorRecord>,
    link: &str,
    source_topic: &str,
) -> Option<&'a MirrorRecord> {
    existing.filter(|r| {
        r.topic_pending
            && r.link == link
            && r.source_topic == source_topic
            && r.state == MirrorState::Active
            && r.restoring.is_none()
            && r.reversing.is_none()
    })
}

impl Inner {
    /// Creates `record`'s topic unless the destination has it (a creation whose answer
    /// was lost), as `mirrors --create` would have, then clears `topic_pending`.
    pub(super) async fn finish_pending_topic(
        self: &Arc<Self>,
        record: &MirrorRecord,
        source: &Source,
    ) -> Result<(), ApiError> {
        let mut dest = self.dest.connect_any().await.map_err(unavailable)?;
        if !admin::topic_exists(&mut dest, &record.topic)
            .await
            .map_err(unavailable)?
        {
            let mut source = source.connect_any().await.map_err(unavailable)?;
            let mut configs =
                mirror_configs(&mut source, &record.source_topic, &record.overrides).await?;
            configs.insert(TIMESTAMP_TYPE.to_string(), "CreateTime".to_string());
            let configs: Vec<(&str, &str)> = configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match admin::create_topic(&mut dest, &record.topic, record.partitions, -1, &configs)
                .await
            {
                Ok(()) => {
                    tracing::info!(mirror = %record.topic, partitions = record.partitions,
                        "created the topic of a mirror whose creation had not finished");
                }
                Err(AdminError::Kafka { code, .. }) if code == TOPIC_ALREADY_EXISTS => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        self.clear_topic_pending(&record.topic).await
    }

    /// Rewrites the mirror's record without `topic_pending` (a no-op when it is clear
    /// already or the record went).
    pub(super) async fn clear_topic_pending(self: &Arc<Self>, topic: &str) -> Result<(), ApiError> {
        let state = self.snapshot();
        let Some(entry) = state.mirrors.get(topic) else {
            return Ok(());
        };
        if !entry.record.topic_pending {
            return Ok(());
        }
        let key = format!("{MIRROR_PREFIX}{topic}");
        let mut record = entry.record.clone();
        record.topic_pending = false;
        record.version = state.catalog.next_version(&key);
        let offset = store::put_mirror(&self.dest, topic, Some(&record))
            .await
            .map_err(unavailable)?;
        self.commit(offset).await.map(|_| ())
    }

    /// The link owner's pass: every overdue pending mirror of `active` gets its topic,
    /// those that failed before once their retry is due.
    pub(super) async fn finish_overdue_topics(
        self: &Arc<Self>,
        active: &[(MirrorRecord, Source)],
        retries: &mut PendingRetries,
    ) {
        let now = super::now_ms();
        retries.retain(|mirror| active.iter().any(|(r, _)| r.topic == mirror));
        for (record, source) in active.iter().filter(|(r, _)| overdue(r, now)) {
            if !retries.is_due(&record.topic, Instant::now()) {
                continue;
            }
            match self.finish_pending_topic(record, source).await {
                Ok(()) => retries.succeeded(&record.topic),
                Err(e) => {
                    let next = retries.failed(&record.topic, Instant::now());
                    tracing::warn!(mirror = %record.topic, error = %e, next_attempt_in = ?next,
                        "cannot create the topic of a mirror whose creation had not finished; retrying");
                }
            }
        }
    }
}

/// When the link's owner next tries to finish each pending mirror whose topic it could
/// not create: backing off from the check interval to [`PENDING_RETRY_MAX`], so a
/// destination that keeps refusing is neither asked nor logged every check. Only pacing:
/// an instance that takes the link over starts afresh.
#[derive(Debug, Default)]
pub(super) struct PendingRetries {
    by_mirror: HashMap<String, (Backoff, Instant)>,
}

/// The longest wait between attempts to create a pending mirror's topic.
pub(super) const PENDING_RETRY_MAX: Duration = Duration::from_secs(60);
/// The first wait after a failed attempt.
const PENDING_RETRY_FIRST: Duration = Duration::from_secs(2);

impl PendingRetries {
    fn is_due(&self, mirror: &str, now: Instant) -> bool {
        self.by_mirror
            .get(mirror)
            .is_none_or(|(_, next)| now >= *next)
    }

    /// Records a failed attempt; returns the wait before the next one.
    fn failed(&mut self, mirror: &str, now: Instant) -> Duration {
        let (backoff, next) = self.by_mirror.entry(mirror.to_string()).or_insert_with(|| {
            (
                Backoff::new(PENDING_RETRY_FIRST, PENDING_RETRY_MAX, Jitter::Equal),
                now,
            )
        });
        let wait = backoff.next_delay();
        *next = now + wait;
        wait
    }

    fn succeeded(&mut self, mirror: &str) {
        self.by_mirror.remove(mirror);
    }

    /// Forgets mirrors no longer active here.
    fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.by_mirror.retain(|mirror, _| keep(mirror));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(age_ms: i64, now: i64) -> MirrorRecord {
        let mut r = MirrorRecord::paused("m", "s", "l", 2);
        r.state = MirrorState::Active;
        r.topic_pending = true;
        r.state_time_ms = now - age_ms;
        r
    }

    #[test]
    fn a_failed_creation_is_retried_later_and_later_up_to_the_limit() {
        let mut retries = PendingRetries::default();
        let start = Instant::now();
        assert!(retries.is_due("m", start));
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let wait = retries.failed("m", now);
            assert!(!retries.is_due("m", now));
            assert!(!retries.is_due("m", now + wait / 2 - Duration::from_millis(1)));
            assert!(retries.is_due("m", now + wait));
            waits.push(wait);
            now += wait;
        }
        // Equal jitter: each wait is within [step / 2, step] of a doubling step.
        assert!(waits[0] >= PENDING_RETRY_FIRST / 2 && waits[0] <= PENDING_RETRY_FIRST);
        assert!(waits[7] >= PENDING_RETRY_MAX / 2 && waits[7] <= PENDING_RETRY_MAX);
        // Another mirror is not held back, and success starts over.
        assert!(retries.is_due("other", start));
        retries.succeeded("m");
        assert!(retries.is_due("m", start));
        retries.failed("m", start);
        retries.retain(|mirror| mirror != "m");
        assert!(retries.is_due("m", start));
    }

    #[test]
    fn a_pending_mirror_is_overdue_only_after_the_grace() {
        let now = 1_000_000_000;
        let grace = CREATE_GRACE.as_millis() as i64;
        assert!(!overdue(&pending(grace - 1, now), now));
        assert!(overdue(&pending(grace + 1, now), now));
        let mut created = pending(grace + 1, now);
        created.topic_pending = false;
        assert!(!overdue(&created, now));
        let mut paused = pending(grace + 1, now);
        paused.state = MirrorState::Paused;
        assert!(!overdue(&paused, now));
        let mut restoring = pending(grace + 1, now);
        restoring.restoring = Some(store::Restoring {
            set_aside_topic: "t".into(),
            set_aside_from: vec![],
        });
        assert!(!overdue(&restoring, now));
        // A clock that went back never makes a record overdue.
        assert!(!overdue(&pending(-grace * 10, now), now));
    }

    #[test]
    fn a_retry_finishes_only_the_same_pending_mirror() {
        let now = 1_000_000_000;
        let r = pending(0, now);
        assert!(retry_of(Some(&r), "l", "s").is_some());
        assert!(retry_of(Some(&r), "other", "s").is_none());
        assert!(retry_of(Some(&r), "l", "other").is_none());
        let mut created = r.clone();
        created.topic_pending = false;
        assert!(retry_of(Some(&created), "l", "s").is_none());
        assert!(retry_of(None, "l", "s").is_none());
    }
}
