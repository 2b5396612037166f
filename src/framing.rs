//! The input buffer both sans-I/O framers (IMAP and POP3) are built on: received bytes, a
//! cursor remembering how far they were searched for LF (so a long line arriving in small pieces
//! is not rescanned from the start each time), and a bounded line search.

use bytes::{Bytes, BytesMut};

/// Largest spare capacity kept after bytes are taken (see [`InputBuffer::take`]).
const RETAIN_CAPACITY: usize = 64 * 1024;
/// Room reserved past an announced literal: the most one read feeds at once (the drivers'
/// largest read buffer), so the read that completes the literal does not reallocate it.
const LITERAL_SLACK: usize = 64 * 1024;
/// Largest literal whose room is reserved when it is announced; longer ones grow as they
/// arrive.
const MAX_LITERAL_RESERVE: usize = 16 << 20;

/// A line longer than the given limit (in octets, line ending included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong(pub usize);

/// Bytes received and not yet handed out as events.
#[derive(Debug, Default)]
pub struct InputBuffer {
    buffer: BytesMut,
    /// Bytes before this offset hold no LF that has not been consumed as a line end.
    scanned: usize,
}

impl InputBuffer {
    /// Appends received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// Octets buffered.
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    /// The buffered bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buffer
    }

    /// Drops everything (after a fatal error, or a STARTTLS-style reset).
    pub fn clear(&mut self) {
        self.buffer = BytesMut::new();
        self.scanned = 0;
    }

    /// End (exclusive) of the next LF-terminated line after the search cursor; when there is
    /// none yet, the cursor moves to the end so the next search starts there.
    pub fn next_line_end(&mut self) -> Option<usize> {
        let rest = self.buffer.get(self.scanned..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(offset) => Some(self.scanned + offset + 1),
            None => {
                self.scanned = self.buffer.len();
                None
            }
        }
    }

    /// End of the line that starts the buffer, if complete; an error once it exceeds `limit`.
    pub fn line_end(&mut self, limit: usize) -> Result<Option<usize>, LineTooLong> {
        match self.next_line_end() {
            Some(end) if end > limit => Err(LineTooLong(limit)),
            Some(end) => Ok(Some(end)),
            None if self.buffer.len() >= limit => Err(LineTooLong(limit)),
            None => Ok(None),
        }
    }

    /// Moves the search cursor to `offset` (bytes before it were examined).
    pub fn skip_to(&mut self, offset: usize) {
        self.scanned = offset.min(self.buffer.len());
    }

    /// Makes room for a literal of `length` octets announced at the start of the buffer, so it
    /// arrives in one allocation instead of being copied each time the buffer grows (issue 10).
    /// Only for a peer whose announcements are trusted to be followed by the bytes (the
    /// backend): the room is reserved before they arrive.
    pub fn reserve_literal(&mut self, length: usize) {
        let want = length.min(MAX_LITERAL_RESERVE) + LITERAL_SLACK;
        if let Some(more) = want.checked_sub(self.buffer.len()).filter(|&more| more > 0) {
            self.buffer.reserve(more);
        }
    }

    /// Removes and returns the first `end` octets. When that leaves a large allocation mostly
    /// unused (a big literal was taken), the rest moves to a buffer of its own, so the taken
    /// bytes own the big allocation alone and it is freed with them (a session that holds one
    /// message does not hold its allocation twice).
    pub fn take(&mut self, end: usize) -> Bytes {
        self.scanned = 0;
        let taken = self.buffer.split_to(end.min(self.buffer.len())).freeze();
        let shares_big = self.buffer.capacity() > RETAIN_CAPACITY || taken.len() >= RETAIN_CAPACITY;
        if shares_big && self.buffer.len() < RETAIN_CAPACITY {
            self.buffer = BytesMut::from(&self.buffer[..]);
        }
        taken
    }

    /// The capacity the buffer keeps now.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.buffer.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_found_incrementally_and_bounded() {
        let mut input = InputBuffer::default();
        input.feed(b"abc");
        assert_eq!(input.line_end(10), Ok(None));
        input.feed(b"d\r\nrest");
        assert_eq!(input.line_end(10), Ok(Some(6)));
        assert_eq!(input.take(6), Bytes::from_static(b"abcd\r\n"));
        assert_eq!(input.line_end(4), Err(LineTooLong(4)));
        input.clear();
        assert!(input.is_empty());
    }

    #[test]
    fn a_reserved_literal_arrives_in_one_allocation_and_is_not_pinned() {
        let mut input = InputBuffer::default();
        input.feed(b"xy");
        input.reserve_literal(1 << 20);
        let start = input.bytes().as_ptr();
        for _ in 0..16 {
            input.feed(&[b'z'; 64 * 1024]);
        }
        input.feed(b")\r\n* 2 FETCH");
        assert_eq!(input.bytes().as_ptr(), start, "the literal was moved");
        let literal = input.take((1 << 20) + 2);
        assert_eq!(literal.as_ptr(), start);
        assert_eq!(input.bytes(), b")\r\n* 2 FETCH");
        assert!(input.capacity() <= RETAIN_CAPACITY, "{}", input.capacity());
        input.reserve_literal(10);
        input.reserve_literal(usize::MAX);
        assert!(input.capacity() <= MAX_LITERAL_RESERVE + LITERAL_SLACK + 64);
    }

    #[test]
    fn a_taken_literal_does_not_pin_the_buffer() {
        let mut input = InputBuffer::default();
        input.feed(&vec![b'x'; 4 << 20]);
        input.feed(b"a\r\n");
        let literal = input.take(4 << 20);
        assert_eq!(literal.len(), 4 << 20);
        assert_eq!(input.bytes(), b"a\r\n");
        assert!(input.capacity() <= RETAIN_CAPACITY, "{}", input.capacity());
        input.feed(b"more");
        assert_eq!(input.take(3), Bytes::from_static(b"a\r\n"));
    }
}
