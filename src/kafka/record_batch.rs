//! Zero-copy views of v2 record batches (magic 2): header fields at fixed offsets, and
//! building a header (the replicator's rewrite of a whole batch is `batch_rewrite`).
//!
//! A raw record set (a Fetch response's `records`) is a run of batches; [`RecordBatches`]
//! splits it into [`BatchView`]s, each a `Bytes` slice of the original buffer
//! ([`BatchSlices`] the same, borrowed, for walks that only read headers). Header
//! fields are read at fixed offsets (layout in `shared/reference/protocol.md`); records
//! are only looked into by `record_codec` and `filler`, and only where the replicator or
//! the proxy must.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
    NO_SEQUENCE,
};

/// baseOffset + batchLength: the part of a batch outside `batchLength`.
pub const LOG_OVERHEAD: usize = 12;
/// Size of the v2 header; records (or the compressed block) start here.
pub const HEADER_LEN: usize = 61;
/// Smallest legal `batchLength`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only batch format mirrorgate handles.
pub const MAGIC_V2: i8 = 2;

// Field offsets inside a batch.
pub(super) const BASE_OFFSET: usize = 0;
const LENGTH: usize = 8;
pub(super) const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
pub(super) const CRC: usize = 17;
/// The CRC-32C covers everything from the attributes to the end of the batch.
pub const CRC_START: usize = 21;
pub(super) const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
pub(super) const PRODUCER_ID: usize = 43;
pub(super) const PRODUCER_EPOCH: usize = 51;
pub(super) const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

// Attribute bits.
pub const COMPRESSION_MASK: i16 = 0x07;
pub const TIMESTAMP_TYPE_FLAG: i16 = 0x08;
pub const TRANSACTIONAL_FLAG: i16 = 0x10;
pub const CONTROL_FLAG: i16 = 0x20;
pub const DELETE_HORIZON_FLAG: i16 = 0x40;

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("record batch length {0} is below the v2 minimum of {MIN_BATCH_LENGTH}")]
    BadLength(i32),
    #[error("record batch magic {0} is not supported (only v2)")]
    UnsupportedMagic(i8),
    #[error("record batch declares {declared} bytes but {actual} were given")]
    SizeMismatch { declared: usize, actual: usize },
    #[error("unknown compression codec {0}")]
    UnknownCompression(i16),
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("control batches cannot be produced by a client")]
    ControlBatch,
    #[error("batch has {records} records for {span} offsets (holes): re-encode it with fillers")]
    NotGapFree { records: i32, span: i64 },
    #[error("negative base sequence {0} with a producer id: the broker rejects it")]
    NegativeSequence(i32),
    #[error("filler count {0} is outside 1..=i32::MAX")]
    BadFillerCount(i64),
    #[error("malformed record {index}: {reason}")]
    MalformedRecord { index: i64, reason: &'static str },
    #[error("records of one batch decompress to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("record batch declares {declared} records, more than the {limit} it may hold")]
    TooManyRecords { declared: i32, limit: usize },
    #[error("record batch declares a negative record count {0}")]
    NegativeRecordCount(i32),
    #[error("decoding the records of one batch takes more than {limit} bytes")]
    DecodeMemory { limit: usize },
    #[error("{codec:?}: {source}")]
    Compression {
        codec: Compression,
        source: std::io::Error,
    },
}

/// One whole v2 batch: a cheap, immutable view over its bytes, which are a counted
/// `Bytes` slice of the record set, or a borrowed `&[u8]` where a walk only reads
/// headers ([`BatchSlices`]) and should not count references per batch.
///
/// Invariant: `bytes` is exactly `12 + batchLength` long, `batchLength >= 49`, magic 2.
/// Accessors rely on it and never index out of range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchView<B = Bytes> {
    bytes: B,
}

impl BatchView {
    /// A view of exactly one whole batch.
    pub fn parse(bytes: Bytes) -> Result<Self, BatchError> {
        let mut batches = RecordBatches::new(bytes.clone());
        match batches.next() {
            Some(Ok(view)) if view.bytes.len() == bytes.len() => Ok(view),
            Some(Err(e)) => Err(e),
            _ => Err(BatchError::SizeMismatch {
                declared: declared_size(&bytes).unwrap_or(0),
                actual: bytes.len(),
            }),
        }
    }

    /// The whole batch, as it was on the wire.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
    /// The records block (compressed when the codec says so).
    pub fn records_payload(&self) -> Bytes {
        self.bytes.slice(HEADER_LEN.min(self.bytes.len())..)
    }
}

impl<'a> BatchView<&'a [u8]> {
    /// The whole batch, as it was on the wire.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

impl<B: AsRef<[u8]>> BatchView<B> {
    fn get<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0u8; N];
        if let Some(src) = self.bytes.as_ref().get(at..at + N) {
            out.copy_from_slice(src);
        }
        out
    }

    pub fn base_offset(&self) -> i64 {
        i64::from_be_bytes(self.get(BASE_OFFSET))
    }
    pub fn batch_length(&self) -> i32 {
        i32::from_be_bytes(self.get(LENGTH))
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        i32::from_be_bytes(self.get(PARTITION_LEADER_EPOCH))
    }
    pub fn magic(&self) -> i8 {
        i8::from_be_bytes(self.get(MAGIC))
    }
    pub fn crc(&self) -> u32 {
        u32::from_be_bytes(self.get(CRC))
    }
    pub fn attributes(&self) -> i16 {
        i16::from_be_bytes(self.get(ATTRIBUTES))
    }
    /// The codec of the records block; 5-7 are not assigned by Kafka.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        codec_from_attributes(self.attributes())
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & TIMESTAMP_TYPE_FLAG != 0 {
            TimestampType::LogAppend
        } else {
            TimestampType::Creation
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & TRANSACTIONAL_FLAG != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & CONTROL_FLAG != 0
    }
    /// Set by the log cleaner (KIP-534): `base_timestamp` then holds the delete horizon.
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes() & DELETE_HORIZON_FLAG != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        i32::from_be_bytes(self.get(LAST_OFFSET_DELTA))
    }
    pub fn base_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.get(BASE_TIMESTAMP))
    }
    pub fn max_timestamp(&self) -> i64 {
        i64::from_be_bytes(self.get(MAX_TIMESTAMP))
    }
    pub fn producer_id(&self) -> i64 {
        i64::from_be_bytes(self.get(PRODUCER_ID))
    }
    pub fn producer_epoch(&self) -> i16 {
        i16::from_be_bytes(self.get(PRODUCER_EPOCH))
    }
    pub fn base_sequence(&self) -> i32 {
        i32::from_be_bytes(self.get(BASE_SEQUENCE))
    }
    pub fn records_count(&self) -> i32 {
        i32::from_be_bytes(self.get(RECORDS_COUNT))
    }
    /// Offset of the last offset the batch covers, whether or not a record is left there.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .saturating_add(i64::from(self.last_offset_delta()))
    }
    /// Where the next fetch starts: consumers advance here even past an empty batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }
    pub fn verify_crc(&self) -> bool {
        crc32c::crc32c(self.crc_region()) == self.crc()
    }

    /// `verify_crc` as an error that gives both CRCs.
    pub fn check_crc(&self) -> Result<(), BatchError> {
        let computed = crc32c::crc32c(self.crc_region());
        match computed == self.crc() {
            true => Ok(()),
            false => Err(BatchError::CrcMismatch {
                stored: self.crc(),
                computed,
            }),
        }
    }

    /// True when every offset in `[base_offset, last_offset]` holds a record, which is
    /// what a broker accepts on Produce. Compaction removes records but keeps the batch's
    /// offset range, so a cleaned batch fails this. It is a header-only check: for a
    /// compressed batch nothing more is known without decompressing, and nothing more is
    /// needed, because records keep their order and distinct offset deltas inside a batch.
    pub fn is_gap_free(&self) -> bool {
        let count = self.records_count();
        count > 0 && i64::from(count) == i64::from(self.last_offset_delta()) + 1
    }

    fn crc_region(&self) -> &[u8] {
        self.bytes.as_ref().get(CRC_START..).unwrap_or_default()
    }
}

fn codec_from_attributes(attributes: i16) -> Result<Compression, BatchError> {
    Ok(match attributes & COMPRESSION_MASK {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(BatchError::UnknownCompression(other)),
    })
}

/// `12 + batchLength` when the length field is there and not negative.
fn declared_size(bytes: &[u8]) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(LENGTH..LOG_OVERHEAD)?.try_into().ok()?;
    let len = usize::try_from(i32::from_be_bytes(raw)).ok()?;
    Some(LOG_OVERHEAD + len)
}

/// Iterator over the batches of a raw record set.
///
/// A batch cut off at the end (the broker stops at the fetch size limit) ends the
/// iteration without an error; [`RecordBatches::leftover`] then tells how many bytes
/// were not consumed. A malformed batch yields one error, then the iterator is done.
#[derive(Debug, Clone)]
pub struct RecordBatches {
    buf: Bytes,
    pos: usize,
    done: bool,
}

impl RecordBatches {
    pub fn new(records: Bytes) -> Self {
        Self {
            buf: records,
            pos: 0,
            done: false,
        }
    }

    /// Bytes not yielded as batches: the partial tail (or the malformed batch and what
    /// follows it). Final once `next` has returned `None`.
    pub fn leftover(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

impl Iterator for RecordBatches {
    type Item = Result<BatchView, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        Some(next_batch(rest, &mut self.done)?.map(|total| {
            let bytes = self.buf.slice(self.pos..self.pos + total);
            self.pos += total;
            BatchView { bytes }
        }))
    }
}

/// The size of the whole batch that starts `rest`. The end (nothing left, or a batch
/// cut off by the fetch size limit) and a malformed batch set `done`: the iteration
/// stops there.
fn next_batch(rest: &[u8], done: &mut bool) -> Option<Result<usize, BatchError>> {
    if *done {
        return None;
    }
    let next = whole_batch_len(rest);
    if !matches!(next, Some(Ok(_))) {
        *done = true;
    }
    next
}

fn whole_batch_len(rest: &[u8]) -> Option<Result<usize, BatchError>> {
    let raw_len = rest.get(LENGTH..LOG_OVERHEAD)?;
    let len = i32::from_be_bytes([raw_len[0], raw_len[1], raw_len[2], raw_len[3]]);
    if len < MIN_BATCH_LENGTH {
        return Some(Err(BatchError::BadLength(len)));
    }
    // Check the magic as soon as it is visible, so that an old-format log fails
    // loudly instead of looking like an endless partial batch.
    if let Some(&magic) = rest.get(MAGIC) {
        if magic as i8 != MAGIC_V2 {
            return Some(Err(BatchError::UnsupportedMagic(magic as i8)));
        }
    }
    // len >= 49, so this fits usize on every platform Rust supports.
    let total = LOG_OVERHEAD + len as usize;
    (rest.len() >= total).then_some(Ok(total))
}

/// The batches of a borrowed record set, as [`RecordBatches`] splits them, without a
/// reference count per batch: for walks that read headers and rarely keep a batch.
#[derive(Debug, Clone)]
pub struct BatchSlices<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> BatchSlices<'a> {
    pub fn new(records: &'a [u8]) -> Self {
        Self {
            rest: records,
            done: false,
        }
    }
}

impl<'a> Iterator for BatchSlices<'a> {
    type Item = Result<BatchView<&'a [u8]>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(next_batch(self.rest, &mut self.done)?.map(|total| {
            let (bytes, rest) = self.rest.split_at(total);
            self.rest = rest;
            BatchView { bytes }
        }))
    }
}

/// Header fields of a batch being built; length and CRC are filled by [`seal`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl Header {
    /// A header for a batch that a producer without a producer id would send.
    pub fn unstamped(codec: Compression, base_offset: i64) -> Self {
        Self {
            base_offset,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            attributes: codec as i16,
            last_offset_delta: 0,
            base_timestamp: kafka_protocol::records::NO_TIMESTAMP,
            max_timestamp: kafka_protocol::records::NO_TIMESTAMP,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
            records_count: 0,
        }
    }

    /// Writes every field but batchLength and CRC into the first 61 bytes of `buf`.
    pub fn write(&self, buf: &mut [u8]) {
        put(buf, BASE_OFFSET, self.base_offset.to_be_bytes());
        put(
            buf,
            PARTITION_LEADER_EPOCH,
            self.partition_leader_epoch.to_be_bytes(),
        );
        put(buf, MAGIC, MAGIC_V2.to_be_bytes());
        put(buf, ATTRIBUTES, self.attributes.to_be_bytes());
        put(buf, LAST_OFFSET_DELTA, self.last_offset_delta.to_be_bytes());
        put(buf, BASE_TIMESTAMP, self.base_timestamp.to_be_bytes());
        put(buf, MAX_TIMESTAMP, self.max_timestamp.to_be_bytes());
        put(buf, PRODUCER_ID, self.producer_id.to_be_bytes());
        put(buf, PRODUCER_EPOCH, self.producer_epoch.to_be_bytes());
        put(buf, BASE_SEQUENCE, self.base_sequence.to_be_bytes());
        put(buf, RECORDS_COUNT, self.records_count.to_be_bytes());
    }
}

pub(super) fn put<const N: usize>(buf: &mut [u8], at: usize, value: [u8; N]) {
    if let Some(dst) = buf.get_mut(at..at + N) {
        dst.copy_from_slice(&value);
    }
}

/// Fills batchLength and the CRC of a complete batch (header + records) in place.
pub(crate) fn seal(buf: &mut [u8]) -> Result<(), BatchError> {
    let len = buf.len().saturating_sub(LOG_OVERHEAD);
    let len = i32::try_from(len).map_err(|_| BatchError::TooLarge {
        limit: i32::MAX as usize,
    })?;
    put(buf, LENGTH, len.to_be_bytes());
    let crc = crc32c::crc32c(buf.get(CRC_START..).unwrap_or_default());
    put(buf, CRC, crc.to_be_bytes());
    Ok(())
}

/// The batch the proxy puts in a Fetch response in place of a filler batch: same base
/// offset, last offset delta, timestamps, producer fields and partition leader epoch,
/// zero records, codec none (as the broker writes empty batches), valid CRC. Java
/// clients and librdkafka move their position to `last_offset + 1` past it, so the
/// hidden offsets are skipped without a gap in what consumers read.
pub fn empty_batch_like(batch: &BatchView) -> Bytes {
    let mut out = BytesMut::zeroed(HEADER_LEN);
    Header {
        base_offset: batch.base_offset(),
        partition_leader_epoch: batch.partition_leader_epoch(),
        attributes: batch.attributes() & !COMPRESSION_MASK,
        last_offset_delta: batch.last_offset_delta(),
        base_timestamp: batch.base_timestamp(),
        max_timestamp: batch.max_timestamp(),
        producer_id: batch.producer_id(),
        producer_epoch: batch.producer_epoch(),
        base_sequence: batch.base_sequence(),
        records_count: 0,
    }
    .write(&mut out);
    // 61 bytes always fit an i32 length.
    let _ = seal(&mut out);
    out.freeze()
}

/// The base sequence of the batch after one of `records` records that started at
/// `base_sequence`. Sequences wrap from i32::MAX to 0, as brokers expect.
pub fn next_sequence(base_sequence: i32, records: i32) -> i32 {
    let next = (i64::from(base_sequence) + i64::from(records)).rem_euclid(1i64 << 31);
    // rem_euclid by 2^31 always fits an i32.
    i32::try_from(next).unwrap_or(0)
}
