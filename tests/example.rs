//! The browser example of `examples/browser/` (README "Use it from a web page"). Without outside
//! programs beyond Node: the QR encoder's and the sealing's unit tests (`node --test`; skipped,
//! with the reason printed, when Node is missing). With them (`#[ignore]`d, run by `make
//! interop`): QR codes of every version and every mask decoded by `zbarimg`; and the whole
//! hand-off in headless Chromium: the desktop page, served from one origin, talks to a relay on
//! another; a screenshot of its QR code is decoded by `zbarimg` to the link the page shows; a
//! second Chromium opens that link and posts; the desktop page shows the decrypted token and its
//! acknowledgement, the phone page sees it acknowledged, the relay's `/metrics` count the
//! hand-off, and its debug log holds neither the token nor the key.
//!
//! Chromium is driven over its DevTools protocol on a pipe (`--remote-debugging-pipe`: commands
//! on its descriptor 3, answers on 4, each JSON text ended by a NUL byte), so the desktop page
//! stays alive, polling, while the test reads its link, screenshots it, and runs the phone.

mod common;

use common::tools::{serve, Group, Json, TempDir};
use common::*;
use std::fs;
use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Longest wait for a page to reach a state.
const CAP: Duration = Duration::from_secs(60);

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("browser")
}

/// Where the screenshots are kept after the test (under `target/`, out of the repository).
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("example");
    fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

fn node_works() -> bool {
    Command::new("node").arg("--version").output().is_ok_and(|out| out.status.success())
}

#[test]
fn qr_encoder_and_sealing_unit_tests_pass_in_node() {
    if !node_works() {
        println!("skipped: no `node` on PATH (make interop-deps installs it)");
        return;
    }
    let out = Command::new("node")
        .args(["--test", "qr.test.js"])
        .current_dir(example_dir())
        .output()
        .expect("run node --test");
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node --test failed:\n{printed}");
    assert!(printed.contains("# fail 0"), "{printed}");
}

/// Writes, for each version at its byte capacity and for every mask, the code as a PGM image
/// with its text beside it. Arguments: the URL of qr.js, the output directory.
const WRITE_CODES: &str = r#"
const { encode, capacity } = await import(process.argv[1]);
const { writeFileSync } = await import('node:fs');
const out = process.argv[2];
const cases = [];
for (let version = 1; version <= 40; version++) {
  let text = '';
  for (let i = 0; text.length < capacity(version); i++) text += 'abcdefghijklmnopqrstuvwxyz0123456789-_'[(i * 7 + version) % 38];
  cases.push({ name: `v${version}`, text, version });
}
for (let mask = 0; mask < 8; mask++) {
  cases.push({ name: `mask${mask}`, text: 'https://example.org/phone.html#relay=https%3A%2F%2Frelay.example&id=abcdefghijklmnopqrstuv&key=' + 'k'.repeat(43), mask });
}
for (const { name, text, version, mask } of cases) {
  const code = encode(text, mask);
  if (version !== undefined && code.version !== version) throw new Error(`${name}: version ${code.version}`);
  const scale = 3;
  const side = (code.size + 8) * scale;
  const pixels = Buffer.alloc(side * side, 255);
  code.dark.forEach((row, r) => row.forEach((dark, c) => {
    if (!dark) return;
    for (let y = 0; y < scale; y++) pixels.fill(0, ((r + 4) * scale + y) * side + (c + 4) * scale, ((r + 4) * scale + y) * side + (c + 5) * scale);
  }));
  writeFileSync(`${out}/${name}.pgm`, Buffer.concat([Buffer.from(`P5 ${side} ${side} 255\n`), pixels]));
  writeFileSync(`${out}/${name}.txt`, text);
}
"#;

/// What `zbarimg` reads in an image: the text of its one code, or what it printed instead.
fn zbarimg(image: &str) -> Result<String, String> {
    let out = Command::new("zbarimg")
        .args(["--raw", "-q", image])
        .output()
        .expect("cannot run zbarimg (make interop-deps)");
    let text = String::from_utf8_lossy(&out.stdout);
    let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{} {text} {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

#[test]
#[ignore = "needs node and zbarimg: make interop"]
fn qr_codes_of_every_version_and_mask_decode_with_zbarimg() {
    let dir = TempDir::new("qr");
    let qr = format!("file://{}", example_dir().join("qr.js").display());
    let out = Command::new("node")
        .args(["--input-type=module", "-e", WRITE_CODES, &qr, dir.path().to_str().unwrap()])
        .output()
        .expect("cannot run node (make interop-deps)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let names: Vec<String> =
        (1..=40).map(|v| format!("v{v}")).chain((0..8).map(|m| format!("mask{m}"))).collect();
    for name in names {
        let text = fs::read_to_string(dir.join(&format!("{name}.txt"))).unwrap();
        let read = zbarimg(&dir.join(&format!("{name}.pgm")));
        assert_eq!(read.as_deref(), Ok(text.as_str()), "{name}");
    }
}

/// Serves the files of `dir` by name (no subdirectories) with their content types.
fn serve_dir(dir: PathBuf) -> SocketAddr {
    serve(move |target| {
        let name = target.split(['?', '#']).next()?.strip_prefix('/')?;
        let safe = name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        let kind = match name.rsplit_once('.')?.1 {
            "html" => "text/html; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            _ => return None,
        };
        safe.then(|| fs::read(dir.join(name)).ok().map(|body| (kind, body)))?
    })
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Standard base64 (as the DevTools protocol sends screenshots) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// A headless Chromium of its own (profile, process group) driven over the DevTools pipe.
struct Browser {
    group: Group,
    /// Chromium's descriptor 3; closing it asks Chromium to quit.
    commands: Option<ChildStdin>,
    answers: mpsc::Receiver<Json>,
    next_id: u64,
    dir: TempDir,
}

impl Browser {
    fn launch(tag: &str) -> Browser {
        let dir = TempDir::new(tag);
        let mut command = Command::new("sh");
        // The pipe's two ends on the descriptors Chromium expects: 3 to read, 4 to write.
        command
            .args(["-c", r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#, "chromium"])
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"])
            .args(["--no-first-run", "--disable-background-networking"])
            .args(["--disable-component-update", "--disable-sync", "--remote-debugging-pipe"])
            .arg("--window-size=800,900")
            .arg(format!("--user-data-dir={}", dir.join("profile")))
            .arg("about:blank")
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_CACHE_HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(dir.join("stderr.log")).unwrap());
        let mut group = Group::spawn(&mut command, "chromium");
        let commands = group.child().stdin.take().expect("stdin is piped");
        let stdout = group.child().stdout.take().expect("stdout is piped");
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut message = Vec::new();
                match std::io::BufRead::read_until(&mut reader, 0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        message.pop();
                        let text = String::from_utf8_lossy(&message);
                        if tx.send(Json::parse(&text)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser { group, commands: Some(commands), answers, next_id: 0, dir }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
    }

    /// Sends one command (`params` a JSON object, `session` a page's) and waits for its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: &str) -> Json {
        self.next_id += 1;
        let id = self.next_id;
        let session =
            session.map_or(String::new(), |s| format!(",\"sessionId\":{}", json_string(s)));
        let message =
            format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}{session}}}\0");
        let commands = self.commands.as_mut().expect("the pipe is open until the drop");
        commands.write_all(message.as_bytes()).expect("write to chromium");
        let deadline = Instant::now() + CAP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.answers.recv_timeout(left).unwrap_or_else(|_| {
                panic!("no answer to {method} within {CAP:?}; chromium:\n{}", self.log())
            });
            if answer.get("id") == Some(&Json::Number(id as f64)) {
                if let Some(error) = answer.get("error") {
                    panic!("{method}: {error:?}");
                }
                return answer.at(&["result"]).clone();
            }
        }
    }

    /// Opens `url` in a new page; the page's session.
    fn open(&mut self, url: &str) -> String {
        let target =
            self.call(None, "Target.createTarget", &format!("{{\"url\":{}}}", json_string(url)));
        let target = target.at(&["targetId"]).text().to_string();
        let params = format!("{{\"targetId\":{},\"flatten\":true}}", json_string(&target));
        self.call(None, "Target.attachToTarget", &params).at(&["sessionId"]).text().to_string()
    }

    /// The value of the JavaScript expression `expr` in the page (a string; "" for anything else).
    fn eval(&mut self, page: &str, expr: &str) -> String {
        let params = format!("{{\"expression\":{},\"returnByValue\":true}}", json_string(expr));
        let result = self.call(Some(page), "Runtime.evaluate", &params);
        result.at(&["result"]).get("value").map_or(String::new(), |v| v.text().to_string())
    }

    /// Polls `expr` until it is not empty; panics after [`CAP`].
    fn wait_for(&mut self, page: &str, expr: &str) -> String {
        let deadline = Instant::now() + CAP;
        loop {
            let value = self.eval(page, expr);
            if !value.is_empty() {
                return value;
            }
            assert!(Instant::now() < deadline, "{expr} stayed empty; chromium:\n{}", self.log());
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// A PNG of the page, or of the element `selector` only, written to `path`.
    fn screenshot(&mut self, page: &str, selector: Option<&str>, path: &Path) {
        let clip = match selector {
            Some(selector) => {
                let rect = self.eval(
                    page,
                    &format!("JSON.stringify(document.querySelector('{selector}').getBoundingClientRect())"),
                );
                let rect = Json::parse(&rect);
                let n = |k: &str| match rect.at(&[k]) {
                    Json::Number(n) => *n,
                    other => panic!("{k}: {other:?}"),
                };
                format!(
                    ",\"clip\":{{\"x\":{},\"y\":{},\"width\":{},\"height\":{},\"scale\":1}}",
                    n("x"),
                    n("y"),
                    n("width"),
                    n("height")
                )
            }
            None => String::new(),
        };
        let shot = self.call(
            Some(page),
            "Page.captureScreenshot",
            &format!("{{\"format\":\"png\"{clip}}}"),
        );
        fs::write(path, base64_decode(shot.at(&["data"]).text())).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing the pipe makes Chromium quit and reap its own processes (killed first, they
        // would be left to init as zombies); whatever is left of the group dies with `group`.
        drop(self.commands.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.group.try_wait().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The value of the sample named exactly `series` in a `/metrics` text (0 when absent).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
#[ignore = "needs chromium and zbarimg: make interop"]
fn desktop_and_phone_pages_hand_off_a_sealed_token_through_the_relay() {
    let binary = handoff_binary();
    let relay =
        Relay::start_command(&["env", "RUST_LOG=debug", &binary], &["--inbox-timeout", "2s"]);
    let site = serve_dir(example_dir());
    let desktop_url = format!("http://{site}/desktop.html?relay=http://{}", relay.addr());
    let shots = screenshots();

    let mut desktop = Browser::launch("desktop");
    let page = desktop.open(&desktop_url);
    let waiting = "document.getElementById('status').dataset.state === 'waiting'";
    let link =
        desktop.wait_for(&page, &format!("{waiting} ? document.getElementById('link').href : ''"));
    let qr_png = shots.join("desktop-qr.png");
    desktop.screenshot(&page, Some("#qr"), &qr_png);
    let decoded = zbarimg(qr_png.to_str().unwrap()).expect("zbarimg reads the screenshot");
    assert_eq!(decoded, link, "the code says another link than the page shows");
    let relay_field = format!("relay=http%3A%2F%2F127.0.0.1%3A{}", relay.addr().port());
    let prefix = format!("http://{site}/phone.html#{relay_field}&id=");
    assert!(link.starts_with(&prefix), "{link}");
    let fragment = link.split_once('#').unwrap().1;
    let field = |name: &str| {
        fragment.split('&').find_map(|kv| kv.strip_prefix(&format!("{name}="))).unwrap().to_string()
    };
    let (id, key) = (field("id"), field("key"));
    // The desktop's long poll runs out and it polls again.
    relay.wait_log("GET inbox ... 408", |l| l.contains("GET inbox") && l.contains(" 408 "));

    let mut phone = Browser::launch("phone");
    let phone_page = phone.open(&decoded);
    let done =
        "['acknowledged', 'failed'].includes(document.getElementById('status').dataset.state)";
    let state_of =
        |state: &str| format!("{state} ? document.getElementById('status').dataset.state : ''");
    let phone_state = phone.wait_for(&phone_page, &state_of(done));
    let phone_status = phone.eval(&phone_page, "document.getElementById('status').textContent");
    assert_eq!(
        phone_state,
        "acknowledged",
        "{phone_status}; relay log:\n{}",
        relay.logs().join("\n")
    );
    let token = phone.eval(&phone_page, "document.getElementById('token').textContent");
    assert_eq!(token.len(), 24, "{token:?}");
    assert_eq!(phone.eval(&phone_page, "location.hash"), "", "the key stays in the address bar");

    let finished = "['done', 'failed'].includes(document.getElementById('status').dataset.state)";
    assert_eq!(desktop.wait_for(&page, &state_of(finished)), "done");
    let shown = desktop.eval(&page, "document.getElementById('token').textContent");
    assert_eq!(shown, token, "the desktop shows another token than the phone sent");
    let status = desktop.eval(&page, "document.getElementById('status').textContent");
    assert_eq!(status, "Signed in. Your phone was told.");
    desktop.screenshot(&page, None, &shots.join("desktop-done.png"));
    phone.screenshot(&phone_page, None, &shots.join("phone-done.png"));
    println!("screenshots: {}", shots.display());

    let metrics = relay.get("/metrics").text();
    assert_eq!(sample(&metrics, "handoff_handoffs_total{protocol=\"inbox\"}"), 1.0, "{metrics}");
    // The GET that got the message, the POST, the DELETE and the /await.
    assert_eq!(
        sample(&metrics, "handoff_requests_total{route=\"inbox\",status=\"200\"}"),
        4.0,
        "{metrics}"
    );
    assert!(sample(&metrics, "handoff_requests_total{route=\"inbox\",status=\"408\"}") >= 1.0);
    // The POST (octet-stream) and the DELETE were preflighted.
    assert!(sample(&metrics, "handoff_requests_total{route=\"preflight\",status=\"204\"}") >= 2.0);
    let logs = relay.logs();
    for method in ["POST inbox", "DELETE inbox", "GET inbox"] {
        assert!(logs.iter().any(|l| l.contains(method) && l.contains(" 200 ")), "no {method} 200");
    }
    // Every level is on (the flow itself makes no debug line; none may hold a secret either).
    let environment = fs::read(format!("/proc/{}/environ", relay.pid())).unwrap();
    assert!(environment.split(|&b| b == 0).any(|v| v == b"RUST_LOG=debug"));
    for (what, secret) in [("token", &token), ("key", &key), ("channel id", &id)] {
        let leaked: Vec<&String> = logs.iter().filter(|l| l.contains(secret.as_str())).collect();
        assert!(leaked.is_empty(), "the {what} is in the relay's log: {leaked:?}");
    }
}
