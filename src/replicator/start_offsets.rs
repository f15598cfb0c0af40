//! `mirror.start.offset.spec`, resolved once when a mirror is created and stored with
//! it: `latest` means the source's end at that moment, not whenever a partition task
//! happens to start (records produced in between would be skipped), and a restart
//! before anything was copied starts at the same offsets.

use std::collections::HashMap;

use kafka_protocol::messages::MetadataResponse;

use super::link_config::StartOffset;
use super::partition::{list_offset_at, CopyError, LATEST, NO_OFFSET};
use super::source::Source;
use crate::kafka::admin;
use crate::kafka::client::{ClientError, KafkaConnection};

/// The source offset each partition of `topic` starts at (empty for `earliest`: the
/// copier then starts at the source's log start).
pub async fn resolve(
    source: &Source,
    metadata: &MetadataResponse,
    topic: &str,
    partitions: i32,
    spec: StartOffset,
) -> Result<Vec<i64>, CopyError> {
    let at = match spec {
        StartOffset::Earliest => return Ok(Vec::new()),
        StartOffset::Latest => LATEST,
        StartOffset::Timestamp(ms) => ms,
    };
    let mut leaders: HashMap<String, KafkaConnection> = HashMap::new();
    let mut offsets = Vec::new();
    for partition in 0..partitions {
        let leader = admin::leader_of(metadata, topic, partition).ok_or_else(|| {
            ClientError::Protocol(format!("no leader for {topic}-{partition} on the source"))
        })?;
        let conn = match leaders.entry(leader) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let conn = source.connect(e.key()).await?;
                e.insert(conn)
            }
        };
        let offset = match list_offset_at(conn, topic, partition, at).await? {
            // No record at or after the time: start at the end.
            NO_OFFSET => list_offset_at(conn, topic, partition, LATEST).await?,
            offset => offset,
        };
        offsets.push(offset);
    }
    Ok(offsets)
}
