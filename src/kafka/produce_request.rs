//! A Produce request body encoded around its record batches' own memory: the small
//! fields go into short buffers between the batches, and each batch stays the pieces
//! it already is (a stamped header and the fetched records), so the request is written
//! with one `writev` and the records are never copied in user space. The bytes are
//! exactly what `kafka-protocol` encodes for the same request (tested below).

use bytes::Bytes;
use kafka_protocol::messages::TopicName;

use super::batch_rewrite::StampedBatch;
use super::record_codec::put_uvarint;

/// Produce v9: the first flexible version, served by every broker since 2.4.
pub const PRODUCE_VERSION: i16 = 9;

/// The batches of one topic in a request, one per partition.
pub struct TopicBatches {
    pub topic: TopicName,
    pub batches: Vec<(i32, StampedBatch)>,
}

/// The body of a non-transactional Produce v9 request, in pieces to write in order.
pub fn produce_body(acks: i16, timeout_ms: i32, topics: &[TopicBatches]) -> Vec<Bytes> {
    let mut pieces =
        Vec::with_capacity(1 + topics.iter().map(|t| 3 * t.batches.len()).sum::<usize>());
    let mut small = Vec::with_capacity(64);
    put_uvarint(&mut small, 0); // transactional_id: null
    small.extend_from_slice(&acks.to_be_bytes());
    small.extend_from_slice(&timeout_ms.to_be_bytes());
    put_uvarint(&mut small, topics.len() as u64 + 1);
    for topic in topics {
        let name = topic.topic.0.as_bytes();
        put_uvarint(&mut small, name.len() as u64 + 1);
        small.extend_from_slice(name);
        put_uvarint(&mut small, topic.batches.len() as u64 + 1);
        for (partition, batch) in &topic.batches {
            small.extend_from_slice(&partition.to_be_bytes());
            put_uvarint(&mut small, batch.len() as u64 + 1);
            pieces.push(Bytes::from(std::mem::take(&mut small)));
            pieces.extend(batch.pieces().filter(|p| !p.is_empty()).cloned());
            put_uvarint(&mut small, 0); // the partition's tagged fields
        }
        put_uvarint(&mut small, 0); // the topic's tagged fields
    }
    put_uvarint(&mut small, 0); // the request's tagged fields
    pieces.push(Bytes::from(small));
    pieces
}

#[cfg(test)]
mod tests {
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    use super::{produce_body, TopicBatches, PRODUCE_VERSION};
    use crate::kafka::batch_rewrite::StampedBatch;

    fn stamped(fill: u8, header: usize, records: usize) -> StampedBatch {
        StampedBatch::from_pieces(
            Bytes::from(vec![fill; header]),
            Bytes::from(vec![fill.wrapping_add(1); records]),
        )
    }

    /// Byte for byte what the message encoder writes, for requests of one and of many
    /// topics and partitions, with lengths around the varints' byte boundaries.
    #[test]
    fn the_pieces_are_the_message_encoders_bytes() {
        let long_name = "t".repeat(200);
        type Shape<'a> = Vec<(&'a str, Vec<(i32, StampedBatch)>)>;
        let shapes: Vec<Shape> = vec![
            vec![("a", vec![(0, stamped(1, 61, 100))])],
            vec![
                (
                    "mirror.one",
                    vec![(0, stamped(2, 61, 16_000)), (5, stamped(3, 61, 0))],
                ),
                (
                    &long_name,
                    vec![(2, stamped(4, 61, 127 - 61)), (9, stamped(5, 61, 200_000))],
                ),
            ],
            vec![],
        ];
        for shape in shapes {
            let topics: Vec<TopicBatches> = shape
                .iter()
                .map(|(name, batches)| TopicBatches {
                    topic: TopicName(StrBytes::from_string(name.to_string())),
                    batches: batches.clone(),
                })
                .collect();
            let ours: Vec<u8> = produce_body(-1, 30_000, &topics).concat();

            let request = ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(30_000)
                .with_topic_data(
                    topics
                        .iter()
                        .map(|t| {
                            TopicProduceData::default()
                                .with_name(t.topic.clone())
                                .with_partition_data(
                                    t.batches
                                        .iter()
                                        .map(|(p, b)| {
                                            PartitionProduceData::default()
                                                .with_index(*p)
                                                .with_records(Some(b.to_bytes()))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let mut theirs = BytesMut::new();
            request
                .encode(&mut theirs, PRODUCE_VERSION)
                .expect("encode");
            assert_eq!(ours, theirs.to_vec());
        }
    }
}
