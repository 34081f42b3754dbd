//! `--state-file`: stored messages survive a restart (SIGTERM, and `kill -9` after a second).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::Relay;

/// Size of a state file holding nothing: the magic line.
const EMPTY_STATE: u64 = "handoff-state 2\n".len() as u64;

fn kill(relay: &Relay, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), relay.pid().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// A fresh directory for one test's state file.
fn state_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-state-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state")
}

/// Waits until the state file holds more than nothing (the periodic save happened).
fn wait_saved(path: &Path) {
    let started = Instant::now();
    while std::fs::metadata(path).map_or(true, |m| m.len() <= EMPTY_STATE) {
        assert!(started.elapsed() < Duration::from_secs(5), "the state file was not written");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the state file's bytes contain `needle` (a body saved by a later snapshot).
fn wait_holding(path: &Path, needle: &[u8]) {
    let started = Instant::now();
    loop {
        let data = std::fs::read(path).unwrap_or_default();
        if data.windows(needle.len()).any(|w| w == needle) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the state file was not refreshed");
        thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut relay: Relay) {
    kill(&relay, "TERM");
    let status = relay.wait_exit(Duration::from_secs(5)).expect("the relay did not exit");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn inbox_and_link_messages_survive_a_sigterm_restart() {
    let path = state_path("term");
    let file = path.to_str().unwrap();
    let relay = Relay::start(&["--state-file", file]);
    let posted = relay.post("/inbox/x", b"inbox message", &[("Content-Type", "text/plain")]);
    assert_eq!(posted.status, 200);
    // A link sender with no receiver: its message stays deliverable, so the drain tells it the
    // message was kept (202), not to retry (protocol §7).
    let sender = relay.spawn_post("/link/y?k=v", b"link message", &[("Content-Type", "a/b")]);
    relay.wait_parked(1);
    stop(relay);
    let kept = sender.join().unwrap();
    assert_eq!(kept.status, 202, "{kept}");
    assert_eq!(kept.header("HttpRelay-Kept"), Some("1"), "{kept}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file is private");

    let relay = Relay::start(&["--state-file", file]);
    let got = relay.get("/inbox/x");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"inbox message");
    assert_eq!(got.header("Content-Type"), Some("text/plain"));
    let got = relay.get("/link/y");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"link message");
    assert_eq!(got.header("Content-Type"), Some("a/b"));
    assert_eq!(got.header("HttpRelay-Method"), Some("POST"));
    assert_eq!(got.header("HttpRelay-Query"), Some("k=v"));
    assert_eq!(got.header("X-Real-IP"), Some("127.0.0.1"));
    // Delivered once: the link message is gone now.
    relay.wait_gauge("messages", 1);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn kill_9_loses_nothing_saved_a_second_before() {
    let path = state_path("kill");
    let file = path.to_str().unwrap();
    let mut relay = Relay::start(&["--state-file", file]);
    assert_eq!(relay.post("/inbox/x", b"survivor", &[]).status, 200);
    wait_saved(&path);
    // A change right after a save is written at most a second later.
    let posted = Instant::now();
    assert_eq!(relay.post("/inbox/z", b"second-one", &[]).status, 200);
    wait_holding(&path, b"second-one");
    assert!(posted.elapsed() < Duration::from_millis(1500), "{:?}", posted.elapsed());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file is private");
    kill(&relay, "KILL");
    relay.wait_exit(Duration::from_secs(5)).expect("the relay did not die");

    let relay = Relay::start(&["--state-file", file]);
    let got = relay.get("/inbox/x");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"survivor");
    assert_eq!(relay.get("/inbox/z").body, b"second-one");
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_message_whose_ttl_ran_out_while_down_is_not_restored() {
    let path = state_path("ttl");
    let file = path.to_str().unwrap();
    let relay = Relay::start(&["--state-file", file, "--inbox-ttl", "1s"]);
    assert_eq!(relay.post("/inbox/x", b"short-lived", &[]).status, 200);
    stop(relay);
    thread::sleep(Duration::from_millis(1100));
    let relay = Relay::start(&["--state-file", file, "--inbox-ttl", "1s"]);
    relay.wait_log("restore", |line| {
        line.contains("restored 0 /inbox") && line.contains("1 expired")
    });
    assert_eq!(relay.get("/inbox/x/ack").status, 404);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_relay_starts_empty() {
    let path = state_path("corrupt");
    std::fs::write(&path, b"not a state file").unwrap();
    let relay = Relay::start(&["--state-file", path.to_str().unwrap()]);
    relay.wait_log("corrupt", |line| line.contains("corrupt") && line.contains("starting empty"));
    let aside = path.with_file_name("state.corrupt");
    assert_eq!(std::fs::read(aside).unwrap(), b"not a state file");
    assert_eq!(relay.post("/inbox/x", b"new", &[]).status, 200);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
