//! `handoff-bench`: a load generator for any relay speaking `/link` and `/inbox` (protocol §1–§3),
//! given by base URL. Plain HTTP/1.1 over `std::net::TcpStream`, one connection per request (the
//! relay closes after each response), a thread per concurrent client; no async, no client crate.
//!
//! Scenarios: `link-latency`, `link-throughput`, `inbox-flow`, `park`, `mcast-fanout`, and `soak` (in `soak.rs`;
//! see `--help`); and `floor-relay` (in `floor.rs`), the least a relay can do, to measure
//! against, which serves until killed. Every request has a timeout and every load loop is
//! bounded by a count or a deadline.
//! It only ever connects to the address it is given. Output: a table, or one JSON object with
//! `--json`. Given the relay's `--pid`, it also reads the relay's CPU time and footprint from
//! `/proc`, which works for any relay on the same host.
//!
//! Parking N receivers needs N descriptors here and N in the relay: raise `ulimit -n` first
//! (std cannot raise RLIMIT_NOFILE itself). Per-client limits of the relay must be off (`0`).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;

mod floor;
mod soak;

const HELP: &str = "\
Usage: handoff-bench SCENARIO [OPTIONS]

Scenarios:
  link-latency     one receiver and one sender, -n sequential hand-offs (receiver's GET first,
                   then the POST); latency of the sender (connect to 200) and of the receiver
  link-throughput  -c concurrent pairs on distinct /link ids for -d; new connection per request
  inbox-flow       -c concurrent Pubky flows (GET that waits, POST, GET returns, DELETE) for -d
  park             -n receivers parked on distinct ids; relay RSS/threads/fds with --pid;
                   then the time until -c concurrent senders have served all of them
  mcast-fanout     -n readers wait on one /mcast channel (handoff's, httprelay.io's), one POST
                   answers them all; rounds on fresh channels for -d; latency of each reader
                   from the POST to its answer
  soak             -c threads of mixed load for -d (/link and /inbox flows, receivers that
                   leave, slow readers, waits that end in 408); the relay's RSS, descriptors
                   and threads every --sample; exits 1 unless it passes (needs --pid)
  floor-relay      not a load: serves /link hand-offs one pair at a time on --listen, one
                   thread, blocking, until killed; the machine's floor for C = 1

Options:
  --url URL              base URL of the relay (plain http) [default: http://127.0.0.1:8080]
  -c, --concurrency N    concurrent pairs or flows [default: 1]; for park and
                         --parked-background, threads parking and sending [default: 32]
  -d, --duration DUR     run time of throughput scenarios: 10s, 500ms [default: 10s]
  -n, --count N          hand-offs (link-latency), parked receivers (park) or readers per
                         round (mcast-fanout) [default: 1000]
  --parked-background N  link-latency: keep N other receivers parked meanwhile [default: 0]
  --pid PID              the relay's process id, to read /proc/PID/{stat,status,fd}: its CPU
                         time per hand-off or flow, its memory, threads and descriptors
  --inbox                park: receivers wait on /inbox/ID instead of /link/ID
  --sample DUR           soak: time between samples [default: 10s]
  --warmup DUR           soak: RSS is compared from the first sample after this [default: 60s]
  --wait DUR             soak: the relay's --link-timeout and --inbox-timeout, so the waits
                         meant to end in 408 last long enough [default: 2s]
  --rss-tolerance PCT    soak: how far RSS may move after the warm-up [default: 5]
  --listen ADDR          floor-relay: where to listen (port 0: any free one; printed)
  --rate N               soak: operations per second each load thread starts at most, so the
                         relay holds a steady number of messages; 0 = as fast as it can [default: 0]
  --timeout DUR          per-request timeout [default: 10s]
  --json                 print one JSON object instead of a table
  -h, --help             print this help

Start the relay with its per-client limits off (--rate-per-ip 0 --rate-per-id 0
--max-connections-per-ip 0 --max-parked-per-ip 0), and for large -n also --max-parked 0
--max-connections 0 --max-memory 0; raise `ulimit -n` above N in both processes.
";

/// Where the relay is and how long a request may take.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    /// `host:port` as given, for the `Host` header.
    host: String,
    /// Path prefix without a trailing slash (`""` or `/relay`).
    prefix: String,
    timeout: Duration,
}

/// Parsed command line.
struct Options {
    scenario: String,
    target: Target,
    concurrency: Option<usize>,
    duration: Duration,
    count: usize,
    parked_background: usize,
    pid: Option<u32>,
    json: bool,
    inbox: bool,
    sample: Duration,
    warmup: Duration,
    wait: Duration,
    rss_tolerance: f64,
    rate: usize,
    listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") || args.is_empty() {
        print!("{HELP}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("handoff-bench: {e}\n(see handoff-bench --help)");
            return ExitCode::from(2);
        }
    };
    warn_if_conntrack_is_filling();
    let report = match options.scenario.as_str() {
        "link-latency" => link_latency(&options),
        "link-throughput" => link_throughput(&options),
        "inbox-flow" => inbox_flow(&options),
        "park" => park(&options),
        "mcast-fanout" => mcast_fanout(&options),
        "soak" => return soak::run(&options),
        "floor-relay" => return floor::run(&options),
        other => Err(format!("unknown scenario {other:?}")),
    };
    match report {
        Ok(report) => {
            if options.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("handoff-bench {}: {e}", options.scenario);
            ExitCode::FAILURE
        }
    }
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut url = "http://127.0.0.1:8080".to_string();
    let mut timeout = Duration::from_secs(10);
    let mut options = Options {
        scenario: String::new(),
        target: Target {
            addr: ([127, 0, 0, 1], 8080).into(),
            host: String::new(),
            prefix: String::new(),
            timeout,
        },
        concurrency: None,
        duration: Duration::from_secs(10),
        count: 1000,
        parked_background: 0,
        pid: None,
        json: false,
        inbox: false,
        sample: Duration::from_secs(10),
        warmup: Duration::from_secs(60),
        wait: Duration::from_secs(2),
        rss_tolerance: 5.0,
        rate: 0,
        listen: None,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = value()?.clone(),
            "-c" | "--concurrency" => options.concurrency = Some(parse_count(arg, value()?)?),
            "-d" | "--duration" => options.duration = parse_duration(value()?)?,
            "-n" | "--count" => options.count = parse_count(arg, value()?)?,
            "--parked-background" => options.parked_background = parse_count(arg, value()?)?,
            "--pid" => options.pid = Some(parse_count(arg, value()?)? as u32),
            "--timeout" => timeout = parse_duration(value()?)?,
            "--json" => options.json = true,
            "--inbox" => options.inbox = true,
            "--sample" => options.sample = parse_duration(value()?)?.max(Duration::from_millis(10)),
            "--warmup" => options.warmup = parse_duration(value()?)?,
            "--wait" => options.wait = parse_duration(value()?)?,
            "--rss-tolerance" => options.rss_tolerance = parse_count(arg, value()?)? as f64,
            "--rate" => options.rate = parse_count(arg, value()?)?,
            "--listen" => {
                let text = value()?;
                options.listen = Some(text.parse().map_err(|_| format!("bad address {text:?}"))?);
            }
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            scenario if options.scenario.is_empty() => options.scenario = scenario.to_string(),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    if options.scenario.is_empty() {
        return Err("no scenario given".into());
    }
    options.target = parse_url(&url, timeout)?;
    Ok(options)
}

fn parse_count(flag: &str, text: &str) -> Result<usize, String> {
    text.replace('_', "").parse().map_err(|_| format!("{flag} wants a whole number, not {text:?}"))
}

/// `10s`, `500ms`, `2m`, or bare seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {text:?} (expected e.g. 10s, 500ms, 2m)");
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number: u64 = text[..split].parse().map_err(|_| bad())?;
    match &text[split..] {
        "" | "s" => Ok(Duration::from_secs(number)),
        "ms" => Ok(Duration::from_millis(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(bad()),
    }
}

/// `http://host:port/prefix` → address, `Host` value and prefix. Only plain http.
fn parse_url(url: &str, timeout: Duration) -> Result<Target, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url:?}: only http:// URLs"))?;
    let (host, prefix) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let host_port = if host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = host_port
        .to_socket_addrs()
        .map_err(|e| format!("{url:?}: cannot resolve {host_port}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url:?}: {host_port} has no address"))?;
    Ok(Target { addr, host: host.to_string(), prefix: prefix.to_string(), timeout })
}

// ---------------------------------------------------------------------------------------------
// The HTTP client: write a request, read the response to end of stream.

impl Target {
    fn request_bytes(&self, method: &str, path: &str, body: &[u8]) -> Vec<u8> {
        let mut raw = format!("{method} {}{path} HTTP/1.1\r\nHost: {}\r\n", self.prefix, self.host);
        if method == "POST" {
            raw.push_str(&format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        raw.push_str("Connection: close\r\n\r\n");
        let mut raw = raw.into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    /// Connects and writes the request; the response is read later with [`read_status`].
    fn open(&self, method: &str, path: &str, body: &[u8]) -> Result<TcpStream, String> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        stream.set_write_timeout(Some(self.timeout)).map_err(|e| e.to_string())?;
        stream
            .write_all(&self.request_bytes(method, path, body))
            .map_err(|e| format!("write: {e}"))?;
        Ok(stream)
    }

    /// One whole request: its status.
    fn call(&self, method: &str, path: &str, body: &[u8]) -> Result<u16, String> {
        read_status(&mut self.open(method, path, body)?)
    }
}

/// Reads to end of stream and returns the status code of the response.
fn read_status(stream: &mut TcpStream) -> Result<u16, String> {
    let mut raw = Vec::with_capacity(1024);
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if raw.len() < 1 << 20 => raw.extend_from_slice(&buf[..n]),
            Ok(_) => return Err("response over 1 MiB".into()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err("timed out waiting for the response".into())
            }
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let status = std::str::from_utf8(line)
        .ok()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    status.ok_or_else(|| {
        format!("no status line in {:?}", String::from_utf8_lossy(&raw[..raw.len().min(80)]))
    })
}

/// A hand-off's two sides, both 200: the receiver reads its answer and closes first, since the
/// sender's 200 may wait until the receiver took the message (handoff's does).
fn hand_off(mut receiver: TcpStream, mut sender: TcpStream, what: &str) -> Result<(), String> {
    let received = read_status(&mut receiver);
    drop(receiver);
    match (received?, read_status(&mut sender)?) {
        (200, 200) => Ok(()),
        (got, sent) => Err(format!("{what}: status {got}, sender: status {sent}, expected 200")),
    }
}

/// Every hand-off opens two connections, and a firewall that tracks connections (netfilter's
/// conntrack, on many hosts even for loopback) keeps each for two minutes after it closes: at a
/// few thousand hand-offs a second its table fills, and the kernel then drops new connections
/// (`nf_conntrack: table full`), which looks exactly like a relay that stalls. Says so first.
fn warn_if_conntrack_is_filling() {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
    };
    if let (Some(count), Some(max)) = (read("nf_conntrack_count"), read("nf_conntrack_max")) {
        if count > max / 4 {
            eprintln!(
                "handoff-bench: warning: the conntrack table holds {count} of at most {max} \
                 connections; when it is full the kernel drops new ones and every figure here \
                 is wrong. Raise net.netfilter.nf_conntrack_max or lower \
                 net.netfilter.nf_conntrack_tcp_timeout_time_wait (BENCHMARKS.md, method)."
            );
        }
    }
}

fn expect_200(what: &str, status: Result<u16, String>) -> Result<(), String> {
    match status? {
        200 => Ok(()),
        other => Err(format!("{what}: status {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

/// Latencies of one kind of operation and its failures.
#[derive(Default)]
struct Series {
    name: &'static str,
    ok: Vec<Duration>,
    errors: usize,
    first_error: Option<String>,
}

impl Series {
    fn named(name: &'static str) -> Series {
        Series { name, ..Series::default() }
    }

    fn record(&mut self, started: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => self.ok.push(started.elapsed()),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn merge(&mut self, other: Series) {
        self.ok.extend(other.ok);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The `p`-quantile (0..=1) of the successful latencies; zero when there are none.
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.ok.clone();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (p * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// What a scenario prints: a few named numbers and its latency series.
struct Report {
    scenario: &'static str,
    facts: Vec<(&'static str, f64)>,
    series: Vec<Series>,
}

impl Report {
    fn table(&self) -> String {
        let mut out = format!("{}\n", self.scenario);
        for (name, value) in &self.facts {
            out.push_str(&format!("  {name:<22} {}\n", number(*value)));
        }
        out.push_str(&format!(
            "  {:<10} {:>9} {:>7} {:>10} {:>10} {:>10}\n",
            "series", "ok", "errors", "p50 ms", "p99 ms", "max ms"
        ));
        for s in &self.series {
            out.push_str(&format!(
                "  {:<10} {:>9} {:>7} {:>10.3} {:>10.3} {:>10.3}\n",
                s.name,
                s.ok.len(),
                s.errors,
                ms(s.percentile(0.50)),
                ms(s.percentile(0.99)),
                ms(s.percentile(1.0))
            ));
            if let Some(e) = &s.first_error {
                out.push_str(&format!("  first {} error: {e}\n", s.name));
            }
        }
        out
    }

    fn json(&self) -> String {
        let mut fields = vec![format!("\"scenario\":\"{}\"", self.scenario)];
        for (name, value) in &self.facts {
            fields.push(format!("\"{name}\":{}", number(*value)));
        }
        let series: Vec<String> = self
            .series
            .iter()
            .map(|s| {
                format!(
                    "{{\"name\":\"{}\",\"ok\":{},\"errors\":{},\"p50_ms\":{:.4},\"p99_ms\":{:.4},\"max_ms\":{:.4}}}",
                    s.name,
                    s.ok.len(),
                    s.errors,
                    ms(s.percentile(0.50)),
                    ms(s.percentile(0.99)),
                    ms(s.percentile(1.0))
                )
            })
            .collect();
        fields.push(format!("\"series\":[{}]", series.join(",")));
        format!("{{{}}}", fields.join(","))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value:.2}")
    }
}

/// A prefix making this run's ids distinct from any other run's.
fn run_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("b{}-{}", std::process::id(), nanos.subsec_nanos())
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// Sequential hand-offs: the receiver's GET is written, then the POST; two latencies each.
fn link_latency(options: &Options) -> Result<Report, String> {
    let target = &options.target;
    let run = run_id();
    let background_run = format!("{run}-bg");
    let background = park_receivers(
        target,
        move |j| format!("/link/{background_run}-{j}"),
        options.parked_background,
        options.concurrency.unwrap_or(32),
    )?;
    wait_parked(target, options.parked_background);
    let cpu = CpuMeter::start(options.pid)?;
    let (go_tx, go_rx) = bounded::<usize>(1);
    let (sent_tx, sent_rx) = bounded::<()>(1);
    let (done_tx, done_rx) = bounded::<Series>(1);
    let receiver_target = target.clone();
    let receiver_run = run.clone();
    let receiver = thread::spawn(move || {
        let mut series = Series::named("receiver");
        while let Ok(i) = go_rx.recv() {
            let started = Instant::now();
            let stream = receiver_target.open("GET", &format!("/link/{receiver_run}-{i}"), b"");
            let _ = sent_tx.send(());
            series.record(
                started,
                stream.and_then(|mut s| expect_200("receiver", read_status(&mut s))),
            );
        }
        let _ = done_tx.send(series);
    });
    let mut sender = Series::named("sender");
    let wait = target.timeout * 2;
    for i in 0..options.count {
        go_tx.send(i).map_err(|_| "receiver thread ended")?;
        sent_rx.recv_timeout(wait).map_err(|_| "receiver did not send its GET")?;
        let started = Instant::now();
        let status = target.call("POST", &format!("/link/{run}-{i}"), b"bench-token");
        sender.record(started, expect_200("sender", status));
    }
    drop(go_tx);
    let receiver_series = done_rx.recv_timeout(wait).map_err(|_| "receiver thread hung")?;
    let _ = receiver.join();
    let mut facts = vec![
        ("hand_offs", options.count as f64),
        ("parked_background", options.parked_background as f64),
    ];
    cpu.finish(sender.ok.len(), &mut facts)?;
    drop(background);
    Ok(Report { scenario: "link-latency", facts, series: vec![sender, receiver_series] })
}

/// `threads` threads each run `one(thread, k)` until `duration` is over; a run counts its latency.
fn for_duration(
    options: &Options,
    name: &'static str,
    one: impl Fn(&Target, &str) -> Result<(), String> + Send + Sync + 'static,
) -> (Series, f64) {
    let threads = options.concurrency.unwrap_or(1).max(1);
    let one = Arc::new(one);
    let run = run_id();
    let deadline = Instant::now() + options.duration;
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (one, target, run) = (Arc::clone(&one), options.target.clone(), run.clone());
            thread::spawn(move || {
                let mut series = Series::named(name);
                let mut k = 0u64;
                while Instant::now() < deadline {
                    let at = Instant::now();
                    series.record(at, one(&target, &format!("{run}-{t}-{k}")));
                    k += 1;
                }
                series
            })
        })
        .collect();
    let mut all = Series::named(name);
    for handle in handles {
        if let Ok(series) = handle.join() {
            all.merge(series);
        }
    }
    (all, started.elapsed().as_secs_f64())
}

/// C concurrent pairs, each: receiver GET written, then sender POST; both answers read.
fn link_throughput(options: &Options) -> Result<Report, String> {
    let cpu = CpuMeter::start(options.pid)?;
    let (series, seconds) = for_duration(options, "hand-off", |target, id| {
        let path = format!("/link/{id}");
        let receiver = target.open("GET", &path, b"")?;
        let sender = target.open("POST", &path, b"bench-token")?;
        hand_off(receiver, sender, "receiver")
    });
    closed_loop_report(
        options,
        cpu,
        "link-throughput",
        ["hand_offs", "hand_offs_per_sec"],
        series,
        seconds,
    )
}

/// C concurrent Pubky flows: a GET that waits, the POST, the GET's answer, the DELETE.
fn inbox_flow(options: &Options) -> Result<Report, String> {
    let cpu = CpuMeter::start(options.pid)?;
    let (series, seconds) = for_duration(options, "flow", |target, id| {
        let path = format!("/inbox/{id}");
        let mut poll = target.open("GET", &path, b"")?;
        expect_200("POST", target.call("POST", &path, b"bench-token"))?;
        expect_200("GET", read_status(&mut poll))?;
        expect_200("DELETE", target.call("DELETE", &path, b""))
    });
    closed_loop_report(options, cpu, "inbox-flow", ["flows", "flows_per_sec"], series, seconds)
}

/// The report of a closed-loop scenario: its concurrency and length, the operations done and
/// their rate (under the names `counted`), and the relay's CPU per operation.
fn closed_loop_report(
    options: &Options,
    cpu: CpuMeter,
    scenario: &'static str,
    counted: [&'static str; 2],
    series: Series,
    seconds: f64,
) -> Result<Report, String> {
    let ops = series.ok.len();
    let mut facts = vec![
        ("concurrency", options.concurrency.unwrap_or(1) as f64),
        ("seconds", seconds),
        (counted[0], ops as f64),
        (counted[1], ops as f64 / seconds),
    ];
    cpu.finish(ops, &mut facts)?;
    Ok(Report { scenario, facts, series: vec![series] })
}

/// N receivers parked on distinct ids; the relay's footprint; then the time to serve them all.
fn park(options: &Options) -> Result<Report, String> {
    let target = &options.target;
    let n = options.count;
    let senders = options.concurrency.unwrap_or(32).max(1);
    let run = run_id();
    let protocol = if options.inbox { "/inbox" } else { "/link" };
    let mut facts = vec![("parked", n as f64)];
    let before = options.pid.map(proc_stats).transpose()?;
    let started = Instant::now();
    let parked_run = run.clone();
    let receivers =
        park_receivers(target, move |j| format!("{protocol}/{parked_run}-{j}"), n, senders)?;
    facts.push(("park_seconds", started.elapsed().as_secs_f64()));
    let seen = wait_parked(target, n);
    facts.push(("relay_reports_parked", seen.map_or(-1.0, |p| p as f64)));
    if let (Some(pid), Some(before)) = (options.pid, before) {
        // The relay's registry settles (probes, wheel) for a moment before its RSS is read.
        thread::sleep(Duration::from_millis(500));
        let after = proc_stats(pid)?;
        facts.push(("rss_kib_before", before.rss_kib as f64));
        facts.push(("rss_kib_parked", after.rss_kib as f64));
        facts.push((
            "rss_bytes_per_parked",
            (after.rss_kib.saturating_sub(before.rss_kib) * 1024) as f64 / n.max(1) as f64,
        ));
        facts.push(("threads_before", before.threads as f64));
        facts.push(("threads_parked", after.threads as f64));
        facts.push(("fds_before", before.fds as f64));
        facts.push(("fds_parked", after.fds as f64));
    }
    // Serve: each receiver's own reader is the thread that sent its POST, right after it.
    let started = Instant::now();
    let chunks = split(receivers, senders);
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (target, run) = (target.clone(), run.clone());
            thread::spawn(move || {
                let mut series = Series::named("serve");
                for (j, receiver) in chunk {
                    let at = Instant::now();
                    let path = format!("{protocol}/{run}-{j}");
                    let result = target
                        .open("POST", &path, b"bench-token")
                        .and_then(|sender| hand_off(receiver, sender, "receiver"));
                    series.record(at, result);
                }
                series
            })
        })
        .collect();
    let mut served = Series::named("serve");
    for handle in handles {
        if let Ok(series) = handle.join() {
            served.merge(series);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    facts.push(("serve_seconds", seconds));
    facts.push(("served", served.ok.len() as f64));
    facts.push(("served_per_sec", served.ok.len() as f64 / seconds));
    let scenario = if options.inbox { "park-inbox" } else { "park" };
    Ok(Report { scenario, facts, series: vec![served] })
}

/// Opens `n` receivers (`GET path(j)`) from `threads` threads and keeps them open.
fn park_receivers(
    target: &Target,
    path: impl Fn(usize) -> String + Send + Sync + 'static,
    n: usize,
    threads: usize,
) -> Result<Vec<(usize, TcpStream)>, String> {
    let threads = threads.clamp(1, n.max(1));
    let next = Arc::new(AtomicUsize::new(0));
    let path = Arc::new(path);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (target, path, next) = (target.clone(), Arc::clone(&path), Arc::clone(&next));
            thread::spawn(move || -> Result<Vec<(usize, TcpStream)>, String> {
                let mut mine = Vec::new();
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= n {
                        return Ok(mine);
                    }
                    mine.push((j, target.open("GET", &path(j), b"")?));
                }
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for handle in handles {
        all.extend(handle.join().map_err(|_| "a parking thread panicked")??);
    }
    all.sort_unstable_by_key(|(j, _)| *j);
    Ok(all)
}

/// Rounds of `-n` readers waiting on a fresh `/mcast` channel, answered by one POST, for `-d`
/// (at least one round); each reader's latency is from the POST to its whole answer.
fn mcast_fanout(options: &Options) -> Result<Report, String> {
    let target = &options.target;
    let (readers, threads) = (options.count.max(1), options.concurrency.unwrap_or(32).max(1));
    let run = run_id();
    let cpu = CpuMeter::start(options.pid)?;
    let deadline = Instant::now() + options.duration;
    let (mut answers, mut rounds, mut fanning) = (Series::named("reader"), 0, Duration::ZERO);
    while rounds == 0 || Instant::now() < deadline {
        let path = format!("/mcast/{run}-{rounds}");
        let waiting_path = path.clone();
        let waiting = park_receivers(target, move |_| waiting_path.clone(), readers, threads)?;
        wait_parked(target, readers);
        let posted = Instant::now();
        expect_200("POST", target.call("POST", &path, b"bench-token"))?;
        let handles: Vec<_> = split(waiting, threads)
            .into_iter()
            .map(|chunk| {
                thread::spawn(move || {
                    let mut series = Series::named("reader");
                    for (_, mut reader) in chunk {
                        series.record(posted, expect_200("reader", read_status(&mut reader)));
                    }
                    series
                })
            })
            .collect();
        for handle in handles {
            answers.merge(handle.join().map_err(|_| "a reading thread panicked")?);
        }
        fanning += posted.elapsed();
        rounds += 1;
    }
    let answered = answers.ok.len();
    let mut facts = vec![
        ("readers", readers as f64),
        ("rounds", rounds as f64),
        ("answered", answered as f64),
        ("answered_per_sec", answered as f64 / fanning.as_secs_f64()),
    ];
    cpu.finish(answered, &mut facts)?;
    Ok(Report { scenario: "mcast-fanout", facts, series: vec![answers] })
}

/// Polls `/health` until it reports `n` parked requests (up to 60 s). `None` if the relay has
/// no such count (another relay): then it only waits a second.
fn wait_parked(target: &Target, n: usize) -> Option<u64> {
    if n == 0 {
        return Some(0);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = health_parked(target);
        match last {
            None => {
                thread::sleep(Duration::from_secs(1));
                return None;
            }
            Some(p) if p >= n as u64 => return last,
            Some(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
    last
}

fn health_parked(target: &Target) -> Option<u64> {
    let mut stream = target.open("GET", "/health", b"").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let at = text.find("\"parked\":")? + "\"parked\":".len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn split<T>(items: Vec<T>, parts: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..parts).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        out[i % parts].push(item);
    }
    out
}

/// The relay's CPU time (utime + stime of all its threads) over a run, when its pid is known.
struct CpuMeter {
    pid: Option<u32>,
    before: Duration,
}

impl CpuMeter {
    fn start(pid: Option<u32>) -> Result<CpuMeter, String> {
        let before = pid.map(cpu_time).transpose()?.unwrap_or_default();
        Ok(CpuMeter { pid, before })
    }

    /// Adds `relay_cpu_ms` and `relay_cpu_us_per_op` (per successful hand-off or flow).
    fn finish(self, ops: usize, facts: &mut Vec<(&'static str, f64)>) -> Result<(), String> {
        let Some(pid) = self.pid else { return Ok(()) };
        let used = cpu_time(pid)?.saturating_sub(self.before);
        facts.push(("relay_cpu_ms", used.as_secs_f64() * 1e3));
        facts.push(("relay_cpu_us_per_op", used.as_secs_f64() * 1e6 / ops.max(1) as f64));
        Ok(())
    }
}

/// `/proc` counts CPU time in clock ticks of `USER_HZ`, which Linux fixes at 100 a second for
/// user space on every architecture it runs handoff on (std cannot ask `sysconf`).
const USER_HZ: u64 = 100;

/// utime + stime of a whole process (every thread, living or exited) from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    // Then field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
    let ticks = fields.get(11).zip(fields.get(12)).map(|(u, s)| u + s);
    let ticks = ticks.ok_or_else(|| format!("/proc/{pid}/stat: too few fields"))?;
    Ok(Duration::from_millis(ticks * 1000 / USER_HZ))
}

/// What /proc says about a process.
#[derive(Clone, Copy)]
struct ProcStats {
    rss_kib: u64,
    threads: u64,
    fds: u64,
}

fn proc_stats(pid: u32) -> Result<ProcStats, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))?
        .count() as u64;
    Ok(ProcStats { rss_kib: field("VmRSS:"), threads: field("Threads:"), fds })
}
