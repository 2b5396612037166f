//! A backend response as the framer delivered it — line fragments and literal [`Bytes`] —
//! addressed as one byte string without joining it (issue 10: a message's bytes are never
//! copied on the relay path). Offsets are positions in the virtual concatenation; ranges come
//! back as zero-copy slices of the parts they cover.
//!
//! Sans-I/O and independent of the FETCH grammar: [`super::fetch_response`] parses over any
//! [`Source`], contiguous bytes (tests, fuzzing) or [`Segments`] (the relay).

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;

use super::codec::Event;

/// Bytes the FETCH response parser reads: one contiguous buffer or several parts.
pub trait Source {
    /// Total length in octets.
    fn len(&self) -> usize;
    /// Whether there are no octets.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The octet at `pos`.
    fn byte(&self, pos: usize) -> Option<u8>;
    /// The first `byte` at or after `from`.
    fn find(&self, from: usize, byte: u8) -> Option<usize>;
    /// The octets in `range` (borrowed when they are contiguous), `None` when out of bounds.
    fn text(&self, range: Range<usize>) -> Option<Cow<'_, [u8]>>;
    /// Whether `range` may hold a literal's content: for framed parts it must be exactly one
    /// literal part, so the parser and the framer agree on where every literal lies.
    fn literal_fits(&self, range: &Range<usize>) -> bool;
}

impl Source for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn byte(&self, pos: usize) -> Option<u8> {
        self.get(pos).copied()
    }

    fn find(&self, from: usize, byte: u8) -> Option<usize> {
        let rest = self.get(from..)?;
        rest.iter()
            .position(|&b| b == byte)
            .map(|offset| from + offset)
    }

    fn text(&self, range: Range<usize>) -> Option<Cow<'_, [u8]>> {
        self.get(range).map(Cow::Borrowed)
    }

    fn literal_fits(&self, range: &Range<usize>) -> bool {
        range.end <= self.len()
    }
}

/// An ordered list of byte parts viewed as one byte string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segments {
    parts: Vec<Bytes>,
    /// Offset of each part's first octet.
    starts: Vec<usize>,
    len: usize,
}

impl Segments {
    /// The parts in order (empty parts are dropped).
    pub fn new(parts: impl IntoIterator<Item = Bytes>) -> Segments {
        let mut segments = Segments::default();
        for part in parts.into_iter().filter(|p| !p.is_empty()) {
            segments.starts.push(segments.len);
            segments.len += part.len();
            segments.parts.push(part);
        }
        segments
    }

    /// The bytes of a framed response, one part per event (no copy).
    pub fn of_events(events: &[Event]) -> Segments {
        Segments::new(events.iter().map(|event| event.bytes().clone()))
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Index of the part holding `pos`.
    fn part_at(&self, pos: usize) -> Option<usize> {
        if pos >= self.len {
            return None;
        }
        Some(self.starts.partition_point(|&start| start <= pos) - 1)
    }

    /// The octets in `range` as zero-copy slices of the parts, in order; `None` when out of
    /// bounds.
    pub fn pieces(&self, range: Range<usize>) -> Option<Vec<Bytes>> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        let mut out = Vec::new();
        let Some(first) = self.part_at(range.start) else {
            return Some(out);
        };
        for (part, &start) in self.parts[first..].iter().zip(&self.starts[first..]) {
            if start >= range.end {
                break;
            }
            let from = range.start.saturating_sub(start);
            let to = (range.end - start).min(part.len());
            if from < to {
                out.push(part.slice(from..to));
            }
        }
        Some(out)
    }

    /// The octets in `range` as one [`Bytes`]: a slice when one part holds them all, else a
    /// copy (only short items ever span parts).
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        let mut pieces = self.pieces(range)?;
        match pieces.len() {
            0 => Some(Bytes::new()),
            1 => pieces.pop(),
            _ => Some(Bytes::from(pieces.concat())),
        }
    }
}

impl Source for Segments {
    fn len(&self) -> usize {
        self.len
    }

    fn byte(&self, pos: usize) -> Option<u8> {
        let index = self.part_at(pos)?;
        self.parts[index].get(pos - self.starts[index]).copied()
    }

    fn find(&self, from: usize, byte: u8) -> Option<usize> {
        let first = self.part_at(from)?;
        for (part, &start) in self.parts[first..].iter().zip(&self.starts[first..]) {
            let skip = from.saturating_sub(start);
            if let Some(offset) = part[skip..].iter().position(|&b| b == byte) {
                return Some(start + skip + offset);
            }
        }
        None
    }

    fn text(&self, range: Range<usize>) -> Option<Cow<'_, [u8]>> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        if let Some(index) = self.part_at(range.start) {
            let start = self.starts[index];
            if range.end <= start + self.parts[index].len() {
                return Some(Cow::Borrowed(
                    &self.parts[index][range.start - start..range.end - start],
                ));
            }
        }
        let pieces = self.pieces(range)?;
        Some(Cow::Owned(pieces.concat()))
    }

    fn literal_fits(&self, range: &Range<usize>) -> bool {
        if range.is_empty() {
            // An empty literal has no part of its own: it sits between two line parts.
            return range.end <= self.len
                && (range.start == self.len || self.starts.binary_search(&range.start).is_ok());
        }
        match self.starts.binary_search(&range.start) {
            Ok(index) => self.parts[index].len() == range.len(),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(parts: &[&'static [u8]]) -> Segments {
        Segments::new(parts.iter().map(|p| Bytes::from_static(p)))
    }

    #[test]
    fn bytes_finds_and_slices_cross_parts() {
        let segments = split(&[b"ab", b"", b"cde", b"f"]);
        assert_eq!(Source::len(&segments), 6);
        assert_eq!(segments.parts().len(), 3);
        let all: Vec<u8> = (0..6).filter_map(|i| segments.byte(i)).collect();
        assert_eq!(all, b"abcdef");
        assert_eq!(segments.byte(6), None);
        assert_eq!(segments.find(1, b'e'), Some(4));
        assert_eq!(segments.find(5, b'e'), None);
        assert_eq!(segments.text(2..4).unwrap(), Cow::Borrowed(&b"cd"[..]));
        assert_eq!(segments.text(1..6).unwrap().as_ref(), b"bcdef");
        assert_eq!(segments.text(3..7), None);
        let pieces = segments.pieces(1..6).unwrap();
        assert_eq!(pieces, [&b"b"[..], &b"cde"[..], &b"f"[..]]);
        assert_eq!(segments.slice(2..5).unwrap(), &b"cde"[..]);
        assert_eq!(segments.slice(1..3).unwrap(), &b"bc"[..]);
        assert_eq!(segments.slice(3..3).unwrap(), &b""[..]);
        #[allow(clippy::reversed_empty_ranges)]
        let backwards = 4..2;
        assert_eq!(segments.pieces(backwards), None);
    }

    #[test]
    fn a_literal_must_be_exactly_one_part() {
        let segments = split(&[b"x {3}\r\n", b"abc", b")\r\n"]);
        assert!(segments.literal_fits(&(7..10)));
        assert!(!segments.literal_fits(&(7..9)));
        assert!(!segments.literal_fits(&(6..9)));
        assert!(segments.literal_fits(&(7..7)));
        assert!(!segments.literal_fits(&(8..8)));
        assert!(b"x {3}\r\nabc)\r\n"[..].literal_fits(&(7..10)));
    }
}
