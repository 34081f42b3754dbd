//! How the relay's threads are started, fed and woken: every long-lived thread is named and gets
//! a small stack ([`spawn`]), work for a thread that waits in epoll is posted to its [`Mailbox`],
//! and the thread is woken through an `eventfd` it watches ([`Waker`]). The workers, the outbox
//! threads and the registry thread share them; none of them is anyone's to own.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use crate::sys::EventFd;

/// Stack size of the relay's threads: they keep their buffers on the heap.
pub const THREAD_STACK: usize = 128 * 1024;

/// Spawns a named thread with the relay's stack size.
pub fn spawn(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).stack_size(THREAD_STACK).spawn(body)
}

/// Wakes a thread that waits in epoll: the thread watches the waker (level-triggered) in its
/// epoll set and [`clear`](Waker::clear)s it when woken; other threads [`wake`](Waker::wake) it.
pub struct Waker {
    event: EventFd,
    /// Set while the thread is about to wait or waiting: only then does a wake-up cost a write.
    asleep: AtomicBool,
}

impl Waker {
    /// A waker for one thread, shared with those that wake it.
    pub fn new() -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker { event: EventFd::new()?, asleep: AtomicBool::new(true) }))
    }

    /// Wakes the thread if it waits (or is about to). Call it after queueing the work.
    pub fn wake(&self) {
        // Orders the queueing before the look at `asleep`, pairing with the fence in
        // `sleeping`: either this sees the thread asleep, or the thread sees the work.
        fence(Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::SeqCst) {
            self.event.signal();
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

    /// Takes back the wake-ups, once the thread woke for them: the waker stops being readable.
    pub fn clear(&self) {
        self.event.clear();
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }
}

/// The sending end of a [`Mailbox`]: any number of threads post to one that waits in epoll.
/// Cheap to clone; the mailbox sees when every sender is gone.
pub struct Post<T> {
    shared: Arc<Shared<T>>,
}

/// A queue from other threads to one thread. The owner takes everything posted at once by
/// swapping two buffers, so once they have grown to the usual burst, posting and taking allocate
/// nothing (a linked queue allocates a block every few dozen items, which with musl's allocator
/// is a global lock and often an `mmap`). The owner is woken by its [`Waker`], not by the
/// mailbox.
pub struct Mailbox<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the senders, newest first: handed out from the end.
    taken: Vec<T>,
}

/// Why [`Mailbox::try_take`] has nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum TakeError {
    /// Nothing is posted now.
    Empty,
    /// Nothing is posted and every sender is gone: nothing will ever come.
    Closed,
}

/// What the two ends share: the posted items, and whether the owner still takes them.
struct Shared<T> {
    posted: Mutex<Vec<T>>,
    open: AtomicBool,
}

/// Room for this many items is what the mailbox's two buffers keep after a burst: a busy relay's
/// usual batch (a request to the registry is 336 bytes: 21 KiB a buffer).
const MAILBOX_KEEP: usize = 64;

/// A mailbox and its first sender.
pub fn mailbox<T>() -> (Post<T>, Mailbox<T>) {
    let shared = Arc::new(Shared { posted: Mutex::new(Vec::new()), open: AtomicBool::new(true) });
    let mailbox = Mailbox { shared: Arc::clone(&shared), taken: Vec::new() };
    (Post { shared }, mailbox)
}

impl<T> Shared<T> {
    /// The posted items. A thread that panicked while holding the lock left them whole (a
    /// push or a swap), so they are used as they are.
    fn posted(&self) -> MutexGuard<'_, Vec<T>> {
        self.posted.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Clone for Post<T> {
    fn clone(&self) -> Post<T> {
        Post { shared: Arc::clone(&self.shared) }
    }
}

impl<T> Post<T> {
    /// Posts `item`; false (and `item` dropped) once the mailbox's owner is gone.
    pub fn post(&self, item: T) -> bool {
        if !self.shared.open.load(Ordering::Acquire) {
            return false;
        }
        self.shared.posted().push(item);
        true
    }
}

impl<T> Mailbox<T> {
    /// Whether nothing is waiting to be taken.
    pub fn is_empty(&self) -> bool {
        self.taken.is_empty() && self.shared.posted().is_empty()
    }

    /// The oldest item not taken yet.
    pub fn try_take(&mut self) -> Result<T, TakeError> {
        if let Some(item) = self.taken.pop() {
            return Ok(item);
        }
        // The emptied buffer goes to the senders, no larger than it keeps; theirs comes here.
        self.taken.shrink_to(MAILBOX_KEEP);
        std::mem::swap(&mut *self.shared.posted(), &mut self.taken);
        if self.taken.is_empty() {
            let senders = Arc::strong_count(&self.shared) - 1;
            return Err(if senders == 0 { TakeError::Closed } else { TakeError::Empty });
        }
        self.taken.reverse();
        self.taken.pop().ok_or(TakeError::Empty)
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        self.shared.open.store(false, Ordering::Release);
        // What was posted and never taken goes now, not with the last sender.
        drop(std::mem::take(&mut *self.shared.posted()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_all<T>(mailbox: &mut Mailbox<T>) -> (Vec<T>, TakeError) {
        let mut taken = Vec::new();
        loop {
            match mailbox.try_take() {
                Ok(item) => taken.push(item),
                Err(end) => return (taken, end),
            }
        }
    }

    #[test]
    fn a_mailbox_hands_over_everything_posted_in_order_from_many_threads() {
        let (post, mut mailbox) = mailbox();
        let senders: Vec<_> = (0..4u32)
            .map(|t| {
                let post = post.clone();
                thread::spawn(move || (0..1000u32).all(|n| post.post((t, n))))
            })
            .collect();
        drop(post);
        assert!(senders.into_iter().all(|s| s.join().unwrap()));
        let (taken, end) = take_all(&mut mailbox);
        assert_eq!(end, TakeError::Closed, "every sender is gone and nothing is left");
        assert_eq!(taken.len(), 4000);
        for t in 0..4 {
            let from_t: Vec<u32> = taken.iter().filter(|(s, _)| *s == t).map(|&(_, n)| n).collect();
            assert_eq!(from_t, (0..1000).collect::<Vec<_>>(), "sender {t}'s items in order");
        }
    }

    #[test]
    fn a_mailbox_is_open_while_a_sender_lives_and_closed_to_senders_once_dropped() {
        let (post, mut mailbox) = mailbox::<u8>();
        assert!(mailbox.is_empty());
        assert_eq!(mailbox.try_take(), Err(TakeError::Empty), "a sender may still post");
        assert!(post.post(1) && post.post(2));
        assert!(!mailbox.is_empty());
        assert_eq!(mailbox.try_take(), Ok(1));
        assert!(!mailbox.is_empty(), "2 is taken from the senders, not handed out yet");
        drop(mailbox);
        assert!(!post.post(3), "nobody takes it");
    }

    #[test]
    fn a_mailbox_gives_back_a_burst_s_memory_and_reuses_its_buffers_after() {
        let (post, mut mailbox) = mailbox();
        (0..10_000u32).for_each(|n| assert!(post.post(n)));
        let (taken, end) = take_all(&mut mailbox);
        assert_eq!(taken, (0..10_000).collect::<Vec<_>>());
        assert_eq!(end, TakeError::Empty);
        // The burst's buffer went back to the senders shrunk; the one here is shrunk at the next
        // take that finds nothing.
        assert!(mailbox.shared.posted().capacity() <= MAILBOX_KEEP);
        assert_eq!(mailbox.try_take(), Err(TakeError::Empty));
        assert!(mailbox.taken.capacity() <= MAILBOX_KEEP);
        assert!(mailbox.shared.posted().capacity() <= MAILBOX_KEEP);
        // The usual load after: the two buffers keep their room from one take to the next.
        let rooms = |m: &Mailbox<u32>| (m.shared.posted().capacity(), m.taken.capacity());
        for _ in 0..3 {
            (0..MAILBOX_KEEP as u32).for_each(|n| assert!(post.post(n)));
            assert_eq!(take_all(&mut mailbox).0.len(), MAILBOX_KEEP);
        }
        let before = rooms(&mailbox);
        (0..MAILBOX_KEEP as u32).for_each(|n| assert!(post.post(n)));
        assert_eq!(take_all(&mut mailbox).0.len(), MAILBOX_KEEP);
        assert_eq!(rooms(&mailbox), before, "no regrowth");
    }
}
