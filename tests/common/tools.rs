//! What the tests that drive outside programs share (tests/monitoring.rs, tests/example.rs):
//! temporary directories, free ports, child processes killed with everything they started, a
//! plain HTTP/1.0 GET to any local server, and a small JSON reader for the answers of
//! Prometheus's API and for the shipped dashboard.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Response;

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system's temporary directory, named after `tag`.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("handoff-{tag}-{}-{n}", std::process::id());
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside the directory, as a string for a command line.
    pub fn join(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("temp path is UTF-8").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A program started in a process group of its own; dropping it kills the whole group (the
/// program and every process it started, as Chromium does) and reaps the program.
pub struct Group {
    child: Child,
}

impl Group {
    /// Spawns `command` as the leader of a new process group.
    pub fn spawn(command: &mut Command, what: &str) -> Group {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what} ({e}): make interop-deps"));
        Group { child }
    }

    /// The program itself (to take its standard streams).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The program's exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for a child")
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // The group's id is the leader's pid; `kill -KILL -- -PGID` signals every member.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 server on 127.0.0.1 (its own port, so its own origin) that answers each `GET`
/// with what `answer` makes of the request target, `Some((content type, body))`, or 404; its
/// threads live as long as the test process.
pub fn serve(
    answer: impl Fn(&str) -> Option<(&'static str, Vec<u8>)> + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = std::sync::Arc::new(answer);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let answer = std::sync::Arc::clone(&answer);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let target = head.strip_prefix("GET ").and_then(|rest| rest.split(' ').next());
                let (status, kind, body) = match target.and_then(|target| answer(target)) {
                    Some((kind, body)) => ("200 OK", kind, body),
                    None => ("404 Not Found", "text/plain", Vec::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            });
        }
    });
    addr
}

/// `GET path` as HTTP/1.0 to `addr`: the server closes after the answer and sends no chunked
/// body (Prometheus, a Go server, would otherwise keep the connection and may chunk).
pub fn get10(addr: SocketAddr, path: &str) -> Response {
    super::exchange(addr, format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
}

/// `text` percent-encoded for a query string: every byte but the unreserved ones.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A JSON value, as far as these tests read one.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses a whole JSON text; panics with the place on anything else (a test's input).
    pub fn parse(text: &str) -> Json {
        let mut reader = JsonReader { bytes: text.as_bytes(), at: 0 };
        let value = reader.value();
        reader.space();
        assert_eq!(reader.at, text.len(), "trailing bytes after JSON: {text}");
        value
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The member at `path` (keys, one per level); panics naming the key when it is missing.
    pub fn at(&self, path: &[&str]) -> &Json {
        path.iter().fold(self, |value, key| {
            value.get(key).unwrap_or_else(|| panic!("no {key:?} in {value:?}"))
        })
    }

    /// The elements of a list (none for anything else).
    pub fn list(&self) -> &[Json] {
        match self {
            Json::List(items) => items,
            _ => &[],
        }
    }

    /// The text of a string (`""` for anything else).
    pub fn text(&self) -> &str {
        match self {
            Json::Text(text) => text,
            _ => "",
        }
    }

    /// Every string value of a member named `key`, at any depth, in document order.
    pub fn texts_named(&self, key: &str, found: &mut Vec<String>) {
        match self {
            Json::List(items) => items.iter().for_each(|item| item.texts_named(key, found)),
            Json::Object(members) => {
                for (k, v) in members {
                    match v {
                        Json::Text(text) if k == key => found.push(text.clone()),
                        _ => v.texts_named(key, found),
                    }
                }
            }
            _ => {}
        }
    }
}

/// A recursive-descent reader over the bytes of one JSON text.
struct JsonReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl JsonReader<'_> {
    fn space(&mut self) {
        while self.bytes.get(self.at).is_some_and(|b| b" \t\r\n".contains(b)) {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) {
        self.space();
        assert_eq!(
            self.bytes.get(self.at),
            Some(&byte),
            "JSON: {:?} expected at {}",
            byte as char,
            self.at
        );
        self.at += 1;
    }

    fn literal(&mut self, word: &str, value: Json) -> Json {
        assert!(
            self.bytes[self.at..].starts_with(word.as_bytes()),
            "JSON: bad literal at {}",
            self.at
        );
        self.at += word.len();
        value
    }

    /// Reads comma-separated items up to `close`, the opening bracket already read.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self)) {
        self.space();
        if self.bytes.get(self.at) == Some(&close) {
            self.at += 1;
            return;
        }
        loop {
            item(self);
            self.space();
            self.at += 1;
            match self.bytes.get(self.at - 1) {
                Some(b',') => continue,
                Some(&byte) if byte == close => return,
                _ => panic!("JSON: , or {} expected at {}", close as char, self.at - 1),
            }
        }
    }

    fn value(&mut self) -> Json {
        self.space();
        match self.bytes.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut members = Vec::new();
                self.items(b'}', |reader| {
                    reader.space();
                    let key = reader.string();
                    reader.expect(b':');
                    members.push((key, reader.value()));
                });
                Json::Object(members)
            }
            Some(b'[') => {
                self.at += 1;
                let mut items = Vec::new();
                self.items(b']', |reader| items.push(reader.value()));
                Json::List(items)
            }
            Some(b'"') => Json::Text(self.string()),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            _ => {
                let start = self.at;
                while self.bytes.get(self.at).is_some_and(|b| b"+-.eE0123456789".contains(b)) {
                    self.at += 1;
                }
                let number = std::str::from_utf8(&self.bytes[start..self.at]).unwrap();
                Json::Number(
                    number.parse().unwrap_or_else(|_| panic!("JSON: bad value at {start}")),
                )
            }
        }
    }

    fn string(&mut self) -> String {
        assert_eq!(self.bytes.get(self.at), Some(&b'"'), "JSON: string expected at {}", self.at);
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let byte = *self.bytes.get(self.at).expect("JSON: unterminated string");
            self.at += 1;
            match byte {
                b'"' => return String::from_utf8(out).expect("JSON string is UTF-8"),
                b'\\' => {
                    let escaped = self.bytes[self.at];
                    self.at += 1;
                    match escaped {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex =
                                std::str::from_utf8(&self.bytes[self.at..self.at + 4]).unwrap();
                            self.at += 4;
                            let unit = u32::from_str_radix(hex, 16).expect("JSON: bad \\u escape");
                            // Surrogate pairs do not occur in what these tests read.
                            let c = char::from_u32(unit).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

/// A small tmpfs mounted for one test (mounting needs root, as `make interop` runs), unmounted
/// when dropped: a disk that can be filled.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's `size=`, e.g. `256k`) at `dir`, made if needed.
    pub fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("cannot run mount");
        assert!(mounted.success(), "mount -t tmpfs at {} failed", dir.display());
        Tmpfs(dir)
    }

    /// Fills it with a file of every free block; returns the file's path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Stops `child` with SIGTERM and waits up to `cap` for it, then kills it: an nginx master sent
/// SIGTERM stops its workers before it exits, where a killed one leaves them on the port.
pub fn terminate(child: &mut std::process::Child, cap: std::time::Duration) {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = std::time::Instant::now() + cap;
    while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
