//! A socket read in large chunks beneath a TLS layer. rustls asks its transport for at
//! most 4 KiB at a time, so a full 16 KiB TLS record cost four or five reads, each a
//! syscall. `ReadAhead` reads up to [`READ_AHEAD`] bytes per syscall and hands them out
//! as asked. It holds that buffer only while bytes wait in it or arrive back to back:
//! when the socket has nothing more, the buffer goes, so an idle connection holds none.
//! Writes pass straight through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::io::poll_read_buf;

/// Most bytes read from the socket at once, and so held per connection: two TLS
/// records.
pub const READ_AHEAD: usize = 32 * 1024;

pub struct ReadAhead<S> {
    inner: S,
    buffered: BytesMut,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buffered: BytesMut::new(),
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes read from the socket and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.buffered.len()
    }

    /// Whether a buffer is held (it may be empty between two reads of a burst).
    pub fn holds_buffer(&self) -> bool {
        self.buffered.capacity() > 0
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buffered.is_empty() {
            if out.remaining() >= READ_AHEAD {
                // As large as ours: straight into the caller's buffer.
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            // An empty buffer that held bytes gets its space back without a copy.
            this.buffered.reserve(READ_AHEAD);
            match poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buffered) {
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.buffered = BytesMut::new();
                    return Poll::Ready(Err(e));
                }
                Poll::Pending => {
                    this.buffered = BytesMut::new();
                    return Poll::Pending;
                }
            }
        }
        // Nothing read: end of stream, which the caller sees as a read of 0 bytes.
        let n = out.remaining().min(this.buffered.len());
        out.put_slice(&this.buffered[..n]);
        this.buffered.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A transport that counts its reads.
    struct Counted<S> {
        inner: S,
        reads: Arc<AtomicUsize>,
    }

    impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            if polled.is_ready() {
                this.reads.fetch_add(1, Ordering::Relaxed);
            }
            polled
        }
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Read in the 4 KiB steps rustls takes, the bytes come out whole and in order,
    /// from one transport read per READ_AHEAD bytes.
    #[tokio::test]
    async fn small_reads_are_served_from_large_ones_in_order() {
        let data = pattern(5 * READ_AHEAD + 123);
        let (mut tx, rx) = tokio::io::duplex(8 * READ_AHEAD);
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let reads = Arc::new(AtomicUsize::new(0));
        let mut ahead = ReadAhead::new(Counted {
            inner: rx,
            reads: reads.clone(),
        });
        let mut got = Vec::new();
        let mut step = [0u8; 4096];
        loop {
            let n = ahead.read(&mut step).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&step[..n]);
        }
        assert_eq!(got, data);
        // Six reads with data and the one that saw the end.
        assert_eq!(reads.load(Ordering::Relaxed), 7);
    }

    /// A read as large as the buffer goes straight to the transport; bytes already
    /// buffered come first.
    #[tokio::test]
    async fn a_large_read_skips_the_buffer_but_not_what_it_holds() {
        let data = pattern(3 * READ_AHEAD);
        let (mut tx, rx) = tokio::io::duplex(4 * READ_AHEAD);
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let mut ahead = ReadAhead::new(rx);
        let mut small = [0u8; 100];
        assert_eq!(ahead.read(&mut small).await.unwrap(), 100);
        assert_eq!(ahead.buffered(), READ_AHEAD - 100);
        let mut large = vec![0u8; 2 * READ_AHEAD];
        let n = ahead.read(&mut large).await.unwrap();
        assert_eq!(n, READ_AHEAD - 100, "what was buffered, alone");
        let mut rest = Vec::new();
        ahead.read_to_end(&mut rest).await.unwrap();
        let got: Vec<u8> = small
            .iter()
            .chain(&large[..n])
            .chain(&rest)
            .copied()
            .collect();
        assert_eq!(got, data);
    }

    /// Once the socket has nothing more, no buffer is held.
    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer() {
        let (mut tx, rx) = tokio::io::duplex(READ_AHEAD);
        let mut ahead = ReadAhead::new(rx);
        tx.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(ahead.read(&mut buf).await.unwrap(), 5);
        assert!(ahead.holds_buffer(), "kept between reads of a burst");
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), ahead.read(&mut buf)).await;
        assert!(waiting.is_err(), "nothing to read");
        assert!(!ahead.holds_buffer());
        assert_eq!(ahead.buffered(), 0);
        tx.write_all(b"again").await.unwrap();
        assert_eq!(ahead.read(&mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..5], b"again");
    }

    /// Writes reach the transport untouched.
    #[tokio::test]
    async fn writes_pass_through() {
        let (tx, mut rx) = tokio::io::duplex(1024);
        let mut ahead = ReadAhead::new(tx);
        ahead.write_all(b"produce").await.unwrap();
        ahead.flush().await.unwrap();
        ahead.shutdown().await.unwrap();
        let mut got = Vec::new();
        rx.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"produce");
    }
}
