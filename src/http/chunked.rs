//! Decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! Input may be split anywhere: the decoder keeps its place in a small state enum and is fed
//! whatever bytes arrived. It refuses a body larger than `max_body` as soon as a chunk-size line
//! announces it, before reading the data. Chunk extensions and trailers are skipped, bounded.
//! The grammar, with the states that read each part:
//!
//! ```text
//! chunked-body    = *chunk last-chunk trailer-section CRLF
//! chunk           = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//!                   (Size, Ext, SizeLf, then Data, DataCr, DataLf)
//! last-chunk      = 1*("0") [ chunk-ext ] CRLF         (Size, Ext, SizeLf)
//! trailer-section = *( field-line CRLF )               (Trailer, TrailerLf; the CRLF ends in Done)
//! ```
//!
//! Line ends are strict CRLF: a bare LF is `BadChunkSize` on a chunk-size line and `BadChunkEnd`
//! after chunk data or in the trailer section. Trailer lines are skipped without being parsed.

use std::fmt;

/// Why a chunked body was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkError {
    /// The decoded body would exceed `--max-body` (413).
    TooLarge { limit: usize },
    /// A chunk-size line is not hex digits with an optional extension and CRLF (400).
    BadChunkSize,
    /// Chunk data, or a trailer line, is not followed by CRLF (400).
    BadChunkEnd,
    /// A chunk extension or the trailer section is longer than the decoder accepts (400).
    TooLong,
}

impl ChunkError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ChunkError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

impl fmt::Display for ChunkError {
    /// One sentence for the `text/plain` error body.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::TooLarge { limit } => {
                write!(f, "Body is larger than the {limit}-byte limit (--max-body).")
            }
            ChunkError::BadChunkSize => {
                f.write_str("Chunked body has a malformed chunk-size line.")
            }
            ChunkError::BadChunkEnd => {
                f.write_str("Chunked body has chunk data or a trailer line not ended by CRLF.")
            }
            ChunkError::TooLong => write!(
                f,
                "Chunked body has a chunk extension over {MAX_EXT} bytes or trailers over \
                 {MAX_TRAILERS} bytes."
            ),
        }
    }
}

impl std::error::Error for ChunkError {}

/// Longest chunk extension skipped, in bytes (after the chunk size, before its CRLF).
const MAX_EXT: usize = 1024;
/// Longest trailer section skipped, in bytes, line ends included.
const MAX_TRAILERS: usize = 8192;

/// Where the decoder is in the chunked grammar; see the module header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size (`digits`: whether any came yet). Leading zeros
    /// are unbounded in number (`chunk-size = 1*HEXDIG`); the value is bounded by `max_body`.
    Size { size: u64, digits: bool },
    /// Skipping a chunk extension (or whitespace) until CR; `len` bytes skipped so far.
    Ext { size: u64, len: usize },
    /// Chunk-size line read up to its CR; LF expected.
    SizeLf { size: u64 },
    /// Copying chunk data; `left` bytes to go (never 0).
    Data { left: u64 },
    /// Chunk data read; CR expected.
    DataCr,
    /// Chunk data and CR read; LF expected.
    DataLf,
    /// In the trailer section: `line` bytes into the current line, `total` bytes in all.
    Trailer { line: usize, total: usize },
    /// A trailer line (empty if `line == 0`) read up to its CR; LF expected.
    TrailerLf { line: usize, total: usize },
    /// The final CRLF has been read.
    Done,
}

/// Incremental chunked-body decoder.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    /// Decoded bytes so far, never more than `max_body`.
    received: u64,
    max_body: usize,
}

impl ChunkedDecoder {
    /// A decoder that refuses bodies over `max_body` decoded bytes.
    pub fn new(max_body: usize) -> Self {
        let state = State::Size { size: 0, digits: false };
        ChunkedDecoder { state, received: 0, max_body }
    }

    /// Decodes as much of `input` as it can, appending data to `body`; returns the bytes of
    /// `input` used. After the last chunk and trailers, [`is_done`](Self::is_done) is true and
    /// further input is not consumed (it belongs to a next request).
    pub fn decode(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, ChunkError> {
        let mut used = 0;
        while self.state != State::Done {
            let rest = input.get(used..).unwrap_or_default();
            if let State::Data { left } = self.state {
                let n = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if n == 0 {
                    break;
                }
                let data = rest.get(..n).unwrap_or_default();
                body.extend_from_slice(data);
                // `n <= left`, and `left` was checked against `max_body` on the size line.
                self.received += n as u64;
                self.state = match left - n as u64 {
                    0 => State::DataCr,
                    left => State::Data { left },
                };
                used += n;
                continue;
            }
            let Some(&byte) = rest.first() else { break };
            self.state = self.step(byte)?;
            used += 1;
        }
        Ok(used)
    }

    /// Whether the terminating chunk and trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decoded bytes the body may still take under `max_body`.
    fn room(&self) -> u64 {
        u64::try_from(self.max_body).unwrap_or(u64::MAX).saturating_sub(self.received)
    }

    /// The state after reading `byte` outside chunk data.
    fn step(&self, byte: u8) -> Result<State, ChunkError> {
        use State::*;
        Ok(match (self.state, byte) {
            (Size { size, .. }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = char::from(byte).to_digit(16).map_or(0, u64::from);
                // Bounded by value as the digits come: a size over what is left of --max-body
                // is refused at once, so the checked arithmetic never overflows in practice.
                let size = size.checked_mul(16).and_then(|s| s.checked_add(digit));
                match size.filter(|&size| size <= self.room()) {
                    Some(size) => Size { size, digits: true },
                    None => return Err(ChunkError::TooLarge { limit: self.max_body }),
                }
            }
            (Size { digits: false, .. }, _) => return Err(ChunkError::BadChunkSize),
            (Size { size, .. }, b'\r') => SizeLf { size },
            // BWS before ";" is allowed by RFC 9112 §7.1.1; both start the skipped extension.
            (Size { size, .. }, b';' | b' ' | b'\t') => Ext { size, len: 1 },
            (Ext { size, .. }, b'\r') => SizeLf { size },
            (Ext { len, .. }, _) if len >= MAX_EXT => return Err(ChunkError::TooLong),
            (Ext { size, len }, b) if b != b'\n' => Ext { size, len: len + 1 },
            (SizeLf { size: 0 }, b'\n') => Trailer { line: 0, total: 0 },
            // `size <= self.room()`, checked digit by digit.
            (SizeLf { size }, b'\n') => Data { left: size },
            (Size { .. } | Ext { .. } | SizeLf { .. }, _) => return Err(ChunkError::BadChunkSize),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Size { size: 0, digits: false },
            (Trailer { total, .. } | TrailerLf { total, .. }, _) if total >= MAX_TRAILERS => {
                return Err(ChunkError::TooLong)
            }
            (Trailer { line, total }, b'\r') => TrailerLf { line, total: total + 1 },
            (Trailer { line, total }, b) if b != b'\n' => {
                Trailer { line: line + 1, total: total + 1 }
            }
            (TrailerLf { line: 0, .. }, b'\n') => Done,
            (TrailerLf { total, .. }, b'\n') => Trailer { line: 0, total: total + 1 },
            (DataCr | DataLf | Trailer { .. } | TrailerLf { .. }, _) => {
                return Err(ChunkError::BadChunkEnd)
            }
            // `decode` never steps from `Data` (copied in bulk) or `Done` (stops); stay put.
            (Data { .. } | Done, _) => self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{mutate, Rng};

    type Outcome<'a> = (Result<usize, ChunkError>, &'a [u8], bool);

    /// Decodes `input` in one call: (result, body, done).
    fn decode_once(max_body: usize, input: &[u8]) -> (Result<usize, ChunkError>, Vec<u8>, bool) {
        let (mut decoder, mut body) = (ChunkedDecoder::new(max_body), Vec::new());
        let result = decoder.decode(input, &mut body);
        (result, body, decoder.is_done())
    }

    /// Decodes `input` delivered in `pieces`, the way a connection would: unused bytes stay
    /// pending and are offered again with the next piece. Returns the same triple as
    /// `decode_once`, with the total bytes used.
    fn decode_split(
        max_body: usize,
        pieces: &[&[u8]],
    ) -> (Result<usize, ChunkError>, Vec<u8>, bool) {
        let (mut decoder, mut body) = (ChunkedDecoder::new(max_body), Vec::new());
        let (mut pending, mut total) = (Vec::new(), 0);
        for piece in pieces {
            pending.extend_from_slice(piece);
            let used = match decoder.decode(&pending, &mut body) {
                Ok(used) => used,
                Err(err) => return (Err(err), body, decoder.is_done()),
            };
            assert!(used <= pending.len());
            assert!(used == pending.len() || decoder.is_done());
            assert!(body.len() <= max_body);
            pending.drain(..used);
            total += used;
        }
        (Ok(total), body, decoder.is_done())
    }

    /// `chunked!(name, max_body, input, (result, body, done))`: one table row.
    macro_rules! chunked {
        ($name:ident, $max_body:expr, $input:expr, $expected:expr) => {
            #[test]
            fn $name() {
                let (result, body, done) = decode_once($max_body, $input);
                let expected: Outcome = $expected;
                assert_eq!((result, body.as_slice(), done), expected);
            }
        };
    }

    const MAX: usize = 64 * 1024;
    const HELLO: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";

    chunked!(simple, MAX, HELLO, (Ok(HELLO.len()), b"hello", true));
    chunked!(
        multiple_chunks,
        MAX,
        b"5\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\n\r\n",
        (Ok(36), b"hello 0123456789", true)
    );
    chunked!(lowercase_hex, MAX, b"a\r\n0123456789\r\n0\r\n\r\n", (Ok(20), b"0123456789", true));
    chunked!(
        extensions,
        MAX,
        b"5;name=value;x=\"q\"\r\nhello\r\n0;last\r\n\r\n",
        (Ok(37), b"hello", true)
    );
    chunked!(
        whitespace_before_extension,
        MAX,
        b"5 ;a\r\nhello\r\n0\t\r\n\r\n",
        (Ok(19), b"hello", true)
    );
    chunked!(trailers, MAX, b"2\r\nhi\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n", (Ok(28), b"hi", true));
    chunked!(last_chunk_leading_zeros, MAX, b"000\r\n\r\n", (Ok(7), b"", true));
    chunked!(
        fifteen_hex_digits,
        MAX,
        b"000000000000005\r\nhello\r\n0\r\n\r\n",
        (Ok(29), b"hello", true)
    );
    chunked!(
        fifteen_hex_digits_max_value,
        usize::MAX,
        b"fffffffffffffff\r\nab",
        (Ok(19), b"ab", false)
    );
    chunked!(
        leading_zeros_are_not_bounded,
        MAX,
        b"000000000000000000005\r\nhello\r\n0000000000000000000000\r\n\r\n",
        (Ok(56), b"hello", true)
    );
    chunked!(
        sixteen_hex_digits_max_value,
        usize::MAX,
        b"ffffffffffffffff\r\nab",
        (Ok(20), b"ab", false)
    );
    chunked!(
        size_past_u64_is_too_large,
        usize::MAX,
        b"10000000000000000\r\n",
        (Err(ChunkError::TooLarge { limit: usize::MAX }), b"", false)
    );
    chunked!(
        size_over_max_body_is_refused_at_its_digit,
        16,
        b"11",
        (Err(ChunkError::TooLarge { limit: 16 }), b"", false)
    );
    chunked!(empty_chunk_size, MAX, b"\r\nhello\r\n", (Err(ChunkError::BadChunkSize), b"", false));
    chunked!(
        non_hex_chunk_size,
        MAX,
        b"5g\r\nhello\r\n",
        (Err(ChunkError::BadChunkSize), b"", false)
    );
    chunked!(
        signed_chunk_size,
        MAX,
        b"+5\r\nhello\r\n",
        (Err(ChunkError::BadChunkSize), b"", false)
    );
    chunked!(
        bare_lf_after_size,
        MAX,
        b"5\nhello\r\n0\r\n\r\n",
        (Err(ChunkError::BadChunkSize), b"", false)
    );
    chunked!(
        bare_lf_in_extension,
        MAX,
        b"5;a\nhello\r\n0\r\n\r\n",
        (Err(ChunkError::BadChunkSize), b"", false)
    );
    chunked!(
        cr_without_lf_after_size,
        MAX,
        b"5\r\rhello\r\n",
        (Err(ChunkError::BadChunkSize), b"", false)
    );
    chunked!(
        bad_chunk_end,
        MAX,
        b"5\r\nhelloX\r\n0\r\n\r\n",
        (Err(ChunkError::BadChunkEnd), b"hello", false)
    );
    chunked!(
        cr_without_lf_after_data,
        MAX,
        b"5\r\nhello\rX0\r\n\r\n",
        (Err(ChunkError::BadChunkEnd), b"hello", false)
    );
    chunked!(
        bare_lf_after_data,
        MAX,
        b"5\r\nhello\n0\r\n\r\n",
        (Err(ChunkError::BadChunkEnd), b"hello", false)
    );
    chunked!(
        bare_lf_in_trailer,
        MAX,
        b"0\r\nX: 1\n\r\n",
        (Err(ChunkError::BadChunkEnd), b"", false)
    );
    chunked!(bare_lf_final_line, MAX, b"0\r\n\n", (Err(ChunkError::BadChunkEnd), b"", false));
    chunked!(too_large, 4, HELLO, (Err(ChunkError::TooLarge { limit: 4 }), b"", false));
    chunked!(
        too_large_before_data_arrives,
        4,
        b"5\r\n",
        (Err(ChunkError::TooLarge { limit: 4 }), b"", false)
    );
    chunked!(
        too_large_on_second_chunk,
        7,
        b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
        (Err(ChunkError::TooLarge { limit: 7 }), b"hello", false)
    );
    chunked!(
        too_large_huge_size,
        MAX,
        b"fffffffffffffff\r\n",
        (Err(ChunkError::TooLarge { limit: MAX }), b"", false)
    );
    chunked!(exact_limit, 5, HELLO, (Ok(HELLO.len()), b"hello", true));
    chunked!(empty_body_zero_limit, 0, b"0\r\n\r\n", (Ok(5), b"", true));
    chunked!(bytes_after_end_not_consumed, MAX, b"0\r\n\r\nGET / HTTP/1.1\r\n", (Ok(5), b"", true));

    #[test]
    fn too_long() {
        let ext =
            |n: usize| [b"5;".as_slice(), &b"x".repeat(n - 1), b"\r\nhello\r\n0\r\n\r\n"].concat();
        assert_eq!(decode_once(MAX, &ext(1024)).0, Ok(ext(1024).len()));
        assert_eq!(decode_once(MAX, &ext(1025)).0, Err(ChunkError::TooLong));
        // Trailer section: the field lines and the final CRLF, 8192 bytes at most.
        let trailers =
            |n: usize| [b"0\r\nX: ".as_slice(), &b"y".repeat(n - 7), b"\r\n\r\n"].concat();
        assert_eq!(decode_once(MAX, &trailers(8192)).0, Ok(8192 + 3));
        assert_eq!(decode_once(MAX, &trailers(8193)).0, Err(ChunkError::TooLong));
        let many = [b"0\r\n".as_slice(), &b"X: 1\r\n".repeat(2000), b"\r\n"].concat();
        assert_eq!(decode_once(MAX, &many).0, Err(ChunkError::TooLong));
    }

    #[test]
    fn done_consumes_nothing_more() {
        let (mut decoder, mut body) = (ChunkedDecoder::new(MAX), Vec::new());
        assert_eq!(decoder.decode(HELLO, &mut body), Ok(HELLO.len()));
        assert!(decoder.is_done());
        assert_eq!(decoder.decode(HELLO, &mut body), Ok(0));
        assert_eq!(decoder.decode(b"", &mut body), Ok(0));
        assert_eq!(body, b"hello");
    }

    /// ureq-proto style: feed "", "2", "2\r", "2\r\n", ... to fresh decoders and check counts.
    #[test]
    fn every_prefix_is_used_whole() {
        let input = b"2\r\nhi\r\n0;e\r\nX: 1\r\n\r\n";
        for i in 0..=input.len() {
            let (result, body, done) = decode_once(MAX, &input[..i]);
            assert_eq!(result, Ok(i), "prefix {i}");
            assert_eq!(body, &b"hi"[..i.saturating_sub(3).min(2)], "prefix {i}");
            assert_eq!(done, i == input.len(), "prefix {i}");
        }
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let input = b"5;a=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX: 1\r\n\r\nnext";
        let whole = decode_once(MAX, input);
        assert_eq!(whole, (Ok(input.len() - 4), b"hello0123456789".to_vec(), true));
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let pieces = [&input[..i], &input[i..j], &input[j..]];
                assert_eq!(decode_split(MAX, &pieces), whole, "split at {i}, {j}");
            }
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(decode_split(MAX, &bytes), whole);
    }

    #[test]
    fn status_and_messages() {
        let too_large = ChunkError::TooLarge { limit: 65536 };
        assert_eq!(too_large.status(), 413);
        assert_eq!(too_large.to_string(), "Body is larger than the 65536-byte limit (--max-body).");
        assert_eq!(ChunkError::BadChunkSize.status(), 400);
        assert_eq!(
            ChunkError::BadChunkSize.to_string(),
            "Chunked body has a malformed chunk-size line."
        );
        for err in [ChunkError::BadChunkEnd, ChunkError::TooLong] {
            assert_eq!(err.status(), 400);
            assert!(err.to_string().ends_with('.'));
        }
    }

    #[test]
    fn no_panic_on_random_and_mutated_input() {
        const SEEDS: &[&[u8]] = &[
            b"5\r\nhello\r\n0\r\n\r\n",
            b"3;x=y\r\nabc\r\nA\r\n0123456789\r\n0\r\nT: 1\r\n\r\nrest",
            b"00\r\n\r\n",
        ];
        const ALPHABET: &[u8] = b"0123456789abcdefABCDEF;= \r\n\r\n";
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut seen = [0usize; 3]; // done, waiting, error
        for round in 0..200_000 {
            let input: Vec<u8> = match round % 4 {
                0 => (0..rng.below(40)).map(|_| rng.next() as u8).collect(),
                1 => (0..rng.below(40)).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect(),
                _ => {
                    let seed = SEEDS[rng.below(SEEDS.len())];
                    mutate(&mut rng, seed, b"\r\n\0;0f\xff")
                }
            };
            let max_body = [MAX, 16, 5, 0][rng.below(4)];
            let whole = decode_once(max_body, &input);
            assert!(whole.1.len() <= max_body);
            match &whole {
                (Ok(used), _, done) => {
                    assert!(*used <= input.len() && (*used == input.len() || *done));
                    seen[usize::from(!done)] += 1;
                }
                (Err(err), ..) => {
                    assert!(err.status() >= 400 && err.to_string().ends_with('.'));
                    seen[2] += 1;
                }
            }
            let i = rng.below(input.len() + 1);
            let j = i + rng.below(input.len() - i + 1);
            let pieces = [&input[..i], &input[i..j], &input[j..]];
            assert_eq!(decode_split(max_body, &pieces), whole, "{input:?}");
        }
        // Every outcome comes up often, so the invariants above were really exercised.
        assert!(seen.iter().all(|&n| n > 5_000), "{seen:?}");
    }
}
