//! End offsets of every partition of a topic, asked of each partition's leader (one
//! ListOffsets per leader), for decisions that must rest on fresh figures (promote).

use std::collections::BTreeMap;
use std::future::Future;

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};

use super::admin::{self, topic_name, AdminError};
use super::client::{ClientError, KafkaConnection};

const LIST_OFFSETS_VERSION: i16 = 7;
/// ListOffsets timestamp for the high watermark.
const LATEST: i64 = -1;
/// A consumer's replica id: LATEST is the high watermark.
const CONSUMER: i32 = -1;

/// The high watermark of every partition of `topic`, by partition. `any` is any
/// broker of the cluster; `connect` reaches a leader by address.
pub async fn end_offsets<F, Fut>(
    any: &mut KafkaConnection,
    connect: F,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, AdminError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<KafkaConnection, ClientError>>,
{
    Ok(end_offsets_with_epochs(any, connect, topic)
        .await?
        .into_iter()
        .map(|(partition, (offset, _))| (partition, offset))
        .collect())
}

/// As [`end_offsets`], with the leader epoch of each partition's last record (-1 when
/// the broker does not say).
pub async fn end_offsets_with_epochs<F, Fut>(
    any: &mut KafkaConnection,
    connect: F,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i32)>, AdminError>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Result<KafkaConnection, ClientError>>,
{
    let (count, by_leader) = partitions_by_leader(any, topic).await?;
    let mut ends = BTreeMap::new();
    for (leader, partitions) in by_leader {
        let mut conn = connect(leader).await?;
        ends.extend(latest_offsets(&mut conn, topic, &partitions).await?);
    }
    all_answered(topic, count, ends)
}

/// The partition count of `topic`, and its partitions by leader address.
pub async fn partitions_by_leader(
    any: &mut KafkaConnection,
    topic: &str,
) -> Result<(i32, BTreeMap<String, Vec<i32>>), AdminError> {
    let metadata = admin::metadata(any, Some(&[topic])).await?;
    let count = admin::partition_count(&metadata, topic).map_err(|code| AdminError::Kafka {
        code,
        message: format!("metadata of '{topic}'"),
    })?;
    let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for partition in 0..count {
        let leader =
            admin::leader_of(&metadata, topic, partition).ok_or_else(|| AdminError::Kafka {
                code: -1,
                message: format!("no leader for {topic}-{partition}"),
            })?;
        by_leader.entry(leader).or_default().push(partition);
    }
    Ok((count, by_leader))
}

/// The high watermark and last leader epoch of `partitions` of `topic`, asked of
/// their leader over `conn`.
pub async fn latest_offsets(
    conn: &mut KafkaConnection,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, (i64, i32)>, AdminError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(CONSUMER))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(*p)
                            .with_timestamp(LATEST)
                    })
                    .collect(),
            )]);
    let response = conn.call(&request, LIST_OFFSETS_VERSION).await?;
    let mut ends = BTreeMap::new();
    for answer in response.topics.into_iter().flat_map(|t| t.partitions) {
        if answer.error_code != 0 {
            return Err(AdminError::Kafka {
                code: answer.error_code,
                message: format!("end offset of {topic}-{}", answer.partition_index),
            });
        }
        ends.insert(answer.partition_index, (answer.offset, answer.leader_epoch));
    }
    Ok(ends)
}

/// `ends` when it holds every one of the `count` partitions of `topic`.
pub fn all_answered<T>(
    topic: &str,
    count: i32,
    ends: BTreeMap<i32, T>,
) -> Result<BTreeMap<i32, T>, AdminError> {
    if ends.len() != count as usize {
        return Err(AdminError::Kafka {
            code: -1,
            message: format!(
                "end offsets of '{topic}': {} of {count} partitions answered",
                ends.len()
            ),
        });
    }
    Ok(ends)
}
