//! One pipelined Produce connection per destination broker, shared by every mirror
//! partition it leads: the batches the partitions' windows hand in meanwhile go out
//! together, at most one per partition per request (as brokers require), so a round of
//! six partitions costs one request, one write and one response instead of six of each.
//!
//! Order per partition is kept: a partition's batches are placed in requests in the
//! order they were handed in, requests go out in that order on one connection, and a
//! broker answers a connection's requests in order. A failed connection fails every
//! batch in flight or queued (the windows then restart from the destination's settled
//! end, as after any error) and the next window to ask gets a new connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::Destination;
use crate::kafka::client::{ClientError, KafkaConnection, Pending, MAX_IN_FLIGHT};

const PRODUCE_VERSION: i16 = 9;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;
/// Batches waiting to be placed in a request (each window holds at most 16).
const QUEUE: usize = 1024;
/// A request stops taking batches at this size (brokers accept 100 MiB).
const MAX_REQUEST_BYTES: usize = 16 << 20;

/// The broker's answer for one batch, or why there is none (the outcome is unknown).
pub type BatchAnswer = Result<PartitionProduceResponse, ClientError>;

struct Batch {
    topic: TopicName,
    partition: i32,
    records: Bytes,
    reply: oneshot::Sender<BatchAnswer>,
}

/// The shared connection to one broker; the task behind it stops when the last
/// window lets go.
pub struct ProduceMux {
    batches: mpsc::Sender<Batch>,
    _owner: DropGuard,
}

impl ProduceMux {
    /// Starts the connection's task on `conn`.
    pub fn start(conn: KafkaConnection) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stop = CancellationToken::new();
        let span = tracing::debug_span!("produce_mux", broker = %conn.addr());
        tokio::spawn(tracing::Instrument::instrument(
            run(conn, rx, stop.clone()),
            span,
        ));
        Arc::new(Self {
            batches: tx,
            _owner: stop.drop_guard(),
        })
    }

    /// Hands in one batch for `topic`-`partition`; the answer comes on the receiver.
    pub async fn produce(
        &self,
        topic: TopicName,
        partition: i32,
        records: Bytes,
    ) -> Result<oneshot::Receiver<BatchAnswer>, ClientError> {
        let (reply, answer) = oneshot::channel();
        let batch = Batch {
            topic,
            partition,
            records,
            reply,
        };
        self.batches
            .send(batch)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(answer)
    }

    fn is_closed(&self) -> bool {
        self.batches.is_closed()
    }
}

/// The live connections by broker address; a closed one is replaced on the next ask.
#[derive(Default)]
pub struct ProduceMuxes {
    by_broker: Mutex<HashMap<String, Weak<ProduceMux>>>,
}

impl ProduceMuxes {
    /// The shared connection to `addr`, made when there is none (or it failed).
    pub async fn get(
        &self,
        dest: &Destination,
        addr: &str,
    ) -> Result<Arc<ProduceMux>, ClientError> {
        if let Some(mux) = live(&self.lock(), addr) {
            return Ok(mux);
        }
        let conn = dest.connect(addr).await?;
        let mut by_broker = self.lock();
        // Another window may have connected meanwhile: one connection per broker.
        if let Some(mux) = live(&by_broker, addr) {
            return Ok(mux);
        }
        by_broker.retain(|_, m| m.strong_count() > 0);
        let mux = ProduceMux::start(conn);
        by_broker.insert(addr.to_string(), Arc::downgrade(&mux));
        Ok(mux)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Weak<ProduceMux>>> {
        self.by_broker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The connection to `addr` if it is still up.
fn live(by_broker: &HashMap<String, Weak<ProduceMux>>, addr: &str) -> Option<Arc<ProduceMux>> {
    by_broker
        .get(addr)
        .and_then(Weak::upgrade)
        .filter(|m| !m.is_closed())
}

/// A request on its way: its batches' repliers, in request order.
struct Sent {
    pending: Pending<ProduceRequest>,
    replies: Vec<(TopicName, i32, oneshot::Sender<BatchAnswer>)>,
}

/// What ended a wait of the connection's task.
enum Woken {
    Stop,
    Batch(Option<Batch>),
    Answer(Result<ProduceResponse, ClientError>),
}

async fn run(
    mut conn: KafkaConnection,
    mut batches: mpsc::Receiver<Batch>,
    stop: CancellationToken,
) {
    let mut queued: VecDeque<Batch> = VecDeque::new();
    let mut in_flight: VecDeque<Sent> = VecDeque::new();
    let failure = loop {
        while let Ok(batch) = batches.try_recv() {
            queued.push_back(batch);
        }
        let mut failed = None;
        while !queued.is_empty() && in_flight.len() < MAX_IN_FLIGHT {
            let (request, replies) = next_request(&mut queued);
            match conn.send_deferred(&request, PRODUCE_VERSION).await {
                Ok(pending) => in_flight.push_back(Sent { pending, replies }),
                Err(e) => {
                    fail_all(replies, &e);
                    failed = Some(e);
                    break;
                }
            }
        }
        // Written before waiting, never inside the wait: a write cut short by a new
        // batch would leave half a request on the wire.
        if let Some(e) = failed {
            break e;
        }
        if let Err(e) = conn.flush_writes().await {
            break e;
        }
        // New batches are taken while answers are awaited, so the broker always has the
        // next request queued; a full pipeline waits for an answer first.
        let room = in_flight.len() < MAX_IN_FLIGHT;
        let woken = match in_flight.front() {
            Some(oldest) => tokio::select! {
                () = stop.cancelled() => Woken::Stop,
                batch = batches.recv(), if room => Woken::Batch(batch),
                answer = conn.read_answer(&oldest.pending) => Woken::Answer(answer),
            },
            None => tokio::select! {
                () = stop.cancelled() => Woken::Stop,
                batch = batches.recv() => Woken::Batch(batch),
            },
        };
        match woken {
            // The channel closes only with the mux, whose drop stops this task too.
            Woken::Stop | Woken::Batch(None) => return,
            Woken::Batch(Some(batch)) => queued.push_back(batch),
            Woken::Answer(Ok(response)) => {
                if let Some(oldest) = in_flight.pop_front() {
                    deliver(response, oldest.replies);
                }
            }
            Woken::Answer(Err(e)) => break e,
        }
    };
    tracing::debug!(error = %failure, "produce connection failed");
    batches.close();
    for sent in in_flight {
        fail_all(sent.replies, &failure);
    }
    for batch in queued {
        drop(batch.reply.send(Err(closed(&failure))));
    }
    while let Ok(batch) = batches.try_recv() {
        drop(batch.reply.send(Err(closed(&failure))));
    }
}

/// Each batch's answer to its window.
fn deliver(
    response: ProduceResponse,
    replies: Vec<(TopicName, i32, oneshot::Sender<BatchAnswer>)>,
) {
    let mut answers: HashMap<(TopicName, i32), PartitionProduceResponse> = response
        .responses
        .into_iter()
        .flat_map(|t| {
            let name = t.name;
            t.partition_responses
                .into_iter()
                .map(move |p| ((name.clone(), p.index), p))
        })
        .collect();
    for (topic, partition, reply) in replies {
        let answer = answers
            .remove(&(topic, partition))
            .ok_or_else(|| ClientError::Protocol("no answer for the partition".into()));
        // A window that went away no longer needs its answer.
        drop(reply.send(answer));
    }
}

/// The oldest queued batch of each partition, up to the request size; the rest stay
/// queued in their order.
fn next_request(
    queued: &mut VecDeque<Batch>,
) -> (
    ProduceRequest,
    Vec<(TopicName, i32, oneshot::Sender<BatchAnswer>)>,
) {
    let mut request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(PRODUCE_TIMEOUT_MS);
    let mut replies: Vec<(TopicName, i32, oneshot::Sender<BatchAnswer>)> = Vec::new();
    let mut placed: HashSet<(TopicName, i32)> = HashSet::new();
    let mut bytes = 0usize;
    let mut later = VecDeque::with_capacity(queued.len());
    while let Some(batch) = queued.pop_front() {
        let full = bytes > 0 && bytes + batch.records.len() > MAX_REQUEST_BYTES;
        if full || !placed.insert((batch.topic.clone(), batch.partition)) {
            later.push_back(batch);
            continue;
        }
        bytes += batch.records.len();
        let data = PartitionProduceData::default()
            .with_index(batch.partition)
            .with_records(Some(batch.records));
        match request
            .topic_data
            .iter_mut()
            .find(|t| t.name == batch.topic)
        {
            Some(topic) => topic.partition_data.push(data),
            None => request.topic_data.push(
                TopicProduceData::default()
                    .with_name(batch.topic.clone())
                    .with_partition_data(vec![data]),
            ),
        }
        replies.push((batch.topic, batch.partition, batch.reply));
    }
    *queued = later;
    (request, replies)
}

fn fail_all(replies: Vec<(TopicName, i32, oneshot::Sender<BatchAnswer>)>, error: &ClientError) {
    for (_, _, reply) in replies {
        drop(reply.send(Err(closed(error))));
    }
}

/// What a batch's window is told when the connection failed under it.
fn closed(error: &ClientError) -> ClientError {
    ClientError::Protocol(format!("produce connection failed: {error}"))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use std::collections::VecDeque;
    use tokio::sync::oneshot;

    use super::{deliver, next_request, Batch, BatchAnswer};

    fn topic(name: &'static str) -> TopicName {
        TopicName(StrBytes::from_static_str(name))
    }

    fn batch(
        name: &'static str,
        partition: i32,
        tag: u8,
    ) -> (Batch, oneshot::Receiver<BatchAnswer>) {
        let (reply, answer) = oneshot::channel();
        let batch = Batch {
            topic: topic(name),
            partition,
            records: Bytes::from(vec![tag; 4]),
            reply,
        };
        (batch, answer)
    }

    /// (topic, partition, first byte of the records) of each batch in the request.
    fn shape(request: &kafka_protocol::messages::ProduceRequest) -> Vec<(String, i32, u8)> {
        request
            .topic_data
            .iter()
            .flat_map(|t| {
                t.partition_data.iter().map(|p| {
                    let tag = p.records.as_ref().map_or(0, |r| r[0]);
                    (t.name.0.to_string(), p.index, tag)
                })
            })
            .collect()
    }

    #[test]
    fn a_request_takes_the_oldest_batch_of_each_partition_and_keeps_the_rest_in_order() {
        let mut queued = VecDeque::new();
        let mut answers = Vec::new();
        for (name, partition, tag) in [
            ("a", 0, 1),
            ("a", 0, 2),
            ("a", 1, 3),
            ("b", 0, 4),
            ("a", 1, 5),
        ] {
            let (b, answer) = batch(name, partition, tag);
            queued.push_back(b);
            answers.push(answer);
        }
        let (first, replies) = next_request(&mut queued);
        assert_eq!(
            shape(&first),
            vec![("a".into(), 0, 1), ("a".into(), 1, 3), ("b".into(), 0, 4)]
        );
        assert_eq!(replies.len(), 3);
        let (second, _) = next_request(&mut queued);
        assert_eq!(shape(&second), vec![("a".into(), 0, 2), ("a".into(), 1, 5)]);
        assert!(queued.is_empty());
    }

    #[test]
    fn each_batch_gets_its_own_partition_answer_and_a_missing_one_is_an_error() {
        let mut queued = VecDeque::new();
        let (b0, mut answer0) = batch("a", 0, 1);
        let (b1, mut answer1) = batch("a", 1, 2);
        queued.push_back(b0);
        queued.push_back(b1);
        let (_, replies) = next_request(&mut queued);
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_name(topic("a"))
                .with_partition_responses(vec![PartitionProduceResponse::default()
                    .with_index(0)
                    .with_base_offset(42)])]);
        deliver(response, replies);
        let got = answer0.try_recv().expect("answered").expect("an answer");
        assert_eq!(got.base_offset, 42);
        assert!(answer1.try_recv().expect("answered").is_err());
    }
}
