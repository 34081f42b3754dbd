//! The only `unsafe` code: Linux system calls that std has no safe API for (SPEC §8).
//!
//! - `epoll`, so one thread learns which of thousands of sockets have bytes to read: std can
//!   only block on one socket at a time, or spin.
//! - `listen`, to size the accept backlog: std always asks for 128, which a burst of clients
//!   overflows (the kernel then drops SYNs, and each dropped client waits a second to retry).
//!
//! Each call is a thin wrapper that checks the return value and turns `-1` into `io::Error`.
//! The declarations match the Linux ABI for glibc and musl alike.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `struct epoll_event`: packed on x86_64 only, as the kernel's `EPOLL_PACKED` says.
#[repr(C)]
#[cfg_attr(target_arch = "x86_64", repr(packed))]
#[derive(Clone, Copy)]
struct EpollEvent {
    events: u32,
    data: u64,
}

extern "C" {
    fn epoll_create1(flags: i32) -> i32;
    fn epoll_ctl(epfd: i32, op: i32, fd: i32, event: *mut EpollEvent) -> i32;
    fn epoll_wait(epfd: i32, events: *mut EpollEvent, maxevents: i32, timeout: i32) -> i32;
    fn listen(fd: i32, backlog: i32) -> i32;
}

/// Resizes the accept backlog of a listening socket (the kernel caps it at `somaxconn`).
pub fn set_backlog(listener: &impl AsRawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes no pointers; calling it again on a listening socket only updates
    // its backlog.
    check(unsafe { listen(listener.as_raw_fd(), backlog) }).map(drop)
}

const EPOLL_CLOEXEC: i32 = 0o2_000_000;
const EPOLL_CTL_ADD: i32 = 1;
const EPOLL_CTL_DEL: i32 = 2;
const EPOLL_CTL_MOD: i32 = 3;
const EPOLLIN: u32 = 0x001;
const EPOLLRDHUP: u32 = 0x2000;
const EPOLLONESHOT: u32 = 1 << 30;

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
    /// Every time it is readable (level-triggered): listeners and wake-up sockets.
    Always,
    /// Once, then disabled until re-armed with [`Poller::rearm`]: client connections, which
    /// one worker at a time reads.
    Once,
}

impl Interest {
    fn events(self) -> u32 {
        match self {
            Interest::Always => EPOLLIN,
            Interest::Once => EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
        }
    }
}

/// An epoll instance: readiness of many descriptors, each named by a `u64` token.
pub struct Poller {
    epoll: OwnedFd,
    events: Vec<EpollEvent>,
}

impl Poller {
    /// A new epoll instance that reports up to `batch` descriptors per [`wait`](Self::wait).
    pub fn new(batch: usize) -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new descriptor
        // that nothing else owns, so OwnedFd may take it.
        let fd = check(unsafe { epoll_create1(EPOLL_CLOEXEC) })?;
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { epoll, events: vec![EpollEvent { events: 0, data: 0 }; batch.max(1)] })
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
        self.control(EPOLL_CTL_MOD, fd.as_raw_fd(), Interest::Once, token)
    }

    /// Stops watching `fd`. (Closing a descriptor also stops it being watched.)
    pub fn remove(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.control(EPOLL_CTL_DEL, fd.as_raw_fd(), Interest::Always, 0)
    }

    /// Waits until a descriptor is ready or `timeout` passes (`None`: no limit), then appends
    /// the tokens of the ready ones to `ready`.
    pub fn wait(&mut self, ready: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<()> {
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
        let count = match check(result) {
            Ok(n) => n as usize,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        ready.extend(self.events[..count].iter().map(|event| event.data));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_readable_descriptors_once_until_rearmed() {
        let mut poller = Poller::new(8).unwrap();
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
    fn level_triggered_reports_until_drained() {
        let mut poller = Poller::new(8).unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        poller.add(&b, Interest::Always, 1).unwrap();
        a.write_all(b"x").unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        poller.wait(&mut ready, Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready, [1, 1]);
    }
}
