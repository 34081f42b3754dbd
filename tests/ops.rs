//! Operations, over the real binary (SPEC §7): the `SIGTERM`/`SIGINT` drain.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Relay;

/// Sends `signal` (`TERM`, `INT`) to the relay's process.
fn kill(relay: &Relay, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &relay.pid().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Parks three receivers, signals the relay, and checks each gets 503 with `Retry-After`, the
/// process exits 0 within 2 s, and the port refuses connections after. Returns the time taken.
fn drains_on(signal: &str) -> Duration {
    let mut relay = Relay::start(&[]);
    let addr = relay.addr();
    let waiters = [
        relay.spawn_get("/link/drain-a"),
        relay.spawn_get("/link/drain-b"),
        relay.spawn_get("/inbox/drain-c"),
    ];
    relay.wait_parked(3);
    let sent = Instant::now();
    kill(&relay, signal);
    for waiter in waiters {
        let response = waiter.join().unwrap();
        assert_eq!(response.status, 503, "{response}");
        assert_eq!(response.header("retry-after"), Some("1"), "{response}");
        assert!(response.text().contains("shutting down"), "{response}");
    }
    let status = relay.wait_exit(Duration::from_secs(2));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running 2 s after SIGTERM"));
    assert!(status.success(), "exit status {status}; logs:\n{}", relay.logs().join("\n"));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "still accepting");
    println!("SIG{signal} to exit: {} ms", took.as_millis());
    took
}

#[test]
fn sigterm_answers_parked_requests_503_and_exits_0() {
    drains_on("TERM");
}

#[test]
fn sigint_drains_like_sigterm() {
    drains_on("INT");
}
