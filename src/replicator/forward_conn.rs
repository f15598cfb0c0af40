//! One pipelined connection from the produce forwarder to one source broker, owned by
//! its own task: calls are sent in the order they are queued (so a producer's batches
//! for a partition reach the leader in sequence order) and answered in that order.

use std::time::Duration;

use kafka_protocol::messages::{
    InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::source::Source;
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::client::{ClientError, KafkaConnection, MAX_IN_FLIGHT};
use crate::kafka::producer::ProducerIdentity;

/// Produce v9: names topics (v13 would need the source's topic ids), no KIP-951 fields.
pub const PRODUCE_VERSION: i16 = 9;
const INIT_PRODUCER_ID_VERSION: i16 = 4;
/// Calls waiting for the connection; a full queue makes the proxy's request loop wait.
pub const QUEUE: usize = 256;
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// What went wrong with a call: the outcome is unknown, the caller answers retriably.
pub type CallError = String;

pub enum Call {
    Produce(
        Box<ProduceRequest>,
        oneshot::Sender<Result<ProduceResponse, CallError>>,
    ),
    /// A fresh non-transactional producer id of the source cluster.
    InitProducerId(oneshot::Sender<Result<ProducerIdentity, CallError>>),
}

impl Call {
    fn fail(self, error: &str) {
        // A caller that went away no longer needs the answer.
        match self {
            Call::Produce(_, reply) => drop(reply.send(Err(error.to_string()))),
            Call::InitProducerId(reply) => drop(reply.send(Err(error.to_string()))),
        }
    }
}

enum Sent {
    Produce(
        crate::kafka::client::Pending<ProduceRequest>,
        oneshot::Sender<Result<ProduceResponse, CallError>>,
    ),
    InitProducerId(
        crate::kafka::client::Pending<InitProducerIdRequest>,
        oneshot::Sender<Result<ProducerIdentity, CallError>>,
    ),
}

/// Starts the connection task for `addr`; it ends when `stop` fires or every sender
/// is gone.
pub fn spawn(addr: String, source: Source, stop: CancellationToken) -> mpsc::Sender<Call> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let span = tracing::info_span!("produce_forward", broker = %addr);
    tokio::spawn(tracing::Instrument::instrument(
        run(addr, source, rx, stop),
        span,
    ));
    tx
}

async fn run(
    addr: String,
    source: Source,
    mut calls: mpsc::Receiver<Call>,
    stop: CancellationToken,
) {
    let mut conn: Option<KafkaConnection> = None;
    let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX, Jitter::Full);
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            call = calls.recv() => match call { Some(call) => call, None => return },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_IN_FLIGHT {
            match calls.try_recv() {
                Ok(call) => batch.push(call),
                Err(_) => break,
            }
        }
        if conn.is_none() {
            match source.connect(&addr).await {
                Ok(c) => {
                    backoff.reset();
                    conn = Some(c);
                }
                Err(e) => {
                    tracing::warn!(side = "upstream", error = %e, "cannot reach the source broker");
                    let reason = format!("source broker {addr}: {e}");
                    batch.into_iter().for_each(|call| call.fail(&reason));
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        if let Err(e) = exchange(connection, batch).await {
            tracing::warn!(side = "upstream", error = %e, "source connection failed");
            conn = None;
        }
    }
}

/// Sends every call, then reads every answer in order. On a connection error every
/// call not yet answered fails (its outcome unknown) and the error is returned.
async fn exchange(conn: &mut KafkaConnection, batch: Vec<Call>) -> Result<(), ClientError> {
    let mut sent = Vec::with_capacity(batch.len());
    let mut calls = batch.into_iter();
    let mut failure = None;
    for call in calls.by_ref() {
        let result = match call {
            Call::Produce(request, reply) => conn
                .send(&*request, PRODUCE_VERSION)
                .await
                .map(|p| Sent::Produce(p, reply)),
            Call::InitProducerId(reply) => conn
                .send(&init_producer_id(), INIT_PRODUCER_ID_VERSION)
                .await
                .map(|p| Sent::InitProducerId(p, reply)),
        };
        match result {
            Ok(s) => sent.push(s),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let mut answers = sent.into_iter();
    if failure.is_none() {
        for s in answers.by_ref() {
            let outcome = match s {
                Sent::Produce(pending, reply) => {
                    conn.receive(pending).await.map(|r| drop(reply.send(Ok(r))))
                }
                Sent::InitProducerId(pending, reply) => conn.receive(pending).await.map(|r| {
                    let identity = match r.error_code {
                        0 => Ok(ProducerIdentity {
                            id: r.producer_id.0,
                            epoch: r.producer_epoch,
                        }),
                        code => Err(format!("InitProducerId answered error {code}")),
                    };
                    drop(reply.send(identity));
                }),
            };
            if let Err(e) = outcome {
                failure = Some(e);
                break;
            }
        }
    }
    let Some(e) = failure else {
        return Ok(());
    };
    let reason = e.to_string();
    for s in answers {
        match s {
            Sent::Produce(_, reply) => drop(reply.send(Err(reason.clone()))),
            Sent::InitProducerId(_, reply) => drop(reply.send(Err(reason.clone()))),
        }
    }
    calls.for_each(|call| call.fail(&reason));
    Err(e)
}

fn init_producer_id() -> InitProducerIdRequest {
    InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(-1)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
