//! `/`, `/health`, the parked-request limit and what the logs reveal (protocol §1, §4, §7).

mod common;

use common::{json_number, Relay};

#[test]
fn root_lists_the_endpoints() {
    let relay = Relay::start(&[]);
    let response = relay.get("/");
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{response}");
    let text = response.text();
    assert!(text.starts_with("handoff "), "{response}");
    assert!(text.contains("/link/"), "{response}");
    assert!(text.contains("/health"), "{response}");
}

#[test]
fn head_root_has_a_length_but_no_body() {
    let relay = Relay::start(&[]);
    let get = relay.get("/");
    let head = relay.send(b"HEAD / HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(head.status, 200, "{head}");
    head.assert_framing(true);
    assert!(head.body.is_empty(), "{head}");
    assert_eq!(head.header("content-length"), get.header("content-length"), "{head}");
    assert_ne!(head.header("content-length"), Some("0"), "{head}");
    assert_eq!(head.header("content-type"), get.header("content-type"));
}

#[test]
fn health_counts_parked_requests() {
    let relay = Relay::start(&["--link-timeout", "10s"]);
    let (response, text) = relay.health();
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    assert_eq!(response.header("content-type"), Some("application/json"), "{response}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    assert_eq!(json_number(&text, "sessions"), Some(0), "{text}");
    assert_eq!(json_number(&text, "parked"), Some(0), "{text}");
    assert_eq!(json_number(&text, "messages"), Some(0), "{text}");
    assert_eq!(json_number(&text, "state_write_failures"), Some(0), "{text}");

    let first = relay.spawn_get("/link/h1");
    let second = relay.spawn_get("/link/h2");
    relay.wait_parked(2);
    let (response, text) = relay.health();
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(json_number(&text, "sessions"), Some(2), "{text}");
    // Two parked GETs, each with its open connection, plus this /health request.
    assert!(json_number(&text, "connections").is_some_and(|n| n >= 2), "{text}");

    for (id, receiver) in [("h1", first), ("h2", second)] {
        assert_eq!(relay.post(&format!("/link/{id}"), id.as_bytes(), &[]).status, 200);
        assert_eq!(receiver.join().unwrap().body, id.as_bytes());
    }
    relay.wait_gauge("sessions", 0);
}

#[test]
fn max_parked_makes_health_full_and_refuses_more_waiters() {
    let relay = Relay::start(&["--max-parked", "1", "--link-timeout", "10s"]);
    let receiver = relay.spawn_get("/link/first");
    relay.wait_parked(1);

    let (health, text) = relay.health();
    assert_eq!(health.status, 503, "{health}");
    assert!(text.contains("\"status\":\"full\""), "{text}");
    assert_eq!(json_number(&text, "sessions"), Some(1), "{text}");

    for raw in
        [common::get_request("/link/second"), common::post_request("/link/second", b"no room", &[])]
    {
        let refused = relay.send(&raw);
        refused.assert_error(503);
        assert!(refused.header("retry-after").is_some(), "{refused}");
        assert!(refused.text().contains("--max-parked"), "{refused}");
    }

    // A sender for the waiting receiver needs no room: it is delivered at once.
    let sender = relay.post("/link/first", b"fits", &[]);
    assert_eq!(sender.status, 200, "{sender}");
    assert_eq!(receiver.join().unwrap().body, b"fits");
    relay.wait_parked(0);
    let (health, text) = relay.health();
    assert_eq!(health.status, 200, "{health}");
    assert!(text.contains("\"status\":\"ok\""), "{text}");
}

#[test]
fn logs_never_contain_a_channel_id() {
    let id = "secret-id-7f3a";
    let relay = Relay::start(&["--link-timeout", "10s"]);
    let receiver = relay.spawn_get(&format!("/link/{id}?note={id}"));
    relay.wait_parked(1);
    let sender =
        relay.post(&format!("/link/{id}"), b"payload-9c2e", &[("Content-Type", "text/plain")]);
    assert_eq!(sender.status, 200, "{sender}");
    assert_eq!(receiver.join().unwrap().body, b"payload-9c2e");
    // The relay logs each link request (by a tag of its id).
    relay.wait_log("for the GET /link", |l| l.contains("GET link"));
    relay.wait_log("for the POST /link", |l| l.contains("POST link"));
    // Refusals are logged too; their ids must not be either.
    relay.get(&format!("/link/{id}/x"));
    relay.wait_log("for the 404", |l| l.contains(" 404 "));
    let logs = relay.logs();
    for line in &logs {
        assert!(!line.contains(id), "a log line contains the channel id: {line}");
        assert!(!line.contains("payload-9c2e"), "a log line contains the payload: {line}");
    }
}

#[test]
fn health_and_root_report_link_and_inbox_counts() {
    let relay = Relay::start(&[]);
    assert_eq!(relay.post("/inbox/one", b"a", &[]).status, 200);
    assert_eq!(relay.post("/inbox/two", b"bc", &[]).status, 200);
    let _waiting = relay.spawn_get("/link/l");
    relay.wait_parked(1);
    let (response, text) = relay.health();
    assert_eq!(response.status, 200, "{text}");
    assert_eq!(json_number(&text, "inboxes"), Some(2), "{text}");
    assert_eq!(json_number(&text, "links"), Some(1), "{text}");
    assert_eq!(json_number(&text, "messages"), Some(2), "{text}");
    assert_eq!(json_number(&text, "bytes"), Some(3), "{text}");
    let root = relay.get("/").text();
    assert!(root.contains("1 waiting, 2 messages held, 1 /link ids, 2 /inbox ids"), "{root}");
    assert_eq!(relay.send(b"DELETE /inbox/one HTTP/1.1\r\nHost: x\r\n\r\n").status, 200);
    let (_, text) = relay.health();
    assert_eq!(json_number(&text, "messages"), Some(1), "acknowledged bodies are not held: {text}");
    assert_eq!(json_number(&text, "inboxes"), Some(2), "the ack keeps the entry: {text}");
}
