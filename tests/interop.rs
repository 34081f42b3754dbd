//! Interop tests: handoff behind the real nginx and Caddy, with the configurations shipped in
//! `proxy/`, behind HAProxy (`option forwardfor`), and real clients (curl over TLS). Not part of `make test`: they need the programs
//! `make interop-deps` installs, and run with `make interop`.
//!
//! Addresses: the proxies listen on 127.0.0.2 (Linux routes all of 127/8 to lo), curl connects
//! from 127.0.0.3, and the proxies reach handoff on 127.0.0.1 from 127.0.0.1. So the real client
//! (127.0.0.3), the proxy (127.0.0.1) and a forged address (6.6.6.6) are all distinguishable.

mod common;

use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Where the proxies listen.
const PROXY_IP: &str = "127.0.0.2";
/// Where curl connects from.
const CLIENT_IP: &str = "127.0.0.3";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("handoff-interop-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn join(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("temp path is UTF-8").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port that was free a moment ago on [`PROXY_IP`], where the proxies listen.
fn free_port() -> u16 {
    TcpListener::bind((PROXY_IP, 0)).unwrap().local_addr().unwrap().port()
}

/// The shipped file `proxy/<name>` with each default replaced; every default must occur, so the
/// shipped file and the tests cannot drift apart unnoticed.
fn render(name: &str, replacements: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy").join(name);
    let mut text = fs::read_to_string(&path).expect("read the shipped proxy config");
    for (from, to) in replacements {
        assert!(text.contains(from), "proxy/{name} no longer contains {from:?}");
        text = text.replace(from, to);
    }
    text
}

/// A throw-away self-signed certificate for `localhost` in `dir`: (certificate, key).
fn make_cert(dir: &TempDir) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let output = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost", "-days", "1"])
        .args(["-keyout", &key, "-out", &cert])
        .output()
        .expect("cannot run openssl (make interop-deps)");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
    (cert, key)
}

/// Runs nginx on `server`, a server block, with the smallest main file around it and every path
/// nginx writes in `dir`; its error log is `dir/error.log`.
fn spawn_nginx(dir: &TempDir, server: &str) -> Child {
    fs::write(dir.join("server.conf"), server).unwrap();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {pid};\nerror_log {log} info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n  access_log {access};\n  client_body_temp_path {tmp}/body;\n  \
         proxy_temp_path {tmp}/proxy;\n  fastcgi_temp_path {tmp}/fastcgi;\n  \
         uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n  \
         include {server};\n}}\n",
        pid = dir.join("nginx.pid"),
        log = dir.join("error.log"),
        access = dir.join("access.log"),
        tmp = dir.path().display(),
        server = dir.join("server.conf"),
    );
    fs::write(dir.join("nginx.conf"), main).unwrap();
    Command::new("nginx")
        .args(["-p", &dir.join(""), "-c", &dir.join("nginx.conf")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("cannot run nginx (make interop-deps)")
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Caddy,
}

/// A running proxy in front of a relay, stopped when dropped.
struct Proxy {
    child: Child,
    /// Whether `child` is an nginx master, stopped by SIGTERM (see `Drop`).
    nginx: bool,
    port: u16,
    log: String,
    _dir: TempDir,
}

impl Proxy {
    fn start(kind: Kind, relay: &Relay) -> Proxy {
        let dir = TempDir::new(&format!("{kind:?}").to_lowercase());
        let (cert, key) = make_cert(&dir);
        let port = free_port();
        let upstream = relay.addr().to_string();
        let (child, log) = match kind {
            Kind::Nginx => {
                let server = render(
                    "nginx.conf",
                    &[
                        ("listen 443 ssl;", format!("listen {PROXY_IP}:{port} ssl;")),
                        ("server_name example.org;", "server_name localhost;".into()),
                        ("/etc/ssl/certs/example.org.pem", cert),
                        ("/etc/ssl/private/example.org.key", key),
                        ("http://127.0.0.1:8080", format!("http://{upstream}")),
                    ],
                );
                (spawn_nginx(&dir, &server), dir.join("error.log"))
            }
            Kind::Caddy => {
                let config = render(
                    "Caddyfile",
                    &[
                        (
                            "admin localhost:2019",
                            "admin off\n\tauto_https disable_redirects".into(),
                        ),
                        ("example.org {", format!("localhost:{port} {{\n\tbind {PROXY_IP}")),
                        ("/etc/ssl/certs/example.org.pem", cert),
                        ("/etc/ssl/private/example.org.key", key),
                        ("reverse_proxy 127.0.0.1:8080", format!("reverse_proxy {upstream}")),
                    ],
                );
                fs::write(dir.join("Caddyfile"), config).unwrap();
                let child = Command::new("caddy")
                    .args(["run", "--config", &dir.join("Caddyfile"), "--adapter", "caddyfile"])
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path())
                    .env("XDG_CONFIG_HOME", dir.path())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
                    .spawn()
                    .expect("cannot run caddy (make interop-deps)");
                (child, dir.join("stderr.log"))
            }
        };
        let nginx = matches!(kind, Kind::Nginx);
        let mut proxy = Proxy { child, nginx, port, log, _dir: dir };
        proxy.wait_listening();
        proxy
    }

    fn wait_listening(&mut self) {
        let addr: SocketAddr = format!("{PROXY_IP}:{}", self.port).parse().unwrap();
        let deadline = Instant::now() + WAIT_CAP;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("proxy exited with {status}:\n{}", self.logs());
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("proxy not listening on {addr} within {WAIT_CAP:?}:\n{}", self.logs());
    }

    fn logs(&self) -> String {
        let dir = self._dir.path();
        let stderr = fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
        let log = fs::read_to_string(&self.log).unwrap_or_default();
        format!("{stderr}\n{log}")
    }

    /// Runs curl against `https://localhost:PORT{path}` (SNI and Host `localhost`, resolved to
    /// the proxy's address) from [`CLIENT_IP`], with `args` before the URL.
    fn curl(&self, path: &str, args: &[&str]) -> CurlResponse {
        curl(self.port, path, args)
    }

    fn spawn_curl(&self, path: &str, args: &[&str]) -> thread::JoinHandle<CurlResponse> {
        let (port, path) = (self.port, path.to_string());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(port, &path, &args)
        })
    }
}

impl Drop for Proxy {
    /// Stops the proxy and waits for it. nginx's master is sent SIGTERM, and stops its workers
    /// before it exits: killed, it would leave them listening on the port, and a later test
    /// given the same port would talk to them. Whatever still runs after [`WAIT_CAP`] is killed.
    fn drop(&mut self) {
        if self.nginx {
            common::tools::terminate(&mut self.child, WAIT_CAP);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What curl received: the final response's status, headers and body.
#[derive(Debug)]
struct CurlResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    elapsed: Duration,
}

impl CurlResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn curl(port: u16, path: &str, args: &[&str]) -> CurlResponse {
    let started = Instant::now();
    let url = format!("https://localhost:{port}{path}");
    let output: Output = Command::new("curl")
        .args(["-sS", "-k", "-i", "--max-time", "30"])
        .args(["--resolve", &format!("localhost:{port}:{PROXY_IP}"), "--interface", CLIENT_IP])
        .args(args)
        .arg(&url)
        .output()
        .expect("cannot run curl (make interop-deps)");
    let elapsed = started.elapsed();
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "curl {args:?} {url} failed: {}\n{raw}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `-i` prints every head (a `100 Continue` too); the last one belongs to the body.
    let mut rest = raw.as_str();
    loop {
        let (head, body) = rest.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head: {raw}"));
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {raw}"));
        if (100..200).contains(&status) {
            rest = body;
            continue;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        return CurlResponse { status, headers, body: body.to_string(), elapsed };
    }
}

/// `/link`: the receiver (curl, through the proxy) waits, the sender (curl, through the proxy)
/// delivers; the body arrives and the sender gets 200.
fn link_handoff(kind: Kind) {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32"]);
    let proxy = Proxy::start(kind, &relay);
    let receiver = proxy.spawn_curl("/link/interop-channel", &[]);
    relay.wait_parked(1);
    let sender = proxy.curl(
        "/link/interop-channel",
        &["-X", "POST", "-H", "Content-Type: text/plain", "--data", "encrypted-token"],
    );
    assert_eq!(sender.status, 200, "{sender:?}\n{}", proxy.logs());
    let receiver = receiver.join().unwrap();
    assert_eq!(receiver.status, 200, "{receiver:?}");
    assert_eq!(receiver.body, "encrypted-token");
    assert_eq!(receiver.header("content-type"), Some("text/plain"));
    assert_eq!(receiver.header("httprelay-method"), Some("POST"));
}

/// `/inbox`: POST, GET, `/ack`, `/await` answered by a DELETE, `/ack` again.
fn inbox_flow(kind: Kind) {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32"]);
    let proxy = Proxy::start(kind, &relay);
    let post = proxy.curl("/inbox/interop-box", &["-X", "POST", "--data", "encrypted-token"]);
    assert_eq!(post.status, 200, "{post:?}\n{}", proxy.logs());
    let get = proxy.curl("/inbox/interop-box", &[]);
    assert_eq!((get.status, get.body.as_str()), (200, "encrypted-token"), "{get:?}");
    let ack = proxy.curl("/inbox/interop-box/ack", &[]);
    assert_eq!((ack.status, ack.body.as_str()), (200, "false"), "{ack:?}");
    let waiter = proxy.spawn_curl("/inbox/interop-box/await", &[]);
    relay.wait_parked(1);
    let delete = proxy.curl("/inbox/interop-box", &["-X", "DELETE"]);
    assert_eq!(delete.status, 200, "{delete:?}");
    let waiter = waiter.join().unwrap();
    assert_eq!(waiter.status, 200, "{waiter:?}");
    let ack = proxy.curl("/inbox/interop-box/ack", &[]);
    assert_eq!((ack.status, ack.body.as_str()), (200, "true"), "{ack:?}");
}

/// A long poll that runs out: the client gets handoff's 408, not a gateway timeout.
fn long_poll_ends_in_408(kind: Kind) {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32", "--inbox-timeout", "2s"]);
    let proxy = Proxy::start(kind, &relay);
    let poll = proxy.curl("/inbox/nobody-posts", &[]);
    assert_eq!(poll.status, 408, "{poll:?}\n{}", proxy.logs());
    assert!(poll.body.starts_with("Request timed out"), "not handoff's 408: {poll:?}");
    assert!(poll.elapsed >= Duration::from_millis(1900), "{poll:?}");
}

/// The sender's address as handoff shows it to the receiver (`X-Real-IP`), with a forged
/// `X-Forwarded-For: 6.6.6.6` sent to the proxy.
fn sender_address_seen_by_receiver(relay: &Relay, proxy: &Proxy) -> String {
    let receiver = relay.spawn_get("/link/whoami");
    relay.wait_parked(1);
    let sender = proxy
        .curl("/link/whoami", &["-X", "POST", "-H", "X-Forwarded-For: 6.6.6.6", "--data", "x"]);
    assert_eq!(sender.status, 200, "{sender:?}\n{}", proxy.logs());
    let receiver = receiver.join().unwrap();
    assert_eq!(receiver.status, 200, "{receiver}");
    receiver.header("x-real-ip").unwrap_or_else(|| panic!("no X-Real-IP: {receiver}")).to_string()
}

/// The client address handoff sees is the one the proxy saw. nginx appends its `$remote_addr`
/// to the client's `X-Forwarded-For` (`6.6.6.6, 127.0.0.3`); Caddy replaces the header with its
/// peer's address (`127.0.0.3`). handoff, trusting only 127.0.0.1/32, takes the right-most entry
/// that is not a trusted proxy: 127.0.0.3, never the forged 6.6.6.6 to its left. Without
/// `--trust-proxy` it ignores the headers and sees the proxy itself, 127.0.0.1.
fn client_ip_is_the_one_the_proxy_saw(kind: Kind) {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32", "--peer-address", "show"]);
    let proxy = Proxy::start(kind, &relay);
    assert_eq!(sender_address_seen_by_receiver(&relay, &proxy), CLIENT_IP);
    drop(proxy);

    let untrusting = Relay::start(&["--peer-address", "show"]);
    let proxy = Proxy::start(kind, &untrusting);
    assert_eq!(sender_address_seen_by_receiver(&untrusting, &proxy), "127.0.0.1");
    for relay in [&relay, &untrusting] {
        assert!(!relay.logs().iter().any(|l| l.contains("6.6.6.6")), "{:?}", relay.logs());
    }
}

/// The body limit: a body of exactly `--max-body` (64 KiB, the shipped files' limit too) is
/// relayed whole; one byte more, or 4 MiB more, is refused 413 (not a 502 from the proxy),
/// with a length given and chunked, and nothing is stored.
fn body_limit(kind: Kind) {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32"]);
    let proxy = Proxy::start(kind, &relay);
    let dir = TempDir::new("body");
    let largest = "x".repeat(64 * 1024);
    fs::write(dir.join("largest"), &largest).unwrap();
    fs::write(dir.join("larger"), format!("{largest}y")).unwrap();
    fs::write(dir.join("huge"), "x".repeat(4 << 20)).unwrap();
    let post = |file: &str, chunked: bool| {
        let data = format!("@{}", dir.join(file));
        let mut args = vec!["-X", "POST", "--data-binary", &data];
        if chunked {
            args.extend(["-H", "Transfer-Encoding: chunked"]);
        }
        proxy.curl("/inbox/interop-limit", &args)
    };
    for chunked in [false, true] {
        for file in ["larger", "huge"] {
            let refused = post(file, chunked);
            let logs = proxy.logs();
            assert_eq!(refused.status, 413, "{file}, chunked {chunked}: {refused:?}\n{logs}");
            assert_eq!(json_number(&relay.health().1, "messages"), Some(0), "stored anyway");
        }

        let stored = post("largest", chunked);
        assert_eq!(stored.status, 200, "chunked {chunked}: {stored:?}\n{}", proxy.logs());
        let get = proxy.curl("/inbox/interop-limit", &[]);
        assert_eq!(get.status, 200, "{get:?}");
        assert!(get.body == largest, "the 64 KiB body came back as {} bytes", get.body.len());
        let delete = proxy.curl("/inbox/interop-limit", &["-X", "DELETE"]);
        assert_eq!(delete.status, 200, "{delete:?}");
    }
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn nginx_link_handoff() {
    link_handoff(Kind::Nginx);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn nginx_inbox_flow() {
    inbox_flow(Kind::Nginx);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn nginx_long_poll_ends_in_handoffs_408() {
    long_poll_ends_in_408(Kind::Nginx);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn nginx_client_ip_is_the_one_nginx_saw() {
    client_ip_is_the_one_the_proxy_saw(Kind::Nginx);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn nginx_body_limit() {
    body_limit(Kind::Nginx);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn caddy_link_handoff() {
    link_handoff(Kind::Caddy);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn caddy_inbox_flow() {
    inbox_flow(Kind::Caddy);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn caddy_long_poll_ends_in_handoffs_408() {
    long_poll_ends_in_408(Kind::Caddy);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn caddy_client_ip_is_the_one_caddy_saw() {
    client_ip_is_the_one_the_proxy_saw(Kind::Caddy);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn caddy_body_limit() {
    body_limit(Kind::Caddy);
}

/// Serves `page` at `/page` on 127.0.0.1 (another port, so another origin than the relay's).
fn serve_page(page: String) -> SocketAddr {
    common::tools::serve(move |target| {
        (target == "/page").then(|| ("text/html; charset=utf-8", page.clone().into_bytes()))
    })
}

/// The Pubky-style flow of a web page, against the relay at `relay`, every fetch with
/// `credentials: 'include'`: long-poll `/inbox/page-box` until a message arrives (408 means poll
/// again), read it, acknowledge it (a DELETE: preflighted), then a `/link` hand-off with the
/// page as both receiver and sender. The lines of its log end up in `<pre id=result>`.
fn pubky_page(relay: SocketAddr) -> String {
    format!(
        r#"<!doctype html>
<html><body><pre id=result>pending</pre>
<script type=module>
const R = 'http://{relay}';
const out = [];
const opt = (o) => Object.assign({{credentials: 'include'}}, o);
try {{
  let r = await fetch(R + '/inbox/page-box', opt());
  out.push('poll ' + r.status);
  for (let i = 0; r.status === 408 && i < 30; i++) {{
    r = await fetch(R + '/inbox/page-box', opt());
    out.push('poll ' + r.status);
  }}
  out.push('body ' + await r.text());
  const del = await fetch(R + '/inbox/page-box', opt({{method: 'DELETE'}}));
  out.push('delete ' + del.status);
  const receiving = fetch(R + '/link/page-link', opt());
  const sent = await fetch(R + '/link/page-link',
    opt({{method: 'POST', body: 'from-page', headers: {{'Content-Type': 'text/plain'}}}}));
  const got = await receiving;
  out.push('link ' + sent.status + ' ' + got.status + ' ' + await got.text() + ' from ' +
    got.headers.get('X-Real-IP'));
}} catch (e) {{
  out.push('error ' + e);
}}
document.getElementById('result').textContent = out.join('\n');
</script>
</body></html>
"#
    )
}

/// Headless Chromium on `url` in a new profile; returns the DOM once the page is done. Virtual
/// time does not run while fetches are pending, so the budget covers the page's timers, not its
/// long polls.
fn chromium_dump_dom(url: &str) -> String {
    chromium_dump_dom_with(url, None)
}

/// [`chromium_dump_dom`] with the profile's `Preferences` (JSON) set to `preferences` first.
fn chromium_dump_dom_with(url: &str, preferences: Option<&str>) -> String {
    let dir = TempDir::new("chromium");
    if let Some(preferences) = preferences {
        fs::create_dir_all(dir.join("profile/Default")).unwrap();
        fs::write(dir.join("profile/Default/Preferences"), preferences).unwrap();
    }
    let dom = dir.join("dom.html");
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--no-first-run"])
        .arg(format!("--user-data-dir={}", dir.join("profile")))
        .args(["--virtual-time-budget=30000", "--dump-dom", url])
        .env("HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .env("XDG_CACHE_HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&dom).unwrap())
        .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
        .spawn()
        .expect("cannot run chromium (make interop-deps)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 60 s");
        }
        thread::sleep(Duration::from_millis(50));
    }
    fs::read_to_string(&dom).unwrap()
}

/// The text of `<pre id="result">` in a dumped DOM.
fn page_result(dom: &str) -> String {
    let start = dom.find(r#"<pre id="result">"#).unwrap_or_else(|| panic!("no result: {dom}"));
    let rest = &dom[start + r#"<pre id="result">"#.len()..];
    rest[..rest.find("</pre>").unwrap()].to_string()
}

/// A page on another origin runs the Pubky flow in the browser: the long poll gets 408 and
/// polls again, the message a POST from outside stores arrives, the DELETE (after a preflight)
/// acknowledges it, and a `/link` hand-off works, its `X-Real-IP` exposed to the page.
#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_pubky_flow_from_another_origin() {
    let relay = Relay::start(&["--inbox-timeout", "1s", "--peer-address", "show"]);
    let page = serve_page(pubky_page(relay.addr()));
    let url = format!("http://{page}/page");
    let browser = thread::spawn(move || chromium_dump_dom(&url));
    // The page's first poll parks and runs out; it polls again, and then the message arrives.
    relay.wait_parked(1);
    relay.wait_log("GET inbox ... 408", |l| l.contains("GET inbox") && l.contains(" 408 "));
    relay.wait_parked(1);
    let post = relay.post("/inbox/page-box", b"from-outside", &[]);
    assert_eq!(post.status, 200, "{post}");
    let result = page_result(&browser.join().unwrap());
    let lines: Vec<&str> = result.lines().collect();
    assert_eq!(lines.first(), Some(&"poll 408"), "{result}\n{:?}", relay.logs());
    assert_eq!(
        lines[lines.len() - 4..],
        ["poll 200", "body from-outside", "delete 200", "link 200 200 from-page from 127.0.0.1"],
        "{result}"
    );
    assert!(lines[..lines.len() - 4].iter().all(|l| *l == "poll 408"), "{result}");
    assert!(relay.logs().iter().any(|l| l.contains("OPTIONS preflight") && l.contains(" 204 ")));
}

/// With `--cors` naming another origin than the page's, the browser refuses the relay's
/// answers to the page: its first fetch fails.
#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_fetch_fails_when_cors_refuses_the_origin() {
    let other = format!("http://127.0.0.1:{}", free_port());
    let relay = Relay::start(&["--inbox-timeout", "1s", "--cors", &other]);
    let page = serve_page(pubky_page(relay.addr()));
    let result = page_result(&chromium_dump_dom(&format!("http://{page}/page")));
    assert_eq!(result, "error TypeError: Failed to fetch", "{:?}", relay.logs());
    // The request did reach the relay and was answered: the browser refused the answer.
    assert!(relay.logs().iter().any(|l| l.contains("GET inbox") && l.contains(" 408 ")));
}

/// A page that reads `/mcast/page-feed` on the relay at `relay` three times, each `fetch` with
/// `credentials: 'include'` and no `SeqId` of its own: only the cookie the relay set can make the
/// second and third reads ask for the message after the one before.
fn mcast_page(relay: SocketAddr) -> String {
    format!(
        r#"<!doctype html>
<html><body><pre id=result>pending</pre>
<script type=module>
const out = [];
try {{
  for (let i = 0; i < 3; i++) {{
    const r = await fetch('http://{relay}/mcast/page-feed', {{credentials: 'include'}});
    out.push(r.status + ' ' + r.headers.get('HttpRelay-SeqId') + ' ' + await r.text());
  }}
}} catch (e) {{
  out.push('error ' + e);
}}
document.getElementById('result').textContent = out.join('\n');
</script>
</body></html>
"#
    )
}

/// The `SeqId` cookie round trip in a real browser, from a page on another origin: the relay's
/// `Set-Cookie` (`SameSite=None; Secure`) is kept from a credentialed fetch and sent back with
/// the next one, so each read gets the message after the last, waiting for it when it is not
/// there yet (without the cookie the second read would get message 0 again at once). Run from
/// `page_host`, the page's host: `127.0.0.1` on another port (same site), or `localhost` (another
/// site), with third-party cookies allowed by `preferences` (this Chromium blocks them by
/// default: protocol §11).
fn mcast_cookie_round_trip(page_host: &str, preferences: Option<&'static str>) {
    let relay = Relay::start(&[]);
    assert_eq!(relay.post("/mcast/page-feed", b"zero", &[]).status, 200);
    let page = serve_page(mcast_page(relay.addr()));
    let url = format!("http://{page_host}:{}/page", page.port());
    let browser = thread::spawn(move || chromium_dump_dom_with(&url, preferences));
    for body in ["one", "two"] {
        relay.wait_parked(1);
        assert_eq!(relay.post("/mcast/page-feed", body.as_bytes(), &[]).status, 200);
    }
    let result = page_result(&browser.join().unwrap());
    assert_eq!(result, "200 0 zero\n200 1 one\n200 2 two", "{:?}", relay.logs());
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_follows_an_mcast_channel_by_its_cookie_from_another_origin() {
    mcast_cookie_round_trip("127.0.0.1", None);
}

#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_follows_an_mcast_channel_by_its_cookie_from_another_site() {
    let allow_third_party_cookies =
        r#"{"profile":{"cookie_controls_mode":0,"block_third_party_cookies":false}}"#;
    mcast_cookie_round_trip("localhost", Some(allow_third_party_cookies));
}

impl Proxy {
    /// nginx as an operator's own site on plain HTTP (127.0.0.2 is a secure context to Chromium,
    /// as every loopback address is, so pages may register service workers): the static
    /// `pages` (name, HTML), `/tick` answered 204 at once, and `relay` mounted under `/relay/`,
    /// the way a relay is put under a path of a site. Two more mounts each undo one defence of
    /// protocol §5, so that each browser check below can be seen to fail: `/unguarded/` drops
    /// the request's `Service-Worker` header (the relay's answer, headers and all, as if it did
    /// not refuse), `/unsandboxed/` drops the answer's `X-Content-Type-Options` and
    /// `Content-Security-Policy`.
    fn site(relay: &Relay, pages: &[(&str, String)]) -> Proxy {
        let dir = TempDir::new("site");
        fs::create_dir_all(dir.path().join("site")).unwrap();
        for (name, html) in pages {
            fs::write(dir.path().join("site").join(name), html).unwrap();
        }
        let port = free_port();
        let mount = |path: &str, extra: &str| {
            format!(
                "  location {path} {{\n    proxy_pass http://{}/;\n    proxy_http_version 1.1;\n    \
                 proxy_set_header Connection \"\";\n    proxy_buffering off;\n{extra}  }}\n",
                relay.addr()
            )
        };
        let server = format!(
            "server {{\n  listen {PROXY_IP}:{port};\n  root {root};\n  default_type text/html;\n  \
             location = /tick {{ return 204; }}\n{relay}{unguarded}{unsandboxed}}}\n",
            root = dir.join("site"),
            relay = mount("/relay/", ""),
            unguarded = mount("/unguarded/", "    proxy_set_header Service-Worker \"\";\n"),
            unsandboxed = mount(
                "/unsandboxed/",
                "    proxy_hide_header X-Content-Type-Options;\n    \
                 proxy_hide_header Content-Security-Policy;\n"
            ),
        );
        let child = spawn_nginx(&dir, &server);
        let mut site = Proxy { child, nginx: true, port, log: dir.join("error.log"), _dir: dir };
        site.wait_listening();
        site
    }

    /// The site's URL for `path`.
    fn url(&self, path: &str) -> String {
        format!("http://{PROXY_IP}:{}{path}", self.port)
    }
}

/// A page with a script that, if it ran, would write its origin into `<p id="x">`.
const SCRIPTED_PAGE: &[u8] = b"<!doctype html><html><head><title>relayed</title></head>\
    <body><p id=x>inert</p><script>document.getElementById('x').textContent = \
    'ran on ' + location.origin</script></body></html>";

/// What `<p id="x">` holds in a dumped DOM.
fn paragraph_x(dom: &str) -> &str {
    let start = dom.find(r#"<p id="x">"#).unwrap_or_else(|| panic!("no <p id=x>: {dom}"));
    let rest = &dom[start + r#"<p id="x">"#.len()..];
    &rest[..rest.find("</p>").unwrap_or_else(|| panic!("no </p>: {dom}"))]
}

/// A relayed `text/html` page with a script, opened in the browser on the operator's site
/// (nginx, the relay under `/relay/`): neither the `/inbox` GET's answer nor the `/link`
/// receiver's runs it, so it cannot reach the site's cookies or storage. The same answer
/// without the two headers (`/unsandboxed/`) does run it, with the site's origin.
#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_runs_no_script_of_a_relayed_page() {
    let relay = Relay::start(&[]);
    let site = Proxy::site(&relay, &[]);
    let html = [("Content-Type", "text/html")];
    assert_eq!(relay.post("/inbox/page", SCRIPTED_PAGE, &html).status, 200);
    let dom = chromium_dump_dom(&site.url("/relay/inbox/page"));
    assert_eq!(paragraph_x(&dom), "inert", "the relayed page's script ran: {dom}");
    assert!(dom.contains("<title>relayed</title>"), "not the relayed page: {dom}");

    let url = site.url("/relay/link/page");
    let browser = thread::spawn(move || chromium_dump_dom(&url));
    relay.wait_parked(1);
    let sender = relay.post("/link/page", SCRIPTED_PAGE, &html);
    assert_eq!(sender.status, 200, "{sender}");
    let dom = browser.join().unwrap();
    assert_eq!(paragraph_x(&dom), "inert", "the relayed page's script ran: {dom}");

    let dom = chromium_dump_dom(&site.url("/unsandboxed/inbox/page"));
    let ran = format!("ran on {}", site.url(""));
    assert_eq!(paragraph_x(&dom), ran, "without the headers the script should run: {dom}");
}

/// The relay's own pages, under the same headers, are still documents a browser shows as text
/// (`/metrics` through the site: its client, nginx, is on loopback).
#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_shows_the_relays_own_pages() {
    let relay = Relay::start(&[]);
    let site = Proxy::site(&relay, &[]);
    for (path, text) in [
        ("/relay/", "a relay for login hand-offs"),
        ("/relay/health", r#"{"status":"ok","#),
        ("/relay/metrics", "\nhandoff_parked 0\n"),
    ] {
        let dom = chromium_dump_dom(&site.url(path));
        assert!(dom.contains("<pre") && dom.contains(text), "{path}: {dom}");
    }
}

/// A page of the operator's site that registers `script` as a service worker and writes the
/// outcome into `<pre id=result>`: `registered SCOPE` or `failed ERROR`.
fn worker_page(script: &str) -> String {
    format!(
        r#"<!doctype html>
<html><body><pre id=result>pending</pre>
<script type=module>
let settled = false;
const registering = (async () => navigator.serviceWorker.register('{script}'))()
  .then((r) => 'registered ' + r.scope, (e) => 'failed ' + e)
  .finally(() => {{ settled = true; }});
// Virtual time runs ahead while nothing is fetched, and Chromium would dump the DOM before the
// registration settles: a fetch in flight holds it.
for (let i = 0; !settled && i < 5000; i++) await fetch('/tick?' + i);
document.getElementById('result').textContent = await registering;
</script>
</body></html>
"#
    )
}

/// A page on the relay's origin (the operator's site, the relay under `/relay/`) registers a
/// relayed script as a service worker: the browser's fetch of the script is refused 403 and
/// the registration fails, so no worker can answer for the pages under the relay's path. The
/// relay's answer to that fetch, had it not refused (`/unguarded/`: the same answer with its
/// nosniff and its CSP), is registered: the headers alone do not stop a worker.
#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn chromium_registers_no_relayed_service_worker() {
    let relay = Relay::start(&[]);
    let pages = [
        ("guarded.html", worker_page("/relay/inbox/sw")),
        ("unguarded.html", worker_page("/unguarded/inbox/sw")),
    ];
    let site = Proxy::site(&relay, &pages);
    let script = b"self.addEventListener('fetch', (event) => event.respondWith(\
        new Response('<script>alert(document.cookie)</script>', \
        {headers: {'Content-Type': 'text/html'}})));";
    let js = [("Content-Type", "text/javascript")];
    assert_eq!(relay.post("/inbox/sw", script, &js).status, 200);

    let result = page_result(&chromium_dump_dom(&site.url("/guarded.html")));
    assert!(result.starts_with("failed ") && result.contains("(403)"), "{result}");
    let (_, health) = relay.health();
    assert!(json_number(&health, "service_worker") >= Some(1), "{health}");

    let unrefused = exchange(
        format!("{PROXY_IP}:{}", site.port).parse().unwrap(),
        &request(
            "GET",
            "/unguarded/inbox/sw",
            &[("Service-Worker", "script"), ("Connection", "close")],
            b"",
        ),
    );
    assert_eq!(unrefused.status, 200, "{unrefused}");
    assert_eq!(unrefused.header("x-content-type-options"), Some("nosniff"), "{unrefused}");
    assert!(unrefused.header("content-security-policy").is_some(), "{unrefused}");
    let result = page_result(&chromium_dump_dom(&site.url("/unguarded.html")));
    assert_eq!(result, format!("registered {}", site.url("/unguarded/inbox/")), "{result}");
}

/// The shipped files as they are, with only the certificate paths pointing at a real
/// certificate, pass `nginx -t` and `caddy validate`.
#[test]
#[ignore = "needs nginx, caddy and chromium: make interop"]
fn shipped_files_are_valid_as_they_are() {
    let dir = TempDir::new("validate");
    let (cert, key) = make_cert(&dir);
    let certs = |name| {
        render(
            name,
            &[
                ("/etc/ssl/certs/example.org.pem", cert.clone()),
                ("/etc/ssl/private/example.org.key", key.clone()),
            ],
        )
    };
    fs::write(dir.join("server.conf"), certs("nginx.conf")).unwrap();
    let main = format!(
        "pid {};\nerror_log stderr;\nevents {{}}\nhttp {{ include {}; }}\n",
        dir.join("nginx.pid"),
        dir.join("server.conf")
    );
    fs::write(dir.join("nginx.conf"), main).unwrap();
    let nginx = Command::new("nginx")
        .args(["-t", "-p", &dir.join(""), "-c", &dir.join("nginx.conf")])
        .output();
    let nginx = nginx.expect("cannot run nginx (make interop-deps)");
    assert!(nginx.status.success(), "nginx -t: {}", String::from_utf8_lossy(&nginx.stderr));

    fs::write(dir.join("Caddyfile"), certs("Caddyfile")).unwrap();
    let caddy = Command::new("caddy")
        .args(["validate", "--config", &dir.join("Caddyfile"), "--adapter", "caddyfile"])
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .output()
        .expect("cannot run caddy (make interop-deps)");
    assert!(caddy.status.success(), "caddy validate: {}", String::from_utf8_lossy(&caddy.stderr));
}

/// `/link` straight to `relay` (no proxy): the receiver waits, the sender delivers.
fn direct_link_handoff(relay: &Relay) {
    let receiver = relay.spawn_get("/link/direct-channel");
    relay.wait_parked(1);
    let sender =
        relay.post("/link/direct-channel", b"encrypted-token", &[("Content-Type", "text/plain")]);
    assert_eq!(sender.status, 200, "{sender}");
    let receiver = receiver.join().unwrap();
    assert_eq!((receiver.status, receiver.text().as_str()), (200, "encrypted-token"), "{receiver}");
    assert_eq!(receiver.header("content-type"), Some("text/plain"), "{receiver}");
}

/// `/inbox` straight to `relay`: POST, GET, `/ack`, `/await` answered by a DELETE, `/ack` again.
fn direct_inbox_flow(relay: &Relay) {
    let post = relay.post("/inbox/direct-box", b"encrypted-token", &[]);
    assert_eq!(post.status, 200, "{post}");
    let get = relay.get("/inbox/direct-box");
    assert_eq!((get.status, get.text().as_str()), (200, "encrypted-token"), "{get}");
    let ack = relay.get("/inbox/direct-box/ack");
    assert_eq!((ack.status, ack.text().as_str()), (200, "false"), "{ack}");
    let waiter = relay.spawn_get("/inbox/direct-box/await");
    relay.wait_parked(1);
    let delete = relay.send(b"DELETE /inbox/direct-box HTTP/1.1\r\nHost: relay.test\r\n\r\n");
    assert_eq!(delete.status, 200, "{delete}");
    let waiter = waiter.join().unwrap();
    assert_eq!(waiter.status, 200, "{waiter}");
    let ack = relay.get("/inbox/direct-box/ack");
    assert_eq!((ack.status, ack.text().as_str()), (200, "true"), "{ack}");
}

/// `promtool check metrics` on `text` (its stdin): exit code and everything it printed.
fn promtool_check(text: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run promtool (make interop-deps)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let printed =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), printed)
}

/// `/metrics`, after a `/link` hand-off and an `/inbox` flow, passes `promtool check metrics`
/// with no lint warning at all (a warning fails the test too: promtool exits 3 on one). So that
/// this cannot pass vacuously, the same text with a broken value and with a counter declared as a
/// gauge is rejected.
#[test]
#[ignore = "needs promtool: make interop"]
fn promtool_accepts_metrics() {
    let relay = Relay::start(&[]);
    direct_link_handoff(&relay);
    direct_inbox_flow(&relay);
    let metrics = relay.get("/metrics");
    assert_eq!(metrics.status, 200, "{metrics}");
    let text = metrics.text();
    for line in [
        "handoff_handoffs_total{protocol=\"link\"} 1",
        "handoff_handoffs_total{protocol=\"inbox\"} 1",
        "# TYPE handoff_timeouts_total counter",
        "handoff_parked 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no line {line:?} in /metrics:\n{text}");
    }

    let (code, printed) = promtool_check(&text);
    assert_eq!(code, Some(0), "promtool check metrics failed:\n{printed}\non:\n{text}");
    assert!(printed.trim().is_empty(), "promtool printed something:\n{printed}\non:\n{text}");

    let broken_value = text.replace("\nhandoff_parked 0\n", "\nhandoff_parked zero\n");
    assert_ne!(broken_value, text);
    let (code, printed) = promtool_check(&broken_value);
    assert_eq!(code, Some(1), "promtool accepted a value that is no number:\n{printed}");
    assert!(printed.contains("expected float as value"), "{printed}");

    let broken_type = text
        .replace("# TYPE handoff_timeouts_total counter", "# TYPE handoff_timeouts_total gauge");
    assert_ne!(broken_type, text);
    let (code, printed) = promtool_check(&broken_type);
    assert_ne!(code, Some(0), "promtool accepted a gauge named _total:\n{printed}");
    assert!(printed.contains("handoff_timeouts_total"), "{printed}");
}

/// The static aarch64 build `make interop` makes first (`HANDOFF_AARCH64_BIN` overrides).
fn aarch64_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("HANDOFF_AARCH64_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("aarch64-unknown-linux-musl/release/handoff")
}

/// The static aarch64 build, run by `qemu-aarch64-static`, does a real `/link` hand-off and an
/// `/inbox` flow. The ELF header is checked first, so an x86-64 binary cannot stand in for it.
#[test]
#[ignore = "needs qemu-user-static and the aarch64 build: make interop"]
fn aarch64_build_under_qemu() {
    let binary = aarch64_binary();
    let header = fs::read(&binary).unwrap_or_else(|e| {
        panic!("cannot read {} ({e}): make interop builds it", binary.display())
    });
    assert_eq!(&header[..4], b"\x7fELF", "{} is not an ELF file", binary.display());
    assert_eq!(header[4], 2, "{} is not a 64-bit ELF file", binary.display());
    assert_eq!(header[5], 1, "{} is not little-endian", binary.display());
    const EM_AARCH64: u16 = 183;
    let machine = u16::from_le_bytes([header[18], header[19]]);
    assert_eq!(machine, EM_AARCH64, "{} is for machine {machine}, not aarch64", binary.display());

    let binary = binary.to_str().expect("binary path is UTF-8");
    let relay = Relay::start_command(&["qemu-aarch64-static", binary], &[]);
    let (health, text) = relay.health();
    assert_eq!(health.status, 200, "{health}");
    assert!(text.contains("\"parked\":0"), "{text}");
    direct_link_handoff(&relay);
    direct_inbox_flow(&relay);
}

/// The real Pubky SDK (`@synonymdev/pubky`, the version pinned in `interop/pubky/`, in Node)
/// with handoff as its HTTP relay: `interop/pubky/flow.mjs` has the app start an auth flow and
/// the signer approve it, the app get and decrypt the token, then a sign-in whose homeserver
/// lookup fails as a lookup, not at the relay; then the signer approves before the app polls
/// (node holds the app's GET back until /health shows the POST held, its sender the only one
/// parked), and the
/// app still gets the token. The SDK only speaks `/link` (no `/inbox`).
#[test]
#[ignore = "needs node and npm ci in interop/pubky: make interop"]
fn pubky_sdk_auth_flow_over_link() {
    let relay = Relay::start(&[]);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/pubky");
    assert!(
        dir.join("node_modules/@synonymdev/pubky").is_dir(),
        "no SDK in {}: make interop-deps runs npm ci there",
        dir.display()
    );
    let mut node = Command::new("node")
        .arg("flow.mjs")
        .arg(format!("http://{}/link/", relay.addr()))
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run node (make interop-deps)");
    // Flow 3: the signer has posted, the app's GET is held back in node. The relay must hold
    // the message with nobody waiting for it before the app is let go.
    let mut stdout = BufReader::new(node.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let mut before = String::new();
    if first.trim() == "posted" {
        relay.wait_gauge("messages", 1);
        before = relay.health().1;
        writeln!(node.stdin.as_ref().unwrap(), "go").unwrap();
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = node.wait_with_output().unwrap();
    let stdout = first + &rest;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let logs = || relay.logs().join("\n");
    assert!(
        out.status.success(),
        "flow.mjs failed ({}):\n{stderr}{stdout}\nrelay:\n{}",
        out.status,
        logs()
    );
    assert!(stdout.contains("\"signin_error\":\"PkarrError: "), "{stdout}");
    // Approve first: when the app was let go, the relay held the message and the only parked
    // request was its sender (a waiting sender counts as parked); a receiver would have taken
    // the message (messages 0) or be parked too (2).
    let gauges = ["messages", "parked"].map(|g| json_number(&before, g));
    assert_eq!(gauges, [Some(1), Some(1)], "not POST-before-GET: {before}");
    assert!(stdout.contains("\"held_gets\":"), "node held back no GET: {stdout}");
    // Both flows went through this relay: two channels, each read and written once.
    let deadline = Instant::now() + WAIT_CAP;
    let count = |what: &str| relay.logs().iter().filter(|l| l.contains(what)).count();
    while (count("GET link "), count("POST link ")) != (3, 3) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    let lines: Vec<String> = relay.logs().into_iter().filter(|l| l.contains(" link ")).collect();
    assert_eq!(lines.len(), 6, "not three hand-offs through the relay:\n{}", logs());
    assert!(lines.iter().all(|l| l.contains(" 200 ")), "a /link request failed:\n{}", logs());
}

/// The program `interop/pubky-rs` builds: the current Pubky SDK (the `pubky` crate, pinned).
fn pubky_rs_binary() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("interop/pubky-rs/target/release/handoff-pubky-interop")
}

/// The Pubky SDK's own auth flows (`interop/pubky-rs`) with handoff as the relay at `base`
/// (`/link/` or `/inbox/`): a cookie flow whose token the app gets, decrypts and verifies; a
/// grant flow whose approval crosses the relay and which then fails at the homeserver lookup
/// (a Pkarr error, not a relay or decryption one); and a grant flow the signer approves while
/// the app is not polling (its saved flow restored later, as after a page reload). The relay
/// must notice the app's poll go before the signer approves (else /link would hand the
/// approval to it), then hold the approval: `messages` 1, with `parked` 1 for /link (the
/// signer's POST waits) and 0 for /inbox (the POST was answered at once).
fn pubky_rust_sdk_flows(base: &str, parked_while_held: u64) {
    let relay = Relay::start(&[]);
    let binary = pubky_rs_binary();
    assert!(binary.exists(), "no {}: make interop builds it", binary.display());
    let mut sdk = Command::new(&binary)
        .arg(format!("http://{}{base}", relay.addr()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run the Pubky SDK program");
    let mut stdout = BufReader::new(sdk.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let go = || writeln!(sdk.stdin.as_ref().unwrap(), "go").unwrap();
    if first == "stopped\n" {
        relay.wait_parked(0);
        go();
        stdout.read_line(&mut first).unwrap();
    }
    let mut held = String::new();
    if first.ends_with("approving\n") {
        relay.wait_gauge("messages", 1);
        relay.wait_parked(parked_while_held);
        held = relay.health().1;
        go();
    }
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = sdk.wait_with_output().unwrap();
    let logs = || relay.logs().join("\n");
    assert!(
        out.status.success(),
        "the SDK's flows failed ({}):\n{}{first}{rest}\nrelay:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        logs()
    );
    assert!(rest.contains("grant_error=Pkarr operation failed"), "{rest}");
    assert_eq!(json_number(&held, "messages"), Some(1), "{held}");
    // Three flows, each one message written and read through this relay; over /inbox the app
    // acknowledges each with a DELETE.
    let kind = base.trim_matches('/');
    let wanted: &[&str] =
        if kind == "inbox" { &["POST", "GET", "DELETE"] } else { &["POST", "GET"] };
    let count = |method: &str| {
        let line = format!("{method} {kind} ");
        relay.logs().iter().filter(|l| l.contains(&line) && l.contains(" 200 ")).count()
    };
    let deadline = Instant::now() + WAIT_CAP;
    while wanted.iter().any(|m| count(m) != 3) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(10));
    }
    for method in wanted {
        assert_eq!(count(method), 3, "not three {method}s answered 200:\n{}", logs());
    }
}

#[test]
#[ignore = "needs the Pubky SDK program built: make interop"]
fn pubky_rust_sdk_flows_over_inbox() {
    pubky_rust_sdk_flows("/inbox/", 0);
}

#[test]
#[ignore = "needs the Pubky SDK program built: make interop"]
fn pubky_rust_sdk_flows_over_link() {
    pubky_rust_sdk_flows("/link/", 1);
}

/// The shipped units under a real, running systemd (`systemd/test-under-systemd.sh`: a Debian
/// container booted by systemd-nspawn, its root file system cached by debootstrap): the relay
/// installed to /usr/local/bin and the units to /etc/systemd/system; socket activation and a
/// `/link` hand-off under the full hardening, which is in force; restarts while a client polls
/// `/health` refuse nothing; `stop` answers a parked receiver 503 with `Retry-After: 1` and ends
/// with `Result=success`, status 0; `reload` delivers `SIGHUP`; the state file survives a
/// restart in `StateDirectory=`; journald parses the priorities; a token file passed by
/// `LoadCredential=` is enforced. The script says which of its seven checks failed, and why.
#[test]
#[ignore = "needs root, systemd-nspawn and debootstrap: make interop"]
fn shipped_units_under_a_running_systemd() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/test-under-systemd.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(handoff_binary())
        .stdin(Stdio::null())
        .output()
        .expect("cannot run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The relay's own lines (the /health polls above all) are left out of a failure's message.
    let shown: Vec<&str> = stdout.lines().filter(|l| !l.contains("GET health - 200")).collect();
    assert!(out.status.success(), "{} failed:\n{}\n{stderr}", script.display(), shown.join("\n"));
    for n in 1..=7 {
        assert!(stdout.contains(&format!("\nok {n} - ")), "no check {n} passed:\n{stdout}");
    }
    println!("{stdout}");
}

/// HAProxy in front, with `option forwardfor`, plain HTTP on [`PROXY_IP`]: killed when dropped.
/// `option forwardfor` adds an `X-Forwarded-For` line of its own after whatever the client sent,
/// where nginx joins them into one line.
struct Haproxy {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Haproxy {
    fn start(relay: &Relay) -> Haproxy {
        let dir = TempDir::new("haproxy");
        let port = free_port();
        let config = format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  \
             timeout server 30s\n\
             frontend relay_in\n  bind {PROXY_IP}:{port}\n  option forwardfor\n  \
             default_backend relay\n\
             backend relay\n  server handoff {}\n",
            relay.addr()
        );
        fs::write(dir.join("haproxy.cfg"), config).unwrap();
        let child = Command::new("haproxy")
            .args(["-db", "-f", &dir.join("haproxy.cfg")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("cannot run haproxy (apt-get install haproxy)");
        let addr: SocketAddr = format!("{PROXY_IP}:{port}").parse().unwrap();
        let deadline = Instant::now() + WAIT_CAP;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let log = fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "haproxy not listening on {addr}: {log}");
            thread::sleep(Duration::from_millis(20));
        }
        Haproxy { child, port, _dir: dir }
    }

    /// `curl -X method` through HAProxy from [`CLIENT_IP`] with a forged `X-Forwarded-For`;
    /// the status.
    fn forged(&self, method: &str, path: &str, forged: &str) -> u16 {
        let output = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30"])
            .args(["--interface", CLIENT_IP, "-X", method, "-H"])
            .arg(format!("X-Forwarded-For: {forged}"))
            .args(if method == "POST" { &["--data", "x"][..] } else { &[][..] })
            .arg(format!("http://{PROXY_IP}:{}{path}", self.port))
            .output()
            .expect("cannot run curl");
        String::from_utf8_lossy(&output.stdout).parse().expect("a status from curl")
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Behind HAProxy, a forged `X-Forwarded-For` line and the line HAProxy adds are one list
/// (issue 12): the receiver is told the real client (127.0.0.3), not the forged 6.6.6.6, and a
/// forged `10.9.9.9` does not pass `--allow-ip 10.0.0.0/8`.
#[test]
#[ignore = "needs haproxy and curl: make interop"]
fn haproxy_forwardfor_lines_are_one_list() {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32", "--peer-address", "show"]);
    let proxy = Haproxy::start(&relay);
    let receiver = relay.spawn_get("/link/haproxy");
    relay.wait_parked(1);
    assert_eq!(proxy.forged("POST", "/link/haproxy", "6.6.6.6"), 200);
    let receiver = receiver.join().unwrap();
    assert_eq!(receiver.header("x-real-ip"), Some(CLIENT_IP), "{receiver}");
    drop(proxy);

    let guarded = Relay::start(&["--trust-proxy", "127.0.0.1/32", "--allow-ip", "10.0.0.0/8"]);
    let proxy = Haproxy::start(&guarded);
    assert_eq!(proxy.forged("GET", "/inbox/haproxy/ack", "10.9.9.9"), 403);
}
