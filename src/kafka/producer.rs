//! mirrorgate's own idempotent producer identity on the destination. The broker keeps
//! the last five batches per producer id and partition, so a retried batch is answered
//! with its original offset instead of being appended twice.

use kafka_protocol::messages::{InitProducerIdRequest, ProducerId};

use super::client::{ClientError, KafkaConnection};

const INIT_PRODUCER_ID_VERSION: i16 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// A fresh non-transactional producer id (sequences start at 0 for every partition).
pub async fn init_producer_id(conn: &mut KafkaConnection) -> Result<ProducerIdentity, ClientError> {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let response = conn.call(&request, INIT_PRODUCER_ID_VERSION).await?;
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
