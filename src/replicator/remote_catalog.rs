//! Another fleet's catalog, read once through a link: the new primary's mirrorgate
//! recorded there where each of its mirrors stopped (`LastMirrored`), which is what
//! truncate-and-restore on the old primary needs; and on a bidirectional link, which of
//! its topics are mirrors of ours (never to be mirrored back). Read like our own metadata topic
//! (`catalog_feed`), with the same bounded decoder; its link records stay sealed (we
//! hold no key for them) and are not needed. A reverse (`reverse`) also writes there.

use std::collections::BTreeSet;

use super::catalog::Catalog;
use super::catalog_feed::{apply_records, fetch, Fetched};
use super::manager::ApiError;
use super::partition::{log_end_offset, log_start_offset};
use super::source::Source;
use super::store::{self, MirrorState};
use crate::kafka::admin::{self};
use crate::kafka::error_code::UNKNOWN_TOPIC_OR_PARTITION;

/// Most fetches for one read: the topic is compacted and small; a log that never ends
/// (records written faster than read) must not keep a command waiting forever.
const MAX_FETCHES: usize = 10_000;

/// The catalog in `topic` on the link's cluster, read up to its end now.
pub(super) async fn read(source: &Source, topic: &str) -> Result<Catalog, String> {
    let mut any = source.connect_any().await.map_err(|e| e.to_string())?;
    let metadata = admin::metadata(&mut any, Some(&[topic]))
        .await
        .map_err(|e| e.to_string())?;
    match admin::partition_count(&metadata, topic) {
        Ok(_) => {}
        Err(UNKNOWN_TOPIC_OR_PARTITION) => {
            return Err(format!(
                "the link's cluster has no metadata topic '{topic}' (is mirrorgate in front of it?)"
            ))
        }
        Err(code) => return Err(format!("metadata topic '{topic}': error {code}")),
    }
    let leader = admin::leader_of(&metadata, topic, 0)
        .ok_or_else(|| format!("metadata topic '{topic}' has no leader"))?;
    let mut conn = source.connect(&leader).await.map_err(|e| e.to_string())?;
    let mut position = log_start_offset(&mut conn, topic, 0)
        .await
        .map_err(|e| e.to_string())?;
    let end = log_end_offset(&mut conn, topic, 0)
        .await
        .map_err(|e| e.to_string())?;
    let mut catalog = Catalog::default();
    for _ in 0..MAX_FETCHES {
        if position >= end {
            return Ok(catalog);
        }
        let (records, high_watermark) = match fetch(&mut conn, topic, 0, position, 0).await? {
            Fetched::Records(records, hw) => (records, hw),
            Fetched::OutOfRange => {
                return Err(format!("metadata topic '{topic}' moved while read"))
            }
        };
        let next = apply_records(&mut catalog, topic, records, position, None);
        // Nothing left below the high watermark: compacted away.
        position = if next == position {
            high_watermark.max(position + 1)
        } else {
            next
        };
    }
    Err(format!("metadata topic '{topic}': not read to its end"))
}

/// Writes one record to the catalog in `topic` on the link's cluster (a reverse turns
/// a topic there into a mirror, `reverse`); a null value deletes.
pub(super) async fn write(
    source: &Source,
    topic: &str,
    key: String,
    value: Option<Vec<u8>>,
) -> Result<(), String> {
    let mut any = source.connect_any().await.map_err(|e| e.to_string())?;
    let metadata = admin::metadata(&mut any, Some(&[topic]))
        .await
        .map_err(|e| e.to_string())?;
    let leader = admin::leader_of(&metadata, topic, 0)
        .ok_or_else(|| format!("metadata topic '{topic}' on the link's cluster has no leader"))?;
    let mut conn = source.connect(&leader).await.map_err(|e| e.to_string())?;
    store::put_on(&mut conn, topic, key, value)
        .await
        .map(|_| ())
        .map_err(|e| format!("writing to the link's cluster's {e}"))
}

/// The topics of the other fleet that are mirrors (not yet stopped) copying from the
/// cluster whose id is `ours`, or from a link it cannot tell: mirroring one of them
/// back would copy our own records to us again, and again.
pub(super) fn mirrored_from(remote: &Catalog, ours: &str) -> BTreeSet<String> {
    remote
        .mirrors()
        .values()
        .filter_map(|m| m.record.as_ref())
        .filter(|r| r.state != MirrorState::Stopped)
        .filter(|r| {
            remote
                .link(&r.link)
                .and_then(|l| l.record.as_ref())
                .is_none_or(|l| l.source_cluster_id == ours)
        })
        .map(|r| r.topic.clone())
        .collect()
}

/// On a bidirectional link: `source_topic` must not be a mirror of ours on the other
/// side (read from its metadata topic, `topic`).
pub(super) async fn refuse_loop(
    source: &Source,
    topic: &str,
    source_topic: &str,
    ours: &str,
) -> Result<(), ApiError> {
    if ours.is_empty() {
        return Err(ApiError::Unavailable(
            "a bidirectional link needs this cluster's id, which cannot be read now".into(),
        ));
    }
    let remote = read(source, topic).await.map_err(|e| {
        ApiError::Unavailable(format!(
            "a bidirectional link checks the other side's catalog, which cannot be read: {e}"
        ))
    })?;
    if mirrored_from(&remote, ours).contains(source_topic) {
        return Err(ApiError::Invalid(format!(
            "Topic '{source_topic}' is a mirror of this cluster's records on the link's cluster; mirroring it back would loop."
        )));
    }
    Ok(())
}
