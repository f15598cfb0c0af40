//! Keeps mirror topics read-only and mirrorgate's own topics out of reach for clients.
//! Each write API names its topics in a request list; entries for guarded topics are cut
//! out and answered with the API's own error field (for a mirror's configs, only entries
//! altering a key mirrored from the source; an internal topic is refused whole with
//! TOPIC_AUTHORIZATION_FAILED). The rest is forwarded and the two answers merged in one
//! response; a request left with nothing to forward is answered without going upstream.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, CreatePartitionsRequest, CreatePartitionsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::chain::{Chain, Rewrite, Step};
use super::{forward, Interceptor, OnResponse, RequestAction, RequestMeta};
use crate::kafka::codec::{decode_request, encode_request, encode_response};
use crate::kafka::error_code::{
    CONCURRENT_TRANSACTIONS, INVALID_CONFIG, INVALID_REQUEST, OPERATION_NOT_ATTEMPTED,
    REQUEST_TIMED_OUT, TOPIC_AUTHORIZATION_FAILED, UNKNOWN_TOPIC_ID,
};
use crate::kafka::frame::RequestFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::forward::Boxed;
use crate::registry::{Guard, Snapshot};
use crate::replicator::config_sync::is_locked_on_mirror;

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: "write_guard",
    api_keys: &[
        ApiKey::DeleteRecords,
        ApiKey::CreatePartitions,
        ApiKey::AlterConfigs,
        ApiKey::IncrementalAlterConfigs,
    ],
    on_request,
};

fn on_request(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Boxed<'_, Result<RequestAction, ConnError>> {
    let decision = match frame.api_key {
        ApiKey::DeleteRecords => guarded::<DeleteRecords>(shared, frame),
        ApiKey::CreatePartitions => guarded::<CreatePartitions>(shared, frame),
        ApiKey::AlterConfigs => guarded::<AlterConfigs>(shared, frame),
        ApiKey::IncrementalAlterConfigs => guarded::<IncrementalAlterConfigs>(shared, frame),
        _ => Ok(forward(frame, OnResponse::Forward)),
    };
    Box::pin(std::future::ready(decision))
}

/// The guard of `A` on a request of a client, looked at only when some topic is
/// guarded or the frame may name one of mirrorgate's own topics.
pub fn guarded<A: GuardedApi>(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    // These APIs name topics by name only.
    if !snapshot.has_read_only_topics() && !snapshot.may_name_internal(&frame.bytes) {
        return Ok(forward(frame, OnResponse::Forward));
    }
    Ok(match guard::<A>(&frame, &snapshot)? {
        Some(action) => action,
        None => forward(frame, OnResponse::Forward),
    })
}

/// What decides whether a topic is guarded, and how.
pub type GuardOf<'a> = &'a dyn Fn(&str) -> Option<Guard>;

/// The error code refusing a guarded entry: the API's own for mirrors.
pub fn refusal_code(guard: Guard, mirror_code: i16) -> i16 {
    match guard {
        Guard::Mirror => mirror_code,
        Guard::Internal => TOPIC_AUTHORIZATION_FAILED,
        Guard::UnknownTopicId => UNKNOWN_TOPIC_ID,
        // Retriable: asked again until the catalog is loaded or the fence lifts.
        Guard::CatalogLoading | Guard::Fenced => REQUEST_TIMED_OUT,
    }
}

/// `refusal_code` for an API whose clients retry another code while the catalog loads.
pub fn refusal_code_with(guard: Guard, mirror_code: i16, loading_code: i16) -> i16 {
    match guard {
        Guard::CatalogLoading => loading_code,
        other => refusal_code(other, mirror_code),
    }
}

/// The error message refusing a guarded entry; `what` is the mirror wording
/// ("append records to", "add partitions to", ...).
pub fn refusal_text(guard: Guard, what: &str, topic: &str) -> StrBytes {
    StrBytes::from_string(match guard {
        Guard::Mirror => format!("Cannot {what} read-only mirror topic '{topic}'"),
        Guard::Internal => {
            format!("Topic '{topic}' is internal to mirrorgate and not open to clients")
        }
        Guard::UnknownTopicId => "This server does not host this topic ID.".to_string(),
        Guard::CatalogLoading => format!(
            "mirrorgate has not yet read which topics are read-only mirrors; retry the write to '{topic}'"
        ),
        Guard::Fenced => format!(
            "'{topic}' is being cut over to this cluster (writes are held meanwhile); retry it"
        ),
    })
}
/// ConfigResource type of a topic in (Incremental)AlterConfigs.
const TOPIC_RESOURCE: i8 = 2;

/// One write API the guard understands.
pub trait GuardedApi: 'static {
    const KEY: ApiKey;
    type Request: Decodable + Encodable;
    type Response: Decodable + Encodable + Default;
    /// A response entry answering a cut-out request entry.
    type Refused: Send + 'static;

    /// Cuts the entries naming guarded topics out of `request` and returns their
    /// answers; an empty result means the request is untouched.
    fn split(request: &mut Self::Request, version: i16, guard_of: GuardOf) -> Vec<Self::Refused>;

    /// True when nothing is left to forward.
    fn is_empty(request: &Self::Request) -> bool;

    /// Adds the refusals to the response.
    fn add(response: &mut Self::Response, refused: Vec<Self::Refused>);

    /// How a topic is guarded for this API; writes other than Produce and
    /// AddPartitionsToTxn treat a fenced mirror as the mirror it still is.
    fn guard_of(snapshot: &Snapshot, topic: &str) -> Option<Guard> {
        snapshot.guard_of(topic)
    }

    /// What answers a request some of whose entries were cut out: the refusals merged
    /// into the upstream answer (or alone, when nothing went upstream).
    fn answer(refused: Refusals<Self>) -> Box<dyn Rewrite>
    where
        Self: Sized,
    {
        Chain::boxed((refused,))
    }
}

/// Answers to cut-out entries, waiting for the upstream answer they are added to.
pub struct Refusals<A: GuardedApi>(Vec<A::Refused>);

/// `entries` as the answer's rewrite: added to the upstream answer, or answered alone.
pub fn merge_of<A: GuardedApi>(entries: Vec<A::Refused>) -> Box<dyn Rewrite> {
    A::answer(Refusals(entries))
}

impl<A: GuardedApi> Step<A::Response> for Refusals<A>
where
    A::Response: 'static,
{
    const NAME: &'static str = "write_guard";

    fn apply(
        self,
        _: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut A::Response,
    ) -> Result<bool, ConnError> {
        let changed = !self.0.is_empty();
        A::add(response, self.0);
        Ok(changed)
    }
}

/// Decodes a write request and applies the guard; `None` when it names no guarded
/// topic (the original frame is then forwarded as it is).
pub fn guard<A: GuardedApi>(
    frame: &RequestFrame,
    snapshot: &Snapshot,
) -> Result<Option<RequestAction>, ConnError> {
    let request: A::Request = decode_request(frame).map_err(ConnError::client_codec)?;
    apply::<A>(frame, request, &|topic| A::guard_of(snapshot, topic), true)
}

/// The guard on an already decoded request. Without `expects_response` (Produce
/// acks=0) a refused entry cannot be reported, so the connection is closed, as a
/// broker does.
pub fn apply<A: GuardedApi>(
    frame: &RequestFrame,
    request: A::Request,
    guard_of: GuardOf,
    expects_response: bool,
) -> Result<Option<RequestAction>, ConnError> {
    Ok(
        match cut::<A>(frame, request, guard_of, expects_response)? {
            Cut::Untouched(_) => None,
            Cut::Close(reason) => Some(RequestAction::Close(reason)),
            Cut::Refused { rest, refused } => {
                if A::is_empty(&rest) {
                    let mut response = A::Response::default();
                    A::add(&mut response, refused);
                    let bytes =
                        encode_response(frame.correlation_id, A::KEY, frame.api_version, &response)
                            .map_err(ConnError::internal)?;
                    Some(RequestAction::Respond(bytes))
                } else {
                    let bytes = encode_request(frame, &rest).map_err(ConnError::internal)?;
                    Some(RequestAction::Forward {
                        bytes,
                        on_response: Some(OnResponse::Rewrite(merge_of::<A>(refused))),
                    })
                }
            }
        },
    )
}

/// What the guard did to a request.
pub enum Cut<A: GuardedApi> {
    /// It names no guarded topic.
    Untouched(A::Request),
    /// `rest` is what may go upstream; `refused` answers what was cut out.
    Refused {
        rest: A::Request,
        refused: Vec<A::Refused>,
    },
    Close(String),
}

/// Cuts the guarded entries out of `request`.
pub fn cut<A: GuardedApi>(
    frame: &RequestFrame,
    mut request: A::Request,
    guard_of: GuardOf,
    expects_response: bool,
) -> Result<Cut<A>, ConnError> {
    let version = frame.api_version;
    let internal = std::cell::Cell::new(None::<String>);
    let refused = A::split(&mut request, version, &|topic| {
        let guard = guard_of(topic);
        if guard == Some(Guard::Internal) {
            internal.set(Some(topic.to_string()));
        }
        guard
    });
    if refused.is_empty() {
        return Ok(Cut::Untouched(request));
    }
    if let Some(topic) = internal.take() {
        // Clients have no business here: say who tried (the span names the peer).
        tracing::warn!(side = "client", api = ?A::KEY, %topic, "refused a request touching an internal topic");
    }
    if !expects_response {
        return Ok(Cut::Close(format!(
            "{:?} without acknowledgement (acks=0) to a guarded topic",
            A::KEY
        )));
    }
    Ok(Cut::Refused {
        rest: request,
        refused,
    })
}

/// Moves the items matching `cut` out of `items`, keeping order on both sides.
pub fn take_where<T>(items: &mut Vec<T>, cut: impl Fn(&T) -> bool) -> Vec<T> {
    let (taken, kept) = std::mem::take(items)
        .into_iter()
        .partition(|item| cut(item));
    *items = kept;
    taken
}

pub struct DeleteRecords;
impl GuardedApi for DeleteRecords {
    const KEY: ApiKey = ApiKey::DeleteRecords;
    type Request = DeleteRecordsRequest;
    type Response = DeleteRecordsResponse;
    type Refused = DeleteRecordsTopicResult;

    fn split(request: &mut Self::Request, _: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
        take_where(&mut request.topics, |t| guard_of(&t.name).is_some())
            .into_iter()
            .map(|topic| {
                let code = guard_of(&topic.name)
                    .map_or(INVALID_REQUEST, |g| refusal_code(g, INVALID_REQUEST));
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(code)
                    })
                    .collect();
                DeleteRecordsTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions)
            })
            .collect()
    }
    fn is_empty(request: &Self::Request) -> bool {
        request.topics.is_empty()
    }
    fn add(response: &mut Self::Response, refused: Vec<Self::Refused>) {
        response.topics.extend(refused);
    }
}

pub struct CreatePartitions;
impl GuardedApi for CreatePartitions {
    const KEY: ApiKey = ApiKey::CreatePartitions;
    type Request = CreatePartitionsRequest;
    type Response = CreatePartitionsResponse;
    type Refused = CreatePartitionsTopicResult;

    fn split(request: &mut Self::Request, _: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
        take_where(&mut request.topics, |t| guard_of(&t.name).is_some())
            .into_iter()
            .map(|topic| {
                let guard = guard_of(&topic.name).unwrap_or(Guard::Mirror);
                let text = refusal_text(guard, "add partitions to", &topic.name);
                CreatePartitionsTopicResult::default()
                    .with_name(topic.name)
                    .with_error_code(refusal_code(guard, INVALID_REQUEST))
                    .with_error_message(Some(text))
            })
            .collect()
    }
    fn is_empty(request: &Self::Request) -> bool {
        request.topics.is_empty()
    }
    fn add(response: &mut Self::Response, refused: Vec<Self::Refused>) {
        response.results.extend(refused);
    }
}

/// AlterConfigs and IncrementalAlterConfigs: the same resource list and the same
/// result shape, generated from separate message modules. A mirror topic takes some
/// configs from its source (`config_sync::is_locked_on_mirror`): a resource of a mirror
/// that alters one of them is refused with INVALID_CONFIG, naming the key; a resource
/// is applied whole or not at all, as a broker does. Other keys go through. Legacy
/// AlterConfigs replaces the topic's whole set: without a locked key it is forwarded,
/// and the next config sync round puts the mirrored keys back.
macro_rules! config_guard {
    ($name:ident, $key:expr, $request:ty, $resource:ty, $response:ty, $result:ty) => {
        pub struct $name;
        impl GuardedApi for $name {
            const KEY: ApiKey = $key;
            type Request = $request;
            type Response = $response;
            type Refused = $result;

            fn split(
                request: &mut Self::Request,
                _: i16,
                guard_of: GuardOf,
            ) -> Vec<Self::Refused> {
                let guard = |r: &$resource| {
                    (r.resource_type == TOPIC_RESOURCE)
                        .then(|| guard_of(&r.resource_name))
                        .flatten()
                };
                let locked_key = |r: &$resource| {
                    r.configs
                        .iter()
                        .find(|c| is_locked_on_mirror(&c.name))
                        .map(|c| c.name.to_string())
                };
                let refused = |r: &$resource| match guard(r) {
                    Some(Guard::Mirror) => locked_key(r).is_some(),
                    Some(_) => true,
                    None => false,
                };
                take_where(&mut request.resources, refused)
                    .into_iter()
                    .map(|r| {
                        let (code, text) = match guard(&r).unwrap_or(Guard::Mirror) {
                            Guard::Mirror => {
                                let key = locked_key(&r).unwrap_or_default();
                                let text = format!(
                                    "Config '{key}' of mirror topic '{}' is mirrored from the \
                                     source and cannot be altered.",
                                    r.resource_name
                                );
                                (INVALID_CONFIG, StrBytes::from_string(text))
                            }
                            other => (
                                refusal_code(other, INVALID_CONFIG),
                                refusal_text(other, "alter", &r.resource_name),
                            ),
                        };
                        <$result>::default()
                            .with_error_code(code)
                            .with_error_message(Some(text))
                            .with_resource_type(r.resource_type)
                            .with_resource_name(r.resource_name)
                    })
                    .collect()
            }
            fn is_empty(request: &Self::Request) -> bool {
                request.resources.is_empty()
            }
            fn add(response: &mut Self::Response, refused: Vec<Self::Refused>) {
                response.responses.extend(refused);
            }
        }
    };
}

config_guard!(
    AlterConfigs,
    ApiKey::AlterConfigs,
    AlterConfigsRequest,
    kafka_protocol::messages::alter_configs_request::AlterConfigsResource,
    AlterConfigsResponse,
    AlterConfigsResourceResponse
);
config_guard!(
    IncrementalAlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    IncrementalAlterConfigsRequest,
    kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource,
    IncrementalAlterConfigsResponse,
    IncrementalResult
);

/// Clients use v0-3 (one transaction per request; v4+ is inter-broker and not offered).
/// Like a broker refusing part of a transaction, the whole request is answered: the
/// read-only partitions with INVALID_REQUEST, the others with OPERATION_NOT_ATTEMPTED.
/// While the catalog loads, or the topic is under a cut-over's fence,
/// CONCURRENT_TRANSACTIONS, which producers retry.
pub struct AddPartitionsToTxn;
impl GuardedApi for AddPartitionsToTxn {
    const KEY: ApiKey = ApiKey::AddPartitionsToTxn;
    type Request = AddPartitionsToTxnRequest;
    type Response = AddPartitionsToTxnResponse;
    type Refused = AddPartitionsToTxnTopicResult;

    /// A transactional producer arriving at a cut-over's fence retries until it lifts,
    /// then adds the promoted topic.
    fn guard_of(snapshot: &Snapshot, topic: &str) -> Option<Guard> {
        match snapshot.guard_of(topic) {
            Some(Guard::Mirror) if snapshot.fence_of(topic).is_some() => Some(Guard::Fenced),
            other => other,
        }
    }

    fn split(request: &mut Self::Request, _: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
        let topics = &mut request.v3_and_below_topics;
        if !topics.iter().any(|t| guard_of(&t.name).is_some()) {
            return Vec::new();
        }
        std::mem::take(topics)
            .into_iter()
            .map(|topic| {
                let code = match guard_of(&topic.name) {
                    // Retried by the producer until the fence lifts.
                    Some(Guard::Fenced) => CONCURRENT_TRANSACTIONS,
                    Some(guard) => {
                        refusal_code_with(guard, INVALID_REQUEST, CONCURRENT_TRANSACTIONS)
                    }
                    None => OPERATION_NOT_ATTEMPTED,
                };
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(*p)
                            .with_partition_error_code(code)
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(topic.name)
                    .with_results_by_partition(partitions)
            })
            .collect()
    }
    fn is_empty(request: &Self::Request) -> bool {
        request.v3_and_below_topics.is_empty()
    }
    fn add(response: &mut Self::Response, refused: Vec<Self::Refused>) {
        response.results_by_topic_v3_and_below.extend(refused);
    }
}
