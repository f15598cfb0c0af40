//! Bodies with wire-supplied counts far beyond the bytes that follow: each must decode
//! to an error (or a small value), never a huge allocation. Without the bounded length
//! checks of the vendored kafka-protocol these tests abort the test process.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;

/// Byte patterns that read as huge lengths in every encoding: i16/i32 lengths
/// (0x7f7f...), unsigned varints (0xff... continuation), and a mix.
fn hostile_bodies() -> Vec<Bytes> {
    let patterns: [&[u8]; 4] = [
        &[0x7f; 48],
        &[0xff; 48],
        &[
            0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ],
        &[
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0x00,
        ],
    ];
    let mut bodies = Vec::new();
    for pattern in patterns {
        for skip in 0..pattern.len().min(12) {
            bodies.push(Bytes::copy_from_slice(&pattern[skip..]));
        }
    }
    bodies
}

#[test]
fn hostile_counts_in_any_request_or_response_do_not_allocate() {
    for api in ApiKey::iter() {
        let versions = api.valid_versions();
        for version in versions.min..=versions.max {
            for body in hostile_bodies() {
                let _ = RequestKind::decode(api, &mut body.clone(), version);
                let _ = ResponseKind::decode(api, &mut body.clone(), version);
            }
        }
    }
}

#[test]
fn hostile_produce_topic_count_is_a_decode_error() {
    // Produce v9: null transactional id, acks, timeout, then 0x7fffffff topics.
    let mut body = BytesMut::new();
    body.put_u8(0); // compact nullable string: null
    body.put_i16(1);
    body.put_i32(30_000);
    body.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // uvarint 0x7fffffff + 1
    let err = ProduceRequest::decode(&mut body.freeze(), 9).expect_err("must not decode");
    assert!(err.to_string().contains("exceeds"), "{err}");

    // Produce v3 (not flexible): i32 array length.
    let mut body = BytesMut::new();
    body.put_i16(-1);
    body.put_i16(1);
    body.put_i32(30_000);
    body.put_i32(i32::MAX);
    let err = ProduceRequest::decode(&mut body.freeze(), 3).expect_err("must not decode");
    assert!(err.to_string().contains("exceeds"), "{err}");
}
