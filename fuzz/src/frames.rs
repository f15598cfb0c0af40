//! Target `frames`: `FrameReader` over an in-memory stream that hands the input out in
//! fuzzer-chosen chunk sizes, sometimes answering Pending (the read is then cancelled
//! and started again, as `tokio::select!` does), then `RequestFrame` on every frame.
//!
//! Properties: nothing panics; the frames split out, concatenated, are exactly a prefix
//! of the input; a clean end comes only when the whole input was consumed, a truncated
//! error reports exactly the rest, a length error names the length that is there; each
//! frame's prefix is its length, within the limits; `header_len`, `body` and
//! `header_bytes` slice the frame consistently; `read_uvarint` reads a well-formed
//! varint of at most 5 bytes from what it was given. Half the inputs use a client's
//! budgeted reader (read-ahead included): the same properties hold, it never waits for
//! ever on a budget at least the largest frame, and it gives every byte back.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use mirrorgate::kafka::frame::{
    read_uvarint, response_correlation_id, FrameError, FrameReader, MaxFrame, RequestFrame,
    LEN_PREFIX,
};
use mirrorgate::kafka::frame_budget::FrameBudget;
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `data` in chunks whose sizes come from a small PRNG seeded by the input.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    state: u32,
    pending_next: bool,
}

impl Chunked<'_> {
    fn next_random(&mut self) -> u32 {
        // xorshift32: deterministic per input, so crashes reproduce.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        self.state
    }
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = self.next_random();
        if std::mem::take(&mut self.pending_next) {
            return Poll::Pending;
        }
        self.pending_next = r % 4 == 0;
        // Mostly small chunks (they split prefixes and headers), sometimes large ones.
        let chunk = if r % 8 == 0 {
            (r >> 8) as usize % 65_536 + 1
        } else {
            (r >> 8) as usize % 24 + 1
        };
        let rest = &self.data[self.pos..];
        let n = chunk.min(rest.len()).min(buf.remaining());
        buf.put_slice(&rest[..n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// `next()`, dropped and started again whenever it is Pending: cancel safety.
fn next_frame(reader: &mut FrameReader<Chunked<'_>>) -> Result<Option<Bytes>, FrameError> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    loop {
        let mut next = std::pin::pin!(reader.next());
        if let Poll::Ready(out) = next.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

pub fn check(data: &[u8]) {
    let Some((control, input)) = data.split_first_chunk::<4>() else {
        return;
    };
    let max = 12 + usize::from(u16::from_be_bytes([control[0], control[1]]));
    let min = usize::from(control[2] % 16);
    let state = u32::from(control[3]) | 0x1_0000; // xorshift must not start at 0
    let stream = Chunked {
        data: input,
        pos: 0,
        state,
        pending_next: false,
    };
    // A client's reader (budgeted, with read-ahead) half the time. Its budget is at
    // least the largest frame, as the config requires, so it never waits forever.
    let budget = (control[2] & 0x10 != 0)
        .then(|| FrameBudget::new(max + usize::from(control[2] >> 5) * 4096));
    let mut reader = match &budget {
        Some(budget) => FrameReader::with_budget(stream, MaxFrame::Fixed(max), min, budget.clone()),
        None => FrameReader::new(stream, max, min),
    };
    let mut consumed = 0usize;
    loop {
        let hinted = reader.has_buffered_frame();
        match next_frame(&mut reader) {
            Ok(Some(frame)) => {
                let len = frame.len();
                assert_eq!(&frame[..], &input[consumed..consumed + len]);
                let declared = i32::from_be_bytes(frame[..4].try_into().unwrap());
                assert_eq!(usize::try_from(declared).unwrap(), len - LEN_PREFIX);
                assert!((min..=max).contains(&(len - LEN_PREFIX)));
                consumed += len;
                check_request(frame);
            }
            Ok(None) => {
                assert!(!hinted, "a buffered frame was announced");
                assert_eq!(consumed, input.len(), "clean end before the input's end");
                break;
            }
            Err(FrameError::Truncated { buffered }) => {
                assert!(!hinted, "a buffered frame was announced");
                assert_eq!(consumed + buffered, input.len());
                break;
            }
            Err(e @ (FrameError::NegativeLength(_) | FrameError::TooLarge { .. })) => {
                let declared =
                    i32::from_be_bytes(input[consumed..consumed + 4].try_into().unwrap());
                match e {
                    FrameError::NegativeLength(len) => assert_eq!(len, declared),
                    FrameError::TooLarge { len, .. } => {
                        assert_eq!(len, usize::try_from(declared).unwrap());
                        assert!(len > max);
                    }
                    _ => unreachable!(),
                }
                break;
            }
            Err(FrameError::TooShort { len, .. }) => {
                let declared =
                    i32::from_be_bytes(input[consumed..consumed + 4].try_into().unwrap());
                assert_eq!(len, usize::try_from(declared).unwrap());
                assert!(len < min);
                break;
            }
            Err(e) => panic!("unexpected error from an in-memory stream: {e}"),
        }
    }
    drop(reader);
    if let Some(budget) = budget {
        assert_eq!(budget.available(), budget.total(), "budget given back");
    }
    check_uvarints(input);
}

fn check_request(frame: Bytes) {
    if frame.len() >= LEN_PREFIX + 4 {
        let id = i32::from_be_bytes(frame[4..8].try_into().unwrap());
        assert_eq!(response_correlation_id(&frame), Some(id));
    }
    let Ok(request) = RequestFrame::parse(frame.clone()) else {
        return;
    };
    assert_eq!(
        request.api_key as i16,
        i16::from_be_bytes([frame[4], frame[5]])
    );
    let Ok(header_len) = request.header_len() else {
        assert!(request.body().is_err());
        return;
    };
    assert!(header_len >= 10, "fixed fields and client id length");
    assert!(LEN_PREFIX + header_len <= frame.len());
    assert_eq!(
        request.body().unwrap(),
        frame.slice(LEN_PREFIX + header_len..)
    );
    assert_eq!(
        request.header_bytes().unwrap(),
        frame.slice(LEN_PREFIX..LEN_PREFIX + header_len)
    );
}

fn check_uvarints(input: &[u8]) {
    for start in 0..input.len().min(16) {
        let buf = &input[start..];
        match read_uvarint(buf) {
            Some((value, used)) => {
                assert!((1..=5).contains(&used) && used <= buf.len());
                assert!(buf[..used - 1].iter().all(|b| b & 0x80 != 0));
                assert_eq!(buf[used - 1] & 0x80, 0);
                // The value is the 7-bit groups, truncated to 32 bits.
                let expect = buf[..used]
                    .iter()
                    .enumerate()
                    .fold(0u64, |v, (i, b)| v | (u64::from(b & 0x7f) << (7 * i)));
                assert_eq!(u64::from(value), expect & u64::from(u32::MAX));
            }
            None => assert!(buf.iter().take(5).all(|b| b & 0x80 != 0)),
        }
    }
}
