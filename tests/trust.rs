//! The trust boundary and bad input (issue 12), over the wire: forwarded addresses read as one
//! list behind `--trust-proxy` and failing closed, singleton fields and fragments, chunk sizes
//! bounded by value, a state file the relay cannot use, durations at and past their maximum,
//! and one client's share of the memory budget.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{handoff_binary, json_number, request, Relay, Response};

const PROXY: [&str; 2] = ["--trust-proxy", "127.0.0.1/32"];

/// `method path` from the trusted proxy on loopback, with `X-Forwarded-For` field lines `xff`
/// (one line each, in order) and other headers.
fn forwarded(
    relay: &Relay,
    method: &str,
    path: &str,
    xff: &[&str],
    other: &[(&str, &str)],
) -> Response {
    let mut headers: Vec<(&str, &str)> = xff.iter().map(|v| ("X-Forwarded-For", *v)).collect();
    headers.extend_from_slice(other);
    relay.send(&request(method, path, &headers, b""))
}

fn refused(relay: &Relay, reason: &str) -> u64 {
    let (_, text) = relay.health();
    let at = text.find("\"refused\":").unwrap_or_else(|| panic!("no refusals: {text}"));
    json_number(&text[at..], reason).unwrap_or_else(|| panic!("no {reason}: {text}"))
}

// ---------------------------------------------------------------------------------------------
// X-Forwarded-For
// ---------------------------------------------------------------------------------------------

/// A forged `X-Forwarded-For: 127.0.0.1` line followed by the line the proxy appends (HAProxy's
/// `option forwardfor` adds a line) is one list: the client is the right-most entry, not
/// loopback, so `/metrics` is 403, as for the same entries on one line.
#[test]
fn two_forwarded_lines_are_one_list_for_metrics() {
    let relay = Relay::start(&PROXY);
    assert_eq!(forwarded(&relay, "GET", "/metrics", &[], &[]).status, 200, "the proxy itself");
    let joined = forwarded(&relay, "GET", "/metrics", &["127.0.0.1, 198.51.100.7"], &[]);
    joined.assert_error(403);
    let two = forwarded(&relay, "GET", "/metrics", &["127.0.0.1", "198.51.100.7"], &[]);
    two.assert_error(403);
    let three =
        forwarded(&relay, "GET", "/metrics", &["127.0.0.1", "198.51.100.7", "127.0.0.1"], &[]);
    three.assert_error(403);
}

/// `--allow-ip 10.0.0.0/8`: a forged first line `10.9.9.9` does not let `203.0.113.9` in; the
/// client in 10/8 named by the last line is let in.
#[test]
fn two_forwarded_lines_are_one_list_for_the_allow_list() {
    // The proxy itself (127.0.0.1) may read /health.
    let relay = Relay::start(&[PROXY[0], PROXY[1], "--allow-ip", "10.0.0.0/8,127.0.0.1"]);
    let forged = forwarded(&relay, "GET", "/inbox/a/ack", &["10.9.9.9", "203.0.113.9"], &[]);
    forged.assert_error(403);
    assert!(forged.text().contains("--allow-ip"), "{forged}");
    let inside = forwarded(&relay, "GET", "/inbox/a/ack", &["203.0.113.9", "10.9.9.9"], &[]);
    assert_eq!(inside.status, 404, "{inside}");
    assert_eq!(refused(&relay, "ip_denied"), 1);
}

/// Entries with ports and brackets are read as the addresses they hold, never taken for the
/// proxy: `/metrics` is 403 for each, and `--allow-ip` matches the address inside.
#[test]
fn port_and_bracket_forms_are_not_the_proxy() {
    let relay = Relay::start(&PROXY);
    for entry in ["203.0.113.7:4711", "[2001:db8::7]", "[2001:db8::7]:443", "2001:db8::7"] {
        forwarded(&relay, "GET", "/metrics", &[entry], &[]).assert_error(403);
    }
    let allow = Relay::start(&[PROXY[0], PROXY[1], "--allow-ip", "203.0.113.0/24,2001:db8::/32"]);
    for entry in ["203.0.113.7:4711", " [2001:db8::7]:443 ", "[2001:db8::7]"] {
        let response = forwarded(&allow, "GET", "/inbox/a/ack", &[entry], &[]);
        assert_eq!(response.status, 404, "{entry}: {response}");
    }
    let outside = forwarded(&allow, "GET", "/inbox/a/ack", &["198.51.100.1:80"], &[]);
    outside.assert_error(403);
}

/// An entry that is not an address names a client the relay cannot identify: not loopback,
/// not on any allow list (even `0.0.0.0/0`), and one rate key of its own, apart from the proxy's
/// and from every address.
#[test]
fn unreadable_entries_fail_closed() {
    let relay = Relay::start(&[PROXY[0], PROXY[1], "--rate-per-ip", "2"]);
    for entry in ["unknown", "_hidden", "203.0.113.7:99999", "[2001:db8::7"] {
        forwarded(&relay, "GET", "/metrics", &[entry], &[]).assert_error(403);
    }
    let anyone = Relay::start(&[PROXY[0], PROXY[1], "--allow-ip", "0.0.0.0/0,::/0"]);
    forwarded(&anyone, "GET", "/inbox/a/ack", &["unknown"], &[]).assert_error(403);
    forwarded(&anyone, "GET", "/inbox/a/ack", &[], &[("X-Real-IP", "garbage")]).assert_error(403);
    assert_eq!(forwarded(&anyone, "GET", "/inbox/a/ack", &["198.51.100.1"], &[]).status, 404);

    // Two requests from unidentified clients use up their shared key; the third is 429.
    for entry in ["unknown", "garbage"] {
        assert_eq!(forwarded(&relay, "GET", "/inbox/r/ack", &[entry], &[]).status, 404);
    }
    forwarded(&relay, "GET", "/inbox/r/ack", &["_other"], &[]).assert_error(429);
    // Neither the proxy nor an identified client shares that key.
    assert_eq!(forwarded(&relay, "GET", "/inbox/r/ack", &[], &[]).status, 404);
    assert_eq!(forwarded(&relay, "GET", "/inbox/r/ack", &["198.51.100.1"], &[]).status, 404);
}

/// A token file with one known token, in a directory of its own.
fn token_file(test: &str) -> PathBuf {
    let dir = scratch_dir(test);
    let path = dir.join("tokens");
    fs::write(&path, "known-token-00000000000001 send,receive,stats\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// 30 wrong tokens, each with a different forged first line and the proxy's line naming the
/// same client: the failed-authentication throttle counts them all for that client (5 × 401,
/// then 429).
#[test]
fn auth_throttle_is_reached_with_forged_first_lines() {
    let tokens = token_file("throttle");
    let relay = Relay::start(&[PROXY[0], PROXY[1], "--token-file", tokens.to_str().unwrap()]);
    let mut statuses = Vec::new();
    for n in 0..30 {
        let forged = format!("10.0.0.{n}");
        let auth = [("Authorization", "Bearer wrong-token-0000000000001")];
        let response = forwarded(&relay, "GET", "/inbox/t/ack", &[&forged, "198.51.100.9"], &auth);
        statuses.push(response.status);
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|&s| s == 429), "{statuses:?}");
    let _ = fs::remove_dir_all(tokens.parent().unwrap());
}

/// `X-Real-IP`/`X-Real-Port` follow the derivation: the forwarded entry's own port, or 0 when
/// it has none, never the proxy's port paired with a forwarded address.
#[test]
fn real_ip_metadata_pairs_no_proxy_port_with_a_forwarded_address() {
    let relay =
        Relay::start(&[PROXY[0], PROXY[1], "--link-timeout", "30s", "--peer-address", "show"]);
    let cases = [
        ("meta-1", "203.0.113.7:4711", "203.0.113.7", "4711"),
        ("meta-2", "[2001:db8::7]:443", "2001:db8::7", "443"),
        ("meta-3", "198.51.100.7", "198.51.100.7", "0"),
    ];
    for (id, entry, ip, port) in cases {
        let path = format!("/link/{id}");
        let receiver = relay.spawn_get(&path);
        relay.wait_parked(1);
        let headers = [("X-Forwarded-For", entry)];
        let sent = relay.send(&request("POST", &path, &headers, b"who"));
        assert_eq!(sent.status, 200, "{sent}");
        let received = receiver.join().unwrap();
        assert_eq!(received.header("x-real-ip"), Some(ip), "{entry}: {received}");
        assert_eq!(received.header("x-real-port"), Some(port), "{entry}: {received}");
        relay.wait_parked(0);
    }
}

// ---------------------------------------------------------------------------------------------
// Singleton fields, fragments, chunk sizes, absolute-form
// ---------------------------------------------------------------------------------------------

/// `Authorization`, `HttpRelay-WSecret` and `Content-Type` sent twice are 400, naming the field.
#[test]
fn singleton_fields_sent_twice_are_400() {
    let relay = Relay::start(&[]);
    for (name, value) in
        [("Authorization", "Bearer x"), ("HttpRelay-WSecret", "s"), ("Content-Type", "text/plain")]
    {
        let twice = [(name, value), (name, value)];
        let response = relay.send(&request("POST", "/inbox/single", &twice, b"x"));
        response.assert_error(400);
        assert!(response.text().contains(name), "{response}");
        let once = relay.send(&request("POST", "/inbox/single", &twice[..1], b"x"));
        assert_eq!(once.status, 200, "{name} once: {once}");
    }
    assert_eq!(refused(&relay, "malformed"), 3);
}

/// A `#` is never part of a request target: `/inbox/a#frag/ack` is 400, not the id `a#frag`.
#[test]
fn a_fragment_in_the_target_is_400() {
    let relay = Relay::start(&[]);
    assert_eq!(relay.post("/inbox/a", b"x", &[]).status, 200);
    for target in
        ["/inbox/a#frag/ack", "/inbox/a#", "/inbox/a?x=1#f", "http://relay.test/inbox/a#f"]
    {
        let response = relay.send(&request("GET", target, &[], b""));
        response.assert_error(400);
    }
}

/// Only `http` and `https` URLs are absolute-form targets (scheme in any case).
#[test]
fn only_http_and_https_are_absolute_form() {
    let relay = Relay::start(&[]);
    for target in ["httpfoo://evil/health", "ftp://evil/health", "httpx://relay.test/health"] {
        relay.send(&request("GET", target, &[], b"")).assert_error(400);
    }
    for target in ["http://relay.test/health", "HTTPS://relay.test/health"] {
        assert_eq!(relay.send(&request("GET", target, &[], b"")).status, 200, "{target}");
    }
}

/// `chunk-size = 1*HEXDIG`: twenty leading zeros are fine; the value is what is bounded.
#[test]
fn chunk_sizes_are_bounded_by_value_not_digits() {
    let relay = Relay::start(&["--max-body", "64K"]);
    let head =
        "POST /inbox/zeros HTTP/1.1\r\nHost: relay.test\r\nTransfer-Encoding: chunked\r\n\r\n";
    let zeros = "0".repeat(20);
    let raw = format!("{head}{zeros}5\r\nhello\r\n{zeros}0\r\n\r\n");
    assert_eq!(relay.send(raw.as_bytes()).status, 200);
    let got = relay.get("/inbox/zeros");
    assert_eq!((got.status, got.body.as_slice()), (200, &b"hello"[..]), "{got}");
    let huge = format!("{head}{zeros}10001\r\n");
    relay.send(huge.as_bytes()).assert_error(413);
    let past_u64 = format!("{head}10000000000000000\r\n");
    relay.send(past_u64.as_bytes()).assert_error(413);
}

// ---------------------------------------------------------------------------------------------
// The state file
// ---------------------------------------------------------------------------------------------

/// A fresh directory for one test, open to every user (the relay may run as `nobody`).
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-trust-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Runs the relay to completion with `args`, as `nobody` when the tests run as root (root
/// reads and writes whatever it likes), with a short head timeout; its exit and stderr.
fn run_relay(args: &[&str], as_nobody: bool) -> Output {
    let binary = handoff_binary();
    let mut command = if as_nobody && is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", &binary]);
        c
    } else {
        Command::new(&binary)
    };
    let child = command
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the relay");
    wait_output(child)
}

/// Waits for a relay that must refuse to start; kills it (and fails) if it runs on.
fn wait_output(mut child: std::process::Child) -> Output {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the relay started instead of refusing: {:?}", child.wait_with_output());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Asserts a refusal to start: exit status 1, and an error line naming `path` and `fix`.
fn assert_refused_to_start(output: &Output, path: &Path, fix: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("listening on"), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("ERROR") && l.contains(&*path.to_string_lossy()))
        .unwrap_or_else(|| panic!("no error line naming {}: {stderr}", path.display()));
    assert!(line.contains(fix), "{line}");
}

/// Running as `nobody`, a root-owned 0600 state file in a directory `nobody` can write: the
/// relay refuses to start, and the file is intact (it used to start empty and overwrite it).
#[test]
fn an_unreadable_state_file_is_left_intact_and_the_relay_refuses_to_start() {
    let dir = scratch_dir("unreadable");
    let path = dir.join("state");
    // A valid, empty state file; its content must survive whatever the relay does.
    let saved = b"handoff-state 1\n\0";
    fs::write(&path, saved).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(if is_root() { 0o600 } else { 0o000 }))
        .unwrap();
    let output = run_relay(&["--state-file", path.to_str().unwrap()], true);
    assert_refused_to_start(&output, &path, "give the relay's user read and write access");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::read(&path).unwrap(), saved);
    assert!(!dir.join("state.tmp").exists());
    assert!(!dir.join("state.corrupt").exists());
    let _ = fs::remove_dir_all(&dir);
}

/// A state path that is a directory, a directory that does not exist, a directory the relay
/// cannot write: each refuses the start with the path and the fix, and leaves no `PATH.tmp`.
#[test]
fn a_state_file_the_relay_cannot_use_refuses_the_start() {
    let dir = scratch_dir("unusable");
    let is_dir = dir.join("state");
    fs::create_dir(&is_dir).unwrap();
    let output = run_relay(&["--state-file", is_dir.to_str().unwrap()], false);
    assert_refused_to_start(&output, &is_dir, "must name a file in it");
    assert!(!dir.join("state.tmp").exists(), "PATH.tmp left behind");

    let missing = dir.join("no-such-dir").join("state");
    let output = run_relay(&["--state-file", missing.to_str().unwrap()], false);
    assert_refused_to_start(&output, &missing, "does not exist: create it");

    let read_only = dir.join("read-only");
    fs::create_dir(&read_only).unwrap();
    fs::set_permissions(&read_only, fs::Permissions::from_mode(0o555)).unwrap();
    let path = read_only.join("state");
    let output = run_relay(&["--state-file", path.to_str().unwrap()], true);
    assert_refused_to_start(&output, &path, "make it writable by the relay's user");
    assert!(!read_only.join("state.tmp").exists());
    let _ = fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Durations at and past their maximum
// ---------------------------------------------------------------------------------------------

const DURATION_FLAGS: [&str; 6] = [
    "--head-timeout",
    "--body-timeout",
    "--link-timeout",
    "--inbox-timeout",
    "--inbox-ttl",
    "--write-timeout",
];

/// Each duration flag at `u64::MAX` seconds (and milliseconds) is a one-line start-up error
/// with exit status 2, never a process that starts and aborts at its first request.
#[test]
fn each_duration_flag_at_u64_max_is_a_clear_start_up_error() {
    let max = u64::MAX.to_string();
    for flag in DURATION_FLAGS {
        for value in [max.clone(), format!("{max}ms"), "25h".to_string()] {
            let output = Command::new(handoff_binary())
                .args(["--listen", "127.0.0.1:0", flag, &value])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map(wait_output)
                .expect("cannot run the relay");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
            let expected =
                format!("handoff: invalid value \"{value}\" for {flag}: expected a duration of at most 24h\n");
            assert_eq!(stderr, expected);
        }
    }
}

/// Every duration flag at its maximum (24h) at once: the requests each one times are served,
/// and the relay is still there afterwards.
#[test]
fn every_duration_flag_at_its_maximum_serves_requests() {
    let mut args: Vec<&str> = Vec::new();
    for flag in DURATION_FLAGS {
        args.extend([flag, "24h"]);
    }
    let mut relay = Relay::start(&args);
    // head (every request), body (a POST), inbox-ttl (a stored message), inbox-timeout and
    // link-timeout (parked GETs).
    assert_eq!(relay.post("/inbox/max", b"kept", &[]).status, 200);
    let waiting_inbox = relay.spawn_get("/inbox/max-wait");
    let waiting_link = relay.spawn_get("/link/max-wait");
    relay.wait_parked(2);
    assert_eq!(relay.post("/inbox/max-wait", b"in", &[]).status, 200);
    assert_eq!(relay.post("/link/max-wait", b"ln", &[]).status, 200);
    assert_eq!(waiting_inbox.join().unwrap().body, b"in");
    assert_eq!(waiting_link.join().unwrap().body, b"ln");
    let kept = relay.get("/inbox/max");
    assert_eq!((kept.status, kept.body.as_slice()), (200, &b"kept"[..]));
    assert_eq!(relay.get("/health").status, 200);
    assert!(relay.wait_exit(Duration::ZERO).is_none(), "the relay exited");
}

// ---------------------------------------------------------------------------------------------
// --max-memory-per-ip
// ---------------------------------------------------------------------------------------------

/// `--max-memory 4M` (default share: an eighth, 512 KiB): one forwarded client stores 64 KiB
/// bodies until its share is full (7 of them, 65 KiB each with the request's allowance), then
/// gets 429 + `Retry-After` on `/inbox` and `/link` alike, counted as `memory_per_ip`; a second
/// client is served meanwhile, and the proxy itself is no client key.
#[test]
fn a_second_ip_is_served_while_the_first_holds_its_full_share() {
    let relay = Relay::start(&[PROXY[0], PROXY[1], "--max-memory", "4M", "--link-timeout", "60s"]);
    let body = vec![b'm'; 64 * 1024];
    let from = |ip: &str, path: &str| {
        relay.send(&request("POST", path, &[("X-Forwarded-For", ip)], &body))
    };
    let mut stored = 0;
    let refusal = loop {
        let response = from("198.51.100.1", &format!("/inbox/share-{stored}"));
        if response.status != 200 {
            break response;
        }
        stored += 1;
        assert!(stored <= 8, "no share: {stored} bodies stored");
    };
    assert_eq!(stored, 7, "512 KiB / 65 KiB");
    refusal.assert_error(429);
    assert!(refusal.text().contains("--max-memory-per-ip"), "{refusal}");
    assert!(refusal.header("retry-after").is_some(), "{refusal}");
    // /link counts against the same share: a sender that would leave its message is refused.
    from("198.51.100.1", "/link/share").assert_error(429);
    // Another client, and another /64 of IPv6, each have their own share.
    assert_eq!(from("198.51.100.2", "/inbox/other").status, 200);
    assert_eq!(from("2001:db8:1::1", "/inbox/other-v6").status, 200);
    // The trusted proxy speaking for itself is charged to no share.
    for n in 0..8 {
        let response = relay.post(&format!("/inbox/proxy-{n}"), &body, &[]);
        assert_eq!(response.status, 200, "proxy request {n}: {response}");
    }
    assert_eq!(refused(&relay, "memory_per_ip"), 2);
    assert_eq!(refused(&relay, "memory"), 0);
    let metrics = relay.get("/metrics").text();
    assert!(metrics.contains("handoff_refused_total{reason=\"memory_per_ip\"} 2\n"), "{metrics}");
    // Taking a message gives its share back.
    let ack = request("DELETE", "/inbox/share-0", &[("X-Forwarded-For", "198.51.100.1")], b"");
    assert_eq!(relay.send(&ack).status, 200);
    assert_eq!(from("198.51.100.1", "/inbox/share-again").status, 200);
}
