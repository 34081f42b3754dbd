//! How the relay's threads are started and woken: every long-lived thread is named and gets a
//! small stack ([`spawn`]), and a thread that waits in epoll is woken through a socket pair it
//! watches ([`Waker`]) when another thread queues work for it. The poller, the outbox threads
//! and the registry thread share both; none of them is anyone's to own.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// Stack size of the relay's threads: they keep their buffers on the heap.
pub const THREAD_STACK: usize = 128 * 1024;

/// Spawns a named thread with the relay's stack size.
pub fn spawn(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).stack_size(THREAD_STACK).spawn(body)
}

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
