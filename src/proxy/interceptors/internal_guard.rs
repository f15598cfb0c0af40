//! mirrorgate's own topics (`_mirrorgate-*` and the configured metadata topic) hold the
//! catalog and sealed credentials: besides the write APIs of `write_guard`, clients may
//! not delete or create them, nor commit or delete group offsets on them. These APIs
//! are decoded only when a cheap scan finds an internal topic's name or id in the frame.

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::MetadataResponse;

use super::chain::Step;
use super::write_guard::{self, refusal_text, take_where, GuardOf, GuardedApi};
use super::{forward, Interceptor, OnResponse, RequestAction, RequestMeta};
use crate::kafka::codec::decode_request;
use crate::kafka::error_code::TOPIC_AUTHORIZATION_FAILED;
use crate::kafka::frame::RequestFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::forward::Boxed;
use crate::registry::{Guard, Snapshot};

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: "internal_guard",
    api_keys: &[
        ApiKey::DeleteTopics,
        ApiKey::CreateTopics,
        ApiKey::OffsetCommit,
        ApiKey::TxnOffsetCommit,
        ApiKey::OffsetDelete,
    ],
    on_request: dispatch,
};

fn dispatch(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Boxed<'_, Result<RequestAction, ConnError>> {
    match frame.api_key {
        ApiKey::DeleteTopics => Box::pin(on_request::<DeleteTopics>(shared, frame)),
        ApiKey::CreateTopics => Box::pin(on_request::<CreateTopics>(shared, frame)),
        ApiKey::OffsetCommit => Box::pin(on_request::<OffsetCommit>(shared, frame)),
        ApiKey::TxnOffsetCommit => Box::pin(on_request::<TxnOffsetCommit>(shared, frame)),
        ApiKey::OffsetDelete => Box::pin(on_request::<OffsetDelete>(shared, frame)),
        _ => Box::pin(std::future::ready(Ok(forward(frame, OnResponse::Forward)))),
    }
}

/// A Metadata answer's topics: the destination's topic ids are learned from it, then
/// mirrorgate's own topics are hidden as a broker hides a topic the client may not
/// describe: left out of a listing of every topic (clients such as KafkaJS fail a
/// listing with any topic error), and TOPIC_AUTHORIZATION_FAILED, with no id and no
/// partitions, when asked for by name. `all_topics`: the request asked for every topic.
pub struct MetadataTopics {
    pub all_topics: bool,
}

impl Step<MetadataResponse> for MetadataTopics {
    const NAME: &'static str = "internal_guard";

    fn apply(
        self,
        shared: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut MetadataResponse,
    ) -> Result<bool, ConnError> {
        let snapshot = shared.registry.load();
        shared
            .destination
            .learn_topics(response, &|topic| snapshot.is_internal(topic));
        Ok(hide_internal_topics(&snapshot, response, self.all_topics))
    }
}

/// True when a topic was hidden.
fn hide_internal_topics(
    snapshot: &Snapshot,
    response: &mut MetadataResponse,
    all_topics: bool,
) -> bool {
    let internal = |topic: &MetadataResponseTopic| {
        topic
            .name
            .as_ref()
            .is_some_and(|n| snapshot.is_internal(n.as_str()))
    };
    if all_topics {
        let before = response.topics.len();
        response.topics.retain(|t| !internal(t));
        return response.topics.len() != before;
    }
    let mut hidden = false;
    for topic in &mut response.topics {
        if internal(topic) {
            topic.error_code = TOPIC_AUTHORIZATION_FAILED;
            topic.topic_id = uuid::Uuid::nil();
            topic.partitions.clear();
            topic.topic_authorized_operations = i32::MIN;
            hidden = true;
        }
    }
    hidden
}

/// Names of topics the request names by id only, from what the proxy knows.
type NameOf<'a> = &'a dyn Fn(&Uuid) -> Option<StrBytes>;

/// An API refused only for internal topics; mirrors pass (they may be deleted,
/// consumed and committed on).
pub trait InternalOnly: GuardedApi {
    /// Fills in names of entries named by id (DeleteTopics v6, OffsetCommit v10).
    fn name_topics(_request: &mut Self::Request, _name_of: NameOf) {}
}

async fn on_request<A: InternalOnly>(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    let bytes = &frame.bytes;
    if !shared.may_name_internal(&snapshot, bytes, false)
        && !shared.may_name_internal(&snapshot, bytes, true)
    {
        return Ok(forward(frame, OnResponse::Forward));
    }
    let mut request: A::Request = decode_request(&frame).map_err(ConnError::client_codec)?;
    A::name_topics(&mut request, &|id| shared.destination.topic_name(id));
    let guard_of = |topic: &str| snapshot.is_internal(topic).then_some(Guard::Internal);
    Ok(
        match write_guard::apply::<A>(&frame, request, &guard_of, true)? {
            Some(action) => action,
            None => forward(frame, OnResponse::Forward),
        },
    )
}

fn refused_text(topic: &str) -> Option<StrBytes> {
    Some(refusal_text(Guard::Internal, "", topic))
}

pub struct DeleteTopics;
impl GuardedApi for DeleteTopics {
    const KEY: ApiKey = ApiKey::DeleteTopics;
    type Request = DeleteTopicsRequest;
    type Response = DeleteTopicsResponse;
    type Refused = DeletableTopicResult;

    fn split(request: &mut Self::Request, _: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
        // v0-5 name topics in `topic_names`, v6 in `topics` (by name or id).
        let by_name = take_where(&mut request.topic_names, |t| guard_of(t).is_some())
            .into_iter()
            .map(|name| (name, Uuid::nil()));
        let by_state = take_where(&mut request.topics, |t| {
            t.name.as_ref().is_some_and(|n| guard_of(n).is_some())
        })
        .into_iter()
        .filter_map(|t| Some((t.name?, t.topic_id)));
        by_name
            .chain(by_state)
            .map(|(name, id)| {
                DeletableTopicResult::default()
                    .with_error_message(refused_text(&name))
                    .with_name(Some(name))
                    .with_topic_id(id)
                    .with_error_code(TOPIC_AUTHORIZATION_FAILED)
            })
            .collect()
    }
    fn is_empty(request: &Self::Request) -> bool {
        request.topics.is_empty() && request.topic_names.is_empty()
    }
    fn add(response: &mut Self::Response, refused: Vec<Self::Refused>) {
        response.responses.extend(refused);
    }
}
impl InternalOnly for DeleteTopics {
    fn name_topics(request: &mut Self::Request, name_of: NameOf) {
        for topic in &mut request.topics {
            if topic.name.is_none() {
                topic.name = name_of(&topic.topic_id).map(TopicName);
            }
        }
    }
}

pub struct CreateTopics;
impl GuardedApi for CreateTopics {
    const KEY: ApiKey = ApiKey::CreateTopics;
    type Request = CreateTopicsRequest;
    type Response = CreateTopicsResponse;
    type Refused = CreatableTopicResult;

    fn split(request: &mut Self::Request, _: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
        take_where(&mut request.topics, |t| guard_of(&t.name).is_some())
            .into_iter()
            .map(|topic| {
                CreatableTopicResult::default()
                    .with_error_message(refused_text(&topic.name))
                    .with_name(topic.name)
                    .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
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
impl InternalOnly for CreateTopics {}

/// Group offset APIs: topics with partitions in, topics with per-partition error codes
/// out.
macro_rules! offsets_guard {
    ($name:ident, $key:expr, $request:ty, $response:ty, $topic:ty, $partition:ty) => {
        pub struct $name;
        impl GuardedApi for $name {
            const KEY: ApiKey = $key;
            type Request = $request;
            type Response = $response;
            type Refused = $topic;

            fn split(request: &mut Self::Request, _: i16, guard_of: GuardOf) -> Vec<Self::Refused> {
                take_where(&mut request.topics, |t| guard_of(&t.name).is_some())
                    .into_iter()
                    .map(|topic| {
                        let partitions = topic
                            .partitions
                            .iter()
                            .map(|p| {
                                <$partition>::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(TOPIC_AUTHORIZATION_FAILED)
                            })
                            .collect();
                        <$topic>::default()
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
    };
}

offsets_guard!(
    OffsetCommit,
    ApiKey::OffsetCommit,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetCommitResponseTopic,
    OffsetCommitResponsePartition
);
impl InternalOnly for OffsetCommit {
    fn name_topics(request: &mut Self::Request, name_of: NameOf) {
        for topic in &mut request.topics {
            if topic.name.is_empty() {
                if let Some(name) = name_of(&topic.topic_id) {
                    topic.name = TopicName(name);
                }
            }
        }
    }
}

offsets_guard!(
    TxnOffsetCommit,
    ApiKey::TxnOffsetCommit,
    TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
    TxnOffsetCommitResponseTopic,
    TxnOffsetCommitResponsePartition
);
impl InternalOnly for TxnOffsetCommit {}

offsets_guard!(
    OffsetDelete,
    ApiKey::OffsetDelete,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetDeleteResponseTopic,
    OffsetDeleteResponsePartition
);
impl InternalOnly for OffsetDelete {}
