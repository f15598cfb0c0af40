//! The walk against the full decode: responses of every version, generated from a
//! seed, must give the same partitions, records and NodeEndpoints either way.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::fetch_scan::*;
use super::test_rng::Rng;

fn response(rng: &mut Rng, version: i16) -> FetchResponse {
    let topics = (0..rng.below(4))
        .map(|t| {
            let partitions = (0..rng.below(5))
                .map(|p| {
                    let mut data = PartitionData::default()
                        .with_partition_index(p as i32)
                        .with_high_watermark(rng.below(1000) as i64)
                        .with_records(match rng.below(3) {
                            0 => None,
                            n => Some(Bytes::from(vec![n as u8; rng.below(300) as usize])),
                        });
                    if version >= 4 && rng.below(2) == 0 {
                        data.aborted_transactions = Some(
                            (0..rng.below(3))
                                .map(|i| {
                                    AbortedTransaction::default()
                                        .with_producer_id(ProducerId(i as i64))
                                        .with_first_offset(7)
                                })
                                .collect(),
                        );
                    }
                    if version >= 12 && rng.below(2) == 0 {
                        data.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(2))
                            .with_leader_epoch(5);
                    }
                    if version >= 12 && rng.below(4) == 0 {
                        data.unknown_tagged_fields
                            .insert(9, Bytes::from_static(b"future"));
                    }
                    data
                })
                .collect();
            let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
            if version >= 13 {
                topic.topic_id = uuid::Uuid::from_u128(u128::from(rng.next()) << 3 | u128::from(t));
            } else {
                let name = format!("topic-{t}-{}", rng.below(100));
                topic.topic = TopicName(StrBytes::from_string(name));
            }
            topic
        })
        .collect();
    let mut response = FetchResponse::default()
        .with_throttle_time_ms(rng.below(10) as i32)
        .with_responses(topics);
    if version >= 7 {
        response.session_id = rng.below(5) as i32;
    }
    if version >= 16 && rng.below(2) == 0 {
        response.node_endpoints = vec![NodeEndpoint::default()
            .with_node_id(BrokerId(2))
            .with_host(StrBytes::from_static_str("broker-2"))
            .with_port(9092)];
    }
    response
}

type Seen = Vec<(String, i32, Option<Vec<u8>>)>;

fn key(topic: ScannedTopic) -> String {
    match topic {
        ScannedTopic::Name(name) => name.to_string(),
        ScannedTopic::Id(id) => uuid::Uuid::from_bytes(id).to_string(),
    }
}

fn decoded(response: &FetchResponse, version: i16) -> Seen {
    response
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
        .collect()
}

fn scanned(body: &[u8], version: i16) -> Result<(Seen, FetchLayout), ScanError> {
    let mut seen = Vec::new();
    let layout = scan_fetch_response(body, version, |topic, partition, records| {
        seen.push((key(topic), partition, records.map(<[u8]>::to_vec)));
    })?;
    Ok((seen, layout))
}

#[test]
fn the_walk_finds_what_the_decode_finds_in_every_version() {
    for version in 4..=18i16 {
        for seed in 1..200u64 {
            let mut rng = Rng(seed * 7919 + version as u64);
            let response = response(&mut rng, version);
            let mut buf = BytesMut::new();
            response.encode(&mut buf, version).unwrap();
            let body = buf.freeze();
            let (seen, layout) =
                scanned(&body, version).unwrap_or_else(|e| panic!("v{version} seed {seed}: {e}"));
            let back = FetchResponse::decode(&mut body.clone(), version).unwrap();
            assert_eq!(seen, decoded(&back, version), "v{version} seed {seed}");
            assert_eq!(
                layout.node_endpoints,
                !back.node_endpoints.is_empty(),
                "v{version} seed {seed}"
            );
        }
    }
}

#[test]
fn every_truncation_is_refused() {
    let mut rng = Rng(42);
    for version in [11i16, 12, 16] {
        let mut buf = BytesMut::new();
        let mut response = response(&mut rng, version);
        response.responses.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    PartitionData::default().with_records(Some(Bytes::from_static(b"records")))
                ]),
        );
        response.encode(&mut buf, version).unwrap();
        // The body ends with the last partition's records (v4-11) or the top-level
        // tagged fields (v12+): every shorter body lacks a field.
        for cut in 0..buf.len() {
            assert_eq!(
                scanned(&buf[..cut], version).unwrap_err(),
                ScanError::Truncated,
                "v{version} cut {cut}"
            );
        }
        assert!(scanned(&buf, version).is_ok());
    }
}

#[test]
fn counts_beyond_the_body_and_unknown_versions_are_refused() {
    // v12: throttle, error, session, then a compact array claiming 2^28 topics.
    let body = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01];
    assert_eq!(scanned(&body, 12).unwrap_err(), ScanError::Truncated);
    // v11: an int32 array count of -2.
    let body = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xfe];
    assert_eq!(scanned(&body, 11).unwrap_err(), ScanError::Malformed);
    assert_eq!(scanned(&[], 3).unwrap_err(), ScanError::Version(3));
    assert_eq!(scanned(&[], 19).unwrap_err(), ScanError::Version(19));
}
