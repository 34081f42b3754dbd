//! The relay's live numbers, shared between threads, and how `/health` (JSON) and `/metrics`
//! (Prometheus text format) show them (protocol §1).
//!
//! The registry publishes its counts after every batch of events; the HTTP side counts open
//! connections, the refusals it makes, and every response by route and status. Readers see
//! plain atomics and small locked tables, and never ask the registry thread.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crate::config::Limits;
use crate::limits::MemoryBudget;
use crate::refused::RefusalReason;
use crate::registry::Counts;
use crate::response::Response;

/// The relay's version, as `--version` shows it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Live gauges and counters.
#[derive(Debug, Default)]
pub struct Gauges {
    connections: AtomicUsize,
    /// Replies the outbox is writing (or draining after), as last published.
    writing: AtomicUsize,
    refused: [AtomicU64; RefusalReason::ALL.len()],
    /// The registry's counts as last published.
    registry: Mutex<Counts>,
    /// Responses written, by route (`Route::kind`, `-` before routing) and status.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// This relay's name in `/health`, `/metrics` and [`INSTANCE_HEADER`] (`--instance`); none
    /// unless the operator gave one.
    instance: Option<String>,
    /// Writes to `--state-file` that failed since start (disk full, I/O error).
    state_write_failures: AtomicU64,
}

/// The response header naming the relay that answered, so an operator (and a test) behind a
/// proxy that spreads ids over several relays sees which one it was.
pub const INSTANCE_HEADER: &str = "Handoff-Instance";

impl Gauges {
    /// Gauges of the relay named `instance` (`--instance`), if it was named.
    pub fn new(instance: Option<String>) -> Gauges {
        Gauges { instance, ..Gauges::default() }
    }

    /// `response` as it is written: with the [`INSTANCE_HEADER`] when `--instance` was given.
    pub fn with_instance_header(&self, response: Response) -> Response {
        match &self.instance {
            Some(instance) => response.header(INSTANCE_HEADER, instance),
            None => response,
        }
    }

    /// Publishes the registry's counts.
    pub fn set_registry(&self, counts: Counts) {
        *self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = counts;
    }

    /// Counts a newly accepted connection; returns the number now open.
    pub fn connection_opened(&self) -> usize {
        self.connections.fetch_add(1, Relaxed) + 1
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.connections.load(Relaxed)
    }

    /// Publishes that one outbox thread now writes `now` replies where it last published
    /// `before`; the gauge is the sum over the outbox threads.
    pub fn writing_changed(&self, before: usize, now: usize) {
        // Added before subtracted, so a reader never sees the sum wrap below zero.
        self.writing.fetch_add(now, Relaxed);
        self.writing.fetch_sub(before, Relaxed);
    }

    /// Counts a write to `--state-file` that failed; the data already durable stays so.
    pub fn state_write_failed(&self) {
        self.state_write_failures.fetch_add(1, Relaxed);
    }

    /// Writes to `--state-file` that failed since start.
    pub fn state_write_failures(&self) -> u64 {
        self.state_write_failures.load(Relaxed)
    }

    /// Counts a closed connection.
    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Relaxed);
    }

    /// Counts a response with `status` on `route` (a fixed name: never an id).
    pub fn count_request(&self, route: &'static str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *requests.entry((route, status)).or_insert(0) += 1;
    }

    /// The `/metrics` answer: every number of `/health` and the request counters, in the
    /// Prometheus text exposition format (0.0.4), each family with `# HELP` and `# TYPE`; the
    /// limits too, so an alert compares a gauge with its own relay's cap (none when disabled).
    pub fn prometheus(&self, limits: &Limits, memory: &MemoryBudget) -> Response {
        let counts = *self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let requests =
            self.requests.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        let mut text = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
            let _ = writeln!(text, "# HELP handoff_{name} {help}");
            let _ = writeln!(text, "# TYPE handoff_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(text, "handoff_{name}{labels} {value}");
            }
        };
        let one = |value: usize| [(String::new(), value as u64)];
        let cap = |limit: Option<usize>| {
            limit.map(|l| (String::new(), l as u64)).into_iter().collect::<Vec<_>>()
        };
        // Not `instance`: Prometheus sets that label on every series it scrapes (the target's
        // address) and would rename this one `exported_instance`.
        let relay = self.instance.as_ref().map_or(String::new(), |i| format!("relay=\"{i}\","));
        let info = [(format!("{{{relay}version=\"{VERSION}\"}}"), 1)];
        family("info", "gauge", "Always 1: this relay's --instance name and version.", &info);
        let requests: Vec<(String, u64)> = requests
            .into_iter()
            .map(|((route, status), n)| (format!("{{route=\"{route}\",status=\"{status}\"}}"), n))
            .collect();
        family("requests_total", "counter", "Responses written, by route and status.", &requests);
        let handoffs = [
            ("{protocol=\"link\"}".to_string(), counts.link_delivered),
            ("{protocol=\"inbox\"}".to_string(), counts.inbox_fetched),
            ("{protocol=\"sync\"}".to_string(), counts.sync_taken),
            ("{protocol=\"mcast\"}".to_string(), counts.mcast_fetched),
        ];
        family(
            "handoffs_total",
            "counter",
            "Messages handed over: /link messages written in full to a receiver, /inbox messages \
             answered to a GET, /sync answers taken in full (two per exchange), /mcast messages \
             answered to a GET.",
            &handoffs,
        );
        family(
            "timeouts_total",
            "counter",
            "Waits that ran out (408).",
            &[(String::new(), counts.timeouts)],
        );
        let refused: Vec<(String, u64)> = RefusalReason::ALL
            .into_iter()
            .map(|reason| {
                let total =
                    self.refused[reason as usize].load(Relaxed) + counts.refused.get(reason);
                (format!("{{reason=\"{}\"}}", reason.name()), total)
            })
            .collect();
        family(
            "refused_total",
            "counter",
            "Requests and connections refused, by reason.",
            &refused,
        );
        family(
            "burned_ids",
            "gauge",
            "Ids burned by --single-use and refused for --burned-for (at most --max-burned).",
            &one(counts.burned),
        );
        family(
            "burned_forgotten_total",
            "counter",
            "Burned ids forgotten before their --burned-for ran out, as --max-burned was reached.",
            &[(String::new(), counts.burned_forgotten)],
        );
        family("parked", "gauge", "Requests waiting for their counterpart.", &one(counts.parked));
        family("messages", "gauge", "Messages held for delivery.", &one(counts.messages));
        family("message_bytes", "gauge", "Bytes of message bodies held.", &one(counts.bytes));
        family("links", "gauge", "/link ids in use.", &one(counts.links));
        family("inboxes", "gauge", "/inbox ids in use.", &one(counts.inboxes));
        family("syncs", "gauge", "/sync ids with a side waiting.", &one(counts.syncs));
        family("mcasts", "gauge", "/mcast channels in use.", &one(counts.mcasts));
        family(
            "memory_bytes",
            "gauge",
            "Memory charged to bodies and waiters (--max-memory).",
            &one(memory.used()),
        );
        family(
            "memory_limit_bytes",
            "gauge",
            "--max-memory; no sample when it is disabled.",
            &cap(memory.limit()),
        );
        family(
            "parked_limit",
            "gauge",
            "--max-parked; no sample when it is disabled.",
            &cap(limits.max_parked),
        );
        family(
            "connections_limit",
            "gauge",
            "--max-connections; no sample when it is disabled.",
            &cap(limits.max_connections),
        );
        family(
            "resident_memory_bytes",
            "gauge",
            "The process's resident set (VmRSS), against the worst case of protocol 4.3.",
            &cap(resident_bytes()),
        );
        let connections = self.connections.load(Relaxed);
        family("connections", "gauge", "Open client connections.", &one(connections));
        family(
            "writing",
            "gauge",
            "Replies being written, or their connections being closed (--write-timeout).",
            &one(self.writing.load(Relaxed)),
        );
        family(
            "state_write_failures_total",
            "counter",
            "Writes to --state-file that failed (disk full, I/O error) since start.",
            &[(String::new(), self.state_write_failures())],
        );
        Response::new(200)
            .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            .body(text.into_bytes())
    }

    /// Counts a refusal made on the HTTP side.
    pub fn refused(&self, reason: RefusalReason) {
        self.refused[reason as usize].fetch_add(1, Relaxed);
    }

    /// One line of live counts for `GET /`.
    pub fn summary(&self) -> String {
        let counts = *self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        format!(
            "now: {} waiting, {} messages held, {} /link ids, {} /inbox ids, {} /sync ids, \
             {} /mcast channels, {} connections",
            counts.parked,
            counts.messages,
            counts.links,
            counts.inboxes,
            counts.syncs,
            counts.mcasts,
            self.connections.load(Relaxed)
        )
    }

    /// The `/health` answer: 200 `ok`, or 503 `full` when a limit is at its high-water mark;
    /// with the counts when `detailed`, else the status alone (`{"status":"ok"}`, for liveness
    /// probes when `--token-file` is set and no `stats` token was shown).
    pub fn health(&self, limits: &Limits, memory: &MemoryBudget, detailed: bool) -> Response {
        let counts = *self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let connections = self.connections.load(Relaxed);
        let at = |value: usize, limit: Option<usize>| limit.is_some_and(|l| value >= l);
        let full = at(counts.parked, limits.max_parked)
            || at(connections, limits.max_connections)
            || at(memory.used(), memory.limit());
        let limit = |l: Option<usize>| l.map_or("null".to_string(), |l| l.to_string());
        let status = if full { "full" } else { "ok" };
        let mut json = format!(
            "{{\"status\":\"{}\"{},\"sessions\":{},\"parked\":{},\"messages\":{},\"bytes\":{},\
             \"links\":{},\"inboxes\":{},\"syncs\":{},\"mcasts\":{},\"burned\":{},\"memory\":{},\"connections\":{connections},\"writing\":{},\"state_write_failures\":{},\"limits\":{{\"parked\":{},\
             \"connections\":{},\"memory\":{},\"body\":{}}},\"refused\":{{",
            status,
            self.instance.as_ref().map_or(String::new(), |i| format!(",\"instance\":\"{i}\"")),
            counts.parked,
            counts.parked,
            counts.messages,
            counts.bytes,
            counts.links,
            counts.inboxes,
            counts.syncs,
            counts.mcasts,
            counts.burned,
            memory.used(),
            self.writing.load(Relaxed),
            self.state_write_failures(),
            limit(limits.max_parked),
            limit(limits.max_connections),
            limit(memory.limit()),
            limits.max_body,
        );
        for (n, reason) in RefusalReason::ALL.into_iter().enumerate() {
            let total = self.refused[reason as usize].load(Relaxed) + counts.refused.get(reason);
            let comma = if n > 0 { "," } else { "" };
            let _ = write!(json, "{comma}\"{}\":{total}", reason.name());
        }
        json.push_str("}}\n");
        if !detailed {
            json = format!("{{\"status\":\"{status}\"}}\n");
        }
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

/// The process's resident set in bytes, `VmRSS` of `/proc/self/status` (in kB whatever the page
/// size), so an alert can hold it against the most memory the flags allow (protocol §4.3);
/// `None` where that file cannot be read.
fn resident_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: usize = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resident_set_is_read_and_plausible() {
        let bytes = resident_bytes().expect("VmRSS in /proc/self/status");
        assert!((100 * 1024..1 << 40).contains(&bytes), "{bytes}");
    }

    #[test]
    fn writing_is_the_sum_of_what_each_outbox_thread_published() {
        let gauges = Gauges::new(None);
        gauges.writing_changed(0, 3);
        gauges.writing_changed(0, 5);
        gauges.writing_changed(3, 1);
        assert_eq!(gauges.writing.load(Relaxed), 6);
        gauges.writing_changed(1, 0);
        gauges.writing_changed(5, 0);
        assert_eq!(gauges.writing.load(Relaxed), 0);
    }
}
