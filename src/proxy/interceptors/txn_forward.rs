//! Transactions of producers writing to forwarded mirrors: their AddPartitionsToTxn and
//! EndTxn go to the link's source (`replicator::txn_forward` runs them there), since a
//! transaction lives on one cluster's coordinator. Needed: AddPartitionsToTxn (while
//! mirrors are forwarded or sessions exist), EndTxn and AddOffsetsToTxn (while sessions
//! exist). A transaction forwarded to a source names only forwarded mirrors of one
//! link; one that also names another topic, or consumer offsets, is refused
//! (INVALID_TXN_STATE, fatal: it cannot end as one on two clusters).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, ApiKey,
    EndTxnRequest, EndTxnResponse, ProduceRequest,
};

use super::chain::Rewrite;
use super::produce_fence::{self, Held};
use super::write_guard;
use super::{Interceptor, OnResponse, RequestAction, RequestMeta};
use crate::kafka::codec::{decode_request, encode_response};
use crate::kafka::error_code::{
    CONCURRENT_TRANSACTIONS, COORDINATOR_NOT_AVAILABLE, INVALID_TXN_STATE,
};
use crate::kafka::frame::RequestFrame;
use crate::kafka::frame_writer::OutFrame;
use crate::kafka::record_batch::RecordBatches;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::forward::{ProduceForwarder, TxnAdd, TxnProducer, TxnSession};
use crate::registry::Snapshot;

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: "txn_forward",
    api_keys: &[
        ApiKey::AddPartitionsToTxn,
        ApiKey::EndTxn,
        ApiKey::AddOffsetsToTxn,
    ],
    on_request: |shared, frame| Box::pin(on_request(shared, frame)),
};

async fn on_request(shared: &Arc<Shared>, frame: RequestFrame) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    let sessions = snapshot.forwards_transactions();
    match frame.api_key {
        ApiKey::AddPartitionsToTxn if snapshot.forwards_any() || sessions => {
            add_partitions(shared, frame).await
        }
        // Nothing forwarded: the write guard's, as for any write naming topics.
        ApiKey::AddPartitionsToTxn => {
            write_guard::guarded::<write_guard::AddPartitionsToTxn>(shared, frame)
        }
        ApiKey::EndTxn if sessions => end_txn(shared, frame).await,
        ApiKey::AddOffsetsToTxn if sessions => add_offsets(shared, frame).await,
        _ => Ok(forward(frame)),
    }
}

/// How long an AddPartitionsToTxn may wait for this instance's lease (clients' default
/// request timeout is 30 s).
const ADD_PARTITIONS_WAIT_MS: i32 = 20_000;
/// First EndTxn version answering with the producer id and epoch.
const END_TXN_PRODUCER_SINCE: i16 = 5;

/// The link running the transactions of the producer whose batches `request` carries,
/// when they are forwarded.
pub fn session_link(snapshot: &Snapshot, request: &ProduceRequest) -> Option<Arc<str>> {
    let forwarder = snapshot.forwarder()?;
    let records = request
        .topic_data
        .iter()
        .flat_map(|t| &t.partition_data)
        .find_map(|p| p.records.clone())?;
    let batch = RecordBatches::new(records).next()?.ok()?;
    forwarder
        .transaction_session(batch.producer_id(), batch.producer_epoch())
        .map(|s| s.link)
}

async fn add_partitions(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    let Some(forwarder) = snapshot.forwarder().cloned() else {
        return write_guard::guarded::<write_guard::AddPartitionsToTxn>(shared, frame);
    };
    let request: AddPartitionsToTxnRequest =
        decode_request(&frame).map_err(ConnError::client_codec)?;
    let producer = TxnProducer {
        transactional_id: request.v3_and_below_transactional_id.0.to_string(),
        producer_id: request.v3_and_below_producer_id.0,
        epoch: request.v3_and_below_producer_epoch,
    };
    let topics: Vec<(String, Vec<i32>)> = request
        .v3_and_below_topics
        .iter()
        .map(|t| (t.name.to_string(), t.partitions.clone()))
        .collect();
    let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
    if names.iter().any(|t| snapshot.fence_of(t).is_some()) {
        // CONCURRENT_TRANSACTIONS until the fence lifts.
        return write_guard::guarded::<write_guard::AddPartitionsToTxn>(shared, frame);
    }
    let session = forwarder.transaction_session(producer.producer_id, producer.epoch);
    let link = match (session, one_link(&snapshot, &names)) {
        (Some(session), Some(link)) if session.link == link => link,
        (None, Some(link)) => link,
        // Its transaction is open on a source, or these are another link's mirrors:
        // one transaction cannot span two clusters.
        (Some(session), other) if session.open_here || other.is_some() => {
            mixed(&session.link, &producer);
            return respond_all(&frame, &topics, INVALID_TXN_STATE);
        }
        // No forwarded mirror, and no transaction open on a source (a session whose
        // transactions ran there before a cut-over, say): as any write.
        _ => return write_guard::guarded::<write_guard::AddPartitionsToTxn>(shared, frame),
    };
    let (snapshot, entered) =
        match produce_fence::hold(shared, &names, ADD_PARTITIONS_WAIT_MS).await {
            Held::Go { snapshot, entered } => (snapshot, entered),
            Held::TimedOut(_) => return respond_all(&frame, &topics, CONCURRENT_TRANSACTIONS),
            Held::Closing => return Ok(RequestAction::Close("shutting down".into())),
        };
    if one_link(&snapshot, &names).as_ref() != Some(&link) {
        // Changed while held (a cut-over began or ended): the client asks again.
        return respond_all(&frame, &topics, CONCURRENT_TRANSACTIONS);
    }
    let source_topics = topics
        .iter()
        .map(|(name, partitions)| {
            let source = snapshot
                .forward_of(name)
                .map_or_else(|| name.clone(), |(t, _)| t.source_topic.to_string());
            (source, partitions.clone())
        })
        .collect();
    let add = TxnAdd {
        link,
        producer,
        topics: source_topics,
    };
    let later: super::Later = Box::pin(async move {
        // Counted as on the way to the source until answered: a fence waits for it.
        let _entered = entered;
        let codes = forwarder.add_partitions(add).await;
        let results = topics
            .into_iter()
            .zip(codes)
            .map(|((name, partitions), codes)| topic_result(&name, &partitions, &codes))
            .collect();
        Ok(write_guard::merge_of::<write_guard::AddPartitionsToTxn>(
            results,
        ))
    });
    Ok(RequestAction::Await {
        upstream: None,
        later,
    })
}

async fn end_txn(shared: &Arc<Shared>, frame: RequestFrame) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    let request: EndTxnRequest = decode_request(&frame).map_err(ConnError::client_codec)?;
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    let Some((forwarder, session)) = session_of(&snapshot, id, epoch) else {
        return Ok(forward(frame));
    };
    let link = session.link.clone();
    let answer = EndTxnAnswer {
        // Retriable: the client looks its coordinator up again and retries.
        code: COORDINATOR_NOT_AVAILABLE,
        producer_id: id,
        epoch,
    };
    let Some(on_source) = open_on_source(&snapshot, forwarder.as_ref(), &session, id, epoch).await
    else {
        return Ok(RequestAction::Respond(
            answer.encode(&RequestMeta::of(&frame))?,
        ));
    };
    if !on_source {
        return Ok(forward(frame));
    }
    let producer = TxnProducer {
        transactional_id: request.transactional_id.0.to_string(),
        producer_id: id,
        epoch,
    };
    let committed = request.committed;
    let later: super::Later = Box::pin(async move {
        let code = forwarder.end_transaction(link, producer, committed).await;
        Ok(Box::new(EndTxnAnswer { code, ..answer }) as Box<dyn Rewrite>)
    });
    Ok(RequestAction::Await {
        upstream: None,
        later,
    })
}

async fn add_offsets(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    let request: AddOffsetsToTxnRequest =
        decode_request(&frame).map_err(ConnError::client_codec)?;
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    let Some((forwarder, session)) = session_of(&snapshot, id, epoch) else {
        return Ok(forward(frame));
    };
    let code = match open_on_source(&snapshot, forwarder.as_ref(), &session, id, epoch).await {
        // Its transaction is not on the source: the offsets go with it to the
        // destination (a forwarded partition added later is refused there).
        Some(false) => return Ok(forward(frame)),
        Some(true) => INVALID_TXN_STATE,
        None => COORDINATOR_NOT_AVAILABLE,
    };
    if code == COORDINATOR_NOT_AVAILABLE {
        return respond_add_offsets(&frame, code);
    }
    let link = session.link;
    // Fatal for the client: a transaction forwarded to a source cannot hold consumer
    // offsets, which live on the destination's group coordinator.
    tracing::warn!(%link, transactional_id = %request.transactional_id.0, group = %request.group_id.0,
        "a transaction forwarded to a link's source cannot commit consumer offsets: refused");
    respond_add_offsets(&frame, code)
}

fn respond_add_offsets(frame: &RequestFrame, code: i16) -> Result<RequestAction, ConnError> {
    let response = AddOffsetsToTxnResponse::default().with_error_code(code);
    let bytes = encode_response(
        frame.correlation_id,
        ApiKey::AddOffsetsToTxn,
        frame.api_version,
        &response,
    )
    .map_err(ConnError::internal)?;
    Ok(RequestAction::Respond(bytes))
}

/// The forwarder and the session of the client's producer, when it has one.
fn session_of(
    snapshot: &Snapshot,
    id: i64,
    epoch: i16,
) -> Option<(Arc<dyn ProduceForwarder>, TxnSession)> {
    let forwarder = snapshot.forwarder()?.clone();
    let session = forwarder.transaction_session(id, epoch)?;
    Some((forwarder, session))
}

/// Whether the session's transaction is open on its link's source: known here when
/// this instance began it; over when none of the link's mirrors is forwarded any more;
/// else asked of the source. `None`: the source could not tell (the client retries).
async fn open_on_source(
    snapshot: &Snapshot,
    forwarder: &dyn ProduceForwarder,
    session: &TxnSession,
    id: i64,
    epoch: i16,
) -> Option<bool> {
    if session.open_here {
        return Some(true);
    }
    if !snapshot.forwards_link(&session.link) {
        return Some(false);
    }
    match forwarder
        .transaction_open_on_source(session.link.clone(), id, epoch)
        .await
    {
        Ok(open) => Some(open),
        Err(reason) => {
            tracing::debug!(link = %session.link, %reason, "cannot tell where a transaction is open");
            None
        }
    }
}

fn mixed(link: &str, producer: &TxnProducer) {
    tracing::warn!(link, transactional_id = %producer.transactional_id,
        "a transaction forwarded to a link's source named another topic: refused (one transaction cannot span two clusters)");
}

/// The link every one of `names` is forwarded through, if they all are (and to one).
fn one_link(snapshot: &Snapshot, names: &[&str]) -> Option<Arc<str>> {
    let mut links = names.iter().map(|t| {
        snapshot
            .forward_of(t)
            .map(|(target, _)| target.link.clone())
    });
    let first = links.next()??;
    links.all(|l| l.as_ref() == Some(&first)).then_some(first)
}

fn topic_result(name: &str, partitions: &[i32], codes: &[i16]) -> AddPartitionsToTxnTopicResult {
    let results = partitions
        .iter()
        .zip(codes)
        .map(|(p, code)| {
            AddPartitionsToTxnPartitionResult::default()
                .with_partition_index(*p)
                .with_partition_error_code(*code)
        })
        .collect();
    AddPartitionsToTxnTopicResult::default()
        .with_name(crate::kafka::admin::topic_name(name))
        .with_results_by_partition(results)
}

fn respond_all(
    frame: &RequestFrame,
    topics: &[(String, Vec<i32>)],
    code: i16,
) -> Result<RequestAction, ConnError> {
    let results = topics
        .iter()
        .map(|(name, partitions)| topic_result(name, partitions, &vec![code; partitions.len()]))
        .collect();
    let response = kafka_protocol::messages::AddPartitionsToTxnResponse::default()
        .with_results_by_topic_v3_and_below(results);
    let bytes = encode_response(
        frame.correlation_id,
        ApiKey::AddPartitionsToTxn,
        frame.api_version,
        &response,
    )
    .map_err(ConnError::internal)?;
    Ok(RequestAction::Respond(bytes))
}

fn forward(frame: RequestFrame) -> RequestAction {
    RequestAction::Forward {
        bytes: frame.bytes,
        on_response: Some(OnResponse::Forward),
    }
}

/// The client's EndTxn answer, made here.
#[derive(Clone, Copy)]
struct EndTxnAnswer {
    code: i16,
    producer_id: i64,
    epoch: i16,
}

impl EndTxnAnswer {
    fn encode(&self, meta: &RequestMeta) -> Result<Bytes, ConnError> {
        let mut response = EndTxnResponse::default().with_error_code(self.code);
        if meta.api_version >= END_TXN_PRODUCER_SINCE {
            response.producer_id = kafka_protocol::messages::ProducerId(self.producer_id);
            response.producer_epoch = self.epoch;
        }
        encode_response(
            meta.correlation_id,
            ApiKey::EndTxn,
            meta.api_version,
            &response,
        )
        .map_err(ConnError::internal)
    }
}

impl Rewrite for EndTxnAnswer {
    fn rewrite(
        self: Box<Self>,
        _: &Arc<Shared>,
        _: Option<Bytes>,
        meta: &RequestMeta,
    ) -> Result<OutFrame, ConnError> {
        self.encode(meta).map(OutFrame::Whole)
    }
}
