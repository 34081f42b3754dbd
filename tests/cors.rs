//! CORS for browser apps calling the relay directly (protocol §5), black-box in each `--cors` mode.

mod common;

use std::time::Duration;

use common::{json_number, request, Relay, Response};

const APP: &str = "https://app.example";
const TWO: &str = "https://two.example";
const EVIL: &str = "https://evil.example";

/// `GET path` from a page of `origin`.
fn get_from(relay: &Relay, path: &str, origin: &str) -> Response {
    relay.send(&request("GET", path, &[("Origin", origin)], b""))
}

/// A browser's preflight for a POST with `Content-Type` from a page of `origin`.
fn preflight(relay: &Relay, path: &str, origin: &str) -> Response {
    relay.send(&request(
        "OPTIONS",
        path,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type, user-agent"),
        ],
        b"",
    ))
}

/// The `Access-Control-*` headers of a response.
fn access_control(response: &Response) -> Vec<&(String, String)> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.to_ascii_lowercase().starts_with("access-control-"))
        .collect()
}

fn assert_no_cors(response: &Response) {
    assert!(access_control(response).is_empty(), "unexpected Access-Control-* headers: {response}");
}

/// The comma-separated items of header `name`, trimmed and lower-cased.
fn list(response: &Response, name: &str) -> Vec<String> {
    let value = response.header(name).unwrap_or_else(|| panic!("no {name}: {response}"));
    value.split(',').map(|item| item.trim().to_ascii_lowercase()).collect()
}

fn assert_lists(response: &Response, name: &str, items: &[&str]) {
    let listed = list(response, name);
    for item in items {
        assert!(
            listed.iter().any(|l| l == &item.to_ascii_lowercase()),
            "{name} does not list {item}: {response}"
        );
    }
}

/// The headers that let a page of `origin` read `response` with credentials.
fn assert_cors(response: &Response, origin: &str) {
    assert_eq!(response.header("access-control-allow-origin"), Some(origin), "{response}");
    assert_eq!(response.header_count("access-control-allow-origin"), 1, "{response}");
    assert_eq!(response.header("access-control-allow-credentials"), Some("true"), "{response}");
    assert_lists(response, "vary", &["Origin"]);
    assert_lists(
        response,
        "access-control-expose-headers",
        &["HttpRelay-Time", "X-Real-IP", "Retry-After"],
    );
}

/// A preflight granted to an allowed origin, on a path allowing `methods`.
fn assert_preflight_granted(response: &Response, origin: &str, methods: &[&str]) {
    assert_eq!(response.status, 204, "{response}");
    assert_eq!(response.header("content-length"), None, "a 204 has no Content-Length: {response}");
    assert!(response.body.is_empty(), "{response}");
    assert_cors(response, origin);
    assert_lists(response, "access-control-allow-methods", methods);
    assert_lists(
        response,
        "access-control-allow-headers",
        &["content-type", "user-agent", "authorization", "httprelay-wsecret"],
    );
    let max_age: u64 = response
        .header("access-control-max-age")
        .unwrap_or_else(|| panic!("no Access-Control-Max-Age: {response}"))
        .parse()
        .unwrap_or_else(|_| panic!("Access-Control-Max-Age is not seconds: {response}"));
    assert!(max_age > 0, "{response}");
    assert_eq!(response.header("access-control-allow-private-network"), Some("true"), "{response}");
}

/// A preflight answered 204 with `Allow` but no grant.
fn assert_preflight_refused(response: &Response) {
    assert_eq!(response.status, 204, "{response}");
    assert_eq!(response.header("content-length"), None, "{response}");
    assert_lists(response, "allow", &["GET", "POST", "DELETE"]);
    assert_no_cors(response);
}

fn store(relay: &Relay, id: &str, body: &[u8]) {
    let post = relay.post(&format!("/inbox/{id}"), body, &[]);
    assert_eq!(post.status, 200, "{post}");
}

#[test]
fn mirror_echoes_the_origin_with_credentials() {
    let relay = Relay::start(&[]);
    store(&relay, "m1", b"hello page");
    let get = get_from(&relay, "/inbox/m1", APP);
    assert_eq!(get.status, 200, "{get}");
    assert_eq!(get.body, b"hello page", "{get}");
    assert_cors(&get, APP);
    // Any origin is mirrored, each request its own.
    assert_cors(&get_from(&relay, "/inbox/m1", EVIL), EVIL);
    // Answers the workers give themselves carry them too.
    assert_cors(&get_from(&relay, "/", APP), APP);
    assert_cors(&get_from(&relay, "/health", APP), APP);
    // And a POST from a page.
    let post = relay.send(&request(
        "POST",
        "/inbox/m2",
        &[("Origin", APP), ("Content-Type", "text/plain")],
        b"x",
    ));
    assert_eq!(post.status, 200, "{post}");
    assert_cors(&post, APP);
}

#[test]
fn no_origin_no_cors_headers() {
    let relay = Relay::start(&[]);
    store(&relay, "n1", b"m");
    let get = relay.get("/inbox/n1");
    assert_eq!(get.status, 200, "{get}");
    assert_no_cors(&get);
    assert_no_cors(&relay.get("/"));
    assert_no_cors(&relay.get("/inbox/n1/ack"));
    assert_no_cors(&relay.get("/nope"));
}

#[test]
fn mirror_preflight_on_inbox_grants_methods_and_headers() {
    let relay = Relay::start(&[]);
    let response = preflight(&relay, "/inbox/x", APP);
    assert_preflight_granted(&response, APP, &["GET", "POST", "DELETE"]);
    // iOS Safari asks for user-agent only: still granted.
    let safari = relay.send(&request(
        "OPTIONS",
        "/inbox/x",
        &[
            ("Origin", APP),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "user-agent"),
        ],
        b"",
    ));
    assert_preflight_granted(&safari, APP, &["GET"]);
    // The four headers are granted whatever the browser asks for, even nothing.
    let bare = relay.send(&request(
        "OPTIONS",
        "/inbox/x",
        &[("Origin", APP), ("Access-Control-Request-Method", "DELETE")],
        b"",
    ));
    assert_preflight_granted(&bare, APP, &["GET", "POST", "DELETE"]);
    // The inbox's sub-paths are read-only.
    let ack = preflight(&relay, "/inbox/x/await", APP);
    assert_eq!(ack.status, 204, "{ack}");
    assert_lists(&ack, "access-control-allow-methods", &["GET"]);
}

#[test]
fn mirror_preflight_on_link_lists_get_and_post() {
    let relay = Relay::start(&[]);
    let response = preflight(&relay, "/link/x", APP);
    assert_preflight_granted(&response, APP, &["GET", "POST"]);
    let methods = list(&response, "access-control-allow-methods");
    assert!(!methods.iter().any(|m| m == "delete"), "/link has no DELETE: {response}");
}

#[test]
fn preflight_never_touches_state() {
    let relay = Relay::start(&["--inbox-timeout", "10s", "--link-timeout", "10s"]);
    store(&relay, "kept", b"still here");
    let paths = [
        "/inbox/kept",
        "/inbox/kept/ack",
        "/inbox/kept/await",
        "/inbox/empty",
        "/inbox/empty/await",
        "/link/kept",
        "/link/empty",
    ];
    for path in paths {
        for method in ["GET", "POST", "DELETE"] {
            let response = relay.send(&request(
                "OPTIONS",
                path,
                &[("Origin", APP), ("Access-Control-Request-Method", method)],
                b"",
            ));
            assert_eq!(response.status, 204, "OPTIONS {path}: {response}");
            assert!(response.elapsed < Duration::from_secs(3), "OPTIONS {path} waited: {response}");
            let (_, text) = relay.health();
            assert_eq!(json_number(&text, "parked"), Some(0), "after OPTIONS {path}: {text}");
            assert_eq!(json_number(&text, "messages"), Some(1), "after OPTIONS {path}: {text}");
        }
        // Without Origin too.
        let bare = relay.send(&request("OPTIONS", path, &[], b""));
        assert_eq!(bare.status, 204, "OPTIONS {path}: {bare}");
        assert_no_cors(&bare);
    }
    let get = relay.get("/inbox/kept");
    assert_eq!(get.status, 200, "{get}");
    assert_eq!(get.body, b"still here", "{get}");
    let ack = relay.get("/inbox/kept/ack");
    assert_eq!(ack.text().trim(), "false", "{ack}");
    let empty = relay.get("/inbox/empty/ack");
    assert_eq!(empty.status, 404, "{empty}");
    relay.wait_parked(0);
}

#[test]
fn cors_headers_on_link_hand_off_timeout_and_errors() {
    let relay = Relay::start(&["--inbox-timeout", "1s", "--link-timeout", "10s"]);
    // The /link receiver's 200 (written by the registry's writers) and the sender's, each with
    // its own origin.
    let receiver = relay.spawn_request(request("GET", "/link/r", &[("Origin", APP)], b""));
    relay.wait_parked(1);
    let sender = relay.send(&request("POST", "/link/r", &[("Origin", TWO)], b"token"));
    let receiver = receiver.join().unwrap();
    assert_eq!(receiver.status, 200, "{receiver}");
    assert_eq!(receiver.body, b"token", "{receiver}");
    assert_cors(&receiver, APP);
    assert_eq!(sender.status, 200, "{sender}");
    assert_cors(&sender, TWO);
    // A 408.
    let timed_out = get_from(&relay, "/inbox/t", APP);
    assert_eq!(timed_out.status, 408, "{timed_out}");
    assert_cors(&timed_out, APP);
    // A 404 from the inbox, and a 404 for an unknown path.
    let no_message = get_from(&relay, "/inbox/t/ack", APP);
    assert_eq!(no_message.status, 404, "{no_message}");
    assert_cors(&no_message, APP);
    let unknown = get_from(&relay, "/nope", APP);
    assert_eq!(unknown.status, 404, "{unknown}");
    assert_cors(&unknown, APP);
    // A 405.
    let put = relay.send(&request("PUT", "/inbox/t", &[("Origin", APP)], b""));
    assert_eq!(put.status, 405, "{put}");
    assert_cors(&put, APP);
}

#[test]
fn origin_list_echoes_only_listed_origins() {
    let relay = Relay::start(&["--cors", "https://app.example,https://two.example"]);
    store(&relay, "l1", b"m");
    for origin in [APP, TWO] {
        let get = get_from(&relay, "/inbox/l1", origin);
        assert_eq!(get.status, 200, "{get}");
        assert_cors(&get, origin);
        assert_preflight_granted(
            &preflight(&relay, "/inbox/l1", origin),
            origin,
            &["GET", "POST", "DELETE"],
        );
    }
    let get = get_from(&relay, "/inbox/l1", EVIL);
    assert_eq!(get.status, 200, "{get}");
    assert_no_cors(&get);
    assert_preflight_refused(&preflight(&relay, "/inbox/l1", EVIL));
    // A listed origin's prefix or a different scheme is another origin.
    assert_no_cors(&get_from(&relay, "/inbox/l1", "http://app.example"));
    assert_no_cors(&get_from(&relay, "/inbox/l1", "https://app.example.evil"));
    assert_no_cors(&relay.get("/inbox/l1"));
}

#[test]
fn off_sends_no_cors_headers() {
    let relay = Relay::start(&["--cors", "off"]);
    store(&relay, "o1", b"m");
    let get = get_from(&relay, "/inbox/o1", APP);
    assert_eq!(get.status, 200, "{get}");
    assert_eq!(get.body, b"m", "{get}");
    assert_no_cors(&get);
    assert_no_cors(&get_from(&relay, "/nope", APP));
    assert_preflight_refused(&preflight(&relay, "/inbox/o1", APP));
}
