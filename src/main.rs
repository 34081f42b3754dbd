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
mod inline;
mod limits;
mod logging;
mod metrics;
mod payload;
mod persist;
mod query;
mod refused;
mod registry;
mod response;
mod routes;
mod spare;
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
    // Before any thread starts: it changes the environment, which another thread could be
    // reading.
    let passed_fds = sys::take_passed_fds();
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
    match run(config, passed_fds) {
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

fn run(config: config::Config, passed_fds: usize) -> Result<(), String> {
    let tokens = load_tokens(&config)?;
    use sys::Signal;
    let signals = sys::watch_signals(&[Signal::Hangup, Signal::Terminate, Signal::Interrupt])
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    let (listener, origin) = listen(&config, passed_fds)?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;

    let gauges = Arc::new(metrics::Gauges::new(config.instance.clone()));
    let memory =
        limits::MemoryBudget::with_share(config.limits.max_memory, config.limits.memory_per_ip());
    let relay = start_registry(&config, &memory, &gauges)?;
    let (workers, state_file) = (config.workers, config.state_file.clone());
    let shared = Shared::new(
        config,
        relay.registry.clone(),
        relay.outbox,
        Arc::clone(&gauges),
        memory,
        tokens.clone(),
    );
    let front = server::start(listener, shared, workers).map_err(spawn_failed)?;
    info!("handoff {} listening on {address}{origin}", env!("CARGO_PKG_VERSION"));

    let stop = loop {
        match signals.recv() {
            Ok(Signal::Hangup) => reload(tokens.as_deref()),
            Ok(stop) => break stop,
            Err(_) => return Err("the signal watcher stopped".into()),
        }
    };
    drain(stop, front, &relay.registry, &gauges);
    if let (Some(journal), Some(path)) = (relay.journal, &state_file) {
        save_on_exit(&journal, path, &relay.registry);
    }
    Ok(())
}

fn spawn_failed(e: std::io::Error) -> String {
    format!("cannot start a thread: {e}")
}

/// `--token-file`: the tokens. A bad file stops the relay before it listens: it must never run
/// open by mistake.
fn load_tokens(config: &config::Config) -> Result<Option<Arc<TokenStore>>, String> {
    let Some(path) = &config.access.token_file else { return Ok(None) };
    let store = TokenStore::open(path).map_err(|e| e.to_string())?;
    match store.current().len() {
        0 => warn!("loaded 0 tokens from {}: every relay request gets 401", path.display()),
        n => info!("loaded {n} tokens from {}", path.display()),
    }
    Ok(Some(Arc::new(store)))
}

/// The listener: the socket systemd passed (`passed_fds` from [`sys::take_passed_fds`]), else
/// one bound to `--listen`; with a note for the log line that says which.
fn listen(
    config: &config::Config,
    passed_fds: usize,
) -> Result<(TcpListener, &'static str), String> {
    let activated = sys::activated_listener(passed_fds)
        .map_err(|e| format!("cannot use the socket systemd passed (LISTEN_FDS): {e}"))?;
    if let Some(listener) = activated {
        return Ok((listener, " (socket from systemd; --listen ignored)"));
    }
    let listener = TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e} (--listen)", config.listen))?;
    Ok((listener, ""))
}

/// The registry thread, started: the way to it, the outbox that writes its answers and the
/// workers', and the journal that keeps `--state-file`.
struct Relay {
    registry: ToRegistry,
    outbox: Outbox,
    journal: Option<Arc<persist::Journal>>,
}

/// Makes the registry (restored from `--state-file`, if any), starts the outbox threads, and
/// starts the registry thread.
fn start_registry(
    config: &config::Config,
    memory: &Arc<limits::MemoryBudget>,
    gauges: &Arc<metrics::Gauges>,
) -> Result<Relay, String> {
    let (registry_tx, registry_input) =
        http::registry_thread::channel().map_err(|e| format!("cannot start the registry: {e}"))?;
    let settings = Settings {
        link_timeout: config.timeouts.link,
        inbox_timeout: config.timeouts.inbox,
        inbox_ttl: config.timeouts.inbox_ttl,
        max_parked: config.limits.max_parked,
        max_parked_per_ip: config.limits.max_parked_per_ip,
        rate_per_id: config.limits.rate_per_id,
        keeps_messages: config.state_file.is_some(),
        mcast_retain: config.limits.mcast_retain,
        mcast_idle: config.timeouts.mcast_idle,
        single_use: config.single_use.clone(),
    };
    let mut registry = Registry::new(settings, Instant::now());
    let journal = match &config.state_file {
        Some(path) => Some(restore(&mut registry, path, memory, gauges)?),
        None => None,
    };
    let parked_set = sys::Epoll::new(http::registry_thread::WATCH_BATCH)
        .map_err(|e| format!("cannot create an epoll set: {e}"))?;
    let outbox = Outbox::start(
        config.workers,
        config.timeouts.write,
        registry_tx.clone(),
        Arc::clone(gauges),
    )
    .map_err(|e| format!("cannot start the outbox: {e}"))?;
    let (thread_outbox, thread_gauges, thread_journal) =
        (outbox.clone(), Arc::clone(gauges), journal.clone());
    let peer = config.peer_address;
    threads::spawn("registry".into(), move || {
        http::registry_thread::run(
            registry,
            registry_input,
            thread_outbox,
            thread_gauges,
            thread_journal,
            parked_set,
            peer,
        )
    })
    .map_err(spawn_failed)?;
    Ok(Relay { registry: registry_tx, outbox, journal })
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
        "restored {} /inbox and {} /link messages and {} burned ids from {} ({} expired \
         meanwhile)",
        done.inbox,
        done.link,
        done.burned,
        path.display(),
        done.expired
    );
    if done.over_budget > 0 {
        warn!("dropped {} saved entries: no room in --max-memory", done.over_budget);
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
    front: server::Front,
    registry: &ToRegistry,
    gauges: &metrics::Gauges,
) {
    let started = Instant::now();
    info!("{signal:?}: draining: no new connections, waiting requests are answered");
    front.stop();
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
