//! `/sync/{id}`: httprelay.io's two-way exchange (protocol §10), black-box.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{request, Relay, Response};

/// A relay whose waiting sides give up after `link`, and that names each side's address to the
/// other (`--peer-address show`), as httprelay.io does, so the answers carry all its metadata.
fn relay(link: &str) -> Relay {
    Relay::start(&["--link-timeout", link, "--peer-address", "show"])
}

/// Asserts `side` got `body` (its counterpart's) with the counterpart's method and content type.
fn assert_got(side: &Response, body: &[u8], method: &str, content_type: Option<&str>) {
    assert_eq!(side.status, 200, "{side}");
    side.assert_framing(false);
    assert_eq!(side.body, body, "{side}");
    assert_eq!(side.header("httprelay-method"), Some(method), "{side}");
    assert_eq!(side.header("content-type"), content_type, "{side}");
    assert_eq!(side.header("x-real-ip"), Some("127.0.0.1"), "{side}");
}

fn sync(method: &str, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Vec<u8> {
    request(method, path, headers, body)
}

#[test]
fn two_sides_swap_bodies_in_either_order_whatever_their_methods() {
    let relay = relay("10s");
    for (first, second) in [("POST", "PUT"), ("GET", "POST"), ("DELETE", "PATCH")] {
        let path = format!("/sync/swap-{first}");
        let a = relay.spawn_request(sync(first, &path, b"from a", &[("Content-Type", "text/x-a")]));
        relay.wait_parked(1);
        let b = relay.send(&sync(second, &path, b"from b", &[("Content-Type", "text/x-b")]));
        let a = a.join().unwrap();
        assert_got(&a, b"from b", second, Some("text/x-b"));
        assert_got(&b, b"from a", first, Some("text/x-a"));
        // Each side's arrival, as both answers tell it, agrees.
        assert_eq!(a.header("httprelay-your-time"), b.header("httprelay-time"), "{a}\n{b}");
        assert_eq!(a.header("httprelay-time"), b.header("httprelay-your-time"), "{a}\n{b}");
        assert_eq!(a.header("x-real-port"), Some(b.local_port.to_string().as_str()), "{a}");
        relay.wait_parked(0);
    }
}

#[test]
fn a_side_without_a_body_gives_its_counterpart_an_empty_200() {
    let relay = relay("10s");
    let getter = relay.spawn_request(sync("GET", "/sync/empty?k=v&wsecret=s", b"", &[]));
    relay.wait_parked(1);
    let poster = relay.send(&sync("POST", "/sync/empty", b"payload", &[]));
    assert_got(&poster, b"", "GET", None);
    assert_eq!(poster.header("content-length"), Some("0"), "{poster}");
    // wsecret claims nothing on /sync, and is not shown.
    assert_eq!(poster.header("httprelay-query"), Some("k=v"), "{poster}");
    assert_got(&getter.join().unwrap(), b"payload", "POST", None);
}

#[test]
fn a_head_side_gets_the_counterparts_headers_only() {
    let relay = relay("10s");
    let head = relay.spawn_request(sync("HEAD", "/sync/head", b"", &[]));
    relay.wait_parked(1);
    let post = relay.send(&sync("POST", "/sync/head", b"12345", &[]));
    assert_got(&post, b"", "HEAD", None);
    let head = head.join().unwrap();
    assert_eq!(head.status, 200, "{head}");
    head.assert_framing(true);
    assert_eq!(head.header("content-length"), Some("5"), "{head}");
}

#[test]
fn a_third_request_starts_a_new_pair() {
    let relay = relay("10s");
    let first = relay.spawn_request(sync("POST", "/sync/three", b"1", &[]));
    relay.wait_parked(1);
    let second = relay.send(&sync("POST", "/sync/three", b"2", &[]));
    assert_got(&second, b"1", "POST", None);
    assert_got(&first.join().unwrap(), b"2", "POST", None);
    // The pair is done: a third waits for a fourth, never joining the first two.
    let third = relay.spawn_request(sync("PUT", "/sync/three", b"3", &[]));
    relay.wait_parked(1);
    let fourth = relay.send(&sync("PUT", "/sync/three", b"4", &[]));
    assert_got(&fourth, b"3", "PUT", None);
    assert_got(&third.join().unwrap(), b"4", "PUT", None);
}

#[test]
fn a_side_that_left_before_the_pair_formed_takes_nothing() {
    let relay = relay("10s");
    // Left, and noticed while waiting.
    let gone = relay.open(&sync("POST", "/sync/left", b"from the leaver", &[]));
    relay.wait_parked(1);
    drop(gone);
    relay.wait_parked(0);
    let waiter = relay.spawn_request(sync("POST", "/sync/left", b"from the waiter", &[]));
    relay.wait_parked(1);
    let third = relay.send(&sync("POST", "/sync/left", b"from the third", &[]));
    assert_got(&third, b"from the waiter", "POST", None);
    assert_got(&waiter.join().unwrap(), b"from the third", "POST", None);
}

#[test]
fn a_side_that_left_just_before_its_counterpart_came_does_not_end_the_exchange() {
    let relay = relay("10s");
    let gone = relay.open(&sync("POST", "/sync/left2", b"from the leaver", &[]));
    relay.wait_parked(1);
    drop(gone);
    // No waiting for the relay to notice: the leaver takes nothing, and whichever of the two
    // others the relay pairs with it first waits for the other.
    let second = relay.spawn_request(sync("POST", "/sync/left2", b"from the second", &[]));
    let third = relay.send(&sync("POST", "/sync/left2", b"from the third", &[]));
    assert_got(&third, b"from the second", "POST", None);
    assert_got(&second.join().unwrap(), b"from the third", "POST", None);
}

#[test]
fn a_lone_side_times_out_with_408() {
    let relay = relay("1s");
    let alone = relay.send(&sync("POST", "/sync/alone", b"nobody", &[]));
    alone.assert_error(408);
    assert!(alone.text().contains("--link-timeout"), "{alone}");
    assert!(alone.elapsed >= Duration::from_millis(900), "{alone}");
    relay.wait_parked(0);
    let (_, health) = relay.health();
    assert_eq!(common::json_number(&health, "messages"), Some(0), "{health}");
}

#[test]
fn other_methods_are_405_and_the_preflight_lists_the_allowed_ones() {
    let relay = relay("10s");
    let trace = relay.send(b"TRACE /sync/x HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    trace.assert_error(405);
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
    trace.assert_allow(&methods);
    let preflight = relay.send(
        b"OPTIONS /sync/x HTTP/1.1\r\nHost: relay.test\r\nOrigin: https://app.example\r\n\r\n",
    );
    assert_eq!(preflight.status, 204, "{preflight}");
    preflight.assert_allow(&methods);
    relay.wait_parked(0);
}

#[test]
fn a_drain_answers_a_waiting_side_503() {
    let mut relay = relay("10s");
    let waiting = relay.spawn_request(sync("POST", "/sync/drain", b"kept nowhere", &[]));
    relay.wait_parked(1);
    let status = Command::new("kill")
        .args(["-TERM", &relay.pid().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success());
    let waiting = waiting.join().unwrap();
    waiting.assert_error(503);
    assert_eq!(waiting.header("retry-after"), Some("1"), "{waiting}");
    let exit = relay.wait_exit(Duration::from_secs(2)).expect("still running 2 s after SIGTERM");
    assert!(exit.success(), "{exit}");
}

#[test]
fn sync_ids_are_their_own_name_space() {
    let relay = relay("10s");
    let link = relay.spawn_get("/link/shared");
    relay.wait_parked(1);
    let side = relay.spawn_request(sync("POST", "/sync/shared", b"for sync", &[]));
    relay.wait_parked(2);
    let other = relay.send(&sync("POST", "/sync/shared", b"other", &[]));
    assert_got(&other, b"for sync", "POST", None);
    assert_got(&side.join().unwrap(), b"other", "POST", None);
    assert_eq!(relay.post("/link/shared", b"for link", &[]).status, 200);
    assert_eq!(link.join().unwrap().body, b"for link");
}

/// By default (`--peer-address hide`) neither side learns the other's address: no `X-Real-IP`
/// or `X-Real-Port` at all; the rest of the metadata stays.
#[test]
fn the_peer_address_is_hidden_by_default() {
    let relay = Relay::start(&[]);
    let a = relay.spawn_request(sync("POST", "/sync/hidden", b"from a", &[]));
    relay.wait_parked(1);
    let b = relay.send(&sync("PUT", "/sync/hidden", b"from b", &[]));
    let a = a.join().unwrap();
    for (side, method) in [(&a, "PUT"), (&b, "POST")] {
        assert_eq!(side.status, 200, "{side}");
        assert_eq!(side.header("httprelay-method"), Some(method), "{side}");
        assert_eq!(side.header_count("x-real-ip"), 0, "{side}");
        assert_eq!(side.header_count("x-real-port"), 0, "{side}");
    }
}
