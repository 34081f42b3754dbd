//! The only `unsafe` code: Linux system calls that std has no safe API for (README "Design").
//!
//! - `epoll`, so one thread learns which of thousands of sockets have bytes to read: std can
//!   only block on one socket at a time, or spin.
//! - `listen`, to size the accept backlog: std always asks for 128, which a burst of clients
//!   overflows (the kernel then drops SYNs, and each dropped client waits a second to retry).
//! - `signal`, so `SIGHUP` reloads and `SIGTERM`/`SIGINT` drain instead of killing the process:
//!   std has no signal API. The
//!   handler only writes the signal's number to a pipe (the self-pipe trick); a thread reads the
//!   pipe and hands each signal to the rest of the program on a channel ([`watch_signals`]).
//!
//! - `accept4`, so an accepted connection is non-blocking from the start ([`accept`]): std's
//!   `accept` would need a second system call (`ioctl(FIONBIO)`) per connection; and
//!   `getsockopt(TCP_INFO)` on the listener, how many connections wait to be accepted
//!   ([`waiting_connections`]), so a worker does not end each turn with an `accept` that fails.
//! - `send` with `MSG_MORE`, so a reply's end of stream leaves on the segment of its last bytes
//!   ([`send`]): std's `write` takes no flags.
//! - `eventfd`, to wake a thread that waits in epoll ([`EventFd`]): a socket pair does the same
//!   through a socket's buffers, which cost about 5 % more relay CPU per hand-off of a quiet
//!   relay (BENCHMARKS.md, "What changed the numbers").
//! - `ioctl(SIOCOUTQ)`, how many bytes of a reply the peer has not acknowledged yet
//!   ([`unacknowledged`]): a `/link` delivery counts as taken only once every byte reached the
//!   receiver; std has no such query.
//! - socket activation: a listening socket systemd passes as descriptor 3 (`LISTEN_FDS`) becomes
//!   the relay's listener ([`activated_listener`]); std cannot adopt a descriptor safely.
//!
//! Each call is a thin wrapper that checks the return value and turns `-1` into `io::Error`.
//! The declarations match the Linux ABI for glibc and musl alike.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};

/// `struct epoll_event`: packed on x86_64 only, as the kernel's `EPOLL_PACKED` says.
#[repr(C)]
#[cfg_attr(target_arch = "x86_64", repr(packed))]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

extern "C" {
    fn accept4(fd: i32, addr: *mut SockaddrStorage, len: *mut u32, flags: i32) -> i32;
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
    fn listen(fd: i32, backlog: i32) -> i32;
    fn eventfd(initval: u32, flags: i32) -> i32;
    fn signal(signum: i32, handler: usize) -> usize;
    fn write(fd: i32, buf: *const u8, count: usize) -> isize;
    fn getsockopt(fd: i32, level: i32, name: i32, value: *mut i32, len: *mut u32) -> i32;
    fn ioctl(fd: i32, request: std::ffi::c_ulong, ...) -> i32;
    #[link_name = "send"]
    fn libc_send(fd: i32, buf: *const u8, len: usize, flags: i32) -> isize;
    fn __errno_location() -> *mut i32;
}

/// `struct sockaddr_storage`: room for any address the kernel returns, aligned as it requires.
#[repr(C, align(8))]
struct SockaddrStorage([u8; 128]);

const SOCK_NONBLOCK: i32 = 0o4000;
const SOCK_CLOEXEC: i32 = 0o2_000_000;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Accepts a connection that is non-blocking (and closed on exec) from the start, with its
/// peer's address. `WouldBlock` when none waits.
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let mut storage = SockaddrStorage([0; 128]);
    let mut len = std::mem::size_of::<SockaddrStorage>() as u32;
    let flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    // SAFETY: `storage` and `len` are live locals; the kernel writes at most `len` bytes of
    // address into `storage` and the address's length into `len`.
    let fd = check(unsafe { accept4(listener.as_raw_fd(), &mut storage, &mut len, flags) })?;
    // SAFETY: a non-negative result is a new descriptor that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let peer = peer_address(&storage.0, len as usize).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "accept returned an address that is not IP")
    })?;
    Ok((stream, peer))
}

/// How many connections wait in a TCP listener's accept queue: `TCP_INFO` reports it for a
/// listener in `tcpi_unacked`. Accepting just those spares the `accept()` that finds none, which
/// costs the kernel a socket's allocation and release all the same. `Unsupported` where the
/// answer is too short to hold it (qemu's user mode returns one word).
pub fn waiting_connections(listener: &TcpListener) -> io::Result<usize> {
    const IPPROTO_TCP: i32 = 6;
    const TCP_INFO: i32 = 11;
    // The head of `struct tcp_info`: 8 one-byte fields (two words), then `tcpi_rto`,
    // `tcpi_ato`, `tcpi_snd_mss`, `tcpi_rcv_mss` and `tcpi_unacked`: `info[6]`.
    let mut info = [0i32; 8];
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: both pointers are to live locals of the sizes given; the kernel writes at most
    // `len` bytes.
    check(unsafe {
        getsockopt(listener.as_raw_fd(), IPPROTO_TCP, TCP_INFO, info.as_mut_ptr(), &mut len)
    })?;
    if (len as usize) < 7 * std::mem::size_of::<i32>() {
        return Err(io::Error::new(io::ErrorKind::Unsupported, "TCP_INFO without tcpi_unacked"));
    }
    Ok(info[6] as u32 as usize)
}

/// Reads a `sockaddr_in` or `sockaddr_in6` (ports and IPv4 addresses in network order).
fn peer_address(bytes: &[u8], len: usize) -> Option<SocketAddr> {
    let bytes = bytes.get(..len)?;
    let family = u16::from_ne_bytes([*bytes.first()?, *bytes.get(1)?]);
    let port = u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]);
    match family {
        AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::new(Ipv4Addr::from(ip).into(), port))
        }
        AF_INET6 => {
            let flowinfo = u32::from_be_bytes(bytes.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
            Some(SocketAddrV6::new(Ipv6Addr::from(ip), port, flowinfo, scope).into())
        }
        _ => None,
    }
}

/// Resizes the accept backlog of a listening socket (the kernel caps it at `somaxconn`).
pub fn set_backlog(listener: &impl AsRawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes no pointers; calling it again on a listening socket only updates
    // its backlog.
    check(unsafe { listen(listener.as_raw_fd(), backlog) }).map(drop)
}

/// A Linux `eventfd`: a counter that other threads add to and its own thread reads back to
/// zero, readable (in epoll) while it is not zero; a wake-up is one 8-byte write, with no
/// socket buffer behind it.
pub struct EventFd(File);

impl EventFd {
    /// A counter at zero, non-blocking.
    pub fn new() -> io::Result<EventFd> {
        const EFD_NONBLOCK: i32 = 0o4000;
        const EFD_CLOEXEC: i32 = 0o2_000_000;
        // SAFETY: eventfd takes no pointers.
        let fd = check(unsafe { eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) })?;
        // SAFETY: a non-negative result is a new descriptor that nothing else owns.
        Ok(EventFd(unsafe { File::from_raw_fd(fd) }))
    }

    /// Adds one. It fails only with the counter at its maximum, a wake-up pending anyway.
    pub fn signal(&self) {
        let _ = (&self.0).write(&1u64.to_ne_bytes());
    }

    /// Resets the counter to zero (it fails only when it is zero already).
    pub fn clear(&self) {
        let _ = (&self.0).read(&mut [0; 8]);
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

const EPOLL_CLOEXEC: i32 = 0o2_000_000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLL_CTL_MOD: i32 = 3;
const EPOLLIN: u32 = 0x001;
const EPOLLOUT: u32 = 0x004;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLONESHOT: u32 = 1 << 30;
const EPOLLEXCLUSIVE: u32 = 1 << 28;
const EPOLLET: u32 = 1 << 31;

fn check(result: i32) -> io::Result<i32> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// How a registered descriptor reports readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interest {
    /// Every time it is readable (level-triggered): listeners and wakers.
    Always,
    /// Once, when bytes arrive, the peer closes or the connection fails, then disabled until
    /// re-armed with [`Epoll::rearm`]: connections whose request is being read (one worker at
    /// a time reads each), and parked connections (whose stray bytes are read and dropped so
    /// that a close behind them is seen).
    Once,
    /// A reply not yet written whole: when the send buffer gains room, and when the client
    /// sends, closes or fails. Edge-triggered: each change is reported once, so the outbox
    /// writes until the socket would block and notes any input for when the reply is written,
    /// and the registration never changes.
    Reply,
    /// A reply written whole, whose client's close is awaited: as [`Interest::Reply`] without
    /// the send buffer (which would report at once).
    Closing,
    /// A listener shared by several threads' epoll sets: one of them is woken per arrival
    /// (`EPOLLEXCLUSIVE`), not all.
    Shared,
}

impl Interest {
    fn events(self) -> u32 {
        match self {
            Interest::Always => EPOLLIN,
            // EPOLLHUP and EPOLLERR are always reported.
            Interest::Once => EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
            Interest::Reply => EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
            Interest::Closing => EPOLLIN | EPOLLRDHUP | EPOLLET,
            Interest::Shared => EPOLLIN | EPOLLEXCLUSIVE,
        }
    }
}

/// An epoll instance: readiness of many descriptors, each named by a `u64` token.
pub struct Epoll {
    epoll: Arc<OwnedFd>,
    events: Vec<EpollEvent>,
}

impl Epoll {
    /// A new epoll instance that reports up to `batch` descriptors per [`wait`](Self::wait).
    pub fn new(batch: usize) -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns, so OwnedFd may take it.
        let fd = check(unsafe { epoll_create1(EPOLL_CLOEXEC) })?;
        let epoll = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Epoll { epoll, events: vec![EpollEvent { events: 0, data: 0 }; batch.max(1)] })
    }

    /// Another handle on the same epoll set, for a thread that adds descriptors to the set
    /// another thread waits on (the kernel allows both at once).
    pub fn handle(&self) -> Epoll {
        Epoll { epoll: Arc::clone(&self.epoll), events: vec![EpollEvent { events: 0, data: 0 }] }
    }

    fn control(&self, op: i32, fd: RawFd, interest: Interest, token: u64) -> io::Result<()> {
        let mut event = EpollEvent { events: interest.events(), data: token };
        // SAFETY: `event` is a valid epoll_event for the duration of the call; the kernel only
        // reads it.
        check(unsafe { epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) }).map(drop)
    }

    /// Starts watching `fd` under `token`.
    pub fn add(&self, fd: &impl AsRawFd, interest: Interest, token: u64) -> io::Result<()> {
        self.control(EPOLL_CTL_ADD, fd.as_raw_fd(), interest, token)
    }

    /// Re-enables a descriptor added with [`Interest::Once`] after it reported.
    pub fn rearm(&self, fd: &impl AsRawFd, token: u64) -> io::Result<()> {
        self.modify(fd, Interest::Once, token)
    }

    /// Changes what a watched descriptor reports (or re-enables a one-shot one).
    pub fn modify(&self, fd: &impl AsRawFd, interest: Interest, token: u64) -> io::Result<()> {
        self.control(EPOLL_CTL_MOD, fd.as_raw_fd(), interest, token)
    }

    /// Stops watching `fd`. (Closing a descriptor also stops it being watched.)
    pub fn remove(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.control(EPOLL_CTL_DEL, fd.as_raw_fd(), Interest::Always, 0)
    }

    /// Waits until a descriptor is ready or `timeout` passes (`None`: no limit), then appends
    /// the tokens of the ready ones to `ready`.
    pub fn wait(&mut self, ready: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
        let count = self.wait_for(timeout)?;
        ready.extend(self.events[..count].iter().map(|event| event.data));
        Ok(())
    }

    /// Like [`wait`](Self::wait), with whether each descriptor reported input, an end of
    /// stream, a hang-up or an error (anything but room to write).
    pub fn wait_input(
        &mut self,
        ready: &mut Vec<(u64, bool)>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let count = self.wait_for(timeout)?;
        ready.extend(self.events[..count].iter().map(|event| {
            let events = event.events;
            (event.data, events & !EPOLLOUT != 0)
        }));
        Ok(())
    }

    /// `epoll_wait` into `events`: how many it filled.
    fn wait_for(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let timeout_ms = match timeout {
            // Round up, so a wait never ends before the deadline it serves.
            Some(t) => i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX),
            None => -1,
        };
        let capacity = i32::try_from(self.events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` has room for `capacity` entries, which the kernel fills; it writes
        // no more than it returns.
        let result = unsafe {
            epoll_wait(self.epoll.as_raw_fd(), self.events.as_mut_ptr(), capacity, timeout_ms)
        };
        match check(result) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// Writes what `socket` takes of `bytes` now (never raising `SIGPIPE`). With `end_follows`
/// (`MSG_MORE`), bytes short of a full segment wait in the socket for what comes next: when
/// that is the end of stream (`shutdown`), the `FIN` leaves on the same segment as the reply's
/// last bytes instead of one of its own, and the client acknowledges one segment, not two: a
/// connection costs 8 packets, not 10, each of them kernel work charged to the relay
/// (BENCHMARKS.md).
pub fn send(socket: &impl AsRawFd, bytes: &[u8], end_follows: bool) -> io::Result<usize> {
    let flags = if end_follows { MSG_NOSIGNAL | MSG_MORE } else { MSG_NOSIGNAL };
    // SAFETY: the kernel reads at most `bytes.len()` bytes from the slice, valid for the call.
    let sent = unsafe { libc_send(socket.as_raw_fd(), bytes.as_ptr(), bytes.len(), flags) };
    // A negative count is the one failure value; any other fits a usize.
    usize::try_from(sent).map_err(|_| io::Error::last_os_error())
}

/// `send` flags, the same numbers on every Linux architecture.
const MSG_NOSIGNAL: i32 = 0x4000;
const MSG_MORE: i32 = 0x8000;

/// `SIOCOUTQ` (= `TIOCOUTQ`), the same number on x86_64 and aarch64.
const SIOCOUTQ: std::ffi::c_ulong = 0x5411;

/// Bytes written to a TCP socket that its peer has not acknowledged yet (a `FIN` sent counts
/// as one): 0 once everything sent, the end of stream included, reached the peer's kernel.
pub fn unacknowledged(socket: &impl AsRawFd) -> io::Result<usize> {
    let mut queued: i32 = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which is valid for the call.
    check(unsafe { ioctl(socket.as_raw_fd(), SIOCOUTQ, &mut queued as *mut i32) })?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;
const SOL_SOCKET: i32 = 1;
const SO_ACCEPTCONN: i32 = 30;

/// How many descriptors systemd passed us: `LISTEN_FDS` when `LISTEN_PID` is `pid`, else 0.
fn passed_fds(pid: u32, var: impl Fn(&str) -> Option<String>) -> usize {
    let ours = var("LISTEN_PID").and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid);
    let count = var("LISTEN_FDS").and_then(|n| n.trim().parse::<usize>().ok());
    if ours {
        count.unwrap_or(0)
    } else {
        0
    }
}

/// How many descriptors systemd passed this process (`LISTEN_FDS`, when `LISTEN_PID` is this
/// process; else 0), and removes the `LISTEN_*` variables, so no child process would take them
/// for its own. Call it first in `main`, before any thread starts: changing the environment
/// while another thread may read it is undefined behaviour in C's `setenv`, which std wraps.
pub fn take_passed_fds() -> usize {
    let count = passed_fds(std::process::id(), |name| std::env::var(name).ok());
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    count
}

/// Socket activation: the listening TCP socket systemd passed as descriptor 3, when `count`
/// ([`take_passed_fds`]) is at least 1; `None` otherwise. Descriptors after the first are left
/// alone. Fails when descriptor 3 is not a listening TCP socket.
pub fn activated_listener(count: usize) -> io::Result<Option<TcpListener>> {
    if count == 0 {
        return Ok(None);
    }
    let mut accepting: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as u32;
    // SAFETY: both pointers are to live locals of the sizes given; getsockopt on a descriptor
    // that is not a socket (or not open) fails with ENOTSOCK or EBADF and touches nothing.
    check(unsafe {
        getsockopt(LISTEN_FDS_START, SOL_SOCKET, SO_ACCEPTCONN, &mut accepting, &mut len)
    })?;
    if accepting == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "descriptor 3 from systemd (LISTEN_FDS) is a socket that is not listening",
        ));
    }
    // SAFETY: systemd hands descriptor 3 to this process (LISTEN_PID is ours) and nothing else
    // in it owns the descriptor; it is a listening socket (checked above), so TcpListener may
    // own it and close it when dropped.
    let listener = unsafe { TcpListener::from_raw_fd(LISTEN_FDS_START) };
    // A Unix-domain socket has no IP address: refuse it rather than serve on it half-working.
    listener.local_addr()?;
    Ok(Some(listener))
}

/// A signal the relay acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGHUP`: reload what can be reloaded (the token file).
    Hangup,
    /// `SIGTERM`: drain and exit (systemd's stop).
    Terminate,
    /// `SIGINT`: drain and exit, as for `SIGTERM` (Ctrl-C).
    Interrupt,
}

impl Signal {
    fn number(self) -> i32 {
        match self {
            Signal::Hangup => 1,
            Signal::Terminate => 15,
            Signal::Interrupt => 2,
        }
    }

    fn from_number(number: u8) -> Option<Signal> {
        [Signal::Hangup, Signal::Terminate, Signal::Interrupt]
            .into_iter()
            .find(|s| s.number() == i32::from(number))
    }
}

/// `SIG_ERR`, `(sighandler_t) -1`.
const SIG_ERR: usize = usize::MAX;

/// The write end of the self-pipe, for the handler; -1 until [`watch_signals`] sets it.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

/// The signal handler: writes the signal's number to the self-pipe and nothing else. `write` is
/// async-signal-safe, the pipe is non-blocking (a full pipe drops the byte: a signal of that
/// kind is pending already), and `errno` is put back for the code the signal interrupted.
extern "C" fn on_signal(number: i32) {
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    if fd < 0 {
        return;
    }
    let byte = number as u8;
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's life; write
    // reads one byte from a live stack variable, and `fd` is the self-pipe's write end, which is
    // never closed once published.
    unsafe {
        let errno = __errno_location();
        let saved = *errno;
        write(fd, &byte, 1);
        *errno = saved;
    }
}

/// Installs handlers for `signals` and returns a channel that receives each one as it arrives,
/// fed by a thread named `signals`. Signals of one kind that arrive together may be reported
/// once. Call it once per process (a second call fails), before the signals can be sent.
pub fn watch_signals(signals: &[Signal]) -> io::Result<Receiver<Signal>> {
    let (mut read_end, write_end) = UnixStream::pair()?;
    write_end.set_nonblocking(true)?;
    let write_fd = write_end.into_raw_fd();
    if SIGNAL_PIPE.compare_exchange(-1, write_fd, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        // SAFETY: `write_fd` came from into_raw_fd just above and was published nowhere.
        drop(unsafe { OwnedFd::from_raw_fd(write_fd) });
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "signals are watched already"));
    }
    for &wanted in signals {
        // SAFETY: `on_signal` is an `extern "C" fn(i32)` that only does async-signal-safe work;
        // glibc's and musl's `signal` install it with SA_RESTART, and it stays installed.
        let previous = unsafe { signal(wanted.number(), on_signal as extern "C" fn(i32) as usize) };
        if previous == SIG_ERR {
            return Err(io::Error::last_os_error());
        }
    }
    let (tx, rx) = unbounded();
    thread::Builder::new().name("signals".into()).stack_size(64 * 1024).spawn(move || {
        let mut numbers = [0u8; 64];
        loop {
            let n = match read_end.read(&mut numbers) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            for signal in numbers[..n].iter().filter_map(|&number| Signal::from_number(number)) {
                if tx.send(signal).is_err() {
                    return;
                }
            }
        }
    })?;
    Ok(rx)
}

/// Counts allocations for the benchmarks (`--features count-allocs`; never in a default build):
/// the system allocator, plus relaxed counters the bench harnesses read: calls, bytes and live
/// bytes through [`allocations`], the largest single allocation through [`take_largest`]. Registered as the global allocator in `main.rs` only under that feature.
#[cfg(feature = "count-allocs")]
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static BYTES: AtomicUsize = AtomicUsize::new(0);
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static LARGEST: AtomicUsize = AtomicUsize::new(0);

    /// The system allocator, counting.
    pub struct CountingAlloc;

    /// Totals since the start: allocation calls (a `realloc` counts as one), bytes asked for,
    /// bytes live now.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Allocations {
        pub calls: usize,
        pub bytes: usize,
        pub live: usize,
    }

    /// The largest single allocation (or reallocation) since the last call: a step in RSS that
    /// the live heap does not show is often one big allocation that came and went.
    pub fn take_largest() -> usize {
        LARGEST.swap(0, Relaxed)
    }

    /// The counters now.
    pub fn allocations() -> Allocations {
        Allocations {
            calls: CALLS.load(Relaxed),
            bytes: BYTES.load(Relaxed),
            live: LIVE.load(Relaxed),
        }
    }

    // SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
    // GlobalAlloc contract; the counters are atomics and never affect what is returned.
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            CALLS.fetch_add(1, Relaxed);
            BYTES.fetch_add(layout.size(), Relaxed);
            LIVE.fetch_add(layout.size(), Relaxed);
            LARGEST.fetch_max(layout.size(), Relaxed);
            // SAFETY: the caller's guarantees on `layout` are passed on as they are.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            CALLS.fetch_add(1, Relaxed);
            BYTES.fetch_add(layout.size(), Relaxed);
            LIVE.fetch_add(layout.size(), Relaxed);
            LARGEST.fetch_max(layout.size(), Relaxed);
            // SAFETY: as in `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size(), Relaxed);
            // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            CALLS.fetch_add(1, Relaxed);
            BYTES.fetch_add(new_size, Relaxed);
            LARGEST.fetch_max(new_size, Relaxed);
            // SAFETY: `ptr` came from `System` with `layout`; `new_size` is the caller's.
            let moved = unsafe { System.realloc(ptr, layout, new_size) };
            if !moved.is_null() {
                LIVE.fetch_add(new_size, Relaxed);
                LIVE.fetch_sub(layout.size(), Relaxed);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn accept_gives_a_non_blocking_stream_and_the_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let err = accept(&listener).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "nobody connected yet");
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut stream, peer) = loop {
            match accept(&listener) {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(peer, client.local_addr().unwrap());
        let mut byte = [0u8];
        let read = stream.read(&mut byte).unwrap_err();
        assert_eq!(read.kind(), io::ErrorKind::WouldBlock, "accepted non-blocking");
    }

    #[test]
    fn a_listener_tells_how_many_connections_wait_to_be_accepted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        assert_eq!(waiting_connections(&listener).unwrap(), 0);
        let address = listener.local_addr().unwrap();
        let _clients = [TcpStream::connect(address).unwrap(), TcpStream::connect(address).unwrap()];
        // The handshakes end in the clients' `connect`; their last ACKs may still be on their way.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while waiting_connections(&listener).unwrap() < 2 && std::time::Instant::now() < deadline {
            thread::yield_now();
        }
        assert_eq!(waiting_connections(&listener).unwrap(), 2);
        accept(&listener).unwrap();
        assert_eq!(waiting_connections(&listener).unwrap(), 1, "one accepted");
        accept(&listener).unwrap();
        assert_eq!(waiting_connections(&listener).unwrap(), 0);
    }

    #[test]
    fn peer_addresses_of_both_families() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&AF_INET.to_ne_bytes());
        v4[2..4].copy_from_slice(&8080u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[192, 0, 2, 7]);
        assert_eq!(peer_address(&v4, 16), Some("192.0.2.7:8080".parse().unwrap()));
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&AF_INET6.to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[8..24].copy_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(peer_address(&v6, 28), Some("[2001:db8::1]:443".parse().unwrap()));
        assert_eq!(peer_address(&v6, 20), None, "cut short");
        assert_eq!(peer_address(&[1, 0, 0, 0], 4), None, "a Unix socket's family");
    }

    #[test]
    fn reports_readable_descriptors_once_until_rearmed() {
        let mut poller = Epoll::new(8).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        poller.add(&b, Interest::Once, 7).unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, Some(Duration::from_millis(10))).unwrap();
        assert!(ready.is_empty());
        a.write_all(b"x").unwrap();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, [7]);
        ready.clear();
        poller.wait(&mut ready, Some(Duration::from_millis(10))).unwrap();
        assert!(ready.is_empty(), "a one-shot descriptor reports once");
        poller.rearm(&b, 9).unwrap();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, [9]);
        poller.remove(&b).unwrap();
    }

    #[test]
    fn a_raised_signal_arrives_on_the_channel() {
        extern "C" {
            fn raise(signum: i32) -> i32;
        }
        let signals = watch_signals(&[Signal::Hangup]).unwrap();
        assert!(watch_signals(&[Signal::Hangup]).is_err(), "one watcher per process");
        for _ in 0..2 {
            // SAFETY: raise takes no pointers; SIGHUP now has the handler installed above.
            assert_eq!(unsafe { raise(Signal::Hangup.number()) }, 0);
            assert_eq!(signals.recv_timeout(Duration::from_secs(5)), Ok(Signal::Hangup));
        }
    }

    #[test]
    fn passed_fds_only_counts_descriptors_meant_for_this_process() {
        let env = |pid: &'static str, fds: &'static str| {
            move |name: &str| match name {
                "LISTEN_PID" => Some(pid.to_string()),
                "LISTEN_FDS" => Some(fds.to_string()),
                _ => None,
            }
        };
        assert_eq!(passed_fds(42, env("42", "1")), 1);
        assert_eq!(passed_fds(42, env("42", "2")), 2);
        assert_eq!(passed_fds(42, env("43", "1")), 0, "meant for another process");
        assert_eq!(passed_fds(42, env("42", "x")), 0);
        assert_eq!(passed_fds(42, |_: &str| None), 0);
    }

    /// Other tests allocate meanwhile, so the counts may grow more, never less.
    #[cfg(feature = "count-allocs")]
    #[test]
    fn counting_allocator_sees_an_allocation_and_its_release() {
        use super::counting::allocations;
        let before = allocations();
        let held = std::hint::black_box(vec![7u8; 1 << 20]);
        let during = allocations();
        assert!(during.calls > before.calls, "{before:?} {during:?}");
        assert!(during.bytes >= before.bytes + (1 << 20), "{before:?} {during:?}");
        drop(held);
        let after = allocations();
        assert!(after.bytes >= during.bytes && after.calls >= during.calls, "{after:?}");
        // Live bytes went up by the megabyte and back down; other tests move it by far less.
        assert!(during.live >= (1 << 20), "{during:?}");
    }

    #[test]
    fn level_triggered_reports_until_drained() {
        let mut poller = Epoll::new(8).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        poller.add(&b, Interest::Always, 1).unwrap();
        a.write_all(b"x").unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, [1, 1]);
    }

    #[test]
    fn an_event_counter_is_readable_from_its_first_signal_until_cleared() {
        let mut poller = Epoll::new(8).unwrap();
        let event = EventFd::new().unwrap();
        poller.add(&event, Interest::Always, 1).unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, Some(Duration::ZERO)).unwrap();
        assert!(ready.is_empty(), "readable before any signal");
        event.signal();
        event.signal();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        poller.wait(&mut ready, Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, [1, 1], "readable until cleared");
        ready.clear();
        event.clear();
        poller.wait(&mut ready, Some(Duration::ZERO)).unwrap();
        assert!(ready.is_empty(), "one clear takes every signal");
    }
}
