//! The cut-over of a link's mirrors (`mirrorgate cutover`), driven by the instance that
//! runs the link's jobs, step by step as the `cutover/<link>` record says. Each step is
//! written before it is acted on, so whichever instance holds the link next (after a
//! crash, a rebalance) resumes where the record is:
//!
//! 1. `WAITING_FOR_LAG`: until the mirrors' lag is at most `max_lag_records`.
//! 2. `FENCING`: every proxy parks Produce to the topics (`produce_fence`) and each live
//!    instance confirms it (`fence_member`); past the timeout the cut-over aborts.
//! 3. `VERIFYING`: the source's end offsets must stand still while fenced (else a
//!    producer writes there directly: abort, naming the partitions), and the mirrors
//!    catch up to them.
//! 4. `SYNCING`: promote (final consumer offset and config sync, then STOPPED).
//! 5. `DONE` lifts the fence: parked writes go on to the promoted topics.
//!
//! A reverse (`reverse`) also makes the source topics read-only on the link's cluster
//! once every instance holds the fence, and after promoting lifts the fence at
//! `REVERSING`, where those topics become mirrors of the promoted ones.
//!
//! `ABORTED` lifts it too: nothing parked is lost, the mirrors stay mirrors.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use super::catalog::{CutoverRecord, CutoverStep, Reverse, CUTOVER_PREFIX, MAX_CUTOVER_PARTITIONS};
use super::manager::{Change, Inner, Replicator};
use super::now_ms;
use super::reverse;
use super::store::{self, MirrorState};
use super::txn_forward;
use crate::kafka::backoff::{Backoff, Jitter};

/// How often the supervisor looks for cut-overs this instance should drive.
const TICK: Duration = Duration::from_millis(300);
/// How long the source's end offsets must stand still under the fence, at least (they
/// are checked against those read first under it for the whole step).
const QUIET: Duration = Duration::from_secs(1);
/// Polling while a step waits on the fleet or the mirrors.
const POLL: Duration = Duration::from_millis(200);

/// Runs a driver for every unfinished cut-over of a link this instance runs the jobs
/// of; stops it when the link moves elsewhere or the cut-over ends.
pub(super) async fn supervise(inner: Arc<Inner>) {
    let mut running: HashMap<String, (String, DropGuard)> = HashMap::new();
    loop {
        tokio::select! {
            _ = inner.shutdown.cancelled() => return,
            _ = tokio::time::sleep(TICK) => {}
        }
        let state = inner.snapshot();
        let wanted: HashMap<String, String> = state
            .catalog
            .cutovers()
            .iter()
            .filter(|(link, c)| !c.step.is_final() && state.share.owns_link(link))
            .map(|(link, c)| (link.clone(), c.id.clone()))
            .collect();
        running.retain(|link, (id, _)| wanted.get(link) == Some(id));
        for (link, id) in wanted {
            if running.contains_key(&link) {
                continue;
            }
            let stop = inner.shutdown.child_token();
            let span = tracing::info_span!("cutover", link = %link, cutover = %id);
            let driver = drive(inner.clone(), link.clone(), id.clone(), stop.clone());
            tokio::spawn(driver.instrument(span));
            running.insert(link, (id, stop.drop_guard()));
        }
    }
}

/// What a step asks for next.
enum Next {
    /// Look again after this long.
    Again(Duration),
    /// A new record was written (or lost to another writer): read it and go on.
    Wrote,
}

async fn drive(inner: Arc<Inner>, link: String, id: String, stop: CancellationToken) {
    let mut backoff = Backoff::new(POLL, Duration::from_secs(5), Jitter::Equal);
    loop {
        let record = inner
            .snapshot()
            .catalog
            .cutover(&link)
            .filter(|c| c.id == id && !c.step.is_final())
            .cloned();
        let Some(record) = record else { return };
        let next = tokio::select! {
            _ = stop.cancelled() => return,
            next = step(&inner, &link, &record) => next,
        };
        let pause = match next {
            Ok(Next::Again(pause)) => pause,
            Ok(Next::Wrote) => {
                backoff.reset();
                continue;
            }
            Err(e) => {
                tracing::warn!(link, cutover = id, step = record.step.as_str(), error = %format!("{e:#}"), "cut-over step failed; retrying");
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

async fn step(inner: &Arc<Inner>, link: &str, record: &CutoverRecord) -> anyhow::Result<Next> {
    let now = now_ms();
    let past_deadline = record.deadline_ms().is_some_and(|d| now > d);
    match record.step {
        CutoverStep::WaitingForLag => {
            let lag = lag(inner, link, record).await?;
            if lag.values().sum::<i64>() <= record.max_lag_records {
                let mut next = advanced(record, CutoverStep::Fencing, None);
                next.fenced_ms = Some(now);
                return write(inner, link, next).await;
            }
            Ok(Next::Again(Duration::from_secs(1)))
        }
        CutoverStep::Fencing => {
            let state = inner.snapshot();
            let catalog = &state.catalog;
            let missing: Vec<String> = inner
                .member
                .heartbeats
                .live(catalog.instances(), now)
                .into_iter()
                .filter(|i| !catalog.acked(link, i, &record.id))
                .collect();
            if missing.is_empty() {
                // New transactions wait at the fence; those forwarded before it end on
                // the source (their producers commit them through the fence) before the
                // source is watched, so no producer is told anything.
                let sessions = catalog.transactional_sessions(link);
                if !sessions.is_empty() {
                    let source = state
                        .source_of(link)
                        .with_context(|| format!("cluster link '{link}' cannot run"))?;
                    let open = match txn_forward::open_on_source(&source, &sessions).await {
                        Ok(open) => open,
                        Err(e) if past_deadline => {
                            let reason = format!("forwarded transactions on the source: {e}");
                            return abort(inner, link, record, reason).await;
                        }
                        Err(e) => return Err(anyhow::anyhow!(e)),
                    };
                    if !open.is_empty() {
                        if past_deadline {
                            let reason = format!(
                                "transactions forwarded to the source were still open after {} ms: {} (one whose producer or instance died is aborted by the source after {} s)",
                                record.timeout_ms,
                                open.join(", "),
                                txn_forward::SOURCE_TRANSACTION_TIMEOUT.as_secs()
                            );
                            return abort(inner, link, record, reason).await;
                        }
                        tracing::info!(link, open = %open.join(", "), "waiting for transactions forwarded to the source to end");
                        return Ok(Next::Again(POLL));
                    }
                }
                if record.reverse.is_some() {
                    // The other side must answer within the fence's timeout, as every
                    // instance here must confirm within it. Made read-only there just
                    // now: a write its proxies let through before they read that must
                    // land before the source is watched.
                    let held = async {
                        let held = reverse::hold(inner, link, record).await?;
                        let moving = moving_source(inner, link, record).await?;
                        anyhow::Ok((held, moving))
                    };
                    let (held, moving) = match held.await {
                        Ok(done) => done,
                        Err(e) if past_deadline => {
                            let reason = format!(
                                "the source topics could not be made read-only on the link's cluster within {} ms: {e:#}",
                                record.timeout_ms
                            );
                            return abort(inner, link, record, reason).await;
                        }
                        Err(e) => return Err(e),
                    };
                    if let reverse::Held::Refused(reason) = held {
                        return abort(inner, link, record, reason).await;
                    }
                    if !moving.is_empty() {
                        if past_deadline {
                            let reason = format!(
                                "the source's end offsets still moved after its topics were made read-only there: {}",
                                moving.join(", ")
                            );
                            return abort(inner, link, record, reason).await;
                        }
                        return Ok(Next::Again(POLL));
                    }
                }
                return write(inner, link, advanced(record, CutoverStep::Verifying, None)).await;
            }
            if past_deadline {
                let reason = format!(
                    "instance(s) {} did not confirm the fence within {} ms",
                    missing.join(", "),
                    record.timeout_ms
                );
                return abort(inner, link, record, reason).await;
            }
            Ok(Next::Again(POLL))
        }
        CutoverStep::Verifying => {
            if past_deadline {
                let reason = format!(
                    "the mirrors did not catch up with the fenced source within {} ms",
                    record.timeout_ms
                );
                return abort(inner, link, record, reason).await;
            }
            let now_ends = source_ends(inner, link, record).await?;
            let Some(fenced) = &record.fenced_source_ends else {
                // First look under the fence: these ends must hold from now on.
                let mut next = record.clone();
                next.fenced_source_ends = Some(as_recorded(&now_ends));
                // The quiet period counts from here.
                next.step_time_ms = now_ms();
                next.version = record.version + 1;
                if next.fenced_source_ends.as_ref().map_or(0, partitions) > MAX_CUTOVER_PARTITIONS {
                    let reason = format!(
                        "more than {MAX_CUTOVER_PARTITIONS} partitions in one cut-over; cut over fewer topics at once"
                    );
                    return abort(inner, link, record, reason).await;
                }
                return write(inner, link, next).await;
            };
            let moved = moved(&from_recorded(fenced), &now_ends);
            if !moved.is_empty() {
                let reason = format!(
                    "the source's end offsets moved while every instance held the fence, so a producer writes to the source directly, bypassing mirrorgate: {}",
                    moved.join(", ")
                );
                return abort(inner, link, record, reason).await;
            }
            // The source must stand still a while, not only between two reads.
            let quiet_ms = i64::try_from(QUIET.as_millis()).unwrap_or(i64::MAX);
            if now.saturating_sub(record.step_time_ms) < quiet_ms {
                return Ok(Next::Again(POLL));
            }
            let lag = lag(inner, link, record).await?;
            if lag.values().all(|l| *l <= 0) {
                return write(inner, link, advanced(record, CutoverStep::Syncing, None)).await;
            }
            Ok(Next::Again(POLL))
        }
        CutoverStep::Syncing => {
            let state = inner.snapshot();
            let pending: Vec<String> = record
                .topics
                .iter()
                .filter(|t| {
                    state
                        .mirrors
                        .get(*t)
                        .is_some_and(|m| m.record.state != MirrorState::Stopped)
                })
                .cloned()
                .collect();
            if pending.is_empty() {
                let next = match record.reverse {
                    Some(_) => CutoverStep::Reversing,
                    None => CutoverStep::Done,
                };
                return write(inner, link, advanced(record, next, None)).await;
            }
            let results = Replicator::from_inner(inner.clone())
                .change(link, &pending, Change::Promote)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let failed: Vec<String> = results
                .into_iter()
                .filter_map(|(topic, r)| r.err().map(|e| format!("{topic}: {e}")))
                .collect();
            if failed.is_empty() {
                return Ok(Next::Wrote);
            }
            // Promotion is under way: keep at it for a second timeout before giving up.
            let given_up = record
                .deadline_ms()
                .is_some_and(|d| now > d.saturating_add(record.timeout_ms as i64));
            if given_up {
                let reason = format!("not promoted: {}", failed.join("; "));
                return abort(inner, link, record, reason).await;
            }
            tracing::warn!(link, failed = %failed.join("; "), "promote failed; retrying");
            Ok(Next::Again(Duration::from_millis(500)))
        }
        CutoverStep::Reversing => {
            // Promoted and released here; the other side stays read-only until this ends,
            // however long its cluster takes to answer.
            let reverse = record.reverse.unwrap_or(Reverse::Start);
            let left = reverse::complete(inner, link, record, reverse).await?;
            let reason = (!left.is_empty()).then(|| left.join("; "));
            write(inner, link, advanced(record, CutoverStep::Done, reason)).await
        }
        CutoverStep::Done | CutoverStep::Aborted => Ok(Next::Again(POLL)),
    }
}

/// The record one step on.
fn advanced(record: &CutoverRecord, step: CutoverStep, reason: Option<String>) -> CutoverRecord {
    let mut next = record.clone();
    next.step = step;
    next.reason = reason;
    next.step_time_ms = now_ms();
    next.version = record.version + 1;
    next
}

async fn abort(
    inner: &Arc<Inner>,
    link: &str,
    record: &CutoverRecord,
    reason: String,
) -> anyhow::Result<Next> {
    let reason = match release_other_side(inner, link, record).await {
        Ok(()) => reason,
        Err(e) => format!("{reason}; {e}"),
    };
    tracing::warn!(
        link,
        cutover = record.id,
        reason,
        "cut-over aborted; the fence is lifted"
    );
    write(
        inner,
        link,
        advanced(record, CutoverStep::Aborted, Some(reason)),
    )
    .await
}

/// A reverse's marks on the link's cluster removed, if it got that far; when that
/// cluster cannot be reached, the error says how to release its topics there.
pub(super) async fn release_other_side(
    inner: &Arc<Inner>,
    link: &str,
    record: &CutoverRecord,
) -> Result<(), String> {
    if record.reverse.is_none() || record.step == CutoverStep::WaitingForLag {
        return Ok(());
    }
    reverse::release(inner, link, record).await.map_err(|e| {
        format!(
            "the source topics on the link's cluster could not be made writable again ({e:#}); fail them over there (mirrors --failover) to release them"
        )
    })
}

/// Writes the next record and waits until this instance applied it; a record another
/// writer got in first with is simply read next time round.
async fn write(inner: &Arc<Inner>, link: &str, next: CutoverRecord) -> anyhow::Result<Next> {
    let key = format!("{CUTOVER_PREFIX}{link}");
    let offset = store::put_json(&inner.dest, key, Some(&next))
        .await
        .context("writing the cut-over's step")?;
    let view = inner
        .commit(offset)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if view.catalog.cutover(link) == Some(&next) {
        tracing::info!(
            link,
            cutover = next.id,
            step = next.step.as_str(),
            "cut-over step"
        );
    }
    Ok(Next::Wrote)
}

/// Records each mirror topic is behind its source right now, by "topic partition".
pub(super) async fn lag(
    inner: &Arc<Inner>,
    link: &str,
    record: &CutoverRecord,
) -> anyhow::Result<BTreeMap<String, i64>> {
    let sources = source_ends(inner, link, record).await?;
    let mut any = inner.dest.connect_any().await?;
    let mut lag = BTreeMap::new();
    for (topic, ends) in sources {
        let mirror = inner.dest.end_offsets(&mut any, &topic).await?;
        for (p, end) in ends {
            let behind = end - mirror.get(&p).copied().unwrap_or(0);
            lag.insert(format!("{topic} {p}"), behind.max(0));
        }
    }
    Ok(lag)
}

/// The source's end offsets of each mirror topic's source topic, by mirror topic.
async fn source_ends(
    inner: &Arc<Inner>,
    link: &str,
    record: &CutoverRecord,
) -> anyhow::Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let state = inner.snapshot();
    let source = state
        .source_of(link)
        .with_context(|| format!("cluster link '{link}' cannot run"))?;
    let mut ends = BTreeMap::new();
    for topic in &record.topics {
        let Some(mirror) = state.mirrors.get(topic) else {
            continue;
        };
        let source_topic = &mirror.record.source_topic;
        let topic_ends = source
            .end_offsets(source_topic)
            .await
            .with_context(|| format!("end offsets of source topic '{source_topic}'"))?;
        ends.insert(topic.clone(), topic_ends);
    }
    Ok(ends)
}

/// Source partitions whose end moved within `QUIET`, as `moved` names them.
pub(super) async fn moving_source(
    inner: &Arc<Inner>,
    link: &str,
    record: &CutoverRecord,
) -> anyhow::Result<Vec<String>> {
    let before = source_ends(inner, link, record).await?;
    tokio::time::sleep(QUIET).await;
    let after = source_ends(inner, link, record).await?;
    Ok(moved(&before, &after))
}

/// End offsets as a cut-over record keeps them: by topic, index = partition.
fn as_recorded(ends: &BTreeMap<String, BTreeMap<i32, i64>>) -> BTreeMap<String, Vec<i64>> {
    ends.iter()
        .map(|(topic, by_partition)| (topic.clone(), by_partition.values().copied().collect()))
        .collect()
}

fn from_recorded(ends: &BTreeMap<String, Vec<i64>>) -> BTreeMap<String, BTreeMap<i32, i64>> {
    ends.iter()
        .map(|(topic, offsets)| {
            let by_partition = (0..).zip(offsets.iter().copied()).collect();
            (topic.clone(), by_partition)
        })
        .collect()
}

fn partitions(ends: &BTreeMap<String, Vec<i64>>) -> usize {
    ends.values().map(Vec::len).sum()
}

/// "topic partition: before -> after" for every partition whose end moved.
fn moved(
    before: &BTreeMap<String, BTreeMap<i32, i64>>,
    after: &BTreeMap<String, BTreeMap<i32, i64>>,
) -> Vec<String> {
    let mut moved = Vec::new();
    for (topic, ends) in after {
        for (p, end) in ends {
            let was = before.get(topic).and_then(|e| e.get(p)).copied();
            if was != Some(*end) {
                let was = was.map_or("none".to_string(), |w| w.to_string());
                moved.push(format!("'{topic}' partition {p}: {was} -> {end}"));
            }
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::moved;
    use std::collections::BTreeMap;

    #[test]
    fn moved_names_every_partition_whose_end_changed() {
        let ends = |pairs: &[(i32, i64)]| {
            let mut m = BTreeMap::new();
            m.insert("t".to_string(), pairs.iter().copied().collect());
            m
        };
        assert!(moved(&ends(&[(0, 5), (1, 7)]), &ends(&[(0, 5), (1, 7)])).is_empty());
        assert_eq!(
            moved(&ends(&[(0, 5), (1, 7)]), &ends(&[(0, 5), (1, 9), (2, 1)])),
            vec!["'t' partition 1: 7 -> 9", "'t' partition 2: none -> 1"]
        );
    }
}
