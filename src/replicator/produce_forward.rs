//! `mirror.produce.mode=forward`: Produce to an ACTIVE mirror is written to the source
//! cluster's partition leader and the source's answer (offsets included) returned to
//! the client; the copier then brings the records to the mirror at those offsets.
//!
//! Producer ids. A client's producer id comes from the destination (its InitProducerId
//! goes there as always), so it cannot collide with another producer's id on the
//! destination, before or after the cut-over. It can collide on the source, which
//! allocates ids from the same small numbers up. So each (destination id, epoch) is
//! given a producer id of the source's own (a fresh InitProducerId on the source), and
//! forwarded batches carry that one, with the client's own sequences: the source's
//! dedup then works for the client's retries. The copier writes every mirror with its
//! own producer id, so after the cut-over the destination has no state for the
//! client's id and takes its next sequence as it comes.
//!
//! The map is the fleet's: the first instance to see a client producer takes a source
//! id and writes it to the metadata topic (`producer/` records, first one wins), then
//! uses the one the catalog holds. So a producer that re-sends a batch through another
//! instance (its own died mid-request) re-sends it with the same source id, and the
//! source answers it with the original offset. Each instance caches what it used,
//! bounded ([`MAX_PRODUCERS`], oldest out). If the record cannot be written, or the
//! catalog is full, the id stays this instance's own (and that case is logged).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::catalog::{producer_key, SourceProducer};
use super::catalog_feed::CatalogView;
use super::forward_conn::{self, Call};
use super::link_config::LinkConfig;
use super::source::Source;
use super::txn_forward::{is_session_gone, SourceTxns};
use super::{store, Destination};
use crate::kafka::admin;
use crate::kafka::backoff::{Backoff, Jitter};
use crate::kafka::batch_rewrite::rewrite_for_forward;
use crate::kafka::error_code::{
    COORDINATOR_NOT_AVAILABLE, CORRUPT_MESSAGE, FENCED_LEADER_EPOCH, INVALID_TXN_STATE,
    NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, UNKNOWN_TOPIC_OR_PARTITION,
};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::record_batch::RecordBatches;
use crate::registry::forward::{
    Boxed, ForwardAnswers, ForwardRequest, Forwarded, ProduceForwarder, TxnAdd, TxnProducer,
    TxnSession,
};

/// Producer ids mapped per link; the oldest mapping goes first.
pub const MAX_PRODUCERS: usize = 65_536;
/// How long a new producer's first write waits for its record to be read back.
const RECORD_WAIT: Duration = Duration::from_secs(10);
/// How long a write waits for what it needs from the source before it can be sent (a
/// producer id, a partition leader), retrying: a source that has just started answers
/// COORDINATOR_LOAD_IN_PROGRESS or has no leader yet for a moment, and a refusal would
/// cost the client its connection (see `Forwarded::refused_before_sending`).
const SETUP_WAIT: Duration = Duration::from_secs(8);
const SETUP_RETRY_MIN: Duration = Duration::from_millis(50);
const SETUP_RETRY_MAX: Duration = Duration::from_secs(1);

pub struct Forwarder {
    dest: Destination,
    catalog: watch::Receiver<Arc<CatalogView>>,
    links: Mutex<HashMap<String, Arc<LinkForward>>>,
    stop: CancellationToken,
}

/// One link's way to its source: leaders, connections, producer ids.
struct LinkForward {
    name: String,
    dest: Destination,
    catalog: watch::Receiver<Arc<CatalogView>>,
    config: BTreeMap<String, String>,
    source: Source,
    /// Source topic -> partition -> leader address; an entry goes when the source
    /// says the leader moved, or its connection fails.
    leaders: Arc<Mutex<Leaders>>,
    brokers: Mutex<HashMap<String, mpsc::Sender<Call>>>,
    producers: Mutex<ProducerMap>,
    /// Transactions of the link's transactional producers, on the source.
    txns: SourceTxns,
    requests: metrics::Counter,
    bytes: metrics::Counter,
    stop: CancellationToken,
    /// Stops the connection tasks when the link's settings change or it goes away.
    _owner: DropGuard,
}

type Leaders = HashMap<String, HashMap<i32, String>>;

#[derive(Default)]
struct ProducerMap {
    ids: HashMap<(i64, i16), ProducerIdentity>,
    order: VecDeque<(i64, i16)>,
}

impl Forwarder {
    pub fn new(
        dest: Destination,
        catalog: watch::Receiver<Arc<CatalogView>>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            dest,
            catalog,
            links: Mutex::new(HashMap::new()),
            stop,
        }
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<LinkForward>>> {
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The link's forwarding state, made anew when its config changed.
    fn link(&self, name: &str) -> Result<Arc<LinkForward>, String> {
        let view = self.catalog.borrow().clone();
        let record = view
            .catalog
            .link(name)
            .and_then(|l| l.usable())
            .ok_or_else(|| format!("cluster link '{name}' is not usable here"))?;
        let mut links = self.lock_links();
        if let Some(existing) = links.get(name).filter(|l| l.config == record.config) {
            return Ok(existing.clone());
        }
        let config = LinkConfig::from_properties(record.config.clone())
            .map_err(|errors| format!("cluster link '{name}': {}", errors.join("; ")))?;
        let source = Source::from_config(&config)?;
        let stop = self.stop.child_token();
        let forward = Arc::new(LinkForward {
            name: name.to_string(),
            dest: self.dest.clone(),
            catalog: self.catalog.clone(),
            config: record.config.clone(),
            txns: SourceTxns::new(
                name.to_string(),
                source.clone(),
                self.dest.clone(),
                self.catalog.clone(),
            ),
            source,
            leaders: Arc::default(),
            brokers: Mutex::default(),
            producers: Mutex::default(),
            requests: metrics::counter!("mirrorgate_produce_forwarded_requests_total", "link" => name.to_string()),
            bytes: metrics::counter!("mirrorgate_produce_forwarded_bytes_total", "link" => name.to_string()),
            stop: stop.clone(),
            _owner: stop.drop_guard(),
        });
        links.insert(name.to_string(), forward.clone());
        Ok(forward)
    }
}

/// Where one partition of the request went.
enum Placed {
    /// Answered already (an error found before sending).
    Answered(PartitionProduceResponse),
    /// In call `call`'s request.
    Sent {
        call: usize,
        topic: Arc<str>,
        partition: i32,
    },
}

impl ProduceForwarder for Forwarder {
    fn forward(&self, request: ForwardRequest) -> Boxed<'_, Forwarded> {
        Box::pin(async move {
            let shape: Vec<Vec<i32>> = request
                .topics
                .iter()
                .map(|(_, t)| t.partition_data.iter().map(|p| p.index).collect())
                .collect();
            let link = match self.link(&request.link) {
                Ok(link) => link,
                Err(reason) => {
                    tracing::warn!(link = %request.link, %reason, "cannot forward Produce");
                    // Retriable: the client refreshes metadata and sends again.
                    return answered_all(&shape, NOT_LEADER_OR_FOLLOWER, &reason);
                }
            };
            link.forward(request, shape).await
        })
    }

    fn transaction_session(&self, producer_id: i64, epoch: i16) -> Option<TxnSession> {
        let link = {
            let view = self.catalog.borrow();
            view.catalog
                .links()
                .keys()
                .find(|link| {
                    view.catalog
                        .source_producer(link, producer_id, epoch)
                        .is_some_and(|p| p.transactional_id.is_some())
                })
                .cloned()?
        };
        let open_here = self
            .lock_links()
            .get(&link)
            .is_some_and(|l| l.txns.open_here(producer_id, epoch));
        Some(TxnSession {
            link: Arc::from(link.as_str()),
            open_here,
        })
    }

    fn transaction_open_on_source(
        &self,
        link: Arc<str>,
        producer_id: i64,
        epoch: i16,
    ) -> Boxed<'_, Result<bool, String>> {
        Box::pin(async move {
            let link = self.link(&link)?;
            link.txns.open_there(producer_id, epoch).await
        })
    }

    fn add_partitions(&self, request: TxnAdd) -> Boxed<'_, Vec<Vec<i16>>> {
        Box::pin(async move {
            let link = match self.link(&request.link) {
                Ok(link) => link,
                Err(reason) => {
                    tracing::warn!(link = %request.link, %reason, "cannot forward AddPartitionsToTxn");
                    return request
                        .topics
                        .iter()
                        .map(|(_, p)| vec![COORDINATOR_NOT_AVAILABLE; p.len()])
                        .collect();
                }
            };
            link.requests.increment(1);
            let p = &request.producer;
            link.txns
                .add_partitions(&p.transactional_id, p.producer_id, p.epoch, &request.topics)
                .await
        })
    }

    fn end_transaction(
        &self,
        link: Arc<str>,
        producer: TxnProducer,
        committed: bool,
    ) -> Boxed<'_, i16> {
        Box::pin(async move {
            let link = match self.link(&link) {
                Ok(link) => link,
                Err(reason) => {
                    tracing::warn!(%link, %reason, "cannot forward EndTxn");
                    return COORDINATOR_NOT_AVAILABLE;
                }
            };
            link.requests.increment(1);
            let p = &producer;
            link.txns
                .end(&p.transactional_id, p.producer_id, p.epoch, committed)
                .await
        })
    }
}

fn answered_all(shape: &[Vec<i32>], code: i16, reason: &str) -> Forwarded {
    let answers = shape
        .iter()
        .map(|partitions| {
            partitions
                .iter()
                .map(|&p| failed(p, code, reason))
                .collect()
        })
        .collect();
    Forwarded {
        answers: Box::pin(std::future::ready(answers)),
        refused_before_sending: true,
    }
}

fn failed(partition: i32, code: i16, reason: &str) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(partition)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_error_message(Some(StrBytes::from_string(reason.to_string())))
}

impl LinkForward {
    async fn forward(&self, request: ForwardRequest, shape: Vec<Vec<i32>>) -> Forwarded {
        self.requests.increment(1);
        let wanted: Vec<(&str, Vec<i32>)> = request
            .topics
            .iter()
            .zip(&shape)
            .map(|((source_topic, _), partitions)| (&**source_topic, partitions.clone()))
            .collect();
        if let Err(reason) = self.resolve_leaders(&wanted).await {
            tracing::debug!(link = %self.name, %reason, "forwarded write refused before sending");
            return answered_all(&shape, NOT_LEADER_OR_FOLLOWER, &reason);
        }
        // One request per source leader, partitions in the client's order.
        let mut per_broker: Vec<(String, ProduceRequest)> = Vec::new();
        let mut placed: Vec<Vec<Placed>> = Vec::new();
        for (source_topic, topic) in request.topics {
            let mut row = Vec::new();
            for data in topic.partition_data {
                let index = data.index;
                let Some(leader) = self.leader(&source_topic, index) else {
                    let reason = format!("no leader for {source_topic}-{index} on the source");
                    row.push(Placed::Answered(failed(
                        index,
                        NOT_LEADER_OR_FOLLOWER,
                        &reason,
                    )));
                    continue;
                };
                let records = match self.rewrite(data.records.unwrap_or_default()).await {
                    Ok(records) => records,
                    Err((code, reason)) => {
                        row.push(Placed::Answered(failed(index, code, &reason)));
                        continue;
                    }
                };
                self.bytes.increment(records.len() as u64);
                let call = match per_broker.iter().position(|(b, _)| *b == leader) {
                    Some(call) => call,
                    None => {
                        let produce = ProduceRequest::default()
                            .with_transactional_id(
                                request
                                    .transactional_id
                                    .clone()
                                    .map(kafka_protocol::messages::TransactionalId),
                            )
                            .with_acks(request.acks)
                            .with_timeout_ms(request.timeout_ms);
                        per_broker.push((leader, produce));
                        per_broker.len() - 1
                    }
                };
                let produce = &mut per_broker[call].1;
                let name = admin::topic_name(&source_topic);
                let t = match produce.topic_data.iter().position(|t| t.name == name) {
                    Some(t) => t,
                    None => {
                        produce
                            .topic_data
                            .push(TopicProduceData::default().with_name(name));
                        produce.topic_data.len() - 1
                    }
                };
                produce.topic_data[t].partition_data.push(
                    PartitionProduceData::default()
                        .with_index(index)
                        .with_records(Some(records)),
                );
                row.push(Placed::Sent {
                    call,
                    topic: source_topic.clone(),
                    partition: index,
                });
            }
            placed.push(row);
        }
        let mut refused_before_sending = false;
        for answered in placed.iter().flatten().filter_map(|p| match p {
            Placed::Answered(answer) => Some(answer),
            Placed::Sent { .. } => None,
        }) {
            refused_before_sending = true;
            tracing::debug!(link = %self.name, partition = answered.index, code = answered.error_code, reason = ?answered.error_message, "forwarded write refused before sending");
        }
        let mut replies = Vec::with_capacity(per_broker.len());
        for (broker, produce) in per_broker {
            let (tx, rx) = oneshot::channel();
            if self
                .connection(&broker)
                .send(Call::Produce(Box::new(produce), tx))
                .await
                .is_err()
            {
                self.forget_broker(&broker);
                refused_before_sending = true;
            }
            replies.push((broker, rx));
        }
        let leaders = self.leaders.clone();
        let transactional = request.transactional_id.is_some();
        let answers: Boxed<'static, ForwardAnswers> = Box::pin(async move {
            let mut responses = Vec::with_capacity(replies.len());
            for (broker, rx) in replies {
                let response = match rx.await {
                    Ok(Ok(response)) => Some(response),
                    Ok(Err(reason)) => {
                        tracing::debug!(%broker, %reason, "forwarded Produce has no answer");
                        forget_leader(&leaders, |_, _, addr| addr == broker);
                        None
                    }
                    Err(_) => None,
                };
                responses.push(response);
            }
            placed
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|placed| match placed {
                            Placed::Answered(answer) => answer,
                            Placed::Sent {
                                call,
                                topic,
                                partition,
                            } => {
                                let mut answer =
                                    answer_of(responses[call].as_ref(), &topic, partition);
                                if transactional && is_session_gone(answer.error_code) {
                                    // Abortable in a Produce answer (never fatal).
                                    answer.error_code = INVALID_TXN_STATE;
                                }
                                if LEADER_MOVED.contains(&answer.error_code) {
                                    forget_leader(&leaders, |t, p, _| {
                                        t == &*topic && p == partition
                                    });
                                }
                                answer
                            }
                        })
                        .collect()
                })
                .collect()
        });
        Forwarded {
            answers,
            refused_before_sending,
        }
    }

    /// The client's batches with this link's source producer id in place of theirs
    /// (sequences kept); batches without a producer id go as they are.
    async fn rewrite(&self, records: Bytes) -> Result<Bytes, (i16, String)> {
        let mut out = BytesMut::with_capacity(records.len());
        let mut batches = RecordBatches::new(records.clone());
        let mut rewritten = false;
        for batch in batches.by_ref() {
            let batch = batch.map_err(|e| (CORRUPT_MESSAGE, e.to_string()))?;
            if batch.producer_id() < 0 {
                out.extend_from_slice(batch.bytes());
                continue;
            }
            let identity = if batch.is_transactional() {
                // Only a session its AddPartitionsToTxn began: never made up here.
                self.txns
                    .session_of(batch.producer_id(), batch.producer_epoch())
                    .map(|s| s.producer)
                    .ok_or_else(|| {
                        let reason = "this transactional producer's transaction is not forwarded to the source; abort it and start again";
                        (INVALID_TXN_STATE, reason.to_string())
                    })?
            } else {
                self.source_producer(batch.producer_id(), batch.producer_epoch())
                    .await
                    .map_err(|e| (REQUEST_TIMED_OUT, e))?
            };
            let bytes =
                rewrite_for_forward(&batch, identity.id, identity.epoch, batch.base_sequence())
                    .map_err(|e| (CORRUPT_MESSAGE, e.to_string()))?;
            out.extend_from_slice(&bytes);
            rewritten = true;
        }
        if batches.leftover() != 0 {
            return Err((CORRUPT_MESSAGE, "a record batch is cut off".into()));
        }
        Ok(if rewritten { out.freeze() } else { records })
    }

    /// The source producer id standing for the client's (`id`, `epoch`): this
    /// instance's cache, else the fleet's record, else a fresh one recorded for all.
    async fn source_producer(&self, id: i64, epoch: i16) -> Result<ProducerIdentity, String> {
        if let Some(known) = self.lock_producers().ids.get(&(id, epoch)) {
            return Ok(*known);
        }
        let recorded = |view: &CatalogView| {
            view.catalog
                .source_producer(&self.name, id, epoch)
                .map(|p| ProducerIdentity {
                    id: p.id,
                    epoch: p.epoch,
                })
        };
        let known = recorded(&self.catalog.borrow());
        let chosen = match known {
            Some(known) => known,
            None => {
                let fresh = self.fresh_source_producer().await?;
                match self.record(id, epoch, fresh).await {
                    Ok(view) => recorded(&view).unwrap_or(fresh),
                    Err(e) => {
                        tracing::warn!(link = %self.name, error = %e, "source producer id not recorded for the fleet; kept here");
                        fresh
                    }
                }
            }
        };
        let mut producers = self.lock_producers();
        if producers.order.len() >= MAX_PRODUCERS {
            if let Some(oldest) = producers.order.pop_front() {
                producers.ids.remove(&oldest);
            }
        }
        if producers.ids.insert((id, epoch), chosen).is_none() {
            producers.order.push_back((id, epoch));
        }
        Ok(chosen)
    }

    /// A fresh source producer id, asked again (with backoff) until [`SETUP_WAIT`].
    async fn fresh_source_producer(&self) -> Result<ProducerIdentity, String> {
        let deadline = tokio::time::Instant::now() + SETUP_WAIT;
        let mut backoff = Backoff::new(SETUP_RETRY_MIN, SETUP_RETRY_MAX, Jitter::Equal);
        loop {
            let error = match self.init_source_producer().await {
                Ok(identity) => return Ok(identity),
                Err(error) => error,
            };
            let delay = backoff.next_delay();
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(error);
            }
            tracing::debug!(link = %self.name, %error, "no source producer id yet; asking again");
            tokio::time::sleep(delay).await;
        }
    }

    async fn init_source_producer(&self) -> Result<ProducerIdentity, String> {
        let any = self
            .source
            .bootstrap
            .first()
            .cloned()
            .ok_or("the link has no bootstrap servers")?;
        let (tx, rx) = oneshot::channel();
        if self
            .connection(&any)
            .send(Call::InitProducerId(tx))
            .await
            .is_err()
        {
            self.forget_broker(&any);
        }
        rx.await
            .map_err(|_| "source connection closed".to_string())?
    }

    /// Writes the mapping to the metadata topic and waits until the catalog has read
    /// it back (the first record of the key is the one everyone uses).
    async fn record(
        &self,
        id: i64,
        epoch: i16,
        fresh: ProducerIdentity,
    ) -> Result<Arc<CatalogView>, String> {
        let key = producer_key(&self.name, id, epoch);
        let value = SourceProducer {
            id: fresh.id,
            epoch: fresh.epoch,
            transactional_id: None,
        };
        let offset = store::put_producer(&self.dest, &key, &value)
            .await
            .map_err(|e| e.to_string())?;
        super::catalog_feed::applied(self.catalog.clone(), offset, RECORD_WAIT)
            .await
            .map_err(|e| e.to_string())
    }

    fn lock_producers(&self) -> std::sync::MutexGuard<'_, ProducerMap> {
        self.producers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Looks up the leaders not known yet, asking again (with backoff) while some are
    /// missing, until [`SETUP_WAIT`]; a partition still without one is answered alone.
    async fn resolve_leaders(&self, wanted: &[(&str, Vec<i32>)]) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + SETUP_WAIT;
        let mut backoff = Backoff::new(SETUP_RETRY_MIN, SETUP_RETRY_MAX, Jitter::Equal);
        loop {
            let outcome = self.lookup_leaders(wanted).await;
            if matches!(outcome, Ok(true)) {
                return Ok(());
            }
            let delay = backoff.next_delay();
            if tokio::time::Instant::now() + delay >= deadline {
                return outcome.map(|_| ());
            }
            tracing::debug!(link = %self.name, outcome = ?outcome, "source leaders not all known yet; asking again");
            tokio::time::sleep(delay).await;
        }
    }

    /// One metadata request for the topics with a leader not known yet: `true` once
    /// every wanted partition has one.
    async fn lookup_leaders(&self, wanted: &[(&str, Vec<i32>)]) -> Result<bool, String> {
        let missing: Vec<&str> = {
            let leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
            wanted
                .iter()
                .filter(|(topic, partitions)| {
                    let known = leaders.get(*topic);
                    partitions
                        .iter()
                        .any(|p| known.is_none_or(|k| !k.contains_key(p)))
                })
                .map(|(topic, _)| *topic)
                .collect()
        };
        if missing.is_empty() {
            return Ok(true);
        }
        let mut conn = self
            .source
            .connect_any()
            .await
            .map_err(|e| format!("cannot reach the source: {e}"))?;
        let metadata = admin::metadata(&mut conn, Some(&missing))
            .await
            .map_err(|e| format!("source metadata: {e}"))?;
        let mut leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        for topic in &metadata.topics {
            let Some(name) = topic.name.as_ref() else {
                continue;
            };
            let known = leaders.entry(name.to_string()).or_default();
            for partition in &topic.partitions {
                if let Some(addr) = admin::leader_of(&metadata, name, partition.partition_index) {
                    known.insert(partition.partition_index, addr);
                }
            }
        }
        Ok(wanted.iter().all(|(topic, partitions)| {
            let known = leaders.get(*topic);
            partitions
                .iter()
                .all(|p| known.is_some_and(|k| k.contains_key(p)))
        }))
    }

    fn leader(&self, topic: &str, partition: i32) -> Option<String> {
        let leaders = self.leaders.lock().unwrap_or_else(PoisonError::into_inner);
        leaders.get(topic)?.get(&partition).cloned()
    }

    fn connection(&self, addr: &str) -> mpsc::Sender<Call> {
        let mut brokers = self.brokers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = brokers.get(addr).filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let sender = forward_conn::spawn(addr.to_string(), self.source.clone(), self.stop.clone());
        brokers.insert(addr.to_string(), sender.clone());
        sender
    }

    fn forget_broker(&self, addr: &str) {
        self.brokers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(addr);
    }
}

/// Source answers meaning the cached leader is wrong.
const LEADER_MOVED: &[i16] = &[
    UNKNOWN_TOPIC_OR_PARTITION,
    NOT_LEADER_OR_FOLLOWER,
    FENCED_LEADER_EPOCH,
];

fn forget_leader(leaders: &Mutex<Leaders>, gone: impl Fn(&str, i32, &str) -> bool) {
    let mut leaders = leaders.lock().unwrap_or_else(PoisonError::into_inner);
    for (topic, partitions) in leaders.iter_mut() {
        partitions.retain(|p, addr| !gone(topic, *p, addr));
    }
    leaders.retain(|_, partitions| !partitions.is_empty());
}

/// The client's answer for one partition, from the source's answer to its request
/// (`None`: the request got no answer, so the write's outcome is unknown: retriable).
/// Only what a broker says of the write itself is kept; leader hints name source
/// brokers and are dropped.
fn answer_of(
    response: Option<&kafka_protocol::messages::ProduceResponse>,
    topic: &str,
    partition: i32,
) -> PartitionProduceResponse {
    let found = response.and_then(|r| {
        r.responses
            .iter()
            .filter(|t| t.name.as_str() == topic)
            .flat_map(|t| &t.partition_responses)
            .find(|p| p.index == partition)
    });
    match found {
        Some(p) => PartitionProduceResponse::default()
            .with_index(partition)
            .with_error_code(p.error_code)
            .with_base_offset(p.base_offset)
            .with_log_append_time_ms(p.log_append_time_ms)
            .with_log_start_offset(p.log_start_offset)
            .with_record_errors(p.record_errors.clone())
            .with_error_message(p.error_message.clone()),
        None => failed(
            partition,
            REQUEST_TIMED_OUT,
            "the source did not answer the forwarded write",
        ),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_response::{
        LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{BrokerId, ProduceResponse};
    use std::sync::Mutex;

    use super::{answer_of, forget_leader, Leaders};
    use crate::kafka::admin::topic_name;
    use crate::kafka::error_code::REQUEST_TIMED_OUT;

    #[test]
    fn the_answer_keeps_the_write_and_drops_source_leader_hints() {
        let source = PartitionProduceResponse::default()
            .with_index(2)
            .with_base_offset(41)
            .with_log_start_offset(7)
            .with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(5))
                    .with_leader_epoch(3),
            );
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_name(topic_name("src"))
                .with_partition_responses(vec![source])]);
        let answer = answer_of(Some(&response), "src", 2);
        assert_eq!((answer.index, answer.error_code), (2, 0));
        assert_eq!((answer.base_offset, answer.log_start_offset), (41, 7));
        assert_eq!(answer.current_leader, LeaderIdAndEpoch::default());

        // A partition the source left out, or no answer at all: retriable.
        assert_eq!(
            answer_of(Some(&response), "src", 3).error_code,
            REQUEST_TIMED_OUT
        );
        assert_eq!(answer_of(None, "src", 2).error_code, REQUEST_TIMED_OUT);
    }

    #[test]
    fn leaders_are_forgotten_by_partition_or_by_broker() {
        let leaders: Mutex<Leaders> = Mutex::default();
        {
            let mut l = leaders.lock().unwrap();
            l.entry("a".into()).or_default().insert(0, "b1:9092".into());
            l.entry("a".into()).or_default().insert(1, "b2:9092".into());
            l.entry("c".into()).or_default().insert(0, "b1:9092".into());
        }
        forget_leader(&leaders, |t, p, _| t == "a" && p == 1);
        assert_eq!(leaders.lock().unwrap()["a"].len(), 1);
        forget_leader(&leaders, |_, _, addr| addr == "b1:9092");
        assert!(leaders.lock().unwrap().is_empty());
    }
}
