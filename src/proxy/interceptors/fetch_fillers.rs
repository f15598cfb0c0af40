//! Fetch responses of mirror topics: every filler batch (ARCHITECTURE.md, "Identical
//! offsets") becomes an empty batch with the same offsets, so consumers through the
//! proxy see exactly the source's records at the source's offsets (consumers move past
//! an empty batch).
//!
//! mirrorgate's own topics are never served: their partitions answer
//! TOPIC_AUTHORIZATION_FAILED with no records.
//!
//! Cost: the request is decoded (small). The response is looked at only when the
//! request names a guarded topic, or uses an incremental fetch session (KIP-227), whose
//! responses may carry partitions the request does not list; then, while no mirror
//! exists, only when a cheap search finds an internal topic's name or id in it. It is
//! walked without decoding (`kafka::fetch_scan`), and decoded only when the walk finds
//! a partition of an internal topic or a filler batch of a mirror partition (a batch
//! whose header passes the cheap check has its first record read there and then: about
//! one data batch in a thousand passes, and a response of small batches holds
//! thousands). NodeEndpoints alone are rewritten in the response's tail
//! (`addresses::FetchEndpoints`). It is re-encoded only when a filler batch was
//! replaced or an internal topic refused.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use uuid::Uuid;

use super::addresses::{FetchEndpoints, FETCH_NODE_ENDPOINTS_SINCE};
use super::chain::{Chain, Look, Step};
use super::{forward, Interceptor, OnResponse, RequestAction, RequestMeta};
use crate::kafka::codec::decode_request;
use crate::kafka::error_code::TOPIC_AUTHORIZATION_FAILED;
use crate::kafka::fetch_scan::ScannedTopic;
use crate::kafka::filler::{is_filler_batch, may_be_filler_batch};
use crate::kafka::frame::RequestFrame;
use crate::kafka::record_batch::{empty_batch_like, BatchSlices, BatchView, RecordBatches};
use crate::proxy::error::ConnError;
use crate::proxy::Shared;
use crate::registry::{Guard, Snapshot};

/// First Fetch version that names topics by id only.
const TOPIC_IDS_SINCE: i16 = 13;
/// First Fetch version with fetch sessions.
const SESSIONS_SINCE: i16 = 7;
const NAME: &str = "fetch_fillers";

pub const INTERCEPTOR: Interceptor = Interceptor {
    name: NAME,
    api_keys: &[ApiKey::Fetch],
    on_request: |shared, frame| Box::pin(on_request(shared, frame)),
};

async fn on_request(shared: &Arc<Shared>, frame: RequestFrame) -> Result<RequestAction, ConnError> {
    let snapshot = shared.registry.load();
    let request: FetchRequest = decode_request(&frame).map_err(ConnError::client_codec)?;
    let on_response = if may_touch_guarded(shared, &snapshot, &request, frame.api_version).await {
        OnResponse::Rewrite(Chain::boxed((HideFillers, FetchEndpoints)))
    } else if frame.api_version >= FETCH_NODE_ENDPOINTS_SINCE {
        OnResponse::Rewrite(Chain::boxed((FetchEndpoints,)))
    } else {
        OnResponse::Forward
    };
    Ok(forward(frame, on_response))
}

async fn may_touch_guarded(
    shared: &Arc<Shared>,
    snapshot: &Snapshot,
    request: &FetchRequest,
    version: i16,
) -> bool {
    // An incremental session request may omit partitions the response carries.
    if version >= SESSIONS_SINCE && request.session_id != 0 && request.session_epoch > 0 {
        return true;
    }
    if version < TOPIC_IDS_SINCE {
        return request
            .topics
            .iter()
            .any(|t| snapshot.guard_of(t.topic.as_str()).is_some());
    }
    let mut refreshed = false;
    for topic in &request.topics {
        let name = shared.topic_name(&topic.topic_id, &mut refreshed).await;
        if name.is_some_and(|n| snapshot.guard_of(n.as_str()).is_some()) {
            return true;
        }
    }
    false
}

fn guard_of(
    shared: &Shared,
    snapshot: &Snapshot,
    name: &str,
    id: &Uuid,
    version: i16,
) -> Option<Guard> {
    if version < TOPIC_IDS_SINCE {
        snapshot.guard_of(name)
    } else {
        let name = shared.destination.topic_name(id)?;
        snapshot.guard_of(name.as_str())
    }
}

/// Filler batches of mirror partitions replaced, partitions of internal topics refused.
pub struct HideFillers;

impl Step<FetchResponse> for HideFillers {
    const NAME: &'static str = NAME;

    /// False when a walk over the answer shows no partition of an internal topic and no
    /// filler batch of a mirror partition. Anything the walk cannot read is decoded,
    /// which reports it.
    fn wants(&self, look: &Look<'_>) -> bool {
        let (shared, frame) = (look.shared, look.frame);
        let snapshot = shared.registry.load();
        let by_id = look.meta.api_version >= TOPIC_IDS_SINCE;
        if !snapshot.has_read_only_topics() && !shared.may_name_internal(&snapshot, frame, by_id) {
            return false;
        }
        let Some(body) = look.body() else {
            return true;
        };
        let mut needed = false;
        // Partitions of one topic come together: its guard is looked up once.
        let mut last: Option<(ScannedTopic, Option<Guard>)> = None;
        let walked = look.walk_fetch(&body, |topic, _, records| {
            if needed {
                return;
            }
            let guard = match &last {
                Some((seen, guard)) if *seen == topic => *guard,
                _ => {
                    let guard = match topic {
                        ScannedTopic::Name(name) => snapshot.guard_of(name),
                        ScannedTopic::Id(id) => shared
                            .destination
                            .topic_name(&Uuid::from_bytes(id))
                            .and_then(|name| snapshot.guard_of(name.as_str())),
                    };
                    last = Some((topic, guard));
                    guard
                }
            };
            needed = match guard {
                None => false,
                Some(Guard::Mirror | Guard::CatalogLoading) => {
                    records.is_some_and(|r| holds_filler(&body, r))
                }
                Some(_) => true,
            };
        });
        needed || walked.is_none()
    }

    fn apply(
        self,
        shared: &Arc<Shared>,
        meta: &RequestMeta,
        response: &mut FetchResponse,
    ) -> Result<bool, ConnError> {
        let snapshot = shared.registry.load();
        let mut changed = false;
        for topic in &mut response.responses {
            let guard = guard_of(
                shared,
                &snapshot,
                topic.topic.as_str(),
                &topic.topic_id,
                meta.api_version,
            );
            match guard {
                // Reads pass while the catalog loads; fillers are hidden in case it is a mirror.
                Some(Guard::Mirror | Guard::CatalogLoading) => {}
                Some(_) => {
                    tracing::warn!(side = "client", topic = %topic.topic.as_str(), "refused a fetch of an internal topic");
                    for partition in &mut topic.partitions {
                        refuse(partition);
                    }
                    changed = true;
                    continue;
                }
                None => continue,
            }
            for partition in &mut topic.partitions {
                if let Some(records) = &partition.records {
                    if let Some(hidden) = hide_fillers(records) {
                        partition.records = Some(hidden);
                        changed = true;
                    }
                }
            }
        }
        Ok(changed)
    }
}

/// True when a batch of `records` (borrowed from `body`) is a filler, as
/// `hide_fillers` judges it. Headers are read in place; only a batch that passes the
/// cheap check is taken out of `body` to have its records read.
fn holds_filler(body: &Bytes, records: &[u8]) -> bool {
    BatchSlices::new(records)
        .map_while(Result::ok)
        .filter(may_be_filler_batch)
        .any(|batch| {
            BatchView::parse(body.slice_ref(batch.bytes()))
                .is_ok_and(|batch| is_filler_batch(&batch).unwrap_or(false))
        })
}

/// A filler batch: one that passes the cheap check on its header and whose records
/// are all fillers (a batch that cannot be read is not one; it is passed on as it is).
fn is_hidden_filler(batch: &BatchView) -> bool {
    may_be_filler_batch(batch) && is_filler_batch(batch).unwrap_or(false)
}

/// A partition of an internal topic: no records, no offsets, the error a broker gives
/// a client that may not read the topic.
fn refuse(partition: &mut PartitionData) {
    *partition = PartitionData::default()
        .with_partition_index(partition.partition_index)
        .with_error_code(TOPIC_AUTHORIZATION_FAILED)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1);
}

/// The record set with every filler batch replaced by an empty batch of the same
/// offsets; `None` when there is none. Batches that cannot be parsed, and a partial
/// batch at the end, are kept as they are.
pub fn hide_fillers(records: &Bytes) -> Option<Bytes> {
    let mut batches = RecordBatches::new(records.clone());
    let mut out: Option<Vec<u8>> = None;
    let mut consumed = 0usize;
    for batch in batches.by_ref() {
        let Ok(batch) = batch else { break };
        let len = batch.bytes().len();
        if is_hidden_filler(&batch) {
            let buf = out.get_or_insert_with(|| {
                let mut v = Vec::with_capacity(records.len());
                v.extend_from_slice(&records[..consumed]);
                v
            });
            buf.extend_from_slice(&empty_batch_like(&batch));
        } else if let Some(buf) = &mut out {
            buf.extend_from_slice(batch.bytes());
        }
        consumed += len;
    }
    let mut buf = out?;
    buf.extend_from_slice(&records[consumed..]);
    Some(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::filler::filler_batch;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType, NO_TIMESTAMP,
    };

    fn data(base_offset: i64) -> Bytes {
        data_at(base_offset, 1_700_000_000_000)
    }

    /// A batch of one real record written at `timestamp`.
    fn data_at(base_offset: i64, timestamp: i64) -> Bytes {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: base_offset,
            sequence: -1,
            timestamp,
            key: None,
            value: Some(Bytes::from_static(b"real")),
            headers: Default::default(),
        };
        let mut buf = bytes::BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, [record].iter(), &options).unwrap();
        buf.freeze()
    }

    /// A filler batch of `count` as the destination stores it (base offset set).
    fn filler_at(base_offset: i64, count: i64) -> Bytes {
        let mut bytes = filler_batch(count, Compression::Zstd, NO_TIMESTAMP)
            .unwrap()
            .to_vec();
        bytes[..8].copy_from_slice(&base_offset.to_be_bytes());
        Bytes::from(bytes)
    }

    #[test]
    fn filler_batches_become_empty_and_the_rest_keeps_its_bytes() {
        let (a, f, b) = (data(0), filler_at(1, 5), data(6));
        let tail = &data(7)[..20]; // a partial batch at the end of the response
        let records = Bytes::from([&a[..], &f[..], &b[..], tail].concat());
        let hidden = hide_fillers(&records).expect("a filler to hide");
        let empty = empty_batch_like(&BatchView::parse(f.clone()).unwrap());
        assert_eq!(
            hidden,
            Bytes::from([&a[..], &empty[..], &b[..], tail].concat())
        );
        let v = BatchView::parse(empty).unwrap();
        assert_eq!(
            (v.base_offset(), v.next_offset(), v.records_count()),
            (1, 6, 0)
        );
        assert!(v.verify_crc());

        let plain = Bytes::from([&a[..], &b[..]].concat());
        assert!(hide_fillers(&plain).is_none(), "nothing to hide: no copy");
        assert!(hide_fillers(&Bytes::new()).is_none());
    }

    #[test]
    fn a_data_batch_passing_the_header_check_does_not_make_the_answer_decoded() {
        // One record whose timestamp ends in 999: its header looks like a filler's.
        let lookalike = data_at(0, 1_700_000_000_999);
        let batch = BatchView::parse(lookalike.clone()).unwrap();
        assert!(may_be_filler_batch(&batch), "the header check passes");
        let records = Bytes::from([&data(1)[..], &lookalike[..]].concat());
        assert!(!holds_filler(&records, &records));
        assert!(hide_fillers(&records).is_none());
        let with_filler = Bytes::from([&records[..], &filler_at(2, 3)[..]].concat());
        assert!(holds_filler(&with_filler, &with_filler));
    }

    #[test]
    fn the_walk_finds_a_filler_in_a_partition_inside_a_larger_answer() {
        // As the walk hands them over: a partition's records borrowed from the body.
        let head = Bytes::from_static(b"fields before the records");
        let (a, f) = (data(0), filler_at(1, 2));
        let tail = &data(3)[..30];
        let body = Bytes::from([&head[..], &a[..], &f[..], tail].concat());
        let records = &body[head.len()..];
        assert!(holds_filler(&body, records));
        let without = &body[head.len()..head.len() + a.len()];
        assert!(!holds_filler(&body, without));
        assert!(!holds_filler(&body, &body[body.len()..]), "no records");
    }
}
