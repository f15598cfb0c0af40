//! Every response field that carries a broker address is rewritten to point at the
//! proxy: Metadata brokers, FindCoordinator (v0-3 top level, v4+ per key),
//! DescribeCluster brokers, and the KIP-951 NodeEndpoints of Produce and Fetch, each a
//! step of the answer's chain. Metadata answers also go through `internal_guard`'s step.

use std::sync::Arc;

use kafka_protocol::messages::{
    fetch_response, ApiKey, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
    MetadataRequest, MetadataResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::chain::{Chain, Look, Step};
use super::internal_guard::MetadataTopics;
use super::{forward, Interceptor, OnResponse, RequestAction, RequestMeta};
use crate::kafka::codec::decode_request;
use crate::kafka::fetch_tail::{replace_end, FetchTail};
use crate::kafka::frame::RequestFrame;
use crate::kafka::frame_writer::OutFrame;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::forward::Boxed;

/// DescribeCluster endpoint type of brokers (2 = controllers, which the proxy does not front).
const BROKER_ENDPOINTS: i8 = 1;
const NAME: &str = "addresses";

/// The requests whose answers are about brokers; Produce and Fetch answers get the
/// steps below from their own interceptors.
pub const INTERCEPTOR: Interceptor = Interceptor {
    name: NAME,
    api_keys: &[
        ApiKey::Metadata,
        ApiKey::FindCoordinator,
        ApiKey::DescribeCluster,
    ],
    on_request,
};

fn on_request(_: &Arc<Shared>, frame: RequestFrame) -> Boxed<'_, Result<RequestAction, ConnError>> {
    Box::pin(std::future::ready(decide(frame)))
}

fn decide(frame: RequestFrame) -> Result<RequestAction, ConnError> {
    let steps = match frame.api_key {
        ApiKey::Metadata => {
            let request: MetadataRequest =
                decode_request(&frame).map_err(ConnError::client_codec)?;
            let all_topics = match request.topics {
                None => true,
                Some(topics) => topics.is_empty() && frame.api_version == 0,
            };
            Chain::boxed((MetadataBrokers, MetadataTopics { all_topics }))
        }
        ApiKey::FindCoordinator => Chain::boxed((Coordinators,)),
        ApiKey::DescribeCluster => Chain::boxed((ClusterBrokers,)),
        _ => return Ok(forward(frame, OnResponse::Forward)),
    };
    Ok(forward(frame, OnResponse::Rewrite(steps)))
}

fn point_at_proxy(
    shared: &Arc<Shared>,
    node_id: i32,
    host: &mut StrBytes,
    port: &mut i32,
) -> Result<(), ConnError> {
    let (proxy_host, proxy_port) = shared
        .advertise(node_id, host.as_str(), *port)
        .map_err(|e| ConnError::internal(format!("{e:#}")))?;
    *host = StrBytes::from_string(proxy_host);
    *port = proxy_port;
    Ok(())
}

/// Metadata's brokers.
pub struct MetadataBrokers;

impl Step<MetadataResponse> for MetadataBrokers {
    const NAME: &'static str = NAME;

    fn apply(
        self,
        shared: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut MetadataResponse,
    ) -> Result<bool, ConnError> {
        for broker in &mut response.brokers {
            point_at_proxy(shared, broker.node_id.0, &mut broker.host, &mut broker.port)?;
        }
        Ok(!response.brokers.is_empty())
    }
}

/// FindCoordinator's coordinators (v0-3 top level, v4+ per key).
pub struct Coordinators;

impl Step<FindCoordinatorResponse> for Coordinators {
    const NAME: &'static str = NAME;

    fn apply(
        self,
        shared: &Arc<Shared>,
        meta: &RequestMeta,
        response: &mut FindCoordinatorResponse,
    ) -> Result<bool, ConnError> {
        let mut changed = false;
        if meta.api_version < 4 {
            if response.error_code == 0 && response.node_id.0 >= 0 {
                point_at_proxy(
                    shared,
                    response.node_id.0,
                    &mut response.host,
                    &mut response.port,
                )?;
                changed = true;
            }
        } else {
            for c in &mut response.coordinators {
                // Entries with an error carry no usable address.
                if c.error_code == 0 && c.node_id.0 >= 0 {
                    point_at_proxy(shared, c.node_id.0, &mut c.host, &mut c.port)?;
                    changed = true;
                }
            }
        }
        Ok(changed)
    }
}

/// DescribeCluster's brokers.
pub struct ClusterBrokers;

impl Step<DescribeClusterResponse> for ClusterBrokers {
    const NAME: &'static str = NAME;

    fn apply(
        self,
        shared: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut DescribeClusterResponse,
    ) -> Result<bool, ConnError> {
        if response.endpoint_type != BROKER_ENDPOINTS {
            return Ok(false);
        }
        for broker in &mut response.brokers {
            point_at_proxy(
                shared,
                broker.broker_id.0,
                &mut broker.host,
                &mut broker.port,
            )?;
        }
        Ok(!response.brokers.is_empty())
    }
}

/// First Fetch version whose answer may carry NodeEndpoints (KIP-951).
pub const FETCH_NODE_ENDPOINTS_SINCE: i16 = 16;
/// First Produce version whose answer may carry NodeEndpoints (KIP-951).
pub const PRODUCE_NODE_ENDPOINTS_SINCE: i16 = 10;

/// A Fetch answer's NodeEndpoints (v16+). They appear only when a partition's leader
/// moved, which a walk over the answer tells without decoding it. They are its last
/// field, so only its tail is rewritten; the records before go back untouched.
pub struct FetchEndpoints;

impl Step<FetchResponse> for FetchEndpoints {
    const NAME: &'static str = NAME;

    fn wants(&self, look: &Look<'_>) -> bool {
        look.meta.api_version >= FETCH_NODE_ENDPOINTS_SINCE
            && look
                .fetch_layout()
                .is_none_or(|layout| layout.node_endpoints)
    }

    fn splice(&self, look: &Look<'_>) -> Option<Result<OutFrame, ConnError>> {
        let layout = look.fetch_layout()?;
        let body = look.body()?;
        let version = look.meta.api_version;
        let at = look.frame.len() - body.len() + layout.tail_at;
        // A tail that does not read goes to the full decode, which says why.
        let mut tail = FetchTail::decode(look.frame.get(at..)?, version).ok()?;
        let mut spliced = || {
            point_fetch_endpoints(look.shared, &mut tail.node_endpoints)?;
            let encoded = tail.encode(version).map_err(ConnError::internal)?;
            replace_end(look.frame, at, encoded).map_err(ConnError::internal)
        };
        Some(spliced())
    }

    fn apply(
        self,
        shared: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut FetchResponse,
    ) -> Result<bool, ConnError> {
        point_fetch_endpoints(shared, &mut response.node_endpoints)?;
        Ok(!response.node_endpoints.is_empty())
    }
}

/// A Fetch answer's NodeEndpoints pointed at the proxy, whether the answer was decoded
/// whole or only its tail.
fn point_fetch_endpoints(
    shared: &Arc<Shared>,
    nodes: &mut [fetch_response::NodeEndpoint],
) -> Result<(), ConnError> {
    for node in nodes {
        point_at_proxy(shared, node.node_id.0, &mut node.host, &mut node.port)?;
    }
    Ok(())
}

/// A Produce answer's NodeEndpoints (v10+).
pub struct ProduceEndpoints;

impl Step<ProduceResponse> for ProduceEndpoints {
    const NAME: &'static str = NAME;

    fn wants(&self, look: &Look<'_>) -> bool {
        look.meta.api_version >= PRODUCE_NODE_ENDPOINTS_SINCE
    }

    fn apply(
        self,
        shared: &Arc<Shared>,
        _: &RequestMeta,
        response: &mut ProduceResponse,
    ) -> Result<bool, ConnError> {
        for node in &mut response.node_endpoints {
            point_at_proxy(shared, node.node_id.0, &mut node.host, &mut node.port)?;
        }
        Ok(!response.node_endpoints.is_empty())
    }
}
