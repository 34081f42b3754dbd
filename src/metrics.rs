//! The relay's live numbers, shared between threads, and how `/health` shows them (SPEC §1).
//!
//! The registry publishes its counts after every batch of events; the HTTP side counts open
//! connections. Readers (`/health`) see plain atomics and never ask the registry thread.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::config::Limits;
use crate::http::response::Response;
use crate::registry::Counts;

/// Live gauges.
#[derive(Debug, Default)]
pub struct Gauges {
    connections: AtomicUsize,
    parked: AtomicUsize,
    messages: AtomicUsize,
    bytes: AtomicUsize,
}

impl Gauges {
    /// Publishes the registry's counts.
    pub fn set_registry(&self, counts: Counts) {
        self.parked.store(counts.parked, Relaxed);
        self.messages.store(counts.messages, Relaxed);
        self.bytes.store(counts.bytes, Relaxed);
    }

    /// Counts a newly accepted connection; returns the number now open.
    pub fn connection_opened(&self) -> usize {
        self.connections.fetch_add(1, Relaxed) + 1
    }

    /// Counts a closed connection.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// The `/health` answer: 200 `ok`, or 503 `full` when a limit is at its high-water mark.
    pub fn health(&self, limits: &Limits) -> Response {
        let parked = self.parked.load(Relaxed);
        let connections = self.connections();
        let at_limit = |value: usize, limit: Option<usize>| limit.is_some_and(|l| value >= l);
        let full =
            at_limit(parked, limits.max_parked) || at_limit(connections, limits.max_connections);
        let limit = |l: Option<usize>| l.map_or("null".to_string(), |l| l.to_string());
        let json = format!(
            "{{\"status\":\"{}\",\"sessions\":{parked},\"parked\":{parked},\"messages\":{},\
             \"bytes\":{},\"connections\":{connections},\"limits\":{{\"parked\":{},\
             \"connections\":{},\"body\":{}}}}}\n",
            if full { "full" } else { "ok" },
            self.messages.load(Relaxed),
            self.bytes.load(Relaxed),
            limit(limits.max_parked),
            limit(limits.max_connections),
            limits.max_body,
        );
        let response = Response::new(if full { 503 } else { 200 })
            .header("Content-Type", "application/json")
            .body(json.into_bytes());
        if full {
            response.header("Retry-After", "1")
        } else {
            response
        }
    }
}
