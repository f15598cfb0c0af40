//! mirrorgate's own idempotent producer identity on the destination. The broker keeps
//! the last five batches per producer id and partition, so a retried batch is answered
//! with its original offset instead of being appended twice.

use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use super::client::{ClientError, KafkaConnection};
use super::error_code::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, REQUEST_TIMED_OUT,
};

const INIT_PRODUCER_ID_VERSION: i16 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// Errors a freshly started cluster answers while its coordinators load.
const RETRIABLE: &[i16] = &[
    REQUEST_TIMED_OUT,
    COORDINATOR_LOAD_IN_PROGRESS,
    COORDINATOR_NOT_AVAILABLE,
];
const ATTEMPTS: u32 = 50;

/// A fresh non-transactional producer id (sequences start at 0 for every partition).
/// Retries for a few seconds while the broker's coordinators are still loading.
pub async fn init_producer_id(conn: &mut KafkaConnection) -> Result<ProducerIdentity, ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let mut attempt = 1;
    let response = loop {
        let response = conn.call(&request, INIT_PRODUCER_ID_VERSION).await?;
        if !RETRIABLE.contains(&response.error_code) || attempt == ATTEMPTS {
            break response;
        }
        attempt += 1;
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    if response.error_code != 0 {
        return Err(ClientError::Protocol(format!(
            "InitProducerId failed with error {}",
            response.error_code
        )));
    }
    Ok(ProducerIdentity {
        id: response.producer_id.0,
        epoch: response.producer_epoch,
    })
}
