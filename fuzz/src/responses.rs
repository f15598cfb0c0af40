//! Target `responses`: every response the proxy decodes. Input: one byte picks the
//! API, one its version (those the proxy offers), the rest is the frame after its
//! length prefix (response header and body).
//!
//! The interceptors' rewrite functions take a running proxy (`Shared`), so their pure
//! parts run here on the decoded response: broker addresses pointed at the proxy with
//! the snapshot's routing (as `Shared::advertise` does), what the destination view
//! learns from Metadata, ApiVersions negotiation, filler hiding in Fetch, refusals
//! merged into the guarded APIs' answers.
//!
//! Properties: nothing panics; a decoded and rewritten response encodes, and decodes
//! back to exactly the rewritten value; negotiated ApiVersions ranges lie inside what
//! the proxy offers; the Fetch walk (`kafka::fetch_scan`) finds in a decoded response,
//! encoded again, exactly the partitions, records and NodeEndpoints the decoder found;
//! and its NodeEndpoints rewritten in the tail alone (`kafka::fetch_tail`) decode to
//! the same answer as rewriting them in the decoded response.

use std::fmt::Debug;

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FetchResponse, FindCoordinatorResponse,
    MetadataResponse, ProduceResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use mirrorgate::kafka::codec::{
    decode_response, encode_response, peek_response_error, response_body,
};
use mirrorgate::kafka::fetch_scan::{scan_fetch_response, ScannedTopic};
use mirrorgate::kafka::fetch_tail::FetchTail;
use mirrorgate::proxy::destination::Destination;
use mirrorgate::proxy::interceptors::api_versions;
use mirrorgate::proxy::interceptors::fetch_fillers::hide_fillers;
use mirrorgate::proxy::interceptors::produce_guard::Produce;
use mirrorgate::proxy::interceptors::write_guard;

use crate::seeds::{self, NamingMirrors};
use crate::{frame, pick_version, snapshot};

/// The responses the proxy decodes, in the order the selector byte picks them.
pub const APIS: &[ApiKey] = &[
    ApiKey::Metadata,
    ApiKey::FindCoordinator,
    ApiKey::DescribeCluster,
    ApiKey::Fetch,
    ApiKey::Produce,
    ApiKey::ApiVersions,
    ApiKey::DeleteRecords,
    ApiKey::CreatePartitions,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AddPartitionsToTxn,
];

const CORRELATION_ID: i32 = 7;
/// DescribeCluster endpoint type of brokers.
const BROKER_ENDPOINTS: i8 = 1;

pub fn check(data: &[u8]) {
    let [api, version, rest @ ..] = data else {
        return;
    };
    let api = APIS[usize::from(*api) % APIS.len()];
    let (min, max) = crate::requests::versions(api);
    let version = pick_version(*version, min, max);
    let frame = frame(rest);
    match api {
        ApiKey::Metadata => rewrite::<MetadataResponse>(&frame, api, version, |r| {
            metadata(r).map(|()| Exact::Value)
        }),
        ApiKey::FindCoordinator => rewrite::<FindCoordinatorResponse>(&frame, api, version, |r| {
            find_coordinator(r, version).map(|()| Exact::Value)
        }),
        ApiKey::DescribeCluster => rewrite::<DescribeClusterResponse>(&frame, api, version, |r| {
            describe_cluster(r).map(|()| Exact::Value)
        }),
        ApiKey::Fetch => {
            walk_agrees(&frame, version);
            rewrite::<FetchResponse>(&frame, api, version, |r| fetch(r).map(|()| Exact::Value))
        }
        ApiKey::Produce => rewrite::<ProduceResponse>(&frame, api, version, |r| {
            merge::<Produce>(r, version)?;
            for node in &mut r.node_endpoints {
                point_at_proxy(node.node_id.0, &mut node.host, &mut node.port)?;
            }
            Some(Exact::Bytes)
        }),
        ApiKey::ApiVersions => api_versions_response(&frame, version),
        ApiKey::DeleteRecords => guarded::<write_guard::DeleteRecords>(&frame, version),
        ApiKey::CreatePartitions => guarded::<write_guard::CreatePartitions>(&frame, version),
        ApiKey::AlterConfigs => guarded::<write_guard::AlterConfigs>(&frame, version),
        ApiKey::IncrementalAlterConfigs => {
            guarded::<write_guard::IncrementalAlterConfigs>(&frame, version)
        }
        ApiKey::AddPartitionsToTxn => guarded::<write_guard::AddPartitionsToTxn>(&frame, version),
        _ => unreachable!(),
    }
}

/// Decodes, rewrites (`None`: the proxy refuses the response), encodes, decodes again.
/// Merged refusals carry fields the version does not encode (Produce keeps both the
/// topic name and id): then the property is on the bytes, encoding again changes
/// nothing; otherwise the decoded value is the rewritten one exactly.
fn rewrite<T: Decodable + Encodable + PartialEq + Debug>(
    frame: &Bytes,
    api: ApiKey,
    version: i16,
    edit: impl FnOnce(&mut T) -> Option<Exact>,
) {
    let Ok(mut response) = decode_response::<T>(frame, api, version) else {
        return;
    };
    let Some(exact) = edit(&mut response) else {
        return;
    };
    let bytes = encode_response(CORRELATION_ID, api, version, &response)
        .expect("a decoded and rewritten response encodes");
    let again: T = decode_response(&bytes, api, version).expect("a re-encoded response decodes");
    match exact {
        Exact::Value => assert_eq!(again, response),
        Exact::Bytes => {
            let twice = encode_response(CORRELATION_ID, api, version, &again).unwrap();
            assert_eq!(twice, bytes, "encoding a decoded response changes it");
        }
    }
}

/// What [`rewrite`] compares.
enum Exact {
    Value,
    Bytes,
}

/// `Shared::advertise` without listeners: the address clients get for `node_id`.
fn point_at_proxy(node_id: i32, host: &mut StrBytes, port: &mut i32) -> Option<()> {
    let (proxy_host, proxy_port, _listen) = snapshot().routing.address_of(node_id)?;
    *host = StrBytes::from_string(proxy_host);
    *port = proxy_port;
    Some(())
}

fn metadata(response: &mut MetadataResponse) -> Option<()> {
    let destination = Destination::default();
    for broker in &mut response.brokers {
        destination.record_broker(broker.node_id.0, broker.host.as_str(), broker.port);
        point_at_proxy(broker.node_id.0, &mut broker.host, &mut broker.port)?;
    }
    destination.learn_topics(response, &|t| t.starts_with("_mirrorgate-"));
    destination.apply_full_view(response, &|t| t.starts_with("_mirrorgate-"));
    for topic in &response.topics {
        if let (Some(name), false) = (&topic.name, topic.topic_id.is_nil()) {
            // A later duplicate id may have replaced the name: only presence is certain.
            assert!(
                destination.topic_name(&topic.topic_id).is_some(),
                "{name:?}"
            );
        }
    }
    Some(())
}

fn find_coordinator(response: &mut FindCoordinatorResponse, version: i16) -> Option<()> {
    if version < 4 {
        if response.error_code == 0 && response.node_id.0 >= 0 {
            point_at_proxy(response.node_id.0, &mut response.host, &mut response.port)?;
        }
    } else {
        for c in &mut response.coordinators {
            if c.error_code == 0 && c.node_id.0 >= 0 {
                point_at_proxy(c.node_id.0, &mut c.host, &mut c.port)?;
            }
        }
    }
    Some(())
}

fn describe_cluster(response: &mut DescribeClusterResponse) -> Option<()> {
    if response.endpoint_type == BROKER_ENDPOINTS {
        for broker in &mut response.brokers {
            point_at_proxy(broker.broker_id.0, &mut broker.host, &mut broker.port)?;
        }
    }
    Some(())
}

/// Every topic treated as a mirror, so every partition's records go through
/// `hide_fillers` (the `fillers` target checks what it does to them).
/// The walk reads any body without panicking; on the canonical encoding of what the
/// decoder read, it finds the same partitions, records and NodeEndpoints.
fn walk_agrees(frame: &Bytes, version: i16) {
    if let Ok(body) = response_body(frame, ApiKey::Fetch, version) {
        if let Ok(layout) = scan_fetch_response(&body, version, |_, _, _| {}) {
            let _ = FetchTail::decode(&body[layout.tail_at..], version);
        }
    }
    let Ok(decoded) = decode_response::<FetchResponse>(frame, ApiKey::Fetch, version) else {
        return;
    };
    let mut body = bytes::BytesMut::new();
    if decoded.encode(&mut body, version).is_err() {
        return;
    }
    let mut walked = Vec::new();
    let layout = scan_fetch_response(&body, version, |topic, partition, records| {
        let topic = match topic {
            ScannedTopic::Name(name) => name.to_string(),
            ScannedTopic::Id(id) => uuid::Uuid::from_bytes(id).to_string(),
        };
        walked.push((topic, partition, records.map(<[u8]>::to_vec)));
    })
    .expect("the walk reads what the decoder wrote");
    let expected: Vec<_> = decoded
        .responses
        .iter()
        .flat_map(|t| {
            let topic = if version >= 13 {
                t.topic_id.to_string()
            } else {
                t.topic.as_str().to_string()
            };
            t.partitions.iter().map(move |p| {
                let records = p.records.as_ref().map(|r| r.to_vec());
                (topic.clone(), p.partition_index, records)
            })
        })
        .collect();
    assert_eq!(walked, expected);
    assert_eq!(layout.node_endpoints, !decoded.node_endpoints.is_empty());
    if version >= 12 {
        tail_rewrite_agrees(&decoded, &body, layout.tail_at, version);
    }
}

/// The NodeEndpoints rewritten in the tail alone, after the body's own bytes, decode
/// to the answer rewritten whole.
fn tail_rewrite_agrees(decoded: &FetchResponse, body: &[u8], tail_at: usize, version: i16) {
    let mut tail =
        FetchTail::decode(&body[tail_at..], version).expect("the tail the encoder wrote reads");
    assert_eq!(tail.node_endpoints, decoded.node_endpoints);
    let mut whole = decoded.clone();
    for node in &mut tail.node_endpoints {
        if point_at_proxy(node.node_id.0, &mut node.host, &mut node.port).is_none() {
            return;
        }
    }
    for node in &mut whole.node_endpoints {
        point_at_proxy(node.node_id.0, &mut node.host, &mut node.port).expect("as for the tail");
    }
    let mut spliced = body[..tail_at].to_vec();
    spliced.extend_from_slice(&tail.encode(version).expect("the tail encodes"));
    let back = FetchResponse::decode(&mut Bytes::from(spliced), version)
        .expect("the spliced answer decodes");
    assert_eq!(back, whole);
}

fn fetch(response: &mut FetchResponse) -> Option<()> {
    for topic in &mut response.responses {
        for partition in &mut topic.partitions {
            if let Some(hidden) = partition.records.as_ref().and_then(hide_fillers) {
                partition.records = Some(hidden);
            }
        }
    }
    for node in &mut response.node_endpoints {
        point_at_proxy(node.node_id.0, &mut node.host, &mut node.port)?;
    }
    Some(())
}

fn api_versions_response(frame: &Bytes, version: i16) {
    // As `api_versions::Negotiate`: only a success answer is rewritten.
    if peek_response_error(frame, ApiKey::ApiVersions, version) != Some(0) {
        return;
    }
    rewrite::<ApiVersionsResponse>(frame, ApiKey::ApiVersions, version, |response| {
        api_versions::negotiate(response);
        for entry in &response.api_keys {
            let key = ApiKey::try_from(entry.api_key).unwrap();
            let (min, max) = api_versions::proxy_range(key).unwrap();
            assert!(entry.min_version <= entry.max_version && entry.max_version <= max);
            assert!(key == ApiKey::Produce || entry.min_version >= min);
        }
        Some(Exact::Value)
    });
}

/// Refusals for a request naming a mirror, merged as `write_guard::Refusals` does.
fn merge<A: NamingMirrors>(response: &mut A::Response, version: i16) -> Option<()> {
    let mut request = seeds::request_naming_mirrors::<A>();
    let snapshot = snapshot();
    let refused = A::split(&mut request, version, &|t| snapshot.guard_of(t));
    assert!(!refused.is_empty());
    A::add(response, refused);
    Some(())
}

fn guarded<A: NamingMirrors>(frame: &Bytes, version: i16)
where
    A::Response: PartialEq + Debug,
{
    rewrite::<A::Response>(frame, A::KEY, version, |r| {
        merge::<A>(r, version).map(|()| Exact::Bytes)
    });
}
