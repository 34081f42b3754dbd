//! Access control over the wire (protocol §6): bearer tokens and scopes on every route, `SIGHUP`
//! reloads, the failed-authentication throttle, allow and deny lists, and a token file refused
//! at start.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{handoff_binary, json_number, Relay, Response, WAIT_CAP};

const SEND: &str = "send-only-token-0000000001";
const RECEIVE: &str = "receive-only-token-000002";
const STATS: &str = "stats-only-token-00000003";
const ALL: &str = "every-scope-token-0000004";
const WRONG: &str = "not-a-known-token-0000005";

/// A token file in its own temporary directory (mode 600), removed when dropped.
struct TokenFile {
    dir: PathBuf,
    path: PathBuf,
}

impl TokenFile {
    fn new(text: &str) -> TokenFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("handoff-auth-{}-{n}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = TokenFile { path: dir.join("tokens"), dir };
        file.write(text, 0o600);
        file
    }

    fn standard() -> TokenFile {
        TokenFile::new(&format!(
            "# test tokens\n{SEND} send\n{RECEIVE} receive\n\n{STATS} stats\n{ALL} send,receive,stats\n"
        ))
    }

    /// Replaces the file's content (write to a new file, then rename, as an editor would).
    fn write(&self, text: &str, mode: u32) {
        let next = self.dir.join("tokens.new");
        fs::write(&next, text).unwrap();
        fs::set_permissions(&next, fs::Permissions::from_mode(mode)).unwrap();
        fs::rename(&next, &self.path).unwrap();
    }

    fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A request with an optional bearer token, extra headers and a body.
fn request(
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let bearer = token.map(|token| format!("Bearer {token}"));
    let mut all: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    all.extend_from_slice(headers);
    common::request(method, path, &all, body)
}

fn send(relay: &Relay, method: &str, path: &str, token: Option<&str>) -> Response {
    relay.send(&request(method, path, token, &[], b"message"))
}

/// `/health` as seen with `token`.
fn health(relay: &Relay, token: &str) -> String {
    let response = send(relay, "GET", "/health", Some(token));
    assert_eq!(response.status, 200, "{response}");
    response.text()
}

/// Waits until `/health`, read with a `stats` token, shows `parked` requests.
fn wait_parked(relay: &Relay, token: &str, parked: u64) {
    let deadline = Instant::now() + WAIT_CAP;
    loop {
        let text = health(relay, token);
        if json_number(&text, "parked") == Some(parked) {
            return;
        }
        assert!(Instant::now() < deadline, "never {parked} parked: {text}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A refusal's status and framing; a HEAD answer has no body, so no sentence to check.
fn assert_refusal(response: &Response, status: u16, method: &str) {
    if method == "HEAD" {
        assert_eq!(response.status, status, "{response}");
        response.assert_framing(true);
    } else {
        response.assert_error(status);
    }
}

fn assert_unauthorized(response: &Response, error: Option<&str>, method: &str) {
    assert_refusal(response, 401, method);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm=\"handoff\""), "{response}");
    match error {
        Some(error) => assert!(challenge.contains(&format!("error=\"{error}\"")), "{response}"),
        None => assert!(!challenge.contains("error="), "{response}"),
    }
}

fn assert_forbidden(response: &Response, scope: &str, method: &str) {
    assert_refusal(response, 403, method);
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("insufficient_scope"), "{response}");
    assert!(challenge.contains(&format!("scope=\"{scope}\"")), "{response}");
}

#[test]
fn every_route_needs_a_token_with_its_scope() {
    let tokens = TokenFile::standard();
    let relay = Relay::start(&["--token-file", tokens.arg(), "--auth-failures-per-ip", "0"]);
    let routes: [(&str, &str, &str); 9] = [
        ("POST", "/inbox/r", "send"),
        ("GET", "/inbox/r", "receive"),
        ("HEAD", "/inbox/r", "receive"),
        ("DELETE", "/inbox/r", "receive"),
        ("GET", "/inbox/r/ack", "receive"),
        ("GET", "/inbox/r/await", "receive"),
        ("GET", "/link/l", "receive"),
        ("POST", "/link/l", "send"),
        ("GET", "/health", "stats"),
    ];
    for (method, path, scope) in routes {
        let what = format!("{method} {path}");
        let other = if scope == "send" { RECEIVE } else { SEND };
        if path != "/health" {
            assert_unauthorized(&send(&relay, method, path, None), None, method);
        }
        let wrong = send(&relay, method, path, Some(WRONG));
        assert_unauthorized(&wrong, Some("invalid_token"), method);
        assert_forbidden(&send(&relay, method, path, Some(other)), scope, method);
        // Not a bearer token at all: as if there were none.
        let basic =
            relay.send(&request(method, path, None, &[("Authorization", "Basic eDp5")], b""));
        assert_eq!(basic.status, 401, "{what}: {basic}");
    }
    // Nothing was stored or parked by the refusals.
    assert_eq!(json_number(&health(&relay, STATS), "parked"), Some(0));
    assert_eq!(json_number(&health(&relay, STATS), "messages"), Some(0));

    // The right scope: the /inbox flow, then a /link hand-off (whose receiver parks).
    assert_eq!(send(&relay, "POST", "/inbox/r", Some(SEND)).status, 200);
    let got = send(&relay, "GET", "/inbox/r", Some(RECEIVE));
    assert_eq!((got.status, got.text().as_str()), (200, "message"), "{got}");
    assert_eq!(send(&relay, "HEAD", "/inbox/r", Some(RECEIVE)).status, 200);
    assert_eq!(send(&relay, "GET", "/inbox/r/ack", Some(RECEIVE)).text(), "false");
    assert_eq!(send(&relay, "DELETE", "/inbox/r", Some(RECEIVE)).status, 200);
    assert_eq!(send(&relay, "GET", "/inbox/r/await", Some(ALL)).status, 200);
    let receiver = relay.spawn_request(request("GET", "/link/l", Some(RECEIVE), &[], b""));
    wait_parked(&relay, STATS, 1);
    assert_eq!(send(&relay, "POST", "/link/l", Some(ALL)).status, 200);
    let receiver = receiver.join().unwrap();
    assert_eq!((receiver.status, receiver.body.as_slice()), (200, &b"message"[..]), "{receiver}");

    // /health: the counts need stats; the refusals were counted by reason.
    let text = health(&relay, STATS);
    // Per route: no token (but /health), a wrong token, a Basic credential.
    assert_eq!(json_number(&text, "unauthorized"), Some(8 + 9 + 9), "{text}");
    assert_eq!(json_number(&text, "forbidden"), Some(9), "{text}");
    assert_eq!(json_number(&text, "auth_throttled"), Some(0), "{text}");

    // Tokens never reach the logs.
    for line in relay.logs() {
        for token in [SEND, RECEIVE, STATS, ALL, WRONG] {
            assert!(!line.contains(token), "a token was logged: {line}");
        }
    }
}

#[test]
fn root_minimal_health_and_preflights_stay_open() {
    let tokens = TokenFile::standard();
    let relay = Relay::start(&["--token-file", tokens.arg()]);
    let root = relay.get("/");
    assert_eq!(root.status, 200, "{root}");
    // A liveness probe without credentials: the status alone, no counts.
    let probe = relay.get("/health");
    assert_eq!(probe.status, 200, "{probe}");
    assert_eq!(probe.text(), "{\"status\":\"ok\"}\n");
    let head = relay.send(b"HEAD /health HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(head.status, 200, "{head}");
    // The detailed answer with a stats token.
    let detailed = health(&relay, STATS);
    assert!(detailed.contains("\"parked\":0") && detailed.contains("\"refused\""), "{detailed}");
    // A preflight carries no credentials (protocol §5) and is granted, authorization included.
    let preflight = relay.send(&request(
        "OPTIONS",
        "/inbox/p",
        None,
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization, content-type"),
        ],
        b"",
    ));
    assert_eq!(preflight.status, 204, "{preflight}");
    let allowed = preflight.header("access-control-allow-headers").unwrap_or_default();
    assert!(allowed.contains("authorization"), "{preflight}");
    // The page can read why its request was refused.
    let refused =
        relay.send(&request("GET", "/inbox/p", None, &[("Origin", "https://app.example")], b""));
    assert_eq!(refused.status, 401, "{refused}");
    assert_eq!(refused.header("access-control-allow-origin"), Some("https://app.example"));
    let exposed = refused.header("access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("WWW-Authenticate"), "{refused}");
    // And with a token, the browser's request goes through.
    let stored = relay.send(&request(
        "POST",
        "/inbox/p",
        Some(SEND),
        &[("Origin", "https://app.example")],
        b"m",
    ));
    assert_eq!(stored.status, 200, "{stored}");
    assert_eq!(stored.header("access-control-allow-origin"), Some("https://app.example"));
}

fn hangup(relay: &Relay) {
    let status = Command::new("kill").args(["-HUP", &relay.pid().to_string()]).status().unwrap();
    assert!(status.success(), "kill -HUP failed");
}

#[test]
fn sighup_rotates_tokens_without_dropping_parked_requests() {
    const A: &str = "rotation-token-a-00000001";
    const B: &str = "rotation-token-b-00000002";
    let tokens = TokenFile::new(&format!("{A} send,receive,stats\n"));
    let relay = Relay::start(&["--token-file", tokens.arg(), "--link-timeout", "30s"]);
    relay.wait_log("loaded 1 tokens", |l| l.contains("loaded 1 tokens from"));
    let receiver = relay.spawn_request(request("GET", "/link/rot", Some(A), &[], b""));
    wait_parked(&relay, A, 1);

    tokens.write(&format!("# A is retired\n{B} send,receive,stats\n"), 0o600);
    hangup(&relay);
    relay.wait_log("reloaded 1 tokens", |l| l.contains("reloaded 1 tokens from"));

    // The receiver parked under A is still there, and B's message reaches it.
    wait_parked(&relay, B, 1);
    let sent = relay.send(&request("POST", "/link/rot", Some(B), &[], b"rotated"));
    assert_eq!(sent.status, 200, "{sent}");
    let receiver = receiver.join().unwrap();
    assert_eq!((receiver.status, receiver.body.as_slice()), (200, &b"rotated"[..]), "{receiver}");
    // A new request with A is refused.
    let old = send(&relay, "GET", "/link/rot", Some(A));
    assert_unauthorized(&old, Some("invalid_token"), "GET");

    // A malformed file is refused on reload: the error is logged, B stays in force.
    tokens.write(&format!("{B} send,receive,stats\n{A} send,recieve\n"), 0o600);
    hangup(&relay);
    relay.wait_log("a failed reload", |l| l.contains("token reload failed"));
    let error = relay.logs().into_iter().find(|l| l.contains("token reload failed")).unwrap();
    assert!(error.starts_with("ERROR"), "{error}");
    assert!(error.contains("keeping the 1 tokens in force"), "{error}");
    assert!(error.contains("line 2: unknown scope \"recieve\""), "{error}");
    assert!(!error.contains(A) && !error.contains(B), "a token was logged: {error}");
    assert_eq!(send(&relay, "POST", "/inbox/x", Some(B)).status, 200);
    assert_eq!(send(&relay, "POST", "/inbox/x", Some(A)).status, 401);

    // A world-readable file is refused on reload too.
    tokens.write(&format!("{A} send\n"), 0o644);
    hangup(&relay);
    relay.wait_log("a refused mode", |l| l.contains("mode 0644"));
    assert_eq!(send(&relay, "POST", "/inbox/x", Some(B)).status, 200);
}

#[test]
fn failed_authentications_are_throttled_per_client() {
    let tokens = TokenFile::standard();
    let relay = Relay::start(&["--token-file", tokens.arg(), "--rate-per-ip", "0"]);
    // The default: five failures a minute (401 or 403) are answered as such...
    for n in 0..5 {
        let token = if n % 2 == 0 { WRONG } else { RECEIVE };
        let response = send(&relay, "POST", "/inbox/t", Some(token));
        assert!(matches!(response.status, 401 | 403), "attempt {n}: {response}");
    }
    // ...then the client gets 429 for a cool-down, even with a good token, which would otherwise
    // tell a right guess from a wrong one.
    for token in [Some(WRONG), Some(SEND), None] {
        let throttled = send(&relay, "POST", "/inbox/t", token);
        throttled.assert_error(429);
        let retry: u64 = throttled.header("retry-after").unwrap().parse().unwrap();
        assert!((11..=12).contains(&retry), "one failure's worth at 5 a minute: {throttled}");
        assert!(throttled.text().contains("--auth-failures-per-ip"), "{throttled}");
    }
    // What needs no token is not throttled.
    assert_eq!(relay.get("/").status, 200);
    assert_eq!(relay.get("/health").status, 200);
    let preflight = relay.send(b"OPTIONS /inbox/t HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(preflight.status, 204, "{preflight}");
    // One warning a minute for this client, with the count.
    relay.wait_log("a throttle warning", |l| l.starts_with("WARN") && l.contains("127.0.0.1"));
    let warnings: Vec<String> =
        relay.logs().into_iter().filter(|l| l.contains("failed authentications")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("5 or more failed authentications"), "{warnings:?}");
    // Even a stats token is throttled now; the count shows once the cool-down is over.
    assert_eq!(send(&relay, "GET", "/health", Some(STATS)).status, 429);
}

#[test]
fn throttle_cool_down_expires() {
    let tokens = TokenFile::standard();
    // 120 a minute: a cool-down of half a second once the burst is spent.
    let relay = Relay::start(&[
        "--token-file",
        tokens.arg(),
        "--rate-per-ip",
        "0",
        "--auth-failures-per-ip",
        "120",
    ]);
    let mut attempts = 0;
    let throttled = loop {
        let response = send(&relay, "GET", "/inbox/e", Some(WRONG));
        attempts += 1;
        if response.status == 429 {
            break response;
        }
        assert_eq!(response.status, 401, "{response}");
        assert!(attempts < 1000, "never throttled");
    };
    assert!(attempts > 120, "{attempts} attempts");
    assert_eq!(throttled.header("retry-after"), Some("1"), "{throttled}");
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(send(&relay, "POST", "/inbox/e", Some(SEND)).status, 200);
    let text = health(&relay, STATS);
    assert!(json_number(&text, "auth_throttled") >= Some(1), "{text}");
    assert!(json_number(&text, "unauthorized") >= Some(120), "{text}");
}

#[test]
fn allow_and_deny_lists_ipv4() {
    // Outside the allow-list: 403 on every route, before anything else.
    let relay = Relay::start(&["--allow-ip", "10.0.0.0/8,192.0.2.1"]);
    for raw in [
        b"GET / HTTP/1.1\r\nHost: relay.test\r\n\r\n".to_vec(),
        b"GET /health HTTP/1.1\r\nHost: relay.test\r\n\r\n".to_vec(),
        b"OPTIONS /link/a HTTP/1.1\r\nHost: relay.test\r\n\r\n".to_vec(),
        b"POST /inbox/a HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 1\r\n\r\nx".to_vec(),
        // Even a request that is not valid HTTP/1.1 for the relay (no Host).
        b"GET /link/a HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let response = relay.send(&raw);
        response.assert_error(403);
        assert!(response.text().contains("--allow-ip"), "{response}");
    }
    // Inside the deny-list: 403.
    let relay = Relay::start(&["--deny-ip", "127.0.0.0/8"]);
    relay.get("/").assert_error(403);
    // Inside the allow-list and outside the deny-list: served.
    let relay = Relay::start(&["--allow-ip", "127.0.0.1/32", "--deny-ip", "10.0.0.0/8"]);
    assert_eq!(relay.get("/").status, 200);
    assert_eq!(relay.post("/inbox/a", b"x", &[]).status, 200);
    // Deny wins over allow.
    let relay = Relay::start(&["--allow-ip", "127.0.0.0/8", "--deny-ip", "127.0.0.1"]);
    relay.get("/").assert_error(403);
}

#[test]
fn allow_and_deny_lists_ipv6() {
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("skipped: IPv6 loopback is unavailable here");
        return;
    }
    let relay = Relay::start(&["--listen", "[::1]:0", "--allow-ip", "::1/128"]);
    assert!(relay.addr().is_ipv6(), "{}", relay.addr());
    assert_eq!(relay.get("/").status, 200);
    assert_eq!(relay.post("/inbox/six", b"x", &[]).status, 200);
    let relay = Relay::start(&["--listen", "[::1]:0", "--allow-ip", "2001:db8::/32"]);
    relay.get("/").assert_error(403);
    let relay = Relay::start(&["--listen", "[::1]:0", "--deny-ip", "::/0"]);
    relay.get("/").assert_error(403);
    // An IPv4 range says nothing about an IPv6 client.
    let relay = Relay::start(&["--listen", "[::1]:0", "--deny-ip", "0.0.0.0/0"]);
    assert_eq!(relay.get("/").status, 200);
}

#[test]
fn allow_and_deny_lists_behind_a_trusted_proxy() {
    let relay = Relay::start(&[
        "--trust-proxy",
        "127.0.0.1",
        "--allow-ip",
        "127.0.0.1,203.0.113.0/24,2001:db8::/32",
        "--deny-ip",
        "203.0.113.66",
    ]);
    let via = |forwarded: &str| {
        let raw =
            format!("GET / HTTP/1.1\r\nHost: relay.test\r\nX-Forwarded-For: {forwarded}\r\n\r\n");
        relay.send(raw.as_bytes())
    };
    assert_eq!(via("203.0.113.5").status, 200);
    assert_eq!(via("2001:db8::7").status, 200);
    via("198.51.100.1").assert_error(403);
    via("203.0.113.66").assert_error(403);
    // What a client writes left of the proxy's own entry is not believed.
    via("203.0.113.5, 198.51.100.1").assert_error(403);
    assert_eq!(via("198.51.100.1, 203.0.113.5").status, 200, "the right-most entry counts");
    // X-Real-IP, when there is no X-Forwarded-For.
    let real = relay.send(b"GET / HTTP/1.1\r\nHost: relay.test\r\nX-Real-IP: 198.51.100.9\r\n\r\n");
    real.assert_error(403);
    // The proxy itself is allowed, and /health counts the refusals.
    let (response, text) = relay.health();
    assert_eq!(response.status, 200, "{response}");
    assert_eq!(json_number(&text, "ip_denied"), Some(4), "{text}");
    // An untrusted peer's X-Forwarded-For is ignored: a relay that trusts no proxy sees 127.0.0.1.
    let strict = Relay::start(&["--allow-ip", "203.0.113.0/24"]);
    let raw = b"GET / HTTP/1.1\r\nHost: relay.test\r\nX-Forwarded-For: 203.0.113.5\r\n\r\n";
    strict.send(raw).assert_error(403);
}

/// Runs `handoff` with `args`, expecting it to exit at once; returns the exit code and stderr.
fn refused_at_start(args: &[&str]) -> (i32, String) {
    let mut child = Command::new(handoff_binary())
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("handoff {args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line: {stderr:?}");
    lines[0]
}

#[test]
fn a_world_readable_token_file_is_refused_at_start() {
    let tokens = TokenFile::standard();
    tokens.write(&format!("{ALL} send\n"), 0o644);
    let (code, stderr) = refused_at_start(&["--token-file", tokens.arg()]);
    assert_ne!(code, 0, "{stderr}");
    let line = one_line(&stderr);
    assert!(line.contains(tokens.arg()), "names the file: {line}");
    assert!(line.contains(&format!("chmod 600 {}", tokens.arg())), "gives the fix: {line}");
    assert!(!line.contains(ALL), "{line}");
}

#[test]
fn a_malformed_or_missing_token_file_is_refused_at_start() {
    let cases = [
        (format!("{ALL} send\n\n{SEND} send,post\n"), "line 3: unknown scope \"post\""),
        ("# c\nshort-token receive\n".to_string(), "line 2: token of 11 characters"),
        (format!("{ALL} send\n{ALL} stats\n"), "line 2: the same token as line 1"),
        (format!("{ALL}\n"), "line 1: no scopes"),
    ];
    for (text, want) in cases {
        let tokens = TokenFile::new(&text);
        let (code, stderr) = refused_at_start(&["--token-file", tokens.arg()]);
        assert_ne!(code, 0, "{stderr}");
        let line = one_line(&stderr);
        assert!(line.contains(tokens.arg()) && line.contains(want), "{want}: {line}");
        assert!(!line.contains(ALL) && !line.contains("short-token"), "{line}");
    }
    let missing = Path::new("/nonexistent/handoff-tokens");
    let (code, stderr) = refused_at_start(&["--token-file", missing.to_str().unwrap()]);
    assert_ne!(code, 0, "{stderr}");
    assert!(one_line(&stderr).contains("cannot read token file /nonexistent/handoff-tokens"));
    // A directory cannot be read as a file either.
    let dir = std::env::temp_dir();
    let (code, stderr) = refused_at_start(&["--token-file", dir.to_str().unwrap()]);
    assert_ne!(code, 0, "{stderr}");
    assert!(one_line(&stderr).contains("cannot read token file"), "{stderr}");
}

#[test]
fn without_a_token_file_nothing_changes() {
    let relay = Relay::start(&[]);
    assert_eq!(relay.post("/inbox/o", b"x", &[]).status, 200);
    // An Authorization header is ignored when no token file is set.
    assert_eq!(send(&relay, "GET", "/inbox/o", Some(WRONG)).status, 200);
    let (response, text) = relay.health();
    assert_eq!(response.status, 200);
    assert!(text.contains("\"messages\":1"), "{text}");
    // SIGHUP does not stop the relay; it says there is nothing to reload.
    hangup(&relay);
    relay.wait_log("nothing to reload", |l| l.contains("nothing to reload"));
    assert_eq!(relay.get("/").status, 200);
}
