//! Pipelined idempotent produce to one mirror partition: up to [`MAX_IN_FLIGHT`]
//! batches sent on the partition's own connection to its destination leader before the
//! oldest response is read.
//!
//! Five is what the broker's idempotence guarantees: it remembers the last five
//! batches per producer id and partition, so a batch is never appended twice and a
//! sequence gap is refused rather than written. Every response's base offset must still
//! be the source offset the batch was sent for; a mismatch is fatal. After any other
//! error the window is dropped whole and the caller resumes from the destination's
//! settled end with a fresh producer id (`settled_end_offset`), so what was in flight
//! is either in the log (and skipped) or not (and sent again).

use std::collections::VecDeque;

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, TopicName};

use super::budget::Charge;
use super::partition::CopyError;
use crate::kafka::client::{KafkaConnection, Pending};
use crate::kafka::producer::ProducerIdentity;
use crate::kafka::record_batch::{self, next_sequence, BatchView};

/// Batches in flight per partition (the broker's idempotence window).
pub const MAX_IN_FLIGHT: usize = 5;
const PRODUCE_VERSION: i16 = 9;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

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
    pending: Pending<ProduceRequest>,
    /// The source offset the batch must land at.
    expected: i64,
    count: i32,
    tally: Tally,
    serial: u64,
    /// Budget held by the fetched data this batch came from, returned on the ack.
    charges: Vec<Charge>,
}

pub struct ProducerWindow {
    conn: KafkaConnection,
    topic: TopicName,
    partition: i32,
    producer: ProducerIdentity,
    next_sequence: i32,
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
        topic: TopicName,
        partition: i32,
        producer: ProducerIdentity,
        end_offset: i64,
    ) -> Self {
        Self {
            conn,
            topic,
            partition,
            producer,
            next_sequence: 0,
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
    ) -> Result<Tally, CopyError> {
        let mut acked = Tally::default();
        while self.in_flight.len() >= MAX_IN_FLIGHT {
            acked.add(self.complete_one().await?);
        }
        let count = batch.last_offset_delta().saturating_add(1);
        let stamped = record_batch::rewrite_for_produce(
            batch,
            self.producer.id,
            self.producer.epoch,
            self.next_sequence,
        )?;
        let tally = Tally {
            bytes: stamped.len() as u64,
            ..tally
        };
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(self.topic.clone())
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(self.partition)
                    .with_records(Some(stamped))])]);
        let pending = self.conn.send(&request, PRODUCE_VERSION).await?;
        self.sent_serial += 1;
        self.in_flight.push_back(InFlight {
            pending,
            expected: self.sent_offset,
            count,
            tally,
            serial: self.sent_serial,
            charges: charge.into_iter().collect(),
        });
        self.next_sequence = next_sequence(self.next_sequence, count);
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
        let response = self.conn.receive(sent.pending).await?;
        let partition = response
            .responses
            .into_iter()
            .flat_map(|t| t.partition_responses)
            .find(|p| p.index == self.partition)
            .ok_or(CopyError::Produce {
                code: -1,
                message: "no answer for the partition".into(),
            })?;
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
