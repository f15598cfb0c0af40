//! The records inside a v2 batch: varint codec, a bounded streaming reader and a batch
//! builder (compression in `compression`). Used only off the fast path (LogAppendTime batches,
//! compaction holes, fillers, filler detection).
//!
//! Written here rather than taken from `kafka_protocol::records` because that decoder
//! reserves `recordsCount` entries up front and decompresses whole batches without a
//! limit: a corrupt count or a compression bomb from the network could exhaust memory.
//! Its encoder also picks batch boundaries and base timestamps itself.

use std::io::{self, BufWriter, Read, Write};

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, TimestampType};

use super::compression::{is_over_limit, PayloadReader, PayloadWriter};
use super::record_batch::{seal, BatchError, BatchView, Header, COMPRESSION_MASK, HEADER_LEN};

/// Most bytes of records one batch may decompress to, and so the most memory
/// [`decode_records`] may hold for one batch.
pub use super::compression::MAX_DECODED_BYTES;

/// A CreateTime record without a producer id or transaction, as a plain producer
/// writes it, for `kafka_protocol`'s batch encoder.
pub fn plain_record(
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// The shortest record on the wire: length, attributes, timestamp delta, offset delta,
/// null key, null value and header count, one byte each.
pub const MIN_RECORD_LEN: usize = 7;

/// Most records [`decode_records`] accepts in one batch. At Kafka's default
/// `max.message.bytes` (1 MiB) an uncompressed batch holds at most ~150,000 records
/// (1 MiB / [`MIN_RECORD_LEN`]), and Java producers close batches at `batch.size`
/// (16 KiB by default); 2^19 leaves room for larger limits and compression while the
/// decoded records (~100 bytes each before their data) stay around 50 MiB.
pub const MAX_RECORDS_PER_BATCH: usize = 1 << 19;

/// [`decode_bound`]: decoding may take this many times the batch's payload. Uncompressed
/// records cost at most ~32 times their bytes decoded (a 2-byte header becomes a
/// 64-byte pair); compressed ones add their compression ratio.
const DECODE_EXPANSION: usize = 256;
/// [`decode_bound`] of a small batch.
const MIN_DECODE_BOUND: usize = 64 * 1024;
/// Memory of one decoded record besides its `Vec` slot: the shared allocation its key
/// and value slices point into.
const RECORD_EXTRA: usize = 32;
const HEADER_COST: usize = std::mem::size_of::<(Bytes, Option<Bytes>)>();

const STREAM_BUF: usize = 16 * 1024;

/// One record of a batch; byte fields are slices of the (decompressed) records block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Unused by Kafka so far; carried over as found.
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

fn malformed(index: i64, reason: &'static str) -> BatchError {
    BatchError::MalformedRecord { index, reason }
}

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}
fn unzigzag32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}
fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_uvarint(out, u64::from(zigzag32(v)));
}
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag64(v));
}

/// Reads an unsigned varint of at most `max_bytes` bytes (5 for varint, 10 for varlong).
fn get_uvarint(mut next: impl FnMut() -> Option<u8>, max_bytes: u32) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..max_bytes {
        let b = next()?;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A cursor over a record body that slices, never copies.
struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }
    fn varint(&mut self) -> Option<i32> {
        // Truncating to 32 bits matches how Java reads a 5-byte varint.
        get_uvarint(|| self.byte(), 5).map(|v| unzigzag32(v as u32))
    }
    fn varlong(&mut self) -> Option<i64> {
        get_uvarint(|| self.byte(), 10).map(unzigzag64)
    }
    fn take(&mut self, len: usize) -> Option<Bytes> {
        let end = self.pos.checked_add(len)?;
        if end > self.buf.len() {
            return None;
        }
        let out = self.buf.slice(self.pos..end);
        self.pos = end;
        Some(out)
    }
    /// Length-prefixed bytes; length -1 is null.
    fn nullable(&mut self) -> Option<Option<Bytes>> {
        match self.varint()? {
            -1 => Some(None),
            len => Some(Some(self.take(usize::try_from(len).ok()?)?)),
        }
    }
}

/// Decodes one record body (everything after its length varint), with at most
/// `max_headers` headers (more is [`BatchError::DecodeMemory`] with `limit`).
pub(crate) fn parse_record(
    body: Bytes,
    index: i64,
    max_headers: usize,
    limit: usize,
) -> Result<RawRecord, BatchError> {
    let len = body.len();
    let mut c = Cursor { buf: body, pos: 0 };
    let bad = |reason| malformed(index, reason);
    let attributes = c.byte().ok_or(bad("truncated attributes"))? as i8;
    let timestamp_delta = c.varlong().ok_or(bad("bad timestamp delta"))?;
    let offset_delta = c.varint().ok_or(bad("bad offset delta"))?;
    let key = c.nullable().ok_or(bad("bad key"))?;
    let value = c.nullable().ok_or(bad("bad value"))?;
    let count = c.varint().ok_or(bad("bad header count"))?;
    let count = usize::try_from(count).map_err(|_| bad("negative header count"))?;
    if count > max_headers {
        return Err(BatchError::DecodeMemory { limit });
    }
    // Each header takes at least two bytes: never reserve more than the body can hold.
    let mut headers = Vec::with_capacity(count.min(len / 2));
    for _ in 0..count {
        let key_len = c.varint().ok_or(bad("bad header key length"))?;
        let key_len = usize::try_from(key_len).map_err(|_| bad("null header key"))?;
        let key = c.take(key_len).ok_or(bad("truncated header key"))?;
        let value = c.nullable().ok_or(bad("bad header value"))?;
        headers.push((key, value));
    }
    if c.pos != len {
        return Err(bad("record length does not match its fields"));
    }
    Ok(RawRecord {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

fn put_nullable(out: &mut Vec<u8>, bytes: Option<&[u8]>) -> Result<(), BatchError> {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            let len = i32::try_from(b.len()).map_err(|_| BatchError::TooLarge {
                limit: i32::MAX as usize,
            })?;
            put_varint(out, len);
            out.extend_from_slice(b);
        }
    }
    Ok(())
}

/// Appends one record (length varint + body) to `out` with the given deltas and the
/// rest taken from `record`; `body` is scratch space.
pub(crate) fn encode_record(
    out: &mut Vec<u8>,
    body: &mut Vec<u8>,
    record: &RawRecord,
    timestamp_delta: i64,
    offset_delta: i32,
) -> Result<(), BatchError> {
    let too_large = || BatchError::TooLarge {
        limit: i32::MAX as usize,
    };
    body.clear();
    body.push(record.attributes as u8);
    put_varlong(body, timestamp_delta);
    put_varint(body, offset_delta);
    put_nullable(body, record.key.as_deref())?;
    put_nullable(body, record.value.as_deref())?;
    put_varint(
        body,
        i32::try_from(record.headers.len()).map_err(|_| too_large())?,
    );
    for (key, value) in &record.headers {
        put_nullable(body, Some(key))?;
        put_nullable(body, value.as_deref())?;
    }
    put_varint(out, i32::try_from(body.len()).map_err(|_| too_large())?);
    out.extend_from_slice(body);
    Ok(())
}

/// A sliding window over the decompressed records, refilled from the decompressor.
/// Grows only as data actually arrives, so a record that claims a huge length cannot
/// make it allocate more than about twice what the stream really holds.
pub(crate) struct StreamWindow {
    reader: PayloadReader,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl StreamWindow {
    /// Reads until `need` bytes are buffered or the stream ends.
    fn fill(&mut self, need: usize) -> io::Result<()> {
        while self.end - self.start < need {
            if self.end == self.buf.len() {
                if self.start > 0 {
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                } else {
                    let grown = (self.buf.len() * 2).max(STREAM_BUF);
                    self.buf.resize(grown, 0);
                }
                continue;
            }
            let n = self.reader.read(&mut self.buf[self.end..])?;
            if n == 0 {
                return Ok(());
            }
            self.end += n;
        }
        Ok(())
    }
}

enum Source {
    /// Uncompressed records: bodies are zero-copy slices.
    Plain(Cursor),
    Stream(Box<StreamWindow>),
}

impl Source {
    fn fill(&mut self, need: usize) -> io::Result<()> {
        match self {
            Self::Plain(_) => Ok(()),
            Self::Stream(s) => s.fill(need),
        }
    }
    fn window(&self) -> &[u8] {
        match self {
            Self::Plain(c) => c.buf.get(c.pos..).unwrap_or_default(),
            Self::Stream(s) => s.buf.get(s.start..s.end).unwrap_or_default(),
        }
    }
    fn consume(&mut self, n: usize) {
        match self {
            Self::Plain(c) => c.pos = (c.pos + n).min(c.buf.len()),
            Self::Stream(s) => s.start = (s.start + n).min(s.end),
        }
    }
    /// `range` of the window as `Bytes`: a slice when uncompressed, else a copy.
    fn bytes(&self, range: std::ops::Range<usize>) -> Bytes {
        match self {
            Self::Plain(c) => c.buf.slice(c.pos + range.start..c.pos + range.end),
            Self::Stream(_) => Bytes::copy_from_slice(self.window().get(range).unwrap_or_default()),
        }
    }
}

/// What [`RecordReader::next_body`] found.
pub(crate) enum Body<T> {
    /// All `recordsCount` records were read.
    End,
    /// The next record is longer than the caller's limit; it was not read.
    Oversized,
    Record(T),
}

/// Streams the records of one batch with bounded memory: the decompressor's state and
/// a window that holds at least one record.
pub(crate) struct RecordReader {
    source: Source,
    codec: Compression,
    left: i32,
    index: i64,
    budget: usize,
    /// The budget at the start, named in the error when a record exceeds what is left.
    limit: usize,
}

impl RecordReader {
    /// `budget` caps the total record bytes this reader will hand out.
    pub fn new(batch: &BatchView, budget: usize) -> Result<Self, BatchError> {
        let codec = batch.compression()?;
        let payload = batch.records_payload();
        let source = match codec {
            Compression::None => Source::Plain(Cursor {
                buf: payload,
                pos: 0,
            }),
            _ => Source::Stream(Box::new(StreamWindow {
                reader: PayloadReader::new(codec, payload, MAX_DECODED_BYTES)
                    .map_err(|source| BatchError::Compression { codec, source })?,
                buf: Vec::new(),
                start: 0,
                end: 0,
            })),
        };
        Ok(Self {
            source,
            codec,
            left: batch.records_count().max(0),
            index: 0,
            budget,
            limit: budget,
        })
    }

    fn fill(&mut self, need: usize) -> Result<(), BatchError> {
        let codec = self.codec;
        self.source.fill(need).map_err(|source| {
            if is_over_limit(&source) {
                BatchError::TooLarge {
                    limit: MAX_DECODED_BYTES,
                }
            } else {
                BatchError::Compression { codec, source }
            }
        })
    }

    /// Hands the next record's body to `f` in place, unless it is longer than `max_len`.
    fn next_with<T>(
        &mut self,
        max_len: usize,
        f: impl FnOnce(&Source, std::ops::Range<usize>) -> T,
    ) -> Result<Body<T>, BatchError> {
        if self.left == 0 {
            return Ok(Body::End);
        }
        let index = self.index;
        self.fill(5)?;
        let mut header = 0;
        let window = self.source.window();
        let len = get_uvarint(
            || {
                let b = window.get(header).copied();
                header += 1;
                b
            },
            5,
        )
        .map(|v| unzigzag32(v as u32))
        .ok_or(malformed(index, "truncated record length"))?;
        let len = usize::try_from(len).map_err(|_| malformed(index, "negative record length"))?;
        if len > max_len {
            return Ok(Body::Oversized);
        }
        if len > self.budget {
            return Err(BatchError::DecodeMemory { limit: self.limit });
        }
        self.fill(header + len)?;
        if self.source.window().len() < header + len {
            return Err(malformed(index, "truncated record"));
        }
        let out = f(&self.source, header..header + len);
        self.source.consume(header + len);
        self.budget -= len;
        self.left -= 1;
        self.index += 1;
        Ok(Body::Record(out))
    }

    /// The next record's body as `Bytes` (zero-copy when uncompressed).
    pub fn next_body(&mut self, max_len: usize) -> Result<Body<Bytes>, BatchError> {
        self.next_with(max_len, |source, range| source.bytes(range))
    }

    /// Whether the next record's body passes `test`, checked in place without copying.
    pub fn next_matches(
        &mut self,
        max_len: usize,
        test: impl FnOnce(&[u8]) -> bool,
    ) -> Result<Body<bool>, BatchError> {
        self.next_with(max_len, |source, range| {
            test(source.window().get(range).unwrap_or_default())
        })
    }

    /// The next record, with at most `max_headers` headers (else
    /// [`BatchError::DecodeMemory`] naming `limit`).
    fn next_record(
        &mut self,
        max_headers: usize,
        limit: usize,
    ) -> Result<Option<RawRecord>, BatchError> {
        let index = self.index;
        match self.next_body(usize::MAX)? {
            Body::Record(body) => parse_record(body, index, max_headers, limit).map(Some),
            _ => Ok(None),
        }
    }

    /// Errors when bytes remain after the declared records, as Java consumers do.
    pub fn expect_end(&mut self) -> Result<(), BatchError> {
        self.fill(1)?;
        if !self.source.window().is_empty() {
            return Err(malformed(
                self.index,
                "bytes left after the declared records",
            ));
        }
        Ok(())
    }
}

/// The part of a record body after attributes, timestamp delta and offset delta:
/// key, value and headers, which identify a filler.
pub(crate) fn record_tail(body: &[u8]) -> Option<&[u8]> {
    let mut pos = 1; // attributes
    let mut next = || {
        let b = body.get(pos).copied();
        pos += 1;
        b
    };
    get_uvarint(&mut next, 10)?;
    get_uvarint(&mut next, 5)?;
    body.get(pos..)
}

/// Most records a batch may declare for [`decode_records`]: [`MAX_RECORDS_PER_BATCH`],
/// and no more than its (decompressed) bytes can hold at [`MIN_RECORD_LEN`] each.
pub fn max_records(batch: &BatchView) -> usize {
    let bytes = match batch.compression() {
        Ok(Compression::None) => batch.records_payload().len(),
        _ => MAX_DECODED_BYTES,
    };
    (bytes / MIN_RECORD_LEN).min(MAX_RECORDS_PER_BATCH)
}

/// The most memory [`decode_records`] may hold for `batch` (it fails past it): what a
/// caller reserves from the link's in-flight budget before decoding.
pub fn decode_bound(batch: &BatchView) -> usize {
    batch
        .records_payload()
        .len()
        .saturating_mul(DECODE_EXPANSION)
        .clamp(MIN_DECODE_BOUND, MAX_DECODED_BYTES)
}

/// Every record of a batch, with the declared count and exact length enforced: the
/// count is at most [`max_records`], and the records (their copied bytes, structs and
/// headers) take at most [`decode_bound`] of memory; both are checked before
/// allocating. Decompression stops at [`MAX_DECODED_BYTES`].
pub fn decode_records(batch: &BatchView) -> Result<Vec<RawRecord>, BatchError> {
    let limit = decode_bound(batch);
    let declared = batch.records_count();
    let count = usize::try_from(declared).map_err(|_| BatchError::NegativeRecordCount(declared))?;
    let max = max_records(batch);
    if count > max {
        return Err(BatchError::TooManyRecords {
            declared,
            limit: max,
        });
    }
    let record_cost = std::mem::size_of::<RawRecord>() + RECORD_EXTRA;
    let mut used = count.saturating_mul(record_cost);
    if used > limit {
        return Err(BatchError::DecodeMemory { limit });
    }
    let compressed = !matches!(batch.compression()?, Compression::None);
    // Record bytes are counted by the reader; uncompressed ones are slices, not copies.
    let mut reader = RecordReader::new(batch, limit)?;
    let mut records = Vec::with_capacity(count);
    loop {
        reader.budget = limit - used;
        let max_headers = reader.budget / HEADER_COST;
        let before = reader.budget;
        let Some(record) = reader.next_record(max_headers, limit)? else {
            break;
        };
        let copied = if compressed {
            before - reader.budget
        } else {
            0
        };
        used = used
            .saturating_add(copied)
            .saturating_add(record.headers.capacity() * HEADER_COST);
        if used > limit {
            return Err(BatchError::DecodeMemory { limit });
        }
        records.push(record);
    }
    reader.expect_end()?;
    Ok(records)
}

/// Builds one v2 batch record by record, streaming through the compressor.
pub(crate) struct BatchBuilder {
    codec: Compression,
    header: Header,
    writer: BufWriter<PayloadWriter>,
    record: Vec<u8>,
    body: Vec<u8>,
    max_timestamp: Option<i64>,
}

impl BatchBuilder {
    /// `header` supplies everything but the record-derived fields and the codec (its
    /// other attribute flags are kept); record timestamps are stored relative to
    /// `base_timestamp`.
    pub fn new(
        codec: Compression,
        header: Header,
        base_timestamp: i64,
    ) -> Result<Self, BatchError> {
        let mut header = header;
        header.attributes = (header.attributes & !COMPRESSION_MASK) | codec as i16;
        header.base_timestamp = base_timestamp;
        header.records_count = 0;
        let writer = PayloadWriter::new(codec, vec![0u8; HEADER_LEN])
            .map_err(|source| BatchError::Compression { codec, source })?;
        Ok(Self {
            codec,
            header,
            writer: BufWriter::with_capacity(64 * 1024, writer),
            record: Vec::with_capacity(256),
            body: Vec::with_capacity(256),
            max_timestamp: None,
        })
    }

    /// Appends `record` with this offset delta and absolute timestamp.
    pub fn push(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        record: &RawRecord,
    ) -> Result<(), BatchError> {
        self.record.clear();
        let timestamp_delta = timestamp.wrapping_sub(self.header.base_timestamp);
        encode_record(
            &mut self.record,
            &mut self.body,
            record,
            timestamp_delta,
            offset_delta,
        )?;
        self.write_encoded(offset_delta, timestamp)
    }

    fn write_encoded(&mut self, offset_delta: i32, timestamp: i64) -> Result<(), BatchError> {
        let count = self
            .header
            .records_count
            .checked_add(1)
            .ok_or(BatchError::TooLarge {
                limit: i32::MAX as usize,
            })?;
        self.writer
            .write_all(&self.record)
            .map_err(|source| BatchError::Compression {
                codec: self.codec,
                source,
            })?;
        self.header.records_count = count;
        self.header.last_offset_delta = self.header.last_offset_delta.max(offset_delta);
        self.max_timestamp = Some(self.max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
        Ok(())
    }

    pub fn finish(mut self) -> Result<Bytes, BatchError> {
        let codec = self.codec;
        let io = |source| BatchError::Compression { codec, source };
        let writer = self.writer.into_inner().map_err(|e| io(e.into_error()))?;
        let mut out = writer.finish().map_err(io)?;
        self.header.max_timestamp = self.max_timestamp.unwrap_or(self.header.base_timestamp);
        self.header.write(&mut out);
        seal(&mut out)?;
        Ok(Bytes::from(out))
    }
}
