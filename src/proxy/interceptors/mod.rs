//! Interceptors decode only the API keys they act on; every other frame is forwarded
//! byte for byte. `on_request` decides what happens to a request, and what it leaves in
//! the in-flight FIFO decides what `on_response` does with its answer.

pub mod addresses;
pub mod api_versions;
pub mod fetch_fillers;
pub mod fleet_group_guard;
pub mod internal_guard;
pub mod produce_fence;
pub mod produce_forward;
pub mod produce_guard;
pub mod txn_forward;
pub mod write_guard;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, MetadataRequest};

use crate::kafka::codec::{decode_request, decode_response, encode_response, peek_response_error};
use crate::kafka::frame::RequestFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use internal_guard::{CreateTopics, DeleteTopics, OffsetCommit, OffsetDelete, TxnOffsetCommit};
use write_guard::Merge;

/// What to do with the answer to a forwarded request.
pub enum OnResponse {
    Forward,
    ApiVersions,
    /// `all_topics`: the request asked for every topic (v0: an empty list; v1+: none).
    Metadata {
        all_topics: bool,
    },
    FindCoordinator,
    DescribeCluster,
    Fetch,
    /// Fetch touching a mirror topic: hide filler batches (and rewrite NodeEndpoints).
    FetchFillers,
    Produce,
    /// Merge refusals of read-only entries into the upstream answer.
    Merge(Box<dyn Merge>),
}

/// What the response handler needs to know of the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct RequestMeta {
    pub correlation_id: i32,
    pub api_key: ApiKey,
    pub api_version: i16,
}

impl RequestMeta {
    pub fn of(frame: &RequestFrame) -> Self {
        Self {
            correlation_id: frame.correlation_id,
            api_key: frame.api_key,
            api_version: frame.api_version,
        }
    }
}

/// The rest of an answer, computed elsewhere.
pub type Later = crate::registry::forward::Boxed<'static, Result<Box<dyn Merge>, ConnError>>;

pub enum RequestAction {
    /// Send `bytes` upstream; `on_response` is `None` when no response will come (acks=0).
    Forward {
        bytes: Bytes,
        on_response: Option<OnResponse>,
    },
    /// Answer the client with this frame, in order, without going upstream.
    Respond(Bytes),
    /// Part of the answer comes from elsewhere (Produce forwarded to a link's source):
    /// `upstream` (if any) is sent now, and once `later` resolves, in request order, its
    /// merge answers the client, with the upstream answer merged in.
    Await {
        upstream: Option<Bytes>,
        later: Later,
    },
    /// Close the connection; the reason says what the client did.
    Close(String),
    /// Carry out this action, then read no more requests: the connection closes once the
    /// answers in flight (this one's included) are written.
    Last(Box<RequestAction>),
}

fn forward(frame: RequestFrame, on_response: OnResponse) -> RequestAction {
    RequestAction::Forward {
        bytes: frame.bytes,
        on_response: Some(on_response),
    }
}

fn guarded<A: write_guard::GuardedApi>(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    // These APIs name topics by name only.
    if !snapshot.has_read_only_topics() && !snapshot.may_name_internal(&frame.bytes) {
        return Ok(forward(frame, OnResponse::Forward));
    }
    Ok(match write_guard::guard::<A>(&frame, &snapshot)? {
        Some(action) => action,
        None => forward(frame, OnResponse::Forward),
    })
}

pub async fn on_request(
    shared: &Arc<Shared>,
    frame: RequestFrame,
) -> Result<RequestAction, ConnError> {
    let (api, version) = (frame.api_key, frame.api_version);
    if !api_versions::is_offered(api, version) {
        if api == ApiKey::ApiVersions {
            let answer = api_versions::unsupported_version(frame.correlation_id)
                .map_err(ConnError::internal)?;
            return Ok(RequestAction::Respond(answer));
        }
        return Ok(RequestAction::Close(format!(
            "{api:?} v{version} was not offered by the proxy"
        )));
    }
    Ok(match api {
        ApiKey::ApiVersions => forward(frame, OnResponse::ApiVersions),
        ApiKey::Metadata => {
            let request: MetadataRequest =
                decode_request(&frame).map_err(ConnError::client_codec)?;
            let all_topics = match request.topics {
                None => true,
                Some(topics) => topics.is_empty() && frame.api_version == 0,
            };
            forward(frame, OnResponse::Metadata { all_topics })
        }
        ApiKey::FindCoordinator => forward(frame, OnResponse::FindCoordinator),
        ApiKey::DescribeCluster => forward(frame, OnResponse::DescribeCluster),
        ApiKey::Fetch => return fetch_fillers::on_request(shared, frame).await,
        ApiKey::Produce => return produce_guard::on_request(shared, frame).await,
        ApiKey::DeleteRecords => return guarded::<write_guard::DeleteRecords>(shared, frame),
        ApiKey::CreatePartitions => return guarded::<write_guard::CreatePartitions>(shared, frame),
        ApiKey::AlterConfigs => return guarded::<write_guard::AlterConfigs>(shared, frame),
        ApiKey::IncrementalAlterConfigs => {
            return guarded::<write_guard::IncrementalAlterConfigs>(shared, frame)
        }
        ApiKey::AddPartitionsToTxn => {
            let snapshot = shared.registry.load();
            if snapshot.forwards_any() || snapshot.forwards_transactions() {
                return txn_forward::add_partitions(shared, frame).await;
            }
            return guarded::<write_guard::AddPartitionsToTxn>(shared, frame);
        }
        ApiKey::EndTxn if shared.registry.load().forwards_transactions() => {
            return txn_forward::end_txn(shared, frame).await
        }
        ApiKey::AddOffsetsToTxn if shared.registry.load().forwards_transactions() => {
            return txn_forward::add_offsets(shared, frame).await
        }
        ApiKey::DeleteTopics => {
            return internal_guard::on_request::<DeleteTopics>(shared, frame).await
        }
        ApiKey::CreateTopics => {
            return internal_guard::on_request::<CreateTopics>(shared, frame).await
        }
        ApiKey::OffsetCommit => {
            return internal_guard::on_request::<OffsetCommit>(shared, frame).await
        }
        ApiKey::TxnOffsetCommit => {
            return internal_guard::on_request::<TxnOffsetCommit>(shared, frame).await
        }
        ApiKey::OffsetDelete => {
            return internal_guard::on_request::<OffsetDelete>(shared, frame).await
        }
        ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::DeleteGroups => return fleet_group_guard::on_request(shared, frame),
        _ => forward(frame, OnResponse::Forward),
    })
}

pub fn on_response(
    shared: &Arc<Shared>,
    meta: RequestMeta,
    on_response: OnResponse,
    frame: Bytes,
) -> Result<Bytes, ConnError> {
    match on_response {
        OnResponse::Forward => Ok(frame),
        OnResponse::ApiVersions => {
            let snapshot = shared.registry.load();
            let forwarding = snapshot.forwards_any();
            api_versions_response(frame, &meta, forwarding)
        }
        OnResponse::Metadata { all_topics } => {
            addresses::metadata(shared, frame, &meta, all_topics)
        }
        OnResponse::FindCoordinator => addresses::find_coordinator(shared, frame, &meta),
        OnResponse::DescribeCluster => addresses::describe_cluster(shared, frame, &meta),
        OnResponse::Fetch => addresses::fetch(shared, frame, &meta),
        OnResponse::FetchFillers => fetch_fillers::on_response(shared, frame, &meta),
        OnResponse::Produce => addresses::produce(shared, frame, &meta),
        OnResponse::Merge(merge) => merge.merge(shared, Some(frame), &meta),
    }
}

fn api_versions_response(
    frame: Bytes,
    meta: &RequestMeta,
    forwarding: bool,
) -> Result<Bytes, ConnError> {
    // An error answer (UNSUPPORTED_VERSION) is v0-formatted whatever was asked:
    // forward it untouched so the client retries with a version it lists.
    if peek_response_error(&frame, ApiKey::ApiVersions, meta.api_version) != Some(0) {
        return Ok(frame);
    }
    let mut response: ApiVersionsResponse =
        decode_response(&frame, ApiKey::ApiVersions, meta.api_version)
            .map_err(ConnError::upstream)?;
    api_versions::negotiate(&mut response);
    if forwarding {
        api_versions::cap_transaction_version(&mut response);
    }
    encode_response(
        meta.correlation_id,
        ApiKey::ApiVersions,
        meta.api_version,
        &response,
    )
    .map_err(ConnError::internal)
}
