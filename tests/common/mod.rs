//! Test harness: runs the real `handoff` binary on an ephemeral port and talks raw HTTP/1.1 to it
//! over `std::net::TcpStream` (no client crates), so every byte on the wire is under the test's
//! control.

#![allow(dead_code)]

pub mod sockopt;
pub mod tools;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a test waits for a whole response before giving up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Relay::start`] waits for the `listening on` line (generous: an emulated binary
/// starts slower).
pub const START_CAP: Duration = Duration::from_secs(10);
/// How long `wait_*` helpers poll `/health` before failing.
pub const WAIT_CAP: Duration = Duration::from_secs(10);

/// The relay binary the tests run: the one cargo built for them, or `$HANDOFF_BINARY` when set,
/// to run the suite against another build (e.g. the static one: README "Static binaries").
pub fn handoff_binary() -> String {
    std::env::var("HANDOFF_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_handoff").to_string())
}

/// A running relay, killed when dropped.
pub struct Relay {
    child: Child,
    addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Relay {
    /// Starts `handoff --listen 127.0.0.1:0 <args>` ([`handoff_binary`]) and waits for its
    /// `listening on` log line.
    pub fn start(args: &[&str]) -> Relay {
        Relay::start_command(&[&handoff_binary()], args)
    }

    /// Like [`Relay::start`], for another binary or a command prefix: runs
    /// `command[0] command[1..] --listen 127.0.0.1:0 <args>`, e.g. an emulator and the binary.
    pub fn start_command(command: &[&str], args: &[&str]) -> Relay {
        let (program, prefix) = command.split_first().expect("a command to run");
        let mut child = Command::new(program)
            .args(prefix)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let logs = Arc::clone(&logs);
            thread::spawn(move || {
                use std::io::BufRead;
                let mut tx = Some(tx);
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(at) = line.find("listening on ") {
                        let addr = line[at + "listening on ".len()..].trim();
                        if let (Ok(addr), Some(tx)) = (addr.parse::<SocketAddr>(), tx.take()) {
                            let _ = tx.send(addr);
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        match rx.recv_timeout(START_CAP) {
            Ok(addr) => Relay { child, addr, logs },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Give the reader a moment to collect what the process printed before dying.
                thread::sleep(Duration::from_millis(200));
                let captured = logs.lock().unwrap().join("\n");
                panic!(
                    "{command:?} {args:?} did not start within {START_CAP:?}; stderr:\n{captured}"
                );
            }
        }
    }

    /// The relay's process id (to send it signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits up to `limit` for the process to exit; its status, or `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().expect("cannot wait for the relay") {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// The address the relay listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every stderr line captured so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// A new connection with the test's read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Sends `raw` on a new connection and reads the response to end of stream.
    pub fn send(&self, raw: &[u8]) -> Response {
        exchange(self.addr, raw)
    }

    /// `GET path` (well-formed HTTP/1.1).
    pub fn get(&self, path: &str) -> Response {
        self.send(&get_request(path))
    }

    /// `POST path` with `body` and extra headers (well-formed HTTP/1.1 with Content-Length).
    pub fn post(&self, path: &str, body: &[u8], headers: &[(&str, &str)]) -> Response {
        self.send(&post_request(path, body, headers))
    }

    /// Sends `raw` on a new connection from a background thread; join for the response.
    pub fn spawn_request(&self, raw: Vec<u8>) -> JoinHandle<Response> {
        let addr = self.addr;
        thread::spawn(move || exchange(addr, &raw))
    }

    /// `GET path` in the background.
    pub fn spawn_get(&self, path: &str) -> JoinHandle<Response> {
        self.spawn_request(get_request(path))
    }

    /// `POST path` in the background.
    pub fn spawn_post(
        &self,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> JoinHandle<Response> {
        self.spawn_request(post_request(path, body, headers))
    }

    /// Opens a connection, writes `raw` and hands back the open stream.
    pub fn open(&self, raw: &[u8]) -> TcpStream {
        let mut stream = self.connect();
        stream.write_all(raw).expect("write to relay");
        stream
    }

    /// `GET /health`, with the JSON body as text.
    pub fn health(&self) -> (Response, String) {
        let response = self.get("/health");
        let text = response.text();
        (response, text)
    }

    /// Polls `/health` until `field` (a JSON number) equals `want`; panics after [`WAIT_CAP`].
    pub fn wait_gauge(&self, field: &str, want: u64) {
        let deadline = Instant::now() + WAIT_CAP;
        let mut last = String::new();
        while Instant::now() < deadline {
            let (_, text) = self.health();
            if json_number(&text, field) == Some(want) {
                return;
            }
            last = text;
            thread::sleep(Duration::from_millis(10));
        }
        panic!("/health never showed \"{field}\":{want} within {WAIT_CAP:?}; last: {last}");
    }

    /// Waits until exactly `n` requests are parked.
    pub fn wait_parked(&self, n: u64) {
        self.wait_gauge("parked", n)
    }

    /// Polls the captured logs until one line satisfies `pred`; panics after [`WAIT_CAP`].
    pub fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + WAIT_CAP;
        while Instant::now() < deadline {
            if self.logs().iter().any(|l| pred(l)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("no log line {what} within {WAIT_CAP:?}; logs:\n{}", self.logs().join("\n"));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed response.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code of the (first) status line.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Every byte after the head, to end of stream.
    pub body: Vec<u8>,
    /// Every byte read.
    pub raw: Vec<u8>,
    /// The client side's local port of the connection.
    pub local_port: u16,
    /// From connecting to end of stream.
    pub elapsed: Duration,
}

impl Response {
    /// The first value of header `name`, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// How many times header `name` appears.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).count()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the framing every response of the relay has: `Connection: close` and a
    /// `Content-Length` equal to the body length (unless `head_only`, where the body is empty).
    pub fn assert_framing(&self, head_only: bool) {
        assert_eq!(
            self.header("connection").map(str::to_ascii_lowercase).as_deref(),
            Some("close"),
            "{self}"
        );
        let length: usize = self
            .header("content-length")
            .unwrap_or_else(|| panic!("no Content-Length: {self}"))
            .parse()
            .unwrap_or_else(|_| panic!("bad Content-Length: {self}"));
        if head_only {
            assert!(self.body.is_empty(), "HEAD response has a body: {self}");
        } else {
            assert_eq!(length, self.body.len(), "Content-Length does not match the body: {self}");
        }
    }

    /// Asserts an `Allow` header listing exactly `methods`, in any order, plus `OPTIONS` (CORS
    /// preflights are answered on every relay path, protocol §1, §5) if the relay lists it.
    pub fn assert_allow(&self, methods: &[&str]) {
        let allow = self.header("allow").unwrap_or_else(|| panic!("no Allow header: {self}"));
        let mut listed: Vec<&str> =
            allow.split(',').map(str::trim).filter(|m| *m != "OPTIONS").collect();
        listed.sort_unstable();
        let mut want = methods.to_vec();
        want.sort_unstable();
        assert_eq!(listed, want, "Allow lists other methods: {self}");
    }

    /// Asserts an error response: `status`, `text/plain`, one sentence ending in `.` and a newline.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self}");
        self.assert_framing(false);
        let content_type =
            self.header("content-type").unwrap_or_else(|| panic!("no Content-Type: {self}"));
        assert!(content_type.starts_with("text/plain"), "{self}");
        let text = self.text();
        assert!(text.ends_with(".\n"), "error body does not end with a period and newline: {self}");
        assert_eq!(text.matches('\n').count(), 1, "error body is not one line: {self}");
        assert!(text.len() > 2, "{self}");
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "after {:?}: {:?}", self.elapsed, String::from_utf8_lossy(&self.raw))
    }
}

/// A connection to `addr` with the test timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to relay");
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
    stream
}

/// Writes `raw` on a new connection and reads the response.
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Response {
    let started = Instant::now();
    let mut stream = connect(addr);
    // The relay may answer and close before reading everything (413, 431): a failed write is
    // not the test's verdict, the response is.
    let _ = stream.write_all(raw);
    read_response_since(&mut stream, started)
}

/// Reads a response to end of stream from `stream`.
pub fn read_response(stream: &mut TcpStream) -> Response {
    read_response_since(stream, Instant::now())
}

/// Reads to end of stream (a reset after some bytes counts as the end) and parses a response.
pub fn read_response_since(stream: &mut TcpStream, started: Instant) -> Response {
    let local_port = stream.local_addr().map(|a| a.port()).unwrap_or(0);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "no end of response within {READ_TIMEOUT:?}; got {:?}",
                    String::from_utf8_lossy(&raw)
                )
            }
            Err(e) if !raw.is_empty() => {
                let _ = e;
                break;
            }
            Err(e) => panic!("reading the response failed: {e}"),
        }
    }
    let elapsed = started.elapsed();
    parse_response(raw, local_port, elapsed)
}

/// Parses a whole response read elsewhere; panics if it is not one.
pub fn parse_response(raw: Vec<u8>, local_port: u16, elapsed: Duration) -> Response {
    let show = || String::from_utf8_lossy(&raw).into_owned();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head after {elapsed:?}: {:?}", show()));
    let head = std::str::from_utf8(&raw[..end])
        .unwrap_or_else(|_| panic!("head is not UTF-8: {:?}", show()));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    assert!(version.starts_with("HTTP/1."), "bad status line {status_line:?}");
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let reason = parts.next().unwrap_or("").to_string();
    let headers = lines
        .map(|line| {
            let (name, value) =
                line.split_once(':').unwrap_or_else(|| panic!("bad header line {line:?}"));
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    let body = raw[end + 4..].to_vec();
    Response { status, reason, headers, body, raw, local_port, elapsed }
}

/// A well-formed `GET` request.
/// Flags that turn off every per-client limit, for tests and benchmarks that speak from one
/// address on purpose.
pub const NO_CLIENT_LIMITS: [&str; 8] = [
    "--rate-per-ip",
    "0",
    "--rate-per-id",
    "0",
    "--max-connections-per-ip",
    "0",
    "--max-parked-per-ip",
    "0",
];

pub fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: relay.test\r\n\r\n").into_bytes()
}

/// A well-formed `POST` request with `Content-Length`.
pub fn post_request(path: &str, body: &[u8], headers: &[(&str, &str)]) -> Vec<u8> {
    request("POST", path, headers, body)
}

/// A well-formed request with any method, extra headers and a body (with its `Content-Length`
/// when the body is not empty or the method is POST).
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: relay.test\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// The value of `"field":N` in a flat JSON text.
pub fn json_number(json: &str, field: &str) -> Option<u64> {
    let key = format!("\"{field}\":");
    let at = json.find(&key)? + key.len();
    let digits: String = json[at..].trim_start().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// The resident set size of process `pid`, from `/proc/<pid>/status`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or_else(|| panic!("no VmRSS in {status}"));
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmRSS in kB")
}

/// GitHub's anchor for a Markdown heading's text: lower case, spaces to `-`, anything but
/// letters, digits, `-` and `_` left out.
pub fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
