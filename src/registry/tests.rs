//! Registry scenarios as event sequences; the replies are rendered to text and compared.

use std::time::{Duration, Instant};

use super::*;
use crate::limits::Reservation;
use crate::payload::Payload;

const TIMEOUT: Duration = Duration::from_secs(10);
const INBOX_TIMEOUT: Duration = Duration::from_secs(25);
const INBOX_TTL: Duration = Duration::from_secs(300);
const MCAST_RETAIN: usize = 10;
const MCAST_IDLE: Duration = Duration::from_secs(60);

/// A registry on a fake clock, recording every reply as one line of text.
struct Scenario {
    registry: Registry,
    start: Instant,
    now: Instant,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario::with_max_parked(None)
    }

    fn with_max_parked(max_parked: Option<usize>) -> Scenario {
        let start = Instant::now();
        let settings = Settings {
            link_timeout: TIMEOUT,
            inbox_timeout: INBOX_TIMEOUT,
            inbox_ttl: INBOX_TTL,
            max_parked,
            max_parked_per_ip: None,
            rate_per_id: None,
            keeps_messages: false,
            mcast_retain: MCAST_RETAIN,
            mcast_idle: MCAST_IDLE,
            single_use: crate::config::SingleUse::default(),
        };
        Scenario { registry: Registry::new(settings, start), start, now: start }
    }

    /// Hands `event` to the registry, checks its counts against a recount, renders the replies.
    fn event(&mut self, event: Event) -> Vec<String> {
        let mut out = Vec::new();
        self.handle(event, &mut out);
        out.iter().map(render).collect()
    }

    /// Hands `event` to the registry and checks its counts against a recount.
    fn handle(&mut self, event: Event, out: &mut Vec<Reply>) {
        self.registry.handle(self.now, event, out);
        self.registry.check_counts();
    }

    fn get(&mut self, conn: ConnId, id: &str) -> Vec<String> {
        self.event(Event::Arrived { conn, request: request(id, Action::LinkReceive, "", "") })
    }

    fn post(&mut self, conn: ConnId, id: &str, query: &str, body: &str) -> Vec<String> {
        self.event(Event::Arrived { conn, request: request(id, Action::LinkSend, query, body) })
    }

    fn written(&mut self, conn: ConnId, ok: bool) -> Vec<String> {
        self.event(Event::DeliveryEnded { conn, taken: ok })
    }

    /// Moves the clock to `at` after the start and ticks.
    fn at(&mut self, at: Duration) -> Vec<String> {
        self.now = self.start + at;
        self.event(Event::Tick)
    }
}

/// A request as the gate hands it over (`query::kept`).
fn request(id: &str, action: Action, query: &str, body: &str) -> Request {
    let (query, wsecret) = crate::query::kept(action, query, None);
    Request {
        id: crate::routes::ChannelId::copy_of(id.as_bytes()),
        action,
        client: "127.0.0.1:4000".parse().unwrap(),
        arrived_ms: 1_700_000_000_000,
        query,
        wsecret,
        body: Payload::from(body.as_bytes()),
        method: LinkMethod::Post,
        seq: None,
        reservation: Reservation::default(),
    }
}

/// Parked requests, messages and body bytes held: what the scenarios check of the counts.
fn held(s: &Scenario) -> (usize, usize, usize) {
    let counts = s.registry.counts();
    (counts.parked, counts.messages, counts.bytes)
}

/// One reply as a line: `conn <- status "body"`, with the statuses and sentences the HTTP side
/// gives these answers (`src/http/render.rs`), shortened to what the scenarios check.
fn render(reply: &Reply) -> String {
    let (status, body) = match &reply.answer {
        Answer::LinkMessage { body, .. } | Answer::InboxMessage { body, .. } => {
            (200, String::from_utf8_lossy(body).into_owned())
        }
        Answer::McastMessage { body, seq, .. } => {
            (200, format!("#{seq} {}", String::from_utf8_lossy(body)))
        }
        Answer::McastKept { seq } => (200, format!("kept #{seq}")),
        Answer::LinkDelivered { .. } | Answer::Done => (200, String::new()),
        Answer::LinkKept => (202, "kept".into()),
        Answer::Acknowledged(acked) => (200, acked.to_string()),
        Answer::NoMessage => (404, "No message in this inbox".into()),
        Answer::Replaced => (404, "The message was replaced".into()),
        Answer::TimedOut { .. } => (408, "Request timed out".into()),
        Answer::Refused(refusal) => {
            let status = match refusal {
                RegistryRefusal::Full { .. }
                | RegistryRefusal::InboxWaiters { .. }
                | RegistryRefusal::ShuttingDown
                | RegistryRefusal::Memory => 503,
                RegistryRefusal::ParkedPerClient { .. }
                | RegistryRefusal::WriteRate { .. }
                | RegistryRefusal::MemoryPerClient { .. } => 429,
                RegistryRefusal::Claimed => 401,
                RegistryRefusal::Burned { .. } => 410,
            };
            (status, format!("{refusal:?}"))
        }
    };
    let confirm = if reply.delivery { " (confirm)" } else { "" };
    format!("{} <- {status} {body:?}{confirm}", reply.conn)
}

#[test]
#[should_panic(expected = "held messages and bytes drifted from a recount")]
fn a_held_count_that_drifts_from_the_recount_is_caught() {
    let mut s = Scenario::new();
    s.post(1, "a", "", "m");
    let _lost = super::held::HeldBody::new(&s.registry.held, Payload::from(&b"x"[..]));
    s.registry.check_counts();
}

#[test]
#[should_panic(expected = "parked per client drifted from a recount")]
fn a_parked_count_that_drifts_from_the_recount_is_caught() {
    let mut s = Scenario::new();
    s.get(1, "a");
    s.registry.parked_by_client.insert(crate::identity::ClientKey::V4(1), 1);
    s.registry.check_counts();
}

#[test]
fn receiver_first_then_sender_is_told_after_the_write() {
    let mut s = Scenario::new();
    assert!(s.get(1, "a").is_empty());
    assert_eq!(s.post(2, "a", "", "token"), ["1 <- 200 \"token\" (confirm)"]);
    assert_eq!(s.written(1, true), ["2 <- 200 \"\""]);
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn sender_first_then_receiver() {
    let mut s = Scenario::new();
    assert!(s.post(1, "a", "", "token").is_empty());
    assert_eq!(held(&s), (1, 1, 5));
    assert_eq!(s.get(2, "a"), ["2 <- 200 \"token\" (confirm)"]);
    assert_eq!(s.written(2, true), ["1 <- 200 \"\""]);
}

#[test]
fn receivers_and_senders_are_served_first_come_first_served() {
    let mut s = Scenario::new();
    s.get(1, "a");
    s.get(2, "a");
    assert_eq!(s.post(3, "a", "", "m1"), ["1 <- 200 \"m1\" (confirm)"]);
    assert_eq!(s.post(4, "a", "", "m2"), ["2 <- 200 \"m2\" (confirm)"]);
    let mut s = Scenario::new();
    s.post(1, "a", "", "m1");
    s.post(2, "a", "", "m2");
    assert_eq!(s.get(3, "a"), ["3 <- 200 \"m1\" (confirm)"]);
    assert_eq!(s.get(4, "a"), ["4 <- 200 \"m2\" (confirm)"]);
}

#[test]
fn failed_write_hands_the_message_to_the_next_receiver() {
    let mut s = Scenario::new();
    s.get(1, "a");
    s.get(2, "a");
    assert_eq!(s.post(3, "a", "", "m"), ["1 <- 200 \"m\" (confirm)"]);
    assert_eq!(s.written(1, false), ["2 <- 200 \"m\" (confirm)"]);
    assert_eq!(s.written(2, true), ["3 <- 200 \"\""]);
}

#[test]
fn failed_write_with_no_other_receiver_keeps_the_message() {
    let mut s = Scenario::new();
    s.get(1, "a");
    s.post(2, "a", "", "m");
    assert!(s.written(1, false).is_empty());
    assert_eq!(s.get(3, "a"), ["3 <- 200 \"m\" (confirm)"]);
    assert_eq!(s.written(3, true), ["2 <- 200 \"\""]);
}

#[test]
fn receiver_gone_while_waiting_does_not_take_the_message() {
    let mut s = Scenario::new();
    s.get(1, "a");
    s.event(Event::Gone { conn: 1 });
    assert_eq!(s.registry.counts().parked, 0);
    assert!(s.post(2, "a", "", "m").is_empty());
    assert_eq!(s.get(3, "a"), ["3 <- 200 \"m\" (confirm)"]);
}

#[test]
fn message_of_a_sender_that_left_is_still_delivered() {
    let mut s = Scenario::new();
    s.post(1, "a", "", "m");
    s.event(Event::Gone { conn: 1 });
    assert_eq!(held(&s), (0, 1, 1));
    assert_eq!(s.get(2, "a"), ["2 <- 200 \"m\" (confirm)"]);
    assert!(s.written(2, true).is_empty());
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn waiters_time_out_at_the_link_timeout_never_before() {
    let mut s = Scenario::new();
    s.get(1, "a");
    s.post(2, "b", "", "m");
    assert!(s.at(TIMEOUT - Duration::from_millis(1)).is_empty());
    let mut expired = s.at(TIMEOUT + TICK);
    expired.sort();
    assert_eq!(expired.len(), 2);
    assert!(expired[0].starts_with("1 <- 408 \"Request timed out"), "{expired:?}");
    assert!(expired[1].starts_with("2 <- 408 \"Request timed out"), "{expired:?}");
    assert_eq!(held(&s), (0, 0, 0));
    assert!(s.registry.is_idle());
}

#[test]
fn message_whose_sender_left_expires_silently() {
    let mut s = Scenario::new();
    s.post(1, "a", "", "m");
    s.event(Event::Gone { conn: 1 });
    assert!(s.at(TIMEOUT + TICK).is_empty());
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn wsecret_claims_the_id_for_senders_only() {
    let mut s = Scenario::new();
    s.post(1, "a", "wsecret=s1", "m1");
    let refused = s.post(2, "a", "", "m2");
    assert!(refused[0].starts_with("2 <- 401"), "{refused:?}");
    let refused = s.post(3, "a", "wsecret=other", "m3");
    assert!(refused[0].starts_with("3 <- 401"), "{refused:?}");
    assert!(s.post(4, "a", "wsecret=s1", "m4").is_empty());
    assert_eq!(s.get(5, "a"), ["5 <- 200 \"m1\" (confirm)"]);
}

#[test]
fn wsecret_claim_is_forgotten_after_twenty_idle_minutes() {
    let mut s = Scenario::new();
    s.post(1, "a", "wsecret=s1", "m");
    s.get(2, "a");
    s.written(2, true);
    // Idle from here: the claim holds until CLAIM_IDLE has passed.
    s.at(CLAIM_IDLE - Duration::from_secs(1));
    assert!(s.post(3, "a", "wsecret=other", "x")[0].starts_with("3 <- 401"));
    s.at(CLAIM_IDLE + TICK);
    assert!(s.post(4, "a", "wsecret=other", "x").is_empty());
}

#[test]
fn activity_keeps_a_claim() {
    let mut s = Scenario::new();
    s.post(1, "a", "wsecret=s1", "m");
    s.get(2, "a");
    s.written(2, true);
    s.at(CLAIM_IDLE / 2);
    s.get(3, "a"); // someone waiting: the id is not idle
    s.at(CLAIM_IDLE + CLAIM_IDLE / 4);
    assert!(s.post(4, "a", "wsecret=other", "x")[0].starts_with("4 <- 401"));
}

#[test]
fn max_parked_refuses_with_503_but_pairs_still_complete() {
    let mut s = Scenario::with_max_parked(Some(1));
    s.get(1, "a");
    let refused = s.get(2, "b");
    assert!(refused[0].starts_with("2 <- 503"), "{refused:?}");
    // A sender for the waiting receiver does not park, so it is served.
    assert_eq!(s.post(3, "a", "", "m"), ["1 <- 200 \"m\" (confirm)"]);
}

#[test]
fn ids_are_separate_channels() {
    let mut s = Scenario::new();
    s.get(1, "a");
    assert!(s.post(2, "b", "", "m").is_empty());
    assert_eq!(s.registry.counts().parked, 2);
}

#[test]
fn metadata_names_the_counterpart() {
    let mut s = Scenario::new();
    s.get(1, "a");
    let mut out = Vec::new();
    let mut sender = request("a", Action::LinkSend, "b=2&wsecret=x&a=1", "m");
    sender.client = "10.0.0.9:5555".parse().unwrap();
    sender.arrived_ms = 42;
    sender.body = Payload::new(Some("application/json"), b"m");
    s.handle(Event::Arrived { conn: 2, request: sender }, &mut out);
    let Answer::LinkMessage { body, own, sender, .. } = &out[0].answer else {
        panic!("not a message: {out:?}")
    };
    assert_eq!(sender.ip.to_string(), "10.0.0.9");
    assert_eq!(sender.port, 5555);
    assert_eq!(sender.arrived_ms, 42);
    assert_eq!(own.arrived_ms, 1_700_000_000_000);
    assert_eq!(sender.method, LinkMethod::Post);
    assert_eq!(&*sender.query, "a=1&b=2");
    assert_eq!((body.content_type(), body.body()), (Some("application/json"), &b"m"[..]));
    out.clear();
    s.handle(Event::DeliveryEnded { conn: 1, taken: true }, &mut out);
    let Answer::LinkDelivered { own, receiver } = &out[0].answer else {
        panic!("not delivered: {out:?}")
    };
    assert_eq!(receiver.method, LinkMethod::Get);
    assert_eq!(own.arrived_ms, 42);
    assert_eq!(&*receiver.query, "");
}

impl Scenario {
    fn inbox(&mut self, conn: ConnId, id: &str, action: Action, body: &str) -> Vec<String> {
        self.event(Event::Arrived { conn, request: request(id, action, "", body) })
    }
}

#[test]
fn inbox_post_answers_at_once_and_get_does_not_consume() {
    let mut s = Scenario::new();
    assert_eq!(s.inbox(1, "i", Action::InboxPost, "tok"), ["1 <- 200 \"\""]);
    assert_eq!(s.inbox(2, "i", Action::InboxGet, ""), ["2 <- 200 \"tok\""]);
    assert_eq!(s.inbox(3, "i", Action::InboxGet, ""), ["3 <- 200 \"tok\""]);
    assert_eq!(held(&s), (0, 1, 3));
}

#[test]
fn inbox_waiters_all_receive_the_post() {
    let mut s = Scenario::new();
    assert!(s.inbox(1, "i", Action::InboxGet, "").is_empty());
    assert!(s.inbox(2, "i", Action::InboxGet, "").is_empty());
    assert_eq!(s.registry.counts().parked, 2);
    let mut out = s.inbox(3, "i", Action::InboxPost, "tok");
    out.sort();
    assert_eq!(out, ["1 <- 200 \"tok\"", "2 <- 200 \"tok\"", "3 <- 200 \"\""]);
    assert_eq!(s.registry.counts().parked, 0);
}

#[test]
fn inbox_ack_lifecycle() {
    let mut s = Scenario::new();
    assert!(s.inbox(1, "i", Action::InboxDelete, "")[0].starts_with("1 <- 404"));
    assert!(s.inbox(2, "i", Action::InboxAck, "")[0].starts_with("2 <- 404"));
    assert!(s.inbox(3, "i", Action::InboxAwait, "")[0].starts_with("3 <- 404"));
    s.inbox(4, "i", Action::InboxPost, "tok");
    assert_eq!(s.inbox(5, "i", Action::InboxAck, ""), ["5 <- 200 \"false\""]);
    assert!(s.inbox(6, "i", Action::InboxAwait, "").is_empty());
    assert_eq!(s.inbox(7, "i", Action::InboxDelete, ""), ["7 <- 200 \"\"", "6 <- 200 \"\""]);
    assert_eq!(s.inbox(8, "i", Action::InboxAck, ""), ["8 <- 200 \"true\""]);
    assert_eq!(s.inbox(9, "i", Action::InboxAwait, ""), ["9 <- 200 \"\""]);
    assert_eq!(s.inbox(10, "i", Action::InboxDelete, ""), ["10 <- 200 \"\""]);
    // Acknowledged: the body is gone, so a GET waits.
    assert!(s.inbox(11, "i", Action::InboxGet, "").is_empty());
    assert_eq!(held(&s), (1, 0, 0));
    // A new POST resets the ack and wakes the waiting GET.
    let mut out = s.inbox(12, "i", Action::InboxPost, "new");
    out.sort();
    assert_eq!(out, ["11 <- 200 \"new\"", "12 <- 200 \"\""]);
    assert_eq!(s.inbox(13, "i", Action::InboxAck, ""), ["13 <- 200 \"false\""]);
}

#[test]
fn inbox_await_hears_404_when_the_message_is_replaced() {
    let mut s = Scenario::new();
    s.inbox(1, "i", Action::InboxPost, "old");
    s.inbox(2, "i", Action::InboxAwait, "");
    let out = s.inbox(3, "i", Action::InboxPost, "new");
    assert_eq!(out[0], "3 <- 200 \"\"");
    assert!(out[1].starts_with("2 <- 404 \"The message was replaced"), "{out:?}");
    assert_eq!(held(&s), (0, 1, 3));
}

#[test]
fn inbox_message_lives_its_ttl_from_the_post_even_when_acked() {
    let mut s = Scenario::new();
    s.inbox(1, "i", Action::InboxPost, "tok");
    s.at(INBOX_TTL / 2);
    s.inbox(2, "i", Action::InboxDelete, "");
    s.at(INBOX_TTL - Duration::from_millis(1));
    assert_eq!(s.inbox(3, "i", Action::InboxAck, ""), ["3 <- 200 \"true\""]);
    s.at(INBOX_TTL + TICK);
    assert!(s.inbox(4, "i", Action::InboxAck, "")[0].starts_with("4 <- 404"));
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn inbox_expiry_answers_awaiters_404() {
    let mut s = Scenario::new();
    s.inbox(1, "i", Action::InboxPost, "tok");
    s.at(INBOX_TTL - Duration::from_secs(10));
    assert!(s.inbox(2, "i", Action::InboxAwait, "").is_empty());
    let out = s.at(INBOX_TTL + TICK);
    assert!(out[0].starts_with("2 <- 404"), "{out:?}");
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn inbox_expiry_keeps_get_waiters_waiting() {
    let mut s = Scenario::new();
    s.inbox(1, "i", Action::InboxPost, "tok");
    s.inbox(2, "i", Action::InboxDelete, "");
    s.at(INBOX_TTL - Duration::from_secs(10));
    assert!(s.inbox(3, "i", Action::InboxGet, "").is_empty());
    assert!(s.at(INBOX_TTL + TICK).is_empty());
    assert_eq!(s.registry.counts().parked, 1);
    assert_eq!(s.inbox(4, "i", Action::InboxPost, "again")[1], "3 <- 200 \"again\"");
}

#[test]
fn inbox_waiters_time_out_with_408() {
    let mut s = Scenario::new();
    s.inbox(1, "i", Action::InboxGet, "");
    assert!(s.at(INBOX_TIMEOUT - Duration::from_millis(1)).is_empty());
    let out = s.at(INBOX_TIMEOUT + TICK);
    assert!(out[0].starts_with("1 <- 408 \"Request timed out"), "{out:?}");
    assert_eq!(held(&s), (0, 0, 0));
    assert!(s.registry.is_idle());
}

#[test]
fn inbox_allows_ten_live_waiters_per_kind_and_gone_ones_do_not_count() {
    let mut s = Scenario::new();
    for conn in 1..=10 {
        assert!(s.inbox(conn, "i", Action::InboxGet, "").is_empty());
    }
    let refused = s.inbox(11, "i", Action::InboxGet, "");
    assert!(refused[0].starts_with("11 <- 503"), "{refused:?}");
    // Another id, and the other kind, have their own allowance.
    assert!(s.inbox(12, "j", Action::InboxGet, "").is_empty());
    for conn in 1..=10 {
        s.event(Event::Gone { conn });
    }
    assert!(s.inbox(13, "i", Action::InboxGet, "").is_empty());
    assert_eq!(s.registry.counts().parked, 2);
}

#[test]
fn inbox_and_link_ids_are_separate() {
    let mut s = Scenario::new();
    s.inbox(1, "x", Action::InboxPost, "inbox");
    assert!(s.get(2, "x").is_empty());
    assert_eq!(s.inbox(3, "x", Action::InboxGet, ""), ["3 <- 200 \"inbox\""]);
}

#[test]
fn drain_answers_every_parked_request_503_and_refuses_new_ones() {
    let mut s = Scenario::new();
    assert!(s.get(1, "a").is_empty());
    assert!(s.post(2, "b", "", "token").is_empty());
    assert!(s.inbox(3, "c", Action::InboxGet, "").is_empty());
    let drained = s.event(Event::Drain);
    let refusal = "\"ShuttingDown\"";
    assert_eq!(drained, [1, 2, 3].map(|conn| format!("{conn} <- 503 {refusal}")),);
    assert_eq!(held(&s).0, 0);
    assert_eq!(s.get(4, "a"), [format!("4 <- 503 {refusal}")]);
    assert!(s.at(TIMEOUT * 2).is_empty(), "no deadline fires for a drained request");
}

#[test]
fn drain_tells_a_waiting_sender_its_message_was_kept_when_the_state_file_keeps_it() {
    let mut s = Scenario::new();
    s.registry.settings.keeps_messages = true;
    s.post(1, "a", "", "token");
    s.inbox(2, "c", Action::InboxGet, "");
    assert_eq!(s.event(Event::Drain), ["1 <- 202 \"kept\"", "2 <- 503 \"ShuttingDown\""]);
    assert_eq!(held(&s), (0, 1, 5), "the message stays, to be saved");
}

#[test]
fn drain_lets_a_delivery_in_flight_end_before_its_sender_is_answered() {
    // Taken: the sender hears it was delivered, even while draining.
    let mut s = Scenario::new();
    s.get(1, "a");
    s.post(2, "a", "", "m");
    assert!(s.event(Event::Drain).is_empty(), "neither side of a delivery is answered yet");
    assert_eq!(s.written(1, true), ["2 <- 200 \"\""]);
    assert_eq!(held(&s), (0, 0, 0));
    // Not taken, no state file: the message is lost at exit, so the sender is told to retry.
    let mut s = Scenario::new();
    s.get(1, "a");
    s.post(2, "a", "", "m");
    s.event(Event::Drain);
    assert_eq!(s.written(1, false), ["2 <- 503 \"ShuttingDown\""]);
    // Not taken, with a state file: kept.
    let mut s = Scenario::new();
    s.registry.settings.keeps_messages = true;
    s.get(1, "a");
    s.post(2, "a", "", "m");
    s.event(Event::Drain);
    assert_eq!(s.written(1, false), ["2 <- 202 \"kept\""]);
    assert_eq!(held(&s), (0, 1, 1));
}

#[test]
fn a_delivery_not_taken_goes_back_to_the_head_of_the_queue() {
    let mut s = Scenario::new();
    s.post(1, "a", "", "m1");
    s.post(2, "a", "", "m2");
    assert_eq!(s.get(3, "a"), ["3 <- 200 \"m1\" (confirm)"]);
    assert!(s.written(3, false).is_empty());
    assert_eq!(s.get(4, "a"), ["4 <- 200 \"m1\" (confirm)"], "m1 first, not m2");
    assert_eq!(s.written(4, true), ["1 <- 200 \"\""]);
    assert_eq!(held(&s), (1, 1, 2));
}

/// Wall-clock time of the scenarios' start, Unix milliseconds.
const WALL: u64 = 1_800_000_000_000;

/// A fresh registry restored from what `s` holds at its current time.
fn restarted(s: &mut Scenario, down: Duration) -> (Scenario, crate::registry::snapshot::Restored) {
    let now_ms = WALL + (s.now - s.start).as_millis() as u64;
    let snapshot = crate::persist::replayed(&s.registry.snapshot(s.now, now_ms), &[]);
    let mut fresh = Scenario::new();
    let budget = crate::limits::MemoryBudget::new(None);
    let done =
        fresh.registry.restore(fresh.now, now_ms + down.as_millis() as u64, snapshot, &budget);
    fresh.registry.check_counts();
    (fresh, done)
}

#[test]
fn snapshot_restore_round_trip() {
    let mut s = Scenario::new();
    s.inbox(1, "i", Action::InboxPost, "tok");
    s.inbox(2, "acked", Action::InboxPost, "gone");
    s.inbox(3, "acked", Action::InboxDelete, "");
    let mut out = Vec::new();
    let mut sender = request("l", Action::LinkSend, "b=2&wsecret=x", "m1");
    sender.client = "10.0.0.9:5555".parse().unwrap();
    sender.arrived_ms = 42;
    sender.body = Payload::new(Some("application/json"), b"m1");
    s.handle(Event::Arrived { conn: 4, request: sender }, &mut out);
    s.post(5, "l", "wsecret=x", "m2");
    s.event(Event::Gone { conn: 4 });
    let (mut r, done) = restarted(&mut s, Duration::ZERO);
    assert_eq!((done.inbox, done.link, done.expired, done.over_budget), (2, 2, 0, 0));
    assert_eq!(held(&r), (0, 3, 7));
    assert_eq!(r.inbox(10, "i", Action::InboxGet, ""), ["10 <- 200 \"tok\""]);
    assert_eq!(r.inbox(11, "acked", Action::InboxAck, ""), ["11 <- 200 \"true\""]);
    // The link messages come out in order, with their sender's metadata and content type.
    let mut out = Vec::new();
    r.handle(
        Event::Arrived { conn: 12, request: request("l", Action::LinkReceive, "", "") },
        &mut out,
    );
    let Answer::LinkMessage { body, sender, .. } = &out[0].answer else {
        panic!("not a message: {out:?}")
    };
    assert_eq!(&**body, b"m1");
    assert_eq!(sender.ip.to_string(), "10.0.0.9");
    assert_eq!(sender.port, 5555);
    assert_eq!(sender.arrived_ms, 42);
    assert_eq!(&*sender.query, "b=2");
    assert_eq!(body.content_type(), Some("application/json"));
    // Written: nobody to tell (the sender's connection did not survive the restart).
    assert!(r.written(12, true).is_empty());
    assert_eq!(r.get(13, "l"), ["13 <- 200 \"m2\" (confirm)"]);
    assert!(r.written(13, true).is_empty());
    assert_eq!(held(&r), (0, 1, 3));
}

/// `snapshot` at `now_ms` with each id's messages in order and the ids sorted, so that two
/// snapshots of one state compare equal however their maps were ordered; a deadline already
/// past (a message being delivered when its time ran out) reads as `now_ms`, as a snapshot
/// gives it.
fn normalised(mut snapshot: crate::persist::Snapshot, now_ms: u64) -> crate::persist::Snapshot {
    snapshot.inbox.sort_by(|a, b| a.id.cmp(&b.id));
    snapshot.link.sort_by(|a, b| a.id.cmp(&b.id));
    for entry in &mut snapshot.link {
        entry.expires_ms = entry.expires_ms.max(now_ms);
    }
    snapshot
}

/// The changes the registry reports, replayed onto the snapshot they follow, give the state
/// the registry holds: after stores, replacements, acknowledgements, deliveries taken and not,
/// expiries, and messages gone before their change was taken.
#[test]
fn the_changes_replayed_give_the_state() {
    let mut s = Scenario::new();
    s.registry.settings.keeps_messages = true;
    s.inbox(1, "early", Action::InboxPost, "before the snapshot");
    s.post(2, "l", "", "queued before");
    let base = s.registry.snapshot(s.now, WALL);
    let mut changes = Vec::new();
    let mut take = |s: &mut Scenario| {
        let now_ms = WALL + (s.now - s.start).as_millis() as u64;
        changes.extend(s.registry.take_changes(s.now, now_ms));
        let now = normalised(s.registry.snapshot(s.now, now_ms), now_ms);
        let replayed = crate::persist::replayed(&base, &changes);
        assert_eq!(normalised(replayed, now_ms), now);
    };
    s.inbox(3, "a", Action::InboxPost, "one");
    s.inbox(4, "b", Action::InboxPost, "two");
    take(&mut s);
    s.inbox(5, "a", Action::InboxPost, "one replaced");
    s.inbox(6, "b", Action::InboxDelete, "");
    s.inbox(7, "b", Action::InboxDelete, "");
    s.inbox(8, "nothing", Action::InboxDelete, "");
    take(&mut s);
    s.post(9, "l", "", "second");
    s.get(10, "l");
    s.written(10, false);
    s.get(11, "l");
    take(&mut s);
    s.written(11, true);
    s.post(12, "l", "", "third");
    s.get(13, "l");
    take(&mut s);
    // Stored and taken before the loop took the change: only its removal is recorded.
    s.get(14, "gone");
    s.post(15, "gone", "", "quick");
    s.written(14, true);
    s.written(13, false);
    take(&mut s);
    // Stored, straight to a receiver that took nothing, then to another before the loop took
    // the change: it is found with the second.
    s.get(16, "twice");
    s.get(17, "twice");
    s.post(18, "twice", "", "again");
    s.written(16, false);
    take(&mut s);
    s.at(TIMEOUT + Duration::from_secs(1));
    take(&mut s);
    s.at(INBOX_TTL + Duration::from_secs(1));
    take(&mut s);
    assert!(changes.iter().any(|c| matches!(c, crate::persist::Change::InboxGone(_))));
    assert!(changes.iter().any(|c| matches!(c, crate::persist::Change::LinkGone { .. })));
}

#[test]
fn nothing_is_noted_without_a_state_file() {
    let mut s = Scenario::new();
    s.inbox(1, "a", Action::InboxPost, "one");
    s.post(2, "l", "", "m");
    assert!(!s.registry.has_changes());
}

#[test]
fn a_delivery_being_written_is_saved() {
    let mut s = Scenario::new();
    s.get(1, "l");
    s.post(2, "l", "", "m");
    let (mut r, done) = restarted(&mut s, Duration::ZERO);
    assert_eq!(done.link, 1);
    assert_eq!(r.get(3, "l"), ["3 <- 200 \"m\" (confirm)"]);
}

#[test]
fn restore_counts_the_downtime_against_the_deadlines() {
    let mut s = Scenario::new();
    s.inbox(1, "early", Action::InboxPost, "a");
    s.at(INBOX_TTL - Duration::from_secs(100));
    s.inbox(2, "late", Action::InboxPost, "b");
    s.post(3, "l", "", "m");
    // Down 50 s: both inbox messages remain, early one with 50 s left; the link message has
    // TIMEOUT (10 s) from its POST and is gone.
    let (mut r, done) = restarted(&mut s, Duration::from_secs(50));
    assert_eq!((done.inbox, done.link, done.expired), (2, 0, 1));
    r.at(Duration::from_secs(49));
    assert_eq!(r.inbox(4, "early", Action::InboxGet, ""), ["4 <- 200 \"a\""]);
    r.at(Duration::from_millis(50_200));
    assert!(r.inbox(5, "early", Action::InboxAck, "")[0].starts_with("5 <- 404"));
    assert_eq!(r.inbox(6, "late", Action::InboxAck, ""), ["6 <- 200 \"false\""]);
    // Down longer than the whole TTL: nothing is restored.
    let (_, done) = restarted(&mut s, INBOX_TTL);
    assert_eq!((done.inbox, done.link, done.expired), (0, 0, 3));
}

#[test]
fn restored_messages_reserve_memory() {
    let mut s = Scenario::new();
    s.inbox(1, "a", Action::InboxPost, "12345");
    s.inbox(2, "b", Action::InboxPost, "12345");
    let snapshot = s.registry.snapshot(s.now, WALL);
    let mut fresh = Scenario::new();
    // Room for one message: its entry with its one-byte id, and its body.
    let one = crate::limits::ENTRY_COST + 1 + 5;
    let budget = crate::limits::MemoryBudget::new(Some(one + 100));
    let done = fresh.registry.restore(fresh.now, WALL, snapshot, &budget);
    fresh.registry.check_counts();
    assert_eq!((done.inbox, done.over_budget), (1, 1));
    assert_eq!(budget.used(), one);
    drop(fresh);
    assert_eq!(budget.used(), 0);
}

/// musl's allocator hands out a block of its size plus a 4-byte header rounded up to a size
/// class (…, 80, 96, 112, 128, …): at 92 bytes or less a boxed `Parked` takes 96 bytes per
/// parked request, at 93–108 it takes 112 (BENCHMARKS.md, "memory per parked receiver"). A
/// field added to `Parked`, `Party`, `Reservation`, `Charged` or a `Role` must keep this.
#[test]
fn a_parked_entry_fits_musls_96_byte_class() {
    let size = std::mem::size_of::<crate::limits::Charged<super::Parked>>();
    assert!(
        size <= 92,
        "Parked is {size} bytes: over 92, every parked request costs 16 bytes more in the static \
         build"
    );
}

/// How many boxes each spare list keeps: parked entries, `/link` senders' sides, `/inbox`
/// messages (`spare.rs`).
fn spares(s: &Scenario) -> (usize, usize, usize) {
    let r = &s.registry;
    (r.spare_parked.len(), r.spare_senders.len(), r.spare_stored.len())
}

/// A `/link` hand-off gives the boxes of its two parked entries and of its senders' side back,
/// and the next hand-off takes them again rather than new ones.
#[test]
fn a_link_hand_off_reuses_the_boxes_of_the_one_before() {
    let mut s = Scenario::new();
    assert_eq!(spares(&s), (0, 0, 0));
    for round in 0..3 {
        let (receiver, sender) = (10 * round + 1, 10 * round + 2);
        let id = format!("id-{round}");
        s.get(receiver, &id);
        s.post(sender, &id, "", "m");
        assert_eq!(spares(&s), (1, 0, 0), "round {round}: the receiver's entry given back");
        assert_eq!(s.written(receiver, true), [format!("{sender} <- 200 \"\"")]);
        assert_eq!(spares(&s), (2, 1, 0), "round {round}: given back, and no more than that");
    }
}

/// A spare senders' side keeps its queue's room for one message, no more: the side of an id on
/// which many messages waited is freed.
#[test]
fn a_senders_side_whose_queue_grew_is_not_kept() {
    let mut s = Scenario::new();
    for sender in 1..=3 {
        s.post(sender, "busy", "", "m");
    }
    for receiver in 11..=13 {
        s.get(receiver, "busy");
        s.written(receiver, true);
    }
    // Four parked entries were ever made: the three senders', and a receiver's that the next
    // two receivers reused.
    assert_eq!(spares(&s), (4, 0, 0));
    s.post(4, "calm", "", "m");
    s.get(14, "calm");
    s.written(14, true);
    assert_eq!(spares(&s), (4, 1, 0));
    let kept = s.registry.spare_senders.pop().map(|side| side.messages.capacity());
    assert_eq!(kept, Some(1));
}

/// An `/inbox` message's box is given back when the message ends (its TTL, or a POST replacing
/// it), and the next message takes it.
#[test]
fn an_inbox_message_box_is_reused_after_it_expires_or_is_replaced() {
    let mut s = Scenario::new();
    s.inbox(1, "a", Action::InboxPost, "one");
    s.inbox(2, "b", Action::InboxPost, "two");
    s.at(INBOX_TTL + TICK);
    assert_eq!(spares(&s), (0, 0, 2), "both expired, their boxes kept");
    s.inbox(3, "c", Action::InboxPost, "three");
    assert_eq!(spares(&s), (0, 0, 1), "the next message took one");
    s.inbox(4, "c", Action::InboxPost, "four");
    assert_eq!(spares(&s), (0, 0, 1), "the replaced message's box was kept, and taken again");
    assert_eq!(s.inbox(5, "c", Action::InboxGet, ""), ["5 <- 200 \"four\""]);
}

/// An `/inbox` id's map slot holds an `Inbox`, and a hash map keeps about 1.8 slots per entry at
/// 18,000 (BENCHMARKS.md, "memory per parked receiver"): each 8 bytes more cost ~15 bytes per
/// parked `/inbox` GET.
#[test]
fn an_inbox_slot_stays_at_32_bytes() {
    let size = std::mem::size_of::<super::inbox::Inbox>();
    assert!(
        size <= 32,
        "Inbox is {size} bytes: every parked /inbox GET pays ~1.8 times the growth"
    );
}

/// Every parked request has a timer; the wheel's slab holds it in one entry, 48 bytes (it was
/// 56 when the entry stored its bucket). The slab grows by fixed chunks, so this is the cost per
/// parked request, ~1.02 times over (BENCHMARKS.md, "memory per parked receiver").
#[test]
fn a_timer_takes_48_bytes_of_the_wheel() {
    let size = crate::wheel::entry_size::<super::Timer>();
    assert!(size <= 48, "a wheel entry is {size} bytes: every parked request pays the growth");
}

impl Scenario {
    /// A `/sync` side with `method` and `body`.
    fn sync(&mut self, conn: ConnId, id: &str, method: LinkMethod, body: &str) -> Vec<String> {
        let mut sync = request(id, Action::Sync, "", body);
        sync.method = method;
        self.event(Event::Arrived { conn, request: sync })
    }

    /// An `/mcast` POST of `body`, with `query` (for `wsecret`).
    fn mcast_post(&mut self, conn: ConnId, id: &str, query: &str, body: &str) -> Vec<String> {
        self.event(Event::Arrived { conn, request: request(id, Action::McastPost, query, body) })
    }

    /// An `/mcast` GET that wants message `seq` (`None`: names none).
    fn mcast_get(&mut self, conn: ConnId, id: &str, seq: Option<i64>) -> Vec<String> {
        let mut get = request(id, Action::McastGet, "", "");
        get.seq = seq;
        self.event(Event::Arrived { conn, request: get })
    }
}

#[test]
fn sync_the_first_side_is_answered_first_and_the_second_once_it_took_it() {
    let mut s = Scenario::new();
    assert!(s.sync(1, "s", LinkMethod::Put, "from 1").is_empty());
    assert_eq!(held(&s), (1, 1, 6));
    assert_eq!(s.sync(2, "s", LinkMethod::Get, "from 2"), ["1 <- 200 \"from 2\" (confirm)"]);
    assert_eq!(s.written(1, true), ["2 <- 200 \"from 1\" (confirm)"]);
    assert!(s.written(2, true).is_empty());
    assert_eq!(held(&s), (0, 0, 0));
    assert_eq!(s.registry.counts().sync_taken, 2);
    assert_eq!(s.registry.counts().syncs, 0);
}

#[test]
fn sync_answers_carry_the_counterparts_method_and_metadata() {
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Delete, "a");
    let mut out = Vec::new();
    let mut second = request("s", Action::Sync, "x=1&wsecret=w", "b");
    second.method = LinkMethod::Patch;
    second.arrived_ms = 42;
    second.body = Payload::new(Some("text/x-b"), b"b");
    s.handle(Event::Arrived { conn: 2, request: second }, &mut out);
    let Answer::LinkMessage { body, own, sender, .. } = &out[0].answer else {
        panic!("not a message: {out:?}")
    };
    assert_eq!((sender.method, &*sender.query, sender.arrived_ms), (LinkMethod::Patch, "x=1", 42));
    assert_eq!((own.method, body.content_type()), (LinkMethod::Delete, Some("text/x-b")));
    out.clear();
    s.handle(Event::DeliveryEnded { conn: 1, taken: true }, &mut out);
    let Answer::LinkMessage { body, own, sender, .. } = &out[0].answer else {
        panic!("not a message: {out:?}")
    };
    assert_eq!(
        (sender.method, own.method, body.content_type()),
        (LinkMethod::Delete, LinkMethod::Patch, None)
    );
}

#[test]
fn sync_a_third_request_starts_a_new_pair() {
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Post, "1");
    s.sync(2, "s", LinkMethod::Post, "2");
    // The first pair is being answered; the third waits for a fourth.
    assert!(s.sync(3, "s", LinkMethod::Post, "3").is_empty());
    assert_eq!(s.written(1, true), ["2 <- 200 \"1\" (confirm)"]);
    assert_eq!(s.sync(4, "s", LinkMethod::Post, "4"), ["3 <- 200 \"4\" (confirm)"]);
    assert_eq!(s.written(3, true), ["4 <- 200 \"3\" (confirm)"]);
}

#[test]
fn sync_a_first_side_that_does_not_take_its_answer_leaves_the_second_waiting() {
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Post, "1");
    s.sync(2, "s", LinkMethod::Post, "2");
    // The first side reset its connection: the second is told nothing and waits again ...
    assert!(s.written(1, false).is_empty());
    assert_eq!((s.registry.counts().syncs, held(&s)), (1, (1, 1, 1)));
    // ... and pairs with the next side, whose answer now goes first.
    assert_eq!(s.sync(3, "s", LinkMethod::Post, "3"), ["2 <- 200 \"3\" (confirm)"]);
    assert_eq!(s.written(2, true), ["3 <- 200 \"2\" (confirm)"]);
    // A third side came while the first was being answered: the second pairs with it at once.
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Post, "1");
    s.sync(2, "s", LinkMethod::Post, "2");
    s.sync(3, "s", LinkMethod::Post, "3");
    assert_eq!(s.written(1, false), ["3 <- 200 \"2\" (confirm)"]);
    assert_eq!(s.written(3, true), ["2 <- 200 \"3\" (confirm)"]);
}

#[test]
fn sync_a_second_side_that_left_is_answered_nothing() {
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Post, "1");
    s.sync(2, "s", LinkMethod::Post, "2");
    s.event(Event::Gone { conn: 2 });
    assert!(s.written(1, true).is_empty());
    assert_eq!(held(&s), (0, 0, 0));
    // Left before its counterpart's answer failed: nothing waits again.
    s.sync(3, "s", LinkMethod::Post, "3");
    s.sync(4, "s", LinkMethod::Post, "4");
    s.event(Event::Gone { conn: 4 });
    assert!(s.written(3, false).is_empty());
    assert_eq!((held(&s), s.registry.counts().syncs), ((0, 0, 0), 0));
}

#[test]
fn sync_a_side_that_left_while_waiting_is_removed_by_its_connection() {
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Post, "1");
    s.event(Event::Gone { conn: 1 });
    assert_eq!(held(&s), (0, 0, 0));
    assert!(s.sync(2, "s", LinkMethod::Post, "2").is_empty());
    // A late report for the first side does not take the second off the id.
    s.event(Event::Gone { conn: 1 });
    assert_eq!(s.sync(3, "s", LinkMethod::Post, "3"), ["2 <- 200 \"3\" (confirm)"]);
}

#[test]
fn sync_a_lone_side_times_out_and_a_drain_answers_every_side() {
    let mut s = Scenario::new();
    s.sync(1, "s", LinkMethod::Post, "1");
    assert!(s.at(TIMEOUT - Duration::from_millis(1)).is_empty());
    assert!(s.at(TIMEOUT + TICK)[0].starts_with("1 <- 408"));
    assert_eq!((held(&s), s.registry.counts().syncs), ((0, 0, 0), 0));
    // Draining: a waiting side hears 503; a second side waits for its counterpart's answer.
    let mut s = Scenario::new();
    s.registry.settings.keeps_messages = true;
    s.sync(1, "a", LinkMethod::Post, "1");
    s.sync(2, "b", LinkMethod::Post, "2");
    s.sync(3, "b", LinkMethod::Post, "3");
    s.sync(4, "c", LinkMethod::Post, "4");
    s.sync(5, "c", LinkMethod::Post, "5");
    assert_eq!(s.event(Event::Drain), ["1 <- 503 \"ShuttingDown\""]);
    assert_eq!(s.written(2, true), ["3 <- 200 \"2\" (confirm)"]);
    assert_eq!(s.written(4, false), ["5 <- 503 \"ShuttingDown\""]);
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn mcast_every_wanted_number() {
    let mut s = Scenario::new();
    // Nothing written yet: every reader waits for message 0, whatever it asked for.
    assert!(s.mcast_get(1, "m", None).is_empty());
    assert!(s.mcast_get(2, "m", Some(5)).is_empty());
    assert!(s.mcast_get(3, "m", Some(-1)).is_empty());
    let mut out = s.mcast_post(4, "m", "", "zero");
    out.sort();
    assert_eq!(
        out,
        [
            "1 <- 200 \"#0 zero\"",
            "2 <- 200 \"#0 zero\"",
            "3 <- 200 \"#0 zero\"",
            "4 <- 200 \"kept #0\""
        ]
    );
    s.mcast_post(5, "m", "", "one");
    s.mcast_post(6, "m", "", "two");
    // None: the newest. Exact: that one. Behind the oldest (or negative): the oldest.
    assert_eq!(s.mcast_get(7, "m", None), ["7 <- 200 \"#2 two\""]);
    assert_eq!(s.mcast_get(8, "m", Some(1)), ["8 <- 200 \"#1 one\""]);
    assert_eq!(s.mcast_get(9, "m", Some(-4)), ["9 <- 200 \"#0 zero\""]);
    // At next: waits. Ahead of next: waits for next.
    assert!(s.mcast_get(10, "m", Some(3)).is_empty());
    assert!(s.mcast_get(11, "m", Some(40)).is_empty());
    let mut out = s.mcast_post(12, "m", "", "three");
    out.sort();
    assert_eq!(out, ["10 <- 200 \"#3 three\"", "11 <- 200 \"#3 three\"", "12 <- 200 \"kept #3\""]);
    assert_eq!(s.registry.counts().mcast_fetched, 8);
    // MCAST_RETAIN (10 bytes) kept the two newest.
    assert_eq!(held(&s), (0, 2, 8));
}

#[test]
fn mcast_keeps_its_newest_bodies_within_the_retention() {
    let mut s = Scenario::new();
    // MCAST_RETAIN is 10 bytes.
    s.mcast_post(1, "m", "", "aaaa");
    s.mcast_post(2, "m", "", "bbbb");
    assert_eq!(held(&s), (0, 2, 8));
    s.mcast_post(3, "m", "", "cccc");
    assert_eq!(held(&s), (0, 2, 8), "the oldest went");
    assert_eq!(s.mcast_get(4, "m", Some(0)), ["4 <- 200 \"#1 bbbb\""]);
    // The newest stays, whatever its size.
    s.mcast_post(5, "m", "", "a body over the retention");
    assert_eq!(s.mcast_get(6, "m", Some(0)), ["6 <- 200 \"#3 a body over the retention\""]);
    assert_eq!(held(&s).1, 1);
}

#[test]
fn mcast_messages_and_claim_go_after_the_idle_time() {
    let mut s = Scenario::new();
    s.mcast_post(1, "m", "wsecret=w", "old");
    assert!(s.mcast_post(2, "m", "", "x")[0].starts_with("2 <- 401"));
    s.at(MCAST_IDLE / 2);
    s.mcast_post(3, "m", "wsecret=w", "new");
    // The idle time counts from the last POST.
    s.at(MCAST_IDLE + MCAST_IDLE / 4);
    assert_eq!(s.mcast_get(4, "m", Some(0)), ["4 <- 200 \"#0 old\""]);
    s.at(MCAST_IDLE / 2 + MCAST_IDLE + TICK);
    assert_eq!((held(&s), s.registry.counts().mcasts), ((0, 0, 0), 0));
    // Forgotten: no claim, and numbers start again at 0.
    assert_eq!(s.mcast_post(5, "m", "", "again"), ["5 <- 200 \"kept #0\""]);
    // With a reader waiting, the channel stays, and so does its next number.
    let again = MCAST_IDLE / 2 + MCAST_IDLE + TICK;
    s.at(again + MCAST_IDLE - Duration::from_secs(1));
    assert!(s.mcast_get(6, "m", Some(1)).is_empty());
    s.at(again + MCAST_IDLE + TICK);
    assert_eq!((s.registry.counts().mcasts, held(&s)), (1, (1, 0, 0)));
    assert_eq!(s.mcast_post(7, "m", "", "next")[1], "6 <- 200 \"#1 next\"");
}

#[test]
fn mcast_readers_leave_time_out_and_drain() {
    let mut s = Scenario::new();
    s.mcast_get(1, "m", None);
    s.mcast_get(2, "m", None);
    s.event(Event::Gone { conn: 1 });
    assert_eq!(held(&s).0, 1);
    assert!(s.at(TIMEOUT + TICK)[0].starts_with("2 <- 408"));
    assert_eq!((held(&s), s.registry.counts().mcasts), ((0, 0, 0), 0));
    s.mcast_get(3, "m", None);
    assert_eq!(s.event(Event::Drain), ["3 <- 503 \"ShuttingDown\""]);
    assert!(s.mcast_post(4, "m", "", "late")[0].starts_with("4 <- 503"));
}

#[test]
fn channel_kinds_are_separate() {
    let mut s = Scenario::new();
    s.mcast_post(1, "x", "", "mcast");
    assert!(s.sync(2, "x", LinkMethod::Post, "sync").is_empty());
    assert!(s.get(3, "x").is_empty());
    assert_eq!(s.mcast_get(4, "x", None), ["4 <- 200 \"#0 mcast\""]);
}

/// How long ids stay burned in the single-use scenarios.
const BURNED_FOR: Duration = Duration::from_secs(3600);

impl Scenario {
    /// A registry with `--single-use on`, `--burned-for` [`BURNED_FOR`], at most `max` burned.
    fn single_use(max: usize) -> Scenario {
        let mut s = Scenario::new();
        let single_use = crate::config::SingleUse { on: true, retention: BURNED_FOR, max };
        s.registry.settings.single_use = single_use.clone();
        s.registry = Registry::new(s.registry.settings.clone(), s.start);
        s
    }
}

const BURNED: &str = "410 \"Burned { retention: 3600s }\"";

#[test]
fn a_link_id_taken_once_refuses_every_later_send_and_receive_until_it_expires() {
    let mut s = Scenario::single_use(10);
    s.get(1, "qr");
    assert_eq!(s.post(2, "qr", "", "token"), ["1 <- 200 \"token\" (confirm)"]);
    // Not taken: nothing is burned yet, the message goes to the next receiver.
    assert!(s.written(1, false).is_empty());
    assert_eq!(s.get(3, "qr"), ["3 <- 200 \"token\" (confirm)"]);
    assert_eq!(s.written(3, true), ["2 <- 200 \"\""]);
    assert_eq!(s.registry.counts().burned, 1);
    assert_eq!(s.post(4, "qr", "", "replayed"), [format!("4 <- {BURNED}")]);
    assert_eq!(s.get(5, "qr"), [format!("5 <- {BURNED}")]);
    assert_eq!(s.registry.counts().refused.get(RefusalReason::Burned), 2);
    assert_eq!(held(&s), (0, 0, 0));
    // Other ids, and the same id as an inbox, are not burned.
    assert_eq!(s.inbox(6, "qr", Action::InboxPost, "x"), ["6 <- 200 \"\""]);
    assert!(s.get(7, "other").is_empty());
    // At its end the id is free again, and forgotten.
    s.at(BURNED_FOR - Duration::from_secs(1));
    assert_eq!(s.get(8, "qr"), [format!("8 <- {BURNED}")]);
    s.at(BURNED_FOR + Duration::from_secs(1));
    assert_eq!(s.registry.counts().burned, 0);
    assert!(s.get(9, "qr").is_empty(), "parked again");
    // Delivered again: burned again, even when its earlier time ended since the last tick.
    s.post(10, "qr", "", "second");
    s.written(9, true);
    s.now += BURNED_FOR;
    s.get(11, "qr");
    s.post(12, "qr", "", "third");
    assert_eq!(s.written(11, true), ["12 <- 200 \"\""]);
    assert_eq!(s.post(13, "qr", "", "replayed"), [format!("13 <- {BURNED}")]);
}

#[test]
fn those_waiting_on_a_link_id_when_it_is_burned_are_refused_at_once() {
    let mut s = Scenario::single_use(10);
    s.post(1, "qr", "", "first");
    s.post(2, "qr", "", "second");
    assert_eq!(s.get(3, "qr"), ["3 <- 200 \"first\" (confirm)"]);
    assert_eq!(s.written(3, true), ["1 <- 200 \"\"".to_string(), format!("2 <- {BURNED}")]);
    assert_eq!(held(&s), (0, 0, 0), "the second message is dropped");
    let mut s = Scenario::single_use(10);
    s.get(1, "qr");
    s.get(2, "qr");
    s.post(3, "qr", "", "m");
    assert_eq!(s.written(1, true), ["3 <- 200 \"\"".to_string(), format!("2 <- {BURNED}")]);
    assert_eq!(held(&s), (0, 0, 0));
}

#[test]
fn an_acknowledged_inbox_refuses_posts_and_gets_but_still_answers_ack_and_await() {
    let mut s = Scenario::single_use(10);
    s.inbox(1, "box", Action::InboxPost, "token");
    assert_eq!(s.inbox(2, "box", Action::InboxGet, ""), ["2 <- 200 \"token\""]);
    // Fetched is not delivered: only the acknowledgement burns.
    assert_eq!(s.registry.counts().burned, 0);
    assert_eq!(s.inbox(3, "box", Action::InboxDelete, ""), ["3 <- 200 \"\""]);
    assert_eq!(s.registry.counts().burned, 1);
    assert_eq!(s.inbox(4, "box", Action::InboxPost, "again"), [format!("4 <- {BURNED}")]);
    assert_eq!(s.inbox(5, "box", Action::InboxGet, ""), [format!("5 <- {BURNED}")]);
    assert_eq!(s.inbox(6, "box", Action::InboxAck, ""), ["6 <- 200 \"true\""]);
    assert_eq!(s.inbox(7, "box", Action::InboxAwait, ""), ["7 <- 200 \"\""]);
    assert_eq!(s.inbox(8, "box", Action::InboxDelete, ""), ["8 <- 200 \"\""]);
    assert_eq!(s.registry.counts().burned, 1, "burned once");
}

#[test]
fn without_single_use_nothing_is_burned() {
    let mut s = Scenario::new();
    s.get(1, "qr");
    s.post(2, "qr", "", "m");
    s.written(1, true);
    s.inbox(3, "box", Action::InboxPost, "m");
    s.inbox(4, "box", Action::InboxDelete, "");
    assert!(s.get(5, "qr").is_empty(), "parked");
    assert_eq!(s.inbox(6, "box", Action::InboxPost, "m"), ["6 <- 200 \"\""]);
    assert_eq!(s.registry.counts().burned, 0);
}

#[test]
fn at_the_cap_the_oldest_burned_id_is_forgotten_and_counted() {
    let mut s = Scenario::single_use(2);
    for (n, id) in ["a", "b", "c"].into_iter().enumerate() {
        let conn = 10 * n as ConnId;
        s.inbox(conn, id, Action::InboxPost, "m");
        s.inbox(conn + 1, id, Action::InboxDelete, "");
    }
    let counts = s.registry.counts();
    assert_eq!((counts.burned, counts.burned_forgotten), (2, 1));
    assert_eq!(s.inbox(30, "a", Action::InboxPost, "m"), ["30 <- 200 \"\""], "forgotten");
    assert_eq!(s.inbox(31, "b", Action::InboxPost, "m"), [format!("31 <- {BURNED}")]);
}

#[test]
fn burned_ids_survive_a_restart_and_their_changes_replay() {
    let mut s = Scenario::single_use(10);
    s.registry.settings.keeps_messages = true;
    let base = s.registry.snapshot(s.now, WALL);
    s.get(1, "qr");
    s.post(2, "qr", "", "m");
    s.written(1, true);
    s.inbox(3, "box", Action::InboxPost, "m");
    s.inbox(4, "box", Action::InboxDelete, "");
    let changes = s.registry.take_changes(s.now, WALL);
    let replayed = crate::persist::replayed(&base, &changes);
    assert_eq!(replayed.burned.len(), 2);
    assert_eq!(replayed.burned, s.registry.snapshot(s.now, WALL).burned);
    // Restored into a registry with its own fresh key: the saved key comes with them.
    let mut r = Scenario::single_use(10);
    let budget = crate::limits::MemoryBudget::new(None);
    let later = WALL + 60_000;
    let done = r.registry.restore(r.now, later, replayed.clone(), &budget);
    assert_eq!(done.burned, 2);
    // Two burned ids, and the acknowledged entry that stays for `/ack`.
    let acked = crate::limits::ENTRY_COST + "box".len();
    assert_eq!(budget.used(), 2 * super::burned::BURN_COST + acked);
    assert_eq!(r.get(5, "qr"), [format!("5 <- {BURNED}")]);
    assert_eq!(r.inbox(6, "box", Action::InboxPost, "m"), [format!("6 <- {BURNED}")]);
    // With what was left of their time: an hour from the first start, a minute of it gone.
    r.at(BURNED_FOR - Duration::from_secs(61));
    assert_eq!(r.get(7, "qr"), [format!("7 <- {BURNED}")]);
    r.at(BURNED_FOR - Duration::from_secs(59));
    assert!(r.get(8, "qr").is_empty(), "expired");
    // Expired while the relay was down: not restored.
    let mut late = Scenario::single_use(10);
    let down = WALL + BURNED_FOR.as_millis() as u64;
    let done = late.registry.restore(late.now, down, replayed, &budget);
    assert_eq!((done.burned, done.expired), (0, 3), "both ids and the inbox entry");
}
