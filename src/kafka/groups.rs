//! Consumer-group admin calls: list groups, find their coordinators, read and write
//! committed offsets. Kafka error codes come back as values (per group, per partition)
//! so one bad group never hides the others; only transport failures are `Err`.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, ListGroupsRequest, OffsetCommitRequest,
    OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::{topic_name, AdminError};
use super::client::{ClientError, KafkaConnection};
use super::error_code::COORDINATOR_NOT_AVAILABLE;

/// v5 lists groups of every protocol (classic, consumer, share, streams) with their
/// type and state.
const LIST_GROUPS_VERSION: i16 = 5;
/// v4 is the first with batched coordinator keys (one request for many groups).
const FIND_COORDINATOR_VERSION: i16 = 4;
/// v8 batches groups; v9 (the newest the codec writes) also carries the member epoch
/// that groups of the new consumer protocol expect (-1: an admin read).
const OFFSET_FETCH_VERSION: i16 = 9;
/// v9 is the newest that names topics (v10 switches to topic ids, which differ
/// between clusters) and the first that groups of the new consumer protocol accept.
const OFFSET_COMMIT_VERSION: i16 = 9;
/// FindCoordinator key type of a consumer group.
const GROUP_KEY: i8 = 0;

/// The broker's name for an error code, e.g. `UnknownMemberId (error 25)`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(error) => format!("{error} (error {code})"),
        None => "no error".into(),
    }
}

fn kafka_error(code: i16, message: Option<&StrBytes>) -> AdminError {
    AdminError::Kafka {
        code,
        message: message
            .map(|m| m.as_str().to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| error_name(code)),
    }
}

/// First ListGroups versions with a state filter, and with group types.
const STATES_FILTER_SINCE: i16 = 4;
const GROUP_TYPE_SINCE: i16 = 5;

/// `wanted`, or the broker's highest version of `api` when that is older.
async fn version(conn: &mut KafkaConnection, api: ApiKey, wanted: i16) -> Result<i16, ClientError> {
    match conn.max_version(api).await? {
        Some(max) => Ok(max.min(wanted)),
        None => Err(ClientError::Protocol(format!(
            "the broker does not serve {api:?}"
        ))),
    }
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    /// "consumer" for consumers of either protocol, "" for offsets-only groups.
    pub protocol_type: String,
    /// e.g. "Empty", "Stable", "PreparingRebalance", "Reconciling", "Dead".
    pub state: String,
    /// "classic", "consumer", "share" or "streams".
    pub group_type: String,
}

/// The groups this broker coordinates, optionally only those in `states` (the broker
/// compares case-insensitively). A cluster's groups are the union over its brokers.
pub async fn list_groups(
    conn: &mut KafkaConnection,
    states: &[&str],
) -> Result<Vec<ListedGroup>, AdminError> {
    let version = version(conn, ApiKey::ListGroups, LIST_GROUPS_VERSION).await?;
    // Before v4 (Kafka 2.6) there is no state filter: filtered here instead.
    let filter_here = version < STATES_FILTER_SINCE;
    let filter = match filter_here {
        true => Vec::new(),
        false => states
            .iter()
            .map(|s| StrBytes::from_string(s.to_string()))
            .collect(),
    };
    let request = ListGroupsRequest::default().with_states_filter(filter);
    let response = conn.call(&request, version).await?;
    if response.error_code != 0 {
        return Err(kafka_error(response.error_code, None));
    }
    Ok(response
        .groups
        .into_iter()
        .map(|g| ListedGroup {
            group_id: g.group_id.0.as_str().to_string(),
            protocol_type: g.protocol_type.as_str().to_string(),
            state: g.group_state.as_str().to_string(),
            // Before v5 (Kafka 3.8) every group is a classic one.
            group_type: match version < GROUP_TYPE_SINCE {
                true => "classic".to_string(),
                false => g.group_type.as_str().to_string(),
            },
        })
        .filter(|g| {
            !filter_here
                || states.is_empty()
                || states.iter().any(|s| s.eq_ignore_ascii_case(&g.state))
        })
        .collect())
}

/// The coordinator (host:port) of each group, or the error the broker gave for it.
/// Groups missing from the answer are reported as COORDINATOR_NOT_AVAILABLE.
pub async fn find_coordinators(
    conn: &mut KafkaConnection,
    groups: &[String],
) -> Result<BTreeMap<String, Result<String, AdminError>>, ClientError> {
    find_coordinators_of(conn, GROUP_KEY, groups).await
}

/// The coordinator (host:port) of each key of `key_type` (0: group, 1: transaction).
pub async fn find_coordinators_of(
    conn: &mut KafkaConnection,
    key_type: i8,
    groups: &[String],
) -> Result<BTreeMap<String, Result<String, AdminError>>, ClientError> {
    let request = FindCoordinatorRequest::default()
        .with_key_type(key_type)
        .with_coordinator_keys(
            groups
                .iter()
                .map(|g| StrBytes::from_string(g.clone()))
                .collect(),
        );
    let response = conn.call(&request, FIND_COORDINATOR_VERSION).await?;
    let mut found: BTreeMap<String, Result<String, AdminError>> = response
        .coordinators
        .into_iter()
        .map(|c| {
            let answer = if c.error_code == 0 {
                Ok(format!("{}:{}", c.host.as_str(), c.port))
            } else {
                Err(kafka_error(c.error_code, c.error_message.as_ref()))
            };
            (c.key.as_str().to_string(), answer)
        })
        .collect();
    for group in groups {
        found
            .entry(group.clone())
            .or_insert_with(|| Err(kafka_error(COORDINATOR_NOT_AVAILABLE, None)));
    }
    Ok(found)
}

/// One committed offset of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub metadata: Option<String>,
}

/// Committed offsets of `groups`, which must share the coordinator `conn` is
/// connected to (others get NOT_COORDINATOR). `topics` lists (topic, partition count)
/// to read; partitions without a committed offset are left out.
pub async fn fetch_offsets(
    conn: &mut KafkaConnection,
    groups: &[String],
    topics: &[(String, i32)],
) -> Result<BTreeMap<String, Result<Vec<CommittedOffset>, AdminError>>, ClientError> {
    let wanted: Vec<OffsetFetchRequestTopics> = topics
        .iter()
        .map(|(name, partitions)| {
            OffsetFetchRequestTopics::default()
                .with_name(topic_name(name))
                .with_partition_indexes((0..*partitions).collect())
        })
        .collect();
    let request = OffsetFetchRequest::default()
        // Pending transactional commits are not waited for: the last stable value is
        // what a consumer would read too, and a later round picks up the rest.
        .with_require_stable(false)
        .with_groups(
            groups
                .iter()
                .map(|g| {
                    OffsetFetchRequestGroup::default()
                        .with_group_id(group_id(g))
                        .with_member_id(None)
                        .with_member_epoch(-1)
                        .with_topics(Some(wanted.clone()))
                })
                .collect(),
        );
    let version = version(conn, ApiKey::OffsetFetch, OFFSET_FETCH_VERSION).await?;
    let response = conn.call(&request, version).await?;
    let mut out = BTreeMap::new();
    for group in response.groups {
        let name = group.group_id.0.as_str().to_string();
        if group.error_code != 0 {
            out.insert(name, Err(kafka_error(group.error_code, None)));
            continue;
        }
        let mut offsets = Vec::new();
        let mut failed = None;
        for topic in group.topics {
            for p in topic.partitions {
                if p.error_code != 0 {
                    failed.get_or_insert_with(|| {
                        kafka_error(
                            p.error_code,
                            Some(&StrBytes::from_string(format!(
                                "{}-{}: {}",
                                topic.name.0.as_str(),
                                p.partition_index,
                                error_name(p.error_code)
                            ))),
                        )
                    });
                } else if p.committed_offset >= 0 {
                    offsets.push(CommittedOffset {
                        topic: topic.name.0.as_str().to_string(),
                        partition: p.partition_index,
                        offset: p.committed_offset,
                        metadata: p.metadata.map(|m| m.as_str().to_string()),
                    });
                }
            }
        }
        out.insert(name, failed.map_or(Ok(offsets), Err));
    }
    for group in groups {
        out.entry(group.clone())
            .or_insert_with(|| Err(kafka_error(COORDINATOR_NOT_AVAILABLE, None)));
    }
    Ok(out)
}

/// Commits `offsets` for `group` as an admin commit (no member: generation/epoch -1,
/// empty member id), which the coordinator accepts only while the group has no
/// members. Returns the partitions the broker refused, with their error codes; a
/// whole-group refusal shows up as the same code on every partition.
pub async fn commit_offsets(
    conn: &mut KafkaConnection,
    group: &str,
    offsets: &[CommittedOffset],
) -> Result<Vec<(String, i32, i16)>, ClientError> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for o in offsets {
        by_topic.entry(o.topic.as_str()).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(o.partition)
                .with_committed_offset(o.offset)
                // Leader epochs are the cluster's own: a source epoch would make a
                // consumer's log-truncation check on this cluster misfire.
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(
                    o.metadata
                        .as_ref()
                        .map(|m| StrBytes::from_string(m.clone())),
                ),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::default())
        .with_group_instance_id(None)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect(),
        );
    let version = version(conn, ApiKey::OffsetCommit, OFFSET_COMMIT_VERSION).await?;
    let response = conn.call(&request, version).await?;
    let mut refused = Vec::new();
    let mut answered = 0usize;
    for topic in response.topics {
        for p in topic.partitions {
            answered += 1;
            if p.error_code != 0 {
                refused.push((
                    topic.name.0.as_str().to_string(),
                    p.partition_index,
                    p.error_code,
                ));
            }
        }
    }
    if answered < offsets.len() && refused.is_empty() {
        return Err(ClientError::Protocol(format!(
            "OffsetCommit for '{group}' answered {answered} of {} partitions",
            offsets.len()
        )));
    }
    Ok(refused)
}
