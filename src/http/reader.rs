//! The request reader: one request's bytes in, what to do next out (protocol §4). No socket and
//! no clock: the worker ([`worker`](super::worker)) feeds it what the socket had and the time, and
//! acts on the [`Step`] it returns.
//!
//! ```text
//!   Head ──(head complete)──▶ Deciding ──read_body──▶ Body ──(body complete)──▶ Done
//!    │  Step::Head: the gate decides   │  Step::SendContinue first, if the client asked
//!    ╰── a bad head, a head past --max-head, a deadline passed: Step::Refuse ──╯
//! ```
//!
//! A request that arrives whole in one read (most do) is read where the caller's bytes are: its
//! head is parsed there and its body copied once, into the shared body it becomes, so reading it
//! allocates nothing else. Otherwise the bytes wait in the reader's own buffer. A head that is
//! not complete yet is not an error, and is parsed again only when a line feed arrives (a
//! byte-at-a-time client costs O(n)). The head is bounded by `--max-head`, its wait by
//! `--head-timeout`; the body by its announced length or, chunked, by the decoder's `--max-body`,
//! its wait by `--body-timeout` from the moment the head was accepted. What the head says is
//! decided by the gate (`gate.rs`), not here: routes, limits and what the body may be. Bytes after
//! the request (a pipelined second one) are ignored: every response closes its connection.

use std::fmt;
use std::time::{Duration, Instant};

use super::chunked::{ChunkError, ChunkedDecoder};
use super::parse::{parse_head, Head, HeadError, HeadLimits, Status};
use crate::inline::InlineBytes;
use crate::payload::{Payload, PayloadBuffer};
use crate::refused::RefusalReason;
use crate::response::Response;
use crate::wheel::deadline_after;

/// The bounds the reader enforces itself; the rest is the gate's.
#[derive(Clone, Copy, Debug)]
pub struct ReaderLimits {
    /// `--max-head` and `--max-headers`.
    pub head: HeadLimits,
    /// `--head-timeout`: from the reader's start to a complete head.
    pub head_timeout: Duration,
    /// `--body-timeout`: from the head's acceptance to a complete body.
    pub body_timeout: Duration,
}

/// What body the gate lets a request have, decided from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyPlan {
    /// How the body is framed.
    pub framing: BodyFraming,
    /// Whether the client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

/// The longest `Content-Type` a request carries inline until its body is read: room for a
/// `multipart/form-data` boundary; a longer one is kept on the heap.
const INLINE_CONTENT_TYPE: usize = 128;

/// A request's `Content-Type` (as UTF-8, invalid bytes replaced) from its head until its body
/// is read, when it goes into the body's own allocation ([`Payload`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContentType(Option<InlineBytes<INLINE_CONTENT_TYPE>>);

impl ContentType {
    /// The content type of a head whose `Content-Type` value is `value`, if it has one.
    pub fn of(value: Option<&[u8]>) -> ContentType {
        ContentType(value.map(|v| InlineBytes::copy_of(String::from_utf8_lossy(v).as_bytes())))
    }

    /// The content type, if there is one.
    pub fn as_str(&self) -> Option<&str> {
        // Always UTF-8: it was made from a `str`.
        self.0.as_deref().and_then(|t| std::str::from_utf8(t).ok())
    }

    /// Its length in bytes (0 for none).
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |t| t.len())
    }
}

/// The largest declared body allocated whole before it arrives (64 KiB, the default
/// `--max-body`); a longer one grows as its bytes come.
const WHOLE_BODY_MAX: usize = 64 * 1024;

/// How a body's end is found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// Exactly this many bytes (0: no body).
    Length(usize),
    /// `Transfer-Encoding: chunked`, at most this many bytes once decoded (`--max-body`).
    Chunked { max: usize },
}

/// A request being read. See the module docs.
pub struct RequestReader {
    limits: ReaderLimits,
    /// Input not yet consumed: the head so far, then body bytes (or chunked framing).
    input: Vec<u8>,
    /// How much of `input` the head parser has seen (a head can only complete at a line feed).
    head_seen: usize,
    /// The complete head's length, while it is being decided.
    head_len: usize,
    /// Whether that head was parsed in the caller's bytes, not in `input`: what follows it is
    /// in the bytes the caller passes to [`RequestReader::read_body`].
    head_direct: bool,
    phase: Phase,
    deadline: Instant,
}

enum Phase {
    Head,
    /// The head is complete; the caller decides it and calls [`RequestReader::read_body`].
    Deciding,
    /// The body may start; `100 Continue` is owed first.
    Continue(Body),
    Body(Body),
    /// The request was handed out, or refused.
    Done,
}

struct Body {
    /// The request's content type, which the body's allocation starts with.
    content_type: ContentType,
    /// What was read of a body that did not arrive at once, behind the content type; `None`
    /// until the first bytes are buffered.
    buffer: Option<PayloadBuffer>,
    decoder: Decoder,
}

impl Body {
    /// Body bytes buffered so far.
    fn buffered(&self) -> usize {
        self.buffer.as_ref().map_or(0, PayloadBuffer::body_len)
    }

    /// The buffer, made when first needed with room for `room` body bytes.
    fn buffer(&mut self, room: usize) -> &mut PayloadBuffer {
        let content_type = self.content_type.as_str();
        self.buffer.get_or_insert_with(|| Payload::buffer(content_type, room))
    }
}

enum Decoder {
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// What the caller does next.
// `Head`, the large variant (its header lines are inline), comes once per request and lives
// only until the gate has decided it: boxing it would add an allocation to every request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// Read more bytes when the socket has them, by [`RequestReader::deadline`].
    NeedMore,
    /// The head is complete: decide it, then call [`RequestReader::read_body`] (or stop).
    Head(Head<'a>),
    /// Write `HTTP/1.1 100 Continue`, then feed again.
    SendContinue,
    /// The request is complete; this is its body, with its content type.
    Complete(Payload),
    /// The request cannot be read: answer this and close.
    Refuse(ReadError),
}

impl RequestReader {
    /// A reader for a connection accepted at `now`: its head is due by `--head-timeout`.
    pub fn new(limits: ReaderLimits, now: Instant) -> RequestReader {
        RequestReader {
            limits,
            input: Vec::new(),
            head_seen: 0,
            head_len: 0,
            head_direct: false,
            phase: Phase::Head,
            deadline: deadline_after(now, limits.head_timeout),
        }
    }

    /// When the current phase must be complete.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Takes `bytes` (which may be empty: go on with what is buffered) that arrived by `now`.
    /// The caller reads at most [`room`](Self::room) bytes at a time, which keeps the buffer
    /// within `--max-head`, or the body's length (a chunked decoder consumes all it is given).
    pub fn feed<'a>(&'a mut self, bytes: &'a [u8], now: Instant) -> Step<'a> {
        if matches!(self.phase, Phase::Done | Phase::Deciding) {
            return Step::NeedMore; // nothing more is read; the caller's turn
        }
        if now >= self.deadline {
            return self.refuse(self.timed_out().unwrap_or(ReadError::OutOfTurn));
        }
        if matches!(self.phase, Phase::Body(_)) && self.input.is_empty() {
            // Straight into the body, which the gate charged: not copied through `input`.
            return self.feed_body(bytes);
        }
        if matches!(self.phase, Phase::Head) && self.input.is_empty() {
            // A whole head in the caller's bytes is parsed there; only a partial one is kept.
            match parse_head(bytes, &self.limits.head) {
                Ok(Status::Partial) => self.head_seen = bytes.len(),
                Ok(Status::Complete(head)) => {
                    (self.head_len, self.head_direct) = (head.len, true);
                    self.phase = Phase::Deciding;
                    return Step::Head(head);
                }
                Err(e) => return self.refuse(ReadError::Head(e)),
            }
        }
        let needed = self.input.len() + bytes.len();
        if needed > self.input.capacity() {
            // Grown in steps the caller can charge before it reads (`capacity_for`).
            self.input.reserve_exact(grown(needed) - self.input.len());
        }
        self.input.extend_from_slice(bytes);
        if matches!(self.phase, Phase::Head) {
            return self.feed_head();
        }
        if let Phase::Continue(_) = self.phase {
            return Step::SendContinue;
        }
        self.feed_body(&[])
    }

    fn feed_head(&mut self) -> Step<'_> {
        let max_head = self.limits.head.max_head;
        let new_line = self.input[self.head_seen..].contains(&b'\n');
        if !new_line && self.input.len() < max_head {
            return Step::NeedMore;
        }
        self.head_seen = self.input.len();
        // Fields are set one by one: the head handed out borrows `input`.
        match parse_head(&self.input, &self.limits.head) {
            Ok(Status::Partial) => Step::NeedMore,
            Ok(Status::Complete(head)) => {
                self.head_len = head.len;
                self.phase = Phase::Deciding;
                Step::Head(head)
            }
            Err(e) => {
                self.phase = Phase::Done;
                Step::Refuse(ReadError::Head(e))
            }
        }
    }

    /// After [`Step::Head`]: the gate admitted the request with `plan`, at `now`; `fed` are
    /// the bytes of the [`feed`](Self::feed) that returned the head; `content_type` goes into the
    /// body's allocation. Returns [`Step::SendContinue`] when the client waits for it and its
    /// body is not all here yet.
    pub fn read_body<'a>(
        &'a mut self,
        plan: BodyPlan,
        content_type: ContentType,
        fed: &'a [u8],
        now: Instant,
    ) -> Step<'a> {
        if !matches!(self.phase, Phase::Deciding) {
            return self.refuse(ReadError::OutOfTurn);
        }
        let after_head: &[u8] = if self.head_direct {
            fed.get(self.head_len..).unwrap_or_default()
        } else {
            self.input.drain(..self.head_len);
            if self.input.is_empty() {
                // The head's buffer is given back: body bytes go straight to the body.
                self.input = Vec::new();
            }
            &[]
        };
        self.deadline = deadline_after(now, self.limits.body_timeout);
        let decoder = match plan.framing {
            BodyFraming::Length(n) => Decoder::Length(n),
            BodyFraming::Chunked { max } => Decoder::Chunked(ChunkedDecoder::new(max)),
        };
        let body = Body { content_type, buffer: None, decoder };
        let here = self.input.len() + after_head.len();
        let all_here = matches!(plan.framing, BodyFraming::Length(n) if here >= n);
        if plan.expect_continue && !all_here {
            // Body bytes sent before the `100 Continue` wait for it in the buffer.
            self.input.extend_from_slice(after_head);
            self.phase = Phase::Continue(body);
            return Step::SendContinue;
        }
        self.phase = Phase::Body(body);
        self.feed_body(after_head)
    }

    /// After [`Step::SendContinue`]: the `100 Continue` is written.
    pub fn continue_sent(&mut self) {
        if let Phase::Continue(_) = self.phase {
            let Phase::Continue(body) = std::mem::replace(&mut self.phase, Phase::Done) else {
                return;
            };
            self.phase = Phase::Body(body);
        }
    }

    /// Decodes body bytes: `direct`, when `input` is empty, else what `input` holds.
    fn feed_body(&mut self, direct: &[u8]) -> Step<'static> {
        let Phase::Body(body) = &mut self.phase else { return Step::NeedMore };
        let source: &[u8] = if self.input.is_empty() { direct } else { &self.input };
        let (used, done) = match &mut body.decoder {
            Decoder::Length(length) if body.buffer.is_none() && source.len() >= *length => {
                // All of it here at once: copied straight into the body it becomes.
                let whole = Payload::new(body.content_type.as_str(), &source[..*length]);
                self.phase = Phase::Done;
                self.input = Vec::new(); // pipelined bytes: ignored
                return Step::Complete(whole);
            }
            Decoder::Length(length) => {
                // A declared length up to the default `--max-body` is allocated once, whole:
                // no regrowth and no slack (a 60,000-byte body had a 98,076-byte buffer). A
                // larger one grows as it arrives, so a client that declares much and sends
                // little costs little.
                let length = *length;
                let take = (length - body.buffered()).min(source.len());
                let buffer = body.buffer(length.min(WHOLE_BODY_MAX));
                buffer.append_to().extend_from_slice(&source[..take]);
                (take, buffer.body_len() == length)
            }
            Decoder::Chunked(decoder) => {
                let content_type = body.content_type.as_str();
                let buffer = body.buffer.get_or_insert_with(|| Payload::buffer(content_type, 0));
                match decoder.decode(source, buffer.append_to()) {
                    Ok(used) => (used, decoder.is_done()),
                    Err(e) => return self.refuse(ReadError::Chunk(e)),
                }
            }
        };
        if self.input.is_empty() {
            if !done {
                // Unreachable while a decoder takes all it is given before the body is done.
                self.input.extend_from_slice(&direct[used..]);
            }
        } else {
            self.input.drain(..used);
            if self.input.is_empty() {
                // The head's buffer is given back: later body bytes go straight to the body.
                self.input = Vec::new();
            }
        }
        if !done {
            return Step::NeedMore;
        }
        let Phase::Body(body) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Step::NeedMore; // unreachable: matched Body above
        };
        self.input = Vec::new(); // pipelined bytes: ignored
        let whole = match body.buffer {
            Some(buffer) => Payload::from_buffer(buffer),
            None => Payload::new(body.content_type.as_str(), b""),
        };
        Step::Complete(whole)
    }

    fn refuse(&mut self, error: ReadError) -> Step<'static> {
        self.phase = Phase::Done;
        Step::Refuse(error)
    }

    /// The 408 for the phase under way, when its deadline passed; `None` when no phase is (the
    /// request is complete, refused, or being decided).
    pub fn timed_out(&self) -> Option<ReadError> {
        let (phase, limit) = match self.phase {
            Phase::Head => (ReadPhase::Head, self.limits.head_timeout),
            Phase::Continue(_) | Phase::Body(_) => (ReadPhase::Body, self.limits.body_timeout),
            Phase::Deciding | Phase::Done => return None,
        };
        Some(ReadError::TimedOut { phase, limit })
    }

    /// The capacity of the buffer of input once `extra` more bytes are fed: what the caller
    /// charges to the memory budget before it feeds them (the body is charged by the gate).
    pub fn capacity_for(&self, extra: usize) -> usize {
        let needed = self.input.len() + extra;
        let direct = matches!(self.phase, Phase::Body(_)) && self.input.is_empty();
        if needed > self.input.capacity() && !direct {
            grown(needed)
        } else {
            self.input.capacity()
        }
    }

    /// How many more bytes the current phase may take: the head up to `--max-head`, a body up to
    /// its length, at most `scratch`. (A chunked body is bounded by its decoder.)
    pub fn room(&self, scratch: usize) -> usize {
        match &self.phase {
            Phase::Head => self.limits.head.max_head.saturating_sub(self.input.len()),
            Phase::Continue(body @ Body { decoder: Decoder::Length(n), .. })
            | Phase::Body(body @ Body { decoder: Decoder::Length(n), .. }) => {
                n.saturating_sub(body.buffered() + self.input.len())
            }
            _ => scratch,
        }
        .min(scratch)
    }
}

/// The buffer of input grows to `needed` rounded up to a whole KiB: few reallocations for a
/// byte-at-a-time client, and a capacity known before the bytes are read.
fn grown(needed: usize) -> usize {
    needed.div_ceil(1024).saturating_mul(1024)
}

/// Which phase of a request was late.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadPhase {
    /// The head (`--head-timeout`).
    Head,
    /// The body (`--body-timeout`).
    Body,
}

/// Why a request could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The head is not valid HTTP/1.1, or passes `--max-head` or `--max-headers` (400, 431, 501,
    /// 505: see [`HeadError`]).
    Head(HeadError),
    /// The chunked body is malformed (400) or decodes past `--max-body` (413).
    Chunk(ChunkError),
    /// The phase did not arrive within its deadline (408).
    TimedOut { phase: ReadPhase, limit: Duration },
    /// Not a refusal: the reader was used out of turn, nothing to answer. (Unreachable from a
    /// client: the worker drives the steps in order.)
    OutOfTurn,
}

impl ReadError {
    /// The answer; `None` when there is nobody to answer.
    pub fn response(&self) -> Option<Response> {
        let status = match self {
            ReadError::Head(e) => e.status(),
            ReadError::Chunk(e) => e.status(),
            ReadError::TimedOut { .. } => 408,
            ReadError::OutOfTurn => return None,
        };
        Some(Response::text(status, self))
    }

    /// The counter it goes to.
    pub fn reason(&self) -> Option<RefusalReason> {
        Some(match self {
            ReadError::Head(_) => RefusalReason::Malformed,
            ReadError::Chunk(ChunkError::TooLarge { .. }) => RefusalReason::TooLarge,
            ReadError::Chunk(_) => RefusalReason::Malformed,
            ReadError::TimedOut { .. } => RefusalReason::Slow,
            ReadError::OutOfTurn => return None,
        })
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Head(e) => e.fmt(f),
            ReadError::Chunk(e) => e.fmt(f),
            ReadError::TimedOut { phase, limit } => {
                let (phase, flag) = match phase {
                    ReadPhase::Head => ("request head", "--head-timeout"),
                    ReadPhase::Body => ("request body", "--body-timeout"),
                };
                write!(f, "The {phase} did not arrive within {} s ({flag}).", limit.as_secs_f64())
            }
            ReadError::OutOfTurn => f.write_str("The reader was used out of turn."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::HeadLimits;

    const SECOND: Duration = Duration::from_secs(1);

    fn limits() -> ReaderLimits {
        ReaderLimits {
            head: HeadLimits { max_head: 256, max_headers: 8 },
            head_timeout: 10 * SECOND,
            body_timeout: 5 * SECOND,
        }
    }

    fn length(n: usize) -> BodyPlan {
        BodyPlan { framing: BodyFraming::Length(n), expect_continue: false }
    }

    fn chunked(max: usize) -> BodyPlan {
        BodyPlan { framing: BodyFraming::Chunked { max }, expect_continue: false }
    }

    /// Plays the worker: feeds `parts` in turn at `now`, decides every head with `plan`, writes
    /// every `100 Continue`; the steps it saw, as text (`more`, `head POST /x`, `continue`,
    /// `complete <body>`, `refuse <status> <sentence>`).
    fn run(reader: &mut RequestReader, parts: &[&[u8]], plan: BodyPlan, now: Instant) -> String {
        let mut seen = Vec::new();
        for part in parts {
            let mut step = reader.feed(part, now);
            loop {
                let text = describe(&step);
                seen.push(text);
                step = match step {
                    Step::Head(_) => reader.read_body(plan, ContentType::default(), part, now),
                    Step::SendContinue => {
                        reader.continue_sent();
                        reader.feed(&[], now)
                    }
                    _ => break,
                };
            }
        }
        seen.join(", ")
    }

    fn describe(step: &Step<'_>) -> String {
        match step {
            Step::NeedMore => "more".into(),
            Step::Head(head) => format!("head {} {}", head.method, head.target),
            Step::SendContinue => "continue".into(),
            Step::Complete(body) => format!("complete {}", String::from_utf8_lossy(body)),
            Step::Refuse(e) => {
                let status = e.response().map_or(0, |r| r.status);
                format!("refuse {status} {e}")
            }
        }
    }

    /// The last step of feeding `request` split into `parts` at the given offsets.
    fn outcome(request: &[u8], cuts: &[usize], plan: BodyPlan) -> String {
        let mut parts = Vec::new();
        let mut from = 0;
        for &cut in cuts {
            parts.push(&request[from..cut]);
            from = cut;
        }
        parts.push(&request[from..]);
        parts.retain(|part| !part.is_empty()); // an empty part after the end shows a spent reader
        let mut reader = RequestReader::new(limits(), Instant::now());
        let seen = run(&mut reader, &parts, plan, Instant::now());
        seen.rsplit(", ").next().unwrap_or("").to_string()
    }

    const POST: &[u8] = b"POST /link/a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello";
    const CHUNKED: &[u8] =
        b"POST /inbox/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n";
    const GET: &[u8] = b"GET /link/a HTTP/1.1\r\nHost: h\r\n\r\n";

    #[test]
    fn a_whole_request_at_once() {
        let now = Instant::now();
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(run(&mut reader, &[POST], length(5), now), "head POST /link/a, complete hello");
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(run(&mut reader, &[GET], length(0), now), "head GET /link/a, complete ");
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(
            run(&mut reader, &[CHUNKED], chunked(64), now),
            "head POST /inbox/a, complete hello"
        );
    }

    #[test]
    fn every_transition_in_turn() {
        let now = Instant::now();
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(reader.feed(b"POST /link/a HTTP/1.1\r\n", now), Step::NeedMore);
        let rest = b"Host: h\r\nContent-Length: 5\r\n\r\nhe";
        let Step::Head(head) = reader.feed(rest, now) else { panic!("no head") };
        assert_eq!(head.method, "POST");
        // While the head is being decided, feeding reads nothing more.
        assert_eq!(reader.feed(b"", now), Step::NeedMore);
        assert_eq!(reader.timed_out(), None, "deciding is the caller's time");
        assert_eq!(reader.read_body(length(5), ContentType::default(), rest, now), Step::NeedMore);
        assert_eq!(reader.room(100), 3, "the body's rest, no more");
        assert_eq!(reader.feed(b"ll", now), Step::NeedMore);
        assert_eq!(reader.feed(b"o", now), Step::Complete(Payload::from(&b"hello"[..])));
        // Done: the reader is spent.
        assert_eq!(reader.feed(b"GET", now), Step::NeedMore);
        assert_eq!(reader.timed_out(), None);
        assert_eq!(
            reader.read_body(length(1), ContentType::default(), b"", now),
            Step::Refuse(ReadError::OutOfTurn)
        );
    }

    #[test]
    fn every_strict_prefix_needs_more() {
        for request in [POST, GET] {
            let head_end = request.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            for end in 0..head_end {
                let mut reader = RequestReader::new(limits(), Instant::now());
                assert_eq!(reader.feed(&request[..end], Instant::now()), Step::NeedMore, "{end}");
            }
        }
    }

    #[test]
    fn split_at_every_byte_gives_the_same_request() {
        for (request, plan) in [(POST, length(5)), (CHUNKED, chunked(64)), (GET, length(0))] {
            let whole = outcome(request, &[], plan);
            assert!(whole.starts_with("complete"), "{whole}");
            for cut in 0..=request.len() {
                assert_eq!(outcome(request, &[cut], plan), whole, "cut at {cut}");
            }
            let every: Vec<usize> = (1..request.len()).collect();
            assert_eq!(outcome(request, &every, plan), whole, "a byte at a time");
        }
    }

    #[test]
    fn the_head_deadline() {
        let start = Instant::now();
        let mut reader = RequestReader::new(limits(), start);
        assert_eq!(reader.deadline(), start + 10 * SECOND);
        assert_eq!(reader.feed(b"GET / HT", start + 9 * SECOND), Step::NeedMore);
        let expired = ReadError::TimedOut { phase: ReadPhase::Head, limit: 10 * SECOND };
        assert_eq!(reader.timed_out(), Some(expired.clone()));
        assert_eq!(reader.feed(b"TP/1.1\r\n\r\n", start + 10 * SECOND), Step::Refuse(expired));
        let mut late = RequestReader::new(limits(), start);
        let Step::Refuse(e) = late.feed(b"", start + 10 * SECOND) else { panic!("not refused") };
        let response = e.response().unwrap();
        assert_eq!(response.status, 408);
        assert_eq!(e.to_string(), "The request head did not arrive within 10 s (--head-timeout).");
        assert_eq!(e.reason(), Some(RefusalReason::Slow));
    }

    #[test]
    fn the_body_deadline_runs_from_the_heads_acceptance() {
        let start = Instant::now();
        let mut reader = RequestReader::new(limits(), start);
        let head = &POST[..POST.len() - 5];
        assert!(matches!(reader.feed(head, start + 9 * SECOND), Step::Head(_)));
        let accepted = start + 9 * SECOND + SECOND / 2;
        assert_eq!(
            reader.read_body(length(5), ContentType::default(), head, accepted),
            Step::NeedMore
        );
        assert_eq!(reader.deadline(), accepted + 5 * SECOND, "the head's deadline no longer holds");
        assert_eq!(reader.feed(b"hel", accepted + 4 * SECOND), Step::NeedMore);
        let expired = ReadError::TimedOut { phase: ReadPhase::Body, limit: 5 * SECOND };
        assert_eq!(reader.timed_out(), Some(expired.clone()));
        assert_eq!(reader.feed(b"lo", accepted + 5 * SECOND), Step::Refuse(expired.clone()));
        assert_eq!(
            expired.to_string(),
            "The request body did not arrive within 5 s (--body-timeout)."
        );
    }

    #[test]
    fn the_head_limit() {
        let now = Instant::now();
        // Exactly --max-head bytes is a head; one more is 431.
        let pad = |n: usize| {
            let mut head = b"GET / HTTP/1.1\r\nHost: h\r\nX: ".to_vec();
            head.resize(n - 4, b'a');
            head.extend_from_slice(b"\r\n\r\n");
            head
        };
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(reader.room(1000), 256);
        assert!(matches!(reader.feed(&pad(256), now), Step::Head(_)));
        let mut reader = RequestReader::new(limits(), now);
        let Step::Refuse(e) = reader.feed(&pad(257), now) else { panic!("not refused") };
        assert_eq!(e, ReadError::Head(HeadError::TooLarge { limit: 256 }));
        assert_eq!(e.response().map(|r| r.status), Some(431));
        assert_eq!(e.reason(), Some(RefusalReason::Malformed));
        // A head without a line feed is parsed once --max-head bytes are in, and refused.
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(reader.feed(&[b'a'; 255], now), Step::NeedMore);
        assert_eq!(reader.room(1000), 1);
        assert!(matches!(reader.feed(b"a", now), Step::Refuse(ReadError::Head(_))));
        // A bad head is refused at its first bad line.
        let mut reader = RequestReader::new(limits(), now);
        let Step::Refuse(e) = reader.feed(b"GET / HTTP/1.1\r\nbad header\r\n", now) else {
            panic!("not refused")
        };
        assert_eq!(e.response().map(|r| r.status), Some(400));
    }

    #[test]
    fn a_chunked_body_past_max_body_is_413() {
        let now = Instant::now();
        let mut reader = RequestReader::new(limits(), now);
        let seen = run(&mut reader, &[CHUNKED], chunked(4), now);
        assert_eq!(
            seen,
            "head POST /inbox/a, refuse 413 Body is larger than the 4-byte limit (--max-body)."
        );
        let mut reader = RequestReader::new(limits(), now);
        let _ = reader.feed(CHUNKED, now);
        let _ = reader.read_body(chunked(4), ContentType::default(), CHUNKED, now);
        assert_eq!(reader.feed(b"", now), Step::NeedMore, "a refused reader is spent");
        let mut reader = RequestReader::new(limits(), now);
        let _ = reader.feed(CHUNKED, now);
        let Step::Refuse(e) = reader.read_body(chunked(4), ContentType::default(), CHUNKED, now)
        else {
            panic!()
        };
        assert_eq!(e.reason(), Some(RefusalReason::TooLarge));
        // A malformed chunk is 400.
        let mut reader = RequestReader::new(limits(), now);
        let bad = b"POST /inbox/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let seen = run(&mut reader, &[bad], chunked(64), now);
        assert!(seen.starts_with("head POST /inbox/a, refuse 400 "), "{seen}");
        let mut reader = RequestReader::new(limits(), now);
        let _ = reader.feed(bad, now);
        let Step::Refuse(e) = reader.read_body(chunked(64), ContentType::default(), bad, now)
        else {
            panic!()
        };
        assert_eq!(e.reason(), Some(RefusalReason::Malformed));
    }

    #[test]
    fn expect_100_continue() {
        let now = Instant::now();
        let head = b"POST /link/a HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
        let plan = BodyPlan { expect_continue: true, ..length(5) };
        // Owed while the body is not all here: written once, then the body is read.
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(
            run(&mut reader, &[head, b"hel", b"lo"], plan, now),
            "head POST /link/a, continue, more, more, complete hello"
        );
        // Until the continue is written, nothing is read and the step is repeated.
        let mut reader = RequestReader::new(limits(), now);
        let _ = reader.feed(head, now);
        assert_eq!(reader.read_body(plan, ContentType::default(), head, now), Step::SendContinue);
        assert_eq!(reader.feed(b"", now), Step::SendContinue);
        reader.continue_sent();
        assert_eq!(reader.feed(b"hello", now), Step::Complete(Payload::from(&b"hello"[..])));
        // Body bytes that came with the head before the continue wait for it.
        let mut early = head.to_vec();
        early.extend_from_slice(b"he");
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(
            run(&mut reader, &[&early, b"llo"], plan, now),
            "head POST /link/a, continue, more, complete hello"
        );
        // Not owed when the body came with the head.
        let mut whole = head.to_vec();
        whole.extend_from_slice(b"hello");
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(run(&mut reader, &[&whole], plan, now), "head POST /link/a, complete hello");
    }

    #[test]
    fn pipelined_bytes_after_the_request_are_ignored() {
        let now = Instant::now();
        for (request, plan) in [(POST, length(5)), (CHUNKED, chunked(64)), (GET, length(0))] {
            let mut two = request.to_vec();
            two.extend_from_slice(GET);
            let mut reader = RequestReader::new(limits(), now);
            let seen = run(&mut reader, &[&two], plan, now);
            assert_eq!(seen.rsplit(", ").next(), outcome(request, &[], plan).as_str().into());
            assert_eq!(reader.feed(b"", now), Step::NeedMore, "and the reader is done");
        }
        // A body of known length is not read past its end.
        let mut reader = RequestReader::new(limits(), now);
        let head = &POST[..POST.len() - 5];
        let _ = reader.feed(head, now);
        let _ = reader.read_body(length(5), ContentType::default(), head, now);
        assert_eq!(reader.room(100), 5);
    }

    #[test]
    fn never_panics_on_mutated_requests() {
        use crate::testutil::{mutate, Rng};
        let mut rng = Rng(0x5eed_0013);
        let now = Instant::now();
        for n in 0..3000 {
            let seed = [POST, CHUNKED, GET][n % 3];
            let input = mutate(&mut rng, seed, b"\r\n:0 ;a");
            let cut = rng.below(input.len() + 1);
            let plan = if n % 3 == 1 { chunked(64) } else { length(rng.below(8)) };
            let mut reader = RequestReader::new(limits(), now);
            let _ = run(&mut reader, &[&input[..cut], &input[cut..]], plan, now);
        }
    }
    /// What the worker charges before it feeds bytes (`capacity_for`) is the capacity the
    /// buffer then has, byte by byte through a head; body bytes go to the body (charged by the
    /// gate), and the head's buffer is given back once the body starts.
    #[test]
    fn a_request_in_one_read_is_read_in_place() {
        let now = Instant::now();
        for (request, plan, body) in [(POST, length(5), "hello"), (GET, length(0), "")] {
            let mut reader = RequestReader::new(limits(), now);
            assert!(matches!(reader.feed(request, now), Step::Head(_)));
            assert_eq!(reader.input.capacity(), 0, "the head is parsed where it was read");
            let Step::Complete(bytes) =
                reader.read_body(plan, ContentType::default(), request, now)
            else {
                panic!()
            };
            assert_eq!(&bytes[..], body.as_bytes());
            assert_eq!(reader.input.capacity(), 0, "the body is copied once, into its Arc");
        }
        // A head split over two reads is kept in the buffer, and what follows it too.
        let mut reader = RequestReader::new(limits(), now);
        assert_eq!(reader.feed(&POST[..10], now), Step::NeedMore);
        assert!(reader.input.capacity() > 0);
        assert!(matches!(reader.feed(&POST[10..], now), Step::Head(_)));
        let Step::Complete(bytes) =
            reader.read_body(length(5), ContentType::default(), &POST[10..], now)
        else {
            panic!()
        };
        assert_eq!(&bytes[..], b"hello");
    }

    /// However the body arrives (at once, in pieces, chunked, empty), it comes out with the
    /// content type in front, in one payload; no content type and an empty one stay apart.
    #[test]
    fn the_content_type_rides_with_the_body() {
        let now = Instant::now();
        let typed = |t: &str| ContentType::of(Some(t.as_bytes()));
        let cases: [(&[u8], BodyPlan, ContentType, Payload); 5] = [
            (POST, length(5), typed("text/a"), Payload::new(Some("text/a"), b"hello")),
            (CHUNKED, chunked(64), typed("text/b"), Payload::new(Some("text/b"), b"hello")),
            (GET, length(0), typed(""), Payload::new(Some(""), b"")),
            (GET, length(0), ContentType::default(), Payload::empty()),
            (CHUNKED, chunked(64), ContentType::default(), Payload::from(&b"hello"[..])),
        ];
        for (request, plan, content_type, expected) in cases {
            for cut in 1..request.len() {
                let (first, rest) = request.split_at(cut);
                let mut reader = RequestReader::new(limits(), now);
                let mut step = reader.feed(first, now);
                let mut fed = first;
                if step == Step::NeedMore {
                    step = reader.feed(rest, now);
                    fed = rest;
                }
                assert!(matches!(step, Step::Head(_)));
                let mut step = reader.read_body(plan, content_type.clone(), fed, now);
                if step == Step::NeedMore && fed == first {
                    step = reader.feed(rest, now);
                }
                assert_eq!(step, Step::Complete(expected.clone()), "cut at {cut}");
            }
        }
        let lossy = ContentType::of(Some(b"text/\xff"));
        assert_eq!((lossy.as_str(), lossy.len()), (Some("text/\u{fffd}"), 8));
        assert_eq!((ContentType::default().as_str(), ContentType::default().len()), (None, 0));
        let long = "x".repeat(INLINE_CONTENT_TYPE + 1);
        assert_eq!(ContentType::of(Some(long.as_bytes())).as_str(), Some(long.as_str()));
    }

    #[test]
    fn the_buffer_grows_only_as_charged_and_is_given_back_for_the_body() {
        let now = Instant::now();
        let mut reader = RequestReader::new(limits(), now);
        let head = b"POST /link/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n";
        let mut charged = 0;
        for byte in head.chunks(1) {
            charged = reader.capacity_for(1);
            let step = describe(&reader.feed(byte, now));
            assert_eq!(reader.input.capacity(), charged, "after {step}");
            if step.starts_with("head") {
                break;
            }
        }
        assert_eq!(charged, 1024, "a head of {} bytes: one KiB", head.len());
        let last = &head[head.len() - 1..];
        assert_eq!(
            describe(&reader.read_body(length(3000), ContentType::default(), last, now)),
            "more"
        );
        assert_eq!(reader.input.capacity(), 0, "the head's buffer is given back");
        assert_eq!(reader.capacity_for(2000), 0, "body bytes do not pass through the buffer");
        assert_eq!(describe(&reader.feed(&[b'a'; 2000], now)), "more");
        assert_eq!(reader.input.capacity(), 0);
        assert!(describe(&reader.feed(&[b'b'; 1000], now)).starts_with("complete aa"));
    }
}
