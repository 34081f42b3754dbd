//! The messages the registry holds for delivery and their bytes, counted in one place.
//!
//! A body enters the count only as a [`HeldBody`], which only [`Held::hold`] makes, and leaves it
//! only through [`Held::release`], which takes that `HeldBody` back: so each release subtracts
//! exactly what its hold added, and a body cannot be released twice. A held body that is dropped
//! without a release would still leave the count high; the scenario tests recount what the
//! registry holds after every event and compare (`Registry::check_counts`).

use std::sync::Arc;

/// A message body counted in [`Held`]. Not `Clone`: one count, one owner.
#[derive(Debug)]
pub(super) struct HeldBody(Arc<[u8]>);

impl HeldBody {
    /// The body, shared with the answer that delivers it.
    pub(super) fn bytes(&self) -> &Arc<[u8]> {
        &self.0
    }
}

/// How many message bodies the registry holds, and their bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Held {
    messages: usize,
    bytes: usize,
}

impl Held {
    /// Counts `body` as held.
    pub(super) fn hold(&mut self, body: Arc<[u8]>) -> HeldBody {
        self.messages += 1;
        self.bytes += body.len();
        HeldBody(body)
    }

    /// Counts `body` as no longer held and gives it back.
    pub(super) fn release(&mut self, body: HeldBody) -> Arc<[u8]> {
        let len = body.0.len();
        debug_assert!(self.messages >= 1 && self.bytes >= len, "released more than held");
        self.messages = self.messages.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(len);
        body.0
    }

    /// Messages held.
    pub(super) fn messages(&self) -> usize {
        self.messages
    }

    /// Bytes of the bodies held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The count of `bodies`, as a recount to compare with.
    #[cfg(test)]
    pub(super) fn of<'a>(bodies: impl Iterator<Item = &'a HeldBody>) -> Held {
        bodies.fold(Held::default(), |held, body| Held {
            messages: held.messages + 1,
            bytes: held.bytes + body.0.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_gives_back_what_hold_took() {
        let mut held = Held::default();
        let a = held.hold(Arc::from(&b"abc"[..]));
        let b = held.hold(Arc::from(&b"de"[..]));
        assert_eq!((held.messages(), held.bytes()), (2, 5));
        assert_eq!(&*held.release(a), b"abc");
        assert_eq!((held.messages(), held.bytes()), (1, 2));
        held.release(b);
        assert_eq!(held, Held::default());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "released more than held")]
    fn a_release_without_its_hold_is_caught_in_debug_builds() {
        let mut other = Held::default();
        let body = other.hold(Arc::from(&b"x"[..]));
        Held::default().release(body);
    }
}
