//! The message bodies the registry holds for delivery, counted by their own lives.
//!
//! A body is held only as a [`HeldBody`], made by [`HeldBody::new`] against the registry's
//! [`Held`] tally, which counts it while it lives and uncounts it when it is dropped: no path
//! adds or subtracts by hand, so the counts in `/health` cannot drift from what is held. Its
//! memory is charged separately, by the value that owns it (`limits::Charged`).

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::limits::Footprint;
use crate::payload::Payload;

/// How many message bodies are held, and their bytes, shared by every [`HeldBody`].
#[derive(Clone, Debug, Default)]
pub(super) struct Held(Arc<Tally>);

#[derive(Debug, Default)]
struct Tally {
    messages: AtomicUsize,
    bytes: AtomicUsize,
}

/// A message body with its content type, counted in its [`Held`] while it lives (its body's
/// bytes). Not `Clone`: one body, one count.
#[derive(Debug)]
pub(super) struct HeldBody {
    body: Payload,
    held: Held,
}

impl HeldBody {
    /// Holds `body`, counted in `held` until it is dropped.
    pub(super) fn new(held: &Held, body: Payload) -> HeldBody {
        held.0.messages.fetch_add(1, Relaxed);
        held.0.bytes.fetch_add(body.len(), Relaxed);
        HeldBody { body, held: held.clone() }
    }

    /// The body and its content type, shared with the answer that delivers them.
    pub(super) fn bytes(&self) -> &Payload {
        &self.body
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        self.held.0.messages.fetch_sub(1, Relaxed);
        self.held.0.bytes.fetch_sub(self.body.len(), Relaxed);
    }
}

impl Footprint for HeldBody {
    /// The body and its content type, which it holds.
    fn footprint(&self) -> usize {
        self.body.footprint()
    }
}

impl Held {
    /// Messages held.
    pub(super) fn messages(&self) -> usize {
        self.0.messages.load(Relaxed)
    }

    /// Bytes of the bodies held.
    pub(super) fn bytes(&self) -> usize {
        self.0.bytes.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_counted_while_it_lives() {
        let held = Held::default();
        let a = HeldBody::new(&held, Payload::new(Some("text/plain"), b"abc"));
        let b = HeldBody::new(&held, Payload::from(&b"de"[..]));
        assert_eq!((a.footprint(), b.footprint()), (13, 2));
        assert_eq!((held.messages(), held.bytes()), (2, 5));
        drop(a);
        assert_eq!((held.messages(), held.bytes()), (1, 2));
        drop(b);
        assert_eq!((held.messages(), held.bytes()), (0, 0));
    }
}
