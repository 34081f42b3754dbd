//! handoff: a small self-hosted HTTP relay for login hand-offs (README.md, docs/protocol.md).
//!
//! Wiring only: configuration → token file → listener (bound, or passed by systemd) → threads →
//! serve. Workers read requests and hand relay requests to the one registry thread, which pairs
//! them; the outbox threads see every answer to its close. The main thread then waits for
//! signals: `SIGHUP` reloads the token file, `SIGTERM` and `SIGINT` drain (stop accepting, answer
//! every parked request, let the writes finish) and exit 0 within [`DRAIN_LIMIT`]. With
//! `--state-file` the stored messages are restored before the registry starts and saved once
//! more after the drain (within [`SAVE_LIMIT`]).

#![deny(unsafe_code)]

mod action;
mod auth;
#[cfg(test)]
mod bench_scale;
mod config;
mod cors;
mod http;
mod identity;
mod limits;
mod logging;
mod metrics;
mod persist;
mod query;
mod refused;
mod registry;
mod response;
mod routes;
mod sys;
#[cfg(test)]
mod testutil;
mod threads;
mod wheel;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{error, info, warn};

use auth::TokenStore;
use config::Command;
use http::inbound::{Inbound, ToRegistry};
use http::outbox::Outbox;
use http::server;
use http::shared::Shared;
use registry::{Registry, Settings};

/// `--features count-allocs` (benchmarks only): every allocation is counted, and
/// [`report_allocations`] prints the totals.
#[cfg(feature = "count-allocs")]
#[global_allocator]
static ALLOCATOR: sys::counting::CountingAlloc = sys::counting::CountingAlloc;

/// Longest time from `SIGTERM` to exit: what is still being written then is cut off.
const DRAIN_LIMIT: Duration = Duration::from_millis(1800);

/// Longest wait for the last save of `--state-file` after the drain.
const SAVE_LIMIT: Duration = Duration::from_secs(2);

fn main() -> ExitCode {
    let config = match config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help(text)) | Ok(Command::Version(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("handoff: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init();
    #[cfg(feature = "count-allocs")]
    report_allocations();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// `--features count-allocs`: a thread prints `allocations: CALLS calls BYTES bytes LIVE live
/// LARGEST largest` (the largest single allocation in those 100 ms) to stderr every 100 ms in
/// which they changed, for `benches/peers.sh` to read before and after a run. Printing allocates
/// nothing, so an idle relay prints nothing.
#[cfg(feature = "count-allocs")]
fn report_allocations() {
    std::thread::spawn(|| {
        let mut last = sys::counting::Allocations::default();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = sys::counting::allocations();
            if now != last {
                let largest = sys::counting::take_largest();
                let (calls, bytes, live) = (now.calls, now.bytes, now.live);
                eprintln!("allocations: {calls} calls {bytes} bytes {live} live {largest} largest");
                last = now;
            }
        }
    });
}

fn run(config: config::Config) -> Result<(), String> {
    // A bad token file stops the relay before it listens: it must never run open by mistake.
    let tokens = match &config.access.token_file {
        Some(path) => {
            let store = TokenStore::open(path).map_err(|e| e.to_string())?;
            match store.current().len() {
                0 => warn!("loaded 0 tokens from {}: every relay request gets 401", path.display()),
                n => info!("loaded {n} tokens from {}", path.display()),
            }
            Some(Arc::new(store))
        }
        None => None,
    };
    use sys::Signal;
    let signals = sys::watch_signals(&[Signal::Hangup, Signal::Terminate, Signal::Interrupt])
        .map_err(|e| format!("cannot watch for signals: {e}"))?;

    let (listener, origin) = match sys::activated_listener()
        .map_err(|e| format!("cannot use the socket systemd passed (LISTEN_FDS): {e}"))?
    {
        Some(listener) => (listener, " (socket from systemd; --listen ignored)"),
        None => (
            TcpListener::bind(config.listen)
                .map_err(|e| format!("cannot listen on {}: {e} (--listen)", config.listen))?,
            "",
        ),
    };
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let spawn_failed = |e: std::io::Error| format!("cannot start a thread: {e}");

    let instance = config.instance.clone().unwrap_or_else(config::host_name);
    let gauges = Arc::new(metrics::Gauges::new(instance, config.instance.is_some()));
    let (registry_tx, registry_input) =
        http::parked::channel().map_err(|e| format!("cannot start the registry: {e}"))?;
    let settings = Settings {
        link_timeout: config.timeouts.link,
        inbox_timeout: config.timeouts.inbox,
        inbox_ttl: config.timeouts.inbox_ttl,
        max_parked: config.limits.max_parked,
        max_parked_per_ip: config.limits.max_parked_per_ip,
        rate_per_id: config.limits.rate_per_id,
        keeps_messages: config.state_file.is_some(),
    };
    let memory =
        limits::MemoryBudget::with_share(config.limits.max_memory, config.limits.memory_per_ip());
    let mut registry = Registry::new(settings, Instant::now());
    let journal = match &config.state_file {
        Some(path) => Some(restore(&mut registry, path, &memory, &gauges)?),
        None => None,
    };
    let registry_gauges = Arc::clone(&gauges);
    let registry_journal = journal.clone();
    let watched = sys::Epoll::new(http::parked::WATCH_BATCH)
        .map_err(|e| format!("cannot create an epoll set: {e}"))?;
    let outbox = Outbox::start(
        config.workers,
        config.timeouts.write,
        registry_tx.clone(),
        Arc::clone(&gauges),
    )
    .map_err(|e| format!("cannot start the outbox: {e}"))?;
    let registry_outbox = outbox.clone();
    threads::spawn("registry".into(), move || {
        let (gauges, journal) = (registry_gauges, registry_journal);
        http::parked::run(registry, registry_input, registry_outbox, gauges, journal, watched)
    })
    .map_err(spawn_failed)?;

    let workers = config.workers;
    let config_state_file = config.state_file.clone();
    let shared = Shared::new(
        config,
        registry_tx.clone(),
        outbox,
        Arc::clone(&gauges),
        memory,
        tokens.clone(),
    );
    let poller = server::start(listener, shared, workers).map_err(spawn_failed)?;
    info!("handoff {} listening on {address}{origin}", env!("CARGO_PKG_VERSION"));
    let stop = loop {
        match signals.recv() {
            Ok(Signal::Hangup) => reload(tokens.as_deref()),
            Ok(stop) => break stop,
            Err(_) => return Err("the signal watcher stopped".into()),
        }
    };
    drain(stop, poller, &registry_tx, &gauges);
    if let (Some(journal), Some(path)) = (journal, &config_state_file) {
        save_on_exit(&journal, path, &registry_tx);
    }
    Ok(())
}

/// `--state-file`: restores the saved messages into `registry` and starts the thread that keeps
/// them from now on, which first rewrites the file with what was restored (its format version,
/// this process's tickets, no torn tail).
fn restore(
    registry: &mut Registry,
    path: &std::path::Path,
    memory: &Arc<limits::MemoryBudget>,
    gauges: &Arc<metrics::Gauges>,
) -> Result<Arc<persist::Journal>, String> {
    let snapshot = persist::open(path).map_err(|e| e.to_string())?;
    let done = registry.restore(Instant::now(), wheel::unix_ms(), snapshot, memory);
    info!(
        "restored {} /inbox and {} /link messages from {} ({} expired meanwhile)",
        done.inbox,
        done.link,
        path.display(),
        done.expired
    );
    if done.over_budget > 0 {
        warn!("dropped {} saved messages: no room in --max-memory", done.over_budget);
    }
    let journal = persist::Journal::start(path.to_path_buf(), Arc::clone(gauges))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    journal.compact(registry.snapshot(Instant::now(), wheel::unix_ms()));
    Ok(journal)
}

/// The last save, once the drain is over: what is still stored is written before the exit.
fn save_on_exit(journal: &persist::Journal, path: &std::path::Path, registry: &ToRegistry) {
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let saved = registry.send(Inbound::Save(done_tx))
        && done_rx.recv_timeout(SAVE_LIMIT).is_ok()
        && journal.flush(SAVE_LIMIT);
    if saved {
        info!("saved the stored messages to {}", path.display());
    } else {
        error!("could not save the stored messages to {} before exiting", path.display());
    }
}

/// `SIGTERM`, `SIGINT`: stops accepting, has the registry answer every parked request (503, or
/// for a sender whose message the state file keeps, 202), and waits until every connection is
/// closed or [`DRAIN_LIMIT`] has passed.
fn drain(
    signal: sys::Signal,
    poller: server::Poller,
    registry: &ToRegistry,
    gauges: &metrics::Gauges,
) {
    let started = Instant::now();
    info!("{signal:?}: draining: no new connections, waiting requests are answered");
    poller.stop();
    registry.send(Inbound::Drain);
    while gauges.connections() > 0 && started.elapsed() < DRAIN_LIMIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    match gauges.connections() {
        0 => info!("drained in {} ms; exiting", started.elapsed().as_millis()),
        n => warn!("exiting with {n} connections still open after {} ms", DRAIN_LIMIT.as_millis()),
    }
}

/// `SIGHUP`: reads the token file again; a bad file leaves the tokens in force as they were.
/// Requests already waiting are not checked again: a token is checked once, on arrival.
fn reload(tokens: Option<&TokenStore>) {
    let Some(store) = tokens else {
        info!("SIGHUP: nothing to reload (no --token-file)");
        return;
    };
    match store.reload() {
        Ok(0) => warn!(
            "reloaded 0 tokens from {}: every relay request now gets 401",
            store.path().display()
        ),
        Ok(count) => info!("reloaded {count} tokens from {}", store.path().display()),
        Err(e) => error!(
            "token reload failed, keeping the {} tokens in force: {e}",
            store.current().len()
        ),
    }
}
