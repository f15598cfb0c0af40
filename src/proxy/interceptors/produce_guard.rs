//! Produce to a read-only mirror topic is refused per partition with INVALID_REQUEST
//! and Confluent's message; other partitions of the same request still go through.
//! While the catalog is not loaded every topic is refused with NOT_ENOUGH_REPLICAS,
//! which producers retry until their delivery timeout. Produce to a topic under a
//! cut-over's fence is parked first (`produce_fence`).

use std::sync::Arc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::addresses::{ProduceEndpoints, PRODUCE_NODE_ENDPOINTS_SINCE};
use super::chain::{Chain, Rewrite};
use super::produce_fence::{self, Held};
use super::write_guard::Refusals;
use super::write_guard::{self, refusal_code_with, refusal_text, take_where, GuardOf, GuardedApi};
use super::{produce_forward, txn_forward, Interceptor, OnResponse, RequestAction};
use crate::kafka::codec::decode_request;
use crate::kafka::error_code::{INVALID_REQUEST, NOT_ENOUGH_REPLICAS};
use crate::kafka::fetch_scan::ScannedTopic;
use crate::kafka::frame::{read_uvarint, FrameError, RequestFrame};
use crate::kafka::produce_scan::scan_produce_topics;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::{Guard, Snapshot};

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: "produce_guard",
    api_keys: &[ApiKey::Produce],
    on_request: |shared, frame| Box::pin(on_request(shared, frame)),
};
/// First version that names topics by id only.
const TOPIC_IDS_SINCE: i16 = 13;
/// First version with a per-partition error message.
const ERROR_MESSAGE_SINCE: i16 = 8;

pub struct Produce;

impl GuardedApi for Produce {
    const KEY: ApiKey = ApiKey::Produce;
    type Request = ProduceRequest;
    type Response = ProduceResponse;
    type Refused = TopicProduceResponse;

    fn split(request: &mut Self::Request, version: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
        take_where(&mut request.topic_data, |t| guard_of(&t.name).is_some())
            .into_iter()
            .map(|topic| {
                let guard = guard_of(&topic.name).unwrap_or(Guard::Mirror);
                if guard == Guard::Mirror {
                    crate::admin::metrics::ProxyMetrics::get()
                        .produce_refused(topic.name.as_str(), topic.partition_data.len() as u64);
                }
                let code = refusal_code_with(guard, INVALID_REQUEST, NOT_ENOUGH_REPLICAS);
                let text = refusal_text(guard, "append records to", topic.name.as_str());
                let partitions = topic
                    .partition_data
                    .iter()
                    .map(|p| {
                        let refused = PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code)
                            .with_base_offset(-1);
                        if version >= ERROR_MESSAGE_SINCE {
                            refused.with_error_message(Some(text.clone()))
                        } else {
                            refused
                        }
                    })
                    .collect();
                // Both identities are kept; the encoder writes the one of the version.
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_topic_id(topic.topic_id)
                    .with_partition_responses(partitions)
            })
            .collect()
    }

    fn is_empty(request: &Self::Request) -> bool {
        request.topic_data.is_empty()
    }

    fn add(response: &mut Self::Response, refused: Vec<Self::Refused>) {
        response.responses.extend(refused);
    }

    fn answer(refused: Refusals<Self>) -> Box<dyn Rewrite> {
        Chain::boxed((refused, ProduceEndpoints))
    }
}

async fn on_request(shared: &Arc<Shared>, frame: RequestFrame) -> Result<RequestAction, ConnError> {
    let mut snapshot = shared.registry.load();
    let version = frame.api_version;
    let expects_response = peek_acks(&frame).map_err(ConnError::ClientFrame)? != 0;
    let on_response = if version >= PRODUCE_NODE_ENDPOINTS_SINCE {
        OnResponse::Rewrite(Chain::boxed((ProduceEndpoints,)))
    } else {
        OnResponse::Forward
    };
    let by_id = version >= TOPIC_IDS_SINCE;
    if may_touch_guarded(shared, &snapshot, &frame) {
        if version < ApiKey::Produce.valid_versions().min {
            // v0-2 bodies cannot be decoded, so they cannot be checked.
            return Ok(RequestAction::Close(format!(
                "Produce v{version} cannot be checked for guarded topics"
            )));
        }
        let mut request: ProduceRequest =
            decode_request(&frame).map_err(ConnError::client_codec)?;
        if by_id {
            resolve_topic_names(shared, &mut request).await;
        }
        // A transactional producer whose transactions run on a link's source writes to
        // the mirrors forwarded there; anything else it writes goes as any write.
        let txn_link = match request.transactional_id {
            Some(_) if snapshot.forwards_any() => txn_forward::session_link(&snapshot, &request),
            _ => None,
        };
        let names: Vec<String> = request
            .topic_data
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let forwarded_to = |snapshot: &Snapshot, name: &str| {
            snapshot
                .forward_of(name)
                .is_some_and(|(target, _)| txn_link.as_ref() == Some(&target.link))
        };
        let mut entered = None;
        let mut timed_out = false;
        if txn_link.is_some() && names.iter().all(|n| forwarded_to(&snapshot, n)) {
            // Its transaction began on the source before any fence: it ends there, and a
            // cut-over waits for that (`replicator::txn_forward`), so it is not parked.
            let topics = names.iter().map(|n| Arc::from(*n)).collect();
            entered = Some(shared.registry.in_flight().enter(topics));
        } else if snapshot.fences_any() || snapshot.forwards_any() {
            match produce_fence::hold(shared, &names, request.timeout_ms).await {
                Held::Go {
                    snapshot: now,
                    entered: counted,
                } => {
                    snapshot = now;
                    entered = counted;
                }
                Held::TimedOut(now) => {
                    snapshot = now;
                    timed_out = true;
                }
                Held::Closing => return Ok(RequestAction::Close("shutting down".into())),
            }
        }
        let forwarded_to_session = |name: &str| forwarded_to(&snapshot, name);
        // v13 topics left without a name have an id the destination does not know.
        let guard_of = |name: &str| match name {
            "" if by_id => Some(Guard::UnknownTopicId),
            // Held too long: retriable, whether it was fenced or about to be forwarded.
            name if timed_out
                && (snapshot.fence_of(name).is_some() || snapshot.forward_of(name).is_some()) =>
            {
                Some(Guard::Fenced)
            }
            name => snapshot.guard_of(name),
        };
        // A transaction is forwarded only when its AddPartitionsToTxn went to the source
        // (`txn_forward`); any other transactional write to a mirror is refused.
        if expects_response
            && !timed_out
            && (request.transactional_id.is_none() || txn_link.is_some())
            && snapshot.forwards_any()
        {
            let transactional = request.transactional_id.is_some();
            let forwarded = take_where(&mut request.topic_data, |t| {
                let name = t.name.as_str();
                match transactional {
                    true => forwarded_to_session(name),
                    false => snapshot.forward_of(name).is_some(),
                }
            });
            if !forwarded.is_empty() {
                let rest = write_guard::cut::<Produce>(&frame, request, &guard_of, true)?;
                return produce_forward::split(
                    &frame,
                    &shared.registry,
                    &snapshot,
                    rest,
                    forwarded,
                    entered,
                )
                .await;
            }
        }
        if let Some(action) =
            write_guard::apply::<Produce>(&frame, request, &guard_of, expects_response)?
        {
            if timed_out {
                // The client's later requests, already sent behind this one, must not be
                // written before it is retried (an idempotent producer's sequence would
                // have a hole): answer this one, then read no more on this connection.
                return Ok(RequestAction::Last(Box::new(action)));
            }
            return Ok(action);
        }
    }
    Ok(RequestAction::Forward {
        bytes: frame.bytes,
        on_response: expects_response.then_some(on_response),
    })
}

/// True unless the request surely names no topic that is guarded, fenced or forwarded:
/// its topics are read by a walk over the request, which steps over the record bytes.
/// A request the walk does not accept, or naming an id the destination has not shown,
/// is decoded.
fn may_touch_guarded(shared: &Arc<Shared>, snapshot: &Snapshot, frame: &RequestFrame) -> bool {
    let guarded = |name: &str| {
        snapshot.guard_of(name).is_some()
            || snapshot.fence_of(name).is_some()
            || snapshot.forward_of(name).is_some()
    };
    if frame.api_version < ApiKey::Produce.valid_versions().min {
        // v0-2 can be neither walked nor decoded: a search of the whole frame for
        // mirrorgate's own topics decides (and finding anything closes the connection).
        return snapshot.has_read_only_topics()
            || snapshot.fences_any()
            || shared.may_name_internal(snapshot, &frame.bytes, false);
    }
    let Ok(body) = frame.body() else {
        return true;
    };
    let mut touches = false;
    let walked = scan_produce_topics(&body, frame.api_version, |topic| {
        touches |= match topic {
            ScannedTopic::Name(name) => guarded(name),
            ScannedTopic::Id(id) => shared
                .destination
                .topic_name(&uuid::Uuid::from_bytes(id))
                .is_none_or(|name| guarded(name.as_str())),
        };
    });
    touches || walked.is_err()
}

/// Produce v13 names topics by id: fill in names from what the proxy learned of the
/// destination, refreshing once for ids it has not seen. An id that stays unknown keeps
/// an empty name and is refused with UNKNOWN_TOPIC_ID.
async fn resolve_topic_names(shared: &Arc<Shared>, request: &mut ProduceRequest) {
    let mut refreshed = false;
    for topic in &mut request.topic_data {
        if let Some(name) = shared.topic_name(&topic.topic_id, &mut refreshed).await {
            topic.name = TopicName(name);
        }
    }
}

/// Reads `acks` without decoding the body: it decides whether a response will come.
/// Public for the fuzz targets in `fuzz/`.
pub fn peek_acks(frame: &RequestFrame) -> Result<i16, FrameError> {
    let body = frame.body()?;
    let malformed = || FrameError::MalformedHeader("Produce body too short for acks".into());
    let mut pos = 0usize;
    if frame.api_version >= 3 {
        // transactional_id: nullable string, compact from v9.
        if frame.api_version >= 9 {
            let (len_plus_one, used) = read_uvarint(&body).ok_or_else(malformed)?;
            pos += used + (len_plus_one as usize).saturating_sub(1);
        } else {
            let raw: [u8; 2] = body
                .get(..2)
                .ok_or_else(malformed)?
                .try_into()
                .map_err(|_| malformed())?;
            pos += 2 + usize::try_from(i16::from_be_bytes(raw).max(0)).unwrap_or(0);
        }
    }
    let raw: [u8; 2] = body
        .get(pos..pos + 2)
        .ok_or_else(malformed)?
        .try_into()
        .map_err(|_| malformed())?;
    Ok(i16::from_be_bytes(raw))
}
