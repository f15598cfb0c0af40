//! Every response field that carries a broker address is rewritten to point at the
//! proxy: Metadata brokers, FindCoordinator (v0-3 top level, v4+ per key),
//! DescribeCluster brokers, and the KIP-951 NodeEndpoints of Produce and Fetch.
//! Metadata also hides mirrorgate's own topics.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::NodeEndpoint;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse, MetadataResponse,
    ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::write_guard::TOPIC_AUTHORIZATION_FAILED;
use super::RequestMeta;
use crate::kafka::codec::{decode_response, encode_response, response_body};
use crate::kafka::fetch_scan::scan_fetch_response;
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::Snapshot;

/// DescribeCluster endpoint type of brokers (2 = controllers, which the proxy does not front).
const BROKER_ENDPOINTS: i8 = 1;

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

fn decode<T: kafka_protocol::protocol::Decodable>(
    frame: &Bytes,
    meta: &RequestMeta,
) -> Result<T, ConnError> {
    decode_response(frame, meta.api_key, meta.api_version).map_err(ConnError::upstream)
}

fn encode<T: kafka_protocol::protocol::Encodable>(
    body: &T,
    meta: &RequestMeta,
) -> Result<Bytes, ConnError> {
    encode_response(meta.correlation_id, meta.api_key, meta.api_version, body)
        .map_err(ConnError::internal)
}

pub fn metadata(
    shared: &Arc<Shared>,
    frame: Bytes,
    meta: &RequestMeta,
    all_topics: bool,
) -> Result<Bytes, ConnError> {
    let mut response: MetadataResponse = decode(&frame, meta)?;
    for broker in &mut response.brokers {
        point_at_proxy(shared, broker.node_id.0, &mut broker.host, &mut broker.port)?;
    }
    let snapshot = shared.registry.load();
    shared
        .destination
        .learn_topics(&response, &|topic| snapshot.is_internal(topic));
    hide_internal_topics(&snapshot, &mut response, all_topics);
    encode(&response, meta)
}

/// mirrorgate's own topics are hidden as a broker hides a topic the client may not
/// describe: left out of a listing of every topic (clients such as KafkaJS fail a
/// listing with any topic error), and TOPIC_AUTHORIZATION_FAILED, with no id and no
/// partitions, when asked for by name.
fn hide_internal_topics(snapshot: &Snapshot, response: &mut MetadataResponse, all_topics: bool) {
    let internal = |topic: &MetadataResponseTopic| {
        topic
            .name
            .as_ref()
            .is_some_and(|n| snapshot.is_internal(n.as_str()))
    };
    if all_topics {
        response.topics.retain(|t| !internal(t));
        return;
    }
    for topic in &mut response.topics {
        if internal(topic) {
            topic.error_code = TOPIC_AUTHORIZATION_FAILED;
            topic.topic_id = uuid::Uuid::nil();
            topic.partitions.clear();
            topic.topic_authorized_operations = i32::MIN;
        }
    }
}

pub fn find_coordinator(
    shared: &Arc<Shared>,
    frame: Bytes,
    meta: &RequestMeta,
) -> Result<Bytes, ConnError> {
    let mut response: FindCoordinatorResponse = decode(&frame, meta)?;
    if meta.api_version < 4 {
        if response.error_code == 0 && response.node_id.0 >= 0 {
            point_at_proxy(
                shared,
                response.node_id.0,
                &mut response.host,
                &mut response.port,
            )?;
        }
    } else {
        for c in &mut response.coordinators {
            // Entries with an error carry no usable address.
            if c.error_code == 0 && c.node_id.0 >= 0 {
                point_at_proxy(shared, c.node_id.0, &mut c.host, &mut c.port)?;
            }
        }
    }
    encode(&response, meta)
}

pub fn describe_cluster(
    shared: &Arc<Shared>,
    frame: Bytes,
    meta: &RequestMeta,
) -> Result<Bytes, ConnError> {
    let mut response: DescribeClusterResponse = decode(&frame, meta)?;
    if response.endpoint_type == BROKER_ENDPOINTS {
        for broker in &mut response.brokers {
            point_at_proxy(
                shared,
                broker.broker_id.0,
                &mut broker.host,
                &mut broker.port,
            )?;
        }
    }
    encode(&response, meta)
}

/// Fetch v16+: NodeEndpoints appear only when a partition's leader moved; otherwise
/// the original frame goes back untouched, found so by a walk without decoding.
pub fn fetch(shared: &Arc<Shared>, frame: Bytes, meta: &RequestMeta) -> Result<Bytes, ConnError> {
    let walked = response_body(&frame, meta.api_key, meta.api_version)
        .ok()
        .and_then(|body| scan_fetch_response(&body, meta.api_version, |_, _, _| {}).ok());
    if walked.is_some_and(|layout| !layout.node_endpoints) {
        return Ok(frame);
    }
    let mut response: FetchResponse = decode(&frame, meta)?;
    if response.node_endpoints.is_empty() {
        return Ok(frame);
    }
    point_endpoints_at_proxy(shared, &mut response.node_endpoints)?;
    encode(&response, meta)
}

/// Fetch v16+ NodeEndpoints, pointed at the proxy.
pub fn point_endpoints_at_proxy(
    shared: &Arc<Shared>,
    nodes: &mut [NodeEndpoint],
) -> Result<(), ConnError> {
    for node in nodes {
        point_at_proxy(shared, node.node_id.0, &mut node.host, &mut node.port)?;
    }
    Ok(())
}

/// Produce v10+ NodeEndpoints; true when something was rewritten.
pub fn produce_endpoints(
    shared: &Arc<Shared>,
    response: &mut ProduceResponse,
) -> Result<bool, ConnError> {
    for node in &mut response.node_endpoints {
        point_at_proxy(shared, node.node_id.0, &mut node.host, &mut node.port)?;
    }
    Ok(!response.node_endpoints.is_empty())
}

pub fn produce(shared: &Arc<Shared>, frame: Bytes, meta: &RequestMeta) -> Result<Bytes, ConnError> {
    let mut response: ProduceResponse = decode(&frame, meta)?;
    if produce_endpoints(shared, &mut response)? {
        encode(&response, meta)
    } else {
        Ok(frame)
    }
}

/// Which response APIs carry addresses, for the dispatcher.
pub fn carries_addresses(api: ApiKey, version: i16) -> bool {
    match api {
        ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster => true,
        ApiKey::Produce => version >= 10,
        ApiKey::Fetch => version >= 16,
        _ => false,
    }
}
