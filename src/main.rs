//! handoff: a small self-hosted HTTP relay for login hand-offs (see README.md and SPEC).
//!
//! Wiring only: configuration → token file → listener → threads → serve. Workers read requests
//! and hand relay requests to the one registry thread, which pairs them and hands replies to the
//! writers. A `signals` thread turns `SIGHUP` into a reload of the token file.

#![deny(unsafe_code)]
// The large variants (a request being read, a request for the registry) are the common case;
// boxing them would add an allocation to every request.
#![allow(clippy::large_enum_variant)]

mod auth;
mod config;
mod cors;
mod http;
mod limits;
mod logging;
mod metrics;
mod registry;
mod routes;
mod sys;
#[cfg(test)]
mod testutil;
mod wheel;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::unbounded;
use log::{error, info, warn};

use auth::TokenStore;
use config::Command;
use http::server::{self, Front};
use registry::{Registry, Settings};

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
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
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
    let signals = sys::watch_signals(&[sys::Signal::Hangup])
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    let reload_tokens = tokens.clone();
    server::spawn("reload".into(), move || {
        for signal in signals {
            if signal == sys::Signal::Hangup {
                reload(reload_tokens.as_deref());
            }
        }
    })
    .map_err(|e| format!("cannot start a thread: {e}"))?;

    let listener = TcpListener::bind(config.listen)
        .map_err(|e| format!("cannot listen on {}: {e} (--listen)", config.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let spawn_failed = |e: std::io::Error| format!("cannot start a thread: {e}");

    let gauges = Arc::new(metrics::Gauges::default());
    let (registry_tx, registry_rx) = unbounded();
    let (writer_tx, writer_rx) = unbounded();
    let settings = Settings {
        link_timeout: config.timeouts.link,
        inbox_timeout: config.timeouts.inbox,
        inbox_ttl: config.timeouts.inbox_ttl,
        max_parked: config.limits.max_parked,
        max_parked_per_ip: config.limits.max_parked_per_ip,
        rate_per_id: config.limits.rate_per_id,
    };
    let registry = Registry::new(settings, Instant::now());
    let registry_gauges = Arc::clone(&gauges);
    server::spawn("registry".into(), move || {
        registry::run::run(registry, registry_rx, writer_tx, registry_gauges)
    })
    .map_err(spawn_failed)?;
    server::spawn_writers(config.workers.div_ceil(4).max(2), writer_rx, registry_tx.clone())
        .map_err(spawn_failed)?;

    let workers = config.workers;
    let memory = limits::MemoryBudget::new(config.limits.max_memory);
    let front = Front::new(config, registry_tx, gauges, memory, tokens);
    info!("handoff {} listening on {address}", env!("CARGO_PKG_VERSION"));
    server::serve(listener, front, workers).map_err(|e| format!("the poller failed: {e}"))?;
    Ok(())
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
