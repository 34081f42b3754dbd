//! `/link/{id}`: the synchronous one-to-one hand-off (protocol §2), black-box.

mod common;

use std::time::{Duration, Instant};

use common::{get_request, now_ms, Relay, Response};

/// A relay whose waiters give up after `link` (short enough for tests that end in a timeout,
/// long enough that a loaded machine never times a working hand-off out).
fn relay(link: &str) -> Relay {
    Relay::start(&["--link-timeout", link])
}

fn assert_delivered(receiver: &Response, body: &[u8]) {
    assert_eq!(receiver.status, 200, "receiver: {receiver}");
    receiver.assert_framing(false);
    assert_eq!(receiver.body, body, "receiver: {receiver}");
}

fn assert_confirmed(sender: &Response) {
    assert_eq!(sender.status, 200, "sender: {sender}");
    sender.assert_framing(false);
    assert!(sender.body.is_empty(), "sender's 200 has a body: {sender}");
}

fn assert_link_timeout(response: &Response, at_least: Duration) {
    response.assert_error(408);
    assert!(response.text().contains("--link-timeout"), "{response}");
    assert!(response.elapsed >= at_least, "408 came too early: {response}");
    assert!(response.elapsed < Duration::from_secs(5), "408 came too late: {response}");
}

#[test]
fn consumer_first() {
    let relay = relay("10s");
    let receiver = relay.spawn_get("/link/c1");
    relay.wait_parked(1);
    let sender =
        relay.post("/link/c1", b"hello receiver", &[("Content-Type", "application/x-test")]);
    assert_confirmed(&sender);
    let receiver = receiver.join().unwrap();
    assert_delivered(&receiver, b"hello receiver");
    assert_eq!(receiver.header("content-type"), Some("application/x-test"), "{receiver}");
    assert_eq!(receiver.header_count("content-type"), 1, "{receiver}");
    relay.wait_parked(0);
}

#[test]
fn producer_first() {
    let relay = relay("10s");
    let sender =
        relay.spawn_post("/link/p1", b"{\"k\":1}", &[("Content-Type", "application/json")]);
    relay.wait_parked(1);
    let receiver = relay.get("/link/p1");
    assert_delivered(&receiver, b"{\"k\":1}");
    assert_eq!(receiver.header("content-type"), Some("application/json"));
    assert_confirmed(&sender.join().unwrap());
    relay.wait_parked(0);
}

#[test]
fn receivers_are_served_first_come_first_served() {
    let relay = relay("10s");
    let mut receivers = Vec::new();
    for n in 1..=3 {
        receivers.push(relay.spawn_get("/link/fifo-r"));
        relay.wait_parked(n);
    }
    for body in ["m1", "m2", "m3"] {
        assert_confirmed(&relay.post("/link/fifo-r", body.as_bytes(), &[]));
    }
    for (receiver, body) in receivers.into_iter().zip(["m1", "m2", "m3"]) {
        assert_delivered(&receiver.join().unwrap(), body.as_bytes());
    }
}

#[test]
fn senders_are_served_first_come_first_served() {
    let relay = relay("10s");
    let mut senders = Vec::new();
    for (n, body) in [(1, "m1"), (2, "m2"), (3, "m3")] {
        senders.push(relay.spawn_post("/link/fifo-s", body.as_bytes(), &[]));
        relay.wait_parked(n);
    }
    for body in ["m1", "m2", "m3"] {
        assert_delivered(&relay.get("/link/fifo-s"), body.as_bytes());
    }
    for sender in senders {
        assert_confirmed(&sender.join().unwrap());
    }
}

#[test]
fn one_message_goes_to_exactly_one_receiver() {
    let relay = relay("2s");
    let first = relay.spawn_get("/link/once");
    let second = relay.spawn_get("/link/once");
    relay.wait_parked(2);
    assert_confirmed(&relay.post("/link/once", b"only once", &[]));
    // The other receiver still waits: one parked request is left.
    relay.wait_parked(1);
    let responses = [first.join().unwrap(), second.join().unwrap()];
    let delivered: Vec<_> = responses.iter().filter(|r| r.status == 200).collect();
    assert_eq!(delivered.len(), 1, "{responses:?}");
    assert_eq!(delivered[0].body, b"only once");
    let timed_out: Vec<_> = responses.iter().filter(|r| r.status != 200).collect();
    assert_eq!(timed_out.len(), 1, "{responses:?}");
    assert_link_timeout(timed_out[0], Duration::from_millis(1900));
}

#[test]
fn no_content_type_when_the_sender_sent_none() {
    let relay = relay("10s");
    let receiver = relay.spawn_get("/link/plain");
    relay.wait_parked(1);
    assert_confirmed(&relay.post("/link/plain", b"raw bytes \x00\xff", &[]));
    let receiver = receiver.join().unwrap();
    assert_delivered(&receiver, b"raw bytes \x00\xff");
    assert_eq!(receiver.header("content-type"), None, "{receiver}");
}

#[test]
fn metadata_headers_describe_the_counterpart() {
    let relay = Relay::start(&["--link-timeout", "10s", "--peer-address", "show"]);
    let receiver = relay.spawn_get("/link/meta");
    relay.wait_parked(1);
    let before = now_ms();
    let sender = relay.post("/link/meta", b"m", &[]);
    let receiver = receiver.join().unwrap();
    let after = now_ms();
    assert_confirmed(&sender);
    assert_delivered(&receiver, b"m");

    assert_eq!(receiver.header("x-real-ip"), Some("127.0.0.1"), "{receiver}");
    assert_eq!(sender.header("x-real-ip"), Some("127.0.0.1"), "{sender}");
    assert_eq!(
        receiver.header("x-real-port"),
        Some(sender.local_port.to_string().as_str()),
        "{receiver}"
    );
    assert_eq!(
        sender.header("x-real-port"),
        Some(receiver.local_port.to_string().as_str()),
        "{sender}"
    );
    assert_eq!(receiver.header("httprelay-method"), Some("POST"), "{receiver}");
    assert_eq!(sender.header("httprelay-method"), Some("GET"), "{sender}");

    let ms = |r: &Response, name: &str| -> u64 {
        let value = r.header(name).unwrap_or_else(|| panic!("no {name}: {r}"));
        let ms: u64 = value.parse().unwrap_or_else(|_| panic!("{name} is not a number: {r}"));
        assert!(ms + 60_000 > before && ms < after + 60_000, "{name} is not near now: {r}");
        ms
    };
    let receiver_time = ms(&receiver, "httprelay-time");
    let receiver_your_time = ms(&receiver, "httprelay-your-time");
    let sender_time = ms(&sender, "httprelay-time");
    let sender_your_time = ms(&sender, "httprelay-your-time");
    // Each side's own arrival, as the two responses tell it, agrees.
    assert_eq!(receiver_your_time, sender_time);
    assert_eq!(receiver_time, sender_your_time);
    // The receiver arrived (and parked) before the sender.
    assert!(receiver_your_time <= receiver_time, "{receiver}");
    // The sender arrived between `before` and `after` (to the millisecond).
    assert!(receiver_time >= before && receiver_time <= after, "{receiver}");
    // No query on either side: no HttpRelay-Query.
    assert_eq!(receiver.header("httprelay-query"), None, "{receiver}");
    assert_eq!(sender.header("httprelay-query"), None, "{sender}");
}

/// By default (`--peer-address hide`) neither side learns the other's address: no `X-Real-IP`
/// or `X-Real-Port` at all, not an empty or made-up one; the rest of the metadata stays.
#[test]
fn the_peer_address_is_hidden_by_default() {
    for args in [&[][..], &["--peer-address", "hide"][..]] {
        let relay = Relay::start(args);
        let receiver = relay.spawn_get("/link/hidden");
        relay.wait_parked(1);
        let sender = relay.post("/link/hidden?k=v", b"m", &[]);
        let receiver = receiver.join().unwrap();
        assert_confirmed(&sender);
        assert_delivered(&receiver, b"m");
        for (answer, method) in [(&receiver, "POST"), (&sender, "GET")] {
            assert_eq!(answer.header_count("x-real-ip"), 0, "{answer}");
            assert_eq!(answer.header_count("x-real-port"), 0, "{answer}");
            assert_eq!(answer.header("httprelay-method"), Some(method), "{answer}");
            assert!(answer.header("httprelay-time").is_some(), "{answer}");
            assert!(answer.header("httprelay-your-time").is_some(), "{answer}");
        }
        assert_eq!(receiver.header("httprelay-query"), Some("k=v"), "{receiver}");
    }
}

#[test]
fn relay_query_drops_secrets_and_sorts_keys() {
    let relay = relay("10s");
    let receiver = relay.spawn_get("/link/query?r=9");
    relay.wait_parked(1);
    let sender = relay.post("/link/query?b=2&wsecret=x&a=1&seqid=3", b"q", &[]);
    assert_confirmed(&sender);
    let receiver = receiver.join().unwrap();
    assert_delivered(&receiver, b"q");
    assert_eq!(receiver.header("httprelay-query"), Some("a=1&b=2"), "{receiver}");
    assert_eq!(sender.header("httprelay-query"), Some("r=9"), "{sender}");

    let receiver = relay.spawn_get("/link/query2");
    relay.wait_parked(1);
    let sender = relay.post("/link/query2?wsecret=x&seqid=3", b"q2", &[]);
    assert_confirmed(&sender);
    let receiver = receiver.join().unwrap();
    assert_delivered(&receiver, b"q2");
    assert_eq!(receiver.header("httprelay-query"), None, "{receiver}");
}

/// httprelay.io drops `wsecret` and `seqid` whatever their case (issue 12).
#[test]
fn relay_query_drops_seqid_and_wsecret_in_any_case() {
    let relay = relay("10s");
    let receiver = relay.spawn_get("/link/query-case");
    relay.wait_parked(1);
    let sender = relay.post("/link/query-case?b=2&a=hello%20world&A=x&SEQID=4&WSecret=", b"q", &[]);
    assert_confirmed(&sender);
    let receiver = receiver.join().unwrap();
    assert_delivered(&receiver, b"q");
    assert_eq!(receiver.header("httprelay-query"), Some("A=x&a=hello+world&b=2"), "{receiver}");
}

#[test]
fn write_secret_claims_the_id_for_senders() {
    let relay = relay("10s");
    let handoff = |sender_path: &str, headers: &[(&str, &str)], body: &[u8]| {
        let receiver = relay.spawn_get("/link/claimed");
        relay.wait_parked(1);
        assert_confirmed(&relay.post(sender_path, body, headers));
        assert_delivered(&receiver.join().unwrap(), body);
        relay.wait_parked(0);
    };
    let refused = |sender_path: &str, headers: &[(&str, &str)]| {
        let response = relay.post(sender_path, b"intruder", headers);
        response.assert_error(401);
        assert!(response.elapsed < Duration::from_secs(2), "401 was not at once: {response}");
    };
    // The first sender with a secret claims the id (and receivers need none).
    handoff("/link/claimed?wsecret=s1", &[], b"one");
    refused("/link/claimed", &[]);
    refused("/link/claimed?wsecret=wrong", &[]);
    refused("/link/claimed", &[("HttpRelay-WSecret", "wrong")]);
    // The query wins over the header.
    refused("/link/claimed?wsecret=wrong", &[("HttpRelay-WSecret", "s1")]);
    handoff("/link/claimed", &[("HttpRelay-WSecret", "s1")], b"two");
    handoff("/link/claimed?wsecret=s1", &[("HttpRelay-WSecret", "wrong")], b"three");
    // A refused sender parked nothing and left no message behind: the next receiver gets the
    // next accepted message, not one of the refused ones.
    handoff("/link/claimed?wsecret=s1", &[], b"four");
}

#[test]
fn lone_receiver_and_lone_sender_time_out() {
    let relay = relay("1s");
    let receiver = relay.spawn_get("/link/alone-r");
    let sender = relay.spawn_post("/link/alone-s", b"nobody", &[]);
    assert_link_timeout(&receiver.join().unwrap(), Duration::from_millis(900));
    assert_link_timeout(&sender.join().unwrap(), Duration::from_millis(900));
    relay.wait_parked(0);
    let (_, health) = relay.health();
    assert_eq!(common::json_number(&health, "messages"), Some(0), "{health}");
}

#[test]
fn head_is_405_and_consumes_nothing() {
    let relay = relay("10s");
    let sender = relay.spawn_post("/link/headed", b"still here", &[]);
    relay.wait_parked(1);
    let head = relay.send(b"HEAD /link/headed HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(head.status, 405, "{head}");
    head.assert_framing(true);
    head.assert_allow(&["GET", "POST"]);
    relay.wait_parked(1);
    assert_delivered(&relay.get("/link/headed"), b"still here");
    assert_confirmed(&sender.join().unwrap());
}

#[test]
fn receiver_that_left_is_skipped_once_noticed() {
    let relay = relay("10s");
    let gone = relay.open(&get_request("/link/left"));
    relay.wait_parked(1);
    drop(gone);
    // The relay notices the closed waiting connection by itself, within about a second.
    let noticed = Instant::now();
    relay.wait_parked(0);
    assert!(noticed.elapsed() < Duration::from_secs(3), "took {:?}", noticed.elapsed());
    let receiver = relay.spawn_get("/link/left");
    relay.wait_parked(1);
    assert_confirmed(&relay.post("/link/left", b"not lost", &[]));
    assert_delivered(&receiver.join().unwrap(), b"not lost");
}

#[test]
fn receiver_that_left_just_before_the_post_does_not_swallow_the_message() {
    let relay = relay("10s");
    let gone = relay.open(&get_request("/link/left2"));
    relay.wait_parked(1);
    let receiver = relay.spawn_get("/link/left2");
    relay.wait_parked(2);
    drop(gone);
    // No waiting for the relay to notice: it must check again before delivering.
    let sender = relay.post("/link/left2", b"not lost either", &[]);
    assert_confirmed(&sender);
    assert_delivered(&receiver.join().unwrap(), b"not lost either");
}

#[test]
fn message_of_a_sender_that_left_is_still_delivered() {
    let relay = relay("10s");
    let sender = relay.open(&common::post_request(
        "/link/orphan",
        b"left behind",
        &[("Content-Type", "text/x-orphan")],
    ));
    relay.wait_parked(1);
    drop(sender);
    // The relay notices the sender left (it is no longer parked) but keeps its message.
    relay.wait_parked(0);
    let (_, health) = relay.health();
    assert_eq!(common::json_number(&health, "messages"), Some(1), "{health}");
    let receiver = relay.get("/link/orphan");
    assert_delivered(&receiver, b"left behind");
    assert_eq!(receiver.header("content-type"), Some("text/x-orphan"));
    relay.wait_gauge("messages", 0);
}

#[test]
fn ids_are_separate_decoded_and_exclude_the_query() {
    let relay = relay("10s");
    // A message on /link/a is not visible on /link/b: both stay parked.
    let sender_a = relay.spawn_post("/link/a", b"for a", &[]);
    relay.wait_parked(1);
    let receiver_b = relay.spawn_get("/link/b");
    relay.wait_parked(2);
    assert_confirmed(&relay.post("/link/b", b"for b", &[]));
    assert_delivered(&receiver_b.join().unwrap(), b"for b");
    assert_delivered(&relay.get("/link/a"), b"for a");
    assert_confirmed(&sender_a.join().unwrap());
    relay.wait_parked(0);

    // /link/a%62 is /link/ab.
    let sender = relay.spawn_post("/link/a%62", b"decoded", &[]);
    relay.wait_parked(1);
    assert_delivered(&relay.get("/link/ab"), b"decoded");
    assert_confirmed(&sender.join().unwrap());

    // The query is not part of the id.
    let sender = relay.spawn_post("/link/q?x=1", b"queried", &[]);
    relay.wait_parked(1);
    assert_delivered(&relay.get("/link/q?y=2"), b"queried");
    assert_confirmed(&sender.join().unwrap());
}

#[test]
fn fifty_hand_offs_in_parallel() {
    // A hundred connections at once from one address: the per-client caps are not the subject.
    let limits = ["--max-connections-per-ip", "0", "--rate-per-ip", "0"];
    let relay = Relay::start(&[&["--link-timeout", "15s"][..], &limits[..]].concat());
    let mut threads = Vec::new();
    for n in 0..50 {
        let body = format!("message number {n}");
        let path = format!("/link/parallel-{n}");
        threads.push((n, relay.spawn_get(&path), relay.spawn_post(&path, body.as_bytes(), &[])));
    }
    for (n, receiver, sender) in threads {
        let receiver = receiver.join().unwrap();
        let sender = sender.join().unwrap();
        assert_delivered(&receiver, format!("message number {n}").as_bytes());
        assert_confirmed(&sender);
    }
    relay.wait_parked(0);
}
