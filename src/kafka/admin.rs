//! The few admin calls the replicator makes: cluster metadata, topic creation, topic
//! configs.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::client::{ClientError, KafkaConnection};
use super::error_code::UNKNOWN_TOPIC_OR_PARTITION;

const METADATA_VERSION: i16 = 12;
const CREATE_TOPICS_VERSION: i16 = 5;
/// v4: topics by name (v6 adds ids).
const DELETE_TOPICS_VERSION: i16 = 4;
const CREATE_PARTITIONS_VERSION: i16 = 3;
const DESCRIBE_CONFIGS_VERSION: i16 = 4;
const INCREMENTAL_ALTER_CONFIGS_VERSION: i16 = 1;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// ConfigResource type of a topic.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs config_source of a value set on the topic itself.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;

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

/// Metadata for `topics` (all topics when `None`). Never creates a topic by asking,
/// whatever the cluster's `auto.create.topics.enable`.
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
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics),
        METADATA_VERSION,
    )
    .await
}

/// Whether `topic` exists.
pub async fn topic_exists(conn: &mut KafkaConnection, topic: &str) -> Result<bool, AdminError> {
    let metadata = metadata(conn, Some(&[topic])).await?;
    match partition_count(&metadata, topic) {
        Ok(_) => Ok(true),
        Err(UNKNOWN_TOPIC_OR_PARTITION) => Ok(false),
        Err(code) => Err(AdminError::Kafka {
            code,
            message: format!("metadata of '{topic}'"),
        }),
    }
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

/// Partition count of `topic`, or the topic's error code.
pub fn partition_count(metadata: &MetadataResponse, topic: &str) -> Result<i32, i16> {
    let found = metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
        .ok_or(UNKNOWN_TOPIC_OR_PARTITION)?;
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
    describe_topic_configs(conn, &[name])
        .await?
        .into_iter()
        .next()
        .map(|(_, configs)| configs)
        .unwrap_or_else(|| Err(no_result()))
}

/// The own (dynamic) configs of several topics in one DescribeConfigs; each topic
/// answers on its own (one unknown topic does not fail the others).
pub async fn describe_topic_configs(
    conn: &mut KafkaConnection,
    names: &[&str],
) -> Result<Vec<(String, Result<Vec<(String, String)>, AdminError>)>, ClientError> {
    let resources = names
        .iter()
        .map(|name| {
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configuration_keys(None)
        })
        .collect();
    let request = DescribeConfigsRequest::default().with_resources(resources);
    let response = conn.call(&request, DESCRIBE_CONFIGS_VERSION).await?;
    Ok(response
        .results
        .into_iter()
        .map(|result| {
            let name = result.resource_name.as_str().to_string();
            if result.error_code != 0 {
                let error = AdminError::Kafka {
                    code: result.error_code,
                    message: result
                        .error_message
                        .map(|m| m.as_str().to_string())
                        .unwrap_or_else(|| format!("cannot describe configs of '{name}'")),
                };
                return (name, Err(error));
            }
            let configs = result
                .configs
                .into_iter()
                .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
                .filter_map(|c| Some((c.name.as_str().to_string(), c.value?.as_str().to_string())))
                .collect();
            (name, Ok(configs))
        })
        .collect())
}

/// IncrementalAlterConfigs on topics: per topic, `Some(value)` sets a key and `None`
/// deletes it (back to the broker default). Each topic answers on its own.
pub async fn alter_topic_configs(
    conn: &mut KafkaConnection,
    changes: &[(String, BTreeMap<String, Option<String>>)],
) -> Result<Vec<(String, Result<(), AdminError>)>, ClientError> {
    let resources = changes
        .iter()
        .map(|(topic, keys)| {
            let configs = keys
                .iter()
                .map(|(key, value)| {
                    AlterableConfig::default()
                        .with_name(StrBytes::from_string(key.clone()))
                        .with_config_operation(if value.is_some() { OP_SET } else { OP_DELETE })
                        .with_value(value.clone().map(StrBytes::from_string))
                })
                .collect();
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(StrBytes::from_string(topic.clone()))
                .with_configs(configs)
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(resources);
    let response = conn
        .call(&request, INCREMENTAL_ALTER_CONFIGS_VERSION)
        .await?;
    Ok(response
        .responses
        .into_iter()
        .map(|result| {
            let name = result.resource_name.as_str().to_string();
            if result.error_code == 0 {
                return (name, Ok(()));
            }
            let message = result
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| format!("cannot alter configs of '{name}'"));
            let error = AdminError::Kafka {
                code: result.error_code,
                message,
            };
            (name, Err(error))
        })
        .collect())
}

fn no_result() -> AdminError {
    AdminError::Kafka {
        code: -1,
        message: "no result for the topic".into(),
    }
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

/// Deletes `name`; the broker removes it in the background (metadata says so when it
/// is gone). A topic that does not exist is not an error.
pub async fn delete_topic(conn: &mut KafkaConnection, name: &str) -> Result<(), AdminError> {
    let request = DeleteTopicsRequest::default()
        .with_topic_names(vec![topic_name(name)])
        .with_timeout_ms(30_000);
    let response = conn.call(&request, DELETE_TOPICS_VERSION).await?;
    let result = response
        .responses
        .into_iter()
        .next()
        .ok_or(AdminError::Kafka {
            code: -1,
            message: "no result for the topic".into(),
        })?;
    match result.error_code {
        0 | UNKNOWN_TOPIC_OR_PARTITION => Ok(()),
        code => Err(AdminError::Kafka {
            code,
            message: result
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_else(|| format!("cannot delete topic '{name}'")),
        }),
    }
}
