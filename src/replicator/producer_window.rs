//! Pipelined idempotent produce to one mirror partition: up to [`MAX_IN_FLIGHT`]
//! batches handed to the destination leader's shared connection (`produce_mux`, which
//! puts the batches of several partitions in one request) before the oldest answer is
//! awaited. The partition's own connection to the leader serves its other calls
//! (offsets, DeleteRecords), with nothing in flight.
//!
//! Appends are conditional. Every copier of a mirror shares one producer id, and a
//! batch that lands at offset `o` carries base sequence `o mod 2^31` ([`sequence_at`]):
//! the mirror's offsets are the source's, so the broker's sequence check appends a batch
//! only where the log ends for that producer. A re-send of one of the last five batches
//! is answered with its original offset and writes nothing; any other batch is refused
//! (OUT_OF_ORDER_SEQUENCE_NUMBER), which means another copier is ahead (or this one,
//! with more than five of its batches in the log since): the window reports
//! [`CopyError::Refused`] and the caller resumes from the destination's settled end.
//! Every response's base offset must still be the source offset the batch was sent
//! for; a mismatch (someone else's producer wrote the partition) is fatal. After any
//! other error the window is dropped whole too, so what was in flight is either in the
//! log (and skipped) or not (and sent again).

use std::collections::VecDeque;

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::TopicName;
use kafka_protocol::records::TimestampType;
use tokio::sync::oneshot;

use super::budget::{ByteBudget, Charge};
use super::partition::CopyError;
use super::produce_mux::{BatchAnswer, ProduceMux};
use crate::kafka::batch_rewrite;
use crate::kafka::client::{ClientError, KafkaConnection};
use crate::kafka::error_code::{
    CORRUPT_MESSAGE, DUPLICATE_SEQUENCE_NUMBER, OUT_OF_ORDER_SEQUENCE_NUMBER,
};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::record_batch::BatchView;
use crate::kafka::record_codec::decode_bound;

/// Batches in flight per partition. More than the five a Java producer keeps (the
/// batches a broker remembers per producer for de-duplication): a re-send is never
/// needed here, since any error drops the window and copying resumes from the settled
/// end, and a topic of small batches copies at this many batches per round trip.
pub const MAX_IN_FLIGHT: usize = 16;

/// The base sequence of a batch that lands at `offset`: sequences wrap from i32::MAX
/// to 0 as brokers expect, and offsets are never negative.
pub fn sequence_at(offset: i64) -> i32 {
    // rem_euclid by 2^31 always fits an i32.
    i32::try_from(offset.rem_euclid(1i64 << 31)).unwrap_or(0)
}

/// What acknowledged batches carried (fillers and source records apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub batches: u64,
    pub records: u64,
    pub fillers: u64,
    pub bytes: u64,
}

impl Tally {
    pub fn add(&mut self, other: Tally) {
        self.batches += other.batches;
        self.records += other.records;
        self.fillers += other.fillers;
        self.bytes += other.bytes;
    }
}

struct InFlight {
    answer: oneshot::Receiver<BatchAnswer>,
    /// The source offset the batch must land at.
    expected: i64,
    count: i32,
    tally: Tally,
    serial: u64,
    /// Budget held by the fetched data this batch came from, returned on the ack.
    charges: Vec<Charge>,
    /// The source batch (a slice of the fetched data, already held until the ack), to
    /// check its CRC if the destination finds the copy corrupt.
    source: Bytes,
}

pub struct ProducerWindow {
    /// For calls other than Produce.
    conn: KafkaConnection,
    mux: Arc<ProduceMux>,
    topic: TopicName,
    partition: i32,
    producer: ProducerIdentity,
    in_flight: VecDeque<InFlight>,
    /// Next offset after every acknowledged batch (= the destination's log end).
    acked_offset: i64,
    /// Next offset after every sent batch.
    sent_offset: i64,
    /// Batches sent so far, to tell which were sent since a point.
    sent_serial: u64,
}

impl ProducerWindow {
    /// A window that starts at `end_offset`, the destination partition's settled end.
    pub fn new(
        conn: KafkaConnection,
        mux: Arc<ProduceMux>,
        topic: TopicName,
        partition: i32,
        producer: ProducerIdentity,
        end_offset: i64,
    ) -> Self {
        Self {
            conn,
            mux,
            topic,
            partition,
            producer,
            in_flight: VecDeque::with_capacity(MAX_IN_FLIGHT),
            acked_offset: end_offset,
            sent_offset: end_offset,
            sent_serial: 0,
        }
    }

    pub fn topic(&self) -> &TopicName {
        &self.topic
    }

    pub fn acked_offset(&self) -> i64 {
        self.acked_offset
    }

    pub fn sent_offset(&self) -> i64 {
        self.sent_offset
    }

    pub fn sent_serial(&self) -> u64 {
        self.sent_serial
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// The connection for a non-produce call; only with nothing in flight.
    pub async fn idle_connection(&mut self) -> Result<&mut KafkaConnection, CopyError> {
        self.flush().await?;
        Ok(&mut self.conn)
    }

    /// Sends one gap-free batch that must land at `sent_offset()`. When the window is
    /// full the oldest response is read first; the tally of what that acknowledged is
    /// returned.
    pub async fn send(
        &mut self,
        batch: &BatchView,
        tally: Tally,
        charge: Option<Charge>,
        decode_budget: Option<&ByteBudget>,
    ) -> Result<Tally, CopyError> {
        let mut acked = Tally::default();
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            acked.add(self.complete_one().await?);
        }
        let count = batch.last_offset_delta().saturating_add(1);
        // A LogAppendTime batch is decoded and re-encoded: its decoded records count
        // against the link's budget while that runs.
        let decoding = match decode_budget {
            Some(budget) if batch.timestamp_type() == TimestampType::LogAppend => {
                Some(budget.reserve(decode_bound(batch)).await)
            }
            _ => None,
        };
        let stamped = batch_rewrite::rewrite_for_produce(
            batch,
            self.producer.id,
            self.producer.epoch,
            sequence_at(self.sent_offset),
        )?;
        drop(decoding);
        let tally = Tally {
            bytes: stamped.len() as u64,
            ..tally
        };
        let answer = self
            .mux
            .produce(self.topic.clone(), self.partition, stamped)
            .await?;
        self.sent_serial += 1;
        self.in_flight.push_back(InFlight {
            answer,
            expected: self.sent_offset,
            count,
            tally,
            serial: self.sent_serial,
            charges: charge.into_iter().collect(),
            source: batch.bytes().clone(),
        });
        self.sent_offset += i64::from(count);
        Ok(acked)
    }

    /// Hands `charge` to the newest batch if it was sent after `serial`; otherwise
    /// (nothing of that data is in flight) it is returned at once.
    pub fn hold_until_acked(&mut self, serial: u64, charge: Charge) {
        match self.in_flight.back_mut() {
            Some(last) if last.serial > serial => last.charges.push(charge),
            _ => drop(charge),
        }
    }

    /// Reads every outstanding response.
    pub async fn flush(&mut self) -> Result<Tally, CopyError> {
        let mut acked = Tally::default();
        while !self.in_flight.is_empty() {
            acked.add(self.complete_one().await?);
        }
        Ok(acked)
    }

    /// Reads the oldest response and checks the offset the destination assigned.
    async fn complete_one(&mut self) -> Result<Tally, CopyError> {
        let Some(sent) = self.in_flight.pop_front() else {
            return Ok(Tally::default());
        };
        let partition = sent.answer.await.map_err(|_| ClientError::Closed)??;
        let code = partition.error_code;
        // The broker's answers to a batch that does not start at the producer's end.
        if code == OUT_OF_ORDER_SEQUENCE_NUMBER || code == DUPLICATE_SEQUENCE_NUMBER {
            return Err(CopyError::Refused {
                code,
                offset: sent.expected,
            });
        }
        if code == CORRUPT_MESSAGE {
            // The stamped CRC follows from the source's: say so if that one is wrong.
            if let Ok(Err(reason)) = BatchView::parse(sent.source).map(|s| s.check_crc()) {
                return Err(CopyError::CorruptSource {
                    partition: self.partition,
                    first: sent.expected,
                    last: sent.expected + i64::from(sent.count) - 1,
                    reason,
                });
            }
        }
        if partition.error_code != 0 {
            let message = partition
                .error_message
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            return Err(CopyError::Produce {
                code: partition.error_code,
                message,
            });
        }
        if partition.base_offset != sent.expected {
            return Err(CopyError::OffsetMismatch {
                expected: sent.expected,
                got: partition.base_offset,
            });
        }
        self.acked_offset = sent.expected + i64::from(sent.count);
        drop(sent.charges);
        Ok(sent.tally)
    }
}

#[cfg(test)]
mod tests {
    //! Against a fake broker that answers only once it holds a whole window of
    //! requests: a window that waited for each answer would never get one.

    use std::time::Duration;

    use bytes::{Buf, BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    use kafka_protocol::messages::{
        ApiKey, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
    };
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    use kafka_protocol::records::{Compression, NO_TIMESTAMP};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::{ProducerWindow, Tally, MAX_IN_FLIGHT};
    use crate::kafka::client::KafkaConnection;
    use crate::kafka::filler::filler_batch;
    use crate::kafka::producer::ProducerIdentity;
    use crate::kafka::record_batch::BatchView;
    use crate::replicator::partition::CopyError;
    use crate::replicator::produce_mux::ProduceMux;

    const VERSION: i16 = 9;

    /// Reads `MAX_IN_FLIGHT` produce requests, then answers each in order with the
    /// next log offset, plus `skew` for the request numbered `skewed`.
    async fn fake_broker(listener: TcpListener, skewed: usize, skew: i64) {
        let Ok((mut socket, _)) = listener.accept().await else {
            return;
        };
        let mut requests = Vec::new();
        while requests.len() < MAX_IN_FLIGHT {
            let Ok(len) = socket.read_i32().await else {
                return;
            };
            let mut frame = vec![0; len as usize];
            if socket.read_exact(&mut frame).await.is_err() {
                return;
            }
            let mut frame = Bytes::from(frame);
            let header_version = ApiKey::Produce.request_header_version(VERSION);
            let header = RequestHeader::decode(&mut frame, header_version).expect("header");
            let request = ProduceRequest::decode(&mut frame, VERSION).expect("produce");
            let records = request.topic_data[0].partition_data[0]
                .records
                .clone()
                .expect("records");
            let batch = BatchView::parse(records).expect("batch");
            requests.push((header.correlation_id, batch.last_offset_delta() + 1));
        }
        let mut log_end = 0i64;
        for (i, (correlation_id, count)) in requests.into_iter().enumerate() {
            let base_offset = log_end + if i == skewed { skew } else { 0 };
            log_end += i64::from(count);
            let response =
                ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(0)
                        .with_base_offset(base_offset)])]);
            let header_version = ProduceResponse::header_version(VERSION);
            let mut body = BytesMut::new();
            ResponseHeader::default()
                .with_correlation_id(correlation_id)
                .encode(&mut body, header_version)
                .expect("encode header");
            response.encode(&mut body, VERSION).expect("encode");
            let mut frame = BytesMut::new();
            frame.put_i32(body.len() as i32);
            frame.put(body);
            if socket.write_all(frame.chunk()).await.is_err() {
                return;
            }
        }
    }

    async fn window_against(skewed: usize, skew: i64) -> (ProducerWindow, Vec<i64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(fake_broker(listener, skewed, skew));
        let produce = KafkaConnection::connect(&addr, "window-test", Duration::from_secs(5))
            .await
            .expect("connect");
        // The window's own connection, for calls other than Produce: none here.
        let idle = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let idle_addr = idle.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let _held = idle.accept().await;
            std::future::pending::<()>().await;
        });
        let conn = KafkaConnection::connect(&idle_addr, "window-test", Duration::from_secs(5))
            .await
            .expect("connect");
        let producer = ProducerIdentity { id: 1, epoch: 0 };
        let mut window = ProducerWindow::new(
            conn,
            ProduceMux::start(produce),
            TopicName(StrBytes::from_static_str("t")),
            0,
            producer,
            0,
        );
        let mut expected = Vec::new();
        for count in 1..=MAX_IN_FLIGHT as i64 {
            expected.push(window.sent_offset());
            let batch = BatchView::parse(
                filler_batch(count, Compression::None, NO_TIMESTAMP).expect("batch"),
            )
            .expect("view");
            let tally = Tally {
                batches: 1,
                fillers: count as u64,
                ..Tally::default()
            };
            let acked = window.send(&batch, tally, None, None).await.expect("send");
            assert_eq!(acked, Tally::default(), "nothing answered yet");
        }
        (window, expected)
    }

    #[test]
    fn sequences_are_offsets_modulo_2_31() {
        use super::sequence_at;
        use crate::kafka::record_batch::next_sequence;
        assert_eq!(sequence_at(0), 0);
        assert_eq!(sequence_at(12_345), 12_345);
        assert_eq!(sequence_at(i64::from(i32::MAX)), i32::MAX);
        assert_eq!(sequence_at(1 << 31), 0);
        assert_eq!(sequence_at((1 << 32) + 7), 7);
        // A batch that straddles the wrap ends where the broker expects the next one.
        for (offset, count) in [((1i64 << 31) - 2, 5), ((1i64 << 32) - 1, 1), (99, 3)] {
            assert_eq!(
                next_sequence(sequence_at(offset), count),
                sequence_at(offset + i64::from(count))
            );
        }
    }

    #[tokio::test]
    async fn a_full_window_goes_out_before_any_answer_and_all_are_checked() {
        let (mut window, expected) = window_against(usize::MAX, 0).await;
        // Batch k holds k records: it lands where the k - 1 before it end.
        let starts: Vec<i64> = (0..MAX_IN_FLIGHT as i64).map(|k| k * (k + 1) / 2).collect();
        assert_eq!(&expected[..5], &[0, 1, 3, 6, 10]);
        assert_eq!(expected, starts);
        let total = (MAX_IN_FLIGHT * (MAX_IN_FLIGHT + 1) / 2) as i64;
        assert_eq!(window.sent_offset(), total);
        assert_eq!(window.acked_offset(), 0);
        let acked = tokio::time::timeout(Duration::from_secs(30), window.flush())
            .await
            .expect("the broker answers a full window")
            .expect("flush");
        assert_eq!(acked.batches, MAX_IN_FLIGHT as u64);
        assert_eq!(acked.fillers, total as u64);
        assert_eq!(window.acked_offset(), total);
        assert!(window.is_empty());
    }

    #[tokio::test]
    async fn a_batch_answered_at_another_offset_is_an_offset_mismatch() {
        let (mut window, _) = window_against(2, 1).await;
        let error = tokio::time::timeout(Duration::from_secs(30), window.flush())
            .await
            .expect("the broker answers a full window")
            .expect_err("mismatch");
        assert!(
            matches!(
                error,
                CopyError::OffsetMismatch {
                    expected: 3,
                    got: 4
                }
            ),
            "{error}"
        );
        // The two batches before it were acknowledged.
        assert_eq!(window.acked_offset(), 3);
    }
}
