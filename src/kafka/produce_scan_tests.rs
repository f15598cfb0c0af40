//! The walk against the full decode: requests of every version, generated from a seed,
//! must name the same topics either way, and no cut-short request may pass the walk.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::fetch_scan::ScannedTopic;
use super::produce_scan::scan_produce_topics;
use super::test_rng::Rng;
use super::wire_scan::ScanError;

fn request(rng: &mut Rng) -> ProduceRequest {
    let topics = (0..rng.below(4))
        .map(|t| {
            let name = match rng.below(3) {
                0 => format!("topic-{t}"),
                1 => "_mirrorgate-catalog".to_string(),
                _ => format!("tôpic-ünïcode-{}", rng.below(1000)),
            };
            let partitions = (0..rng.below(4))
                .map(|p| {
                    let records = match rng.below(3) {
                        0 => None,
                        _ => Some(Bytes::from(vec![
                            rng.below(256) as u8;
                            rng.below(300) as usize
                        ])),
                    };
                    PartitionProduceData::default()
                        .with_index(p as i32)
                        .with_records(records)
                })
                .collect();
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&rng.next().to_be_bytes());
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_topic_id(uuid::Uuid::from_bytes(id))
                .with_partition_data(partitions)
        })
        .collect();
    let transactional_id = (rng.below(2) == 0)
        .then(|| TransactionalId(StrBytes::from_string(format!("txn-{}", rng.below(100)))));
    ProduceRequest::default()
        .with_transactional_id(transactional_id)
        .with_acks([-1, 0, 1][rng.below(3) as usize])
        .with_timeout_ms(30_000)
        .with_topic_data(topics)
}

fn key(topic: ScannedTopic) -> String {
    match topic {
        ScannedTopic::Name(name) => name.to_string(),
        ScannedTopic::Id(id) => uuid::Uuid::from_bytes(id).to_string(),
    }
}

fn decoded(request: &ProduceRequest, version: i16) -> Vec<String> {
    request
        .topic_data
        .iter()
        .map(|t| match version {
            13.. => t.topic_id.to_string(),
            _ => t.name.to_string(),
        })
        .collect()
}

fn scanned(body: &[u8], version: i16) -> Result<Vec<String>, ScanError> {
    let mut seen = Vec::new();
    scan_produce_topics(body, version, |topic| seen.push(key(topic)))?;
    Ok(seen)
}

fn encoded(request: &ProduceRequest, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    request.encode(&mut buf, version).unwrap();
    buf.freeze()
}

#[test]
fn the_walk_finds_the_topics_the_decode_finds_in_every_version() {
    for version in 3..=13i16 {
        for seed in 1..300u64 {
            let mut rng = Rng(seed * 7919 + version as u64);
            let body = encoded(&request(&mut rng), version);
            let seen =
                scanned(&body, version).unwrap_or_else(|e| panic!("v{version} seed {seed}: {e}"));
            let back = ProduceRequest::decode(&mut body.clone(), version).unwrap();
            assert_eq!(seen, decoded(&back, version), "v{version} seed {seed}");
        }
    }
}

#[test]
fn every_truncation_and_every_trailing_byte_is_refused() {
    let mut rng = Rng(42);
    for version in [3i16, 8, 9, 12, 13] {
        let mut request = request(&mut rng);
        request.topic_data.push(
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_records(Some(Bytes::from_static(b"records")))]),
        );
        let body = encoded(&request, version);
        for cut in 0..body.len() {
            assert!(
                scanned(&body[..cut], version).is_err(),
                "v{version} cut {cut}"
            );
        }
        let mut longer = body.to_vec();
        longer.push(0);
        assert_eq!(scanned(&longer, version), Err(ScanError::Malformed));
        assert!(scanned(&body, version).is_ok());
    }
}

#[test]
fn counts_beyond_the_body_and_unknown_versions_are_refused() {
    // v9: null transactional id, acks, timeout, then a compact array claiming 2^28 topics.
    let body = [
        0, 0xff, 0xff, 0, 0, 0x75, 0x30, 0x80, 0x80, 0x80, 0x80, 0x01,
    ];
    assert_eq!(scanned(&body, 9).unwrap_err(), ScanError::Truncated);
    // v8: a null topic array (count -1), which the decoder refuses too.
    let body = [0xff, 0xff, 0, 1, 0, 0, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(scanned(&body, 8).unwrap_err(), ScanError::Malformed);
    assert!(ProduceRequest::decode(&mut Bytes::copy_from_slice(&body), 8).is_err());
    assert_eq!(scanned(&[], 2).unwrap_err(), ScanError::Version(2));
    assert_eq!(scanned(&[], 14).unwrap_err(), ScanError::Version(14));
}
