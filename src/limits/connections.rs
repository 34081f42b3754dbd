//! Open connections per TCP peer (`--max-connections-per-ip`, protocol §4): a slot per
//! connection, given back when the connection (which holds it) is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::identity::ClientKey;

/// Open connections per TCP peer (`--max-connections-per-ip`), shared by the threads that
/// accept and close connections.
#[derive(Debug)]
pub struct PeerConnections {
    limit: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// One counted connection; dropping it uncounts it.
#[derive(Debug)]
pub struct PeerSlot {
    table: Arc<PeerConnections>,
    key: ClientKey,
}

impl PeerConnections {
    /// A table allowing `limit` connections per peer.
    pub fn new(limit: usize) -> Arc<PeerConnections> {
        Arc::new(PeerConnections { limit, open: Mutex::new(HashMap::new()) })
    }

    /// Counts a new connection from `key`, or `None` when the peer is at its limit.
    pub fn open(self: &Arc<Self>, key: ClientKey) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot { table: Arc::clone(self), key })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> std::net::IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn peer_slots_count_and_release() {
        let table = PeerConnections::new(2);
        let key = ClientKey::of(ip("192.0.2.1"));
        let a = table.open(key).unwrap();
        let _b = table.open(key).unwrap();
        assert!(table.open(key).is_none());
        assert!(table.open(ClientKey::of(ip("192.0.2.2"))).is_some());
        drop(a);
        assert!(table.open(key).is_some());
    }
}
