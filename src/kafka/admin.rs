//! The few admin calls the replicator makes: cluster metadata, topic creation.

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest, MetadataRequest,
    MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::{ClientError, KafkaConnection};

const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
const CREATE_PARTITIONS_VERSION: i16 = 3;
const DESCRIBE_CONFIGS_VERSION: i16 = 4;
/// ConfigResource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs config_source of a value set on the topic itself.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const TOPIC_ALREADY_EXISTS: i16 = 36;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{message} (error {code})")]
    Kafka { code: i16, message: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Metadata for `topics` (all topics when `None`).
pub async fn metadata(
    conn: &mut KafkaConnection,
    topics: Option<&[&str]>,
) -> Result<MetadataResponse, ClientError> {
    let topics = topics.map(|names| {
        names
            .iter()
            .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
            .collect()
    });
    conn.call(
        &MetadataRequest::default().with_topics(topics),
        METADATA_VERSION,
    )
    .await
}

/// host:port of the leader of `topic`/`partition`, if known.
pub fn leader_of(metadata: &MetadataResponse, topic: &str, partition: i32) -> Option<String> {
    let topic = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))?;
    let leader = topic
        .partitions
        .iter()
        .find(|p| p.partition_index == partition)?
        .leader_id;
    let broker = metadata.brokers.iter().find(|b| b.node_id == leader)?;
    Some(format!("{}:{}", broker.host.as_str(), broker.port))
}

/// UNKNOWN_TOPIC_OR_PARTITION.
pub const UNKNOWN_TOPIC: i16 = 3;

/// Partition count of `topic`, or the topic's error code.
pub fn partition_count(metadata: &MetadataResponse, topic: &str) -> Result<i32, i16> {
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or(UNKNOWN_TOPIC)?;
    if found.error_code != 0 {
        return Err(found.error_code);
    }
    Ok(found.partitions.len() as i32)
}

/// The topic's id, if the metadata lists it.
pub fn topic_id(metadata: &MetadataResponse, topic: &str) -> Option<String> {
    metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .filter(|t| !t.topic_id.is_nil())
        .map(|t| t.topic_id.to_string())
}

/// Raises a topic's partition count to `count`.
pub async fn add_partitions(
    conn: &mut KafkaConnection,
    name: &str,
    count: i32,
) -> Result<(), AdminError> {
    let request = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(topic_name(name))
            .with_count(count)
            // None: the controller places the new replicas (an empty list means zero).
            .with_assignments(None)])
        .with_timeout_ms(30_000);
    let response = conn.call(&request, CREATE_PARTITIONS_VERSION).await?;
    match response.results.into_iter().next() {
        Some(result) if result.error_code == 0 => Ok(()),
        Some(result) => Err(AdminError::Kafka {
            code: result.error_code,
            message: result
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| format!("cannot add partitions to '{name}'")),
        }),
        None => Err(AdminError::Kafka {
            code: -1,
            message: "no result for the topic".into(),
        }),
    }
}

/// The topic's own (dynamic) configs: what was set on it, not broker defaults.
pub async fn topic_configs(
    conn: &mut KafkaConnection,
    name: &str,
) -> Result<Vec<(String, String)>, AdminError> {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC_RESOURCE)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    let response = conn.call(&request, DESCRIBE_CONFIGS_VERSION).await?;
    let result = response
        .results
        .into_iter()
        .next()
        .ok_or(AdminError::Kafka {
            code: -1,
            message: "no result for the topic".into(),
        })?;
    if result.error_code != 0 {
        return Err(AdminError::Kafka {
            code: result.error_code,
            message: result
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| format!("cannot describe configs of '{name}'")),
        });
    }
    Ok(result
        .configs
        .into_iter()
        .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
        .filter_map(|c| Some((c.name.as_str().to_string(), c.value?.as_str().to_string())))
        .collect())
}

/// Creates a topic (replication factor -1: the broker default).
/// Creates a topic; `replication_factor` -1 takes the broker's default.
pub async fn create_topic(
    conn: &mut KafkaConnection,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> Result<(), AdminError> {
    let topic = CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(k.to_string()))
                        .with_value(Some(StrBytes::from_string(v.to_string())))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000);
    let response = conn.call(&request, CREATE_TOPICS_VERSION).await?;
    let result = response
        .topics
        .into_iter()
        .next()
        .ok_or(AdminError::Kafka {
            code: -1,
            message: "no result for the topic".into(),
        })?;
    if result.error_code != 0 {
        let message = result
            .error_message
            .map(|m| m.as_str().to_string())
            .unwrap_or_else(|| format!("cannot create topic '{name}'"));
        return Err(AdminError::Kafka {
            code: result.error_code,
            message,
        });
    }
    Ok(())
}
