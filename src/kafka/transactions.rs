//! A client's transaction run on another cluster's coordinator: its session
//! (InitProducerId with the transactional id), partitions added, and its end.

use std::time::Duration;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, EndTxnRequest, InitProducerIdRequest, ProducerId, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::admin::topic_name;
use super::client::{ClientError, KafkaConnection};
use super::error_code::{
    CONCURRENT_TRANSACTIONS, COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE,
    NOT_COORDINATOR,
};
use super::groups::find_coordinators_of;
use super::producer::ProducerIdentity;

/// FindCoordinator key type of a transactional id.
const TRANSACTION_KEY: i8 = 1;
/// v4 carries a nullable transactional id in the flexible encoding (Kafka 2.5+).
const INIT_PRODUCER_ID_VERSION: i16 = 4;
/// v3: one transaction per request, as clients send it (v4+ is inter-broker).
const ADD_PARTITIONS_VERSION: i16 = 3;
/// v3: flexible; v5 would bump the epoch on every end (transaction version 2).
const END_TXN_VERSION: i16 = 3;

/// Answers a coordinator gives while it is moving, loading or finishing the last end:
/// asked again.
pub fn is_retriable(code: i16) -> bool {
    matches!(
        code,
        COORDINATOR_LOAD_IN_PROGRESS
            | COORDINATOR_NOT_AVAILABLE
            | NOT_COORDINATOR
            | CONCURRENT_TRANSACTIONS
    )
}

/// The coordinator (host:port) of transactional id `txn`, or its error code.
pub async fn find_coordinator(
    conn: &mut KafkaConnection,
    txn: &str,
) -> Result<Result<String, String>, ClientError> {
    let found = find_coordinators_of(conn, TRANSACTION_KEY, &[txn.to_string()]).await?;
    Ok(match found.into_iter().next() {
        Some((_, Ok(addr))) => Ok(addr),
        Some((_, Err(e))) => Err(e.to_string()),
        None => Err("no coordinator in the answer".into()),
    })
}

/// A session of `txn` on this coordinator: a fresh epoch, which aborts whatever
/// transaction an older session left open. Answers the coordinator's error code.
pub async fn init_session(
    conn: &mut KafkaConnection,
    txn: &str,
    timeout: Duration,
) -> Result<Result<ProducerIdentity, i16>, ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(transactional_id(txn)))
        .with_transaction_timeout_ms(i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = conn.call(&request, INIT_PRODUCER_ID_VERSION).await?;
    Ok(match response.error_code {
        0 => Ok(ProducerIdentity {
            id: response.producer_id.0,
            epoch: response.producer_epoch,
        }),
        code => Err(code),
    })
}

/// Adds partitions to `txn`'s transaction: the code of each, per topic in order.
pub async fn add_partitions(
    conn: &mut KafkaConnection,
    txn: &str,
    session: ProducerIdentity,
    topics: &[(String, Vec<i32>)],
) -> Result<Vec<Vec<i16>>, ClientError> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(transactional_id(txn))
        .with_v3_and_below_producer_id(ProducerId(session.id))
        .with_v3_and_below_producer_epoch(session.epoch)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(name, partitions)| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions.clone())
                })
                .collect(),
        );
    let response = conn.call(&request, ADD_PARTITIONS_VERSION).await?;
    let code_of = |topic: &str, partition: i32| {
        response
            .results_by_topic_v3_and_below
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| &t.results_by_partition)
            .find(|p| p.partition_index == partition)
            .map_or(
                // Left out of the answer: the coordinator did not take it.
                COORDINATOR_NOT_AVAILABLE,
                |p| p.partition_error_code,
            )
    };
    Ok(topics
        .iter()
        .map(|(name, partitions)| partitions.iter().map(|p| code_of(name, *p)).collect())
        .collect())
}

/// Commits or aborts `txn`'s transaction: the coordinator's code.
pub async fn end(
    conn: &mut KafkaConnection,
    txn: &str,
    session: ProducerIdentity,
    committed: bool,
) -> Result<i16, ClientError> {
    let request = EndTxnRequest::default()
        .with_transactional_id(transactional_id(txn))
        .with_producer_id(ProducerId(session.id))
        .with_producer_epoch(session.epoch)
        .with_committed(committed);
    Ok(conn.call(&request, END_TXN_VERSION).await?.error_code)
}

fn transactional_id(txn: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(txn.to_string()))
}
