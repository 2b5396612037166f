//! Writing a batch of byte pieces to the client (issue 10): a served FETCH response is a list
//! of [`Bytes`] slices of what the backend sent (line fragments, the literal), written with
//! vectored writes — consecutive pieces share TLS records and system calls — and one flush,
//! with the same stall rule as every client write.

use std::io::IoSlice;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::SessionError;
use crate::net::Stream;

/// Most octets one vectored write to the client offers (the stall window of [`super::write_client`]).
const WRITE_WINDOW: usize = 64 * 1024;
/// Most pieces one vectored write to the client offers.
const WRITE_SLICES: usize = 64;

/// Writes `pieces` to the client in order as one byte stream and flushes once: vectored writes
/// (consecutive pieces share TLS records and system calls) instead of a write and a flush per
/// piece. As with [`super::write_client`], every 64 KiB must be accepted within
/// [`super::CLIENT_WRITE_STALL`].
pub async fn write_client_pieces(
    stream: &mut Stream,
    pieces: &[Bytes],
) -> Result<(), SessionError> {
    let stalled = || SessionError::ClientIo(std::io::ErrorKind::TimedOut.into());
    let mut cursor = PieceCursor::default();
    while cursor.index < pieces.len() {
        tokio::time::timeout(
            super::CLIENT_WRITE_STALL,
            cursor.write_window(stream, pieces),
        )
        .await
        .map_err(|_| stalled())?
        .map_err(SessionError::ClientIo)?;
    }
    tokio::time::timeout(super::CLIENT_WRITE_STALL, stream.flush())
        .await
        .map_err(|_| stalled())?
        .map_err(SessionError::ClientIo)
}

/// How far [`write_client_pieces`] has got: the piece and the offset in it.
#[derive(Debug, Default)]
struct PieceCursor {
    index: usize,
    offset: usize,
}

impl PieceCursor {
    /// Writes up to [`WRITE_WINDOW`] octets from the cursor on, advancing it.
    async fn write_window<W: tokio::io::AsyncWrite + Unpin>(
        &mut self,
        stream: &mut W,
        pieces: &[Bytes],
    ) -> std::io::Result<()> {
        let mut budget = WRITE_WINDOW;
        while budget > 0 && self.index < pieces.len() {
            let slices = self.slices(pieces, budget);
            if slices.is_empty() {
                self.advance(pieces, 0);
                continue;
            }
            let written = stream.write_vectored(&slices).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.advance(pieces, written);
            budget = budget.saturating_sub(written);
        }
        Ok(())
    }

    /// The unwritten octets from the cursor on, at most `budget` of them.
    fn slices<'a>(&self, pieces: &'a [Bytes], budget: usize) -> Vec<IoSlice<'a>> {
        let mut slices = Vec::new();
        let mut left = budget;
        let mut offset = self.offset;
        for piece in &pieces[self.index..] {
            if left == 0 || slices.len() == WRITE_SLICES {
                break;
            }
            let rest = &piece[offset.min(piece.len())..];
            offset = 0;
            let take = rest.len().min(left);
            if take > 0 {
                slices.push(IoSlice::new(&rest[..take]));
                left -= take;
            }
        }
        slices
    }

    /// Moves past `written` octets (and past empty pieces).
    fn advance(&mut self, pieces: &[Bytes], mut written: usize) {
        while let Some(piece) = pieces.get(self.index) {
            let rest = piece.len() - self.offset.min(piece.len());
            if written < rest {
                self.offset += written;
                return;
            }
            written -= rest;
            self.index += 1;
            self.offset = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;

    /// Accepts at most `step` octets per write, and offers vectored writes.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl tokio::io::AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let mut left = this.step;
            for buf in bufs {
                let take = buf.len().min(left);
                this.out.extend_from_slice(&buf[..take]);
                left -= take;
            }
            Poll::Ready(Ok(this.step - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn pieces_arrive_in_order_whatever_each_write_accepts() {
        let big = Bytes::from((0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let pieces = vec![
            Bytes::from_static(b"* 1 FETCH ("),
            Bytes::new(),
            big.slice(..70_000),
            Bytes::from_static(b" "),
            big.slice(70_000..),
            Bytes::new(),
            Bytes::from_static(b")\r\n"),
        ];
        let expected: Vec<u8> = pieces.concat();
        for step in [1, 2, 3, 7, 100, 4096, 65_536, 1 << 20] {
            let mut writer = Trickle {
                out: Vec::new(),
                step,
            };
            let mut cursor = PieceCursor::default();
            while cursor.index < pieces.len() {
                cursor.write_window(&mut writer, &pieces).await.unwrap();
            }
            assert!(writer.out == expected, "step {step}");
        }
    }

    #[test]
    fn a_window_offers_at_most_its_budget() {
        let pieces = vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        let cursor = PieceCursor {
            index: 0,
            offset: 2,
        };
        let slices = cursor.slices(&pieces, 3);
        let offered: Vec<&[u8]> = slices.iter().map(|s| &s[..]).collect();
        assert_eq!(offered, [&b"c"[..], &b"de"[..]]);
    }
}
