//! The reply writer: one reply's life from its first byte to the client's close, as a machine
//! with no socket and no clock (protocol §2.1, "Delivered means delivered"). The outbox
//! ([`outbox`](super::outbox)) performs each [`Step`] on the connection (write, shutdown, read,
//! `SIOCOUTQ`, epoll) and feeds back what happened and when; the machine decides what comes next
//! and how the reply ended, which for a `/link` delivery is the delivery rule.
//!
//! ```text
//!  Writing ──last byte──▶ Written ──shut──▶ Draining ──client's end──▶ Closed ──ask: 0──▶ Taken
//!  Write, Wait(Writable)  ShutDown          Drain, Wait(Input),           │ ask: not 0
//!                                           DrainNextTurn                 ▼
//!                                                                 Acknowledging ──ask: 0──▶ Taken
//!                                                                 Probe, Ask, AskNextTick
//!  From any stage: a failed write, a reset, input past its bound, the deadline: NotTaken.
//!  Not a delivery: Taken at its end of stream or once lingered. A trusted proxy's reset: Taken.
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

    /// The reply's buffer, for reuse, once nothing is left to write in it (written whole, or the
    /// reply over); empty before that and after the first call.
    pub fn take_spent(&mut self) -> Vec<u8> {
        if self.stage == Stage::Writing {
            return Vec::new();
        }
        std::mem::take(&mut self.bytes)
    }

    /// The bytes [`Step::Write`] is to write.
    pub fn unwritten(&self) -> &[u8] {
        match self.stage {
            Stage::Writing => self.bytes.get(self.written..).unwrap_or_default(),
            _ => &[],
        }
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
            (Stage::Draining, Step::Drain) | (Stage::Acknowledging, Step::Probe) => {
                let proxy = self.via_proxy;
                self.end(if proxy { Outcome::Taken } else { Outcome::NotTaken(Loss::Reset) })
            }
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
        match self.stage {
            Stage::Done(outcome) => Step::Done(outcome),
            Stage::Draining if !self.is_delivery() => self.end(Outcome::Taken),
            _ => self.end(Outcome::Failed(Fault::CannotWatch)),
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
        self.go(Step::Done(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);
    const KIB: usize = 1024;
    /// The length of the replies below.
    const LEN: usize = 3000;

    /// What the outbox reports, as a test script says it.
    #[derive(Clone, Copy, Debug)]
    enum Ev {
        /// Readiness, a turn or a tick (`true`: input was reported).
        Resume(bool),
        Wrote(usize),
        WriteFailed,
        /// The write side shut, this many ms after the start.
        Shut(u64),
        Read(usize),
        Eof,
        Reset,
        Unacked(Option<usize>),
        Unwatchable,
        Deadline,
    }
    use Ev::*;

    fn writer(kind: Kind, via_proxy: bool, t0: Instant) -> ReplyWriter {
        ReplyWriter::new(vec![b'r'; LEN], kind, via_proxy, t0, TIMEOUT)
    }

    fn apply(writer: &mut ReplyWriter, event: Ev, t0: Instant) -> Step {
        match event {
            Resume(input) => writer.resume(input),
            Wrote(n) => writer.wrote(n),
            WriteFailed => writer.write_failed(),
            Shut(ms) => writer.shut(t0 + Duration::from_millis(ms)),
            Read(n) => writer.read(n),
            Eof => writer.end_of_input(),
            Reset => writer.reset(),
            Unacked(n) => writer.unacknowledged(n),
            Unwatchable => writer.unwatchable(),
            Deadline => writer.deadline_passed(),
        }
    }

    fn describe(step: Step, t0: Instant) -> String {
        let ms = |at: Instant| at.duration_since(t0).as_millis();
        match step {
            Step::Write => "write".into(),
            Step::ShutDown => "shut down".into(),
            Step::Drain => "drain".into(),
            Step::Probe => "probe".into(),
            Step::AskUnacknowledged => "ask".into(),
            Step::Wait { readiness: Readiness::Writable, until } => {
                format!("wait writable {}ms", ms(until))
            }
            Step::Wait { readiness: Readiness::Input, until } => {
                format!("wait input {}ms", ms(until))
            }
            Step::DrainNextTurn => "next turn".into(),
            Step::AskNextTick => "next tick".into(),
            Step::Done(Outcome::Taken) => "taken".into(),
            Step::Done(Outcome::NotTaken(loss)) => format!("not taken {loss:?}"),
            Step::Done(Outcome::Failed(fault)) => format!("failed {fault:?}"),
        }
    }

    /// A reply of `kind` started now and fed `events` in turn: its first step, then the step
    /// after each event, as text.
    fn play(kind: Kind, via_proxy: bool, events: &[Ev]) -> String {
        let t0 = Instant::now();
        let mut writer = writer(kind, via_proxy, t0);
        let mut seen = vec![describe(writer.step(), t0)];
        for &event in events {
            seen.push(describe(apply(&mut writer, event, t0), t0));
        }
        seen.join(", ")
    }

    /// The last step of [`play`].
    fn outcome(kind: Kind, via_proxy: bool, events: &[Ev]) -> String {
        play(kind, via_proxy, events).rsplit(", ").next().unwrap_or_default().to_string()
    }

    fn delivery(events: &[Ev]) -> String {
        outcome(Kind::Delivery, false, events)
    }

    // The rows of tests/delivery.rs's loss matrix, each as the outbox sees its first receiver.
    // (Whether the sender waits or leaves is the registry's, not the reply's.)

    #[test]
    fn closes_before_the_write_failed_write() {
        // The receiver's reset reached the relay before the write.
        assert_eq!(play(Kind::Delivery, false, &[WriteFailed]), "write, not taken WriteFailed");
    }

    #[test]
    fn closes_before_the_write_reset_after_its_end() {
        // Its end of stream came before the reply, which the kernel took; the receiver's
        // kernel answers it with a reset. Its end alone was not taking it.
        let events = [Resume(true), Wrote(LEN), Shut(1), Eof, Unacked(Some(LEN)), Reset];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, write, shut down, drain, ask, probe, not taken Reset"
        );
    }

    #[test]
    fn closes_before_the_write_never_acknowledged() {
        // No reset comes either: the bytes stay unacknowledged until --write-timeout.
        let events = [
            Resume(true),
            Wrote(LEN),
            Shut(1),
            Eof,
            Unacked(Some(LEN)),
            Read(0),
            Unacked(Some(LEN)),
            Resume(false),
            Eof,
            Unacked(Some(LEN)),
            Deadline,
        ];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, write, shut down, drain, ask, probe, ask, next tick, probe, ask, next tick, \
             not taken WriteTimeout"
        );
    }

    #[test]
    fn stray_byte_then_closes() {
        let events = [Resume(true), Wrote(LEN), Shut(1), Read(2), Eof, Unacked(Some(LEN)), Reset];
        assert_eq!(delivery(&events), "not taken Reset");
        // Its reset may also come while the reply is being written.
        assert_eq!(delivery(&[Resume(true), Wrote(1000), WriteFailed]), "not taken WriteFailed");
    }

    #[test]
    fn pipelines_then_closes() {
        let events = [
            Resume(true),
            Wrote(LEN),
            Shut(1),
            Read(40),
            Read(0),
            Resume(true),
            Eof,
            Unacked(Some(LEN + 1)),
            Eof,
            Unacked(Some(LEN + 1)),
            Resume(false),
            Reset,
        ];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, write, shut down, drain, drain, wait input 10000ms, drain, ask, probe, ask, \
             next tick, probe, not taken Reset"
        );
    }

    #[test]
    fn closes_during_the_write() {
        let events = [Wrote(1000), Wrote(0), Resume(true), WriteFailed];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, write, wait writable 10000ms, write, not taken WriteFailed"
        );
        // Not even from a trusted proxy: its exception needs every byte written.
        assert_eq!(outcome(Kind::Delivery, true, &events), "not taken WriteFailed");
    }

    #[test]
    fn reads_slowly_then_resets() {
        let events = [
            Resume(true),
            Wrote(1000),
            Wrote(0),
            Resume(false),
            Wrote(LEN - 1000),
            Shut(30),
            Read(2),
            Read(0),
            Resume(true),
            Reset,
        ];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, write, write, wait writable 10000ms, write, shut down, drain, drain, \
             wait input 10000ms, drain, not taken Reset"
        );
    }

    #[test]
    fn reads_slowly_then_resets_after_its_end() {
        // It read everything, closed, and reset on a late byte: a reset all the same.
        let events = [Wrote(LEN), Shut(1), Resume(true), Eof, Unacked(Some(1)), Reset];
        assert_eq!(delivery(&events), "not taken Reset");
    }

    #[test]
    fn stray_byte_then_reads_all() {
        let events = [
            Resume(true),
            Wrote(LEN),
            Shut(1),
            Read(2),
            Read(0),
            Resume(true),
            Eof,
            Unacked(Some(0)),
        ];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, write, shut down, drain, drain, wait input 10000ms, drain, ask, taken"
        );
    }

    #[test]
    fn reads_all() {
        let events = [Wrote(LEN), Shut(1), Resume(true), Eof, Unacked(Some(0))];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, shut down, wait input 10000ms, drain, ask, taken"
        );
    }

    #[test]
    fn reads_all_acknowledged_a_tick_later() {
        let events = [
            Wrote(LEN),
            Shut(1),
            Resume(true),
            Eof,
            Unacked(Some(120)),
            Read(0),
            Unacked(Some(120)),
            Resume(false),
            Eof,
            Unacked(Some(0)),
        ];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, shut down, wait input 10000ms, drain, ask, probe, ask, next tick, probe, ask, \
             taken"
        );
    }

    #[test]
    fn reads_slowly_then_closes() {
        // The SIGTERM rows' receivers: a slow reader whose reply is written over many turns.
        let mut events = vec![Resume(false)];
        for _ in 0..3 {
            events.extend([Wrote(LEN / 3), Wrote(0), Resume(false)]);
        }
        events.extend([Shut(200), Resume(true), Eof, Unacked(Some(0))]);
        assert_eq!(delivery(&events), "taken");
    }

    #[test]
    fn reads_all_keeps_open() {
        // A delivery keeps --write-timeout after its last byte: its client's close counts.
        let events = [Wrote(LEN), Shut(5), Deadline];
        assert_eq!(
            play(Kind::Delivery, false, &events),
            "write, shut down, wait input 10000ms, not taken WriteTimeout"
        );
        // Its end of stream after the deadline comes too late.
        let late = [Wrote(LEN), Shut(5), Deadline, Resume(true), Eof, Unacked(Some(0))];
        assert_eq!(delivery(&late), "not taken WriteTimeout");
    }

    // The trusted-proxy exception.

    #[test]
    fn a_reset_after_the_last_byte_is_taken_only_from_a_trusted_proxy() {
        let drain_reset = [Wrote(LEN), Shut(1), Resume(true), Read(0), Resume(true), Reset];
        let probe_reset = [Wrote(LEN), Shut(1), Resume(true), Eof, Unacked(Some(9)), Reset];
        for events in [&drain_reset[..], &probe_reset[..]] {
            assert_eq!(outcome(Kind::Delivery, false, events), "not taken Reset", "{events:?}");
            assert_eq!(outcome(Kind::Delivery, true, events), "taken", "{events:?}");
        }
        // The same for a reply that is not a delivery (only its log line shows it).
        assert_eq!(outcome(Kind::FromRegistry, false, &drain_reset), "not taken Reset");
        assert_eq!(outcome(Kind::FromRegistry, true, &drain_reset), "taken");
    }

    #[test]
    fn a_trusted_proxy_closing_cleanly_is_held_to_the_rule() {
        let unacknowledged = [Wrote(LEN), Shut(1), Resume(true), Eof, Unacked(Some(9)), Read(0)];
        assert_eq!(
            outcome(Kind::Delivery, true, &[&unacknowledged[..], &[Unacked(Some(9))]].concat()),
            "next tick"
        );
        assert_eq!(
            outcome(Kind::Delivery, true, &[&unacknowledged[..], &[Unacked(Some(0))]].concat()),
            "taken"
        );
    }

    // Any other reply is the client's once written; what follows only decides when to close.

    #[test]
    fn an_answer_is_taken_at_the_clients_end_whatever_is_unacknowledged() {
        for kind in [Kind::FromWorker, Kind::FromRegistry] {
            let events = [Wrote(LEN), Shut(1), Resume(true), Read(7), Eof];
            assert_eq!(
                play(kind, false, &events),
                "write, shut down, wait input 1001ms, drain, drain, taken",
                "{kind:?}"
            );
        }
    }

    // The bounds.

    /// Feeds `total` bytes of input in reads of at most `chunk`, going on at each next turn;
    /// the last step, and how many turns were needed.
    fn drain(writer: &mut ReplyWriter, total: usize, chunk: usize) -> (Step, usize) {
        let (mut left, mut turns) = (total, 1);
        let mut step = writer.step();
        while left > 0 {
            step = match step {
                Step::Drain => {
                    let n = left.min(chunk);
                    left -= n;
                    writer.read(n)
                }
                Step::DrainNextTurn => {
                    turns += 1;
                    writer.resume(true)
                }
                _ => return (step, turns),
            };
        }
        (step, turns)
    }

    /// A reply of `kind` written whole, its client's input reported: draining.
    fn draining(kind: Kind, t0: Instant) -> ReplyWriter {
        let mut writer = writer(kind, false, t0);
        for event in [Resume(true), Wrote(LEN), Shut(1)] {
            apply(&mut writer, event, t0);
        }
        assert_eq!(writer.step(), Step::Drain);
        writer
    }

    #[test]
    fn a_relay_answers_drain_stops_past_linger_bytes() {
        let t0 = Instant::now();
        let mut writer = draining(Kind::FromRegistry, t0);
        assert_eq!(drain(&mut writer, LINGER_BYTES, 16 * KIB), (Step::DrainNextTurn, 4));
        assert_eq!(writer.resume(true), Step::Drain);
        assert_eq!(writer.read(1), Step::Done(Outcome::Taken));
    }

    #[test]
    fn a_delivery_whose_client_sends_past_linger_bytes_is_not_taken() {
        let t0 = Instant::now();
        let mut writer = draining(Kind::Delivery, t0);
        assert_eq!(drain(&mut writer, LINGER_BYTES, 16 * KIB).0, Step::DrainNextTurn);
        writer.resume(true);
        assert_eq!(writer.read(1), Step::Done(Outcome::NotTaken(Loss::TooMuchInput)));
        // Exactly LINGER_BYTES, then a clean close: taken.
        let mut writer = draining(Kind::Delivery, t0);
        drain(&mut writer, LINGER_BYTES, 16 * KIB);
        writer.resume(true);
        assert_eq!(writer.end_of_input(), Step::AskUnacknowledged);
        assert_eq!(writer.unacknowledged(Some(0)), Step::Done(Outcome::Taken));
    }

    #[test]
    fn a_workers_reply_drains_up_to_linger_bytes_worker() {
        let t0 = Instant::now();
        let mut writer = draining(Kind::FromWorker, t0);
        // Past a relay answer's bound, still draining.
        assert_eq!(drain(&mut writer, LINGER_BYTES + 1, 16 * KIB).0, Step::Drain);
        let mut writer = draining(Kind::FromWorker, t0);
        assert_eq!(drain(&mut writer, LINGER_BYTES_WORKER, 64 * KIB), (Step::DrainNextTurn, 64));
        writer.resume(true);
        assert_eq!(writer.read(1), Step::Done(Outcome::Taken));
    }

    #[test]
    fn at_most_drain_turn_is_drained_per_turn() {
        let t0 = Instant::now();
        let mut writer = draining(Kind::FromWorker, t0);
        assert_eq!(drain(&mut writer, DRAIN_TURN - 1, 16 * KIB).0, Step::Drain);
        assert_eq!(writer.read(1), Step::DrainNextTurn);
        // A new turn counts afresh.
        assert_eq!(writer.resume(true), Step::Drain);
        assert_eq!(drain(&mut writer, DRAIN_TURN - 1, 16 * KIB).0, Step::Drain);
        assert_eq!(writer.read(1), Step::DrainNextTurn);
        // One read larger than a turn ends the turn.
        writer.resume(true);
        assert_eq!(writer.read(DRAIN_TURN + 1), Step::DrainNextTurn);
        // Nothing more now: wait for input.
        writer.resume(true);
        assert!(matches!(writer.read(0), Step::Wait { readiness: Readiness::Input, .. }));
    }

    #[test]
    fn the_write_timeout_bounds_every_reply() {
        for kind in [Kind::FromWorker, Kind::FromRegistry, Kind::Delivery] {
            let t0 = Instant::now();
            let w = writer(kind, false, t0);
            assert_eq!(w.deadline(), t0 + TIMEOUT, "{kind:?}");
            // Still writing: not taken, counted as a slow reader.
            let events = [Wrote(100), Wrote(0), Deadline];
            assert_eq!(
                play(kind, false, &events),
                "write, write, wait writable 10000ms, not taken WriteTimeout",
                "{kind:?}"
            );
        }
        // A delivery waiting for its last acknowledgement.
        let events = [Wrote(LEN), Shut(1), Resume(true), Eof, Unacked(Some(5)), Read(0)];
        let events = [&events[..], &[Unacked(Some(5)), Deadline]].concat();
        assert_eq!(delivery(&events), "not taken WriteTimeout");
    }

    #[test]
    fn an_answer_is_closed_on_linger_time_after_its_last_byte() {
        for kind in [Kind::FromWorker, Kind::FromRegistry] {
            let t0 = Instant::now();
            let mut writer = writer(kind, false, t0);
            writer.wrote(LEN);
            let shut_at = t0 + Duration::from_secs(3);
            writer.shut(shut_at);
            assert_eq!(writer.deadline(), shut_at + LINGER_TIME, "{kind:?}");
            assert_eq!(
                writer.step(),
                Step::Wait { readiness: Readiness::Input, until: shut_at + LINGER_TIME }
            );
            // It has its answer: done with, not a slow reader.
            assert_eq!(writer.deadline_passed(), Step::Done(Outcome::Taken), "{kind:?}");
        }
        // A delivery keeps --write-timeout.
        let t0 = Instant::now();
        let mut writer = writer(Kind::Delivery, false, t0);
        writer.wrote(LEN);
        writer.shut(t0 + Duration::from_secs(3));
        assert_eq!(writer.deadline(), t0 + TIMEOUT);
    }

    // What the relay itself cannot do.

    #[test]
    fn a_connection_that_cannot_be_watched() {
        let writing = [Wrote(10), Wrote(0), Unwatchable];
        let draining = [Wrote(LEN), Shut(1), Unwatchable];
        assert_eq!(delivery(&writing), "failed CannotWatch");
        assert_eq!(delivery(&draining), "failed CannotWatch");
        assert_eq!(outcome(Kind::FromWorker, false, &writing), "failed CannotWatch");
        // A client that has its whole answer is done with.
        assert_eq!(outcome(Kind::FromWorker, false, &draining), "taken");
    }

    #[test]
    fn acknowledgements_that_cannot_be_asked() {
        let closed = [Wrote(LEN), Shut(1), Resume(true), Eof];
        // The first time, looked at again after a probe; then the delivery failed.
        assert_eq!(
            play(
                Kind::Delivery,
                false,
                &[&closed[..], &[Unacked(None), Read(0), Unacked(None)]].concat()
            ),
            "write, shut down, wait input 10000ms, drain, ask, probe, ask, failed CannotAsk"
        );
    }

    // Robustness.

    #[test]
    fn an_ended_reply_stays_ended_and_events_out_of_turn_change_nothing() {
        let t0 = Instant::now();
        let mut writer = writer(Kind::Delivery, false, t0);
        // Out of turn while writing.
        for event in [Shut(1), Read(5), Eof, Reset, Unacked(Some(0))] {
            assert_eq!(apply(&mut writer, event, t0), Step::Write, "{event:?}");
        }
        writer.write_failed();
        let done = Step::Done(Outcome::NotTaken(Loss::WriteFailed));
        let all = [
            Resume(true),
            Wrote(LEN),
            WriteFailed,
            Shut(1),
            Read(1),
            Eof,
            Reset,
            Unacked(Some(0)),
            Unwatchable,
            Deadline,
        ];
        for event in all {
            assert_eq!(apply(&mut writer, event, t0), done, "{event:?}");
        }
        assert!(writer.unwritten().is_empty());
    }

    #[test]
    fn unwritten_is_what_is_left() {
        let t0 = Instant::now();
        let mut writer = writer(Kind::Delivery, false, t0);
        assert_eq!(writer.unwritten().len(), LEN);
        assert_eq!(writer.readiness(), Readiness::Writable);
        writer.wrote(1000);
        assert_eq!(writer.unwritten().len(), LEN - 1000);
        // More than is left is taken as all of it.
        assert_eq!(writer.wrote(LEN), Step::ShutDown);
        assert!(writer.unwritten().is_empty());
        assert_eq!(writer.readiness(), Readiness::Input);
    }

    #[test]
    fn the_buffer_is_given_back_only_when_nothing_is_left_to_write_in_it() {
        let t0 = Instant::now();
        let mut reply = writer(Kind::Delivery, false, t0);
        reply.wrote(1000);
        assert!(reply.take_spent().is_empty(), "still writing");
        assert_eq!(reply.unwritten().len(), LEN - 1000, "and nothing was taken");
        assert_eq!(reply.wrote(LEN), Step::ShutDown);
        let spent = reply.take_spent();
        assert_eq!((spent.len(), spent.capacity() >= LEN), (LEN, true));
        assert!(reply.take_spent().is_empty() && reply.unwritten().is_empty());
        assert_eq!(reply.shut(t0), reply.step(), "the reply goes on without it");

        let mut failed = writer(Kind::Delivery, false, t0);
        failed.wrote(1000);
        assert!(matches!(failed.write_failed(), Step::Done(_)));
        assert_eq!(failed.take_spent().len(), LEN);
    }

    /// Random events in random order: nothing panics, an ended reply stays ended, the deadline
    /// always ends a reply, and a direct delivery is taken only after its client's end, with
    /// every byte acknowledged, and no reset or failed write.
    #[test]
    fn random_event_sequences_keep_the_rule() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        let t0 = Instant::now();
        let mut direct_deliveries_taken = 0;
        for _ in 0..20_000 {
            let kind = [Kind::FromWorker, Kind::FromRegistry, Kind::Delivery][next(3) as usize];
            let via_proxy = next(2) == 0;
            let mut writer = writer(kind, via_proxy, t0);
            let (mut end_seen, mut acknowledged, mut broken) = (false, false, false);
            let mut ended: Option<Step> = None;
            for _ in 0..10 + next(50) {
                // Mostly what the step asks for, sometimes anything at all.
                let reply = match (next(4), writer.step()) {
                    (0, _) => next(10),
                    (_, Step::Write) => [1, 1, 1, 2][next(4) as usize],
                    (_, Step::ShutDown) => 3,
                    (_, Step::Drain | Step::Probe) => [4, 4, 5, 6][next(4) as usize],
                    (_, Step::AskUnacknowledged) => 7,
                    _ => 0,
                };
                let event = match reply {
                    0 => Resume(next(2) == 0),
                    1 => Wrote(next(LEN as u64 + 2) as usize),
                    2 => WriteFailed,
                    3 => Shut(next(100)),
                    4 => Read(next(3) as usize * next(DRAIN_TURN as u64) as usize),
                    5 => Eof,
                    6 => Reset,
                    7 => Unacked([None, Some(0), Some(1)][next(3) as usize]),
                    8 => Unwatchable,
                    _ => Resume(true),
                };
                let before = writer.step();
                let step = apply(&mut writer, event, t0);
                if let Some(done) = ended {
                    assert_eq!(step, done, "{event:?} after the end");
                    continue;
                }
                // What is recorded is what the machine acted on.
                match (event, before) {
                    (Eof, Step::Drain | Step::Probe) => end_seen = true,
                    (Unacked(Some(0)), Step::AskUnacknowledged) => acknowledged = true,
                    (Reset | WriteFailed, _) if step != before => broken = true,
                    _ => {}
                }
                if let Step::Done(outcome) = step {
                    ended = Some(step);
                    if kind == Kind::Delivery && !via_proxy && outcome == Outcome::Taken {
                        assert!(end_seen && acknowledged && !broken, "taken too early");
                        direct_deliveries_taken += 1;
                    }
                }
            }
            assert!(matches!(writer.deadline_passed(), Step::Done(_)));
        }
        println!("{direct_deliveries_taken} direct deliveries taken");
        assert!(
            direct_deliveries_taken >= 100,
            "{direct_deliveries_taken}: the rule was barely reached"
        );
    }
}
