//! The other side of a reverse (`mirrors --reverse-and-start-mirror` and
//! `--reverse-and-pause-mirror`, run where the mirrors are): a cut-over of the link's
//! mirrors (`cutover`) that also turns each one's source topic, on the link's cluster,
//! into a mirror of it. That cluster's fleet reads its own catalog; this writes there
//! through the link, as that fleet's own commands would (versioned records, read back):
//!
//! - `hold`, under the fence, before the source must stand still: each source topic
//!   gets a PAUSED mirror record marked `reversing`, so every proxy there refuses writes
//!   to it and nothing is copied to it;
//! - `complete`, once promoted here: that record becomes the mirror, ACTIVE or PAUSED.
//!   The two topics are equal then (the promote waited for lag 0 while nothing could
//!   write there), so it copies on from its end: nothing is deleted or copied again;
//! - `release`, on abort: the marks go and the source topics are writable again.
//!
//! As in Confluent, both links are bidirectional and carry the same name.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{bail, Context};

use super::catalog::{Catalog, CutoverRecord, Reverse, MIRROR_PREFIX};
use super::config_sync::TIMESTAMP_TYPE;
use super::link_config::LINK_MODE_KEY;
use super::manager::{runnable_link, unavailable, ApiError, Inner};
use super::remote_catalog;
use super::source::Source;
use super::store::{MirrorRecord, MirrorState, Reversing};
use crate::kafka::admin;
use crate::kafka::producer::init_producer_id;

/// The link's cluster: how to reach it, and its catalog as last read.
struct OtherSide {
    source: Source,
    metadata_topic: String,
    catalog: Catalog,
}

impl OtherSide {
    async fn open(inner: &Arc<Inner>, link: &str) -> Result<Self, ApiError> {
        let state = inner.snapshot();
        let config = runnable_link(&state, link)?;
        let source = Source::from_config(&config).map_err(ApiError::Invalid)?;
        let metadata_topic = inner.remote_metadata_topic(&config);
        let catalog = remote_catalog::read(&source, &metadata_topic)
            .await
            .map_err(|e| unavailable(format!("the link's cluster's catalog: {e}")))?;
        Ok(Self {
            source,
            metadata_topic,
            catalog,
        })
    }

    async fn reread(&mut self) -> anyhow::Result<()> {
        self.catalog = remote_catalog::read(&self.source, &self.metadata_topic)
            .await
            .map_err(|e| anyhow::anyhow!("the link's cluster's catalog: {e}"))?;
        Ok(())
    }

    fn mirror(&self, topic: &str) -> Option<&MirrorRecord> {
        self.catalog.mirror(topic).and_then(|m| m.record.as_ref())
    }

    /// Writes `topic`'s mirror record there. A STOPPED record is never replaced (a
    /// promoted topic stays writable), so it is deleted first: that reads the same.
    async fn put(&self, topic: &str, record: &MirrorRecord) -> anyhow::Result<()> {
        let key = format!("{MIRROR_PREFIX}{topic}");
        if self
            .mirror(topic)
            .is_some_and(|r| r.state == MirrorState::Stopped)
        {
            remote_catalog::write(&self.source, &self.metadata_topic, key.clone(), None)
                .await
                .map_err(anyhow::Error::msg)?;
        }
        let value = serde_json::to_vec(record).context("encoding a mirror record")?;
        remote_catalog::write(&self.source, &self.metadata_topic, key, Some(value))
            .await
            .map_err(anyhow::Error::msg)
    }

    async fn delete(&self, topic: &str) -> anyhow::Result<()> {
        let key = format!("{MIRROR_PREFIX}{topic}");
        remote_catalog::write(&self.source, &self.metadata_topic, key, None)
            .await
            .map_err(anyhow::Error::msg)
    }

    fn next_version(&self, topic: &str) -> u64 {
        match self.mirror(topic) {
            Some(r) if r.state == MirrorState::Stopped => 1,
            _ => self
                .catalog
                .next_version(&format!("{MIRROR_PREFIX}{topic}")),
        }
    }
}

/// Each mirror topic of the cut-over with its record here (its source topic there).
fn mirrors_of(inner: &Arc<Inner>, topics: &[String]) -> Vec<MirrorRecord> {
    let state = inner.snapshot();
    topics
        .iter()
        .filter_map(|t| state.mirrors.get(t).map(|m| m.record.clone()))
        .collect()
}

/// What a reverse of `topics` needs, checked before anything is fenced: both links
/// bidirectional, the link of that name on the link's cluster copying from this one,
/// and no source topic there already a mirror. Returns the plan's lines.
pub(super) async fn check(
    inner: &Arc<Inner>,
    link: &str,
    topics: &[String],
    reverse: Reverse,
) -> Result<Vec<String>, ApiError> {
    let state = inner.snapshot();
    let config = runnable_link(&state, link)?;
    let mut errors = Vec::new();
    if !config.bidirectional {
        errors.push(format!(
            "link '{link}': a reverse needs {LINK_MODE_KEY}=BIDIRECTIONAL on both sides"
        ));
    }
    let other = OtherSide::open(inner, link).await?;
    let ours = inner.destination_cluster_id().await;
    match other.catalog.link(link).and_then(|l| l.record.as_ref()) {
        None => errors.push(format!(
            "the link's cluster has no link '{link}' (its metadata topic '{}'); create it there, to this cluster, with the same name",
            other.metadata_topic
        )),
        Some(there) => {
            if ours.is_empty() || there.source_cluster_id != ours {
                errors.push(format!(
                    "link '{link}' on the link's cluster copies from cluster '{}', not from this one ('{ours}')",
                    there.source_cluster_id
                ));
            }
            if there.config.get(LINK_MODE_KEY).map(String::as_str) != Some("BIDIRECTIONAL") {
                errors.push(format!(
                    "link '{link}' on the link's cluster: a reverse needs {LINK_MODE_KEY}=BIDIRECTIONAL on both sides"
                ));
            }
        }
    }
    let mut plan = Vec::new();
    for mirror in mirrors_of(inner, topics) {
        let source_topic = &mirror.source_topic;
        match other.mirror(source_topic) {
            None => {}
            Some(r) if r.state == MirrorState::Stopped => {}
            Some(r) => errors.push(format!(
                "topics: source topic '{source_topic}' of '{}' is a {} mirror of link '{}' on the link's cluster",
                mirror.topic,
                r.state.as_str(),
                r.link
            )),
        }
        let becomes = match reverse {
            Reverse::Start => "an ACTIVE",
            Reverse::Pause => "a PAUSED",
        };
        plan.push(format!(
            "then '{source_topic}' on the link's cluster becomes {becomes} mirror of '{}' (read-only there from the fence on)",
            mirror.topic
        ));
    }
    match errors.is_empty() {
        true => Ok(plan),
        false => Err(ApiError::Invalid(errors.join("; "))),
    }
}

/// What `hold` found.
pub(super) enum Held {
    /// Every source topic there is marked: read-only on every proxy there.
    Held,
    /// A source topic became something else there meanwhile: the reverse cannot go on.
    Refused(String),
}

/// Marks every source topic there `reversing` (see the module's comment).
pub(super) async fn hold(
    inner: &Arc<Inner>,
    link: &str,
    cutover: &CutoverRecord,
) -> anyhow::Result<Held> {
    let mut other = OtherSide::open(inner, link)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let ours = |r: &MirrorRecord| {
        r.reversing
            .as_ref()
            .is_some_and(|m| m.cutover_id == cutover.id)
    };
    let mine = mirrors_of(inner, &cutover.topics);
    for mirror in &mine {
        let topic = &mirror.source_topic;
        match other.mirror(topic) {
            Some(r) if ours(r) => continue,
            None => {}
            Some(r) if r.state == MirrorState::Stopped => {}
            Some(r) => {
                return Ok(Held::Refused(format!(
                    "source topic '{topic}' became a {} mirror of link '{}' on the link's cluster",
                    r.state.as_str(),
                    r.link
                )))
            }
        }
        let record = MirrorRecord {
            state: MirrorState::Paused,
            reason: Some(format!(
                "being reversed: becomes a mirror of '{}' once that is promoted",
                mirror.topic
            )),
            version: other.next_version(topic),
            reversing: Some(Reversing {
                cutover_id: cutover.id.clone(),
            }),
            ..mirror_of(mirror, link)
        };
        other.put(topic, &record).await?;
    }
    other.reread().await?;
    let missing: Vec<&str> = mine
        .iter()
        .map(|m| m.source_topic.as_str())
        .filter(|t| !other.mirror(t).is_some_and(ours))
        .collect();
    if !missing.is_empty() {
        bail!(
            "not yet read-only on the link's cluster: {}",
            missing.join(", ")
        );
    }
    tracing::info!(
        link,
        cutover = cutover.id,
        "source topics read-only on the link's cluster"
    );
    Ok(Held::Held)
}

/// Removes this cut-over's marks there: its source topics are writable again.
pub(super) async fn release(
    inner: &Arc<Inner>,
    link: &str,
    cutover: &CutoverRecord,
) -> anyhow::Result<()> {
    let other = OtherSide::open(inner, link)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for mirror in mirrors_of(inner, &cutover.topics) {
        let topic = &mirror.source_topic;
        let held = other
            .mirror(topic)
            .and_then(|r| r.reversing.as_ref())
            .is_some_and(|m| m.cutover_id == cutover.id);
        if held {
            other.delete(topic).await?;
        }
    }
    Ok(())
}

/// Turns every marked source topic there into a mirror of its promoted topic here.
/// Returns what was left as found (a topic released there meanwhile), for the record.
pub(super) async fn complete(
    inner: &Arc<Inner>,
    link: &str,
    cutover: &CutoverRecord,
    reverse: Reverse,
) -> anyhow::Result<Vec<String>> {
    let mut other = OtherSide::open(inner, link)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut dest = inner.dest.connect_any().await?;
    let mut left = Vec::new();
    let mine = mirrors_of(inner, &cutover.topics);
    let names: Vec<&str> = mine.iter().map(|m| m.topic.as_str()).collect();
    let here = admin::metadata(&mut dest, Some(&names)).await?;
    for mirror in &mine {
        let topic = &mirror.source_topic;
        let held = other
            .mirror(topic)
            .and_then(|r| r.reversing.as_ref())
            .is_some_and(|m| m.cutover_id == cutover.id);
        if !held {
            // Already made a mirror of it (a driver that wrote it and stopped), or not.
            let done = other
                .mirror(topic)
                .is_some_and(|r| r.source_topic == mirror.topic);
            if !done {
                left.push(format!(
                    "'{topic}' on the link's cluster was changed there during the reverse and is left as it is"
                ));
            }
            continue;
        }
        let mut conn = other.source.connect_any().await?;
        // As at a mirror's creation: a LogAppendTime default would restamp the batches.
        let timestamps =
            BTreeMap::from([(TIMESTAMP_TYPE.to_string(), Some("CreateTime".to_string()))]);
        for (_, result) in
            admin::alter_topic_configs(&mut conn, &[(topic.clone(), timestamps)]).await?
        {
            result.with_context(|| format!("'{topic}' on the link's cluster"))?;
        }
        // Its own producer id on that cluster, as every mirror has (conditional appends).
        let producer = init_producer_id(&mut conn).await?;
        let record = MirrorRecord {
            state: match reverse {
                Reverse::Start => MirrorState::Active,
                Reverse::Pause => MirrorState::Paused,
            },
            source_topic_id: admin::topic_id(&here, &mirror.topic),
            version: other.next_version(topic),
            producer_id: Some(producer.id),
            producer_epoch: Some(producer.epoch),
            ..mirror_of(mirror, link)
        };
        other.put(topic, &record).await?;
    }
    other.reread().await?;
    for mirror in &mine {
        let still_held = other
            .mirror(&mirror.source_topic)
            .and_then(|r| r.reversing.as_ref())
            .is_some_and(|m| m.cutover_id == cutover.id);
        if still_held {
            bail!(
                "'{}' on the link's cluster is not yet a mirror",
                mirror.source_topic
            );
        }
    }
    Ok(left)
}

/// A record there making `here`'s source topic a mirror of it on the link of the same
/// name; the caller sets state, version and what else it knows.
fn mirror_of(here: &MirrorRecord, link: &str) -> MirrorRecord {
    MirrorRecord::paused(&here.source_topic, &here.topic, link, here.partitions)
}
