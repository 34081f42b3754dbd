//! The HTTP/1.1 front (protocol §1, §4): routing, strict parsing, limits, deadlines, framing.

mod common;

use std::io::{Read, Write};
use std::thread;
use std::time::Duration;

use common::sockopt::segments_received;
use common::{connect, get_request, post_request, read_response, Relay, Response};

fn assert_alive(relay: &Relay) {
    let (health, text) = relay.health();
    assert_eq!(health.status, 200, "{health}");
    assert!(text.contains("\"status\":\"ok\""), "{health}");
}

#[test]
fn unknown_paths_are_404() {
    let relay = Relay::start(&[]);
    for path in ["/nope", "/link/a/b", "/link/", "/link", "/healthz", "/link/a/"] {
        let response = relay.get(path);
        response.assert_error(404);
        assert!(response.header("allow").is_none(), "{path}: {response}");
    }
}

#[test]
fn wrong_method_is_405_with_allow() {
    let relay = Relay::start(&[]);
    let put = relay.send(b"PUT /link/x HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 0\r\n\r\n");
    put.assert_error(405);
    put.assert_allow(&["GET", "POST"]);
    let post = relay.post("/health", b"", &[]);
    post.assert_error(405);
    post.assert_allow(&["GET", "HEAD"]);
    let delete = relay.send(b"DELETE / HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    delete.assert_error(405);
    delete.assert_allow(&["GET", "HEAD"]);
    // The refused PUT parked nothing.
    relay.wait_parked(0);
}

/// Requests that are 400 whatever the limits, each with what it gets wrong.
const BAD_REQUESTS: &[(&str, &[u8])] = &[
    ("garbage request line", b"GARBAGE\r\n\r\n"),
    ("request line without version", b"GET /health\r\nHost: x\r\n\r\n"),
    ("request line with two spaces", b"GET  /health HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("version not HTTP", b"GET /health FTP/1.1\r\nHost: x\r\n\r\n"),
    ("space before colon", b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n"),
    ("header without colon", b"GET /health HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n"),
    ("obs-fold", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: one\r\n  two\r\n\r\n"),
    ("NUL in a header value", b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n"),
    (
        "Content-Length with Transfer-Encoding",
        b"POST /link/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "two different Content-Lengths",
        b"POST /link/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    ("negative Content-Length", b"POST /link/x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ("non-numeric Content-Length", b"POST /link/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello"),
    ("HTTP/1.1 without Host", b"GET /health HTTP/1.1\r\n\r\n"),
    ("bad percent-encoding in the id", b"GET /link/%zz HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("truncated percent-encoding in the id", b"GET /link/ab%4 HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("target not a path", b"GET health HTTP/1.1\r\nHost: x\r\n\r\n"),
];

#[test]
fn malformed_requests_are_400_and_do_not_wedge_the_relay() {
    let relay = Relay::start(&["--link-timeout", "2s"]);
    for (what, raw) in BAD_REQUESTS {
        let response = relay.send(raw);
        assert_eq!(response.status, 400, "{what}: {response}");
        response.assert_error(400);
    }
    // Nothing reached the registry.
    relay.wait_parked(0);
    assert_alive(&relay);
}

#[test]
fn id_longer_than_max_id_is_400() {
    let relay = Relay::start(&["--max-id", "16"]);
    let response = relay.get(&format!("/link/{}", "a".repeat(17)));
    response.assert_error(400);
    assert!(response.text().contains("--max-id"), "{response}");
    // Decoded length counts: 17 percent-encoded bytes are 17 bytes.
    relay.get(&format!("/link/{}", "%41".repeat(17))).assert_error(400);
    // 16 bytes is fine (a sender parks rather than being refused).
    let sender = relay.spawn_post(&format!("/link/{}", "%41".repeat(16)), b"sixteen", &[]);
    relay.wait_parked(1);
    let receiver = relay.get(&format!("/link/{}", "A".repeat(16)));
    assert_eq!(receiver.status, 200, "{receiver}");
    assert_eq!(receiver.body, b"sixteen");
    assert_eq!(sender.join().unwrap().status, 200);
}

/// Ids and content types longer than a request carries inline (256 and 128 bytes) go through
/// as shorter ones do, and a sender's empty `Content-Type` stays an empty one, not none.
#[test]
fn long_ids_and_content_types_go_through() {
    let relay = Relay::start(&["--max-id", "1000"]);
    let content_type = format!("text/plain; x={}", "y".repeat(200));
    let typed = [("Content-Type", content_type.as_str())];
    let id = "i".repeat(1000);
    let sender = relay.spawn_post(&format!("/link/{id}"), b"long", &typed);
    relay.wait_parked(1);
    let receiver = relay.get(&format!("/link/{id}"));
    assert_eq!((receiver.status, receiver.text()), (200, "long".into()), "{receiver}");
    assert_eq!(receiver.header("content-type"), Some(content_type.as_str()));
    assert_eq!(sender.join().unwrap().status, 200);
    let stored = relay.post(&format!("/inbox/{}", "%41".repeat(257)), b"kept", &typed);
    assert_eq!(stored.status, 200, "{stored}");
    let fetched = relay.get(&format!("/inbox/{}", "A".repeat(257)));
    assert_eq!((fetched.status, fetched.text()), (200, "kept".into()), "{fetched}");
    assert_eq!(fetched.header("content-type"), Some(content_type.as_str()));
    let sender = relay.spawn_post("/link/e", b"e", &[("Content-Type", "")]);
    relay.wait_parked(1);
    let receiver = relay.get("/link/e");
    assert_eq!(
        (receiver.header("content-type"), receiver.header_count("content-type")),
        (Some(""), 1)
    );
    assert_eq!(sender.join().unwrap().status, 200);
}

#[test]
fn head_over_max_head_is_431() {
    let relay = Relay::start(&["--max-head", "1K"]);
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(2000));
    let response = relay.send(raw.as_bytes());
    response.assert_error(431);
    assert!(response.text().contains("--max-head"), "{response}");
    // A head just under the limit is fine.
    let raw = format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(900));
    assert_eq!(relay.send(raw.as_bytes()).status, 200);
    assert_alive(&relay);
}

#[test]
fn more_headers_than_max_headers_is_400() {
    let relay = Relay::start(&["--max-headers", "5"]);
    let mut raw = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for n in 0..10 {
        raw.push_str(&format!("X-H{n}: v\r\n"));
    }
    raw.push_str("\r\n");
    let response = relay.send(raw.as_bytes());
    response.assert_error(400);
    assert!(response.text().contains("--max-headers"), "{response}");
    // Exactly five is fine.
    let ok = "GET /health HTTP/1.1\r\nHost: x\r\nX-1: v\r\nX-2: v\r\nX-3: v\r\nX-4: v\r\n\r\n";
    assert_eq!(relay.send(ok.as_bytes()).status, 200);
}

#[test]
fn http2_request_line_is_505() {
    let relay = Relay::start(&[]);
    relay.send(b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n").assert_error(505);
    assert_alive(&relay);
}

#[test]
fn body_over_max_body_is_413() {
    let relay = Relay::start(&["--max-body", "1K", "--link-timeout", "2s"]);
    let response = relay.post("/link/big", &[b'x'; 2000], &[]);
    response.assert_error(413);
    assert!(response.text().contains("--max-body"), "{response}");
    relay.wait_parked(0);
    // Exactly the limit is accepted (the sender parks).
    let sender = relay.spawn_post("/link/big", &[b'y'; 1024], &[]);
    relay.wait_parked(1);
    let receiver = relay.get("/link/big");
    assert_eq!(receiver.status, 200, "{receiver}");
    assert_eq!(receiver.body, vec![b'y'; 1024]);
    assert_eq!(sender.join().unwrap().status, 200);
}

#[test]
fn huge_content_length_is_413_at_once_without_reading_the_body() {
    let relay = Relay::start(&[]);
    let response = relay
        .send(b"POST /link/huge HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000000000\r\n\r\n");
    response.assert_error(413);
    assert!(response.elapsed < Duration::from_secs(2), "{response}");
    assert_alive(&relay);
}

/// A client (or a proxy passing one on) that streams a body of some MiB past the limit can
/// write all of it, and reads the 413 and a clean close: the relay drains what follows its
/// answer instead of closing on unread input, which makes the kernel reset the connection (a
/// proxy still writing the body then loses the answer: Caddy did, one run in 25).
#[test]
fn a_body_streamed_far_past_the_limit_is_drained_and_ends_in_413() {
    let relay = Relay::start(&[]);
    for chunked in [false, true] {
        let body = vec![b'x'; 4 << 20];
        let framing = if chunked {
            format!("Transfer-Encoding: chunked\r\n\r\n{:x}\r\n", body.len())
        } else {
            format!("Content-Length: {}\r\n\r\n", body.len())
        };
        let mut stream = relay.connect();
        let mut writer = stream.try_clone().unwrap();
        let sender = thread::spawn(move || {
            write!(writer, "POST /inbox/streamed HTTP/1.1\r\nHost: x\r\n{framing}")?;
            writer.write_all(&body)?;
            writer.shutdown(std::net::Shutdown::Write)
        });
        let mut raw = Vec::new();
        let end = stream.read_to_end(&mut raw);
        let sent = sender.join().unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 413 "), "chunked {chunked}: {text}");
        assert!(sent.is_ok(), "chunked {chunked}: the body could not be sent whole: {sent:?}");
        assert!(end.is_ok(), "chunked {chunked}: the 413 ended in {end:?}");
        assert!(stream.take_error().unwrap().is_none(), "chunked {chunked}: reset after the 413");
    }
    assert_alive(&relay);
}

#[test]
fn chunked_body_over_max_body_is_413() {
    let relay = Relay::start(&["--max-body", "1K"]);
    let mut raw =
        b"POST /link/bigchunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    // Two chunks of 600 bytes: each is under the limit, together they are over it.
    for _ in 0..2 {
        raw.extend_from_slice(b"258\r\n");
        raw.extend_from_slice(&[b'c'; 600]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    relay.send(&raw).assert_error(413);
    // One chunk announcing more than the limit.
    let mut raw =
        b"POST /link/bigchunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    raw.extend_from_slice(b"800\r\n");
    raw.extend_from_slice(&[b'c'; 2048]);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    relay.send(&raw).assert_error(413);
    relay.wait_parked(0);
    assert_alive(&relay);
}

#[test]
fn incomplete_head_is_408_after_head_timeout() {
    let relay = Relay::start(&["--head-timeout", "1s"]);
    let response = relay.send(b"GET /health HTTP/1.1\r\nHo");
    response.assert_error(408);
    assert!(response.text().contains("--head-timeout"), "{response}");
    assert!(response.elapsed >= Duration::from_millis(900), "{response}");
    assert!(response.elapsed < Duration::from_secs(5), "{response}");
    assert_alive(&relay);
}

#[test]
fn incomplete_body_is_408_after_body_timeout() {
    let relay = Relay::start(&["--body-timeout", "1s"]);
    let response =
        relay.send(b"POST /link/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
    response.assert_error(408);
    assert!(response.text().contains("--body-timeout"), "{response}");
    assert!(response.elapsed >= Duration::from_millis(900), "{response}");
    assert!(response.elapsed < Duration::from_secs(5), "{response}");
    // The partial body was not taken as a message.
    relay.wait_parked(0);
    let (_, health) = relay.health();
    assert_eq!(common::json_number(&health, "messages"), Some(0), "{health}");
}

#[test]
fn expect_100_continue_is_honoured() {
    let relay = Relay::start(&["--link-timeout", "10s"]);
    let receiver = relay.spawn_get("/link/continue");
    relay.wait_parked(1);
    let body = vec![b'z'; 3000];
    let head = format!(
        "POST /link/continue HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    let mut stream = relay.open(head.as_bytes());
    let mut interim = [0u8; 25];
    stream.read_exact(&mut interim).expect("read 100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(&body).unwrap();
    let sender = read_response(&mut stream);
    assert_eq!(sender.status, 200, "{sender}");
    assert!(sender.body.is_empty(), "{sender}");
    let receiver = receiver.join().unwrap();
    assert_eq!(receiver.status, 200, "{receiver}");
    assert_eq!(receiver.body, body);
}

#[test]
fn expect_100_continue_with_oversized_body_is_413_without_continue() {
    let relay = Relay::start(&["--max-body", "1K"]);
    let response = relay.send(
        b"POST /link/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert!(response.raw.starts_with(b"HTTP/1.1 413 "), "{response}");
    assert!(!String::from_utf8_lossy(&response.raw).contains("100 Continue"), "{response}");
    response.assert_error(413);
    assert!(response.elapsed < Duration::from_secs(2), "{response}");
}

#[test]
fn chunked_body_is_delivered_intact() {
    let relay = Relay::start(&["--link-timeout", "10s"]);
    let receiver = relay.spawn_get("/link/chunked");
    relay.wait_parked(1);
    let mut stream = relay.connect();
    // Split at awkward places: inside a size line, an extension, chunk data, a CRLF, the trailer.
    let pieces: &[&[u8]] = &[
        b"POST /link/chunked HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-chunks\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5;ext=",
        b"\"v\"\r\nhel",
        b"lo\r",
        b"\nA\r\n, chunked ",
        b"\r\n1\r\n!\r\n0\r\nX-Trail",
        b"er: yes\r\n",
        b"\r\n",
    ];
    for piece in pieces {
        stream.write_all(piece).unwrap();
        stream.flush().unwrap();
        // Only to make separate TCP segments more likely; nothing waits on it.
        thread::sleep(Duration::from_millis(20));
    }
    let sender = read_response(&mut stream);
    assert_eq!(sender.status, 200, "{sender}");
    let receiver = receiver.join().unwrap();
    assert_eq!(receiver.status, 200, "{receiver}");
    assert_eq!(receiver.text(), "hello, chunked !");
    assert_eq!(receiver.header("content-type"), Some("text/x-chunks"));
}

#[test]
fn http10_without_host_works() {
    let relay = Relay::start(&[]);
    let response = relay.send(b"GET /health HTTP/1.0\r\n\r\n");
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    assert!(response.text().contains("\"status\":\"ok\""), "{response}");
}

#[test]
fn absolute_form_target_works() {
    let relay = Relay::start(&[]);
    let response = relay.send(b"GET http://relay.test/health HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(response.header("content-type"), Some("application/json"), "{response}");
    assert!(response.text().contains("\"status\":\"ok\""), "{response}");
}

#[test]
fn every_response_closes_and_has_a_content_length() {
    let relay = Relay::start(&[]);
    let check = |r: Response, head_only: bool| r.assert_framing(head_only);
    check(relay.get("/"), false);
    check(relay.get("/health"), false);
    check(relay.get("/nope"), false);
    check(relay.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"), true);
    check(relay.send(b"GARBAGE\r\n\r\n"), false);
}

#[test]
fn bad_chunked_framing_is_400() {
    let relay = Relay::start(&[]);
    let head = "POST /link/badchunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (what, body) in [
        ("size not hex", "zz\r\nhello\r\n0\r\n\r\n"),
        ("data not followed by CRLF", "5\r\nhelloXX0\r\n\r\n"),
        ("size line without CRLF", "5 x\nhello\r\n0\r\n\r\n"),
    ] {
        let response = relay.send(format!("{head}{body}").as_bytes());
        assert_eq!(response.status, 400, "{what}: {response}");
        response.assert_error(400);
    }
    relay.wait_parked(0);
    assert_alive(&relay);
}

#[test]
fn trickled_head_still_times_out() {
    // The head deadline is for the whole head, not per read: a slow-loris client that sends a
    // byte now and then is cut off at --head-timeout all the same.
    let relay = Relay::start(&["--head-timeout", "1s"]);
    let started = std::time::Instant::now();
    let mut stream = relay.connect();
    let writer = stream.try_clone().unwrap();
    let trickle = thread::spawn(move || {
        let mut writer = writer;
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: abcdefghijklmnopqrstuvwxyz" {
            if writer.write_all(&[*byte]).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let response = common::read_response_since(&mut stream, started);
    response.assert_error(408);
    assert!(response.elapsed >= Duration::from_millis(900), "{response}");
    assert!(response.elapsed < Duration::from_secs(3), "{response}");
    drop(stream);
    trickle.join().unwrap();
    assert_alive(&relay);
}

#[test]
fn client_vanishing_mid_body_leaves_nothing_behind() {
    let relay = Relay::start(&[]);
    let stream = relay
        .open(b"POST /link/vanish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b");
    drop(stream);
    let vanished = relay.open(b"GET /link/vanish HTTP/1.1\r\nHo");
    drop(vanished);
    // The workers notice at once; nothing was parked or stored.
    relay.wait_gauge("connections", 1);
    let (_, health) = relay.health();
    assert_eq!(common::json_number(&health, "parked"), Some(0), "{health}");
    assert_eq!(common::json_number(&health, "messages"), Some(0), "{health}");
    assert_alive(&relay);
}

#[test]
fn pipelined_requests_get_one_answer_then_close() {
    let relay = Relay::start(&[]);
    let response = relay.send(
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    assert_alive(&relay);
}

/// A reply's end of stream leaves on the segment of its last bytes (protocol §2.1, "closed
/// gracefully"), whichever thread wrote it: besides the handshake's SYN-ACK and the
/// acknowledgement of its request, every segment a client receives carries data. A FIN of its
/// own would be a third.
#[test]
fn a_reply_s_end_of_stream_comes_on_its_last_segment() {
    let relay = Relay::start(&[]);
    let addr = relay.addr();
    let read = |what: &str, stream: &mut std::net::TcpStream| {
        let response = read_response(stream);
        let (all, with_data) = segments_received(stream);
        assert!(
            all - with_data <= 2,
            "{what}: {all} segments received, {with_data} with data\n{response}"
        );
        response.status
    };
    let mut health = connect(addr);
    health.write_all(&get_request("/health")).unwrap();
    assert_eq!(read("a worker's answer", &mut health), 200);
    let mut receiver = connect(addr);
    receiver.write_all(&get_request("/link/fin")).unwrap();
    relay.wait_parked(1);
    let mut sender = connect(addr);
    sender.write_all(&post_request("/link/fin", b"token", &[])).unwrap();
    assert_eq!(read("a delivery", &mut receiver), 200);
    drop(receiver);
    assert_eq!(read("the sender's answer", &mut sender), 200);
}
