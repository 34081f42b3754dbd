//! Responses as plain values, and their serialization to bytes.
//!
//! A value every layer may build (`/health`, preflights, `/` as much as the registry's answers,
//! which `http/render.rs` turns into one) without importing the HTTP front; the outbox writes
//! it. Every response closes its connection (`Connection: close`, protocol §4 allows it), forbids
//! caching (relay bodies are one-time secrets that no proxy should keep) and is an inert document
//! ([`INERT`], protocol §5): a relayed body is bytes from a stranger on the operator's origin.

use crate::payload::Payload;
use std::fmt::{Display, Write as _};
use std::io::Write as _;

/// Room for header lines in the response itself: enough for a relay answer's metadata and CORS
/// headers, so that most responses' headers cost no allocation.
const HEADER_ROOM: usize = 384;

/// The header lines that keep any response from becoming an active document on the relay's
/// origin when a browser navigates to it (protocol §5): no MIME sniffing, and a policy that
/// sandboxes the document (an opaque origin: no script, no forms, no access to the origin's
/// cookies or storage), loads nothing into it (no image, style or beacon) and lets no page frame
/// it. Sent on every response, not only on relayed bodies, so that no answer carrying a client's
/// bytes can ever be added without it; the relay's own answers (text, JSON, empty) need none of
/// what it forbids, and a `fetch()` reading a response is not affected by either header.
const INERT: &str = "X-Content-Type-Options: nosniff\r\n\
                     Content-Security-Policy: sandbox; default-src 'none'; frame-ancestors 'none'\r\n";

/// A response to one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header lines besides the ones the serializer adds (`Content-Length`, `Connection`,
    /// `Cache-Control`, [`INERT`]), each `Name: value\r\n`, written as they are added: one buffer
    /// rather than a string per header. Names are fixed by the relay; values never hold CR or LF.
    headers: HeaderText,
    /// Body bytes, shared: one stored message may be sent to several waiters (its content type
    /// rides in the same allocation, not in the body).
    pub body: Payload,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response { status, headers: HeaderText::new(), body: Payload::empty() }
    }

    /// A `text/plain` response whose body is `text` and a newline: how every error is answered.
    pub fn text(status: u16, text: impl Display) -> Response {
        let body = format!("{text}\n");
        Response::new(status)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into_bytes())
    }

    /// Adds a header line. A value with a line break would let a client inject headers: none is
    /// built, and should one ever be, it is dropped rather than sent.
    pub fn header(mut self, name: &'static str, value: impl Display) -> Response {
        let start = self.headers.as_bytes().len();
        let _ = write!(self.headers, "{name}: {value}");
        if self.headers.as_bytes()[start..].iter().any(|&b| b == b'\r' || b == b'\n') {
            self.headers.truncate(start);
        } else {
            let _ = self.headers.write_str("\r\n");
        }
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Payload>) -> Response {
        self.body = body.into();
        self
    }

    /// The first value of header `name`, if set (case-insensitive).
    #[cfg(test)]
    pub fn header_value(&self, name: &str) -> Option<&str> {
        let text = std::str::from_utf8(self.headers.as_bytes()).ok()?;
        text.split_terminator("\r\n").find_map(|line| {
            let (n, value) = line.split_once(": ")?;
            n.eq_ignore_ascii_case(name).then_some(value)
        })
    }

    /// Serializes status line, headers and (unless `head_only`, for HEAD requests) the body.
    pub fn write_to(&self, head_only: bool, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        out.extend_from_slice(self.headers.as_bytes());
        // RFC 9110 §8.6: no Content-Length on 1xx and 204 responses.
        if self.status >= 200 && self.status != 204 {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        out.extend_from_slice(INERT.as_bytes());
        out.extend_from_slice(b"Cache-Control: no-store\r\nConnection: close\r\n\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Header lines as written: in the response itself up to [`HEADER_ROOM`] bytes, all of them on
/// the heap once they outgrow it (so they are always one run of bytes).
#[derive(Clone)]
struct HeaderText {
    len: usize,
    inline: [u8; HEADER_ROOM],
    /// Empty until the lines outgrow `inline`; then every line is here.
    heap: Vec<u8>,
}

impl HeaderText {
    const fn new() -> HeaderText {
        HeaderText { len: 0, inline: [0; HEADER_ROOM], heap: Vec::new() }
    }

    fn as_bytes(&self) -> &[u8] {
        if self.heap.is_empty() {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }

    fn truncate(&mut self, len: usize) {
        if self.heap.is_empty() {
            self.len = self.len.min(len);
        } else {
            self.heap.truncate(len);
        }
    }
}

impl std::fmt::Write for HeaderText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let bytes = text.as_bytes();
        match self.inline.get_mut(self.len..self.len + bytes.len()) {
            Some(room) if self.heap.is_empty() => {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
            }
            _ => {
                if self.heap.is_empty() {
                    self.heap.reserve(2 * HEADER_ROOM);
                    self.heap.extend_from_slice(&self.inline[..self.len]);
                }
                self.heap.extend_from_slice(bytes);
            }
        }
        Ok(())
    }
}

impl PartialEq for HeaderText {
    fn eq(&self, other: &HeaderText) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for HeaderText {}

impl std::fmt::Debug for HeaderText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&String::from_utf8_lossy(self.as_bytes()), f)
    }
}

/// The reason phrase of the statuses the relay sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(response: &Response, head_only: bool) -> String {
        let mut out = Vec::new();
        response.write_to(head_only, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The lines every response ends its head with.
    const TAIL: &str = "X-Content-Type-Options: nosniff\r\nContent-Security-Policy: sandbox; \
                        default-src 'none'; frame-ancestors 'none'\r\nCache-Control: no-store\r\n\
                        Connection: close\r\n\r\n";

    #[test]
    fn text_response_bytes() {
        let response = Response::text(404, "No such route.");
        assert_eq!(
            render(&response, false),
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 Content-Length: 15\r\n{TAIL}No such route.\n"
            )
        );
    }

    #[test]
    fn head_only_keeps_length_drops_body() {
        let response = Response::new(200).body(b"secret".to_vec());
        assert_eq!(
            render(&response, true),
            format!("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n{TAIL}")
        );
    }

    #[test]
    fn no_content_has_no_length() {
        let rendered = render(&Response::new(204).header("Allow", "GET"), false);
        assert_eq!(rendered, format!("HTTP/1.1 204 No Content\r\nAllow: GET\r\n{TAIL}"));
    }

    #[test]
    fn header_with_line_break_is_dropped() {
        let response = Response::new(200).header("X-Test", "a\r\nInjected: 1");
        assert!(!render(&response, false).contains("Injected"));
        // Also once the lines are on the heap, and the line before it is kept.
        let long = "v".repeat(HEADER_ROOM);
        let response = Response::new(200).header("X-Long", &long).header("X-Test", "a\nB: 1");
        let text = render(&response, false);
        assert!(text.contains(&format!("X-Long: {long}\r\n")) && !text.contains("B: 1"), "{text}");
    }

    #[test]
    fn header_lines_move_to_the_heap_whole_when_they_outgrow_the_room() {
        let mut response = Response::new(200);
        let mut expected = String::new();
        for n in 0..40 {
            response = response.header("X-Line", n);
            expected.push_str(&format!("X-Line: {n}\r\n"));
            assert_eq!(response.headers.as_bytes(), expected.as_bytes(), "after line {n}");
        }
        assert!(expected.len() > HEADER_ROOM && !response.headers.heap.is_empty());
        assert_eq!(response.header_value("x-line"), Some("0"));
        assert_eq!(response.clone(), response);
    }
}
