//! Decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! Input may be split anywhere: the decoder keeps its place in a small state enum and is fed
//! whatever bytes arrived. It refuses a body larger than `max_body` as soon as a chunk-size line
//! announces it, before reading the data. Chunk extensions and trailers are skipped, bounded.

use std::fmt;

/// Why a chunked body was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// The decoded body would exceed `--max-body` (413).
    TooLarge { limit: usize },
    /// A chunk-size line is not hex digits (at most 15) with an optional extension and CRLF (400).
    BadChunkSize,
    /// Chunk data is not followed by CRLF (400).
    BadChunkEnd,
    /// A chunk extension or the trailer section is longer than the decoder accepts (400).
    TooLong,
}

impl ChunkError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        todo!()
    }
}

impl fmt::Display for ChunkError {
    /// One sentence for the `text/plain` error body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl std::error::Error for ChunkError {}

/// Incremental chunked-body decoder.
#[derive(Debug)]
pub struct ChunkedDecoder {
    _todo: (),
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        todo!()
    }

    /// Decodes as much of `input` as it can, appending data to `body`; returns the bytes of
    /// `input` used. After the last chunk and trailers, [`is_done`](Self::is_done) is true and
    /// further input is not consumed (it belongs to a next request).
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkError> {
        todo!()
    }

    /// Whether the terminating chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        todo!()
    }
}
