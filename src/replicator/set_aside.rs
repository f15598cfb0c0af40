//! Truncate-and-restore's first step: the records of one partition past its last
//! mirrored offset, copied to the set-aside topic's partition of the same number with
//! their keys, values, headers and timestamps, and the offset they had in a header.
//! Control batches (transaction markers) are not records and are left out.

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;
use kafka_protocol::records::TimestampType;

use super::catalog_feed::{fetch, Fetched};
use crate::kafka::admin::topic_name;
use crate::kafka::client::KafkaConnection;
use crate::kafka::record_batch::{BatchView, Header, RecordBatches};
use crate::kafka::record_codec::{decode_records, BatchBuilder, RawRecord};
use kafka_protocol::records::Compression;

/// The header holding a set-aside record's offset in the topic it came from.
pub const ORIGINAL_OFFSET_HEADER: &str = "mirrorgate.original.offset";
const PRODUCE_VERSION: i16 = 9;
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

/// One partition's copy: read from `from`, on the leader `read`, to `end`; written to
/// the same partition of `set_aside` through its leader `write` (`None`: only count).
pub(super) struct Copy<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub set_aside: &'a str,
}

impl Copy<'_> {
    /// Copies (or counts) the records in `[from, end)`; returns how many.
    pub async fn run(
        &self,
        read: &mut KafkaConnection,
        mut write: Option<&mut KafkaConnection>,
        from: i64,
        end: i64,
    ) -> Result<u64, String> {
        let mut offset = from;
        let mut count = 0u64;
        while offset < end {
            let records = match fetch(read, self.topic, self.partition, offset, 0).await? {
                Fetched::Records(records, _) => records,
                Fetched::OutOfRange => {
                    return Err(format!(
                        "{}-{} offset {offset} is out of range",
                        self.topic, self.partition
                    ))
                }
            };
            let mut batch_out: Option<BatchBuilder> = None;
            let mut in_batch = 0i32;
            let mut next = offset;
            for batch in RecordBatches::new(records) {
                let batch = batch.map_err(|e| e.to_string())?;
                if batch.last_offset() < offset || batch.base_offset() >= end {
                    next = next.max(batch.next_offset().min(end));
                    continue;
                }
                next = next.max(batch.next_offset().min(end));
                if batch.is_control() {
                    continue;
                }
                for record in decode_records(&batch).map_err(|e| e.to_string())? {
                    let at = batch
                        .base_offset()
                        .saturating_add(i64::from(record.offset_delta));
                    if at < offset || at >= end {
                        continue;
                    }
                    let timestamp = timestamp_of(&batch, &record);
                    let builder = match &mut batch_out {
                        Some(builder) => builder,
                        None => batch_out.insert(
                            BatchBuilder::new(
                                Compression::None,
                                Header::unstamped(Compression::None, 0),
                                timestamp,
                            )
                            .map_err(|e| e.to_string())?,
                        ),
                    };
                    builder
                        .push(in_batch, timestamp, &with_origin(record, at))
                        .map_err(|e| e.to_string())?;
                    in_batch += 1;
                    count += 1;
                }
            }
            if next <= offset {
                return Err(format!(
                    "{}-{}: no records at offset {offset}, below its end {end}",
                    self.topic, self.partition
                ));
            }
            if let (Some(builder), Some(write)) = (batch_out, write.as_deref_mut()) {
                let bytes = builder.finish().map_err(|e| e.to_string())?;
                self.produce(write, bytes).await?;
            }
            offset = next;
        }
        Ok(count)
    }

    async fn produce(&self, conn: &mut KafkaConnection, records: Bytes) -> Result<(), String> {
        let request = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(PRODUCE_TIMEOUT_MS)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(self.set_aside))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(self.partition)
                    .with_records(Some(records))])]);
        let response = conn
            .call(&request, PRODUCE_VERSION)
            .await
            .map_err(|e| e.to_string())?;
        let answer = response
            .responses
            .iter()
            .flat_map(|t| &t.partition_responses)
            .next()
            .ok_or("no answer for the set-aside partition")?;
        match answer.error_code {
            0 => Ok(()),
            code => Err(format!(
                "writing to {}-{}: error {code}",
                self.set_aside, self.partition
            )),
        }
    }
}

/// A record's own timestamp: the batch's when the broker stamped it (LogAppendTime).
fn timestamp_of(batch: &BatchView, record: &RawRecord) -> i64 {
    match batch.timestamp_type() {
        TimestampType::LogAppend => batch.max_timestamp(),
        TimestampType::Creation => batch.base_timestamp().wrapping_add(record.timestamp_delta),
    }
}

fn with_origin(mut record: RawRecord, offset: i64) -> RawRecord {
    record.headers.push((
        Bytes::from_static(ORIGINAL_OFFSET_HEADER.as_bytes()),
        Some(Bytes::from(offset.to_string())),
    ));
    record
}

/// The original offset in the last record of a set-aside partition's `records` (a
/// fetch at its last offset), if it carries one.
pub(super) fn last_origin(records: Bytes) -> Option<i64> {
    let mut last = None;
    for batch in RecordBatches::new(records) {
        let Ok(batch) = batch else { break };
        if batch.is_control() {
            continue;
        }
        for record in decode_records(&batch).ok()? {
            let origin = record
                .headers
                .iter()
                .rev()
                .find(|(key, _)| key.as_ref() == ORIGINAL_OFFSET_HEADER.as_bytes())
                .and_then(|(_, value)| std::str::from_utf8(value.as_ref()?).ok()?.parse().ok());
            if origin.is_some() {
                last = origin;
            }
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[RawRecord], base_timestamp: i64) -> Bytes {
        let mut builder = BatchBuilder::new(
            Compression::None,
            Header::unstamped(Compression::None, 0),
            base_timestamp,
        )
        .unwrap();
        for (delta, r) in (0..).zip(records) {
            builder.push(delta, base_timestamp + 5, r).unwrap();
        }
        builder.finish().unwrap()
    }

    fn raw(value: &str) -> RawRecord {
        RawRecord {
            attributes: 0,
            timestamp_delta: 0,
            offset_delta: 0,
            key: None,
            value: Some(Bytes::from(value.to_string())),
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        }
    }

    #[test]
    fn the_original_offset_is_appended_and_read_back() {
        let set_aside = [with_origin(raw("a"), 100), with_origin(raw("b"), 101)];
        assert_eq!(
            set_aside[0].headers.len(),
            2,
            "the record's own header kept"
        );
        assert_eq!(last_origin(batch(&set_aside, 1_000)), Some(101));
        assert_eq!(last_origin(batch(&[raw("plain")], 1_000)), None);
        assert_eq!(last_origin(Bytes::new()), None);
    }

    #[test]
    fn a_record_keeps_its_own_timestamp() {
        let bytes = batch(&[raw("a")], 1_000);
        let view = RecordBatches::new(bytes).next().unwrap().unwrap();
        let record = &decode_records(&view).unwrap()[0];
        assert_eq!(timestamp_of(&view, record), 1_005);
    }
}
