//! Another fleet's catalog, read once through a link: the new primary's mirrorgate
//! recorded there where each of its mirrors stopped (`LastMirrored`), which is what
//! truncate-and-restore on the old primary needs. Read like our own metadata topic
//! (`catalog_feed`), with the same bounded decoder; its link records stay sealed (we
//! hold no key for them) and are not needed.

use super::catalog::Catalog;
use super::catalog_feed::{apply_records, fetch, Fetched};
use super::partition::{log_end_offset, log_start_offset};
use super::source::Source;
use crate::kafka::admin::{self, UNKNOWN_TOPIC};

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
        Err(UNKNOWN_TOPIC) => {
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
