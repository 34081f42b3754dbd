//! `/inbox/{id}`: Pubky http-relay 0.7's store and forward with acknowledgement (protocol §3),
//! black-box.

mod common;

use std::net::TcpStream;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{get_request, json_number, read_response, request, Relay, Response, WAIT_CAP};

/// A relay whose inbox waiters give up after `timeout`.
fn relay(timeout: &str) -> Relay {
    Relay::start(&["--inbox-timeout", timeout])
}

fn delete(relay: &Relay, path: &str) -> Response {
    relay.send(&request("DELETE", path, &[], b""))
}

fn head(relay: &Relay, path: &str) -> Response {
    relay.send(&request("HEAD", path, &[], b""))
}

/// Something the relay answers at once is answered far below any timeout in these tests.
const AT_ONCE: Duration = Duration::from_secs(3);

fn assert_at_once(response: &Response) {
    assert!(response.elapsed < AT_ONCE, "answered late (not at once): {response}");
}

/// POST stored the message: 200 at once.
fn assert_stored(response: &Response) {
    assert_eq!(response.status, 200, "POST: {response}");
    response.assert_framing(false);
    assert_at_once(response);
}

/// A GET that returned the message `body`.
fn assert_message(response: &Response, body: &[u8]) {
    assert_eq!(response.status, 200, "GET: {response}");
    response.assert_framing(false);
    assert_eq!(response.body, body, "GET: {response}");
}

/// `/ack` said `want` (`true` or `false`).
fn assert_ack(response: &Response, want: &str) {
    assert_eq!(response.status, 200, "/ack: {response}");
    response.assert_framing(false);
    assert_eq!(response.text().trim(), want, "/ack: {response}");
    assert_at_once(response);
}

/// A 404 answered at once (no live message).
fn assert_no_message(response: &Response) {
    response.assert_error(404);
    assert_at_once(response);
}

/// A 408 after `--inbox-timeout` of about `timeout`.
fn assert_inbox_timeout(response: &Response, timeout: Duration) {
    response.assert_error(408);
    assert!(response.text().starts_with("Request timed out"), "{response}");
    assert!(response.text().contains("--inbox-timeout"), "{response}");
    assert!(
        response.elapsed >= timeout - Duration::from_millis(50),
        "408 came before --inbox-timeout: {response}"
    );
    assert!(
        response.elapsed < timeout + Duration::from_secs(4),
        "408 came far too late: {response}"
    );
}

/// Waits until `/health` shows `n` parked requests, failing at once (with the response) if one
/// of `pending`, which should be among them, was answered instead of parking.
fn wait_parked_pending(relay: &Relay, n: u64, pending: &[JoinHandle<Response>]) {
    let deadline = Instant::now() + WAIT_CAP;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Some(i) = pending.iter().position(|h| h.is_finished()) {
            panic!("waiter {i} was answered instead of parking (see its response on join); /health: {last}");
        }
        let (_, text) = relay.health();
        if json_number(&text, "parked") == Some(n) {
            return;
        }
        last = text;
        thread::sleep(Duration::from_millis(10));
    }
    panic!("/health never showed \"parked\":{n} within {WAIT_CAP:?}; last: {last}");
}

/// Joins every handle.
fn join_all(handles: Vec<JoinHandle<Response>>) -> Vec<Response> {
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn post_answers_200_at_once_with_nobody_waiting() {
    // Default --inbox-timeout (25 s): the POST must not wait for anyone.
    let relay = Relay::start(&[]);
    let post = relay.post("/inbox/p1", b"token", &[]);
    assert_stored(&post);
    assert!(post.elapsed < Duration::from_secs(2), "POST waited: {post}");
    relay.wait_gauge("messages", 1);
    relay.wait_parked(0);
}

#[test]
fn get_twice_returns_the_same_message() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/twice", b"the message", &[]));
    for _ in 0..2 {
        let get = relay.get("/inbox/twice");
        assert_message(&get, b"the message");
        assert_at_once(&get);
    }
    let (_, text) = relay.health();
    assert_eq!(json_number(&text, "messages"), Some(1), "{text}");
}

#[test]
fn head_has_a_length_but_no_body_and_keeps_the_message() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/head", b"twelve bytes", &[("Content-Type", "text/plain")]));
    let head = head(&relay, "/inbox/head");
    assert_eq!(head.status, 200, "{head}");
    head.assert_framing(true);
    assert_eq!(head.header("content-length"), Some("12"), "{head}");
    assert_eq!(head.header("content-type"), Some("text/plain"), "{head}");
    assert_at_once(&head);
    let get = relay.get("/inbox/head");
    assert_message(&get, b"twelve bytes");
    assert_ack(&relay.get("/inbox/head/ack"), "false");
}

#[test]
fn content_type_passes_through() {
    let relay = relay("10s");
    let json = "application/json; charset=utf-8";
    assert_stored(&relay.post("/inbox/ct", b"{\"a\":1}", &[("Content-Type", json)]));
    let get = relay.get("/inbox/ct");
    assert_message(&get, b"{\"a\":1}");
    assert_eq!(get.header("content-type"), Some(json), "{get}");
    assert_eq!(get.header_count("content-type"), 1, "{get}");
}

#[test]
fn content_type_defaults_to_octet_stream() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/noct", b"\x00\x01\xfe\xff", &[]));
    let get = relay.get("/inbox/noct");
    assert_message(&get, b"\x00\x01\xfe\xff");
    assert_eq!(get.header("content-type"), Some("application/octet-stream"), "{get}");
    assert_eq!(get.header_count("content-type"), 1, "{get}");
}

#[test]
fn empty_body_is_a_message() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/empty", b"", &[]));
    let get = relay.get("/inbox/empty");
    assert_message(&get, b"");
    assert_eq!(get.header("content-length"), Some("0"), "{get}");
    assert_at_once(&get);
    assert_ack(&relay.get("/inbox/empty/ack"), "false");
}

#[test]
fn second_post_replaces_the_first() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/over", b"first", &[("Content-Type", "text/a")]));
    assert_stored(&relay.post("/inbox/over", b"second", &[("Content-Type", "text/b")]));
    let get = relay.get("/inbox/over");
    assert_message(&get, b"second");
    assert_eq!(get.header("content-type"), Some("text/b"), "{get}");
    let (_, text) = relay.health();
    assert_eq!(json_number(&text, "messages"), Some(1), "{text}");
    assert_eq!(json_number(&text, "bytes"), Some(6), "{text}");
}

#[test]
fn ack_and_delete_in_every_state() {
    let relay = relay("10s");
    // Before any POST.
    assert_no_message(&relay.get("/inbox/states/ack"));
    assert_no_message(&delete(&relay, "/inbox/states"));
    // Stored.
    assert_stored(&relay.post("/inbox/states", b"m", &[]));
    assert_ack(&relay.get("/inbox/states/ack"), "false");
    // Acknowledged.
    let deleted = delete(&relay, "/inbox/states");
    assert_eq!(deleted.status, 200, "{deleted}");
    deleted.assert_framing(false);
    assert_at_once(&deleted);
    assert_ack(&relay.get("/inbox/states/ack"), "true");
    // protocol §9: a DELETE of an already acknowledged message is 200, and it stays acknowledged.
    let again = delete(&relay, "/inbox/states");
    assert_eq!(again.status, 200, "{again}");
    assert_ack(&relay.get("/inbox/states/ack"), "true");
    // The body is gone once acknowledged.
    let (_, text) = relay.health();
    assert_eq!(json_number(&text, "messages"), Some(0), "{text}");
    assert_eq!(json_number(&text, "bytes"), Some(0), "{text}");
    // HEAD on /ack answers like GET, without the body.
    let head = head(&relay, "/inbox/states/ack");
    assert_eq!(head.status, 200, "{head}");
    head.assert_framing(true);
    assert_eq!(head.header("content-length"), Some("4"), "{head}");
}

#[test]
fn get_after_delete_waits_and_times_out() {
    let timeout = Duration::from_secs(1);
    let relay = relay("1s");
    assert_stored(&relay.post("/inbox/gone", b"secret body", &[]));
    assert_eq!(delete(&relay, "/inbox/gone").status, 200);
    let get = relay.get("/inbox/gone");
    assert_inbox_timeout(&get, timeout);
    assert!(!get.text().contains("secret body"), "{get}");
    let head = head(&relay, "/inbox/gone");
    assert_eq!(head.status, 408, "{head}");
    assert!(head.body.is_empty(), "{head}");
}

#[test]
fn await_without_a_message_is_404_at_once() {
    let relay = Relay::start(&[]);
    assert_no_message(&relay.get("/inbox/aw0/await"));
    relay.wait_parked(0);
}

#[test]
fn await_when_already_acked_is_200_at_once() {
    let relay = Relay::start(&[]);
    assert_stored(&relay.post("/inbox/aw1", b"m", &[]));
    assert_eq!(delete(&relay, "/inbox/aw1").status, 200);
    let awaited = relay.get("/inbox/aw1/await");
    assert_eq!(awaited.status, 200, "{awaited}");
    awaited.assert_framing(false);
    assert!(awaited.body.is_empty(), "{awaited}");
    assert_at_once(&awaited);
}

#[test]
fn await_waits_for_the_delete() {
    let relay = Relay::start(&[]);
    assert_stored(&relay.post("/inbox/aw2", b"m", &[]));
    let waiter = relay.spawn_get("/inbox/aw2/await");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&waiter));
    // The message is still served while someone awaits its acknowledgement.
    assert_message(&relay.get("/inbox/aw2"), b"m");
    assert!(!waiter.is_finished(), "/await answered before any DELETE");
    assert_eq!(delete(&relay, "/inbox/aw2").status, 200);
    let awaited = waiter.join().unwrap();
    assert_eq!(awaited.status, 200, "{awaited}");
    awaited.assert_framing(false);
    assert!(awaited.body.is_empty(), "{awaited}");
    relay.wait_parked(0);
}

#[test]
fn await_times_out_without_an_ack() {
    let relay = relay("1s");
    assert_stored(&relay.post("/inbox/aw3", b"m", &[]));
    let awaited = relay.get("/inbox/aw3/await");
    assert_inbox_timeout(&awaited, Duration::from_secs(1));
    // Nothing changed: still stored and not acknowledged.
    assert_ack(&relay.get("/inbox/aw3/ack"), "false");
    assert_message(&relay.get("/inbox/aw3"), b"m");
}

#[test]
fn await_is_404_when_the_message_is_replaced() {
    let relay = Relay::start(&[]);
    assert_stored(&relay.post("/inbox/aw4", b"old", &[]));
    let waiter = relay.spawn_get("/inbox/aw4/await");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&waiter));
    assert_stored(&relay.post("/inbox/aw4", b"new", &[]));
    let awaited = waiter.join().unwrap();
    awaited.assert_error(404);
    assert!(awaited.text().contains("replaced"), "{awaited}");
    assert_ack(&relay.get("/inbox/aw4/ack"), "false");
    assert_message(&relay.get("/inbox/aw4"), b"new");
    relay.wait_parked(0);
}

#[test]
fn post_after_ack_resets_the_inbox() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/reset", b"one", &[]));
    assert_eq!(delete(&relay, "/inbox/reset").status, 200);
    assert_ack(&relay.get("/inbox/reset/ack"), "true");
    assert_stored(&relay.post("/inbox/reset", b"two", &[]));
    assert_ack(&relay.get("/inbox/reset/ack"), "false");
    let get = relay.get("/inbox/reset");
    assert_message(&get, b"two");
    assert_at_once(&get);
}

#[test]
fn message_expires_after_its_ttl() {
    let relay = Relay::start(&["--inbox-ttl", "2s", "--inbox-timeout", "10s"]);
    let posted = Instant::now();
    assert_stored(&relay.post("/inbox/ttl", b"short-lived", &[]));
    assert_message(&relay.get("/inbox/ttl"), b"short-lived");
    assert_ack(&relay.get("/inbox/ttl/ack"), "false");
    // An /await waiter hears 404 when the TTL runs out (protocol §9).
    let waiter = relay.spawn_get("/inbox/ttl/await");
    let awaited = waiter.join().unwrap();
    let expired_after = posted.elapsed();
    awaited.assert_error(404);
    assert!(
        expired_after >= Duration::from_millis(1900),
        "expired before --inbox-ttl: after {expired_after:?}: {awaited}"
    );
    assert!(
        expired_after < Duration::from_secs(6),
        "expired far after --inbox-ttl: after {expired_after:?}"
    );
    assert_no_message(&relay.get("/inbox/ttl/ack"));
    assert_no_message(&delete(&relay, "/inbox/ttl"));
    let (_, text) = relay.health();
    assert_eq!(json_number(&text, "messages"), Some(0), "{text}");
    // A GET now waits for a new message.
    let getter = relay.spawn_get("/inbox/ttl");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&getter));
    assert_stored(&relay.post("/inbox/ttl", b"fresh", &[]));
    assert_message(&getter.join().unwrap(), b"fresh");
}

#[test]
fn ack_does_not_extend_the_ttl() {
    let ttl = Duration::from_secs(3);
    let relay = Relay::start(&["--inbox-ttl", "3s"]);
    let posted = Instant::now();
    assert_stored(&relay.post("/inbox/ttl-ack", b"m", &[]));
    // Time is the subject here: acknowledge half-way through the TTL.
    thread::sleep((posted + ttl / 2).saturating_duration_since(Instant::now()));
    let deleted = delete(&relay, "/inbox/ttl-ack");
    assert_eq!(deleted.status, 200, "DELETE half-way through the TTL: {deleted}");
    let acked = Instant::now();
    assert_ack(&relay.get("/inbox/ttl-ack/ack"), "true");
    // Poll /ack until the message is gone.
    let gone = loop {
        let ack = relay.get("/inbox/ttl-ack/ack");
        if ack.status == 404 {
            ack.assert_error(404);
            break Instant::now();
        }
        assert_ack(&ack, "true");
        assert!(posted.elapsed() < Duration::from_secs(15), "the message never expired");
        thread::sleep(Duration::from_millis(50));
    };
    // Had the ack extended the TTL, the message would live until at least `acked + ttl`.
    assert!(
        gone < acked + ttl - Duration::from_millis(200),
        "the message lived {:?} after its ack (TTL {ttl:?}, acked {:?} after the POST): \
         the ack extended the TTL",
        gone - acked,
        acked - posted
    );
    assert!(
        gone - posted >= ttl - Duration::from_millis(100),
        "expired before its TTL: {:?}",
        gone - posted
    );
}

#[test]
fn consumer_first_then_post() {
    let relay = relay("10s");
    let getter = relay.spawn_get("/inbox/cf");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&getter));
    assert_stored(&relay.post(
        "/inbox/cf",
        b"late message",
        &[("Content-Type", "application/x-test")],
    ));
    let get = getter.join().unwrap();
    assert_message(&get, b"late message");
    assert_eq!(get.header("content-type"), Some("application/x-test"), "{get}");
    relay.wait_parked(0);
    // Delivering to a waiter did not consume it.
    assert_message(&relay.get("/inbox/cf"), b"late message");
}

#[test]
fn concurrent_waiters_all_receive_the_message() {
    let relay = relay("10s");
    let waiters = vec![relay.spawn_get("/inbox/both"), relay.spawn_get("/inbox/both")];
    wait_parked_pending(&relay, 2, &waiters);
    assert_stored(&relay.post("/inbox/both", b"for everyone", &[]));
    for get in join_all(waiters) {
        assert_message(&get, b"for everyone");
    }
    relay.wait_parked(0);
    assert_message(&relay.get("/inbox/both"), b"for everyone");
}

#[test]
fn eleventh_get_waiter_is_503() {
    let relay = relay("10s");
    let waiters: Vec<_> = (0..10).map(|_| relay.spawn_get("/inbox/cap")).collect();
    wait_parked_pending(&relay, 10, &waiters);
    let refused = relay.get("/inbox/cap");
    refused.assert_error(503);
    assert_at_once(&refused);
    let retry: u64 = refused
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {refused}"))
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not seconds: {refused}"));
    assert!(retry >= 1, "{refused}");
    // The cap is per id: another inbox still parks.
    let other = relay.spawn_get("/inbox/cap-other");
    wait_parked_pending(&relay, 11, std::slice::from_ref(&other));
    assert_stored(&relay.post("/inbox/cap", b"ten", &[]));
    for get in join_all(waiters) {
        assert_message(&get, b"ten");
    }
    assert_stored(&relay.post("/inbox/cap-other", b"one", &[]));
    assert_message(&other.join().unwrap(), b"one");
    relay.wait_parked(0);
}

#[test]
fn eleventh_await_waiter_is_503_independently_of_get_waiters() {
    let relay = relay("10s");
    // Ten GET waiters fill the GET list...
    let getters: Vec<_> = (0..10).map(|_| relay.spawn_get("/inbox/acap")).collect();
    wait_parked_pending(&relay, 10, &getters);
    // ...which does not refuse an /await (no message yet: 404, not 503).
    assert_no_message(&relay.get("/inbox/acap/await"));
    assert_stored(&relay.post("/inbox/acap", b"m", &[]));
    for get in join_all(getters) {
        assert_message(&get, b"m");
    }
    // Ten /await waiters fill the /await list; the eleventh is refused.
    let awaiters: Vec<_> = (0..10).map(|_| relay.spawn_get("/inbox/acap/await")).collect();
    wait_parked_pending(&relay, 10, &awaiters);
    let refused = relay.get("/inbox/acap/await");
    refused.assert_error(503);
    assert_at_once(&refused);
    assert!(refused.header("retry-after").is_some(), "{refused}");
    // A GET is not refused by the full /await list.
    assert_message(&relay.get("/inbox/acap"), b"m");
    assert_eq!(delete(&relay, "/inbox/acap").status, 200);
    for awaited in join_all(awaiters) {
        assert_eq!(awaited.status, 200, "{awaited}");
    }
    relay.wait_parked(0);
}

#[test]
fn waiters_whose_clients_left_do_not_count() {
    let relay = relay("20s");
    let gone: Vec<TcpStream> = (0..10).map(|_| relay.open(&get_request("/inbox/left"))).collect();
    relay.wait_parked(10);
    drop(gone);
    relay.wait_parked(0);
    // Ten new live waiters all park (none is 503)...
    let waiters: Vec<_> = (0..10).map(|_| relay.spawn_get("/inbox/left")).collect();
    wait_parked_pending(&relay, 10, &waiters);
    // ...and get the message.
    assert_stored(&relay.post("/inbox/left", b"still delivered", &[]));
    for get in join_all(waiters) {
        assert_message(&get, b"still delivered");
    }
    relay.wait_parked(0);
}

#[test]
fn inbox_and_link_ids_are_separate() {
    let relay = Relay::start(&["--inbox-timeout", "10s", "--link-timeout", "10s"]);
    assert_stored(&relay.post("/inbox/shared", b"inbox body", &[]));
    // A /link receiver on the same id does not see the inbox message: it waits.
    let receiver = relay.spawn_get("/link/shared");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&receiver));
    let sender = relay.post("/link/shared", b"link body", &[]);
    assert_eq!(sender.status, 200, "{sender}");
    let received = receiver.join().unwrap();
    assert_eq!(received.status, 200, "{received}");
    assert_eq!(received.body, b"link body", "{received}");
    // The link hand-off left the inbox alone.
    assert_message(&relay.get("/inbox/shared"), b"inbox body");
    assert_ack(&relay.get("/inbox/shared/ack"), "false");
    // And an inbox waiter is not served by a /link sender.
    let getter = relay.spawn_get("/inbox/only-link");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&getter));
    let link_sender = relay.spawn_post("/link/only-link", b"x", &[]);
    relay.wait_parked(2);
    assert!(!getter.is_finished(), "a /link POST answered an /inbox GET");
    assert_stored(&relay.post("/inbox/only-link", b"inbox", &[]));
    assert_message(&getter.join().unwrap(), b"inbox");
    let link_receiver = relay.get("/link/only-link");
    assert_eq!(link_receiver.body, b"x", "{link_receiver}");
    assert_eq!(link_sender.join().unwrap().status, 200);
}

#[test]
fn ids_named_ack_and_await_route_as_inboxes() {
    let relay = relay("10s");
    assert_stored(&relay.post("/inbox/ack", b"inbox named ack", &[]));
    assert_stored(&relay.post("/inbox/await", b"inbox named await", &[]));
    assert_message(&relay.get("/inbox/ack"), b"inbox named ack");
    assert_message(&relay.get("/inbox/await"), b"inbox named await");
    assert_ack(&relay.get("/inbox/ack/ack"), "false");
    assert_ack(&relay.get("/inbox/await/ack"), "false");
    assert_eq!(delete(&relay, "/inbox/ack").status, 200);
    assert_ack(&relay.get("/inbox/ack/ack"), "true");
    assert_ack(&relay.get("/inbox/await/ack"), "false");
    let awaited = relay.get("/inbox/ack/await");
    assert_eq!(awaited.status, 200, "{awaited}");
    assert_at_once(&awaited);
    let waiter = relay.spawn_get("/inbox/await/await");
    wait_parked_pending(&relay, 1, std::slice::from_ref(&waiter));
    assert_eq!(delete(&relay, "/inbox/await").status, 200);
    assert_eq!(waiter.join().unwrap().status, 200);
    // Neither touched an inbox named "x" whose endpoints share the suffixes.
    assert_no_message(&relay.get("/inbox/x/ack"));
}

#[test]
fn pubky_flow_polls_through_408s_and_never_meets_429_or_5xx() {
    let relay = relay("1s");
    let addr = relay.addr();
    let path = "/inbox/pubky-flow";
    let token: &[u8] = b"\x8f\x02pretend-ciphertext\x00\xff\x10";
    let (saw_408, polls_408) = mpsc::channel::<()>();

    let app = thread::spawn(move || {
        let mut statuses = Vec::new();
        for _ in 0..30 {
            let get = common::exchange(addr, &get_request(path));
            statuses.push(get.status);
            match get.status {
                408 => {
                    let _ = saw_408.send(());
                    continue; // poll again at once
                }
                200 => {
                    let deleted = common::exchange(addr, &request("DELETE", path, &[], b""));
                    statuses.push(deleted.status);
                    return (statuses, Some(get), Some(deleted));
                }
                _ => return (statuses, Some(get), None),
            }
        }
        (statuses, None, None)
    });

    // The signer: posts after the app has polled through two 408s, then awaits the ack.
    for n in 1..=2 {
        polls_408
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the app never saw 408 number {n}"));
    }
    let mut signer_statuses = Vec::new();
    let post = relay.post(path, token, &[]);
    signer_statuses.push(post.status);
    assert_stored(&post);
    let awaited = relay.get(&format!("{path}/await"));
    signer_statuses.push(awaited.status);

    let (app_statuses, got, deleted) = app.join().unwrap();
    let got = got.unwrap_or_else(|| panic!("the app never got the token: {app_statuses:?}"));
    assert_message(&got, token);
    let deleted = deleted.unwrap_or_else(|| panic!("the app got {got}"));
    assert_eq!(deleted.status, 200, "DELETE: {deleted}");
    assert_eq!(awaited.status, 200, "signer's /await: {awaited}");
    let timeouts = app_statuses.iter().filter(|&&s| s == 408).count();
    assert!(timeouts >= 2, "app statuses: {app_statuses:?}");
    for status in app_statuses.iter().chain(&signer_statuses) {
        assert!(
            *status != 429 && *status < 500,
            "app saw {app_statuses:?}, signer saw {signer_statuses:?}"
        );
    }
    assert_ack(&relay.get(&format!("{path}/ack")), "true");
}

/// HEAD on an empty inbox parks like GET and gets the message's length without its body.
#[test]
fn head_waits_like_get() {
    let relay = relay("10s");
    let mut stream = relay.open(&request("HEAD", "/inbox/headwait", &[], b""));
    relay.wait_parked(1);
    assert_stored(&relay.post("/inbox/headwait", b"abc", &[]));
    let head = read_response(&mut stream);
    assert_eq!(head.status, 200, "{head}");
    head.assert_framing(true);
    assert_eq!(head.header("content-length"), Some("3"), "{head}");
}
