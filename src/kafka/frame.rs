//! Kafka wire framing: a 4-byte signed big-endian length, then that many bytes.
//!
//! Frames are split off one read buffer as `Bytes` so forwarding them is zero-copy; the
//! length prefix stays attached so an unchanged frame is written back exactly as read.

use std::future::Future;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiKey;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::frame_budget::FrameBudget;

/// Bytes of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// api_key + api_version + correlation_id: what a proxy must see of every request.
const MIN_REQUEST_BODY: usize = 8;
/// A response carries at least its correlation id.
pub const MIN_RESPONSE_BODY: usize = 4;
const READ_CHUNK: usize = 16 * 1024;
/// A read into an empty buffer: what an idle connection holds while it waits. Small
/// requests and responses fit; a larger frame's length is known after it, so the next
/// read is sized for the rest.
const FIRST_READ: usize = 2048;
/// Frames up to this size leave no buffer behind when nothing follows them (an idle
/// connection holds almost nothing). After a larger frame the buffer is kept, so the
/// next large frame reuses its memory instead of faulting in fresh pages.
const RELEASE_AFTER_MAX: usize = 64 * 1024;
/// Largest single read into a budgeted reader: big enough that a large frame costs few
/// syscalls, small enough that the budget is taken about as fast as bytes arrive.
const MAX_BUDGETED_READ: usize = 1024 * 1024;
/// Least a budgeted reader asks for once a frame's length is known: the rest of that
/// frame and whatever pipelined frames follow it, so a client sending many requests
/// back to back costs a read per several of them (and the upstream a write per
/// several), not one each. Taken from the budget only while it has room.
const READ_AHEAD: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame of {len} bytes is shorter than the {min}-byte minimum")]
    TooShort { len: usize, min: usize },
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("malformed header: {0}")]
    MalformedHeader(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// The frame size limit: fixed, or read when each frame's length is checked so a
/// config reload applies to the very next frame.
pub enum MaxFrame {
    Fixed(usize),
    Live(Box<dyn Fn() -> usize + Send + Sync>),
}

impl MaxFrame {
    fn get(&self) -> usize {
        match self {
            MaxFrame::Fixed(max) => *max,
            MaxFrame::Live(current) => current(),
        }
    }
}

/// Reads whole frames from a byte stream, bounded by a maximum frame size and, for
/// untrusted peers, by a byte budget shared with other readers.
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max_frame: MaxFrame,
    min_frame: usize,
    budget: Option<Budgeted>,
}

/// What a budgeted reader holds: bytes buffered or about to be read, and the bytes of
/// the frame it handed out last (held until the caller asks for the next one, so a
/// frame being processed still counts).
struct Budgeted {
    budget: FrameBudget,
    held: usize,
    lent: usize,
}

impl Budgeted {
    /// Bytes a read may add to `buffered` without taking more from the budget: what was
    /// taken, plus the free first chunk.
    fn room(&self, buffered: usize) -> usize {
        (self.held + READ_CHUNK).saturating_sub(buffered)
    }
}

impl Drop for Budgeted {
    fn drop(&mut self) {
        self.budget.release(self.held + self.lent);
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max_frame: usize, min_frame: usize) -> Self {
        Self::with_limit(inner, MaxFrame::Fixed(max_frame), min_frame)
    }

    pub fn with_limit(inner: R, max_frame: MaxFrame, min_frame: usize) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            max_frame,
            min_frame,
            budget: None,
        }
    }

    /// A reader whose buffered bytes count against `budget`.
    pub fn with_budget(
        inner: R,
        max_frame: MaxFrame,
        min_frame: usize,
        budget: FrameBudget,
    ) -> Self {
        let mut reader = Self::with_limit(inner, max_frame, min_frame);
        reader.buf = BytesMut::new();
        reader.budget = Some(Budgeted {
            budget,
            held: 0,
            lent: 0,
        });
        reader
    }

    /// Next whole frame (length prefix included), or `None` on a clean end of stream.
    /// Cancel-safe: bytes already read stay buffered.
    pub async fn next(&mut self) -> Result<Option<Bytes>, FrameError> {
        if self.budget.is_some() {
            return self.next_budgeted().await;
        }
        loop {
            if let Some(frame) = self.try_split(true)? {
                self.release_if_empty(frame.len());
                return Ok(Some(frame));
            }
            let want = if self.buf.capacity() == 0 {
                FIRST_READ
            } else {
                READ_CHUNK
            };
            // An announced frame has its room already (`try_split`). Growing a buffer
            // that holds much of one would copy it all, so only a short buffer grows.
            if self.buf.len() < READ_CHUNK && self.buf.capacity() - self.buf.len() < want / 4 {
                self.buf.reserve(want);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return self.end_of_stream();
            }
        }
    }

    fn end_of_stream(&self) -> Result<Option<Bytes>, FrameError> {
        match self.buf.len() {
            0 => Ok(None),
            buffered => Err(FrameError::Truncated { buffered }),
        }
    }

    /// Like `next`, but every read first takes its bytes from the budget, and room is
    /// made only for the read at hand (a frame's announced length is not reserved).
    async fn next_budgeted(&mut self) -> Result<Option<Bytes>, FrameError> {
        if let Some(b) = &mut self.budget {
            b.budget.release(std::mem::take(&mut b.lent));
        }
        loop {
            if let Some(frame) = self.try_split(false)? {
                if let Some(b) = &mut self.budget {
                    // The frame's bytes move from the buffer to the caller; what was
                    // taken for a read-ahead that did not arrive goes back.
                    b.lent = frame.len().min(b.held);
                    b.held -= b.lent;
                    let unfilled = b.held.saturating_sub(self.buf.len());
                    b.budget.release(unfilled);
                    b.held -= unfilled;
                }
                self.release_if_empty(frame.len());
                return Ok(Some(frame));
            }
            // `need`: the rest of this frame; `want`: that and a read-ahead.
            let (need, mut want) = match peek_len(&self.buf) {
                Some(len) => {
                    let rest = (LEN_PREFIX + len.max(0) as usize)
                        .saturating_sub(self.buf.len())
                        .min(MAX_BUDGETED_READ);
                    // Read ahead only while little is buffered: room past the end of a
                    // large frame would mean copying all of it that has arrived.
                    if self.buf.len() < READ_AHEAD {
                        (rest, rest.max(READ_AHEAD))
                    } else {
                        (rest, rest)
                    }
                }
                None if self.buf.capacity() == 0 => (FIRST_READ, FIRST_READ),
                None => (READ_CHUNK, READ_CHUNK),
            };
            if let Some(b) = &mut self.budget {
                // The first READ_CHUNK of every reader is outside the budget, so small
                // requests (Metadata, Fetch, heartbeats) never wait behind large ones:
                // that costs at most max_connections x READ_CHUNK.
                let beyond_free = |n: usize| (self.buf.len() + n).saturating_sub(READ_CHUNK);
                let to_hold = beyond_free(want);
                if to_hold > b.held {
                    // Read what the budget allows now, not the whole announced frame:
                    // wait only for this frame's next chunk beyond the free one, never
                    // for read-ahead.
                    let must = beyond_free(need).saturating_sub(b.held).min(READ_CHUNK);
                    let got = b.budget.take_up_to(must, to_hold - b.held).await;
                    b.held += got;
                    want = b.room(self.buf.len()).min(want);
                }
            }
            self.buf.reserve(want);
            let mut window = (&mut self.buf).limit(want);
            if self.inner.read_buf(&mut window).await? == 0 {
                return self.end_of_stream();
            }
        }
    }

    /// With nothing buffered after a small frame, lets go of the buffer's memory (the
    /// frames split off it keep theirs), so a connection waiting for its next frame
    /// holds only the next read's `FIRST_READ`.
    fn release_if_empty(&mut self, frame_len: usize) {
        if self.buf.is_empty() && frame_len <= RELEASE_AFTER_MAX {
            self.buf = BytesMut::new();
        }
    }

    /// With part of a frame buffered, reads what has already arrived, without waiting.
    /// A client that writes two requests at once, of which the first read took only the
    /// start of the second, then costs one read and one upstream write for both, not
    /// two of each. Reads only into room the reader holds already: its free chunk and
    /// what it took from the budget.
    pub fn read_ready(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() || self.has_buffered_frame() {
            return Ok(());
        }
        let room = match &self.budget {
            Some(b) => b.room(self.buf.len()),
            None => READ_CHUNK,
        };
        if room == 0 {
            return Ok(());
        }
        self.buf.reserve(room);
        let mut window = (&mut self.buf).limit(room);
        let read = std::pin::pin!(self.inner.read_buf(&mut window));
        // Polled once: a read that would wait leaves the bytes for `next`, which
        // registers the real waker (a read is cancel-safe).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match read.poll(&mut cx) {
            std::task::Poll::Ready(Err(e)) => Err(e),
            // An end of stream (0) is seen again by `next`.
            std::task::Poll::Ready(Ok(_)) | std::task::Poll::Pending => Ok(()),
        }
    }

    /// True when another whole frame is already buffered, so a writer can delay its flush.
    pub fn has_buffered_frame(&self) -> bool {
        match peek_len(&self.buf) {
            Some(len) if len >= 0 => self.buf.len() >= LEN_PREFIX + len as usize,
            _ => false,
        }
    }

    /// The next whole frame if it is buffered. With `reserve`, room for the whole
    /// announced frame is made at once (trusted peers: fewer reallocations); budgeted
    /// readers grow only as bytes arrive.
    fn try_split(&mut self, reserve: bool) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = peek_len(&self.buf) else {
            return Ok(None);
        };
        let len = validate_len(len, self.min_frame, self.max_frame.get())?;
        let total = LEN_PREFIX + len;
        if self.buf.len() < total {
            if reserve {
                self.buf.reserve(total - self.buf.len());
            }
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(total).freeze()))
    }
}

fn peek_len(buf: &[u8]) -> Option<i32> {
    let prefix: [u8; 4] = buf.get(..LEN_PREFIX)?.try_into().ok()?;
    Some(i32::from_be_bytes(prefix))
}

fn validate_len(len: i32, min: usize, max: usize) -> Result<usize, FrameError> {
    let len = usize::try_from(len).map_err(|_| FrameError::NegativeLength(len))?;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if len < min {
        return Err(FrameError::TooShort { len, min });
    }
    Ok(len)
}

/// A request frame with its fixed header fields peeked; the body is not decoded.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    /// The whole frame, length prefix included.
    pub bytes: Bytes,
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestFrame {
    pub fn parse(bytes: Bytes) -> Result<Self, FrameError> {
        if bytes.len() < LEN_PREFIX + MIN_REQUEST_BODY {
            return Err(FrameError::TooShort {
                len: bytes.len().saturating_sub(LEN_PREFIX),
                min: MIN_REQUEST_BODY,
            });
        }
        let mut head = &bytes[LEN_PREFIX..];
        let raw_key = head.get_i16();
        let api_version = head.get_i16();
        let correlation_id = head.get_i32();
        let api_key = ApiKey::try_from(raw_key).map_err(|()| FrameError::UnknownApiKey(raw_key))?;
        Ok(Self {
            bytes,
            api_key,
            api_version,
            correlation_id,
        })
    }

    /// Length of the request header (after the length prefix): fixed fields, client id,
    /// and the tagged-field section of flexible versions.
    pub fn header_len(&self) -> Result<usize, FrameError> {
        let body = &self.bytes[LEN_PREFIX..];
        let malformed = |what: &str| FrameError::MalformedHeader(what.to_string());
        let mut pos = MIN_REQUEST_BODY;
        let client_id_len = body
            .get(pos..pos + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| malformed("client id missing"))?;
        pos += 2 + usize::try_from(client_id_len.max(0)).unwrap_or(0);
        if pos > body.len() {
            return Err(malformed("client id longer than the frame"));
        }
        if self.api_key.request_header_version(self.api_version) >= 2 {
            let (count, used) =
                read_uvarint(&body[pos..]).ok_or_else(|| malformed("tagged fields"))?;
            pos += used;
            for _ in 0..count {
                let (_tag, used_tag) =
                    read_uvarint(&body[pos..]).ok_or_else(|| malformed("tag"))?;
                pos += used_tag;
                let (size, used_size) =
                    read_uvarint(&body[pos..]).ok_or_else(|| malformed("tag size"))?;
                pos += used_size + size as usize;
                if pos > body.len() {
                    return Err(malformed("tagged field longer than the frame"));
                }
            }
        }
        Ok(pos)
    }

    /// The request body (after length prefix and header), for decoding.
    pub fn body(&self) -> Result<Bytes, FrameError> {
        let start = LEN_PREFIX + self.header_len()?;
        Ok(self.bytes.slice(start..))
    }

    /// The original header bytes (without length prefix), reused when the body is rewritten.
    pub fn header_bytes(&self) -> Result<Bytes, FrameError> {
        let end = LEN_PREFIX + self.header_len()?;
        Ok(self.bytes.slice(LEN_PREFIX..end))
    }
}

/// Correlation id of a response frame (length prefix included).
pub fn response_correlation_id(frame: &[u8]) -> Option<i32> {
    let raw: [u8; 4] = frame.get(LEN_PREFIX..LEN_PREFIX + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(raw))
}

/// Unsigned varint as used by flexible versions; returns (value, bytes used).
/// Public for the fuzz targets in `fuzz/`.
pub fn read_uvarint(buf: &[u8]) -> Option<(u32, usize)> {
    let mut value: u32 = 0;
    for (i, byte) in buf.iter().take(5).enumerate() {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    async fn read_all(input: Vec<u8>, max: usize) -> Vec<Result<Option<Bytes>, String>> {
        let mut reader = FrameReader::new(&input[..], max, MIN_REQUEST_BODY);
        let mut out = Vec::new();
        loop {
            match reader.next().await {
                Ok(Some(f)) => out.push(Ok(Some(f))),
                Ok(None) => {
                    out.push(Ok(None));
                    break;
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn splits_pipelined_frames() {
        let mut input = frame(&[0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff]);
        input.extend(frame(&[0, 3, 0, 12, 0, 0, 0, 2, 0, 0]));
        let frames = read_all(input, 1024).await;
        assert_eq!(frames.len(), 3);
        assert!(matches!(frames[2], Ok(None)));
    }

    #[tokio::test]
    async fn rejects_negative_oversized_short_and_truncated() {
        let neg = read_all((-5i32).to_be_bytes().to_vec(), 1024).await;
        assert!(neg[0].as_ref().unwrap_err().contains("negative"));
        let big = read_all(2000i32.to_be_bytes().to_vec(), 1024).await;
        assert!(big[0].as_ref().unwrap_err().contains("exceeds"));
        let short = read_all(frame(&[0, 1]), 1024).await;
        assert!(short[0].as_ref().unwrap_err().contains("shorter"));
        let mut cut = frame(&[0; 20]);
        cut.truncate(10);
        let truncated = read_all(cut, 1024).await;
        assert!(truncated[0].as_ref().unwrap_err().contains("middle"));
    }

    #[tokio::test]
    async fn budgeted_reader_holds_only_what_arrived_and_gives_it_back() {
        let budget = FrameBudget::new(READ_CHUNK * 8);
        // A 1 MiB frame announced, 3 chunks sent: the reader holds about what arrived.
        let mut input = (1024 * 1024i32).to_be_bytes().to_vec();
        input.extend(vec![0u8; READ_CHUNK * 3]);
        let (mut tx, rx) = tokio::io::duplex(READ_CHUNK * 16);
        tokio::io::AsyncWriteExt::write_all(&mut tx, &input)
            .await
            .unwrap();
        let mut reader = FrameReader::with_budget(rx, MaxFrame::Fixed(2 << 20), 0, budget.clone());
        let pending = tokio::time::timeout(Duration::from_millis(200), reader.next()).await;
        assert!(pending.is_err(), "the frame is not complete");
        let held = budget.total() - budget.available();
        assert!(
            (READ_CHUNK..=READ_CHUNK * 8).contains(&held),
            "holds what arrived, at most the budget: {held}"
        );
        drop(reader);
        assert_eq!(budget.available(), budget.total(), "all given back on drop");

        // Small frames never touch the budget.
        let mut small = frame(&[0, 18, 0, 3, 0, 0, 0, 1, 0xff, 0xff]);
        small.extend(frame(&[0, 3, 0, 12, 0, 0, 0, 2, 0, 0]));
        let mut reader =
            FrameReader::with_budget(&small[..], MaxFrame::Fixed(1024), 0, budget.clone());
        assert!(reader.next().await.unwrap().is_some());
        assert_eq!(budget.available(), budget.total());
        assert!(reader.next().await.unwrap().is_some());
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_budgeted_reader_reads_pipelined_frames_several_at_a_time() {
        const FRAMES: usize = 8;
        let body = vec![7u8; 10 * 1024];
        let input: Vec<u8> = (0..FRAMES).flat_map(|_| frame(&body)).collect();
        let budget = FrameBudget::new(1 << 20);
        let source = TracingReader {
            data: input,
            chunk: usize::MAX,
            writes: Vec::new(),
        };
        let mut reader =
            FrameReader::with_budget(source, MaxFrame::Fixed(1 << 20), 0, budget.clone());
        for _ in 0..FRAMES {
            let frame = reader.next().await.unwrap().unwrap();
            assert_eq!(frame.len(), LEN_PREFIX + body.len());
        }
        // 2 KiB, then the rest of the first frame and the frames behind it 64 KiB at a
        // time: 3 reads for 80 KiB, where a read per frame would be 8 or more.
        let reads = reader.inner.writes.len();
        assert!(reads <= 3, "{reads} reads");
        // Only the frame handed out last is held; the read-ahead that found nothing
        // more to read went back to the budget.
        let held = budget.total() - budget.available();
        assert!(held <= LEN_PREFIX + body.len(), "holds {held}");
        assert!(reader.next().await.unwrap().is_none());
        drop(reader);
        assert_eq!(budget.available(), budget.total());
    }

    #[tokio::test]
    async fn read_ready_takes_the_rest_of_a_frame_that_has_arrived_and_never_waits() {
        // Two 1.1 KiB requests written at once: the first read (2 KiB) takes all of the
        // first and the start of the second.
        let body = vec![3u8; 1100];
        let two: Vec<u8> = [frame(&body), frame(&body)].concat();
        let budget = FrameBudget::new(0);
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        tokio::io::AsyncWriteExt::write_all(&mut tx, &two)
            .await
            .unwrap();
        let mut reader = FrameReader::with_budget(rx, MaxFrame::Fixed(1 << 20), 0, budget);
        assert!(reader.next().await.unwrap().is_some());
        assert!(
            !reader.has_buffered_frame(),
            "only part of the second is read"
        );
        reader.read_ready().unwrap();
        assert!(reader.has_buffered_frame(), "the rest was there already");
        assert_eq!(reader.next().await.unwrap().unwrap(), frame(&body));

        // A frame whose rest has not arrived: nothing waits, nothing is lost.
        let one = frame(&body);
        tokio::io::AsyncWriteExt::write_all(&mut tx, &one[..600])
            .await
            .unwrap();
        let early = tokio::time::timeout(Duration::from_millis(50), reader.next()).await;
        assert!(early.is_err(), "the frame is not complete");
        reader.read_ready().unwrap();
        assert!(!reader.has_buffered_frame());
        tokio::io::AsyncWriteExt::write_all(&mut tx, &one[600..])
            .await
            .unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap(), one);
        drop(tx);
        reader.read_ready().unwrap();
        assert!(reader.next().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_frame_within_the_free_chunk_never_waits_for_the_budget() {
        let budget = FrameBudget::new(0);
        let small = frame(&vec![1u8; READ_CHUNK - 1024]);
        let mut reader =
            FrameReader::with_budget(&small[..], MaxFrame::Fixed(1 << 20), 0, budget.clone());
        let read = tokio::time::timeout(Duration::from_secs(5), reader.next()).await;
        assert_eq!(
            read.expect("not held up").unwrap().unwrap().len(),
            small.len()
        );

        // A frame larger than the free chunk waits for the budget.
        let large = frame(&vec![1u8; READ_CHUNK * 3]);
        let mut reader =
            FrameReader::with_budget(&large[..], MaxFrame::Fixed(1 << 20), 0, budget.clone());
        let read = tokio::time::timeout(Duration::from_millis(200), reader.next()).await;
        assert!(
            read.is_err(),
            "read a frame past the free chunk with no budget"
        );
    }

    /// Hands its data out in chunks of `chunk` bytes and records where in memory each
    /// read wrote.
    struct TracingReader {
        data: Vec<u8>,
        chunk: usize,
        writes: Vec<(usize, usize)>,
    }

    impl AsyncRead for TracingReader {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self.chunk.min(self.data.len()).min(buf.remaining());
            let to = buf.initialize_unfilled_to(n);
            to.copy_from_slice(&self.data[..n]);
            let at = to.as_ptr() as usize;
            buf.advance(n);
            self.data.drain(..n);
            self.writes.push((at, n));
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// A 256 KiB frame arriving 10,000 bytes at a time, its last piece small: after the
    /// first read (which learns the length), every read lands right after the one
    /// before, and the frame is that memory: nothing was moved to make room.
    #[tokio::test]
    async fn a_large_frame_is_read_in_place() {
        for budgeted in [false, true] {
            let input = frame(&vec![3u8; 256 * 1024]);
            let source = TracingReader {
                data: input.clone(),
                chunk: 10_000,
                writes: Vec::new(),
            };
            let mut reader = if budgeted {
                let budget = FrameBudget::new(1 << 20);
                FrameReader::with_budget(source, MaxFrame::Fixed(1 << 20), 0, budget)
            } else {
                FrameReader::new(source, 1 << 20, 0)
            };
            let got = reader.next().await.unwrap().unwrap();
            assert_eq!(got.len(), input.len());
            let writes = &reader.inner.writes;
            assert!(writes.len() > 20, "{budgeted}: {} reads", writes.len());
            for pair in writes[1..].windows(2) {
                let ((at, n), (next, _)) = (pair[0], pair[1]);
                assert_eq!(next, at + n, "budgeted {budgeted}: the frame was moved");
            }
            assert_eq!(got.as_ptr() as usize + writes[0].1, writes[1].0);
        }
    }

    #[test]
    fn parses_header_and_finds_body() {
        // Metadata v12 (flexible): key 3, version 12, corr 7, client id "ab", no tags, body [9].
        let raw = frame(&[0, 3, 0, 12, 0, 0, 0, 7, 0, 2, b'a', b'b', 0, 9]);
        let req = RequestFrame::parse(Bytes::from(raw)).unwrap();
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.correlation_id, 7);
        assert_eq!(req.header_len().unwrap(), 13);
        assert_eq!(&req.body().unwrap()[..], &[9]);
    }

    #[test]
    fn unknown_api_key_is_an_error() {
        let raw = frame(&[0x7f, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
        assert!(matches!(
            RequestFrame::parse(Bytes::from(raw)),
            Err(FrameError::UnknownApiKey(0x7f00))
        ));
    }
}
