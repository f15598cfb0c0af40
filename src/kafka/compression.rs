//! Streaming (de)compression of a batch's records block in the forms Kafka clients
//! write: gzip, xerial-framed snappy, LZ4 frames with independent blocks, zstd.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;

/// Most bytes of records one batch may decompress to, for every codec. Far above any
/// sane `max.message.bytes` times a realistic compression ratio.
pub const MAX_DECODED_BYTES: usize = 256 * 1024 * 1024;

/// Snappy cannot expand input by more than ~22x (3-byte copy tag for 64 bytes), so a
/// block claiming more is corrupt; checked before allocating its output.
const SNAPPY_MAX_RATIO: usize = 32;
const SNAPPY_BLOCK: usize = 32 * 1024;
/// Header of xerial-framed snappy, the form Java clients write.
const XERIAL_MAGIC: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
const ZSTD_LEVEL: i32 = 3;

/// Xerial-framed snappy (or one raw snappy block, which Java also accepts), block by block.
pub(crate) struct SnappyReader {
    input: Bytes,
    framed: bool,
    block: Vec<u8>,
    block_pos: usize,
    /// Most bytes one block may claim (the reader's limit).
    limit: usize,
}

impl SnappyReader {
    fn new(input: Bytes, limit: usize) -> Self {
        let framed = input.starts_with(XERIAL_MAGIC);
        let input = if framed {
            input.slice(XERIAL_MAGIC.len()..)
        } else {
            input
        };
        Self {
            input,
            framed,
            block: Vec::new(),
            block_pos: 0,
            limit,
        }
    }

    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            if self.input.len() < 4 {
                return Err(invalid("truncated snappy block length"));
            }
            let len = self.input.get_u32() as usize;
            if len > self.input.len() {
                return Err(invalid("truncated snappy block"));
            }
            self.input.split_to(len)
        } else {
            std::mem::take(&mut self.input)
        };
        let claimed = snap::raw::decompress_len(&compressed).map_err(io::Error::other)?;
        let cap = compressed
            .len()
            .saturating_mul(SNAPPY_MAX_RATIO)
            .saturating_add(1024);
        if claimed > cap.min(self.limit).min(MAX_DECODED_BYTES) {
            return Err(invalid("snappy block claims an impossible size"));
        }
        self.block.resize(claimed, 0);
        snap::raw::Decoder::new()
            .decompress(&compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.block_pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.block_pos >= self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let avail = self.block.get(self.block_pos..).unwrap_or_default();
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.block_pos += n;
        Ok(n)
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The decompressor of one codec.
enum Decompressor {
    Gzip(Box<flate2::read::MultiGzDecoder<bytes::buf::Reader<Bytes>>>),
    Snappy(SnappyReader),
    Lz4(Box<lz4::Decoder<bytes::buf::Reader<Bytes>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, bytes::buf::Reader<Bytes>>>),
}

/// zstd's own default limit, made explicit: a frame may ask for a window of at most
/// 128 MiB (Kafka's zstd level 22 uses that); its pages are touched only as output
/// arrives, and output is capped by the reader's limit.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// A decompressing reader over a compressed records block that fails (see
/// [`is_over_limit`]) once it has produced more than its limit, whatever the codec: a
/// compression bomb stops there instead of filling memory or burning CPU.
pub(crate) struct PayloadReader {
    inner: Decompressor,
    produced: usize,
    limit: usize,
}

/// The error a [`PayloadReader`] returns past its limit.
#[derive(Debug, thiserror::Error)]
#[error("decompressed records exceed {0} bytes")]
struct OverLimit(usize);

/// Whether `error` is a [`PayloadReader`] passing its limit.
pub(crate) fn is_over_limit(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<OverLimit>().is_some())
}

impl PayloadReader {
    /// A reader of at most `limit` decompressed bytes.
    pub fn new(codec: Compression, payload: Bytes, limit: usize) -> io::Result<Self> {
        let inner = match codec {
            Compression::Gzip => Decompressor::Gzip(Box::new(flate2::read::MultiGzDecoder::new(
                payload.reader(),
            ))),
            Compression::Snappy => Decompressor::Snappy(SnappyReader::new(payload, limit)),
            Compression::Lz4 => Decompressor::Lz4(Box::new(lz4::Decoder::new(payload.reader())?)),
            Compression::Zstd => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(payload.reader())?;
                decoder.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Decompressor::Zstd(Box::new(decoder))
            }
            Compression::None => return Err(invalid("not a compressed payload")),
        };
        Ok(Self {
            inner,
            produced: 0,
            limit,
        })
    }
}

impl Read for PayloadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is asked for, so reaching it exactly is not an error.
        let room = self.limit.saturating_sub(self.produced).saturating_add(1);
        let len = buf.len().min(room);
        let buf = &mut buf[..len];
        let n = match &mut self.inner {
            Decompressor::Gzip(r) => r.read(buf),
            Decompressor::Snappy(r) => r.read(buf),
            Decompressor::Lz4(r) => r.read(buf),
            Decompressor::Zstd(r) => r.read(buf),
        }?;
        self.produced = self.produced.saturating_add(n);
        if self.produced > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                OverLimit(self.limit),
            ));
        }
        Ok(n)
    }
}

/// Xerial-framed snappy output, as Java producers write it.
pub(crate) struct SnappyWriter {
    out: Vec<u8>,
    pending: Vec<u8>,
}

impl SnappyWriter {
    fn flush_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let block = snap::raw::Encoder::new()
            .compress_vec(&self.pending)
            .map_err(io::Error::other)?;
        let len = u32::try_from(block.len()).map_err(|_| invalid("snappy block too large"))?;
        self.out.extend_from_slice(&len.to_be_bytes());
        self.out.extend_from_slice(&block);
        self.pending.clear();
        Ok(())
    }
}

impl Write for SnappyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(SNAPPY_BLOCK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == SNAPPY_BLOCK {
            self.flush_block()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A compressing writer that appends to the batch buffer after its header.
pub(crate) enum PayloadWriter {
    Plain(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Snappy(SnappyWriter),
    Lz4(lz4::Encoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl PayloadWriter {
    pub fn new(codec: Compression, mut out: Vec<u8>) -> io::Result<Self> {
        Ok(match codec {
            Compression::None => Self::Plain(out),
            Compression::Gzip => Self::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::Snappy => {
                out.extend_from_slice(XERIAL_MAGIC);
                Self::Snappy(SnappyWriter {
                    out,
                    pending: Vec::with_capacity(SNAPPY_BLOCK),
                })
            }
            // Kafka reads only independent LZ4 blocks; the crate's default is linked.
            Compression::Lz4 => Self::Lz4(
                lz4::EncoderBuilder::new()
                    .block_mode(lz4::BlockMode::Independent)
                    .build(out)?,
            ),
            Compression::Zstd => Self::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
        })
    }

    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Self::Plain(out) => Ok(out),
            Self::Gzip(w) => w.finish(),
            Self::Snappy(mut w) => {
                w.flush_block()?;
                Ok(w.out)
            }
            Self::Lz4(w) => {
                let (out, result) = w.finish();
                result.map(|()| out)
            }
            Self::Zstd(w) => w.finish(),
        }
    }
}

impl Write for PayloadWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(w) => w.write(buf),
            Self::Gzip(w) => w.write(buf),
            Self::Snappy(w) => w.write(buf),
            Self::Lz4(w) => w.write(buf),
            Self::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(w) => w.flush(),
            Self::Gzip(w) => w.flush(),
            Self::Snappy(w) => w.flush(),
            Self::Lz4(w) => w.flush(),
            Self::Zstd(w) => w.flush(),
        }
    }
}
