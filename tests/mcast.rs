//! `/mcast/{id}`: httprelay.io's buffered one-to-many channel (protocol §11), black-box.

mod common;

use std::time::Duration;

use common::{request, Relay, Response};

fn relay(args: &[&str]) -> Relay {
    Relay::start(&[&["--link-timeout", "10s"][..], args, &common::NO_CLIENT_LIMITS[..]].concat())
}

/// POSTs `body` to `path` and returns the number it was kept as.
fn post(relay: &Relay, path: &str, body: &str) -> u64 {
    let response = relay.post(path, body.as_bytes(), &[("Content-Type", "text/x-mcast")]);
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    assert!(response.body.is_empty(), "{response}");
    seq_of(&response)
}

fn seq_of(response: &Response) -> u64 {
    let seq = response.header("httprelay-seqid").unwrap_or_else(|| panic!("no SeqId: {response}"));
    seq.parse().unwrap_or_else(|_| panic!("SeqId is not a number: {response}"))
}

/// Asserts `response` carries message `seq`, `body`, and the cookie naming the next one on `id`.
fn assert_message(response: &Response, seq: u64, body: &str, id: &str) {
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    assert_eq!(response.text(), body, "{response}");
    assert_eq!(seq_of(response), seq, "{response}");
    assert_eq!(response.header("content-type"), Some("text/x-mcast"), "{response}");
    assert_eq!(response.header("httprelay-method"), Some("POST"), "{response}");
    let cookie = format!("SeqId={}; Path=/mcast/{id}; SameSite=None; Secure", seq + 1);
    assert_eq!(response.header("set-cookie"), Some(cookie.as_str()), "{response}");
}

/// A GET of `path` with a `Cookie` line.
fn with_cookie(path: &str, cookie: &str) -> Vec<u8> {
    request("GET", path, &[("Cookie", cookie)], b"")
}

#[test]
fn every_seqid_case() {
    let relay = relay(&[]);
    // None, and nothing written yet: wait for message 0.
    let early = relay.spawn_get("/mcast/cases");
    relay.wait_parked(1);
    assert_eq!(post(&relay, "/mcast/cases", "zero"), 0);
    assert_message(&early.join().unwrap(), 0, "zero", "cases");
    assert_eq!(post(&relay, "/mcast/cases", "one"), 1);
    assert_eq!(post(&relay, "/mcast/cases", "two"), 2);
    // None: the newest, at once.
    assert_message(&relay.get("/mcast/cases"), 2, "two", "cases");
    // Exact: that one; the name in any case.
    assert_message(&relay.get("/mcast/cases?SeqId=1"), 1, "one", "cases");
    assert_message(&relay.get("/mcast/cases?seqid=0"), 0, "zero", "cases");
    // Negative, or not a number (counts as 0): the oldest kept.
    assert_message(&relay.get("/mcast/cases?SeqId=-5"), 0, "zero", "cases");
    assert_message(&relay.get("/mcast/cases?SEQID=abc"), 0, "zero", "cases");
    // At next, and ahead of it: both wait for the next message, whatever its number.
    let at_next = relay.spawn_get("/mcast/cases?SeqId=3");
    let ahead = relay.spawn_get("/mcast/cases?SeqId=100");
    relay.wait_parked(2);
    assert_eq!(post(&relay, "/mcast/cases", "three"), 3);
    assert_message(&at_next.join().unwrap(), 3, "three", "cases");
    assert_message(&ahead.join().unwrap(), 3, "three", "cases");
    relay.wait_parked(0);
}

#[test]
fn behind_the_oldest_kept_gets_the_oldest() {
    // Room for two 4-byte bodies: the third POST evicts the first.
    let relay = relay(&["--mcast-retain", "8"]);
    for body in ["aaaa", "bbbb", "cccc"] {
        post(&relay, "/mcast/evict", body);
    }
    assert_message(&relay.get("/mcast/evict?SeqId=0"), 1, "bbbb", "evict");
    assert_message(&relay.get("/mcast/evict?SeqId=2"), 2, "cccc", "evict");
    let (_, health) = relay.health();
    assert_eq!(common::json_number(&health, "messages"), Some(2), "{health}");
    assert_eq!(common::json_number(&health, "bytes"), Some(8), "{health}");
    // The newest stays, whatever its size.
    post(&relay, "/mcast/evict", "a body longer than the retention");
    assert_message(
        &relay.get("/mcast/evict?SeqId=0"),
        3,
        "a body longer than the retention",
        "evict",
    );
    relay.wait_gauge("messages", 1);
}

#[test]
fn the_cookie_names_the_next_message_and_the_query_wins_over_it() {
    let relay = relay(&[]);
    post(&relay, "/mcast/cookie", "first");
    post(&relay, "/mcast/cookie", "second");
    let first = relay.get("/mcast/cookie?SeqId=0");
    assert_message(&first, 0, "first", "cookie");
    // The cookie as a browser sends it back: its name and value, before the attributes.
    let cookie = first.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    let second = relay.send(&with_cookie("/mcast/cookie", &format!("other=1; {cookie}")));
    assert_message(&second, 1, "second", "cookie");
    let cookie = second.header("set-cookie").unwrap().split(';').next().unwrap().to_string();
    assert_eq!(cookie, "SeqId=2");
    // Caught up: the next read waits for the next message.
    let waiting = relay.spawn_request(with_cookie("/mcast/cookie", &cookie));
    relay.wait_parked(1);
    post(&relay, "/mcast/cookie", "third");
    assert_message(&waiting.join().unwrap(), 2, "third", "cookie");
    // The query wins over the cookie.
    assert_message(
        &relay.send(&with_cookie("/mcast/cookie?SeqId=0", "SeqId=2")),
        0,
        "first",
        "cookie",
    );
    // An id that needs escaping has its path escaped in the cookie.
    post(&relay, "/mcast/a%20b", "spaced");
    let spaced = relay.get("/mcast/a%20b");
    assert_eq!(
        spaced.header("set-cookie"),
        Some("SeqId=1; Path=/mcast/a%20b; SameSite=None; Secure")
    );
}

#[test]
fn every_waiting_reader_gets_the_message_and_it_stays() {
    let relay = relay(&[]);
    let readers: Vec<_> = (0..5).map(|_| relay.spawn_get("/mcast/fan")).collect();
    relay.wait_parked(5);
    post(&relay, "/mcast/fan", "to all");
    for reader in readers {
        assert_message(&reader.join().unwrap(), 0, "to all", "fan");
    }
    assert_message(&relay.get("/mcast/fan"), 0, "to all", "fan");
    let metrics = relay.get("/metrics").text();
    assert!(metrics.contains("handoff_handoffs_total{protocol=\"mcast\"} 6"), "{metrics}");
    assert!(metrics.contains("handoff_mcasts 1"), "{metrics}");
}

#[test]
fn a_channel_expires_its_idle_time_after_its_last_post() {
    let relay = relay(&["--mcast-idle", "1s"]);
    post(&relay, "/mcast/idle", "old");
    // Forgotten: its messages are gone, and its numbers start again at 0.
    relay.wait_gauge("mcasts", 0);
    relay.wait_gauge("messages", 0);
    let reader = relay.spawn_get("/mcast/idle?SeqId=0");
    relay.wait_parked(1);
    assert_eq!(post(&relay, "/mcast/idle", "new"), 0);
    assert_message(&reader.join().unwrap(), 0, "new", "idle");
}

#[test]
fn kept_messages_are_charged_to_the_memory_budget() {
    let relay = relay(&["--max-memory", "4K", "--max-memory-per-ip", "0", "--mcast-retain", "1M"]);
    let body = "x".repeat(1000);
    // Each kept message holds about 1.5 KiB of the 4 KiB: the third does not fit.
    post(&relay, "/mcast/full", &body);
    post(&relay, "/mcast/full", &body);
    let refused = relay.post("/mcast/full", body.as_bytes(), &[]);
    refused.assert_error(503);
    assert!(refused.text().contains("--max-memory"), "{refused}");
    // Readers still read what is kept.
    assert_eq!(seq_of(&relay.get("/mcast/full")), 1);
    // With a small retention the same relay keeps taking messages: the evicted give back.
    let relay =
        self::relay(&["--max-memory", "4K", "--max-memory-per-ip", "0", "--mcast-retain", "1000"]);
    for n in 0..6 {
        assert_eq!(post(&relay, "/mcast/rolling", &body), n);
    }
}

#[test]
fn a_write_secret_claims_the_channel_for_producers() {
    let relay = relay(&[]);
    post(&relay, "/mcast/claimed?wsecret=s1", "mine");
    relay.post("/mcast/claimed", b"intruder", &[]).assert_error(401);
    relay.post("/mcast/claimed?wsecret=no", b"intruder", &[]).assert_error(401);
    assert_eq!(post(&relay, "/mcast/claimed?wsecret=s1", "mine too"), 1);
    let reader = relay.get("/mcast/claimed?SeqId=1");
    assert_message(&reader, 1, "mine too", "claimed");
    // The secret is not shown to readers.
    assert_eq!(reader.header("httprelay-query"), None, "{reader}");
}

#[test]
fn other_methods_are_405_and_cross_origin_readers_may_send_the_cookie() {
    let relay = relay(&[]);
    for method in ["HEAD", "DELETE", "PUT"] {
        let response = relay.send(&request(method, "/mcast/x", &[], b""));
        assert_eq!(response.status, 405, "{response}");
        response.assert_allow(&["GET", "POST"]);
    }
    post(&relay, "/mcast/x", "cors");
    let origin = [("Origin", "https://app.example"), ("Cookie", "SeqId=0")];
    let response = relay.send(&request("GET", "/mcast/x", &origin, b""));
    assert_message(&response, 0, "cors", "x");
    assert_eq!(response.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(response.header("access-control-allow-credentials"), Some("true"));
    let exposed = response.header("access-control-expose-headers").unwrap_or("");
    assert!(exposed.contains("HttpRelay-SeqId"), "{response}");
}

#[test]
fn a_waiting_reader_times_out_with_408() {
    let relay = Relay::start(&["--link-timeout", "1s"]);
    let alone = relay.get("/mcast/quiet");
    alone.assert_error(408);
    assert!(alone.elapsed >= Duration::from_millis(900), "{alone}");
    relay.wait_gauge("mcasts", 0);
}
