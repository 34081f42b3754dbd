//! The limits that keep one client from taking the relay (protocol §4), as plain values with the
//! time passed in, each table-tested on a fake clock: token buckets and their table (`rate`), the
//! memory budget (`memory`), open connections per peer (`connections`), and how a wait is said
//! in `Retry-After`. Who a client is, and the key these count under, is `identity.rs`'s; where
//! each limit is decided is the gate's (`http/gate.rs`) or, for its own, the registry's.

mod connections;
mod memory;
mod rate;

use std::time::Duration;

pub use connections::{PeerConnections, PeerSlot};
pub use memory::{
    Charged, Footprint, MemoryBudget, Reservation, Shortage, ENTRY_COST, HEAD_ALLOWANCE,
};
pub use rate::{Rate, RateTable};

/// A `Retry-After` value for a wait: whole seconds, at least one.
pub fn retry_after(wait: Duration) -> String {
    wait.as_secs_f64().ceil().max(1.0).to_string()
}
