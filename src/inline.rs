//! Short byte strings held inline ([`InlineBytes`]): what a request carries from the HTTP side to
//! the registry (its channel id, its `Content-Type` until its body is read) without an
//! allocation of its own when it is as short as nearly all are.
//!
//! Not a bound: a longer string is kept whole on the heap, as before, so every limit stays where
//! its flag puts it (`--max-id` may pass the inline room, a header value may be any length up to
//! `--max-head`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

/// Up to `N` bytes inline, a longer string on the heap. Compares and hashes as its bytes, so an
/// inline string and a heap one with the same bytes are equal.
#[derive(Clone)]
pub enum InlineBytes<const N: usize> {
    /// At most `N` bytes, the first `len` of `bytes`.
    Inline { len: u16, bytes: [u8; N] },
    /// More than `N` bytes (or a capacity over `N` was asked for).
    Heap(Vec<u8>),
}

impl<const N: usize> InlineBytes<N> {
    /// Empty, with room for `capacity` bytes: inline up to `N` (and at most `u16::MAX`), else on
    /// the heap with exactly that room.
    pub fn with_capacity(capacity: usize) -> InlineBytes<N> {
        if capacity <= Self::ROOM {
            InlineBytes::Inline { len: 0, bytes: [0; N] }
        } else {
            InlineBytes::Heap(Vec::with_capacity(capacity))
        }
    }

    /// A copy of `bytes`: inline when they fit.
    pub fn copy_of(bytes: &[u8]) -> InlineBytes<N> {
        let mut copy = InlineBytes::with_capacity(bytes.len());
        copy.extend_from_slice(bytes);
        copy
    }

    /// The most bytes kept inline: `N`, within what the length field counts.
    const ROOM: usize = if N < u16::MAX as usize { N } else { u16::MAX as usize };

    /// Appends `byte`; past the inline room, every byte moves to the heap.
    pub fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }

    /// Appends `more`; past the inline room, every byte moves to the heap.
    pub fn extend_from_slice(&mut self, more: &[u8]) {
        match self {
            InlineBytes::Inline { len, bytes } => {
                let start = usize::from(*len);
                let end = start + more.len();
                if end <= Self::ROOM {
                    bytes[start..end].copy_from_slice(more);
                    // `end` is at most `ROOM`, which fits a `u16`.
                    *len = end as u16;
                } else {
                    let mut heap = Vec::with_capacity(end);
                    heap.extend_from_slice(&bytes[..start]);
                    heap.extend_from_slice(more);
                    *self = InlineBytes::Heap(heap);
                }
            }
            InlineBytes::Heap(heap) => heap.extend_from_slice(more),
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            InlineBytes::Inline { len, bytes } => &bytes[..usize::from(*len)],
            InlineBytes::Heap(heap) => heap,
        }
    }

    /// Whether the bytes are on the heap.
    #[cfg(test)]
    pub fn is_on_heap(&self) -> bool {
        matches!(self, InlineBytes::Heap(_))
    }
}

impl<const N: usize> Default for InlineBytes<N> {
    fn default() -> InlineBytes<N> {
        InlineBytes::with_capacity(0)
    }
}

impl<const N: usize> Deref for InlineBytes<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> PartialEq for InlineBytes<N> {
    fn eq(&self, other: &InlineBytes<N>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for InlineBytes<N> {}

impl<const N: usize> Hash for InlineBytes<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl<const N: usize> fmt::Debug for InlineBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&String::from_utf8_lossy(self.as_slice()), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Four = InlineBytes<4>;

    #[test]
    fn empty_is_inline() {
        let empty = Four::default();
        assert!(!empty.is_on_heap());
        assert_eq!(empty.as_slice(), b"");
        assert_eq!(Four::copy_of(b""), empty);
    }

    #[test]
    fn at_the_bound_it_stays_inline() {
        let mut bytes = Four::with_capacity(4);
        for b in *b"abcd" {
            bytes.push(b);
        }
        assert!(!bytes.is_on_heap());
        assert_eq!(&*bytes, b"abcd");
        assert!(!Four::copy_of(b"abcd").is_on_heap());
    }

    #[test]
    fn over_the_bound_it_moves_to_the_heap_whole() {
        let mut bytes = Four::copy_of(b"abcd");
        bytes.push(b'e');
        assert!(bytes.is_on_heap());
        assert_eq!(&*bytes, b"abcde");
        bytes.extend_from_slice(b"fg");
        assert_eq!(&*bytes, b"abcdefg");
        let long = Four::copy_of(b"abcdefg");
        assert!(long.is_on_heap());
        assert_eq!(long, bytes);
        assert!(Four::with_capacity(5).is_on_heap());
    }

    #[test]
    fn inline_and_heap_with_the_same_bytes_are_equal_and_hash_alike() {
        use std::collections::hash_map::RandomState;
        use std::hash::BuildHasher;
        let inline = Four::copy_of(b"ab");
        let mut heap = Four::with_capacity(10);
        heap.extend_from_slice(b"ab");
        assert!(heap.is_on_heap() && !inline.is_on_heap());
        assert_eq!(inline, heap);
        let hasher = RandomState::new();
        assert_eq!(hasher.hash_one(&inline), hasher.hash_one(&heap));
        assert_eq!(hasher.hash_one(&inline), hasher.hash_one(&b"ab"[..]));
        assert_eq!(format!("{inline:?}"), "\"ab\"");
    }

    #[test]
    fn the_room_is_bounded_by_the_length_field() {
        type Huge = InlineBytes<70_000>;
        let bytes = Huge::with_capacity(65_535);
        assert!(!bytes.is_on_heap());
        assert!(Huge::with_capacity(65_536).is_on_heap());
    }
}
