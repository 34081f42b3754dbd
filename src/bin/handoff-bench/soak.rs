//! `soak`: mixed load for a long time while the relay's footprint is sampled (`make soak`).
//!
//! `-c` threads each run one kind of client in a loop until `-d` is over (at most `--rate`
//! operations a second each, when given): `/link` hand-offs, Pubky `/inbox` flows, receivers
//! that leave before the sender comes, receivers that read a 60,000-byte message slowly, and
//! `/link` and `/inbox` waits that nobody answers (408 after `--wait`, which must match the
//! relay's `--link-timeout` and `--inbox-timeout`). Every response is checked against the one
//! status its step expects; anything else is *unexpected*.
//!
//! Every `--sample` the relay's RSS, descriptors and threads (`/proc/PID`) are printed. It passes
//! when RSS after `--warmup` stays within `--rss-tolerance` (±5 %) of its first sample then, the
//! descriptors and threads are back to their baseline once the load stopped, and nothing
//! unexpected happened. A leak shows as RSS that keeps growing, or descriptors left behind.
//!
//! The flat-RSS verdict needs a steady load: an acknowledged `/inbox` message stays until its
//! TTL (protocol §3), so the relay rightly holds rate × TTL of them, and a load that runs as fast
//! as it can drifts with the machine (a run that sped up 25 % held 25 % more). `make soak` paces
//! its threads with `--rate`, and warms up past the one step a steady load still makes: a std
//! `HashMap` that keeps N entries while they turn over doubles once, when its deleted slots have
//! used up its spare room, and keeps that size (`benches/soak.sh` says when).

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{hand_off, proc_stats, read_status, run_id, Options, ProcStats, Target};

/// Longest wait for the relay's descriptors and threads to return to baseline after the load.
const SETTLE: Duration = Duration::from_secs(10);

/// The body a slow reader receives: near the relay's default `--max-body` (64K).
const SLOW_BODY: usize = 60_000;

/// One kind of client; thread `t` runs `KINDS[t % KINDS.len()]`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Receiver GET, sender POST: both 200.
    LinkHandOff,
    /// GET that waits, POST, the GET's 200, DELETE: all 200.
    InboxFlow,
    /// A receiver parks and leaves; then a second receiver and a sender pair up on the same id:
    /// the message must reach the second one (200, 200).
    ReceiverLeaves,
    /// A receiver reads a 60,000-byte message in 1 KiB pieces with a pause between: 200 and
    /// every byte.
    SlowReader,
    /// A `/link` receiver nobody sends to: 408.
    LinkTimeout,
    /// An `/inbox` GET nobody posts to: 408.
    InboxTimeout,
}

const KINDS: [Kind; 6] = [
    Kind::LinkHandOff,
    Kind::InboxFlow,
    Kind::ReceiverLeaves,
    Kind::SlowReader,
    Kind::LinkTimeout,
    Kind::InboxTimeout,
];

/// What the load threads share with the sampler.
#[derive(Default)]
struct Tally {
    ops: AtomicUsize,
    unexpected: AtomicUsize,
    /// The first few unexpected outcomes, for the report.
    examples: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, kind: Kind, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => {
                self.ops.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.unexpected.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut examples) = self.examples.lock() {
                    if examples.len() < 5 {
                        examples.push(format!("{kind:?}: {e}"));
                    }
                }
            }
        }
    }
}

/// Runs the soak and prints its table and verdict; exit 1 if it did not pass.
pub(super) fn run(options: &Options) -> ExitCode {
    match soak(options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("handoff-bench soak: {e}");
            ExitCode::FAILURE
        }
    }
}

fn soak(options: &Options) -> Result<bool, String> {
    let pid = options.pid.ok_or("soak needs the relay's --pid")?;
    let threads = options.concurrency.unwrap_or(12).max(1);
    let baseline = proc_stats(pid)?;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let run = run_id();
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let kind = KINDS[t % KINDS.len()];
            let (target, run) = (options.target.clone(), format!("{run}-{t}"));
            let (tally, stop, wait) = (Arc::clone(&tally), Arc::clone(&stop), options.wait);
            let pace = (options.rate > 0)
                .then(|| Duration::from_nanos(1_000_000_000 / options.rate as u64));
            thread::spawn(move || {
                let mut k = 0u64;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    tally.record(kind, one(&target, kind, &format!("{run}-{k}"), wait));
                    k += 1;
                    if let Some(pace) = pace {
                        // One that ran late starts the next at once, with no burst to catch up.
                        next = (next + pace).max(Instant::now());
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                }
            })
        })
        .collect();

    println!("soak");
    let rate = match options.rate {
        0 => "as fast as each can".to_string(),
        n => format!("at most {n} operations/s each"),
    };
    println!(
        "  threads {threads} ({rate}), duration {} s, kinds {KINDS:?}",
        options.duration.as_secs()
    );
    println!(
        "  {:>7} {:>10} {:>6} {:>8} {:>10} {:>11}",
        "t s", "RSS KiB", "fds", "threads", "ops", "unexpected"
    );
    let row = |label: &str, stats: &ProcStats| {
        println!(
            "  {label:>7} {:>10} {:>6} {:>8} {:>10} {:>11}",
            stats.rss_kib,
            stats.fds,
            stats.threads,
            tally.ops.load(Ordering::Relaxed),
            tally.unexpected.load(Ordering::Relaxed)
        );
    };
    row("base", &baseline);
    let deadline = started + options.duration;
    let mut samples: Vec<(Duration, ProcStats)> = Vec::new();
    let mut next = started + options.sample;
    while next <= deadline {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        let stats = proc_stats(pid)?;
        let at = next - started;
        row(&format!("{:.1}", at.as_secs_f64()), &stats);
        samples.push((at, stats));
        next += options.sample;
    }
    thread::sleep(deadline.saturating_duration_since(Instant::now()));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    // The relay closes its side of each connection a moment after the client's last byte.
    let settle_until = Instant::now() + SETTLE;
    let mut end = proc_stats(pid)?;
    while (end.fds > baseline.fds || end.threads > baseline.threads)
        && Instant::now() < settle_until
    {
        thread::sleep(Duration::from_millis(100));
        end = proc_stats(pid)?;
    }
    row("end", &end);

    let after_warmup: Vec<u64> =
        samples.iter().filter(|(at, _)| *at >= options.warmup).map(|(_, s)| s.rss_kib).collect();
    let mut pass = true;
    match after_warmup.first() {
        Some(&first) => {
            let drift = |rss: u64| (rss as f64 - first as f64) / first.max(1) as f64;
            let (low, high) = after_warmup
                .iter()
                .fold((0.0f64, 0.0f64), |(lo, hi), &rss| (lo.min(drift(rss)), hi.max(drift(rss))));
            let last = after_warmup.last().copied().unwrap_or(first);
            let tolerance = options.rss_tolerance / 100.0;
            let ok = low >= -tolerance && high <= tolerance;
            pass &= ok;
            println!(
                "  RSS after warm-up ({} samples from {} KiB): {:+.1} % to {:+.1} %, last {:+.1} % (±{} % allowed): {}",
                after_warmup.len(),
                first,
                low * 100.0,
                high * 100.0,
                drift(last) * 100.0,
                options.rss_tolerance,
                verdict(ok)
            );
        }
        None => {
            pass = false;
            println!("  RSS after warm-up: no sample after the {:?} warm-up: FAIL", options.warmup);
        }
    }
    let fds_ok = end.fds == baseline.fds && end.threads == baseline.threads;
    pass &= fds_ok;
    println!(
        "  descriptors {} -> {}, threads {} -> {}: {}",
        baseline.fds,
        end.fds,
        baseline.threads,
        end.threads,
        verdict(fds_ok)
    );
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    pass &= unexpected == 0;
    println!(
        "  operations {} as expected, {unexpected} unexpected: {}",
        tally.ops.load(Ordering::Relaxed),
        verdict(unexpected == 0)
    );
    if let Ok(examples) = tally.examples.lock() {
        for example in examples.iter() {
            println!("  unexpected: {example}");
        }
    }
    println!("  soak: {}", verdict(pass));
    Ok(pass)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "pass"
    } else {
        "FAIL"
    }
}

/// One operation of `kind` on channel `id`: `Ok` when every response had its expected status.
fn one(target: &Target, kind: Kind, id: &str, wait: Duration) -> Result<(), String> {
    let expect = |what: &str, want: u16, got: Result<u16, String>| match got? {
        status if status == want => Ok(()),
        status => Err(format!("{what}: status {status}, expected {want}")),
    };
    let link = format!("/link/{id}");
    let inbox = format!("/inbox/{id}");
    match kind {
        Kind::LinkHandOff => {
            let receiver = target.open("GET", &link, b"")?;
            let sender = target.open("POST", &link, b"soak-token")?;
            hand_off(receiver, sender, "GET")
        }
        Kind::InboxFlow => {
            let mut poll = target.open("GET", &inbox, b"")?;
            expect("POST", 200, target.call("POST", &inbox, b"soak-token"))?;
            expect("GET", 200, read_status(&mut poll))?;
            expect("DELETE", 200, target.call("DELETE", &inbox, b""))
        }
        Kind::ReceiverLeaves => {
            let leaving = target.open("GET", &link, b"")?;
            // Long enough for the relay to park it most of the time; either way it must not
            // take the message below.
            thread::sleep(Duration::from_millis(20));
            drop(leaving);
            thread::sleep(Duration::from_millis(20));
            let receiver = target.open("GET", &link, b"")?;
            let sender = target.open("POST", &link, b"soak-token")?;
            hand_off(receiver, sender, "GET after one left")
        }
        Kind::SlowReader => {
            let mut receiver = target.open("GET", &link, b"")?;
            let body = vec![b's'; SLOW_BODY];
            let mut sender = target.open("POST", &link, &body)?;
            let received = read_slowly(&mut receiver);
            drop(receiver);
            expect("POST", 200, read_status(&mut sender))?;
            let (status, body_len) = received?;
            expect("slow GET", 200, Ok(status))?;
            match body_len {
                SLOW_BODY => Ok(()),
                n => Err(format!("slow GET: {n} body bytes, expected {SLOW_BODY}")),
            }
        }
        Kind::LinkTimeout => expect("unanswered /link GET", 408, wait_call(target, &link, wait)),
        Kind::InboxTimeout => expect("unanswered /inbox GET", 408, wait_call(target, &inbox, wait)),
    }
}

/// A GET that is meant to wait `wait` for nothing: the per-request timeout must outlast it.
fn wait_call(target: &Target, path: &str, wait: Duration) -> Result<u16, String> {
    let patient = Target { timeout: target.timeout.max(wait * 2), ..target.clone() };
    patient.call("GET", path, b"")
}

/// Reads a response 1 KiB at a time with a millisecond between reads: its status and body length.
fn read_slowly(stream: &mut TcpStream) -> Result<(u16, usize), String> {
    let mut raw = Vec::with_capacity(SLOW_BODY + 1024);
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if raw.len() < 1 << 20 => raw.extend_from_slice(&buf[..n]),
            Ok(_) => return Err("response over 1 MiB".into()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("slow read: {e}")),
        }
        thread::sleep(Duration::from_millis(1));
    }
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of head")? + 4;
    let status = raw
        .split(|&b| b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok()?.parse().ok())
        .ok_or("no status line")?;
    Ok((status, raw.len() - head_end))
}
