//! Writes whole frames without copying them: each is queued as the `Bytes` it already
//! is, and `flush` hands the queue to one vectored write (`writev`, or one pass of
//! TLS encryption), so pipelined frames cost one syscall and no buffer copy. An idle
//! connection holds no write buffer.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Frames per vectored write (Linux takes up to 1,024 slices; more gains nothing).
const MAX_SLICES: usize = 64;
/// Queued bytes past which `write` flushes by itself, so a writer that never flushes
/// still holds a bounded amount.
const MAX_QUEUED_BYTES: usize = 4 * 1024 * 1024;
/// Queue slots kept after a flush; a queue that grew past this is released.
const KEPT_SLOTS: usize = 16;

/// A frame to write: whole, or in parts written in order without joining them (an
/// answer of which only the end changed keeps the rest as the broker sent it).
#[derive(Debug, Clone, PartialEq)]
pub enum OutFrame {
    Whole(Bytes),
    Parts([Bytes; 3]),
}

impl OutFrame {
    pub fn len(&self) -> usize {
        match self {
            OutFrame::Whole(frame) => frame.len(),
            OutFrame::Parts(parts) => parts.iter().map(Bytes::len).sum(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct FrameWriter<W> {
    inner: W,
    queued: VecDeque<Bytes>,
    queued_bytes: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            queued: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// Queues `frame` to be written by the next `flush`.
    pub async fn write(&mut self, frame: Bytes) -> io::Result<()> {
        if frame.is_empty() {
            return Ok(());
        }
        self.queued_bytes += frame.len();
        self.queued.push_back(frame);
        if self.queued_bytes >= MAX_QUEUED_BYTES {
            self.write_queued().await?;
        }
        Ok(())
    }

    /// Queues every part of `frame`, in order.
    pub async fn write_out(&mut self, frame: OutFrame) -> io::Result<()> {
        match frame {
            OutFrame::Whole(frame) => self.write(frame).await,
            OutFrame::Parts(parts) => {
                for part in parts {
                    self.write(part).await?;
                }
                Ok(())
            }
        }
    }

    /// Writes every queued frame, in order, and flushes the stream.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.write_queued().await?;
        if self.queued.capacity() > KEPT_SLOTS {
            self.queued = VecDeque::new();
        }
        self.inner.flush().await
    }

    async fn write_queued(&mut self) -> io::Result<()> {
        while !self.queued.is_empty() {
            // The slices live only inside one poll, so they are no part of the future a
            // connection keeps while its write waits.
            let written = std::future::poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let mut count = 0;
                for (slot, frame) in slices.iter_mut().zip(self.queued.iter()) {
                    *slot = IoSlice::new(frame);
                    count += 1;
                }
                Pin::new(&mut self.inner).poll_write_vectored(cx, &slices[..count])
            })
            .await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.consume(written);
        }
        Ok(())
    }

    /// Drops `written` bytes from the front of the queue.
    fn consume(&mut self, mut written: usize) {
        self.queued_bytes -= written;
        while written > 0 {
            let Some(front) = self.queued.front_mut() else {
                return;
            };
            if written < front.len() {
                front.advance(written);
                return;
            }
            written -= front.len();
            self.queued.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    /// Takes at most `step` bytes per write, vectored or not, and counts the writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
        writes: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for buf in bufs {
                let take = buf.len().min(left);
                self.out.extend_from_slice(&buf[..take]);
                left -= take;
                n += take;
            }
            self.writes += 1;
            Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frames() -> Vec<Bytes> {
        (0..100u8)
            .map(|i| Bytes::from(vec![i; 1 + (i as usize * 37) % 500]))
            .collect()
    }

    #[tokio::test]
    async fn queued_frames_go_out_in_order_in_few_writes() {
        let mut writer = FrameWriter::new(Trickle {
            out: Vec::new(),
            step: usize::MAX,
            writes: 0,
        });
        let expected: Vec<u8> = frames().iter().flat_map(|f| f.to_vec()).collect();
        for frame in frames() {
            writer.write(frame).await.unwrap();
        }
        assert_eq!(
            writer.inner.writes, 0,
            "nothing is written before the flush"
        );
        writer.flush().await.unwrap();
        assert_eq!(writer.inner.out, expected);
        // 100 frames, 64 slices a write.
        assert_eq!(writer.inner.writes, 2);
        assert!(writer.queued.is_empty() && writer.queued_bytes == 0);
    }

    #[tokio::test]
    async fn short_writes_resume_inside_a_frame() {
        let mut writer = FrameWriter::new(Trickle {
            out: Vec::new(),
            step: 333,
            writes: 0,
        });
        let expected: Vec<u8> = frames().iter().flat_map(|f| f.to_vec()).collect();
        for frame in frames() {
            writer.write(frame).await.unwrap();
        }
        writer.flush().await.unwrap();
        assert_eq!(writer.inner.out, expected);
        assert_eq!(writer.queued_bytes, 0);
    }

    #[tokio::test]
    async fn a_writer_that_never_flushes_holds_a_bounded_amount() {
        let mut writer = FrameWriter::new(Trickle {
            out: Vec::new(),
            step: usize::MAX,
            writes: 0,
        });
        let frame = Bytes::from(vec![7u8; 1024 * 1024]);
        for _ in 0..10 {
            writer.write(frame.clone()).await.unwrap();
            assert!(writer.queued_bytes < MAX_QUEUED_BYTES);
        }
        assert!(writer.inner.out.len() >= 8 * 1024 * 1024);
    }
}
