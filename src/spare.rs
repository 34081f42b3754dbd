//! Boxes kept for reuse, so that a hand-off does not allocate the boxes its parked entries live in.
//!
//! The maps of parked requests keep their values boxed, so that a map's spare slots cost a
//! pointer each, not a whole value (BENCHMARKS.md, "What one parked `/link` receiver holds").
//! Every request would then allocate a box and free it when it is answered; instead, a box that
//! leaves its map goes to a [`SpareBoxes`] list and the next entry reuses it. A list keeps at
//! most the number of boxes it was made for, so what it holds is bounded by construction, and it
//! never makes a box larger: memory per parked request is what it was. The boxes it keeps are
//! freed with it.

use std::ops::{Deref, DerefMut};

/// Spare boxes kept of a kind that a request frees as it is answered (a parked connection, its
/// registry entry, a `/link` senders' side): a turn of the registry thread's requests
/// (`INBOUND_BATCH`, 64); with 64 hand-offs at a time, about one box in 60 is still allocated.
/// At most 64 × 272 B = 17 KiB of the largest kind (a senders' side with its queue).
pub const SPARE_BOXES: usize = 64;

/// Spare boxes kept of stored `/inbox` messages, which end together, all those of a tick (100 ms)
/// at once at the end of their TTL: enough for 2,560 messages a second. At most 36 KiB.
pub const SPARE_STORED: usize = 256;

/// A boxed value that can be taken out of its box without freeing it ([`SpareBoxes::take`]).
///
/// The box holds an `Option` that is `Some` for the slot's whole life: a slot is only made full
/// ([`SpareBoxes::slot`]) and only emptied as it is consumed. The `Option` costs no byte (the
/// value's niche holds `None`; [`SpareBoxes::slot`] checks it when it is compiled).
#[derive(Debug)]
pub struct Slot<T>(Box<Option<T>>);

impl<T> Deref for Slot<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &*self.0 {
            Some(value) => value,
            None => unreachable!("a slot holds its value until it is taken, which consumes it"),
        }
    }
}

impl<T> DerefMut for Slot<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut *self.0 {
            Some(value) => value,
            None => unreachable!("a slot holds its value until it is taken, which consumes it"),
        }
    }
}

/// Boxes no longer in use, for the next value of their kind; at most `max` of them.
#[derive(Debug)]
pub struct SpareBoxes<T> {
    boxes: Vec<Box<T>>,
    max: usize,
}

impl<T> SpareBoxes<T> {
    /// An empty list that will keep at most `max` boxes.
    pub fn new(max: usize) -> SpareBoxes<T> {
        SpareBoxes { boxes: Vec::new(), max }
    }

    /// A spare box, holding whatever it was given back with; `None` when none is left.
    pub fn pop(&mut self) -> Option<Box<T>> {
        self.boxes.pop()
    }

    /// Keeps `spare` for reuse, or frees it when the list is full.
    pub fn keep(&mut self, spare: Box<T>) {
        if self.boxes.len() < self.max {
            if self.boxes.capacity() == 0 {
                // Room for all at once: the list itself never grows after its first box.
                self.boxes.reserve_exact(self.max);
            }
            self.boxes.push(spare);
        }
    }

    /// How many boxes are kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.boxes.len()
    }
}

impl<T> SpareBoxes<Option<T>> {
    /// `value` in a slot: a spare box if one is kept, else a new one.
    pub fn slot(&mut self, value: T) -> Slot<T> {
        const {
            assert!(
                std::mem::size_of::<Option<T>>() == std::mem::size_of::<T>(),
                "a slot's Option must fit the value's niche: its box would be larger"
            )
        };
        match self.boxes.pop() {
            Some(mut spare) => {
                *spare = Some(value);
                Slot(spare)
            }
            None => Slot(Box::new(Some(value))),
        }
    }

    /// The value of `slot`, whose box is kept for the next [`slot`](Self::slot).
    pub fn take(&mut self, slot: Slot<T>) -> T {
        let Slot(mut spare) = slot;
        let value = spare.take();
        self.keep(spare);
        match value {
            Some(value) => value,
            None => unreachable!("a slot holds its value until it is taken, which consumes it"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value with a niche, as the boxed entries have (a pointer, a descriptor).
    type Value = Box<u32>;

    #[test]
    fn a_taken_slot_gives_its_box_to_the_next() {
        let mut spares = SpareBoxes::new(4);
        let slot = spares.slot(Box::new(7));
        let first: *const Option<Value> = &*slot.0;
        assert_eq!(*spares.take(slot), 7);
        assert_eq!(spares.len(), 1);
        let slot = spares.slot(Box::new(8));
        assert_eq!(&*slot.0 as *const Option<Value>, first, "the spare box was reused");
        assert_eq!(**slot, 8);
        assert_eq!(spares.len(), 0);
    }

    #[test]
    fn the_spare_list_never_passes_its_bound() {
        let mut spares: SpareBoxes<Option<Value>> = SpareBoxes::new(SPARE_BOXES);
        let slots: Vec<Slot<Value>> =
            (0..3 * SPARE_BOXES as u32).map(|n| spares.slot(Box::new(n))).collect();
        for (n, slot) in slots.into_iter().enumerate() {
            assert_eq!(*spares.take(slot), n as u32);
            assert_eq!(spares.len(), (n + 1).min(SPARE_BOXES));
        }
        assert_eq!(spares.boxes.capacity(), SPARE_BOXES, "the list never grew past its bound");
        // Taken and given back in turns, it stays full and never passes it.
        for n in 0..SPARE_BOXES as u32 {
            let slot = spares.slot(Box::new(n));
            assert_eq!(spares.len(), SPARE_BOXES - 1);
            spares.take(slot);
            assert_eq!(spares.len(), SPARE_BOXES);
        }
    }

    #[test]
    fn a_kept_box_keeps_what_it_held() {
        let mut spares: SpareBoxes<Vec<u8>> = SpareBoxes::new(1);
        let mut buffer = Box::new(Vec::with_capacity(100));
        buffer.push(1);
        buffer.clear();
        spares.keep(buffer);
        let reused = spares.pop().unwrap_or_default();
        assert!(reused.capacity() >= 100, "its capacity came back with it");
        assert!(spares.pop().is_none());
    }

    #[test]
    fn a_slot_box_is_the_size_of_a_plain_one() {
        assert_eq!(std::mem::size_of::<Option<Value>>(), std::mem::size_of::<Value>());
        assert_eq!(std::mem::size_of::<Slot<Value>>(), std::mem::size_of::<Box<Value>>());
        assert_eq!(std::mem::size_of::<Option<Slot<Value>>>(), std::mem::size_of::<Slot<Value>>());
    }
}
