//! `--single-use`: an id whose message was delivered is refused 410 for `--burned-for`
//! (protocol §4.4), black-box: through `/link` and `/inbox`, across a restart with
//! `--state-file`, at the cap (`--max-burned`), after its time, and not at all by default.

mod common;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{request, Relay, Response};

/// The statuses of a write (POST) and a wait (GET) on `path`.
fn write_and_wait(relay: &Relay, path: &str) -> [Response; 2] {
    [relay.post(path, b"replayed", &[]), relay.get(path)]
}

/// A refusal for a burned id: 410, and the sentence naming how long ids stay burned.
fn assert_burned(response: &Response, burned_for: &str) {
    response.assert_error(410);
    let text = response.text();
    assert!(text.contains("already used"), "{response}");
    assert!(text.contains(&format!("refused for {burned_for} (--single-use")), "{response}");
}

/// A `/link` hand-off on `id`, taken by its receiver.
fn hand_off(relay: &Relay, id: &str) {
    let path = format!("/link/{id}");
    let receiver = relay.spawn_get(&path);
    relay.wait_parked(1);
    let sender = relay.post(&path, b"token", &[]);
    assert_eq!(sender.status, 200, "{sender}");
    let receiver = receiver.join().unwrap();
    assert_eq!((receiver.status, &receiver.body[..]), (200, &b"token"[..]), "{receiver}");
}

/// An `/inbox` message on `id`, fetched and acknowledged.
fn acknowledge(relay: &Relay, id: &str) {
    let path = format!("/inbox/{id}");
    assert_eq!(relay.post(&path, b"token", &[]).status, 200);
    let got = relay.get(&path);
    assert_eq!((got.status, &got.body[..]), (200, &b"token"[..]), "{got}");
    let acked = relay.send(&request("DELETE", &path, &[], b""));
    assert_eq!(acked.status, 200, "{acked}");
}

/// The value of the `/metrics` sample named exactly `name` (labels included).
fn sample(relay: &Relay, name: &str) -> Option<u64> {
    let text = relay.get("/metrics").text();
    let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?;
    line[name.len() + 1..].parse().ok()
}

#[test]
fn a_link_id_handed_off_once_refuses_a_second_post_and_a_second_get() {
    let relay = Relay::start(&["--single-use", "on"]);
    hand_off(&relay, "qr");
    for answer in write_and_wait(&relay, "/link/qr") {
        assert_burned(&answer, "25h");
    }
    relay.wait_parked(0);
    assert_eq!(sample(&relay, "handoff_refused_total{reason=\"burned\"}"), Some(2));
    assert_eq!(sample(&relay, "handoff_burned_ids"), Some(1));
    assert!(relay.health().1.contains("\"burned\":1"));
    // Another id, and the same id as an inbox, are not burned.
    hand_off(&relay, "other");
    assert_eq!(relay.post("/inbox/qr", b"m", &[]).status, 200);
}

#[test]
fn an_acknowledged_inbox_refuses_a_write_and_a_wait_but_answers_ack() {
    let relay = Relay::start(&["--single-use", "on", "--burned-for", "90m"]);
    acknowledge(&relay, "box");
    for answer in write_and_wait(&relay, "/inbox/box") {
        assert_burned(&answer, "90m");
    }
    let ack = relay.get("/inbox/box/ack");
    assert_eq!((ack.status, ack.text()), (200, "true".to_string()), "{ack}");
    assert_eq!(relay.get("/inbox/box/await").status, 200);
}

#[test]
fn burned_ids_survive_a_restart_with_the_state_file() {
    let dir = std::env::temp_dir().join(format!("handoff-single-use-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state");
    let args = ["--single-use", "on", "--state-file", file.to_str().unwrap()];
    let mut relay = Relay::start(&args);
    hand_off(&relay, "a-long-qr-code-id");
    acknowledge(&relay, "box");
    let status = Command::new("kill").args(["-TERM", &relay.pid().to_string()]).status();
    assert!(status.unwrap().success());
    let exit = relay.wait_exit(Duration::from_secs(5)).expect("the relay did not exit");
    assert!(exit.success(), "{exit}");

    let relay = Relay::start(&args);
    relay.wait_gauge("burned", 2);
    for path in ["/link/a-long-qr-code-id", "/inbox/box"] {
        for answer in write_and_wait(&relay, path) {
            assert_burned(&answer, "25h");
        }
    }
    // The file keeps digests, never the ids (this one was only ever a /link id).
    let data = std::fs::read(&file).unwrap();
    let id = b"a-long-qr-code-id";
    assert!(!data.windows(id.len()).any(|w| w == id), "the id is in the state file");
    drop(relay);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn at_the_cap_the_oldest_burned_id_is_forgotten_and_counted() {
    let relay = Relay::start(&["--single-use", "on", "--max-burned", "2"]);
    for id in ["a", "b", "c"] {
        acknowledge(&relay, id);
    }
    assert_eq!(sample(&relay, "handoff_burned_ids"), Some(2));
    assert_eq!(sample(&relay, "handoff_burned_forgotten_total"), Some(1));
    assert_eq!(relay.post("/inbox/a", b"m", &[]).status, 200, "the oldest was forgotten");
    for id in ["b", "c"] {
        assert_burned(&relay.post(&format!("/inbox/{id}"), b"m", &[]), "25h");
    }
}

#[test]
fn a_burned_id_is_free_again_after_burned_for() {
    let relay = Relay::start(&["--single-use", "on", "--burned-for", "700ms"]);
    let burned = Instant::now();
    acknowledge(&relay, "brief");
    assert_burned(&relay.post("/inbox/brief", b"m", &[]), "700ms");
    // Polled: the refusal ends with its time, not before, and the id is then forgotten.
    loop {
        let answer = relay.post("/inbox/brief", b"m", &[]);
        if answer.status == 200 {
            break;
        }
        assert_burned(&answer, "700ms");
        assert!(burned.elapsed() < Duration::from_secs(5), "still refused after 5 s");
        thread::sleep(Duration::from_millis(20));
    }
    assert!(burned.elapsed() >= Duration::from_millis(700), "free after {:?}", burned.elapsed());
    relay.wait_gauge("burned", 0);
}

#[test]
fn without_single_use_ids_are_used_again() {
    let relay = Relay::start(&[]);
    hand_off(&relay, "qr");
    hand_off(&relay, "qr");
    acknowledge(&relay, "box");
    acknowledge(&relay, "box");
    assert_eq!(sample(&relay, "handoff_burned_ids"), Some(0));
    assert_eq!(sample(&relay, "handoff_refused_total{reason=\"burned\"}"), Some(0));
}
