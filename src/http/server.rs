//! The accept loop and the thread pools (SPEC §8).
//!
//! One accept thread that never gives up: an `accept()` error (too many open files, say) is
//! logged and retried after a growing pause, and the listener is kept. A bounded queue feeds a
//! fixed pool of workers; when it is full the accept thread waits and new clients wait in the
//! kernel's backlog. A second small pool writes the registry's replies, so a slow reader never
//! delays a delivery.

use std::io;
use std::net::TcpListener;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender};
use log::warn;

use super::conn::{serve, write_job, Connection, Front, WriteJob};
use crate::metrics::Gauges;
use crate::registry::run::Inbound;

/// Stack size of the relay's threads: they keep their buffers on the heap.
pub const THREAD_STACK: usize = 128 * 1024;
/// Accepted connections that may wait for a free worker.
const QUEUE_PER_WORKER: usize = 64;
/// Pause after a failed `accept()`, doubled on each failure in a row up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Starts `count` worker threads serving connections from the returned queue.
pub fn spawn_workers(count: usize, front: Arc<Front>) -> io::Result<Sender<Connection>> {
    let (queue, connections) = bounded::<Connection>(count * QUEUE_PER_WORKER);
    for n in 0..count {
        let front = Arc::clone(&front);
        let connections = connections.clone();
        spawn(format!("worker-{n}"), move || {
            for connection in connections {
                serve(connection, &front);
            }
        })?;
    }
    Ok(queue)
}

/// Starts `count` writer threads for the registry's replies.
pub fn spawn_writers(
    count: usize,
    jobs: Receiver<WriteJob>,
    registry: Sender<Inbound>,
) -> io::Result<()> {
    for n in 0..count {
        let jobs = jobs.clone();
        let registry = registry.clone();
        spawn(format!("writer-{n}"), move || {
            for job in jobs {
                write_job(job, &registry);
            }
        })?;
    }
    Ok(())
}

/// Accepts connections for ever, closing at once those beyond `max_connections`.
pub fn accept_loop(
    listener: TcpListener,
    workers: Sender<Connection>,
    gauges: Arc<Gauges>,
    max_connections: Option<usize>,
) {
    let mut next_id = 0u64;
    let mut backoff = BACKOFF_MIN;
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) => {
                warn!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let open = gauges.connection_opened();
        next_id += 1;
        let connection = Connection::new(stream, peer, next_id, Arc::clone(&gauges));
        if max_connections.is_some_and(|max| open > max) {
            continue; // dropping the connection closes it and uncounts it
        }
        if workers.send(connection).is_err() {
            return;
        }
    }
}

/// Spawns a named thread with the relay's stack size.
pub fn spawn(
    name: String,
    body: impl FnOnce() + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK)
        .spawn(body)
}
