//! Operations, over the real binary (protocol §7): the `SIGTERM`/`SIGINT` drain and socket
//! activation (`systemd-socket-activate`, also inside a network namespace of its own), and the
//! systemd units' hardening (`systemd-analyze`).

mod common;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{get_request, handoff_binary, post_request, read_response, request, Relay};

/// systemd's tool that listens, then runs a program with the socket as descriptor 3.
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// Sends `signal` (`TERM`, `INT`) to process `pid`.
fn kill_pid(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Sends `signal` to the relay's process.
fn kill(relay: &Relay, signal: &str) {
    kill_pid(relay.pid(), signal);
}

/// Parks three receivers, signals the relay, and checks each gets 503 with `Retry-After`, the
/// process exits 0 within 2 s, and the port refuses connections after. Returns the time taken.
fn drains_on(signal: &str) -> Duration {
    let mut relay = Relay::start(&[]);
    let addr = relay.addr();
    let waiters = [
        relay.spawn_get("/link/drain-a"),
        relay.spawn_get("/link/drain-b"),
        relay.spawn_get("/inbox/drain-c"),
    ];
    relay.wait_parked(3);
    // A request still being read when the signal comes hears 503 too, not a silent close.
    let mut partial = relay.open(b"GET /link/drain-d HTTP/1.1\r\nHo");
    relay.wait_gauge("connections", 5); // 3 parked, the partial one, and the /health poll
    let sent = Instant::now();
    kill(&relay, signal);
    let partial = read_response(&mut partial);
    let waiters = waiters.map(|waiter| waiter.join().unwrap());
    for response in waiters.iter().chain([&partial]) {
        assert_eq!(response.status, 503, "{response}");
        assert_eq!(response.header("retry-after"), Some("1"), "{response}");
        assert!(response.text().contains("shutting down"), "{response}");
    }
    let status = relay.wait_exit(Duration::from_secs(2));
    let took = sent.elapsed();
    let status = status.unwrap_or_else(|| panic!("still running 2 s after SIGTERM"));
    assert!(status.success(), "exit status {status}; logs:\n{}", relay.logs().join("\n"));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "still accepting");
    println!("SIG{signal} to exit: {} ms", took.as_millis());
    took
}

#[test]
fn sigterm_answers_parked_requests_503_and_exits_0() {
    drains_on("TERM");
}

#[test]
fn sigint_drains_like_sigterm() {
    drains_on("INT");
}

/// Two distinct free loopback ports: bound together, read, and released.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap().port(), b.local_addr().unwrap().port())
}

/// Waits until `addr` takes connections (systemd-socket-activate is listening), up to 10 s.
fn wait_listening(addr: SocketAddr) {
    let started = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "{addr} never listened");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn socket_activation_serves_a_link_hand_off_on_the_passed_socket() {
    // --listen names another port, which must stay unused: the socket from systemd wins.
    let (port, decoy) = free_ports();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = Command::new(SOCKET_ACTIVATE)
        .args(["-l", &addr.to_string(), &handoff_binary()])
        .args(["--listen", &format!("127.0.0.1:{decoy}")])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run systemd-socket-activate");
    let stderr = child.stderr.take().unwrap();
    let logs = thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>()
    });
    wait_listening(addr);
    let receiver = thread::spawn(move || common::exchange(addr, &get_request("/link/activated")));
    let sender = common::exchange(addr, &post_request("/link/activated", b"sealed", &[]));
    let received = receiver.join().unwrap();
    assert_eq!(sender.status, 200, "{sender}");
    assert_eq!(received.status, 200, "{received}");
    assert_eq!(received.text(), "sealed");
    assert!(TcpStream::connect(("127.0.0.1", decoy)).is_err(), "--listen was bound too");
    kill_pid(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    let logs = logs.join().unwrap().join("\n");
    assert!(logs.contains("(socket from systemd; --listen ignored)"), "{logs}");
}

/// The relay needs no network of its own: in a new network namespace with only `lo` up, a
/// socket-activated relay serves a `/link` hand-off to a client in the same namespace (bash's
/// `/dev/tcp`). Skipped, with the reason printed, where `unshare --net` is not permitted.
#[test]
fn socket_activation_works_in_a_network_namespace_of_its_own() {
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    match probe {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let reason = String::from_utf8_lossy(&output.stderr);
            println!("skipped: unshare --net is not permitted here: {}", reason.trim());
            return;
        }
        Err(e) => {
            println!("skipped: cannot run unshare: {e}");
            return;
        }
    }
    let script = r#"
        set -e
        ip link set lo up
        "$ACTIVATE" -l 127.0.0.1:8080 "$RELAY" 2>/dev/null &
        relay=$!
        for i in $(seq 100); do (exec 5<>/dev/tcp/127.0.0.1/8080) 2>/dev/null && break; sleep 0.05; done
        exec 3<>/dev/tcp/127.0.0.1/8080
        printf 'GET /link/netns HTTP/1.1\r\nHost: relay.test\r\n\r\n' >&3
        exec 4<>/dev/tcp/127.0.0.1/8080
        printf 'POST /link/netns HTTP/1.1\r\nHost: relay.test\r\nContent-Length: 6\r\n\r\nsealed' >&4
        # The receiver reads and closes first: the sender's 200 waits for it (protocol §2).
        cat <&3
        exec 3<&-
        head -n1 <&4
        # The PID, not the job: the relay may exit and be reaped before `wait` runs, and a
        # job spec then names no job; bash keeps an exited child's status by PID.
        kill -TERM "$relay"
        status=0
        wait "$relay" || status=$?
        echo "exit $status"
    "#;
    let output = Command::new("unshare")
        .args(["--net", "bash", "-c", script])
        .env("ACTIVATE", SOCKET_ACTIVATE)
        .env("RELAY", handoff_binary())
        .output()
        .expect("cannot run unshare");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{out}\n{}", String::from_utf8_lossy(&output.stderr));
    // The receiver's whole response, then the sender's status line.
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("\r\n\r\nsealed"), "{out}");
    assert!(out.contains("sealedHTTP/1.1 200 OK\r\n"), "sender: {out}");
    assert!(out.trim_end().ends_with("exit 0"), "{out}");
}

/// The unit files, in the repository's `systemd/` directory.
fn unit(name: &str) -> String {
    format!("{}/systemd/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `systemd-analyze security` rates the service's hardening: the overall exposure must stay at
/// 0.5 or below ("SAFE" starts below 1.0 on its scale of 0 to 10).
#[test]
fn service_unit_exposure_is_at_most_half_a_point() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", &unit("handoff.service")])
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure figure in:\n{text}"));
    let figure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the figure in {line:?}"));
    println!("{}", line.trim());
    assert!(figure <= 0.5, "{line}\n{text}");
}

/// `systemd-analyze verify` accepts both units (offline), with `ExecStart` pointed at the binary
/// just built since the installed path may not exist here.
#[test]
fn units_pass_systemd_analyze_verify() {
    let dir = std::env::temp_dir().join(format!("handoff-units-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let service = std::fs::read_to_string(unit("handoff.service")).unwrap();
    assert!(
        service.contains("ExecStart=/usr/local/bin/handoff\n"),
        "ExecStart must match make install"
    );
    let service = service.replace("/usr/local/bin/handoff", &handoff_binary());
    std::fs::write(dir.join("handoff.service"), service).unwrap();
    std::fs::copy(unit("handoff.socket"), dir.join("handoff.socket")).unwrap();
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("handoff.socket"))
        .arg(dir.join("handoff.service"))
        .output()
        .expect("systemd-analyze is missing: install the systemd package (.ci/run does)");
    let _ = std::fs::remove_dir_all(&dir);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && errors.trim().is_empty(), "{errors}");
}

/// `/metrics`, parsed: each sample as (`name{labels}`, value). Checks the text format on the
/// way: every sample line is `name{labels} value` with the `handoff_` prefix, after its family's
/// `# HELP` and `# TYPE` lines.
fn scrape(relay: &Relay) -> Vec<(String, f64)> {
    let response = relay.get("/metrics");
    assert_eq!(response.status, 200, "{response}");
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{response}");
    let text = response.text();
    let mut described = Vec::new();
    let mut typed = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            described.push(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(matches!(kind, "counter" | "gauge"), "{line}");
            typed.push(name.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line:?}"));
            let name = series.split('{').next().unwrap();
            assert!(name.starts_with("handoff_"), "{line}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{line}");
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}'));
                let inner = inner.unwrap_or_else(|| panic!("labels in {line:?}"));
                for pair in inner.split(',') {
                    let (key, quoted) = pair.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                    assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{line}");
                    assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'));
                }
            }
            assert_eq!(typed.last().map(String::as_str), Some(name), "{line} before its # TYPE");
            assert_eq!(described.last().map(String::as_str), Some(name), "{line}: no # HELP");
            samples.push((series.to_string(), value));
        }
    }
    samples
}

/// The value of the sample named exactly `series` (0 when absent, as for an unseen counter).
fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples.iter().find(|(s, _)| s == series).map_or(0.0, |(_, v)| *v)
}

#[test]
fn metrics_are_prometheus_text_and_count_a_link_hand_off() {
    let relay = Relay::start(&[]);
    let before = scrape(&relay);
    let link = "handoff_handoffs_total{protocol=\"link\"}";
    let link_200 = "handoff_requests_total{route=\"link\",status=\"200\"}";
    assert_eq!(sample(&before, link), 0.0);
    let present = [
        "handoff_parked",
        "handoff_connections",
        "handoff_memory_bytes",
        "handoff_state_write_failures_total",
        "handoff_resident_memory_bytes",
    ];
    for series in present {
        assert!(before.iter().any(|(s, _)| s == series), "no {series} in {before:?}");
    }
    let receiver = relay.spawn_get("/link/metrics");
    relay.wait_parked(1);
    assert_eq!(sample(&scrape(&relay), "handoff_parked"), 1.0);
    assert_eq!(relay.post("/link/metrics", b"sealed", &[]).status, 200);
    assert_eq!(receiver.join().unwrap().text(), "sealed");
    let after = scrape(&relay);
    assert_eq!(sample(&after, link), 1.0, "{after:?}");
    assert_eq!(sample(&after, link_200), 2.0, "{after:?}");
    assert_eq!(sample(&after, "handoff_parked"), 0.0);
    let scrapes = "handoff_requests_total{route=\"metrics\",status=\"200\"}";
    assert!(sample(&after, scrapes) >= 2.0, "{after:?}");
}

/// The caps an alert compares the gauges with are exported as set, and not at all when disabled.
#[test]
fn metrics_show_the_limits_and_leave_out_disabled_ones() {
    let relay =
        Relay::start(&["--max-memory", "1M", "--max-parked", "7", "--max-connections", "9"]);
    let samples = scrape(&relay);
    assert_eq!(sample(&samples, "handoff_memory_limit_bytes"), 1048576.0, "{samples:?}");
    assert_eq!(sample(&samples, "handoff_parked_limit"), 7.0, "{samples:?}");
    assert_eq!(sample(&samples, "handoff_connections_limit"), 9.0, "{samples:?}");
    let unlimited =
        Relay::start(&["--max-memory", "0", "--max-parked", "0", "--max-connections", "0"]);
    let samples = scrape(&unlimited);
    for limit in ["handoff_memory_limit_bytes", "handoff_parked_limit", "handoff_connections_limit"]
    {
        assert!(!samples.iter().any(|(s, _)| s == limit), "{limit} in {samples:?}");
    }
}

#[test]
fn metrics_count_inbox_fetches_and_timeouts() {
    let relay = Relay::start(&["--inbox-timeout", "300ms"]);
    assert_eq!(relay.get("/inbox/metrics-timeout").status, 408);
    assert_eq!(relay.post("/inbox/metrics-fetch", b"sealed", &[]).status, 200);
    assert_eq!(relay.get("/inbox/metrics-fetch").status, 200);
    let samples = scrape(&relay);
    assert_eq!(sample(&samples, "handoff_handoffs_total{protocol=\"inbox\"}"), 1.0);
    assert_eq!(sample(&samples, "handoff_timeouts_total"), 1.0);
    assert_eq!(sample(&samples, "handoff_messages"), 1.0);
}

/// A client that is not on loopback (here one a trusted proxy names) gets 403 without
/// `--token-file`; the loopback proxy itself is still answered.
#[test]
fn metrics_are_refused_to_clients_off_loopback() {
    let relay = Relay::start(&["--trust-proxy", "127.0.0.1/32"]);
    let forwarded =
        b"GET /metrics HTTP/1.1\r\nHost: relay.test\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n";
    let response = relay.send(forwarded);
    assert_eq!(response.status, 403, "{response}");
    assert!(response.text().contains("loopback"), "{response}");
    assert_eq!(relay.get("/metrics").status, 200);
}

/// With `--token-file`, a client off loopback needs a `stats` token: none is 401, a token
/// without the scope 403, a `stats` token 200.
#[test]
fn metrics_off_loopback_need_a_stats_token() {
    let dir = std::env::temp_dir().join(format!("handoff-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tokens");
    std::fs::write(&path, "stats-token-000000001 stats\nsend-token-0000000002 send\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let relay =
        Relay::start(&["--trust-proxy", "127.0.0.1/32", "--token-file", path.to_str().unwrap()]);
    let ask = |token: Option<&str>| {
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let raw = format!(
            "GET /metrics HTTP/1.1\r\nHost: relay.test\r\nX-Forwarded-For: 203.0.113.9\r\n{auth}\r\n"
        );
        relay.send(raw.as_bytes()).status
    };
    assert_eq!(ask(None), 401);
    assert_eq!(ask(Some("send-token-0000000002")), 403);
    assert_eq!(ask(Some("stats-token-000000001")), 200);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real TCP peer off loopback: the relay listens on every address and the test connects to
/// this machine's first global IPv4 address. Skipped, with the reason, on a machine without one.
#[test]
fn metrics_are_refused_to_a_tcp_peer_off_loopback() {
    let output = Command::new("ip").args(["-o", "-4", "addr", "show", "scope", "global"]).output();
    let text = output.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    let local = text
        .split_whitespace()
        .skip_while(|word| *word != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse::<std::net::IpAddr>().ok());
    let Some(local) = local else {
        println!("skipped: no global IPv4 address on this machine (ip -o -4 addr)");
        return;
    };
    let relay = Relay::start(&["--listen", "0.0.0.0:0"]);
    let addr = SocketAddr::new(local, relay.addr().port());
    let response = common::exchange(addr, &get_request("/metrics"));
    assert_eq!(response.status, 403, "{response}");
    let loopback = SocketAddr::new([127, 0, 0, 1].into(), relay.addr().port());
    assert_eq!(common::exchange(loopback, &get_request("/metrics")).status, 200);
}

/// Under journald (`JOURNAL_STREAM` names stderr), every line starts with a syslog priority;
/// with the variable naming something else, the plain format stays.
#[test]
fn journald_stderr_gets_priority_prefixes() {
    use std::os::unix::fs::MetadataExt;
    let dir = std::env::temp_dir().join(format!("handoff-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (n, names_stderr) in [(0, true), (1, false)] {
        let path = dir.join(format!("stderr-{n}"));
        let file = std::fs::File::create(&path).unwrap();
        let meta = file.metadata().unwrap();
        let ino = if names_stderr { meta.ino() } else { meta.ino() + 1 };
        let mut child = Command::new(handoff_binary())
            .args(["--listen", "127.0.0.1:0"])
            .env("JOURNAL_STREAM", format!("{}:{ino}", meta.dev()))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !std::fs::read_to_string(&path).unwrap().contains("listening on") {
            assert!(started.elapsed() < Duration::from_secs(10), "the relay did not start");
            thread::sleep(Duration::from_millis(10));
        }
        kill_pid(child.id(), "TERM");
        assert!(child.wait().unwrap().success());
        let text = std::fs::read_to_string(&path).unwrap();
        let want = if names_stderr { "<6>handoff " } else { "INFO handoff " };
        assert!(text.starts_with(want), "{text}");
        let prefixed = text.lines().all(|line| line.starts_with('<'));
        assert_eq!(prefixed, names_stderr, "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The README shows the proxy configurations users copy: each block must be the shipped file
/// (tested by `make interop`) word for word, past the file's opening comment.
#[test]
fn readme_shows_the_shipped_proxy_files() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README.md");
    for (file, fence) in [("nginx.conf", "```nginx\n"), ("Caddyfile", "```caddyfile\n")] {
        let text = std::fs::read_to_string(format!("{root}/proxy/{file}")).expect("proxy file");
        let start = text.lines().take_while(|l| l.starts_with('#') || l.is_empty()).count();
        let body: String = text.lines().skip(start).map(|l| format!("{l}\n")).collect();
        let block = readme
            .split_once(fence)
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(block, _)| block)
            .unwrap_or_else(|| panic!("README has no {fence:?} block"));
        assert_eq!(block, body, "README's {fence:?} block is not proxy/{file}");
    }
}

/// `--instance` names the relay in `/health`, in `/metrics` (`handoff_info{relay=...}`) and in
/// the `Handoff-Instance` header of every response: relay answers, refusals and local answers.
#[test]
fn instance_is_named_in_health_metrics_and_every_response() {
    let relay = Relay::start(&["--instance", "relay-2", "--inbox-timeout", "300ms"]);
    let (health, text) = relay.health();
    assert!(text.starts_with("{\"status\":\"ok\",\"instance\":\"relay-2\","), "{health}");
    let version = env!("CARGO_PKG_VERSION");
    let info = format!("handoff_info{{relay=\"relay-2\",version=\"{version}\"}}");
    assert_eq!(sample(&scrape(&relay), &info), 1.0);
    let receiver = relay.spawn_get("/link/named");
    relay.wait_parked(1);
    let answers = [
        relay.post("/link/named", b"sealed", &[]),
        receiver.join().unwrap(),
        relay.get("/inbox/named"),
        relay.get("/"),
        relay.get("/nowhere"),
        relay.send(b"GET / HTTP/1.1\r\n\r\n"),
        relay.send(&request("OPTIONS", "/inbox/named", &[("Origin", "https://a.example")], b"")),
        health,
    ];
    for (answer, status) in answers.iter().zip([200, 200, 408, 200, 404, 400, 204, 200]) {
        assert_eq!(answer.status, status, "{answer}");
        assert_eq!(answer.header("handoff-instance"), Some("relay-2"), "{answer}");
        assert_eq!(answer.header_count("handoff-instance"), 1, "{answer}");
    }
}

/// Without `--instance`, no answer names the relay: `/health` has no `instance`, `/metrics` no
/// `relay` label, and no response the header (the host name, which `/health` used to show, is
/// not every operator's to publish).
#[test]
fn without_instance_no_answer_names_the_relay() {
    let relay = Relay::start(&[]);
    let (health, text) = relay.health();
    assert!(text.starts_with("{\"status\":\"ok\",\"sessions\":"), "{health}");
    assert!(!text.contains("instance"), "{health}");
    let metrics = relay.get("/metrics").text();
    let version = env!("CARGO_PKG_VERSION");
    assert!(metrics.contains(&format!("\nhandoff_info{{version=\"{version}\"}} 1\n")), "{metrics}");
    for answer in [health, relay.get("/"), relay.get("/nowhere")] {
        assert_eq!(answer.header("handoff-instance"), None, "{answer}");
    }
}

/// A `const NAME: Duration = Duration::from_millis(N)` (or `from_secs`) of `src/main.rs`.
fn main_rs_duration(name: &str) -> Duration {
    let path = format!("{}/src/main.rs", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap();
    let line = source
        .lines()
        .find(|line| line.contains(&format!("const {name}: Duration")))
        .unwrap_or_else(|| panic!("no `const {name}: Duration` in {path}: update this test"));
    let number = |prefix: &str| {
        let rest = line.split_once(prefix)?.1;
        rest.split(')').next()?.parse::<u64>().ok()
    };
    match (number("from_millis("), number("from_secs(")) {
        (Some(ms), _) => Duration::from_millis(ms),
        (_, Some(s)) => Duration::from_secs(s),
        _ => panic!("cannot read {name} in {line:?}"),
    }
}

/// systemd kills the relay `TimeoutStopSec` after `SIGTERM`; killed mid-save, it would lose the
/// messages `--state-file` keeps. The longest exit is the drain (`DRAIN_LIMIT`), then the last
/// save's two waits (`SAVE_LIMIT` each: the registry's hand-over, the write and its fsync); the
/// unit must allow that and 2 s more (README "Operating the service").
#[test]
fn the_units_stop_timeout_covers_the_longest_exit() {
    let worst = main_rs_duration("DRAIN_LIMIT") + 2 * main_rs_duration("SAVE_LIMIT");
    let service = std::fs::read_to_string(unit("handoff.service")).unwrap();
    let line = service
        .lines()
        .find(|line| line.starts_with("TimeoutStopSec="))
        .unwrap_or_else(|| panic!("no TimeoutStopSec= in handoff.service (systemd's 90 s?)"));
    let seconds: u64 = line["TimeoutStopSec=".len()..]
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line:?} is not in whole seconds (e.g. TimeoutStopSec=10s)"));
    assert!(
        Duration::from_secs(seconds) >= worst + Duration::from_secs(2),
        "{line}: the relay may take {worst:?} to exit with --state-file; allow 2 s more"
    );
}
