//! The request reader: one request's bytes in, what to do next out (protocol §4). No socket and
//! no clock: the worker ([`read`](super::read)) feeds it what the socket had and the time, and
//! acts on the [`Step`] it returns.
//!
//! ```text
//!   Head ──(head complete)──▶ Deciding ──read_body──▶ Body ──(body complete)──▶ Done
//!    │  Step::Head: the gate decides   │  Step::SendContinue first, if the client asked
//!    ╰── a bad head, a head past --max-head, a deadline passed: Step::Refuse ──╯
//! ```
//!
//! A head that is not complete yet is not an error, and is parsed again only when a line feed
//! arrives (a byte-at-a-time client costs O(n)). The head is bounded by `--max-head`, its wait by
//! `--head-timeout`; the body by its announced length or, chunked, by the decoder's `--max-body`,
//! its wait by `--body-timeout` from the moment the head was accepted. What the head says is
//! decided by the gate (`gate.rs`), not here: routes, limits and what the body may be. Bytes after
//! the request (a pipelined second one) are ignored: every response closes its connection.

use std::fmt;
use std::time::{Duration, Instant};

use super::chunked::{ChunkError, ChunkedDecoder};
use super::parse::{parse_head, Head, HeadError, HeadLimits, Status};
use crate::config::Config;
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

impl ReaderLimits {
    /// The reader's bounds in `config`.
    pub fn of(config: &Config) -> ReaderLimits {
        let limits = &config.limits;
        ReaderLimits {
            head: HeadLimits { max_head: limits.max_head, max_headers: limits.max_headers },
            head_timeout: config.timeouts.head,
            body_timeout: config.timeouts.body,
        }
    }
}

/// What body the gate lets a request have, decided from its head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyPlan {
    /// How the body is framed.
    pub framing: BodyFraming,
    /// Whether the client waits for `100 Continue` before it sends the body.
    pub expect_continue: bool,
}

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
    bytes: Vec<u8>,
    decoder: Decoder,
}

enum Decoder {
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// What the caller does next.
#[derive(Debug, PartialEq)]
pub enum Step<'a> {
    /// Read more bytes when the socket has them, by [`RequestReader::deadline`].
    NeedMore,
    /// The head is complete: decide it, then call [`RequestReader::read_body`] (or stop).
    Head(Head<'a>),
    /// Write `HTTP/1.1 100 Continue`, then feed again.
    SendContinue,
    /// The request is complete; this is its body.
    Complete(Vec<u8>),
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
            phase: Phase::Head,
            deadline: deadline_after(now, limits.head_timeout),
        }
    }

    /// When the current phase must be complete.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Takes `bytes` (which may be empty: go on with what is buffered) that arrived by `now`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> Step<'_> {
        if matches!(self.phase, Phase::Done | Phase::Deciding) {
            return Step::NeedMore; // nothing more is read; the caller's turn
        }
        if now >= self.deadline {
            return self.refuse(self.timed_out().unwrap_or(ReadError::Gone));
        }
        self.input.extend_from_slice(bytes);
        if matches!(self.phase, Phase::Head) {
            return self.feed_head();
        }
        if let Phase::Continue(_) = self.phase {
            return Step::SendContinue;
        }
        self.feed_body()
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

    /// After [`Step::Head`]: the gate admitted the request with `plan`, at `now`. Returns
    /// [`Step::SendContinue`] when the client waits for it and its body is not all here yet.
    pub fn read_body(&mut self, plan: BodyPlan, now: Instant) -> Step<'_> {
        if !matches!(self.phase, Phase::Deciding) {
            return self.refuse(ReadError::Gone);
        }
        self.input.drain(..self.head_len);
        self.deadline = deadline_after(now, self.limits.body_timeout);
        let decoder = match plan.framing {
            BodyFraming::Length(n) => Decoder::Length(n),
            BodyFraming::Chunked { max } => Decoder::Chunked(ChunkedDecoder::new(max)),
        };
        let body = Body { bytes: Vec::new(), decoder };
        let all_here = matches!(plan.framing, BodyFraming::Length(n) if self.input.len() >= n);
        if plan.expect_continue && !all_here {
            self.phase = Phase::Continue(body);
            return Step::SendContinue;
        }
        self.phase = Phase::Body(body);
        self.feed_body()
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

    fn feed_body(&mut self) -> Step<'_> {
        let Phase::Body(body) = &mut self.phase else { return Step::NeedMore };
        let done = match &mut body.decoder {
            Decoder::Length(length) => {
                let take = (*length - body.bytes.len()).min(self.input.len());
                body.bytes.extend(self.input.drain(..take));
                body.bytes.len() == *length
            }
            Decoder::Chunked(decoder) => match decoder.decode(&self.input, &mut body.bytes) {
                Ok(used) => {
                    self.input.drain(..used);
                    decoder.is_done()
                }
                Err(e) => return self.refuse(ReadError::Chunk(e)),
            },
        };
        if !done {
            return Step::NeedMore;
        }
        let Phase::Body(body) = std::mem::replace(&mut self.phase, Phase::Done) else {
            return Step::NeedMore; // unreachable: matched Body above
        };
        self.input = Vec::new(); // pipelined bytes: ignored
        Step::Complete(body.bytes)
    }

    fn refuse(&mut self, error: ReadError) -> Step<'_> {
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

    /// How many more bytes the current phase may take: the head up to `--max-head`, a body up to
    /// its length, at most `scratch`. (A chunked body is bounded by its decoder.)
    pub fn room(&self, scratch: usize) -> usize {
        match &self.phase {
            Phase::Head => self.limits.head.max_head.saturating_sub(self.input.len()),
            Phase::Continue(Body { bytes, decoder: Decoder::Length(n) })
            | Phase::Body(Body { bytes, decoder: Decoder::Length(n) }) => {
                n.saturating_sub(bytes.len() + self.input.len())
            }
            _ => scratch,
        }
        .min(scratch)
    }
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
    Gone,
}

impl ReadError {
    /// The answer; `None` when there is nobody to answer.
    pub fn response(&self) -> Option<Response> {
        let status = match self {
            ReadError::Head(e) => e.status(),
            ReadError::Chunk(e) => e.status(),
            ReadError::TimedOut { .. } => 408,
            ReadError::Gone => return None,
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
            ReadError::Gone => return None,
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
            ReadError::Gone => f.write_str("The client left."),
        }
    }
}
