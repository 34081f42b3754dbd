//! The request-head parser: bytes in, a borrowed [`Head`] out. No sockets, no allocation beyond
//! the bounded header list, so every edge case is a byte-string test and the fuzzer drives it.
//!
//! Three outcomes, as in httparse: `Ok(Status::Complete(head))`, `Ok(Status::Partial)` (not enough
//! bytes yet: not an error) and `Err(HeadError)` (the bytes can never become a valid head). The
//! caller bounds retries on `Partial` by `--max-head` (here) and `--head-timeout` (in `reader.rs`).
//!
//! Strict by default (RFC 9112): CRLF line ends only, no obs-fold, no whitespace before a header
//! colon, no control bytes in values, tokens for methods and header names. [`validate`] then
//! applies the message-framing rules (Content-Length / Transfer-Encoding, Host). Limits and
//! malformed input: protocol §4.
//!
//! Errors are only reported for complete lines (the LF has arrived), so every strict prefix of a
//! valid head is `Partial`. A CR that is not followed by LF stays part of its line and fails that
//! line's byte class: `BadRequestLine` on the request line, `BadHeader` in a header name,
//! `BadHeaderValue` in a value.

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

/// Header lines kept without an allocation: more than clients send (browsers send about 15).
const INLINE_HEADERS: usize = 24;

/// The header lines of a head, in order: the first [`INLINE_HEADERS`] inline, so that reading
/// a request allocates nothing for them; the rest, up to `--max-headers`, in a vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderLines<'a> {
    /// Lines past `len` are empty ones, never read.
    inline: [Header<'a>; INLINE_HEADERS],
    len: usize,
    more: Vec<Header<'a>>,
}

impl<'a> HeaderLines<'a> {
    fn new() -> HeaderLines<'a> {
        HeaderLines {
            inline: [Header { name: "", value: &[] }; INLINE_HEADERS],
            len: 0,
            more: Vec::new(),
        }
    }

    fn push(&mut self, header: Header<'a>) {
        match self.inline.get_mut(self.len) {
            Some(slot) => *slot = header,
            None => self.more.push(header),
        }
        self.len += 1;
    }

    /// How many lines there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The lines in the order they came.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Header<'a>> {
        self.inline[..self.len.min(INLINE_HEADERS)].iter().chain(&self.more)
    }
}

impl<'a> FromIterator<Header<'a>> for HeaderLines<'a> {
    fn from_iter<I: IntoIterator<Item = Header<'a>>>(lines: I) -> HeaderLines<'a> {
        let mut headers = HeaderLines::new();
        lines.into_iter().for_each(|line| headers.push(line));
        headers
    }
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
    pub headers: HeaderLines<'a>,
    /// Bytes of input the head used, final CRLF CRLF included: the body starts here.
    pub len: usize,
}

impl<'a> Head<'a> {
    /// The first value of the header `name` (case-insensitive). For the singleton fields of
    /// [`SINGLETONS`] it is the only one, once [`validate`] has passed.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers(name).next()
    }

    /// Every value of the header `name` (case-insensitive), in the order the lines came: the
    /// lines of a list field are one list (RFC 9110 §5.3).
    pub fn headers<'h>(&'h self, name: &'h str) -> impl DoubleEndedIterator<Item = &'a [u8]> + 'h {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

/// Fields the relay reads one value of, which must therefore come once: two lines would leave
/// the relay and a proxy in front of it disagreeing about which one counts. (`Host` and
/// `Content-Length` have errors of their own.)
pub const SINGLETONS: [&str; 3] = ["Authorization", "HttpRelay-WSecret", "Content-Type"];

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
    /// One of the [`SINGLETONS`] sent on more than one line (400).
    DuplicateField { name: &'static str },
}

impl HeadError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge { .. } => 431,
            HeadError::UnsupportedVersion => 505,
            HeadError::UnsupportedTransferEncoding => 501,
            _ => 400,
        }
    }
}

impl fmt::Display for HeadError {
    /// One sentence for the `text/plain` error body, naming the limit and its flag where one applies.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use HeadError::*;
        let sentence = match self {
            TooLarge { limit } => {
                return write!(
                    f,
                    "Request head is larger than the {limit}-byte limit (--max-head)."
                )
            }
            TooManyHeaders { limit } => {
                return write!(f, "Request has more than {limit} header lines (--max-headers).")
            }
            BadRequestLine => {
                "Request line must be a method, a target and HTTP/1.x, one space apart."
            }
            UnsupportedVersion => "Only HTTP/1.0 and HTTP/1.1 are supported.",
            BadHeader => {
                "A header line has no colon, space before it, or a name that is not a token."
            }
            BadHeaderValue => "A header value contains a control character.",
            ObsFold => "Header lines must not start with whitespace (obsolete line folding).",
            BareLf => "Lines must end with CRLF, not a bare LF.",
            BadContentLength => "Content-Length must be a decimal number that fits in 64 bits.",
            DuplicateContentLength => "Content-Length must appear only once.",
            LengthWithTransferEncoding => {
                "Content-Length and Transfer-Encoding must not both be present."
            }
            BadTransferEncoding => "Transfer-Encoding must be a list of codings ending in chunked.",
            UnsupportedTransferEncoding => "Only a single Transfer-Encoding: chunked is supported.",
            TransferEncodingInHttp10 => "Transfer-Encoding is not allowed in an HTTP/1.0 request.",
            BadHost => "Request must have exactly one Host header (HTTP/1.0: at most one).",
            DuplicateField { name } => return write!(f, "{name} must appear only once."),
        };
        f.write_str(sentence)
    }
}

impl std::error::Error for HeadError {}

/// Builds a 256-entry byte-class table at compile time from a predicate on the byte `$b`.
macro_rules! byte_class {
    (|$b:ident| $pred:expr) => {{
        let mut table = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            table[i] = $pred;
            i += 1;
        }
        table
    }};
}

/// Method and header-name bytes (RFC 9110 §5.6.2):
///
/// ```text
/// token = 1*tchar
/// tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
///         "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
/// ```
#[rustfmt::skip]
const TCHAR: [bool; 256] = byte_class!(|b| b.is_ascii_alphanumeric() || matches!(b,
    b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' |
    b'^' | b'_' | b'`' | b'|' | b'~'));

/// Request-target bytes: the URI grammar (RFC 3986) only uses visible ASCII, so the target is
/// checked as `1*VCHAR` and passed through (RFC 5234 B.1):
///
/// ```text
/// VCHAR = %x21-7E
/// ```
const VCHAR: [bool; 256] = byte_class!(|b| matches!(b, 0x21..=0x7E));

/// Header-value bytes, before trimming (RFC 9110 §5.5):
///
/// ```text
/// field-value   = *field-content
/// field-content = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
/// field-vchar   = VCHAR / obs-text
/// obs-text      = %x80-FF
/// ```
const FIELD_BYTE: [bool; 256] =
    byte_class!(|b| matches!(b, b' ' | b'\t' | 0x21..=0x7E | 0x80..=0xFF));

/// Whether `bytes` is a non-empty token.
fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| TCHAR[usize::from(b)])
}

/// `bytes` without leading and trailing SP / HTAB (RFC 9110 OWS).
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Splits the next line off `rest` and returns it without its CRLF; `None` if `rest` holds no LF
/// yet (the one place where "out of bytes" is decided).
fn next_line<'a>(rest: &mut &'a [u8]) -> Result<Option<&'a [u8]>, HeadError> {
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let (line, after) = rest.split_at(lf);
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err(HeadError::BareLf);
    };
    *rest = after.get(1..).unwrap_or_default();
    Ok(Some(line))
}

/// Parses `method SP request-target SP HTTP-version` (RFC 9112 §3), CRLF already removed.
fn parse_request_line(line: &[u8]) -> Result<(&str, &str, Version), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::BadRequestLine);
    };
    if !is_token(method) || target.is_empty() || !target.iter().all(|&b| VCHAR[usize::from(b)]) {
        return Err(HeadError::BadRequestLine);
    }
    let version = match version {
        b"HTTP/1.0" => Version::Http10,
        b"HTTP/1.1" => Version::Http11,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HeadError::UnsupportedVersion)
        }
        _ => return Err(HeadError::BadRequestLine),
    };
    // Tokens and VCHARs are ASCII, so these conversions cannot fail.
    let method = std::str::from_utf8(method).map_err(|_| HeadError::BadRequestLine)?;
    let target = std::str::from_utf8(target).map_err(|_| HeadError::BadRequestLine)?;
    Ok((method, target, version))
}

/// Parses `field-name ":" OWS field-value OWS` (RFC 9112 §5), CRLF already removed.
fn parse_header(line: &[u8]) -> Result<Header<'_>, HeadError> {
    if let [b' ' | b'\t', ..] = line {
        return Err(HeadError::ObsFold);
    }
    let colon = line.iter().position(|&b| b == b':').ok_or(HeadError::BadHeader)?;
    let (name, value) = line.split_at(colon);
    if !is_token(name) {
        return Err(HeadError::BadHeader);
    }
    let value = trim_ows(value.get(1..).unwrap_or_default());
    if !value.iter().all(|&b| FIELD_BYTE[usize::from(b)]) {
        return Err(HeadError::BadHeaderValue);
    }
    let name = std::str::from_utf8(name).map_err(|_| HeadError::BadHeader)?;
    Ok(Header { name, value })
}

/// Parses a request head from the start of `buf`.
///
/// `Partial` while `buf` could still grow into a valid head shorter than `limits.max_head`;
/// `TooLarge` once it cannot. Empty lines (CRLF) before the request line are skipped.
pub fn parse_head<'a>(buf: &'a [u8], limits: &HeadLimits) -> Result<Status<Head<'a>>, HeadError> {
    // Only the first `max_head` bytes may hold the head; a line that has not ended inside them
    // means "wait" while the buffer is shorter than the limit, and "too large" once it is not.
    let window = buf.get(..limits.max_head).unwrap_or(buf);
    let out_of_bytes = || {
        if buf.len() < limits.max_head {
            Ok(Status::Partial)
        } else {
            Err(HeadError::TooLarge { limit: limits.max_head })
        }
    };
    let mut rest = window;
    let request_line = loop {
        match next_line(&mut rest)? {
            None => return out_of_bytes(),
            Some([]) => continue,
            Some(line) => break line,
        }
    };
    let (method, target, version) = parse_request_line(request_line)?;
    let mut headers = HeaderLines::new();
    loop {
        match next_line(&mut rest)? {
            None => return out_of_bytes(),
            Some([]) => break,
            Some(line) => {
                let header = parse_header(line)?;
                if headers.len() >= limits.max_headers {
                    return Err(HeadError::TooManyHeaders { limit: limits.max_headers });
                }
                headers.push(header);
            }
        }
    }
    // `rest` is always a suffix of `window`.
    let len = window.len() - rest.len();
    Ok(Status::Complete(Head { method, target, version, headers, len }))
}

/// Applies the framing and Host rules to a parsed head and says how its body is framed.
///
/// Checked in this order: Host count, duplicate Content-Length, the other [`SINGLETONS`],
/// Content-Length with Transfer-Encoding, Transfer-Encoding in HTTP/1.0, then the
/// Content-Length or Transfer-Encoding value.
pub fn validate(head: &Head<'_>) -> Result<Framing, HeadError> {
    let named = |name: &'static str| head.headers(name);
    let hosts = named("host").count();
    if hosts > 1 || (hosts == 0 && head.version == Version::Http11) {
        return Err(HeadError::BadHost);
    }
    let mut lengths = named("content-length");
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(HeadError::DuplicateContentLength);
    }
    if let Some(name) = SINGLETONS.into_iter().find(|name| named(name).nth(1).is_some()) {
        return Err(HeadError::DuplicateField { name });
    }
    let has_te = named("transfer-encoding").next().is_some();
    match (length, has_te) {
        (Some(_), true) => Err(HeadError::LengthWithTransferEncoding),
        (Some(value), false) => parse_content_length(value).map(Framing::Length),
        (None, true) if head.version == Version::Http10 => Err(HeadError::TransferEncodingInHttp10),
        (None, true) => transfer_framing(named("transfer-encoding")),
        (None, false) => Ok(Framing::None),
    }
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), read with checked arithmetic so it fits `u64`.
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() {
        return Err(HeadError::BadContentLength);
    }
    value
        .iter()
        .try_fold(0u64, |n, &b| match b {
            b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
            _ => None,
        })
        .ok_or(HeadError::BadContentLength)
}

/// Reads the Transfer-Encoding values as one list (RFC 9112 §6.1):
///
/// ```text
/// Transfer-Encoding = #transfer-coding
/// transfer-coding   = token *( OWS ";" OWS transfer-parameter )
/// ```
///
/// Empty list elements are ignored (RFC 9110 §5.6.1.2). Only a lone `chunked` is accepted; a list
/// ending in `chunked` with other codings is unsupported (501), any other list malformed (400).
fn transfer_framing<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Framing, HeadError> {
    let (mut codings, mut last_is_chunked) = (0usize, false);
    for coding in values.flat_map(|v| v.split(|&b| b == b',')).map(trim_ows) {
        if coding.is_empty() {
            continue;
        }
        let name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or_default());
        if !is_token(name) {
            return Err(HeadError::BadTransferEncoding);
        }
        codings += 1;
        last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
    }
    match (last_is_chunked, codings) {
        (false, _) => Err(HeadError::BadTransferEncoding),
        (true, 1) => Ok(Framing::Chunked),
        (true, _) => Err(HeadError::UnsupportedTransferEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::Version::{Http10, Http11};
    use super::*;
    use crate::testutil::{mutate, Rng};

    const LIMITS: HeadLimits = HeadLimits { max_head: 8192, max_headers: 100 };

    /// A `Complete` head, for the expected side of a table row.
    fn head<'a>(
        method: &'a str,
        target: &'a str,
        version: Version,
        headers: &[(&'a str, &'a [u8])],
        len: usize,
    ) -> Result<Status<Head<'a>>, HeadError> {
        let headers = headers.iter().map(|&(name, value)| Header { name, value }).collect();
        Ok(Status::Complete(Head { method, target, version, headers, len }))
    }

    /// The framing of a head that must parse completely.
    fn framing(input: &[u8]) -> Result<Framing, HeadError> {
        match parse_head(input, &LIMITS)? {
            Status::Complete(head) => validate(&head),
            Status::Partial => panic!("test input is not a complete head"),
        }
    }

    /// `parse!(name, input, |len| expected)`: `parse_head(input)` must equal `expected`, where
    /// `len` is bound to `input.len()`.
    macro_rules! parse {
        ($name:ident, $input:expr, |$len:pat_param| $expected:expr) => {
            #[test]
            fn $name() {
                let input: &[u8] = $input;
                let $len = input.len();
                assert_eq!(parse_head(input, &LIMITS), $expected);
            }
        };
    }

    /// `framing!(name, input, expected)`: `validate(parse_head(input))` must equal `expected`.
    macro_rules! framing {
        ($name:ident, $input:expr, $expected:expr) => {
            #[test]
            fn $name() {
                assert_eq!(framing($input), $expected);
            }
        };
    }

    const VALID: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"\r\n\r\nPOST /inbox/abc?x=1 HTTP/1.0\r\nContent-Length: 5\r\n\
          X-Empty:\r\nX-Obs: caf\xc3\xa9 \t\r\n\r\n",
        b"PUT http://h:8080/p HTTP/1.1\r\nhost:h\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];

    // Accepted heads.
    parse!(simple_get, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", |len| {
        head("GET", "/", Http11, &[("Host", b"a")], len)
    });
    parse!(
        post_with_headers,
        b"POST /link/abc HTTP/1.1\r\nHost: relay\r\nContent-Length:  5 \r\n\
          X-Tab:\tv\t\r\nX-Empty:\r\n\r\n",
        |len| head(
            "POST",
            "/link/abc",
            Http11,
            &[("Host", b"relay"), ("Content-Length", b"5"), ("X-Tab", b"v"), ("X-Empty", b"")],
            len
        )
    );
    parse!(
        absolute_form_target,
        b"GET http://example.com:80/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n",
        |len| head("GET", "http://example.com:80/x?y", Http11, &[("Host", b"example.com")], len)
    );
    parse!(query_string, b"GET /link/id?a=1&b=%20 HTTP/1.1\r\nHost: a\r\n\r\n", |len| head(
        "GET",
        "/link/id?a=1&b=%20",
        Http11,
        &[("Host", b"a")],
        len
    ));
    parse!(leading_crlfs, b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", |len| head(
        "GET",
        "/",
        Http11,
        &[("Host", b"a")],
        len
    ));
    parse!(http10_without_host, b"GET / HTTP/1.0\r\n\r\n", |len| head(
        "GET",
        "/",
        Http10,
        &[],
        len
    ));
    parse!(obs_text_value_allowed, b"GET / HTTP/1.1\r\nX: caf\xc3\xa9\xff\r\n\r\n", |len| head(
        "GET",
        "/",
        Http11,
        &[("X", b"caf\xc3\xa9\xff")],
        len
    ));
    parse!(body_not_in_len, b"POST / HTTP/1.1\r\nHost: a\r\n\r\nhello", |len| head(
        "POST",
        "/",
        Http11,
        &[("Host", b"a")],
        len - 5
    ));
    parse!(
        pipelined_request_not_in_len,
        b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
        |len| head("GET", "/a", Http11, &[], len / 2)
    );
    parse!(empty_is_partial, b"", |_| Ok(Status::Partial));
    parse!(only_crlfs_is_partial, b"\r\n\r\n\r\n", |_| Ok(Status::Partial));

    // Request line.
    parse!(bad_request_line, b"GET /\r\nHost: a\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(two_spaces, b"GET  / HTTP/1.1\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(trailing_space, b"GET / HTTP/1.1 \r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(tab_separator, b"GET\t/ HTTP/1.1\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(empty_method, b" / HTTP/1.1\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(non_ascii_method, b"G\xc3\x89T / HTTP/1.1\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(non_ascii_target, b"GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n", |_| Err(
        HeadError::BadRequestLine
    ));
    parse!(control_byte_in_target, b"GET /\x7f HTTP/1.1\r\n\r\n", |_| Err(
        HeadError::BadRequestLine
    ));
    parse!(lone_cr_in_request_line, b"GET /\r HTTP/1.1\r\n\r\n", |_| {
        Err(HeadError::BadRequestLine)
    });
    parse!(lowercase_version, b"GET / http/1.1\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(httx_version, b"GET / HTTX/1.1\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(two_digit_minor_version, b"GET / HTTP/1.10\r\n\r\n", |_| Err(HeadError::BadRequestLine));
    parse!(unsupported_version, b"GET / HTTP/2.0\r\n\r\n", |_| Err(HeadError::UnsupportedVersion));
    parse!(http12_unsupported, b"GET / HTTP/1.2\r\n\r\n", |_| Err(HeadError::UnsupportedVersion));
    parse!(http09_unsupported, b"GET / HTTP/0.9\r\n\r\n", |_| Err(HeadError::UnsupportedVersion));

    // Header lines.
    parse!(bad_header, b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", |_| Err(HeadError::BadHeader));
    parse!(space_before_colon, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", |_| Err(
        HeadError::BadHeader
    ));
    parse!(empty_header_name, b"GET / HTTP/1.1\r\n: a\r\n\r\n", |_| Err(HeadError::BadHeader));
    parse!(lone_cr_in_header_name, b"GET / HTTP/1.1\r\nX\r: a\r\n\r\n", |_| Err(
        HeadError::BadHeader
    ));
    parse!(bad_header_value, b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", |_| Err(
        HeadError::BadHeaderValue
    ));
    parse!(del_in_value, b"GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n", |_| Err(HeadError::BadHeaderValue));
    parse!(lone_cr_in_value, b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", |_| Err(
        HeadError::BadHeaderValue
    ));
    parse!(obs_fold, b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", |_| Err(HeadError::ObsFold));
    parse!(obs_fold_tab, b"GET / HTTP/1.1\r\n\tX: a\r\n\r\n", |_| Err(HeadError::ObsFold));
    parse!(bare_lf, b"GET / HTTP/1.1\r\nHost: a\n\r\n", |_| Err(HeadError::BareLf));
    parse!(bare_lf_request_line, b"GET / HTTP/1.1\nHost: a\r\n\r\n", |_| Err(HeadError::BareLf));
    parse!(bare_lf_final_line, b"GET / HTTP/1.1\r\nHost: a\r\n\n", |_| Err(HeadError::BareLf));
    parse!(bare_lf_leading, b"\nGET / HTTP/1.1\r\n\r\n", |_| Err(HeadError::BareLf));
    parse!(error_waits_for_line_end, b"GET / HTTP/1.1\r\nBad Header", |_| Ok(Status::Partial));

    #[test]
    fn every_strict_prefix_is_partial() {
        for valid in VALID {
            assert!(matches!(parse_head(valid, &LIMITS), Ok(Status::Complete(_))));
            for i in 0..valid.len() {
                let prefix = &valid[..i];
                assert_eq!(parse_head(prefix, &LIMITS), Ok(Status::Partial), "{prefix:?}");
            }
        }
    }

    #[test]
    fn split_at_every_offset_gives_same_head() {
        for valid in VALID {
            let mut buf = valid.to_vec();
            buf.extend_from_slice(b"body");
            let whole = parse_head(&buf, &LIMITS);
            assert!(matches!(&whole, Ok(Status::Complete(h)) if h.len == valid.len()));
            for i in 0..=buf.len() {
                let first = parse_head(&buf[..i], &LIMITS);
                if i < valid.len() {
                    assert_eq!(first, Ok(Status::Partial), "split at {i}");
                } else {
                    assert_eq!(first, whole, "split at {i}");
                }
                assert_eq!(parse_head(&buf, &LIMITS), whole);
            }
        }
    }

    // Limits, both sides.
    const SMALL: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

    #[test]
    fn exactly_max_head_is_complete() {
        let limits = HeadLimits { max_head: SMALL.len(), ..LIMITS };
        let expected = head("GET", "/", Http11, &[("Host", b"a")], SMALL.len());
        assert_eq!(parse_head(SMALL, &limits), expected);
        assert_eq!(parse_head(&[SMALL, b"more"].concat(), &limits), expected);
        assert_eq!(parse_head(&SMALL[..SMALL.len() - 1], &limits), Ok(Status::Partial));
    }

    #[test]
    fn too_large() {
        let limits = HeadLimits { max_head: SMALL.len() - 1, ..LIMITS };
        let err = Err(HeadError::TooLarge { limit: SMALL.len() - 1 });
        assert_eq!(parse_head(SMALL, &limits), err);
        assert_eq!(parse_head(&SMALL[..SMALL.len() - 1], &limits), err);
        assert_eq!(parse_head(&SMALL[..SMALL.len() - 2], &limits), Ok(Status::Partial));
    }

    #[test]
    fn too_large_long_request_line() {
        let mut line = b"GET /".to_vec();
        line.resize(8191, b'a');
        assert_eq!(parse_head(&line, &LIMITS), Ok(Status::Partial));
        line.push(b'a');
        let err = Err(HeadError::TooLarge { limit: 8192 });
        assert_eq!(parse_head(&line, &LIMITS), err);
        line.extend_from_slice(b" HTTP/1.1\r\n\r\n");
        assert_eq!(parse_head(&line, &LIMITS), err);
    }

    #[test]
    fn too_large_leading_crlfs() {
        assert_eq!(
            parse_head(&b"\r\n".repeat(4096), &LIMITS),
            Err(HeadError::TooLarge { limit: 8192 })
        );
    }

    #[test]
    fn exactly_max_headers_is_complete() {
        let limits = HeadLimits { max_headers: 2, ..LIMITS };
        let input = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n";
        let expected = head("GET", "/", Http11, &[("A", b"1"), ("B", b"2")], input.len());
        assert_eq!(parse_head(input, &limits), expected);
    }

    #[test]
    fn too_many_headers() {
        let limits = HeadLimits { max_headers: 2, ..LIMITS };
        let input = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let err = Err(HeadError::TooManyHeaders { limit: 2 });
        assert_eq!(parse_head(input, &limits), err);
        let many = [b"GET / HTTP/1.1\r\n".as_slice(), &b"X: y\r\n".repeat(101)].concat();
        let err = Err(HeadError::TooManyHeaders { limit: 100 });
        assert_eq!(parse_head(&many, &LIMITS), err);
    }

    #[test]
    fn header_lines_past_the_inline_ones_keep_their_order() {
        let lines: String = (0..INLINE_HEADERS + 6).map(|n| format!("X-{n}: {n}\r\n")).collect();
        let input = format!("GET / HTTP/1.1\r\n{lines}\r\n");
        let Ok(Status::Complete(head)) = parse_head(input.as_bytes(), &LIMITS) else { panic!() };
        assert_eq!(head.headers.len(), INLINE_HEADERS + 6);
        let values: Vec<String> =
            head.headers.iter().map(|h| String::from_utf8_lossy(h.value).into_owned()).collect();
        let expected: Vec<String> = (0..INLINE_HEADERS + 6).map(|n| n.to_string()).collect();
        assert_eq!(values, expected);
        assert_eq!(head.header("x-29"), Some(&b"29"[..]));
        assert_eq!(head.headers.iter().next_back().map(|h| h.name), Some("X-29"));
    }

    #[test]
    fn header_lookup_is_case_insensitive_and_first() {
        let input = b"GET / HTTP/1.1\r\nhOsT: a\r\nX: 1\r\nx: 2\r\n\r\n";
        let Ok(Status::Complete(head)) = parse_head(input, &LIMITS) else {
            panic!("not complete");
        };
        assert_eq!(head.header("Host"), Some(&b"a"[..]));
        assert_eq!(head.header("X"), Some(&b"1"[..]));
        assert_eq!(head.header("Y"), None);
        let all: Vec<&[u8]> = head.headers("x").collect();
        assert_eq!(all, [&b"1"[..], &b"2"[..]]);
        assert_eq!(head.headers("Y").count(), 0);
    }

    // Framing and Host.
    framing!(no_body, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", Ok(Framing::None));
    framing!(http10_without_host_is_valid, b"GET / HTTP/1.0\r\n\r\n", Ok(Framing::None));
    framing!(
        content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
        Ok(Framing::Length(5))
    );
    framing!(
        content_length_leading_zeros,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n",
        Ok(Framing::Length(7))
    );
    framing!(
        huge_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 100000000000000\r\n\r\n",
        Ok(Framing::Length(100_000_000_000_000))
    );
    framing!(
        content_length_u64_max,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
        Ok(Framing::Length(u64::MAX))
    );
    framing!(
        bad_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        content_length_one_more_digit,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 184467440737095516150\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        content_length_25_digits,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234567890123456789012345\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        negative_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        plus_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        exponent_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        empty_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        list_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        space_inside_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
        Err(HeadError::BadContentLength)
    );
    framing!(
        duplicate_content_length,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n",
        Err(HeadError::DuplicateContentLength)
    );
    framing!(
        duplicate_authorization,
        b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer x\r\nauthorization: Bearer y\r\n\r\n",
        Err(HeadError::DuplicateField { name: "Authorization" })
    );
    framing!(
        duplicate_wsecret,
        b"POST / HTTP/1.1\r\nHost: a\r\nHttpRelay-WSecret: a\r\nHTTPRELAY-WSECRET: a\r\n\r\n",
        Err(HeadError::DuplicateField { name: "HttpRelay-WSecret" })
    );
    framing!(
        duplicate_content_type,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n\r\n",
        Err(HeadError::DuplicateField { name: "Content-Type" })
    );
    framing!(
        list_fields_may_repeat,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\n\r\n",
        Ok(Framing::None)
    );
    framing!(
        length_with_transfer_encoding,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        Err(HeadError::LengthWithTransferEncoding)
    );
    framing!(
        transfer_encoding_in_http10,
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        Err(HeadError::TransferEncodingInHttp10)
    );
    framing!(
        chunked,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        Ok(Framing::Chunked)
    );
    framing!(
        chunked_case_insensitive,
        b"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n",
        Ok(Framing::Chunked)
    );
    framing!(
        chunked_with_empty_list_elements,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked ,\r\n\r\n",
        Ok(Framing::Chunked)
    );
    framing!(
        unsupported_transfer_encoding,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        Err(HeadError::UnsupportedTransferEncoding)
    );
    framing!(
        chunked_twice,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,chunked\r\n\r\n",
        Err(HeadError::UnsupportedTransferEncoding)
    );
    framing!(
        transfer_encoding_joined_across_headers,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip \t,\r\n\
          Transfer-Encoding: chunked\r\n\r\n",
        Err(HeadError::UnsupportedTransferEncoding)
    );
    framing!(
        bad_transfer_encoding,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        Err(HeadError::BadTransferEncoding)
    );
    framing!(
        empty_transfer_encoding,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n",
        Err(HeadError::BadTransferEncoding)
    );
    framing!(
        non_token_transfer_coding,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: g@zip, chunked\r\n\r\n",
        Err(HeadError::BadTransferEncoding)
    );
    framing!(bad_host, b"GET / HTTP/1.1\r\n\r\n", Err(HeadError::BadHost));
    framing!(two_hosts, b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", Err(HeadError::BadHost));
    framing!(
        two_hosts_http10,
        b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        Err(HeadError::BadHost)
    );

    #[test]
    fn status_codes() {
        assert_eq!(HeadError::TooLarge { limit: 1 }.status(), 431);
        assert_eq!(HeadError::TooManyHeaders { limit: 1 }.status(), 400);
        assert_eq!(HeadError::UnsupportedVersion.status(), 505);
        assert_eq!(HeadError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(HeadError::BadTransferEncoding.status(), 400);
        assert_eq!(HeadError::BadHost.status(), 400);
    }

    #[test]
    fn messages_name_limit_and_flag() {
        let messages = [
            (
                HeadError::TooLarge { limit: 8192 },
                "Request head is larger than the 8192-byte limit (--max-head).",
            ),
            (
                HeadError::TooManyHeaders { limit: 100 },
                "Request has more than 100 header lines (--max-headers).",
            ),
            (
                HeadError::LengthWithTransferEncoding,
                "Content-Length and Transfer-Encoding must not both be present.",
            ),
        ];
        for (err, message) in messages {
            assert_eq!(err.to_string(), message);
        }
        assert!(HeadError::BareLf.to_string().ends_with('.'));
    }

    #[test]
    fn no_panic_on_random_and_mutated_input() {
        let mut seeds = VALID.to_vec();
        seeds.push(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\
            Transfer-Encoding: gzip, chunked\r\n\r\n",
        );
        const ALPHABET: &[u8] = b"GET / HTTP/1.1\r\n:Host0 \t";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut seen = [0usize; 3]; // complete, partial, error
        for round in 0..200_000 {
            let input = match round % 4 {
                0 => (0..rng.below(48)).map(|_| rng.next() as u8).collect(),
                1 => (0..rng.below(48)).map(|_| ALPHABET[rng.below(ALPHABET.len())]).collect(),
                _ => {
                    let seed = seeds[rng.below(seeds.len())];
                    mutate(&mut rng, seed, b"\r\n\0: \xff")
                }
            };
            let limits = HeadLimits {
                max_head: [8192, 8192, 64, 16][rng.below(4)],
                max_headers: [100, 100, 2, 0][rng.below(4)],
            };
            let whole = parse_head(&input, &limits);
            match &whole {
                Ok(Status::Complete(head)) => {
                    seen[0] += 1;
                    assert!(head.len <= input.len() && head.len <= limits.max_head);
                    assert!(head.headers.len() <= limits.max_headers);
                    if let Err(err) = validate(head) {
                        assert!(err.to_string().ends_with('.') && err.status() >= 400);
                    }
                }
                Ok(Status::Partial) => {
                    seen[1] += 1;
                    assert!(input.len() < limits.max_head);
                }
                Err(err) => {
                    seen[2] += 1;
                    assert!(err.to_string().ends_with('.') && err.status() >= 400);
                }
            }
            let prefix = parse_head(&input[..rng.below(input.len() + 1)], &limits);
            assert!(prefix == Ok(Status::Partial) || prefix == whole, "{input:?}");
        }
        // Every outcome comes up often, so the invariants above were really exercised.
        assert!(seen.iter().all(|&n| n > 5_000), "{seen:?}");
    }
}
