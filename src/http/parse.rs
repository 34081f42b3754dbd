//! The request-head parser: bytes in, a borrowed [`Head`] out. No sockets, no allocation beyond
//! the bounded header list, so every edge case is a byte-string test and the fuzzer drives it.
//!
//! Three outcomes, as in httparse: `Ok(Status::Complete(head))`, `Ok(Status::Partial)` (not enough
//! bytes yet: not an error) and `Err(HeadError)` (the bytes can never become a valid head). The
//! caller bounds retries on `Partial` by `--max-head` (here) and `--head-timeout` (in `conn.rs`).
//!
//! Strict by default (RFC 9112): CRLF line ends only, no obs-fold, no whitespace before a header
//! colon, no control bytes in values, tokens for methods and header names. [`validate`] then
//! applies the message-framing rules (Content-Length / Transfer-Encoding, Host).

use std::fmt;

/// Result of feeding bytes to a parser: done, or waiting for more bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// The whole item was parsed.
    Complete(T),
    /// The input ends before the item does; call again with more bytes.
    Partial,
}

/// Bounds on a request head, from `--max-head` and `--max-headers`.
#[derive(Clone, Copy, Debug)]
pub struct HeadLimits {
    /// Longest head accepted, in bytes, request line and final empty line included.
    pub max_head: usize,
    /// Most header lines accepted.
    pub max_headers: usize,
}

/// HTTP versions the relay speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: no chunked bodies, no Host requirement.
    Http10,
    /// HTTP/1.1.
    Http11,
}

/// One header line, borrowed from the input. The value has its surrounding whitespace trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    /// Field name as sent (compare case-insensitively).
    pub name: &'a str,
    /// Field value, without leading or trailing spaces and tabs.
    pub value: &'a [u8],
}

/// A parsed request head, borrowing from the buffer it was parsed from.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// Method token, case-sensitive (`GET`, `POST`, ...).
    pub method: &'a str,
    /// Request target exactly as sent (`/link/abc?x=1`, or absolute-form `http://h/p`).
    pub target: &'a str,
    /// Protocol version.
    pub version: Version,
    /// Header lines in order.
    pub headers: Vec<Header<'a>>,
    /// Bytes of input the head used, final CRLF CRLF included: the body starts here.
    pub len: usize,
}

impl<'a> Head<'a> {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        todo!()
    }
}

/// How the body of a request is framed (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (neither Content-Length nor Transfer-Encoding).
    None,
    /// Exactly this many bytes follow the head.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a head can never be valid. Each variant maps to a status and a one-sentence message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The head is longer than `--max-head` bytes (431).
    TooLarge { limit: usize },
    /// More header lines than `--max-headers` (400).
    TooManyHeaders { limit: usize },
    /// The request line is not `METHOD SP target SP HTTP/x.y CRLF` (400).
    BadRequestLine,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1 (505).
    UnsupportedVersion,
    /// A header line has no colon, space before the colon, or a name that is not a token (400).
    BadHeader,
    /// A header value holds a control byte such as NUL (400).
    BadHeaderValue,
    /// A header line starts with whitespace: obsolete line folding (400).
    ObsFold,
    /// A line ends in LF without CR (400).
    BareLf,
    /// Content-Length is not a plain decimal number that fits in 64 bits (400).
    BadContentLength,
    /// Content-Length appears more than once (400).
    DuplicateContentLength,
    /// Both Content-Length and Transfer-Encoding are present (400).
    LengthWithTransferEncoding,
    /// Transfer-Encoding does not end in `chunked` (400).
    BadTransferEncoding,
    /// Transfer-Encoding has codings other than a single `chunked` (501).
    UnsupportedTransferEncoding,
    /// Transfer-Encoding in an HTTP/1.0 request (400).
    TransferEncodingInHttp10,
    /// An HTTP/1.1 request without a Host header, or with more than one (400).
    BadHost,
}

impl HeadError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        todo!()
    }
}

impl fmt::Display for HeadError {
    /// One sentence for the `text/plain` error body, naming the limit and its flag where one applies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        todo!()
    }
}

impl std::error::Error for HeadError {}

/// Parses a request head from the start of `buf`.
///
/// `Partial` while `buf` could still grow into a valid head shorter than `limits.max_head`;
/// `TooLarge` once it cannot. Empty lines (CRLF) before the request line are skipped.
pub fn parse_head<'a>(buf: &'a [u8], limits: &HeadLimits) -> Result<Status<Head<'a>>, HeadError> {
    todo!()
}

/// Applies the framing and Host rules to a parsed head and says how its body is framed.
pub fn validate(head: &Head<'_>) -> Result<Framing, HeadError> {
    todo!()
}
