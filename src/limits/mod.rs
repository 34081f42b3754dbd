//! The limits that keep one client from taking the relay (protocol §4), as plain values with the
//! time passed in, each table-tested on a fake clock: token buckets and their table (`rate`), the
//! memory budget (`memory`), open connections per peer (`connections`), and how a wait is said
//! in `Retry-After`. Who a client is, and the key these count under, is `identity.rs`'s; where
//! each limit is decided is the gate's (`http/gate.rs`) or, for its own, the registry's.

mod connections;
mod memory;
mod rate;

pub use connections::{PeerConnections, PeerSlot};
pub use memory::{
    shrink_sparse, Charged, Footprint, MemoryBudget, Reservation, Shortage, ENTRY_COST,
    HEAD_ALLOWANCE,
};
pub use rate::{retry_after, Rate, RateTable};
