//! The driver's read buffers hold memory only while they hold bytes. A read that finds nothing
//! to read (the peer is quiet: the normal state of an idle session) frees its buffer, so an idle
//! session keeps no read buffer at all; the next poll allocates it again, without zeroing it,
//! when the stream has become readable. A read that fills its buffer doubles the next one, up
//! to [`MAX_READ`], so bulk transfers take few reads.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncRead;

/// The first read's size.
pub(crate) const INITIAL_READ: usize = 4 * 1024;
/// The largest read: a read that fills its buffer doubles the next one, up to this.
pub(crate) const MAX_READ: usize = 64 * 1024;

/// A read buffer that is empty, and holds no allocation, while its stream has nothing to read.
#[derive(Debug)]
pub(crate) struct ReadBuffer {
    bytes: Vec<u8>,
    /// The size of the next read.
    size: usize,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer {
            bytes: Vec::new(),
            size: INITIAL_READ,
        }
    }
}

impl ReadBuffer {
    /// Reads once from `stream` into the buffer (replacing what it held); 0 is end of stream.
    /// Cancel-safe: dropped before it completes, nothing was read.
    pub(crate) async fn read_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut R,
    ) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_from(stream, cx)).await
    }

    /// One poll of [`ReadBuffer::read_from`]: a pending read gives the allocation back.
    fn poll_read_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        stream: &mut R,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        self.bytes.clear();
        self.bytes.reserve_exact(self.size);
        let poll = tokio_util::io::poll_read_buf(Pin::new(stream), cx, &mut self.bytes);
        if poll.is_pending() {
            self.release();
        } else if self.bytes.len() >= self.size && self.size < MAX_READ {
            self.size = (self.size * 2).min(MAX_READ);
        }
        poll
    }

    /// The size of the next read (what the memory budget must cover before it).
    pub(crate) fn next_read(&self) -> usize {
        self.size
    }

    /// The bytes of the last read.
    pub(crate) fn filled(&self) -> &[u8] {
        &self.bytes
    }

    /// Frees the buffer (the bytes of the last read were handled, no read is coming soon).
    pub(crate) fn release(&mut self) {
        self.bytes = Vec::new();
    }

    /// Octets allocated now.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_quiet_stream_holds_no_buffer_and_reads_grow_when_filled() {
        let (mut near, mut far) = tokio::io::duplex(1 << 20);
        let mut buffer = ReadBuffer::default();
        // Nothing to read: the pending read frees what it allocated.
        let quiet = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            buffer.read_from(&mut near),
        );
        assert!(quiet.await.is_err());
        assert_eq!(buffer.capacity(), 0);

        far.write_all(b"a1 NOOP\r\n").await.unwrap();
        assert_eq!(buffer.read_from(&mut near).await.unwrap(), 9);
        assert_eq!(buffer.filled(), b"a1 NOOP\r\n");

        // Reads that fill the buffer double the next one: 4, 8, ... 64 KiB.
        far.write_all(&vec![b'x'; 256 * 1024]).await.unwrap();
        let mut sizes = Vec::new();
        for _ in 0..6 {
            let n = buffer.read_from(&mut near).await.unwrap();
            sizes.push(n / 1024);
        }
        assert_eq!(sizes, [4, 8, 16, 32, 64, 64]);
        buffer.release();
        assert_eq!(buffer.capacity(), 0);
    }
}
