//! What each kind of held state is charged, and that every path gives it back (protocol §4.3): registry scenarios whose requests carry real charges on one
//! budget, checked against that budget after every step.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::limits::{MemoryBudget, ENTRY_COST};

const TIMEOUT: Duration = Duration::from_secs(10);
const INBOX_TTL: Duration = Duration::from_secs(300);
const MCAST_RETAIN: usize = 10;
const MCAST_IDLE: Duration = Duration::from_secs(60);

/// A registry on a fake clock whose requests are charged to `budget` as they would be in the
/// relay, but from an empty reservation: every byte held is what the registry itself charged.
struct Charges {
    registry: Registry,
    budget: Arc<MemoryBudget>,
    start: Instant,
    now: Instant,
    out: Vec<Reply>,
}

impl Charges {
    fn new(keeps_messages: bool) -> Charges {
        Charges::with(keeps_messages, false)
    }

    /// With `--single-use on` (at the default retention and cap) when `single_use`.
    fn with(keeps_messages: bool, single_use: bool) -> Charges {
        let start = Instant::now();
        let settings = Settings {
            link_timeout: TIMEOUT,
            inbox_timeout: TIMEOUT,
            inbox_ttl: INBOX_TTL,
            max_parked: None,
            max_parked_per_ip: None,
            rate_per_id: None,
            keeps_messages,
            mcast_retain: MCAST_RETAIN,
            mcast_idle: MCAST_IDLE,
            single_use: crate::config::SingleUse { on: single_use, ..Default::default() },
        };
        let registry = Registry::new(settings, start);
        let budget = MemoryBudget::new(None);
        Charges { registry, budget, start, now: start, out: Vec::new() }
    }

    fn send(&mut self, event: Event) {
        self.out.clear();
        self.registry.handle(self.now, event, &mut self.out);
        self.registry.check_counts();
    }

    fn arrive(&mut self, conn: ConnId, id: &str, action: Action, query: &str, body: &str) {
        let request = self.request(id, action, query, body);
        self.send(Event::Arrived { conn, request });
    }

    /// A request as a worker hands it over.
    fn request(&self, id: &str, action: Action, query: &str, body: &str) -> Request {
        let (query, wsecret) = crate::query::kept(action, query, None);
        Request {
            id: crate::routes::ChannelId::copy_of(id.as_bytes()),
            action,
            client: "192.0.2.1:4000".parse().unwrap(),
            arrived_ms: 1_700_000_000_000,
            query,
            wsecret,
            body: crate::payload::Payload::new(Some("text/plain"), body.as_bytes()),
            method: LinkMethod::Post,
            seq: None,
            reservation: self.budget.empty_for(None),
        }
    }

    fn at(&mut self, at: Duration) {
        self.now = self.start + at;
        self.send(Event::Tick);
    }

    /// Bytes charged now.
    fn used(&self) -> usize {
        self.budget.used()
    }
}

/// A parked `/link` receiver: its entry, its id and the query it keeps for its counterpart.
fn receiver(id: &str, query: &str) -> usize {
    ENTRY_COST + id.len() + query.len()
}

/// A `/link` message: its entry, id, kept query, content type and body.
fn message(id: &str, query: &str, body: &str) -> usize {
    ENTRY_COST + id.len() + query.len() + "text/plain".len() + body.len()
}

/// A stored `/inbox` entry without its body: its entry and id (the content type is held, and
/// charged, with the body).
fn inbox_entry(id: &str) -> usize {
    ENTRY_COST + id.len()
}

/// An `/inbox` message's body with its content type.
fn inbox_body(body: &str) -> usize {
    "text/plain".len() + body.len()
}

#[test]
fn a_parked_receiver_is_charged_until_it_is_answered_leaves_or_times_out() {
    let mut c = Charges::new(false);
    c.arrive(1, "rx", Action::LinkReceive, "a=1", "");
    assert_eq!(c.used(), receiver("rx", "a=1"));
    c.send(Event::Gone { conn: 1 });
    assert_eq!(c.used(), 0, "left");
    c.arrive(2, "rx", Action::LinkReceive, "", "");
    c.at(TIMEOUT);
    assert_eq!(c.used(), 0, "timed out");
    c.arrive(3, "rx", Action::LinkReceive, "", "");
    c.send(Event::Drain);
    assert_eq!(c.used(), 0, "drained");
}

#[test]
fn a_link_message_is_charged_until_it_is_taken_or_expires() {
    let mut c = Charges::new(false);
    c.arrive(1, "tx", Action::LinkSend, "q=1", "hello");
    assert_eq!(c.used(), message("tx", "q=1", "hello"));
    // A receiver takes it: while it is written, the message is charged, the receiver not.
    c.arrive(2, "tx", Action::LinkReceive, "", "");
    assert_eq!(c.used(), message("tx", "q=1", "hello"));
    // Not taken: back in the queue, charged the same.
    c.send(Event::DeliveryEnded { conn: 2, taken: false });
    assert_eq!(c.used(), message("tx", "q=1", "hello"));
    c.arrive(3, "tx", Action::LinkReceive, "", "");
    c.send(Event::DeliveryEnded { conn: 3, taken: true });
    assert_eq!(c.used(), 0, "delivered");
    // A sender that left: its message stays deliverable, and charged, until it expires.
    c.arrive(4, "tx", Action::LinkSend, "", "again");
    c.send(Event::Gone { conn: 4 });
    assert_eq!(c.used(), message("tx", "", "again"));
    c.at(TIMEOUT);
    assert_eq!(c.used(), 0, "expired");
}

#[test]
fn a_write_claim_is_charged_until_it_is_forgotten_and_costs_the_same_for_any_secret() {
    let mut c = Charges::new(false);
    let secret = "s".repeat(7000);
    c.arrive(1, "claimed", Action::LinkSend, &format!("wsecret={secret}"), "m");
    let claim = link::CLAIM_COST + "claimed".len();
    // The kept query drops `wsecret`; the claim keeps a digest, not the 7,000-byte secret.
    assert_eq!(c.used(), message("claimed", "", "m") + claim);
    c.arrive(2, "claimed", Action::LinkReceive, "", "");
    c.send(Event::DeliveryEnded { conn: 2, taken: true });
    assert_eq!(c.used(), claim, "the claim outlives its message");
    c.at(TIMEOUT + CLAIM_IDLE + Duration::from_secs(1));
    assert_eq!(c.used(), 0, "forgotten after CLAIM_IDLE");
    // The same claim from another secret: same charge.
    c.arrive(3, "other", Action::LinkSend, "wsecret=x", "m");
    assert_eq!(c.used(), message("other", "", "m") + link::CLAIM_COST + "other".len());
}

#[test]
fn an_inbox_message_is_charged_with_its_body_until_acknowledged_and_its_entry_until_its_ttl() {
    let mut c = Charges::new(false);
    c.arrive(1, "in", Action::InboxPost, "", "secret body");
    assert_eq!(c.used(), inbox_entry("in") + inbox_body("secret body"));
    // Replaced: only the newer one is charged.
    c.arrive(2, "in", Action::InboxPost, "", "newer");
    assert_eq!(c.used(), inbox_entry("in") + inbox_body("newer"));
    c.arrive(3, "in", Action::InboxDelete, "", "");
    assert_eq!(c.used(), inbox_entry("in"), "acknowledged: the entry stays for /ack");
    c.at(INBOX_TTL);
    assert_eq!(c.used(), 0, "expired");
}

#[test]
fn an_inbox_waiter_is_charged_until_answered_left_or_timed_out() {
    let mut c = Charges::new(false);
    let waiter = ENTRY_COST + "w".len();
    c.arrive(1, "w", Action::InboxGet, "", "");
    assert_eq!(c.used(), waiter);
    c.send(Event::Gone { conn: 1 });
    assert_eq!(c.used(), 0, "left");
    c.arrive(2, "w", Action::InboxGet, "", "");
    c.at(TIMEOUT);
    assert_eq!(c.used(), 0, "timed out");
    c.arrive(3, "w", Action::InboxGet, "", "");
    c.arrive(4, "w", Action::InboxPost, "", "body");
    assert_eq!(c.used(), inbox_entry("w") + inbox_body("body"), "answered: only the message");
    c.arrive(5, "w", Action::InboxAwait, "", "");
    assert_eq!(c.used(), inbox_entry("w") + inbox_body("body") + waiter);
    c.arrive(6, "w", Action::InboxDelete, "", "");
    assert_eq!(c.used(), inbox_entry("w"), "the /await answered");
}

#[test]
fn restored_state_is_charged_as_when_it_was_stored_and_given_back_with_the_registry() {
    let mut c = Charges::new(true);
    c.arrive(1, "in", Action::InboxPost, "", "inbox body");
    c.arrive(2, "acked", Action::InboxPost, "", "gone");
    c.arrive(3, "acked", Action::InboxDelete, "", "");
    c.arrive(4, "tx", Action::LinkSend, "k=v", "link body");
    c.send(Event::Gone { conn: 4 });
    let held = c.used();
    assert_eq!(
        held,
        inbox_entry("in")
            + inbox_body("inbox body")
            + inbox_entry("acked")
            + message("tx", "k=v", "link body")
    );
    let snapshot = c.registry.snapshot(c.now, 1_800_000_000_000);
    let mut fresh = Charges::new(true);
    let done = fresh.registry.restore(fresh.now, 1_800_000_000_000, snapshot, &fresh.budget);
    fresh.registry.check_counts();
    assert_eq!((done.inbox, done.link, done.over_budget), (2, 1, 0));
    assert_eq!(fresh.used(), held, "restored as charged before");
    drop(fresh.registry);
    assert_eq!(fresh.budget.used(), 0, "given back with the registry");
}

#[test]
fn a_burned_id_is_charged_from_what_burned_it_until_it_expires() {
    let mut c = Charges::with(false, true);
    let burned = super::burned::BURN_COST;
    c.arrive(1, "tx", Action::LinkSend, "", "token");
    c.arrive(2, "tx", Action::LinkReceive, "", "");
    c.send(Event::DeliveryEnded { conn: 2, taken: true });
    assert_eq!(c.used(), burned, "the message gone, its id burned");
    c.arrive(3, "in", Action::InboxPost, "", "token");
    c.arrive(4, "in", Action::InboxDelete, "", "");
    assert_eq!(c.used(), 2 * burned + inbox_entry("in"));
    // Refused requests leave nothing.
    c.arrive(5, "tx", Action::LinkSend, "", "again");
    c.arrive(6, "in", Action::InboxGet, "", "");
    assert_eq!(c.used(), 2 * burned + inbox_entry("in"));
    c.at(INBOX_TTL);
    assert_eq!(c.used(), 2 * burned);
    c.at(crate::config::SingleUse::default().retention + TIMEOUT);
    assert_eq!(c.used(), 0, "expired");
}

#[test]
fn what_does_not_fit_is_refused_and_counted_and_charges_nothing() {
    let mut c = Charges::new(false);
    c.budget = MemoryBudget::new(Some(message("full", "", "x") + 10));
    c.arrive(1, "full", Action::LinkSend, "", "x");
    let held = c.used();
    assert_eq!(held, message("full", "", "x"));
    for (conn, action, body) in
        [(2, Action::LinkSend, "y"), (3, Action::InboxPost, "z"), (4, Action::InboxGet, "")]
    {
        c.arrive(conn, "full-2", action, "", body);
        assert_eq!(c.out.len(), 1, "{:?}", c.out);
        assert_eq!(c.out[0].answer, Answer::Refused(RegistryRefusal::Memory), "{action:?}");
        assert_eq!(c.used(), held, "{action:?} left nothing charged");
    }
    assert_eq!(c.registry.counts().refused.get(crate::refused::RefusalReason::Memory), 3);
    // A claim that no longer fits refuses its sender too.
    c.budget = MemoryBudget::new(Some(message("c", "", "m") + 10));
    c.arrive(5, "c", Action::LinkSend, "wsecret=s", "m");
    assert_eq!(c.out[0].answer, Answer::Refused(RegistryRefusal::Memory));
    assert_eq!(c.used(), 0);
}

#[test]
fn a_sync_side_is_charged_as_a_link_message_until_its_exchange_ends() {
    let mut c = Charges::new(false);
    c.arrive(1, "sy", Action::Sync, "q=1", "first");
    assert_eq!(c.used(), message("sy", "q=1", "first"));
    c.arrive(2, "sy", Action::Sync, "", "second");
    let both = message("sy", "q=1", "first") + message("sy", "", "second");
    assert_eq!(c.used(), both, "both, while the first side's answer is written");
    c.send(Event::DeliveryEnded { conn: 1, taken: false });
    assert_eq!(c.used(), message("sy", "", "second"), "not taken: the second waits again");
    c.arrive(3, "sy", Action::Sync, "", "third");
    c.send(Event::DeliveryEnded { conn: 2, taken: true });
    assert_eq!(c.used(), 0, "exchanged: the answers hold what they carry");
    c.arrive(4, "sy", Action::Sync, "", "left");
    c.send(Event::Gone { conn: 4 });
    assert_eq!(c.used(), 0, "left");
    c.arrive(5, "sy", Action::Sync, "", "alone");
    c.at(TIMEOUT);
    assert_eq!(c.used(), 0, "timed out");
    c.arrive(6, "sy", Action::Sync, "", "drained");
    c.send(Event::Drain);
    assert_eq!(c.used(), 0, "drained");
}

#[test]
fn an_mcast_message_is_charged_until_evicted_or_expired_and_a_reader_while_it_waits() {
    let mut c = Charges::new(false);
    c.arrive(1, "mc", Action::McastPost, "k=v", "12345");
    let first = message("mc", "k=v", "12345");
    assert_eq!(c.used(), first);
    c.arrive(2, "mc", Action::McastPost, "", "67890");
    assert_eq!(c.used(), first + message("mc", "", "67890"));
    // MCAST_RETAIN is 10 bytes: a third body evicts the first.
    c.arrive(3, "mc", Action::McastPost, "", "abcde");
    assert_eq!(c.used(), 2 * message("mc", "", "abcde"));
    let reader = ENTRY_COST + "rd".len();
    c.arrive(4, "rd", Action::McastGet, "", "");
    assert_eq!(c.used(), 2 * message("mc", "", "abcde") + reader);
    c.send(Event::Gone { conn: 4 });
    c.arrive(5, "mc", Action::McastPost, "wsecret=s", "x");
    let claim = link::CLAIM_COST + "mc".len();
    let kept = message("mc", "", "abcde") + message("mc", "", "x");
    assert_eq!(c.used(), kept + claim, "left: the reader gave its charge back");
    c.at(MCAST_IDLE + Duration::from_secs(1));
    assert_eq!(c.used(), 0, "expired, with the claim");
}

/// What each kind really costs on the heap, against what it is charged, with the counting
/// allocator (`make test` runs these alone: `--features count-allocs`, one test thread). The
/// registry's own heap per value must be covered by its charge, and the charge must not exceed
/// it by more than one [`ENTRY_COST`], which also pays for what the value costs outside the
/// registry (its connection; README "Limits" has the RSS per parked request).
#[cfg(feature = "count-allocs")]
mod measured {
    use super::*;
    use crate::sys::counting::allocations;

    const N: u64 = 1000;

    /// Runs `make(c, n)` for `N` values after a warm-up, and checks the heap they hold against
    /// what they are charged.
    fn check(kind: &str, make: impl Fn(&mut Charges, u64)) {
        let mut c = Charges::new(false);
        // Warm-up: the maps and the wheel reach the size they have at N, then empty again.
        for n in 0..N {
            make(&mut c, n);
        }
        c.at(Duration::from_secs(3600));
        let heap_before = allocations().live;
        let charged_before = c.used();
        for n in N..2 * N {
            make(&mut c, n);
        }
        let heap = (allocations().live - heap_before) as u64 / N;
        let charged = (c.used() - charged_before) as u64 / N;
        println!("{kind}: {heap} bytes of heap, {charged} charged, per value");
        assert!(heap <= charged, "{kind}: {heap} bytes of heap per value, {charged} charged");
        assert!(
            charged <= heap + ENTRY_COST as u64,
            "{kind}: {charged} charged per value, more than an entry over its {heap} of heap"
        );
    }

    const QUERY: &str = "q=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    #[test]
    fn a_parked_link_receiver_with_a_long_query() {
        check("link receiver", |c, n| {
            c.arrive(n, &format!("receiver-{n}"), Action::LinkReceive, QUERY, "")
        });
    }

    #[test]
    fn a_link_message_whose_sender_left() {
        check("link message", |c, n| {
            c.arrive(n, &format!("message-{n}"), Action::LinkSend, QUERY, &"b".repeat(1000));
            c.send(Event::Gone { conn: n });
        });
    }

    #[test]
    fn a_write_claim_with_a_long_secret() {
        let secret = format!("wsecret={}", "s".repeat(2000));
        check("write claim and its message", |c, n| {
            c.arrive(n, &format!("claim-{n}"), Action::LinkSend, &secret, "m");
            c.send(Event::Gone { conn: n });
        });
    }

    #[test]
    fn a_write_claim_alone_once_its_message_was_delivered() {
        let secret = format!("wsecret={}", "s".repeat(2000));
        check("write claim alone", |c, n| {
            c.arrive(n, &format!("lone-{n}"), Action::LinkSend, &secret, "m");
            c.arrive(n + 1_000_000, &format!("lone-{n}"), Action::LinkReceive, "", "");
            c.send(Event::DeliveryEnded { conn: n + 1_000_000, taken: true });
        });
    }

    #[test]
    fn a_stored_inbox_message() {
        check("inbox message", |c, n| {
            c.arrive(n, &format!("inbox-{n}"), Action::InboxPost, "", &"b".repeat(1000))
        });
    }

    #[test]
    fn an_acknowledged_inbox_entry() {
        check("acknowledged inbox entry", |c, n| {
            let id = format!("acked-{n}");
            c.arrive(n, &id, Action::InboxPost, "", &"b".repeat(1000));
            c.arrive(n + 1_000_000, &id, Action::InboxDelete, "", "");
        });
    }

    #[test]
    fn a_waiting_sync_side() {
        check("sync side", |c, n| {
            c.arrive(n, &format!("sync-{n}"), Action::Sync, QUERY, &"b".repeat(1000))
        });
    }

    #[test]
    fn a_kept_mcast_message() {
        check("mcast message", |c, n| {
            c.arrive(n, &format!("mcast-{n}"), Action::McastPost, QUERY, &"b".repeat(1000))
        });
    }

    #[test]
    fn a_waiting_mcast_reader() {
        check("mcast reader", |c, n| c.arrive(n, &format!("reader-{n}"), Action::McastGet, "", ""));
    }

    /// Once the relay is warm, a `/link` hand-off allocates nothing in the registry but its
    /// channel's id (the `Arc` key of the entry it creates): its parked entries, its senders'
    /// side and its message queue reuse spare boxes (BENCHMARKS.md, "Allocations per hand-off").
    /// The requests are made before the count, as workers make them.
    #[test]
    fn a_warm_link_hand_off_allocates_only_its_id() {
        let mut c = Charges::new(false);
        let hand_offs = |c: &mut Charges, from: u64| {
            let ids: Vec<String> = (from..from + N).map(|n| format!("hand-off-{n}")).collect();
            let requests: Vec<_> = ids
                .iter()
                .map(|id| {
                    let receiver = c.request(id, Action::LinkReceive, "", "");
                    (receiver, c.request(id, Action::LinkSend, "", "a sealed token"))
                })
                .collect();
            let calls = allocations().calls;
            for (n, (receiver, sender)) in (from..).zip(requests) {
                let (r, s) = (2 * n, 2 * n + 1);
                for event in [
                    Event::Arrived { conn: r, request: receiver },
                    Event::Arrived { conn: s, request: sender },
                    Event::DeliveryEnded { conn: r, taken: true },
                ] {
                    c.out.clear();
                    c.registry.handle(c.now, event, &mut c.out);
                }
            }
            (allocations().calls - calls) as f64 / N as f64
        };
        let cold = hand_offs(&mut c, 0);
        let warm = hand_offs(&mut c, N);
        println!("link hand-off: {cold:.2} allocations in the registry cold, {warm:.2} warm");
        assert!(warm <= 1.05, "{warm:.2} allocations per warm hand-off, 1 expected (its id)");
    }

    #[test]
    fn a_burned_id() {
        let mut c = Charges::with(false, true);
        // Warm-up and measured run alike: each burns a fresh id, whose inbox entry expires.
        let burn = |c: &mut Charges, n: u64| {
            let id = format!("burned-{n}");
            c.arrive(n, &id, Action::InboxPost, "", "b");
            c.arrive(n + 1_000_000, &id, Action::InboxDelete, "", "");
        };
        for n in 0..N {
            burn(&mut c, n);
        }
        c.at(INBOX_TTL);
        let heap_before = allocations().live;
        let charged_before = c.used();
        for n in N..2 * N {
            burn(&mut c, n);
        }
        c.at(2 * INBOX_TTL);
        let heap = (allocations().live - heap_before) as u64 / N;
        let charged = (c.used() - charged_before) as u64 / N;
        println!("burned id: {heap} bytes of heap, {charged} charged, per id");
        assert!(heap <= charged, "burned id: {heap} bytes of heap per id, {charged} charged");
    }

    #[test]
    fn a_parked_inbox_get() {
        check("inbox waiter", |c, n| c.arrive(n, &format!("get-{n}"), Action::InboxGet, "", ""));
    }
}
