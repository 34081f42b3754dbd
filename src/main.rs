//! handoff: a small self-hosted HTTP relay for login hand-offs (see README.md and SPEC).
//!
//! Wiring only: configuration → listener → threads → serve. Workers read requests and hand relay
//! requests to the one registry thread, which pairs them and hands replies to the writers.

#![deny(unsafe_code)]
// The large variants (a request being read, a request for the registry) are the common case;
// boxing them would add an allocation to every request.
#![allow(clippy::large_enum_variant)]

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
use log::{error, info};

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
    let front = Front::new(config, registry_tx, gauges, memory);
    info!("handoff {} listening on {address}", env!("CARGO_PKG_VERSION"));
    server::serve(listener, front, workers).map_err(|e| format!("the poller failed: {e}"))?;
    Ok(())
}
