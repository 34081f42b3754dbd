mod common;

// Every limit of protocol §4, black-box: each test starts its own relay with the limit set low,
// walks up to it over raw TCP, checks the refusal (status, `Retry-After`, the `/health`
// "refused" counter) and that the relay serves again once the pressure is gone.
//
// Assumptions about the machine: IPv6 loopback (`::1`) with dual-stack sockets, and a
// descriptor limit (`ulimit -n`) of at least 4,200 for the test process and the relay it
// starts (this machine's default is 20,000); the 2,000-idle-connection test needs ~2,000 on
// each side.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    connect, exchange, get_request, handoff_binary, json_number, post_request, read_response,
    rss_kib, Relay, Response, NO_CLIENT_LIMITS, READ_TIMEOUT, WAIT_CAP,
};

// ---------------------------------------------------------------------------------------------
// Private helpers
// ---------------------------------------------------------------------------------------------

/// Tests that measure time or memory under load take this lock, so that they do not load the
/// (2-core) machine for each other while one of them is timing something.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The count of `reason` in the `"refused":{...}` object of a `/health` text.
fn refused(health: &str, reason: &str) -> u64 {
    let at = health
        .find("\"refused\":{")
        .unwrap_or_else(|| panic!("/health has no \"refused\" object: {health}"));
    json_number(&health[at..], reason)
        .unwrap_or_else(|| panic!("/health has no refused.{reason}: {health}"))
}

/// A top-level gauge of a `/health` text (the first occurrence of the key is the gauge).
fn gauge(health: &str, field: &str) -> u64 {
    json_number(health, field).unwrap_or_else(|| panic!("/health has no {field}: {health}"))
}

/// `GET /health` at `addr`, which must answer 200; the JSON text.
fn health_ok(addr: SocketAddr) -> String {
    let response = exchange(addr, &get_request("/health"));
    assert_eq!(response.status, 200, "/health is not 200: {response}");
    response.text()
}

/// Polls `/health` at `addr` until `pred` holds for its text; panics after [`WAIT_CAP`].
fn wait_health(addr: SocketAddr, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT_CAP;
    let mut last = String::new();
    while Instant::now() < deadline {
        // A poll closed at accept (a connection cap) is just not the state waited for.
        if let Some(response) = try_exchange(addr, &get_request("/health")) {
            let text = response.text();
            if pred(&text) {
                return text;
            }
            last = text;
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("/health never showed {what} within {WAIT_CAP:?}; last: {last}");
}

/// The `Retry-After` of a response, in whole seconds; panics if it is missing or not a number.
fn retry_after(response: &Response) -> u64 {
    let value =
        response.header("retry-after").unwrap_or_else(|| panic!("no Retry-After: {response}"));
    value.parse().unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {response}"))
}

/// Reads to end of stream; a reset ends the stream too. Panics if nothing ends it in time.
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return raw,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("no end of stream in time; got {:?}", String::from_utf8_lossy(&raw))
            }
            Err(_) => return raw,
        }
    }
}

/// Parses a complete response (a copy of the harness's private parser).
fn parse(raw: Vec<u8>, elapsed: Duration) -> Response {
    let show = || String::from_utf8_lossy(&raw).into_owned();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head: {:?}", show()));
    let head = std::str::from_utf8(&raw[..end]).expect("head is UTF-8").to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    assert!(parts.next().unwrap_or("").starts_with("HTTP/1."), "bad status line: {:?}", show());
    let status = parts.next().and_then(|s| s.parse().ok()).expect("status code");
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').expect("header line");
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    Response { status, reason, headers, body, raw, local_port: 0, elapsed }
}

/// Sends `raw` on a new connection: `None` if the relay closed it without a byte of response
/// (end of stream or reset), which is how a connection refused at accept looks.
fn try_exchange(addr: SocketAddr, raw: &[u8]) -> Option<Response> {
    let started = Instant::now();
    let mut stream = connect(addr);
    let _ = stream.write_all(raw);
    let bytes = read_all(&mut stream);
    (!bytes.is_empty()).then(|| parse(bytes, started.elapsed()))
}

/// Polls `GET /health` at `addr` until one is answered and `pred` holds for it; returns the
/// text and how many attempts were closed without an answer.
fn poll_until_served(addr: SocketAddr, pred: impl Fn(&str) -> bool) -> (String, u64) {
    let deadline = Instant::now() + WAIT_CAP;
    let mut unanswered = 0;
    let mut last = String::new();
    while Instant::now() < deadline {
        match try_exchange(addr, &get_request("/health")) {
            None => unanswered += 1,
            Some(response) => {
                let text = response.text();
                if pred(&text) {
                    return (text, unanswered);
                }
                last = text;
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    panic!("no /health matching within {WAIT_CAP:?} ({unanswered} unanswered); last: {last}");
}

/// Opens `n` connections that never send a byte.
fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            TcpStream::connect(addr).unwrap_or_else(|e| panic!("idle connection {i} of {n}: {e}"))
        })
        .collect()
}

/// One `/link` hand-off of `body` on `id`: receiver and sender on their own connections, both
/// answered 200, the receiver with the body.
fn hand_off(addr: SocketAddr, id: &str, body: &[u8]) {
    let path = format!("/link/{id}");
    let mut receiver = connect(addr);
    receiver.write_all(&get_request(&path)).expect("receiver writes");
    let mut sender = connect(addr);
    sender.write_all(&post_request(&path, body, &[])).expect("sender writes");
    // The receiver reads and closes first: the sender hears 200 once the receiver took the
    // message (protocol §2).
    let received = read_response(&mut receiver);
    drop(receiver);
    let sent = read_response(&mut sender);
    assert_eq!(sent.status, 200, "sender on {id}: {sent}");
    assert_eq!(received.status, 200, "receiver on {id}: {received}");
    assert_eq!(received.body, body, "receiver on {id}: {received}");
}

/// Whether the relay's process is still running (it did not exit within 50 ms).
fn running(relay: &mut Relay) -> bool {
    relay.wait_exit(Duration::from_millis(50)).is_none()
}

// ---------------------------------------------------------------------------------------------
// --rate-per-ip, --rate-per-id
// ---------------------------------------------------------------------------------------------

/// `--rate-per-ip 5`: five relay requests pass, the sixth gets 429 with a `Retry-After` of the
/// time to the next token (12 s at 5 a minute); `/` and `/health` are not charged.
#[test]
fn rate_per_ip_refuses_beyond_the_burst() {
    let relay = Relay::start(&["--rate-per-ip", "5"]);
    for i in 0..5 {
        let response = relay.post(&format!("/inbox/rate-{i}"), b"x", &[]);
        assert_eq!(response.status, 200, "request {} of 5: {response}", i + 1);
    }
    for _ in 0..10 {
        assert_eq!(relay.get("/").status, 200, "GET / is not charged");
        health_ok(relay.addr());
    }
    let refused_get = relay.get("/inbox/rate-0/ack");
    refused_get.assert_error(429);
    assert!(refused_get.text().contains("--rate-per-ip"), "{refused_get}");
    let wait = retry_after(&refused_get);
    assert!((1..=12).contains(&wait), "Retry-After {wait} for 5 a minute: {refused_get}");
    let refused_post = relay.post("/inbox/rate-new", b"x", &[]);
    refused_post.assert_error(429);
    assert!(retry_after(&refused_post) >= 1, "{refused_post}");
    // The refused POST stored nothing.
    let text = health_ok(relay.addr());
    assert_eq!(gauge(&text, "messages"), 5, "{text}");
    assert_eq!(refused(&text, "rate_per_ip"), 2, "{text}");
    assert_eq!(refused(&text, "rate_per_id"), 0, "{text}");
}

/// `--rate-per-id 3`: the fourth write (POST, DELETE) to one `/inbox` id gets 429; another id
/// is unaffected, and GETs on the limited id are not charged.
#[test]
fn rate_per_id_limits_writes_to_one_id_only() {
    let relay = Relay::start(&["--rate-per-id", "3"]);
    for i in 0..3 {
        let response = relay.post("/inbox/busy", format!("v{i}").as_bytes(), &[]);
        assert_eq!(response.status, 200, "write {} of 3: {response}", i + 1);
    }
    let refused_post = relay.post("/inbox/busy", b"v3", &[]);
    refused_post.assert_error(429);
    assert!(refused_post.text().contains("--rate-per-id"), "{refused_post}");
    let wait = retry_after(&refused_post);
    assert!((1..=20).contains(&wait), "Retry-After {wait} for 3 a minute: {refused_post}");
    // A DELETE is a write too.
    let refused_delete = relay.send(b"DELETE /inbox/busy HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    refused_delete.assert_error(429);
    assert!(retry_after(&refused_delete) >= 1, "{refused_delete}");
    // Reads of the limited id are not charged: more of them than the rate, all served.
    for i in 0..6 {
        let read = relay.get("/inbox/busy");
        assert_eq!(read.status, 200, "GET {} on the limited id: {read}", i + 1);
        assert_eq!(read.body, b"v2", "the refused POST replaced nothing: {read}");
    }
    let ack = relay.get("/inbox/busy/ack");
    assert_eq!((ack.status, ack.text().as_str()), (200, "false"), "{ack}");
    // Another id has its own bucket.
    for i in 0..3 {
        let other = relay.post("/inbox/quiet", b"q", &[]);
        assert_eq!(other.status, 200, "write {} to another id: {other}", i + 1);
    }
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "rate_per_id"), 2, "{text}");
    assert_eq!(refused(&text, "rate_per_ip"), 0, "{text}");
}

// ---------------------------------------------------------------------------------------------
// --max-parked-per-ip, --max-parked
// ---------------------------------------------------------------------------------------------

/// `--max-parked-per-ip 3`: three waiters park, the next gets 429 + `Retry-After`; once one
/// waiter's client leaves and `/health` shows it gone, a new one parks.
#[test]
fn max_parked_per_ip_refuses_the_next_waiter_until_one_leaves() {
    let relay = Relay::start(&["--max-parked-per-ip", "3", "--link-timeout", "60s"]);
    let mut waiters: Vec<TcpStream> =
        (0..3).map(|i| relay.open(&get_request(&format!("/link/pp-{i}")))).collect();
    relay.wait_parked(3);
    let refused_link = relay.get("/link/pp-3");
    refused_link.assert_error(429);
    assert!(refused_link.text().contains("--max-parked-per-ip"), "{refused_link}");
    assert!(retry_after(&refused_link) >= 1, "{refused_link}");
    // An /inbox waiter counts against the same cap.
    let refused_inbox = relay.get("/inbox/pp-inbox");
    refused_inbox.assert_error(429);
    assert!(retry_after(&refused_inbox) >= 1, "{refused_inbox}");
    let text = health_ok(relay.addr());
    assert_eq!(gauge(&text, "parked"), 3, "{text}");
    assert_eq!(refused(&text, "parked_per_ip"), 2, "{text}");

    drop(waiters.remove(0));
    relay.wait_parked(2);
    waiters.push(relay.open(&get_request("/link/pp-4")));
    relay.wait_parked(3);
    // At the cap again.
    relay.get("/link/pp-5").assert_error(429);
    // The waiter that parked after the departure is a real one: it gets a message.
    let sender = relay.spawn_post("/link/pp-4", b"late", &[]);
    let received = read_response(waiters.last_mut().unwrap());
    drop(waiters);
    let sent = sender.join().unwrap();
    assert_eq!(sent.status, 200, "{sent}");
    assert_eq!((received.status, received.body.as_slice()), (200, &b"late"[..]), "{received}");
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "parked_per_ip"), 3, "{text}");
}

/// `--max-parked 3`: the next waiter gets 503 + `Retry-After`, and `/health` says
/// `"status":"full"` with 503 (and `Retry-After`) while the relay is at the cap.
#[test]
fn max_parked_refuses_with_503_and_health_says_full() {
    let relay = Relay::start(&["--max-parked", "3", "--link-timeout", "60s"]);
    let mut waiters: Vec<TcpStream> =
        (0..3).map(|i| relay.open(&get_request(&format!("/link/mp-{i}")))).collect();
    relay.wait_parked(3);
    let refused_receiver = relay.get("/link/mp-3");
    refused_receiver.assert_error(503);
    assert!(refused_receiver.text().contains("--max-parked"), "{refused_receiver}");
    assert_eq!(retry_after(&refused_receiver), 1, "{refused_receiver}");
    // A sender with nobody waiting would park too: refused alike.
    let refused_sender = relay.post("/link/mp-nobody", b"x", &[]);
    refused_sender.assert_error(503);
    assert!(retry_after(&refused_sender) >= 1, "{refused_sender}");

    let (health, text) = relay.health();
    assert_eq!(health.status, 503, "/health at the cap: {health}");
    assert!(text.contains("\"status\":\"full\""), "{text}");
    assert!(retry_after(&health) >= 1, "{health}");
    assert_eq!(refused(&text, "parked"), 2, "{text}");

    drop(waiters.remove(0));
    relay.wait_parked(2);
    let text = health_ok(relay.addr());
    assert!(text.contains("\"status\":\"ok\""), "{text}");
    waiters.push(relay.open(&get_request("/link/mp-4")));
    relay.wait_parked(3);
}

// ---------------------------------------------------------------------------------------------
// --max-connections, --max-connections-per-ip
// ---------------------------------------------------------------------------------------------

/// `--max-connections 4`: with four silent connections open, the fifth is closed at accept
/// without a response; after two of them close, new clients are served.
#[test]
fn max_connections_closes_the_next_connection_at_accept() {
    // Nothing has connected yet; the kernel queues these in order and one worker accepts and
    // counts them in order (two could each take one and count them the other way round).
    let relay =
        Relay::start(&["--max-connections", "4", "--head-timeout", "60s", "--workers", "1"]);
    let mut idle = idle_connections(relay.addr(), 4);
    let refused_attempt = try_exchange(relay.addr(), &get_request("/health"));
    assert!(
        refused_attempt.is_none(),
        "a fifth connection was answered: {}",
        refused_attempt.unwrap()
    );
    drop(idle.drain(..2));
    // 2 idle + the /health connection itself.
    let (text, unanswered) =
        poll_until_served(relay.addr(), |t| json_number(t, "connections") == Some(3));
    assert_eq!(
        refused(&text, "connections"),
        1 + unanswered,
        "the fifth connection and the {unanswered} polls closed at accept: {text}"
    );
    assert_eq!(refused(&text, "connections_per_ip"), 0, "{text}");
    // At the cap, a connection its client closed still counts until the relay has seen it end
    // (the poll that saw 3 is closed gracefully: the relay waits for the client's end), so an
    // attempt may be closed at accept: every request from here tolerates that, and a new
    // client must be served once the closes are seen (one run in ten failed when it did not).
    let deadline = Instant::now() + WAIT_CAP;
    let served = loop {
        if let Some(served) = try_exchange(relay.addr(), &get_request("/inbox/mc/ack")) {
            break served;
        }
        assert!(Instant::now() < deadline, "no new client served within {WAIT_CAP:?}");
        thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(served.status, 404, "a new client is served: {served}");
    drop(idle);
    poll_until_served(relay.addr(), |t| json_number(t, "connections") == Some(1));
}

/// `--max-connections-per-ip 3`: with three silent connections from 127.0.0.1, the next from
/// it is closed at accept, while another peer (`::1`) is served; one closing lets 127.0.0.1 in.
#[test]
fn max_connections_per_ip_closes_the_peers_next_connection() {
    let relay = Relay::start(&[
        "--max-connections-per-ip",
        "3",
        "--head-timeout",
        "60s",
        "--listen",
        "[::]:0",
        // One worker accepts and counts the connections in the order they came.
        "--workers",
        "1",
    ]);
    let port = relay.addr().port();
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let mut idle = idle_connections(v4, 3);
    let refused_attempt = try_exchange(v4, &get_request("/health"));
    assert!(
        refused_attempt.is_none(),
        "a fourth connection from 127.0.0.1 was answered: {}",
        refused_attempt.unwrap()
    );
    // Another peer is not affected.
    let text = health_ok(v6);
    assert_eq!(refused(&text, "connections_per_ip"), 1, "{text}");
    assert_eq!(gauge(&text, "connections"), 4, "3 idle + this one: {text}");
    assert_eq!(refused(&text, "connections"), 0, "{text}");

    drop(idle.remove(0));
    let (text, unanswered) = poll_until_served(v4, |_| true);
    assert_eq!(
        refused(&text, "connections_per_ip"),
        1 + unanswered,
        "the fourth connection and the {unanswered} polls closed at accept: {text}"
    );
    // A slot is given back just after the client sees the end of its answer, so the next
    // connection may still meet the cap for an instant: poll rather than expect it at once.
    drop(idle);
    poll_until_served(v4, |_| true);
}

/// Behind `--trust-proxy 127.0.0.1/32`, `--max-connections-per-ip 2` does not apply to the
/// trusted peer: five silent connections from it are all accepted and kept.
#[test]
fn max_connections_per_ip_exempts_trusted_proxies() {
    let relay = Relay::start(&[
        "--max-connections-per-ip",
        "2",
        "--trust-proxy",
        "127.0.0.1/32",
        "--head-timeout",
        "60s",
    ]);
    let idle = idle_connections(relay.addr(), 5);
    // 5 idle + the /health connection: none was closed at accept.
    let text =
        wait_health(relay.addr(), "6 connections", |t| json_number(t, "connections") == Some(6));
    assert_eq!(refused(&text, "connections_per_ip"), 0, "{text}");
    let served = relay.get("/inbox/tp/ack");
    assert_eq!(served.status, 404, "{served}");
    drop(idle);
    relay.wait_gauge("connections", 1);
    assert_eq!(refused(&health_ok(relay.addr()), "connections_per_ip"), 0);
}

// ---------------------------------------------------------------------------------------------
// --max-memory
// ---------------------------------------------------------------------------------------------

/// What the relay charges for one held request beyond the bytes it keeps (README "Limits",
/// `ENTRY_COST`), and so for one whose id is five bytes long and keeps no query or type.
const ENTRY: u64 = 512;
const ENTRY_ID5: u64 = ENTRY + 5;

/// `--max-memory 8K --max-body 4K`: two parked receivers (an entry each) and a stored 3 KiB
/// inbox body (an entry and the body) hold 4,623 bytes; a POST needing 4,117 more gets 503 +
/// `Retry-After` and counts "memory". Acknowledging the stored body gives its bytes back (its
/// entry stays charged until its TTL) and the POST passes; `/health` "memory" follows every step.
#[test]
fn max_memory_refuses_until_stored_data_is_acknowledged() {
    // The whole budget is the subject: no per-client share (an eighth of 8K would refuse first).
    let relay = Relay::start(&[
        "--max-memory",
        "8K",
        "--max-memory-per-ip",
        "0",
        "--max-body",
        "4K",
        "--link-timeout",
        "60s",
    ]);
    let waiters: Vec<TcpStream> =
        (0..2).map(|i| relay.open(&get_request(&format!("/link/mem-{i}")))).collect();
    relay.wait_parked(2);
    relay.wait_gauge("memory", 2 * ENTRY_ID5);

    let stored = relay.post("/inbox/mem-a", &[b'a'; 3072], &[]);
    assert_eq!(stored.status, 200, "{stored}");
    let text = health_ok(relay.addr());
    assert_eq!(gauge(&text, "memory"), 3 * ENTRY_ID5 + 3072, "{text}");
    assert_eq!(gauge(&text, "bytes"), 3072, "{text}");

    let refused_post = relay.post("/inbox/mem-b", &[b'b'; 3600], &[]);
    refused_post.assert_error(503);
    assert!(refused_post.text().contains("--max-memory"), "{refused_post}");
    assert!(retry_after(&refused_post) >= 1, "{refused_post}");
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "memory"), 1, "{text}");
    assert_eq!(gauge(&text, "memory"), 3 * ENTRY_ID5 + 3072, "the refusal kept nothing: {text}");
    assert_eq!(gauge(&text, "messages"), 1, "{text}");
    let missing = relay.get("/inbox/mem-b/ack");
    assert_eq!(missing.status, 404, "the refused POST stored nothing: {missing}");

    let ack = relay.send(b"DELETE /inbox/mem-a HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(ack.status, 200, "{ack}");
    relay.wait_gauge("memory", 3 * ENTRY_ID5);
    let passed = relay.post("/inbox/mem-b", &[b'b'; 3600], &[]);
    assert_eq!(passed.status, 200, "after the acknowledgement: {passed}");
    relay.wait_gauge("memory", 4 * ENTRY_ID5 + 3600);

    drop(waiters);
    relay.wait_parked(0);
    relay.wait_gauge("memory", 2 * ENTRY_ID5 + 3600);
    let ack = relay.send(b"DELETE /inbox/mem-b HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(ack.status, 200, "{ack}");
    // The two acknowledged entries stay, charged, until their TTL (for `/ack`).
    relay.wait_gauge("memory", 2 * ENTRY_ID5);
    assert_eq!(refused(&health_ok(relay.addr()), "memory"), 1);
}

/// `--max-memory 8K` with `--inbox-ttl 2s`: a stored 4 KiB body (and its entry) leaves
/// no room for another; once it expires, `/health` "memory" is back to 0 and the POST passes.
#[test]
fn max_memory_is_given_back_when_stored_data_expires() {
    let relay = Relay::start(&[
        "--max-memory",
        "8K",
        "--max-memory-per-ip",
        "0",
        "--max-body",
        "4K",
        "--inbox-ttl",
        "2s",
    ]);
    let stored = relay.post("/inbox/exp-a", &[b'a'; 4096], &[]);
    assert_eq!(stored.status, 200, "{stored}");
    let refused_post = relay.post("/inbox/exp-b", &[b'b'; 4096], &[]);
    refused_post.assert_error(503);
    assert!(retry_after(&refused_post) >= 1, "{refused_post}");
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "memory"), 1, "{text}");

    relay.wait_gauge("memory", 0);
    relay.wait_gauge("messages", 0);
    let expired = relay.get("/inbox/exp-a/ack");
    assert_eq!(expired.status, 404, "the stored body expired: {expired}");
    let passed = relay.post("/inbox/exp-b", &[b'b'; 4096], &[]);
    assert_eq!(passed.status, 200, "after the expiry: {passed}");
    assert_eq!(gauge(&health_ok(relay.addr()), "memory"), ENTRY_ID5 + 4096);
}

// ---------------------------------------------------------------------------------------------
// Client IP derivation
// ---------------------------------------------------------------------------------------------

/// A `/link` hand-off whose sender adds `headers`; the `X-Real-IP` the receiver is told.
fn sender_ip_seen_by_receiver(relay: &Relay, id: &str, headers: &[(&str, &str)]) -> String {
    let path = format!("/link/{id}");
    let receiver = relay.spawn_get(&path);
    relay.wait_parked(1);
    let sent = relay.post(&path, b"who", headers);
    assert_eq!(sent.status, 200, "{sent}");
    assert_eq!(sent.header("x-real-ip"), Some("127.0.0.1"), "the receiver sent no header: {sent}");
    let received = receiver.join().unwrap();
    assert_eq!(received.status, 200, "{received}");
    relay.wait_parked(0);
    received.header("x-real-ip").unwrap_or_else(|| panic!("no X-Real-IP: {received}")).to_string()
}

/// Behind `--trust-proxy 127.0.0.1/32` the client is the right-most untrusted
/// `X-Forwarded-For` entry (what the client wrote to its left is ignored), or `X-Real-IP`;
/// without it, both headers are ignored.
#[test]
fn client_ip_comes_from_trusted_proxy_headers_only() {
    let shown = ["--peer-address", "show", "--link-timeout", "30s"];
    let trusted = Relay::start(&[&shown[..], &["--trust-proxy", "127.0.0.1/32"]].concat());
    let xff = [("X-Forwarded-For", "6.6.6.6, 198.51.100.7")];
    assert_eq!(sender_ip_seen_by_receiver(&trusted, "ip-1", &xff), "198.51.100.7");
    let real = [("X-Real-IP", "203.0.113.5")];
    assert_eq!(sender_ip_seen_by_receiver(&trusted, "ip-2", &real), "203.0.113.5");

    let direct = Relay::start(&shown);
    assert_eq!(sender_ip_seen_by_receiver(&direct, "ip-3", &xff), "127.0.0.1");
    assert_eq!(sender_ip_seen_by_receiver(&direct, "ip-4", &real), "127.0.0.1");
    health_ok(trusted.addr());
    health_ok(direct.addr());
}

/// `--rate-per-ip` is keyed by the derived client: behind a trusted proxy two forwarded clients
/// and the proxy itself each get their own bucket; IPv6 clients share one per /64.
#[test]
fn rate_per_ip_is_keyed_by_the_derived_client() {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32", "--rate-per-ip", "2"]);
    let from = |client: &str| {
        let raw = format!(
            "GET /inbox/keyed/ack HTTP/1.1\r\nHost: relay.test\r\nX-Forwarded-For: {client}\r\n\r\n"
        );
        relay.send(raw.as_bytes())
    };
    for client in ["198.51.100.1", "198.51.100.2", "2001:db8:1:2::1"] {
        for n in 1..=2 {
            let response = from(client);
            assert_eq!(response.status, 404, "request {n} of 2 from {client}: {response}");
        }
    }
    // Each forwarded client is at its limit now.
    let limited = from("198.51.100.1");
    limited.assert_error(429);
    assert!(retry_after(&limited) >= 1, "{limited}");
    from("198.51.100.2").assert_error(429);
    // Another address in the same IPv6 /64 shares its bucket; another /64 does not.
    from("2001:db8:1:2:ffff::9").assert_error(429);
    assert_eq!(from("2001:db8:1:3::1").status, 404);
    // The proxy's own requests (no header) are its own.
    assert_eq!(relay.get("/inbox/keyed/ack").status, 404);
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "rate_per_ip"), 3, "{text}");
}

// ---------------------------------------------------------------------------------------------
// The Pubky flow under the default limits
// ---------------------------------------------------------------------------------------------

/// With every limit at its default, a Pubky flow — 24 polls answered 408, each after a CORS
/// preflight, then POST, GET and DELETE — never meets a 429. (`--inbox-timeout 100ms` stands in
/// for the real 25 s, so the whole flow takes a few seconds instead of ten minutes.)
#[test]
fn pubky_flow_never_meets_a_429_with_default_limits() {
    let relay = Relay::start(&["--inbox-timeout", "100ms"]);
    let origin = "Origin: https://app.example\r\n";
    let request = |method: &str, extra: &str, body: &[u8]| {
        let mut raw = format!(
            "{method} /inbox/pubky-session HTTP/1.1\r\nHost: relay.test\r\n{origin}{extra}\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        relay.send(&raw)
    };
    let mut statuses = Vec::new();
    for poll in 0..24 {
        let preflight = request(
            "OPTIONS",
            "Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: content-type\r\n",
            b"",
        );
        assert_eq!(preflight.status, 204, "preflight {poll}: {preflight}");
        let waited = request("GET", "", b"");
        assert_eq!(waited.status, 408, "poll {poll}: {waited}");
        statuses.extend([preflight.status, waited.status]);
    }
    let posted = request("POST", "Content-Type: application/octet-stream\r\n", b"token");
    assert_eq!(posted.status, 200, "{posted}");
    let read = request("GET", "", b"");
    assert_eq!((read.status, read.body.as_slice()), (200, &b"token"[..]), "{read}");
    let acked = request("DELETE", "", b"");
    assert_eq!(acked.status, 200, "{acked}");
    statuses.extend([posted.status, read.status, acked.status]);
    assert!(!statuses.contains(&429), "a 429 in the flow: {statuses:?}");
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "rate_per_ip"), 0, "{text}");
    assert_eq!(refused(&text, "rate_per_id"), 0, "{text}");
}

// ---------------------------------------------------------------------------------------------
// Idle and slow clients
// ---------------------------------------------------------------------------------------------

/// 2,000 open connections that never send a byte do not stop a `/link` hand-off from completing
/// within a second. (All come from 127.0.0.1, so `--max-connections-per-ip 0`; each side needs
/// ~2,000 descriptors, within this machine's default `ulimit -n` of 20,000.)
#[test]
fn two_thousand_idle_connections_do_not_delay_a_hand_off() {
    let _heavy = heavy();
    let relay = Relay::start(&["--max-connections-per-ip", "0", "--head-timeout", "60s"]);
    let idle = idle_connections(relay.addr(), 2000);
    relay.wait_gauge("connections", 2001);

    let started = Instant::now();
    let receiver = relay.spawn_get("/link/busy-relay");
    let sent = relay.post("/link/busy-relay", b"through the crowd", &[]);
    let received = receiver.join().unwrap();
    let took = started.elapsed();
    println!("hand-off with 2000 idle connections open: {took:?}");
    assert_eq!(sent.status, 200, "{sent}");
    assert_eq!((received.status, received.body.as_slice()), (200, &b"through the crowd"[..]));
    assert!(took < Duration::from_secs(1), "the hand-off took {took:?}");

    drop(idle);
    relay.wait_gauge("connections", 1);
    health_ok(relay.addr());
}

/// A client sending its head one byte per 200 ms does not delay another: a hand-off completes
/// within a second while it trickles, and the trickler gets 408 at `--head-timeout` (3 s; its
/// head would take ~20 s).
#[test]
fn a_trickling_client_does_not_delay_others() {
    let _heavy = heavy();
    let relay = Relay::start(&["--head-timeout", "3s"]);
    let head = format!(
        "GET /link/trickle HTTP/1.1\r\nHost: relay.test\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(60)
    )
    .into_bytes();
    let head_len = head.len();
    let sent_bytes = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    let trickler = {
        let (addr, sent_bytes, finished) = (relay.addr(), sent_bytes.clone(), finished.clone());
        thread::spawn(move || {
            let started = Instant::now();
            let mut stream = connect(addr);
            stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            'trickle: for byte in &head {
                if stream.write_all(std::slice::from_ref(byte)).is_err() {
                    break;
                }
                sent_bytes.fetch_add(1, Ordering::SeqCst);
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break 'trickle,
                        Ok(n) => raw.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            break
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => break 'trickle,
                    }
                }
            }
            finished.store(true, Ordering::SeqCst);
            (parse(raw, started.elapsed()), sent_bytes.load(Ordering::SeqCst))
        })
    };
    // The trickler is connected and has started its head.
    relay.wait_gauge("connections", 2);
    while sent_bytes.load(Ordering::SeqCst) < 2 {
        thread::sleep(Duration::from_millis(10));
    }

    let started = Instant::now();
    let receiver = relay.spawn_get("/link/beside-the-trickler");
    let sent = relay.post("/link/beside-the-trickler", b"not delayed", &[]);
    let received = receiver.join().unwrap();
    let took = started.elapsed();
    println!("hand-off beside a trickling client: {took:?}");
    assert_eq!(sent.status, 200, "{sent}");
    assert_eq!((received.status, received.body.as_slice()), (200, &b"not delayed"[..]));
    assert!(took < Duration::from_secs(1), "the hand-off took {took:?}");
    assert!(!finished.load(Ordering::SeqCst), "the trickler stopped before the hand-off ended");
    assert!(sent_bytes.load(Ordering::SeqCst) < head_len);

    let (timed_out, sent) = trickler.join().unwrap();
    timed_out.assert_error(408);
    assert!(timed_out.text().contains("--head-timeout"), "{timed_out}");
    assert!(sent < head_len, "the whole head went out ({sent} bytes): {timed_out}");
    assert!(
        timed_out.elapsed >= Duration::from_millis(2900)
            && timed_out.elapsed < Duration::from_secs(8),
        "408 not at --head-timeout: {timed_out}"
    );
    let text = health_ok(relay.addr());
    assert_eq!(refused(&text, "slow"), 1, "{text}");
}

// ---------------------------------------------------------------------------------------------
// Descriptor exhaustion, pipelining
// ---------------------------------------------------------------------------------------------

/// Under `ulimit -n 64` the relay runs out of descriptors: `accept` fails (logged as "accept
/// failed"), new clients wait in the backlog unanswered, the relay keeps running, and once the
/// connections close a waiting client is served within a few seconds.
#[test]
fn descriptor_exhaustion_is_survived() {
    let ulimit = ["sh", "-c", "ulimit -n 64 && exec \"$0\" \"$@\"", &handoff_binary()];
    let mut relay = Relay::start_command(
        &ulimit,
        &["--max-connections-per-ip", "0", "--head-timeout", "60s", "--workers", "4"],
    );
    let addr = relay.addr();
    health_ok(addr);
    let held = idle_connections(addr, 100);
    relay.wait_log("\"accept failed\"", |l| l.contains("WARN") && l.contains("accept failed"));
    assert!(running(&mut relay), "the relay exited:\n{}", relay.logs().join("\n"));

    // A client arriving now waits in the backlog, unanswered.
    let mut probe = connect(addr);
    probe.write_all(&get_request("/health")).unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut byte = [0u8; 1];
    match probe.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a client was answered while descriptors were exhausted: {other:?}"),
    }
    probe.set_read_timeout(Some(READ_TIMEOUT)).unwrap();

    let closed = Instant::now();
    drop(held);
    let served = parse(read_all(&mut probe), closed.elapsed());
    let recovery = closed.elapsed();
    println!("descriptor exhaustion: the waiting client was served {recovery:?} after the close");
    assert_eq!(served.status, 200, "{served}");
    assert!(recovery < Duration::from_secs(5), "recovery took {recovery:?}");
    let fresh = Instant::now();
    health_ok(addr);
    assert!(fresh.elapsed() < Duration::from_secs(5), "a new client waited {:?}", fresh.elapsed());
    assert!(running(&mut relay), "the relay exited:\n{}", relay.logs().join("\n"));
}

/// Two complete `GET /health` in one write get exactly one response and then the end of the
/// stream, in bounded time.
#[test]
fn pipelined_requests_get_one_response_then_eof() {
    let relay = Relay::start(&[]);
    let mut both = get_request("/health");
    both.extend_from_slice(&get_request("/health"));
    let response = relay.send(&both);
    assert_eq!(response.status, 200, "{response}");
    response.assert_framing(false);
    let status_lines = response.raw.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert_eq!(status_lines, 1, "more than one response: {response}");
    assert!(response.elapsed < Duration::from_secs(5), "{response}");
    health_ok(relay.addr());
}

/// A `POST /link` with a `GET` of the same id pipelined behind it on one connection: the POST
/// is handled (its message reaches another receiver and it gets one 200), the pipelined GET is
/// not served as a second request, and the relay keeps working.
#[test]
fn pipelined_post_and_get_do_not_wedge_the_relay() {
    let relay = Relay::start(&["--link-timeout", "30s"]);
    let mut raw = post_request("/link/piped", b"pipelined body", &[]);
    raw.extend_from_slice(&get_request("/link/piped"));
    let mut pipelined = relay.open(&raw);
    relay.wait_parked(1);
    let received = relay.get("/link/piped");
    assert_eq!((received.status, received.body.as_slice()), (200, &b"pipelined body"[..]));
    let answer = read_response(&mut pipelined);
    assert_eq!(answer.status, 200, "{answer}");
    assert!(answer.body.is_empty(), "{answer}");
    let status_lines = answer.raw.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
    assert_eq!(status_lines, 1, "more than one response: {answer}");
    relay.wait_parked(0);
    // Nothing of the pipelined GET is left behind: the next hand-off on the id works.
    let receiver = relay.spawn_get("/link/piped");
    relay.wait_parked(1);
    assert_eq!(relay.post("/link/piped", b"again", &[]).status, 200);
    assert_eq!(receiver.join().unwrap().body, b"again");
    health_ok(relay.addr());
}

// ---------------------------------------------------------------------------------------------
// Memory after load
// ---------------------------------------------------------------------------------------------

/// Runs `count` hand-offs from `threads` threads, ids `{prefix}-{n}`.
fn hand_offs(addr: SocketAddr, prefix: &str, count: usize, threads: usize) {
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let prefix = prefix.to_string();
            thread::spawn(move || {
                let body = vec![b'r'; 1024];
                for n in (t..count).step_by(threads) {
                    hand_off(addr, &format!("{prefix}-{n}"), &body);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a hand-off failed");
    }
}

/// The relay's RSS returns near its baseline after 2,000 hand-offs and 500 parked receivers
/// that disconnect.
#[test]
fn rss_returns_near_baseline_after_load() {
    let _heavy = heavy();
    let relay = Relay::start(&[&NO_CLIENT_LIMITS[..], &["--link-timeout", "60s"]].concat());
    let addr = relay.addr();
    let settled =
        |t: &str| json_number(t, "parked") == Some(0) && json_number(t, "connections") == Some(1);
    hand_offs(addr, "warm", 200, 8);
    wait_health(addr, "parked 0, connections 1", settled);
    let baseline = rss_kib(relay.pid());

    hand_offs(addr, "load", 2000, 8);
    let parked: Vec<TcpStream> = (0..500)
        .map(|i| {
            let mut stream = connect(addr);
            stream.write_all(&get_request(&format!("/link/parked-{i}"))).unwrap();
            stream
        })
        .collect();
    wait_health(addr, "parked 500", |t| json_number(t, "parked") == Some(500));
    let peak = rss_kib(relay.pid());
    drop(parked);
    wait_health(addr, "parked 0, connections 1", settled);
    let after = rss_kib(relay.pid());
    println!("relay RSS: baseline {baseline} KiB, with 500 parked {peak} KiB, after {after} KiB");
    assert!(
        after <= baseline + 8 * 1024,
        "RSS {after} KiB is more than 8 MiB over the baseline {baseline} KiB"
    );
    let text = health_ok(addr);
    assert_eq!(gauge(&text, "memory"), 0, "{text}");
    assert_eq!(gauge(&text, "messages"), 0, "{text}");
}
