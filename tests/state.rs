//! `--state-file`: stored messages survive a restart (SIGTERM, and `kill -9` after a second, at
//! random moments of a workload), a torn journal, and a full disk.

mod common;

use common::tools::Tmpfs;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{get_request, json_number, now_ms, post_request, request, Relay, NO_CLIENT_LIMITS};

/// Size of a state file holding nothing: the magic line.
const EMPTY_STATE: u64 = "handoff-state 2\n".len() as u64;

fn kill(relay: &Relay, signal: &str) {
    let status = Command::new("kill")
        .args([format!("-{signal}"), relay.pid().to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// A fresh directory for one test's state file.
fn state_path(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("handoff-state-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("state")
}

/// Waits until the state file holds more than nothing (the periodic save happened).
fn wait_saved(path: &Path) {
    let started = Instant::now();
    while std::fs::metadata(path).map_or(true, |m| m.len() <= EMPTY_STATE) {
        assert!(started.elapsed() < Duration::from_secs(5), "the state file was not written");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the state file's bytes contain `needle` (a body saved by a later snapshot).
fn wait_holding(path: &Path, needle: &[u8]) {
    let started = Instant::now();
    loop {
        let data = std::fs::read(path).unwrap_or_default();
        if data.windows(needle.len()).any(|w| w == needle) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the state file was not refreshed");
        thread::sleep(Duration::from_millis(20));
    }
}

fn stop(mut relay: Relay) {
    kill(&relay, "TERM");
    let status = relay.wait_exit(Duration::from_secs(5)).expect("the relay did not exit");
    assert!(status.success(), "exit status {status}");
}

#[test]
fn inbox_and_link_messages_survive_a_sigterm_restart() {
    let path = state_path("term");
    let file = path.to_str().unwrap();
    let relay = Relay::start(&["--state-file", file]);
    let posted = relay.post("/inbox/x", b"inbox message", &[("Content-Type", "text/plain")]);
    assert_eq!(posted.status, 200);
    // A link sender with no receiver: its message stays deliverable, so the drain tells it the
    // message was kept (202), not to retry (protocol §7).
    let sender = relay.spawn_post("/link/y?k=v", b"link message", &[("Content-Type", "a/b")]);
    relay.wait_parked(1);
    stop(relay);
    let kept = sender.join().unwrap();
    assert_eq!(kept.status, 202, "{kept}");
    assert_eq!(kept.header("HttpRelay-Kept"), Some("1"), "{kept}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file is private");

    let relay = Relay::start(&["--state-file", file, "--peer-address", "show"]);
    let got = relay.get("/inbox/x");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"inbox message");
    assert_eq!(got.header("Content-Type"), Some("text/plain"));
    let got = relay.get("/link/y");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"link message");
    assert_eq!(got.header("Content-Type"), Some("a/b"));
    assert_eq!(got.header("HttpRelay-Method"), Some("POST"));
    assert_eq!(got.header("HttpRelay-Query"), Some("k=v"));
    assert_eq!(got.header("X-Real-IP"), Some("127.0.0.1"));
    // Delivered once: the link message is gone now.
    relay.wait_gauge("messages", 1);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn kill_9_loses_nothing_saved_a_second_before() {
    let path = state_path("kill");
    let file = path.to_str().unwrap();
    let mut relay = Relay::start(&["--state-file", file]);
    assert_eq!(relay.post("/inbox/x", b"survivor", &[]).status, 200);
    wait_saved(&path);
    // A change right after a save is written at most a second later.
    let posted = Instant::now();
    assert_eq!(relay.post("/inbox/z", b"second-one", &[]).status, 200);
    wait_holding(&path, b"second-one");
    assert!(posted.elapsed() < Duration::from_millis(1500), "{:?}", posted.elapsed());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the state file is private");
    kill(&relay, "KILL");
    relay.wait_exit(Duration::from_secs(5)).expect("the relay did not die");

    let relay = Relay::start(&["--state-file", file]);
    let got = relay.get("/inbox/x");
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"survivor");
    assert_eq!(relay.get("/inbox/z").body, b"second-one");
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_message_whose_ttl_ran_out_while_down_is_not_restored() {
    let path = state_path("ttl");
    let file = path.to_str().unwrap();
    let relay = Relay::start(&["--state-file", file, "--inbox-ttl", "1s"]);
    assert_eq!(relay.post("/inbox/x", b"short-lived", &[]).status, 200);
    stop(relay);
    thread::sleep(Duration::from_millis(1100));
    let relay = Relay::start(&["--state-file", file, "--inbox-ttl", "1s"]);
    relay.wait_log("restore", |line| {
        line.contains("restored 0 /inbox") && line.contains("1 expired")
    });
    assert_eq!(relay.get("/inbox/x/ack").status, 404);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_relay_starts_empty() {
    let path = state_path("corrupt");
    std::fs::write(&path, b"not a state file").unwrap();
    let relay = Relay::start(&["--state-file", path.to_str().unwrap()]);
    relay.wait_log("corrupt", |line| line.contains("corrupt") && line.contains("starting empty"));
    let aside = path.with_file_name("state.corrupt");
    assert_eq!(std::fs::read(aside).unwrap(), b"not a state file");
    assert_eq!(relay.post("/inbox/x", b"new", &[]).status, 200);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// A small random source (xorshift64); the crash test seeds it from the clock and prints the seed.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One exchange that may fail (the relay is killed meanwhile): the status and body, or `None`.
fn try_exchange(addr: SocketAddr, raw: &[u8], limit: Duration) -> Option<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(limit)).ok()?;
    stream.set_write_timeout(Some(limit)).ok()?;
    stream.write_all(raw).ok()?;
    read_answer(&mut stream)
}

/// Reads a whole response from `stream`: its status and body, or `None` if it does not come.
fn read_answer(stream: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status = std::str::from_utf8(raw.get(9..12)?).ok()?.parse().ok()?;
    Some((status, raw[end + 4..].to_vec()))
}

/// What an `/inbox` id holds.
#[derive(Clone, PartialEq, Eq)]
enum Held {
    Nothing,
    Stored(Vec<u8>),
    Acked,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Held::Nothing => write!(f, "nothing"),
            // The bodies start with the number of the request that stored them.
            Held::Stored(body) => {
                let number = body.split(|&b| b == b'-').next().unwrap_or_default();
                write!(f, "stored by #{} ({} bytes)", String::from_utf8_lossy(number), body.len())
            }
            Held::Acked => write!(f, "acked"),
        }
    }
}

/// An `/inbox` id's history since the last restart: the state then (certain), and each change
/// made since with the time its answer came (`None`: sent, never answered).
#[derive(Default)]
struct InboxHistory {
    changes: Vec<(Held, Option<Instant>)>,
}

/// A `/link` message left by a sender: when it was seen parked (`None`: sent, not seen yet),
/// and when its sender heard that a receiver took it (`Some(None)`: a receiver asked, the
/// sender heard nothing yet).
struct LinkSent {
    id: String,
    body: Vec<u8>,
    stored: Option<Instant>,
    taken: Option<Option<Instant>>,
}

/// What the workload did between two restarts.
struct Workload {
    inbox: Vec<InboxHistory>,
    link: Vec<LinkSent>,
}

const INBOX_IDS: usize = 40;

/// Runs a mixed workload on the relay at `addr` until `stop` or a failed request (the kill):
/// stores, replacements and acknowledgements on [`INBOX_IDS`] `/inbox` ids, `/link` messages left
/// by senders that stay connected, and some of them taken.
fn workload(
    addr: SocketAddr,
    rng: &mut XorShift,
    mut work: Workload,
    stop: &AtomicBool,
) -> Workload {
    let mut senders: Vec<(usize, TcpStream)> = Vec::new();
    let parked = |want: u64| {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            let (_, body) = try_exchange(addr, &get_request("/health"), Duration::from_secs(5))?;
            if json_number(&String::from_utf8_lossy(&body), "parked") == Some(want) {
                return Some(Instant::now());
            }
        }
        None
    };
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let slot = rng.below(INBOX_IDS as u64) as usize;
        let path = format!("/inbox/crash-{slot}");
        let limit = Duration::from_secs(5);
        match rng.below(20) {
            0..=8 => {
                let body = format!("{n}-{}", "x".repeat(rng.below(300) as usize)).into_bytes();
                let history = &mut work.inbox[slot];
                history.changes.push((Held::Stored(body.clone()), None));
                let answer = try_exchange(addr, &post_request(&path, &body, &[]), limit);
                let Some((200, _)) = answer else { break };
                history.changes.last_mut().unwrap().1 = Some(Instant::now());
            }
            9..=12 => {
                let history = &mut work.inbox[slot];
                let stored =
                    history.changes.last().is_some_and(|(h, _)| matches!(h, Held::Stored(_)));
                let answer = try_exchange(addr, &request("DELETE", &path, &[], b""), limit);
                if stored {
                    history.changes.push((Held::Acked, None));
                }
                let Some((status, _)) = answer else { break };
                if stored {
                    assert_eq!(status, 200, "DELETE of a stored message");
                    history.changes.last_mut().unwrap().1 = Some(Instant::now());
                }
            }
            13..=16 if senders.len() < 16 => {
                let id = format!("/link/crash-{n}");
                let body = format!("link {n}").into_bytes();
                let Ok(mut stream) = TcpStream::connect(addr) else { break };
                if stream.write_all(&post_request(&id, &body, &[])).is_err() {
                    break;
                }
                work.link.push(LinkSent { id, body, stored: None, taken: None });
                let Some(stored) = parked(senders.len() as u64 + 1) else { break };
                work.link.last_mut().unwrap().stored = Some(stored);
                senders.push((work.link.len() - 1, stream));
            }
            _ if !senders.is_empty() => {
                let (at, mut sender) =
                    senders.swap_remove(rng.below(senders.len() as u64) as usize);
                let sent = &mut work.link[at];
                sent.taken = Some(None);
                let answer = try_exchange(addr, &get_request(&sent.id), limit);
                let Some((200, body)) = answer else { break };
                assert_eq!(body, sent.body);
                sender.set_read_timeout(Some(limit)).unwrap();
                let Some((200, _)) = read_answer(&mut sender) else { break };
                sent.taken = Some(Some(Instant::now()));
            }
            _ => {}
        }
    }
    work
}

/// Checks what the restarted relay at `addr` holds against what the workload did before the
/// kill at `killed`: every change answered more than a second before it is there, and nothing
/// older than it is undone. Takes every `/link` message; returns the `/inbox` state found.
fn verify(relay: &Relay, work: Workload, killed: Instant) -> Vec<Held> {
    let addr = relay.addr();
    let durable = |at: &Option<Instant>| at.is_some_and(|at| at + Duration::from_secs(1) < killed);
    let limit = Duration::from_secs(5);
    let mut found = Vec::new();
    for (slot, history) in work.inbox.into_iter().enumerate() {
        let path = format!("/inbox/crash-{slot}");
        let got = match try_exchange(addr, &get_request(&format!("{path}/ack")), limit) {
            Some((404, _)) => Held::Nothing,
            Some((200, body)) if body == b"true" => Held::Acked,
            Some((200, body)) if body == b"false" => {
                let (status, body) = try_exchange(addr, &get_request(&path), limit).unwrap();
                assert_eq!(status, 200);
                Held::Stored(body)
            }
            other => panic!("{path}/ack answered {other:?}"),
        };
        // The first change is the state at the restart; the last durable one must be there, or
        // one made after it.
        let from = history.changes.iter().rposition(|(_, at)| durable(at)).unwrap_or(0);
        let allowed: Vec<&Held> = history.changes[from..].iter().map(|(held, _)| held).collect();
        assert!(allowed.contains(&&got), "{path}: found {got:?}, allowed {allowed:?}");
        found.push(got);
    }
    // Those taken for sure more than a second before the kill must not come back: nobody asks
    // for them, so one that did would stay held, and the count below would never be reached.
    // The others may be there or not: a receiver asks for each, and the answers are read as
    // they come; the rest stay parked until every message held is accounted for.
    let mut asked = Vec::new();
    for sent in work.link {
        match sent.taken {
            Some(at) if durable(&at) => {}
            None if durable(&sent.stored) => {
                let answer = try_exchange(addr, &get_request(&sent.id), limit);
                assert_eq!(answer, Some((200, sent.body)), "{} was stored and lost", sent.id);
            }
            _ => {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream.write_all(&get_request(&sent.id)).unwrap();
                stream.set_nonblocking(true).unwrap();
                asked.push(stream);
            }
        }
    }
    let bodies = found.iter().filter(|h| matches!(h, Held::Stored(_))).count() as u64;
    let started = Instant::now();
    loop {
        // An answer read to its end is closed, which confirms the delivery.
        asked.retain_mut(|stream| {
            let mut buf = [0; 4096];
            !matches!(stream.read(&mut buf), Ok(0))
        });
        let (_, health) = relay.health();
        if json_number(&health, "messages") == Some(bodies) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "want {bodies} messages: {health}");
    }
    found
}

/// SIGKILL at random moments of a mixed workload, 52 times, each time restarted on the same
/// state file: what was answered more than a second before the kill is there, with its content
/// and acknowledged state; nothing taken or acknowledged before that comes back.
#[test]
fn sigkill_at_random_moments_loses_nothing_a_second_old() {
    let path = state_path("crash");
    let file = path.to_str().unwrap();
    let args = [&NO_CLIENT_LIMITS[..], &["--state-file", file, "--link-timeout", "600s"]].concat();
    let seed = now_ms() | 1;
    eprintln!("seed {seed}");
    let mut rng = XorShift(seed);
    let mut state = vec![Held::Nothing; INBOX_IDS];
    let mut last: Option<(Workload, Instant)> = None;
    for round in 0..52 {
        let mut relay = Relay::start(&args);
        if let Some((work, killed)) = last.take() {
            state = verify(&relay, work, killed);
        }
        let inbox = state
            .iter()
            .map(|h| InboxHistory {
                changes: vec![(h.clone(), Some(Instant::now() - Duration::from_secs(3600)))],
            })
            .collect();
        let work = Workload { inbox, link: Vec::new() };
        let stop = Arc::new(AtomicBool::new(false));
        let addr = relay.addr();
        let mut thread_rng = XorShift(rng.below(u64::MAX) | 1);
        let thread_stop = Arc::clone(&stop);
        let runner = thread::spawn(move || workload(addr, &mut thread_rng, work, &thread_stop));
        thread::sleep(Duration::from_millis(150 + rng.below(1650)));
        let killed = Instant::now();
        kill(&relay, "KILL");
        stop.store(true, Ordering::SeqCst);
        relay.wait_exit(Duration::from_secs(5)).expect("the relay did not die");
        let work = runner.join().unwrap_or_else(|_| panic!("round {round}: the workload failed"));
        last = Some((work, killed));
    }
    let relay = Relay::start(&args);
    let (work, killed) = last.unwrap();
    verify(&relay, work, killed);
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// The length of the file at `path` once it has grown past `than` bytes.
fn wait_longer(path: &Path, than: u64) -> u64 {
    let started = Instant::now();
    loop {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len > than {
            return len;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "the state file stayed at {len} bytes");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A journal cut at every byte offset of its last record (a crash in the middle of a write)
/// restores what precedes it, and says once that the rest was ignored.
#[test]
fn a_journal_cut_anywhere_in_its_last_record_restores_what_precedes_it() {
    let path = state_path("torn");
    let file = path.to_str().unwrap();
    let mut relay = Relay::start(&["--state-file", file]);
    assert_eq!(relay.post("/inbox/a", b"durable", &[]).status, 200);
    wait_holding(&path, b"durable");
    let before = std::fs::metadata(&path).unwrap().len();
    // The acknowledgement is the last record.
    assert_eq!(relay.send(&request("DELETE", "/inbox/a", &[], b"")).status, 200);
    let after = wait_longer(&path, before);
    kill(&relay, "KILL");
    relay.wait_exit(Duration::from_secs(5)).expect("the relay did not die");
    let whole = std::fs::read(&path).unwrap();
    assert_eq!(whole.len() as u64, after);
    let cut_path = path.with_file_name("cut");
    let cut_file = cut_path.to_str().unwrap();
    for cut in before..=after {
        std::fs::write(&cut_path, &whole[..cut as usize]).unwrap();
        let relay = Relay::start(&["--state-file", cut_file]);
        let acked = relay.get("/inbox/a/ack");
        let torn = cut > before && cut < after;
        let want: &[u8] = if torn || cut == before { b"false" } else { b"true" };
        assert_eq!((acked.status, acked.body.as_slice()), (200, want), "cut at {cut}: {acked}");
        if want == b"false" {
            assert_eq!(relay.get("/inbox/a").body, b"durable", "cut at {cut}");
        }
        let reported = relay.logs().iter().filter(|l| l.contains("not a whole record")).count();
        assert_eq!(reported, usize::from(torn), "cut at {cut}: {:?}", relay.logs());
        stop(relay);
        // The start rewrote the file without the torn bytes.
        let rewritten = std::fs::read(&cut_path).unwrap();
        assert!(!rewritten.is_empty() && rewritten.len() as u64 <= after, "cut at {cut}");
    }
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// A full disk (a 256 KiB tmpfs, so root is needed to mount it; CI runs as root): the relay
/// serves on, counts and logs the failed writes, keeps what the file held, and writes again
/// once there is room.
#[test]
fn a_full_disk_costs_nothing_durable_and_writing_resumes() {
    let uid = Command::new("id").arg("-u").output().expect("cannot run id");
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("SKIPPED: mounting a small tmpfs to fill needs root (CI runs the tests as root)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("handoff-full-{}", std::process::id()));
    let tmpfs = Tmpfs::mount(dir, "256k");
    let path = tmpfs.0.join("state");
    let file = path.to_str().unwrap();
    let mut relay = Relay::start(&["--state-file", file]);
    assert_eq!(relay.post("/inbox/keep", b"durable", &[]).status, 200);
    wait_holding(&path, b"durable");

    let filler = tmpfs.fill();
    let big = vec![b'b'; 16 * 1024];
    assert_eq!(relay.post("/inbox/big", &big, &[]).status, 200, "the relay serves on");
    let started = Instant::now();
    loop {
        let (_, health) = relay.health();
        if json_number(&health, "state_write_failures").is_some_and(|n| n >= 1) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "no failure counted: {health}");
        thread::sleep(Duration::from_millis(20));
    }
    relay.wait_log("failure", |line| line.contains("cannot write the state file"));
    let metrics = relay.get("/metrics").text();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("handoff_state_write_failures_total "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(counted.is_some_and(|n| n >= 1), "{metrics}");
    assert_eq!(relay.get("/inbox/keep").body, b"durable");
    let held = std::fs::read(&path).unwrap();
    assert!(held.windows(7).any(|w| w == b"durable"), "the durable message was lost");
    assert!(!tmpfs.0.join("state.tmp").exists(), "PATH.tmp left behind on a full disk");

    // Room again: the whole state is written within a second or so.
    std::fs::remove_file(&filler).unwrap();
    wait_holding(&path, &big);
    relay.wait_log("recovery", |line| {
        line.contains("writing the state file") && line.contains("again")
    });
    kill(&relay, "KILL");
    relay.wait_exit(Duration::from_secs(5)).expect("the relay did not die");
    let relay = Relay::start(&["--state-file", file]);
    assert_eq!(relay.get("/inbox/keep").body, b"durable");
    assert_eq!(relay.get("/inbox/big").body, big);
    stop(relay);
}

/// The journal is rewritten whole once it passes twice the live state plus 64 KiB: replacing one
/// 4 KiB message 60 times (240 KiB of records for 4 KiB live) leaves a file of about one message.
#[test]
fn a_journal_past_twice_the_live_state_is_compacted() {
    let path = state_path("compact");
    let args = [&NO_CLIENT_LIMITS[..], &["--state-file", path.to_str().unwrap()]].concat();
    let relay = Relay::start(&args);
    for n in 0..60 {
        let body = format!("{n:04}{}", "c".repeat(4096)).into_bytes();
        assert_eq!(relay.post("/inbox/again", &body, &[]).status, 200);
    }
    let last = format!("0059{}", "c".repeat(4096)).into_bytes();
    let started = Instant::now();
    loop {
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        let data = std::fs::read(&path).unwrap_or_default();
        if len < 8192 && data.windows(last.len()).any(|w| w == last) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not compacted: {len} bytes");
        thread::sleep(Duration::from_millis(20));
    }
    stop(relay);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}
