//! The outbox: one thread writes every response, and never waits on any one client
//! (protocol §2, §4).
//!
//! Workers (their own answers and refusals) and the registry thread (relay answers) hand it a
//! connection and a [`Response`]; it renders the bytes and writes them without blocking, driven
//! by `EPOLLOUT`, so a client that reads slowly costs the bytes of its reply and a place in the
//! epoll set, never a thread, and never delays anyone else's reply. Each reply has one absolute
//! deadline, `--write-timeout`, for the whole of it; past it the connection is closed and counted
//! (`slow_reader`).
//!
//! Every reply ends gracefully: the write side is shut (the client sees the end of the response),
//! then what the client still sends is read and dropped until its end of stream, for at most
//! [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing with unread input would make the kernel reset the
//! connection and throw away reply bytes not yet sent.
//!
//! A `/link` delivery is reported to the registry as *taken* or not. Taken means: every byte of
//! the reply reached the receiver's TCP and acknowledged, and the receiver then closed its end
//! cleanly, with no reset (RFC 9112 §9.6: a client reads a `close` response to its end, then
//! closes). A write error, a reset, or the deadline first means not taken: the registry gives the
//! message to the next receiver. One exception: a trusted proxy (`--trust-proxy`) that resets
//! the connection after every byte was written has taken it. HAProxy closes each relay
//! connection that way once it has read the whole response; a proxy reads what it is sent at
//! once and passes it on, and from there the hand-off is the proxy's (protocol §2.1).

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, Sender};
use log::{debug, info};

use super::conn::{Connection, Exchange};
use super::parked::Inbound;
use crate::cors;
use crate::limits::Refused;
use crate::logging::refusal_log_allowed;
use crate::metrics::Gauges;
use crate::registry::ConnId;
use crate::response::Response;
use crate::sys::{self, Interest, Poller};
use crate::wheel::{TimerId, TimerWheel};

/// Longest time, after the last byte of a reply, that a client's input is drained before the
/// connection is closed anyway.
pub const LINGER_TIME: Duration = Duration::from_secs(1);
/// Most input drained after a reply before the connection is closed anyway.
pub const LINGER_BYTES: usize = 1 << 20;
/// Width of the outbox's deadline tick; also how often an unacknowledged delivery is asked again.
const TICK: Duration = Duration::from_millis(20);
/// The token of the wake-up socket in the outbox's epoll set (connection ids are above it).
const WAKER: u64 = 0;

/// Wakes a thread that waits in epoll, through a socket pair it watches.
pub struct Waker {
    socket: UnixStream,
    /// Set while the thread is about to wait or waiting: only then does a wake-up cost a write.
    asleep: AtomicBool,
}

impl Waker {
    /// A waker and the socket its thread watches (both non-blocking).
    pub fn pair() -> io::Result<(Arc<Waker>, UnixStream)> {
        let (watched, socket) = UnixStream::pair()?;
        watched.set_nonblocking(true)?;
        socket.set_nonblocking(true)?;
        Ok((Arc::new(Waker { socket, asleep: AtomicBool::new(true) }), watched))
    }

    /// Wakes the thread if it waits (or is about to). Call it after queueing the work.
    pub fn wake(&self) {
        // Orders the queueing before the look at `asleep`, pairing with the fence in
        // `sleeping`: either this sees the thread asleep, or the thread sees the work.
        fence(Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            // A full socket buffer means a wake-up is pending already.
            let _ = io::Write::write(&mut &self.socket, &[1]);
        }
    }

    /// Marks the thread as about to wait; it must then look at its queue once more before it
    /// waits, since a sender that came just before saw it awake and did not write.
    pub fn sleeping(&self) {
        self.asleep.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Marks the thread awake (it will look at its queue without being woken).
    pub fn awake(&self) {
        self.asleep.store(false, Ordering::SeqCst);
    }
}

/// Empties the wake-up socket after a wake-up.
pub fn drain_wakeups(watched: &UnixStream) {
    let mut drain = [0u8; 64];
    while matches!((&*watched).read(&mut drain), Ok(n) if n > 0) {}
}

/// One reply for the outbox.
struct Outgoing {
    connection: Connection,
    exchange: Exchange,
    response: Response,
    delivery: bool,
}

/// Where replies go: cheap to clone, one per thread that answers.
#[derive(Clone)]
pub struct Outbox {
    queue: Sender<Outgoing>,
    waker: Arc<Waker>,
    gauges: Arc<Gauges>,
}

impl Outbox {
    /// Starts the outbox thread. Deliveries are reported to `registry`.
    pub fn start(
        write_timeout: Duration,
        registry: Sender<Inbound>,
        gauges: Arc<Gauges>,
    ) -> io::Result<Outbox> {
        let (queue, incoming) = unbounded();
        let (waker, watched) = Waker::pair()?;
        let mut poller = Poller::new(256)?;
        poller.add(&watched, Interest::Always, WAKER)?;
        let (thread_waker, thread_gauges) = (Arc::clone(&waker), Arc::clone(&gauges));
        super::server::spawn("outbox".into(), move || {
            let mut writer = Writer {
                sending: HashMap::new(),
                acknowledging: Vec::new(),
                deadlines: TimerWheel::new(Instant::now(), TICK, 1024),
                write_timeout,
                registry,
                gauges: thread_gauges,
                scratch: vec![0u8; 16 * 1024],
            };
            writer.run(&mut poller, &incoming, &watched, &thread_waker);
        })?;
        Ok(Outbox { queue, waker, gauges })
    }

    /// Writes `response` on `connection` and closes it; `delivery`: report to the registry
    /// whether the client took it (a `/link` hand-off). Counted as a request at once, so a
    /// client that has its answer sees it counted.
    pub fn send(
        &self,
        connection: Connection,
        exchange: Exchange,
        response: Response,
        delivery: bool,
    ) {
        self.gauges.count_request(exchange.route, response.status);
        let outgoing = Outgoing { connection, exchange, response, delivery };
        if self.queue.send(outgoing).is_ok() {
            self.waker.wake();
        }
    }
}

/// Where a reply is in its life.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// Bytes left to write.
    Writing,
    /// All written and the write side shut: reading to the client's end of stream.
    Draining,
    /// The client closed; waiting for its acknowledgement of the last bytes (deliveries only).
    Acknowledging,
}

/// A reply being written.
struct Sending {
    connection: Connection,
    exchange: Exchange,
    status: u16,
    bytes: Vec<u8>,
    written: usize,
    drained: usize,
    stage: Stage,
    delivery: bool,
    /// What the epoll set watches the connection for, if it is in it.
    watched: Option<Interest>,
    timer: TimerId,
}

/// How a reply ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Written whole and closed gracefully (for a delivery: taken).
    Done,
    /// The client reset, failed or left before taking the whole reply.
    Failed,
    /// `--write-timeout` passed first.
    TimedOut,
}

/// The outbox thread's state.
struct Writer {
    sending: HashMap<ConnId, Sending>,
    /// Deliveries in [`Stage::Acknowledging`], asked again every tick.
    acknowledging: Vec<ConnId>,
    deadlines: TimerWheel<ConnId>,
    write_timeout: Duration,
    registry: Sender<Inbound>,
    gauges: Arc<Gauges>,
    scratch: Vec<u8>,
}

impl Writer {
    fn run(
        &mut self,
        poller: &mut Poller,
        incoming: &Receiver<Outgoing>,
        watched: &UnixStream,
        waker: &Waker,
    ) {
        let mut ready = Vec::new();
        loop {
            waker.sleeping();
            if incoming.is_empty() {
                let timeout = (!self.sending.is_empty()).then_some(TICK);
                if poller.wait(&mut ready, timeout).is_err() {
                    // EINTR is handled by wait; anything else leaves nothing to wait on.
                    std::thread::sleep(TICK);
                }
            }
            waker.awake();
            let now = Instant::now();
            for token in ready.drain(..) {
                match token {
                    WAKER => drain_wakeups(watched),
                    conn => self.progress(poller, conn, now),
                }
            }
            loop {
                match incoming.try_recv() {
                    Ok(outgoing) => self.start(poller, outgoing, now),
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => {
                        if self.sending.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.tick(poller, now);
            self.gauges.set_writing(self.sending.len());
        }
    }

    /// Renders a reply and writes what the socket takes now.
    fn start(&mut self, poller: &Poller, outgoing: Outgoing, now: Instant) {
        let Outgoing { connection, exchange, response, delivery } = outgoing;
        let response = self.gauges.with_instance_header(response);
        let status = response.status;
        let mut bytes = Vec::with_capacity(512 + response.body.len());
        let head_only = exchange.method == "HEAD";
        match &exchange.cors_origin {
            Some(origin) => cors::add_headers(response, origin).write_to(head_only, &mut bytes),
            None => response.write_to(head_only, &mut bytes),
        }
        let conn = connection.id();
        let timer = self.deadlines.insert(now + self.write_timeout, conn);
        let sending = Sending {
            connection,
            exchange,
            status,
            bytes,
            written: 0,
            drained: 0,
            stage: Stage::Writing,
            delivery,
            watched: None,
            timer,
        };
        self.sending.insert(conn, sending);
        self.progress(poller, conn, now);
    }

    /// Moves a reply on as far as its socket allows now.
    fn progress(&mut self, poller: &Poller, conn: ConnId, now: Instant) {
        let Some(sending) = self.sending.get_mut(&conn) else { return };
        let end = loop {
            match sending.stage {
                Stage::Writing => {
                    match sending.connection.write_now(&sending.bytes[sending.written..]) {
                        Ok(0) => break watch(poller, sending, Interest::Writable, conn),
                        Ok(n) => {
                            sending.written += n;
                            if sending.written == sending.bytes.len() {
                                sending.connection.shutdown_write();
                                sending.bytes = Vec::new();
                                sending.stage = Stage::Draining;
                                if !sending.delivery {
                                    // The client has its answer; its end of stream is waited for
                                    // only briefly.
                                    self.deadlines.cancel(sending.timer);
                                    sending.timer = self.deadlines.insert(now + LINGER_TIME, conn);
                                }
                                // The client can hardly have read the answer and closed yet:
                                // wait for that instead of asking the socket at once.
                                break watch(poller, sending, Interest::Always, conn);
                            }
                        }
                        Err(_) => break Some(End::Failed),
                    }
                }
                Stage::Draining => match sending.connection.read_now(&mut self.scratch) {
                    Ok(0) => break watch(poller, sending, Interest::Always, conn),
                    Ok(n) => {
                        sending.drained += n;
                        if sending.drained > LINGER_BYTES {
                            break Some(if sending.delivery { End::Failed } else { End::Done });
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        if !sending.delivery {
                            break Some(End::Done);
                        }
                        // Usually every byte is acknowledged by now, and closing the connection
                        // takes it out of the epoll set; else it is asked again every tick.
                        if let Ok(0) = sys::unacknowledged(&sending.connection) {
                            break Some(End::Done);
                        }
                        sending.stage = Stage::Acknowledging;
                        if sending.watched.take().is_some() {
                            let _ = poller.remove(&sending.connection);
                        }
                        self.acknowledging.push(conn);
                        break acknowledged(sending);
                    }
                    Err(_) => break Some(reset_after_the_reply(sending)),
                },
                Stage::Acknowledging => break acknowledged(sending),
            }
        };
        if let Some(end) = end {
            self.finish(conn, end);
        }
    }

    /// Fires deadlines, and asks the deliveries waiting for their last acknowledgement again.
    fn tick(&mut self, poller: &Poller, now: Instant) {
        if self.sending.is_empty() {
            return;
        }
        let mut expired = Vec::new();
        self.deadlines.advance(now, &mut expired);
        for conn in expired {
            let Some(sending) = self.sending.get_mut(&conn) else { continue };
            let end = match (&sending.stage, sending.delivery) {
                (Stage::Draining, false) => End::Done,
                _ => End::TimedOut,
            };
            self.finish(conn, end);
        }
        let mut waiting = std::mem::take(&mut self.acknowledging);
        waiting.retain(|conn| self.sending.contains_key(conn));
        for conn in waiting.clone() {
            self.progress(poller, conn, now);
        }
        waiting.retain(|conn| self.sending.contains_key(conn));
        self.acknowledging.append(&mut waiting);
        crate::registry::shrink(&mut self.sending);
    }

    /// Ends a reply: reports a delivery, logs, closes.
    fn finish(&mut self, conn: ConnId, end: End) {
        let Some(mut sending) = self.sending.remove(&conn) else { return };
        self.deadlines.cancel(sending.timer);
        if end == End::TimedOut {
            self.gauges.refused(Refused::SlowReader);
            debug!("closed a connection: its reply was not taken within --write-timeout");
        }
        if sending.delivery {
            let taken = end == End::Done;
            let _ = self.registry.send(Inbound::DeliveryEnded { conn, taken });
        }
        // Whatever happens to the connection now, the per-peer slot is free: a client that
        // reconnects as soon as it has its answer is not refused for a slot still held.
        sending.connection.peer_slot = None;
        log_request(&sending.exchange, sending.status, end);
    }
}

/// Puts a connection in the epoll set with `interest` (or changes it); `None` (keep going)
/// when watched, else the reply fails: a connection that cannot be watched cannot finish.
fn watch(poller: &Poller, sending: &mut Sending, interest: Interest, conn: ConnId) -> Option<End> {
    let watched = match sending.watched {
        // Level-triggered: watched so already, nothing to change.
        Some(current) if current == interest => Ok(()),
        Some(_) => poller.modify(&sending.connection, interest, conn),
        None => poller.add(&sending.connection, interest, conn),
    };
    match watched {
        Ok(()) => {
            sending.watched = Some(interest);
            None
        }
        Err(_) => Some(End::Failed),
    }
}

/// For a delivery whose client closed: done once the client acknowledged every byte; failed on
/// a reset; `None` while bytes are still on their way.
fn acknowledged(sending: &mut Sending) -> Option<End> {
    // A reset after the client's end of stream (bytes arrived after it closed) shows here.
    let mut probe = [0u8; 1];
    match sending.connection.read_now(&mut probe) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(_) => return Some(reset_after_the_reply(sending)),
    }
    match sys::unacknowledged(&sending.connection) {
        Ok(0) => Some(End::Done),
        Ok(_) => None,
        Err(_) => Some(End::Failed),
    }
}

/// How a reply ends when its connection is reset after every byte was written: taken when the
/// peer is a trusted proxy (see the module docs), else failed.
fn reset_after_the_reply(sending: &Sending) -> End {
    if sending.exchange.via_proxy {
        End::Done
    } else {
        End::Failed
    }
}

/// One line per request at `info`; error answers at most once per client and status a minute
/// (protocol §4), saying how many were held back.
fn log_request(exchange: &Exchange, status: u16, end: End) {
    let held_back = if status >= 400 {
        match refusal_log_allowed(exchange.client, status) {
            Some(held_back) => held_back,
            None => return,
        }
    } else {
        0
    };
    let tag = exchange.tag();
    let took = exchange.started.elapsed().as_secs_f64() * 1000.0;
    let failed = match end {
        End::Done => "",
        End::Failed => " (not taken: the client failed or left)",
        End::TimedOut => " (not taken within --write-timeout)",
    };
    let (method, route) = (&exchange.method, exchange.route);
    if held_back > 0 {
        let client = exchange.client;
        info!("{method} {route} {tag} {status} {took:.1}ms{failed} ({held_back} more {status}s to {client} in the last minute)");
    } else {
        info!("{method} {route} {tag} {status} {took:.1}ms{failed}");
    }
}
