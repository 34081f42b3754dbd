//! Scale without sockets (`make bench-scale`): the registry core and its timer wheel with 10^4,
//! 10^5 and 10^6 parked fake connections, or as many stored `/inbox` messages, on a fake clock.
//!
//! It answers what the descriptor limit (20,000 here) keeps the socket benchmarks from showing:
//! what one more entry costs in memory, and whether [`Registry::handle`] and a tick cost the
//! same at every size. It is an `#[ignore]`d test of the binary crate, not a `benches/` target,
//! because the crate has no library to link and a bench must see its private modules; it reads
//! nothing of a [`Reply`] but how many there are, so it outlives changes to what a reply holds.
//! Memory is the heap the counting allocator (`--features count-allocs`) sees live, else RSS.

use std::time::{Duration, Instant};

use crate::limits::Reservation;
use crate::registry::{Action, ConnId, Event, Registry, Reply, Request, Settings, TICK};
use crate::wheel::TimerWheel;

/// Sizes of each run.
const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// Timed events per kind at each size.
const SAMPLES: usize = 20_000;

/// Timed ticks at each size: one turn of the registry's wheel (1,024 slots).
const TICKS: usize = 1024;

/// The fake time over which the entries arrive, so their deadlines spread over the wheel as
/// real arrivals would, instead of all landing in one slot.
const ARRIVALS_OVER: Duration = Duration::from_secs(60);

/// A message as Pubky's SDK posts it: an encrypted token of about this size.
const BODY: usize = 128;

fn settings() -> Settings {
    Settings {
        // The defaults: no entry expires during a run.
        link_timeout: Duration::from_secs(600),
        inbox_timeout: Duration::from_secs(25),
        inbox_ttl: Duration::from_secs(300),
        max_parked: None,
        max_parked_per_ip: None,
        rate_per_id: None,
        keeps_messages: false,
        mcast_retain: crate::config::DEFAULT_MCAST_RETAIN,
        mcast_idle: Duration::from_secs(300),
        single_use: crate::config::SingleUse::default(),
    }
}

/// Ids as clients make them: 43 characters, like an encoded 32-byte key.
fn id(n: usize) -> crate::routes::ChannelId {
    crate::routes::ChannelId::copy_of(format!("{n:0>43}").as_bytes())
}

fn fake(n: usize, action: Action, body: &[u8]) -> Request {
    Request {
        id: id(n),
        action,
        client: ([10, 0, (n >> 8) as u8, n as u8], 40_000).into(),
        arrived_ms: 1_700_000_000_000,
        query: String::new(),
        wsecret: None,
        body: crate::payload::Payload::new(Some("application/octet-stream"), body),
        method: crate::registry::LinkMethod::Post,
        seq: None,
        reservation: Reservation::default(),
    }
}

/// Bytes in use: the live heap under the counting allocator, else this process's RSS.
fn memory() -> (usize, &'static str) {
    #[cfg(feature = "count-allocs")]
    return (crate::sys::counting::allocations().live, "live heap");
    #[cfg(not(feature = "count-allocs"))]
    {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
            .unwrap_or(0);
        (kib * 1024, "RSS")
    }
}

/// Nanoseconds per call, summarised.
struct Timings(Vec<u64>);

impl Timings {
    fn new() -> Timings {
        Timings(Vec::with_capacity(SAMPLES))
    }

    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = f();
        self.0.push(started.elapsed().as_nanos() as u64);
        result
    }

    fn summary(&mut self) -> String {
        self.0.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len().max(1));
            self.0.get(rank - 1).copied().unwrap_or(0) as f64 / 1e3
        };
        format!("{:>7.2} {:>7.2} {:>8.1}", at(0.5), at(0.99), at(1.0))
    }
}

/// The registry on a fake clock.
struct Sim {
    registry: Registry,
    now: Instant,
    next_conn: ConnId,
    out: Vec<Reply>,
    replies: usize,
}

impl Sim {
    fn new() -> Sim {
        let now = Instant::now();
        Sim {
            registry: Registry::new(settings(), now),
            now,
            next_conn: 1,
            out: Vec::new(),
            replies: 0,
        }
    }

    fn conn(&mut self) -> ConnId {
        self.next_conn += 1;
        self.next_conn
    }

    fn handle(&mut self, event: Event) {
        self.registry.handle(self.now, event, &mut self.out);
        self.replies += self.out.len();
        self.out.clear();
    }

    fn arrive(&mut self, conn: ConnId, request: Request) {
        self.handle(Event::Arrived { conn, request });
    }

    /// Moves the clock one tick and ticks.
    fn tick(&mut self) {
        self.now += TICK;
        self.handle(Event::Tick);
    }

    /// Fills the registry with `n` entries made by `add(i)`, over [`ARRIVALS_OVER`] of fake time.
    fn fill(&mut self, n: usize, mut add: impl FnMut(&mut Sim, usize)) {
        let per_tick = (n / (ARRIVALS_OVER.as_millis() / TICK.as_millis()) as usize).max(1);
        for i in 0..n {
            add(self, i);
            if i % per_tick == per_tick - 1 {
                self.tick();
            }
        }
    }

    /// One turn of the wheel, timed tick by tick.
    fn time_ticks(&mut self) -> Timings {
        let mut ticks = Timings::new();
        for _ in 0..TICKS {
            self.now += TICK;
            let mut out = std::mem::take(&mut self.out);
            ticks.time(|| self.registry.handle(self.now, Event::Tick, &mut out));
            self.replies += out.len();
            out.clear();
            self.out = out;
        }
        ticks
    }
}

/// `n` `/link` receivers parked on distinct ids; then, the size kept, a new receiver parks, a
/// sender comes for the oldest one and its write is confirmed, `SAMPLES` times, each timed.
fn parked_links(n: usize) {
    let mut sim = Sim::new();
    // The bench's own list of who is parked, allocated before the count starts.
    let mut receivers = std::collections::VecDeque::with_capacity(n + 1);
    let (before, what) = memory();
    sim.fill(n, |sim, i| {
        let conn = sim.conn();
        receivers.push_back((i, conn));
        sim.arrive(conn, fake(i, Action::LinkReceive, b""));
    });
    let per_entry = (memory().0 as f64 - before as f64) / n as f64;
    sim.replies = 0;
    assert_eq!(sim.registry.counts().parked, n, "every receiver parked");
    let (mut park, mut send, mut written) = (Timings::new(), Timings::new(), Timings::new());
    let body = vec![b'x'; BODY];
    for k in 0..SAMPLES {
        let (conn, i) = (sim.conn(), n + k);
        let request = fake(i, Action::LinkReceive, b"");
        park.time(|| sim.arrive(conn, request));
        receivers.push_back((i, conn));
        let Some((oldest, receiver)) = receivers.pop_front() else { break };
        let (sender, request) = (sim.conn(), fake(oldest, Action::LinkSend, &body));
        send.time(|| sim.arrive(sender, request));
        written.time(|| sim.handle(Event::DeliveryEnded { conn: receiver, taken: true }));
    }
    assert_eq!(sim.registry.counts().parked, n, "the size held while timing");
    let mut ticks = sim.time_ticks();
    println!(
        "  /link parked  {n:>9} {per_entry:>9.0} B ({what})  park {}  send {}  written {}  tick {}",
        park.summary(),
        send.summary(),
        written.summary(),
        ticks.summary()
    );
    assert_eq!(sim.replies, 2 * SAMPLES, "each pair answered both sides, no tick fired");
}

/// `n` `/inbox` messages stored on distinct ids; then POST (replacing one), GET and DELETE of
/// the same id, `SAMPLES` times each, timed.
fn stored_messages(n: usize) {
    let mut sim = Sim::new();
    let body = vec![b'x'; BODY];
    let (before, what) = memory();
    sim.fill(n, |sim, i| {
        let conn = sim.conn();
        sim.arrive(conn, fake(i, Action::InboxPost, &body));
    });
    let per_entry = (memory().0 as f64 - before as f64) / n as f64;
    sim.replies = 0;
    assert_eq!(sim.registry.counts().messages, n, "every message stored");
    let (mut post, mut get, mut delete) = (Timings::new(), Timings::new(), Timings::new());
    for k in 0..SAMPLES {
        let i = (k * 7919) % n;
        let (conn, request) = (sim.conn(), fake(i, Action::InboxPost, &body));
        post.time(|| sim.arrive(conn, request));
        let (conn, request) = (sim.conn(), fake(i, Action::InboxGet, b""));
        get.time(|| sim.arrive(conn, request));
        let (conn, request) = (sim.conn(), fake(i, Action::InboxDelete, b""));
        delete.time(|| sim.arrive(conn, request));
    }
    // Acknowledged messages stay until their TTL but no longer count as messages.
    assert_eq!(sim.registry.counts().inboxes, n, "the size held while timing");
    let mut ticks = sim.time_ticks();
    println!(
        "  /inbox stored {n:>9} {per_entry:>9.0} B ({what})  post {}  get {}  delete {}  tick {}",
        post.summary(),
        get.summary(),
        delete.summary(),
        ticks.summary()
    );
    assert_eq!(sim.replies, 3 * SAMPLES, "one reply to each request, no tick fired");
}

/// The wheel alone: `n` deadlines spread over ten minutes, then insert + cancel and a turn of
/// ticks, timed.
fn wheel(n: usize) {
    let (before, what) = memory();
    let start = Instant::now();
    let mut wheel = TimerWheel::new(start, TICK, 1024);
    let spread = |i: usize| start + Duration::from_millis(100 + (i as u64 * 7919) % 600_000);
    for i in 0..n {
        wheel.insert(spread(i), i);
    }
    let per_entry = (memory().0 as f64 - before as f64) / n as f64;
    let (mut insert, mut cancel, mut ticks) = (Timings::new(), Timings::new(), Timings::new());
    for k in 0..SAMPLES {
        let id = insert.time(|| wheel.insert(spread(n + k), n + k));
        cancel.time(|| wheel.cancel(id));
    }
    let mut expired = Vec::new();
    for t in 1..=TICKS as u32 {
        ticks.time(|| wheel.advance(start + TICK * t, &mut expired));
    }
    println!(
        "  wheel         {n:>9} {per_entry:>9.0} B ({what})  insert {}  cancel {}  tick {} ({} fired)",
        insert.summary(),
        cancel.summary(),
        ticks.summary(),
        expired.len()
    );
}

#[test]
#[ignore = "a benchmark of a few seconds and ~1 GB: make bench-scale"]
fn bench_scale() {
    println!("\nscale without sockets: µs per call as p50 p99 max; memory per entry");
    for n in SIZES {
        parked_links(n);
        stored_messages(n);
        wheel(n);
    }
}
