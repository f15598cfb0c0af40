//! Streaming (de)compression of a batch's records block in the forms Kafka clients
//! write: gzip, xerial-framed snappy, LZ4 frames with independent blocks, zstd.

use std::io::{self, Read, Write};

use bytes::{Buf, Bytes};
use kafka_protocol::records::Compression;

use super::record_codec::MAX_DECODED_BYTES;

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
}

impl SnappyReader {
    fn new(input: Bytes) -> Self {
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
        if claimed > cap.min(MAX_DECODED_BYTES) {
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

/// A decompressing reader over a compressed records block.
pub(crate) enum PayloadReader {
    Gzip(Box<flate2::read::MultiGzDecoder<bytes::buf::Reader<Bytes>>>),
    Snappy(SnappyReader),
    Lz4(Box<lz4::Decoder<bytes::buf::Reader<Bytes>>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, bytes::buf::Reader<Bytes>>>),
}

impl PayloadReader {
    pub fn new(codec: Compression, payload: Bytes) -> io::Result<Self> {
        Ok(match codec {
            Compression::Gzip => Self::Gzip(Box::new(flate2::read::MultiGzDecoder::new(
                payload.reader(),
            ))),
            Compression::Snappy => Self::Snappy(SnappyReader::new(payload)),
            Compression::Lz4 => Self::Lz4(Box::new(lz4::Decoder::new(payload.reader())?)),
            Compression::Zstd => Self::Zstd(Box::new(zstd::stream::read::Decoder::with_buffer(
                payload.reader(),
            )?)),
            Compression::None => return Err(invalid("not a compressed payload")),
        })
    }
}

impl Read for PayloadReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Gzip(r) => r.read(buf),
            Self::Snappy(r) => r.read(buf),
            Self::Lz4(r) => r.read(buf),
            Self::Zstd(r) => r.read(buf),
        }
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
