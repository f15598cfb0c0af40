//! Target `requests`: the proxy's request interceptors with mirror topics configured.
//! Input: one byte picks the API, one its version (every version the proxy offers and
//! the codec decodes), the rest is the request body after a fixed header.
//!
//! `on_request` needs a running proxy (`Shared`: listeners, a destination), so the
//! pure parts it runs are fuzzed: `write_guard::guard` / `apply` with a snapshot that
//! has read-only and internal topics, `produce_guard::peek_acks`, and Fetch's decode.
//!
//! Properties: nothing panics; the guard fails exactly when the body does not decode;
//! `peek_acks` agrees with the decoded `acks`; the Produce walk names the decoder's
//! topics, and accepts no body the decoder refuses; a forwarded (split) request is a valid
//! frame with the same header that decodes to exactly the entries left after cutting
//! out the read-only ones, and names no read-only topic; an answer given in place of
//! the request decodes as that API's response with the request's correlation id;
//! a decoded Fetch request encodes and decodes back to itself.

use std::fmt::Debug;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, FetchRequest, ProduceRequest, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use mirrorgate::kafka::codec::{decode_request, decode_response, encode_request};
use mirrorgate::kafka::fetch_scan::ScannedTopic;
use mirrorgate::kafka::frame::RequestFrame;
use mirrorgate::kafka::produce_scan::scan_produce_topics;
use mirrorgate::proxy::interceptors::produce_guard::{peek_acks, Produce};
use mirrorgate::proxy::interceptors::write_guard::{self, GuardedApi};
use mirrorgate::proxy::interceptors::{api_versions, internal_guard, OnResponse, RequestAction};

use crate::{pick_version, request_frame, snapshot};

/// The APIs the proxy decodes on the request side, in the order the selector byte
/// picks them.
pub const APIS: &[ApiKey] = &[
    ApiKey::Produce,
    ApiKey::DeleteRecords,
    ApiKey::CreatePartitions,
    ApiKey::AlterConfigs,
    ApiKey::IncrementalAlterConfigs,
    ApiKey::AddPartitionsToTxn,
    ApiKey::Fetch,
    ApiKey::DeleteTopics,
    ApiKey::CreateTopics,
    ApiKey::OffsetCommit,
    ApiKey::TxnOffsetCommit,
    ApiKey::OffsetDelete,
];

/// Versions the fuzzer tries for `api`: offered by the proxy and decodable by the
/// codec (Produce v0-2 are forwarded undecoded, or refused while mirrors exist).
pub fn versions(api: ApiKey) -> (i16, i16) {
    let (min, max) = api_versions::proxy_range(api).unwrap();
    (min.max(api.valid_versions().min), max)
}

pub fn check(data: &[u8]) {
    let [api, version, body @ ..] = data else {
        return;
    };
    let api = APIS[usize::from(*api) % APIS.len()];
    let (min, max) = versions(api);
    let version = pick_version(*version, min, max);
    let frame = RequestFrame::parse(request_frame(api, version, body)).unwrap();
    match api {
        ApiKey::Produce => produce(&frame),
        ApiKey::DeleteRecords => guarded::<write_guard::DeleteRecords>(&frame, true),
        ApiKey::CreatePartitions => guarded::<write_guard::CreatePartitions>(&frame, true),
        ApiKey::AlterConfigs => guarded::<write_guard::AlterConfigs>(&frame, true),
        ApiKey::IncrementalAlterConfigs => {
            guarded::<write_guard::IncrementalAlterConfigs>(&frame, true)
        }
        ApiKey::AddPartitionsToTxn => guarded::<write_guard::AddPartitionsToTxn>(&frame, true),
        ApiKey::Fetch => fetch(&frame),
        ApiKey::DeleteTopics => guarded::<internal_guard::DeleteTopics>(&frame, true),
        ApiKey::CreateTopics => guarded::<internal_guard::CreateTopics>(&frame, true),
        ApiKey::OffsetCommit => guarded::<internal_guard::OffsetCommit>(&frame, true),
        ApiKey::TxnOffsetCommit => guarded::<internal_guard::TxnOffsetCommit>(&frame, true),
        ApiKey::OffsetDelete => guarded::<internal_guard::OffsetDelete>(&frame, true),
        _ => unreachable!(),
    }
}

/// Produce as `produce_guard::on_request` runs it for versions that name topics
/// (v13 names them by id; without a destination every id stays unresolved).
fn produce(frame: &RequestFrame) {
    let peeked = peek_acks(frame);
    let mut walked = Vec::new();
    let body = frame.body().expect("a body after the fixed header");
    let walk = scan_produce_topics(&body, frame.api_version, |topic| {
        walked.push(match topic {
            ScannedTopic::Name(name) => name.to_string(),
            ScannedTopic::Id(id) => uuid::Uuid::from_bytes(id).to_string(),
        })
    });
    match decode_request::<ProduceRequest>(frame) {
        Ok(request) => {
            let acks = peeked.expect("acks peeked from a body that decodes");
            assert_eq!(acks, request.acks, "peek_acks disagrees with the decoder");
            if walk.is_ok() {
                let decoded: Vec<String> = request
                    .topic_data
                    .iter()
                    .map(|t| match frame.api_version {
                        13.. => t.topic_id.to_string(),
                        _ => t.name.to_string(),
                    })
                    .collect();
                assert_eq!(
                    walked, decoded,
                    "the walk and the decoder name other topics"
                );
            }
            guarded::<Produce>(frame, acks != 0);
        }
        Err(_) => {
            // What the decoder refuses, the walk must not pass as naming no topic.
            assert!(
                walk.is_err(),
                "the walk accepted a body the decoder refuses"
            );
            guarded::<Produce>(frame, true)
        }
    }
}

fn guarded<A: GuardedApi>(frame: &RequestFrame, expects_response: bool)
where
    A::Request: Clone + PartialEq + Debug,
{
    let snapshot = snapshot();
    let read_only = |topic: &str| snapshot.guard_of(topic);
    let version = frame.api_version;
    let Ok(request) = decode_request::<A::Request>(frame) else {
        assert!(write_guard::guard::<A>(frame, snapshot).is_err());
        return;
    };
    let mut expected = request.clone();
    let refused = A::split(&mut expected, version, &read_only);
    let action = write_guard::apply::<A>(frame, request, &read_only, expects_response)
        .expect("the guard of a decoded request");
    match action {
        None => assert!(refused.is_empty()),
        Some(RequestAction::Close(_)) => assert!(!expects_response && !refused.is_empty()),
        Some(RequestAction::Await { .. }) => panic!("the guard alone never waits"),
        Some(RequestAction::Last(_)) => panic!("only a parked Produce ends a connection"),
        Some(RequestAction::Respond(bytes)) => {
            assert!(expects_response && !refused.is_empty() && A::is_empty(&expected));
            answer_decodes::<A>(&bytes, frame);
        }
        Some(RequestAction::Forward { bytes, on_response }) => {
            assert!(expects_response && !refused.is_empty() && !A::is_empty(&expected));
            assert!(matches!(on_response, Some(OnResponse::Rewrite(_))));
            let forwarded = RequestFrame::parse(bytes).expect("forwarded frame parses");
            assert_eq!(
                (
                    forwarded.api_key,
                    forwarded.api_version,
                    forwarded.correlation_id
                ),
                (frame.api_key, frame.api_version, frame.correlation_id)
            );
            assert_eq!(
                forwarded.header_bytes().unwrap(),
                frame.header_bytes().unwrap()
            );
            let mut again: A::Request =
                decode_request(&forwarded).expect("the forwarded request decodes");
            assert_eq!(
                again, expected,
                "the forwarded request is what the split left"
            );
            assert!(A::split(&mut again, version, &read_only).is_empty());
        }
    }
}

fn answer_decodes<A: GuardedApi>(bytes: &Bytes, frame: &RequestFrame) {
    let header_version = A::KEY.response_header_version(frame.api_version);
    let mut rest = bytes.slice(4..);
    let header = ResponseHeader::decode(&mut rest, header_version).unwrap();
    assert_eq!(header.correlation_id, frame.correlation_id);
    let _: A::Response =
        decode_response(bytes, A::KEY, frame.api_version).expect("the proxy's own answer decodes");
}

/// Fetch requests are decoded to see whether they touch a mirror.
fn fetch(frame: &RequestFrame) {
    let Ok(request) = decode_request::<FetchRequest>(frame) else {
        return;
    };
    round_trip(frame, &request);
}

/// `request` re-encoded behind the original header decodes back to itself.
fn round_trip<T: Decodable + Encodable + PartialEq + Debug>(frame: &RequestFrame, request: &T) {
    let bytes = encode_request(frame, request).expect("a decoded request encodes");
    let again = RequestFrame::parse(bytes).unwrap();
    let decoded: T = decode_request(&again).expect("a re-encoded request decodes");
    assert_eq!(&decoded, request);
}
