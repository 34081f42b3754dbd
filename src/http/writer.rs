//! The reply writer: one reply's life from its first byte to the client's close, as a machine
//! with no socket and no clock (protocol §2.1, "Delivered means delivered"). The outbox
//! ([`outbox`](super::outbox)) performs each [`Step`] on the connection (write, shutdown, read,
//! `SIOCOUTQ`, epoll) and feeds back what happened and when; the machine decides what comes next
//! and how the reply ended, which for a `/link` delivery is the delivery rule.
//!
//! ```text
//!   Writing ──(last byte)──▶ Written ──shut──▶ Draining ──(client's end; a delivery)──▶ Closed
//!     │ Wait(Writable)          (the write side)   │ Drain, Wait(Input), DrainNextTurn       │ Ask
//!     │                                            │ (client's end, not a delivery): Taken    ▼
//!     │                                            │                                 Acknowledging
//!     │                                            │                     Probe, Ask, AskNextTick: 0 → Taken
//!     ╰── a failed write, a reset, too much input, the deadline: Done(NotTaken) ──────────╯
//! ```
//!
//! A delivery is *taken* when every byte was acknowledged by the client's TCP (`SIOCOUTQ` is 0)
//! after the client closed its end cleanly (an end of stream, no reset), all before
//! `--write-timeout`. A reset after every byte was written is taken only from a trusted proxy
//! (`--trust-proxy`: HAProxy closes that way once it read the whole response). Any other reply is
//! the client's once it is written whole; the client's input is then drained to its end of
//! stream, within [`LINGER_TIME`] and [`LINGER_BYTES`] (a worker's: [`LINGER_BYTES_WORKER`]),
//! so that closing resets nothing. No more than [`DRAIN_TURN`] is drained at a time.

use std::time::{Duration, Instant};

use crate::wheel::deadline_after;

/// Longest time, after the last byte of a reply, that a client's input is drained before the
/// connection is closed anyway (a delivery keeps `--write-timeout`: its client's close counts).
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// Most input drained after a relay answer before the connection is closed anyway: its request
/// was read whole, so what follows is stray.
pub const LINGER_BYTES: usize = 1 << 20;
/// Most input drained after a worker's reply, which may refuse a body before reading it: room
/// for a proxy to finish passing on a body some MiB over `--max-body` (it streams, and the 413
/// came first; cut off, it loses the 413).
pub const LINGER_BYTES_WORKER: usize = 16 << 20;
/// Most input drained from one connection at a time; the rest waits for the thread's next
/// turn, after everyone else's.
pub const DRAIN_TURN: usize = 256 << 10;

/// Who replies, which sets what the end of the reply means and how much input is drained after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A worker's own answer or refusal, which may come before the request's body was read:
    /// drained up to [`LINGER_BYTES_WORKER`].
    FromWorker,
    /// The registry's answer to a relay request read whole: drained up to [`LINGER_BYTES`].
    FromRegistry,
    /// A `/link` delivery, from the registry: whether it was taken is reported back.
    Delivery,
}

/// What the caller does next. Each step names the call that reports its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write [`ReplyWriter::unwritten`] now, without waiting: [`ReplyWriter::wrote`] (0: the
    /// socket has no room) or [`ReplyWriter::write_failed`].
    Write,
    /// Every byte is written: shut the write side, then [`ReplyWriter::shut`].
    ShutDown,
    /// Read and drop what the client sent, without waiting: [`ReplyWriter::read`] (0: nothing
    /// now), [`ReplyWriter::end_of_input`] or [`ReplyWriter::reset`].
    Drain,
    /// Read at most one byte only to learn of a reset: reported as for [`Step::Drain`].
    Probe,
    /// Ask how many written bytes the client has not acknowledged (`SIOCOUTQ`):
    /// [`ReplyWriter::unacknowledged`].
    AskUnacknowledged,
    /// Nothing to do until the connection reports `readiness` ([`ReplyWriter::resume`]) or
    /// `until` passes ([`ReplyWriter::deadline_passed`]).
    Wait { readiness: Readiness, until: Instant },
    /// Input is left after this turn's share: [`ReplyWriter::resume`] with input in the next
    /// turn, after everyone else's.
    DrainNextTurn,
    /// The client closed with bytes still on their way: [`ReplyWriter::resume`] at the next
    /// tick, or on readiness.
    AskNextTick,
    /// The reply is over: close the connection.
    Done(Outcome),
}

/// What the connection is to report while a reply waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Room in the send buffer, or input (bytes, the client's end, a failure).
    Writable,
    /// Input only (bytes, the client's end, a failure).
    Input,
}

/// How a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The client has it. A delivery: every byte acknowledged, then a clean close (or a trusted
    /// proxy's reset), within `--write-timeout`. Any other reply: written whole.
    Taken,
    /// The client did not take it.
    NotTaken(Loss),
    /// The relay could not follow the connection to its end.
    Failed(Fault),
}

/// Why a client did not take its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// A write failed: the client reset or left before the reply was written.
    WriteFailed,
    /// The connection was reset after the reply was written, by a peer that is not a trusted
    /// proxy.
    Reset,
    /// A delivery's client sent more than [`LINGER_BYTES`] after it.
    TooMuchInput,
    /// `--write-timeout` passed first: counted as `slow_reader`.
    WriteTimeout,
}

/// What the relay could not do on a reply's connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The epoll set refused the connection (out of memory): nothing would report on it.
    CannotWatch,
    /// `SIOCOUTQ` failed: the acknowledgements cannot be known.
    CannotAsk,
}

/// Where a reply is in its life (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Bytes left to write.
    Writing,
    /// Every byte written; the write side is to be shut.
    Written,
    /// The write side shut: reading to the client's end of stream.
    Draining,
    /// A delivery's client closed: the first look at its acknowledgements.
    Closed,
    /// A delivery's client closed with bytes unacknowledged: probing for a reset, then asking
    /// again, every tick and on every readiness.
    Acknowledging,
    /// Over.
    Done(Outcome),
}

/// One reply on its way to a client. See the module docs.
pub struct ReplyWriter {
    bytes: Vec<u8>,
    written: usize,
    kind: Kind,
    /// Whether the TCP peer is a trusted proxy, whose reset after the last byte takes it.
    via_proxy: bool,
    stage: Stage,
    step: Step,
    /// When the reply is given up (`--write-timeout`), or, once written whole, when a client that
    /// has its answer is closed on ([`LINGER_TIME`]; a delivery keeps `--write-timeout`).
    deadline: Instant,
    /// Whether the connection reported input not read yet (readiness is edge-triggered: input
    /// that came during the write was reported then).
    input: bool,
    /// Input drained since the reply was written whole, and in this turn.
    drained: usize,
    drained_this_turn: usize,
}

impl ReplyWriter {
    /// The reply `bytes` (rendered whole), started at `now`: due by `now + write_timeout`.
    pub fn new(
        bytes: Vec<u8>,
        kind: Kind,
        via_proxy: bool,
        now: Instant,
        write_timeout: Duration,
    ) -> ReplyWriter {
        ReplyWriter {
            bytes,
            written: 0,
            kind,
            via_proxy,
            stage: Stage::Writing,
            step: Step::Write,
            deadline: deadline_after(now, write_timeout),
            input: false,
            drained: 0,
            drained_this_turn: 0,
        }
    }

    /// What to do now.
    pub fn step(&self) -> Step {
        self.step
    }

    /// When the reply is given up if it is not over.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether its end is reported to the registry.
    pub fn is_delivery(&self) -> bool {
        self.kind == Kind::Delivery
    }

    /// The bytes [`Step::Write`] is to write.
    pub fn unwritten(&self) -> &[u8] {
        self.bytes.get(self.written..).unwrap_or_default()
    }

    /// What the connection is to report: room to write while bytes are left, else input only.
    pub fn readiness(&self) -> Readiness {
        if self.stage == Stage::Writing {
            Readiness::Writable
        } else {
            Readiness::Input
        }
    }

    /// The connection reported readiness (`input`: bytes, an end of stream or a failure came),
    /// or the reply's next turn or tick came: a new turn begins.
    pub fn resume(&mut self, input: bool) -> Step {
        self.input |= input;
        self.drained_this_turn = 0;
        let step = match self.stage {
            Stage::Writing => Step::Write,
            Stage::Written => Step::ShutDown,
            Stage::Draining => Step::Drain,
            Stage::Closed => Step::AskUnacknowledged,
            Stage::Acknowledging => Step::Probe,
            Stage::Done(outcome) => Step::Done(outcome),
        };
        self.go(step)
    }

    /// [`Step::Write`] wrote `n` bytes (0: no room now).
    pub fn wrote(&mut self, n: usize) -> Step {
        if self.stage != Stage::Writing {
            return self.step;
        }
        if n == 0 {
            return self.wait(Readiness::Writable);
        }
        self.written = self.written.saturating_add(n).min(self.bytes.len());
        if self.written < self.bytes.len() {
            return self.go(Step::Write);
        }
        self.bytes = Vec::new();
        self.stage = Stage::Written;
        self.go(Step::ShutDown)
    }

    /// [`Step::Write`] failed: the client reset or left.
    pub fn write_failed(&mut self) -> Step {
        if self.stage != Stage::Writing {
            return self.step;
        }
        self.end(Outcome::NotTaken(Loss::WriteFailed))
    }

    /// The write side was shut at `now`: a client that has its answer is waited for only
    /// [`LINGER_TIME`] more (a delivery keeps `--write-timeout`, since its client's close is
    /// what counts).
    pub fn shut(&mut self, now: Instant) -> Step {
        if self.stage != Stage::Written {
            return self.step;
        }
        self.stage = Stage::Draining;
        if !self.is_delivery() {
            self.deadline = deadline_after(now, LINGER_TIME);
        }
        if self.input {
            self.go(Step::Drain)
        } else {
            self.wait(Readiness::Input)
        }
    }

    /// [`Step::Drain`] or [`Step::Probe`] read `n` bytes (0: nothing now).
    pub fn read(&mut self, n: usize) -> Step {
        match (self.stage, self.step) {
            (Stage::Draining, Step::Drain) if n == 0 => {
                self.input = false;
                self.wait(Readiness::Input)
            }
            (Stage::Draining, Step::Drain) => {
                self.drained = self.drained.saturating_add(n);
                self.drained_this_turn = self.drained_this_turn.saturating_add(n);
                if self.drained > self.drain_max() {
                    return self.end(match self.kind {
                        Kind::Delivery => Outcome::NotTaken(Loss::TooMuchInput),
                        _ => Outcome::Taken,
                    });
                }
                if self.drained_this_turn >= DRAIN_TURN {
                    return self.go(Step::DrainNextTurn);
                }
                self.go(Step::Drain)
            }
            // What a probe reads is not drained: it only looks for a reset.
            (Stage::Acknowledging, Step::Probe) => self.go(Step::AskUnacknowledged),
            _ => self.step,
        }
    }

    /// [`Step::Drain`] or [`Step::Probe`] found the client's end of stream.
    pub fn end_of_input(&mut self) -> Step {
        match (self.stage, self.step) {
            (Stage::Draining, Step::Drain) if !self.is_delivery() => self.end(Outcome::Taken),
            (Stage::Draining, Step::Drain) => {
                self.stage = Stage::Closed;
                self.go(Step::AskUnacknowledged)
            }
            (Stage::Acknowledging, Step::Probe) => self.go(Step::AskUnacknowledged),
            _ => self.step,
        }
    }

    /// [`Step::Drain`] or [`Step::Probe`] failed: the connection was reset after every byte was
    /// written. Taken from a trusted proxy (see the module docs), else not.
    pub fn reset(&mut self) -> Step {
        match (self.stage, self.step) {
            (Stage::Draining, Step::Drain) | (Stage::Acknowledging, Step::Probe) => self
                .end(if self.via_proxy { Outcome::Taken } else { Outcome::NotTaken(Loss::Reset) }),
            _ => self.step,
        }
    }

    /// [`Step::AskUnacknowledged`] found `bytes` not acknowledged (`None`: it could not ask).
    /// The first time, anything but 0 is looked at again at once, after a probe for a reset;
    /// after that, at each tick.
    pub fn unacknowledged(&mut self, bytes: Option<usize>) -> Step {
        match (self.stage, self.step, bytes) {
            (Stage::Closed | Stage::Acknowledging, Step::AskUnacknowledged, Some(0)) => {
                self.end(Outcome::Taken)
            }
            (Stage::Closed, Step::AskUnacknowledged, _) => {
                self.stage = Stage::Acknowledging;
                self.go(Step::Probe)
            }
            (Stage::Acknowledging, Step::AskUnacknowledged, Some(_)) => self.go(Step::AskNextTick),
            (Stage::Acknowledging, Step::AskUnacknowledged, None) => {
                self.end(Outcome::Failed(Fault::CannotAsk))
            }
            _ => self.step,
        }
    }

    /// The connection could not be put in the epoll set: a client that has its whole answer is
    /// done with; any other reply failed.
    pub fn unwatchable(&mut self) -> Step {
        if self.stage == Stage::Draining && !self.is_delivery() {
            self.end(Outcome::Taken)
        } else {
            self.end(Outcome::Failed(Fault::CannotWatch))
        }
    }

    /// [`deadline`](Self::deadline) passed: a client that has its whole answer is done with;
    /// any other reply was not taken in time.
    pub fn deadline_passed(&mut self) -> Step {
        match self.stage {
            Stage::Done(outcome) => Step::Done(outcome),
            Stage::Draining if !self.is_delivery() => self.end(Outcome::Taken),
            _ => self.end(Outcome::NotTaken(Loss::WriteTimeout)),
        }
    }

    /// Most input drained after the reply.
    fn drain_max(&self) -> usize {
        match self.kind {
            Kind::FromWorker => LINGER_BYTES_WORKER,
            Kind::FromRegistry | Kind::Delivery => LINGER_BYTES,
        }
    }

    fn go(&mut self, step: Step) -> Step {
        self.step = step;
        step
    }

    fn wait(&mut self, readiness: Readiness) -> Step {
        self.go(Step::Wait { readiness, until: self.deadline })
    }

    fn end(&mut self, outcome: Outcome) -> Step {
        self.stage = Stage::Done(outcome);
        self.bytes = Vec::new();
        self.go(Step::Done(outcome))
    }
}
