//! Relayed bodies never become a page or a worker on the relay's origin (protocol §5),
//! black-box: every answer carries `X-Content-Type-Options: nosniff` and the sandboxing
//! `Content-Security-Policy`, with the relayed type and bytes unchanged, and a request with
//! `Service-Worker` is refused before it takes or waits for anything. What a browser makes of
//! these headers is `tests/interop.rs`'s part (headless Chromium).

mod common;

use common::{json_number, request, Relay, Response};

/// The policy every answer carries.
const CSP: &str = "sandbox; default-src 'none'; frame-ancestors 'none'";

/// A page that would rename itself if its script ran.
const PAGE: &[u8] = b"<!doctype html><title>relayed</title><script>document.title='ran'</script>";

/// What a browser sends for the script of a service worker it registers.
const WORKER: (&str, &str) = ("Service-Worker", "script");

/// Asserts the two headers, each exactly once.
fn assert_inert(what: &str, response: &Response) {
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"), "{what}: {response}");
    assert_eq!(response.header("content-security-policy"), Some(CSP), "{what}: {response}");
    for name in ["x-content-type-options", "content-security-policy"] {
        assert_eq!(response.header_count(name), 1, "{what}: {name} twice: {response}");
    }
}

/// The value of the `/metrics` sample named exactly `series`.
fn metric(relay: &Relay, series: &str) -> String {
    let text = relay.get("/metrics").text();
    let prefix = format!("{series} ");
    let line = text.lines().find(|l| l.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))[prefix.len()..].to_string()
}

#[test]
fn relayed_bodies_keep_type_and_bytes_and_are_inert() {
    let relay = Relay::start(&[]);
    let html = [("Content-Type", "text/html")];
    // /link, read from a page of another origin: its CORS headers are there as before.
    let origin = ("Origin", "https://app.example");
    let receiver = relay.spawn_request(request("GET", "/link/page", &[origin], b""));
    relay.wait_parked(1);
    let sender = relay.post("/link/page", PAGE, &html);
    let receiver = receiver.join().unwrap();
    assert_eq!((receiver.status, receiver.body.as_slice()), (200, PAGE), "{receiver}");
    assert_eq!(receiver.header("content-type"), Some("text/html"), "{receiver}");
    assert_eq!(receiver.header("access-control-allow-origin"), Some(origin.1), "{receiver}");
    assert_eq!(receiver.header("access-control-allow-credentials"), Some("true"), "{receiver}");
    assert_inert("the /link receiver's 200", &receiver);
    assert_eq!(sender.status, 200, "{sender}");
    assert_inert("the /link sender's 200", &sender);

    let post = relay.post("/inbox/page", PAGE, &html);
    assert_eq!(post.status, 200, "{post}");
    assert_inert("the /inbox POST's 200", &post);
    let get = relay.get("/inbox/page");
    assert_eq!((get.status, get.body.as_slice()), (200, PAGE), "{get}");
    assert_eq!(get.header("content-type"), Some("text/html"), "{get}");
    assert_inert("the /inbox GET's 200", &get);
    let head = relay.send(&request("HEAD", "/inbox/page", &[], b""));
    assert_eq!(head.status, 200, "{head}");
    head.assert_framing(true);
    assert_inert("the /inbox HEAD's 200", &head);
    let ack = relay.get("/inbox/page/ack");
    assert_eq!((ack.status, ack.text().as_str()), (200, "false"), "{ack}");
    assert_inert("/ack", &ack);
    let delete = relay.send(&request("DELETE", "/inbox/page", &[], b""));
    assert_eq!(delete.status, 200, "{delete}");
    assert_inert("the DELETE's 200", &delete);
    let awaited = relay.get("/inbox/page/await");
    assert_eq!(awaited.status, 200, "{awaited}");
    assert_inert("/await", &awaited);
    // Without a type of its own, a body stays application/octet-stream.
    assert_eq!(relay.post("/inbox/untyped", PAGE, &[]).status, 200);
    let untyped = relay.get("/inbox/untyped");
    assert_eq!(untyped.header("content-type"), Some("application/octet-stream"), "{untyped}");
    assert_inert("an untyped /inbox body", &untyped);
}

#[test]
fn the_relays_own_answers_are_inert_too() {
    let relay = Relay::start(&["--inbox-timeout", "200ms"]);
    let preflight = request(
        "OPTIONS",
        "/inbox/x",
        &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "DELETE")],
        b"",
    );
    let cases: [(&str, Vec<u8>, u16); 9] = [
        ("/", request("GET", "/", &[], b""), 200),
        ("/health", request("GET", "/health", &[], b""), 200),
        ("/metrics", request("GET", "/metrics", &[], b""), 200),
        ("a preflight", preflight, 204),
        ("no such route", request("GET", "/nowhere", &[], b""), 404),
        ("a method the path does not take", request("PUT", "/link/x", &[], b""), 405),
        ("a bad id", request("GET", "/link/%zz", &[], b""), 400),
        ("no message", request("GET", "/inbox/none/ack", &[], b""), 404),
        ("a poll that ran out", request("GET", "/inbox/none", &[], b""), 408),
    ];
    for (what, raw, status) in cases {
        let response = relay.send(&raw);
        assert_eq!(response.status, status, "{what}: {response}");
        assert_inert(what, &response);
    }
    // Still text and JSON for a browser to show.
    assert!(relay.get("/").header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(relay.get("/health").header("content-type"), Some("application/json"));
}

#[test]
fn a_service_worker_script_fetch_is_refused_and_takes_nothing() {
    let relay = Relay::start(&[]);
    let script = b"self.addEventListener('fetch', () => {});";
    let js = [("Content-Type", "text/javascript")];
    let refused = |method: &str, path: &str| {
        let response = relay.send(&request(method, path, &[WORKER], b""));
        assert_inert(path, &response);
        response
    };

    // /link: a sender waits with its message; a worker's fetch does not take it.
    let sender = relay.spawn_post("/link/sw", script, &js);
    relay.wait_parked(1);
    let worker = refused("GET", "/link/sw");
    worker.assert_error(403);
    assert!(worker.text().contains("service worker"), "{worker}");
    let (_, health) = relay.health();
    assert_eq!(json_number(&health, "parked"), Some(1), "{health}");
    assert_eq!(json_number(&health, "messages"), Some(1), "{health}");
    let receiver = relay.get("/link/sw");
    assert_eq!((receiver.status, receiver.body.as_slice()), (200, &script[..]), "{receiver}");
    assert_eq!(sender.join().unwrap().status, 200);

    // /inbox: a worker's GET or HEAD is not a fetch of the message, and it never waits.
    assert_eq!(relay.post("/inbox/sw", script, &js).status, 200);
    refused("GET", "/inbox/sw").assert_error(403);
    let head = refused("HEAD", "/inbox/sw");
    assert_eq!(head.status, 403, "{head}");
    head.assert_framing(true);
    let fetched = "handoff_handoffs_total{protocol=\"inbox\"}";
    assert_eq!(metric(&relay, fetched), "0");
    refused("GET", "/inbox/empty").assert_error(403);
    let get = relay.get("/inbox/sw");
    assert_eq!((get.status, get.body.as_slice()), (200, &script[..]), "{get}");
    assert_eq!(metric(&relay, fetched), "1");

    let (_, health) = relay.health();
    assert_eq!(json_number(&health, "service_worker"), Some(4), "{health}");
    assert_eq!(metric(&relay, "handoff_refused_total{reason=\"service_worker\"}"), "4");
}
